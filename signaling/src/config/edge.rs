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
    /// A request (headers, body and handling) taking longer is answered 408.
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
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Networks trusted to send INVITEs (CIDR; a bare address is one host).
    #[serde(deserialize_with = "networks")]
    pub allow_from: Vec<IpNet>,
    /// SIP requests per second accepted from one source address; 0 means no limit.
    pub sip_rate_limit: u32,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            allow_from: vec!["127.0.0.0/8".parse().expect("a valid network literal")],
            sip_rate_limit: 5000,
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
    /// (the number becomes it). No gateway: an inbound-only carrier.
    #[serde(default, deserialize_with = "gateways")]
    pub gateways: Vec<SipUri>,
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
}

impl fmt::Debug for CarrierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gateways: Vec<String> = self.gateways.iter().map(ToString::to_string).collect();
        f.debug_struct("CarrierConfig")
            .field("name", &self.name)
            .field("gateways", &gateways)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("inbound", &self.inbound)
            .field("country_code", &self.country_code)
            .field("national_prefix", &self.national_prefix)
            .field("international_prefix", &self.international_prefix)
            .finish()
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
}

impl Default for TeamsConfig {
    fn default() -> Self {
        Self {
            fqdn: String::new(),
            gateway: match Uri::parse("sip:sip.pstnhub.microsoft.com:5061;transport=tls") {
                Ok(Uri::Sip(u)) => u,
                _ => unreachable!("the default Teams gateway is a SIP URI"),
            },
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

fn gateways<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SipUri>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| parse_gateway(s).map_err(serde::de::Error::custom))
        .collect()
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
    use super::super::Config;

    #[test]
    fn probe() {
        for t in [
            "[security]\nallow_from = [\n  \"10.0.0.0/8\",\n  \"x\",\n]\n",
            "[[carriers]]\nname = \"a\"\ngateways = [\n\"http://x\"]\n",
            "[[carriers]]\nname = \"a\"\ngatways = [\"sip:x\"]\n",
            "[http]\nlisten = \"1.2.3.4\"\n",
        ] {
            println!("{}", Config::from_toml(t, "x").unwrap_err());
        }
    }
}
