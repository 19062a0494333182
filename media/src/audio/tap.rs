//! The received path ([`Receive`]: reorder, decode, keep time) and the DSP tap ([`Tap`]).
//!
//! [`Receive`] puts packets back in sequence order with a small buffer: a packet after a gap is
//! held until the gap fills, three packets are held, or it has waited 60 ms; then the missing
//! packets become silence of the same length (at most 200 ms of it) so that the audio keeps its
//! timing. Late and duplicate packets are dropped and counted. When packets stop (DTX, hold,
//! loss) the path runs on the wall clock: once it is 120 ms behind, silence is added to bring it
//! within 60 ms, so time-based detectors (AMD's silence timers) keep running.
//!
//! [`Tap`] runs the dsp pipeline on that audio. In-band digits and RFC 4733 presses are unified:
//! a press of the same digit from the other source overlapping (within 60 ms) one already
//! reported is the same press heard the other way, and is not reported again. Presses from one
//! source are never merged (its own receiver already told them apart).

use std::fmt;
use std::time::{Duration, Instant};

use dsp::amd::AmdConfig;
use dsp::pipeline::{self, LegDsp, PipelineConfig};

use super::{AudioEvent, Events, FRAME_SAMPLES, Voice, duration, samples};
use crate::api::DigitSource;
use crate::codec::OpusReceive;
use crate::telephone_event::{EndReason, KeyPress};

/// Packets held while waiting for a missing one.
const DEPTH: usize = 3;
/// Longest wait for a missing packet.
const HOLD: Duration = Duration::from_millis(60);
/// Largest payload that can be held (60 ms of G.711, one Opus frame at its highest bitrate);
/// longer ones are cut.
const MAX_HELD: usize = 1275;
/// Most missing packets made up with silence at one gap (10 packets, 200 ms at 20 ms each): a
/// larger jump is a restarted stream, and the wall clock covers the time.
const MAX_GAP_FILL: usize = 10;
/// A packet more than this many sequence numbers off is a restarted stream, not a late or
/// early one.
const RESTART: i16 = 100;
/// Lag behind the wall clock (samples) that triggers silence padding: 120 ms.
const LAG_LIMIT: u64 = 960;
/// Lag left after padding: 60 ms, the reorder buffer's own delay.
const LAG_KEEP: u64 = 480;

/// Receive deadlines are rounded up to this grid, shared by every leg of the process. With a
/// thousand tapped legs each one's deadline fell at its own moment: the shard slept and woke
/// for them 6000 times a second (10x the plain relay's wake-ups, and twice its CPU per packet
/// at 500 calls). On the grid they fire together, at most 50 times a second; the detectors
/// can take their silence up to 20 ms late.
const TIMER_GRID: Duration = Duration::from_millis(20);

/// Where the grid starts: the first deadline asked for.
static GRID_EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// `t` rounded up to the [`TIMER_GRID`]; never earlier than `t` (an instant before the grid
/// began is kept as it is).
fn on_grid(t: Instant) -> Instant {
    let epoch = *GRID_EPOCH;
    let Some(since) = t.checked_duration_since(epoch) else {
        return t;
    };
    // Asked per packet (a leg's deadline is kept current after each): u64 arithmetic, not u128
    // (a u64 of nanoseconds spans 584 years of uptime).
    let grid = TIMER_GRID.as_nanos() as u64;
    let since = since.as_nanos() as u64;
    epoch + Duration::from_nanos(since.div_ceil(grid) * grid)
}

#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u16,
    /// `None`: not audio (comfort noise, telephone-event): only its sequence number counts.
    voice: Option<Voice>,
    len: usize,
    at: Instant,
    buf: [u8; MAX_HELD],
}

/// Reorder, decode and time keeping of one leg's received audio.
#[derive(Debug)]
pub(crate) struct Receive {
    start: Instant,
    /// Samples delivered since `start`.
    fed: u64,
    /// Sequence number expected next.
    next: Option<u16>,
    held: [Option<Held>; DEPTH],
    /// Slots of `held` in use: in-order packets (the usual case) skip every scan of `held`,
    /// whose entries lie a cache line or more apart.
    holding: usize,
    /// Decoder of an Opus leg's audio (made with its first Opus packet).
    opus: Option<Box<OpusReceive>>,
}

impl Receive {
    pub(crate) fn new(now: Instant) -> Self {
        Receive {
            start: now,
            fed: 0,
            next: None,
            held: [None; DEPTH],
            holding: 0,
            opus: None,
        }
    }

    /// One received packet; decoded audio goes to `sink` in order.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        voice: Option<Voice>,
        seq: u16,
        payload: &[u8],
        sink: &mut impl FnMut(&[i16]),
    ) {
        self.pad(now, sink);
        let Some(next) = self.next else {
            self.deliver(voice, payload, sink);
            self.next = Some(seq.wrapping_add(1));
            return;
        };
        let ahead = seq.wrapping_sub(next) as i16;
        if !(-RESTART..=RESTART).contains(&ahead) {
            // The sender restarted its numbering: play out what is held, then follow it (the
            // wall clock, not a guess from the jump, accounts for the time between).
            while self.release_oldest(sink) {}
            self.next = Some(seq);
        } else if ahead < 0 {
            metrics::counter!("dialplane_audio_tap_dropped_total", "reason" => "late").increment(1);
            return;
        } else if ahead > 0 {
            if self.held.iter().flatten().any(|h| h.seq == seq) {
                metrics::counter!("dialplane_audio_tap_dropped_total", "reason" => "duplicate")
                    .increment(1);
                return;
            }
            let len = payload.len().min(MAX_HELD);
            if len < payload.len() {
                metrics::counter!("dialplane_audio_tap_dropped_total", "reason" => "truncated")
                    .increment(1);
            }
            let mut held = Held {
                seq,
                voice,
                len,
                at: now,
                buf: [0; MAX_HELD],
            };
            held.buf[..len].copy_from_slice(&payload[..len]);
            // A slot is always free: the buffer is released as soon as it fills.
            if let Some(slot) = self.held.iter_mut().find(|h| h.is_none()) {
                *slot = Some(held);
                self.holding += 1;
            }
            if self.holding == DEPTH {
                self.release_oldest(sink);
            }
            return;
        }
        self.deliver(voice, payload, sink);
        self.next = Some(seq.wrapping_add(1));
        self.drain(sink);
    }

    /// When [`Receive::handle_timeout`] has work: a held packet's wait ends, or the wall clock
    /// gets too far ahead of the audio; on the [`TIMER_GRID`].
    pub(crate) fn poll_timeout(&self) -> Instant {
        let pad = self.start + duration(self.fed + LAG_LIMIT + 1);
        if self.holding == 0 {
            return on_grid(pad);
        }
        on_grid(
            self.held
                .iter()
                .flatten()
                .map(|h| h.at + HOLD)
                .fold(pad, Instant::min),
        )
    }

    /// Release packets that waited long enough; add silence if the packets stopped.
    pub(crate) fn handle_timeout(&mut self, now: Instant, sink: &mut impl FnMut(&[i16])) {
        while self.holding > 0 && self.held.iter().flatten().any(|h| h.at + HOLD <= now) {
            self.release_oldest(sink);
        }
        self.pad(now, sink);
    }

    /// Deliver the held packet nearest after the gap, the gap as silence first; `false` if none
    /// was held.
    fn release_oldest(&mut self, sink: &mut impl FnMut(&[i16])) -> bool {
        let next = self.next.unwrap_or(0);
        let Some(slot) = self
            .held
            .iter_mut()
            .filter(|h| h.is_some())
            .min_by_key(|h| h.as_ref().map_or(u16::MAX, |h| h.seq.wrapping_sub(next)))
        else {
            return false;
        };
        let Some(h) = slot.take() else {
            return false;
        };
        self.holding -= 1;
        let missing = usize::from(h.seq.wrapping_sub(next)).min(MAX_GAP_FILL);
        // A lost Opus packet counts as 20 ms, like a packet that is not audio.
        let per_packet = match h.voice {
            Some(Voice::Law(_)) => h.len,
            _ => FRAME_SAMPLES,
        };
        self.silence((missing * per_packet) as u64, sink);
        metrics::counter!("dialplane_audio_tap_lost_total").increment(missing as u64);
        self.deliver(h.voice, &h.buf[..h.len], sink);
        self.next = Some(h.seq.wrapping_add(1));
        self.drain(sink);
        true
    }

    /// Deliver held packets that are next in sequence.
    fn drain(&mut self, sink: &mut impl FnMut(&[i16])) {
        while self.holding > 0
            && let Some(next) = self.next
            && let Some(slot) = self
                .held
                .iter_mut()
                .find(|h| h.as_ref().is_some_and(|h| h.seq == next))
        {
            if let Some(h) = slot.take() {
                self.holding -= 1;
                self.deliver(h.voice, &h.buf[..h.len], sink);
            }
            self.next = Some(next.wrapping_add(1));
        }
    }

    fn deliver(&mut self, voice: Option<Voice>, payload: &[u8], sink: &mut impl FnMut(&[i16])) {
        match voice {
            None => {}
            Some(Voice::Law(law)) => {
                let mut pcm = [0i16; FRAME_SAMPLES];
                for chunk in payload.chunks(FRAME_SAMPLES) {
                    law.decode_slice(chunk, &mut pcm);
                    sink(&pcm[..chunk.len()]);
                }
                self.fed += payload.len() as u64;
            }
            Some(Voice::Opus) => {
                if self.opus.is_none() {
                    match OpusReceive::new() {
                        Ok(o) => self.opus = Some(Box::new(o)),
                        Err(error) => {
                            tracing::warn!(%error, "no Opus decoder: the tap hears silence");
                            return;
                        }
                    }
                }
                let Some(opus) = self.opus.as_mut() else {
                    return;
                };
                // A payload libopus refuses is heard as the silence of a lost packet.
                match opus.decode(Some(payload), sink) {
                    Ok(n) => self.fed += n as u64,
                    Err(_) => {
                        metrics::counter!("dialplane_audio_tap_dropped_total", "reason" => "undecodable")
                            .increment(1);
                    }
                }
            }
        }
    }

    fn silence(&mut self, n: u64, sink: &mut impl FnMut(&[i16])) {
        let zeros = [0i16; FRAME_SAMPLES];
        let mut left = n;
        while left > 0 {
            let k = left.min(FRAME_SAMPLES as u64);
            sink(&zeros[..k as usize]);
            left -= k;
        }
        self.fed += n;
    }

    /// Silence up to 60 ms behind the wall clock once the audio is 120 ms behind it.
    fn pad(&mut self, now: Instant, sink: &mut impl FnMut(&[i16])) {
        let elapsed = samples(now.saturating_duration_since(self.start));
        if elapsed > self.fed + LAG_LIMIT {
            self.silence(elapsed - LAG_KEEP - self.fed, sink);
        }
    }
}

/// Slack when matching a press heard both ways: the two sources' timings differ by the reorder
/// buffer's delay and the detectors' own error.
const SAME_PRESS_MS: u64 = 60;

/// Presses remembered for deduplication.
const RECENT: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Press {
    digit: char,
    start_ms: u64,
    end_ms: u64,
    source: DigitSource,
    /// Already matched by the same press heard the other way.
    matched: bool,
}

/// The DSP tap of one leg.
pub(crate) struct Tap {
    dsp: LegDsp,
    digits: Digits,
}

/// Unified digit reporting.
#[derive(Debug)]
struct Digits {
    dtmf: bool,
    /// Samples seen since the tap started.
    fed: u64,
    recent: [Option<Press>; RECENT],
    /// Slot of `recent` written next.
    slot: usize,
}

impl fmt::Debug for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tap")
            .field("digits", &self.digits)
            .finish_non_exhaustive()
    }
}

impl Tap {
    pub(crate) fn new(dtmf: bool, amd: Option<AmdConfig>) -> Self {
        Tap {
            dsp: LegDsp::new(PipelineConfig { dtmf, amd }),
            digits: Digits {
                dtmf,
                fed: 0,
                recent: [None; RECENT],
                slot: 0,
            },
        }
    }

    /// Decoded received audio, in order (at most one frame is used).
    pub(crate) fn push(&mut self, pcm: &[i16], events: &mut Events) {
        let mut x = [0.0f32; FRAME_SAMPLES];
        let n = pcm.len().min(FRAME_SAMPLES);
        for (x, &s) in x.iter_mut().zip(&pcm[..n]) {
            *x = f32::from(s) / 32768.0;
        }
        let mut sink = Sink {
            digits: &mut self.digits,
            events,
        };
        self.dsp.push_pcm(&x[..n], &mut sink);
        self.digits.fed += n as u64;
    }

    /// The tap is removed or replaced: report what is still pending.
    pub(crate) fn finish(&mut self, events: &mut Events) {
        let mut sink = Sink {
            digits: &mut self.digits,
            events,
        };
        self.dsp.finish(&mut sink);
    }

    /// An RFC 4733 press (reported by the endpoint at its end).
    pub(crate) fn key_press(&mut self, press: &KeyPress, events: &mut Events) {
        let Some(digit) = press.digit() else {
            return;
        };
        let d = &mut self.digits;
        if !d.dtmf {
            return;
        }
        // The press ended about now in the audio's time (its packets and the audio around it
        // arrive together); a press closed by the receiver's timeout ended 200 ms ago.
        // telephone-event/8000, as every leg here negotiates it.
        let duration_ms = u64::from(press.duration) / 8;
        let late_ms = if press.end == EndReason::Timeout {
            200
        } else {
            0
        };
        let end_ms = (d.fed / 8).saturating_sub(late_ms);
        let start_ms = end_ms.saturating_sub(duration_ms);
        d.report(digit, start_ms, end_ms, DigitSource::Rfc4733, events);
    }
}

impl Digits {
    fn report(
        &mut self,
        digit: char,
        start_ms: u64,
        end_ms: u64,
        source: DigitSource,
        events: &mut Events,
    ) {
        // The same press heard the other way: same key, the other source, overlapping, not yet
        // matched (so two quick presses heard both ways stay two), the nearest onset first.
        let same = self
            .recent
            .iter_mut()
            .flatten()
            .filter(|p| {
                p.digit == digit
                    && p.source != source
                    && !p.matched
                    && start_ms <= p.end_ms + SAME_PRESS_MS
                    && p.start_ms <= end_ms + SAME_PRESS_MS
            })
            .min_by_key(|p| p.start_ms.abs_diff(start_ms));
        if let Some(p) = same {
            p.matched = true;
            metrics::counter!("dialplane_audio_digit_duplicates_total").increment(1);
            return;
        }
        self.recent[self.slot] = Some(Press {
            digit,
            start_ms,
            end_ms,
            source,
            matched: false,
        });
        self.slot = (self.slot + 1) % RECENT;
        events.push(AudioEvent::Digit {
            digit,
            start_ms,
            duration_ms: u32::try_from(end_ms.saturating_sub(start_ms)).unwrap_or(u32::MAX),
            source,
        });
    }
}

/// Where the pipeline's events go: digits through the deduplication, AMD straight out.
struct Sink<'a> {
    digits: &'a mut Digits,
    events: &'a mut Events,
}

impl Extend<pipeline::Event> for Sink<'_> {
    fn extend<I: IntoIterator<Item = pipeline::Event>>(&mut self, iter: I) {
        for event in iter {
            match event {
                pipeline::Event::Digit(d) => {
                    // dsp sample indexes count 8 kHz samples from the tap's start.
                    let (start_ms, end_ms) = (d.start / 8, d.end / 8);
                    self.digits
                        .report(d.digit, start_ms, end_ms, DigitSource::InBand, self.events);
                }
                pipeline::Event::Amd(a) => self.events.push(AudioEvent::Amd(a)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::g711::Law;

    /// A payload whose samples all decode to the µ-law value of `code`.
    fn packet(code: u8) -> [u8; FRAME_SAMPLES] {
        [code; FRAME_SAMPLES]
    }

    /// Each delivered chunk as (first sample, length).
    fn run(steps: &[(u64, Option<u16>)]) -> Vec<(i16, usize)> {
        let t0 = Instant::now();
        let mut r = Receive::new(t0);
        let mut out = Vec::new();
        let mut sink = |pcm: &[i16]| out.push((pcm[0], pcm.len()));
        for &(ms, seq) in steps {
            let now = t0 + Duration::from_millis(ms);
            match seq {
                // The code encodes the sequence number so the order can be read back.
                Some(seq) => r.push(
                    now,
                    Some(Voice::Law(Law::Ulaw)),
                    seq,
                    &packet(0x80 | seq as u8),
                    &mut sink,
                ),
                None => r.handle_timeout(now, &mut sink),
            }
        }
        out
    }

    fn value(seq: u16) -> (i16, usize) {
        (Law::Ulaw.decode(0x80 | seq as u8), FRAME_SAMPLES)
    }

    #[test]
    fn swapped_packets_come_out_in_order() {
        let got = run(&[(0, Some(1)), (20, Some(3)), (21, Some(2)), (40, Some(4))]);
        assert_eq!(got, [value(1), value(2), value(3), value(4)]);
    }

    #[test]
    fn late_and_duplicate_packets_are_dropped() {
        let got = run(&[
            (0, Some(10)),
            (20, Some(12)),
            (21, Some(12)),
            (22, Some(11)),
            (23, Some(11)),
            (24, Some(10)),
            (40, Some(13)),
        ]);
        assert_eq!(got, [value(10), value(11), value(12), value(13)]);
    }

    #[test]
    fn a_lost_packet_becomes_silence_after_60_ms_or_three_held() {
        // Timeout: 3 held for 60 ms, then released after 20 ms of silence.
        let got = run(&[(0, Some(1)), (40, Some(3)), (99, None), (100, None)]);
        assert_eq!(got, [value(1), (0, FRAME_SAMPLES), value(3)]);
        // Three packets held: released at once.
        let got = run(&[(0, Some(1)), (40, Some(3)), (60, Some(4)), (80, Some(5))]);
        assert_eq!(
            got,
            [value(1), (0, FRAME_SAMPLES), value(3), value(4), value(5)]
        );
        // Sequence numbers wrap.
        let got = run(&[(0, Some(65535)), (20, Some(1)), (21, Some(0))]);
        assert_eq!(got, [value(65535), value(0), value(1)]);
        // A jump is a restarted stream: followed at once, no silence made up.
        let got = run(&[(0, Some(1)), (20, Some(5000)), (40, Some(5001))]);
        assert_eq!(got, [value(1), value(5000), value(5001)]);
    }

    #[test]
    fn deadlines_of_different_legs_share_the_grid() {
        let t0 = *GRID_EPOCH + Duration::from_millis(1);
        let a = on_grid(t0 + Duration::from_micros(3_100));
        let b = on_grid(t0 + Duration::from_micros(17_900));
        assert_eq!(a, b, "one wake-up for both");
        assert!(a >= t0 + Duration::from_micros(17_900));
        assert_eq!(on_grid(a), a, "a grid point stays");
        assert!(on_grid(a + Duration::from_nanos(1)) == a + TIMER_GRID);
        let before = *GRID_EPOCH - Duration::from_millis(5);
        assert_eq!(on_grid(before), before, "never earlier than asked");
    }

    #[test]
    fn silence_keeps_the_wall_clock_when_packets_stop() {
        let t0 = Instant::now();
        let mut r = Receive::new(t0);
        let mut fed = 0usize;
        let mut sink = |pcm: &[i16]| fed += pcm.len();
        r.push(t0, Some(Voice::Law(Law::Alaw)), 7, &packet(0xd5), &mut sink);
        // Nothing for a second: the deadline is 120 ms of lag, then padding to 60 ms behind.
        let mut now = t0;
        for _ in 0..100 {
            let next = r.poll_timeout();
            assert!(next > now);
            now = next;
            if now > t0 + Duration::from_secs(1) {
                break;
            }
            r.handle_timeout(now, &mut sink);
        }
        // The next packet after the silence continues the sequence.
        r.push(
            now,
            Some(Voice::Law(Law::Alaw)),
            8,
            &packet(0xd5),
            &mut sink,
        );
        assert_eq!(r.next, Some(9));
        let behind = samples(now - t0) as i64 - fed as i64;
        // 60 ms (padding) minus the packet's own 20 ms, up to 120 ms.
        assert!((320..=961).contains(&behind), "{behind}");
    }

    #[test]
    fn non_audio_packets_only_use_up_their_sequence_number() {
        let t0 = Instant::now();
        let mut r = Receive::new(t0);
        let mut got = Vec::new();
        let mut sink = |pcm: &[i16]| got.push(pcm.len());
        r.push(t0, Some(Voice::Law(Law::Ulaw)), 1, &packet(0xff), &mut sink);
        r.push(t0, None, 2, &[1, 2, 3, 4], &mut sink);
        r.push(t0, Some(Voice::Law(Law::Ulaw)), 3, &packet(0xff), &mut sink);
        assert_eq!(got, [FRAME_SAMPLES, FRAME_SAMPLES]);
    }
}
