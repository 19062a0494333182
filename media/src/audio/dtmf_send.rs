//! Sending DTMF keys into a leg, one after the other.
//!
//! RFC 4733: [`EventSender`] on the leg's 8 kHz clock, updates every 20 ms, all packets of a
//! press carrying its start timestamp, three end packets, the marker on the first. In-band: the
//! dsp DTMF generator, 20 ms frames for the tone and then 60 ms of silence, so two presses of
//! the same key stay two. Keys queue; while any is queued or sounding the egress is the
//! sender's.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::{FRAME, FRAME_SAMPLES, Pacer, Voice, duration, ticks};
use crate::api::ApiError;
use crate::telephone_event::{EventSender, PAYLOAD_LEN, SendSpec, digit_event};
use dsp::dtmf::{DtmfGenerator, ToneSpec};

/// Most keys waiting.
const MAX_QUEUED: usize = 32;
/// Pause between two keys.
const GAP: Duration = Duration::from_millis(60);
/// RFC 4733 update interval: 20 ms at 8 kHz.
const INTERVAL: u32 = 160;

/// How a key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// RFC 4733 telephone-events on the leg's telephone-event clock (Hz, a multiple of 8000).
    Rfc4733(u32),
    /// Tones in the leg's audio (G.711 or Opus).
    InBand(Voice),
}

#[derive(Debug, Clone, Copy)]
struct Key {
    digit: char,
    duration_ms: u32,
    volume: u8,
    mode: Mode,
}

#[derive(Debug)]
enum Sending {
    /// The sender, and its clock's ticks per 8 kHz tick.
    Rfc(EventSender, u64),
    Tone {
        generator: DtmfGenerator,
        voice: Voice,
        pacer: Pacer,
        /// Frames still to send, the silent gap included.
        frames: u32,
        first: bool,
    },
}

/// What [`DtmfSend::poll`] produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// An RFC 4733 payload (4 bytes).
    Event { timestamp: u32, marker: bool },
    /// 20 ms of tone (or its trailing silence) as PCM, to be encoded in `voice`.
    Tone {
        deadline: Instant,
        marker: bool,
        voice: Voice,
    },
}

/// The leg's DTMF sender.
#[derive(Debug, Default)]
pub(crate) struct DtmfSend {
    queue: VecDeque<Key>,
    sending: Option<Sending>,
    /// The next key may start then (the gap after the last one).
    free_at: Option<Instant>,
}

impl DtmfSend {
    /// Queue a key (checked by the caller: a DTMF digit).
    pub(crate) fn queue(
        &mut self,
        digit: char,
        duration_ms: u32,
        volume: u8,
        mode: Mode,
    ) -> Result<(), ApiError> {
        if self.queue.len() >= MAX_QUEUED {
            return Err(ApiError::InvalidArgument("more than 32 DTMF keys queued"));
        }
        if self.queue.capacity() == 0 {
            self.queue.reserve_exact(MAX_QUEUED);
        }
        self.queue.push_back(Key {
            digit,
            duration_ms: duration_ms.max(1),
            volume: volume.min(63),
            mode,
        });
        Ok(())
    }

    /// In-band keys queued or sounding go on in another codec.
    pub(crate) fn set_voice(&mut self, to: Voice) {
        for key in &mut self.queue {
            if let Mode::InBand(v) = &mut key.mode {
                *v = to;
            }
        }
        if let Some(Sending::Tone { voice, .. }) = &mut self.sending {
            *voice = to;
        }
    }

    /// A key is queued or being sent: bridged audio must not go out.
    pub(crate) fn owns_egress(&self) -> bool {
        self.sending.is_some() || !self.queue.is_empty()
    }

    /// When [`DtmfSend::poll`] next has work; `epoch` is the leg's tick origin.
    pub(crate) fn poll_timeout(&self, epoch: Instant) -> Option<Instant> {
        match &self.sending {
            Some(Sending::Rfc(s, scale)) => s
                .poll_timeout()
                .map(|t| epoch + duration(t.div_ceil(*scale))),
            Some(Sending::Tone { pacer, .. }) => pacer.next(),
            None if !self.queue.is_empty() => Some(self.free_at.unwrap_or(epoch)),
            None => None,
        }
    }

    /// The packet due at `now`, if any: an RFC 4733 payload into `event`, or a tone frame into
    /// `pcm`.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        epoch: Instant,
        pcm: &mut [i16; FRAME_SAMPLES],
        event: &mut [u8; PAYLOAD_LEN],
    ) -> Option<Sent> {
        if self.sending.is_none() {
            if self.free_at.is_some_and(|t| now < t) {
                return None;
            }
            let key = self.queue.pop_front()?;
            self.sending = Some(start(key, now, epoch));
        }
        match self.sending.as_mut()? {
            Sending::Rfc(sender, scale) => {
                let packet = sender.poll_transmit(ticks(epoch, now) * *scale, event)?;
                if sender.is_done() {
                    self.sending = None;
                    self.free_at = Some(now + GAP);
                }
                Some(Sent::Event {
                    timestamp: packet.timestamp,
                    marker: packet.marker,
                })
            }
            Sending::Tone {
                generator,
                voice,
                pacer,
                frames,
                first,
            } => {
                let deadline = pacer.due(now)?;
                let mut x = [0.0f32; FRAME_SAMPLES];
                generator.fill(&mut x);
                for (s, &v) in pcm.iter_mut().zip(&x) {
                    *s = (v * 32767.0).round() as i16;
                }
                let sent = Sent::Tone {
                    deadline,
                    marker: std::mem::take(first),
                    voice: *voice,
                };
                *frames -= 1;
                if *frames == 0 {
                    self.sending = None;
                    self.free_at = Some(deadline + FRAME);
                }
                Some(sent)
            }
        }
    }
}

/// Begin sending `key` at `now`.
fn start(key: Key, now: Instant, epoch: Instant) -> Sending {
    match key.mode {
        Mode::Rfc4733(rate) => {
            let scale = u64::from(rate / 8000).max(1);
            let start = ticks(epoch, now) * scale;
            let spec = SendSpec {
                event: digit_event(key.digit).unwrap_or(0),
                volume: key.volume,
                duration: key.duration_ms.saturating_mul(8 * scale as u32),
                timestamp: start as u32,
                interval: INTERVAL * scale as u32,
                end_packets: 3,
            };
            Sending::Rfc(EventSender::new(spec, start), scale)
        }
        Mode::InBand(voice) => {
            // RFC 4733's volume is the power of the pair: split it with the high tone 2 dB over
            // the low one (within every receiver's twist limits).
            let v = f32::from(key.volume);
            let spec = ToneSpec::new(key.digit, key.duration_ms).levels(-v - 4.0, -v - 2.0);
            let tone_frames = spec.samples.div_ceil(FRAME_SAMPLES) as u32;
            let gap_frames = (GAP.as_millis() / FRAME.as_millis()) as u32;
            let mut pacer = Pacer::default();
            pacer.start(now);
            Sending::Tone {
                generator: DtmfGenerator::new(&spec),
                voice,
                pacer,
                frames: tone_frames + gap_frames,
                first: true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephone_event::{EventPayload, EventReceiver};
    use dsp::g711::Law;
    use dsp::pipeline::{Event, LegDsp, PipelineConfig};

    #[test]
    fn rfc4733_sequence_decodes_to_one_press_per_key() {
        let t0 = Instant::now();
        let epoch = t0 - Duration::from_secs(1);
        let mut d = DtmfSend::default();
        d.queue('5', 100, 10, Mode::Rfc4733(8000)).unwrap();
        d.queue('#', 60, 12, Mode::Rfc4733(8000)).unwrap();
        let (mut pcm, mut ev) = ([0; FRAME_SAMPLES], [0; PAYLOAD_LEN]);
        let mut rx = EventReceiver::new(8000);
        let mut packets = Vec::new();
        let mut presses = Vec::new();
        let mut now = t0;
        while d.owns_egress() {
            // Nothing is produced before its deadline (a queued key is due at once).
            let next = d.poll_timeout(epoch).unwrap().max(now);
            if next > now {
                assert_eq!(
                    d.poll(next - Duration::from_micros(1), epoch, &mut pcm, &mut ev),
                    None
                );
            }
            now = next;
            while let Some(sent) = d.poll(now, epoch, &mut pcm, &mut ev) {
                let Sent::Event { timestamp, marker } = sent else {
                    panic!("{sent:?}");
                };
                let p = EventPayload::decode(&ev).unwrap();
                packets.push((now, timestamp, marker, p.end, p.duration));
                rx.handle_packet(ticks(epoch, now), timestamp, marker, &ev)
                    .unwrap();
                presses.extend(std::iter::from_fn(|| rx.poll_event()));
            }
        }
        let ms = |k: u64| t0 + Duration::from_millis(k);
        let ts = 8000;
        // '5' for 100 ms: updates every 20 ms from its timestamp, three end packets.
        assert_eq!(
            packets[..8],
            [
                (ms(20), ts, true, false, 160),
                (ms(40), ts, false, false, 320),
                (ms(60), ts, false, false, 480),
                (ms(80), ts, false, false, 640),
                (ms(100), ts, false, true, 800),
                (ms(120), ts, false, true, 800),
                (ms(140), ts, false, true, 800),
                // '#' starts after the 60 ms gap, with its own timestamp.
                (ms(220), ts + 200 * 8, true, false, 160),
            ]
        );
        assert_eq!(packets.len(), 8 + 2 + 2);
        assert!(packets[8..].iter().all(|p| p.1 == ts + 1600 && !p.2));
        assert_eq!(ev[1] & 0x3f, 12);
        let keys: Vec<_> = presses
            .iter()
            .map(|k| (k.digit(), k.timestamp, k.duration))
            .collect();
        assert_eq!(keys, [(Some('5'), ts, 800), (Some('#'), ts + 1600, 480)]);
        assert_eq!(d.poll_timeout(epoch), None);
    }

    #[test]
    fn in_band_tones_are_heard_by_the_dsp_receiver() {
        let t0 = Instant::now();
        let mut d = DtmfSend::default();
        for digit in ['1', '1', '9'] {
            d.queue(digit, 80, 10, Mode::InBand(Voice::Law(Law::Alaw)))
                .unwrap();
        }
        let mut dsp = LegDsp::new(PipelineConfig {
            dtmf: true,
            amd: None,
        });
        let (mut pcm, mut ev) = ([0; FRAME_SAMPLES], [0; PAYLOAD_LEN]);
        let mut heard = Vec::new();
        let mut frames = Vec::new();
        while let Some(now) = d.poll_timeout(t0) {
            let Some(Sent::Tone {
                deadline,
                marker,
                voice: Voice::Law(law),
            }) = d.poll(now, t0, &mut pcm, &mut ev)
            else {
                continue;
            };
            frames.push((deadline, marker));
            // Through the codec, as the far end gets it.
            let codes: Vec<u8> = pcm.iter().map(|&s| law.encode(s)).collect();
            dsp.push_g711(law, &codes, &mut heard);
        }
        dsp.finish(&mut heard);
        let digits: Vec<char> = heard
            .iter()
            .filter_map(|e| match e {
                Event::Digit(d) => Some(d.digit),
                Event::Amd(_) => None,
            })
            .collect();
        assert_eq!(digits, ['1', '1', '9']);
        // 4 tone frames + 3 silent ones per key, back to back on the 20 ms clock.
        assert_eq!(frames.len(), 21);
        for (k, (at, marker)) in frames.iter().enumerate() {
            assert_eq!(*at, t0 + FRAME * k as u32);
            assert_eq!(*marker, k % 7 == 0);
        }
        assert!(!d.owns_egress());
    }

    #[test]
    fn queue_is_bounded() {
        let mut d = DtmfSend::default();
        for _ in 0..MAX_QUEUED {
            d.queue('0', 50, 10, Mode::Rfc4733(8000)).unwrap();
        }
        assert!(d.queue('0', 50, 10, Mode::Rfc4733(8000)).is_err());
    }
}
