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
use crate::codec::{OPUS_RATE, OpusSend};
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
    /// RTP timestamp of the packet in the generator's own media clock (8 kHz, 48 kHz for Opus);
    /// the endpoint's continuity maps it onto the egress stream. All packets of one RFC 4733 event carry the
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
    /// Opus encoder and resamplers of an Opus leg's egress (made when first needed).
    opus: Option<Box<OpusSend>>,
    events: Events,
}

impl LegAudio {
    /// Nothing to do (no tap, fork, play, dub or DTMF): the shard may skip every call.
    pub fn is_idle(&self) -> bool {
        // A fork added before the leg saw a packet has no receive path yet: the first packet
        // starts it, so the leg is not idle.
        self.receive.is_none()
            && self.forks.is_empty()
            && self.player.is_none()
            && !self.dub.has_tracks()
            && !self.dtmf.owns_egress()
            && self.events.is_empty()
    }

    /// [`LegAudio::on_egress`] has nothing to do (no player, dub track, DTMF or fork of the sent
    /// audio): the shard skips it, and does not touch this leg's audio state for the peer's
    /// packets (a tap alone only listens to what the leg receives).
    pub(crate) fn egress_idle(&self) -> bool {
        self.player.is_none()
            && !self.dub.has_tracks()
            && !self.dtmf.owns_egress()
            && !self.forks.wants_sent()
    }

    /// Start, change or (with `dtmf: false, amd: None`) remove the DSP tap; `now` starts its clock.
    ///
    /// With an in-band DTMF tap, RFC 4733 presses given to [`LegAudio::on_key_press`] come out
    /// here too (unified); without one they are not reported by `LegAudio`.
    pub fn set_tap(&mut self, now: Instant, dtmf: bool, amd: Option<AmdConfig>) {
        self.see(now);
        self.events.reserve();
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
    /// player cannot encode (neither G.711 nor Opus), or no samples, ends the play at once.
    pub fn play(&mut self, now: Instant, codec: Codec, samples: Arc<[i16]>, looped: bool) {
        self.see(now);
        self.events.reserve();
        self.stop_play();
        match self.voice(codec) {
            Some(voice) if !samples.is_empty() => {
                self.player = Some(Player::new(now, voice, samples, looped));
            }
            _ => {
                metrics::counter!("dialplane_audio_play_rejected_total").increment(1);
                self.events.push(AudioEvent::PlayDone);
            }
        }
    }

    /// The leg's codec changed (re-INVITE): the play, the dub tracks and in-band DTMF go on in
    /// `codec` (a codec they cannot encode leaves them as they were).
    pub fn set_codec(&mut self, codec: Codec) {
        let Some(voice) = self.voice(codec) else {
            return;
        };
        if let Some(p) = self.player.as_mut() {
            p.set_voice(voice);
        }
        self.dub.set_voice(voice);
        self.dtmf.set_voice(voice);
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
    /// leg whose codec is neither G.711 nor Opus for `Play`.
    pub fn dub(
        &mut self,
        now: Instant,
        codec: Codec,
        track: TrackId,
        action: DubAction,
    ) -> Result<(), ApiError> {
        self.see(now);
        let voice = match action {
            DubAction::Play { .. } => self.voice(codec),
            _ => voice(codec),
        };
        self.dub.apply(now, voice, track, action)
    }

    /// Start a fork of decoded audio (8000 or 16000 Hz; any other rate gives 8000 Hz frames).
    /// A fork with the same id is replaced.
    pub fn fork(&mut self, fork: ForkId, mix: ForkMix, sample_rate: u32) {
        self.events.reserve();
        self.forks.add(fork, mix, sample_rate);
        self.update_receive();
    }

    /// Stop a fork; `true` if it existed.
    pub fn stop_fork(&mut self, fork: ForkId) -> bool {
        let existed = self.forks.remove(fork);
        self.update_receive();
        existed
    }

    /// Queue one DTMF key for the leg: RFC 4733 packets when `telephone_event` is the clock of
    /// the telephone-event the leg negotiated (8000, 48000: timestamps, durations and update
    /// intervals in it), else (`None`) in-band tones in `codec`.
    ///
    /// Keys are sent one after the other with 60 ms between them; bridged audio is not sent
    /// (and a play pauses) until the queue is empty. Errors: not a DTMF key, in-band on a leg
    /// that is neither G.711 nor Opus, or more than 32 keys queued.
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        codec: Codec,
        telephone_event: Option<u32>,
        digit: char,
        duration_ms: u32,
        volume: u8,
    ) -> Result<(), ApiError> {
        self.see(now);
        if digit_event(digit).is_none() {
            return Err(ApiError::InvalidDigit(digit));
        }
        let mode = if let Some(rate) = telephone_event {
            Mode::Rfc4733(rate)
        } else {
            Mode::InBand(self.voice(codec).ok_or(ApiError::InvalidArgument(
                "in-band DTMF needs a G.711 or Opus leg",
            ))?)
        };
        self.dtmf.queue(digit, duration_ms, volume, mode)
    }

    /// A packet the leg's remote sent (validated by the endpoint): audio for the tap and forks.
    /// Payloads that are neither G.711 nor Opus (comfort noise, telephone-event) only use up
    /// their sequence number.
    pub fn on_received(&mut self, now: Instant, codec: Codec, seq: u16, payload: &[u8]) {
        self.see(now);
        if self.receive.is_none() {
            self.update_receive();
        }
        let Some(receive) = self.receive.as_mut() else {
            return;
        };
        let (tap, forks, events) = (&mut self.tap, &mut self.forks, &mut self.events);
        receive.push(now, voice(codec), seq, payload, &mut |pcm: &[i16]| {
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
    /// (G.711 keeps its size; Opus is decoded, mixed and encoded back to the same size) and the
    /// sent side of stereo/mixed forks sees it. `false`: do not send it (a player or a DTMF tone
    /// owns the egress now).
    pub fn on_egress(&mut self, now: Instant, codec: Codec, payload: &mut [u8]) -> bool {
        self.see(now);
        if self.dtmf.owns_egress() || self.player.is_some() {
            return false;
        }
        // Any bridged packet (whatever its codec) covers this frame time: no track-only frame.
        self.dub.on_bridged(now);
        let mix = self.dub.playing();
        if !mix && !self.forks.wants_sent() {
            return true;
        }
        match voice(codec) {
            Some(Voice::Law(law)) => {
                for chunk in payload.chunks_mut(FRAME_SAMPLES) {
                    let mut pcm = [0i16; FRAME_SAMPLES];
                    let pcm = &mut pcm[..chunk.len()];
                    law.decode_slice(chunk, pcm);
                    if mix {
                        self.dub.mix_into(pcm);
                        law.encode_slice(pcm, chunk);
                    }
                    self.forks.push_sent(pcm);
                }
            }
            Some(Voice::Opus) => {
                let Some(opus) = opus_send(&mut self.opus) else {
                    return true;
                };
                let (dub, forks) = (&mut self.dub, &mut self.forks);
                let remixed = opus.remix(payload, |opus, wide| {
                    mix_wide(opus, dub, forks, mix, wide);
                    Ok(())
                });
                if let Err(error) = remixed {
                    tracing::debug!(%error, "bridged Opus not mixed");
                    metrics::counter!("dialplane_audio_mix_failed_total").increment(1);
                }
            }
            None => {}
        }
        true
    }

    /// Bridged audio about to be encoded for this leg (by the transcoder feeding it), as PCM at
    /// `rate` (8 or 48 kHz): dub tracks are mixed in and the sent side of forks sees it, with no
    /// decoding. `false`: do not send it (a player or a DTMF tone owns the egress now).
    pub fn on_egress_pcm(&mut self, now: Instant, rate: u32, pcm: &mut [f32]) -> bool {
        self.see(now);
        if self.dtmf.owns_egress() || self.player.is_some() {
            return false;
        }
        self.dub.on_bridged(now);
        let mix = self.dub.playing();
        if !mix && !self.forks.wants_sent() {
            return true;
        }
        if rate == OPUS_RATE {
            if let Some(opus) = opus_send(&mut self.opus) {
                mix_wide(opus, &mut self.dub, &mut self.forks, mix, pcm);
            }
            return true;
        }
        for chunk in pcm.chunks_mut(FRAME_SAMPLES) {
            let mut narrow = [0i16; FRAME_SAMPLES];
            let narrow = &mut narrow[..chunk.len()];
            for (o, &x) in narrow.iter_mut().zip(chunk.iter()) {
                *o = (x * 32_768.0).clamp(-32_768.0, 32_767.0) as i16;
            }
            if mix {
                self.dub.mix_into(narrow);
                for (o, &x) in chunk.iter_mut().zip(narrow.iter()) {
                    *o = f32::from(x) / 32_768.0;
                }
            }
            self.forks.push_sent(narrow);
        }
        true
    }

    /// A packet the leg must send on its own now (player, dub tracks with no bridged audio, DTMF),
    /// written to `out`; call again until `None`. `out` must hold 160 bytes (an Opus payload
    /// is fitted to it).
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
                    voice,
                } => self.frame(epoch, voice, deadline, marker, &mut pcm, out),
            };
        }
        if let Some(player) = self.player.as_mut() {
            let Some((deadline, marker)) = player.poll(now, &mut pcm) else {
                if let Some(next) = player.next() {
                    self.dub.hold(next);
                }
                return None;
            };
            let (voice, done) = (player.voice(), player.is_done());
            if done {
                self.player = None;
                self.events.push(AudioEvent::PlayDone);
            }
            // The dub tracks ride on the player's frames.
            self.dub.mix_into(&mut pcm);
            self.dub.on_bridged(deadline);
            return self.frame(epoch, voice, deadline, marker, &mut pcm, out);
        }
        let (deadline, marker, voice) = self.dub.poll(now, &mut pcm)?;
        self.frame(epoch, voice, deadline, marker, &mut pcm, out)
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

    /// Let timers run: the tap's reorder flush, and silence for the tap and forks while no
    /// packet comes (the generated packets' deadlines are [`LegAudio::poll_transmit`]'s).
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
    }

    /// Encode one generated 20 ms frame into `out`; the sent side of forks sees it. `None`: the
    /// frame could not be encoded (it is skipped; the next one comes on the clock).
    fn frame(
        &mut self,
        epoch: Instant,
        voice: Voice,
        deadline: Instant,
        marker: bool,
        pcm: &mut [i16; FRAME_SAMPLES],
        out: &mut [u8],
    ) -> Option<Generated> {
        self.forks.push_sent(pcm);
        let ticks = ticks(epoch, deadline);
        let len = match voice {
            Voice::Law(law) => {
                law.encode_slice(pcm, out);
                FRAME_SAMPLES
            }
            Voice::Opus => match opus_send(&mut self.opus)?.encode(pcm, out) {
                Ok(len) => len,
                Err(error) => {
                    tracing::debug!(%error, "generated frame not encoded");
                    metrics::counter!("dialplane_audio_mix_failed_total").increment(1);
                    return None;
                }
            },
        };
        Some(Generated {
            codec: voice.codec(),
            len,
            timestamp: (ticks * u64::from(voice.rate() / 8_000)) as u32,
            marker,
        })
    }

    /// The leg's audio codec as the audio pieces see it; for Opus, the egress encoder is made
    /// here (set-up), so that a play, dub or tone never waits for it on the packet path.
    fn voice(&mut self, codec: Codec) -> Option<Voice> {
        let v = voice(codec)?;
        if v == Voice::Opus {
            opus_send(&mut self.opus)?;
        }
        Some(v)
    }
}

/// A leg's Opus egress state, made on first use.
fn opus_send(slot: &mut Option<Box<OpusSend>>) -> Option<&mut OpusSend> {
    if slot.is_none() {
        match OpusSend::new() {
            Ok(o) => *slot = Some(Box::new(o)),
            Err(error) => {
                tracing::warn!(%error, "no Opus encoder for the leg's audio");
                return None;
            }
        }
    }
    slot.as_deref_mut()
}

/// Dub tracks (8 kHz) widened and added into 48 kHz audio `wide`; the sent side of forks sees
/// the result, narrowed to 8 kHz.
fn mix_wide(opus: &mut OpusSend, dub: &mut Dub, forks: &mut Forks, mix: bool, wide: &mut [f32]) {
    let per_frame = FRAME_SAMPLES * (OPUS_RATE / 8_000) as usize;
    for chunk in wide.chunks_mut(per_frame) {
        let n = chunk.len() / (OPUS_RATE / 8_000) as usize;
        if mix {
            let mut tracks = [0i16; FRAME_SAMPLES];
            dub.mix_into(&mut tracks[..n]);
            if opus.add_widened(&tracks[..n], chunk).is_err() {
                metrics::counter!("dialplane_audio_mix_failed_total").increment(1);
            }
        }
        if forks.wants_sent() {
            let mut narrow = [0i16; FRAME_SAMPLES];
            if let Ok(k) = opus.narrow(chunk, &mut narrow[..n]) {
                forks.push_sent(&narrow[..k]);
            }
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

/// How a leg's audio is coded, for the audio pieces (which work on 8 kHz PCM): G.711, or Opus
/// at 48 kHz (decoded and resampled down, resampled up and encoded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Voice {
    Law(Law),
    Opus,
}

impl Voice {
    fn codec(self) -> Codec {
        match self {
            Voice::Law(Law::Ulaw) => Codec::Pcmu,
            Voice::Law(Law::Alaw) => Codec::Pcma,
            Voice::Opus => Codec::Opus,
        }
    }

    /// The RTP clock (and PCM rate) of the codec.
    fn rate(self) -> u32 {
        match self {
            Voice::Law(_) => 8_000,
            Voice::Opus => OPUS_RATE,
        }
    }
}

/// The audio pieces' view of a codec, `None` for anything they cannot decode.
pub(crate) fn voice(codec: Codec) -> Option<Voice> {
    match codec {
        Codec::Pcmu => Some(Voice::Law(Law::Ulaw)),
        Codec::Pcma => Some(Voice::Law(Law::Alaw)),
        Codec::Opus => Some(Voice::Opus),
        _ => None,
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
    /// Room reserved at set-up, so that pushing never allocates while it is drained.
    const CAPACITY: usize = 32;
    /// Undrained events beyond this drop the oldest (a shard that stopped draining must not
    /// grow without bound).
    const LIMIT: usize = 1024;

    /// Make room when something that reports is set up, not on the packet path.
    fn reserve(&mut self) {
        if self.queue.capacity() < Self::CAPACITY {
            self.queue.reserve(Self::CAPACITY);
        }
    }

    pub(crate) fn push(&mut self, event: AudioEvent) {
        self.reserve();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephone_event::{EndReason, EventReceiver};
    use dsp::amd::AmdEvent;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    /// `spec` (digit, on ms, off ms after) as µ-law packets of 20 ms, after `lead_ms` of silence.
    fn tones(lead_ms: u32, keys: &[(char, u32, u32)]) -> Vec<[u8; FRAME_SAMPLES]> {
        let mut x = vec![0.0f32; lead_ms as usize * 8];
        for &(digit, on, off) in keys {
            x.extend(dsp::dtmf::digits(&digit.to_string(), on, off));
        }
        x.resize(x.len().div_ceil(FRAME_SAMPLES) * FRAME_SAMPLES, 0.0);
        x.chunks(FRAME_SAMPLES)
            .map(|c| {
                let mut p = [0u8; FRAME_SAMPLES];
                for (p, &v) in p.iter_mut().zip(c) {
                    *p = Law::Ulaw.encode((v * 32767.0) as i16);
                }
                p
            })
            .collect()
    }

    /// Feed packet `k` at `t0 + 20k ms` (running timers as a shard would); `hook(k, audio)` runs
    /// after each packet.
    fn feed(
        a: &mut LegAudio,
        t0: Instant,
        packets: &[[u8; FRAME_SAMPLES]],
        mut hook: impl FnMut(usize, &mut LegAudio),
    ) -> Vec<AudioEvent> {
        let mut events = Vec::new();
        for (k, p) in packets.iter().enumerate() {
            let now = t0 + FRAME * k as u32;
            if let Some(t) = a.poll_timeout()
                && t <= now
            {
                a.handle_timeout(now);
            }
            a.on_received(now, Codec::Pcmu, 1000 + k as u16, p);
            hook(k, a);
            events.extend(std::iter::from_fn(|| a.poll_event()));
        }
        events
    }

    fn digits(events: &[AudioEvent]) -> Vec<(char, u64, u32, DigitSource)> {
        events
            .iter()
            .filter_map(|e| match *e {
                AudioEvent::Digit {
                    digit,
                    start_ms,
                    duration_ms,
                    source,
                } => Some((digit, start_ms, duration_ms, source)),
                _ => None,
            })
            .collect()
    }

    fn press(digit: u8, duration: u32, end: EndReason) -> KeyPress {
        KeyPress {
            event: digit,
            timestamp: 0,
            duration,
            volume: 10,
            end,
        }
    }

    #[test]
    fn an_idle_leg_is_small() {
        // Every leg of every call carries one: the buffers come with what needs them.
        assert!(
            std::mem::size_of::<LegAudio>() <= 400,
            "{}",
            std::mem::size_of::<LegAudio>()
        );
        let a = LegAudio::default();
        assert!(a.is_idle() && a.poll_timeout().is_none());
    }

    #[test]
    fn in_band_digit_through_g711_is_reported_once() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.set_tap(t0, true, None);
        assert!(!a.is_idle());
        let got = digits(&feed(
            &mut a,
            t0,
            &tones(200, &[('5', 100, 300)]),
            |_, _| {},
        ));
        assert_eq!(got.len(), 1, "{got:?}");
        let (digit, start, duration, source) = got[0];
        assert_eq!((digit, source), ('5', DigitSource::InBand));
        assert!(
            start.abs_diff(200) <= 10 && duration.abs_diff(100) <= 10,
            "{got:?}"
        );
    }

    #[test]
    fn same_press_by_rfc4733_and_in_band_is_reported_once() {
        let t0 = Instant::now();
        // RFC 4733 first: its end packet comes with the audio packet where the tone ends.
        let mut a = LegAudio::default();
        a.set_tap(t0, true, None);
        let packets = tones(200, &[('5', 100, 400)]);
        let got = digits(&feed(&mut a, t0, &packets, |k, a| {
            if k == 14 {
                a.on_key_press(ms(t0, 280), &press(5, 800, EndReason::EndBit));
            }
        }));
        assert_eq!(got, [('5', 200, 100, DigitSource::Rfc4733)]);

        // In-band first: the end packets were lost, the press closes 200 ms later.
        let mut a = LegAudio::default();
        a.set_tap(t0, true, None);
        let got = digits(&feed(&mut a, t0, &packets, |k, a| {
            if k == 24 {
                a.on_key_press(ms(t0, 480), &press(5, 640, EndReason::Timeout));
            }
        }));
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].3, DigitSource::InBand);
    }

    #[test]
    fn two_presses_of_one_key_are_two_digits() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.set_tap(t0, true, None);
        // '7' at 100-200 ms and again at 400-500 ms, both also sent as RFC 4733.
        let packets = tones(100, &[('7', 100, 200), ('7', 100, 300)]);
        let got = digits(&feed(&mut a, t0, &packets, |k, a| {
            if k == 9 || k == 24 {
                a.on_key_press(t0 + FRAME * k as u32, &press(7, 800, EndReason::EndBit));
            }
        }));
        let keys: Vec<_> = got.iter().map(|d| (d.0, d.1, d.3)).collect();
        assert_eq!(
            keys,
            [
                ('7', 100, DigitSource::Rfc4733),
                ('7', 400, DigitSource::Rfc4733)
            ]
        );
        // Quick presses (40 ms apart, as an autodialer sends) heard both ways stay two.
        let mut c = LegAudio::default();
        c.set_tap(t0, true, None);
        let packets = tones(100, &[('3', 60, 40), ('3', 60, 300)]);
        let got = digits(&feed(&mut c, t0, &packets, |k, a| {
            if k == 7 || k == 12 {
                a.on_key_press(t0 + FRAME * k as u32, &press(3, 480, EndReason::EndBit));
            }
        }));
        assert_eq!(got.len(), 2, "{got:?}");
        // Without a DTMF tap, RFC 4733 presses are not reported here.
        let mut b = LegAudio::default();
        b.set_tap(t0, false, Some(AmdConfig::default()));
        b.on_key_press(t0, &press(7, 800, EndReason::EndBit));
        assert!(b.poll_event().is_none());
    }

    #[test]
    fn amd_runs_on_the_wall_clock_when_no_packet_comes() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.set_tap(t0, false, Some(AmdConfig::default()));
        let mut events = Vec::new();
        while let Some(t) = a.poll_timeout() {
            if t > ms(t0, 6000) {
                break;
            }
            a.handle_timeout(t);
            events.extend(std::iter::from_fn(|| a.poll_event()));
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, AudioEvent::Amd(AmdEvent::Silence { at_ms: 5000 }))),
            "{events:?}"
        );
        a.set_tap(ms(t0, 6000), false, None);
        while a.poll_event().is_some() {}
        assert!(a.is_idle());
    }

    #[test]
    fn player_owns_the_egress_until_play_done() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        let mut bridged = [0xffu8; FRAME_SAMPLES];
        assert!(a.on_egress(t0, Codec::Pcmu, &mut bridged));
        a.play(t0, Codec::Pcma, vec![1000i16; 400].into(), false);
        assert!(!a.on_egress(t0, Codec::Pcmu, &mut bridged));
        let mut out = [0u8; 200];
        let mut sent = Vec::new();
        while let Some(at) = a.poll_timeout() {
            while let Some(g) = a.poll_transmit(at, &mut out) {
                sent.push((at, g));
            }
        }
        assert_eq!(sent.len(), 3);
        for (k, (at, g)) in sent.iter().enumerate() {
            assert_eq!(*at, t0 + FRAME * k as u32);
            assert_eq!(
                (g.codec, g.len, g.timestamp, g.marker),
                (Codec::Pcma, 160, 160 * k as u32, k == 0)
            );
        }
        assert!(matches!(a.poll_event(), Some(AudioEvent::PlayDone)));
        assert!(a.on_egress(ms(t0, 60), Codec::Pcmu, &mut bridged));
        // Looped until stopped; a non-G.711 leg cannot play.
        a.play(ms(t0, 100), Codec::Pcmu, vec![1i16; 10].into(), true);
        assert!(a.poll_transmit(ms(t0, 100), &mut out).is_some());
        assert!(a.stop_play());
        assert!(!a.stop_play());
        assert!(matches!(a.poll_event(), Some(AudioEvent::PlayDone)));
        a.play(ms(t0, 200), Codec::G722, vec![1i16; 10].into(), true);
        assert!(matches!(a.poll_event(), Some(AudioEvent::PlayDone)));
        assert!(a.is_idle());
    }

    #[test]
    fn dub_mixes_into_bridged_payloads_then_goes_alone() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        let track = TrackId(3);
        assert!(a.dub(t0, Codec::Pcmu, track, DubAction::Silence).is_err());
        a.dub(t0, Codec::Pcmu, track, DubAction::AddTrack).unwrap();
        let samples: Arc<[i16]> = vec![4000i16; 8000].into();
        a.dub(
            t0,
            Codec::Pcmu,
            track,
            DubAction::Play {
                samples,
                looped: false,
                gain_db: 0,
            },
        )
        .unwrap();
        let mut out = [0u8; FRAME_SAMPLES];
        for k in 0..3u32 {
            let now = t0 + FRAME * k;
            assert!(a.poll_transmit(now, &mut out).is_none());
            let mut payload = [Law::Ulaw.encode(2000); FRAME_SAMPLES];
            assert!(a.on_egress(now, Codec::Pcmu, &mut payload));
            let level = Law::Ulaw.decode(payload[0]);
            assert!(level.abs_diff(6000) < 200, "{level}");
        }
        // The far side stops: the track goes alone 30 ms after the last bridged packet.
        let next = a.poll_timeout().unwrap();
        assert_eq!(next, ms(t0, 70));
        let g = a.poll_transmit(next, &mut out).unwrap();
        assert_eq!((g.codec, g.len, g.marker), (Codec::Pcmu, 160, true));
        assert!(Law::Ulaw.decode(out[0]).abs_diff(4000) < 200);
        assert_eq!(a.poll_transmit(next, &mut out), None);
        let g2 = a.poll_transmit(next + FRAME, &mut out).unwrap();
        assert_eq!((g2.timestamp - g.timestamp, g2.marker), (160, false));
    }

    #[test]
    fn dtmf_suppresses_the_egress_and_pauses_the_player() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.play(t0, Codec::Pcmu, vec![500i16; 8000].into(), false);
        let mut out = [0u8; FRAME_SAMPLES];
        assert!(a.poll_transmit(t0, &mut out).is_some());
        assert_eq!(
            a.send_dtmf(t0, Codec::G722, None, '1', 100, 10),
            Err(ApiError::InvalidArgument(
                "in-band DTMF needs a G.711 or Opus leg"
            ))
        );
        assert_eq!(
            a.send_dtmf(t0, Codec::Pcmu, Some(8000), 'x', 100, 10),
            Err(ApiError::InvalidDigit('x'))
        );
        a.send_dtmf(ms(t0, 10), Codec::Pcmu, Some(8000), '9', 40, 10)
            .unwrap();
        let mut rx = EventReceiver::new(8000);
        let mut kinds = Vec::new();
        let mut now = ms(t0, 10);
        while kinds.len() < 5 {
            let mut bridged = [0xffu8; FRAME_SAMPLES];
            let egress = a.on_egress(now, Codec::Pcmu, &mut bridged);
            while let Some(g) = a.poll_transmit(now, &mut out) {
                if g.codec == Codec::TelephoneEvent {
                    assert!(!egress);
                    rx.handle_packet(0, g.timestamp, g.marker, &out[..g.len])
                        .unwrap();
                }
                kinds.push(g.codec);
            }
            now = a.poll_timeout().unwrap();
        }
        // One update, the end and its two repeats, then the player resumes.
        assert_eq!(kinds[..4], [Codec::TelephoneEvent; 4]);
        assert_eq!(kinds[4], Codec::Pcmu);
        let k = rx.poll_event().unwrap();
        assert_eq!((k.digit(), k.duration), (Some('9'), 320));
    }

    #[test]
    fn stereo_fork_sees_received_and_generated_audio() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.fork(ForkId(1), ForkMix::Stereo, 16000);
        a.play(t0, Codec::Pcmu, vec![-3000i16; 8000].into(), true);
        let mut out = [0u8; FRAME_SAMPLES];
        let mut frames = Vec::new();
        for k in 0..10u32 {
            let now = t0 + FRAME * k;
            assert!(a.poll_transmit(now, &mut out).is_some());
            a.on_received(
                now,
                Codec::Pcmu,
                k as u16,
                &[Law::Ulaw.encode(3000); FRAME_SAMPLES],
            );
            while let Some(e) = a.poll_event() {
                if let AudioEvent::Frame { fork, samples } = e {
                    assert_eq!(fork, ForkId(1));
                    frames.push(samples);
                }
            }
        }
        assert_eq!(frames.len(), 10);
        assert!(frames.iter().all(|f| f.len() == 640));
        // After the resampler's delay: left positive (received), right negative (played).
        let last = &frames[9];
        assert!(
            last.chunks(2)
                .all(|p| p[0].abs_diff(3000) < 200 && p[1].abs_diff(-3000) < 200)
        );
        assert!(a.stop_fork(ForkId(1)));
    }

    #[test]
    fn in_band_keys_sent_by_one_leg_are_heard_by_the_others_tap() {
        let t0 = Instant::now();
        let (mut tx, mut rx) = (LegAudio::default(), LegAudio::default());
        rx.set_tap(t0, true, None);
        for key in "19#".chars() {
            tx.send_dtmf(t0, Codec::Pcma, None, key, 60, 10).unwrap();
        }
        let mut out = [0u8; FRAME_SAMPLES];
        let mut seq = 0u16;
        let mut now = t0;
        while let Some(t) = tx.poll_timeout() {
            now = t.max(now);
            while let Some(g) = tx.poll_transmit(now, &mut out) {
                assert_eq!((g.codec, g.len), (Codec::Pcma, FRAME_SAMPLES));
                rx.on_received(now, g.codec, seq, &out[..g.len]);
                seq = seq.wrapping_add(1);
            }
        }
        rx.set_tap(now, false, None);
        let got = digits(&std::iter::from_fn(|| rx.poll_event()).collect::<Vec<_>>());
        let keys: String = got.iter().map(|d| d.0).collect();
        assert_eq!(keys, "19#");
        // 60 ms keys, 60 ms apart: onsets every 120 ms.
        for (k, d) in got.iter().enumerate() {
            assert!(d.1.abs_diff(120 * k as u64) <= 10, "{got:?}");
        }
    }

    /// 8 kHz audio as 20 ms Opus payloads (resampled to 48 kHz and encoded, as an Opus phone
    /// would send it).
    fn opus_packets(x: &[f32]) -> Vec<Vec<u8>> {
        use audiopus::coder::Encoder;
        use audiopus::{Application, Channels, SampleRate};
        let wide = dsp::resample::resample(x, 8000, 48000).unwrap();
        let enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
        wide.chunks(960)
            .filter(|c| c.len() == 960)
            .map(|c| {
                let mut out = vec![0u8; 1500];
                let n = enc.encode_float(c, &mut out).unwrap();
                out.truncate(n);
                out
            })
            .collect()
    }

    #[test]
    fn in_band_digit_through_opus_is_reported_once() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.set_tap(t0, true, None);
        let mut x = vec![0.0f32; 1600];
        x.extend(dsp::dtmf::digits("5", 100, 300));
        let mut events = Vec::new();
        // Packet 6 is lost: the tap fills its time with silence and carries on.
        for (k, p) in opus_packets(&x).iter().enumerate() {
            let now = t0 + FRAME * k as u32;
            if let Some(t) = a.poll_timeout()
                && t <= now
            {
                a.handle_timeout(now);
            }
            if k != 6 {
                a.on_received(now, Codec::Opus, 1000 + k as u16, p);
            }
            events.extend(std::iter::from_fn(|| a.poll_event()));
        }
        let got = digits(&events);
        assert_eq!(got.len(), 1, "{got:?}");
        let (digit, start, duration, source) = got[0];
        assert_eq!((digit, source), ('5', DigitSource::InBand));
        // Opus and the resampler delay the audio by a few ms.
        assert!(
            start.abs_diff(205) <= 15 && duration.abs_diff(100) <= 15,
            "{got:?}"
        );
    }

    #[test]
    fn player_on_an_opus_leg_sends_opus_at_48_khz() {
        use crate::codec::tests::{decode_all, tone_share};
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        let tone: Vec<i16> = (0..8000)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect();
        a.play(t0, Codec::Opus, tone.into(), false);
        let mut out = [0u8; 200];
        let mut sent = Vec::new();
        while let Some(at) = a.poll_timeout() {
            while let Some(g) = a.poll_transmit(at, &mut out) {
                sent.push((g, out[..g.len].to_vec()));
            }
        }
        assert_eq!(sent.len(), 50);
        assert!(sent[0].0.marker && sent.iter().skip(1).all(|(g, _)| !g.marker));
        assert!(sent.iter().all(|(g, _)| g.codec == Codec::Opus));
        assert!(
            sent.windows(2)
                .all(|w| w[1].0.timestamp.wrapping_sub(w[0].0.timestamp) == 960)
        );
        let payloads: Vec<Vec<u8>> = sent.into_iter().map(|(_, p)| p).collect();
        let pcm = decode_all(Codec::Opus, &payloads);
        let (share, rms) = tone_share(&pcm[pcm.len() / 4..], 48000, 1000.0);
        assert!(share > 0.8 && rms > 0.1, "share {share} rms {rms}");
        assert!(matches!(a.poll_event(), Some(AudioEvent::PlayDone)));
    }

    #[test]
    fn dub_mixes_into_opus_pcm_and_into_bridged_opus_payloads() {
        use crate::codec::tests::{decode_all, tone_packets, tone_share};
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        let track = TrackId(1);
        a.dub(t0, Codec::Opus, track, DubAction::AddTrack).unwrap();
        let samples: Arc<[i16]> = (0..8000)
            .map(|i| {
                (6000.0 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 8000.0).sin()) as i16
            })
            .collect::<Vec<_>>()
            .into();
        let play = DubAction::Play {
            samples,
            looped: true,
            gain_db: 0,
        };
        a.dub(t0, Codec::Opus, track, play).unwrap();
        // Fed by a transcoder: the 48 kHz PCM gets the track before it is encoded.
        let mut mixed = Vec::new();
        for k in 0..25u32 {
            let mut pcm = [0.0f32; 960];
            assert!(a.on_egress_pcm(t0 + FRAME * k, 48000, &mut pcm));
            mixed.extend_from_slice(&pcm);
        }
        let (share, rms) = tone_share(&mixed[mixed.len() / 2..], 48000, 1000.0);
        assert!(share > 0.9 && (0.1..0.2).contains(&rms), "{share} {rms}");
        // Relayed Opus (a 440 Hz far side): decoded, mixed and encoded back to the same size.
        let mut payloads = Vec::new();
        for (k, (_, mut p)) in tone_packets(Codec::Opus, 440.0, 25).into_iter().enumerate() {
            let len = p.len();
            assert!(a.on_egress(t0 + FRAME * (25 + k as u32), Codec::Opus, &mut p));
            assert_eq!(p.len(), len);
            payloads.push(p);
        }
        let pcm = decode_all(Codec::Opus, &payloads);
        let steady = &pcm[pcm.len() / 2..];
        let (far, _) = tone_share(steady, 48000, 440.0);
        let (dub, _) = tone_share(steady, 48000, 1000.0);
        assert!(far > 0.2 && dub > 0.2, "far {far} dub {dub}");
    }

    #[test]
    fn in_band_keys_sent_on_an_opus_leg_are_heard_by_an_opus_tap() {
        let t0 = Instant::now();
        let (mut tx, mut rx) = (LegAudio::default(), LegAudio::default());
        rx.set_tap(t0, true, None);
        for key in "4*D".chars() {
            tx.send_dtmf(t0, Codec::Opus, None, key, 60, 10).unwrap();
        }
        let mut out = [0u8; FRAME_SAMPLES];
        let (mut seq, mut last_ts) = (0u16, None);
        let mut now = t0;
        while let Some(t) = tx.poll_timeout() {
            now = t.max(now);
            while let Some(g) = tx.poll_transmit(now, &mut out) {
                assert_eq!(g.codec, Codec::Opus);
                if let Some(last) = last_ts {
                    assert_eq!(g.timestamp.wrapping_sub(last) % 960, 0);
                }
                last_ts = Some(g.timestamp);
                rx.on_received(now, g.codec, seq, &out[..g.len]);
                seq = seq.wrapping_add(1);
            }
        }
        rx.set_tap(now, false, None);
        let got = digits(&std::iter::from_fn(|| rx.poll_event()).collect::<Vec<_>>());
        let keys: String = got.iter().map(|d| d.0).collect();
        assert_eq!(keys, "4*D");
    }

    #[test]
    fn a_play_goes_on_in_opus_after_a_codec_change() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.play(t0, Codec::Pcmu, vec![3000i16; 8000].into(), false);
        let mut out = [0u8; FRAME_SAMPLES];
        let g = a.poll_transmit(t0, &mut out).unwrap();
        assert_eq!((g.codec, g.len), (Codec::Pcmu, FRAME_SAMPLES));
        a.set_codec(Codec::Opus);
        let g1 = a.poll_transmit(t0 + FRAME, &mut out).unwrap();
        let g2 = a.poll_transmit(t0 + FRAME * 2, &mut out).unwrap();
        assert_eq!((g1.codec, g2.codec), (Codec::Opus, Codec::Opus));
        assert_eq!(g2.timestamp.wrapping_sub(g1.timestamp), 960);
        // A codec the audio cannot encode leaves it as it was.
        a.set_codec(Codec::G722);
        assert_eq!(
            a.poll_transmit(t0 + FRAME * 3, &mut out).unwrap().codec,
            Codec::Opus
        );
    }

    #[test]
    fn rfc4733_keys_go_out_on_the_legs_48_khz_event_clock() {
        let t0 = Instant::now();
        let mut a = LegAudio::default();
        a.send_dtmf(t0, Codec::Opus, Some(48_000), '7', 100, 10)
            .unwrap();
        let mut rx = EventReceiver::new(48_000);
        let mut out = [0u8; FRAME_SAMPLES];
        let mut stamps = Vec::new();
        let mut now = t0;
        while let Some(t) = a.poll_timeout() {
            now = t.max(now);
            while let Some(g) = a.poll_transmit(now, &mut out) {
                assert_eq!(g.codec, Codec::TelephoneEvent);
                stamps.push(g.timestamp);
                rx.handle_packet(0, g.timestamp, g.marker, &out[..g.len])
                    .unwrap();
            }
        }
        // 100 ms = 4800 ticks at 48 kHz; every packet of the press carries its start.
        let k = rx.poll_event().unwrap();
        assert_eq!((k.digit(), k.duration), (Some('7'), 4800));
        assert!(stamps.len() >= 5 && stamps.iter().all(|&s| s == stamps[0]));
    }
}
