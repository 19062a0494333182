//! One leg's RTP state, sans-IO: latching, ingress checks, egress rewriting, stats, timeouts
//!
//! Deterministic: an [`Endpoint`] reads no clock, opens no socket and allocates nothing after
//! [`Endpoint::new`]. Time is the `now: Instant` argument (a `now` that goes backwards is treated
//! as the latest `now` seen); the driver owns the sockets and the ring.
//!
//! ```text
//!   socket (leg A) ──buf──▶ A.handle_rtp(now, src, buf, Some(&mut B))
//!                              │ parse, RTCP demux, source/latch, stats, PT → Codec
//!                              │ RFC 4733 → EventReceiver → A.poll_event()
//!                              ▼
//!                           B.egress(now, pkt, codec)   (PT map + Continuity, in place)
//!                              ▼
//!   Ingress::Forward { dest, len } ──▶ driver sends buf[..len] to dest from B's socket
//! ```
//!
//! Drive it like this: after every `handle_rtp`/`handle_rtcp`/`handle_timeout`, drain
//! [`Endpoint::poll_event`] until `None`, then sleep until [`Endpoint::poll_timeout`].
//!
//! ```
//! use std::time::{Duration, Instant};
//! use dialplane_media::endpoint::{Endpoint, EndpointConfig, EndpointEvent, Ingress};
//!
//! let t0 = Instant::now(); // the driver's clock; tests use t0 + offsets
//! let cfg = |sdp: &str| EndpointConfig { sdp_address: Some(sdp.parse().unwrap()), ..Default::default() };
//! let mut a = Endpoint::new(t0, cfg("203.0.113.1:4000"));
//! let mut b = Endpoint::new(t0, cfg("198.51.100.2:5000"));
//!
//! // A PCMU packet arrives on A's socket; it is rewritten in place for B.
//! let mut buf = [0x80, 0x00, 0x00, 0x07, 0, 0, 0x03, 0x20, 0, 0, 0, 9, 0xd5, 0xd5];
//! let now = t0 + Duration::from_millis(20);
//! match a.handle_rtp(now, "203.0.113.1:4000".parse().unwrap(), &mut buf, Some(&mut b)) {
//!     Ingress::Forward { dest, len } => assert_eq!((dest.port(), len), (5000, 14)),
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(buf[8..12], 0x5eed_0001u32.to_be_bytes()); // B's egress SSRC
//! while let Some(ev) = a.poll_event() {
//!     assert!(matches!(ev, EndpointEvent::Latched(_)));
//! }
//! // ...then sleep until the earliest of every endpoint's poll_timeout().
//! assert_eq!(a.poll_timeout(), Some(now + Duration::from_secs(60)));
//! ```
//!
//! # Decisions
//! - **Latching**: the peer address is learnt from the first valid RTP packet whose source equals
//!   the SDP address (ip and port); when the SDP address is unusable (none, port 0, unspecified,
//!   RFC 1918, 100.64/10, link-local, IPv6 ULA/link-local; loopback counts as usable) or
//!   [`EndpointConfig::latch_any`] is set, from the first valid RTP packet from anywhere. After
//!   that only the latched address is accepted ("strict source"); everything else is dropped
//!   with reason `"source"`. A new latch happens after [`Endpoint::relatch`] (re-INVITE) or when
//!   the latched source has been quiet for [`EndpointConfig::relatch_after`]; the new source must
//!   qualify by the same rule. After `relatch` the first qualifying packet locks again, even if
//!   it comes from the old address (so the window stays short). RTCP never latches.
//! - **RTCP** (rtcp-mux, or the RTCP port via [`Endpoint::handle_rtcp`]): terminated by default
//!   ([`RtcpPolicy::Drop`], reason `"rtcp"`), because the relay rewrites SSRC/seq/ts and passing
//!   RTCP through unchanged would report on SSRCs the far end never saw. [`RtcpPolicy::Forward`]
//!   passes it unchanged (for setups that keep SSRCs). Generating SR/RR is not done yet. RTCP
//!   from the latched source counts as activity for the media timeout.
//! - **Direction** is the remote party's SDP direction: `recvonly`/`inactive` → its packets are
//!   not forwarded (reason `"direction"`, still latched and counted); `sendonly`/`inactive` → no
//!   packet is sent to it (reason `"direction"` on the sending leg).
//! - **RFC 4733** packets always feed the leg's [`EventReceiver`]; with [`DtmfMode::Forward`]
//!   (default) they are also forwarded (PT mapped), with [`DtmfMode::Consume`] they stop here
//!   ([`Ingress::Event`]).
//! - **Loss and jitter** follow RFC 3550 A.3 and A.8 per source SSRC (a new SSRC starts a new
//!   sequence space; the totals of earlier sources are kept). Telephone-event packets count for
//!   loss but not for jitter (their timestamps mark the press start, not sampling time).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rtp::{self, Continuity, RtpError, RtpPacketMut};
use crate::telephone_event::{EventReceiver, KeyPress};

/// A codec identity shared by both legs; each leg maps it to its own payload type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722.
    G722,
    /// G.729.
    G729,
    /// Opus.
    Opus,
    /// RFC 4733 telephone-event.
    TelephoneEvent,
    /// RFC 3389 comfort noise (passed through).
    ComfortNoise,
    /// Any other codec, identified by a number the caller assigns consistently across legs.
    Other(u16),
}

impl Codec {
    /// The codec an rtpmap names (case-insensitive) at a clock rate. Other codecs get a number
    /// derived from name/rate/channels (FNV-1a folded to 16 bits), so both legs of a call name
    /// the same codec the same way.
    pub fn from_rtpmap(name: &str, rate: u32, channels: Option<u8>) -> Codec {
        match name.to_ascii_uppercase().as_str() {
            "PCMU" => Codec::Pcmu,
            "PCMA" => Codec::Pcma,
            "G722" => Codec::G722,
            "G729" => Codec::G729,
            "OPUS" => Codec::Opus,
            "TELEPHONE-EVENT" => Codec::TelephoneEvent,
            "CN" => Codec::ComfortNoise,
            upper => {
                let mut h: u32 = 0x811c_9dc5;
                let key = format!("{upper}/{rate}/{}", channels.unwrap_or(1));
                for b in key.bytes() {
                    h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
                }
                Codec::Other((h ^ (h >> 16)) as u16)
            }
        }
    }
}

/// The encoding name and clock rate of an RFC 3551 static payload type (table 4) that needs no
/// rtpmap; the one table for the relay's SDP reader and signaling's offer/answer.
pub fn rfc3551_static(pt: u8) -> Option<(&'static str, u32)> {
    Some(match pt {
        0 => ("PCMU", 8000),
        3 => ("GSM", 8000),
        4 => ("G723", 8000),
        8 => ("PCMA", 8000),
        9 => ("G722", 8000),
        13 => ("CN", 8000),
        18 => ("G729", 8000),
        _ => return None,
    })
}

/// Longest payload-type table per leg.
pub const MAX_PAYLOAD_TYPES: usize = 16;

/// A leg's payload types: PT ↔ [`Codec`], at most [`MAX_PAYLOAD_TYPES`] entries.
///
/// Mapping between legs goes through the codec: leg A's PT → codec → leg B's PT (e.g. PCMU 0
/// stays 0; telephone-event 101 on A becomes 96 on B when B negotiated 96).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtMap {
    entries: [(u8, Codec); MAX_PAYLOAD_TYPES],
    len: usize,
}

/// A payload-type table that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PtMapError {
    /// PT above 127, or in 64–95 with rtcp-mux's reserved range (72–76 are always refused).
    InvalidPayloadType(u8),
    /// The same PT listed twice.
    Duplicate(u8),
    /// More than [`MAX_PAYLOAD_TYPES`] entries.
    TooMany,
}

impl std::fmt::Display for PtMapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PtMapError::InvalidPayloadType(pt) => write!(f, "invalid RTP payload type {pt}"),
            PtMapError::Duplicate(pt) => write!(f, "payload type {pt} listed twice"),
            PtMapError::TooMany => write!(f, "more than {MAX_PAYLOAD_TYPES} payload types"),
        }
    }
}

impl std::error::Error for PtMapError {}

impl PtMap {
    /// An empty table.
    pub const fn empty() -> Self {
        PtMap {
            entries: [(0, Codec::Pcmu); MAX_PAYLOAD_TYPES],
            len: 0,
        }
    }

    /// Build from `(pt, codec)` pairs.
    pub fn new(pairs: &[(u8, Codec)]) -> Result<Self, PtMapError> {
        let mut map = PtMap::empty();
        for &(pt, codec) in pairs {
            map.insert(pt, codec)?;
        }
        Ok(map)
    }

    /// Add one entry.
    pub fn insert(&mut self, pt: u8, codec: Codec) -> Result<(), PtMapError> {
        if pt > 127 || (72..=76).contains(&pt) {
            return Err(PtMapError::InvalidPayloadType(pt));
        }
        if self.codec(pt).is_some() {
            return Err(PtMapError::Duplicate(pt));
        }
        let slot = self.entries.get_mut(self.len).ok_or(PtMapError::TooMany)?;
        *slot = (pt, codec);
        self.len += 1;
        Ok(())
    }

    /// The codec of `pt` on this leg.
    pub fn codec(&self, pt: u8) -> Option<Codec> {
        self.entries[..self.len]
            .iter()
            .find(|e| e.0 == pt)
            .map(|e| e.1)
    }

    /// The codecs in table order (the order of the SDP).
    pub fn codecs(&self) -> impl Iterator<Item = Codec> + '_ {
        self.entries[..self.len].iter().map(|e| e.1)
    }

    /// This leg's PT for `codec` (the first listed, if several).
    pub fn payload_type(&self, codec: Codec) -> Option<u8> {
        self.entries[..self.len]
            .iter()
            .find(|e| e.1 == codec)
            .map(|e| e.0)
    }
}

impl Default for PtMap {
    /// The usual carrier set: PCMU 0, PCMA 8, G722 9, CN 13, G729 18, telephone-event 101.
    fn default() -> Self {
        // The pairs are distinct, valid and fewer than MAX_PAYLOAD_TYPES.
        PtMap::new(&[
            (0, Codec::Pcmu),
            (8, Codec::Pcma),
            (9, Codec::G722),
            (13, Codec::ComfortNoise),
            (18, Codec::G729),
            (101, Codec::TelephoneEvent),
        ])
        .expect("static table is valid")
    }
}

/// The remote party's SDP direction (RFC 3264 attribute as the remote wrote it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Both ways.
    #[default]
    SendRecv,
    /// The remote only sends (e.g. music on hold): forward its packets, send it nothing.
    SendOnly,
    /// The remote only receives: drop its packets, send to it.
    RecvOnly,
    /// Neither.
    Inactive,
}

impl Direction {
    /// Whether packets from the remote are forwarded.
    pub fn remote_sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether packets are sent to the remote.
    pub fn remote_receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// What to do with RTCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtcpPolicy {
    /// Terminate: drop with reason `"rtcp"` (counted in `rtcp_in` and under that reason).
    #[default]
    Drop,
    /// Pass through unchanged to the bridged peer.
    Forward,
}

/// What to do with RFC 4733 packets after the receiver has seen them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DtmfMode {
    /// Report and forward (PT mapped).
    #[default]
    Forward,
    /// Report only (ng `block DTMF`).
    Consume,
}

/// Per-leg configuration.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// The remote's address from its SDP (c= and m=), if known.
    pub sdp_address: Option<SocketAddr>,
    /// Latch on the first valid packet from anywhere even if the SDP address looks reachable.
    pub latch_any: bool,
    /// A latched source silent this long may be replaced; `None`: only [`Endpoint::relatch`].
    pub relatch_after: Option<Duration>,
    /// No valid packet for this long → [`EndpointEvent::MediaTimeout`] (default 60 s).
    pub media_timeout: Duration,
    /// RTP and RTCP share the port (RFC 5761).
    pub rtcp_mux: bool,
    /// RTCP handling.
    pub rtcp: RtcpPolicy,
    /// RFC 4733 handling.
    pub dtmf: DtmfMode,
    /// This leg's payload types.
    pub pt_map: PtMap,
    /// Media clock of the leg's audio codec (8000 for G.711, 48000 for Opus).
    pub clock_rate: u32,
    /// Clock of the leg's telephone-event (RFC 4733 timestamps and durations).
    pub event_rate: u32,
    /// The remote's direction.
    pub direction: Direction,
    /// Egress SSRC, first sequence number and first timestamp (the caller draws them at random).
    pub egress_seed: (u32, u16, u32),
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            sdp_address: None,
            latch_any: false,
            relatch_after: Some(Duration::from_secs(10)),
            media_timeout: Duration::from_secs(60),
            rtcp_mux: false,
            rtcp: RtcpPolicy::Drop,
            dtmf: DtmfMode::Forward,
            pt_map: PtMap::default(),
            clock_rate: 8000,
            event_rate: 8000,
            direction: Direction::SendRecv,
            egress_seed: (0x5eed_0001, 0, 0),
        }
    }
}

/// What the driver does with a received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Ingress {
    /// Send `buf[..len]` (already rewritten in place) to `dest` from the bridged peer's socket.
    Forward {
        /// Where.
        dest: SocketAddr,
        /// How many bytes.
        len: usize,
    },
    /// An RFC 4733 packet consumed here; drain [`Endpoint::poll_event`].
    Event,
    /// Dropped and counted; the reason is a metrics label.
    Drop(&'static str),
}

/// An endpoint's timers (see [`Endpoint::next_timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// No valid packet for [`EndpointConfig::media_timeout`].
    Media,
    /// An RFC 4733 press whose end packets may be lost (the receiver's 200 ms timeout).
    DtmfEnd,
}

/// What an endpoint reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndpointEvent {
    /// The peer address was (re)learnt.
    Latched(SocketAddr),
    /// One RFC 4733 key press.
    Digit(KeyPress),
    /// No valid packet for the media timeout (reported once per silence).
    MediaTimeout,
}

/// Every drop reason an endpoint reports, for pre-registering metrics labels.
pub const DROP_REASONS: [&str; 16] = crate::rtp::drop_reasons(&[
    "source",
    "direction",
    "payload_type",
    "codec",
    "rtcp",
    "unbridged",
    "peer_address",
    "event_short",
    "rtcp_invalid",
    "blocked",
]);

fn reason_index(reason: &'static str) -> usize {
    let i = DROP_REASONS.iter().position(|r| *r == reason);
    // Every reason produced here is listed (tests check the RtpError labels).
    debug_assert!(i.is_some(), "unlisted drop reason {reason}");
    i.unwrap_or(0)
}

/// Per-leg counters and receive quality, for `query`/`statistics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegStats {
    /// Valid RTP packets accepted from the latched source.
    pub packets_in: u64,
    /// Their bytes (whole RTP packets).
    pub bytes_in: u64,
    /// RTCP packets from the latched source.
    pub rtcp_in: u64,
    /// Packets sent to this leg's remote.
    pub packets_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Drops by reason, indexed like [`DROP_REASONS`].
    pub drops: [u64; DROP_REASONS.len()],
    /// Packets expected from extended sequence numbers (RFC 3550 A.3), all sources.
    pub expected: u64,
    /// Packets received (duplicates included, as in A.3), all sources.
    pub received: u64,
    /// Interarrival jitter of the current source, in timestamp units (A.8).
    pub jitter: u32,
    /// The media clock used for `jitter`.
    pub clock_rate: u32,
}

impl LegStats {
    /// Drops with `reason` (0 for an unknown label).
    pub fn dropped(&self, reason: &str) -> u64 {
        crate::rtp::count_for(&DROP_REASONS, &self.drops, reason)
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.drops.iter().sum()
    }

    /// Cumulative packets lost, expected − received (negative with duplicates), RFC 3550 A.3.
    pub fn lost(&self) -> i64 {
        self.expected as i64 - self.received as i64
    }

    /// Jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter) * 1000.0 / f64::from(self.clock_rate.max(1))
    }
}

/// RFC 3550 A.1/A.3/A.8 receive state of one source.
#[derive(Debug, Clone, Copy)]
struct Source {
    ssrc: u32,
    base_seq: u64,
    max_seq: u64,
    received: u64,
    /// Previous transit time (arrival ticks − timestamp), wrapping.
    transit: Option<u32>,
    /// Jitter × 16 (A.8's fixed-point form).
    jitter16: u64,
}

/// One leg's RTP state.
#[derive(Debug, Clone)]
pub struct Endpoint {
    config: EndpointConfig,
    epoch: Instant,
    last_now: Instant,
    latched: Option<SocketAddr>,
    /// The next qualifying packet may replace the latch.
    unlatched: bool,
    last_rx: Instant,
    timed_out: bool,
    continuity: Continuity,
    events: EventReceiver,
    pending_latched: Option<SocketAddr>,
    pending_timeout: bool,
    stats: LegStats,
    source: Option<Source>,
    /// expected/received of earlier sources.
    prior_expected: u64,
    prior_received: u64,
    blocked: bool,
}

/// Whether RTP from anywhere may latch because `addr` cannot be the packets' source.
pub fn is_unreachable(addr: Option<SocketAddr>) -> bool {
    let Some(addr) = addr else { return true };
    if addr.port() == 0 {
        return true;
    }
    match addr.ip() {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_unspecified()
                || ip.is_private()
                || ip.is_link_local()
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(ip) => {
            let s = ip.segments()[0];
            ip.is_unspecified()
                || (s & 0xfe00) == 0xfc00
                || (s & 0xffc0) == 0xfe80
                || ip.to_ipv4_mapped().is_some_and(|v4| {
                    is_unreachable(Some(SocketAddr::new(IpAddr::V4(v4), addr.port())))
                })
        }
    }
}

impl Endpoint {
    /// A leg created at `now` (the media timeout runs from here until the first packet).
    pub fn new(now: Instant, config: EndpointConfig) -> Self {
        let (ssrc, seq, ts) = config.egress_seed;
        let rate = config.clock_rate.max(1);
        Endpoint {
            continuity: Continuity::new(ssrc, seq, ts),
            events: EventReceiver::new(config.event_rate.max(1)),
            stats: LegStats {
                clock_rate: rate,
                ..LegStats::default()
            },
            config,
            epoch: now,
            last_now: now,
            latched: None,
            unlatched: true,
            last_rx: now,
            timed_out: false,
            pending_latched: None,
            pending_timeout: false,
            source: None,
            prior_expected: 0,
            prior_received: 0,
            blocked: false,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EndpointConfig {
        &self.config
    }

    /// The latched peer address.
    pub fn latched(&self) -> Option<SocketAddr> {
        self.latched
    }

    /// Counters and receive quality.
    pub fn stats(&self) -> LegStats {
        self.stats
    }

    /// The remote's direction.
    pub fn direction(&self) -> Direction {
        self.config.direction
    }

    /// Change the remote's direction (hold/resume).
    pub fn set_direction(&mut self, direction: Direction) {
        self.config.direction = direction;
    }

    /// New SDP address (re-INVITE); latching starts over ([`relatch`](Self::relatch)).
    pub fn set_sdp_address(&mut self, addr: Option<SocketAddr>) {
        self.config.sdp_address = addr;
        self.relatch();
    }

    /// New payload types (re-INVITE).
    pub fn set_pt_map(&mut self, map: PtMap) {
        self.config.pt_map = map;
    }

    /// New telephone-event clock (re-INVITE); a press in progress is forgotten.
    pub fn set_event_rate(&mut self, rate: u32) {
        if rate.max(1) != self.config.event_rate {
            self.config.event_rate = rate.max(1);
            self.events = EventReceiver::new(self.config.event_rate);
        }
    }

    /// New media clock (a re-INVITE changed the audio codec, e.g. PCMU at 8 kHz to Opus at
    /// 48 kHz): the egress timestamps continue across the change at the new rate and jitter is
    /// measured afresh.
    pub fn set_clock_rate(&mut self, now: Instant, rate: u32) {
        let rate = rate.max(1);
        let old_rate = self.stats.clock_rate;
        if rate == old_rate {
            return;
        }
        let now = self.clamp(now);
        let old_now = self.ticks(now);
        self.stats.clock_rate = rate;
        self.config.clock_rate = rate;
        self.continuity
            .rescale(old_rate, rate, old_now, self.ticks(now));
        if let Some(s) = &mut self.source {
            s.transit = None;
            s.jitter16 = 0;
        }
    }

    /// Report RFC 4733 presses and forward them, or only report them (ng `block DTMF`).
    pub fn set_dtmf_mode(&mut self, mode: DtmfMode) {
        self.config.dtmf = mode;
    }

    /// Stop (or resume) forwarding this leg's media (ng `block media`): its packets are still
    /// latched, counted and scanned for RFC 4733, then dropped with reason `"blocked"`.
    pub fn set_media_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
    }

    /// Whether this leg's media is blocked ([`set_media_blocked`](Self::set_media_blocked)).
    pub fn media_blocked(&self) -> bool {
        self.blocked
    }

    /// Latch on the first packet from anywhere, or only from the SDP address (re-INVITE, ng
    /// flags).
    pub fn set_latch_any(&mut self, latch_any: bool) {
        self.config.latch_any = latch_any;
    }

    /// A new media timeout, counted from the last packet.
    pub fn set_media_timeout(&mut self, timeout: Duration) {
        self.config.media_timeout = timeout;
    }

    /// Terminate or pass RTCP through.
    pub fn set_rtcp_policy(&mut self, policy: RtcpPolicy) {
        self.config.rtcp = policy;
    }

    /// The egress SSRC and the newest (sequence, timestamp) sent, for RTCP sender reports.
    pub fn egress_state(&self) -> (u32, Option<(u16, u32)>) {
        (self.continuity.ssrc(), self.continuity.last_sent())
    }

    /// The current remote source: its SSRC and extended highest sequence number (RFC 3550
    /// A.3), for RTCP reception reports.
    pub fn remote_source(&self) -> Option<(u32, u32)> {
        self.source
            .map(|s| (s.ssrc, s.max_seq.wrapping_sub(1 << 16) as u32))
    }

    /// Let the next qualifying packet replace the latched address (e.g. after a re-INVITE).
    /// Until then the old address is still accepted; a qualifying packet from the old address
    /// ends the relatch (it stays latched).
    pub fn relatch(&mut self) {
        self.unlatched = true;
    }

    /// The next egress packet starts a new source (marker, continuous seq/ts) even with an
    /// unchanged SSRC.
    pub fn switch_source(&mut self) {
        self.continuity.switch_source();
    }

    /// Where packets to this leg go: the latched address, else a usable SDP address.
    pub fn destination(&self) -> Option<SocketAddr> {
        self.latched.or(self
            .config
            .sdp_address
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0))
    }

    fn clamp(&mut self, now: Instant) -> Instant {
        if now > self.last_now {
            self.last_now = now;
        }
        self.last_now
    }

    fn ticks(&self, now: Instant) -> u64 {
        self.ticks_at(now, self.stats.clock_rate)
    }

    /// Ticks of the telephone-event clock.
    fn event_ticks(&self, now: Instant) -> u64 {
        self.ticks_at(now, self.config.event_rate.max(1))
    }

    fn ticks_at(&self, now: Instant, rate: u32) -> u64 {
        let ns = now.saturating_duration_since(self.epoch).as_nanos();
        (ns * u128::from(rate) / 1_000_000_000) as u64
    }

    /// When the telephone-event clock reads `ticks`.
    fn instant_of_ticks(&self, ticks: u64) -> Instant {
        let rate = u128::from(self.config.event_rate.max(1));
        let ns = (u128::from(ticks) * 1_000_000_000).div_ceil(rate);
        self.epoch + Duration::from_nanos(ns as u64)
    }

    fn drop(&mut self, reason: &'static str) -> Ingress {
        self.stats.drops[reason_index(reason)] += 1;
        Ingress::Drop(reason)
    }

    fn qualifies(&self, src: SocketAddr) -> bool {
        self.config.latch_any
            || is_unreachable(self.config.sdp_address)
            || self.config.sdp_address == Some(src)
    }

    /// Source check and latching for a valid packet; `can_latch` is false for RTCP.
    fn accept_source(&mut self, now: Instant, src: SocketAddr, can_latch: bool) -> bool {
        if self.latched == Some(src) {
            // A pending relatch ends with the first qualifying packet, from the old address
            // too; the old address is accepted meanwhile even if it no longer qualifies.
            if self.qualifies(src) {
                self.unlatched = false;
            }
            return true;
        }
        let quiet = self.latched.is_some()
            && self
                .config
                .relatch_after
                .is_some_and(|q| now.saturating_duration_since(self.last_rx) >= q);
        if can_latch && (self.unlatched || quiet) && self.qualifies(src) {
            self.latched = Some(src);
            self.unlatched = false;
            self.pending_latched = Some(src);
            return true;
        }
        false
    }

    fn activity(&mut self, now: Instant) {
        self.last_rx = now;
        self.timed_out = false;
    }

    /// Handle an RTCP packet received on the RTCP port (without rtcp-mux). With
    /// [`RtcpPolicy::Forward`] the destination is the peer's RTCP address: its RTP destination's
    /// port + 1, or the same port when the peer uses rtcp-mux.
    pub fn handle_rtcp(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &[u8],
        peer: Option<&Endpoint>,
    ) -> Ingress {
        let now = self.clamp(now);
        if rtp::rtcp_type(buf).is_none() {
            return self.drop("rtcp_invalid");
        }
        self.rtcp_in(
            now,
            src,
            buf.len(),
            peer.and_then(Endpoint::rtcp_destination),
        )
    }

    /// Where RTCP to this leg goes.
    pub fn rtcp_destination(&self) -> Option<SocketAddr> {
        let mut dest = self.destination()?;
        if !self.config.rtcp_mux {
            dest.set_port(dest.port().checked_add(1)?);
        }
        Some(dest)
    }

    fn rtcp_in(
        &mut self,
        now: Instant,
        src: SocketAddr,
        len: usize,
        dest: Option<SocketAddr>,
    ) -> Ingress {
        if !self.accept_source(now, src, false) {
            return self.drop("source");
        }
        self.activity(now);
        self.stats.rtcp_in += 1;
        match (self.config.rtcp, dest) {
            (RtcpPolicy::Forward, Some(dest)) => Ingress::Forward { dest, len },
            (RtcpPolicy::Forward, None) => self.drop("peer_address"),
            (RtcpPolicy::Drop, _) => self.drop("rtcp"),
        }
    }

    /// Handle one datagram from `src` on this leg's RTP port: validate, latch, count, report
    /// RFC 4733 presses and, when bridged, rewrite it in place for `peer`
    /// ([`receive`](Self::receive) then [`forward`](Self::forward)).
    ///
    /// With rtcp-mux, RTCP is recognised here first ([`rtp::rtcp_type`]); with
    /// [`RtcpPolicy::Forward`] it goes to the peer's destination unchanged.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &mut [u8],
        peer: Option<&mut Endpoint>,
    ) -> Ingress {
        if self.config.rtcp_mux && rtp::is_rtcp(buf) {
            let dest = peer.and_then(|p| p.rtcp_destination());
            let now = self.clamp(now);
            return self.rtcp_in(now, src, buf.len(), dest);
        }
        match self.receive(now, src, buf) {
            Ok((mut pkt, codec)) => self.forward(now, &mut pkt, codec, peer),
            Err(ingress) => ingress,
        }
    }

    /// The ingress half of [`handle_rtp`](Self::handle_rtp) for an RTP packet (the caller
    /// demultiplexes RTCP): validate, latch, count, feed RFC 4733 to the receiver. `Ok` is an
    /// accepted packet and its codec, for [`forward`](Self::forward) (and for the driver's audio
    /// taps in between); `Err` is what became of any other packet.
    pub fn receive<'b>(
        &mut self,
        now: Instant,
        src: SocketAddr,
        buf: &'b mut [u8],
    ) -> Result<(RtpPacketMut<'b>, Codec), Ingress> {
        let now = self.clamp(now);
        let len = buf.len();
        let pkt = match RtpPacketMut::parse(buf) {
            Ok(p) => p,
            Err(e) => return Err(self.drop(RtpError::reason(e))),
        };
        if !self.accept_source(now, src, true) {
            return Err(self.drop("source"));
        }
        self.activity(now);
        let codec = self.config.pt_map.codec(pkt.payload_type());
        self.receive_stats(now, &pkt, len, codec == Some(Codec::TelephoneEvent));
        if !self.config.direction.remote_sends() {
            return Err(self.drop("direction"));
        }
        let Some(codec) = codec else {
            return Err(self.drop("payload_type"));
        };
        if codec == Codec::TelephoneEvent {
            let ticks = self.event_ticks(now);
            if self.events.handle_rtp(ticks, &pkt.as_packet()).is_err() {
                return Err(self.drop("event_short"));
            }
            if self.config.dtmf == DtmfMode::Consume {
                return Err(Ingress::Event);
            }
        }
        Ok((pkt, codec))
    }

    /// The egress half of [`handle_rtp`](Self::handle_rtp): a packet [`receive`](Self::receive)
    /// accepted goes to `peer` ([`egress`](Self::egress) there), unless this leg's media is
    /// blocked or it is not bridged (drops counted here).
    pub fn forward(
        &mut self,
        now: Instant,
        pkt: &mut RtpPacketMut<'_>,
        codec: Codec,
        peer: Option<&mut Endpoint>,
    ) -> Ingress {
        if self.blocked {
            return self.drop("blocked");
        }
        let Some(peer) = peer else {
            return self.drop("unbridged");
        };
        match peer.egress(now, pkt, codec) {
            Ok(dest) => Ingress::Forward {
                dest,
                len: pkt.as_bytes().len(),
            },
            Err(reason) => self.drop(reason),
        }
    }

    /// Count a drop the driver decided on (reason from [`DROP_REASONS`]).
    pub fn count_drop(&mut self, reason: &'static str) {
        let _ = self.drop(reason);
    }

    /// Rewrite `pkt` in place for this leg (the packet's `codec` → this leg's PT, then SSRC,
    /// sequence, timestamp and marker by [`Continuity`]) and count it as sent. `Err` is the drop
    /// reason (`"direction"`, `"codec"`, `"peer_address"`); the packet is then left unchanged.
    /// Used for bridged packets and for the player's packets alike, so both share one
    /// continuous egress stream.
    pub fn egress(
        &mut self,
        now: Instant,
        pkt: &mut RtpPacketMut<'_>,
        codec: Codec,
    ) -> Result<SocketAddr, &'static str> {
        let now = self.clamp(now);
        if !self.config.direction.remote_receives() {
            return Err("direction");
        }
        let pt = self.config.pt_map.payload_type(codec).ok_or("codec")?;
        let dest = self.destination().ok_or("peer_address")?;
        pkt.set_payload_type(pt);
        let ticks = self.ticks(now);
        self.continuity.rewrite(pkt, ticks);
        self.stats.packets_out += 1;
        self.stats.bytes_out += pkt.as_bytes().len() as u64;
        Ok(dest)
    }

    fn receive_stats(&mut self, now: Instant, pkt: &RtpPacketMut<'_>, len: usize, event: bool) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += len as u64;
        let ssrc = pkt.ssrc();
        let seq = pkt.sequence();
        let arrival = self.ticks(now) as u32;
        let src = match &mut self.source {
            Some(s) if s.ssrc == ssrc => s,
            other => {
                if let Some(old) = other {
                    self.prior_expected += old.max_seq - old.base_seq + 1;
                    self.prior_received += old.received;
                    // The sender restarted: its event timestamps start over too.
                    self.events.reset();
                }
                // Start the new source one cycle up so a packet just before it never goes
                // below zero when widened.
                let ext = u64::from(seq) + (1 << 16);
                self.source.insert(Source {
                    ssrc,
                    base_seq: ext,
                    max_seq: ext,
                    received: 0,
                    transit: None,
                    jitter16: 0,
                })
            }
        };
        let ext = rtp::extend_u16(Some(src.max_seq), seq);
        if ext > src.max_seq {
            src.max_seq = ext;
        } else if ext < src.base_seq {
            // Reordered packet older than the first one seen: extend the base (A.3 counts
            // from the lowest sequence number received).
            src.base_seq = ext;
        }
        src.received += 1;
        if !event {
            let transit = arrival.wrapping_sub(pkt.timestamp());
            if let Some(prev) = src.transit {
                let d = (transit.wrapping_sub(prev) as i32).unsigned_abs();
                // A.8: J += (|D| - J) / 16, in the ×16 fixed-point form.
                src.jitter16 = src.jitter16 + u64::from(d) - ((src.jitter16 + 8) >> 4);
            }
            src.transit = Some(transit);
        }
        self.stats.expected = self.prior_expected + (src.max_seq - src.base_seq + 1);
        self.stats.received = self.prior_received + src.received;
        self.stats.jitter = u32::try_from(src.jitter16 >> 4).unwrap_or(u32::MAX);
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work: the media timeout (until it has
    /// fired) or an RFC 4733 press waiting for its lost end.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// [`poll_timeout`](Self::poll_timeout) with the timer behind it ("why did we wake up").
    #[must_use]
    pub fn next_timer(&self) -> Option<(Instant, Timer)> {
        let media = self.media_deadline().map(|t| (t, Timer::Media));
        let event = self
            .events
            .poll_timeout()
            .map(|t| (self.instant_of_ticks(t), Timer::DtmfEnd));
        match (media, event) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// The media timeout's deadline; `None` once fired (or for a timeout too long to represent).
    fn media_deadline(&self) -> Option<Instant> {
        if self.timed_out {
            return None;
        }
        self.last_rx.checked_add(self.config.media_timeout)
    }

    /// Fire expired timers; calling early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clamp(now);
        if self.media_deadline().is_some_and(|d| now >= d) {
            self.timed_out = true;
            self.pending_timeout = true;
        }
        let ticks = self.event_ticks(now);
        self.events.handle_timeout(ticks);
    }

    /// The next event: a latch, then RFC 4733 presses, then a media timeout.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<EndpointEvent> {
        if let Some(a) = self.pending_latched.take() {
            return Some(EndpointEvent::Latched(a));
        }
        if let Some(k) = self.events.poll_event() {
            return Some(EndpointEvent::Digit(k));
        }
        if std::mem::take(&mut self.pending_timeout) {
            return Some(EndpointEvent::MediaTimeout);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_addresses() {
        let u = |s: &str| is_unreachable(Some(s.parse().unwrap()));
        assert!(is_unreachable(None));
        assert!(u("0.0.0.0:4000"));
        assert!(u("10.1.2.3:4000"));
        assert!(u("172.16.0.1:4000"));
        assert!(u("192.168.1.1:4000"));
        assert!(u("100.64.0.1:4000"));
        assert!(u("100.127.255.1:4000"));
        assert!(!u("100.128.0.1:4000"));
        assert!(u("169.254.1.1:4000"));
        assert!(u("203.0.113.5:0"));
        assert!(!u("203.0.113.5:4000"));
        assert!(!u("127.0.0.1:4000"));
        assert!(u("[fd00::1]:4000"));
        assert!(u("[fe80::1]:4000"));
        assert!(u("[::]:4000"));
        assert!(u("[::ffff:10.0.0.1]:4000"));
        assert!(!u("[2001:db8::1]:4000"));
    }

    #[test]
    fn pt_map() {
        let m = PtMap::default();
        assert_eq!(m.codec(0), Some(Codec::Pcmu));
        assert_eq!(m.payload_type(Codec::TelephoneEvent), Some(101));
        assert_eq!(m.codec(96), None);
        assert_eq!(
            PtMap::new(&[(0, Codec::Pcmu), (0, Codec::Pcma)]),
            Err(PtMapError::Duplicate(0))
        );
        assert_eq!(
            PtMap::new(&[(200, Codec::Pcmu)]),
            Err(PtMapError::InvalidPayloadType(200))
        );
        assert_eq!(
            PtMap::new(&[(72, Codec::Pcmu)]),
            Err(PtMapError::InvalidPayloadType(72))
        );
        let many: Vec<(u8, Codec)> = (0..17).map(|i| (96 + i, Codec::Other(i.into()))).collect();
        assert_eq!(PtMap::new(&many), Err(PtMapError::TooMany));
    }

    #[test]
    fn drop_reasons_cover_rtp_errors() {
        for e in RtpError::ALL {
            assert!(DROP_REASONS.contains(&e.reason()));
        }
        assert!(DROP_REASONS.contains(&crate::telephone_event::EventError::Short.reason()));
    }

    #[test]
    fn a_codec_change_keeps_the_egress_timestamps_continuous_at_the_new_rate() {
        let t0 = Instant::now();
        let mut e = Endpoint::new(
            t0,
            EndpointConfig {
                sdp_address: Some("127.0.0.1:4000".parse().unwrap()),
                pt_map: PtMap::new(&[(0, Codec::Pcmu), (111, Codec::Opus)]).unwrap(),
                ..Default::default()
            },
        );
        // A packet of 20 ms from source `ssrc`, sequence `seq`, at `ts`, sent at `ms`.
        let send = |e: &mut Endpoint, ms: u64, ssrc: u32, seq: u16, ts: u32, codec| {
            let mut buf = [0u8; 20];
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
            let mut pkt = RtpPacketMut::parse(&mut buf).unwrap();
            e.egress(t0 + Duration::from_millis(ms), &mut pkt, codec)
                .unwrap();
            (pkt.timestamp(), pkt.marker())
        };
        let (a, _) = send(&mut e, 0, 7, 1, 1000, Codec::Pcmu);
        let (b, _) = send(&mut e, 20, 7, 2, 1160, Codec::Pcmu);
        assert_eq!(b.wrapping_sub(a), 160);
        // Switched to Opus 100 ms after the last PCMU packet; Opus from the same source 40 ms
        // later: 140 ms at 48 kHz after it, then 960 per 20 ms.
        e.set_clock_rate(t0 + Duration::from_millis(120), 48_000);
        assert_eq!(e.stats().clock_rate, 48_000);
        let (c, marker) = send(&mut e, 160, 7, 3, 50_000, Codec::Opus);
        assert_eq!((c.wrapping_sub(b), marker), (140 * 48, true));
        let (d, marker) = send(&mut e, 180, 7, 4, 50_960, Codec::Opus);
        assert_eq!((d.wrapping_sub(c), marker), (960, false));
    }
}
