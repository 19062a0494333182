//! Server transactions: INVITE (RFC 3261 §17.2.1 with RFC 6026) and non-INVITE (§17.2.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Outbox, RespondError, TransactionKey, TxEvent};
use crate::message::{Method, Request, Response, StatusCode};

/// State of an INVITE server transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InviteServerState {
    /// Waiting for the TU; `last` is the last provisional sent (100 Trying at first), re-sent on
    /// each INVITE retransmission.
    Proceeding { last: Vec<u8> },
    /// A 2xx was sent (RFC 6026): INVITE retransmissions are absorbed, ACKs go up, the TU
    /// retransmits the 2xx through [`super::Transactions::respond`], until Timer L.
    Accepted,
    /// A 3xx–6xx was sent; Timer G re-sends `last` with `g_interval` until ACK or Timer H.
    Completed { last: Vec<u8>, g_interval: Duration },
    /// The ACK arrived; further ACKs are absorbed until Timer I.
    Confirmed,
    /// Done.
    Terminated,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub(crate) struct InviteServer {
    key: TransactionKey,
    source: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    pub(crate) timers: TimerTable,
    pub(crate) state: InviteServerState,
}

impl InviteServer {
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            InviteServerState::Proceeding { .. } => "Proceeding",
            InviteServerState::Accepted => "Accepted",
            InviteServerState::Completed { .. } => "Completed",
            InviteServerState::Confirmed => "Confirmed",
            InviteServerState::Terminated => "Terminated",
        }
    }

    /// Creates the transaction and sends 100 Trying at once (§17.2.1 allows up to 200 ms; this
    /// layer never waits, so the TU's own provisional cannot race it).
    pub(crate) fn start(
        key: TransactionKey,
        request: &Request,
        source: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        out: &mut Outbox,
    ) -> InviteServer {
        let trying = Response::for_request(request, StatusCode::TRYING).to_bytes();
        out.transmit(source, trying.clone());
        InviteServer {
            key,
            source,
            reliable,
            cfg,
            timers: TimerTable::default(),
            state: InviteServerState::Proceeding { last: trying },
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == InviteServerState::Terminated
    }

    /// A request (an INVITE retransmission or an ACK) matched this transaction.
    pub(crate) fn on_request(&mut self, now: Instant, req: Request, out: &mut Outbox) {
        use InviteServerState::*;
        let ack = req.method == Method::ACK;
        self.state = match std::mem::replace(&mut self.state, Terminated) {
            Proceeding { last } if !ack => {
                out.transmit(self.source, last.clone());
                Proceeding { last }
            }
            Completed { last, g_interval } if !ack => {
                out.transmit(self.source, last.clone());
                Completed { last, g_interval }
            }
            Completed { .. } => {
                self.timers.stop_all();
                if self.reliable {
                    Terminated
                } else {
                    self.timers.set_after(Timer::I, now, self.cfg.t4);
                    Confirmed
                }
            }
            Accepted if ack => {
                out.event(TxEvent::Ack {
                    key: self.key.clone(),
                    request: req,
                });
                Accepted
            }
            // INVITE retransmissions in Accepted, ACKs in Confirmed, an ACK before any final
            // response: absorbed.
            s => s,
        };
    }

    /// The TU sends `resp`.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        resp: &Response,
        out: &mut Outbox,
    ) -> Result<(), RespondError> {
        use InviteServerState::*;
        let status = resp.status;
        let (state, result) = match std::mem::replace(&mut self.state, Terminated) {
            Proceeding { .. } if status.is_provisional() => {
                let bytes = resp.to_bytes();
                out.transmit(self.source, bytes.clone());
                (Proceeding { last: bytes }, Ok(()))
            }
            Proceeding { .. } if status.is_success() => {
                out.transmit(self.source, resp.to_bytes());
                self.timers.set_after(Timer::L, now, self.cfg.t1x64());
                (Accepted, Ok(()))
            }
            Proceeding { .. } => {
                let bytes = resp.to_bytes();
                out.transmit(self.source, bytes.clone());
                if !self.reliable {
                    self.timers.set_after(Timer::G, now, self.cfg.t1);
                }
                self.timers.set_after(Timer::H, now, self.cfg.t1x64());
                (
                    Completed {
                        last: bytes,
                        g_interval: self.cfg.t1,
                    },
                    Ok(()),
                )
            }
            Accepted if status.is_success() => {
                out.transmit(self.source, resp.to_bytes());
                (Accepted, Ok(()))
            }
            s => (s, Err(RespondError::WrongState)),
        };
        self.state = state;
        result
    }

    /// `timer` expired.
    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Outbox) {
        use InviteServerState::*;
        self.state = match (std::mem::replace(&mut self.state, Terminated), timer) {
            (Completed { last, g_interval }, Timer::G) => {
                metrics::counter!("dialplane_sip_retransmissions_total", "timer" => "G")
                    .increment(1);
                out.transmit(self.source, last.clone());
                let next = g_interval.saturating_mul(2).min(self.cfg.t2);
                self.timers.set_after(Timer::G, now, next);
                Completed {
                    last,
                    g_interval: next,
                }
            }
            (Completed { .. }, Timer::H) => {
                metrics::counter!("dialplane_sip_transaction_timeouts_total", "timer" => "H")
                    .increment(1);
                self.timers.stop_all();
                out.event(TxEvent::Timeout {
                    key: self.key.clone(),
                    timer,
                });
                Terminated
            }
            (Confirmed, Timer::I) | (Accepted, Timer::L) => {
                self.timers.stop_all();
                Terminated
            }
            (s, _) => s,
        };
    }
}

/// State of a non-INVITE server transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NonInviteServerState {
    /// Waiting for the TU; retransmissions are absorbed silently.
    Trying,
    /// A provisional was sent; retransmissions re-send `last`.
    Proceeding { last: Vec<u8> },
    /// A final response was sent; retransmissions re-send `last` until Timer J.
    Completed { last: Vec<u8> },
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction.
#[derive(Debug)]
pub(crate) struct NonInviteServer {
    source: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    pub(crate) timers: TimerTable,
    pub(crate) state: NonInviteServerState,
}

impl NonInviteServer {
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            NonInviteServerState::Trying => "Trying",
            NonInviteServerState::Proceeding { .. } => "Proceeding",
            NonInviteServerState::Completed { .. } => "Completed",
            NonInviteServerState::Terminated => "Terminated",
        }
    }

    pub(crate) fn start(source: SocketAddr, reliable: bool, cfg: TimerConfig) -> NonInviteServer {
        NonInviteServer {
            source,
            reliable,
            cfg,
            timers: TimerTable::default(),
            state: NonInviteServerState::Trying,
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == NonInviteServerState::Terminated
    }

    /// A retransmission of the request arrived.
    pub(crate) fn on_request(&mut self, out: &mut Outbox) {
        match &self.state {
            NonInviteServerState::Proceeding { last }
            | NonInviteServerState::Completed { last } => {
                out.transmit(self.source, last.clone());
            }
            NonInviteServerState::Trying | NonInviteServerState::Terminated => {}
        }
    }

    /// The TU sends `resp`.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        resp: &Response,
        out: &mut Outbox,
    ) -> Result<(), RespondError> {
        use NonInviteServerState::*;
        match &self.state {
            Trying | Proceeding { .. } => {
                let last = resp.to_bytes();
                out.transmit(self.source, last.clone());
                self.state = if resp.status.is_provisional() {
                    Proceeding { last }
                } else if self.reliable {
                    Terminated
                } else {
                    self.timers.set_after(Timer::J, now, self.cfg.t1x64());
                    Completed { last }
                };
                Ok(())
            }
            Completed { .. } | Terminated => Err(RespondError::WrongState),
        }
    }

    /// `timer` expired.
    pub(crate) fn on_timer(&mut self, timer: Timer) {
        if timer == Timer::J && matches!(self.state, NonInviteServerState::Completed { .. }) {
            self.timers.stop_all();
            self.state = NonInviteServerState::Terminated;
        }
    }
}
