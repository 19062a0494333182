//! Media port allocation from the configured range (`--port-min`/`--port-max`)
//!
//! Pure bookkeeping: the allocator binds no socket. [`PortAllocator::allocate`] offers candidate
//! pairs to the caller's `try_bind` closure (the driver binds there), so a port the OS refuses
//! (already in use by another process) is skipped and stays in the pool for later.
//!
//! The range is cut into slots of two ports: an even RTP port and RTCP = RTP + 1. With rtcp-mux
//! only the RTP port is handed out, but the whole slot is reserved, so pairs never fragment.
//! Free slots are kept in FIFO order: a released slot goes to the back of the queue and is handed
//! out again only after every other free slot (a late packet for the old session cannot land on
//! a new one right away). Exhaustion is [`PortsExhausted`], which the caller answers with 503;
//! nothing here panics on a full pool. After [`PortAllocator::new`] nothing allocates.

use std::collections::VecDeque;
use std::fmt;

/// A port range that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PortRangeError {
    /// `port_min` > `port_max`.
    MinAboveMax,
    /// `port_min` is odd (RTP ports are even, RFC 3550 §11) or zero.
    OddMin,
    /// The range holds no even/odd pair.
    TooSmall,
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortRangeError::MinAboveMax => "port-min is above port-max",
            PortRangeError::OddMin => "port-min must be even and non-zero",
            PortRangeError::TooSmall => "the port range must hold at least one RTP/RTCP pair",
        })
    }
}

impl std::error::Error for PortRangeError {}

/// No free port in the range (or the OS refused every free one): answer 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortsExhausted;

impl PortsExhausted {
    /// The SIP / HTTP status a caller answers with.
    pub const STATUS: u16 = 503;
}

impl fmt::Display for PortsExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no free media port in the configured range")
    }
}

impl std::error::Error for PortsExhausted {}

/// [`PortAllocator::release`] of ports that are not allocated (caller misuse; nothing changed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotAllocated(pub u16);

impl fmt::Display for NotAllocated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "port {} is not allocated", self.0)
    }
}

impl std::error::Error for NotAllocated {}

/// Ports for one leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortPair {
    /// The even RTP port.
    pub rtp: u16,
    /// RTP + 1, or `None` with rtcp-mux (the port is still reserved).
    pub rtcp: Option<u16>,
}

/// Even-port pair allocator over `[port_min, port_max]`.
#[derive(Debug, Clone)]
pub struct PortAllocator {
    min: u16,
    /// Free slot indexes, oldest-released first.
    free: VecDeque<u16>,
    in_use: Vec<bool>,
}

impl PortAllocator {
    /// Validate the range and put every slot in the pool, lowest port first. `port_max` may have
    /// either parity: the last slot is the largest even `p` with `p + 1 <= port_max`.
    pub fn new(port_min: u16, port_max: u16) -> Result<Self, PortRangeError> {
        if port_min > port_max {
            return Err(PortRangeError::MinAboveMax);
        }
        if port_min % 2 == 1 || port_min == 0 {
            return Err(PortRangeError::OddMin);
        }
        let ports = u32::from(port_max) - u32::from(port_min) + 1;
        let slots = ports / 2;
        if slots == 0 {
            return Err(PortRangeError::TooSmall);
        }
        // slots <= 32768 because port_min >= 2, so indexes fit in u16.
        let slots = slots as u16;
        Ok(PortAllocator {
            min: port_min,
            free: (0..slots).collect(),
            in_use: vec![false; usize::from(slots)],
        })
    }

    /// Number of slots (pairs) in the range.
    pub fn capacity(&self) -> usize {
        self.in_use.len()
    }

    /// Number of free slots.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Take the next free pair whose ports `try_bind` accepts. A refused pair goes to the back
    /// of the queue (still free); after every free pair was refused once, or when none is free,
    /// the answer is [`PortsExhausted`].
    pub fn allocate(
        &mut self,
        rtcp_mux: bool,
        mut try_bind: impl FnMut(PortPair) -> bool,
    ) -> Result<PortPair, PortsExhausted> {
        for _ in 0..self.free.len() {
            let Some(slot) = self.free.pop_front() else {
                break;
            };
            let rtp = self.min + 2 * slot;
            let pair = PortPair {
                rtp,
                rtcp: (!rtcp_mux).then_some(rtp + 1),
            };
            if try_bind(pair) {
                self.in_use[usize::from(slot)] = true;
                return Ok(pair);
            }
            // Capacity was reserved in `new`: this push does not allocate.
            self.free.push_back(slot);
        }
        Err(PortsExhausted)
    }

    /// Return a pair's RTP port to the pool (at the back of the rotation).
    pub fn release(&mut self, rtp: u16) -> Result<(), NotAllocated> {
        let slot = self.slot(rtp).ok_or(NotAllocated(rtp))?;
        let used = &mut self.in_use[usize::from(slot)];
        if !*used {
            return Err(NotAllocated(rtp));
        }
        *used = false;
        self.free.push_back(slot);
        Ok(())
    }

    /// Whether `rtp` is currently handed out.
    pub fn is_allocated(&self, rtp: u16) -> bool {
        self.slot(rtp).is_some_and(|s| self.in_use[usize::from(s)])
    }

    fn slot(&self, rtp: u16) -> Option<u16> {
        let off = rtp.checked_sub(self.min)?;
        if off % 2 != 0 || usize::from(off / 2) >= self.in_use.len() {
            return None;
        }
        Some(off / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ranges() {
        assert_eq!(
            PortAllocator::new(30002, 30000).unwrap_err(),
            PortRangeError::MinAboveMax
        );
        assert_eq!(
            PortAllocator::new(30001, 30010).unwrap_err(),
            PortRangeError::OddMin
        );
        assert_eq!(
            PortAllocator::new(0, 10).unwrap_err(),
            PortRangeError::OddMin
        );
        assert_eq!(
            PortAllocator::new(30000, 30000).unwrap_err(),
            PortRangeError::TooSmall
        );
        assert_eq!(PortAllocator::new(30000, 30001).unwrap().capacity(), 1);
        assert_eq!(PortAllocator::new(30000, 30002).unwrap().capacity(), 1);
        assert_eq!(PortAllocator::new(30000, 60000).unwrap().capacity(), 15000);
        assert_eq!(PortAllocator::new(2, 65535).unwrap().capacity(), 32767);
    }

    #[test]
    fn pairs_mux_exhaustion_and_rotation() {
        let mut a = PortAllocator::new(40000, 40005).unwrap();
        let p1 = a.allocate(false, |_| true).unwrap();
        assert_eq!(
            p1,
            PortPair {
                rtp: 40000,
                rtcp: Some(40001)
            }
        );
        let p2 = a.allocate(true, |_| true).unwrap();
        assert_eq!(
            p2,
            PortPair {
                rtp: 40002,
                rtcp: None
            }
        );
        let p3 = a.allocate(false, |_| true).unwrap();
        assert_eq!(p3.rtp, 40004);
        assert_eq!(a.allocate(false, |_| true), Err(PortsExhausted));
        assert_eq!(PortsExhausted::STATUS, 503);
        // Release 40000 then 40004: handed back in release order, not lowest first.
        a.release(40000).unwrap();
        a.release(40004).unwrap();
        assert_eq!(a.release(40004), Err(NotAllocated(40004)));
        assert_eq!(a.release(40001), Err(NotAllocated(40001)));
        assert_eq!(a.release(39998), Err(NotAllocated(39998)));
        assert_eq!(a.allocate(false, |_| true).unwrap().rtp, 40000);
        assert_eq!(a.allocate(false, |_| true).unwrap().rtp, 40004);
        assert_eq!(a.allocate(false, |_| true), Err(PortsExhausted));
    }

    #[test]
    fn just_released_port_not_reused_immediately_and_wraps() {
        let mut a = PortAllocator::new(50000, 50007).unwrap(); // 4 slots
        let first = a.allocate(false, |_| true).unwrap().rtp;
        a.release(first).unwrap();
        // The other three free slots come first, then the rotation wraps to 50000.
        let order: Vec<u16> = (0..4)
            .map(|_| a.allocate(false, |_| true).unwrap().rtp)
            .collect();
        assert_eq!(order, [50002, 50004, 50006, 50000]);
        assert!(a.is_allocated(50000));
        assert_eq!(a.available(), 0);
    }

    #[test]
    fn refused_ports_are_skipped_and_kept() {
        let mut a = PortAllocator::new(30000, 30005).unwrap(); // 3 slots
        let p = a.allocate(false, |p| p.rtp != 30000).unwrap();
        assert_eq!(p.rtp, 30002);
        assert!(!a.is_allocated(30000));
        assert_eq!(a.available(), 2);
        // Everything refused: exhausted, nothing lost.
        assert_eq!(a.allocate(false, |_| false), Err(PortsExhausted));
        assert_eq!(a.available(), 2);
        let mut tried = Vec::new();
        let p = a
            .allocate(true, |p| {
                tried.push(p.rtp);
                true
            })
            .unwrap();
        assert_eq!(tried, [p.rtp]);
    }
}
