//! Client transactions: INVITE (RFC 3261 §17.1.1 with RFC 6026) and non-INVITE (§17.1.2).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::timer::{Timer, TimerConfig, TimerTable};
use super::{Outbox, TransactionKey, TxEvent};
use crate::message::{CSeq, HeaderName, Method, Request, Response};

/// State of an INVITE client transaction; each variant holds only its own data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InviteClientState {
    /// Request sent, nothing heard; Timer A retransmits with `a_interval`, Timer B times out.
    Calling { a_interval: Duration },
    /// A provisional response arrived.
    Proceeding,
    /// A 2xx arrived (RFC 6026); every 2xx goes up until Timer M.
    Accepted,
    /// A 3xx–6xx arrived; `ack` is re-sent for each retransmitted final response until Timer D.
    Completed { ack: Vec<u8> },
    /// Done.
    Terminated,
}

/// An INVITE client transaction.
#[derive(Debug)]
pub(crate) struct InviteClient {
    key: TransactionKey,
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    request: Request,
    bytes: Vec<u8>,
    pub(crate) timers: TimerTable,
    pub(crate) state: InviteClientState,
}

impl InviteClient {
    /// Sent to `dest` and nothing heard yet.
    pub(crate) fn silent_towards(&self, dest: SocketAddr) -> bool {
        self.dest == dest && matches!(self.state, InviteClientState::Calling { .. })
    }

    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            InviteClientState::Calling { .. } => "Calling",
            InviteClientState::Proceeding => "Proceeding",
            InviteClientState::Accepted => "Accepted",
            InviteClientState::Completed { .. } => "Completed",
            InviteClientState::Terminated => "Terminated",
        }
    }

    /// Sends the request and arms Timers A (unreliable only) and B.
    pub(crate) fn start(
        now: Instant,
        key: TransactionKey,
        request: Request,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        out: &mut Outbox,
    ) -> InviteClient {
        let bytes = request.to_bytes();
        let timers = send_and_arm(now, &bytes, dest, reliable, &cfg, Timer::A, Timer::B, out);
        InviteClient {
            key,
            dest,
            reliable,
            cfg,
            request,
            bytes,
            timers,
            state: InviteClientState::Calling { a_interval: cfg.t1 },
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == InviteClientState::Terminated
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, now: Instant, resp: Response, out: &mut Outbox) {
        use InviteClientState::*;
        let status = resp.status;
        self.state = match std::mem::replace(&mut self.state, Terminated) {
            Calling { .. } | Proceeding if status.is_provisional() => {
                self.timers.stop(Timer::A);
                self.timers.stop(Timer::B);
                out.response(&self.key, resp);
                Proceeding
            }
            Calling { .. } | Proceeding if status.is_success() => {
                self.timers.stop_all();
                self.timers.set_after(Timer::M, now, self.cfg.t1x64());
                out.response(&self.key, resp);
                Accepted
            }
            Calling { .. } | Proceeding => {
                self.timers.stop_all();
                let ack = build_ack(&self.request, &resp).to_bytes();
                out.transmit(self.dest, ack.clone());
                out.response(&self.key, resp);
                if self.reliable {
                    Terminated
                } else {
                    self.timers.set_after(Timer::D, now, self.cfg.timer_d);
                    Completed { ack }
                }
            }
            Accepted if status.is_success() => {
                out.response(&self.key, resp);
                Accepted
            }
            Completed { ack } if status.is_final() && !status.is_success() => {
                out.transmit(self.dest, ack.clone());
                Completed { ack }
            }
            // Anything else (late 1xx, a 2xx after a failure, …) is absorbed.
            s => s,
        };
    }

    /// `timer` expired.
    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Outbox) {
        use InviteClientState::*;
        self.state = match (std::mem::replace(&mut self.state, Terminated), timer) {
            (Calling { a_interval }, Timer::A) => {
                metrics::counter!("dialplane_sip_retransmissions_total", "timer" => "A")
                    .increment(1);
                out.transmit(self.dest, self.bytes.clone());
                // Timer A doubles without a cap (§17.1.1.2); Timer B ends it.
                let next = a_interval.saturating_mul(2);
                self.timers.set_after(Timer::A, now, next);
                Calling { a_interval: next }
            }
            (Calling { .. }, Timer::B) => {
                metrics::counter!("dialplane_sip_transaction_timeouts_total", "timer" => "B")
                    .increment(1);
                self.timers.stop_all();
                out.event(TxEvent::Timeout {
                    key: self.key.clone(),
                    timer,
                });
                Terminated
            }
            (Accepted, Timer::M) | (Completed { .. }, Timer::D) => {
                self.timers.stop_all();
                Terminated
            }
            (s, _) => s,
        };
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): Request-URI, Call-ID, From, top
/// Via and Route of the INVITE, To of the response, CSeq number of the INVITE with method ACK.
pub(crate) fn build_ack(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::ACK, invite.uri.clone());
    let h = &invite.headers;
    if let Some(via) = h.values(&HeaderName::VIA).next() {
        ack.headers.push(HeaderName::VIA, via);
    }
    for name in [HeaderName::FROM, HeaderName::CALL_ID] {
        if let Some(v) = h.get(&name) {
            ack.headers.push(name, v);
        }
    }
    let to = resp
        .headers
        .get(&HeaderName::TO)
        .or_else(|| h.get(&HeaderName::TO));
    if let Some(to) = to {
        ack.headers.push(HeaderName::TO, to);
    }
    if let Ok(cseq) = h.cseq() {
        ack.headers.push(
            HeaderName::CSEQ,
            CSeq {
                seq: cseq.seq,
                method: Method::ACK,
            }
            .to_string(),
        );
    }
    for route in h.get_all(&HeaderName::ROUTE) {
        ack.headers.push(HeaderName::ROUTE, route);
    }
    ack.headers.push(HeaderName::MAX_FORWARDS, "70");
    ack
}

/// State of a non-INVITE client transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum NonInviteClientState {
    /// Request sent; Timer E retransmits with `e_interval` (doubling, capped at T2).
    Trying { e_interval: Duration },
    /// A provisional response arrived; Timer E fires every T2.
    Proceeding,
    /// A final response arrived; retransmissions are absorbed until Timer K.
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE client transaction.
#[derive(Debug)]
pub(crate) struct NonInviteClient {
    key: TransactionKey,
    dest: SocketAddr,
    reliable: bool,
    cfg: TimerConfig,
    bytes: Vec<u8>,
    pub(crate) timers: TimerTable,
    pub(crate) state: NonInviteClientState,
}

impl NonInviteClient {
    /// Sent to `dest` and nothing heard yet.
    pub(crate) fn silent_towards(&self, dest: SocketAddr) -> bool {
        self.dest == dest && matches!(self.state, NonInviteClientState::Trying { .. })
    }

    pub(crate) fn state_name(&self) -> &'static str {
        match self.state {
            NonInviteClientState::Trying { .. } => "Trying",
            NonInviteClientState::Proceeding => "Proceeding",
            NonInviteClientState::Completed => "Completed",
            NonInviteClientState::Terminated => "Terminated",
        }
    }

    /// Sends the request and arms Timers E (unreliable only) and F.
    pub(crate) fn start(
        now: Instant,
        key: TransactionKey,
        request: &Request,
        dest: SocketAddr,
        reliable: bool,
        cfg: TimerConfig,
        out: &mut Outbox,
    ) -> NonInviteClient {
        let bytes = request.to_bytes();
        let timers = send_and_arm(now, &bytes, dest, reliable, &cfg, Timer::E, Timer::F, out);
        NonInviteClient {
            key,
            dest,
            reliable,
            cfg,
            bytes,
            timers,
            state: NonInviteClientState::Trying { e_interval: cfg.t1 },
        }
    }

    pub(crate) fn is_terminated(&self) -> bool {
        self.state == NonInviteClientState::Terminated
    }

    /// A response matched this transaction.
    pub(crate) fn on_response(&mut self, now: Instant, resp: Response, out: &mut Outbox) {
        use NonInviteClientState::*;
        let status = resp.status;
        self.state = match std::mem::replace(&mut self.state, Terminated) {
            s @ (Trying { .. } | Proceeding) if status.is_provisional() => {
                out.response(&self.key, resp);
                match s {
                    // Timer E keeps its deadline; from now on it fires every T2.
                    Trying { .. } => Proceeding,
                    s => s,
                }
            }
            Trying { .. } | Proceeding => {
                self.timers.stop_all();
                out.response(&self.key, resp);
                if self.reliable {
                    Terminated
                } else {
                    self.timers.set_after(Timer::K, now, self.cfg.t4);
                    Completed
                }
            }
            s => s,
        };
    }

    /// `timer` expired.
    pub(crate) fn on_timer(&mut self, now: Instant, timer: Timer, out: &mut Outbox) {
        use NonInviteClientState::*;
        self.state = match (std::mem::replace(&mut self.state, Terminated), timer) {
            (Trying { e_interval }, Timer::E) => {
                self.retransmit(out);
                let next = e_interval.saturating_mul(2).min(self.cfg.t2);
                self.timers.set_after(Timer::E, now, next);
                Trying { e_interval: next }
            }
            (Proceeding, Timer::E) => {
                self.retransmit(out);
                self.timers.set_after(Timer::E, now, self.cfg.t2);
                Proceeding
            }
            (Trying { .. } | Proceeding, Timer::F) => {
                metrics::counter!("dialplane_sip_transaction_timeouts_total", "timer" => "F")
                    .increment(1);
                self.timers.stop_all();
                out.event(TxEvent::Timeout {
                    key: self.key.clone(),
                    timer,
                });
                Terminated
            }
            (Completed, Timer::K) => {
                self.timers.stop_all();
                Terminated
            }
            (s, _) => s,
        };
    }

    fn retransmit(&self, out: &mut Outbox) {
        metrics::counter!("dialplane_sip_retransmissions_total", "timer" => "E").increment(1);
        out.transmit(self.dest, self.bytes.clone());
    }
}

/// Sends a new client request and arms its timers: `retransmit` at T1 (unreliable transports
/// only) and `timeout` at 64*T1. Shared by INVITE (A, B) and non-INVITE (E, F) clients.
#[allow(clippy::too_many_arguments)]
fn send_and_arm(
    now: Instant,
    bytes: &[u8],
    dest: SocketAddr,
    reliable: bool,
    cfg: &TimerConfig,
    retransmit: Timer,
    timeout: Timer,
    out: &mut Outbox,
) -> TimerTable {
    out.transmit(dest, bytes.to_vec());
    let mut timers = TimerTable::default();
    if !reliable {
        timers.set_after(retransmit, now, cfg.t1);
    }
    timers.set_after(timeout, now, cfg.t1x64());
    timers
}
