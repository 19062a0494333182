//! SIP transports on tokio: UDP, TCP and TLS listeners (IPv4 and IPv6), outbound connections,
//! and the limits that keep hostile traffic from hurting anyone else (RFC 3261 §18, RFC 3581)
//!
//! [`Transports::bind`] opens the configured listeners and returns a bounded channel of
//! [`Inbound`] messages, already parsed, with `received`/`rport` set on requests (§18.2.1,
//! RFC 3581). [`Transports::send`] routes one serialized message: UDP from the listener socket of
//! the destination's family; TCP/TLS over the open connection to the destination (keyed by
//! transport and remote address) or a new one. A response over TCP/TLS whose connection has
//! closed goes to the top Via's `received` (or host) and sent-by port (§18.2.2).
//!
//! Nothing here waits on a peer from a shared path: every TCP/TLS connection is one task with a
//! bounded outbound queue (full → drop), the UDP loop and the connection tasks hand messages to
//! the stack with `try_send` (full → 503 or drop), and UDP sends never wait.
//!
//! Bad input: unparsable bytes are answered statelessly when [`crate::message::ParseError`]
//! says so and a Via can be read from them (400, 413, 416, 505…), else dropped; a started
//! TCP/TLS message (or TLS handshake) must finish within `message_timeout`; silent connections
//! close after `idle_timeout`; connections beyond `max_connections` are refused.
//!
//! Rate limit (`[sip] rate_limit`, a token bucket per source IP address, [`limit`]): it counts
//! only new requests, those outside any dialog (no To tag: INVITE, REGISTER, OPTIONS…) except
//! CANCEL; in-dialog requests (BYE, re-INVITE, ACK…), CANCELs and all responses are never
//! limited, so calls in progress are untouched by a flood from their peer. Beyond the rate the
//! excess gets 503 with `Retry-After: 1`; beyond twice the rate it is dropped without a reply.
//! A retransmission of a new request counts again (the transport keeps no transaction state).
//!
//! Metrics: `dialplane_sip_received_total{transport}`, `dialplane_sip_sent_total{transport}`,
//! `dialplane_sip_rate_limited_total{action}` (`503`, `drop`),
//! `dialplane_sip_dropped_total{reason}` (`malformed`, `too_large`, `rate_limited`, `overload`,
//! `max_connections`, `queue_full`, `send_failed`, `no_route`, `connect_failed`, `unreachable_unread`),
//! `dialplane_sip_stateless_replies_total{status}`, the gauge `dialplane_sip_connections` and
//! `dialplane_sip_connections_closed_total{reason}` (`eof`, `error`, `idle`, `message_timeout`,
//! `framing`, `handshake`).

mod icmp;
mod limit;
mod stream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

pub use crate::config::SipListen;
pub use crate::registrar::Transport;

use crate::config::{RateLimit, SipConfig};
use crate::message::{
    HeaderName, Message, Param, ParseError, ParseErrorKind, Request, Response, StatusCode, Via,
};
use limit::{RateLimiter, Verdict};

/// Counter of messages received, label `transport`
pub const RECEIVED_METRIC: &str = "dialplane_sip_received_total";
/// Counter of messages sent, label `transport`
pub const SENT_METRIC: &str = "dialplane_sip_sent_total";
/// Counter of messages dropped, label `reason`
pub const DROPPED_METRIC: &str = "dialplane_sip_dropped_total";
/// Counter of new requests over the rate limit, label `action` = `503` or `drop`
pub const RATE_LIMITED_METRIC: &str = "dialplane_sip_rate_limited_total";
/// Counter of replies the transport sent by itself (parse errors, rate limit), label `status`
pub const STATELESS_REPLIES_METRIC: &str = "dialplane_sip_stateless_replies_total";
/// Gauge of open TCP/TLS connections
pub const CONNECTIONS_METRIC: &str = "dialplane_sip_connections";
/// Counter of closed TCP/TLS connections, label `reason`
pub const CLOSED_METRIC: &str = "dialplane_sip_connections_closed_total";

/// Why the transports could not start, or could not send
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// A listener could not be bound.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// The transport.
        transport: Transport,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A TLS listener without a server configuration, or a WS/WSS listener.
    #[error("{0} listener not supported with this configuration")]
    Unsupported(Transport),
    /// The certificate or key file could not be loaded.
    #[error("TLS {path}: {message}")]
    Tls {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// No socket or connection can reach this destination (no listener of its family, or the
    /// connection limit is reached).
    #[error("no route to {0}")]
    NoRoute(SocketAddr),
    /// The message to send is not a SIP message with a Via naming a known transport.
    #[error("unroutable message: {0}")]
    Unroutable(&'static str),
}

/// Limits that protect the transports (see the module docs)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message, head and body (bytes).
    pub max_message_size: usize,
    /// A started TCP/TLS message, a TLS handshake, an outbound connect or a write must finish
    /// within this.
    pub message_timeout: Duration,
    /// TCP/TLS connections without traffic for this long are closed.
    pub idle_timeout: Duration,
    /// Open TCP/TLS connections, inbound and outbound.
    pub max_connections: usize,
    /// New requests per source IP address (see the module docs).
    pub rate_limit: RateLimit,
    /// Source addresses whose buckets are tracked at once.
    pub rate_sources: usize,
    /// Messages queued towards the stack.
    pub inbound_queue: usize,
    /// Messages queued towards one TCP/TLS connection.
    pub connection_queue: usize,
}

impl Limits {
    /// The limits `[sip]` configures; queues of 4096 messages towards the stack and 256 per
    /// connection.
    pub fn from_config(c: &SipConfig) -> Limits {
        Limits {
            max_message_size: c.max_message_size,
            message_timeout: Duration::from_millis(c.message_timeout_ms),
            idle_timeout: Duration::from_secs(c.idle_timeout_s),
            max_connections: c.max_connections,
            rate_limit: c.rate_limit,
            rate_sources: 100_000,
            inbound_queue: 4_096,
            connection_queue: 256,
        }
    }
}

impl Default for Limits {
    /// `[sip]`'s defaults.
    fn default() -> Limits {
        Limits::from_config(&SipConfig::default())
    }
}

/// What [`Transports::bind`] needs
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Listeners (UDP, TCP, TLS); port 0 picks a free port ([`Transports::local_addrs`]).
    pub listen: Vec<SipListen>,
    /// Address advertised in Via instead of the listener's.
    pub external_ip: Option<IpAddr>,
    /// Limits.
    pub limits: Limits,
    /// Server side of TLS (needed for TLS listeners).
    pub tls_server: Option<Arc<rustls::ServerConfig>>,
    /// Client side of TLS (needed to open TLS connections).
    pub tls_client: Option<Arc<rustls::ClientConfig>>,
}

impl TransportConfig {
    /// The listeners and limits of `[sip]`; the TLS listener, if any, needs `tls_server`
    /// ([`load_tls_server`]).
    pub fn from_config(c: &SipConfig) -> TransportConfig {
        let mut listen = c.listeners();
        if let Some(t) = &c.tls {
            listen.push(SipListen {
                transport: Transport::Tls,
                addr: t.listen,
            });
        }
        TransportConfig {
            listen,
            external_ip: c.external_ip,
            limits: Limits::from_config(c),
            tls_server: None,
            tls_client: None,
        }
    }
}

/// Loads a PEM certificate chain and private key into a TLS server configuration
pub fn load_tls_server(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let tls_err = |path: &Path, message: String| TransportError::Tls {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(tls_err(cert, "no certificate".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err(key, e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(cert, e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(chain, key_der)
    .map_err(|e| tls_err(key, e.to_string()))?;
    Ok(Arc::new(config))
}

/// A TLS client configuration trusting `roots` (PEM certificates)
pub fn tls_client_with_roots(
    roots_pem: &Path,
) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let tls_err = |message: String| TransportError::Tls {
        path: roots_pem.display().to_string(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(roots_pem).map_err(|e| tls_err(e.to_string()))? {
        roots
            .add(cert.map_err(|e| tls_err(e.to_string()))?)
            .map_err(|e| tls_err(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One message from the network, parsed
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The transport it came over.
    pub transport: Transport,
    /// The remote address (of the datagram or the connection).
    pub source: SocketAddr,
    /// The local address it arrived on.
    pub local: SocketAddr,
    /// The message; requests carry `received`/`rport` in their top Via.
    pub message: Message,
}

/// The running transports: a cheap handle, clone it freely
#[derive(Clone)]
pub struct Transports {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("local", &self.inner.local)
            .finish_non_exhaustive()
    }
}

struct Inner {
    udp: Vec<(SocketAddr, Arc<UdpSocket>)>,
    local: Vec<(Transport, SocketAddr)>,
    external_ip: Option<IpAddr>,
    limits: Limits,
    tls_server: Option<tokio_rustls::TlsAcceptor>,
    tls_client: Option<tokio_rustls::TlsConnector>,
    conns: Mutex<HashMap<(Transport, SocketAddr), ConnHandle>>,
    conn_count: AtomicUsize,
    next_conn_id: AtomicU64,
    rate: Mutex<RateLimiter>,
    inbound: mpsc::Sender<Inbound>,
    /// Destinations found unreachable (ICMP, refused connections), for whoever takes them.
    unreachable: mpsc::Sender<SocketAddr>,
    unreachable_rx: Mutex<Option<mpsc::Receiver<SocketAddr>>>,
    /// `dialplane_sip_received_total` and `dialplane_sip_sent_total` of UDP, looked up once:
    /// a lookup per datagram hashes the name and labels each time.
    received_udp: metrics::Counter,
    sent_udp: metrics::Counter,
}

#[derive(Debug, Clone)]
struct ConnHandle {
    id: u64,
    tx: mpsc::Sender<Bytes>,
}

impl Transports {
    /// Replaces the per-source request rate (a configuration reload); buckets start full again
    pub fn set_rate_limit(&self, rate: RateLimit) {
        let mut limiter = self.inner.rate.lock().unwrap_or_else(|e| e.into_inner());
        *limiter = RateLimiter::new(rate, self.inner.limits.rate_sources);
    }

    /// Binds every listener and starts their tasks (needs a tokio runtime); returns the handle
    /// and the channel of inbound messages for the stack.
    pub async fn bind(
        config: TransportConfig,
    ) -> Result<(Transports, mpsc::Receiver<Inbound>), TransportError> {
        let (inbound, rx) = mpsc::channel(config.limits.inbound_queue.max(1));
        let mut udp = Vec::new();
        let mut tcp = Vec::new();
        let mut local = Vec::new();
        for l in &config.listen {
            let bind_err = |source| TransportError::Bind {
                transport: l.transport,
                addr: l.addr,
                source,
            };
            match l.transport {
                Transport::Udp => {
                    let s = UdpSocket::bind(l.addr).await.map_err(bind_err)?;
                    let a = s.local_addr().map_err(bind_err)?;
                    if let Err(e) = icmp::enable(&s, a) {
                        tracing::warn!(%a, error = %e, "ICMP errors will not be seen on this socket");
                    }
                    local.push((Transport::Udp, a));
                    udp.push((a, Arc::new(s)));
                }
                Transport::Tcp | Transport::Tls => {
                    if l.transport == Transport::Tls && config.tls_server.is_none() {
                        return Err(TransportError::Unsupported(Transport::Tls));
                    }
                    let s = TcpListener::bind(l.addr).await.map_err(bind_err)?;
                    let a = s.local_addr().map_err(bind_err)?;
                    local.push((l.transport, a));
                    tcp.push((l.transport, s));
                }
                other => return Err(TransportError::Unsupported(other)),
            }
        }
        let (unreachable, unreachable_rx) = mpsc::channel(config.limits.inbound_queue.max(1));
        let inner = Arc::new(Inner {
            received_udp: metrics::counter!(RECEIVED_METRIC, "transport" => Transport::Udp.as_str()),
            sent_udp: metrics::counter!(SENT_METRIC, "transport" => Transport::Udp.as_str()),
            unreachable,
            unreachable_rx: Mutex::new(Some(unreachable_rx)),
            udp,
            local,
            external_ip: config.external_ip,
            limits: config.limits,
            tls_server: config.tls_server.map(tokio_rustls::TlsAcceptor::from),
            tls_client: config.tls_client.map(tokio_rustls::TlsConnector::from),
            conns: Mutex::new(HashMap::new()),
            conn_count: AtomicUsize::new(0),
            next_conn_id: AtomicU64::new(1),
            rate: Mutex::new(RateLimiter::new(
                config.limits.rate_limit,
                config.limits.rate_sources,
            )),
            inbound,
        });
        for (addr, sock) in &inner.udp {
            tokio::spawn(udp_loop(inner.clone(), *addr, sock.clone()));
            tokio::spawn(icmp::watch(inner.clone(), sock.clone()));
        }
        for (transport, listener) in tcp {
            tokio::spawn(stream::accept_loop(inner.clone(), transport, listener));
        }
        Ok((Transports { inner }, rx))
    }

    /// The destinations found unreachable from now on: an ICMP port/host unreachable for a
    /// UDP datagram, a refused TCP/TLS connection. The first caller gets the channel; it drops
    /// what its reader leaves behind once full.
    pub fn take_unreachable(&self) -> Option<mpsc::Receiver<SocketAddr>> {
        self.inner
            .unreachable_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The bound listener addresses (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> &[(Transport, SocketAddr)] {
        &self.inner.local
    }

    /// Our Via sent-by for requests over `transport` towards `dest`: the external IP (or the
    /// listener's address) and the listener's port; `None` without a listener of that kind.
    pub fn sent_by(&self, transport: Transport, dest: SocketAddr) -> Option<SocketAddr> {
        let (_, a) = self
            .inner
            .local
            .iter()
            .filter(|(t, _)| *t == transport)
            .find(|(_, a)| a.is_ipv4() == dest.is_ipv4())
            .or_else(|| self.inner.local.iter().find(|(t, _)| *t == transport))?;
        let ip = self
            .inner
            .external_ip
            .unwrap_or_else(|| unspecified_to_loopback(a.ip()));
        Some(SocketAddr::new(ip, a.port()))
    }

    /// Sends one serialized message to `dest` over `transport` without waiting (see the module
    /// docs for the routing). For a response over TCP/TLS without an open connection to `dest`,
    /// `fallback` (the Via sent-by, §18.2.2) is connected instead.
    pub fn send(
        &self,
        transport: Transport,
        dest: SocketAddr,
        fallback: Option<SocketAddr>,
        bytes: Bytes,
    ) -> Result<(), TransportError> {
        match transport {
            Transport::Udp => self.inner.send_udp(dest, &bytes),
            Transport::Tcp | Transport::Tls => {
                if self.inner.send_on_connection(transport, dest, &bytes) {
                    return Ok(());
                }
                match fallback {
                    Some(fb) if self.inner.send_on_connection(transport, fb, &bytes) => Ok(()),
                    fb => stream::connect(&self.inner, transport, fb.unwrap_or(dest), bytes),
                }
            }
            other => Err(TransportError::Unsupported(other)),
        }
    }

    /// Sends a serialized message to `dest`, over the transport its top Via names (for a
    /// response, the transport the request came over; for a request, ours) — what the
    /// transaction layer's `Transmit`s need.
    pub fn send_routed(&self, dest: SocketAddr, bytes: Vec<u8>) -> Result<(), TransportError> {
        let (response, via) = top_via(&bytes).ok_or(TransportError::Unroutable("no top Via"))?;
        let transport = transport_of(&via).ok_or(TransportError::Unroutable("Via transport"))?;
        let fallback = if response {
            response_fallback(&via, transport)
        } else {
            None
        };
        self.send(transport, dest, fallback, Bytes::from(bytes))
    }
}

/// Whether `bytes` (a message as our serializer writes it: no folding) is a response, and its
/// top Via, read from the head alone: every transmit passes here, a full parse would cost more
/// than the rest of the routing.
fn top_via(bytes: &[u8]) -> Option<(bool, Via)> {
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = std::str::from_utf8(&bytes[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let response = lines.next()?.starts_with("SIP/2.0 ");
    let value = lines.find_map(|line| {
        let (name, value) = line.split_once(':')?;
        let name = name.trim_end();
        (name.eq_ignore_ascii_case("via") || name.eq_ignore_ascii_case("v")).then_some(value)
    })?;
    let first = crate::message::split_list(value.trim()).next()?;
    Some((response, Via::parse(first).ok()?))
}

/// The Via transport token as a [`Transport`] (UDP, TCP, TLS).
pub fn transport_of(via: &Via) -> Option<Transport> {
    [Transport::Udp, Transport::Tcp, Transport::Tls]
        .into_iter()
        .find(|t| via.transport.eq_ignore_ascii_case(t.as_str()))
}

/// Where a response goes when the request's connection is gone: `received` (or the sent-by
/// host when it is an IP) and the sent-by port (default 5060, 5061 for TLS).
fn response_fallback(via: &Via, transport: Transport) -> Option<SocketAddr> {
    let host = via.received().unwrap_or(&via.host);
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    let port = via.port.unwrap_or(if transport == Transport::Tls {
        5061
    } else {
        5060
    });
    Some(SocketAddr::new(ip, port))
}

fn unspecified_to_loopback(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn drop_counted(reason: &'static str) {
    metrics::counter!(DROPPED_METRIC, "reason" => reason).increment(1);
}

impl Inner {
    fn report_unreachable(&self, dest: SocketAddr) {
        if self.unreachable.try_send(dest).is_err() {
            drop_counted("unreachable_unread");
        }
    }

    fn send_udp(&self, dest: SocketAddr, bytes: &[u8]) -> Result<(), TransportError> {
        let Some((_, sock)) = self.udp.iter().find(|(a, _)| a.is_ipv4() == dest.is_ipv4()) else {
            drop_counted("no_route");
            return Err(TransportError::NoRoute(dest));
        };
        // Never waits: a full socket buffer drops the datagram, as the network would. A
        // refusal meant for an earlier datagram (ICMP) is not this one's: sent again.
        let sent = match sock.try_send_to(bytes, dest) {
            Err(e) if icmp::pending_icmp(&e) => sock.try_send_to(bytes, dest),
            r => r,
        };
        match sent {
            Ok(_) => {
                self.sent_udp.increment(1);
                Ok(())
            }
            Err(e) => {
                tracing::debug!(%dest, error = %e, "UDP send failed");
                drop_counted("send_failed");
                Ok(())
            }
        }
    }

    /// Queues `bytes` on the open connection to `dest`; `false` when there is none.
    fn send_on_connection(&self, transport: Transport, dest: SocketAddr, bytes: &Bytes) -> bool {
        let handle = {
            let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
            conns.get(&(transport, dest)).cloned()
        };
        let Some(h) = handle else { return false };
        match h.tx.try_send(bytes.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                drop_counted("queue_full");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.remove_conn(transport, dest, h.id);
                false
            }
        }
    }

    fn remove_conn(&self, transport: Transport, peer: SocketAddr, id: u64) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if conns.get(&(transport, peer)).is_some_and(|h| h.id == id) {
            conns.remove(&(transport, peer));
        }
    }

    /// Counts bytes that did not parse (or frame) and builds the reply they get, if any.
    fn reject(
        &self,
        transport: Transport,
        source: SocketAddr,
        bytes: &[u8],
        e: &ParseError,
    ) -> Option<Vec<u8>> {
        let too_large = matches!(e.kind(), ParseErrorKind::TooLarge { .. });
        drop_counted(if too_large { "too_large" } else { "malformed" });
        tracing::debug!(%source, %transport, error = %e, "unparsable message");
        e.reply()
            .and_then(|status| stateless_error_reply(bytes, status, &e.warning()))
    }

    /// Everything received, from any transport: parse, check, hand to the stack. Returns a
    /// reply to send back the way the bytes came (parse errors, rate limit, overload).
    fn on_bytes(
        &self,
        transport: Transport,
        source: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
    ) -> Option<Vec<u8>> {
        if bytes.iter().all(|b| matches!(b, b'\r' | b'\n')) {
            return None; // keepalive (RFC 5626 §3.5.1 CRLF on UDP too)
        }
        let message = match Message::parse_with_limit(bytes, self.limits.max_message_size) {
            Ok(m) => m,
            Err(e) => return self.reject(transport, source, bytes, &e),
        };
        match transport {
            Transport::Udp => self.received_udp.increment(1),
            _ => metrics::counter!(RECEIVED_METRIC, "transport" => transport.as_str()).increment(1),
        }
        let message = match message {
            Message::Request(mut req) => {
                let verdict = if is_new_request(&req) {
                    let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
                    rate.check(source.ip(), Instant::now())
                } else {
                    Verdict::Allow
                };
                if verdict != Verdict::Allow {
                    drop_counted("rate_limited");
                    let refuse = verdict == Verdict::Refuse;
                    let action = if refuse { "503" } else { "drop" };
                    metrics::counter!(RATE_LIMITED_METRIC, "action" => action).increment(1);
                    tracing::debug!(%source, method = %req.method, action, "rate limited");
                    return if refuse { busy_reply(&req) } else { None };
                }
                set_received(&mut req, source);
                Message::Request(req)
            }
            response => response,
        };
        let inbound = Inbound {
            transport,
            source,
            local,
            message,
        };
        match self.inbound.try_send(inbound) {
            Ok(()) => None,
            Err(e) => {
                drop_counted("overload");
                match e.into_inner().message {
                    Message::Request(req) => busy_reply(&req),
                    Message::Response(_) => None,
                }
            }
        }
    }
}

/// A request outside any dialog that is not a CANCEL (what the rate limit counts). An
/// unreadable To counts as new.
fn is_new_request(req: &Request) -> bool {
    use crate::message::Method;
    req.method != Method::CANCEL
        && req.method != Method::ACK
        && req.headers.to().map_or(true, |to| to.tag().is_none())
}

/// 503 with Retry-After for a request we will not process now (never for ACK).
fn busy_reply(req: &Request) -> Option<Vec<u8>> {
    if req.method == crate::message::Method::ACK {
        return None;
    }
    metrics::counter!(STATELESS_REPLIES_METRIC, "status" => "503").increment(1);
    Some(
        Response::for_request(req, StatusCode::SERVICE_UNAVAILABLE)
            .with_header(HeaderName::RETRY_AFTER, 1)
            .to_bytes(),
    )
}

/// RFC 3261 §18.2.1 and RFC 3581: `received` when the sent-by host is not the source address,
/// and `rport` filled in (with `received`) when the client asked for it.
fn set_received(req: &mut Request, source: SocketAddr) {
    let Ok(mut vias) = req.headers.via() else {
        return;
    };
    let Some(top) = vias.first_mut() else { return };
    let src_ip = source.ip().to_string();
    let host = top.host.trim_start_matches('[').trim_end_matches(']');
    let wants_rport = top.rport().is_some();
    let host_matches = host.parse::<IpAddr>().is_ok_and(|ip| ip == source.ip());
    if host_matches && !wants_rport {
        return;
    }
    let replaced = |name: &str| {
        name.eq_ignore_ascii_case("received") || (wants_rport && name.eq_ignore_ascii_case("rport"))
    };
    top.params.retain(|p| !replaced(&p.name));
    top.params.push(Param::new("received", Some(src_ip)));
    if wants_rport {
        top.params
            .push(Param::new("rport", Some(source.port().to_string())));
    }
    set_vias(req, &vias);
}

/// Replaces the request's Via headers by `vias`, as one header at the first Via's place.
pub(crate) fn set_vias(req: &mut Request, vias: &[Via]) {
    let joined = vias
        .iter()
        .map(Via::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    req.headers.set(HeaderName::VIA, joined);
}

/// A reply to bytes that did not parse, built from whatever Via, From, To, Call-ID and CSeq
/// lines can be read; `None` without a Via (nowhere to route it).
fn stateless_error_reply(bytes: &[u8], status: StatusCode, warning: &str) -> Option<Vec<u8>> {
    let head_end = memchr::memmem::find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..head_end]);
    let mut res = Response::new(status);
    let copied = [
        HeaderName::VIA,
        HeaderName::FROM,
        HeaderName::TO,
        HeaderName::CALL_ID,
        HeaderName::CSEQ,
    ];
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let Some(name) = HeaderName::new(name.trim()) else {
            continue;
        };
        let value = value.trim();
        if copied.contains(&name) && !value.is_empty() && !value.contains(['\r', '\n']) {
            res.headers.push(name, value);
        }
    }
    if res.headers.count(&HeaderName::VIA) == 0 {
        return None;
    }
    let warning = warning.replace(['"', '\\', '\r', '\n'], " ");
    res.headers
        .push(HeaderName::WARNING, format!("399 dialplane \"{warning}\""));
    metrics::counter!(STATELESS_REPLIES_METRIC, "status" => status.as_u16().to_string())
        .increment(1);
    Some(res.to_bytes())
}

async fn udp_loop(inner: Arc<Inner>, local: SocketAddr, sock: Arc<UdpSocket>) {
    // One byte more than the limit, so an oversized datagram is seen as such, not cut.
    let mut buf = vec![0u8; inner.limits.max_message_size.saturating_add(1).min(65_536)];
    loop {
        let (n, source) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors and the like: the socket stays usable.
                tracing::debug!(%local, error = %e, "UDP receive error");
                if icmp::pending_icmp(&e) {
                    let _ = icmp::drain(&inner, &sock);
                }
                continue;
            }
        };
        if let Some(reply) = inner.on_bytes(Transport::Udp, source, local, &buf[..n]) {
            inner.send_udp(source, &reply).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(via: &str) -> Request {
        let text = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bK2\r\n\
             From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
        );
        match Message::parse(text.as_bytes()) {
            Ok(Message::Request(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn top_via_from_the_head_alone() {
        let (response, via) = top_via(
            b"SIP/2.0 200 OK\r\nv: SIP/2.0/TCP 10.0.0.1:5070;branch=z9hG4bK1;received=192.0.2.1, \
              SIP/2.0/UDP b\r\nVia: SIP/2.0/UDP c\r\n\r\nv: SIP/2.0/TLS body",
        )
        .unwrap();
        assert!(response);
        assert_eq!(transport_of(&via), Some(Transport::Tcp));
        assert_eq!(
            response_fallback(&via, Transport::Tcp),
            Some("192.0.2.1:5070".parse().unwrap())
        );
        let bytes = Message::Request(request("SIP/2.0/TLS h:5061;branch=z9hG4bKx")).to_bytes();
        let (response, via) = top_via(&bytes).unwrap();
        assert!(!response);
        assert_eq!(transport_of(&via), Some(Transport::Tls));
        assert!(top_via(b"SIP/2.0 200 OK\r\nVia2: x\r\n\r\n").is_none());
    }

    #[test]
    fn received_and_rport_per_rfc3581() {
        let src: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        let mut r = request("SIP/2.0/UDP client.example;branch=z9hG4bK1;rport");
        set_received(&mut r, src);
        let vias = r.headers.via().unwrap();
        assert_eq!(vias.len(), 2);
        assert_eq!(vias[0].received(), Some("192.0.2.9"));
        assert_eq!(vias[0].rport(), Some(Some(40000)));
        assert_eq!(vias[1].host, "proxy");
        let mut r = request("SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1");
        let before = r.clone();
        set_received(&mut r, src);
        assert_eq!(r, before, "sent-by matches the source: untouched");
        let mut r = request("SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK1");
        set_received(&mut r, "[2001:db8::2]:5060".parse().unwrap());
        assert_eq!(r.headers.top_via().unwrap().received(), Some("2001:db8::2"));
        assert_eq!(r.headers.top_via().unwrap().rport(), None);
    }

    #[test]
    fn fallback_for_responses_uses_received_and_sent_by_port() {
        let via =
            Via::parse("SIP/2.0/TCP h.example:5070;branch=z9hG4bK1;received=192.0.2.4").unwrap();
        assert_eq!(
            response_fallback(&via, Transport::Tcp),
            Some("192.0.2.4:5070".parse().unwrap())
        );
        let via = Via::parse("SIP/2.0/TLS [2001:db8::1];branch=z9hG4bK1").unwrap();
        assert_eq!(
            response_fallback(&via, Transport::Tls),
            Some("[2001:db8::1]:5061".parse().unwrap())
        );
        let via = Via::parse("SIP/2.0/TCP name.example;branch=z9hG4bK1").unwrap();
        assert_eq!(response_fallback(&via, Transport::Tcp), None);
    }

    #[test]
    fn stateless_replies_copy_what_they_can() {
        let bad = b"INVITE sip:a@b SIP/7.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                    f: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\ni: c1\r\nCSeq: 1 INVITE\r\n\r\n";
        let e = Message::parse(bad).unwrap_err();
        let status = e.reply().unwrap();
        let out = stateless_error_reply(bad, status, &e.warning()).unwrap();
        let Ok(Message::Response(r)) = Message::parse(&out) else {
            panic!("reply parses")
        };
        assert_eq!(r.status, StatusCode::VERSION_NOT_SUPPORTED);
        assert_eq!(r.headers.call_id(), Ok("c1"));
        assert!(
            r.headers
                .get(&HeaderName::WARNING)
                .unwrap()
                .starts_with("399")
        );
        assert_eq!(
            stateless_error_reply(b"\x00\x01garbage", StatusCode::BAD_REQUEST, "x"),
            None
        );
    }
}
