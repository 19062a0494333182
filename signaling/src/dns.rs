//! RFC 3263: where a request for a SIP URI goes — NAPTR, then SRV (RFC 2782), then A/AAAA
//!
//! [`plan`] reads what the URI fixes before any lookup (§4.1–4.2): a numeric host needs no DNS;
//! a `transport` parameter skips NAPTR; an explicit port skips NAPTR and SRV (the host's
//! addresses with that port). Otherwise NAPTR records offering a transport we send on
//! (`SIP+D2U`, `SIP+D2T`, `SIPS+D2T`) are taken by order, then preference ([`naptr_choices`]);
//! without any, `_sip._udp`-style SRV names are tried for each transport we send on; without
//! SRV records, the host's own addresses with the transport's default port. SRV targets are
//! taken by priority, and within a priority drawn by weight ([`srv_order`]).
//!
//! The result is every address in that order ([`Destination`]s): the first gets the request,
//! the rest are there for a retry elsewhere (§4.3). [`Resolver::resolve`] runs the queries
//! through hickory-resolver, whose cache keeps each answer for its TTL (a bounded number of
//! them) and a "no such name" for `[dns] negative_ttl_s`. The selection steps are pure
//! functions, tested here on canned records.
//!
//! [`Pins`] holds, per Request-URI, the address its requests went to, for the synchronous
//! next-hop lookup of the transaction layer: a CANCEL or a challenged INVITE's retry must go
//! where the INVITE went.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig,
};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, RecordType};

use crate::config::DnsConfig;
use crate::message::SipUri;
use crate::transport::Transport;

/// Counter of resolutions, label `result` (`ok`, `not_found`, `error`)
pub const LOOKUPS_METRIC: &str = "dialplane_dns_lookups_total";

/// One place a request may go
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    /// The transport the records chose (or the URI, or the default).
    pub transport: Transport,
    /// Where to send.
    pub addr: SocketAddr,
}

/// Why a name gave no destination
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist, or has no usable records.
    #[error("{0}: no such SIP host")]
    NotFound(String),
    /// The lookup failed (timeout, server failure, a malformed name).
    #[error("{host}: DNS lookup failed: {reason}")]
    Failed {
        /// The host looked up.
        host: String,
        /// What went wrong.
        reason: String,
    },
}

impl DnsError {
    /// The status a fork to this host fails with: 604 (Does Not Exist Anywhere) for a name
    /// that does not resolve, 503 when DNS itself failed (it may work later).
    pub fn sip_status(&self) -> u16 {
        match self {
            DnsError::NotFound(_) => 604,
            DnsError::Failed { .. } => 503,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            DnsError::NotFound(_) => "not_found",
            DnsError::Failed { .. } => "error",
        }
    }
}

/// What a URI fixes before any lookup (RFC 3263 §4.1–4.2)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// A numeric host: no DNS at all.
    Numeric(Destination),
    /// A name to look up.
    Lookup {
        /// The host name.
        host: String,
        /// An explicit port: only the host's addresses are looked up.
        port: Option<u16>,
        /// The `transport` parameter, or the one an explicit port implies; `None`: NAPTR
        /// decides.
        transport: Option<Transport>,
        /// `sips:`: TLS only.
        secure: bool,
    },
}

/// The port a transport uses when nothing names one.
fn default_port(t: Transport) -> u16 {
    if matches!(t, Transport::Tls | Transport::Wss) {
        5061
    } else {
        5060
    }
}

/// What `uri` fixes: a numeric host (`localhost` counts as 127.0.0.1) needs no DNS; the
/// transport is the `transport` parameter, else UDP (TLS for `sips:`) when the host is
/// numeric or a port is given (§4.1).
pub fn plan(uri: &SipUri) -> Plan {
    let param =
        uri.param("transport")
            .flatten()
            .and_then(|t| match t.to_ascii_lowercase().as_str() {
                "udp" => Some(Transport::Udp),
                "tcp" if uri.secure => Some(Transport::Tls),
                "tcp" => Some(Transport::Tcp),
                "tls" => Some(Transport::Tls),
                _ => None,
            });
    let fallback = if uri.secure {
        Transport::Tls
    } else {
        Transport::Udp
    };
    let host = uri.host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        Some(IpAddr::from([127, 0, 0, 1]))
    } else {
        host.parse::<IpAddr>().ok()
    };
    if let Some(ip) = ip {
        let transport = param.unwrap_or(fallback);
        let port = uri.port.unwrap_or_else(|| default_port(transport));
        return Plan::Numeric(Destination {
            transport,
            addr: SocketAddr::new(ip, port),
        });
    }
    Plan::Lookup {
        host: host.trim_end_matches('.').to_ascii_lowercase(),
        port: uri.port,
        transport: param.or(uri.port.map(|_| fallback)),
        secure: uri.secure,
    }
}

/// A NAPTR record, as far as SIP reads it
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    /// Lower first.
    pub order: u16,
    /// Lower first among equal orders.
    pub preference: u16,
    /// `s`: the replacement is an SRV name (the only kind SIP uses).
    pub flags: String,
    /// `SIP+D2U`, `SIP+D2T`, `SIPS+D2T`, …
    pub service: String,
    /// The SRV name to look up.
    pub replacement: String,
}

/// The transport a NAPTR service names, if SIP uses it.
fn naptr_transport(service: &str) -> Option<Transport> {
    match service.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

/// The SRV names to try, in order, from a host's NAPTR records: `s`-flag records for a
/// transport in `supported` (TLS only for `secure`), by order then preference.
pub fn naptr_choices(
    records: &[Naptr],
    supported: &[Transport],
    secure: bool,
) -> Vec<(Transport, String)> {
    let mut usable: Vec<(u16, u16, Transport, String)> = records
        .iter()
        .filter(|r| r.flags.eq_ignore_ascii_case("s"))
        .filter_map(|r| {
            let t = naptr_transport(&r.service)?;
            let ok = supported.contains(&t) && (!secure || t == Transport::Tls);
            ok.then(|| (r.order, r.preference, t, r.replacement.clone()))
        })
        .collect();
    // Stable: equal order and preference keep the order the server gave.
    usable.sort_by_key(|&(order, preference, ..)| (order, preference));
    usable
        .into_iter()
        .map(|(_, _, t, name)| (t, name))
        .collect()
}

/// The SRV name for a transport when no NAPTR record names one (§4.1).
pub fn srv_name(host: &str, transport: Transport, secure: bool) -> String {
    let (service, proto) = match (transport, secure) {
        (Transport::Udp, _) => ("_sip", "_udp"),
        (_, true) | (Transport::Tls, _) => ("_sips", "_tcp"),
        _ => ("_sip", "_tcp"),
    };
    format!("{service}.{proto}.{host}")
}

/// An SRV record
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    /// Lower first.
    pub priority: u16,
    /// Share of the picks within a priority.
    pub weight: u16,
    /// The target's port.
    pub port: u16,
    /// The target host (`.`: the service is not offered there).
    pub target: String,
}

/// SRV records in the order to try them (RFC 2782): by priority; within a priority, each next
/// one drawn with a chance proportional to its weight, zero weights first in the running sums
/// so that they are picked only rarely. `draw(n)` returns a number in `0..=n`. A lone `.` target
/// means the service is not offered: nothing.
pub fn srv_order(mut records: Vec<Srv>, mut draw: impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.retain(|r| r.target != "." && !r.target.is_empty());
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<Srv> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = draw(total);
            let mut sum = 0;
            let i = group
                .iter()
                .position(|r| {
                    sum += u32::from(r.weight);
                    sum >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(i));
        }
    }
    out
}

/// The resolver: hickory with its TTL cache, and the transports we send requests on
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    supported: Arc<[Transport]>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("supported", &self.supported)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// A resolver asking `config.nameservers` (the system's when empty) for hosts reached over
    /// `supported` transports (in order of our preference). Needs a tokio runtime to run on.
    pub fn new(config: &DnsConfig, supported: &[Transport]) -> Result<Resolver, DnsError> {
        let failed = |e: NetError| DnsError::Failed {
            host: "resolver".into(),
            reason: e.to_string(),
        };
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.nameservers.is_empty() {
            match TokioResolver::builder(provider.clone()) {
                Ok(b) => b,
                // Calls to IP addresses need no DNS: they still work; names fail their forks.
                Err(e) => {
                    tracing::warn!(error = %e,
                        "no usable /etc/resolv.conf and no [dns] nameservers: SIP hosts that are names will not resolve");
                    TokioResolver::builder_with_config(
                        ResolverConfig::from_name_servers(Vec::new()),
                        provider,
                    )
                }
            }
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|a| {
                    let conn = |mut c: ConnectionConfig| {
                        c.port = a.port();
                        c
                    };
                    NameServerConfig::new(
                        a.ip(),
                        true,
                        vec![conn(ConnectionConfig::udp()), conn(ConnectionConfig::tcp())],
                    )
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let o = builder.options_mut();
        o.cache_size = config.cache_size;
        let negative = Duration::from_secs(config.negative_ttl_s.into());
        o.negative_min_ttl = Some(negative);
        o.negative_max_ttl = Some(negative);
        o.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        Ok(Resolver {
            inner: builder.build().map_err(failed)?,
            supported: supported.into(),
        })
    }

    /// Every destination of a request to `uri`, in the order to try them (never empty on Ok).
    pub async fn resolve(&self, uri: &SipUri) -> Result<Vec<Destination>, DnsError> {
        let result = match plan(uri) {
            Plan::Numeric(d) => Ok(vec![d]),
            Plan::Lookup {
                host,
                port,
                transport,
                secure,
            } => self.lookup(&host, port, transport, secure).await,
        };
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        metrics::counter!(LOOKUPS_METRIC, "result" => label).increment(1);
        result
    }

    async fn lookup(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
        secure: bool,
    ) -> Result<Vec<Destination>, DnsError> {
        let fallback = if secure {
            Transport::Tls
        } else {
            Transport::Udp
        };
        // An explicit port: the host's addresses only (§4.2).
        if let Some(port) = port {
            let t = transport.unwrap_or(fallback);
            return self.addresses(host, t, port).await;
        }
        // `every`: NAPTR (or the URI) named these, so each counts; else they are our guesses
        // and the first transport whose SRV records lead somewhere is the one (§4.1).
        let (srv_names, every): (Vec<(Transport, String)>, bool) = match transport {
            Some(t) => (vec![(t, srv_name(host, t, secure))], true),
            None => {
                let naptr = self.naptr(host).await?;
                let choices = naptr_choices(&naptr, &self.supported, secure);
                if choices.is_empty() {
                    let guesses = self
                        .supported
                        .iter()
                        .filter(|&&t| !secure || t == Transport::Tls)
                        .map(|&t| (t, srv_name(host, t, secure)))
                        .collect();
                    (guesses, false)
                } else {
                    (choices, true)
                }
            }
        };
        let mut out: Vec<Destination> = Vec::new();
        for (t, name) in &srv_names {
            for srv in srv_order(self.srv(name).await?, |n| rand::random_range(0..=n)) {
                // A target that does not resolve is skipped; the others may.
                if let Ok(ds) = self.addresses(&srv.target, *t, srv.port).await {
                    for d in ds {
                        if !out.contains(&d) {
                            out.push(d);
                        }
                    }
                }
            }
            if !every && !out.is_empty() {
                break;
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
        // No SRV records: the host itself, on the transport's default port (§4.2).
        let t = transport
            .or_else(|| srv_names.first().map(|(t, _)| *t))
            .unwrap_or(fallback);
        self.addresses(host, t, default_port(t)).await
    }

    /// A host's NAPTR records; none when it has none. A host that does not exist ends the
    /// resolution: no name below it exists either (RFC 8020).
    async fn naptr(&self, host: &str) -> Result<Vec<Naptr>, DnsError> {
        self.records(host, RecordType::NAPTR, true, |data| match data {
            RData::NAPTR(n) => Some(Naptr {
                order: n.order,
                preference: n.preference,
                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                service: String::from_utf8_lossy(&n.services).into_owned(),
                replacement: bare(&n.replacement.to_ascii()),
            }),
            _ => None,
        })
        .await
    }

    /// An SRV name's records; none when it has none.
    async fn srv(&self, name: &str) -> Result<Vec<Srv>, DnsError> {
        self.records(name, RecordType::SRV, false, |data| match data {
            RData::SRV(s) => Some(Srv {
                priority: s.priority,
                weight: s.weight,
                port: s.port,
                target: bare(&s.target.to_ascii()),
            }),
            _ => None,
        })
        .await
    }

    /// `name`'s records of type `rtype` as `pick` reads them; none when it has none, and
    /// [`DnsError::NotFound`] when `nx_ends` and the name does not exist.
    async fn records<T>(
        &self,
        name: &str,
        rtype: RecordType,
        nx_ends: bool,
        pick: impl Fn(&RData) -> Option<T>,
    ) -> Result<Vec<T>, DnsError> {
        match self.inner.lookup(fqdn(name), rtype).await {
            Ok(l) => Ok(l.answers().iter().filter_map(|r| pick(&r.data)).collect()),
            Err(e) if nx_ends && e.is_nx_domain() => Err(DnsError::NotFound(name.to_string())),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(lookup_failed(name, &e)),
        }
    }

    /// A host's A records (AAAA when it has none), each with `port`.
    async fn addresses(
        &self,
        host: &str,
        transport: Transport,
        port: u16,
    ) -> Result<Vec<Destination>, DnsError> {
        match self.inner.lookup_ip(fqdn(host)).await {
            Ok(ips) => {
                let out: Vec<Destination> = ips
                    .iter()
                    .map(|ip| Destination {
                        transport,
                        addr: SocketAddr::new(ip, port),
                    })
                    .collect();
                if out.is_empty() {
                    Err(DnsError::NotFound(host.to_string()))
                } else {
                    Ok(out)
                }
            }
            Err(e) if e.is_no_records_found() => Err(DnsError::NotFound(host.to_string())),
            Err(e) => Err(lookup_failed(host, &e)),
        }
    }
}

/// A fully qualified name: no search domains are tried.
fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// A name as the selection compares it: lower case, no final dot (`.` stays `.`).
fn bare(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "." {
        n
    } else {
        n.trim_end_matches('.').to_string()
    }
}

fn lookup_failed(host: &str, e: &NetError) -> DnsError {
    DnsError::Failed {
        host: host.to_string(),
        reason: e.to_string(),
    }
}

/// Where requests for each Request-URI went, while a transaction may still send there
///
/// The transaction layer asks for a URI's next hop synchronously (a CANCEL, an INVITE again
/// with credentials); DNS answered earlier, and the same URI must keep going to the same
/// address. Pins are counted: two calls to the same URI at once share the first one's
/// address, and the pin goes when the last of them lets go.
#[derive(Debug, Default)]
pub struct Pins {
    pins: HashMap<String, (SocketAddr, usize)>,
}

impl Pins {
    /// Sends requests for `uri` to `addr` — or to the address it is pinned to already, which
    /// is returned.
    pub fn pin(&mut self, uri: &str, addr: SocketAddr) -> SocketAddr {
        let e = self.pins.entry(uri.to_string()).or_insert((addr, 0));
        e.1 += 1;
        e.0
    }

    /// One user of `uri`'s pin is done.
    pub fn unpin(&mut self, uri: &str) {
        if let Some(e) = self.pins.get_mut(uri) {
            e.1 -= 1;
            if e.1 == 0 {
                self.pins.remove(uri);
            }
        }
    }

    /// Where requests for `uri` go, if it is pinned.
    pub fn get(&self, uri: &str) -> Option<SocketAddr> {
        self.pins.get(uri).map(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Uri;

    fn sip(s: &str) -> SipUri {
        Uri::parse(s).unwrap().as_sip().unwrap().clone()
    }

    fn lookup(host: &str, port: Option<u16>, t: Option<Transport>, secure: bool) -> Plan {
        Plan::Lookup {
            host: host.into(),
            port,
            transport: t,
            secure,
        }
    }

    #[test]
    fn numeric_hosts_explicit_ports_and_transports_short_circuit() {
        let numeric = |s: &str, t, a: &str| {
            assert_eq!(
                plan(&sip(s)),
                Plan::Numeric(Destination {
                    transport: t,
                    addr: a.parse().unwrap()
                }),
                "{s}"
            );
        };
        numeric("sip:a@192.0.2.1", Transport::Udp, "192.0.2.1:5060");
        numeric(
            "sip:a@[2001:db8::1]:5070",
            Transport::Udp,
            "[2001:db8::1]:5070",
        );
        numeric("sips:a@192.0.2.1", Transport::Tls, "192.0.2.1:5061");
        numeric(
            "sip:a@192.0.2.1;transport=tcp",
            Transport::Tcp,
            "192.0.2.1:5060",
        );
        numeric("sip:a@localhost:5080", Transport::Udp, "127.0.0.1:5080");
        // A name: NAPTR decides, unless a port or transport says.
        assert_eq!(
            plan(&sip("sip:a@Example.TEST.")),
            lookup("example.test", None, None, false)
        );
        assert_eq!(
            plan(&sip("sip:a@example.test:5080")),
            lookup("example.test", Some(5080), Some(Transport::Udp), false)
        );
        assert_eq!(
            plan(&sip("sips:a@example.test:5081")),
            lookup("example.test", Some(5081), Some(Transport::Tls), true)
        );
        assert_eq!(
            plan(&sip("sip:a@example.test;transport=TCP")),
            lookup("example.test", None, Some(Transport::Tcp), false)
        );
        assert_eq!(
            plan(&sip("sips:a@example.test;transport=tcp")),
            lookup("example.test", None, Some(Transport::Tls), true)
        );
    }

    fn naptr(order: u16, preference: u16, flags: &str, service: &str, r: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: flags.into(),
            service: service.into(),
            replacement: r.into(),
        }
    }

    #[test]
    fn naptr_by_order_then_preference_for_transports_we_send_on() {
        let records = [
            naptr(20, 10, "s", "SIP+D2U", "_sip._udp.b.test"),
            naptr(10, 20, "S", "SIP+D2T", "_sip._tcp.a.test"),
            naptr(10, 10, "s", "SIPS+D2T", "_sips._tcp.a.test"),
            naptr(10, 5, "s", "SIP+D2S", "_sip._sctp.a.test"),
            naptr(5, 5, "u", "SIP+D2U", "!^.*$!sip:x@y!"),
            naptr(15, 10, "s", "sip+d2u", "_sip._udp.a.test"),
        ];
        let all = [Transport::Udp, Transport::Tcp, Transport::Tls];
        assert_eq!(
            naptr_choices(&records, &all, false),
            vec![
                (Transport::Tls, "_sips._tcp.a.test".to_string()),
                (Transport::Tcp, "_sip._tcp.a.test".to_string()),
                (Transport::Udp, "_sip._udp.a.test".to_string()),
                (Transport::Udp, "_sip._udp.b.test".to_string()),
            ]
        );
        // Only UDP sent: the TCP and TLS records are passed over.
        assert_eq!(
            naptr_choices(&records, &[Transport::Udp], false),
            vec![
                (Transport::Udp, "_sip._udp.a.test".to_string()),
                (Transport::Udp, "_sip._udp.b.test".to_string()),
            ]
        );
        // sips: TLS only.
        assert_eq!(
            naptr_choices(&records, &all, true),
            vec![(Transport::Tls, "_sips._tcp.a.test".to_string())]
        );
        assert!(naptr_choices(&records, &[Transport::Udp], true).is_empty());
    }

    #[test]
    fn srv_names_without_naptr() {
        assert_eq!(
            srv_name("a.test", Transport::Udp, false),
            "_sip._udp.a.test"
        );
        assert_eq!(
            srv_name("a.test", Transport::Tcp, false),
            "_sip._tcp.a.test"
        );
        assert_eq!(
            srv_name("a.test", Transport::Tls, false),
            "_sips._tcp.a.test"
        );
        assert_eq!(
            srv_name("a.test", Transport::Tcp, true),
            "_sips._tcp.a.test"
        );
    }

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5060,
            target: target.into(),
        }
    }

    fn targets(v: &[Srv]) -> Vec<&str> {
        v.iter().map(|s| s.target.as_str()).collect()
    }

    #[test]
    fn srv_priority_first_then_weight() {
        let records = vec![
            srv(20, 0, "c"),
            srv(10, 60, "a"),
            srv(10, 40, "b"),
            srv(30, 0, "."),
        ];
        // A draw of 0 takes the first of the running sums (a: 60), then the only one left.
        assert_eq!(targets(&srv_order(records.clone(), |_| 0)), ["a", "b", "c"]);
        // A draw past a's share takes b first.
        assert_eq!(targets(&srv_order(records, |n| n)), ["b", "a", "c"]);
    }

    #[test]
    fn srv_weights_share_the_first_pick() {
        // xorshift: a fixed sequence, so the counts are exact for this seed.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut draw = |n: u32| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (u64::from(n) + 1)) as u32
        };
        let records = vec![
            srv(10, 90, "heavy"),
            srv(10, 10, "light"),
            srv(10, 0, "zero"),
        ];
        let mut firsts: HashMap<String, u32> = HashMap::new();
        for _ in 0..10_000 {
            let o = srv_order(records.clone(), &mut draw);
            assert_eq!(o.len(), 3);
            *firsts.entry(o[0].target.clone()).or_default() += 1;
        }
        let heavy = firsts["heavy"];
        let light = firsts["light"];
        // 90 : 10 of the draws, give or take; weight 0 wins only a draw of exactly 0.
        assert!((8700..=9300).contains(&heavy), "{firsts:?}");
        assert!((700..=1300).contains(&light), "{firsts:?}");
        assert!(firsts.get("zero").copied().unwrap_or(0) < 200, "{firsts:?}");
    }

    #[test]
    fn dns_failures_map_to_fork_statuses() {
        assert_eq!(DnsError::NotFound("x.test".into()).sip_status(), 604);
        let e = DnsError::Failed {
            host: "x.test".into(),
            reason: "timeout".into(),
        };
        assert_eq!(e.sip_status(), 503);
    }

    /// What serve runs with when resolv.conf is unusable: no name servers. Names fail (503,
    /// DNS may work later), numeric hosts still go through.
    #[tokio::test]
    async fn without_name_servers_names_fail_and_numbers_pass() {
        let inner = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(Vec::new()),
            TokioRuntimeProvider::default(),
        )
        .build()
        .unwrap();
        let r = Resolver {
            inner,
            supported: [Transport::Udp].into(),
        };
        let e = r.resolve(&sip("sip:a@example.test")).await.unwrap_err();
        assert_eq!(e.sip_status(), 503, "{e}");
        assert_eq!(
            r.resolve(&sip("sip:a@192.0.2.1:5070")).await.unwrap(),
            [Destination {
                transport: Transport::Udp,
                addr: "192.0.2.1:5070".parse().unwrap()
            }]
        );
    }

    #[test]
    fn pins_are_shared_and_counted() {
        let a: SocketAddr = "192.0.2.1:5060".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:5060".parse().unwrap();
        let mut p = Pins::default();
        assert_eq!(p.pin("sip:x@h.test", a), a);
        // A second call to the same URI goes where the first's requests go.
        assert_eq!(p.pin("sip:x@h.test", b), a);
        p.unpin("sip:x@h.test");
        assert_eq!(p.get("sip:x@h.test"), Some(a));
        p.unpin("sip:x@h.test");
        assert_eq!(p.get("sip:x@h.test"), None);
        assert_eq!(p.pin("sip:x@h.test", b), b);
    }
}
