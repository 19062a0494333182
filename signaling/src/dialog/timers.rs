//! The dialog layer's deadlines: one ordered set over every dialog and server INVITE, so
//! the next deadline is found without scanning.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::{DialogId, InviteId};

/// What a deadline is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum TimerRef {
    /// Re-send the 2xx to an INVITE until the ACK; BYE at 64·T1 (§13.3.1.4).
    Retransmit2xx(DialogId),
    /// Re-send a reliable provisional until the PRACK; 5xx at 64·T1 (RFC 3262 §3).
    Reliable1xx(InviteId),
    /// Re-send a re-INVITE that got 491 (§14.1).
    GlareRetry(DialogId),
    /// Send a session refresh (RFC 4028 §10, at SE/2).
    Refresh(DialogId),
    /// No refresh came: BYE (RFC 4028 §10, at SE − min(32, SE/3)).
    Expiry(DialogId),
}

/// Armed deadlines, ordered by instant.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    order: BTreeSet<(Instant, TimerRef)>,
    at: HashMap<TimerRef, Instant>,
}

impl Timers {
    /// Arms (or re-arms) `r` at `at`.
    pub(crate) fn set(&mut self, r: TimerRef, at: Instant) {
        self.stop(r);
        self.order.insert((at, r));
        self.at.insert(r, at);
    }

    /// Disarms `r`.
    pub(crate) fn stop(&mut self, r: TimerRef) {
        if let Some(old) = self.at.remove(&r) {
            self.order.remove(&(old, r));
        }
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.order.first().map(|(at, _)| *at)
    }

    /// Disarms and returns the earliest timer due at `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<TimerRef> {
        let &(at, r) = self.order.first()?;
        if at > now {
            return None;
        }
        self.stop(r);
        Some(r)
    }

    /// Disarms every timer of a dialog.
    pub(crate) fn stop_dialog(&mut self, d: DialogId) {
        for r in [
            TimerRef::Retransmit2xx(d),
            TimerRef::GlareRetry(d),
            TimerRef::Refresh(d),
            TimerRef::Expiry(d),
        ] {
            self.stop(r);
        }
    }
}
