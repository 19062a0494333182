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
//! This file is the contract between the shard and the audio modules; the modules fill it in.

use std::sync::Arc;
use std::time::Instant;

use dsp::amd::AmdConfig;

use crate::api::{ApiError, DigitSource, DubAction, ForkId, ForkMix, TrackId};
use crate::endpoint::Codec;
use crate::telephone_event::KeyPress;

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
pub struct LegAudio {}

impl LegAudio {
    /// Nothing to do (no tap, fork, play, dub or DTMF): the shard may skip every call.
    pub fn is_idle(&self) -> bool {
        true
    }

    /// Start, change or (with `dtmf: false, amd: None`) remove the DSP tap; `now` starts its clock.
    pub fn set_tap(&mut self, _now: Instant, _dtmf: bool, _amd: Option<AmdConfig>) {}

    /// Play 8 kHz PCM to the leg instead of the bridged audio, until the end (or forever when
    /// looped, until [`LegAudio::stop_play`]). `codec` is the leg's egress audio codec.
    pub fn play(&mut self, _now: Instant, _codec: Codec, _samples: Arc<[i16]>, _looped: bool) {}

    /// Stop the player; `true` if one was playing (a [`AudioEvent::PlayDone`] follows).
    pub fn stop_play(&mut self) -> bool {
        false
    }

    /// Apply a dub action to one track of the leg's mixer.
    pub fn dub(
        &mut self,
        _now: Instant,
        _codec: Codec,
        _track: TrackId,
        _action: DubAction,
    ) -> Result<(), ApiError> {
        Err(ApiError::InvalidArgument("dub is not built yet"))
    }

    /// Start a fork of decoded audio (8000 or 16000 Hz).
    pub fn fork(&mut self, _fork: ForkId, _mix: ForkMix, _sample_rate: u32) {}

    /// Stop a fork; `true` if it existed.
    pub fn stop_fork(&mut self, _fork: ForkId) -> bool {
        false
    }

    /// Queue one DTMF key for the leg: RFC 4733 packets when `telephone_event` is `true` (the
    /// leg negotiated telephone-event), else in-band tones in `codec`.
    pub fn send_dtmf(
        &mut self,
        _now: Instant,
        _codec: Codec,
        _telephone_event: bool,
        _digit: char,
        _duration_ms: u32,
        _volume: u8,
    ) -> Result<(), ApiError> {
        Err(ApiError::InvalidArgument("sending DTMF is not built yet"))
    }

    /// A packet the leg's remote sent (validated by the endpoint): audio for the tap and forks.
    pub fn on_received(&mut self, _now: Instant, _codec: Codec, _seq: u16, _payload: &[u8]) {}

    /// An RFC 4733 key press the endpoint decoded from the leg's remote (for the tap's
    /// unified digits).
    pub fn on_key_press(&mut self, _now: Instant, _press: &KeyPress) {}

    /// A bridged packet about to be sent to this leg: dub tracks are mixed into `payload` in place
    /// (G.711 keeps its size) and the sent side of stereo/mixed forks sees it. `false`: do not
    /// send it (a player or a DTMF tone owns the egress now).
    pub fn on_egress(&mut self, _now: Instant, _codec: Codec, _payload: &mut [u8]) -> bool {
        true
    }

    /// A packet the leg must send on its own now (player, dub tracks with no bridged audio, DTMF),
    /// written to `out`; call again until `None`.
    pub fn poll_transmit(&mut self, _now: Instant, _out: &mut [u8]) -> Option<Generated> {
        None
    }

    /// When [`LegAudio::poll_transmit`] or [`LegAudio::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Let timers run (RFC 4733 ends, DTMF dedup windows, tap reorder flush).
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// The next event.
    pub fn poll_event(&mut self) -> Option<AudioEvent> {
        None
    }
}
