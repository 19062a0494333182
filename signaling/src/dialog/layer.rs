//! [`DialogLayer`]: every dialog and INVITE of one user agent (or one B2BUA).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::headers::{self, Refresher, SessionExpires};
use super::timers::{TimerRef, Timers};
use super::{
    Body, Dialog, DialogConfig, DialogId, DialogKey, DialogState, InviteId, InviteRequest,
    Outgoing, Reply, Role, SessionTimer,
};
use crate::message::{
    HeaderName, Message, Method, NameAddr, Param, Request, Response, StatusCode, Uri,
};
use crate::transaction::{
    IncomingRequest, KeyMap, MAGIC_COOKIE, Routed, TransactionKey, Transactions, TxEvent,
};

/// Something to hand to the transaction layer.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Start a client transaction ([`Transactions::send_request`]) towards `next_hop`.
    Request {
        /// The transaction's key (the layer chose the branch).
        key: TransactionKey,
        /// The request.
        request: Request,
        /// The URI whose address the request goes to (first Route, or the Request-URI).
        next_hop: Uri,
    },
    /// Send outside any transaction ([`Transactions::send_stateless`]): the ACK for a 2xx.
    Ack {
        /// The ACK.
        request: Request,
        /// Where it goes.
        next_hop: Uri,
    },
    /// Send through server transaction `key` ([`Transactions::respond`]).
    Response {
        /// The server transaction.
        key: TransactionKey,
        /// The response.
        response: Response,
    },
}

/// Why a dialog ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TerminationReason {
    /// We sent BYE.
    LocalBye,
    /// The peer sent BYE.
    RemoteBye,
    /// The INVITE got (or we sent) a final non-2xx response, or it timed out.
    Rejected,
    /// The INVITE was cancelled.
    Cancelled,
    /// No ACK for our 2xx within 64·T1: BYE sent.
    NoAck,
    /// No PRACK for our reliable provisional within 64·T1: 5xx sent.
    NoPrack,
    /// No session refresh (RFC 4028): BYE sent.
    SessionExpired,
    /// Another fork of the same INVITE was answered; this early dialog ended with the INVITE
    /// transaction.
    ForkLost,
    /// A 2xx arrived after another fork answered or after CANCEL: ACK and BYE sent.
    LateAnswer,
    /// An in-dialog request got 408 or 481, or timed out (§12.2.1.2).
    RequestFailed,
}

impl TerminationReason {
    /// A static label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            TerminationReason::LocalBye => "local_bye",
            TerminationReason::RemoteBye => "remote_bye",
            TerminationReason::Rejected => "rejected",
            TerminationReason::Cancelled => "cancelled",
            TerminationReason::NoAck => "no_ack",
            TerminationReason::NoPrack => "no_prack",
            TerminationReason::SessionExpired => "session_expired",
            TerminationReason::ForkLost => "fork_lost",
            TerminationReason::LateAnswer => "late_answer",
            TerminationReason::RequestFailed => "request_failed",
        }
    }
}

/// What the user must know about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DialogEvent {
    /// A new INVITE arrived: answer with [`DialogLayer::respond_invite`].
    Invite {
        /// The server INVITE.
        invite: InviteId,
        /// The request.
        request: Request,
    },
    /// The peer cancelled our pending INVITE: 200 to the CANCEL and 487 were sent.
    Cancelled {
        /// The server INVITE.
        invite: InviteId,
    },
    /// The PRACK for our reliable provisional arrived (200 sent).
    Prack {
        /// The server INVITE.
        invite: InviteId,
        /// Its early dialog.
        dialog: DialogId,
        /// The PRACK (it may carry a body).
        request: Request,
    },
    /// A provisional response to our INVITE (a new or known early dialog when it has a tag).
    Progress {
        /// The client INVITE.
        invite: InviteId,
        /// The early dialog, if the response had a To tag.
        dialog: Option<DialogId>,
        /// The response.
        response: Response,
    },
    /// The first 2xx to our INVITE: the dialog is confirmed and ACKed.
    Answered {
        /// The client INVITE.
        invite: InviteId,
        /// The confirmed dialog.
        dialog: DialogId,
        /// The response.
        response: Response,
    },
    /// A 2xx from another fork (or after our CANCEL): ACKed, then BYE sent.
    LateAnswer {
        /// The client INVITE.
        invite: InviteId,
        /// The dialog, already terminated.
        dialog: DialogId,
        /// The response.
        response: Response,
    },
    /// Our INVITE failed: a final non-2xx response, or no response (`None`).
    Failed {
        /// The client INVITE.
        invite: InviteId,
        /// The response.
        response: Option<Response>,
    },
    /// The ACK for our 2xx (to an INVITE or re-INVITE) arrived.
    Acked {
        /// The dialog.
        dialog: DialogId,
        /// The ACK (it may carry an answer).
        request: Request,
    },
    /// A request in a dialog for the user: answer with [`DialogLayer::respond`].
    Request {
        /// The dialog.
        dialog: DialogId,
        /// The server transaction.
        key: TransactionKey,
        /// The request.
        request: Request,
    },
    /// The final response to a request we sent in a dialog with [`DialogLayer::request`]
    /// (a 491 to a re-INVITE is not reported: the layer retries).
    Response {
        /// The dialog.
        dialog: DialogId,
        /// The response.
        response: Response,
    },
    /// A NOTIFY about our REFER (RFC 3515): the status of its message/sipfrag body.
    ReferStatus {
        /// The dialog.
        dialog: DialogId,
        /// The status line of the body.
        status: StatusCode,
        /// Whether the subscription ended with this NOTIFY.
        terminated: bool,
    },
    /// The session timer was (re)negotiated by a refresh in either direction.
    Refreshed {
        /// The dialog.
        dialog: DialogId,
        /// The new timer, `None` if the refresh dropped it.
        timer: Option<SessionTimer>,
    },
    /// The dialog ended and was removed.
    Terminated {
        /// The dialog.
        dialog: DialogId,
        /// The INVITE that created it.
        invite: InviteId,
        /// Why.
        reason: TerminationReason,
    },
}

/// Why a user call was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DialogError {
    /// No such dialog (never existed or terminated).
    #[error("no such dialog")]
    UnknownDialog,
    /// No such INVITE, or it was already answered.
    #[error("no such INVITE, or no longer pending")]
    UnknownInvite,
    /// No such server transaction waiting for an answer.
    #[error("no such pending request")]
    UnknownRequest,
    /// The layer sends this method itself (ACK, CANCEL, PRACK).
    #[error("method sent by the dialog layer itself")]
    Method,
    /// An INVITE transaction is already in progress in this dialog (§14.1).
    #[error("an INVITE transaction is in progress")]
    Pending,
    /// No REFER to report on.
    #[error("no REFER received in this dialog")]
    NoRefer,
    /// The configured Via does not parse.
    #[error("configured Via does not parse")]
    BadVia,
    /// No 2xx waits for an ACK from the user.
    #[error("no 2xx waits for the user's ACK")]
    NoAckDue,
    /// The status does not fit (100 Trying is sent by the transaction layer).
    #[error("status not allowed here")]
    Status,
}

enum CancelState {
    No,
    /// Asked for before any provisional arrived (§9.1): sent with the first one.
    Wanted(Option<String>),
    Sent,
}

struct UacInvite {
    spec: InviteRequest,
    call_id: String,
    local_tag: String,
    cseq: u32,
    session_expires: Option<u32>,
    /// Min-SE we send: ours, raised by a 422 (RFC 4028 §7.4).
    min_se: u32,
    /// Authorization / Proxy-Authorization answering the last challenges.
    auth: Vec<(HeaderName, String)>,
    auth_tries: u8,
    request: Request,
    next_hop: Uri,
    dialogs: BTreeMap<String, DialogId>,
    confirmed: Option<DialogId>,
    /// The ACK sent for each 2xx, by To tag, re-sent for retransmissions.
    acks: BTreeMap<String, (Request, Uri)>,
    provisional: bool,
    cancel: CancelState,
    retried_422: bool,
}

struct Reliable {
    response: Response,
    rseq: u32,
    interval: Duration,
    give_up: Instant,
}

struct UasInvite {
    key: TransactionKey,
    request: Request,
    local_tag: String,
    dialog: Option<DialogId>,
    rel100: bool,
    next_rseq: u32,
    unacked: Option<Reliable>,
    queued: VecDeque<Response>,
    /// A 2xx waiting for the PRACK of a reliable provisional with a body.
    deferred_2xx: Option<Reply>,
}

struct Pending2xx {
    key: TransactionKey,
    response: Response,
    cseq: u32,
    interval: Duration,
    give_up: Instant,
}

/// A dialog plus the machinery around it.
struct Slot {
    d: Dialog,
    call_id_owner: bool,
    /// UAS: the INVITE is not answered finally yet.
    uas_invite: Option<InviteId>,
    /// Our INVITE or UPDATE in progress.
    offer_out: Option<TransactionKey>,
    /// Their re-INVITE waiting for our answer.
    invite_in: Option<TransactionKey>,
    pending_2xx: Option<Pending2xx>,
    /// The ACK of our last re-INVITE 2xx (or of the INVITE's), by CSeq.
    ack: Option<(u32, Request, Uri)>,
    /// A 2xx with an offer waits for the user's ACK ([`DialogLayer::ack`]): its CSeq.
    ack_due: Option<u32>,
    /// A request that got 491, to send again (and whether the user sent it).
    glare: Option<(Outgoing, bool)>,
    refer_cseq: Option<u32>,
    local_body: Option<Body>,
    peer_allows_update: bool,
    /// UAC: RSeq of the last reliable provisional we PRACKed.
    peer_rseq: Option<u32>,
}

enum ClientPurpose {
    Invite(InviteId),
    Cancel,
    InDialog {
        dialog: DialogId,
        out: Outgoing,
        /// Sent by the user (its final response is reported).
        user: bool,
    },
}

enum ServerPurpose {
    Invite(InviteId),
    InDialog {
        dialog: DialogId,
        request: Box<Request>,
    },
}

/// Every dialog and INVITE of one user agent: a sans-IO SIP transaction user.
///
/// # Poll order
///
/// After any input — [`handle_routed`](Self::handle_routed),
/// [`handle_tx_event`](Self::handle_tx_event), [`handle_timeout`](Self::handle_timeout) or a
/// user call — drain [`poll_output`](Self::poll_output) (or call
/// [`flush_into`](Self::flush_into)), then [`poll_event`](Self::poll_event), then read
/// [`poll_timeout`](Self::poll_timeout). Outputs given to the transaction layer produce
/// transaction events: feed them back with `handle_tx_event`. `handle_timeout` early or twice
/// is harmless; a `now` older than one already seen counts as the latest.
pub struct DialogLayer {
    cfg: DialogConfig,
    rng: u64,
    next_id: u64,
    last_now: Option<Instant>,
    dialogs: BTreeMap<DialogId, Slot>,
    by_key: HashMap<DialogKey, DialogId>,
    uac: BTreeMap<InviteId, UacInvite>,
    uas: BTreeMap<InviteId, UasInvite>,
    clients: KeyMap<ClientPurpose>,
    servers: KeyMap<ServerPurpose>,
    timers: Timers,
    out: VecDeque<Output>,
    events: VecDeque<DialogEvent>,
}

impl DialogLayer {
    /// A layer with settings `cfg`; `seed` drives Call-IDs, tags, branches and random delays.
    pub fn new(cfg: DialogConfig, seed: u64) -> DialogLayer {
        DialogLayer {
            cfg,
            rng: seed,
            next_id: 1,
            last_now: None,
            dialogs: BTreeMap::new(),
            by_key: HashMap::new(),
            uac: BTreeMap::new(),
            uas: BTreeMap::new(),
            clients: KeyMap::default(),
            servers: KeyMap::default(),
            timers: Timers::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &DialogConfig {
        &self.cfg
    }

    /// A dialog's state, `None` once terminated.
    pub fn dialog(&self, id: DialogId) -> Option<&Dialog> {
        self.dialogs.get(&id).map(|s| &s.d)
    }

    /// The dialog with this identifier.
    pub fn find(&self, key: &DialogKey) -> Option<DialogId> {
        self.by_key.get(key).copied()
    }

    /// Number of live dialogs (early and confirmed).
    pub fn len(&self) -> usize {
        self.dialogs.len()
    }

    /// Whether no dialog is live.
    pub fn is_empty(&self) -> bool {
        self.dialogs.is_empty()
    }

    /// The Call-ID of a client INVITE (chosen by the layer), while it is known.
    pub fn invite_call_id(&self, invite: InviteId) -> Option<&str> {
        self.uac.get(&invite).map(|u| u.call_id.as_str())
    }

    /// The dialogs of a client INVITE so far (one per To tag).
    pub fn invite_dialogs(&self, invite: InviteId) -> Vec<DialogId> {
        self.uac
            .get(&invite)
            .map(|u| u.dialogs.values().copied().collect())
            .unwrap_or_default()
    }

    // ---- poll side -------------------------------------------------------------------------

    /// The next message to hand to the transaction layer.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// The next event for the user.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DialogEvent> {
        self.events.pop_front()
    }

    /// The earliest deadline.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Moves every output into `tx`. `resolve` maps a next-hop URI to an address; a request
    /// with no address fails as if its transaction had timed out.
    pub fn flush_into(
        &mut self,
        now: Instant,
        tx: &mut Transactions,
        mut resolve: impl FnMut(&Uri) -> Option<SocketAddr>,
    ) {
        while let Some(o) = self.poll_output() {
            match o {
                Output::Request {
                    key,
                    request,
                    next_hop,
                } => {
                    let sent = resolve(&next_hop)
                        .is_some_and(|dest| tx.send_request(now, request, dest).is_ok());
                    if !sent {
                        self.client_failed(&key);
                    }
                }
                Output::Ack { request, next_hop } => {
                    if let Some(dest) = resolve(&next_hop) {
                        tx.send_stateless(&Message::Request(request), dest);
                    }
                }
                Output::Response { key, response } => {
                    // Fails only if the transaction is gone (for example a late 2xx
                    // retransmission after Timer L); nothing to do then.
                    let _ = tx.respond(now, &key, &response);
                }
            }
        }
    }

    // ---- inputs from the transaction layer --------------------------------------------------

    /// Takes what [`Transactions::handle`] returned. Returns new requests outside any dialog
    /// that are not INVITE or CANCEL (OPTIONS, REGISTER, …): the caller's business.
    pub fn handle_routed(&mut self, now: Instant, routed: Routed) -> Option<IncomingRequest> {
        let now = self.now(now);
        match routed {
            Routed::NewRequest(inc) => return self.handle_request(now, inc),
            Routed::StrayResponse(r) => {
                if let Ok(k) = TransactionKey::for_response(&r) {
                    self.handle_response(now, &k, r);
                }
            }
            Routed::StrayAck(r) => self.handle_ack(r),
            _ => {}
        }
        None
    }

    /// Takes one [`Transactions::poll_event`] event.
    pub fn handle_tx_event(&mut self, now: Instant, event: TxEvent) {
        let now = self.now(now);
        match event {
            TxEvent::Response { key, response } => self.handle_response(now, &key, response),
            TxEvent::Timeout { key, .. } | TxEvent::TransportError { key } => {
                self.client_failed(&key)
            }
            TxEvent::Ack { request, .. } => self.handle_ack(request),
            TxEvent::Terminated { key } => self.tx_terminated(&key),
        }
    }

    /// Fires every deadline due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.now(now);
        while let Some(r) = self.timers.pop_expired(now) {
            match r {
                TimerRef::Retransmit2xx(d) => self.retransmit_2xx(now, d),
                TimerRef::Reliable1xx(i) => self.retransmit_1xx(now, i),
                TimerRef::GlareRetry(d) => self.glare_retry(now, d),
                TimerRef::Refresh(d) => self.refresh(now, d),
                TimerRef::Expiry(d) => {
                    if self.dialogs.contains_key(&d) {
                        let _ = self.send_in_dialog(d, Outgoing::new(Method::BYE), false);
                        self.terminate(d, TerminationReason::SessionExpired);
                    }
                }
            }
        }
    }

    // ---- user calls: client INVITE ------------------------------------------------------------

    /// Sends a new INVITE (with `Supported: 100rel, timer` and our session interval).
    pub fn invite(&mut self, now: Instant, spec: InviteRequest) -> Result<InviteId, DialogError> {
        let _ = self.now(now);
        let id = InviteId(self.fresh_id());
        let mut u = UacInvite {
            call_id: self.token(),
            local_tag: self.token(),
            cseq: 1,
            session_expires: self.cfg.session_expires,
            min_se: self.cfg.min_se,
            // Both set by `send_invite`.
            request: Request::new(Method::INVITE, spec.uri.clone()),
            next_hop: spec.uri.clone(),
            spec,
            auth: Vec::new(),
            auth_tries: 0,
            dialogs: BTreeMap::new(),
            confirmed: None,
            acks: BTreeMap::new(),
            provisional: false,
            cancel: CancelState::No,
            retried_422: false,
        };
        self.send_invite(id, &mut u)?;
        self.uac.insert(id, u);
        Ok(id)
    }

    /// Cancels our INVITE (§9.1), with a Reason header if given. Sent at once if a
    /// provisional arrived, else with the first one. A 2xx that still arrives is ACKed and
    /// BYEd ([`DialogEvent::LateAnswer`]). Refused once a 2xx confirmed a dialog (send BYE
    /// then) or after the INVITE failed.
    pub fn cancel(
        &mut self,
        now: Instant,
        invite: InviteId,
        reason: Option<String>,
    ) -> Result<(), DialogError> {
        let _ = self.now(now);
        let u = self
            .uac
            .get_mut(&invite)
            .ok_or(DialogError::UnknownInvite)?;
        if u.confirmed.is_some() || !matches!(u.cancel, CancelState::No) {
            return Err(DialogError::UnknownInvite);
        }
        if u.provisional {
            self.send_cancel(invite, reason);
        } else {
            u.cancel = CancelState::Wanted(reason);
        }
        Ok(())
    }

    // ---- user calls: server INVITE ------------------------------------------------------------

    /// Answers a server INVITE: a provisional (reliable if asked and the peer supports 100rel;
    /// one unacknowledged at a time, later ones wait), a 2xx (retransmitted until the ACK;
    /// held back until the PRACK if a reliable provisional with a body is unacknowledged), or
    /// a failure. Returns the dialog the response created or belongs to (none for a failure
    /// before any provisional).
    pub fn respond_invite(
        &mut self,
        now: Instant,
        invite: InviteId,
        reply: Reply,
    ) -> Result<Option<DialogId>, DialogError> {
        let now = self.now(now);
        let status = reply.status;
        if status.as_u16() <= 100 {
            return Err(DialogError::Status);
        }
        let u = self
            .uas
            .get_mut(&invite)
            .ok_or(DialogError::UnknownInvite)?;
        if status.is_success()
            && u.unacked
                .as_ref()
                .is_some_and(|r| !r.response.body.is_empty())
        {
            // RFC 3262 §3: no 2xx while a reliable provisional with a session description
            // waits for its PRACK; it goes out when the PRACK arrives.
            u.queued.clear();
            u.deferred_2xx = Some(reply);
            return Ok(u.dialog);
        }
        let u = &self.uas[&invite];
        let mut resp = Response::for_request(&u.request, status).with_to_tag(&u.local_tag);
        let reliable = reply.reliable && u.rel100 && status.is_provisional();
        if status.as_u16() < 300 {
            for rr in u.request.headers.get_all(&HeaderName::RECORD_ROUTE) {
                resp.headers.push(HeaderName::RECORD_ROUTE, rr);
            }
            self.add_ua_headers(&mut resp.headers);
        }
        let se = if status.is_success() {
            // Too small an interval was refused with 422 when the INVITE arrived.
            self.negotiate_uas(&u.request, true).unwrap_or_default()
        } else {
            None
        };
        if let Some(se) = se {
            add_session_expires(&mut resp, &u.request, se);
        }
        for (n, v) in reply.headers {
            resp.headers.push(n, v);
        }
        if let Some(b) = &reply.body {
            resp = resp.with_body(&b.content_type, b.bytes.clone());
        }
        if status.is_provisional() {
            let d = self.ensure_uas_dialog(invite);
            if reliable {
                let u = self
                    .uas
                    .get_mut(&invite)
                    .ok_or(DialogError::UnknownInvite)?;
                if u.unacked.is_some() {
                    u.queued.push_back(resp);
                } else {
                    self.send_reliable(now, invite, resp);
                }
            } else {
                let key = self.uas[&invite].key.clone();
                self.out.push_back(Output::Response {
                    key,
                    response: resp,
                });
            }
            return Ok(Some(d));
        }
        // Final: no more provisionals.
        self.timers.stop(TimerRef::Reliable1xx(invite));
        let u = self.uas.remove(&invite).ok_or(DialogError::UnknownInvite)?;
        self.servers.remove(&u.key);
        if status.is_success() {
            let d = match u.dialog {
                Some(d) => d,
                None => self.new_uas_dialog(invite, &u.request, &u.local_tag),
            };
            let slot = self.dialogs.get_mut(&d).ok_or(DialogError::UnknownDialog)?;
            slot.uas_invite = None;
            slot.d.state = DialogState::Confirmed;
            slot.local_body = reply.body.or(slot.local_body.take());
            slot.d.session_timer = se.map(|se| SessionTimer {
                interval: se.delta,
                we_refresh: se.refresher == Some(Refresher::Uas),
            });
            let cseq = u.request.headers.cseq().map(|c| c.seq).unwrap_or(0);
            self.start_2xx(now, d, u.key, resp, cseq);
            self.arm_session(now, d);
            Ok(Some(d))
        } else {
            self.out.push_back(Output::Response {
                key: u.key,
                response: resp,
            });
            if let Some(d) = u.dialog {
                self.terminate(d, TerminationReason::Rejected);
            }
            Ok(u.dialog)
        }
    }

    // ---- user calls: in-dialog ----------------------------------------------------------------

    /// Sends a request in a dialog (re-INVITE, UPDATE, INFO, REFER, NOTIFY, MESSAGE, BYE, …).
    /// A BYE ends the dialog at once ([`DialogEvent::Terminated`]).
    pub fn request(
        &mut self,
        now: Instant,
        dialog: DialogId,
        out: Outgoing,
    ) -> Result<TransactionKey, DialogError> {
        let _ = self.now(now);
        if [Method::ACK, Method::CANCEL, Method::PRACK].contains(&out.method) {
            return Err(DialogError::Method);
        }
        let slot = self
            .dialogs
            .get(&dialog)
            .ok_or(DialogError::UnknownDialog)?;
        if out.method == Method::INVITE
            && (slot.offer_out.is_some()
                || slot.invite_in.is_some()
                || slot.pending_2xx.is_some()
                || slot.glare.is_some())
        {
            return Err(DialogError::Pending);
        }
        let bye = out.method == Method::BYE;
        let key = self.send_in_dialog(dialog, out, true)?;
        if bye {
            self.terminate(dialog, TerminationReason::LocalBye);
        }
        Ok(key)
    }

    /// Sends the ACK for a 2xx that carried an offer to an INVITE or re-INVITE we sent
    /// without one (late offer): `body` is the answer. Every other 2xx is ACKed by the layer.
    pub fn ack(
        &mut self,
        now: Instant,
        dialog: DialogId,
        body: Option<Body>,
    ) -> Result<(), DialogError> {
        let _ = self.now(now);
        let slot = self
            .dialogs
            .get_mut(&dialog)
            .ok_or(DialogError::UnknownDialog)?;
        let seq = slot.ack_due.take().ok_or(DialogError::NoAckDue)?;
        self.send_ack(dialog, seq, body);
        Ok(())
    }

    /// Sends BYE and ends the dialog.
    pub fn bye(&mut self, now: Instant, dialog: DialogId) -> Result<TransactionKey, DialogError> {
        self.request(now, dialog, Outgoing::new(Method::BYE))
    }

    /// Sends REFER with `Refer-To: refer_to` (RFC 3515).
    pub fn refer(
        &mut self,
        now: Instant,
        dialog: DialogId,
        refer_to: &NameAddr,
    ) -> Result<TransactionKey, DialogError> {
        self.request(
            now,
            dialog,
            Outgoing::new(Method::REFER).header(HeaderName::REFER_TO, refer_to.to_string()),
        )
    }

    /// Reports the progress of the REFER received last in this dialog with a NOTIFY whose
    /// message/sipfrag body is `status` (RFC 3515 §2.4.5); a final status ends the implicit
    /// subscription.
    pub fn notify_refer(
        &mut self,
        now: Instant,
        dialog: DialogId,
        status: StatusCode,
    ) -> Result<TransactionKey, DialogError> {
        let slot = self
            .dialogs
            .get(&dialog)
            .ok_or(DialogError::UnknownDialog)?;
        let id = slot.refer_cseq.ok_or(DialogError::NoRefer)?;
        let state = if status.is_final() {
            "terminated;reason=noresource"
        } else {
            "active;expires=60"
        };
        self.request(
            now,
            dialog,
            Outgoing::new(Method::NOTIFY)
                .header(HeaderName::EVENT, format!("refer;id={id}"))
                .header(HeaderName::SUBSCRIPTION_STATE, state)
                .body(Body::new(
                    "message/sipfrag;version=2.0",
                    headers::sipfrag(status),
                )),
        )
    }

    /// Answers a request delivered by [`DialogEvent::Request`]. A 2xx to a re-INVITE is
    /// retransmitted until its ACK; a 2xx to a re-INVITE or UPDATE carries our Contact and the
    /// session timer.
    pub fn respond(
        &mut self,
        now: Instant,
        key: &TransactionKey,
        reply: Reply,
    ) -> Result<(), DialogError> {
        let now = self.now(now);
        if reply.status.as_u16() <= 100 {
            return Err(DialogError::Status);
        }
        let Some(ServerPurpose::InDialog { dialog, request }) = self.servers.get(key) else {
            return Err(DialogError::UnknownRequest);
        };
        let (dialog, request) = (*dialog, request.clone());
        let status = reply.status;
        let mut resp = Response::for_request(&request, status);
        let refresh = status.is_success()
            && (request.method == Method::INVITE || request.method == Method::UPDATE);
        let se = if refresh {
            self.add_ua_headers(&mut resp.headers);
            self.negotiate_uas(&request, false).unwrap_or(None)
        } else {
            None
        };
        if let Some(se) = se {
            add_session_expires(&mut resp, &request, se);
        }
        for (n, v) in reply.headers {
            resp.headers.push(n, v);
        }
        if let Some(b) = &reply.body {
            resp = resp.with_body(&b.content_type, b.bytes.clone());
        }
        if status.is_provisional() {
            self.out.push_back(Output::Response {
                key: key.clone(),
                response: resp,
            });
            return Ok(());
        }
        self.servers.remove(key);
        let is_invite = request.method == Method::INVITE;
        if let Some(slot) = self.dialogs.get_mut(&dialog) {
            if is_invite {
                slot.invite_in = None;
            }
            if refresh {
                if reply.body.is_some() {
                    slot.local_body = reply.body;
                }
                self.apply_refresh(now, dialog, se, Refresher::Uas);
            }
            if is_invite && status.is_success() {
                let cseq = request.headers.cseq().map(|c| c.seq).unwrap_or(0);
                self.start_2xx(now, dialog, key.clone(), resp, cseq);
                return Ok(());
            }
        }
        self.out.push_back(Output::Response {
            key: key.clone(),
            response: resp,
        });
        Ok(())
    }

    // ---- internals: requests in -----------------------------------------------------------------

    fn handle_request(&mut self, now: Instant, inc: IncomingRequest) -> Option<IncomingRequest> {
        let req = &inc.request;
        if req.method == Method::CANCEL {
            self.handle_cancel(inc);
            return None;
        }
        let to_tag = req
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        match to_tag {
            Some(tag) => {
                let key = DialogKey {
                    call_id: req.headers.call_id().unwrap_or("").to_owned(),
                    local_tag: tag,
                    remote_tag: remote_tag(req),
                };
                match self.by_key.get(&key).copied() {
                    Some(d) => self.in_dialog_request(now, d, inc),
                    None => self.reply(
                        &inc.key,
                        req,
                        StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
                    ),
                }
                None
            }
            None if req.method == Method::INVITE => {
                self.new_invite(inc);
                None
            }
            None => Some(inc),
        }
    }

    fn new_invite(&mut self, inc: IncomingRequest) {
        let req = inc.request;
        let unsupported: Vec<&str> = req
            .headers
            .values(&HeaderName::REQUIRE)
            .filter(|t| {
                let ours = (self.cfg.rel100 && t.eq_ignore_ascii_case("100rel"))
                    || (self.cfg.session_expires.is_some() && t.eq_ignore_ascii_case("timer"));
                !ours
            })
            .collect();
        if !unsupported.is_empty() {
            let resp = Response::for_request(&req, StatusCode::BAD_EXTENSION)
                .with_header(HeaderName::UNSUPPORTED, unsupported.join(", "));
            self.out.push_back(Output::Response {
                key: inc.key,
                response: resp,
            });
            return;
        }
        if let Err(min) = self.negotiate_uas(&req, true) {
            let resp = Response::for_request(
                &req,
                StatusCode::new(422).unwrap_or(StatusCode::BAD_REQUEST),
            )
            .with_header(HeaderName::MIN_SE, min);
            let mut resp = resp;
            resp.reason = "Session Interval Too Small".into();
            self.out.push_back(Output::Response {
                key: inc.key,
                response: resp,
            });
            return;
        }
        let id = InviteId(self.fresh_id());
        let rel100 = self.cfg.rel100
            && headers::has_option(
                &req.headers,
                &[HeaderName::SUPPORTED, HeaderName::REQUIRE],
                "100rel",
            );
        // RFC 3262 §3: the first RSeq is random, at most 2³¹−1; leave room to count up.
        let next_rseq = (self.random() % (1 << 30)) as u32 + 1;
        let local_tag = self.token();
        self.servers
            .insert(inc.key.clone(), ServerPurpose::Invite(id));
        self.uas.insert(
            id,
            UasInvite {
                key: inc.key,
                request: req.clone(),
                local_tag,
                dialog: None,
                rel100,
                next_rseq,
                unacked: None,
                queued: VecDeque::new(),
                deferred_2xx: None,
            },
        );
        self.events.push_back(DialogEvent::Invite {
            invite: id,
            request: req,
        });
    }

    fn handle_cancel(&mut self, inc: IncomingRequest) {
        let target = inc
            .cancel_target
            .as_ref()
            .and_then(|k| match self.servers.get(k) {
                Some(ServerPurpose::Invite(id)) => Some(*id),
                _ => None,
            });
        let status = if target.is_some() || inc.cancel_target.is_some() {
            StatusCode::OK
        } else {
            StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
        };
        self.reply(&inc.key, &inc.request, status);
        if let Some(id) = target {
            self.reject_invite(
                id,
                StatusCode::REQUEST_TERMINATED,
                TerminationReason::Cancelled,
            );
            self.events.push_back(DialogEvent::Cancelled { invite: id });
        }
    }

    /// Sends a final non-2xx to a pending server INVITE and ends its early dialog.
    fn reject_invite(&mut self, id: InviteId, status: StatusCode, reason: TerminationReason) {
        self.timers.stop(TimerRef::Reliable1xx(id));
        let Some(u) = self.uas.remove(&id) else {
            return;
        };
        self.servers.remove(&u.key);
        let resp = Response::for_request(&u.request, status).with_to_tag(&u.local_tag);
        self.out.push_back(Output::Response {
            key: u.key,
            response: resp,
        });
        if let Some(d) = u.dialog {
            self.terminate(d, reason);
        }
    }

    fn in_dialog_request(&mut self, now: Instant, d: DialogId, inc: IncomingRequest) {
        let IncomingRequest { key, request, .. } = inc;
        let Ok(cseq) = request.headers.cseq().map(|c| c.seq) else {
            return self.reply(&key, &request, StatusCode::BAD_REQUEST);
        };
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        // §12.2.2: lower than the last one is out of order.
        if slot.d.remote_seq.is_some_and(|r| cseq < r) {
            return self.reply(&key, &request, StatusCode::SERVER_INTERNAL_ERROR);
        }
        slot.d.remote_seq = Some(cseq);
        let m = request.method.clone();
        if m == Method::BYE {
            self.reply(&key, &request, StatusCode::OK);
            let slot = &self.dialogs[&d];
            if let Some(inv) = slot.uas_invite {
                self.reject_invite(
                    inv,
                    StatusCode::REQUEST_TERMINATED,
                    TerminationReason::RemoteBye,
                );
            }
            // §15.1.2: pending requests of the dialog still get an answer.
            let pending: Vec<TransactionKey> = self
                .servers
                .iter()
                .filter(
                    |(_, p)| matches!(p, ServerPurpose::InDialog { dialog, .. } if *dialog == d),
                )
                .map(|(k, _)| k.clone())
                .collect();
            for k in pending {
                if let Some(ServerPurpose::InDialog { request, .. }) = self.servers.remove(&k) {
                    self.reply(&k, &request, StatusCode::REQUEST_TERMINATED);
                }
            }
            return self.terminate(d, TerminationReason::RemoteBye);
        }
        if m == Method::PRACK {
            return self.handle_prack(now, d, key, request);
        }
        let is_offer = m == Method::INVITE || (m == Method::UPDATE && !request.body.is_empty());
        if is_offer && slot.offer_out.is_some() {
            return self.reply(&key, &request, StatusCode::REQUEST_PENDING);
        }
        if m == Method::INVITE && slot.invite_in.is_some() {
            // §14.2: a second re-INVITE while one is unanswered.
            let retry = self.random() % 11;
            let resp = Response::for_request(&request, StatusCode::SERVER_INTERNAL_ERROR)
                .with_header(HeaderName::RETRY_AFTER, retry);
            self.out.push_back(Output::Response {
                key,
                response: resp,
            });
            return;
        }
        let slot = self
            .dialogs
            .get_mut(&d)
            .expect("looked up above, not removed since");
        if m == Method::INVITE || m == Method::UPDATE {
            // Target refresh (§12.2.2).
            if let Ok(Some(crate::message::Contact::Addrs(c))) = request.headers.contact()
                && let Some(first) = c.into_iter().next()
            {
                slot.d.remote_target = first.uri;
            }
        }
        if m == Method::INVITE {
            slot.invite_in = Some(key.clone());
        }
        if m == Method::REFER {
            slot.refer_cseq = Some(cseq);
        }
        if m == Method::NOTIFY
            && request.headers.get(&HeaderName::EVENT).is_some_and(|e| {
                e.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("refer"))
            })
        {
            self.reply(&key, &request, StatusCode::OK);
            if let Some(status) = headers::sipfrag_status(&request.body) {
                let terminated = request
                    .headers
                    .get(&HeaderName::SUBSCRIPTION_STATE)
                    .is_some_and(|s| {
                        s.trim_start()
                            .to_ascii_lowercase()
                            .starts_with("terminated")
                    });
                self.events.push_back(DialogEvent::ReferStatus {
                    dialog: d,
                    status,
                    terminated,
                });
            }
            return;
        }
        self.servers.insert(
            key.clone(),
            ServerPurpose::InDialog {
                dialog: d,
                request: Box::new(request.clone()),
            },
        );
        if m == Method::UPDATE && request.body.is_empty() {
            // A refresh or target refresh only: nothing for the user to decide.
            let _ = self.respond(now, &key, Reply::new(StatusCode::OK));
            return;
        }
        self.events.push_back(DialogEvent::Request {
            dialog: d,
            key,
            request,
        });
    }

    fn handle_prack(&mut self, now: Instant, d: DialogId, key: TransactionKey, request: Request) {
        let inv = self.dialogs.get(&d).and_then(|s| s.uas_invite);
        let rack = headers::rack(&request.headers);
        let matched = inv.and_then(|i| {
            let u = self.uas.get(&i)?;
            let r = u.unacked.as_ref()?;
            let cseq = u.request.headers.cseq().ok()?.seq;
            (rack == Some((r.rseq, cseq, Method::INVITE))).then_some(i)
        });
        let Some(inv) = matched else {
            return self.reply(
                &key,
                &request,
                StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST,
            );
        };
        self.reply(&key, &request, StatusCode::OK);
        self.timers.stop(TimerRef::Reliable1xx(inv));
        let next = self.uas.get_mut(&inv).and_then(|u| {
            u.unacked = None;
            u.queued.pop_front()
        });
        self.events.push_back(DialogEvent::Prack {
            invite: inv,
            dialog: d,
            request,
        });
        if let Some(resp) = next {
            self.send_reliable(now, inv, resp);
        } else if let Some(reply) = self.uas.get_mut(&inv).and_then(|u| u.deferred_2xx.take()) {
            let _ = self.respond_invite(now, inv, reply);
        }
    }

    fn handle_ack(&mut self, ack: Request) {
        let Ok(cseq) = ack.headers.cseq().map(|c| c.seq) else {
            return;
        };
        let Some(d) = self.dialog_of_request(&ack) else {
            return;
        };
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        if slot.pending_2xx.as_ref().is_some_and(|p| p.cseq == cseq) {
            slot.pending_2xx = None;
            self.timers.stop(TimerRef::Retransmit2xx(d));
            self.events.push_back(DialogEvent::Acked {
                dialog: d,
                request: ack,
            });
        }
    }

    // ---- internals: responses in ----------------------------------------------------------------

    fn handle_response(&mut self, now: Instant, key: &TransactionKey, resp: Response) {
        match self.clients.get(key) {
            Some(ClientPurpose::Invite(id)) => {
                let id = *id;
                self.uac_response(now, key, id, resp);
            }
            Some(ClientPurpose::Cancel) => {
                if resp.status.is_final() {
                    self.clients.remove(key);
                }
            }
            Some(ClientPurpose::InDialog { .. }) => self.in_dialog_response(now, key, resp),
            None => {
                // A 2xx retransmission after the INVITE transaction ended: ACK it again.
                let Ok(cseq) = resp.headers.cseq() else {
                    return;
                };
                if cseq.method != Method::INVITE || !resp.status.is_success() {
                    return;
                }
                let Some(d) = self.dialog_of_response(&resp) else {
                    return;
                };
                if let Some((seq, ack, hop)) = &self.dialogs[&d].ack
                    && *seq == cseq.seq
                {
                    self.out.push_back(Output::Ack {
                        request: ack.clone(),
                        next_hop: hop.clone(),
                    });
                }
            }
        }
    }

    fn uac_response(&mut self, now: Instant, key: &TransactionKey, id: InviteId, resp: Response) {
        let status = resp.status;
        if status == StatusCode::TRYING {
            // A 100 is a provisional response too (§9.1): a CANCEL may go now. It creates no
            // dialog and is not reported.
            if let Some(u) = self.uac.get_mut(&id) {
                u.provisional = true;
                if let CancelState::Wanted(reason) =
                    std::mem::replace(&mut u.cancel, CancelState::No)
                {
                    self.send_cancel(id, reason);
                }
            }
            return;
        }
        let tag = resp
            .headers
            .to()
            .ok()
            .and_then(|t| t.tag().map(str::to_owned));
        if status.is_provisional() {
            let Some(u) = self.uac.get_mut(&id) else {
                return;
            };
            u.provisional = true;
            if let CancelState::Wanted(reason) = std::mem::replace(&mut u.cancel, CancelState::No) {
                self.send_cancel(id, reason);
            }
            let dialog = match tag {
                Some(t) => match self.ensure_uac_dialog(id, &resp, &t) {
                    Some(d) => Some(d),
                    // That fork's dialog already ended.
                    None => return,
                },
                None => None,
            };
            let reliable = headers::has_option(&resp.headers, &[HeaderName::REQUIRE], "100rel");
            if let (Some(d), true) = (dialog, reliable) {
                let Some(rseq) = headers::rseq(&resp.headers) else {
                    return;
                };
                let slot = self.dialogs.get_mut(&d).expect("just ensured");
                // RFC 3262 §4: retransmissions and out-of-order responses are discarded.
                if slot
                    .peer_rseq
                    .is_some_and(|last| rseq != last.wrapping_add(1))
                {
                    return;
                }
                slot.peer_rseq = Some(rseq);
                update_target(&mut slot.d, &resp);
                let cseq = resp.headers.cseq().map(|c| c.seq).unwrap_or(0);
                let prack = Outgoing::new(Method::PRACK)
                    .header(HeaderName::RACK, format!("{rseq} {cseq} INVITE"));
                let _ = self.send_in_dialog(d, prack, false);
            }
            self.events.push_back(DialogEvent::Progress {
                invite: id,
                dialog,
                response: resp,
            });
            return;
        }
        if status.is_success() {
            let Some(tag) = tag else {
                tracing::debug!("2xx to INVITE without To tag dropped");
                metrics::counter!("dialplane_sip_dialog_drops_total", "reason" => "2xx_without_tag")
                    .increment(1);
                return;
            };
            let Some(u) = self.uac.get(&id) else { return };
            if let Some((ack, hop)) = u.acks.get(&tag) {
                // Retransmission.
                self.out.push_back(Output::Ack {
                    request: ack.clone(),
                    next_hop: hop.clone(),
                });
                return;
            }
            if u.confirmed.is_some() && u.confirmed == u.dialogs.get(&tag).copied() {
                // A retransmission before the user's ACK (late offer): nothing to re-send.
                return;
            }
            let late = u.confirmed.is_some() || !matches!(u.cancel, CancelState::No);
            // Late offer (RFC 3264): the 2xx carries the offer, the user's ACK the answer.
            let manual_ack = !late && u.spec.body.is_none() && !resp.body.is_empty();
            let Some(d) = self.ensure_uac_dialog(id, &resp, &tag) else {
                // That fork's dialog already ended (for example its PRACK failed).
                return;
            };
            let slot = self.dialogs.get_mut(&d).expect("just ensured");
            slot.d.state = DialogState::Confirmed;
            // §13.2.2.4: the 2xx recomputes the route set.
            slot.d.route_set = record_route_reversed(&resp);
            update_target(&mut slot.d, &resp);
            slot.peer_allows_update = allows_update(&resp.headers);
            let seq = self.uac[&id].cseq;
            if manual_ack {
                slot.ack_due = Some(seq);
            } else {
                self.send_ack(d, seq, None);
            }
            let u = self.uac.get_mut(&id).expect("looked up above");
            if late {
                let _ = self.send_in_dialog(d, Outgoing::new(Method::BYE), false);
                self.events.push_back(DialogEvent::LateAnswer {
                    invite: id,
                    dialog: d,
                    response: resp,
                });
                self.terminate(d, TerminationReason::LateAnswer);
                return;
            }
            u.confirmed = Some(d);
            let slot = self.dialogs.get_mut(&d).expect("just ensured");
            slot.d.session_timer =
                SessionExpires::from_headers(&resp.headers).map(|se| SessionTimer {
                    interval: se.delta,
                    we_refresh: se.refresher != Some(Refresher::Uas),
                });
            if let Some(b) = &self.uac[&id].spec.body {
                self.dialogs.get_mut(&d).expect("just ensured").local_body = Some(b.clone());
            }
            self.arm_session(now, d);
            self.events.push_back(DialogEvent::Answered {
                invite: id,
                dialog: d,
                response: resp,
            });
            return;
        }
        // 3xx–6xx.
        self.clients.remove(key);
        let Some(mut u) = self.uac.remove(&id) else {
            return;
        };
        if status.as_u16() == 422
            && !u.retried_422
            && let Some(min) = headers::min_se(&resp.headers)
        {
            u.retried_422 = true;
            u.min_se = u.min_se.max(min);
            u.session_expires = Some(u.session_expires.unwrap_or(0).max(u.min_se));
            if self.retry_invite(id, &mut u).is_ok() {
                self.uac.insert(id, u);
                return;
            }
        }
        if (status == StatusCode::UNAUTHORIZED
            || status == StatusCode::PROXY_AUTHENTICATION_REQUIRED)
            && self.answer_challenge(&mut u, &resp)
            && self.retry_invite(id, &mut u).is_ok()
        {
            self.uac.insert(id, u);
            return;
        }
        self.fail_uac(id, u, Some(resp));
    }

    fn fail_uac(&mut self, id: InviteId, u: UacInvite, resp: Option<Response>) {
        for d in u.dialogs.values() {
            if Some(*d) != u.confirmed {
                self.terminate(*d, TerminationReason::Rejected);
            }
        }
        if u.confirmed.is_none() {
            self.events.push_back(DialogEvent::Failed {
                invite: id,
                response: resp,
            });
        }
    }

    fn in_dialog_response(&mut self, now: Instant, key: &TransactionKey, resp: Response) {
        if resp.status.is_provisional() {
            return;
        }
        let Some(ClientPurpose::InDialog { dialog, out, user }) = self.clients.remove(key) else {
            return;
        };
        let Some(slot) = self.dialogs.get_mut(&dialog) else {
            return;
        };
        let m = out.method.clone();
        let offer = m == Method::INVITE || m == Method::UPDATE;
        if offer && slot.offer_out.as_ref() == Some(key) {
            slot.offer_out = None;
        }
        let status = resp.status;
        if m == Method::INVITE && status.is_success() {
            let seq = resp.headers.cseq().map(|c| c.seq).unwrap_or(0);
            if user && out.body.is_none() && !resp.body.is_empty() {
                // Late offer: the user answers in the ACK.
                slot.ack_due = Some(seq);
            } else {
                self.send_ack(dialog, seq, None);
            }
        }
        if offer && status.is_success() {
            let slot = self.dialogs.get_mut(&dialog).expect("looked up above");
            update_target(&mut slot.d, &resp);
            let se = SessionExpires::from_headers(&resp.headers);
            self.apply_refresh(now, dialog, se, Refresher::Uac);
        }
        if offer && status == StatusCode::REQUEST_PENDING {
            // §14.1: retry after a random delay, longer for the Call-ID's owner.
            let owner = self.dialogs[&dialog].call_id_owner;
            let tens = if owner {
                210 + self.random() % 191
            } else {
                self.random() % 201
            };
            self.dialogs
                .get_mut(&dialog)
                .expect("looked up above")
                .glare = Some((out, user));
            self.timers.set(
                TimerRef::GlareRetry(dialog),
                now + Duration::from_millis(tens * 10),
            );
            return;
        }
        if user {
            self.events.push_back(DialogEvent::Response {
                dialog,
                response: resp,
            });
        }
        if status == StatusCode::REQUEST_TIMEOUT
            || status == StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
        {
            self.terminate(dialog, TerminationReason::RequestFailed);
        }
    }

    fn client_failed(&mut self, key: &TransactionKey) {
        match self.clients.remove(key) {
            Some(ClientPurpose::Invite(id)) => {
                if let Some(u) = self.uac.remove(&id) {
                    self.fail_uac(id, u, None);
                }
            }
            Some(ClientPurpose::InDialog { dialog, out, .. }) => {
                // §12.2.1.2: a timeout ends the dialog (a BYE's dialog is gone already); the
                // BYE is for a peer that is merely unreachable for now (RFC 4028 §10).
                if out.method != Method::BYE && self.dialogs.contains_key(&dialog) {
                    let _ = self.send_in_dialog(dialog, Outgoing::new(Method::BYE), false);
                    self.terminate(dialog, TerminationReason::RequestFailed);
                }
            }
            Some(ClientPurpose::Cancel) | None => {}
        }
    }

    fn tx_terminated(&mut self, key: &TransactionKey) {
        if let Some(ClientPurpose::Invite(id)) = self.clients.remove(key)
            && let Some(u) = self.uac.remove(&id)
        {
            // The INVITE transaction is over: early dialogs of other forks can no longer be
            // answered.
            for d in u.dialogs.values() {
                if Some(*d) != u.confirmed
                    && self
                        .dialogs
                        .get(d)
                        .is_some_and(|s| s.d.state == DialogState::Early)
                {
                    self.terminate(*d, TerminationReason::ForkLost);
                }
            }
        }
        if let Some(ServerPurpose::Invite(id)) = self.servers.get(key) {
            let id = *id;
            self.servers.remove(key);
            self.uas.remove(&id);
        }
    }

    // ---- internals: timers ------------------------------------------------------------------

    fn retransmit_2xx(&mut self, now: Instant, d: DialogId) {
        let t2 = self.cfg.timers.t2;
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        let Some(p) = slot.pending_2xx.as_mut() else {
            return;
        };
        if now >= p.give_up {
            slot.pending_2xx = None;
            let _ = self.send_in_dialog(d, Outgoing::new(Method::BYE), false);
            return self.terminate(d, TerminationReason::NoAck);
        }
        self.out.push_back(Output::Response {
            key: p.key.clone(),
            response: p.response.clone(),
        });
        p.interval = (p.interval * 2).min(t2);
        let at = (now + p.interval).min(p.give_up);
        self.timers.set(TimerRef::Retransmit2xx(d), at);
    }

    fn retransmit_1xx(&mut self, now: Instant, id: InviteId) {
        let Some(u) = self.uas.get_mut(&id) else {
            return;
        };
        let Some(r) = u.unacked.as_mut() else { return };
        if now >= r.give_up {
            // RFC 3262 §3: no PRACK for 64·T1, reject the INVITE with a 5xx.
            return self.reject_invite(id, StatusCode::SERVER_TIMEOUT, TerminationReason::NoPrack);
        }
        self.out.push_back(Output::Response {
            key: u.key.clone(),
            response: r.response.clone(),
        });
        r.interval *= 2;
        let at = (now + r.interval).min(r.give_up);
        self.timers.set(TimerRef::Reliable1xx(id), at);
    }

    fn glare_retry(&mut self, now: Instant, d: DialogId) {
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        if slot.offer_out.is_some() || slot.invite_in.is_some() {
            // The peer's request is still being answered: try again a little later.
            self.timers
                .set(TimerRef::GlareRetry(d), now + self.cfg.timers.t1 * 4);
            return;
        }
        if let Some((out, user)) = slot.glare.take() {
            let _ = self.send_in_dialog(d, out, user);
        }
    }

    fn refresh(&mut self, now: Instant, d: DialogId) {
        let Some(slot) = self.dialogs.get(&d) else {
            return;
        };
        if slot.offer_out.is_some() || slot.invite_in.is_some() {
            // A transaction in progress refreshes the session when it succeeds; try again
            // shortly if it does not.
            self.timers
                .set(TimerRef::Refresh(d), now + self.cfg.timers.t1 * 4);
            return;
        }
        let mut out = if slot.peer_allows_update {
            Outgoing::new(Method::UPDATE)
        } else {
            Outgoing::new(Method::INVITE)
        };
        if out.method == Method::INVITE {
            out.body = slot.local_body.clone();
        }
        let _ = self.send_in_dialog(d, out, false);
    }

    // ---- internals: building and sending --------------------------------------------------------

    /// Builds and queues an INVITE outside any dialog; returns it and its next hop.
    /// Sends the INVITE again with the next CSeq (after 422, 401 or 407).
    fn retry_invite(&mut self, id: InviteId, u: &mut UacInvite) -> Result<(), DialogError> {
        u.cseq += 1;
        u.provisional = false;
        self.send_invite(id, u)
    }

    /// Adds credentials for a 401/407 challenge to `u` (RFC 3261 §22.2); false when we have
    /// no login, cannot answer any challenge, or already answered twice.
    fn answer_challenge(&mut self, u: &mut UacInvite, resp: &Response) -> bool {
        let Some(login) = &u.spec.login else {
            return false;
        };
        if u.auth_tries >= 2 {
            return false;
        }
        let (challenge_name, answer_name) = if resp.status == StatusCode::UNAUTHORIZED {
            (HeaderName::WWW_AUTHENTICATE, HeaderName::AUTHORIZATION)
        } else {
            (
                HeaderName::PROXY_AUTHENTICATE,
                HeaderName::PROXY_AUTHORIZATION,
            )
        };
        let cnonce = format!("{:016x}", self.random());
        let uri = u.spec.uri.to_string();
        let creds = resp.headers.get_all(&challenge_name).find_map(|v| {
            let ch = crate::auth::Challenge::parse(v).ok()?;
            let req = crate::auth::ClientRequest {
                username: &login.username,
                password: &login.password,
                method: "INVITE",
                uri: &uri,
                nc: 1,
                cnonce: &cnonce,
            };
            crate::auth::respond(&ch, &req).ok()
        });
        let Some(creds) = creds else { return false };
        u.auth_tries += 1;
        u.auth.retain(|(n, _)| *n != answer_name);
        u.auth.push((answer_name, creds.to_string()));
        true
    }

    /// Builds and queues `u`'s INVITE (CSeq `u.cseq`), and records it in `u`.
    fn send_invite(&mut self, id: InviteId, u: &mut UacInvite) -> Result<(), DialogError> {
        let via = self.via();
        let spec = &u.spec;
        let mut from = spec.from.clone();
        from.params.retain(|p| !p.name.eq_ignore_ascii_case("tag"));
        from.params
            .push(Param::new("tag", Some(u.local_tag.as_str())));
        let mut req = Request::new(Method::INVITE, spec.uri.clone())
            .with_header(HeaderName::VIA, via)
            .with_header(HeaderName::MAX_FORWARDS, 70);
        for r in &spec.route {
            req = req.with_header(HeaderName::ROUTE, r);
        }
        req = req
            .with_header(HeaderName::FROM, from)
            .with_header(HeaderName::TO, &spec.to)
            .with_header(HeaderName::CALL_ID, &u.call_id)
            .with_header(HeaderName::CSEQ, format_args!("{} INVITE", u.cseq));
        self.add_ua_headers(&mut req.headers);
        if let Some(se) = u.session_expires {
            req.headers
                .push(HeaderName::SESSION_EXPIRES, se.to_string());
            req.headers.push(HeaderName::MIN_SE, u.min_se.to_string());
        }
        for (n, v) in spec.headers.iter().chain(&u.auth) {
            req.headers.push(n.clone(), v.clone());
        }
        if let Some(b) = &spec.body {
            req = req.with_body(&b.content_type, b.bytes.clone());
        }
        let key = TransactionKey::for_request(&req).map_err(|_| DialogError::BadVia)?;
        u.next_hop = spec
            .route
            .first()
            .map_or_else(|| spec.uri.clone(), |r| r.uri.clone());
        u.request = req.clone();
        self.clients.insert(key.clone(), ClientPurpose::Invite(id));
        self.out.push_back(Output::Request {
            key,
            request: req,
            next_hop: u.next_hop.clone(),
        });
        Ok(())
    }

    fn send_cancel(&mut self, id: InviteId, reason: Option<String>) {
        let Some(u) = self.uac.get_mut(&id) else {
            return;
        };
        u.cancel = CancelState::Sent;
        let inv = &u.request;
        let h = &inv.headers;
        let mut c = Request::new(Method::CANCEL, inv.uri.clone());
        if let Some(via) = h.values(&HeaderName::VIA).next() {
            c.headers.push(HeaderName::VIA, via);
        }
        c.headers.push(HeaderName::MAX_FORWARDS, "70");
        for r in h.get_all(&HeaderName::ROUTE) {
            c.headers.push(HeaderName::ROUTE, r);
        }
        for n in [HeaderName::FROM, HeaderName::TO, HeaderName::CALL_ID] {
            if let Some(v) = h.get(&n) {
                c.headers.push(n, v);
            }
        }
        c.headers
            .push(HeaderName::CSEQ, format!("{} CANCEL", u.cseq));
        if let Some(r) = reason {
            c.headers.push(HeaderName::REASON, r);
        }
        let next_hop = u.next_hop.clone();
        let Ok(key) = TransactionKey::for_request(&c) else {
            return;
        };
        self.clients.insert(key.clone(), ClientPurpose::Cancel);
        self.out.push_back(Output::Request {
            key,
            request: c,
            next_hop,
        });
    }

    /// Builds and queues a request in dialog `d` with the next local CSeq.
    fn send_in_dialog(
        &mut self,
        d: DialogId,
        out: Outgoing,
        user: bool,
    ) -> Result<TransactionKey, DialogError> {
        let via = self.via();
        let contact = self.cfg.contact.clone();
        let supports_timer = self.cfg.session_expires.is_some();
        let allow = ALLOW;
        let slot = self.dialogs.get_mut(&d).ok_or(DialogError::UnknownDialog)?;
        slot.d.local_seq += 1;
        let (mut req, next_hop) = slot
            .d
            .build_request(out.method.clone(), slot.d.local_seq, via);
        let m = &out.method;
        let offer = *m == Method::INVITE || *m == Method::UPDATE;
        if offer || *m == Method::REFER || *m == Method::NOTIFY || *m == Method::SUBSCRIBE {
            req.headers
                .push(HeaderName::CONTACT, format!("<{contact}>"));
        }
        if offer {
            req.headers.push(HeaderName::ALLOW, allow);
            if supports_timer {
                req.headers.push(HeaderName::SUPPORTED, "timer");
            }
            if let Some(st) = slot.d.session_timer {
                let se = SessionExpires {
                    delta: st.interval,
                    refresher: Some(if st.we_refresh {
                        Refresher::Uac
                    } else {
                        Refresher::Uas
                    }),
                };
                req.headers
                    .push(HeaderName::SESSION_EXPIRES, se.to_header());
            }
        }
        for (n, v) in &out.headers {
            req.headers.push(n.clone(), v.clone());
        }
        if let Some(b) = &out.body {
            req = req.with_body(&b.content_type, b.bytes.clone());
            if offer {
                slot.local_body = Some(b.clone());
            }
        }
        let key = TransactionKey::for_request(&req).map_err(|_| DialogError::BadVia)?;
        if offer {
            slot.offer_out = Some(key.clone());
        }
        self.clients.insert(
            key.clone(),
            ClientPurpose::InDialog {
                dialog: d,
                out,
                user,
            },
        );
        self.out.push_back(Output::Request {
            key: key.clone(),
            request: req,
            next_hop,
        });
        Ok(key)
    }

    /// Sends the ACK for a 2xx to an INVITE with CSeq `seq` in dialog `d` (§13.2.2.4) and
    /// keeps it for retransmitted 2xx.
    fn send_ack(&mut self, d: DialogId, seq: u32, body: Option<Body>) {
        let via = self.via();
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        let (mut ack, hop) = slot.d.build_request(Method::ACK, seq, via);
        if let Some(b) = body {
            ack = ack.with_body(&b.content_type, b.bytes.clone());
            slot.local_body = Some(b);
        }
        slot.ack = Some((seq, ack.clone(), hop.clone()));
        if let Some(u) = self.uac.get_mut(&slot.d.invite) {
            u.acks
                .insert(slot.d.key.remote_tag.clone(), (ack.clone(), hop.clone()));
        }
        self.out.push_back(Output::Ack {
            request: ack,
            next_hop: hop,
        });
    }

    fn send_reliable(&mut self, now: Instant, id: InviteId, mut resp: Response) {
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.t1x64();
        let Some(u) = self.uas.get_mut(&id) else {
            return;
        };
        let rseq = u.next_rseq;
        u.next_rseq += 1;
        resp.headers.push(HeaderName::REQUIRE, "100rel");
        resp.headers.push(HeaderName::RSEQ, rseq.to_string());
        self.out.push_back(Output::Response {
            key: u.key.clone(),
            response: resp.clone(),
        });
        u.unacked = Some(Reliable {
            response: resp,
            rseq,
            interval: t1,
            give_up,
        });
        self.timers.set(TimerRef::Reliable1xx(id), now + t1);
    }

    /// Sends a 2xx to an INVITE and keeps re-sending it until the ACK (§13.3.1.4).
    fn start_2xx(
        &mut self,
        now: Instant,
        d: DialogId,
        key: TransactionKey,
        resp: Response,
        cseq: u32,
    ) {
        let t1 = self.cfg.timers.t1;
        let give_up = now + self.cfg.timers.t1x64();
        self.out.push_back(Output::Response {
            key: key.clone(),
            response: resp.clone(),
        });
        if let Some(slot) = self.dialogs.get_mut(&d) {
            slot.pending_2xx = Some(Pending2xx {
                key,
                response: resp,
                cseq,
                interval: t1,
                give_up,
            });
            self.timers.set(TimerRef::Retransmit2xx(d), now + t1);
        }
    }

    /// Contact, Allow and Supported for responses and requests that make or refresh dialogs.
    fn add_ua_headers(&self, h: &mut crate::message::Headers) {
        h.push(HeaderName::CONTACT, format!("<{}>", self.cfg.contact));
        h.push(HeaderName::ALLOW, ALLOW);
        let mut sup = Vec::new();
        if self.cfg.rel100 {
            sup.push("100rel");
        }
        if self.cfg.session_expires.is_some() {
            sup.push("timer");
        }
        if !sup.is_empty() {
            h.push(HeaderName::SUPPORTED, sup.join(", "));
        }
    }

    /// RFC 4028 §9 for a request we serve: `Err(min_se)` when its interval is too small (422),
    /// else the Session-Expires of our 2xx (refresher from the request, or chosen), if any.
    /// `initial`: an INVITE outside a dialog, where we may ask for a timer ourselves.
    fn negotiate_uas(&self, req: &Request, initial: bool) -> Result<Option<SessionExpires>, u32> {
        let Some(ours) = self.cfg.session_expires else {
            return Ok(None);
        };
        let supports = headers::has_option(
            &req.headers,
            &[HeaderName::SUPPORTED, HeaderName::REQUIRE],
            "timer",
        );
        match SessionExpires::from_headers(&req.headers) {
            Some(se) if se.delta < self.cfg.min_se => Err(self.cfg.min_se),
            Some(se) => {
                // We may shorten the interval, not below the request's Min-SE.
                let floor = headers::min_se(&req.headers)
                    .unwrap_or(90)
                    .max(self.cfg.min_se);
                let delta = se.delta.min(ours.max(floor));
                let refresher = se.refresher.unwrap_or(if supports {
                    Refresher::Uac
                } else {
                    Refresher::Uas
                });
                Ok(Some(SessionExpires {
                    delta,
                    refresher: Some(refresher),
                }))
            }
            None if initial => Ok(Some(SessionExpires {
                delta: ours,
                refresher: Some(Refresher::Uas),
            })),
            None => Ok(None),
        }
    }

    /// A refresh (re-INVITE or UPDATE) succeeded; `us` is our role in that transaction.
    fn apply_refresh(
        &mut self,
        now: Instant,
        d: DialogId,
        se: Option<SessionExpires>,
        us: Refresher,
    ) {
        let Some(slot) = self.dialogs.get_mut(&d) else {
            return;
        };
        let timer = se.map(|se| SessionTimer {
            interval: se.delta,
            we_refresh: se.refresher.unwrap_or(Refresher::Uac) == us,
        });
        let before = std::mem::replace(&mut slot.d.session_timer, timer);
        self.arm_session(now, d);
        if before.is_none() && timer.is_none() {
            return;
        }
        self.events
            .push_back(DialogEvent::Refreshed { dialog: d, timer });
    }

    /// Arms the refresh deadline (at SE/2) if we refresh, else the expiry deadline (at
    /// SE − min(32, SE/3), RFC 4028 §10). A refresher whose refresh fails sends BYE then.
    fn arm_session(&mut self, now: Instant, d: DialogId) {
        let timer = self.dialogs.get(&d).and_then(|s| s.d.session_timer);
        self.timers.stop(TimerRef::Refresh(d));
        self.timers.stop(TimerRef::Expiry(d));
        let Some(st) = timer else { return };
        let se = Duration::from_secs(u64::from(st.interval));
        if st.we_refresh {
            self.timers.set(TimerRef::Refresh(d), now + se / 2);
        } else {
            let margin = Duration::from_secs(u64::from((st.interval / 3).min(32)));
            self.timers.set(TimerRef::Expiry(d), now + se - margin);
        }
    }

    // ---- internals: dialogs ---------------------------------------------------------------------

    fn ensure_uas_dialog(&mut self, id: InviteId) -> DialogId {
        let u = &self.uas[&id];
        if let Some(d) = u.dialog {
            return d;
        }
        let (req, tag) = (u.request.clone(), u.local_tag.clone());
        let d = self.new_uas_dialog(id, &req, &tag);
        self.uas.get_mut(&id).expect("checked above").dialog = Some(d);
        d
    }

    fn new_uas_dialog(&mut self, id: InviteId, req: &Request, local_tag: &str) -> DialogId {
        let h = &req.headers;
        let mut local_uri = h.to().unwrap_or_else(|_| NameAddr::new(req.uri.clone()));
        local_uri
            .params
            .retain(|p| !p.name.eq_ignore_ascii_case("tag"));
        local_uri.params.push(Param::new("tag", Some(local_tag)));
        let remote_uri = h.from().unwrap_or_else(|_| NameAddr::new(req.uri.clone()));
        let remote_target = match h.contact() {
            Ok(Some(crate::message::Contact::Addrs(c))) if !c.is_empty() => c[0].uri.clone(),
            _ => remote_uri.uri.clone(),
        };
        let dialog = Dialog {
            key: DialogKey {
                call_id: h.call_id().unwrap_or("").to_owned(),
                local_tag: local_tag.to_owned(),
                remote_tag: remote_tag(req),
            },
            state: DialogState::Early,
            role: Role::Uas,
            local_uri,
            remote_uri,
            local_seq: 0,
            remote_seq: h.cseq().ok().map(|c| c.seq),
            route_set: h.record_route().unwrap_or_default(),
            remote_target,
            invite: id,
            session_timer: None,
        };
        let d = self.insert_dialog(dialog, false);
        let slot = self.dialogs.get_mut(&d).expect("just inserted");
        slot.uas_invite = Some(id);
        slot.peer_allows_update = allows_update(h);
        d
    }

    /// The dialog of fork `tag`, created from `resp` if new; `None` if it already ended.
    fn ensure_uac_dialog(&mut self, id: InviteId, resp: &Response, tag: &str) -> Option<DialogId> {
        let u = self.uac.get(&id)?;
        if let Some(d) = u.dialogs.get(tag) {
            return self.dialogs.contains_key(d).then_some(*d);
        }
        let req = &u.request;
        let local_uri = req
            .headers
            .from()
            .unwrap_or_else(|_| NameAddr::new(req.uri.clone()));
        let remote_uri = resp
            .headers
            .to()
            .unwrap_or_else(|_| NameAddr::new(req.uri.clone()));
        let remote_target = match resp.headers.contact() {
            Ok(Some(crate::message::Contact::Addrs(c))) if !c.is_empty() => c[0].uri.clone(),
            _ => req.uri.clone(),
        };
        let dialog = Dialog {
            key: DialogKey {
                call_id: u.call_id.clone(),
                local_tag: u.local_tag.clone(),
                remote_tag: tag.to_owned(),
            },
            state: DialogState::Early,
            role: Role::Uac,
            local_uri,
            remote_uri,
            local_seq: u.cseq,
            remote_seq: None,
            route_set: record_route_reversed(resp),
            remote_target,
            invite: id,
            session_timer: None,
        };
        let d = self.insert_dialog(dialog, true);
        self.uac
            .get_mut(&id)
            .expect("looked up above")
            .dialogs
            .insert(tag.to_owned(), d);
        Some(d)
    }

    fn insert_dialog(&mut self, d: Dialog, call_id_owner: bool) -> DialogId {
        let id = DialogId(self.fresh_id());
        metrics::gauge!("dialplane_sip_dialogs_active").increment(1.0);
        self.by_key.insert(d.key.clone(), id);
        self.dialogs.insert(
            id,
            Slot {
                d,
                call_id_owner,
                uas_invite: None,
                offer_out: None,
                invite_in: None,
                pending_2xx: None,
                ack: None,
                ack_due: None,
                glare: None,
                refer_cseq: None,
                local_body: None,
                peer_allows_update: false,
                peer_rseq: None,
            },
        );
        id
    }

    fn terminate(&mut self, d: DialogId, reason: TerminationReason) {
        let Some(slot) = self.dialogs.remove(&d) else {
            return;
        };
        self.by_key.remove(&slot.d.key);
        self.timers.stop_dialog(d);
        metrics::gauge!("dialplane_sip_dialogs_active").decrement(1.0);
        metrics::counter!("dialplane_sip_dialogs_terminated_total", "reason" => reason.as_str())
            .increment(1);
        self.events.push_back(DialogEvent::Terminated {
            dialog: d,
            invite: slot.d.invite,
            reason,
        });
    }

    fn dialog_of_request(&self, req: &Request) -> Option<DialogId> {
        let key = DialogKey {
            call_id: req.headers.call_id().ok()?.to_owned(),
            local_tag: req.headers.to().ok()?.tag()?.to_owned(),
            remote_tag: remote_tag(req),
        };
        self.by_key.get(&key).copied()
    }

    fn dialog_of_response(&self, resp: &Response) -> Option<DialogId> {
        let key = DialogKey {
            call_id: resp.headers.call_id().ok()?.to_owned(),
            local_tag: resp.headers.from().ok()?.tag()?.to_owned(),
            remote_tag: resp.headers.to().ok()?.tag()?.to_owned(),
        };
        self.by_key.get(&key).copied()
    }

    /// A stateful reply with no extras.
    fn reply(&mut self, key: &TransactionKey, req: &Request, status: StatusCode) {
        self.out.push_back(Output::Response {
            key: key.clone(),
            response: Response::for_request(req, status),
        });
    }

    // ---- internals: ids, randomness, time -------------------------------------------------------

    fn now(&mut self, now: Instant) -> Instant {
        let now = self.last_now.map_or(now, |l| l.max(now));
        self.last_now = Some(now);
        now
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id - 1
    }

    fn random(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn token(&mut self) -> String {
        format!("{:016x}", self.random())
    }

    fn via(&mut self) -> String {
        let r = self.random();
        format!("{};branch={MAGIC_COOKIE}{r:016x}", self.cfg.via)
    }
}

/// Methods we accept in dialogs.
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, PRACK, UPDATE, INFO, REFER, NOTIFY, OPTIONS";

/// The From tag of a request (empty for an RFC 2543 peer without one).
fn remote_tag(req: &Request) -> String {
    req.headers
        .from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default()
}

/// A UAC's route set: the response's Record-Route in reverse (§12.1.2).
fn record_route_reversed(resp: &Response) -> Vec<NameAddr> {
    let mut rr = resp.headers.record_route().unwrap_or_default();
    rr.reverse();
    rr
}

/// Replaces the remote target with the response's Contact, if it has one.
fn update_target(d: &mut Dialog, resp: &Response) {
    if let Ok(Some(crate::message::Contact::Addrs(c))) = resp.headers.contact()
        && let Some(first) = c.into_iter().next()
    {
        d.remote_target = first.uri;
    }
}

/// Session-Expires in a 2xx, with `Require: timer` if the request said it supports timers
/// (RFC 4028 §9).
fn add_session_expires(resp: &mut Response, req: &Request, se: SessionExpires) {
    resp.headers
        .push(HeaderName::SESSION_EXPIRES, se.to_header());
    if headers::has_option(
        &req.headers,
        &[HeaderName::SUPPORTED, HeaderName::REQUIRE],
        "timer",
    ) {
        resp.headers.push(HeaderName::REQUIRE, "timer");
    }
}

fn allows_update(h: &crate::message::Headers) -> bool {
    h.values(&HeaderName::ALLOW)
        .any(|m| m.eq_ignore_ascii_case("UPDATE"))
}
