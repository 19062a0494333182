//! Brute-force throttling of digest authentication (sans-IO: `now` is an argument)
//!
//! Failed attempts (credentials present but wrong: a bad response or an unknown user) are
//! counted per source IP address and per username within a window. When either reaches
//! `max_auth_failures`, that source or username is locked out for `auth_lockout_s`: the
//! registrar answers its REGISTERs 403 without checking anything (no hashing, no oracle).
//! A successful authentication forgets the failures of its source and username.
//!
//! Locking a username means someone elsewhere guessing alice's password also keeps alice out
//! for the lockout: the price of stopping a guesser that spreads over many addresses.
//!
//! Memory is bounded: each table keeps at most [`MAX_TRACKED`] keys; entries whose window and
//! lockout are over are forgotten first, and when none is, new keys go untracked until some are.
//!
//! Metrics: `dialplane_auth_lockouts_total{by}` (`source`, `user`: lockouts started) and
//! `dialplane_auth_throttled_total` (requests refused while locked out).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

/// Counter of lockouts started, label `by` = `source` or `user`
pub const LOCKOUTS_METRIC: &str = "dialplane_auth_lockouts_total";
/// Counter of requests refused because their source or username is locked out
pub const THROTTLED_METRIC: &str = "dialplane_auth_throttled_total";

/// Keys kept per table at most.
pub const MAX_TRACKED: usize = 100_000;

/// The throttle's settings
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` that lock a source or username out; 0 turns throttling off.
    pub max_failures: u32,
    /// How far back failures count.
    pub window: Duration,
    /// How long a lockout lasts.
    pub lockout: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    /// Start of the current counting window.
    since: SystemTime,
    locked_until: Option<SystemTime>,
}

/// Failure counts and lockouts by source and by username
#[derive(Debug)]
pub struct AuthThrottle {
    config: ThrottleConfig,
    sources: Table<IpAddr>,
    users: Table<String>,
}

impl AuthThrottle {
    /// A throttle with no history
    pub fn new(config: ThrottleConfig) -> AuthThrottle {
        AuthThrottle {
            config,
            sources: Table::default(),
            users: Table::default(),
        }
    }

    /// Takes new settings (a configuration reload); the history stays.
    pub fn reconfigure(&mut self, config: ThrottleConfig) {
        self.config = config;
    }

    /// Whether requests from `source` or for `user` are refused at `now`.
    pub fn locked(&self, now: SystemTime, source: IpAddr, user: Option<&str>) -> bool {
        if self.config.max_failures == 0 {
            return false;
        }
        let source = source.to_canonical();
        let locked =
            self.sources.locked(now, &source) || user.is_some_and(|u| self.users.locked(now, u));
        if locked {
            metrics::counter!(THROTTLED_METRIC).increment(1);
        }
        locked
    }

    /// Counts a failed attempt from `source` for `user`.
    pub fn failed(&mut self, now: SystemTime, source: IpAddr, user: &str) {
        if self.config.max_failures == 0 {
            return;
        }
        if self.sources.fail(now, source.to_canonical(), &self.config) {
            tracing::info!("auth: source locked out after repeated failures");
            metrics::counter!(LOCKOUTS_METRIC, "by" => "source").increment(1);
        }
        if self.users.fail(now, user.to_owned(), &self.config) {
            tracing::info!("auth: username locked out after repeated failures");
            metrics::counter!(LOCKOUTS_METRIC, "by" => "user").increment(1);
        }
    }

    /// A successful authentication: forgets the failures of `source` and `user`.
    pub fn succeeded(&mut self, source: IpAddr, user: &str) {
        self.sources.0.remove(&source.to_canonical());
        self.users.0.remove(user);
    }
}

#[derive(Debug)]
struct Table<K>(HashMap<K, Record>);

impl<K> Default for Table<K> {
    fn default() -> Self {
        Table(HashMap::new())
    }
}

/// Whole seconds from `a` to `b`, zero if `b` is earlier (a clock stepped back).
fn since(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

impl<K: Hash + Eq> Table<K> {
    fn locked<Q>(&self, now: SystemTime, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.0
            .get(key)
            .and_then(|r| r.locked_until)
            .is_some_and(|until| now < until)
    }

    /// Counts one failure; true when it starts a lockout.
    fn fail(&mut self, now: SystemTime, key: K, c: &ThrottleConfig) -> bool {
        if !self.0.contains_key(&key) && self.0.len() >= MAX_TRACKED {
            self.0.retain(|_, r| {
                since(r.since, now) < c.window || r.locked_until.is_some_and(|u| now < u)
            });
            if self.0.len() >= MAX_TRACKED {
                return false;
            }
        }
        let r = self.0.entry(key).or_insert(Record {
            failures: 0,
            since: now,
            locked_until: None,
        });
        if r.locked_until.is_some_and(|u| now >= u) || since(r.since, now) >= c.window {
            *r = Record {
                failures: 0,
                since: now,
                locked_until: None,
            };
        }
        r.failures += 1;
        if r.failures >= c.max_failures && r.locked_until.is_none() {
            r.locked_until = Some(now + c.lockout);
            return true;
        }
        false
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ThrottleConfig = ThrottleConfig {
        max_failures: 3,
        window: Duration::from_secs(60),
        lockout: Duration::from_secs(300),
    };

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    fn ip(i: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, i])
    }

    #[test]
    fn a_source_is_locked_out_after_n_failures_for_the_lockout() {
        let mut th = AuthThrottle::new(CONFIG);
        th.failed(t(0), ip(1), "alice");
        th.failed(t(1), ip(1), "bob");
        assert!(!th.locked(t(2), ip(1), Some("carol")));
        th.failed(t(2), ip(1), "carol");
        assert!(th.locked(t(2), ip(1), Some("dave")), "source locked");
        assert!(th.locked(t(2), ip(1), None));
        assert!(!th.locked(t(2), ip(2), Some("dave")), "others are not");
        assert!(th.locked(t(301), ip(1), None), "still within the lockout");
        assert!(!th.locked(t(302), ip(1), None), "lockout over");
        // After the lockout the count starts again.
        th.failed(t(303), ip(1), "alice");
        assert!(!th.locked(t(303), ip(1), None));
    }

    #[test]
    fn a_username_is_locked_out_whatever_the_source() {
        let mut th = AuthThrottle::new(CONFIG);
        for i in 0..3 {
            th.failed(t(u64::from(i)), ip(10 + i), "alice");
        }
        assert!(th.locked(t(5), ip(99), Some("alice")));
        assert!(!th.locked(t(5), ip(99), Some("bob")));
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let mut th = AuthThrottle::new(CONFIG);
        th.failed(t(0), ip(1), "alice");
        th.failed(t(30), ip(1), "alice");
        th.failed(t(61), ip(1), "alice");
        th.failed(t(62), ip(1), "alice");
        assert!(!th.locked(t(62), ip(1), Some("alice")));
        th.failed(t(63), ip(1), "alice");
        assert!(th.locked(t(63), ip(1), Some("alice")));
    }

    #[test]
    fn success_resets_and_zero_is_off() {
        let mut th = AuthThrottle::new(CONFIG);
        th.failed(t(0), ip(1), "alice");
        th.failed(t(1), ip(1), "alice");
        th.succeeded(ip(1), "alice");
        th.failed(t(2), ip(1), "alice");
        th.failed(t(3), ip(1), "alice");
        assert!(!th.locked(t(3), ip(1), Some("alice")));
        let mut off = AuthThrottle::new(ThrottleConfig {
            max_failures: 0,
            ..CONFIG
        });
        for i in 0..100 {
            off.failed(t(i), ip(1), "alice");
        }
        assert!(!off.locked(t(100), ip(1), Some("alice")));
        assert_eq!(off.sources.len(), 0);
    }

    #[test]
    fn ipv4_mapped_sources_share_the_ipv4_record() {
        let mut th = AuthThrottle::new(CONFIG);
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        for i in 0..3 {
            th.failed(t(i), mapped, "alice");
        }
        assert!(th.locked(t(3), ip(1), None));
    }
}
