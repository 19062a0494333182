//! One leg's audio beyond plain relaying: player, dub mixer, DSP tap, forks and DTMF sender.
//!
//! Sans-IO, like [`crate::endpoint`]: the shard owns one [`LegAudio`] per leg, feeds it what the
//! leg receives and what is about to be sent to it, asks it for packets it must send on its own
//! (every 20 ms while a player, a dub track or a DTMF tone owns the egress) and drains its events.
//! Nothing here reads a clock, touches a socket or allocates per packet once set up.
//!
//! ```text
//!  remote ──RTP──▶ endpoint ──payload──▶ LegAudio::on_received ──▶ tap (reorder → decode → dsp)
//!                                                               └─▶ forks (decoded frames out)
//!  bridged peer ──payload──▶ LegAudio::on_egress (dub mix in place; may suppress) ──▶ remote
//!  LegAudio::poll_transmit (player / dub-only / DTMF, on the leg's own 20 ms clock) ──▶ remote
//! ```
//!
//! The pieces, each sans-IO with its own tests:
//! - `player`: shared 8 kHz PCM → 20 ms frames on the leg's own clock, once or looped.
//! - `dub`: tracks mixed into the bridged payloads in place, or sent alone when no bridged
//!   audio comes.
//! - `tap`: the received path (reorder buffer, decode, silence for lost packets and DTX) feeding
//!   the dsp pipeline; in-band and RFC 4733 digits unified.
//! - `fork`: received / mixed / stereo 20 ms frames out at 8 or 16 kHz.
//! - `dtmf_send`: queued keys out as RFC 4733 packets or in-band tones.
//!
//! Priority of the egress: a DTMF key being sent, then the player, then the bridged audio (with
//! the dub tracks mixed in), then the dub tracks alone. The player's frames carry the dub tracks
//! too.
//!
//! Allocation happens when something is set up (a tap's FFT plan, a fork's resamplers, the event
//! queue and track table on first use). Per packet nothing is allocated, except that each fork
//! allocates one `Arc<[i16]>` per 20 ms frame it emits (the frame leaves the shard in it).

mod dtmf_send;
mod dub;
mod fork;
mod player;
mod tap;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsp::amd::AmdConfig;
use dsp::g711::Law;

use crate::api::{ApiError, DigitSource, DubAction, ForkId, ForkMix, TrackId};
use crate::endpoint::Codec;
use crate::telephone_event::{KeyPress, digit_event};

use dtmf_send::{DtmfSend, Mode, Sent};
use dub::Dub;
use fork::Forks;
use player::Player;
use tap::{Receive, Tap};

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES: usize = 160;

/// What a leg's audio reports; the shard maps each to an [`crate::api::Event`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AudioEvent {
    /// One key press, in-band and RFC 4733 unified (a press heard both ways is reported once).
    Digit {
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// Onset in ms since the tap started.
        start_ms: u64,
        /// Length in ms.
        duration_ms: u32,
        /// Where it was heard first.
        source: DigitSource,
    },
    /// An AMD / beep / silence / fax result of the tap.
    Amd(dsp::amd::AmdEvent),
    /// The player reached the end of its samples (not looped) or was stopped.
    PlayDone,
    /// 20 ms of a fork's audio at the fork's rate (mono, or interleaved stereo).
    Frame {
        /// Fork.
        fork: ForkId,
        /// Samples.
        samples: Arc<[i16]>,
    },
}

/// A packet payload [`LegAudio::poll_transmit`] wrote for the shard to send to the leg's remote
/// (through [`crate::endpoint::Endpoint::egress`], so the egress stream stays continuous).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generated {
    /// Payload codec ([`Codec::TelephoneEvent`] for RFC 4733 packets).
    pub codec: Codec,
    /// Payload bytes written to the caller's buffer.
    pub len: usize,
    /// RTP timestamp of the packet in the generator's own media clock (8 kHz); the endpoint's
    /// continuity maps it onto the egress stream. All packets of one RFC 4733 event carry the
    /// same timestamp.
    pub timestamp: u32,
    /// Marker bit (first packet of a talk spurt or of an RFC 4733 event).
    pub marker: bool,
}

/// One leg's audio state. See the module docs.
#[derive(Debug, Default)]
pub struct LegAudio {
    /// The first `now` seen: origin of the generated packets' 8 kHz timestamps.
    epoch: Option<Instant>,
    /// The newest `now` seen (a fork started between calls starts its received path then).
    latest: Option<Instant>,
    /// Reorder + decode of the received audio, present while a tap or a fork is.
    receive: Option<Box<Receive>>,
    tap: Option<Box<Tap>>,
    forks: Forks,
    player: Option<Player>,
    dub: Dub,
    dtmf: DtmfSend,
    events: Events,
}

impl LegAudio {
    /// Nothing to do (no tap, fork, play, dub or DTMF): the shard may skip every call.
    pub fn is_idle(&self) -> bool {
        self.receive.is_none()
            && self.player.is_none()
            && !self.dub.has_tracks()
            && !self.dtmf.owns_egress()
            && self.events.is_empty()
    }

    /// Start, change or (with `dtmf: false, amd: None`) remove the DSP tap; `now` starts its clock.
    ///
    /// With an in-band DTMF tap, RFC 4733 presses given to [`LegAudio::on_key_press`] come out
    /// here too (unified); without one they are not reported by `LegAudio`.
    pub fn set_tap(&mut self, now: Instant, dtmf: bool, amd: Option<AmdConfig>) {
        self.see(now);
        if let Some(mut old) = self.tap.take() {
            old.finish(&mut self.events);
        }
        if dtmf || amd.is_some() {
            self.tap = Some(Box::new(Tap::new(dtmf, amd)));
        }
        self.update_receive();
    }

    /// Play 8 kHz PCM to the leg instead of the bridged audio, until the end (or forever when
    /// looped, until [`LegAudio::stop_play`]). `codec` is the leg's egress audio codec.
    ///
    /// A play replaces the one before (which reports [`AudioEvent::PlayDone`]). A codec the
    /// player cannot encode (not G.711), or no samples, ends the play at once.
    pub fn play(&mut self, now: Instant, codec: Codec, samples: Arc<[i16]>, looped: bool) {
        self.see(now);
        self.stop_play();
        match law(codec) {
            Some(law) if !samples.is_empty() => {
                self.player = Some(Player::new(now, law, samples, looped));
            }
            _ => {
                metrics::counter!("dialplane_audio_play_rejected_total").increment(1);
                self.events.push(AudioEvent::PlayDone);
            }
        }
    }

    /// Stop the player; `true` if one was playing (a [`AudioEvent::PlayDone`] follows).
    pub fn stop_play(&mut self) -> bool {
        let playing = self.player.take().is_some();
        if playing {
            self.events.push(AudioEvent::PlayDone);
        }
        playing
    }

    /// Apply a dub action to one track of the leg's mixer.
    ///
    /// Errors: an unknown track (other than for `AddTrack`), more than 8 tracks, empty PCM, or a
    /// leg whose codec is not G.711 for `Play`.
    pub fn dub(
        &mut self,
        now: Instant,
        codec: Codec,
        track: TrackId,
        action: DubAction,
    ) -> Result<(), ApiError> {
        self.see(now);
        self.dub.apply(now, law(codec), track, action)
    }

    /// Start a fork of decoded audio (8000 or 16000 Hz; any other rate gives 8000 Hz frames).
    /// A fork with the same id is replaced.
    pub fn fork(&mut self, fork: ForkId, mix: ForkMix, sample_rate: u32) {
        self.forks.add(fork, mix, sample_rate);
        self.update_receive();
    }

    /// Stop a fork; `true` if it existed.
    pub fn stop_fork(&mut self, fork: ForkId) -> bool {
        let existed = self.forks.remove(fork);
        self.update_receive();
        existed
    }

    /// Queue one DTMF key for the leg: RFC 4733 packets when `telephone_event` is `true` (the
    /// leg negotiated telephone-event), else in-band tones in `codec`.
    ///
    /// Keys are sent one after the other with 60 ms between them; bridged audio is not sent
    /// (and a play pauses) until the queue is empty. Errors: not a DTMF key, in-band on a leg
    /// that is not G.711, or more than 32 keys queued.
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        codec: Codec,
        telephone_event: bool,
        digit: char,
        duration_ms: u32,
        volume: u8,
    ) -> Result<(), ApiError> {
        self.see(now);
        if digit_event(digit).is_none() {
            return Err(ApiError::InvalidDigit(digit));
        }
        let mode = if telephone_event {
            Mode::Rfc4733
        } else {
            Mode::InBand(law(codec).ok_or(ApiError::InvalidArgument(
                "in-band DTMF needs a G.711 leg",
            ))?)
        };
        self.dtmf.queue(digit, duration_ms, volume, mode)
    }

    /// A packet the leg's remote sent (validated by the endpoint): audio for the tap and forks.
    /// Payloads that are not G.711 (comfort noise, telephone-event) only use up their sequence
    /// number.
    pub fn on_received(&mut self, now: Instant, codec: Codec, seq: u16, payload: &[u8]) {
        self.see(now);
        if self.receive.is_none() {
            self.update_receive();
        }
        let Some(receive) = self.receive.as_mut() else {
            return;
        };
        let (tap, forks, events) = (&mut self.tap, &mut self.forks, &mut self.events);
        receive.push(now, law(codec), seq, payload, &mut |pcm: &[i16]| {
            received(tap, forks, events, pcm)
        });
    }

    /// An RFC 4733 key press the endpoint decoded from the leg's remote (for the tap's
    /// unified digits).
    pub fn on_key_press(&mut self, now: Instant, press: &KeyPress) {
        self.see(now);
        if let Some(tap) = self.tap.as_mut() {
            tap.key_press(press, &mut self.events);
        }
    }

    /// A bridged packet about to be sent to this leg: dub tracks are mixed into `payload` in place
    /// (G.711 keeps its size) and the sent side of stereo/mixed forks sees it. `false`: do not
    /// send it (a player or a DTMF tone owns the egress now).
    pub fn on_egress(&mut self, now: Instant, codec: Codec, payload: &mut [u8]) -> bool {
        self.see(now);
        if self.dtmf.owns_egress() || self.player.is_some() {
            return false;
        }
        let Some(law) = law(codec) else {
            return true;
        };
        let mix = self.dub.playing();
        if mix || self.forks.wants_sent() {
            for chunk in payload.chunks_mut(FRAME_SAMPLES) {
                let mut pcm = [0i16; FRAME_SAMPLES];
                let pcm = &mut pcm[..chunk.len()];
                for (s, &c) in pcm.iter_mut().zip(chunk.iter()) {
                    *s = law.decode(c);
                }
                if mix {
                    self.dub.mix_into(pcm);
                    for (c, &s) in chunk.iter_mut().zip(pcm.iter()) {
                        *c = law.encode(s);
                    }
                }
                self.forks.push_sent(pcm);
            }
        }
        self.dub.on_bridged(now);
        true
    }

    /// A packet the leg must send on its own now (player, dub tracks with no bridged audio, DTMF),
    /// written to `out`; call again until `None`. `out` must hold 160 bytes.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Generated> {
        let epoch = self.see(now);
        if out.len() < FRAME_SAMPLES {
            return None;
        }
        let mut pcm = [0i16; FRAME_SAMPLES];
        if self.dtmf.owns_egress() {
            let mut event = [0u8; 4];
            let sent = self.dtmf.poll(now, epoch, &mut pcm, &mut event);
            // Whatever else plays waits for the keys (resumes when the queue is empty).
            let until = self.dtmf.poll_timeout(epoch).unwrap_or(now);
            if let Some(p) = self.player.as_mut() {
                p.hold(until);
            }
            self.dub.hold(until);
            return match sent? {
                Sent::Event { timestamp, marker } => {
                    out[..event.len()].copy_from_slice(&event);
                    Some(Generated {
                        codec: Codec::TelephoneEvent,
                        len: event.len(),
                        timestamp,
                        marker,
                    })
                }
                Sent::Tone {
                    deadline,
                    marker,
                    law,
                } => Some(self.frame(epoch, law, deadline, marker, &mut pcm, out)),
            };
        }
        if let Some(player) = self.player.as_mut() {
            let Some((deadline, marker)) = player.poll(now, &mut pcm) else {
                if let Some(next) = player.next() {
                    self.dub.hold(next);
                }
                return None;
            };
            let (law, done) = (player.law(), player.is_done());
            if done {
                self.player = None;
                self.events.push(AudioEvent::PlayDone);
            }
            // The dub tracks ride on the player's frames.
            self.dub.mix_into(&mut pcm);
            self.dub.on_bridged(deadline);
            return Some(self.frame(epoch, law, deadline, marker, &mut pcm, out));
        }
        let (deadline, marker, law) = self.dub.poll(now, &mut pcm)?;
        Some(self.frame(epoch, law, deadline, marker, &mut pcm, out))
    }

    /// When [`LegAudio::poll_transmit`] or [`LegAudio::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let epoch = self.epoch?;
        let generated = if self.dtmf.owns_egress() {
            self.dtmf.poll_timeout(epoch)
        } else if let Some(p) = &self.player {
            p.next()
        } else {
            self.dub.poll_timeout()
        };
        let received = self.receive.as_ref().map(|r| r.poll_timeout());
        match (generated, received) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Let timers run (RFC 4733 ends, DTMF dedup windows, tap reorder flush).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.see(now);
        let Some(receive) = self.receive.as_mut() else {
            return;
        };
        let (tap, forks, events) = (&mut self.tap, &mut self.forks, &mut self.events);
        receive.handle_timeout(now, &mut |pcm: &[i16]| received(tap, forks, events, pcm));
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<AudioEvent> {
        self.events.pop()
    }

    /// The epoch, set by the first call that brings a `now`.
    fn see(&mut self, now: Instant) -> Instant {
        self.latest = Some(self.latest.map_or(now, |l| l.max(now)));
        *self.epoch.get_or_insert(now)
    }

    /// The received path exists while a tap or a fork needs it.
    fn update_receive(&mut self) {
        let needed = self.tap.is_some() || !self.forks.is_empty();
        match (&self.receive, needed, self.latest) {
            (None, true, Some(now)) => self.receive = Some(Box::new(Receive::new(now))),
            (None, true, None) => {
                // No call has brought a time yet: the first packet starts the path.
            }
            (Some(_), false, _) => self.receive = None,
            _ => {}
        }
        if !needed {
            self.forks.clear_sent();
        }
    }

    /// Encode one generated 20 ms frame into `out`; the sent side of forks sees it.
    fn frame(
        &mut self,
        epoch: Instant,
        law: Law,
        deadline: Instant,
        marker: bool,
        pcm: &mut [i16; FRAME_SAMPLES],
        out: &mut [u8],
    ) -> Generated {
        for (o, &s) in out.iter_mut().zip(pcm.iter()) {
            *o = law.encode(s);
        }
        self.forks.push_sent(pcm);
        Generated {
            codec: codec_of(law),
            len: FRAME_SAMPLES,
            timestamp: ticks(epoch, deadline) as u32,
            marker,
        }
    }
}

/// Decoded received audio, in order: to the tap and the forks.
fn received(tap: &mut Option<Box<Tap>>, forks: &mut Forks, events: &mut Events, pcm: &[i16]) {
    if let Some(tap) = tap {
        tap.push(pcm, events);
    }
    forks.push_received(pcm, events);
}

/// One 20 ms frame.
pub(crate) const FRAME: Duration = Duration::from_millis(20);

/// Frames a late poll may still send at once (the rest are skipped, never burst).
const MAX_CATCH_UP: u32 = 3;

/// The G.711 law of a codec, `None` for anything the audio modules cannot decode.
pub(crate) fn law(codec: Codec) -> Option<Law> {
    match codec {
        Codec::Pcmu => Some(Law::Ulaw),
        Codec::Pcma => Some(Law::Alaw),
        _ => None,
    }
}

fn codec_of(law: Law) -> Codec {
    match law {
        Law::Ulaw => Codec::Pcmu,
        Law::Alaw => Codec::Pcma,
    }
}

/// 8 kHz ticks from `epoch` to `at` (0 before it).
pub(crate) fn ticks(epoch: Instant, at: Instant) -> u64 {
    samples(at.saturating_duration_since(epoch))
}

/// Whole 8 kHz samples in `d`.
pub(crate) fn samples(d: Duration) -> u64 {
    (d.as_nanos() / 125_000) as u64
}

/// The duration of `n` 8 kHz samples.
pub(crate) fn duration(n: u64) -> Duration {
    Duration::from_nanos(n.saturating_mul(125_000))
}

/// The 20 ms clock of one generator, deadline-driven.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pacer {
    next: Option<Instant>,
}

impl Pacer {
    /// First frame due at `at`.
    pub(crate) fn start(&mut self, at: Instant) {
        self.next = Some(at);
    }

    pub(crate) fn stop(&mut self) {
        self.next = None;
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.next
    }

    /// The deadline of the frame due at `now`, if one is; the clock moves on one frame. Polled
    /// late by more than [`MAX_CATCH_UP`] frames, the clock skips ahead so that at most that many
    /// frames go out back to back.
    pub(crate) fn due(&mut self, now: Instant) -> Option<Instant> {
        let next = self.next?;
        if now < next {
            return None;
        }
        let keep = FRAME * (MAX_CATCH_UP - 1);
        let at = if now - next > keep { now - keep } else { next };
        self.next = Some(at + FRAME);
        Some(at)
    }

    /// No frame before `until` (another source owns the egress).
    pub(crate) fn hold(&mut self, until: Instant) {
        if let Some(next) = &mut self.next
            && *next < until
        {
            *next = until;
        }
    }
}

/// Events waiting for [`LegAudio::poll_event`].
#[derive(Debug, Default)]
pub(crate) struct Events {
    queue: VecDeque<AudioEvent>,
}

impl Events {
    /// Room reserved on first use, so that pushing never allocates while it is drained.
    const CAPACITY: usize = 32;
    /// Undrained events beyond this drop the oldest (a shard that stopped draining must not
    /// grow without bound).
    const LIMIT: usize = 1024;

    pub(crate) fn push(&mut self, event: AudioEvent) {
        if self.queue.capacity() == 0 {
            self.queue.reserve(Self::CAPACITY);
        }
        if self.queue.len() >= Self::LIMIT {
            self.queue.pop_front();
            metrics::counter!("dialplane_audio_events_dropped_total").increment(1);
        }
        self.queue.push_back(event);
    }

    fn pop(&mut self) -> Option<AudioEvent> {
        self.queue.pop_front()
    }

    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
