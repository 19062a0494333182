//! `[dns]`: how SIP hosts are resolved (RFC 3263: NAPTR, SRV, A/AAAA)

use std::net::SocketAddr;

use serde::Deserialize;

/// `[dns]`: the name servers asked and how long answers are kept
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers to ask, in order (`--dns ADDR`); empty: the system's (`/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// DNS answers kept in the cache, each for its TTL.
    pub cache_size: u64,
    /// How long a name that does not exist (or has no records of a type) is remembered, seconds.
    pub negative_ttl_s: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            cache_size: 1024,
            negative_ttl_s: 30,
        }
    }
}

/// Range checks of `[dns]`.
pub(super) fn validate(
    d: &DnsConfig,
    invalid: &dyn Fn(&'static str, &str) -> super::ConfigError,
) -> Result<(), super::ConfigError> {
    if d.cache_size == 0 {
        return Err(invalid("dns.cache_size", "must be greater than 0"));
    }
    Ok(())
}
