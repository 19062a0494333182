//! Per-source limit on new requests: one token bucket per source IP address (sans-IO: `now`
//! is an argument)
//!
//! Each source has two buckets of the configured rate and burst: one admits requests, the
//! other pays for the 503s refusing them. A source within the rate is served; one up to twice
//! the rate gets 503 with Retry-After for the excess (a well-behaved client backs off); beyond
//! that ("far over": a flood) the excess is dropped without a reply, so a flood costs us no
//! more than parsing it and never turns us into a reflector.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

/// What to do with one new request
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit.
    Allow,
    /// Over it: answer 503 with Retry-After.
    Refuse,
    /// Far over it: drop silently.
    Drop,
}

/// Token buckets keyed by source address
///
/// Memory is bounded: buckets idle long enough to be full again are forgotten (they would
/// admit a full burst anyway) every [`SWEEP`] and whenever the table holds `max_sources`; if
/// none is idle, a newcomer is refused until some are. So a spoofed-source flood costs memory
/// only up to the bound.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
    last_sweep: Option<Instant>,
}

/// How often idle buckets are forgotten even when the table is not full.
const SWEEP: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests still admitted.
    tokens: f64,
    /// 503s still sent.
    replies: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter for `limit` per source, tracking at most `max_sources` sources at once.
    pub(crate) fn new(limit: RateLimit, max_sources: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(limit.requests_per_s),
            burst: f64::from(limit.burst.max(1)),
            max_sources,
            buckets: HashMap::new(),
            last_sweep: None,
        }
    }

    /// Time for an empty bucket to fill up.
    fn refill_time(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate)
    }

    fn sweep(&mut self, now: Instant) {
        let refill = self.refill_time();
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) < refill);
        self.last_sweep = Some(now);
    }

    /// Judges one new request from `source`, taking a token when it is admitted.
    pub(crate) fn check(&mut self, source: IpAddr, now: Instant) -> Verdict {
        if self.rate == 0.0 {
            return Verdict::Allow;
        }
        let due = self
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP);
        let full = !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources;
        if due || full {
            self.sweep(now);
            if self.buckets.len() >= self.max_sources {
                return Verdict::Drop;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            replies: burst,
            at: now,
        });
        let gained = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + gained).min(burst);
        b.replies = (b.replies + gained).min(burst);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Verdict::Allow
        } else if b.replies >= 1.0 {
            b.replies -= 1.0;
            Verdict::Refuse
        } else {
            Verdict::Drop
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, i])
    }

    fn count(r: &mut RateLimiter, src: IpAddr, n: usize, at: Instant) -> [usize; 3] {
        let mut c = [0; 3];
        for _ in 0..n {
            c[r.check(src, at) as usize] += 1;
        }
        c
    }

    #[test]
    fn burst_then_refuse_then_drop_per_source() {
        let limit = RateLimit {
            requests_per_s: 10,
            burst: 20,
        };
        let mut r = RateLimiter::new(limit, 100);
        let t0 = Instant::now();
        // 20 admitted (the burst), 20 refused with 503, the rest dropped.
        assert_eq!(count(&mut r, ip(1), 50, t0), [20, 20, 10]);
        assert_eq!(r.check(ip(2), t0), Verdict::Allow, "own bucket per source");
        // 100 ms later one token of each kind is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(count(&mut r, ip(1), 3, t1), [1, 1, 1]);
        // Refills cap at the burst.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(count(&mut r, ip(1), 50, later), [20, 20, 10]);
    }

    #[test]
    fn a_steady_rate_within_the_limit_is_always_admitted() {
        let mut r = RateLimiter::new(RateLimit::per_second(10), 100);
        let t0 = Instant::now();
        // 10/s for a minute, one every 100 ms.
        for i in 0..600 {
            let at = t0 + Duration::from_millis(100 * i);
            assert_eq!(r.check(ip(1), at), Verdict::Allow, "request {i}");
        }
    }

    #[test]
    fn off_allows_everything() {
        let mut off = RateLimiter::new(RateLimit::per_second(0), 1);
        let t0 = Instant::now();
        assert!((0..=255).all(|i| off.check(ip(i), t0) == Verdict::Allow));
    }

    #[test]
    fn the_table_is_bounded_and_idle_sources_are_forgotten() {
        let mut r = RateLimiter::new(RateLimit::per_second(5), 2);
        let t0 = Instant::now();
        assert_eq!(r.check(ip(1), t0), Verdict::Allow);
        assert_eq!(r.check(ip(2), t0), Verdict::Allow);
        assert_eq!(
            r.check(ip(3), t0),
            Verdict::Drop,
            "full table of busy sources"
        );
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(r.check(ip(3), t1), Verdict::Allow, "idle ones forgotten");
        assert!(r.tracked() <= 2);
        // A big table shrinks by itself once its sources fall quiet.
        let mut big = RateLimiter::new(RateLimit::per_second(5), 10_000);
        for i in 0..=255 {
            big.check(ip(i), t0);
        }
        assert_eq!(big.tracked(), 256);
        big.check(ip(1), t0 + SWEEP);
        assert_eq!(big.tracked(), 1);
    }
}
