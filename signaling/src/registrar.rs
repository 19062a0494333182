//! The SIP registrar (RFC 3261 §10, Path from RFC 3327)
//!
//! [`Registrar::handle`] is a function of `(now, REGISTER, source address, transport)` to the
//! final response; the transaction layer calls it and sends what it returns. Bindings live in a
//! [`RegistrationStore`]: a [`MemoryStore`], or `serve`'s [`Store`], whose changes every
//! instance sees with `--redis`.
//! Digest nonces are stateless ([`DigestServer`]), so a retry may land on any instance.
//! No clock, randomness or I/O here: `now` is an argument.
//!
//! Decisions, in the order of RFC 3261 §10.3:
//! - not a REGISTER → 405 with `Allow: REGISTER`;
//! - To, From, Call-ID, CSeq, Contact, Expires or a Contact's `expires`/`q` malformed → 400
//!   with a `Warning` naming the header;
//! - Request-URI or To not in the configured domain (or no domain configured) → **404**: we are
//!   not responsible for that domain and do not proxy REGISTER (§10.3 step 1 and 5);
//! - `Require` with an option tag other than `path` → 420 with `Unsupported`;
//! - the source address or the To user locked out after repeated failed attempts → 403
//!   ([`crate::auth_throttle`]; wrong credentials count, a success resets);
//! - no credentials for our realm → 401 (challenges for SHA-256 and MD5); credentials wrong, for
//!   an unknown user or with a foreign nonce → 401 with a fresh nonce; right but for an expired
//!   nonce → 401 with `stale=true`; an unparsable `Authorization` → 400;
//! - the To user is not the authenticated user → 403;
//! - `Contact: *` without `Expires: 0` (or with other contacts) → 400;
//! - a requested expiry below `min_expires` (and not 0) → 423 with `Min-Expires`; above
//!   `max_expires` → shortened;
//! - a binding with the same Call-ID and a CSeq not lower than the request's → 500 (out of order,
//!   §10.3 step 7); nothing is changed by a refused request;
//! - otherwise 200 listing every current binding with its remaining `expires`, and the Path.
//!
//! Bindings are matched by `+sip.instance` (and `reg-id`) when the contact has one, else by
//! contact URI. The To tag of every response is [`crate::options::stable_tag`].

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use crate::auth::{Algorithm, Authenticated, Credentials, DigestServer, Verdict};
use crate::auth_throttle::AuthThrottle;
use crate::cluster::RegChange;
use crate::config::RegistrarConfig;
use crate::message::{Contact, HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri};
use crate::options::stable_tag;

/// Counter of REGISTER outcomes, label `result` = `ok`, `challenged` or `rejected`
pub const REGISTRATIONS_METRIC: &str = "dialplane_sip_registrations_total";
/// Gauge of the bindings in the store (after the last change this registrar made)
pub const BINDINGS_METRIC: &str = "dialplane_registrar_bindings";

/// The transport a REGISTER arrived on (where requests to the contact must be sent)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
    /// WebSocket.
    Ws,
    /// Secure WebSocket.
    Wss,
}

impl Transport {
    /// The Via spelling: `UDP`, `TCP`, `TLS`, `WS`, `WSS`
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
            Transport::Wss => "WSS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One contact registered for an address of record
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The address of record, `sip:user@domain`.
    pub aor: String,
    /// The contact URI (where to send requests for the AOR).
    pub contact: Uri,
    /// When the binding lapses.
    pub expires_at: SystemTime,
    /// When it was last refreshed (newer is preferred among equal `q`).
    pub updated_at: SystemTime,
    /// Preference in thousandths (`q=0.5` is 500); `None` when the contact gave none.
    pub q: Option<u16>,
    /// Call-ID of the REGISTER that made or refreshed it.
    pub call_id: String,
    /// Its CSeq number.
    pub cseq: u32,
    /// The source address of that REGISTER (behind NAT: where to send requests).
    pub source: SocketAddr,
    /// The transport it arrived on.
    pub transport: Transport,
    /// `Path` values of the REGISTER, in order (RFC 3327): the route towards the contact.
    pub path: Vec<String>,
    /// `+sip.instance` (RFC 5626), as sent (with its quotes and angle brackets).
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
}

impl Binding {
    /// The seconds left at `now`, rounded up; 0 once expired
    pub fn remaining(&self, now: SystemTime) -> u64 {
        self.expires_at
            .duration_since(now)
            .map_or(0, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
    }

    /// Still valid at `now`
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }

    fn q_or_default(&self) -> u16 {
        self.q.unwrap_or(1000)
    }

    /// Whether `other` is the same registration (RFC 5626 instance and reg-id when present,
    /// else the contact URI)
    pub fn same_contact(&self, contact: &Uri, instance: Option<&str>, reg_id: Option<u32>) -> bool {
        match (self.instance.as_deref(), instance) {
            (Some(a), Some(b)) => a == b && self.reg_id == reg_id,
            _ => self.contact == *contact,
        }
    }
}

/// Where bindings are kept
///
/// Synchronous: a store shared by a cluster keeps a local copy to read and passes its changes
/// on ([`Store`]).
pub trait RegistrationStore {
    /// Every binding of `aor` (expired ones too, until [`Self::expire`] drops them).
    fn bindings(&self, aor: &str) -> Vec<Binding>;
    /// Adds a binding, replacing one of the same AOR and contact URI.
    fn upsert(&mut self, binding: Binding);
    /// Removes the binding of `aor` with this contact URI, if any.
    fn remove(&mut self, aor: &str, contact: &Uri);
    /// Removes every binding of `aor`.
    fn remove_all(&mut self, aor: &str);
    /// Drops every binding expired at `now`; returns how many.
    fn expire(&mut self, now: SystemTime) -> usize;
    /// How many bindings are stored (all AORs).
    fn len(&self) -> usize;
    /// No bindings at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A [`RegistrationStore`] in a hash map (one instance)
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    by_aor: HashMap<String, Vec<Binding>>,
}

impl MemoryStore {
    /// An empty store
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

impl RegistrationStore for MemoryStore {
    fn bindings(&self, aor: &str) -> Vec<Binding> {
        self.by_aor.get(aor).cloned().unwrap_or_default()
    }

    fn upsert(&mut self, binding: Binding) {
        let list = self.by_aor.entry(binding.aor.clone()).or_default();
        match list.iter_mut().find(|b| b.contact == binding.contact) {
            Some(old) => *old = binding,
            None => list.push(binding),
        }
    }

    fn remove(&mut self, aor: &str, contact: &Uri) {
        if let Some(list) = self.by_aor.get_mut(aor) {
            list.retain(|b| b.contact != *contact);
            if list.is_empty() {
                self.by_aor.remove(aor);
            }
        }
    }

    fn remove_all(&mut self, aor: &str) {
        self.by_aor.remove(aor);
    }

    fn expire(&mut self, now: SystemTime) -> usize {
        let mut dropped = 0;
        self.by_aor.retain(|_, list| {
            let before = list.len();
            list.retain(|b| b.is_live(now));
            dropped += before - list.len();
            !list.is_empty()
        });
        dropped
    }

    fn len(&self) -> usize {
        self.by_aor.values().map(Vec::len).sum()
    }
}

/// The store `serve` uses: a local [`MemoryStore`] (what lookups read, so they never wait);
/// in a cluster (`--redis`) each change is also passed on, in order, to Redis.
pub struct Store {
    local: MemoryStore,
    /// Where a cluster's changes go (false: the change could not be queued).
    sink: Option<Box<dyn FnMut(RegChange) -> bool + Send>>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("local", &self.local)
            .field("shared", &self.sink.is_some())
            .finish()
    }
}

impl Store {
    /// This process's alone
    pub fn local() -> Store {
        Store {
            local: MemoryStore::new(),
            sink: None,
        }
    }

    /// A store passing its changes to `sink` (false: the change could not be queued)
    pub fn shared(sink: impl FnMut(RegChange) -> bool + Send + 'static) -> Store {
        Store {
            local: MemoryStore::new(),
            sink: Some(Box::new(sink)),
        }
    }

    /// Takes the bindings another instance made for `aor` (all of them: they replace ours)
    pub fn replace(&mut self, aor: &str, bindings: Vec<Binding>) {
        self.local.remove_all(aor);
        for b in bindings {
            self.local.upsert(b);
        }
    }

    /// Passes the change on in a cluster; `change` is built only there.
    fn pass_on(&mut self, change: impl FnOnce(&MemoryStore) -> RegChange) {
        let Some(sink) = &mut self.sink else {
            return;
        };
        if !sink(change(&self.local)) {
            metrics::counter!(crate::cluster::ERRORS_METRIC, "op" => "registration").increment(1);
        }
    }
}

impl RegistrationStore for Store {
    fn bindings(&self, aor: &str) -> Vec<Binding> {
        self.local.bindings(aor)
    }

    fn upsert(&mut self, binding: Binding) {
        if self.sink.is_none() {
            self.local.upsert(binding);
            return;
        }
        self.local.upsert(binding.clone());
        self.pass_on(|local| {
            let key_expires_at = local
                .bindings(&binding.aor)
                .iter()
                .map(|b| b.expires_at)
                .max()
                .unwrap_or(binding.expires_at);
            RegChange::Upsert {
                binding: Box::new(binding),
                key_expires_at,
            }
        });
    }

    fn remove(&mut self, aor: &str, contact: &Uri) {
        self.local.remove(aor, contact);
        self.pass_on(|_| RegChange::Remove {
            aor: aor.to_string(),
            contact: contact.to_string(),
        });
    }

    fn remove_all(&mut self, aor: &str) {
        self.local.remove_all(aor);
        self.pass_on(|_| RegChange::RemoveAll {
            aor: aor.to_string(),
        });
    }

    /// Local only: Redis drops lapsed AORs by their key's expiry, and readers skip lapsed
    /// bindings.
    fn expire(&mut self, now: SystemTime) -> usize {
        self.local.expire(now)
    }

    fn len(&self) -> usize {
        self.local.len()
    }
}

impl Registrar<Store> {
    /// Takes the bindings another instance of the cluster made for `aor`
    pub fn replace(&mut self, aor: &str, bindings: Vec<Binding>) {
        self.store.replace(aor, bindings);
        self.update_gauge();
    }
}

/// The registrar for one domain
pub struct Registrar<S> {
    domain: String,
    passwords: HashMap<String, String>,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    digest: DigestServer,
    store: S,
    /// Failed attempts and lockouts (kept across reloads).
    throttle: AuthThrottle,
}

impl<S> fmt::Debug for Registrar<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registrar")
            .field("domain", &self.domain)
            .field("users", &self.passwords.len())
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

/// One Contact of a REGISTER, checked
struct Wanted {
    contact: Uri,
    expires: u32,
    q: Option<u16>,
    instance: Option<String>,
    reg_id: Option<u32>,
}

enum Outcome {
    Ok,
    Challenged,
    Rejected,
}

fn bad_request(req: &Request, domain: &str, why: &str) -> Response {
    reply(req, StatusCode::BAD_REQUEST).with_header(
        HeaderName::WARNING,
        format!("399 {} \"{}\"", warn_agent(domain), why.replace('"', "'")),
    )
}

fn warn_agent(domain: &str) -> &str {
    if domain.is_empty() {
        "dialplane"
    } else {
        domain
    }
}

fn reply(req: &Request, status: StatusCode) -> Response {
    Response::for_request(req, status).with_to_tag(&stable_tag(req))
}

/// `q` as thousandths: `0`, `1`, `0.5`, `1.000`; `None` if malformed or above 1
fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole = match int {
        "0" => 0,
        "1" => 1000,
        _ => return None,
    };
    let mut f = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        f += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = whole + f;
    (q <= 1000).then_some(q)
}

/// Delta-seconds; values beyond u32 saturate (RFC 3261 §10.2.1.1 lets them mean "long")
fn parse_delta(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.bytes()
            .fold(0u64, |acc, b| {
                (acc * 10 + u64::from(b - b'0')).min(u64::from(u32::MAX))
            })
            .try_into()
            .unwrap_or(u32::MAX),
    )
}

impl<S: RegistrationStore> Registrar<S> {
    /// A registrar for `config.domain` (also the digest realm), with nonces signed by
    /// `nonce_secret` (the binary passes `config.nonce_secret` or a random one)
    pub fn new(config: &RegistrarConfig, nonce_secret: &[u8], store: S) -> Registrar<S> {
        let mut r = Registrar {
            domain: String::new(),
            passwords: HashMap::new(),
            min_expires: 0,
            max_expires: 0,
            default_expires: 0,
            digest: DigestServer::new(String::new(), Vec::new()),
            store,
            throttle: AuthThrottle::new(config.throttle()),
        };
        r.reconfigure(config, nonce_secret);
        r
    }

    /// Takes a new domain, users, expiry bounds and nonce secret (a configuration reload);
    /// the registrations stay. The digest server is rebuilt with its default lifetime.
    pub fn reconfigure(&mut self, config: &RegistrarConfig, nonce_secret: &[u8]) {
        self.domain = config.domain.to_ascii_lowercase();
        self.passwords = config
            .users
            .iter()
            .map(|u| (u.name.clone(), u.password.clone()))
            .collect();
        self.min_expires = config.min_expires;
        self.max_expires = config.max_expires;
        self.default_expires = config.default_expires;
        self.digest = DigestServer::new(config.domain.clone(), nonce_secret.to_vec());
        self.throttle.reconfigure(config.throttle());
    }

    /// Replaces the digest server (e.g. another nonce lifetime); its realm should be the domain
    pub fn with_digest(mut self, digest: DigestServer) -> Registrar<S> {
        self.digest = digest;
        self
    }

    /// The store
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The address of record of `user` in our domain: `sip:user@domain`
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.domain)
    }

    /// The live bindings of `user` at `now`, best first: highest `q` (absent counts as 1.0),
    /// then the most recently refreshed
    pub fn lookup(&self, now: SystemTime, user: &str) -> Vec<Binding> {
        let mut list: Vec<Binding> = self
            .store
            .bindings(&self.aor(user))
            .into_iter()
            .filter(|b| b.is_live(now))
            .collect();
        list.sort_by(|a, b| {
            b.q_or_default()
                .cmp(&a.q_or_default())
                .then(b.updated_at.cmp(&a.updated_at))
        });
        list
    }

    /// Drops expired bindings (call it now and then); returns how many
    pub fn expire(&mut self, now: SystemTime) -> usize {
        let n = self.store.expire(now);
        self.update_gauge();
        n
    }

    fn update_gauge(&self) {
        metrics::gauge!(BINDINGS_METRIC).set(self.store.len() as f64);
    }

    /// Answers a REGISTER that arrived from `source` over `transport` (see the module docs)
    pub fn handle(
        &mut self,
        now: SystemTime,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> Response {
        let (outcome, res) = self.decide(now, req, source, transport);
        let result = match outcome {
            Outcome::Ok => "ok",
            Outcome::Challenged => "challenged",
            Outcome::Rejected => "rejected",
        };
        metrics::counter!(REGISTRATIONS_METRIC, "result" => result).increment(1);
        res
    }

    fn challenge(&self, req: &Request, now: SystemTime, stale: bool) -> Response {
        let mut res = reply(req, StatusCode::UNAUTHORIZED);
        for alg in [Algorithm::SHA_256, Algorithm::MD5] {
            res.headers.push(
                HeaderName::WWW_AUTHENTICATE,
                self.digest.challenge(now, alg, stale).to_string(),
            );
        }
        res
    }

    fn in_domain(&self, uri: &Uri) -> bool {
        !self.domain.is_empty()
            && uri
                .as_sip()
                .is_some_and(|u| u.host.eq_ignore_ascii_case(&self.domain))
    }

    fn decide(
        &mut self,
        now: SystemTime,
        req: &Request,
        source: SocketAddr,
        transport: Transport,
    ) -> (Outcome, Response) {
        use Outcome::{Challenged, Rejected};
        let bad = |why: &str| (Rejected, bad_request(req, &self.domain, why));
        if req.method != Method::REGISTER {
            return (
                Rejected,
                reply(req, StatusCode::METHOD_NOT_ALLOWED)
                    .with_header(HeaderName::ALLOW, "REGISTER"),
            );
        }
        let h = &req.headers;
        let to = match h.to() {
            Ok(to) => to,
            Err(e) => return bad(&e.to_string()),
        };
        if let Err(e) = h.from() {
            return bad(&e.to_string());
        }
        let call_id = match h.call_id() {
            Ok(c) => c.to_owned(),
            Err(e) => return bad(&e.to_string()),
        };
        let cseq = match h.cseq() {
            Ok(c) if c.method == Method::REGISTER => c.seq,
            Ok(_) => return bad("CSeq method is not REGISTER"),
            Err(e) => return bad(&e.to_string()),
        };
        // Step 1 and 5: our domain, an AOR with a user part.
        if !self.in_domain(&req.uri) || !self.in_domain(&to.uri) {
            return (Rejected, reply(req, StatusCode::NOT_FOUND));
        }
        let Some(to_user) = to.uri.as_sip().and_then(|u| u.user_unescaped()) else {
            return (Rejected, reply(req, StatusCode::NOT_FOUND));
        };
        // Step 2: extensions.
        let unsupported: Vec<&str> = h
            .values(&HeaderName::REQUIRE)
            .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("path"))
            .collect();
        if !unsupported.is_empty() {
            let list = unsupported.join(", ");
            return (
                Rejected,
                reply(req, StatusCode::BAD_EXTENSION).with_header(HeaderName::UNSUPPORTED, list),
            );
        }
        // A locked-out guesser learns nothing more, and costs no hashing.
        let user = String::from_utf8_lossy(&to_user);
        if self.throttle.locked(now, source.ip(), Some(&user)) {
            return (Rejected, reply(req, StatusCode::FORBIDDEN));
        }
        // Step 3: authentication; the proof token is needed to change anything.
        let mut creds = None;
        for v in h.get_all(&HeaderName::AUTHORIZATION) {
            match Credentials::parse(v) {
                Ok(c) if c.realm == self.digest.realm() => {
                    creds = Some(c);
                    break;
                }
                Ok(_) => {}
                Err(e) => return bad(&format!("bad Authorization header: {e}")),
            }
        }
        let Some(creds) = creds else {
            return (Challenged, self.challenge(req, now, false));
        };
        if Uri::parse(&creds.uri).ok().as_ref() != Some(&req.uri)
            && creds.uri != req.uri.to_string()
        {
            return bad("Authorization uri differs from the Request-URI");
        }
        let passwords = &self.passwords;
        let who = match self
            .digest
            .verify(&creds, "REGISTER", now, |u| passwords.get(u).cloned())
        {
            Verdict::Ok(who) => {
                self.throttle.succeeded(source.ip(), who.username());
                who
            }
            Verdict::Stale => return (Challenged, self.challenge(req, now, true)),
            Verdict::Malformed(e) => return bad(&format!("bad Authorization header: {e}")),
            Verdict::BadResponse | Verdict::UnknownUser => {
                self.throttle.failed(now, source.ip(), &creds.username);
                return (Rejected, self.challenge(req, now, false));
            }
            _ => return (Rejected, self.challenge(req, now, false)),
        };
        // Step 4: authorization — one may only register one's own AOR.
        if to_user != who.username().as_bytes() {
            return (Rejected, reply(req, StatusCode::FORBIDDEN));
        }
        self.register(now, req, &who, call_id, cseq, source, transport)
    }

    /// Steps 6–8, only after authentication (`_proof`)
    #[allow(clippy::too_many_arguments)]
    fn register(
        &mut self,
        now: SystemTime,
        req: &Request,
        proof: &Authenticated,
        call_id: String,
        cseq: u32,
        source: SocketAddr,
        transport: Transport,
    ) -> (Outcome, Response) {
        use Outcome::{Ok as Done, Rejected};
        let bad = |why: &str| (Rejected, bad_request(req, &self.domain, why));
        let h = &req.headers;
        let aor = self.aor(proof.username());
        let header_expires = match h.expires() {
            Ok(e) => e,
            Err(e) => return bad(&e.to_string()),
        };
        let contact = match h.contact() {
            Ok(c) => c,
            Err(e) => return bad(&e.to_string()),
        };
        let current: Vec<Binding> = self
            .store
            .bindings(&aor)
            .into_iter()
            .filter(|b| b.is_live(now))
            .collect();
        let out_of_order = |b: &Binding| b.call_id == call_id && b.cseq >= cseq;
        match contact {
            None => {}
            Some(Contact::Star) => {
                if header_expires != Some(0) {
                    return bad("Contact: * needs Expires: 0");
                }
                if current.iter().any(out_of_order) {
                    return (Rejected, self.out_of_order(req));
                }
                self.store.remove_all(&aor);
            }
            Some(Contact::Addrs(addrs)) => {
                let mut wanted = Vec::with_capacity(addrs.len());
                for a in &addrs {
                    match self.check_contact(a, header_expires) {
                        Ok(w) => wanted.push(w),
                        Err(why) => return bad(why),
                    }
                }
                if let Some(too_brief) = wanted
                    .iter()
                    .any(|w| w.expires != 0 && w.expires < self.min_expires)
                    .then_some(self.min_expires)
                {
                    return (
                        Rejected,
                        reply(req, StatusCode::INTERVAL_TOO_BRIEF)
                            .with_header(HeaderName::MIN_EXPIRES, too_brief),
                    );
                }
                let matches = |w: &Wanted, b: &Binding| {
                    b.same_contact(&w.contact, w.instance.as_deref(), w.reg_id)
                };
                if wanted
                    .iter()
                    .any(|w| current.iter().any(|b| matches(w, b) && out_of_order(b)))
                {
                    return (Rejected, self.out_of_order(req));
                }
                let path: Vec<String> = h.values(&HeaderName::PATH).map(str::to_owned).collect();
                // Expired leftovers of this AOR go first, so they never shadow a new binding.
                for b in self.store.bindings(&aor) {
                    if !b.is_live(now) {
                        self.store.remove(&aor, &b.contact);
                    }
                }
                for w in wanted {
                    for old in current.iter().filter(|b| matches(&w, b)) {
                        self.store.remove(&aor, &old.contact);
                    }
                    if w.expires == 0 {
                        continue;
                    }
                    let expires = w.expires.min(self.max_expires);
                    self.store.upsert(Binding {
                        aor: aor.clone(),
                        contact: w.contact,
                        // A clock at the end of time must not panic: the binding then lapses.
                        expires_at: now
                            .checked_add(Duration::from_secs(u64::from(expires)))
                            .unwrap_or(now),
                        updated_at: now,
                        q: w.q,
                        call_id: call_id.clone(),
                        cseq,
                        source,
                        transport,
                        path: path.clone(),
                        instance: w.instance,
                        reg_id: w.reg_id,
                    });
                }
            }
        }
        self.update_gauge();
        let mut res = reply(req, StatusCode::OK);
        for b in self.lookup(now, proof.username()) {
            let mut na = NameAddr::new(b.contact.clone());
            na.params.push(crate::message::Param::new(
                "expires",
                Some(b.remaining(now).to_string()),
            ));
            if let Some(q) = b.q {
                let q = format!("{}.{:03}", q / 1000, q % 1000);
                na.params.push(crate::message::Param::new("q", Some(q)));
            }
            if let Some(i) = &b.instance {
                na.params
                    .push(crate::message::Param::new("+sip.instance", Some(i.clone())));
            }
            if let Some(r) = b.reg_id {
                na.params
                    .push(crate::message::Param::new("reg-id", Some(r.to_string())));
            }
            res.headers.push(HeaderName::CONTACT, na.to_string());
        }
        for p in h.values(&HeaderName::PATH) {
            res.headers.push(HeaderName::PATH, p);
        }
        (Done, res)
    }

    fn out_of_order(&self, req: &Request) -> Response {
        let mut res = reply(req, StatusCode::SERVER_INTERNAL_ERROR);
        res.reason = "Out of Order".into();
        res
    }

    fn check_contact(&self, a: &NameAddr, header: Option<u32>) -> Result<Wanted, &'static str> {
        let expires = match a.param("expires") {
            Some(Some(v)) => parse_delta(v).ok_or("bad Contact expires parameter")?,
            Some(None) => return Err("bad Contact expires parameter"),
            None => header.unwrap_or(self.default_expires),
        };
        let q = match a.param("q") {
            Some(Some(v)) => Some(parse_q(v).ok_or("bad Contact q parameter")?),
            Some(None) => return Err("bad Contact q parameter"),
            None => None,
        };
        let instance = match a.param("+sip.instance") {
            Some(Some(v)) => Some(v.to_owned()),
            Some(None) => return Err("bad Contact +sip.instance parameter"),
            None => None,
        };
        let reg_id = match a.param("reg-id") {
            Some(Some(v)) => Some(
                v.parse::<u32>()
                    .map_err(|_| "bad Contact reg-id parameter")?,
            ),
            Some(None) => return Err("bad Contact reg-id parameter"),
            None => None,
        };
        Ok(Wanted {
            contact: a.uri.clone(),
            expires,
            q,
            instance,
            reg_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.05"), Some(50));
        assert_eq!(parse_q("1.1"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("2"), None);
        assert_eq!(parse_q(""), None);
        assert_eq!(parse_q("0.x"), None);
    }

    #[test]
    fn deltas_saturate() {
        assert_eq!(parse_delta("0"), Some(0));
        assert_eq!(parse_delta("3600"), Some(3600));
        assert_eq!(parse_delta("99999999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta("-1"), None);
        assert_eq!(parse_delta(""), None);
    }
}
