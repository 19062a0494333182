//! Per-carrier limits: concurrent calls and new calls per second (`max_concurrent_calls`,
//! `max_cps` on a `[[carriers]]` entry; 0 or absent: no limit)
//!
//! Every call with a carrier — an inbound call from its `inbound` networks, an outbound fork to
//! its gateways — holds a [`Slot`] while it lives; the slot counts one active call and gives it
//! back when dropped, so no path (CANCEL, failure, BYE, drain) can leak one: the B2BUA keeps
//! the slot in the call or fork and drops it with them (a fork's as soon as it failed for
//! good). A call beyond `max_concurrent_calls`, or beyond `max_cps` (a token bucket of that
//! rate, burst of the same size), is refused: 503 to the inbound INVITE, a 503 failure of the
//! outbound fork (the dial's other targets go on). Limits are read from the call's
//! configuration each time, so a reload changes them; the counts carry over by carrier name.
//!
//! Metrics: the gauge `dialplane_carrier_active_calls{carrier}` and
//! `dialplane_carrier_limited_total{carrier,direction,limit}` (`inbound`/`outbound`,
//! `concurrent`/`cps`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::config::{CarrierConfig, Config};
use crate::message::Request;

const ACTIVE_METRIC: &str = "dialplane_carrier_active_calls";
const LIMITED_METRIC: &str = "dialplane_carrier_limited_total";

/// The per-carrier counts
#[derive(Debug, Default)]
pub(super) struct CarrierLimits {
    carriers: HashMap<String, Count>,
}

#[derive(Debug)]
struct Count {
    active: Arc<AtomicUsize>,
    /// Call attempts still admitted this second (the `max_cps` bucket).
    tokens: f64,
    at: Instant,
}

/// One active call of a carrier, given back when dropped
#[derive(Debug)]
pub(super) struct Slot {
    carrier: String,
    active: Arc<AtomicUsize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let left = self.active.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!(ACTIVE_METRIC, "carrier" => self.carrier.clone()).set(left as f64);
    }
}

/// Which limit refused a call
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    Concurrent,
    Cps,
}

impl CarrierLimits {
    /// Takes a slot of `carrier` at `now`, unless one of its limits is reached.
    pub(super) fn acquire(
        &mut self,
        carrier: &CarrierConfig,
        now: Instant,
    ) -> Result<Slot, Refused> {
        let count = self
            .carriers
            .entry(carrier.name.clone())
            .or_insert_with(|| Count {
                active: Arc::default(),
                tokens: f64::from(carrier.max_cps),
                at: now,
            });
        let active = count.active.load(Ordering::Relaxed);
        if carrier.max_concurrent_calls > 0 && active >= carrier.max_concurrent_calls as usize {
            return Err(Refused::Concurrent);
        }
        if carrier.max_cps > 0 {
            let rate = f64::from(carrier.max_cps);
            let elapsed = now.saturating_duration_since(count.at).as_secs_f64();
            count.tokens = (count.tokens + elapsed * rate).min(rate);
            count.at = count.at.max(now);
            if count.tokens < 1.0 {
                return Err(Refused::Cps);
            }
            count.tokens -= 1.0;
        }
        count.active.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(ACTIVE_METRIC, "carrier" => carrier.name.clone()).set((active + 1) as f64);
        Ok(Slot {
            carrier: carrier.name.clone(),
            active: count.active.clone(),
        })
    }

    /// A slot for an inbound call (none when it comes from no carrier); `Err` is the carrier
    /// at its limit.
    pub(super) fn inbound(
        &mut self,
        config: &Config,
        request: &Request,
        now: Instant,
    ) -> Result<Option<Slot>, Refused> {
        let Some(name) = crate::cdr::inbound_carrier(config, request) else {
            return Ok(None);
        };
        let Some(carrier) = config.carriers.iter().find(|c| c.name == name) else {
            return Ok(None);
        };
        self.acquire(carrier, now)
            .map(Some)
            .inspect_err(|r| refused(carrier, "inbound", *r))
    }

    /// Makes sure an outbound fork to `carrier` holds a slot (a fork failing over to the next
    /// gateway keeps its own); `Err(503)` when the carrier is at its limit.
    pub(super) fn outbound(
        &mut self,
        config: &Config,
        carrier: Option<&str>,
        slot: &mut Option<Slot>,
        now: Instant,
    ) -> Result<(), u16> {
        let Some(carrier) = carrier.and_then(|n| config.carriers.iter().find(|c| c.name == n))
        else {
            return Ok(());
        };
        if slot.is_some() {
            return Ok(());
        }
        match self.acquire(carrier, now) {
            Ok(s) => {
                *slot = Some(s);
                Ok(())
            }
            Err(r) => {
                refused(carrier, "outbound", r);
                Err(503)
            }
        }
    }
}

fn refused(carrier: &CarrierConfig, direction: &'static str, r: Refused) {
    let limit = match r {
        Refused::Concurrent => "concurrent",
        Refused::Cps => "cps",
    };
    tracing::info!(carrier = %carrier.name, direction, limit, "call refused: carrier at its limit");
    metrics::counter!(LIMITED_METRIC, "carrier" => carrier.name.clone(),
        "direction" => direction, "limit" => limit)
    .increment(1);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn carrier(concurrent: u32, cps: u32) -> CarrierConfig {
        let text = format!(
            "[[carriers]]\nname = \"acme\"\ninbound = [\"192.0.2.0/24\"]\n\
             max_concurrent_calls = {concurrent}\nmax_cps = {cps}\n"
        );
        Config::from_toml(&text, "test").unwrap().carriers.remove(0)
    }

    #[test]
    fn concurrent_calls_are_capped_and_slots_come_back_when_dropped() {
        let c = carrier(2, 0);
        let mut l = CarrierLimits::default();
        let t0 = Instant::now();
        let a = l.acquire(&c, t0).unwrap();
        let b = l.acquire(&c, t0).unwrap();
        assert_eq!(l.acquire(&c, t0).unwrap_err(), Refused::Concurrent);
        drop(a);
        let c2 = l.acquire(&c, t0).unwrap();
        assert_eq!(l.carriers["acme"].active.load(Ordering::Relaxed), 2);
        drop((b, c2));
        assert_eq!(l.carriers["acme"].active.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn calls_per_second_refill_over_time() {
        let c = carrier(0, 5);
        let mut l = CarrierLimits::default();
        let t0 = Instant::now();
        let slots: Vec<Slot> = (0..5).map(|_| l.acquire(&c, t0).unwrap()).collect();
        assert_eq!(l.acquire(&c, t0).unwrap_err(), Refused::Cps);
        drop(slots);
        assert_eq!(
            l.acquire(&c, t0).unwrap_err(),
            Refused::Cps,
            "ended calls give no cps"
        );
        let t1 = t0 + Duration::from_millis(200);
        assert!(l.acquire(&c, t1).is_ok(), "one back after 1/5 s");
        assert_eq!(l.acquire(&c, t1).unwrap_err(), Refused::Cps);
    }

    #[test]
    fn no_limits_count_without_refusing_and_forks_keep_their_slot() {
        let c = carrier(0, 0);
        let mut l = CarrierLimits::default();
        let t0 = Instant::now();
        let slots: Vec<Slot> = (0..1000).map(|_| l.acquire(&c, t0).unwrap()).collect();
        assert_eq!(l.carriers["acme"].active.load(Ordering::Relaxed), 1000);
        drop(slots);
        let limited = Config::from_toml(
            "[[carriers]]\nname = \"acme\"\ninbound = [\"192.0.2.0/24\"]\nmax_concurrent_calls = 1\n",
            "test",
        )
        .unwrap();
        let mut slot = None;
        assert_eq!(l.outbound(&limited, Some("acme"), &mut slot, t0), Ok(()));
        assert_eq!(
            l.outbound(&limited, Some("acme"), &mut slot, t0),
            Ok(()),
            "held"
        );
        let mut other = None;
        assert_eq!(l.outbound(&limited, Some("acme"), &mut other, t0), Err(503));
        assert_eq!(l.outbound(&limited, None, &mut other, t0), Ok(()));
        assert!(other.is_none());
    }
}
