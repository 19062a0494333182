//! `[sip] rate_limit`: a plain number (requests per second, burst of the same size) or a table
//! `{ requests_per_s = N, burst = M }`

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A per-source token bucket: `requests_per_s` new requests per second, up to `burst` at once
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second; 0 turns the limit off.
    pub requests_per_s: u32,
    /// The bucket's size: how many requests may arrive at once after a quiet spell.
    pub burst: u32,
}

impl RateLimit {
    /// `n` per second with a burst of `n` (the plain-number form)
    pub fn per_second(n: u32) -> RateLimit {
        RateLimit {
            requests_per_s: n,
            burst: n,
        }
    }

    /// No limit at all.
    pub fn is_off(&self) -> bool {
        self.requests_per_s == 0
    }
}

/// `N` when the burst is the rate (the plain form), else `N/s, burst M`.
impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.burst == self.requests_per_s {
            write!(f, "{}", self.requests_per_s)
        } else {
            write!(f, "{}/s, burst {}", self.requests_per_s, self.burst)
        }
    }
}

impl<'de> Deserialize<'de> for RateLimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// The table form; a missing burst is the rate.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            requests_per_s: u32,
            burst: Option<u32>,
        }
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RateLimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("requests per second, or { requests_per_s = N, burst = M }")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<RateLimit, E> {
                u32::try_from(n)
                    .map(RateLimit::per_second)
                    .map_err(|_| E::custom(format!("rate_limit {n} out of range")))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<RateLimit, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(-1))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<RateLimit, A::Error> {
                let t = Table::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                let burst = t.burst.unwrap_or(t.requests_per_s);
                if t.requests_per_s > 0 && burst == 0 {
                    return Err(serde::de::Error::custom(
                        "rate_limit: burst must be at least 1",
                    ));
                }
                Ok(RateLimit {
                    requests_per_s: t.requests_per_s,
                    burst,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::RateLimit;

    #[test]
    fn number_or_table() {
        let c = |t: &str| Config::from_toml(t, "test").map(|c| c.sip.rate_limit);
        assert_eq!(
            c("[sip]\nrate_limit = 20\n").unwrap(),
            RateLimit::per_second(20)
        );
        let t = c("[sip]\nrate_limit = { requests_per_s = 20, burst = 50 }\n").unwrap();
        assert_eq!((t.requests_per_s, t.burst), (20, 50));
        assert_eq!(t.to_string(), "20/s, burst 50");
        assert_eq!(
            c("[sip]\nrate_limit = { requests_per_s = 7 }\n").unwrap(),
            RateLimit::per_second(7)
        );
        let e = c("[sip]\nrate_limit = { requests_per_s = 7, brust = 3 }\n").unwrap_err();
        assert!(e.to_string().contains("brust"), "{e}");
        assert!(c("[sip]\nrate_limit = -1\n").is_err());
        assert!(c("[sip]\nrate_limit = { requests_per_s = 7, burst = 0 }\n").is_err());
    }
}
