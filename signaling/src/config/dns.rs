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

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn dns_section_parses_and_is_checked() {
        let c = Config::from_toml(
            "[dns]\nnameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\nnegative_ttl_s = 5\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            c.dns.nameservers,
            [
                "127.0.0.1:5353".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!((c.dns.cache_size, c.dns.negative_ttl_s), (1024, 5));
        let e = Config::from_toml("[dns]\nnameservers = [\"ns.example\"]\n", "t").unwrap_err();
        assert!(e.to_string().contains("nameservers"), "{e}");
        let e = Config::from_toml("[dns]\ncache_size = 0\n", "t").unwrap_err();
        assert!(e.to_string().contains("dns.cache_size"), "{e}");
        let e = Config::from_toml("[dns]\nttl = 1\n", "t").unwrap_err();
        assert!(e.to_string().contains("ttl"), "{e}");
    }
}
