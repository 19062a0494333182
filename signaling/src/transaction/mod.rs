//! SIP transactions (RFC 3261 §17 with RFC 6026) as sans-IO state machines.
//!
//! Nothing here reads a clock, opens a socket or draws randomness: every input carries `now`
//! (an [`Instant`] chosen by the caller), branch ids come from a generator seeded at
//! construction, and the same inputs give the same outputs, byte for byte.
//!
//! ```text
//!   network bytes ──parse──▶ Transactions::handle(now, source, msg) ──▶ Routed (what it was)
//!   TU ──────────────────▶ send_request / respond / send_stateless / transport_error
//!   clock ───────────────▶ handle_timeout(now)
//!                           poll_transmit(now) ──▶ Transmit { dest, bytes } ──▶ network
//!                           poll_event()       ──▶ TxEvent (responses, timeouts, ACKs, ends) ──▶ TU
//!                           poll_timeout()     ──▶ next deadline for the glue's one timer
//! ```
//!
//! [`Transactions`] routes; four private state machines decide. Client INVITE: Calling →
//! Proceeding → Accepted (2xx, Timer M) or Completed (3xx–6xx, ACK, Timer D) → Terminated.
//! Client non-INVITE: Trying → Proceeding → Completed (Timer K) → Terminated. Server INVITE:
//! Proceeding → Accepted (2xx, Timer L) or Completed (3xx–6xx, Timers G and H) → Confirmed
//! (Timer I) → Terminated. Server non-INVITE: Trying → Proceeding → Completed (Timer J) →
//! Terminated. Each state is an enum variant holding only its own data, and each transaction
//! keeps its deadlines in a [`TimerTable`].
//!
//! Metrics: `dialplane_sip_transactions_total{kind}` (`invite_client`, `non_invite_client`,
//! `invite_server`, `non_invite_server`), `dialplane_sip_retransmissions_total{timer}` (A, E, G)
//! and `dialplane_sip_transaction_timeouts_total{timer}` (B, F, H).
//!
//! Simplifications, on purpose: only RFC 3261 branches (`z9hG4bK…`) are matched (no RFC 2543
//! fallback); 100 Trying for an INVITE is sent immediately; responses from a server transaction
//! go to the source address of the request (as with `rport`, RFC 3581), not to the Via sent-by;
//! a transport is reliable unless the top Via says `UDP`.

mod client;
mod key;
mod server;
mod timer;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use client::{InviteClient, NonInviteClient};
use server::{InviteServer, NonInviteServer};

pub(crate) use key::KeyMap;
pub use key::{KeyError, MAGIC_COOKIE, TransactionKey};
pub use timer::{Timer, TimerConfig, TimerTable};

use crate::message::{HeaderName, Message, Method, Param, Request, Response, Via};

/// A datagram (or stream write) to send.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to send it.
    pub dest: SocketAddr,
    /// The serialized message.
    pub bytes: Vec<u8>,
}

/// Something the transaction user (TU) must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxEvent {
    /// A response for a client transaction (every 1xx, every 2xx in Accepted, the first 3xx–6xx).
    Response {
        /// The client transaction.
        key: TransactionKey,
        /// The response.
        response: Response,
    },
    /// A transaction timed out: Timer B or F (no final response) or H (no ACK).
    Timeout {
        /// The transaction.
        key: TransactionKey,
        /// Which timer fired.
        timer: Timer,
    },
    /// An ACK matched an INVITE server transaction in Accepted (RFC 6026): it is for the 2xx.
    Ack {
        /// The INVITE server transaction.
        key: TransactionKey,
        /// The ACK.
        request: Request,
    },
    /// The glue reported a transport failure ([`Transactions::transport_error`]).
    TransportError {
        /// The transaction.
        key: TransactionKey,
    },
    /// The transaction ended and was removed; its key no longer matches.
    Terminated {
        /// The transaction.
        key: TransactionKey,
    },
}

/// A request that created a new server transaction; the TU answers it with
/// [`Transactions::respond`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The new server transaction.
    pub key: TransactionKey,
    /// Where the request came from (responses go back there).
    pub source: SocketAddr,
    /// The request.
    pub request: Request,
    /// For a CANCEL: the INVITE server transaction it cancels, if it exists.
    pub cancel_target: Option<TransactionKey>,
}

/// What [`Transactions::handle`] did with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Routed {
    /// It matched an existing transaction, which absorbed or processed it; look at
    /// [`Transactions::poll_event`] and [`Transactions::poll_transmit`].
    ToTransaction(TransactionKey),
    /// A new request: a server transaction now exists for it.
    NewRequest(IncomingRequest),
    /// A response that matches no client transaction (for example a 2xx retransmission after
    /// Timer M): the TU (dialog layer) may still want it.
    StrayResponse(Response),
    /// An ACK that matches no INVITE server transaction: normally the ACK for a 2xx, which is
    /// the TU's business.
    StrayAck(Request),
    /// Dropped without effect.
    Dropped(DropReason),
}

/// Why a message from the network was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DropReason {
    /// No usable transaction key (no top Via, no RFC 3261 branch, or a response without CSeq).
    #[error("no transaction key: {0}")]
    Key(#[from] KeyError),
    /// A request whose CSeq method differs from its method.
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
}

/// Why [`Transactions::send_request`] refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The request has no parseable top Via.
    #[error("request has no valid top Via")]
    NoVia,
    /// ACK creates no transaction: send it with [`Transactions::send_stateless`].
    #[error("ACK has no client transaction")]
    Ack,
    /// A client transaction with this key already exists.
    #[error("a client transaction with this branch already exists")]
    Duplicate,
}

/// Why [`Transactions::respond`] refused a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespondError {
    /// No server transaction has this key (never existed or terminated).
    #[error("no such server transaction")]
    NoTransaction,
    /// The transaction's state does not take this response (e.g. a second final response).
    #[error("the transaction cannot send this response in its state")]
    WrongState,
}

/// Outputs collected from the machines, drained by the `poll_*` calls.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    transmits: VecDeque<Transmit>,
    events: VecDeque<TxEvent>,
}

impl Outbox {
    pub(crate) fn transmit(&mut self, dest: SocketAddr, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit { dest, bytes });
    }

    pub(crate) fn event(&mut self, event: TxEvent) {
        self.events.push_back(event);
    }

    /// Passes a response that matched transaction `key` up to the TU.
    pub(crate) fn response(&mut self, key: &TransactionKey, response: Response) {
        self.event(TxEvent::Response {
            key: key.clone(),
            response,
        });
    }
}

// Both variants are a few hundred bytes and live in a map; boxing buys nothing here.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum ClientTx {
    Invite(InviteClient),
    NonInvite(NonInviteClient),
}

#[derive(Debug)]
enum ServerTx {
    Invite(InviteServer),
    NonInvite(NonInviteServer),
}

impl ClientTx {
    fn timers(&self) -> &TimerTable {
        match self {
            ClientTx::Invite(t) => &t.timers,
            ClientTx::NonInvite(t) => &t.timers,
        }
    }

    fn fire(&mut self, now: Instant, out: &mut Outbox) {
        match self {
            ClientTx::Invite(t) => {
                while let Some(timer) = t.timers.pop_expired(now) {
                    t.on_timer(now, timer, out);
                }
            }
            ClientTx::NonInvite(t) => {
                while let Some(timer) = t.timers.pop_expired(now) {
                    t.on_timer(now, timer, out);
                }
            }
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ClientTx::Invite(t) => t.is_terminated(),
            ClientTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

impl ServerTx {
    fn timers(&self) -> &TimerTable {
        match self {
            ServerTx::Invite(t) => &t.timers,
            ServerTx::NonInvite(t) => &t.timers,
        }
    }

    fn fire(&mut self, now: Instant, out: &mut Outbox) {
        match self {
            ServerTx::Invite(t) => {
                while let Some(timer) = t.timers.pop_expired(now) {
                    t.on_timer(now, timer, out);
                }
            }
            ServerTx::NonInvite(t) => {
                while let Some(timer) = t.timers.pop_expired(now) {
                    t.on_timer(timer);
                }
            }
        }
    }

    fn is_terminated(&self) -> bool {
        match self {
            ServerTx::Invite(t) => t.is_terminated(),
            ServerTx::NonInvite(t) => t.is_terminated(),
        }
    }
}

/// The transaction layer of one SIP endpoint: routes messages to client and server
/// transactions (RFC 3261 §17.1.3, §17.2.3), runs their timers and queues their output.
///
/// # Poll order
///
/// After any input — [`handle`](Self::handle), [`handle_timeout`](Self::handle_timeout),
/// [`send_request`](Self::send_request), [`respond`](Self::respond),
/// [`send_stateless`](Self::send_stateless), [`transport_error`](Self::transport_error) — drain
/// [`poll_transmit`](Self::poll_transmit) until `None`, then [`poll_event`](Self::poll_event)
/// until `None`, then read [`poll_timeout`](Self::poll_timeout) and call `handle_timeout` when
/// the clock reaches it. Acting on an event (for example responding) is a new input: drain again.
/// `handle_timeout` fires every expired timer; calling it early or twice is harmless. A `now`
/// earlier than one already seen is treated as the latest one seen.
///
/// Transactions are kept in hash maps keyed by [`TransactionKey`] (its own fixed hash); what
/// touches several at once (due timers, an unreachable address) sorts their keys first, so
/// output order is deterministic.
///
/// # Run loop (glue side)
///
/// ```no_run
/// # use std::net::SocketAddr;
/// # use std::time::Instant;
/// # use dialplane_signaling::message::Message;
/// # use dialplane_signaling::transaction::{Routed, TimerConfig, Transactions};
/// # fn glue_clock() -> Instant { unimplemented!() }
/// # fn recv() -> Option<(SocketAddr, Vec<u8>)> { None }
/// # fn send(_: SocketAddr, _: &[u8]) {}
/// let mut tx = Transactions::new(TimerConfig::default(), 42);
/// loop {
///     let now = glue_clock(); // the glue owns time; this module never reads it
///     if let Some((from, bytes)) = recv()
///         && let Ok(msg) = Message::parse(&bytes)
///     {
///         if let Routed::NewRequest(incoming) = tx.handle(now, from, msg) {
///             // hand `incoming` to the TU, which later calls `tx.respond(..)`
///             let _ = incoming;
///         }
///     }
///     tx.handle_timeout(now);
///     while let Some(t) = tx.poll_transmit(now) {
///         send(t.dest, &t.bytes);
///     }
///     while let Some(event) = tx.poll_event() {
///         let _ = event; // to the TU
///     }
///     let _sleep_until = tx.poll_timeout();
/// }
/// ```
#[derive(Debug)]
pub struct Transactions {
    cfg: TimerConfig,
    clients: KeyMap<ClientTx>,
    servers: KeyMap<ServerTx>,
    /// Every live transaction's next deadline as (instant, is_server, key), with stale entries
    /// (fired, re-armed, gone) left in until they reach the top: finding what is due costs
    /// O(log n) instead of a visit to every transaction.
    deadlines: BinaryHeap<Reverse<(Instant, bool, TransactionKey)>>,
    out: Outbox,
    rng: u64,
    last_now: Option<Instant>,
    /// `dialplane_sip_transactions_total` per kind: `[invite_server, non_invite_server,
    /// invite_client, non_invite_client]`, looked up once (a registry lookup per transaction
    /// hashes the name and labels each time).
    started: [metrics::Counter; 4],
}

impl Transactions {
    /// A transaction layer with timer values `cfg`; `seed` drives branch generation.
    pub fn new(cfg: TimerConfig, seed: u64) -> Transactions {
        Transactions {
            cfg,
            clients: KeyMap::default(),
            servers: KeyMap::default(),
            deadlines: BinaryHeap::new(),
            out: Outbox::default(),
            rng: seed,
            last_now: None,
            started: [
                "invite_server",
                "non_invite_server",
                "invite_client",
                "non_invite_client",
            ]
            .map(|kind| metrics::counter!("dialplane_sip_transactions_total", "kind" => kind)),
        }
    }

    /// The timer configuration.
    pub fn config(&self) -> &TimerConfig {
        &self.cfg
    }

    /// Number of live client and server transactions.
    pub fn len(&self) -> usize {
        self.clients.len() + self.servers.len()
    }

    /// Whether no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A fresh RFC 3261 branch (`z9hG4bK` + 16 hex digits) from the seeded generator.
    pub fn new_branch(&mut self) -> String {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        format!("{MAGIC_COOKIE}{z:016x}")
    }

    fn now(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        now
    }

    /// Routes one parsed message that arrived from `source`.
    pub fn handle(&mut self, now: Instant, source: SocketAddr, msg: Message) -> Routed {
        let routed = self.route(now, source, msg);
        match &routed {
            Routed::ToTransaction(key) => self.track(key),
            Routed::NewRequest(inc) => self.track(&inc.key),
            _ => {}
        }
        self.prune();
        routed
    }

    fn route(&mut self, now: Instant, source: SocketAddr, msg: Message) -> Routed {
        let now = self.now(now);
        match msg {
            Message::Response(resp) => {
                let key = match TransactionKey::for_response(&resp) {
                    Ok(k) => k,
                    Err(e) => return Routed::Dropped(e.into()),
                };
                let Some(tx) = self.clients.get_mut(&key) else {
                    return Routed::StrayResponse(resp);
                };
                match tx {
                    ClientTx::Invite(t) => t.on_response(now, resp, &mut self.out),
                    ClientTx::NonInvite(t) => t.on_response(now, resp, &mut self.out),
                }
                self.reap_one(&key);
                Routed::ToTransaction(key)
            }
            Message::Request(req) => self.handle_request(now, source, req),
        }
    }

    fn handle_request(&mut self, now: Instant, source: SocketAddr, req: Request) -> Routed {
        let key = match TransactionKey::for_request(&req) {
            Ok(k) => k,
            Err(_) if req.method == Method::ACK => return Routed::StrayAck(req),
            Err(e) => return Routed::Dropped(e.into()),
        };
        match req.headers.cseq() {
            Ok(c) if c.method == req.method => {}
            _ => return Routed::Dropped(DropReason::CSeqMismatch),
        }
        if let Some(tx) = self.servers.get_mut(&key) {
            match tx {
                ServerTx::Invite(t) => t.on_request(now, req, &mut self.out),
                ServerTx::NonInvite(t) => t.on_request(&mut self.out),
            }
            self.reap_one(&key);
            return Routed::ToTransaction(key);
        }
        if req.method == Method::ACK {
            return Routed::StrayAck(req);
        }
        let reliable = req
            .headers
            .top_via()
            .map(|v| is_reliable(&v))
            .unwrap_or(false);
        let tx = if req.method == Method::INVITE {
            self.started[0].increment(1);
            ServerTx::Invite(InviteServer::start(
                key.clone(),
                &req,
                source,
                reliable,
                self.cfg,
                &mut self.out,
            ))
        } else {
            self.started[1].increment(1);
            ServerTx::NonInvite(NonInviteServer::start(source, reliable, self.cfg))
        };
        self.servers.insert(key.clone(), tx);
        let cancel_target = key.cancel_target().filter(|k| self.servers.contains_key(k));
        Routed::NewRequest(IncomingRequest {
            key,
            source,
            request: req,
            cancel_target,
        })
    }

    /// Starts a client transaction for `req` (not ACK) towards `dest` and sends it.
    ///
    /// If the top Via has no RFC 3261 branch, one from [`new_branch`](Self::new_branch) replaces
    /// it. The transport is reliable unless the top Via says `UDP`.
    pub fn send_request(
        &mut self,
        now: Instant,
        mut req: Request,
        dest: SocketAddr,
    ) -> Result<TransactionKey, SendError> {
        let now = self.now(now);
        if req.method == Method::ACK {
            return Err(SendError::Ack);
        }
        let mut vias: Vec<String> = req
            .headers
            .values(&HeaderName::VIA)
            .map(str::to_owned)
            .collect();
        let mut top = vias
            .first()
            .and_then(|v| Via::parse(v).ok())
            .ok_or(SendError::NoVia)?;
        if !top.has_rfc3261_branch() {
            let branch = self.new_branch();
            top.params
                .retain(|p| !p.name.eq_ignore_ascii_case("branch"));
            top.params.push(Param::new("branch", Some(branch)));
            vias[0] = top.to_string();
            req.headers.remove(&HeaderName::VIA);
            for v in vias {
                req.headers.push(HeaderName::VIA, v);
            }
        }
        let key = TransactionKey::for_request(&req).map_err(|_| SendError::NoVia)?;
        if self.clients.contains_key(&key) {
            return Err(SendError::Duplicate);
        }
        let reliable = is_reliable(&top);
        let tx = if req.method == Method::INVITE {
            self.started[2].increment(1);
            ClientTx::Invite(InviteClient::start(
                now,
                key.clone(),
                req,
                dest,
                reliable,
                self.cfg,
                &mut self.out,
            ))
        } else {
            self.started[3].increment(1);
            ClientTx::NonInvite(NonInviteClient::start(
                now,
                key.clone(),
                &req,
                dest,
                reliable,
                self.cfg,
                &mut self.out,
            ))
        };
        self.clients.insert(key.clone(), tx);
        self.track(&key);
        Ok(key)
    }

    /// Sends `response` through the server transaction `key`.
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        response: &Response,
    ) -> Result<(), RespondError> {
        let now = self.now(now);
        let tx = self
            .servers
            .get_mut(key)
            .ok_or(RespondError::NoTransaction)?;
        let r = match tx {
            ServerTx::Invite(t) => t.respond(now, response, &mut self.out),
            ServerTx::NonInvite(t) => t.respond(now, response, &mut self.out),
        };
        self.reap_one(key);
        self.track(key);
        self.prune();
        r
    }

    /// Queues a message outside any transaction (the ACK for a 2xx, a stateless reply).
    pub fn send_stateless(&mut self, msg: &Message, dest: SocketAddr) {
        self.out.transmit(dest, msg.to_bytes());
    }

    /// The glue could not deliver for transaction `key` (§17.1.4, §17.2.4): the transaction ends
    /// with [`TxEvent::TransportError`] then [`TxEvent::Terminated`]. Unknown keys are ignored.
    pub fn transport_error(&mut self, key: &TransactionKey) {
        let found = self.clients.remove(key).is_some() | self.servers.remove(key).is_some();
        if found {
            self.out.event(TxEvent::TransportError { key: key.clone() });
            self.out.event(TxEvent::Terminated { key: key.clone() });
            self.prune();
        }
    }

    /// `dest` is unreachable (ICMP port/host unreachable, a refused connection): every client
    /// transaction towards it that has heard nothing yet ends as by
    /// [`transport_error`](Self::transport_error) (§18.4: the peer is not there). Ones that
    /// heard a response keep going: the peer was there. Visits every client transaction (ICMP
    /// errors are rare next to messages); the ones ended are reported in key order.
    pub fn unreachable(&mut self, dest: SocketAddr) {
        let mut silent: Vec<TransactionKey> = self
            .clients
            .iter()
            .filter(|(_, tx)| match tx {
                ClientTx::Invite(t) => t.silent_towards(dest),
                ClientTx::NonInvite(t) => t.silent_towards(dest),
            })
            .map(|(k, _)| k.clone())
            .collect();
        silent.sort_unstable();
        for key in &silent {
            self.transport_error(key);
        }
    }

    /// Fires every timer due at `now`. Spurious or early calls do nothing.
    ///
    /// Due transactions fire clients first, then servers, each in key order, and then the
    /// terminated ones are reported in the same order.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.now(now);
        let (mut clients, mut servers) = (Vec::new(), Vec::new());
        while let Some(Reverse((at, server, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let (server, at) = (*server, *at);
            let Some(Reverse((_, _, key))) = self.deadlines.pop() else {
                break;
            };
            if self.next_deadline(server, &key) == Some(at) {
                if server {
                    servers.push(key);
                } else {
                    clients.push(key);
                }
            }
        }
        for keys in [&mut clients, &mut servers] {
            keys.sort_unstable();
            keys.dedup();
        }
        for key in &clients {
            if let Some(tx) = self.clients.get_mut(key) {
                tx.fire(now, &mut self.out);
            }
        }
        for key in &servers {
            if let Some(tx) = self.servers.get_mut(key) {
                tx.fire(now, &mut self.out);
            }
        }
        for key in clients.iter().chain(&servers) {
            self.reap_one(key);
            self.track(key);
        }
        self.prune();
    }

    /// The next deadline of one transaction, if it is live and has a timer running.
    fn next_deadline(&self, server: bool, key: &TransactionKey) -> Option<Instant> {
        let next = if server {
            self.servers.get(key)?.timers().next()
        } else {
            self.clients.get(key)?.timers().next()
        };
        next.map(|(_, at)| at)
    }

    /// Records transaction `key`'s next deadline after something touched it.
    fn track(&mut self, key: &TransactionKey) {
        for server in [false, true] {
            if let Some(at) = self.next_deadline(server, key) {
                self.deadlines.push(Reverse((at, server, key.clone())));
            }
        }
    }

    /// Drops stale entries from the top, so that the top is the earliest live deadline.
    fn prune(&mut self) {
        while let Some(Reverse((at, server, key))) = self.deadlines.peek() {
            if self.next_deadline(*server, key) == Some(*at) {
                break;
            }
            self.deadlines.pop();
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self, _now: Instant) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// The next event for the TU.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<TxEvent> {
        self.out.events.pop_front()
    }

    /// The earliest timer deadline of any transaction.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The state name of a transaction (for tests and debugging), `None` if it does not exist.
    pub fn state(&self, key: &TransactionKey) -> Option<&'static str> {
        if let Some(c) = self.clients.get(key) {
            return Some(match c {
                ClientTx::Invite(t) => t.state_name(),
                ClientTx::NonInvite(t) => t.state_name(),
            });
        }
        self.servers.get(key).map(|s| match s {
            ServerTx::Invite(t) => t.state_name(),
            ServerTx::NonInvite(t) => t.state_name(),
        })
    }

    /// Removes transaction `key` if it terminated, and reports it: an input touches one
    /// transaction, so it need not look at every other (that made each message cost O(live
    /// transactions)).
    fn reap_one(&mut self, key: &TransactionKey) {
        if self.clients.get(key).is_some_and(ClientTx::is_terminated) {
            self.clients.remove(key);
            self.out.event(TxEvent::Terminated { key: key.clone() });
        }
        if self.servers.get(key).is_some_and(ServerTx::is_terminated) {
            self.servers.remove(key);
            self.out.event(TxEvent::Terminated { key: key.clone() });
        }
    }
}

fn is_reliable(via: &Via) -> bool {
    !via.transport.eq_ignore_ascii_case("UDP")
}
