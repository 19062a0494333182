//! One shard: the owner loop over a [`Ring`], its sockets and a table of bridges.
//!
//! A packet arriving on leg A of a bridge is validated ([`RtpPacketMut::parse`]), checked against
//! A's latched peer (the first valid packet's source latches it, symmetric RTP; afterwards other
//! sources are dropped), rewritten in place with leg B's egress [`Continuity`] and sent from B's
//! socket to B's latched peer, from the buffer it arrived in. Until B has latched, A's packets are
//! dropped ("unlatched"). Nothing on this path allocates, locks or copies.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{Counter, Gauge};

use super::ring::{Event, Packet, Ring, RingConfig, RingInfo, Waker};
use crate::rtp::{Continuity, DROPPED_METRIC, RtpError, RtpPacketMut, drop_reasons, is_rtcp};

/// Labels of `dialplane_media_rtp_dropped_total{reason}` the shard uses, in [`ShardStats::dropped`]
/// order: the [`RtpError`] reasons, then "source" (not the latched peer), "unlatched" (the other
/// leg has no peer yet), "rtcp" (RTCP is not relayed yet), "unknown" (socket without a bridge).
pub const DROP_REASONS: [&str; 10] = drop_reasons(&["source", "unlatched", "rtcp", "unknown"]);
const DROP_SOURCE: usize = 6;
const DROP_UNLATCHED: usize = 7;
const DROP_RTCP: usize = 8;
const DROP_UNKNOWN: usize = 9;

/// Relayed packets.
pub const RELAYED_METRIC: &str = "dialplane_media_packets_relayed_total";
/// Multishot receives re-armed.
pub const REARMS_METRIC: &str = "dialplane_media_uring_multishot_rearms_total";
/// Buffers out of the provided-buffer ring (lent to the shard or being sent).
pub const BUFRING_IN_USE_METRIC: &str = "dialplane_media_uring_bufring_in_use";
/// 1 when sockets receive with plain `RecvMsg` (no multishot/buffer ring), else 0.
pub const PLAIN_RECV_METRIC: &str = "dialplane_media_uring_plain_recv";

fn drop_index(e: RtpError) -> usize {
    RtpError::ALL
        .iter()
        .position(|x| *x == e)
        .unwrap_or(DROP_UNKNOWN)
}

/// Shard parameters.
#[derive(Debug, Clone, Copy)]
pub struct ShardConfig {
    /// Address the relay sockets bind to.
    pub interface: IpAddr,
    /// Ring parameters.
    pub ring: RingConfig,
    /// Media clock rate for timestamps across source switches (8000 for PCMU/PCMA).
    pub clock_rate: u32,
    /// Most completions handled per wake-up (bounded work per loop turn).
    pub max_batch: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig {
            interface: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ring: RingConfig::default(),
            clock_rate: 8000,
            max_batch: 4096,
        }
    }
}

/// Driver errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// Binding or registering a relay socket failed.
    #[error("socket: {0}")]
    Socket(#[from] io::Error),
    /// The shard thread is gone.
    #[error("shard stopped")]
    Stopped,
    /// The shard did not answer in time.
    #[error("shard did not answer in time")]
    Timeout,
}

/// A bridge on a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BridgeId(pub u32);

/// A bridge's relay addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Its id.
    pub id: BridgeId,
    /// Relay address of leg A (phone A sends here and receives B's packets from here).
    pub a: SocketAddr,
    /// Relay address of leg B.
    pub b: SocketAddr,
}

/// Counters of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStats {
    /// Ring setup obtained.
    pub ring: RingInfo,
    /// Packets relayed.
    pub relayed: u64,
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
    /// Live bridges.
    pub bridges: usize,
    /// CPU time of the shard thread so far (user + system), in nanoseconds.
    pub cpu_ns: u64,
}

impl ShardStats {
    /// Drops counted under `reason` (a [`DROP_REASONS`] label).
    pub fn dropped(&self, reason: &str) -> u64 {
        crate::rtp::count_for(&DROP_REASONS, &self.dropped, reason)
    }
}

/// Control commands, sent through a [`ShardHandle`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Bind two sockets on the shard's interface (port 0: any free port) and bridge them.
    AddBridge {
        /// Port of leg A.
        a_port: u16,
        /// Port of leg B.
        b_port: u16,
        /// Answer.
        reply: mpsc::Sender<Result<BridgeInfo, DriverError>>,
    },
    /// Remove a bridge and close its sockets; answers whether it existed.
    RemoveBridge {
        /// Which.
        id: BridgeId,
        /// Answer.
        reply: mpsc::Sender<bool>,
    },
    /// Report counters.
    Stats {
        /// Answer.
        reply: mpsc::Sender<ShardStats>,
    },
}

/// One leg of a bridge, keyed by its socket index.
#[derive(Debug)]
struct Leg {
    /// Socket index of the other leg.
    other: u32,
    /// Latched remote address.
    peer: Option<SocketAddr>,
    /// Egress stream towards `peer`.
    egress: Continuity,
}

struct Metrics {
    relayed: Counter,
    dropped: [Counter; DROP_REASONS.len()],
    rearms: Counter,
    in_use: Gauge,
}

impl Metrics {
    fn new() -> Metrics {
        Metrics {
            relayed: metrics::counter!(RELAYED_METRIC),
            dropped: DROP_REASONS.map(|r| metrics::counter!(DROPPED_METRIC, "reason" => r)),
            rearms: metrics::counter!(REARMS_METRIC),
            in_use: metrics::gauge!(BUFRING_IN_USE_METRIC),
        }
    }
}

/// The owner loop of one shard. Create it on the thread that runs it (the ring is
/// `SINGLE_ISSUER`): see [`spawn`].
pub struct Shard {
    ring: Ring,
    config: ShardConfig,
    rx: mpsc::Receiver<Command>,
    handle: ShardHandle,
    /// By socket index.
    legs: Vec<Option<Leg>>,
    /// By bridge id: socket indexes of legs A and B.
    bridges: Vec<Option<(u32, u32)>>,
    free_bridges: Vec<u32>,
    stats: ShardStats,
    /// Counters already exported to `metrics`.
    exported: (u64, [u64; DROP_REASONS.len()], u64),
    metrics: Metrics,
    start: Instant,
    rng: u64,
}

/// Control side of a shard: cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct ShardHandle {
    tx: mpsc::Sender<Command>,
    waker: Waker,
    stop: Arc<AtomicBool>,
}

/// How long a [`ShardHandle`] call waits for the shard's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl ShardHandle {
    /// Send a command and wake the shard.
    pub fn send(&self, cmd: Command) -> Result<(), DriverError> {
        self.tx.send(cmd).map_err(|_| DriverError::Stopped)?;
        self.waker.wake();
        Ok(())
    }

    fn ask<T>(&self, make: impl FnOnce(mpsc::Sender<T>) -> Command) -> Result<T, DriverError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv_timeout(REPLY_TIMEOUT).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => DriverError::Timeout,
            mpsc::RecvTimeoutError::Disconnected => DriverError::Stopped,
        })
    }

    /// Bridge two new sockets (port 0: any free port).
    pub fn add_bridge(&self, a_port: u16, b_port: u16) -> Result<BridgeInfo, DriverError> {
        self.ask(|reply| Command::AddBridge {
            a_port,
            b_port,
            reply,
        })?
    }

    /// Remove a bridge; `Ok(false)` if it did not exist.
    pub fn remove_bridge(&self, id: BridgeId) -> Result<bool, DriverError> {
        self.ask(|reply| Command::RemoveBridge { id, reply })
    }

    /// The shard's counters.
    pub fn stats(&self) -> Result<ShardStats, DriverError> {
        self.ask(|reply| Command::Stats { reply })
    }

    /// Ask the loop to stop ([`Shard::run`] returns within one wait).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
    }
}

/// Start a shard on a new thread; returns its handle once the ring is up.
pub fn spawn(config: ShardConfig) -> io::Result<(ShardHandle, JoinHandle<io::Result<()>>)> {
    let (tx, rx) = mpsc::sync_channel(1);
    let thread = std::thread::Builder::new()
        .name("media-shard".into())
        .spawn(move || {
            let mut shard = match Shard::new(config) {
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

impl Shard {
    /// Set up the ring (on the calling thread, which must be the one that runs the loop).
    pub fn new(config: ShardConfig) -> io::Result<Shard> {
        let ring = Ring::new(config.ring)?;
        let (tx, rx) = mpsc::channel();
        let handle = ShardHandle {
            tx,
            waker: ring.waker(),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let max = config.ring.max_sockets as usize;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        let metrics = Metrics::new();
        metrics::gauge!(PLAIN_RECV_METRIC).set(match ring.info().mode {
            super::RecvMode::Plain => 1.0,
            super::RecvMode::Multishot => 0.0,
        });
        Ok(Shard {
            stats: ShardStats {
                ring: ring.info(),
                relayed: 0,
                dropped: [0; DROP_REASONS.len()],
                multishot_rearms: 0,
                bufring_in_use: 0,
                recv_errors: 0,
                send_errors: 0,
                truncated: 0,
                bridges: 0,
                cpu_ns: 0,
            },
            ring,
            config,
            rx,
            handle,
            legs: (0..max).map(|_| None).collect(),
            bridges: Vec::with_capacity(max / 2),
            free_bridges: Vec::with_capacity(max / 2),
            exported: (0, [0; DROP_REASONS.len()], 0),
            metrics,
            start: Instant::now(),
            rng: seed,
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
        s.bridges = self.bridges.iter().filter(|b| b.is_some()).count();
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

    /// One turn of the loop: submit, wait up to `max_wait` for completions, forward every packet
    /// of the batch, submit the batch's sends at once, then run pending commands.
    pub fn run_once(&mut self, max_wait: Duration) -> io::Result<()> {
        self.ring.wait(max_wait, self.config.max_batch)?;
        let now_ticks = (self.start.elapsed().as_micros() as u64)
            .saturating_mul(u64::from(self.config.clock_rate))
            / 1_000_000;
        while let Some(event) = self.ring.next_event() {
            match event {
                Event::Packet(p) => self.forward(p, now_ticks),
                Event::Wake | Event::Closed(_) | Event::Nothing => {}
            }
        }
        self.ring.submit()?;
        while let Ok(cmd) = self.rx.try_recv() {
            self.command(cmd);
        }
        self.export_metrics();
        Ok(())
    }

    fn drop_packet(&mut self, p: &Packet, reason: usize) {
        self.stats.dropped[reason] += 1;
        self.ring.release(p.bid);
    }

    fn forward(&mut self, p: Packet, now_ticks: u64) {
        let Some(Some(leg)) = self.legs.get_mut(p.sock as usize) else {
            return self.drop_packet(&p, DROP_UNKNOWN);
        };
        let buf = self.ring.buf_mut(p.bid);
        let Some(bytes) = buf.get_mut(p.off..p.off + p.len) else {
            return self.drop_packet(&p, DROP_UNKNOWN);
        };
        if is_rtcp(bytes) {
            return self.drop_packet(&p, DROP_RTCP);
        }
        let mut pkt = match RtpPacketMut::parse(bytes) {
            Ok(pkt) => pkt,
            Err(e) => return self.drop_packet(&p, drop_index(e)),
        };
        match leg.peer {
            None => leg.peer = Some(p.src),
            Some(peer) if peer != p.src => return self.drop_packet(&p, DROP_SOURCE),
            Some(_) => {}
        }
        let other = leg.other;
        let Some(Some(out)) = self.legs.get_mut(other as usize) else {
            return self.drop_packet(&p, DROP_UNKNOWN);
        };
        let Some(dest) = out.peer else {
            return self.drop_packet(&p, DROP_UNLATCHED);
        };
        out.egress.rewrite(&mut pkt, now_ticks);
        self.ring.send(other, p.bid, p.off, p.len, dest);
        self.stats.relayed += 1;
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: egress SSRC / first sequence / first timestamp need not be secret.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_leg(&mut self, other: u32) -> Leg {
        let r = self.next_random();
        Leg {
            other,
            peer: None,
            egress: Continuity::new(r as u32, (r >> 32) as u16, (r >> 48) as u32 * 65_537),
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddBridge {
                a_port,
                b_port,
                reply,
            } => {
                let _ = reply.send(self.add_bridge(a_port, b_port));
            }
            Command::RemoveBridge { id, reply } => {
                let _ = reply.send(self.remove_bridge(id));
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
        }
    }

    fn bind(&mut self, port: u16) -> Result<(u32, SocketAddr), DriverError> {
        let sock = UdpSocket::bind(SocketAddr::new(self.config.interface, port))?;
        let addr = sock.local_addr()?;
        let idx = self.ring.add_socket(sock)?;
        Ok((idx, addr))
    }

    /// Bind two sockets (port 0: any free port) and bridge them. Control path (allocates).
    pub fn add_bridge(&mut self, a_port: u16, b_port: u16) -> Result<BridgeInfo, DriverError> {
        let (a, a_addr) = self.bind(a_port)?;
        let (b, b_addr) = match self.bind(b_port) {
            Ok(x) => x,
            Err(e) => {
                self.ring.remove_socket(a);
                return Err(e);
            }
        };
        let leg_a = self.new_leg(b);
        let leg_b = self.new_leg(a);
        self.legs[a as usize] = Some(leg_a);
        self.legs[b as usize] = Some(leg_b);
        let id = match self.free_bridges.pop() {
            Some(id) => {
                self.bridges[id as usize] = Some((a, b));
                id
            }
            None => {
                self.bridges.push(Some((a, b)));
                (self.bridges.len() - 1) as u32
            }
        };
        Ok(BridgeInfo {
            id: BridgeId(id),
            a: a_addr,
            b: b_addr,
        })
    }

    /// Remove a bridge and close its sockets; false if it did not exist.
    pub fn remove_bridge(&mut self, id: BridgeId) -> bool {
        let Some(Some((a, b))) = self.bridges.get(id.0 as usize).copied() else {
            return false;
        };
        self.bridges[id.0 as usize] = None;
        self.free_bridges.push(id.0);
        for s in [a, b] {
            self.legs[s as usize] = None;
            self.ring.remove_socket(s);
        }
        true
    }

    fn export_metrics(&mut self) {
        let relayed = self.stats.relayed;
        if relayed != self.exported.0 {
            self.metrics.relayed.increment(relayed - self.exported.0);
            self.exported.0 = relayed;
        }
        for (i, c) in self.metrics.dropped.iter().enumerate() {
            let d = self.stats.dropped[i];
            if d != self.exported.1[i] {
                c.increment(d - self.exported.1[i]);
                self.exported.1[i] = d;
            }
        }
        let rearms = self.ring.counters().multishot_rearms;
        if rearms != self.exported.2 {
            self.metrics.rearms.increment(rearms - self.exported.2);
            self.exported.2 = rearms;
        }
        self.metrics.in_use.set(self.ring.buffers_in_use() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_start_with_the_rtp_error_reasons() {
        for (i, e) in RtpError::ALL.iter().enumerate() {
            assert_eq!(DROP_REASONS[i], e.reason());
            assert_eq!(drop_index(*e), i);
        }
        assert_eq!(DROP_REASONS[DROP_SOURCE], "source");
        assert_eq!(DROP_REASONS[DROP_UNLATCHED], "unlatched");
        assert_eq!(DROP_REASONS[DROP_RTCP], "rtcp");
        assert_eq!(DROP_REASONS[DROP_UNKNOWN], "unknown");
    }
}
