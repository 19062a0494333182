//! Who may send us calls: the source address of an INVITE checked against `[security]
//! allow_from` and the carriers' `inbound` networks
//!
//! Pure and cheap (a scan of a few networks per INVITE). Registered users are allowed by the
//! registrar's bindings, which the B2BUA checks besides this.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::config::Config;

/// What a source address may do
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed<'c> {
    /// In `security.allow_from`: a trusted peer (e.g. our own proxy).
    Trusted,
    /// In this carrier's `inbound` networks.
    Carrier(&'c str),
    /// Neither: answer 403.
    Denied,
}

impl Config {
    /// Classifies an INVITE's source address
    ///
    /// A carrier's range wins over `allow_from`, so its calls are attributed to it; among
    /// carriers the most specific network wins, then the first listed. IPv4-mapped IPv6
    /// addresses count as IPv4.
    pub fn allow(&self, source: IpAddr) -> Allowed<'_> {
        let source = source.to_canonical();
        let mut best: Option<(u8, &str)> = None;
        for carrier in &self.carriers {
            if let Some(len) = longest_match(&carrier.inbound, source)
                && best.is_none_or(|(l, _)| len > l)
            {
                best = Some((len, &carrier.name));
            }
        }
        match best {
            Some((_, name)) => Allowed::Carrier(name),
            None if longest_match(&self.security.allow_from, source).is_some() => Allowed::Trusted,
            None => Allowed::Denied,
        }
    }
}

/// The prefix length of the most specific network containing `ip`.
fn longest_match(nets: &[IpNet], ip: IpAddr) -> Option<u8> {
    nets.iter()
        .filter(|n| n.contains(&ip))
        .map(IpNet::prefix_len)
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml(text, "test").unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_trust_loopback_only() {
        let c = Config::default();
        assert_eq!(c.allow(ip("127.0.0.1")), Allowed::Trusted);
        assert_eq!(c.allow(ip("127.255.0.9")), Allowed::Trusted);
        assert_eq!(c.allow(ip("::ffff:127.0.0.1")), Allowed::Trusted);
        assert_eq!(c.allow(ip("128.0.0.1")), Allowed::Denied);
        assert_eq!(c.allow(ip("10.0.0.1")), Allowed::Denied);
        assert_eq!(c.allow(ip("::1")), Allowed::Denied);
    }

    #[test]
    fn carriers_are_recognised_by_their_inbound_networks() {
        let c = config(
            "[security]\nallow_from = [\"10.0.0.0/8\", \"2001:db8::/32\"]\n\
             [[carriers]]\nname = \"wide\"\ninbound = [\"198.51.100.0/24\", \"10.1.0.0/16\"]\n\
             [[carriers]]\nname = \"narrow\"\ninbound = [\"198.51.100.128/25\", \"203.0.113.7\"]\n\
             [[carriers]]\nname = \"same\"\ninbound = [\"198.51.100.0/24\"]\n",
        );
        assert_eq!(c.allow(ip("198.51.100.1")), Allowed::Carrier("wide"));
        assert_eq!(c.allow(ip("198.51.100.200")), Allowed::Carrier("narrow"));
        assert_eq!(c.allow(ip("203.0.113.7")), Allowed::Carrier("narrow"));
        assert_eq!(c.allow(ip("203.0.113.8")), Allowed::Denied);
        // Inside allow_from too: the carrier's range attributes the call.
        assert_eq!(c.allow(ip("10.1.2.3")), Allowed::Carrier("wide"));
        assert_eq!(c.allow(ip("10.2.2.3")), Allowed::Trusted);
        assert_eq!(c.allow(ip("2001:db8::5")), Allowed::Trusted);
        assert_eq!(c.allow(ip("::ffff:198.51.100.1")), Allowed::Carrier("wide"));
        // The default 127.0.0.0/8 was replaced, not extended.
        assert_eq!(c.allow(ip("127.0.0.1")), Allowed::Denied);
    }

    #[test]
    fn empty_allow_from_trusts_nobody() {
        let c = config("[security]\nallow_from = []\n");
        assert_eq!(c.allow(ip("127.0.0.1")), Allowed::Denied);
    }
}
