//! The B2BUA: `dialplane serve`'s call handling, from the inbound INVITE to the last BYE
//!
//! One tokio task owns the sans-IO layers — [`Transactions`], the [`DialogLayer`] above them,
//! the registrar and every call with its [`AppRunner`](crate::app::AppRunner) and
//! [`Dial`](crate::dial::Dial) — and feeds them what arrives (SIP from the transports, REST
//! updates, media events, webhook answers) with the time read here. Nothing in it waits:
//! webhooks run as their own tasks and come back as messages; media commands are synchronous
//! round trips to the shard threads (tens of microseconds).
//!
//! ```text
//!  transports ─Inbound─▶ ┌──────────── B2BUA task ────────────┐ ─send─▶ transports
//!  REST ──LiveUpdate───▶ │ Transactions ▶ DialogLayer ▶ calls │ ─Command─▶ media shards
//!  media ──Event───────▶ │  (app runner, dial, SDP)           │ ─spawn─▶ webhooks
//!  webhooks ─answers───▶ └────────────────────────────────────┘
//! ```
//!
//! Inbound INVITEs are accepted from `[security] allow_from`, the carriers' `inbound` networks
//! and addresses a registered user registered from; anything else gets 403. The INVITE must
//! carry an SDP offer (no late offer: 488). Media: the caller's leg is leg 0 of a media call
//! named by its call_sid, every fork of a dial offers leg 1 (shared: only the fork that answers
//! is ever bridged); forks are offered the caller's codecs with the caller's payload types, plus
//! PCMU, PCMA and Opus, which the relay transcodes when a callee takes one the caller lacks (see
//! [`media`] and [`transcode`]).
//!
//! A configuration reload (SIGHUP) reaches the task as a [`Reload`] through its [`Handle`]: new
//! calls get the new configuration, calls in progress keep theirs.
//!
//! Each leg's CDR ([`crate::cdr`]) is handed to [`Services::cdr`] when the leg is over: the
//! caller's when the call ends, the forks' when their dial ends.
//!
//! Metrics: `dialplane_calls_active` (gauge), `dialplane_calls_total{status}` (finished calls
//! by the caller leg's final status), `dialplane_calls_started_total` (calls accepted: its
//! `rate()` is the CPS), `dialplane_b2bua_ignored_total{reason}`.

mod call;
mod carrier_limits;
mod hook_queue;
mod listen;
mod media;
mod reload;
mod srtp;
mod transcode;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ::media::api::{Command as MediaCommand, Event as MediaEvent, MediaControl};
use tokio::sync::mpsc;

use crate::app::StaticApp;
use crate::config::Config;
use crate::dialog::{DialogConfig, DialogEvent, DialogId, DialogLayer, InviteId, Reply};
use crate::dns::{Destination, DnsError, Pins, Plan, Resolver};
use crate::gateways::Gateways;
use crate::message::{HeaderName, Method, Request, Response, SipUri, StatusCode, Uri};
use crate::payload::CallSid;
use crate::registrar::{Binding, Registrar, Store};
use crate::rest::{CallRegistry, LiveUpdate};
use crate::transaction::{IncomingRequest, Routed, TimerConfig, Transactions};
use crate::transport::{Inbound, Transport, Transports};
use crate::verbs::Hook;
use crate::webhook::{HookReply, WebhookClient, WebhookError};

use call::{Call, HookPurpose, Leg};
pub use reload::{Handle, Reload};

/// Where each call's verbs come from
#[derive(Debug, Clone)]
pub enum AppSource {
    /// The same verbs for every call (`--app FILE.json`).
    Static(StaticApp),
    /// The call webhook (`--app-url`): POSTed the session payload, answers with verbs.
    Webhook(Hook),
}

/// What the B2BUA works with
#[derive(Clone)]
pub struct Services {
    /// The configuration (carriers, Teams, registrar, security, app).
    pub config: Arc<Config>,
    /// The verbs of each call.
    pub app: AppSource,
    /// The media plane.
    pub media: Arc<dyn MediaControl>,
    /// The address our SDP advertises (`--external-ip`, else the media interface).
    pub media_ip: IpAddr,
    /// Live calls, for REST.
    pub registry: Arc<CallRegistry>,
    /// Sends every webhook.
    pub webhooks: WebhookClient,
    /// Seeds Call-IDs, tags and branches.
    pub seed: u64,
    /// Where each leg's CDR goes, when `[cdr]` asks for them.
    pub cdr: Option<crate::cdr::Sink>,
    /// Audio files (dialMusic, dub, confirmHook's play), fetched once and cached as PCM.
    pub media_files: crate::media_files::MediaFiles,
    /// The cluster this instance shares registrations with (`--redis`).
    pub cluster: Option<crate::cluster::Cluster>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("app", &self.app)
            .field("media_ip", &self.media_ip)
            .finish_non_exhaustive()
    }
}

/// Why the B2BUA could not start
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum B2buaError {
    /// No UDP listener to send our requests from.
    #[error("the B2BUA needs a UDP SIP listener")]
    NoUdpListener,
    /// The thread reading media events could not start.
    #[error("cannot start the media event thread")]
    Thread(#[source] std::io::Error),
    /// The DNS resolver could not be set up (`[dns]`, resolv.conf).
    #[error("cannot set up DNS: {0}")]
    Dns(#[source] crate::dns::DnsError),
}

const ACTIVE_METRIC: &str = "dialplane_calls_active";
const CALLS_METRIC: &str = "dialplane_calls_total";
const STARTED_METRIC: &str = "dialplane_calls_started_total";
const IGNORED_METRIC: &str = "dialplane_b2bua_ignored_total";
/// Queued REST updates and media events.
const QUEUE: usize = 4096;

/// Methods we answer, for Allow.
const ALLOW: [Method; 9] = [
    Method::INVITE,
    Method::ACK,
    Method::CANCEL,
    Method::BYE,
    Method::OPTIONS,
    Method::PRACK,
    Method::UPDATE,
    Method::REFER,
    Method::INFO,
];

/// What comes back to the B2BUA task from elsewhere
#[derive(Debug)]
enum Msg {
    /// A webhook answered (or failed).
    Hook {
        call: u64,
        purpose: HookPurpose,
        result: Result<HookReply, WebhookError>,
    },
    /// A new configuration (SIGHUP).
    Reload(Box<Reload>),
    /// REST createCall: place this call; its call_sid (or why not) goes back.
    CreateCall {
        account_sid: String,
        request: Box<crate::create_call::CreateCall>,
        reply: tokio::sync::oneshot::Sender<Result<CallSid, crate::create_call::CreateCallError>>,
    },
    /// Another instance of the cluster changed the bindings of `aor`.
    Bindings { aor: String, bindings: Vec<Binding> },
    /// A fork's Request-URI was looked up in DNS.
    Resolved {
        call: u64,
        fork: CallSid,
        uri: String,
        result: Result<Vec<Destination>, DnsError>,
    },
    /// An audio file was fetched (or failed): dialMusic, dub, a screening app's prompt.
    File {
        call: u64,
        usage: call::FileUse,
        result: Result<std::sync::Arc<[i16]>, crate::media_files::MediaFileError>,
    },
}

/// Starts the B2BUA on the current tokio runtime. It runs until the transports close, or after
/// a drain: once `drain` holds a deadline, new INVITEs get 503, and the task ends when the last
/// call has ended or, at the deadline, after hanging up the calls still up.
/// `media_events` is the media plane's event channel (read on a thread of its own). The
/// [`Handle`] passes configuration reloads to the task.
pub fn start(
    transports: Transports,
    inbound: mpsc::Receiver<Inbound>,
    media_events: std::sync::mpsc::Receiver<MediaEvent>,
    services: Services,
    drain: tokio::sync::watch::Receiver<Option<Instant>>,
) -> Result<(tokio::task::JoinHandle<()>, Handle), B2buaError> {
    let local = transports
        .local_addrs()
        .iter()
        .find(|(t, _)| *t == Transport::Udp)
        .map(|(_, a)| *a)
        .ok_or(B2buaError::NoUdpListener)?;
    let sent_by = transports
        .sent_by(Transport::Udp, local)
        .ok_or(B2buaError::NoUdpListener)?;
    let contact =
        Uri::parse(&format!("sip:dialplane@{sent_by}")).map_err(|_| B2buaError::NoUdpListener)?;
    let mut dialog = DialogConfig::new(format!("SIP/2.0/UDP {sent_by}"), contact);
    // The caller's side decides about reliable provisionals; we do not ask callees for them.
    dialog.rel100 = false;
    let (media_tx, media_rx) = mpsc::channel(QUEUE);
    let cdr = services.cdr.clone();
    let taps = crate::stream::Taps::default();
    let frames = taps.clone();
    std::thread::Builder::new()
        .name("b2bua-media-events".into())
        .spawn(move || {
            while let Ok(e) = media_events.recv() {
                // A freed leg's final counters are for its CDR only: past the B2BUA task.
                if let MediaEvent::Stats {
                    call_id,
                    leg,
                    stats,
                } = e
                {
                    if let Some(cdr) = &cdr {
                        cdr.stats((call_id, leg), stats);
                    }
                    continue;
                }
                // Audio frames go straight to their stream's task (listen, transcribe).
                if let MediaEvent::AudioFrame { fork, samples, .. } = e {
                    frames.deliver(fork, samples);
                    continue;
                }
                if media_tx.blocking_send(e).is_err() {
                    return;
                }
            }
        })
        .map_err(B2buaError::Thread)?;
    // Requests leave over UDP only (our Via): NAPTR and SRV records for other transports are
    // passed over.
    let dns = Resolver::new(&services.config.dns, &[Transport::Udp]).map_err(B2buaError::Dns)?;
    let (updates_tx, updates_rx) = mpsc::channel(QUEUE);
    let (msgs_tx, msgs_rx) = mpsc::unbounded_channel();
    let store = match &services.cluster {
        Some(cluster) => {
            let msgs = msgs_tx.clone();
            cluster.follow_registrations(move |aor, bindings| {
                msgs.send(Msg::Bindings { aor, bindings }).is_ok()
            });
            cluster.store()
        }
        None => Store::local(),
    };
    let registrar = Registrar::new(
        &services.config.registrar,
        &nonce_secret(&services.config, &services),
        store,
    );
    let handle = Handle(msgs_tx.clone());
    let unreachable = transports.take_unreachable();
    let core = Core {
        gateways: Gateways::new(&services.config.carriers, Instant::now(), services.seed),
        carrier_limits: Default::default(),
        tx: Transactions::new(TimerConfig::default(), services.seed),
        dl: DialogLayer::new(dialog, services.seed.wrapping_add(1)),
        registrar,
        transports,
        sent_by,
        calls: HashMap::new(),
        next_key: 1,
        uas: HashMap::new(),
        uac: HashMap::new(),
        outbound: HashMap::new(),
        dialogs: HashMap::new(),
        sids: HashMap::new(),
        timers: BinaryHeap::new(),
        updates_tx,
        msgs_tx,
        hints: HashMap::new(),
        dns,
        pins: Pins::default(),
        draining: None,
        media_queue: Vec::new(),
        media_wake: false,
        taps,
        svc: services,
    };
    let task = tokio::spawn(core.run(inbound, unreachable, updates_rx, media_rx, msgs_rx, drain));
    Ok((task, handle))
}

/// The registrar's digest nonce secret: the configured one, else the cluster's, else one from
/// the process seed.
fn nonce_secret(config: &Config, svc: &Services) -> Vec<u8> {
    match (&config.registrar.nonce_secret, &svc.cluster) {
        (Some(s), _) => s.clone().into_bytes(),
        (None, Some(cluster)) => cluster.nonce_secret().to_vec(),
        (None, None) => format!("{:x}", svc.seed).into_bytes(),
    }
}

/// The B2BUA task's state
struct Core {
    svc: Services,
    transports: Transports,
    /// Our UDP sent-by: Via, Contact and From host of our requests.
    sent_by: SocketAddr,
    tx: Transactions,
    dl: DialogLayer,
    /// Carrier gateways: their order per call, health and probes.
    gateways: Gateways,
    /// Active calls and call rate per carrier.
    carrier_limits: carrier_limits::CarrierLimits,
    registrar: Registrar<Store>,
    calls: HashMap<u64, Call>,
    next_key: u64,
    /// Server INVITEs (callers) → call.
    uas: HashMap<InviteId, u64>,
    /// Client INVITEs (forks) → call and fork.
    uac: HashMap<InviteId, (u64, usize)>,
    /// Client INVITEs of REST-created calls → call.
    outbound: HashMap<InviteId, u64>,
    /// Dialogs → call and leg.
    dialogs: HashMap<DialogId, (u64, Leg)>,
    /// Every leg's call_sid (REST, media events) → call and leg.
    sids: HashMap<CallSid, (u64, Leg)>,
    /// Call deadlines (pause, dial timers), stale entries skipped.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    updates_tx: mpsc::Sender<LiveUpdate>,
    msgs_tx: mpsc::UnboundedSender<Msg>,
    /// Where a contact URI really goes (a registered user behind NAT: the REGISTER's source).
    hints: HashMap<String, SocketAddr>,
    /// Looks up host names of fork URIs (RFC 3263), off this task.
    dns: Resolver,
    /// Where each looked-up fork URI's requests go while its forks live.
    pins: Pins,
    /// Shutting down: no new calls; the calls still up at this instant are hung up.
    draining: Option<Instant>,
    /// Media commands of this round, posted together ([`MediaControl::post`]).
    media_queue: Vec<MediaCommand>,
    /// Something queued or created since the last flush needs the shard awake.
    media_wake: bool,
    /// Where forked audio frames go ([`listen`]).
    taps: crate::stream::Taps,
}

impl Core {
    async fn run(
        mut self,
        mut inbound: mpsc::Receiver<Inbound>,
        mut unreachable: Option<mpsc::Receiver<SocketAddr>>,
        mut updates: mpsc::Receiver<LiveUpdate>,
        mut media_events: mpsc::Receiver<MediaEvent>,
        mut msgs: mpsc::UnboundedReceiver<Msg>,
        mut drain: tokio::sync::watch::Receiver<Option<Instant>>,
    ) {
        loop {
            if let Some(deadline) = self.draining {
                if self.calls.is_empty() {
                    tracing::info!("drained: no call left");
                    return;
                }
                if deadline <= Instant::now() {
                    self.hang_up_all();
                    return;
                }
            }
            let wake = [
                self.tx.poll_timeout(),
                self.dl.poll_timeout(),
                self.next_call_timer(),
                self.gateways.poll_timeout(),
                self.draining,
            ]
            .into_iter()
            .flatten()
            .min();
            tokio::select! {
                m = inbound.recv() => match m {
                    Some(m) => self.on_inbound(m),
                    None => return,
                },
                Some(dest) = recv_some(&mut unreachable) => self.tx.unreachable(dest),
                Some(u) = updates.recv() => self.on_update(u),
                Some(e) = media_events.recv() => self.on_media_event(e),
                Some(m) = msgs.recv() => self.on_msg(m),
                Ok(()) = drain.changed(), if self.draining.is_none() => {
                    self.draining = *drain.borrow();
                    if let Some(d) = self.draining {
                        tracing::info!(calls = self.calls.len(),
                            deadline_s = d.saturating_duration_since(Instant::now()).as_secs(),
                            "draining: new calls get 503");
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {
                    let now = Instant::now();
                    self.tx.handle_timeout(now);
                    self.dl.handle_timeout(now);
                    self.fire_call_timers(now);
                    let (hints, pins) = (&self.hints, &self.pins);
                    self.gateways.send_probes(now, &mut self.tx, self.sent_by, |u| {
                        resolve(u, hints, pins)
                    });
                }
            }
            self.pump();
        }
    }

    /// Moves outputs and events between the layers until nothing moves, then sends.
    fn pump(&mut self) {
        let now = Instant::now();
        loop {
            let (hints, pins) = (&self.hints, &self.pins);
            self.dl
                .flush_into(now, &mut self.tx, |uri| resolve(uri, hints, pins));
            let mut moved = false;
            while let Some(e) = self.tx.poll_event() {
                moved = true;
                if !self.gateways.handle_tx_event(&e) {
                    self.dl.handle_tx_event(now, e);
                }
            }
            while let Some(e) = self.dl.poll_event() {
                moved = true;
                self.on_dialog_event(now, e);
            }
            if !moved {
                break;
            }
        }
        while let Some(t) = self.tx.poll_transmit(now) {
            if let Err(e) = self.transports.send_routed(t.dest, t.bytes) {
                tracing::debug!(dest = %t.dest, error = %e, "send failed");
            }
        }
        self.flush_media();
    }

    fn on_inbound(&mut self, m: Inbound) {
        let now = Instant::now();
        let transport = m.transport;
        let routed = match self.tx.handle(now, m.source, m.message) {
            Routed::NewRequest(inc) if is_initial_invite(&inc.request) => {
                if self.draining.is_some() {
                    metrics::counter!(CALLS_METRIC, "status" => "draining").increment(1);
                    let r = Response::for_request(&inc.request, StatusCode::SERVICE_UNAVAILABLE)
                        .with_to_tag(&crate::options::stable_tag(&inc.request))
                        .with_header(HeaderName::RETRY_AFTER, 5);
                    let _ = self.tx.respond(now, &inc.key, &r);
                    let (status, cause) =
                        (StatusCode::SERVICE_UNAVAILABLE, crate::cdr::Cause::Drain);
                    self.refused_cdr(now, &inc.request, status, cause);
                    return;
                }
                if !self.may_call(&inc) {
                    let source = crate::redact::Addr(inc.source);
                    tracing::info!(%source, "INVITE refused: source not allowed");
                    metrics::counter!(CALLS_METRIC, "status" => "forbidden").increment(1);
                    let r = Response::for_request(&inc.request, StatusCode::FORBIDDEN)
                        .with_to_tag(&crate::options::stable_tag(&inc.request));
                    let _ = self.tx.respond(now, &inc.key, &r);
                    let cause = crate::cdr::Cause::Forbidden;
                    self.refused_cdr(now, &inc.request, StatusCode::FORBIDDEN, cause);
                    return;
                }
                Routed::NewRequest(inc)
            }
            r => r,
        };
        if let Some(inc) = self.dl.handle_routed(now, routed) {
            self.on_out_of_dialog(now, inc, transport);
        }
    }

    /// `allow_from`, a carrier's network, or where a registered user registered from.
    fn may_call(&self, inc: &IncomingRequest) -> bool {
        use crate::access::Allowed;
        if self.svc.config.allow(inc.source.ip()) != Allowed::Denied {
            return true;
        }
        let Some(user) = inc
            .request
            .headers
            .from()
            .ok()
            .and_then(|f| f.uri.as_sip().and_then(|u| u.user.clone()))
        else {
            return false;
        };
        self.registrar
            .lookup(SystemTime::now(), &user)
            .iter()
            .any(|b| b.source.ip() == inc.source.ip())
    }

    /// OPTIONS, REGISTER and the rest outside any dialog.
    fn on_out_of_dialog(&mut self, now: Instant, inc: IncomingRequest, transport: Transport) {
        let req = &inc.request;
        let response = if req.method == Method::OPTIONS {
            crate::options::respond(req, &ALLOW, &["replaces", "timer"])
        } else if req.method == Method::REGISTER {
            self.registrar
                .handle(SystemTime::now(), req, inc.source, transport)
        } else {
            let allow: Vec<&str> = ALLOW.iter().map(Method::as_str).collect();
            Response::for_request(req, StatusCode::METHOD_NOT_ALLOWED)
                .with_to_tag(&crate::options::stable_tag(req))
                .with_header(HeaderName::ALLOW, allow.join(", "))
        };
        let _ = self.tx.respond(now, &inc.key, &response);
    }

    fn on_dialog_event(&mut self, now: Instant, e: DialogEvent) {
        match e {
            DialogEvent::Invite { invite, request } => self.new_call(now, invite, request),
            DialogEvent::Cancelled { invite } => {
                if let Some(&key) = self.uas.get(&invite) {
                    self.with_call(key, |core, call| core.caller_gone(now, call, 487));
                }
            }
            DialogEvent::Progress {
                invite, response, ..
            } if self.outbound.contains_key(&invite) => {
                self.on_outbound_progress(invite, &response)
            }
            DialogEvent::Answered {
                invite,
                dialog,
                response,
            } if self.outbound.contains_key(&invite) => {
                self.on_outbound_answered(now, invite, dialog, &response)
            }
            DialogEvent::Failed { invite, response } if self.outbound.contains_key(&invite) => {
                self.on_outbound_failed(now, invite, response.as_ref())
            }
            DialogEvent::Progress {
                invite, response, ..
            } => self.on_fork_progress(now, invite, response),
            DialogEvent::Answered {
                invite,
                dialog,
                response,
            } => self.on_fork_answered(now, invite, dialog, response),
            DialogEvent::Failed { invite, response } => self.on_fork_failed(now, invite, response),
            DialogEvent::Request {
                dialog,
                key,
                request,
            } => self.on_in_dialog_request(now, dialog, key, request),
            DialogEvent::Response { dialog, response } => {
                self.on_in_dialog_response(dialog, response)
            }
            DialogEvent::Terminated { dialog, reason, .. } => {
                self.on_dialog_terminated(now, dialog, reason)
            }
            DialogEvent::LateAnswer { .. }
            | DialogEvent::Prack { .. }
            | DialogEvent::Acked { .. }
            | DialogEvent::ReferStatus { .. }
            | DialogEvent::Refreshed { .. } => {}
        }
    }

    fn on_msg(&mut self, m: Msg) {
        let now = Instant::now();
        match m {
            Msg::Hook {
                call,
                purpose,
                result,
            } => self.with_call(call, |core, c| core.on_hook(now, c, purpose, result)),
            Msg::Reload(r) => self.reload(*r),
            Msg::CreateCall {
                account_sid,
                request,
                reply,
            } => {
                let _ = reply.send(self.create_call(now, &account_sid, *request));
            }
            Msg::Bindings { aor, bindings } => self.registrar.replace(&aor, bindings),
            Msg::Resolved {
                call,
                fork,
                uri,
                result,
            } => self.with_call(call, |core, c| core.on_resolved(now, c, fork, &uri, result)),
            Msg::File {
                call,
                usage,
                result,
            } => self.with_call(call, |core, c| core.on_file(now, c, usage, result)),
        }
    }

    fn on_update(&mut self, u: LiveUpdate) {
        let now = Instant::now();
        let Some((key, leg)) = CallSid::parse(&u.call_sid).and_then(|s| self.sids.get(&s).copied())
        else {
            return ignored("update_unknown_call");
        };
        self.with_call(key, |core, call| core.on_rest(now, call, leg, u.update));
    }

    fn on_media_event(&mut self, e: MediaEvent) {
        let now = Instant::now();
        let Some(sid) = CallSid::parse(&e.call_id().0) else {
            return;
        };
        let Some(&(key, _)) = self.sids.get(&sid) else {
            return;
        };
        self.with_call(key, |core, call| core.on_media(now, call, e));
    }

    /// Runs `f` on the call taken out of the map (so `f` may use the rest of the core), then
    /// puts it back unless it ended, and re-arms its timer.
    fn with_call(&mut self, key: u64, f: impl FnOnce(&mut Core, &mut Call)) {
        let Some(mut call) = self.calls.remove(&key) else {
            return ignored("unknown_call");
        };
        f(self, &mut call);
        if call.is_over() {
            self.forget(&call);
            return;
        }
        if let Some(at) = call.deadline() {
            self.timers.push(Reverse((at, key)));
        }
        self.calls.insert(key, call);
    }

    fn next_call_timer(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            let live = self
                .calls
                .get(&key)
                .and_then(Call::deadline)
                .is_some_and(|d| d <= at);
            if live {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    fn fire_call_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self
                .calls
                .get(&key)
                .and_then(Call::deadline)
                .is_some_and(|d| d <= now)
            {
                self.with_call(key, |core, call| core.on_call_timer(now, call));
            }
        }
    }

    /// The drain deadline passed: every call still up is hung up (BYE, CANCEL), and what that
    /// sends leaves before the task ends.
    fn hang_up_all(&mut self) {
        let now = Instant::now();
        tracing::info!(calls = self.calls.len(), "drain deadline: hanging up");
        let keys: Vec<u64> = self.calls.keys().copied().collect();
        for key in keys {
            self.with_call(key, |core, call| {
                core.terminate(now, call, crate::cdr::Cause::Drain);
            });
        }
        self.pump();
    }

    /// Removes the caller's index entries of a call that ended (its forks' went with its dial;
    /// dialogs ended earlier were removed by their Terminated event).
    fn forget(&mut self, call: &Call) {
        if let Some(invite) = call.invite {
            self.uas.remove(&invite);
        }
        if let Some(d) = call.dialog {
            self.dialogs.remove(&d);
        }
        self.sids.remove(&call.sid);
    }

    /// Sends `payload` to `hook` on a task of its own; the answer comes back as a [`Msg`] when
    /// `purpose` wants one.
    fn send_hook<P: serde::Serialize + Send + Sync + 'static>(
        &self,
        call: &Call,
        hook: &Hook,
        purpose: Option<HookPurpose>,
        payload: P,
    ) {
        let client = self.svc.webhooks.clone();
        let hook = hook.clone();
        let base = call.hook_base.clone();
        let msgs = self.msgs_tx.clone();
        let key = call.key;
        let sid = call.sid;
        tokio::spawn(async move {
            let result = client
                .send(&hook, base.as_ref(), &payload, unix_now())
                .await;
            if let Err(e) = &result {
                let e = e.to_string();
                tracing::warn!(call_sid = %sid, error = %crate::redact::Text(&e), "webhook failed");
            }
            if let Some(purpose) = purpose {
                let _ = msgs.send(Msg::Hook {
                    call: key,
                    purpose,
                    result,
                });
            }
        });
    }

    /// Looks up `uri` (a fork's, with a host name) on a task of its own; the destinations come
    /// back as a [`Msg`].
    fn look_up(&self, call: u64, fork: CallSid, uri: SipUri) {
        let dns = self.dns.clone();
        let msgs = self.msgs_tx.clone();
        tokio::spawn(async move {
            let result = dns.resolve(&uri).await;
            let _ = msgs.send(Msg::Resolved {
                call,
                fork,
                uri: uri.to_string(),
                result,
            });
        });
    }

    /// A task sending the call's status hooks in order, when a status hook is configured; it
    /// ends once the call is gone and its queue is sent.
    fn status_queue(
        &self,
        call: &Call,
        hook: Option<Hook>,
    ) -> Option<mpsc::UnboundedSender<crate::payload::CallStatusPayload>> {
        let hook = hook.or_else(|| self.svc.config.app.status_hook.clone().map(Hook::post))?;
        Some(self.hook_queue(call, hook, "status hook", |p| p, |_, _| {}))
    }

    /// Queues a media command nobody waits for; sent with the others at the end of the round.
    fn post_media(&mut self, cmd: MediaCommand) {
        // Tearing down waits for the shard's next turn: nobody waits on it.
        if !matches!(
            cmd,
            MediaCommand::Destroy { .. } | MediaCommand::Unbridge { .. }
        ) {
            self.media_wake = true;
        }
        self.media_queue.push(cmd);
    }

    /// Hands the queued media commands to the shards, without waking them.
    fn send_media(&mut self) {
        if !self.media_queue.is_empty() {
            self.svc
                .media
                .post_deferred(std::mem::take(&mut self.media_queue));
        }
    }

    /// Hands the queued media commands over, with one wake-up for the whole batch unless it
    /// only tears down.
    fn flush_media(&mut self) {
        self.send_media();
        if std::mem::take(&mut self.media_wake) {
            self.svc.media.flush();
        }
    }

    /// Answers the caller's INVITE (through the dialog layer).
    fn reply_caller(&mut self, now: Instant, call: &mut Call, reply: Reply) {
        let Some(invite) = call.invite else { return };
        let status = reply.status;
        match self.dl.respond_invite(now, invite, reply) {
            Ok(Some(d)) => {
                call.dialog = Some(d);
                self.dialogs.insert(d, (call.key, Leg::Caller));
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "cannot answer the caller"),
        }
        if status.is_final() {
            call.cdr.final_code.get_or_insert(status.as_u16());
            call.invite = None;
            self.uas.remove(&invite);
        }
    }
}

fn is_initial_invite(r: &Request) -> bool {
    r.method == Method::INVITE && r.headers.to().ok().is_some_and(|to| to.tag().is_none())
}

/// A next-hop URI as an address: the hint kept for a registered contact, where DNS sent a
/// fork's URI ([`Pins`]), or an IP literal (default port 5060).
fn resolve(uri: &Uri, hints: &HashMap<String, SocketAddr>, pins: &Pins) -> Option<SocketAddr> {
    let key = uri.to_string();
    if let Some(a) = hints.get(&key).copied().or_else(|| pins.get(&key)) {
        return Some(a);
    }
    match crate::dns::plan(uri.as_sip()?) {
        Plan::Numeric(d) => Some(d.addr),
        Plan::Lookup { .. } => None,
    }
}

/// The webhook signature's clock.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn ignored(reason: &'static str) {
    tracing::debug!(reason, "b2bua: input ignored");
    metrics::counter!(IGNORED_METRIC, "reason" => reason).increment(1);
}

/// The next item of a channel that may not exist (then never).
async fn recv_some<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(d) = deadline {
        tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await;
    }
}
