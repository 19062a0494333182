//! The sections about a call's edges: the HTTP API (`[http]`), who may send us calls
//! (`[security]`), where phone numbers go (`[[carriers]]`, `[teams]`) and which app answers a
//! called number (`[[routes]]`).
//!
//! Addresses, networks and URIs are parsed while the file is read, so the rest of dialplane
//! only sees typed values; a bad one is reported with its key's dotted name.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

use super::ConfigError;
use crate::message::{SipUri, Uri};

/// `[http]`: the listener of the REST API and `/metrics`
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address of the listener (`--http`).
    pub listen: SocketAddr,
    /// The bearer token REST requests must present (`--api-token`). Without one every REST
    /// request is refused with 401; `/metrics` needs no token.
    pub api_token: Option<String>,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// A request whose body and handling take longer is answered 408; a client this slow
    /// with its headers is disconnected.
    pub request_timeout_ms: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            api_token: None,
            max_body_bytes: 64 * 1024,
            request_timeout_ms: 5000,
        }
    }
}

impl fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpConfig")
            .field("listen", &self.listen)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}

/// `[security]`: sources allowed to send us calls, besides carriers and registered users
///
/// The per-source SIP rate limit is `[sip] rate_limit`, next to the transports that enforce it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Networks trusted to send INVITEs (CIDR; a bare address is one host).
    #[serde(deserialize_with = "networks")]
    pub allow_from: Vec<IpNet>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            allow_from: vec!["127.0.0.0/8".parse().expect("a valid network literal")],
        }
    }
}

/// One `[[carriers]]` entry: a SIP trunk for phone numbers, outbound and/or inbound
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// The name a dial target's `trunk` refers to.
    pub name: String,
    /// Where calls to phone numbers go, e.g. `sip:gw1.example.net:5060`, without a user part
    /// (the number becomes it), tried one after the other when one fails. Each entry is a URI
    /// or a table `{ uri = "sip:…", weight = 2 }`. No gateway: an inbound-only carrier.
    #[serde(default)]
    pub gateways: GatewayList,
    /// In which order calls try the gateways: as listed, or drawn by weight.
    #[serde(default)]
    pub strategy: Strategy,
    /// Seconds between OPTIONS probes of each gateway; 0: no probes, every gateway counts as up.
    #[serde(default = "default_probe_interval_s")]
    pub probe_interval_s: u32,
    /// A gateway that sends no 18x nor final response to a call's INVITE within this many ms
    /// is left for the next one, as if it had not answered; 0: wait for Timer B (32 s).
    #[serde(default)]
    pub progress_timeout_ms: u32,
    /// Prepended to the user part of the Request-URI of calls to this carrier, e.g. `"1234#"`.
    #[serde(default)]
    pub tech_prefix: Option<String>,
    /// Prepended to the caller's number (the From user, in E.164 when the carrier's rules can
    /// make it so) on calls to this carrier.
    #[serde(default)]
    pub callerid_prefix: Option<String>,
    /// Digest username for the carrier's challenges.
    #[serde(default)]
    pub username: Option<String>,
    /// Digest password.
    #[serde(default)]
    pub password: Option<String>,
    /// Source networks the carrier sends calls from (CIDR).
    #[serde(default, deserialize_with = "networks")]
    pub inbound: Vec<IpNet>,
    /// Country code given to national numbers (no `+`), e.g. `"1"`; without it such numbers
    /// cannot be sent to this carrier.
    #[serde(default)]
    pub country_code: Option<String>,
    /// Trunk prefix stripped from national numbers before the country code is added, e.g.
    /// `"0"` (most of Europe) or `"1"` (North America).
    #[serde(default)]
    pub national_prefix: Option<String>,
    /// Prefix that stands for `+`, e.g. `"00"` or `"011"`.
    #[serde(default)]
    pub international_prefix: Option<String>,
    /// Calls to this carrier offer SRTP (`RTP/SAVP` with an SDES key, RFC 4568).
    #[serde(default)]
    pub srtp: bool,
    /// Calls with this carrier at once, inbound and outbound; more get 503. 0: no limit.
    #[serde(default)]
    pub max_concurrent_calls: u32,
    /// New calls with this carrier per second (burst of the same size); more get 503. 0: no
    /// limit.
    #[serde(default)]
    pub max_cps: u32,
}

impl fmt::Debug for CarrierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gateways: Vec<String> = self.gateways.iter().map(ToString::to_string).collect();
        f.debug_struct("CarrierConfig")
            .field("name", &self.name)
            .field("gateways", &gateways)
            .field("weights", &self.gateways.weights)
            .field("strategy", &self.strategy)
            .field("probe_interval_s", &self.probe_interval_s)
            .field("progress_timeout_ms", &self.progress_timeout_ms)
            .field("tech_prefix", &self.tech_prefix)
            .field("callerid_prefix", &self.callerid_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("inbound", &self.inbound)
            .field("country_code", &self.country_code)
            .field("national_prefix", &self.national_prefix)
            .field("max_concurrent_calls", &self.max_concurrent_calls)
            .field("max_cps", &self.max_cps)
            .field("international_prefix", &self.international_prefix)
            .field("srtp", &self.srtp)
            .finish()
    }
}

fn default_probe_interval_s() -> u32 {
    30
}

/// The order in which a carrier's gateways are tried
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// As listed: the first gateway up takes every call.
    #[default]
    Priority,
    /// Each call draws its order by weight: a gateway of weight 2 comes first twice as often
    /// as one of weight 1.
    Weighted,
}

/// A carrier's gateways: their URIs (what the list derefs to) and weights
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GatewayList {
    uris: Vec<SipUri>,
    /// Gateway `i`'s weight (1 unless given); only `strategy = "weighted"` reads them.
    pub weights: Vec<u32>,
}

impl std::ops::Deref for GatewayList {
    type Target = [SipUri];
    fn deref(&self) -> &[SipUri] {
        &self.uris
    }
}

impl<'de> Deserialize<'de> for GatewayList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The table form of one entry.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            uri: String,
            #[serde(default = "one")]
            weight: u32,
        }
        fn one() -> u32 {
            1
        }
        /// A plain URI or a table.
        struct Entry(Table);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = Entry;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a gateway URI or { uri = \"…\", weight = N }")
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Entry, E> {
                        Ok(Entry(Table {
                            uri: s.to_string(),
                            weight: 1,
                        }))
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(
                        self,
                        m: A,
                    ) -> Result<Entry, A::Error> {
                        Table::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                            .map(Entry)
                    }
                }
                d.deserialize_any(V)
            }
        }
        let mut list = GatewayList::default();
        for Entry(t) in Vec::<Entry>::deserialize(d)? {
            if t.weight == 0 {
                return Err(serde::de::Error::custom(format!(
                    "gateway {:?}: weight must be at least 1",
                    t.uri
                )));
            }
            list.uris
                .push(parse_gateway(&t.uri).map_err(serde::de::Error::custom)?);
            list.weights.push(t.weight);
        }
        Ok(list)
    }
}

/// `[teams]`: Microsoft Teams Direct Routing
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamsConfig {
    /// Our SBC's FQDN as paired with Teams, and the tenant used when a target names none.
    /// Empty: Teams is not configured and `teams` targets fail.
    pub fqdn: String,
    /// Microsoft's SIP proxy that calls to Teams users go to.
    #[serde(deserialize_with = "gateway")]
    pub gateway: SipUri,
    /// Offer SRTP (SDES) to Teams, as Direct Routing requires; `false` for plain-RTP test
    /// setups.
    pub srtp: bool,
}

impl Default for TeamsConfig {
    fn default() -> Self {
        Self {
            fqdn: String::new(),
            gateway: match Uri::parse("sip:sip.pstnhub.microsoft.com:5061;transport=tls") {
                Ok(Uri::Sip(u)) => u,
                _ => unreachable!("the default Teams gateway is a SIP URI"),
            },
            srtp: true,
        }
    }
}

/// One `[[routes]]` entry: the call webhook for a called number
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The called number: exact (`"+15083084809"`) or a prefix ending in `*` (`"+1508*"`).
    pub to: NumberPattern,
    /// The call webhook for calls to it.
    pub app_url: String,
}

/// A called-number pattern of `[[routes]]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NumberPattern {
    /// This number only.
    Exact(String),
    /// Every number starting with this (the pattern without its `*`).
    Prefix(String),
}

impl NumberPattern {
    /// How well `number` matches: `None` when it does not; exact matches beat every prefix,
    /// longer prefixes beat shorter ones.
    pub fn rank(&self, number: &str) -> Option<usize> {
        match self {
            NumberPattern::Exact(n) => (n == number).then_some(usize::MAX),
            NumberPattern::Prefix(p) => number.starts_with(p.as_str()).then_some(p.len()),
        }
    }
}

/// As written in the file: the number, or the prefix with its `*`.
impl fmt::Display for NumberPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumberPattern::Exact(n) => f.write_str(n),
            NumberPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

impl<'de> Deserialize<'de> for NumberPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bad = |c: char| c.is_whitespace() || c.is_control() || c == '*';
        let pattern = match s.strip_suffix('*') {
            Some(p) => NumberPattern::Prefix(p.to_string()),
            None if s.is_empty() => {
                return Err(serde::de::Error::custom("empty called-number pattern"));
            }
            None => NumberPattern::Exact(s.clone()),
        };
        let (NumberPattern::Exact(body) | NumberPattern::Prefix(body)) = &pattern;
        if body.contains(bad) {
            return Err(serde::de::Error::custom(format!(
                "bad called-number pattern {s:?}: '*' only at the end, no whitespace"
            )));
        }
        Ok(pattern)
    }
}

/// Parses `198.51.100.0/24` or a bare address (one host); host bits are cleared.
fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => s
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{s:?} is not a network (CIDR like 198.51.100.0/24)"))?,
    };
    Ok(net.trunc())
}

fn networks<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<IpNet>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_network(s).map_err(serde::de::Error::custom))
        .collect()
}

/// A gateway: a `sip:`/`sips:` URI naming a host, without a user part.
fn parse_gateway(s: &str) -> Result<SipUri, String> {
    match Uri::parse(s) {
        Ok(Uri::Sip(u)) if u.user.is_some() => Err(format!(
            "gateway {s:?} must not have a user part (the dialled number goes there)"
        )),
        Ok(Uri::Sip(u)) if !u.headers.is_empty() => {
            Err(format!("gateway {s:?} must not have URI headers"))
        }
        Ok(Uri::Sip(u)) => Ok(u),
        Ok(_) => Err(format!("gateway {s:?} must be a sip: or sips: URI")),
        Err(e) => Err(format!("gateway {s:?}: {e}")),
    }
}

fn gateway<'de, D: Deserializer<'de>>(d: D) -> Result<SipUri, D::Error> {
    parse_gateway(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// Checks what types alone cannot: names, digits, URLs, duplicates.
pub(super) fn validate(
    config: &super::Config,
    invalid: &dyn Fn(&'static str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    let http = &config.http;
    if http
        .api_token
        .as_ref()
        .is_some_and(|t| t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(invalid(
            "http.api_token",
            "must be non-empty printable ASCII without spaces",
        ));
    }
    if http.max_body_bytes == 0 {
        return Err(invalid("http.max_body_bytes", "must be greater than 0"));
    }
    if http.request_timeout_ms == 0 {
        return Err(invalid("http.request_timeout_ms", "must be greater than 0"));
    }
    for (i, c) in config.carriers.iter().enumerate() {
        validate_carrier(i, c, &config.carriers[..i], invalid)?;
    }
    let teams = &config.teams;
    if !teams.fqdn.is_empty() && !is_hostname(&teams.fqdn) {
        return Err(invalid(
            "teams.fqdn",
            "must be a host name like sbc.example.com",
        ));
    }
    for (i, r) in config.routes.iter().enumerate() {
        if !is_http_url(&r.app_url) {
            return Err(invalid(
                "routes.app_url",
                &format!("route {}: must be an absolute http(s) URL", i + 1),
            ));
        }
        if config.routes[..i].iter().any(|o| o.to == r.to) {
            return Err(invalid(
                "routes.to",
                &format!("route {}: the same pattern is listed twice", i + 1),
            ));
        }
    }
    Ok(())
}

fn validate_carrier(
    i: usize,
    c: &CarrierConfig,
    earlier: &[CarrierConfig],
    invalid: &dyn Fn(&'static str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    if c.name.is_empty()
        || c.name
            .contains(|ch: char| ch.is_whitespace() || ch.is_control())
    {
        return Err(invalid(
            "carriers.name",
            &format!("carrier {}: must be non-empty, without whitespace", i + 1),
        ));
    }
    if earlier.iter().any(|o| o.name == c.name) {
        return Err(invalid(
            "carriers.name",
            &format!("carrier {:?} is listed twice", c.name),
        ));
    }
    let creds = (c.username.as_deref(), c.password.as_deref());
    if matches!(creds, (Some(""), _) | (Some(_), None)) {
        return Err(invalid(
            "carriers.username",
            &format!("carrier {:?}: a username needs a password", c.name),
        ));
    }
    if matches!(creds, (None, Some(_)) | (_, Some(""))) {
        return Err(invalid(
            "carriers.password",
            &format!("carrier {:?}: a password needs a username", c.name),
        ));
    }
    if c.gateways.is_empty() && c.inbound.is_empty() {
        return Err(invalid(
            "carriers.gateways",
            &format!(
                "carrier {:?}: needs gateways, inbound networks or both",
                c.name
            ),
        ));
    }
    for (key, value, check) in [
        ("carriers.country_code", &c.country_code, 1..=3),
        ("carriers.national_prefix", &c.national_prefix, 1..=4),
        (
            "carriers.international_prefix",
            &c.international_prefix,
            1..=4,
        ),
    ] {
        if let Some(v) = value
            && (!check.contains(&v.len()) || !v.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(
                key,
                &format!(
                    "carrier {:?}: {v:?} must be {} to {} digits",
                    c.name,
                    check.start(),
                    check.end()
                ),
            ));
        }
    }
    for (key, value) in [
        ("carriers.tech_prefix", &c.tech_prefix),
        ("carriers.callerid_prefix", &c.callerid_prefix),
    ] {
        if let Some(v) = value
            && (v.is_empty()
                || v.len() > 16
                || !v.bytes().all(|b| b.is_ascii_graphic())
                || v.contains(['@', '<', '>', '"', ':']))
        {
            return Err(invalid(
                key,
                &format!(
                    "carrier {:?}: {v:?} must be 1 to 16 printable characters, without @ < > \" :",
                    c.name
                ),
            ));
        }
    }
    if c.country_code
        .as_deref()
        .is_some_and(|cc| cc.starts_with('0'))
    {
        return Err(invalid(
            "carriers.country_code",
            &format!("carrier {:?}: a country code does not start with 0", c.name),
        ));
    }
    Ok(())
}

/// A DNS name (letters, digits, `-`, dots), not an address, with at least two labels.
fn is_hostname(s: &str) -> bool {
    s.parse::<IpAddr>().is_err()
        && s.len() <= 253
        && s.split('.').count() >= 2
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// `http://host…` or `https://host…`, no whitespace.
fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !s.contains(|c: char| c.is_whitespace() || c.is_control())
    })
}

#[cfg(test)]
mod tests {
    use super::super::{Config, ServeOverrides};
    use super::*;

    fn parse(text: &str) -> Result<Config, String> {
        Config::from_toml(text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.http.listen, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(c.http.api_token, None);
        assert_eq!(
            c.security.allow_from,
            ["127.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert!(c.carriers.is_empty() && c.routes.is_empty());
        assert_eq!(c.teams.fqdn, "");
        assert_eq!(
            c.teams.gateway.to_string(),
            "sip:sip.pstnhub.microsoft.com:5061;transport=tls"
        );
    }

    #[test]
    fn every_section_parses() {
        let c = parse(
            "[http]\nlisten = \"0.0.0.0:8080\"\napi_token = \"s3cret-token\"\n\
             max_body_bytes = 1000\nrequest_timeout_ms = 100\n\
             [security]\nallow_from = [\"10.0.0.0/8\", \"192.0.2.1\", \"2001:db8::/32\", \"10.1.2.3/16\"]\n\
             [[carriers]]\nname = \"acme\"\ngateways = [\"sip:gw1.acme.net:5060\", \"sips:gw2.acme.net;transport=tls\"]\n\
             username = \"u\"\npassword = \"hunter2\"\ninbound = [\"198.51.100.0/24\"]\n\
             country_code = \"1\"\nnational_prefix = \"1\"\ninternational_prefix = \"011\"\n\
             [[carriers]]\nname = \"in\"\ninbound = [\"203.0.113.0/24\"]\n\
             [teams]\nfqdn = \"sbc.example.com\"\ngateway = \"sip:sip2.pstnhub.microsoft.com:5061;transport=tls\"\n\
             [[routes]]\nto = \"+1508*\"\napp_url = \"https://apps.example.com/1508\"\n\
             [[routes]]\nto = \"+15083084809\"\napp_url = \"http://127.0.0.1:8080/call\"\n",
        )
        .unwrap();
        assert_eq!(c.http.listen.port(), 8080);
        assert_eq!(c.http.api_token.as_deref(), Some("s3cret-token"));
        assert_eq!(
            (c.http.max_body_bytes, c.http.request_timeout_ms),
            (1000, 100)
        );
        let nets: Vec<String> = c
            .security
            .allow_from
            .iter()
            .map(ToString::to_string)
            .collect();
        // Bare addresses are hosts; host bits are cleared.
        assert_eq!(
            nets,
            ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::/32", "10.1.0.0/16"]
        );
        let acme = &c.carriers[0];
        assert_eq!(acme.gateways[0].host, "gw1.acme.net");
        assert_eq!(acme.gateways[0].port, Some(5060));
        assert!(acme.gateways[1].secure);
        assert_eq!(acme.gateways[1].param("transport"), Some(Some("tls")));
        assert_eq!(acme.password.as_deref(), Some("hunter2"));
        assert!(c.carriers[1].gateways.is_empty());
        assert_eq!(c.teams.gateway.host, "sip2.pstnhub.microsoft.com");
        assert_eq!(c.routes[0].to, NumberPattern::Prefix("+1508".into()));
        assert_eq!(c.routes[1].to, NumberPattern::Exact("+15083084809".into()));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cret"),
            "{debug}"
        );
    }

    #[test]
    fn gateways_as_uris_or_tables_and_their_rules() {
        let c = parse(
            "[[carriers]]\nname = \"a\"\nstrategy = \"weighted\"\nprobe_interval_s = 5\n\
             tech_prefix = \"1234#\"\ncallerid_prefix = \"00\"\n\
             gateways = [\"sip:10.0.0.1\", { uri = \"sip:10.0.0.2:5070\", weight = 3 }, { uri = \"sip:h\" }]\n",
        )
        .unwrap();
        let a = &c.carriers[0];
        let uris: Vec<String> = a.gateways.iter().map(ToString::to_string).collect();
        assert_eq!(uris, ["sip:10.0.0.1", "sip:10.0.0.2:5070", "sip:h"]);
        assert_eq!(a.gateways.weights, [1, 3, 1]);
        assert_eq!(a.strategy, Strategy::Weighted);
        assert_eq!(a.probe_interval_s, 5);
        assert_eq!(a.progress_timeout_ms, 0);
        assert_eq!(a.tech_prefix.as_deref(), Some("1234#"));
        assert_eq!(a.callerid_prefix.as_deref(), Some("00"));
        let d = parse("[[carriers]]\nname = \"a\"\ngateways = [\"sip:h\"]\n").unwrap();
        assert_eq!(d.carriers[0].strategy, Strategy::Priority);
        assert_eq!(d.carriers[0].probe_interval_s, 30);
        assert_eq!(d.carriers[0].tech_prefix, None);
        for (text, key) in [
            ("gateways = [{ uri = \"sip:h\", weight = 0 }]", "weight"),
            ("gateways = [{ uri = \"sip:h\", wieght = 2 }]", "wieght"),
            ("gateways = [{ weight = 2 }]", "uri"),
            ("gateways = [{ uri = \"sip:u@h\" }]", "user part"),
            ("gateways = [7]", "gateway URI"),
            ("gateways = [\"sip:h\"]\nstrategy = \"random\"", "strategy"),
            (
                "gateways = [\"sip:h\"]\ntech_prefix = \"\"",
                "carriers.tech_prefix",
            ),
            (
                "gateways = [\"sip:h\"]\ntech_prefix = \"1@2\"",
                "carriers.tech_prefix",
            ),
            (
                "gateways = [\"sip:h\"]\ncallerid_prefix = \"a b\"",
                "carriers.callerid_prefix",
            ),
        ] {
            let e = parse(&format!("[[carriers]]\nname = \"a\"\n{text}\n")).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        for (text, key) in [
            ("[http]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
            ("[security]\nallow = []\n", "allow"),
            (
                "[[carriers]]\nname = \"a\"\ngatways = [\"sip:x\"]\n",
                "gatways",
            ),
            ("[teams]\ntenant = \"x\"\n", "tenant"),
            (
                "[[routes]]\nto = \"1\"\napp_url = \"http://x\"\nurl = \"x\"\n",
                "url",
            ),
            ("[[carriers]]\ngateways = [\"sip:x\"]\n", "name"),
            ("[[routes]]\nto = \"1\"\n", "app_url"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key) && e.contains("t.toml"), "{text}: {e}");
        }
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            ("[http]\nlisten = \"127.0.0.1\"\n", "listen"),
            ("[http]\napi_token = \"\"\n", "http.api_token"),
            ("[http]\napi_token = \"two words\"\n", "http.api_token"),
            ("[http]\nmax_body_bytes = 0\n", "http.max_body_bytes"),
            (
                "[http]\nrequest_timeout_ms = 0\n",
                "http.request_timeout_ms",
            ),
            ("[security]\nallow_from = [\"10.0.0.0/33\"]\n", "allow_from"),
            (
                "[security]\nallow_from = [\n  \"10.0.0.0/8\",\n  \"localhost\",\n]\n",
                "allow_from",
            ),
            ("[security]\nallow_from = \"10.0.0.0/8\"\n", "allow_from"),
            (
                "[[carriers]]\nname = \"a\"\ngateways = [\"http://x\"]\n",
                "gateways",
            ),
            (
                "[[carriers]]\nname = \"a\"\ngateways = [\"sip:u@gw\"]\n",
                "gateways",
            ),
            (
                "[[carriers]]\nname = \"a\"\ngateways = [\"sip:gw?h=v\"]\n",
                "gateways",
            ),
            (
                "[[carriers]]\nname = \"a\"\ngateways = [\"sip:gw:99999\"]\n",
                "gateways",
            ),
            ("[[carriers]]\nname = \"a\"\ninbound = [\"x\"]\n", "inbound"),
            (
                "[[carriers]]\nname = \"\"\ninbound = [\"10.0.0.1\"]\n",
                "carriers.name",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\n\
                 [[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.2\"]\n",
                "carriers.name",
            ),
            ("[[carriers]]\nname = \"a\"\n", "carriers.gateways"),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\nusername = \"u\"\n",
                "carriers.username",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\npassword = \"p\"\n",
                "carriers.password",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\ncountry_code = \"+1\"\n",
                "carriers.country_code",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\ncountry_code = \"044\"\n",
                "carriers.country_code",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\nnational_prefix = \"x\"\n",
                "carriers.national_prefix",
            ),
            (
                "[[carriers]]\nname = \"a\"\ninbound = [\"10.0.0.1\"]\ninternational_prefix = \"\"\n",
                "carriers.international_prefix",
            ),
            ("[teams]\nfqdn = \"sbc\"\n", "teams.fqdn"),
            ("[teams]\nfqdn = \"192.0.2.1\"\n", "teams.fqdn"),
            ("[teams]\nfqdn = \"a b.example.com\"\n", "teams.fqdn"),
            ("[teams]\ngateway = \"tel:+1\"\n", "gateway"),
            ("[[routes]]\nto = \"\"\napp_url = \"http://x\"\n", "to"),
            ("[[routes]]\nto = \"+1*5*\"\napp_url = \"http://x\"\n", "to"),
            ("[[routes]]\nto = \"+1 5\"\napp_url = \"http://x\"\n", "to"),
            (
                "[[routes]]\nto = \"+1\"\napp_url = \"ftp://x\"\n",
                "routes.app_url",
            ),
            (
                "[[routes]]\nto = \"+1\"\napp_url = \"http:///x\"\n",
                "routes.app_url",
            ),
            (
                "[[routes]]\nto = \"+1*\"\napp_url = \"http://x\"\n\
                 [[routes]]\nto = \"+1*\"\napp_url = \"http://y\"\n",
                "routes.to",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn overrides_win_over_the_file() {
        let mut c = parse("[http]\nlisten = \"127.0.0.1:4000\"\napi_token = \"file\"\n").unwrap();
        c.apply_overrides(ServeOverrides::default());
        assert_eq!(c.http.listen.port(), 4000);
        assert_eq!(c.http.api_token.as_deref(), Some("file"));
        c.apply_overrides(ServeOverrides {
            http: Some("127.0.0.2:5000".parse().unwrap()),
            api_token: Some("flag".into()),
            ..ServeOverrides::default()
        });
        assert_eq!(c.http.listen, "127.0.0.2:5000".parse().unwrap());
        assert_eq!(c.http.api_token.as_deref(), Some("flag"));
        c.apply_overrides(ServeOverrides {
            api_token: Some(String::new()),
            ..ServeOverrides::default()
        });
        let e = c.validate("command line").unwrap_err().to_string();
        assert!(
            e.contains("http.api_token") && e.contains("command line"),
            "{e}"
        );
    }
}
