//! Per-source request rate limiting: one token bucket per source IP address (sans-IO: `now` is
//! an argument)

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Token buckets keyed by source address; `rate` tokens per second, burst of `rate`.
///
/// The table is bounded: when it holds `max_sources` entries, buckets idle long enough to be
/// full again are forgotten (they would allow a full burst anyway); if none is, the newcomer is
/// limited until some are. So a spoofed-source flood costs memory only up to the bound.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    max_sources: usize,
    buckets: HashMap<IpAddr, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `rate` requests per second per source; 0 allows everything.
    pub(crate) fn new(rate: u32, max_sources: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(rate),
            max_sources,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `source`; `false` means over the limit.
    pub(crate) fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        if !self.buckets.contains_key(&source) && self.buckets.len() >= self.max_sources {
            let refill = Duration::from_secs(1);
            self.buckets
                .retain(|_, b| now.saturating_duration_since(b.at) < refill);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let rate = self.rate;
        let b = self.buckets.entry(source).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(rate);
        b.at = b.at.max(now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_source() {
        let mut r = RateLimiter::new(10, 100);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!((0..15).filter(|_| r.allow(a, t0)).count(), 10);
        assert!(r.allow(b, t0), "another source has its own bucket");
        assert!(!r.allow(a, t0 + Duration::from_millis(50)));
        assert!(
            r.allow(a, t0 + Duration::from_millis(100)),
            "one token back"
        );
        assert!(!r.allow(a, t0 + Duration::from_millis(100)));
        let later = t0 + Duration::from_secs(5);
        assert_eq!((0..15).filter(|_| r.allow(a, later)).count(), 10, "capped");
    }

    #[test]
    fn zero_rate_is_off_and_the_table_is_bounded() {
        let mut off = RateLimiter::new(0, 1);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| off.allow("192.0.2.1".parse().unwrap(), t0)));
        let mut r = RateLimiter::new(5, 2);
        let ip = |i: u8| IpAddr::from([192, 0, 2, i]);
        assert!(r.allow(ip(1), t0));
        assert!(r.allow(ip(2), t0));
        assert!(!r.allow(ip(3), t0), "full table of busy sources");
        assert!(
            r.allow(ip(3), t0 + Duration::from_secs(2)),
            "idle ones forgotten"
        );
        assert!(r.buckets.len() <= 2);
    }
}
