//! One shard: the owner loop over a [`Ring`], its sockets and its legs, running the
//! [`api::Command`]s of the calls routed to it.
//!
//! Each leg is an [`Endpoint`] (latching, PT mapping, continuity, stats, media timeout, RFC 4733
//! receive) plus one [`LegAudio`] (player, dub, tap, forks, DTMF sender), its RTP socket and,
//! without rtcp-mux, its RTCP socket. A packet on leg A's RTP socket goes through
//! [`Endpoint::receive`] (and `LegAudio::on_received` when A's audio is busy), then
//! `LegAudio::on_egress` of the bridged leg B (when busy; `false` suppresses it), then
//! [`Endpoint::forward`] rewrites it in place for B, and it is sent from B's socket out of the
//! buffer it arrived in. Nothing on that path allocates, locks or copies.
//!
//! - **Ports**: one [`PortAllocator`] for the whole range, shared by every shard of a
//!   [`super::Media`] behind a mutex taken only on the control path (create/destroy). Splitting
//!   the range per shard would make one busy shard answer 503 while others have free ports.
//! - **Timers**: every leg's earliest deadline (endpoint timers, LegAudio timers, next RTCP report)
//!   sits in a binary heap with lazy deletion: a leg pushes only when its deadline moves earlier,
//!   an entry that no longer matches the leg's scheduled deadline (or a freed leg's generation) is
//!   skipped when popped. The ring wait is bounded by the heap's top.
//! - **RTCP** is terminated and generated per leg (see [`super::rtcp`] for why); legs whose spec
//!   asks for [`RtcpPolicy::Forward`] pass it through unchanged.
//! - **Digits**: RFC 4733 presses go out as [`Event::Digit`] directly, or, while the leg's tap
//!   detects DTMF, through `LegAudio::on_key_press` so the tap reports each press once.
//! - Answers to commands are returned: `EndpointCreated` for `CreateEndpoint` and for
//!   `UpdateEndpoint` (the leg's unchanged addresses), one `Stats` per leg for `Query` and
//!   `Destroy`, nothing for the rest. Later events (latching, digits, media timeouts, `PlayDone`
//!   after a play ends or `StopPlay`, AMD results, fork frames) go to the shard's event channel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use metrics::{Counter, Gauge, Histogram};

use super::pool::{self, Parked, SharedPool, SocketPool};
use super::ring::{Event as RingEvent, Packet, Ring, RingConfig, RingInfo, Waker};
use super::rtcp::{self, Reporter};
use crate::api::{self, ApiError, CallId, Command, Event, LegId, MediaControl};
use crate::audio::{AudioEvent, LegAudio};
use crate::codec::{self, Transcoder};
use crate::endpoint::{
    self, Codec, Endpoint, EndpointConfig, EndpointEvent, Ingress, PtMap, RtcpPolicy,
};
use crate::ports::{PortAllocator, PortPair, PortRangeError};
use crate::rtp::{self, DROPPED_METRIC, HEADER_LEN, RtpPacketMut};
use crate::srtp::{self, Session as Srtp};

const fn concat<const N: usize>(a: &[&'static str], b: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < a.len() {
        out[i] = a[i];
        i += 1;
    }
    let mut j = 0;
    while j < b.len() {
        out[i + j] = b[j];
        j += 1;
    }
    assert!(i + j == N, "drop reason list length mismatch");
    out
}

/// Labels of `dialplane_media_rtp_dropped_total{reason}`, in [`ShardStats::dropped`] order: the
/// endpoint's [`endpoint::DROP_REASONS`], then the shard's own: "unknown" (a socket without a
/// leg), "audio" (a bridged packet replaced by the leg's player or DTMF tone), "tx_pool" (no free
/// send buffer for a generated packet), "transcode" (a payload the transcoder could not decode or
/// encode), then [`srtp::DROP_REASONS`].
pub const DROP_REASONS: [&str; endpoint::DROP_REASONS.len() + 4 + srtp::DROP_REASONS.len()] =
    concat(
        &endpoint::DROP_REASONS,
        &[
            "unknown",
            "audio",
            "tx_pool",
            "transcode",
            srtp::DROP_REASONS[0],
            srtp::DROP_REASONS[1],
            srtp::DROP_REASONS[2],
        ],
    );
const DROP_UNKNOWN: usize = endpoint::DROP_REASONS.len();
const DROP_AUDIO: usize = DROP_UNKNOWN + 1;
const DROP_TX_POOL: usize = DROP_UNKNOWN + 2;
const DROP_TRANSCODE: usize = DROP_UNKNOWN + 3;

/// Relayed packets.
pub const RELAYED_METRIC: &str = "dialplane_media_packets_relayed_total";
/// Packets the shard generated (player, dub, DTMF, RTCP reports).
pub const GENERATED_METRIC: &str = "dialplane_media_packets_generated_total";
/// Multishot receives re-armed.
pub const REARMS_METRIC: &str = "dialplane_media_uring_multishot_rearms_total";
/// Buffers out of the provided-buffer ring (lent to the shard or being sent).
pub const BUFRING_IN_USE_METRIC: &str = "dialplane_media_uring_bufring_in_use";
/// 1 when sockets receive with plain `RecvMsg` (no multishot/buffer ring), else 0.
pub const PLAIN_RECV_METRIC: &str = "dialplane_media_uring_plain_recv";
/// Legs alive on the shards.
pub const LEGS_METRIC: &str = "dialplane_media_legs";
/// Per finished leg: RTP packets received.
pub const LEG_PACKETS_METRIC: &str = "dialplane_media_leg_packets_in";
/// Per finished leg: packets lost (RFC 3550 A.3 cumulative).
pub const LEG_LOST_METRIC: &str = "dialplane_media_leg_packets_lost";
/// Per finished leg: interarrival jitter at the end, in ms.
pub const LEG_JITTER_METRIC: &str = "dialplane_media_leg_jitter_ms";

/// The port allocator the shards of one media plane share (locked on the control path only).
pub type SharedPorts = Arc<Mutex<PortAllocator>>;

fn lock(ports: &SharedPorts) -> MutexGuard<'_, PortAllocator> {
    // A panic elsewhere while holding the lock leaves the allocator consistent (each call
    // completes its bookkeeping before returning), so a poisoned lock is still usable.
    ports.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shard parameters.
#[derive(Debug, Clone)]
pub struct ShardConfig {
    /// Address the relay sockets bind to.
    pub interface: IpAddr,
    /// Ring parameters.
    pub ring: RingConfig,
    /// Most completions handled per wake-up (bounded work per loop turn).
    pub max_batch: usize,
    /// Media timeout of legs whose spec has none.
    pub media_timeout: Duration,
    /// Mean interval between a leg's RTCP reports (each drawn from 0.5–1.5 × this, RFC 3550).
    pub rtcp_interval: Duration,
    /// Where RTP/RTCP ports come from.
    pub ports: SharedPorts,
    /// How long a destroyed leg's sockets stay parked before a new leg reuses them (see
    /// [`super::pool`]).
    pub quarantine: Duration,
    /// Whether a posted `Destroy` sends the leg's final [`Event::Stats`] to the event channel
    /// (someone writes CDRs). Without a reader it would only wake the event thread per leg.
    pub destroy_stats: bool,
}

impl ShardConfig {
    /// A shard on `interface` with its own allocator over `port_min..=port_max`.
    pub fn new(interface: IpAddr, port_min: u16, port_max: u16) -> Result<Self, PortRangeError> {
        Ok(ShardConfig {
            interface,
            ring: RingConfig::default(),
            max_batch: 4096,
            media_timeout: Duration::from_secs(60),
            rtcp_interval: Duration::from_secs(5),
            ports: Arc::new(Mutex::new(PortAllocator::new(port_min, port_max)?)),
            quarantine: pool::QUARANTINE,
            destroy_stats: true,
        })
    }
}

impl Default for ShardConfig {
    /// 127.0.0.1, ports 30000–60000.
    fn default() -> Self {
        // A valid constant range.
        ShardConfig::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 30000, 60000)
            .expect("the default port range is valid")
    }
}

/// Driver errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Setting up a ring or thread failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// The configured port range is unusable.
    #[error("port range: {0}")]
    Ports(#[from] PortRangeError),
    /// The shard thread is gone.
    #[error("shard stopped")]
    Stopped,
    /// The shard did not answer in time.
    #[error("shard did not answer in time")]
    Timeout,
}

/// Counters of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Ring setup obtained.
    pub ring: RingInfo,
    /// Packets relayed.
    pub relayed: u64,
    /// Packets generated (player, dub, DTMF, RTCP reports) and sent.
    pub generated: u64,
    /// Dropped packets per [`DROP_REASONS`] entry.
    pub dropped: [u64; DROP_REASONS.len()],
    /// Multishot receives re-armed.
    pub multishot_rearms: u64,
    /// Buffers out of the kernel's hands right now.
    pub bufring_in_use: usize,
    /// Receive completions with an error.
    pub recv_errors: u64,
    /// Send completions with an error.
    pub send_errors: u64,
    /// Datagrams too large for a buffer (dropped).
    pub truncated: u64,
    /// Live legs.
    pub legs: usize,
    /// Live bridges.
    pub bridges: usize,
    /// Socket pairs of destroyed legs parked for reuse (see [`super::pool`]).
    pub parked: usize,
    /// CPU time of the shard thread so far (user + system), in nanoseconds.
    pub cpu_ns: u64,
}

impl ShardStats {
    /// All counters at zero, for a ring set up as `ring` says.
    fn new(ring: RingInfo) -> ShardStats {
        ShardStats {
            ring,
            relayed: 0,
            generated: 0,
            dropped: [0; DROP_REASONS.len()],
            multishot_rearms: 0,
            bufring_in_use: 0,
            recv_errors: 0,
            send_errors: 0,
            truncated: 0,
            legs: 0,
            bridges: 0,
            parked: 0,
            cpu_ns: 0,
        }
    }

    /// Drops counted under `reason` (a [`DROP_REASONS`] label).
    pub fn dropped(&self, reason: &str) -> u64 {
        rtp::count_for(&DROP_REASONS, &self.dropped, reason)
    }
}

/// What reaches the shard through its queue.
#[derive(Debug)]
enum Control {
    Api {
        cmd: Command,
        reply: mpsc::Sender<Result<Vec<Event>, ApiError>>,
    },
    /// Commands nobody waits for: run in order, failures reported as [`Event::Error`].
    Post {
        cmds: Vec<Command>,
    },
    /// A leg whose ports the caller allocated and bound ([`reserve`]): installed without an
    /// answer, a failure reported as [`Event::Error`].
    Adopt {
        call_id: CallId,
        leg: LegId,
        spec: Box<api::EndpointSpec>,
        reserved: Reserved,
    },
    Stats {
        reply: mpsc::Sender<ShardStats>,
    },
}

/// A socket's leg.
#[derive(Debug, Clone, Copy)]
struct SockOwner {
    leg: u32,
    rtcp: bool,
}

/// One leg on the shard.
#[derive(Debug)]
struct Leg {
    call: CallId,
    id: LegId,
    endpoint: Endpoint,
    audio: LegAudio,
    /// Socket indexes in the ring.
    rtp_sock: u32,
    rtcp_sock: Option<u32>,
    ports: PortPair,
    /// Slot of the bridged leg.
    peer: Option<u32>,
    /// The deadline this leg has in the timer heap, if any.
    scheduled: Option<Instant>,
    /// The tap detects DTMF: RFC 4733 presses go through it.
    tap_dtmf: bool,
    /// Header fields of the packets LegAudio generates (one source for the egress continuity).
    gen_ssrc: u32,
    gen_seq: u16,
    /// When the last packet went to this leg's remote (for the SR's RTP timestamp).
    last_egress: Option<Instant>,
    reporter: Reporter,
    next_report: Instant,
    /// Bridged to a leg with no audio codec in common: this leg's audio, re-encoded for the peer
    /// (see [`crate::codec`]). `None` on plain bridges, whose packets are relayed in place.
    transcode: Option<Box<Transcoder>>,
    /// SRTP of the leg (boxed: the derived key schedules are large and most legs have none).
    srtp: Option<Box<Srtp>>,
}

impl Leg {
    fn deadline(&self) -> Option<Instant> {
        let report = (self.endpoint.config().rtcp == RtcpPolicy::Drop).then_some(self.next_report);
        [
            self.endpoint.poll_timeout(),
            self.audio.poll_timeout(),
            report,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Make, keep or drop this leg's transcoder for a peer with payload types `peer`.
    fn plan_transcoding(&mut self, peer: &PtMap) {
        let want = codec::plan(&self.endpoint.config().pt_map, peer);
        if want == self.transcode.as_deref().map(|t| (t.from(), t.to())) {
            return;
        }
        self.transcode = want.and_then(|(from, to)| {
            // Its own stream id: the peer's continuity takes a new encoder as a new source.
            let ssrc = self.gen_ssrc.rotate_left(16) ^ 0x7c0d_ec00;
            match Transcoder::new(from, to, ssrc) {
                Ok(t) => Some(Box::new(t)),
                Err(error) => {
                    tracing::warn!(%error, "no transcoder: this bridge direction stays silent");
                    None
                }
            }
        });
    }

    /// The leg's egress audio codec (what a player or in-band DTMF encodes to).
    fn audio_codec(&self) -> Codec {
        egress_codec(&self.endpoint.config().pt_map)
    }
}

/// A leg's RTP clock: Opus legs run at 48 kHz (RFC 7587), for continuity and jitter.
fn clock_rate(map: &PtMap) -> u32 {
    codec::audio_codec(map)
        .and_then(codec::clock_rate)
        .unwrap_or(8000)
}

fn egress_codec(map: &PtMap) -> Codec {
    // G.711 costs least to generate; Opus when the leg has nothing else.
    [Codec::Pcmu, Codec::Pcma, Codec::Opus]
        .into_iter()
        .find(|c| map.payload_type(*c).is_some())
        .unwrap_or(Codec::Pcmu)
}

struct Metrics {
    relayed: Counter,
    generated: Counter,
    dropped: [Counter; DROP_REASONS.len()],
    rearms: Counter,
    in_use: Gauge,
    legs: Gauge,
    leg_packets: Histogram,
    leg_lost: Histogram,
    leg_jitter: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            relayed: metrics::counter!(RELAYED_METRIC),
            generated: metrics::counter!(GENERATED_METRIC),
            dropped: DROP_REASONS.map(|r| metrics::counter!(DROPPED_METRIC, "reason" => r)),
            rearms: metrics::counter!(REARMS_METRIC),
            in_use: metrics::gauge!(BUFRING_IN_USE_METRIC),
            legs: metrics::gauge!(LEGS_METRIC),
            leg_packets: metrics::histogram!(LEG_PACKETS_METRIC),
            leg_lost: metrics::histogram!(LEG_LOST_METRIC),
            leg_jitter: metrics::histogram!(LEG_JITTER_METRIC),
        }
    }
}

/// Shortest time between two drop log lines of one shard (each line per reason that dropped).
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Rate limit of the drop log: the forwarding path only counts; the loop turn asks here whether
/// a line is due, so a flood costs one line per reason per second, never one per packet.
#[derive(Debug, Default)]
struct DropLog {
    /// The drop counts at the last line.
    logged: [u64; DROP_REASONS.len()],
    /// No line before this.
    quiet_until: Option<Instant>,
}

impl DropLog {
    /// Drops per reason since the last line, when there are some and a line may be written.
    fn due(
        &mut self,
        now: Instant,
        dropped: &[u64; DROP_REASONS.len()],
    ) -> Option<[u64; DROP_REASONS.len()]> {
        if self.quiet_until.is_some_and(|t| now < t) || *dropped == self.logged {
            return None;
        }
        let since = std::array::from_fn(|i| dropped[i] - self.logged[i]);
        self.logged = *dropped;
        self.quiet_until = Some(now + DROP_LOG_INTERVAL);
        Some(since)
    }
}

/// Counters already exported to `metrics`, and this shard's share of the gauges (every shard
/// adds its change to one gauge, so the gauge is the sum over shards).
struct Exported {
    relayed: u64,
    generated: u64,
    dropped: [u64; DROP_REASONS.len()],
    rearms: u64,
    in_use: f64,
    legs: f64,
}

/// The owner loop of one shard. Create it on the thread that runs it (the ring is
/// `SINGLE_ISSUER`): see [`spawn`].
pub struct Shard {
    ring: Ring,
    config: ShardConfig,
    rx: mpsc::Receiver<Control>,
    handle: ShardHandle,
    events: mpsc::Sender<Event>,
    legs: Vec<Option<Leg>>,
    /// Per leg slot, bumped when the slot is freed (stale timer entries are skipped).
    generations: Vec<u32>,
    free_legs: Vec<u32>,
    /// By socket index.
    socks: Vec<Option<SockOwner>>,
    calls: HashMap<CallId, Vec<(LegId, u32)>>,
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    stats: ShardStats,
    exported: Exported,
    metrics: Metrics,
    drop_log: DropLog,
    rng: u64,
    /// Wall clock minus monotonic clock at start (RTCP NTP times).
    wall_base: (Instant, Duration),
}

/// Control side of a shard: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    tx: mpsc::Sender<Control>,
    waker: Waker,
    stop: Arc<AtomicBool>,
    /// Work was queued without a wake-up ([`adopt`](Self::adopt), [`post_deferred`]
    /// (MediaControl::post_deferred)): [`flush`](MediaControl::flush) wakes the shard.
    unwoken: Arc<AtomicBool>,
    /// Sockets of destroyed legs, parked for reuse by this shard's new legs.
    pool: SharedPool,
}

/// How long a [`ShardHandle`] call waits for the shard's answer.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl ShardHandle {
    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Control) -> Result<T, DriverError> {
        let (tx, rx) = mpsc::channel();
        self.tx.send(make(tx)).map_err(|_| DriverError::Stopped)?;
        self.waker.wake();
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => DriverError::Timeout,
            mpsc::RecvTimeoutError::Disconnected => DriverError::Stopped,
        })
    }

    /// The shard's counters.
    pub fn stats(&self) -> Result<ShardStats, DriverError> {
        self.ask(|reply| Control::Stats { reply })
    }

    /// Hands a leg with ports already bound ([`reserve`]) to the shard, without waiting and
    /// without waking it: the caller's next [`post`](MediaControl::post) or
    /// [`flush`](MediaControl::flush) does, so that a burst of legs costs one wake-up. Packets
    /// that reach the ports meanwhile wait in their sockets.
    pub(crate) fn adopt(
        &self,
        call_id: CallId,
        leg: LegId,
        spec: api::EndpointSpec,
        reserved: Reserved,
    ) -> Result<(), ApiError> {
        let control = Control::Adopt {
            call_id,
            leg,
            spec: Box::new(spec),
            reserved,
        };
        self.tx
            .send(control)
            .map_err(|_| ApiError::Unavailable("shard stopped"))?;
        self.unwoken.store(true, Ordering::Release);
        Ok(())
    }

    /// Ports and sockets for a new leg of this shard: a parked pair past its quarantine, else a
    /// new pair from `ports`.
    pub(crate) fn reserve(
        &self,
        ports: &SharedPorts,
        interface: IpAddr,
        rtcp_mux: bool,
    ) -> Result<Reserved, ApiError> {
        reserve(ports, &self.pool, interface, rtcp_mux)
    }

    /// Ask the loop to stop ([`Shard::run`] returns within one wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }
}

impl MediaControl for ShardHandle {
    /// Run `cmd` on this shard (checked first with [`Command::validate`]); a shard that is gone or
    /// does not answer within [`REPLY_TIMEOUT`] is [`ApiError::Unavailable`].
    fn request(&self, cmd: Command) -> Result<Vec<Event>, ApiError> {
        cmd.validate()?;
        match self.ask(|reply| Control::Api { cmd, reply }) {
            Ok(answer) => answer,
            Err(DriverError::Timeout) => Err(ApiError::Unavailable("shard did not answer in time")),
            Err(_) => Err(ApiError::Unavailable("shard stopped")),
        }
    }

    /// Queues `cmds` for this shard with one wake-up; the shard runs them in order after what
    /// was queued before.
    fn post(&self, cmds: Vec<Command>) {
        if self.tx.send(Control::Post { cmds }).is_ok() {
            self.unwoken.store(false, Ordering::Release);
            self.waker.wake();
        }
    }

    fn post_deferred(&self, cmds: Vec<Command>) {
        if self.tx.send(Control::Post { cmds }).is_ok() {
            self.unwoken.store(true, Ordering::Release);
        }
    }

    fn flush(&self) {
        if self.unwoken.swap(false, Ordering::AcqRel) {
            self.waker.wake();
        }
    }
}

/// Start a shard on a new thread, its events going to `events`; returns its handle once the ring
/// is up.
pub fn spawn(
    config: ShardConfig,
    events: mpsc::Sender<Event>,
) -> io::Result<(ShardHandle, JoinHandle<io::Result<()>>)> {
    let (tx, rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("media-shard".into())
        .spawn(move || {
            let mut shard = match Shard::new(config, events) {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return Ok(());
                }
            };
            let _ = tx.send(Ok(shard.handle()));
            shard.run()
        })?;
    match rx.recv() {
        Ok(Ok(handle)) => Ok((handle, thread)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(io::Error::other("shard thread died during setup")),
    }
}

/// Both legs of a packet's path, mutably (the peer is `None` when unbridged).
fn leg_and_peer(
    legs: &mut [Option<Leg>],
    slot: usize,
    peer: Option<u32>,
) -> Option<(&mut Leg, Option<&mut Leg>)> {
    match peer.map(|p| p as usize).filter(|p| *p != slot) {
        Some(p) => match legs.get_disjoint_mut([slot, p]) {
            Ok([Some(a), b]) => Some((a, b.as_mut())),
            _ => None,
        },
        None => legs.get_mut(slot)?.as_mut().map(|a| (a, None)),
    }
}

/// Ports with their sockets: what a leg is made of.
#[derive(Debug)]
pub(crate) struct Reserved {
    ports: PortPair,
    socks: Socks,
}

#[derive(Debug)]
enum Socks {
    /// Just bound, for the shard's ring to take.
    Bound {
        rtp: UdpSocket,
        rtcp: Option<UdpSocket>,
    },
    /// Already in the shard's ring (a parked pair).
    Parked { rtp: u32, rtcp: Option<u32> },
}

impl Reserved {
    /// The ports.
    pub(crate) fn ports(&self) -> PortPair {
        self.ports
    }
}

/// Takes a parked pair of `pool` past its quarantine, or else a port pair from `ports` bound on
/// `interface` (a port some other process holds is skipped); exhaustion is
/// [`ApiError::PortsExhausted`].
fn reserve(
    ports: &SharedPorts,
    pool: &SharedPool,
    interface: IpAddr,
    rtcp_mux: bool,
) -> Result<Reserved, ApiError> {
    if let Some(p) = pool::lock(pool).take(rtcp_mux, Instant::now()) {
        return Ok(Reserved {
            ports: p.ports,
            socks: Socks::Parked {
                rtp: p.rtp,
                rtcp: p.rtcp,
            },
        });
    }
    let mut bound = None;
    let pair = lock(ports).allocate(rtcp_mux, |pair| {
        bound = bind_pair(interface, pair).ok();
        bound.is_some()
    })?;
    match bound {
        Some((rtp, rtcp)) => Ok(Reserved {
            ports: pair,
            socks: Socks::Bound { rtp, rtcp },
        }),
        None => {
            let _ = lock(ports).release(pair.rtp);
            Err(ApiError::PortsExhausted)
        }
    }
}

fn bind_pair(interface: IpAddr, pair: PortPair) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
    let rtp = bind_nonblocking(SocketAddr::new(interface, pair.rtp))?;
    let rtcp = match pair.rtcp {
        Some(port) => Some(bind_nonblocking(SocketAddr::new(interface, port))?),
        None => None,
    };
    Ok((rtp, rtcp))
}

/// A UDP socket made non-blocking when it is created, as the ring wants it: one `ioctl` per
/// socket fewer than setting it afterwards (four per call).
fn bind_nonblocking(addr: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM.nonblocking(), None)?;
    sock.bind(&addr.into())?;
    Ok(sock.into())
}

impl Shard {
    /// Set up the ring (on the calling thread, which must be the one that runs the loop); events
    /// go to `events`.
    pub fn new(config: ShardConfig, events: mpsc::Sender<Event>) -> io::Result<Shard> {
        let ring = Ring::new(config.ring)?;
        let (tx, rx) = mpsc::channel();
        let handle = ShardHandle {
            tx,
            waker: ring.waker(),
            stop: Arc::new(AtomicBool::new(false)),
            unwoken: Arc::new(AtomicBool::new(false)),
            pool: Arc::new(Mutex::new(SocketPool::new(config.quarantine))),
        };
        let max = config.ring.max_sockets as usize;
        let wall = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let metrics = Metrics::new();
        metrics::gauge!(PLAIN_RECV_METRIC).set(match ring.info().mode {
            super::RecvMode::Plain => 1.0,
            super::RecvMode::Multishot => 0.0,
        });
        Ok(Shard {
            stats: ShardStats::new(ring.info()),
            ring,
            rx,
            handle,
            events,
            legs: Vec::with_capacity(max),
            generations: Vec::with_capacity(max),
            free_legs: Vec::with_capacity(max),
            socks: vec![None; max],
            calls: HashMap::new(),
            // Room for a few entries per leg before the heap ever grows.
            timers: BinaryHeap::with_capacity(max * 2),
            exported: Exported {
                relayed: 0,
                generated: 0,
                dropped: [0; DROP_REASONS.len()],
                rearms: 0,
                in_use: 0.0,
                legs: 0.0,
            },
            metrics,
            drop_log: DropLog::default(),
            rng: wall.as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15,
            wall_base: (Instant::now(), wall),
            config,
        })
    }

    /// A control handle for this shard.
    pub fn handle(&self) -> ShardHandle {
        self.handle.clone()
    }

    /// Ring setup obtained.
    pub fn ring_info(&self) -> RingInfo {
        self.ring.info()
    }

    /// Counters so far (call it on the shard's thread: `cpu_ns` is the calling thread's).
    pub fn stats(&self) -> ShardStats {
        let mut s = self.stats;
        let c = self.ring.counters();
        s.multishot_rearms = c.multishot_rearms;
        s.recv_errors = c.recv_errors;
        s.send_errors = c.send_errors;
        s.truncated = c.truncated;
        s.bufring_in_use = self.ring.buffers_in_use();
        s.legs = self.legs.iter().flatten().count();
        s.bridges = self
            .legs
            .iter()
            .flatten()
            .filter(|l| l.peer.is_some())
            .count()
            / 2;
        s.parked = pool::lock(&self.handle.pool).len();
        s.cpu_ns = super::ring::thread_cpu_ns();
        s
    }

    /// Loop until [`ShardHandle::stop`].
    pub fn run(&mut self) -> io::Result<()> {
        let stop = self.handle.stop.clone();
        while !stop.load(Ordering::Acquire) {
            self.run_once(Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// One turn of the loop: wait up to `max_wait` (less when a timer is due sooner) for
    /// completions, handle every packet of the batch, run due timers, submit the batch's sends at
    /// once, then run pending commands.
    pub fn run_once(&mut self, max_wait: Duration) -> io::Result<()> {
        let wait = match self.timers.peek() {
            Some(Reverse((at, ..))) => at.saturating_duration_since(Instant::now()).min(max_wait),
            None => max_wait,
        };
        self.ring.wait(wait, self.config.max_batch)?;
        let now = Instant::now();
        while let Some(event) = self.ring.next_event() {
            match event {
                RingEvent::Packet(p) => self.on_packet(p, now),
                RingEvent::Wake | RingEvent::Closed(_) | RingEvent::Nothing => {}
            }
        }
        self.run_timers(now);
        self.ring.submit()?;
        while let Ok(control) = self.rx.try_recv() {
            match control {
                Control::Api { cmd, reply } => {
                    let _ = reply.send(self.execute(cmd));
                }
                Control::Adopt {
                    call_id,
                    leg,
                    spec,
                    reserved,
                } => {
                    let error = (call_id.clone(), leg);
                    if let Err(e) = self.install(now, call_id, leg, *spec, reserved) {
                        let _ = self.events.send(Event::Error {
                            call_id: error.0,
                            leg: Some(error.1),
                            error: e,
                        });
                    }
                }
                Control::Post { cmds } => {
                    for cmd in cmds {
                        let (call_id, leg) = (cmd.call_id().clone(), cmd.leg());
                        match self.execute(cmd) {
                            // A destroyed leg's final counters (or a posted query's) are the
                            // only answers someone still wants: the CDR writer.
                            Ok(answer) => {
                                for e in answer {
                                    if self.config.destroy_stats && matches!(e, Event::Stats { .. })
                                    {
                                        let _ = self.events.send(e);
                                    }
                                }
                            }
                            Err(error) => {
                                let _ = self.events.send(Event::Error {
                                    call_id,
                                    leg,
                                    error,
                                });
                            }
                        }
                    }
                }
                Control::Stats { reply } => {
                    let _ = reply.send(self.stats());
                }
            }
        }
        self.export_metrics();
        self.log_drops(now);
        Ok(())
    }

    fn count_drop(stats: &mut ShardStats, reason: &'static str) {
        let i = DROP_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(DROP_UNKNOWN);
        stats.dropped[i] += 1;
    }

    fn on_packet(&mut self, p: Packet, now: Instant) {
        let Some(&Some(owner)) = self.socks.get(p.sock as usize) else {
            self.stats.dropped[DROP_UNKNOWN] += 1;
            return self.ring.release(p.bid);
        };
        let slot = owner.leg as usize;
        let peer_slot = self.legs.get(slot).and_then(|l| l.as_ref()?.peer);
        let Some((leg, mut peer)) = leg_and_peer(&mut self.legs, slot, peer_slot) else {
            self.stats.dropped[DROP_UNKNOWN] += 1;
            return self.ring.release(p.bid);
        };
        let buf = self.ring.buf_mut(p.bid);
        let Some(bytes) = buf.get_mut(p.off..p.off + p.len) else {
            self.stats.dropped[DROP_UNKNOWN] += 1;
            return self.ring.release(p.bid);
        };
        let is_rtcp = owner.rtcp || (leg.endpoint.config().rtcp_mux && rtp::is_rtcp(bytes));
        // An SRTP leg's packets are authenticated and decrypted in place before anything else.
        let bytes = match srtp_in(leg.srtp.as_deref_mut(), bytes, is_rtcp) {
            Ok(bytes) => bytes,
            Err(reason) => {
                Self::count_drop(&mut self.stats, reason);
                return self.ring.release(p.bid);
            }
        };
        // The peer's audio saw the packet (dub, sent side of forks): drain its events too.
        let peer_busy = peer.as_deref().is_some_and(|p| !p.audio.egress_idle());
        // Audio queued in this leg's transcoder, to encode and send after the loop below.
        let mut transcoded = false;
        // Where the packet goes: (socket, destination, length), or a drop reason.
        let outcome = if is_rtcp {
            let ingress =
                leg.endpoint
                    .handle_rtcp(now, p.src, bytes, peer.as_deref().map(|p| &p.endpoint));
            if ingress == Ingress::Drop("rtcp") {
                // Accepted from the latched remote and terminated here.
                leg.reporter.on_receive(now, bytes);
            }
            match (ingress, peer) {
                (Ingress::Forward { dest, len }, Some(peer)) => {
                    srtp_out(peer.srtp.as_deref_mut(), &mut buf[p.off..], len, true)
                        .map(|len| (peer.rtcp_sock.unwrap_or(peer.rtp_sock), dest, len))
                        .map_err(Some)
                }
                (Ingress::Drop(reason), _) => Err(Some(reason)),
                _ => Err(None),
            }
        } else {
            match leg.endpoint.receive(now, p.src, bytes) {
                Ok((mut pkt, codec)) => {
                    if !leg.audio.is_idle() {
                        leg.audio
                            .on_received(now, codec, pkt.sequence(), pkt.payload());
                    }
                    // Only on bridges without a common codec: re-encoded for the peer below.
                    let transcoder = leg.transcode.as_deref_mut().filter(|t| t.from() == codec);
                    let suppressed = match peer.as_deref_mut() {
                        Some(peer)
                            if peer_busy
                                && transcoder.is_none()
                                && !leg.endpoint.media_blocked() =>
                        {
                            !peer.audio.on_egress(now, codec, pkt.payload_mut())
                        }
                        _ => false,
                    };
                    if let Some(t) = transcoder {
                        if leg.endpoint.media_blocked() {
                            leg.endpoint.count_drop("blocked");
                            Err(Some("blocked"))
                        } else if t.push(pkt.timestamp(), pkt.payload()).is_ok() {
                            transcoded = true;
                            Err(None)
                        } else {
                            Err(Some(DROP_REASONS[DROP_TRANSCODE]))
                        }
                    } else if suppressed {
                        Err(Some(DROP_REASONS[DROP_AUDIO]))
                    } else {
                        if codec == Codec::TelephoneEvent
                            && let Some(peer) = peer.as_deref()
                        {
                            let (from, to) = (
                                leg.endpoint.config().event_rate,
                                peer.endpoint.config().event_rate,
                            );
                            if from != to {
                                retime_event(&mut pkt, from, to, leg.transcode.as_deref());
                            }
                        }
                        let ingress = leg.endpoint.forward(
                            now,
                            &mut pkt,
                            codec,
                            peer.as_deref_mut().map(|p| &mut p.endpoint),
                        );
                        match (ingress, peer) {
                            (Ingress::Forward { dest, len }, Some(peer)) => {
                                peer.last_egress = Some(now);
                                srtp_out(peer.srtp.as_deref_mut(), &mut buf[p.off..], len, false)
                                    .map(|len| (peer.rtp_sock, dest, len))
                                    .map_err(Some)
                            }
                            (Ingress::Drop(reason), _) => Err(Some(reason)),
                            _ => Err(None),
                        }
                    }
                }
                Err(Ingress::Drop(reason)) => Err(Some(reason)),
                Err(_) => Err(None),
            }
        };
        match outcome {
            Ok((sock, dest, len)) => {
                self.ring.send(sock, p.bid, p.off, len, dest);
                self.stats.relayed += 1;
            }
            Err(reason) => {
                if let Some(reason) = reason {
                    Self::count_drop(&mut self.stats, reason);
                }
                self.ring.release(p.bid);
            }
        }
        if transcoded && let Some(peer) = peer_slot {
            self.send_transcoded(slot, peer, now);
        }
        self.after_leg(slot as u32, now);
        if let Some(peer) = peer_slot.filter(|_| peer_busy) {
            self.after_leg(peer, now);
        }
    }

    /// Encode what `slot`'s transcoder has queued and send it to its peer, each packet from a
    /// send buffer of the shard and through the peer's egress (PT, continuity, dub and forks).
    fn send_transcoded(&mut self, slot: usize, peer_slot: u32, now: Instant) {
        let Some((leg, Some(peer))) = leg_and_peer(&mut self.legs, slot, Some(peer_slot)) else {
            return;
        };
        let Some(t) = leg.transcode.as_deref_mut() else {
            return;
        };
        let peer_busy = !peer.audio.egress_idle();
        let sent = send_made(&mut self.ring, &mut self.stats, peer, now, |buf, peer| {
            // The peer's dub tracks and forks see the PCM before it is encoded.
            let mut suppressed = false;
            let out = match t.pop(buf, |pcm, rate| {
                suppressed = peer_busy && !peer.audio.on_egress_pcm(now, rate, pcm);
            })? {
                Ok(out) => out,
                Err(_) => return Some(Err(DROP_REASONS[DROP_TRANSCODE])),
            };
            let Ok(mut pkt) = RtpPacketMut::parse(&mut buf[..out.len]) else {
                return Some(Err(DROP_REASONS[DROP_UNKNOWN]));
            };
            Some(
                if suppressed {
                    Err(DROP_REASONS[DROP_AUDIO])
                } else {
                    peer.endpoint.egress(now, &mut pkt, out.codec)
                }
                .map(|dest| (out.len, dest)),
            )
        });
        self.stats.relayed += sent;
    }

    /// Give each direction of `a`'s bridge a transcoder when its legs share no audio codec
    /// (control path: after a bridge or a change of either leg's codecs).
    fn plan_transcoding(&mut self, a: u32) {
        let peer = self.legs.get(a as usize).and_then(|l| l.as_ref()?.peer);
        let Some((leg, peer)) = leg_and_peer(&mut self.legs, a as usize, peer) else {
            return;
        };
        let Some(peer) = peer else {
            leg.transcode = None;
            return;
        };
        let (a_map, b_map) = (leg.endpoint.config().pt_map, peer.endpoint.config().pt_map);
        leg.plan_transcoding(&b_map);
        peer.plan_transcoding(&a_map);
    }

    /// Drain a leg's events and keep its timer entry current.
    fn after_leg(&mut self, slot: u32, now: Instant) {
        let Some(Some(leg)) = self.legs.get_mut(slot as usize) else {
            return;
        };
        while let Some(ev) = leg.endpoint.poll_event() {
            let event = match ev {
                EndpointEvent::Latched(remote) => Some(Event::Latched {
                    call_id: leg.call.clone(),
                    leg: leg.id,
                    remote,
                }),
                EndpointEvent::Digit(mut press) if leg.tap_dtmf => {
                    // The tap counts in 8 kHz ticks.
                    let rate = leg.endpoint.config().event_rate;
                    press.duration = scale_ticks(press.duration, rate, 8000);
                    leg.audio.on_key_press(now, &press);
                    None
                }
                EndpointEvent::Digit(press) => Event::from_key_press(
                    leg.call.clone(),
                    leg.id,
                    &press,
                    u64::from(press.timestamp),
                    leg.endpoint.config().event_rate,
                ),
                EndpointEvent::MediaTimeout => Some(Event::MediaTimeout {
                    call_id: leg.call.clone(),
                    leg: leg.id,
                }),
            };
            if let Some(event) = event {
                let _ = self.events.send(event);
            }
        }
        while let Some(ev) = leg.audio.poll_event() {
            let call_id = leg.call.clone();
            let event = match ev {
                AudioEvent::Digit {
                    digit,
                    start_ms,
                    duration_ms,
                    source,
                } => Event::Digit {
                    call_id,
                    leg: leg.id,
                    digit,
                    start_ms,
                    duration_ms,
                    source,
                },
                AudioEvent::Amd(event) => Event::Amd {
                    call_id,
                    leg: leg.id,
                    event,
                },
                AudioEvent::PlayDone => Event::PlayDone {
                    call_id,
                    leg: leg.id,
                },
                AudioEvent::Frame { fork, samples } => Event::AudioFrame {
                    call_id,
                    fork,
                    samples,
                },
            };
            let _ = self.events.send(event);
        }
        if let Some(want) = leg.deadline()
            && leg.scheduled.is_none_or(|s| want < s)
        {
            leg.scheduled = Some(want);
            let generation = self.generations[slot as usize];
            self.timers.push(Reverse((want, slot, generation)));
        }
    }

    /// Fire the due timer entries present when called (entries a handler pushes for `now` or
    /// earlier wait for the next turn, whose ring wait is then zero).
    fn run_timers(&mut self, now: Instant) {
        for _ in 0..self.timers.len() {
            let Some(&Reverse((at, slot, generation))) = self.timers.peek() else {
                break;
            };
            if at > now {
                break;
            }
            self.timers.pop();
            let live = self.generations.get(slot as usize) == Some(&generation);
            let Some(Some(leg)) = self.legs.get_mut(slot as usize).filter(|_| live) else {
                continue;
            };
            if leg.scheduled != Some(at) {
                continue; // superseded by an earlier deadline
            }
            leg.scheduled = None;
            leg.endpoint.handle_timeout(now);
            leg.audio.handle_timeout(now);
            self.transmit_audio(slot as usize, now);
            self.maybe_report(slot as usize, now);
            self.after_leg(slot, now);
        }
    }

    /// Send what the leg's audio generates now, each packet from a send buffer of the shard.
    fn transmit_audio(&mut self, slot: usize, now: Instant) {
        let Some(Some(leg)) = self.legs.get_mut(slot) else {
            return;
        };
        if leg.audio.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
        let sent = send_made(&mut self.ring, &mut self.stats, leg, now, |buf, leg| {
            let generated = leg.audio.poll_transmit(now, &mut buf[HEADER_LEN..])?;
            let len = HEADER_LEN + generated.len;
            buf[0] = 0x80;
            buf[1] = if generated.marker { 0x80 } else { 0 };
            buf[2..4].copy_from_slice(&leg.gen_seq.to_be_bytes());
            buf[4..8].copy_from_slice(&generated.timestamp.to_be_bytes());
            buf[8..12].copy_from_slice(&leg.gen_ssrc.to_be_bytes());
            leg.gen_seq = leg.gen_seq.wrapping_add(1);
            Some(
                match buf.get_mut(..len).map(RtpPacketMut::parse) {
                    Some(Ok(mut pkt)) => leg.endpoint.egress(now, &mut pkt, generated.codec),
                    _ => Err("unknown"),
                }
                .map(|dest| (len, dest)),
            )
        });
        self.stats.generated += sent;
    }

    /// Send the leg's RTCP report when it is due (terminated RTCP only).
    fn maybe_report(&mut self, slot: usize, now: Instant) {
        let interval = self.config.rtcp_interval;
        let jitter = self.next_random();
        let ntp =
            rtcp::ntp_time(self.wall_base.1 + now.saturating_duration_since(self.wall_base.0));
        let Some(Some(leg)) = self.legs.get_mut(slot) else {
            return;
        };
        if leg.endpoint.config().rtcp != RtcpPolicy::Drop || leg.next_report > now {
            return;
        }
        // RFC 3550 6.3.1: randomise each interval over 0.5–1.5 × the mean.
        leg.next_report = now + interval.mul_f64(0.5 + (jitter % 1024) as f64 / 1024.0);
        let Some(dest) = leg.endpoint.rtcp_destination() else {
            return;
        };
        let Some(bid) = self.ring.tx_buffer() else {
            self.stats.dropped[DROP_TX_POOL] += 1;
            return;
        };
        let rate = u64::from(leg.endpoint.config().clock_rate);
        let rtp_ts = match (leg.endpoint.egress_state().1, leg.last_egress) {
            (Some((_, ts)), Some(at)) => {
                let ticks = now.saturating_duration_since(at).as_micros() as u64 * rate / 1_000_000;
                Some(ts.wrapping_add(ticks as u32))
            }
            _ => None,
        };
        let buf = self.ring.buf_mut(bid);
        let len = leg.reporter.write(
            now,
            ntp,
            &leg.endpoint,
            rtcp::Egress { rtp_ts },
            &mut buf[..rtcp::MAX_REPORT],
        );
        let Ok(len) = srtp_out(leg.srtp.as_deref_mut(), buf, len, true) else {
            // Not reached: a send buffer has room past the report for SRTCP's index and tag.
            return self.ring.release(bid);
        };
        self.ring
            .send(leg.rtcp_sock.unwrap_or(leg.rtp_sock), bid, 0, len, dest);
        self.stats.generated += 1;
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: egress SSRC / first sequence / first timestamp need not be secret.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn find(&self, call: &CallId, leg: LegId) -> Result<u32, ApiError> {
        let legs = self
            .calls
            .get(call)
            .ok_or_else(|| ApiError::UnknownCall(call.clone()))?;
        legs.iter()
            .find(|(l, _)| *l == leg)
            .map(|(_, s)| *s)
            .ok_or_else(|| ApiError::UnknownLeg(call.clone(), leg))
    }

    /// The slots of one leg, or of every leg of the call.
    fn find_all(&self, call: &CallId, leg: Option<LegId>) -> Result<Vec<u32>, ApiError> {
        match leg {
            Some(l) => Ok(vec![self.find(call, l)?]),
            None => Ok(self
                .calls
                .get(call)
                .ok_or_else(|| ApiError::UnknownCall(call.clone()))?
                .iter()
                .map(|(_, s)| *s)
                .collect()),
        }
    }

    fn leg_mut(&mut self, slot: u32) -> Result<&mut Leg, ApiError> {
        // Slots come from `find`, which only returns live legs.
        self.legs
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
            .ok_or(ApiError::Unavailable("shard leg table out of step"))
    }

    /// Run one command here (the loop does this for commands from the handle). Control path:
    /// it may allocate.
    pub fn execute(&mut self, cmd: Command) -> Result<Vec<Event>, ApiError> {
        cmd.validate()?;
        let now = Instant::now();
        let mut touched = None;
        let answer = match cmd {
            Command::CreateEndpoint { call_id, leg, spec } => {
                let answer = self.create(now, call_id, leg, spec)?;
                if let Event::EndpointCreated {
                    ref call_id, leg, ..
                } = answer
                {
                    touched = Some(self.find(call_id, leg)?);
                }
                vec![answer]
            }
            Command::UpdateEndpoint { call_id, leg, spec } => {
                let slot = self.find(&call_id, leg)?;
                let (default_timeout, interface) =
                    (self.config.media_timeout, self.config.interface);
                let l = self.leg_mut(slot)?;
                l.endpoint.set_pt_map(spec.pt_map);
                l.endpoint.set_direction(spec.direction);
                l.endpoint.set_latch_any(spec.latch_any);
                l.endpoint.set_dtmf_mode(spec.dtmf);
                l.endpoint.set_rtcp_policy(spec.rtcp);
                l.endpoint
                    .set_media_timeout(spec.media_timeout.unwrap_or(default_timeout));
                l.endpoint.set_sdp_address(spec.sdp_address);
                // A changed codec moves the leg's clock and what its audio encodes.
                let rate = clock_rate(&l.endpoint.config().pt_map);
                l.endpoint.set_clock_rate(now, rate);
                l.endpoint.set_event_rate(spec.telephone_event_rate);
                let codec = l.audio_codec();
                l.audio.set_codec(codec);
                // Unchanged keys keep the session (its ROC and replay state).
                if l.srtp.as_deref().map(Srtp::keys) != spec.srtp.as_deref().copied() {
                    l.srtp = spec.srtp.map(|k| Box::new(Srtp::from_keys(*k)));
                }
                touched = Some(slot);
                self.plan_transcoding(slot);
                let l = self.leg_mut(slot)?;
                vec![Event::EndpointCreated {
                    call_id,
                    leg,
                    local: SocketAddr::new(interface, l.ports.rtp),
                    ports: l.ports,
                }]
            }
            Command::Bridge { call_id, a, b } => {
                let (sa, sb) = (self.find(&call_id, a)?, self.find(&call_id, b)?);
                self.unbridge(sa);
                self.unbridge(sb);
                self.leg_mut(sa)?.peer = Some(sb);
                self.leg_mut(sb)?.peer = Some(sa);
                self.plan_transcoding(sa);
                vec![]
            }
            Command::Unbridge { call_id, leg } => {
                let slot = self.find(&call_id, leg)?;
                self.unbridge(slot);
                vec![]
            }
            Command::PlayPcm {
                call_id,
                leg,
                samples,
                looped,
            } => {
                let slot = self.find(&call_id, leg)?;
                let l = self.leg_mut(slot)?;
                let codec = l.audio_codec();
                // A new play is a new source for the egress stream even after another play.
                l.endpoint.switch_source();
                l.audio.play(now, codec, samples, looped);
                touched = Some(slot);
                vec![]
            }
            Command::StopPlay { call_id, leg } => {
                let slot = self.find(&call_id, leg)?;
                self.leg_mut(slot)?.audio.stop_play();
                touched = Some(slot);
                vec![]
            }
            Command::Dub {
                call_id,
                leg,
                track,
                action,
            } => {
                let slot = self.find(&call_id, leg)?;
                let l = self.leg_mut(slot)?;
                let codec = l.audio_codec();
                l.audio.dub(now, codec, track, action)?;
                touched = Some(slot);
                vec![]
            }
            Command::Tap {
                call_id,
                leg,
                dtmf,
                amd,
            } => {
                let slot = self.find(&call_id, leg)?;
                let l = self.leg_mut(slot)?;
                l.audio.set_tap(now, dtmf, amd);
                l.tap_dtmf = dtmf;
                touched = Some(slot);
                vec![]
            }
            Command::ForkAudio {
                call_id,
                leg,
                fork,
                mix,
                sample_rate,
            } => {
                let slot = self.find(&call_id, leg)?;
                self.leg_mut(slot)?.audio.fork(fork, mix, sample_rate);
                touched = Some(slot);
                vec![]
            }
            Command::StopFork { call_id, fork } => {
                let slots = self.find_all(&call_id, None)?;
                let mut found = false;
                for slot in slots {
                    found |= self.leg_mut(slot)?.audio.stop_fork(fork);
                    self.after_leg(slot, now);
                }
                if !found {
                    return Err(ApiError::InvalidArgument("unknown fork"));
                }
                vec![]
            }
            Command::SendDtmf {
                call_id,
                leg,
                digit,
                duration_ms,
                volume,
            } => {
                let slot = self.find(&call_id, leg)?;
                let l = self.leg_mut(slot)?;
                let codec = l.audio_codec();
                let config = l.endpoint.config();
                let rfc4733 = config
                    .pt_map
                    .payload_type(Codec::TelephoneEvent)
                    .map(|_| config.event_rate);
                l.audio
                    .send_dtmf(now, codec, rfc4733, digit, duration_ms, volume)?;
                touched = Some(slot);
                vec![]
            }
            Command::BlockDtmf {
                call_id,
                leg,
                blocked,
            } => {
                let slot = self.find(&call_id, leg)?;
                let mode = if blocked {
                    endpoint::DtmfMode::Consume
                } else {
                    endpoint::DtmfMode::Forward
                };
                self.leg_mut(slot)?.endpoint.set_dtmf_mode(mode);
                vec![]
            }
            Command::BlockMedia {
                call_id,
                leg,
                blocked,
            } => {
                let slot = self.find(&call_id, leg)?;
                self.leg_mut(slot)?.endpoint.set_media_blocked(blocked);
                vec![]
            }
            Command::Destroy { call_id, leg } => {
                let slots = self.find_all(&call_id, leg)?;
                slots
                    .into_iter()
                    .filter_map(|s| self.destroy(now, s))
                    .collect()
            }
            Command::Query { call_id, leg } => self
                .find_all(&call_id, leg)?
                .into_iter()
                .map(|s| {
                    let l = self.leg_mut(s)?;
                    Ok(Event::Stats {
                        call_id: l.call.clone(),
                        leg: l.id,
                        stats: l.endpoint.stats(),
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        };
        if let Some(slot) = touched {
            self.after_leg(slot, now);
        }
        Ok(answer)
    }

    fn create(
        &mut self,
        now: Instant,
        call_id: CallId,
        leg: LegId,
        spec: api::EndpointSpec,
    ) -> Result<Event, ApiError> {
        if self.find(&call_id, leg).is_ok() {
            return Err(ApiError::LegExists(call_id, leg));
        }
        let reserved =
            self.handle
                .reserve(&self.config.ports, self.config.interface, spec.rtcp_mux)?;
        self.install(now, call_id, leg, spec, reserved)
    }

    /// Makes a leg of `reserved` (ports given back on failure).
    fn install(
        &mut self,
        now: Instant,
        call_id: CallId,
        leg: LegId,
        spec: api::EndpointSpec,
        reserved: Reserved,
    ) -> Result<Event, ApiError> {
        let interface = self.config.interface;
        let Reserved { ports, socks } = reserved;
        let (rtp_sock, rtcp_sock) = match socks {
            Socks::Bound { rtp, rtcp } => {
                let release = |shard: &Shard| {
                    let _ = lock(&shard.config.ports).release(ports.rtp);
                };
                if self.find(&call_id, leg).is_ok() {
                    release(self);
                    return Err(ApiError::LegExists(call_id, leg));
                }
                // A full socket table is the same as no port: answer 503.
                let Ok(rtp_sock) = self.ring.add_socket(rtp) else {
                    release(self);
                    return Err(ApiError::PortsExhausted);
                };
                match rtcp.map(|s| self.ring.add_socket(s)).transpose() {
                    Ok(rtcp_sock) => (rtp_sock, rtcp_sock),
                    Err(_) => {
                        self.ring.remove_socket(rtp_sock);
                        release(self);
                        return Err(ApiError::PortsExhausted);
                    }
                }
            }
            Socks::Parked { rtp, rtcp } => {
                if self.find(&call_id, leg).is_ok() {
                    self.retire(now, ports, rtp, rtcp);
                    return Err(ApiError::LegExists(call_id, leg));
                }
                // What reached the pair since the shard's last wait is the old call's.
                for sock in [Some(rtp), rtcp].into_iter().flatten() {
                    self.stats.dropped[DROP_UNKNOWN] += self.ring.drain(sock);
                }
                (rtp, rtcp)
            }
        };
        let r = self.next_random();
        let gen_ssrc = self.next_random() as u32;
        let config = EndpointConfig {
            sdp_address: spec.sdp_address,
            latch_any: spec.latch_any,
            media_timeout: spec.media_timeout.unwrap_or(self.config.media_timeout),
            rtcp_mux: spec.rtcp_mux,
            rtcp: spec.rtcp,
            dtmf: spec.dtmf,
            pt_map: spec.pt_map,
            direction: spec.direction,
            egress_seed: (r as u32, (r >> 32) as u16, (r >> 48) as u32 * 65_537),
            clock_rate: clock_rate(&spec.pt_map),
            event_rate: spec.telephone_event_rate,
            ..EndpointConfig::default()
        };
        let first_report = now + self.config.rtcp_interval / 2;
        let new = Leg {
            call: call_id.clone(),
            id: leg,
            endpoint: Endpoint::new(now, config),
            audio: LegAudio::default(),
            rtp_sock,
            rtcp_sock,
            ports,
            peer: None,
            scheduled: None,
            tap_dtmf: false,
            gen_ssrc,
            gen_seq: (gen_ssrc >> 16) as u16,
            last_egress: None,
            transcode: None,
            reporter: Reporter::new(&format!("dialplane-{:08x}@{interface}", r as u32)),
            next_report: first_report,
            srtp: spec.srtp.map(|k| Box::new(Srtp::from_keys(*k))),
        };
        let slot = match self.free_legs.pop() {
            Some(s) => {
                self.legs[s as usize] = Some(new);
                s
            }
            None => {
                self.legs.push(Some(new));
                self.generations.push(0);
                (self.legs.len() - 1) as u32
            }
        };
        for (sock, rtcp) in [(Some(rtp_sock), false), (rtcp_sock, true)] {
            if let Some(entry) = sock.and_then(|s| self.socks.get_mut(s as usize)) {
                *entry = Some(SockOwner { leg: slot, rtcp });
            }
        }
        self.calls
            .entry(call_id.clone())
            .or_default()
            .push((leg, slot));
        Ok(Event::EndpointCreated {
            call_id,
            leg,
            local: SocketAddr::new(interface, ports.rtp),
            ports,
        })
    }

    fn unbridge(&mut self, slot: u32) {
        if let Some(Some(leg)) = self.legs.get_mut(slot as usize)
            && let Some(peer) = leg.peer.take()
        {
            leg.transcode = None;
            if let Some(Some(p)) = self.legs.get_mut(peer as usize) {
                p.peer = None;
                p.transcode = None;
            }
        }
    }

    /// Sockets no leg owns any more (their packets are dropped as "unknown"): parked for reuse
    /// while the port range and the socket table can spare them (see [`super::pool`]), else
    /// closed and their ports given back.
    fn retire(&mut self, now: Instant, ports: PortPair, rtp: u32, rtcp: Option<u32>) {
        for sock in [Some(rtp), rtcp].into_iter().flatten() {
            if let Some(entry) = self.socks.get_mut(sock as usize) {
                *entry = None;
            }
        }
        let spare_sockets = self.ring.free_sockets() >= self.config.ring.max_sockets as usize / 4;
        let mut allocator = lock(&self.config.ports);
        if spare_sockets && allocator.available() >= allocator.capacity() / 2 {
            drop(allocator);
            pool::lock(&self.handle.pool).park(Parked {
                ports,
                rtp,
                rtcp,
                since: now,
            });
            return;
        }
        let _ = allocator.release(ports.rtp);
        drop(allocator);
        for sock in [Some(rtp), rtcp].into_iter().flatten() {
            self.ring.remove_socket(sock);
        }
    }

    /// Free a leg: its final stats, sockets, ports and slot (`None` for a free slot).
    fn destroy(&mut self, now: Instant, slot: u32) -> Option<Event> {
        self.unbridge(slot);
        let leg = self.legs.get_mut(slot as usize)?.take()?;
        self.generations[slot as usize] = self.generations[slot as usize].wrapping_add(1);
        self.free_legs.push(slot);
        self.retire(now, leg.ports, leg.rtp_sock, leg.rtcp_sock);
        if let Some(legs) = self.calls.get_mut(&leg.call) {
            legs.retain(|(_, s)| *s != slot);
            if legs.is_empty() {
                self.calls.remove(&leg.call);
            }
        }
        let stats = leg.endpoint.stats();
        self.metrics.leg_packets.record(stats.packets_in as f64);
        self.metrics.leg_lost.record(stats.lost() as f64);
        self.metrics.leg_jitter.record(stats.jitter_ms());
        Some(Event::Stats {
            call_id: leg.call,
            leg: leg.id,
            stats,
        })
    }

    /// The drop log line per reason, when one is due (see [`DropLog`]).
    fn log_drops(&mut self, now: Instant) {
        let Some(since) = self.drop_log.due(now, &self.stats.dropped) else {
            return;
        };
        for (reason, count) in DROP_REASONS.into_iter().zip(since) {
            if count > 0 {
                tracing::warn!(reason, count, "dropped packets (count since the last line)");
            }
        }
    }

    fn export_metrics(&mut self) {
        let e = &mut self.exported;
        let delta = |now: u64, before: &mut u64| now - std::mem::replace(before, now);
        let relayed = delta(self.stats.relayed, &mut e.relayed);
        if relayed > 0 {
            self.metrics.relayed.increment(relayed);
        }
        let generated = delta(self.stats.generated, &mut e.generated);
        if generated > 0 {
            self.metrics.generated.increment(generated);
        }
        for (i, c) in self.metrics.dropped.iter().enumerate() {
            let d = delta(self.stats.dropped[i], &mut e.dropped[i]);
            if d > 0 {
                c.increment(d);
            }
        }
        let rearms = delta(self.ring.counters().multishot_rearms, &mut e.rearms);
        if rearms > 0 {
            self.metrics.rearms.increment(rearms);
        }
        let in_use = self.ring.buffers_in_use() as f64;
        self.metrics
            .in_use
            .increment(in_use - std::mem::replace(&mut e.in_use, in_use));
        let legs = (self.legs.len() - self.free_legs.len()) as f64;
        self.metrics
            .legs
            .increment(legs - std::mem::replace(&mut e.legs, legs));
    }
}

/// An SRTP leg's received packet, authenticated and decrypted in place (the tag stripped);
/// other legs' packets unchanged. `Err` is the drop reason.
/// An RFC 4733 packet relayed to a leg whose telephone-event clock differs (8 kHz ↔ 48 kHz):
/// its duration is scaled to the egress clock and, on a transcoded bridge whose clocks are the
/// events' own, it joins the transcoder's stream (SSRC, timestamp mapped), so the far end finds
/// the events on the timeline of the audio they go with.
fn retime_event(pkt: &mut RtpPacketMut<'_>, from: u32, to: u32, transcoder: Option<&Transcoder>) {
    let payload = pkt.payload_mut();
    if payload.len() >= 4 {
        let duration = u32::from(u16::from_be_bytes([payload[2], payload[3]]));
        let scaled = scale_ticks(duration, from, to).min(u32::from(u16::MAX)) as u16;
        payload[2..4].copy_from_slice(&scaled.to_be_bytes());
    }
    let same_clocks = |t: &&Transcoder| {
        codec::clock_rate(t.from()) == Some(from) && codec::clock_rate(t.to()) == Some(to)
    };
    if let Some(t) = transcoder.filter(same_clocks)
        && let Some(ts) = t.map_timestamp(pkt.timestamp())
    {
        pkt.set_ssrc(t.ssrc());
        pkt.set_timestamp(ts);
    }
}

/// `ticks` of a `from` Hz clock in ticks of a `to` Hz clock.
fn scale_ticks(ticks: u32, from: u32, to: u32) -> u32 {
    (u64::from(ticks) * u64::from(to) / u64::from(from.max(1))).min(u64::from(u32::MAX)) as u32
}

fn srtp_in<'b>(
    srtp: Option<&mut Srtp>,
    bytes: &'b mut [u8],
    rtcp: bool,
) -> Result<&'b mut [u8], &'static str> {
    let Some(srtp) = srtp else { return Ok(bytes) };
    let len = if rtcp {
        srtp.unprotect_rtcp(bytes)
    } else {
        srtp.unprotect_rtp(bytes)
    }
    .map_err(srtp::SrtpError::reason)?;
    Ok(&mut bytes[..len])
}

/// Sends the packets the shard makes for `to` (re-encoded or generated audio) until `make` has
/// none: each written by `make` into a send buffer, its `Ok` the length and destination,
/// protected for an SRTP leg and sent from `to`'s RTP socket; an `Err` is counted as a drop.
/// How many were sent.
fn send_made(
    ring: &mut Ring,
    stats: &mut ShardStats,
    to: &mut Leg,
    now: Instant,
    mut make: impl FnMut(&mut [u8], &mut Leg) -> Option<Result<(usize, SocketAddr), &'static str>>,
) -> u64 {
    let mut sent = 0;
    loop {
        let Some(bid) = ring.tx_buffer() else {
            stats.dropped[DROP_TX_POOL] += 1;
            return sent;
        };
        let buf = ring.buf_mut(bid);
        let Some(made) = make(buf, to) else {
            ring.release(bid);
            return sent;
        };
        match made
            .and_then(|(len, dest)| Ok((dest, srtp_out(to.srtp.as_deref_mut(), buf, len, false)?)))
        {
            Ok((dest, len)) => {
                to.last_egress = Some(now);
                ring.send(to.rtp_sock, bid, 0, len, dest);
                sent += 1;
            }
            Err(reason) => {
                Shard::count_drop(stats, reason);
                ring.release(bid);
            }
        }
    }
}

/// The packet `buf[..len]` protected in place for an SRTP leg (the tag appended in the room
/// past it); `len` for other legs. `Err` is the drop reason.
fn srtp_out(
    srtp: Option<&mut Srtp>,
    buf: &mut [u8],
    len: usize,
    rtcp: bool,
) -> Result<usize, &'static str> {
    let Some(srtp) = srtp else { return Ok(len) };
    if rtcp {
        srtp.protect_rtcp(buf, len)
    } else {
        srtp.protect_rtp(buf, len)
    }
    .map_err(srtp::SrtpError::reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_start_with_the_endpoint_reasons() {
        assert_eq!(DROP_REASONS[..DROP_UNKNOWN], endpoint::DROP_REASONS);
        assert_eq!(DROP_REASONS[DROP_UNKNOWN], "unknown");
        assert_eq!(DROP_REASONS[DROP_AUDIO], "audio");
        assert_eq!(DROP_REASONS[DROP_TX_POOL], "tx_pool");
        let mut stats = ShardStats::new(RingInfo {
            single_issuer: false,
            defer_taskrun: false,
            mode: super::super::RecvMode::Plain,
            buffers: 1,
            tx_buffers: 0,
            fixed_files: false,
        });
        Shard::count_drop(&mut stats, "source");
        Shard::count_drop(&mut stats, "not a reason");
        assert_eq!((stats.dropped("source"), stats.dropped("unknown")), (1, 1));
    }

    #[test]
    fn drop_log_is_one_line_per_reason_per_second_with_the_count_since() {
        let t0 = Instant::now();
        let mut log = DropLog::default();
        let mut dropped = [0u64; DROP_REASONS.len()];
        assert_eq!(log.due(t0, &dropped), None, "nothing dropped, no line");
        dropped[0] = 1;
        let mut want = [0u64; DROP_REASONS.len()];
        want[0] = 1;
        assert_eq!(
            log.due(t0, &dropped),
            Some(want),
            "the first drop is logged at once"
        );
        dropped[0] = 500;
        dropped[DROP_UNKNOWN] = 7;
        assert_eq!(log.due(t0 + Duration::from_millis(999), &dropped), None);
        want[0] = 499;
        want[DROP_UNKNOWN] = 7;
        assert_eq!(log.due(t0 + DROP_LOG_INTERVAL, &dropped), Some(want));
        assert_eq!(
            log.due(t0 + DROP_LOG_INTERVAL * 5, &dropped),
            None,
            "quiet: no line"
        );
        dropped[DROP_TX_POOL] = 2;
        want = [0; DROP_REASONS.len()];
        want[DROP_TX_POOL] = 2;
        assert_eq!(log.due(t0 + DROP_LOG_INTERVAL * 5, &dropped), Some(want));
    }

    #[test]
    fn egress_codec_prefers_pcmu() {
        assert_eq!(egress_codec(&PtMap::default()), Codec::Pcmu);
        let alaw = PtMap::new(&[(8, Codec::Pcma), (101, Codec::TelephoneEvent)]).unwrap();
        assert_eq!(egress_codec(&alaw), Codec::Pcma);
        let opus = PtMap::new(&[(111, Codec::Opus), (101, Codec::TelephoneEvent)]).unwrap();
        assert_eq!(egress_codec(&opus), Codec::Opus);
        let both = PtMap::new(&[(111, Codec::Opus), (0, Codec::Pcmu)]).unwrap();
        assert_eq!(egress_codec(&both), Codec::Pcmu);
    }

    /// An RFC 4733 packet: `event`, duration `duration`, timestamp `ts`, SSRC 9.
    fn event_packet(ts: u32, duration: u16) -> Vec<u8> {
        let mut p = vec![0x80, 101, 0, 1];
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(&[5, 10]);
        p.extend_from_slice(&duration.to_be_bytes());
        p
    }

    #[test]
    fn events_relayed_across_clocks_are_scaled_and_join_the_transcoded_stream() {
        // 48 kHz events of an Opus leg to an 8 kHz leg, relayed as they are: duration scaled.
        let mut buf = event_packet(96_000, 4800);
        let mut pkt = RtpPacketMut::parse(&mut buf).unwrap();
        retime_event(&mut pkt, 48_000, 8000, None);
        assert_eq!((pkt.timestamp(), pkt.ssrc()), (96_000, 9));
        assert_eq!(pkt.payload()[2..4], 800u16.to_be_bytes());
        // 8 kHz events of a PCMU leg whose audio is transcoded to Opus: on the transcoder's
        // stream, at the output time of the audio they start with.
        let mut t = Transcoder::new(Codec::Pcmu, Codec::Opus, 0x77).unwrap();
        for k in 0..3u32 {
            assert!(t.push(k * 160, &[0xff; 160]).unwrap());
        }
        let (at_320, at_480) = (t.map_timestamp(320).unwrap(), t.map_timestamp(480).unwrap());
        assert_eq!(at_480.wrapping_sub(at_320), 960);
        let mut buf = event_packet(320, 800);
        let mut pkt = RtpPacketMut::parse(&mut buf).unwrap();
        retime_event(&mut pkt, 8000, 48_000, Some(&t));
        assert_eq!((pkt.timestamp(), pkt.ssrc()), (at_320, 0x77));
        assert_eq!(pkt.payload()[2..4], 4800u16.to_be_bytes());
        // A transcoder on other clocks (8 kHz events beside Opus audio) leaves the timestamp.
        let mut buf = event_packet(320, 800);
        let mut pkt = RtpPacketMut::parse(&mut buf).unwrap();
        retime_event(&mut pkt, 8000, 16_000, Some(&t));
        assert_eq!((pkt.timestamp(), pkt.ssrc()), (320, 9));
    }
}
