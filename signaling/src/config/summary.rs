//! The effective configuration as `dialplane check-config` prints it: what `serve` would run
//! with, one section per paragraph, secrets never shown.
//!
//! Passwords, tokens and secrets appear as `<redacted>` when set (`none` otherwise); a URL's
//! password (`http://user:pw@host/`) is redacted too; registrar users appear by name only.

use std::fmt::{self, Display, Formatter};

use super::Config;

/// [`Config::summary`]'s text
pub struct Summary<'a>(&'a Config);

impl Config {
    /// The effective configuration, for people to read
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

const REDACTED: &str = "<redacted>";

fn secret(s: &Option<String>) -> &'static str {
    if s.is_some() { REDACTED } else { "none" }
}

/// A URL with its password (if any) redacted; `none` when absent.
pub(crate) fn url(u: Option<&str>) -> String {
    let Some(u) = u else {
        return "none".into();
    };
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(REDACTED));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

fn list<T: Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Display for Summary<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let s = &c.sip;
        writeln!(f, "listeners:")?;
        writeln!(f, "  sip: {}", list(&s.listen))?;
        match &s.tls {
            Some(t) => writeln!(
                f,
                "  sip tls: {} (cert {}, key {})",
                t.listen,
                t.cert.display(),
                t.key.display()
            )?,
            None => writeln!(f, "  sip tls: none")?,
        }
        let external = s.external_ip.map_or("none".into(), |ip| ip.to_string());
        writeln!(f, "  external_ip: {external}")?;
        writeln!(f, "  http: {}", c.http.listen)?;
        let m = &c.media;
        let threads = match m.num_threads {
            0 => "one per core".to_string(),
            n => n.to_string(),
        };
        writeln!(f, "media:")?;
        writeln!(f, "  interface: {}", m.interface)?;
        writeln!(f, "  ports: {}-{}", m.port_min, m.port_max)?;
        writeln!(f, "  threads: {threads}")?;
        writeln!(f, "  media_timeout_s: {}", m.media_timeout_s)?;
        writeln!(f, "carriers: {}", c.carriers.len())?;
        for carrier in &c.carriers {
            writeln!(f, "  {}:", carrier.name)?;
            writeln!(f, "    gateways: {}", list(&carrier.gateways))?;
            let weights: Vec<String> = carrier
                .gateways
                .weights
                .iter()
                .map(u32::to_string)
                .collect();
            writeln!(
                f,
                "    strategy: {} (weights {}), probe_interval_s: {}, progress_timeout_ms: {}",
                format!("{:?}", carrier.strategy).to_lowercase(),
                weights.join(", "),
                carrier.probe_interval_s,
                carrier.progress_timeout_ms
            )?;
            writeln!(f, "    inbound: {}", list(&carrier.inbound))?;
            let user = carrier.username.as_deref().unwrap_or("none");
            writeln!(
                f,
                "    username: {user}, password: {}",
                secret(&carrier.password)
            )?;
            let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".into());
            writeln!(
                f,
                "    country_code: {}, national_prefix: {}, international_prefix: {}",
                opt(&carrier.country_code),
                opt(&carrier.national_prefix),
                opt(&carrier.international_prefix)
            )?;
            writeln!(
                f,
                "    tech_prefix: {}, callerid_prefix: {}",
                opt(&carrier.tech_prefix),
                opt(&carrier.callerid_prefix)
            )?;
        }
        writeln!(f, "routes: {}", c.routes.len())?;
        for r in &c.routes {
            writeln!(f, "  {} -> {}", r.to, url(Some(&r.app_url)))?;
        }
        let teams = if c.teams.fqdn.is_empty() {
            "off".to_string()
        } else {
            format!("{} via {}", c.teams.fqdn, c.teams.gateway)
        };
        writeln!(f, "teams: {teams}")?;
        let r = &c.registrar;
        let names: Vec<&str> = r.users.iter().map(|u| u.name.as_str()).collect();
        let domain = if r.domain.is_empty() {
            "none (REGISTER gets 404)"
        } else {
            &r.domain
        };
        writeln!(f, "registrar:")?;
        writeln!(f, "  domain: {domain}")?;
        writeln!(f, "  users: {} ({})", names.len(), list(&names))?;
        writeln!(
            f,
            "  expires: {}..{} s, default {} s",
            r.min_expires, r.max_expires, r.default_expires
        )?;
        let nonce = match r.nonce_secret {
            Some(_) => REDACTED,
            None => "random at startup",
        };
        writeln!(f, "  nonce_secret: {nonce}")?;
        writeln!(f, "allow_from: {}", list(&c.security.allow_from))?;
        let rate = match s.rate_limit {
            r if r.is_off() => "unlimited".to_string(),
            r if r.burst == r.requests_per_s => format!("{}/s per source", r.requests_per_s),
            r => format!("{}/s per source, burst {}", r.requests_per_s, r.burst),
        };
        writeln!(f, "limits:")?;
        writeln!(f, "  sip.rate_limit: {rate}")?;
        writeln!(f, "  sip.max_message_size: {} bytes", s.max_message_size)?;
        writeln!(f, "  sip.max_connections: {}", s.max_connections)?;
        writeln!(f, "  sip.message_timeout_ms: {}", s.message_timeout_ms)?;
        writeln!(f, "  sip.idle_timeout_s: {}", s.idle_timeout_s)?;
        writeln!(f, "  http.max_body_bytes: {}", c.http.max_body_bytes)?;
        writeln!(
            f,
            "  http.request_timeout_ms: {}",
            c.http.request_timeout_ms
        )?;
        let a = &c.app;
        writeln!(f, "hooks:")?;
        writeln!(f, "  app.url: {}", url(a.url.as_deref()))?;
        let file = a.file.as_ref().map(|p| p.display().to_string());
        writeln!(f, "  app.file: {}", file.as_deref().unwrap_or("none"))?;
        writeln!(
            f,
            "  app.hook_base_url: {}",
            url(a.hook_base_url.as_deref())
        )?;
        writeln!(f, "  app.status_hook: {}", url(a.status_hook.as_deref()))?;
        writeln!(f, "  app.webhook_secret: {}", secret(&a.webhook_secret))?;
        writeln!(f, "  app.account_sid: {:?}", a.account_sid)?;
        writeln!(f, "  http.api_token: {}", secret(&c.http.api_token))?;
        let sp = &c.speech;
        writeln!(f, "speech:")?;
        writeln!(f, "  stt_url: {}", url(sp.stt_url.as_deref()))?;
        writeln!(f, "  stt_api_key: {}", secret(&sp.stt_api_key))?;
        writeln!(f, "  language: {}", sp.language)?;
        let r = &c.redis;
        writeln!(f, "cluster:")?;
        writeln!(f, "  redis.url: {}", url(r.url.as_deref()))?;
        if r.url.is_some() {
            writeln!(
                f,
                "  redis.instance: {}",
                r.instance.as_deref().unwrap_or("(REST address)")
            )?;
            writeln!(f, "  redis.advertise_http: {}", r.rest_base(c.http.listen))?;
        }
        writeln!(f, "log: {}", c.log.level)?;
        let t = &c.amd;
        write!(
            f,
            "amd: no_speech {} ms, decision {} ms, tone {} ms, greeting_completion {} ms",
            t.no_speech_timeout_ms,
            t.decision_timeout_ms,
            t.tone_timeout_ms,
            t.greeting_completion_timeout_ms
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_is_shown_and_no_secret() {
        let c = Config::from_toml(
            "[http]\napi_token = \"tok-SECRET-1\"\n\
             [app]\nurl = \"http://u:pw-SECRET-2@h.example.com/call\"\n\
             webhook_secret = \"SECRET-3\"\nstatus_hook = \"/status\"\n\
             [[carriers]]\nname = \"acme\"\ngateways = [\"sip:gw1.acme.net:5060\"]\n\
             username = \"acme-user\"\npassword = \"SECRET-4\"\ninbound = [\"198.51.100.0/24\"]\n\
             [[routes]]\nto = \"+1508*\"\napp_url = \"http://127.0.0.1:8080/boston\"\n\
             [registrar]\ndomain = \"sip.example.com\"\nnonce_secret = \"SECRET-5-0123456789\"\n\
             users = [{ name = \"alice\", password = \"SECRET-6\" }, { name = \"bob\", password = \"SECRET-7\" }]\n\
             [security]\nallow_from = [\"10.0.0.0/8\"]\n\
             [speech]\nstt_url = \"wss://stt.example.com/x\"\nstt_api_key = \"SECRET-8\"\n",
            "t.toml",
        )
        .unwrap();
        let text = c.summary().to_string();
        assert!(!text.contains("SECRET"), "{text}");
        for shown in [
            "sip: udp:127.0.0.1:5060, tcp:127.0.0.1:5060",
            "ports: 40000-49999",
            "threads: one per core",
            "  acme:",
            "gateways: sip:gw1.acme.net:5060",
            "strategy: priority (weights 1), probe_interval_s: 30, progress_timeout_ms: 0",
            "tech_prefix: none, callerid_prefix: none",
            "inbound: 198.51.100.0/24",
            "username: acme-user, password: <redacted>",
            "+1508* -> http://127.0.0.1:8080/boston",
            "users: 2 (alice, bob)",
            "allow_from: 10.0.0.0/8",
            "sip.rate_limit: 5000/s per source",
            "app.url: http://u:%3Credacted%3E@h.example.com/call",
            "app.status_hook: /status",
            "app.webhook_secret: <redacted>",
            "http.api_token: <redacted>",
            "nonce_secret: <redacted>",
            "stt_url: wss://stt.example.com/x",
            "stt_api_key: <redacted>",
        ] {
            assert!(text.contains(shown), "{shown:?} not in:\n{text}");
        }
    }
}
