//! The command/event API of a media shard
//!
//! Signaling (in-process) and the ng front door both speak to a shard through these plain types:
//! a [`Command`] goes in (through the shard's queue + eventfd, which the driver owns), [`Event`]s
//! come out (through its channel). Nothing here owns a channel, a socket or a clock. Every command
//! names its call, so a front door can route it to the shard that owns the call
//! ([`Command::call_id`]).
//!
//! ```text
//!  signaling / ng ──Command──▶ shard (driver + endpoints) ──Event──▶ signaling / ng
//! ```
//!
//! The set will grow (players, dubbing and forks are sketched here and built later); variants
//! are `#[non_exhaustive]` so adding one is not a breaking change for matchers.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use dsp::amd::{AmdConfig, AmdEvent};

use crate::endpoint::{Direction, DtmfMode, LegStats, PtMap, RtcpPolicy};
use crate::ports::{PortPair, PortsExhausted};
use crate::telephone_event::KeyPress;

/// A call's id (SIP Call-ID, or ng `call-id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub String);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A leg within a call (A-leg 0, B-legs 1..; ng's from-tag/to-tag are mapped by the front door).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u32);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg{}", self.0)
    }
}

/// A dub track on a leg (jambonz `dub` track name, mapped to a number by signaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TrackId(pub u32);

/// An audio fork (listen/transcribe stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForkId(pub u32);

/// Parameters of [`Command::CreateEndpoint`] and [`Command::UpdateEndpoint`].
#[derive(Debug, Clone)]
pub struct EndpointSpec {
    /// The remote's media address from its SDP (c= and m=), if any yet.
    pub sdp_address: Option<SocketAddr>,
    /// Payload types negotiated on this leg.
    pub pt_map: PtMap,
    /// Clock of the leg's telephone-event (8000, or 48000 beside Opus).
    pub telephone_event_rate: u32,
    /// RTP and RTCP on one port (RFC 5761).
    pub rtcp_mux: bool,
    /// The remote's SDP direction.
    pub direction: Direction,
    /// Latch on the first packet from anywhere (ng `symmetric`/NAT flags).
    pub latch_any: bool,
    /// Media timeout (`None`: the shard's default, 60 s).
    pub media_timeout: Option<Duration>,
    /// RFC 4733 handling.
    pub dtmf: DtmfMode,
    /// RTCP handling.
    pub rtcp: RtcpPolicy,
    /// SRTP (SDES) keys: the leg speaks SRTP/SRTCP, the relay decrypts what it receives and
    /// encrypts what it sends (`None`: plain RTP). Boxed: commands stay small for plain legs.
    pub srtp: Option<Box<crate::srtp::SrtpKeys>>,
}

impl Default for EndpointSpec {
    fn default() -> Self {
        EndpointSpec {
            sdp_address: None,
            pt_map: PtMap::default(),
            telephone_event_rate: 8000,
            rtcp_mux: false,
            direction: Direction::SendRecv,
            latch_any: false,
            media_timeout: None,
            dtmf: DtmfMode::Forward,
            rtcp: RtcpPolicy::Drop,
            srtp: None,
        }
    }
}

/// What a dub command does to a track.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum DubAction {
    /// Create the track (silent until audio is played into it).
    AddTrack,
    /// Remove the track.
    RemoveTrack,
    /// Play 8 kHz mono PCM into the track, mixed over the leg's audio.
    Play {
        /// Samples, 8 kHz mono.
        samples: Arc<[i16]>,
        /// Start again at the end.
        looped: bool,
        /// Gain in dB applied to the track.
        gain_db: i8,
    },
    /// Queue 8 kHz mono PCM after what the track plays, or start playing it: audio that
    /// arrives in pieces (a listen websocket's). At most [`MAX_DUB_QUEUE`] pieces wait; more
    /// are refused. [`DubAction::Silence`] drops the queue too.
    Append {
        /// Samples, 8 kHz mono.
        samples: Arc<[i16]>,
        /// Gain in dB applied to the track (when this piece starts it).
        gain_db: i8,
    },
    /// Stop what the track plays (the track stays).
    Silence,
}

/// Pieces a dub track queues behind the one it plays ([`DubAction::Append`]).
pub const MAX_DUB_QUEUE: usize = 1024;

/// Which audio a fork carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ForkMix {
    /// The leg's received audio only.
    #[default]
    Received,
    /// Received and sent audio mixed to mono.
    Mixed,
    /// Received left, sent right.
    Stereo,
}

/// A request to a shard.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Command {
    /// Allocate ports and create a leg. Answered by [`Event::EndpointCreated`] or
    /// [`Event::Error`] (e.g. [`ApiError::PortsExhausted`] → 503).
    CreateEndpoint {
        /// Call.
        call_id: CallId,
        /// New leg.
        leg: LegId,
        /// Negotiated parameters.
        spec: EndpointSpec,
    },
    /// New SDP for a leg (re-INVITE, ng `answer`/re-`offer`): address, PTs, direction; latching
    /// starts over.
    UpdateEndpoint {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// New parameters (`rtcp_mux` changes are ignored: the ports stay).
        spec: EndpointSpec,
    },
    /// Relay RTP between two legs of the call (both on this shard).
    Bridge {
        /// Call.
        call_id: CallId,
        /// One leg.
        a: LegId,
        /// The other leg.
        b: LegId,
    },
    /// Stop relaying from and to `leg` (its ports stay; it may be bridged again).
    Unbridge {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
    },
    /// Play 8 kHz mono PCM into a leg instead of its bridged audio (dialMusic, ringback,
    /// announcements). The egress stream stays continuous across the switch.
    PlayPcm {
        /// Call.
        call_id: CallId,
        /// Leg that hears it.
        leg: LegId,
        /// Samples, 8 kHz mono, shared (no copy per leg).
        samples: Arc<[i16]>,
        /// Start again at the end (until [`Command::StopPlay`]).
        looped: bool,
    },
    /// Stop a play; the bridged audio (if any) resumes. Answered by [`Event::PlayDone`].
    StopPlay {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
    },
    /// Per-leg mixer tracks (jambonz `dub`).
    Dub {
        /// Call.
        call_id: CallId,
        /// Leg whose outgoing audio is dubbed.
        leg: LegId,
        /// Track.
        track: TrackId,
        /// What to do.
        action: DubAction,
    },
    /// Run the DSP pipeline on a leg's received audio: in-band DTMF and/or AMD (with beep and
    /// fax). `dtmf: false, amd: None` removes the tap.
    Tap {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// Detect in-band DTMF (unified with RFC 4733 digits).
        dtmf: bool,
        /// Answering-machine detection from now on.
        amd: Option<AmdConfig>,
    },
    /// Start sending a leg's decoded audio out as [`Event::AudioFrame`]s.
    ForkAudio {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// The fork's id (chosen by the caller).
        fork: ForkId,
        /// Which audio.
        mix: ForkMix,
        /// Output sample rate (8000, 16000, 24000 or 48000).
        sample_rate: u32,
    },
    /// Stop a fork.
    StopFork {
        /// Call.
        call_id: CallId,
        /// Fork.
        fork: ForkId,
    },
    /// Send one DTMF key into a leg: RFC 4733 when negotiated, in-band tones otherwise.
    SendDtmf {
        /// Call.
        call_id: CallId,
        /// Leg that hears it.
        leg: LegId,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// Tone length.
        duration_ms: u32,
        /// Level in -dBm0 (RFC 4733 volume, 0–63; 10 is usual).
        volume: u8,
    },
    /// Stop (or resume) relaying RFC 4733 from a leg while still reporting it (ng `block DTMF`).
    BlockDtmf {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// Blocked or not.
        blocked: bool,
    },
    /// Stop (or resume) relaying any media from a leg (ng `block media`).
    BlockMedia {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// Blocked or not.
        blocked: bool,
    },
    /// Free a leg (or, with `leg: None`, the whole call) and its ports. Answered by
    /// [`Event::Stats`] per freed leg (final numbers for the CDR / ng `delete`).
    Destroy {
        /// Call.
        call_id: CallId,
        /// Leg, or all.
        leg: Option<LegId>,
    },
    /// Ask for [`Event::Stats`] of a leg or of every leg of the call (ng `query`).
    Query {
        /// Call.
        call_id: CallId,
        /// Leg, or all.
        leg: Option<LegId>,
    },
}

impl Command {
    /// The leg the command names, if one.
    pub fn leg(&self) -> Option<LegId> {
        match self {
            Command::CreateEndpoint { leg, .. }
            | Command::UpdateEndpoint { leg, .. }
            | Command::Unbridge { leg, .. }
            | Command::PlayPcm { leg, .. }
            | Command::StopPlay { leg, .. }
            | Command::Dub { leg, .. }
            | Command::Tap { leg, .. }
            | Command::ForkAudio { leg, .. }
            | Command::SendDtmf { leg, .. }
            | Command::BlockDtmf { leg, .. }
            | Command::BlockMedia { leg, .. } => Some(*leg),
            Command::Bridge { a, .. } => Some(*a),
            Command::Destroy { leg, .. } | Command::Query { leg, .. } => *leg,
            Command::StopFork { .. } => None,
        }
    }

    /// The call the command is about (for routing to its shard).
    pub fn call_id(&self) -> &CallId {
        match self {
            Command::CreateEndpoint { call_id, .. }
            | Command::UpdateEndpoint { call_id, .. }
            | Command::Bridge { call_id, .. }
            | Command::Unbridge { call_id, .. }
            | Command::PlayPcm { call_id, .. }
            | Command::StopPlay { call_id, .. }
            | Command::Dub { call_id, .. }
            | Command::Tap { call_id, .. }
            | Command::ForkAudio { call_id, .. }
            | Command::StopFork { call_id, .. }
            | Command::SendDtmf { call_id, .. }
            | Command::BlockDtmf { call_id, .. }
            | Command::BlockMedia { call_id, .. }
            | Command::Destroy { call_id, .. }
            | Command::Query { call_id, .. } => call_id,
        }
    }

    /// Check what can be checked before the shard sees it (digit, volume, duration).
    pub fn validate(&self) -> Result<(), ApiError> {
        match self {
            Command::SendDtmf {
                digit,
                duration_ms,
                volume,
                ..
            } => {
                if crate::telephone_event::digit_event(*digit).is_none() {
                    return Err(ApiError::InvalidDigit(*digit));
                }
                if *volume > 63 || *duration_ms == 0 || *duration_ms > 10_000 {
                    return Err(ApiError::InvalidArgument("dtmf duration or volume"));
                }
                Ok(())
            }
            Command::ForkAudio { sample_rate, .. }
                if !matches!(sample_rate, 8000 | 16000 | 24000 | 48000) =>
            {
                Err(ApiError::InvalidArgument("fork sample rate"))
            }
            Command::PlayPcm { samples, .. } if samples.is_empty() => {
                Err(ApiError::InvalidArgument("empty PCM"))
            }
            Command::Bridge { a, b, .. } if a == b => Err(ApiError::InvalidArgument(
                "a leg cannot be bridged to itself",
            )),
            _ => Ok(()),
        }
    }
}

/// Where a digit was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigitSource {
    /// RFC 4733 telephone-event.
    Rfc4733,
    /// Tones in the audio (dsp DTMF detector).
    InBand,
    /// SIP INFO (reported by signaling, same event shape).
    Info,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiError {
    /// No free port: answer 503.
    PortsExhausted,
    /// No such call on this shard.
    UnknownCall(CallId),
    /// No such leg in the call.
    UnknownLeg(CallId, LegId),
    /// The leg already exists.
    LegExists(CallId, LegId),
    /// Not a DTMF key.
    InvalidDigit(char),
    /// A bad argument (what).
    InvalidArgument(&'static str),
    /// The shard is stopped or did not answer in time: answer 503.
    Unavailable(&'static str),
}

impl ApiError {
    /// The status a SIP/HTTP caller maps it to.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::PortsExhausted | ApiError::Unavailable(_) => PortsExhausted::STATUS,
            ApiError::UnknownCall(_) | ApiError::UnknownLeg(..) => 404,
            ApiError::LegExists(..) => 409,
            ApiError::InvalidDigit(_) | ApiError::InvalidArgument(_) => 400,
        }
    }
}

impl From<PortsExhausted> for ApiError {
    fn from(_: PortsExhausted) -> Self {
        ApiError::PortsExhausted
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::PortsExhausted => write!(f, "{PortsExhausted}"),
            ApiError::UnknownCall(c) => write!(f, "unknown call-id {c}"),
            ApiError::UnknownLeg(c, l) => write!(f, "unknown {l} in call {c}"),
            ApiError::LegExists(c, l) => write!(f, "{l} already exists in call {c}"),
            ApiError::InvalidDigit(d) => write!(f, "{d:?} is not a DTMF key"),
            ApiError::InvalidArgument(what) => write!(f, "invalid {what}"),
            ApiError::Unavailable(why) => write!(f, "media unavailable: {why}"),
        }
    }
}

impl std::error::Error for ApiError {}

/// Runs commands: the shards (`driver`) in production. Both front doors (signaling in-process,
/// the ng server) hold one.
pub trait MediaControl: Send + Sync {
    /// Run one command on the shard that owns its call and return the events that answer it
    /// ([`Event::EndpointCreated`], [`Event::Stats`] per leg, ...). A failed command is `Err`.
    /// Events that come later (digits, timeouts, frames) go to the event channel instead.
    fn request(&self, cmd: Command) -> Result<Vec<Event>, ApiError>;

    /// Run commands nobody waits for (bridge, update, destroy, ...), in order and after every
    /// command requested or posted before; failures come as [`Event::Error`] on the event
    /// channel, and so do the [`Event::Stats`] answers (a destroyed leg's final numbers, for
    /// its CDR); other answers are dropped. One wake-up per shard instead of one round trip per
    /// command. This default, with no event channel, drops every answer.
    fn post(&self, cmds: Vec<Command>) {
        for cmd in cmds {
            if let Err(e) = self.request(cmd) {
                tracing::debug!(error = %e, "posted media command failed");
            }
        }
    }

    /// As [`post`](Self::post), but the shard is not woken for them: they run at its next turn
    /// (a packet, a timer, a later wake-up, at the latest its idle tick of 100 ms). For work
    /// nobody waits on, such as tearing a call down.
    fn post_deferred(&self, cmds: Vec<Command>) {
        self.post(cmds);
    }

    /// Wakes the shards that were given work without a wake-up since their last one
    /// ([`create_posted`](Self::create_posted), [`post_deferred`](Self::post_deferred)): call
    /// it once a burst of such work is queued. Implementations that never defer need nothing
    /// here.
    fn flush(&self) {}

    /// Creates a leg without waiting for its shard where the implementation can: the ports are
    /// taken and bound on the calling thread, and the shard installs the leg in order with what
    /// is posted before and after (a failure there comes as [`Event::Error`]), once woken by the
    /// next [`post`](Self::post) or [`flush`](Self::flush). Returns the local address and
    /// ports, as [`Event::EndpointCreated`] would.
    fn create_posted(
        &self,
        call_id: CallId,
        leg: LegId,
        spec: EndpointSpec,
    ) -> Result<(SocketAddr, PortPair), ApiError> {
        let answer = self.request(Command::CreateEndpoint { call_id, leg, spec })?;
        answer
            .into_iter()
            .find_map(|e| match e {
                Event::EndpointCreated { local, ports, .. } => Some((local, ports)),
                _ => None,
            })
            .ok_or(ApiError::Unavailable("no EndpointCreated in the answer"))
    }
}

/// What a shard reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A leg exists; put these ports in the SDP.
    EndpointCreated {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// Local address the ports are bound on.
        local: SocketAddr,
        /// Its ports.
        ports: PortPair,
    },
    /// A leg learnt (or re-learnt) its peer's address.
    Latched {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// The remote's source address.
        remote: SocketAddr,
    },
    /// One key press.
    Digit {
        /// Call.
        call_id: CallId,
        /// Leg it came from.
        leg: LegId,
        /// `0`–`9`, `*`, `#`, `A`–`D`.
        digit: char,
        /// Onset, in ms of the leg's media time (RFC 4733: the event timestamp; in-band: the
        /// detected tone onset).
        start_ms: u64,
        /// Length in ms.
        duration_ms: u32,
        /// Where it was detected.
        source: DigitSource,
    },
    /// An answering-machine detection result (amd, silence, beep, ...).
    Amd {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// What the detector said.
        event: AmdEvent,
    },
    /// No media on a leg for its media timeout (reported once per silence).
    MediaTimeout {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
    },
    /// A play finished (end of samples, or stopped).
    PlayDone {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
    },
    /// Decoded audio of a fork (20 ms, mono or interleaved stereo per [`ForkMix`]).
    AudioFrame {
        /// Call.
        call_id: CallId,
        /// Fork.
        fork: ForkId,
        /// Samples at the fork's rate.
        samples: Arc<[i16]>,
    },
    /// A leg's counters (answer to [`Command::Query`], and final numbers on destroy).
    Stats {
        /// Call.
        call_id: CallId,
        /// Leg.
        leg: LegId,
        /// The numbers.
        stats: LegStats,
    },
    /// A command failed.
    Error {
        /// Call of the failed command.
        call_id: CallId,
        /// Leg, when the command named one.
        leg: Option<LegId>,
        /// Why.
        error: ApiError,
    },
}

impl Event {
    /// A [`Event::Digit`] from an RFC 4733 key press (`None` for non-DTMF events such as
    /// flash). `clock_rate` is the telephone-event clock; the start is the event's RTP timestamp
    /// converted to ms (the caller subtracts the stream's first timestamp if it wants it
    /// relative).
    pub fn from_key_press(
        call_id: CallId,
        leg: LegId,
        press: &KeyPress,
        start_ticks: u64,
        clock_rate: u32,
    ) -> Option<Event> {
        let rate = u64::from(clock_rate.max(1));
        Some(Event::Digit {
            call_id,
            leg,
            digit: press.digit()?,
            start_ms: start_ticks * 1000 / rate,
            duration_ms: (u64::from(press.duration) * 1000 / rate) as u32,
            source: DigitSource::Rfc4733,
        })
    }

    /// An event from the leg's DSP pipeline (in-band digit or AMD).
    pub fn from_dsp(call_id: CallId, leg: LegId, event: dsp::pipeline::Event) -> Event {
        match event {
            dsp::pipeline::Event::Digit(d) => {
                // dsp sample indexes count 8 kHz samples.
                let rate = 8000;
                Event::Digit {
                    call_id,
                    leg,
                    digit: d.digit,
                    start_ms: d.start * 1000 / rate,
                    duration_ms: (d.end.saturating_sub(d.start) * 1000 / rate) as u32,
                    source: DigitSource::InBand,
                }
            }
            dsp::pipeline::Event::Amd(event) => Event::Amd {
                call_id,
                leg,
                event,
            },
        }
    }

    /// The call the event is about.
    pub fn call_id(&self) -> &CallId {
        match self {
            Event::EndpointCreated { call_id, .. }
            | Event::Latched { call_id, .. }
            | Event::Digit { call_id, .. }
            | Event::Amd { call_id, .. }
            | Event::MediaTimeout { call_id, .. }
            | Event::PlayDone { call_id, .. }
            | Event::AudioFrame { call_id, .. }
            | Event::Stats { call_id, .. }
            | Event::Error { call_id, .. } => call_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephone_event::EndReason;

    fn call() -> CallId {
        CallId("c1@example".into())
    }

    #[test]
    fn routing_and_validation() {
        let c = Command::SendDtmf {
            call_id: call(),
            leg: LegId(1),
            digit: '#',
            duration_ms: 100,
            volume: 10,
        };
        assert_eq!(c.call_id(), &call());
        assert_eq!(c.validate(), Ok(()));
        let bad = Command::SendDtmf {
            call_id: call(),
            leg: LegId(1),
            digit: 'x',
            duration_ms: 100,
            volume: 10,
        };
        assert_eq!(bad.validate(), Err(ApiError::InvalidDigit('x')));
        let same = Command::Bridge {
            call_id: call(),
            a: LegId(0),
            b: LegId(0),
        };
        assert_eq!(same.validate().unwrap_err().status(), 400);
        let play = Command::PlayPcm {
            call_id: call(),
            leg: LegId(0),
            samples: Arc::from(vec![0i16; 160]),
            looped: true,
        };
        assert_eq!(play.validate(), Ok(()));
        let empty = Command::PlayPcm {
            call_id: call(),
            leg: LegId(0),
            samples: Arc::from(Vec::new()),
            looped: false,
        };
        assert_eq!(
            empty.validate(),
            Err(ApiError::InvalidArgument("empty PCM"))
        );
        let tap = Command::Tap {
            call_id: call(),
            leg: LegId(1),
            dtmf: true,
            amd: Some(AmdConfig::default()),
        };
        assert_eq!(tap.call_id(), &call());
    }

    #[test]
    fn errors_map_to_status() {
        assert_eq!(ApiError::from(PortsExhausted).status(), 503);
        assert_eq!(ApiError::UnknownCall(call()).status(), 404);
        assert_eq!(
            ApiError::UnknownLeg(call(), LegId(2)).to_string(),
            "unknown leg2 in call c1@example"
        );
    }

    #[test]
    fn digit_events_from_both_sources() {
        let press = KeyPress {
            event: 5,
            timestamp: 8000,
            duration: 800,
            volume: 10,
            end: EndReason::EndBit,
        };
        match Event::from_key_press(call(), LegId(0), &press, 8000, 8000) {
            Some(Event::Digit {
                digit,
                start_ms,
                duration_ms,
                source,
                ..
            }) => assert_eq!(
                (digit, start_ms, duration_ms, source),
                ('5', 1000, 100, DigitSource::Rfc4733)
            ),
            other => panic!("{other:?}"),
        }
        let flash = KeyPress { event: 16, ..press };
        assert!(Event::from_key_press(call(), LegId(0), &flash, 0, 8000).is_none());
        let d = dsp::pipeline::Event::Digit(dsp::dtmf::Digit {
            digit: '7',
            start: 16000,
            end: 16800,
        });
        match Event::from_dsp(call(), LegId(1), d) {
            Event::Digit {
                digit,
                start_ms,
                duration_ms,
                source,
                ..
            } => assert_eq!(
                (digit, start_ms, duration_ms, source),
                ('7', 2000, 100, DigitSource::InBand)
            ),
            other => panic!("{other:?}"),
        }
        let amd = AmdEvent::Silence { at_ms: 5000 };
        assert!(matches!(
            Event::from_dsp(call(), LegId(1), dsp::pipeline::Event::Amd(amd)),
            Event::Amd { event, .. } if event == amd
        ));
    }
}
