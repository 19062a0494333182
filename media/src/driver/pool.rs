//! Relay sockets kept across legs: a destroyed leg's RTP/RTCP sockets stay bound, registered in
//! the shard's ring and armed for receive, and are parked here instead of being closed. A new leg
//! of the same shard takes a parked pair once its quarantine is over, which saves per leg a
//! `socket`, `bind`, `close` and two `io_uring_register` calls per socket, the receive's cancel and
//! re-arm.
//!
//! Why a quarantine: the old call's far end may still send for a while (a BYE crossing the last
//! packets, a phone that keeps streaming). While parked a socket has no leg: whatever reaches it
//! is dropped as "unknown". A pair is handed out again only after [`QUARANTINE`], so a new call
//! does not get an old call's late packets (and does not latch on its sender).
//!
//! The pool only keeps what the range can spare: the shard parks a pair only while at least half
//! the port range is still free (and a quarter of the ring's socket table), so a range near
//! exhaustion gives its ports back at once as before, and exhaustion is still a 503.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ports::PortPair;

/// How long a freed pair stays unused before another leg gets it.
pub(super) const QUARANTINE: Duration = Duration::from_secs(3);

/// A pair of sockets of a destroyed leg, still open in the shard's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Parked {
    pub(super) ports: PortPair,
    /// Socket indexes in the ring.
    pub(super) rtp: u32,
    pub(super) rtcp: Option<u32>,
    /// When the leg was destroyed.
    pub(super) since: Instant,
}

/// Parked pairs of one shard, oldest first; those with an RTCP socket apart from rtcp-mux ones.
#[derive(Debug)]
pub(super) struct SocketPool {
    /// `[rtcp-mux, with RTCP socket]`.
    parked: [VecDeque<Parked>; 2],
    quarantine: Duration,
}

/// A shard's pool: parked by the shard, taken by whoever creates a leg on it.
pub(super) type SharedPool = Arc<Mutex<SocketPool>>;

impl SocketPool {
    pub(super) fn new(quarantine: Duration) -> SocketPool {
        SocketPool {
            parked: [VecDeque::new(), VecDeque::new()],
            quarantine,
        }
    }

    /// The oldest pair for a leg with (`rtcp_mux` false) or without an RTCP socket whose
    /// quarantine is over at `now`.
    pub(super) fn take(&mut self, rtcp_mux: bool, now: Instant) -> Option<Parked> {
        let queue = &mut self.parked[usize::from(!rtcp_mux)];
        let ready = queue
            .front()
            .is_some_and(|p| now.saturating_duration_since(p.since) >= self.quarantine);
        if ready { queue.pop_front() } else { None }
    }

    /// Keeps `pair` until its quarantine is over and a leg takes it.
    pub(super) fn park(&mut self, pair: Parked) {
        // Pairs arrive in destroy order, so each queue stays sorted by `since`.
        self.parked[usize::from(pair.rtcp.is_some())].push_back(pair);
    }

    /// Pairs parked (ready or not).
    pub(super) fn len(&self) -> usize {
        self.parked.iter().map(VecDeque::len).sum()
    }
}

/// Locks `pool`; a poisoned lock is still consistent (every method completes its change).
pub(super) fn lock(pool: &SharedPool) -> std::sync::MutexGuard<'_, SocketPool> {
    pool.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(rtp: u16, rtcp: bool, since: Instant) -> Parked {
        Parked {
            ports: PortPair {
                rtp,
                rtcp: rtcp.then_some(rtp + 1),
            },
            rtp: u32::from(rtp),
            rtcp: rtcp.then_some(u32::from(rtp) + 1),
            since,
        }
    }

    #[test]
    fn a_pair_is_reused_only_after_its_quarantine() {
        let t0 = Instant::now();
        let q = Duration::from_secs(3);
        let mut pool = SocketPool::new(q);
        pool.park(pair(40000, true, t0));
        pool.park(pair(40002, true, t0 + Duration::from_secs(1)));
        assert_eq!(pool.take(false, t0), None, "no reuse at once");
        assert_eq!(pool.take(false, t0 + q - Duration::from_millis(1)), None);
        assert_eq!(pool.take(false, t0 + q), Some(pair(40000, true, t0)));
        assert_eq!(
            pool.take(false, t0 + q),
            None,
            "the second pair has a second of quarantine left"
        );
        assert_eq!(pool.len(), 1);
        let later = t0 + q + Duration::from_secs(1);
        assert_eq!(pool.take(false, later).map(|p| p.ports.rtp), Some(40002));
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn rtcp_mux_legs_take_pairs_without_an_rtcp_socket() {
        let t0 = Instant::now();
        let mut pool = SocketPool::new(Duration::ZERO);
        pool.park(pair(40000, true, t0));
        assert_eq!(pool.take(true, t0), None);
        pool.park(pair(40002, false, t0));
        assert_eq!(pool.take(true, t0).map(|p| p.ports.rtp), Some(40002));
        assert_eq!(pool.take(false, t0).map(|p| p.ports.rtp), Some(40000));
    }
}
