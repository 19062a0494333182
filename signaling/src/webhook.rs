//! HTTP hooks to the control app, the way jambonz sends them
//!
//! - POST with a compact JSON body, or GET with the payload's flat (top-level, non-object) fields
//!   as query arguments.
//! - `Jambonz-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<json>")>` on every hook when
//!   a secret is set; `<json>` is the POST body (for GET, the JSON a POST would have carried).
//! - HTTP basic auth from the hook's `{username, password}`.
//! - Relative hook URLs resolve against the call webhook's URL (RFC 3986 reference resolution:
//!   `/action` keeps the scheme, host and port); a relative hook without credentials of its own
//!   uses the call webhook's, as jambonz does.
//! - A timeout per attempt (5 s by default) and retries per the URL fragment
//!   `#rc=N&rp=4xx,5xx,ct,rt` (jambonz's: `rc` retries, default 0, at most 5; `rp` which
//!   failures are retried, default `ct`; `all` means every class). The fragment is never sent.
//!
//! Metrics: `dialplane_webhook_requests_total{outcome}` per attempt (`ok`, `4xx`, `5xx`,
//! `other_status`, `connect_error`, `timeout`, `error`) and `dialplane_webhook_latency_seconds`.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use url::Url;

use crate::verbs::{self, Credentials, Hook, HookMethod, Verb, VerbError};

/// Most retries a hook may ask for (jambonz's limit)
pub const MAX_RETRIES: u32 = 5;

/// Larger answers are refused: a verb list is a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Why a hook failed
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// The hook's URL cannot be used.
    #[error("hook url {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The server could not be reached.
    #[error("hook {url}: cannot connect after {attempts} attempt(s): {message}")]
    Connect {
        /// The URL (without fragment).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        message: String,
    },
    /// The server did not answer in time.
    #[error("hook {url}: no answer in time after {attempts} attempt(s)")]
    Timeout {
        /// The URL (without fragment).
        url: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The server answered with a status outside 2xx.
    #[error("hook {url}: HTTP status {status} after {attempts} attempt(s)")]
    Status {
        /// The URL (without fragment).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last status.
        status: u16,
    },
    /// Another transport error (e.g. the connection broke mid-response).
    #[error("hook {url}: {message}")]
    Transport {
        /// The URL (without fragment).
        url: String,
        /// What happened.
        message: String,
    },
    /// A 2xx answer whose body is not a verb list.
    #[error("hook {url}: bad verbs in the answer: {source}")]
    Verbs {
        /// The URL (without fragment).
        url: String,
        /// Which verb and attribute.
        source: VerbError,
    },
}

impl WebhookError {
    /// The HTTP status when the server answered outside 2xx (a referHook's answer is relayed)
    pub fn status(&self) -> Option<u16> {
        match self {
            WebhookError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// What relative hooks resolve against: the call webhook's URL and credentials
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookBase {
    /// An absolute http(s) URL.
    pub url: Url,
    /// Used by relative hooks that have none of their own.
    pub auth: Option<Credentials>,
}

impl HookBase {
    /// The base a call webhook gives its relative hooks.
    pub fn from_hook(hook: &Hook) -> Result<Self, WebhookError> {
        Ok(Self {
            url: absolute_http_url(&hook.url)?,
            auth: hook.auth.clone(),
        })
    }
}

fn absolute_http_url(s: &str) -> Result<Url, WebhookError> {
    let bad = |reason: &str| WebhookError::BadUrl {
        url: s.to_string(),
        reason: reason.to_string(),
    };
    let url = Url::parse(s).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https are supported"));
    }
    Ok(url)
}

/// Failure classes of the retry policy
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryPolicy {
    /// Retries after the first attempt, at most [`MAX_RETRIES`].
    pub count: u32,
    /// Retry on a 4xx answer.
    pub on_4xx: bool,
    /// Retry on a 5xx answer.
    pub on_5xx: bool,
    /// Retry when the connection cannot be made (refused, reset, timed out).
    pub on_connect: bool,
    /// Retry when connected but no answer came in time.
    pub on_timeout: bool,
}

impl RetryPolicy {
    /// Parses `rc=N&rp=...` (a URL fragment without `#`)
    pub fn from_fragment(fragment: &str) -> Result<Self, String> {
        let mut p = RetryPolicy {
            on_connect: true,
            ..Default::default()
        };
        let mut classes: Option<&str> = None;
        for pair in fragment.split('&').filter(|s| !s.is_empty()) {
            match pair.split_once('=') {
                Some(("rc", n)) => {
                    let n: u32 = n.parse().map_err(|_| format!("rc={n} is not a number"))?;
                    p.count = n.min(MAX_RETRIES);
                }
                Some(("rp", list)) => classes = Some(list),
                // Other fragments belong to the app, not to us.
                _ => {}
            }
        }
        if let Some(list) = classes {
            p.on_connect = false;
            for class in list.split(',') {
                match class {
                    "4xx" => p.on_4xx = true,
                    "5xx" => p.on_5xx = true,
                    "ct" => p.on_connect = true,
                    "rt" => p.on_timeout = true,
                    "all" => {
                        (p.on_4xx, p.on_5xx, p.on_connect, p.on_timeout) = (true, true, true, true)
                    }
                    other => {
                        return Err(format!(
                            "rp: unknown class {other:?} (expected 4xx, 5xx, ct, rt or all)"
                        ));
                    }
                }
            }
        }
        Ok(p)
    }
}

/// Where and how one hook goes, after resolution
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedHook {
    /// Absolute URL without the fragment.
    pub url: Url,
    /// GET or POST.
    pub method: HookMethod,
    /// Basic auth.
    pub auth: Option<Credentials>,
    /// From the fragment.
    pub retry: RetryPolicy,
}

/// Resolves a hook against the call webhook (for relative URLs) and reads its retry fragment
pub fn resolve(hook: &Hook, base: Option<&HookBase>) -> Result<ResolvedHook, WebhookError> {
    let bad = |reason: String| WebhookError::BadUrl {
        url: hook.url.clone(),
        reason,
    };
    let (mut url, inherited) = match Url::parse(&hook.url) {
        Ok(_) => (absolute_http_url(&hook.url)?, None),
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = base.ok_or_else(|| bad("relative, and there is no base URL".into()))?;
            let url = base.url.join(&hook.url).map_err(|e| bad(e.to_string()))?;
            (url, base.auth.clone())
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let retry = RetryPolicy::from_fragment(url.fragment().unwrap_or("")).map_err(bad)?;
    url.set_fragment(None);
    Ok(ResolvedHook {
        url,
        method: hook.method,
        auth: hook.auth.clone().or(inherited),
        retry,
    })
}

/// `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
pub fn signature(secret: &str, unix_time: u64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{unix_time}.").as_bytes());
    mac.update(body.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    format!("t={unix_time},v1={hex}")
}

/// Settings of a [`WebhookClient`]
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// Signs every hook when set.
    pub secret: Option<String>,
    /// Per attempt, connect included.
    pub timeout: Duration,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        Self {
            secret: None,
            timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for WebhookOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookOptions")
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A 2xx answer
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookReply {
    /// Where the hook went (resolved, without the fragment).
    pub url: Url,
    /// The status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
    /// Attempts it took.
    pub attempts: u32,
}

/// Sends hooks; one per process (it pools connections)
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    options: WebhookOptions,
}

/// How one attempt failed
enum Attempt {
    Connect(String),
    Timeout,
    Status(u16),
    Other(String),
}

/// The HTTP client of webhooks and media-file fetches: `timeout` for connecting and for the
/// whole request, at most 5 redirects, our User-Agent.
pub(crate) fn http_client(timeout: std::time::Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("dialplane/", env!("CARGO_PKG_VERSION")))
        .build()
}

impl WebhookClient {
    /// A client with these options
    pub fn new(options: WebhookOptions) -> Result<Self, WebhookError> {
        let http = http_client(options.timeout).map_err(|e| WebhookError::Transport {
            url: String::new(),
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self { http, options })
    }

    /// Sends `payload` to `hook`, retrying as its fragment says; `unix_time` is the signature's
    /// clock. Ok only for a 2xx answer.
    pub async fn send<P: Serialize + ?Sized>(
        &self,
        hook: &Hook,
        base: Option<&HookBase>,
        payload: &P,
        unix_time: u64,
    ) -> Result<HookReply, WebhookError> {
        let target = resolve(hook, base)?;
        let shown = crate::redact::url_without_password(&target.url);
        let json = serde_json::to_string(payload).map_err(|e| WebhookError::Transport {
            url: shown.clone(),
            message: format!("cannot serialize the payload: {e}"),
        })?;
        let url = match target.method {
            HookMethod::Post => target.url.clone(),
            HookMethod::Get => with_query(target.url.clone(), &json),
        };
        let signature = self
            .options
            .secret
            .as_deref()
            .map(|secret| signature(secret, unix_time, &json));
        let p = target.retry;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let started = Instant::now();
            let result = self
                .attempt(&target, url.clone(), &json, signature.as_deref())
                .await;
            metrics::histogram!("dialplane_webhook_latency_seconds")
                .record(started.elapsed().as_secs_f64());
            let outcome = match &result {
                Ok(_) => "ok",
                Err(Attempt::Status(s)) if (400..500).contains(s) => "4xx",
                Err(Attempt::Status(s)) if (500..600).contains(s) => "5xx",
                Err(Attempt::Status(_)) => "other_status",
                Err(Attempt::Connect(_)) => "connect_error",
                Err(Attempt::Timeout) => "timeout",
                Err(Attempt::Other(_)) => "error",
            };
            metrics::counter!("dialplane_webhook_requests_total", "outcome" => outcome)
                .increment(1);
            let failure = match result {
                Ok((status, body)) => {
                    return Ok(HookReply {
                        url: target.url,
                        status,
                        body,
                        attempts,
                    });
                }
                Err(f) => f,
            };
            let retry = match &failure {
                Attempt::Status(s) => {
                    (p.on_4xx && (400..500).contains(s)) || (p.on_5xx && (500..600).contains(s))
                }
                Attempt::Connect(_) => p.on_connect,
                Attempt::Timeout => p.on_timeout,
                Attempt::Other(_) => false,
            };
            if retry && attempts <= p.count {
                tracing::debug!(url = %shown, attempts, outcome, "hook failed, retrying");
                continue;
            }
            let url = shown;
            return Err(match failure {
                Attempt::Connect(message) => WebhookError::Connect {
                    url,
                    attempts,
                    message,
                },
                Attempt::Timeout => WebhookError::Timeout { url, attempts },
                Attempt::Status(status) => WebhookError::Status {
                    url,
                    attempts,
                    status,
                },
                Attempt::Other(message) => WebhookError::Transport { url, message },
            });
        }
    }

    /// Sends a hook whose answer is a verb list (call webhook, actionHook); an empty body or
    /// `[]` gives no verbs
    pub async fn fetch_verbs<P: Serialize + ?Sized>(
        &self,
        hook: &Hook,
        base: Option<&HookBase>,
        payload: &P,
        unix_time: u64,
    ) -> Result<Vec<Verb>, WebhookError> {
        let reply = self.send(hook, base, payload, unix_time).await?;
        let text = String::from_utf8_lossy(&reply.body);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        verbs::parse_app(&text).map_err(|source| WebhookError::Verbs {
            url: reply.url.to_string(),
            source,
        })
    }

    async fn attempt(
        &self,
        target: &ResolvedHook,
        url: Url,
        json: &str,
        signature: Option<&str>,
    ) -> Result<(u16, Vec<u8>), Attempt> {
        let mut req = match target.method {
            HookMethod::Post => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json.to_string()),
            HookMethod::Get => self.http.get(url),
        };
        if let Some(sig) = signature {
            req = req.header("Jambonz-Signature", sig);
        }
        if let Some(auth) = &target.auth {
            req = req.basic_auth(&auth.username, Some(&auth.password));
        }
        let classify = |e: reqwest::Error| {
            if e.is_connect() {
                Attempt::Connect(error_chain(&e))
            } else if e.is_timeout() {
                Attempt::Timeout
            } else {
                Attempt::Other(error_chain(&e))
            }
        };
        let mut resp = req.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(Attempt::Status(status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(Attempt::Other(format!(
                    "answer larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}

/// reqwest's Display stops at the outermost error; the cause (e.g. "Connection refused") is
/// further down.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The payload's top-level scalar fields as query arguments (nested objects such as `sip` are
/// left out, as in jambonz's GET hooks)
fn with_query(mut url: Url, json: &str) -> Url {
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(json) {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in map {
            match v {
                Value::String(s) => {
                    pairs.append_pair(&k, &s);
                }
                Value::Number(n) => {
                    pairs.append_pair(&k, &n.to_string());
                }
                Value::Bool(b) => {
                    pairs.append_pair(&k, if b { "true" } else { "false" });
                }
                Value::Null | Value::Array(_) | Value::Object(_) => {}
            }
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn retry_fragment() {
        let p = RetryPolicy::from_fragment("").unwrap();
        assert_eq!((p.count, p.on_connect, p.on_5xx), (0, true, false));
        let p = RetryPolicy::from_fragment("rc=3&rp=5xx,rt").unwrap();
        assert_eq!(
            (p.count, p.on_4xx, p.on_5xx, p.on_connect, p.on_timeout),
            (3, false, true, false, true)
        );
        assert_eq!(RetryPolicy::from_fragment("rc=9").unwrap().count, 5);
        let p = RetryPolicy::from_fragment("rc=1&rp=all").unwrap();
        assert!(p.on_4xx && p.on_5xx && p.on_connect && p.on_timeout);
        assert!(
            RetryPolicy::from_fragment("rc=x")
                .unwrap_err()
                .contains("rc=x")
        );
        assert!(
            RetryPolicy::from_fragment("rp=6xx")
                .unwrap_err()
                .contains("6xx")
        );
        assert_eq!(RetryPolicy::from_fragment("section2").unwrap().count, 0);
    }

    #[test]
    fn relative_hooks_resolve_against_the_call_webhook() {
        let mut call = Hook::post("http://127.0.0.1:8080/app/call?x=1#rc=2");
        call.auth = Some(Credentials {
            username: "u".into(),
            password: "p".into(),
        });
        let base = HookBase::from_hook(&call).unwrap();
        let r = resolve(&Hook::post("/action#rc=1&rp=5xx"), Some(&base)).unwrap();
        assert_eq!(r.url.as_str(), "http://127.0.0.1:8080/action");
        assert_eq!(r.retry.count, 1);
        assert_eq!(r.auth.as_ref().unwrap().username, "u");
        let r = resolve(&Hook::post("status"), Some(&base)).unwrap();
        assert_eq!(r.url.as_str(), "http://127.0.0.1:8080/app/status");
        let r = resolve(&Hook::post("https://other.example.com/h"), Some(&base)).unwrap();
        assert_eq!(r.url.as_str(), "https://other.example.com/h");
        assert_eq!(r.auth, None, "absolute hooks do not inherit credentials");
        let e = resolve(&Hook::post("/action"), None).unwrap_err();
        assert!(e.to_string().contains("relative"), "{e}");
        let e = resolve(&Hook::post("ftp://x/y"), None).unwrap_err();
        assert!(e.to_string().contains("http"), "{e}");
        assert!(HookBase::from_hook(&Hook::post("/call")).is_err());
    }

    #[test]
    fn get_carries_flat_fields_only() {
        let url = with_query(
            Url::parse("http://h/p?a=b").unwrap(),
            r#"{"call_sid":"x y","sip_status":180,"ok":true,"sip":{"method":"INVITE"},"n":null}"#,
        );
        assert_eq!(
            url.as_str(),
            "http://h/p?a=b&call_sid=x+y&ok=true&sip_status=180"
        );
    }
}
