//! The retransmission cache: a request that arrives again with the same cookie gets the reply
//! sent the first time, without running the command again (an `offer` retransmitted by
//! Kamailio must not allocate a second set of ports).
//!
//! When a command runs asynchronously (the driver hands it to a shard and the reply comes back
//! later), [`ReplyCache::begin`] marks the cookie in progress so a retransmission arriving
//! meanwhile is recognised ([`Lookup::InProgress`]: drop it; the client retransmits again and
//! then gets the cached reply) instead of running the command a second time.
//!
//! Bounded by count and by age; time is an argument. The key is whatever the driver chooses:
//! the cookie alone (as rtpengine does), or the sender's address followed by the cookie when
//! several proxies share a relay.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Cookie → reply bytes, for at most `capacity` entries no older than `ttl`.
#[derive(Debug)]
pub struct ReplyCache {
    entries: HashMap<Vec<u8>, Entry>,
    /// Insertion order: (key, generation). Stale items (replaced or removed keys) are skipped.
    order: VecDeque<(Vec<u8>, u64)>,
    capacity: usize,
    ttl: Duration,
    next_generation: u64,
}

/// What the cache knows about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Nothing: run the command.
    Miss,
    /// The command is running (see [`ReplyCache::begin`]): drop the retransmission.
    InProgress,
    /// The reply sent before: send it again.
    Hit(&'a [u8]),
}

#[derive(Debug)]
struct Entry {
    /// `None` while the command runs.
    reply: Option<Vec<u8>>,
    inserted: Instant,
    generation: u64,
}

impl ReplyCache {
    /// rtpengine keeps replies for 30 s; Kamailio's rtpengine module retransmits within a few
    /// seconds.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(30);

    /// A cache of at most `capacity` replies (at least one), each kept for `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
            ttl,
            next_generation: 0,
        }
    }

    /// The reply cached for `key`, if younger than the ttl at `now`.
    pub fn get(&mut self, key: &[u8], now: Instant) -> Option<&[u8]> {
        match self.lookup(key, now) {
            Lookup::Hit(r) => Some(r),
            _ => None,
        }
    }

    /// What is known about `key` at `now`, changing nothing but expiry.
    pub fn lookup(&mut self, key: &[u8], now: Instant) -> Lookup<'_> {
        self.expire(now);
        match self.entries.get(key) {
            Some(e) if now.saturating_duration_since(e.inserted) < self.ttl => match &e.reply {
                Some(r) => Lookup::Hit(r),
                None => Lookup::InProgress,
            },
            _ => Lookup::Miss,
        }
    }

    /// Like [`ReplyCache::lookup`], but on a miss marks `key` in progress (until
    /// [`ReplyCache::insert`] gives its reply or the ttl passes) and returns [`Lookup::Miss`]:
    /// the caller runs the command.
    pub fn begin(&mut self, key: &[u8], now: Instant) -> Lookup<'_> {
        if matches!(self.lookup(key, now), Lookup::Miss) {
            self.store(key, None, now);
            return Lookup::Miss;
        }
        self.lookup(key, now)
    }

    /// Caches `reply` for `key` at `now`, replacing an older reply (or the in-progress mark)
    /// for the same key and evicting the oldest entries beyond the capacity.
    pub fn insert(&mut self, key: &[u8], reply: Vec<u8>, now: Instant) {
        self.store(key, Some(reply), now);
    }

    fn store(&mut self, key: &[u8], reply: Option<Vec<u8>>, now: Instant) {
        self.expire(now);
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(
            key.to_vec(),
            Entry {
                reply,
                inserted: now,
                generation,
            },
        );
        self.order.push_back((key.to_vec(), generation));
        while self.entries.len() > self.capacity {
            self.pop_oldest();
        }
        // Replacements leave stale items behind; keep the queue within twice the live count.
        if self.order.len() > 2 * self.capacity {
            let entries = &self.entries;
            self.order
                .retain(|(k, g)| entries.get(k).is_some_and(|e| e.generation == *g));
        }
    }

    /// Drops every entry older than the ttl at `now`. `get` and `insert` call it; a driver may
    /// also call it from a periodic timer to free memory sooner.
    pub fn expire(&mut self, now: Instant) {
        while let Some((key, generation)) = self.order.front() {
            match self.entries.get(key) {
                Some(e) if e.generation == *generation => {
                    if now.saturating_duration_since(e.inserted) < self.ttl {
                        break;
                    }
                    self.pop_oldest();
                }
                // Stale: the key was replaced or removed since.
                _ => {
                    self.order.pop_front();
                }
            }
        }
    }

    fn pop_oldest(&mut self) {
        while let Some((key, generation)) = self.order.pop_front() {
            if self
                .entries
                .get(&key)
                .is_some_and(|e| e.generation == generation)
            {
                self.entries.remove(&key);
                return;
            }
        }
    }

    /// Live entries (some may have expired since the last `get`, `insert` or `expire`).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Default for ReplyCache {
    /// 65 536 replies for [`ReplyCache::DEFAULT_TTL`].
    fn default() -> Self {
        Self::new(65_536, Self::DEFAULT_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn hit_until_expiry() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(10, ms(1000));
        assert_eq!(c.get(b"a", t0), None);
        c.insert(b"a", b"reply-a".to_vec(), t0);
        assert_eq!(c.get(b"a", t0), Some(&b"reply-a"[..]));
        assert_eq!(c.get(b"a", t0 + ms(999)), Some(&b"reply-a"[..]));
        assert_eq!(c.get(b"b", t0 + ms(999)), None);
        assert_eq!(c.get(b"a", t0 + ms(1000)), None);
        assert!(c.is_empty());
    }

    #[test]
    fn bounded_by_count_oldest_first() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(3, ms(10_000));
        for (i, k) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
            c.insert(*k, vec![i as u8], t0 + ms(i as u64));
        }
        assert_eq!(c.len(), 3);
        let now = t0 + ms(10);
        assert_eq!(c.get(b"a", now), None);
        assert_eq!(c.get(b"b", now), Some(&[1u8][..]));
        assert_eq!(c.get(b"d", now), Some(&[3u8][..]));
    }

    #[test]
    fn replacing_a_key_restarts_its_age() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(2, ms(100));
        c.insert(b"a", b"1".to_vec(), t0);
        c.insert(b"b", b"2".to_vec(), t0 + ms(10));
        c.insert(b"a", b"3".to_vec(), t0 + ms(50));
        assert_eq!(c.len(), 2);
        // The stale first "a" expiring must not take the new one with it.
        assert_eq!(c.get(b"a", t0 + ms(120)), Some(&b"3"[..]));
        assert_eq!(c.get(b"b", t0 + ms(120)), None);
        assert_eq!(c.get(b"a", t0 + ms(150)), None);
        // Many replacements of one key keep the queue short.
        for i in 0..1000u64 {
            c.insert(b"k", vec![], t0 + ms(200 + i / 100));
        }
        assert!(c.order.len() <= 4, "{}", c.order.len());
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn in_progress_until_the_reply_arrives() {
        let t0 = Instant::now();
        let mut c = ReplyCache::new(10, ms(1000));
        assert_eq!(c.begin(b"a", t0), Lookup::Miss);
        assert_eq!(c.begin(b"a", t0 + ms(1)), Lookup::InProgress);
        assert_eq!(c.lookup(b"a", t0 + ms(2)), Lookup::InProgress);
        assert_eq!(c.get(b"a", t0 + ms(2)), None);
        c.insert(b"a", b"r".to_vec(), t0 + ms(5));
        assert_eq!(c.begin(b"a", t0 + ms(6)), Lookup::Hit(b"r"));
        // A job that never finishes stops blocking the cookie after the ttl.
        assert_eq!(c.begin(b"b", t0), Lookup::Miss);
        assert_eq!(c.begin(b"b", t0 + ms(1000)), Lookup::Miss);
        assert_eq!(c.lookup(b"b", t0 + ms(1001)), Lookup::InProgress);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + ms(1000);
        let mut c = ReplyCache::new(2, ms(100));
        c.insert(b"a", b"1".to_vec(), t0);
        assert_eq!(c.get(b"a", t0 - ms(500)), Some(&b"1"[..]));
    }
}
