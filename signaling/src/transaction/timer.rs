//! RFC 3261 §17 timers (plus L and M from RFC 6026) and a per-transaction [`TimerTable`].

use std::time::{Duration, Instant};

/// The transaction timers, named as in RFC 3261 Table 4 and RFC 6026.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: request retransmission (unreliable transports only).
    A,
    /// INVITE client: transaction timeout in Calling (64·T1).
    B,
    /// INVITE client: wait time for final response retransmissions in Completed.
    D,
    /// Non-INVITE client: request retransmission (unreliable transports only).
    E,
    /// Non-INVITE client: transaction timeout (64·T1).
    F,
    /// INVITE server: final 3xx–6xx response retransmission (unreliable transports only).
    G,
    /// INVITE server: wait time for the ACK (64·T1).
    H,
    /// INVITE server: wait time for ACK retransmissions in Confirmed.
    I,
    /// Non-INVITE server: wait time for request retransmissions in Completed.
    J,
    /// Non-INVITE client: wait time for response retransmissions in Completed.
    K,
    /// INVITE server (RFC 6026): wait time in Accepted for INVITE retransmissions and 2xx ACKs.
    L,
    /// INVITE client (RFC 6026): wait time in Accepted for 2xx retransmissions.
    M,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 12] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// The timer's letter, a static string usable as a metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Timer::A => "A",
            Timer::B => "B",
            Timer::D => "D",
            Timer::E => "E",
            Timer::F => "F",
            Timer::G => "G",
            Timer::H => "H",
            Timer::I => "I",
            Timer::J => "J",
            Timer::K => "K",
            Timer::L => "L",
            Timer::M => "M",
        }
    }
}

/// Base timer values (RFC 3261 §17.1.1.1 and Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate, default 500 ms.
    pub t1: Duration,
    /// Maximum retransmit interval for non-INVITE requests and INVITE responses, default 4 s.
    pub t2: Duration,
    /// Maximum duration a message remains in the network, default 5 s.
    pub t4: Duration,
    /// Timer D on unreliable transports, default 32 s (at least 32 s per §17.1.1.2).
    pub timer_d: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_d: Duration::from_secs(32),
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, L and M (and J on unreliable transports).
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// One optional deadline per [`Timer`], stored in a fixed array.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerTable {
    data: [Option<Instant>; 12],
}

impl TimerTable {
    /// Arms (or re-arms) `timer` to fire at `at`.
    pub fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer.index()] = Some(at);
    }

    /// Arms `timer` to fire `after` from `now`; a deadline past what [`Instant`] can represent
    /// means never, so the timer is disarmed instead of overflowing.
    pub fn set_after(&mut self, timer: Timer, now: Instant, after: Duration) {
        self.data[timer.index()] = now.checked_add(after);
    }

    /// Disarms `timer`.
    pub fn stop(&mut self, timer: Timer) {
        self.data[timer.index()] = None;
    }

    /// Disarms every timer.
    pub fn stop_all(&mut self) {
        self.data = [None; 12];
    }

    /// The deadline of `timer`, if armed.
    pub fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer.index()]
    }

    /// Whether `timer` is armed and due at `now`.
    pub fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest armed deadline and its timer.
    pub fn next(&self) -> Option<(Timer, Instant)> {
        Timer::ALL
            .iter()
            .filter_map(|&t| self.get(t).map(|at| (t, at)))
            .min_by_key(|&(_, at)| at)
    }

    /// Disarms and returns the earliest timer due at `now`, if any.
    pub fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (t, at) = self.next()?;
        if at <= now {
            self.stop(t);
            Some(t)
        } else {
            None
        }
    }
}
