//! dialplane's one configuration file (TOML)
//!
//! Every section has embedded defaults, so an empty file (or none) is a working configuration.
//! Unknown keys are rejected with their name and position, so a typo never passes silently.
//! Command-line flags override the file; the binary applies them after [`Config::from_toml`].
//! `dialplane.example.toml` at the repository root documents every key; a test keeps the two in
//! step. Later issues add their sections here (`[sip]`, `[media]`, `[http]`, `[app]`, ...).

use std::path::Path;

use serde::Deserialize;

mod dns;
mod edge;
mod rate;
mod redis;
mod reload;
mod speech;
mod summary;
pub use dns::DnsConfig;
pub use edge::{
    CarrierConfig, GatewayList, HttpConfig, NumberPattern, RouteConfig, SecurityConfig, Strategy,
    TeamsConfig,
};
pub use rate::RateLimit;
pub use redis::RedisConfig;
pub use reload::Reload;
pub use speech::SpeechConfig;
pub use summary::Summary;
pub(crate) use summary::url as redacted_url;

/// Why a configuration could not be loaded
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type; the message
    /// names the key and its line.
    #[error("config {path}: {message}")]
    Parse {
        /// The file (or `<string>`).
        path: String,
        /// toml's description, naming the key.
        message: String,
    },
    /// A value is well-formed but out of range; the message names the key.
    #[error("config {path}: {key}: {message}")]
    Invalid {
        /// The file (or `<string>`).
        path: String,
        /// Dotted key, e.g. `amd.tone_timeout_ms`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[log]`: log filtering.
    pub log: LogConfig,
    /// `[amd]`: answering-machine detection timers (jambonz's names and defaults).
    pub amd: AmdTimers,
    /// `[registrar]`: the SIP registrar's domain, users and expiry bounds.
    pub registrar: RegistrarConfig,
    /// `[http]`: the REST API and `/metrics` listener.
    pub http: HttpConfig,
    /// `[security]`: sources trusted to send calls; SIP rate limit.
    pub security: SecurityConfig,
    /// `[[carriers]]`: SIP trunks for phone numbers, in order of preference.
    pub carriers: Vec<CarrierConfig>,
    /// `[teams]`: Microsoft Teams Direct Routing.
    pub teams: TeamsConfig,
    /// `[[routes]]`: per-number call webhooks.
    pub routes: Vec<RouteConfig>,
    /// `[app]`: the control app (call webhook or static verb file) and its hooks.
    pub app: AppConfig,
    /// `[media]`: the RTP relay's address, port range, threads and ng listener.
    pub media: MediaSection,
    /// `[sip]`: SIP listeners, the advertised address and transport limits.
    pub sip: SipConfig,
    /// `[dns]`: name servers and caching for RFC 3263 resolution of SIP hosts.
    pub dns: DnsConfig,
    /// `[cdr]`: where call detail records go.
    pub cdr: CdrConfig,
    /// `[speech]`: the speech-to-text service of `transcribe`.
    pub speech: SpeechConfig,
    /// `[redis]`: the state shared by the instances of a cluster (`--redis`).
    pub redis: RedisConfig,
}

/// `[cdr]`: one JSON line per call leg once it is over ([`crate::cdr`])
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdrConfig {
    /// Appended to, one line per leg (`--cdr-file`).
    pub file: Option<std::path::PathBuf>,
    /// Each line is POSTed here too (an absolute http(s) URL), signed like every hook.
    pub webhook: Option<String>,
}

impl CdrConfig {
    /// Whether CDRs are written at all (a file or a webhook is set).
    pub fn enabled(&self) -> bool {
        self.file.is_some() || self.webhook.is_some()
    }
}

/// `[app]`: where calls get their verbs, and how hooks are sent
///
/// `url` (the call webhook) or `file` (static verbs for every call) must be given before
/// `dialplane serve` starts; `url` wins when both are. That check is [`AppConfig::source`], run
/// after the flags (`--app-url`, `--app`) are applied.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// The call webhook, an absolute http(s) URL (`--app-url`).
    pub url: Option<String>,
    /// A JSON verb file run for every call (`--app`).
    pub file: Option<std::path::PathBuf>,
    /// What relative hooks in `file` resolve against (absolute http(s) URL).
    pub hook_base_url: Option<String>,
    /// Signs every hook with `Jambonz-Signature` when set (`--webhook-secret`).
    pub webhook_secret: Option<String>,
    /// The call-status webhook (`--status-hook`); relative to `url` when relative.
    pub status_hook: Option<String>,
    /// The account sid in payloads and REST paths.
    pub account_sid: String,
}

/// Where calls get their verbs from
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSource<'a> {
    /// The call webhook.
    Url(&'a str),
    /// A static verb file.
    File(&'a Path),
}

impl AppConfig {
    /// The call webhook if set, else the static file; neither is a startup error
    pub fn source(&self) -> Result<AppSource<'_>, ConfigError> {
        match (&self.url, &self.file) {
            (Some(url), _) => Ok(AppSource::Url(url)),
            (None, Some(file)) => Ok(AppSource::File(file)),
            (None, None) => Err(ConfigError::Invalid {
                path: "configuration".into(),
                key: "app.url",
                message: "no control app: set app.url (--app-url) or app.file (--app)".into(),
            }),
        }
    }
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("url", &self.url)
            .field("file", &self.file)
            .field("hook_base_url", &self.hook_base_url)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("status_hook", &self.status_hook)
            .field("account_sid", &self.account_sid)
            .finish()
    }
}

/// The flags of `dialplane serve` that override the file; `None` keeps the file's value
///
/// Holds the flags of the sections present so far (`--http`, `--api-token`, `--app`,
/// `--app-url`, `--webhook-secret`, `--status-hook`); `--sip`, `--interface`, `--port-min`,
/// `--port-max`, `--num-threads` and `--external-ip` join it with their sections.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ServeOverrides {
    /// `--http ADDR`: `[http] listen`.
    pub http: Option<std::net::SocketAddr>,
    /// `--api-token TOKEN`: `[http] api_token`.
    pub api_token: Option<String>,
    /// `--app FILE.json`: `[app] file`.
    pub app_file: Option<std::path::PathBuf>,
    /// `--app-url URL`: `[app] url`.
    pub app_url: Option<String>,
    /// `--webhook-secret SECRET`: `[app] webhook_secret`.
    pub webhook_secret: Option<String>,
    /// `--status-hook URL`: `[app] status_hook`.
    pub status_hook: Option<String>,
}

impl Config {
    /// Applies command-line flags over the file's values; call [`Config::validate`] after
    pub fn apply_overrides(&mut self, overrides: ServeOverrides) {
        let ServeOverrides {
            http,
            api_token,
            app_file,
            app_url,
            webhook_secret,
            status_hook,
        } = overrides;
        if let Some(listen) = http {
            self.http.listen = listen;
        }
        if api_token.is_some() {
            self.http.api_token = api_token;
        }
        let app = &mut self.app;
        for (flag, field) in [
            (app_url, &mut app.url),
            (webhook_secret, &mut app.webhook_secret),
            (status_hook, &mut app.status_hook),
        ] {
            if flag.is_some() {
                *field = flag;
            }
        }
        if app_file.is_some() {
            app.file = app_file;
        }
    }
}

/// `[media]`: the media plane (rtpengine's flag names, with `_` for `-`)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSection {
    /// Address the relay binds and advertises in SDP (`--interface`).
    pub interface: std::net::IpAddr,
    /// Lowest RTP port (`--port-min`).
    pub port_min: u16,
    /// Highest RTP port (`--port-max`).
    pub port_max: u16,
    /// Shard threads, 0 = one per core (`--num-threads`).
    pub num_threads: usize,
    /// Where `dialplane media` listens for the ng protocol (`--listen-ng`).
    pub listen_ng: std::net::SocketAddr,
    /// Seconds without a packet on a leg before its call is hung up.
    pub media_timeout_s: u32,
}

impl Default for MediaSection {
    fn default() -> Self {
        MediaSection {
            interface: std::net::Ipv4Addr::LOCALHOST.into(),
            port_min: 40000,
            port_max: 49999,
            num_threads: 0,
            listen_ng: (std::net::Ipv4Addr::LOCALHOST, 2223).into(),
            media_timeout_s: 60,
        }
    }
}

/// `[sip]`: where SIP is heard, what is advertised, and the limits that protect the transports
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Listeners as `transport:address:port` (`udp:127.0.0.1:5060`, `tcp:[::1]:5060`).
    pub listen: Vec<String>,
    /// Address advertised in Via and Contact instead of the listener's (e.g. behind 1:1 NAT).
    pub external_ip: Option<std::net::IpAddr>,
    /// Largest message accepted on any transport, head and body (bytes); larger → 413 or drop.
    pub max_message_size: usize,
    /// A started TCP/TLS message (or TLS handshake) must complete within this (milliseconds).
    pub message_timeout_ms: u64,
    /// A TCP/TLS connection with no traffic for this long is closed (seconds).
    pub idle_timeout_s: u64,
    /// Inbound plus outbound TCP/TLS connections kept at most; more are refused.
    pub max_connections: usize,
    /// New requests (out of any dialog: INVITE, REGISTER, OPTIONS…) accepted from one source
    /// address: a token bucket ([`crate::transport`] says what happens beyond it).
    pub rate_limit: RateLimit,
    /// `[sip.tls]`: the TLS listener, absent by default.
    pub tls: Option<SipTlsConfig>,
}

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            listen: vec!["udp:127.0.0.1:5060".into(), "tcp:127.0.0.1:5060".into()],
            external_ip: None,
            max_message_size: 65_535,
            message_timeout_ms: 5_000,
            idle_timeout_s: 600,
            max_connections: 4_096,
            rate_limit: RateLimit::per_second(5_000),
            tls: None,
        }
    }
}

/// `[sip.tls]`: one TLS listener with its certificate chain and key (PEM files)
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipTlsConfig {
    /// Address and port, e.g. `127.0.0.1:5061` or `[::1]:5061`.
    pub listen: std::net::SocketAddr,
    /// PEM certificate chain, leaf first.
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

/// One entry of `sip.listen`, parsed
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SipListen {
    /// `udp` or `tcp` (TLS has its own `[sip.tls]` table).
    pub transport: crate::registrar::Transport,
    /// Address and port.
    pub addr: std::net::SocketAddr,
}

impl SipListen {
    /// Parses `udp:ADDR:PORT` or `tcp:ADDR:PORT` (IPv6 in brackets)
    pub fn parse(s: &str) -> Option<SipListen> {
        use crate::registrar::Transport;
        let (t, addr) = s.split_once(':')?;
        let transport = match t.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            _ => return None,
        };
        Some(SipListen {
            transport,
            addr: addr.parse().ok()?,
        })
    }
}

impl SipConfig {
    /// The parsed `listen` entries (after [`Config::validate`] every entry parses)
    pub fn listeners(&self) -> Vec<SipListen> {
        self.listen
            .iter()
            .filter_map(|s| SipListen::parse(s))
            .collect()
    }
}

/// `[registrar]`: who may REGISTER, in which domain, for how long
///
/// An empty `domain` (the default) means no registrar domain: every REGISTER is answered 404.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// The domain (and digest realm) whose addresses of record we keep, e.g. `sip.example.com`.
    pub domain: String,
    /// The users allowed to register, `[{ name, password }]`.
    pub users: Vec<RegistrarUser>,
    /// Shorter requested expiries are refused with 423 Interval Too Brief (seconds).
    pub min_expires: u32,
    /// Longer requested expiries are shortened to this (seconds).
    pub max_expires: u32,
    /// The expiry when the request names none (seconds).
    pub default_expires: u32,
    /// Secret for the stateless digest nonces; every instance of a cluster needs the same one.
    /// When absent the binary generates a random one at startup (one instance only).
    pub nonce_secret: Option<String>,
    /// Failed digest attempts from one source address, or for one username, within
    /// `auth_window_s` that lock it out ([`crate::auth_throttle`]); 0 turns this off.
    pub max_auth_failures: u32,
    /// How far back failed attempts count (seconds).
    pub auth_window_s: u64,
    /// How long a lockout lasts: REGISTERs get 403 (seconds).
    pub auth_lockout_s: u64,
}

impl RegistrarConfig {
    /// The brute-force throttle's settings
    pub fn throttle(&self) -> crate::auth_throttle::ThrottleConfig {
        crate::auth_throttle::ThrottleConfig {
            max_failures: self.max_auth_failures,
            window: std::time::Duration::from_secs(self.auth_window_s),
            lockout: std::time::Duration::from_secs(self.auth_lockout_s),
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            domain: String::new(),
            users: Vec::new(),
            min_expires: 60,
            max_expires: 3600,
            default_expires: 3600,
            nonce_secret: None,
            max_auth_failures: 10,
            auth_window_s: 60,
            auth_lockout_s: 300,
        }
    }
}

impl std::fmt::Debug for RegistrarConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarConfig")
            .field("domain", &self.domain)
            .field("users", &self.users)
            .field("min_expires", &self.min_expires)
            .field("max_expires", &self.max_expires)
            .field("default_expires", &self.default_expires)
            .field("max_auth_failures", &self.max_auth_failures)
            .field("auth_window_s", &self.auth_window_s)
            .field("auth_lockout_s", &self.auth_lockout_s)
            .field(
                "nonce_secret",
                &self.nonce_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// One entry of `registrar.users`
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarUser {
    /// The user part of the address of record and the digest username.
    pub name: String,
    /// The digest password.
    pub password: String,
}

impl std::fmt::Debug for RegistrarUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarUser")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `dialplane=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[amd]`: the default timers of answering-machine detection
///
/// Names are jambonz's, in snake_case; the dial verb's `amd.timers` override them per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmdTimers {
    /// No speech at all for this long after answer: decide `silence`.
    pub no_speech_timeout_ms: u32,
    /// No decision by this time: give up (`amd_decision_timeout`).
    pub decision_timeout_ms: u32,
    /// How long after answer to keep listening for a beep.
    pub tone_timeout_ms: u32,
    /// Silence that ends a machine's greeting.
    pub greeting_completion_timeout_ms: u32,
}

impl Default for AmdTimers {
    fn default() -> Self {
        // The detector's own defaults are the one source of these numbers.
        let d = dsp::amd::AmdConfig::default();
        Self {
            no_speech_timeout_ms: d.no_speech_timeout_ms,
            decision_timeout_ms: d.decision_timeout_ms,
            tone_timeout_ms: d.tone_timeout_ms,
            greeting_completion_timeout_ms: d.greeting_completion_timeout_ms,
        }
    }
}

impl From<AmdTimers> for dsp::amd::AmdConfig {
    fn from(t: AmdTimers) -> Self {
        Self {
            no_speech_timeout_ms: t.no_speech_timeout_ms,
            decision_timeout_ms: t.decision_timeout_ms,
            tone_timeout_ms: t.tone_timeout_ms,
            greeting_completion_timeout_ms: t.greeting_completion_timeout_ms,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = Self::read(path)?;
        config.validate(&path.display().to_string())?;
        Ok(config)
    }

    /// Reads and parses a TOML file without checking values (see [`Config::problems`])
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config = Self::parse(text, origin)?;
        config.validate(origin)?;
        Ok(config)
    }

    fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
    }

    /// Checks value ranges (after flags have overridden the file); `origin` names the source.
    /// The first of [`Config::problems`].
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        match self.problems(origin).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every section's first problem, so that one run of `check-config` shows them all
    pub fn problems(&self, origin: &str) -> Vec<ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            message: message.to_string(),
        };
        [
            self.validate_amd(&invalid),
            self.validate_media(&invalid),
            self.validate_registrar(&invalid),
            edge::validate(self, &invalid),
            self.validate_app(&invalid),
            dns::validate(&self.dns, &invalid),
            speech::validate(&self.speech, &invalid),
            self.validate_sip(&invalid),
            redis::validate(self, &invalid),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    fn validate_amd(
        &self,
        invalid: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let t = &self.amd;
        for (key, value) in [
            ("amd.no_speech_timeout_ms", t.no_speech_timeout_ms),
            ("amd.decision_timeout_ms", t.decision_timeout_ms),
            ("amd.tone_timeout_ms", t.tone_timeout_ms),
            (
                "amd.greeting_completion_timeout_ms",
                t.greeting_completion_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if t.no_speech_timeout_ms > t.decision_timeout_ms {
            return Err(invalid(
                "amd.no_speech_timeout_ms",
                "must not exceed amd.decision_timeout_ms",
            ));
        }
        Ok(())
    }

    fn validate_media(
        &self,
        invalid: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let m = &self.media;
        if m.port_min == 0 {
            return Err(invalid("media.port_min", "must be greater than 0"));
        }
        if m.port_max <= m.port_min {
            return Err(invalid(
                "media.port_max",
                "must be greater than media.port_min",
            ));
        }
        if m.media_timeout_s == 0 {
            return Err(invalid("media.media_timeout_s", "must be at least 1"));
        }
        Ok(())
    }

    fn validate_app(
        &self,
        invalid: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let a = &self.app;
        let absolute =
            |u: &str| url::Url::parse(u).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
        for (key, value) in [("app.url", &a.url), ("app.hook_base_url", &a.hook_base_url)] {
            if value.as_deref().is_some_and(|u| !absolute(u)) {
                return Err(invalid(key, "must be an absolute http:// or https:// URL"));
            }
        }
        if let Some(hook) = &a.status_hook {
            let relative_ok =
                hook.starts_with('/') && (a.url.is_some() || a.hook_base_url.is_some());
            if !absolute(hook) && !relative_ok {
                return Err(invalid(
                    "app.status_hook",
                    "must be an absolute http(s) URL, or a path when app.url or app.hook_base_url is set",
                ));
            }
        }
        if a.webhook_secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(invalid("app.webhook_secret", "must not be empty"));
        }
        if a.file.as_ref().is_some_and(|f| f.as_os_str().is_empty()) {
            return Err(invalid("app.file", "must not be empty"));
        }
        if self.cdr.webhook.as_deref().is_some_and(|u| !absolute(u)) {
            return Err(invalid(
                "cdr.webhook",
                "must be an absolute http:// or https:// URL",
            ));
        }
        if self
            .cdr
            .file
            .as_ref()
            .is_some_and(|f| f.as_os_str().is_empty())
        {
            return Err(invalid("cdr.file", "must not be empty"));
        }
        Ok(())
    }

    fn validate_sip(
        &self,
        invalid: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let s = &self.sip;
        if let Some(bad) = s.listen.iter().find(|l| SipListen::parse(l).is_none()) {
            return Err(invalid(
                "sip.listen",
                &format!("{bad:?}: expected udp:ADDR:PORT or tcp:ADDR:PORT"),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&s.max_message_size) {
            return Err(invalid(
                "sip.max_message_size",
                "must lie between 1024 and 16777216",
            ));
        }
        for (key, value) in [
            ("sip.message_timeout_ms", s.message_timeout_ms),
            ("sip.idle_timeout_s", s.idle_timeout_s),
            ("sip.max_connections", s.max_connections as u64),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        Ok(())
    }

    fn validate_registrar(
        &self,
        invalid: &dyn Fn(&'static str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let r = &self.registrar;
        if r.domain.trim() != r.domain || r.domain.contains(|c: char| c.is_whitespace()) {
            return Err(invalid("registrar.domain", "must not contain whitespace"));
        }
        if r.domain.is_empty() && !r.users.is_empty() {
            return Err(invalid(
                "registrar.domain",
                "must be set when registrar.users is not empty",
            ));
        }
        if r.min_expires == 0 {
            return Err(invalid("registrar.min_expires", "must be greater than 0"));
        }
        if r.max_expires < r.min_expires {
            return Err(invalid(
                "registrar.max_expires",
                "must not be less than registrar.min_expires",
            ));
        }
        if !(r.min_expires..=r.max_expires).contains(&r.default_expires) {
            return Err(invalid(
                "registrar.default_expires",
                "must lie between registrar.min_expires and registrar.max_expires",
            ));
        }
        if r.nonce_secret.as_ref().is_some_and(|s| s.len() < 16) {
            return Err(invalid(
                "registrar.nonce_secret",
                "must be at least 16 bytes long",
            ));
        }
        for (i, u) in r.users.iter().enumerate() {
            let bad_name = |c: char| c.is_whitespace() || c.is_control() || c == '@' || c == ':';
            if u.name.is_empty() || u.name.contains(bad_name) {
                return Err(invalid(
                    "registrar.users.name",
                    &format!(
                        "user {}: must be non-empty, without whitespace, '@' or ':'",
                        i + 1
                    ),
                ));
            }
            if u.password.is_empty() {
                return Err(invalid(
                    "registrar.users.password",
                    &format!("user {:?}: must not be empty", u.name),
                ));
            }
            if r.users[..i].iter().any(|v| v.name == u.name) {
                return Err(invalid(
                    "registrar.users.name",
                    &format!("user {:?} is listed twice", u.name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = Config::from_toml("", "<string>").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.amd.no_speech_timeout_ms, 5000);
        assert_eq!(c.amd.decision_timeout_ms, 15000);
        assert_eq!(c.amd.tone_timeout_ms, 20000);
        assert_eq!(c.amd.greeting_completion_timeout_ms, 2000);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn example_file_parses_and_documents_the_defaults() {
        let text = include_str!("../../dialplane.example.toml");
        assert_eq!(
            Config::from_toml(text, "example").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn cdr_section() {
        let c = Config::from_toml(
            "[cdr]\nfile = \"/var/log/cdr.jsonl\"\nwebhook = \"http://127.0.0.1:9/cdr\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.cdr.file.as_deref(), Some(Path::new("/var/log/cdr.jsonl")));
        assert_eq!(c.cdr.webhook.as_deref(), Some("http://127.0.0.1:9/cdr"));
        let e = Config::from_toml("[cdr]\nwebhook = \"/cdr\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("cdr.webhook"), "{e}");
        let e = Config::from_toml("[cdr]\nfiel = \"x\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("fiel"), "{e}");
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = Config::from_toml("[amd]\ntone_timout_ms = 5\n", "x.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("tone_timout_ms"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
        let e = Config::from_toml("[amdd]\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("amdd"), "{e}");
    }

    #[test]
    fn wrong_types_and_ranges_name_the_key() {
        let e = Config::from_toml("[amd]\ntone_timeout_ms = \"x\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("tone_timeout_ms"), "{e}");
        let e = Config::from_toml("[amd]\ndecision_timeout_ms = 0\n", "x").unwrap_err();
        assert!(e.to_string().contains("amd.decision_timeout_ms"), "{e}");
        let e = Config::from_toml("[amd]\nno_speech_timeout_ms = 20000\n", "x").unwrap_err();
        assert!(e.to_string().contains("amd.no_speech_timeout_ms"), "{e}");
    }

    #[test]
    fn registrar_section() {
        let c = Config::default();
        assert_eq!(c.registrar.domain, "");
        assert!(c.registrar.users.is_empty());
        assert_eq!(
            (
                c.registrar.min_expires,
                c.registrar.max_expires,
                c.registrar.default_expires
            ),
            (60, 3600, 3600)
        );
        assert_eq!(c.registrar.nonce_secret, None);
        let c = Config::from_toml(
            "[registrar]\ndomain = \"sip.example.com\"\nmin_expires = 30\n\
             users = [{ name = \"alice\", password = \"pw\" }]\n\
             nonce_secret = \"0123456789abcdef0123\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.registrar.users[0].name, "alice");
        assert_eq!(c.registrar.min_expires, 30);
        assert!(
            !format!("{c:?}").contains("pw\""),
            "passwords stay out of Debug"
        );
        assert!(!format!("{c:?}").contains("0123456789abcdef0123"));
        for (text, key) in [
            (
                "[registrar]\nusers = [{ name = \"a\", password = \"p\" }]\n",
                "registrar.domain",
            ),
            ("[registrar]\nmin_expires = 0\n", "registrar.min_expires"),
            ("[registrar]\nmax_expires = 10\n", "registrar.max_expires"),
            (
                "[registrar]\ndefault_expires = 30\n",
                "registrar.default_expires",
            ),
            (
                "[registrar]\nnonce_secret = \"short\"\n",
                "registrar.nonce_secret",
            ),
            (
                "[registrar]\ndomain = \"d\"\nusers = [{ name = \"a b\", password = \"p\" }]\n",
                "registrar.users.name",
            ),
            (
                "[registrar]\ndomain = \"d\"\nusers = [{ name = \"a\", password = \"\" }]\n",
                "registrar.users.password",
            ),
            (
                "[registrar]\ndomain = \"d\"\nusers = [{ name = \"a\", password = \"p\" }, \
                 { name = \"a\", password = \"q\" }]\n",
                "registrar.users.name",
            ),
            (
                "[registrar]\nusers = [{ name = \"a\", pasword = \"p\" }]\n",
                "pasword",
            ),
            ("[registrar]\nusers = [{ name = \"a\" }]\n", "password"),
            ("[registrar]\ndomian = \"d\"\n", "domian"),
        ] {
            let e = Config::from_toml(text, "x").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn app_section() {
        let c = Config::default();
        assert_eq!(c.app, AppConfig::default());
        assert!(c.app.source().unwrap_err().to_string().contains("app.url"));
        let c = Config::from_toml(
            "[app]\nurl = \"http://127.0.0.1:8080/call\"\nfile = \"app.json\"\n\
             webhook_secret = \"s3cret-value\"\nstatus_hook = \"/status\"\n\
             account_sid = \"acct-1\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            c.app.source().unwrap(),
            AppSource::Url("http://127.0.0.1:8080/call")
        );
        assert!(
            !format!("{c:?}").contains("s3cret-value"),
            "secrets stay out of Debug"
        );
        let c = Config::from_toml(
            "[app]\nfile = \"app.json\"\nhook_base_url = \"https://h.example.com/\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(
            c.app.source().unwrap(),
            AppSource::File(Path::new("app.json"))
        );
        for (text, key) in [
            ("[app]\nurl = \"/call\"\n", "app.url"),
            ("[app]\nurl = \"ftp://h/call\"\n", "app.url"),
            (
                "[app]\nhook_base_url = \"h.example.com\"\n",
                "app.hook_base_url",
            ),
            ("[app]\nstatus_hook = \"/status\"\n", "app.status_hook"),
            ("[app]\nwebhook_secret = \"\"\n", "app.webhook_secret"),
            ("[app]\nfile = \"\"\n", "app.file"),
            ("[app]\nurll = \"http://h/\"\n", "urll"),
            ("[app]\naccount_sid = 5\n", "account_sid"),
        ] {
            let e = Config::from_toml(text, "x").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn sip_section() {
        use crate::registrar::Transport;
        let c = Config::default();
        assert_eq!(
            c.sip.listeners(),
            [
                SipListen {
                    transport: Transport::Udp,
                    addr: "127.0.0.1:5060".parse().unwrap()
                },
                SipListen {
                    transport: Transport::Tcp,
                    addr: "127.0.0.1:5060".parse().unwrap()
                }
            ]
        );
        let c = Config::from_toml(
            "[sip]\nlisten = [\"udp:[::1]:5070\"]\nexternal_ip = \"203.0.113.5\"\n\
             [sip.tls]\nlisten = \"127.0.0.1:5061\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.sip.listeners()[0].addr, "[::1]:5070".parse().unwrap());
        assert_eq!(c.sip.external_ip, Some("203.0.113.5".parse().unwrap()));
        assert_eq!(c.sip.tls.unwrap().listen.port(), 5061);
        for (text, key) in [
            ("[sip]\nlisten = [\"sctp:1.2.3.4:5\"]\n", "sip.listen"),
            ("[sip]\nlisten = [\"udp:nohost\"]\n", "sip.listen"),
            ("[sip]\nmax_message_size = 10\n", "sip.max_message_size"),
            ("[sip]\nmessage_timeout_ms = 0\n", "sip.message_timeout_ms"),
            ("[sip]\nlisen = []\n", "lisen"),
            (
                "[sip.tls]\nlisten = \"127.0.0.1:5061\"\ncert = \"c\"\n",
                "key",
            ),
            (
                "[sip.tls]\nlisten = \"127.0.0.1:5061\"\ncert = \"c\"\nkey = \"k\"\nca = \"x\"\n",
                "ca",
            ),
        ] {
            let e = Config::from_toml(text, "x").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn media_section() {
        let c = Config::default();
        assert_eq!(c.media.listen_ng.to_string(), "127.0.0.1:2223");
        assert_eq!((c.media.port_min, c.media.port_max), (40000, 49999));
        let c = Config::from_toml(
            "[media]\ninterface = \"::1\"\nport_min = 30000\nport_max = 30999\nnum_threads = 2\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.media.interface.to_string(), "::1");
        assert_eq!(
            (c.media.port_min, c.media.port_max, c.media.num_threads),
            (30000, 30999, 2)
        );
        for (text, key) in [
            ("[media]\nport_min = 0\n", "media.port_min"),
            (
                "[media]\nport_min = 5000\nport_max = 4000\n",
                "media.port_max",
            ),
            ("[media]\ninterface = \"localhost\"\n", "interface"),
            ("[media]\nmedia_timeout_s = 0\n", "media.media_timeout_s"),
            ("[media]\nlisten = \"127.0.0.1:1\"\n", "listen"),
        ] {
            let e = Config::from_toml(text, "x").unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn app_flags_override_the_file() {
        let mut c = Config::from_toml("[app]\nfile = \"a.json\"\nwebhook_secret = \"file\"\n", "x")
            .unwrap();
        c.apply_overrides(ServeOverrides::default());
        assert_eq!(
            c.app.source().unwrap(),
            AppSource::File(Path::new("a.json"))
        );
        c.apply_overrides(ServeOverrides {
            app_file: Some("b.json".into()),
            app_url: Some("http://127.0.0.1:9000/call".into()),
            webhook_secret: Some("flag".into()),
            status_hook: Some("/status".into()),
            ..ServeOverrides::default()
        });
        c.validate("command line").unwrap();
        assert_eq!(
            c.app.source().unwrap(),
            AppSource::Url("http://127.0.0.1:9000/call"),
            "--app-url wins over --app"
        );
        assert_eq!(c.app.file.as_deref(), Some(Path::new("b.json")));
        assert_eq!(c.app.webhook_secret.as_deref(), Some("flag"));
        assert_eq!(c.app.status_hook.as_deref(), Some("/status"));
        c.apply_overrides(ServeOverrides {
            app_url: Some("not a url".into()),
            ..ServeOverrides::default()
        });
        let e = c.validate("command line").unwrap_err().to_string();
        assert!(e.contains("app.url") && e.contains("command line"), "{e}");
    }

    #[test]
    fn problems_lists_every_section() {
        let c = Config::parse(
            "[amd]\ndecision_timeout_ms = 0\n[media]\nport_min = 0\n\
             [app]\nurl = \"/call\"\n",
            "x",
        )
        .unwrap();
        let keys: Vec<String> = c.problems("x").iter().map(ToString::to_string).collect();
        assert_eq!(keys.len(), 3, "{keys:?}");
        for (e, key) in keys
            .iter()
            .zip(["amd.decision", "media.port_min", "app.url"])
        {
            assert!(e.contains(key), "{e}");
        }
        assert_eq!(c.validate("x").unwrap_err().to_string(), keys[0]);
    }

    #[test]
    fn overrides_apply() {
        let c = Config::from_toml(
            "[amd]\ntone_timeout_ms = 30000\n[log]\nlevel = \"debug\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.amd.tone_timeout_ms, 30000);
        assert_eq!(c.amd.decision_timeout_ms, 15000);
        assert_eq!(c.log.level, "debug");
    }
}
