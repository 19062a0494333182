//! A small SIP UAS built from this crate, for end-to-end tests (SIPp, hostile clients)
//!
//! Listens per flags; answers REGISTER with the registrar (digest against `--user`s), OPTIONS
//! with the options module, INVITE with 180 then (after `--answer-delay-ms`) 200 with an SDP
//! answer, CANCEL with 200 and 487 for the INVITE, BYE with 200 (481 for an unknown call); ACKs
//! are counted. Per-call state is a Call-ID set and the pending INVITEs, nothing more: this is not
//! a dialog layer. There is no media behind the SDP (its port is a placeholder).
//!
//! With `--reliable-183`, an INVITE whose Supported or Require lists `100rel` gets a reliable 183
//! with the SDP answer instead of the 180 (RFC 3262 §3, the UAS rules done here by hand because
//! the stack's `Endpoint` does not host the dialog layer): `Require: 100rel`, a random initial
//! RSeq, retransmitted from T1 doubling until the PRACK, 500 to the INVITE when none came within
//! 64·T1. A PRACK whose RAck matches is answered 200 and releases the 200 OK (without a body: the
//! answer was in the 183); any other PRACK gets 481. An INVITE that requires an extension not
//! enabled (100rel without the flag, or any other) gets 420 with Unsupported.
//!
//! Prints `listening <TRANSPORT> <ADDR>` per listener, then `ready`. Reads stdin: `stats` prints
//! the Prometheus text of every metric then `# EOF`; end of input stops the process.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use clap::Parser;
use dialplane_signaling::auth::{Algorithm, Challenge};
use dialplane_signaling::config::{RateLimit, RegistrarConfig, RegistrarUser, SipConfig};
use dialplane_signaling::message::{HeaderName, Headers, Method, Request, Response, StatusCode};
use dialplane_signaling::options;
use dialplane_signaling::registrar::{MemoryStore, Registrar};
use dialplane_signaling::sdp::{
    self, Codec, Direction, LocalMedia, LocalOrigin, SessionDescription,
};
use dialplane_signaling::stack::{Endpoint, Incoming, ServerRequest, StackConfig};
use dialplane_signaling::transaction::TransactionKey;
use dialplane_signaling::transport::{
    Limits, SipListen, Transport, TransportConfig, Transports, load_tls_server,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

#[derive(Parser, Debug)]
#[command(about = "dialplane's test UAS")]
struct Args {
    /// UDP listener (repeatable), e.g. 127.0.0.1:5060 or [::1]:0
    #[arg(long)]
    udp: Vec<SocketAddr>,
    /// TCP listener (repeatable)
    #[arg(long)]
    tcp: Vec<SocketAddr>,
    /// TLS listener (repeatable; needs --cert and --key)
    #[arg(long)]
    tls: Vec<SocketAddr>,
    /// PEM certificate chain for TLS
    #[arg(long)]
    cert: Option<PathBuf>,
    /// PEM private key for TLS
    #[arg(long)]
    key: Option<PathBuf>,
    /// Registrar domain (digest realm)
    #[arg(long, default_value = "127.0.0.1")]
    domain: String,
    /// A user allowed to REGISTER, NAME:PASSWORD (repeatable)
    #[arg(long = "user")]
    users: Vec<String>,
    /// Put the MD5 digest challenge before SHA-256 (for clients that read only the first one,
    /// such as SIPp)
    #[arg(long)]
    md5_first: bool,
    /// Delay between 180 Ringing and 200 OK for an INVITE
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
    /// Answer INVITEs that support 100rel with a reliable 183 carrying the SDP answer, and the
    /// 200 OK only after its PRACK
    #[arg(long)]
    reliable_183: bool,
    /// Requests per second per source (0: unlimited)
    #[arg(long)]
    rate_limit: Option<u32>,
    /// Largest message accepted (bytes)
    #[arg(long)]
    max_message_size: Option<usize>,
    /// Deadline for a started TCP/TLS message (milliseconds)
    #[arg(long)]
    message_timeout_ms: Option<u64>,
    /// Idle TCP/TLS connections are closed after this (seconds)
    #[arg(long)]
    idle_timeout_s: Option<u64>,
    /// Most TCP/TLS connections at once
    #[arg(long)]
    max_connections: Option<usize>,
}

fn random_u64() -> u64 {
    // RandomState is seeded from the OS: enough for a test tool's seed and nonce secret.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

fn limits(args: &Args) -> Limits {
    let sip = SipConfig {
        max_message_size: args
            .max_message_size
            .unwrap_or(SipConfig::default().max_message_size),
        message_timeout_ms: args
            .message_timeout_ms
            .unwrap_or(SipConfig::default().message_timeout_ms),
        idle_timeout_s: args
            .idle_timeout_s
            .unwrap_or(SipConfig::default().idle_timeout_s),
        max_connections: args
            .max_connections
            .unwrap_or(SipConfig::default().max_connections),
        rate_limit: args
            .rate_limit
            .map_or(SipConfig::default().rate_limit, RateLimit::per_second),
        ..SipConfig::default()
    };
    Limits::from_config(&sip)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let args = Args::parse();
    let mut listen = Vec::new();
    for (transport, addrs) in [
        (Transport::Udp, &args.udp),
        (Transport::Tcp, &args.tcp),
        (Transport::Tls, &args.tls),
    ] {
        listen.extend(addrs.iter().map(|&addr| SipListen { transport, addr }));
    }
    let tls_server = match (&args.cert, &args.key) {
        (Some(c), Some(k)) => Some(load_tls_server(c, k)?),
        _ => None,
    };
    let config = TransportConfig {
        listen,
        external_ip: None,
        limits: limits(&args),
        tls_server,
        tls_client: None,
    };
    let (transports, inbound) = Transports::bind(config).await?;
    let (endpoint, mut incoming) = Endpoint::start(
        transports.clone(),
        inbound,
        StackConfig {
            seed: random_u64(),
            ..StackConfig::default()
        },
    );
    let mut out = String::new();
    for (t, a) in transports.local_addrs() {
        out.push_str(&format!("listening {t} {a}\n"));
    }
    out.push_str("ready\n");
    let mut stdout = tokio::io::stdout();
    stdout.write_all(out.as_bytes()).await?;
    stdout.flush().await?;

    tokio::spawn(async move {
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() == "stats" {
                let text = format!("{}# EOF\n", metrics.render());
                let mut stdout = tokio::io::stdout();
                stdout.write_all(text.as_bytes()).await.ok();
                stdout.flush().await.ok();
            }
        }
        std::process::exit(0);
    });

    let users = args
        .users
        .iter()
        .map(|u| {
            let (name, password) = u.split_once(':').ok_or("--user wants NAME:PASSWORD")?;
            Ok(RegistrarUser {
                name: name.into(),
                password: password.into(),
            })
        })
        .collect::<Result<Vec<_>, &str>>()?;
    let registrar = Registrar::new(
        &RegistrarConfig {
            domain: args.domain.clone(),
            users,
            ..RegistrarConfig::default()
        },
        &random_u64().to_le_bytes(),
        MemoryStore::new(),
    );
    let uas = Arc::new(Uas {
        registrar: Mutex::new(registrar),
        calls: Mutex::new(HashSet::new()),
        pending: Mutex::new(HashMap::new()),
        unacked: Mutex::new(HashMap::new()),
        reliable_183: args.reliable_183,
        answer_delay: Duration::from_millis(args.answer_delay_ms),
        md5_first: args.md5_first,
        session_id: random_u64() >> 1,
    });
    while let Some(event) = incoming.recv().await {
        match event {
            Incoming::Request(req) => {
                let uas = uas.clone();
                tokio::spawn(async move { uas.on_request(req).await });
            }
            Incoming::Ack(_) => metrics::counter!("dialplane_uas_acks_total").increment(1),
            _ => {}
        }
    }
    drop(endpoint);
    Ok(())
}

struct Uas {
    registrar: Mutex<Registrar<MemoryStore>>,
    /// Call-IDs answered 200 and not yet ended by BYE.
    calls: Mutex<HashSet<String>>,
    /// INVITEs not answered yet: their To tag and how to cancel them.
    pending: Mutex<HashMap<TransactionKey, (String, oneshot::Sender<()>)>>,
    /// Reliable provisionals waiting for their PRACK, by Call-ID.
    unacked: Mutex<HashMap<String, Unacked>>,
    reliable_183: bool,
    answer_delay: Duration,
    md5_first: bool,
    session_id: u64,
}

/// RFC 3261's T1: the first retransmission interval of a reliable provisional.
const T1: Duration = Duration::from_millis(500);

/// A reliable provisional response not PRACKed yet.
struct Unacked {
    rseq: u32,
    /// The INVITE's CSeq number.
    cseq: u32,
    prack: oneshot::Sender<()>,
}

/// How the wait for a PRACK ended.
enum Reliability {
    Pracked,
    Cancelled,
    TimedOut,
}

/// Whether the request's Supported or Require lists `100rel`.
fn supports_100rel(h: &Headers) -> bool {
    [HeaderName::SUPPORTED, HeaderName::REQUIRE]
        .iter()
        .any(|n| h.values(n).any(|v| v.eq_ignore_ascii_case("100rel")))
}

/// RAck (RFC 3262 §7.2): response-num, CSeq-num, method.
fn rack(h: &Headers) -> Option<(u32, u32, Method)> {
    let mut it = h.get(&HeaderName::RACK)?.split_ascii_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method = Method::new(it.next()?)?;
    it.next().is_none().then_some((rseq, cseq, method))
}

/// Moves MD5 challenges ahead of the others (a stable sort keeps the rest in order).
fn md5_challenge_first(r: &mut Response) {
    let mut challenges: Vec<String> = r
        .headers
        .get_all(&HeaderName::WWW_AUTHENTICATE)
        .map(str::to_owned)
        .collect();
    challenges.sort_by_key(|c| Challenge::parse(c).map(|c| c.algorithm()) != Ok(Algorithm::MD5));
    r.headers.remove(&HeaderName::WWW_AUTHENTICATE);
    for c in challenges {
        r.headers.push(HeaderName::WWW_AUTHENTICATE, c);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Uas {
    async fn on_request(&self, sr: ServerRequest) {
        let req = &sr.request;
        let response = match req.method.as_str() {
            "REGISTER" => {
                let mut r =
                    lock(&self.registrar).handle(SystemTime::now(), req, sr.source, sr.transport);
                if self.md5_first {
                    md5_challenge_first(&mut r);
                }
                r
            }
            "OPTIONS" => options::respond(req, options::DEFAULT_ALLOW, options::DEFAULT_SUPPORTED),
            "INVITE" => return self.on_invite(&sr).await,
            "PRACK" => return self.on_prack(&sr).await,
            "CANCEL" => {
                let pending = sr
                    .cancel_target
                    .as_ref()
                    .and_then(|k| lock(&self.pending).remove(k));
                let tag = match pending {
                    Some((tag, cancel)) => {
                        cancel.send(()).ok();
                        tag
                    }
                    None => options::stable_tag(req),
                };
                Response::for_request(req, StatusCode::OK).with_to_tag(&tag)
            }
            "BYE" => {
                let known = req
                    .headers
                    .call_id()
                    .is_ok_and(|id| lock(&self.calls).remove(id));
                let status = if known {
                    StatusCode::OK
                } else {
                    StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST
                };
                Response::for_request(req, status)
            }
            _ => Response::for_request(req, StatusCode::NOT_IMPLEMENTED)
                .with_to_tag(&options::stable_tag(req)),
        };
        self.send(&sr, response).await;
    }

    async fn send(&self, sr: &ServerRequest, response: Response) {
        metrics::counter!("dialplane_uas_responses_total", "method" => sr.request.method.to_string(), "status" => response.status.to_string()).increment(1);
        if let Err(e) = sr.respond(response).await {
            tracing::debug!(error = %e, "response refused");
        }
    }

    async fn on_invite(&self, sr: &ServerRequest) {
        let req = &sr.request;
        let tag = options::stable_tag(req);
        let Ok(local) = sr.endpoint().sent_by(sr.transport, sr.source) else {
            return;
        };
        let contact = format!(
            "<sip:uas@{local};transport={}>",
            sr.transport.as_str().to_ascii_lowercase()
        );
        // Require lists extensions the INVITE cannot do without: 420 unless we have them all.
        let unsupported: Vec<&str> = req
            .headers
            .values(&HeaderName::REQUIRE)
            .filter(|o| !(self.reliable_183 && o.eq_ignore_ascii_case("100rel")))
            .collect();
        if !unsupported.is_empty() {
            let r = Response::for_request(req, StatusCode::BAD_EXTENSION)
                .with_to_tag(&tag)
                .with_header(HeaderName::UNSUPPORTED, unsupported.join(", "));
            return self.send(sr, r).await;
        }
        let (cancel, mut cancelled) = oneshot::channel();
        lock(&self.pending).insert(sr.key.clone(), (tag.clone(), cancel));
        let answer = self.sdp_answer(&req.body, local.ip());
        // The answer goes in the reliable 183 when there is one, so the 200 carries no body.
        let mut early_answer = false;
        match &answer {
            Some(body) if self.reliable_183 && supports_100rel(&req.headers) => {
                let progress = Response::for_request(req, StatusCode::SESSION_PROGRESS)
                    .with_to_tag(&tag)
                    .with_header(HeaderName::CONTACT, &contact)
                    .with_body("application/sdp", body.clone());
                match self.send_reliably(sr, progress, &mut cancelled).await {
                    Reliability::Pracked => early_answer = true,
                    Reliability::Cancelled => {}
                    Reliability::TimedOut => {
                        lock(&self.pending).remove(&sr.key);
                        let r = Response::for_request(req, StatusCode::SERVER_INTERNAL_ERROR)
                            .with_to_tag(&tag);
                        return self.send(sr, r).await;
                    }
                }
            }
            _ => {
                let ringing = Response::for_request(req, StatusCode::RINGING)
                    .with_to_tag(&tag)
                    .with_header(HeaderName::CONTACT, &contact);
                self.send(sr, ringing).await;
            }
        }
        // A CANCEL that came already removed the entry (and completed `cancelled`).
        if lock(&self.pending).contains_key(&sr.key) {
            tokio::select! {
                _ = tokio::time::sleep(self.answer_delay) => {}
                _ = &mut cancelled => {}
            }
        }
        if lock(&self.pending).remove(&sr.key).is_none() {
            // A CANCEL took it: the INVITE ends with 487.
            let r = Response::for_request(req, StatusCode::REQUEST_TERMINATED).with_to_tag(&tag);
            return self.send(sr, r).await;
        }
        let response = match answer {
            Some(body) => {
                if let Ok(id) = req.headers.call_id() {
                    lock(&self.calls).insert(id.to_owned());
                }
                let ok = Response::for_request(req, StatusCode::OK)
                    .with_to_tag(&tag)
                    .with_header(HeaderName::CONTACT, &contact);
                if early_answer {
                    ok
                } else {
                    ok.with_body("application/sdp", body)
                }
            }
            None => Response::for_request(req, StatusCode::NOT_ACCEPTABLE_HERE).with_to_tag(&tag),
        };
        self.send(sr, response).await;
    }

    /// Sends `response` as a reliable provisional (RFC 3262 §3) and retransmits it, from T1
    /// doubling, until its PRACK, a CANCEL, or 64·T1.
    async fn send_reliably(
        &self,
        sr: &ServerRequest,
        response: Response,
        cancelled: &mut oneshot::Receiver<()>,
    ) -> Reliability {
        let req = &sr.request;
        let (Ok(call_id), Ok(cseq)) = (req.headers.call_id(), req.headers.cseq()) else {
            return Reliability::TimedOut;
        };
        let call_id = call_id.to_owned();
        // The initial RSeq is random in 1..2³¹ (§3); one reliable provisional per INVITE here.
        let rseq = (random_u64() % ((1 << 31) - 1)) as u32 + 1;
        let (prack, mut pracked) = oneshot::channel();
        lock(&self.unacked).insert(
            call_id.clone(),
            Unacked {
                rseq,
                cseq: cseq.seq,
                prack,
            },
        );
        let response = response
            .with_header(HeaderName::REQUIRE, "100rel")
            .with_header(HeaderName::RSEQ, rseq);
        let give_up = Instant::now() + 64 * T1;
        let mut interval = T1;
        let outcome = loop {
            self.send(sr, response.clone()).await;
            tokio::select! {
                _ = &mut pracked => break Reliability::Pracked,
                _ = &mut *cancelled => break Reliability::Cancelled,
                _ = tokio::time::sleep(interval) => {}
            }
            if Instant::now() >= give_up {
                break Reliability::TimedOut;
            }
            interval *= 2;
            metrics::counter!("dialplane_uas_reliable_retransmits_total").increment(1);
        };
        lock(&self.unacked).remove(&call_id);
        outcome
    }

    /// 200 for the PRACK of a waiting reliable provisional (then the INVITE goes on), 481 for
    /// any other (RFC 3262 §3).
    async fn on_prack(&self, sr: &ServerRequest) {
        let req: &Request = &sr.request;
        let matched = req.headers.call_id().ok().and_then(|id| {
            let mut unacked = lock(&self.unacked);
            let u = unacked.get(id)?;
            (rack(&req.headers) == Some((u.rseq, u.cseq, Method::INVITE)))
                .then(|| unacked.remove(id))
                .flatten()
        });
        let result = if matched.is_some() { "ok" } else { "unknown" };
        metrics::counter!("dialplane_uas_pracks_total", "result" => result).increment(1);
        match matched {
            Some(u) => {
                // The 200 to the PRACK goes first, so that it precedes the INVITE's 200.
                self.send(sr, Response::for_request(req, StatusCode::OK))
                    .await;
                u.prack.send(()).ok();
            }
            None => {
                let r = Response::for_request(req, StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST);
                self.send(sr, r).await;
            }
        }
    }

    /// The answer to the offer in `body`, or an offer when there is none; `None` when nothing
    /// in the offer is acceptable.
    fn sdp_answer(&self, body: &[u8], address: IpAddr) -> Option<String> {
        let local = LocalMedia {
            origin: LocalOrigin {
                username: "dialplane".into(),
                session_id: self.session_id,
                session_version: 1,
            },
            codecs: Codec::defaults(),
            address,
            port: 40_000,
            direction: Direction::SendRecv,
            ptime: None,
            rtcp_mux: false,
            srtp: Vec::new(),
        };
        if body.is_empty() {
            return Some(sdp::offer(&local).serialize());
        }
        let offer = SessionDescription::parse_bytes(body).ok()?;
        let answer = sdp::answer(&offer, &local);
        answer.negotiated.map(|_| answer.sdp.serialize())
    }
}
