//! The SIP stack: one tokio task that owns the sans-IO transaction layer
//! ([`crate::transaction::Transactions`]), feeds it what the [`crate::transport`] receives with
//! the real time (read here, at the edge only), sleeps until its next timer, sends what it
//! transmits, and hands its events to the transaction user (TU) through an async API.
//!
//! ```text
//! Transports ──Inbound──▶ stack task ──Incoming (bounded)──▶ TU
//!            ◀─send────── (Transactions, timers)  ◀──Command── Endpoint (respond, send_request)
//! ```
//!
//! The TU gets [`Incoming::Request`] for every new server transaction (answer it with
//! [`ServerRequest::respond`]); a CANCEL carries the INVITE server transaction it matched, and
//! a CANCEL that matches none is answered 481 here. ACKs for 2xx and responses that match no
//! client transaction (2xx retransmissions) are passed up as they are. [`Endpoint::send_request`]
//! starts a client transaction and returns its responses as a [`ClientTransaction`].
//!
//! The stack task never waits on the TU or a peer: a full TU queue gets new requests a 503
//! (counted as `dialplane_sip_dropped_total{reason="tu_overload"}`), a full client transaction
//! queue drops the response.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::message::{HeaderName, Message, Method, Request, Response, StatusCode};
use crate::transaction::{
    IncomingRequest, RespondError, Routed, SendError, Timer, TimerConfig, TransactionKey,
    Transactions, TxEvent,
};
use crate::transport::{DROPPED_METRIC, Inbound, Transport, Transports};

/// Why the stack refused a call
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StackError {
    /// The stack task has stopped.
    #[error("the SIP stack has stopped")]
    Stopped,
    /// The transaction layer refused the request.
    #[error(transparent)]
    Send(#[from] SendError),
    /// The transaction layer refused the response.
    #[error(transparent)]
    Respond(#[from] RespondError),
    /// No listener of this transport to put in the Via.
    #[error("no {0} listener for the Via")]
    NoListener(Transport),
}

/// Stack settings
#[derive(Debug, Clone, Copy)]
pub struct StackConfig {
    /// Transaction timers (T1, T2, T4, D).
    pub timers: TimerConfig,
    /// Seed of the branch generator (pass something random per process).
    pub seed: u64,
    /// Events queued towards the TU.
    pub tu_queue: usize,
}

impl Default for StackConfig {
    fn default() -> StackConfig {
        StackConfig {
            timers: TimerConfig::default(),
            seed: 0,
            tu_queue: 1024,
        }
    }
}

/// What the stack hands to the TU
#[derive(Debug)]
#[non_exhaustive]
pub enum Incoming {
    /// A request that created a server transaction.
    Request(ServerRequest),
    /// An ACK for a 2xx (it matched no INVITE server transaction, or one in Accepted).
    Ack(Request),
    /// A response that matched no client transaction (a 2xx retransmission for a dialog).
    StrayResponse(Response),
}

/// A new server transaction's request, with the means to answer it
#[derive(Debug)]
pub struct ServerRequest {
    /// The request (`received`/`rport` already set).
    pub request: Request,
    /// Where it came from.
    pub source: SocketAddr,
    /// The transport it came over.
    pub transport: Transport,
    /// The server transaction.
    pub key: TransactionKey,
    /// For a CANCEL: the INVITE server transaction it cancels (always set: unmatched CANCELs
    /// are answered 481 by the stack).
    pub cancel_target: Option<TransactionKey>,
    endpoint: Endpoint,
}

impl ServerRequest {
    /// Sends `response` through this request's server transaction.
    pub async fn respond(&self, response: Response) -> Result<(), StackError> {
        self.endpoint.respond(&self.key, response).await
    }

    /// The stack, to answer later or to send requests.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }
}

/// What a client transaction reports
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A provisional or final response (and 2xx retransmissions while the INVITE transaction
    /// lives).
    Response(Response),
    /// Timer B or F fired: no final response.
    Timeout(Timer),
    /// The transport could not deliver.
    TransportError,
}

/// A running client transaction; [`ClientTransaction::next`] returns `None` once it ended
#[derive(Debug)]
pub struct ClientTransaction {
    /// The transaction's key.
    pub key: TransactionKey,
    /// The request as sent (with the stack's Via and branch).
    pub request: Request,
    events: mpsc::Receiver<ClientEvent>,
}

impl ClientTransaction {
    /// The next response or failure, `None` when the transaction has terminated.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        self.events.recv().await
    }
}

enum Command {
    Respond {
        key: TransactionKey,
        response: Box<Response>,
        done: oneshot::Sender<Result<(), RespondError>>,
    },
    Send {
        request: Box<Request>,
        dest: SocketAddr,
        events: mpsc::Sender<ClientEvent>,
        done: oneshot::Sender<Result<(TransactionKey, Request), SendError>>,
    },
    Stateless {
        message: Box<Message>,
        dest: SocketAddr,
    },
}

/// The handle to a running stack: cheap to clone
#[derive(Clone)]
pub struct Endpoint {
    commands: mpsc::Sender<Command>,
    transports: Transports,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("transports", &self.transports)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Starts the stack task on the current tokio runtime; returns the handle and the TU's
    /// queue of [`Incoming`] events. The task ends when every [`Endpoint`] and
    /// [`ServerRequest`] is dropped; while the queue is dropped or full, new requests get 503.
    pub fn start(
        transports: Transports,
        inbound: mpsc::Receiver<Inbound>,
        config: StackConfig,
    ) -> (Endpoint, mpsc::Receiver<Incoming>) {
        let (commands, command_rx) = mpsc::channel(1024);
        let (tu, tu_rx) = mpsc::channel(config.tu_queue.max(1));
        let endpoint = Endpoint {
            commands,
            transports: transports.clone(),
        };
        let task = Task {
            tx: Transactions::new(config.timers, config.seed),
            transports,
            tu,
            clients: HashMap::new(),
            // The task must not keep itself alive: it holds a weak sender for ServerRequests.
            commands: endpoint.commands.downgrade(),
        };
        tokio::spawn(task.run(inbound, command_rx));
        (endpoint, tu_rx)
    }

    /// The transports under this stack.
    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    /// Sends `response` through server transaction `key`.
    pub async fn respond(
        &self,
        key: &TransactionKey,
        response: Response,
    ) -> Result<(), StackError> {
        let (done, rx) = oneshot::channel();
        self.command(Command::Respond {
            key: key.clone(),
            response: Box::new(response),
            done,
        })
        .await?;
        Ok(rx.await.map_err(|_| StackError::Stopped)??)
    }

    /// Starts a client transaction for `request` to `dest` over `transport`. Without a Via the
    /// stack adds its own (`SIP/2.0/<transport> <sent-by>;rport`); the branch is generated.
    pub async fn send_request(
        &self,
        mut request: Request,
        dest: SocketAddr,
        transport: Transport,
    ) -> Result<ClientTransaction, StackError> {
        if request.headers.count(&HeaderName::VIA) == 0 {
            let sent_by = self.sent_by(transport, dest)?;
            request.headers.push(
                HeaderName::VIA,
                format!("SIP/2.0/{transport} {sent_by};rport"),
            );
        }
        let (events, events_rx) = mpsc::channel(16);
        let (done, rx) = oneshot::channel();
        self.command(Command::Send {
            request: Box::new(request),
            dest,
            events,
            done,
        })
        .await?;
        let (key, request) = rx.await.map_err(|_| StackError::Stopped)??;
        Ok(ClientTransaction {
            key,
            request,
            events: events_rx,
        })
    }

    /// Our Via sent-by (and Contact address) for `transport` towards `dest`.
    pub fn sent_by(
        &self,
        transport: Transport,
        dest: SocketAddr,
    ) -> Result<SocketAddr, StackError> {
        self.transports
            .sent_by(transport, dest)
            .ok_or(StackError::NoListener(transport))
    }

    /// Sends a message outside any transaction (the ACK for a 2xx); its top Via names the
    /// transport.
    pub async fn send_stateless(
        &self,
        message: Message,
        dest: SocketAddr,
    ) -> Result<(), StackError> {
        self.command(Command::Stateless {
            message: Box::new(message),
            dest,
        })
        .await
    }

    async fn command(&self, c: Command) -> Result<(), StackError> {
        self.commands.send(c).await.map_err(|_| StackError::Stopped)
    }
}

/// Queued inputs handled per wake-up.
const BATCH: usize = 64;

struct Task {
    tx: Transactions,
    transports: Transports,
    tu: mpsc::Sender<Incoming>,
    clients: HashMap<TransactionKey, mpsc::Sender<ClientEvent>>,
    commands: mpsc::WeakSender<Command>,
}

impl Task {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        loop {
            let wake = self.tx.poll_timeout();
            tokio::select! {
                m = inbound.recv() => match m {
                    Some(m) => self.on_inbound(m),
                    None => return,
                },
                c = commands.recv() => match c {
                    Some(c) => self.on_command(c),
                    None => return,
                },
                _ = sleep_until(wake), if wake.is_some() => {
                    self.tx.handle_timeout(Instant::now());
                    self.drain();
                    continue;
                }
            }
            self.drain();
            // Under load, take what is already queued before sleeping again.
            for _ in 0..BATCH {
                match (inbound.try_recv(), commands.try_recv()) {
                    (Err(_), Err(_)) => break,
                    (m, c) => {
                        if let Ok(m) = m {
                            self.on_inbound(m);
                        }
                        if let Ok(c) = c {
                            self.on_command(c);
                        }
                        self.drain();
                    }
                }
            }
        }
    }

    fn on_inbound(&mut self, m: Inbound) {
        let Inbound {
            transport,
            source,
            message,
            ..
        } = m;
        match self.tx.handle(Instant::now(), source, message) {
            Routed::ToTransaction(_) => {}
            Routed::NewRequest(incoming) => self.on_new_request(incoming, transport),
            Routed::StrayAck(ack) => self.deliver(Incoming::Ack(ack)),
            Routed::StrayResponse(r) => self.deliver(Incoming::StrayResponse(r)),
            Routed::Dropped(reason) => {
                tracing::debug!(%source, %reason, "message dropped by the transaction layer");
                metrics::counter!(DROPPED_METRIC, "reason" => "unmatched").increment(1);
            }
        }
    }

    fn on_new_request(&mut self, incoming: IncomingRequest, transport: Transport) {
        let IncomingRequest {
            key,
            source,
            request,
            cancel_target,
        } = incoming;
        if request.method == Method::CANCEL && cancel_target.is_none() {
            let r = Response::for_request(&request, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST)
                .with_to_tag(&crate::options::stable_tag(&request));
            self.tx.respond(Instant::now(), &key, &r).ok();
            return;
        }
        let Some(commands) = self.commands.upgrade() else {
            return;
        };
        let busy = Response::for_request(&request, StatusCode::SERVICE_UNAVAILABLE)
            .with_header(HeaderName::RETRY_AFTER, 1);
        let req = ServerRequest {
            request,
            source,
            transport,
            key: key.clone(),
            cancel_target,
            endpoint: Endpoint {
                commands,
                transports: self.transports.clone(),
            },
        };
        if self.tu.try_send(Incoming::Request(req)).is_err() {
            metrics::counter!(DROPPED_METRIC, "reason" => "tu_overload").increment(1);
            self.tx.respond(Instant::now(), &key, &busy).ok();
        }
    }

    fn deliver(&mut self, event: Incoming) {
        if self.tu.try_send(event).is_err() {
            metrics::counter!(DROPPED_METRIC, "reason" => "tu_overload").increment(1);
        }
    }

    fn on_command(&mut self, c: Command) {
        let now = Instant::now();
        match c {
            Command::Respond {
                key,
                response,
                done,
            } => {
                done.send(self.tx.respond(now, &key, &response)).ok();
            }
            Command::Send {
                request,
                dest,
                events,
                done,
            } => {
                let mut request = *request;
                self.ensure_branch(&mut request);
                let result = self.tx.send_request(now, request.clone(), dest).map(|key| {
                    self.clients.insert(key.clone(), events);
                    (key, request)
                });
                done.send(result).ok();
            }
            Command::Stateless { message, dest } => self.tx.send_stateless(&message, dest),
        }
    }

    /// Gives the top Via an RFC 3261 branch if it has none, so the TU sees the request exactly as
    /// sent (it needs the branch for a CANCEL).
    fn ensure_branch(&mut self, request: &mut Request) {
        let Ok(mut vias) = request.headers.via() else {
            return;
        };
        let Some(top) = vias.first_mut() else { return };
        if top.has_rfc3261_branch() {
            return;
        }
        top.params
            .retain(|p| !p.name.eq_ignore_ascii_case("branch"));
        top.params.push(crate::message::Param::new(
            "branch",
            Some(self.tx.new_branch()),
        ));
        crate::transport::set_vias(request, &vias);
    }

    /// Sends what the transaction layer queued and delivers its events.
    fn drain(&mut self) {
        let now = Instant::now();
        while let Some(t) = self.tx.poll_transmit(now) {
            if let Err(e) = self.transports.send_routed(t.dest, t.bytes) {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
            }
        }
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Response { key, response } => {
                    self.notify_client(&key, ClientEvent::Response(response))
                }
                TxEvent::Timeout { key, timer } => {
                    self.notify_client(&key, ClientEvent::Timeout(timer))
                }
                TxEvent::TransportError { key } => {
                    self.notify_client(&key, ClientEvent::TransportError)
                }
                TxEvent::Ack { request, .. } => self.deliver(Incoming::Ack(request)),
                TxEvent::Terminated { key } => {
                    self.clients.remove(&key);
                }
            }
        }
    }

    fn notify_client(&mut self, key: &TransactionKey, event: ClientEvent) {
        if let Some(c) = self.clients.get(key)
            && c.try_send(event).is_err()
        {
            metrics::counter!(DROPPED_METRIC, "reason" => "tu_overload").increment(1);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
}
