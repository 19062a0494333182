//! SIP dialogs (RFC 3261 §12–15) with reliable provisionals (RFC 3262), UPDATE (RFC 3311),
//! REFER (RFC 3515) and session timers (RFC 4028), as a sans-IO layer above
//! [`crate::transaction`].
//!
//! Like the transaction layer, nothing here reads a clock, opens a socket or draws randomness:
//! every input carries `now`, Call-IDs, tags, branches and glare delays come from a generator
//! seeded at construction, and the same inputs give the same outputs.
//!
//! ```text
//!   Transactions ──Routed / TxEvent──▶ DialogLayer::handle_routed / handle_tx_event
//!   user ──────────────────────────▶ invite / respond_invite / cancel / request / bye / respond …
//!   clock ─────────────────────────▶ handle_timeout(now)
//!                                     poll_output()  ──▶ Output (requests, ACKs, responses) ──▶ Transactions
//!                                     poll_event()   ──▶ DialogEvent ──▶ user
//!                                     poll_timeout() ──▶ next deadline
//! ```
//!
//! [`DialogLayer::flush_into`] moves the outputs into a
//! [`Transactions`](crate::transaction::Transactions); the glue only resolves next-hop URIs to
//! addresses.
//!
//! What the layer does on its own:
//! - ACK for every 2xx, and the same ACK again for a retransmitted 2xx; only a 2xx carrying an
//!   offer to a request without one waits for the user's ACK with the answer
//!   ([`DialogLayer::ack`]);
//! - 2xx retransmission until the ACK (T1 doubling to T2), BYE at 64·T1 (§13.3.1.4);
//! - PRACK for each in-order reliable provisional; reliable provisional retransmission (T1
//!   doubling), 5xx at 64·T1; a 2xx held back while a provisional with SDP waits (RFC 3262);
//! - 200 to BYE, PRACK, body-less UPDATE and NOTIFY of a REFER subscription; 200 + 487 for
//!   CANCEL; 481 in unknown dialogs; 500 for an out-of-order CSeq;
//! - re-INVITE glare: 491, or 500 + Retry-After; after our 491, the retry at 2.1–4 s (Call-ID
//!   owner) or 0–2 s (§14.1);
//! - 422 with Min-SE, and the retry after a 422; session refresh at SE/2 by UPDATE (re-INVITE
//!   if the peer does not allow UPDATE); BYE at SE − min(32, SE/3) when no refresh came;
//! - digest answers to 401/407 ([`InviteRequest::login`]);
//! - ACK + BYE for a 2xx from a second fork or after our CANCEL.
//!
//! Metrics: `dialplane_sip_dialogs_active` (gauge: early and confirmed dialogs) and
//! `dialplane_sip_dialogs_terminated_total{reason}`.
//!
//! Simplifications, on purpose: one Via ([`DialogConfig::via`]) for every request; a PRACK
//! carrying an offer is answered 200 without a body; reliable provisionals and 2xx are
//! retransmitted on every transport (RFC 3261 and 3262 do not exempt reliable ones); in-dialog
//! requests are not retried on 401/407.
//!
//! ```no_run
//! # use std::net::SocketAddr;
//! # use std::time::Instant;
//! # use dialplane_signaling::dialog::{DialogConfig, DialogEvent, DialogLayer, Reply};
//! # use dialplane_signaling::message::{Message, StatusCode, Uri};
//! # use dialplane_signaling::transaction::{TimerConfig, Transactions};
//! # fn glue_clock() -> Instant { unimplemented!() }
//! # fn recv() -> Option<(SocketAddr, Vec<u8>)> { None }
//! # fn send(_: SocketAddr, _: &[u8]) {}
//! # fn resolve(_: &Uri) -> Option<SocketAddr> { None }
//! let contact = Uri::parse("sip:b2bua@192.0.2.1").unwrap();
//! let mut tx = Transactions::new(TimerConfig::default(), 1);
//! let mut dl = DialogLayer::new(DialogConfig::new("SIP/2.0/UDP 192.0.2.1:5060", contact), 2);
//! loop {
//!     let now = glue_clock();
//!     if let Some((from, bytes)) = recv()
//!         && let Ok(msg) = Message::parse(&bytes)
//!     {
//!         let routed = tx.handle(now, from, msg);
//!         let _other = dl.handle_routed(now, routed); // OPTIONS, REGISTER…: not dialogs
//!     }
//!     tx.handle_timeout(now);
//!     dl.handle_timeout(now);
//!     while let Some(e) = tx.poll_event() {
//!         dl.handle_tx_event(now, e);
//!     }
//!     while let Some(e) = dl.poll_event() {
//!         if let DialogEvent::Invite { invite, .. } = e {
//!             let _ = dl.respond_invite(now, invite, Reply::new(StatusCode::RINGING));
//!         }
//!     }
//!     dl.flush_into(now, &mut tx, resolve);
//!     while let Some(t) = tx.poll_transmit(now) {
//!         send(t.dest, &t.bytes);
//!     }
//!     let _sleep_until = [tx.poll_timeout(), dl.poll_timeout()].into_iter().flatten().min();
//! }
//! ```

mod headers;
mod layer;
mod timers;

use bytes::Bytes;

use crate::message::{HeaderName, Method, NameAddr, Request, Uri};
use crate::transaction::TimerConfig;

pub use headers::Refresher;
pub use layer::{DialogError, DialogEvent, DialogLayer, Output, TerminationReason};

/// A dialog handle, unique within one [`DialogLayer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogId(u64);

/// An INVITE handle (client or server side), unique within one [`DialogLayer`]. A client
/// INVITE may create several dialogs (forking); a server INVITE creates one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InviteId(u64);

/// The RFC 3261 dialog identifier: Call-ID, local tag, remote tag.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DialogKey {
    /// Call-ID.
    pub call_id: String,
    /// Our tag.
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// A dialog's state (a terminated dialog is removed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DialogState {
    /// Created by a provisional response.
    Early,
    /// Created or confirmed by a 2xx.
    Confirmed,
}

/// Which side of the dialog-creating INVITE we were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We sent the INVITE.
    Uac,
    /// We received it.
    Uas,
}

/// A message body with its Content-Type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Body {
    /// Content-Type value.
    pub content_type: String,
    /// The bytes.
    pub bytes: Bytes,
}

impl Body {
    /// A body.
    pub fn new(content_type: impl Into<String>, bytes: impl Into<Bytes>) -> Body {
        Body {
            content_type: content_type.into(),
            bytes: bytes.into(),
        }
    }
}

/// Settings of one dialog layer.
#[derive(Clone, Debug)]
pub struct DialogConfig {
    /// Timer values (T1, T2) for 2xx and reliable provisional retransmission.
    pub timers: TimerConfig,
    /// The Via of our requests without branch, e.g. `SIP/2.0/UDP 192.0.2.1:5060`.
    pub via: String,
    /// Our Contact URI.
    pub contact: Uri,
    /// Session interval we ask for and grant (RFC 4028), `None` for no session timer.
    pub session_expires: Option<u32>,
    /// Smallest session interval we accept (at least 90 s).
    pub min_se: u32,
    /// Whether we use reliable provisionals (RFC 3262).
    pub rel100: bool,
}

impl DialogConfig {
    /// Defaults: RFC timers, session interval 1800 s, Min-SE 90 s, 100rel on.
    pub fn new(via: impl Into<String>, contact: Uri) -> DialogConfig {
        DialogConfig {
            timers: TimerConfig::default(),
            via: via.into(),
            contact,
            session_expires: Some(1800),
            min_se: 90,
            rel100: true,
        }
    }
}

/// Extra header fields for a request or response.
pub type ExtraHeaders = Vec<(HeaderName, String)>;

/// A new INVITE (outside any dialog).
#[derive(Clone, Debug)]
pub struct InviteRequest {
    /// Request-URI.
    pub uri: Uri,
    /// From (a tag is added).
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// A preloaded route set (Route headers), first hop first.
    pub route: Vec<NameAddr>,
    /// Extra header fields.
    pub headers: ExtraHeaders,
    /// The body (normally an SDP offer).
    pub body: Option<Body>,
    /// Credentials for digest challenges (401/407), answered up to twice.
    pub login: Option<Login>,
}

/// A user name and password for digest authentication.
#[derive(Clone, Debug)]
pub struct Login {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl InviteRequest {
    /// An INVITE to `uri` with these From and To, no route, headers or body.
    pub fn new(uri: Uri, from: NameAddr, to: NameAddr) -> InviteRequest {
        InviteRequest {
            uri,
            from,
            to,
            route: Vec::new(),
            headers: Vec::new(),
            body: None,
            login: None,
        }
    }
}

/// A response the user asks for: status, extra headers, body, and for a provisional whether it
/// is sent reliably (RFC 3262; only if the peer supports 100rel).
#[derive(Clone, Debug)]
pub struct Reply {
    /// Status.
    pub status: crate::message::StatusCode,
    /// Send this provisional reliably.
    pub reliable: bool,
    /// Extra header fields.
    pub headers: ExtraHeaders,
    /// Body.
    pub body: Option<Body>,
}

impl Reply {
    /// A reply with no extra headers or body.
    pub fn new(status: crate::message::StatusCode) -> Reply {
        Reply {
            status,
            reliable: false,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Marks a provisional as reliable (builder style).
    pub fn reliable(mut self) -> Reply {
        self.reliable = true;
        self
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: Body) -> Reply {
        self.body = Some(body);
        self
    }
}

/// A request to send inside a dialog.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// Method (not ACK, CANCEL or PRACK: the layer sends those).
    pub method: Method,
    /// Extra header fields.
    pub headers: ExtraHeaders,
    /// Body.
    pub body: Option<Body>,
}

impl Outgoing {
    /// A request with no extra headers or body.
    pub fn new(method: Method) -> Outgoing {
        Outgoing {
            method,
            headers: Vec::new(),
            body: None,
        }
    }

    /// Adds a header (builder style).
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Outgoing {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body (builder style).
    pub fn body(mut self, body: Body) -> Outgoing {
        self.body = Some(body);
        self
    }
}

/// A negotiated session timer (RFC 4028).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimer {
    /// Session interval in seconds.
    pub interval: u32,
    /// Whether we refresh (otherwise the peer does).
    pub we_refresh: bool,
}

/// The state RFC 3261 §12 keeps for a dialog.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub(crate) key: DialogKey,
    pub(crate) state: DialogState,
    pub(crate) role: Role,
    /// From for a UAC, To for a UAS (with our tag).
    pub(crate) local_uri: NameAddr,
    /// To for a UAC, From for a UAS (with their tag).
    pub(crate) remote_uri: NameAddr,
    pub(crate) local_seq: u32,
    pub(crate) remote_seq: Option<u32>,
    pub(crate) route_set: Vec<NameAddr>,
    pub(crate) remote_target: Uri,
    pub(crate) invite: InviteId,
    pub(crate) session_timer: Option<SessionTimer>,
}

impl Dialog {
    /// Call-ID and tags.
    pub fn key(&self) -> &DialogKey {
        &self.key
    }

    /// Early or confirmed.
    pub fn state(&self) -> DialogState {
        self.state
    }

    /// Whether we sent or received the dialog-creating INVITE.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The INVITE that created the dialog.
    pub fn invite(&self) -> InviteId {
        self.invite
    }

    /// Our URI (with tag).
    pub fn local_uri(&self) -> &NameAddr {
        &self.local_uri
    }

    /// The peer's URI (with tag).
    pub fn remote_uri(&self) -> &NameAddr {
        &self.remote_uri
    }

    /// The CSeq number of our last request.
    pub fn local_seq(&self) -> u32 {
        self.local_seq
    }

    /// The CSeq number of the peer's last request, if any.
    pub fn remote_seq(&self) -> Option<u32> {
        self.remote_seq
    }

    /// The route set, in the order of our Route headers.
    pub fn route_set(&self) -> &[NameAddr] {
        &self.route_set
    }

    /// Where requests go (the peer's latest Contact).
    pub fn remote_target(&self) -> &Uri {
        &self.remote_target
    }

    /// The negotiated session timer, if any.
    pub fn session_timer(&self) -> Option<SessionTimer> {
        self.session_timer
    }

    /// Builds a request in this dialog (§12.2.1.1): Request-URI and Route from the remote
    /// target and route set (loose or strict routing), From/To/Call-ID from the dialog, CSeq
    /// `seq`, Via `via` (with its branch). Returns the request and the next hop's URI.
    pub(crate) fn build_request(&self, method: Method, seq: u32, via: String) -> (Request, Uri) {
        let (ruri, routes, next_hop): (Uri, Vec<NameAddr>, Uri) = match self.route_set.first() {
            None => (
                self.remote_target.clone(),
                Vec::new(),
                self.remote_target.clone(),
            ),
            Some(first) if is_loose(&first.uri) => (
                self.remote_target.clone(),
                self.route_set.clone(),
                first.uri.clone(),
            ),
            Some(first) => {
                // Strict router: it becomes the Request-URI, the remote target the last Route.
                let mut ruri = first.uri.clone();
                if let Uri::Sip(u) = &mut ruri {
                    u.headers.clear();
                    u.params.retain(|p| !p.name.eq_ignore_ascii_case("method"));
                }
                let mut routes = self.route_set[1..].to_vec();
                routes.push(NameAddr::new(self.remote_target.clone()));
                (ruri.clone(), routes, ruri)
            }
        };
        let mut req = Request::new(method.clone(), ruri)
            .with_header(HeaderName::VIA, via)
            .with_header(HeaderName::MAX_FORWARDS, 70);
        for r in routes {
            req = req.with_header(HeaderName::ROUTE, r);
        }
        let req = req
            .with_header(HeaderName::FROM, &self.local_uri)
            .with_header(HeaderName::TO, &self.remote_uri)
            .with_header(HeaderName::CALL_ID, &self.key.call_id)
            .with_header(HeaderName::CSEQ, format_args!("{seq} {method}"));
        (req, next_hop)
    }
}

/// Whether a route URI has the `lr` parameter (a loose router, RFC 3261 §16.12).
fn is_loose(uri: &Uri) -> bool {
    uri.as_sip().is_some_and(|u| u.param("lr").is_some())
}

#[cfg(test)]
mod tests {
    /// The dialog layer is sans-IO: its sources never read a clock or sleep (STYLE.md item 6).
    #[test]
    fn never_reads_the_clock() {
        let banned = ["Instant::now", "SystemTime::now", "thread::sleep", "tokio"];
        for (name, src) in [
            ("mod.rs", include_str!("mod.rs")),
            ("layer.rs", include_str!("layer.rs")),
            ("headers.rs", include_str!("headers.rs")),
            ("timers.rs", include_str!("timers.rs")),
        ] {
            // This test's own list of names is the only allowed mention.
            let src = src.split("mod tests").next().unwrap_or(src);
            for b in banned {
                assert!(!src.contains(b), "{name} mentions {b}");
            }
        }
    }
}
