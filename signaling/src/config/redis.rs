//! `[redis]`: the shared state of a cluster of `serve` instances ([`crate::cluster`])

use serde::Deserialize;

/// `[redis]`: where the instances of a cluster keep what the others must see
///
/// Without `url` (the default) everything stays in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host[:port][/db]` (`--redis URL`).
    pub url: Option<String>,
    /// This instance's name in the cluster; default: its advertised REST address (host:port).
    pub instance: Option<String>,
    /// The base URL other instances forward REST requests for our calls to; default:
    /// `http://` + `[http] listen` (which must then not be a wildcard address).
    pub advertise_http: Option<String>,
}

/// Checks of `[redis]`.
pub(super) fn validate(
    c: &super::Config,
    invalid: &dyn Fn(&'static str, &str) -> super::ConfigError,
) -> Result<(), super::ConfigError> {
    let r = &c.redis;
    let Some(url) = &r.url else {
        return Ok(());
    };
    if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "redis" | "rediss" | "unix")) {
        return Err(invalid(
            "redis.url",
            "must be a redis://, rediss:// or unix:// URL",
        ));
    }
    if r.instance.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("redis.instance", "must not be empty"));
    }
    match &r.advertise_http {
        Some(u)
            if !url::Url::parse(u).is_ok_and(|u| u.scheme() == "http" || u.scheme() == "https") =>
        {
            Err(invalid(
                "redis.advertise_http",
                "must be an absolute http:// or https:// URL",
            ))
        }
        None if c.http.listen.ip().is_unspecified() => Err(invalid(
            "redis.advertise_http",
            "needed when http.listen is a wildcard address: other instances forward REST there",
        )),
        _ => Ok(()),
    }
}

impl RedisConfig {
    /// Where other instances reach our REST API
    pub fn rest_base(&self, http_listen: std::net::SocketAddr) -> String {
        match &self.advertise_http {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => format!("http://{http_listen}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn section_and_checks() {
        let c = Config::from_toml(
            "[redis]\nurl = \"redis://127.0.0.1:6379/\"\ninstance = \"a\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379/"));
        assert!(c.problems("t").is_empty());
        assert_eq!(
            c.redis.rest_base(c.http.listen),
            format!("http://{}", c.http.listen)
        );
        for (toml, key) in [
            ("[redis]\nurl = \"http://x/\"\n", "redis.url"),
            (
                "[http]\nlisten = \"0.0.0.0:3000\"\n[redis]\nurl = \"redis://h/\"\n",
                "redis.advertise_http",
            ),
            (
                "[redis]\nurl = \"redis://h/\"\nadvertise_http = \"h:3000\"\n",
                "redis.advertise_http",
            ),
        ] {
            let e = Config::from_toml(toml, "t").unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
        let e = Config::from_toml("[redis]\nurll = \"redis://h/\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("urll"), "{e}");
    }
}
