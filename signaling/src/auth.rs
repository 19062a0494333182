//! HTTP digest authentication for SIP (RFC 2617, RFC 7616, RFC 3261 §22)
//!
//! Pure: header values in, header values out. [`Challenge`] and [`Credentials`] parse and write
//! the values of `WWW-Authenticate`/`Proxy-Authenticate` and `Authorization`/`Proxy-Authorization`;
//! [`respond`] is the client side (answer a 401/407); [`DigestServer`] is the server side, with
//! stateless nonces so that any instance holding the secret verifies a retry that lands on it.
//! The clock and the randomness are arguments: `now` for nonces, the cnonce for clients.
//!
//! A nonce is `<unix seconds, 16 hex digits><HMAC-SHA256(secret, seconds as 8 bytes BE ‖ realm),
//! 64 hex digits>`. Because nothing is stored, `nc` is not tracked and a captured `Authorization`
//! can be replayed until its nonce expires (the nonce lifetime bounds that window).
//!
//! ```
//! use std::time::{Duration, UNIX_EPOCH};
//! use dialplane_signaling::auth::{Algorithm, Challenge, ClientRequest, DigestServer, Verdict, respond};
//!
//! let now = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
//! let server = DigestServer::new("sip.example.com", b"cluster secret".to_vec());
//! // 401 with WWW-Authenticate: <this>
//! let www_authenticate = server.challenge(now, Algorithm::SHA_256, false).to_string();
//!
//! // The client answers with Authorization: <this>
//! let challenge = Challenge::parse(&www_authenticate)?;
//! let request = ClientRequest {
//!     username: "alice",
//!     password: "secret",
//!     method: "REGISTER",
//!     uri: "sip:sip.example.com",
//!     nc: 1,
//!     cnonce: "0a4f113b",
//! };
//! let authorization = respond(&challenge, &request)?.to_string();
//!
//! // Any instance with the same realm and secret verifies it.
//! let verdict = server.verify_header(&authorization, "REGISTER", now, |user| {
//!     (user == "alice").then(|| "secret".to_owned())
//! });
//! assert!(matches!(verdict, Verdict::Ok(ref who) if who.username() == "alice"));
//! # Ok::<(), dialplane_signaling::auth::AuthError>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

/// Why a header value could not be used
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The value is empty.
    #[error("empty authentication header")]
    Empty,
    /// The scheme is not `Digest`.
    #[error("scheme {0:?} is not Digest")]
    NotDigest(String),
    /// The auth-param list does not parse.
    #[error("bad auth-param list at byte {at}: {reason}")]
    Syntax {
        /// Byte offset in the value.
        at: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A parameter the scheme requires is missing.
    #[error("missing {0} parameter")]
    Missing(&'static str),
    /// A parameter appears twice.
    #[error("duplicate {0} parameter")]
    Duplicate(String),
    /// A parameter's value is not valid (`nc` not 8 hex digits, `stale` not a boolean).
    #[error("bad {0} parameter")]
    BadParam(&'static str),
    /// The algorithm is not one we implement.
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The challenge offers only qop values we do not implement (`auth-int`).
    #[error("unsupported qop {0:?}")]
    UnsupportedQop(String),
}

/// A digest algorithm name (open: unknown names round-trip; compared case-insensitively)
#[derive(Clone)]
pub struct Algorithm(Cow<'static, str>);

impl Algorithm {
    /// `MD5` (the default when a challenge names none)
    pub const MD5: Algorithm = Algorithm(Cow::Borrowed("MD5"));
    /// `MD5-sess`
    pub const MD5_SESS: Algorithm = Algorithm(Cow::Borrowed("MD5-sess"));
    /// `SHA-256` (RFC 7616)
    pub const SHA_256: Algorithm = Algorithm(Cow::Borrowed("SHA-256"));
    /// `SHA-256-sess` (RFC 7616)
    pub const SHA_256_SESS: Algorithm = Algorithm(Cow::Borrowed("SHA-256-sess"));

    /// An algorithm by name
    pub fn new(name: &str) -> Algorithm {
        Algorithm(Cow::Owned(name.to_owned()))
    }

    /// The name as written
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Hash and session flag, if we implement it
    fn kind(&self) -> Option<(Hash, bool)> {
        let n = self.as_str();
        [
            ("MD5", Hash::Md5, false),
            ("MD5-sess", Hash::Md5, true),
            ("SHA-256", Hash::Sha256, false),
            ("SHA-256-sess", Hash::Sha256, true),
        ]
        .into_iter()
        .find(|(name, ..)| name.eq_ignore_ascii_case(n))
        .map(|(_, h, s)| (h, s))
    }

    /// Whether [`respond`] and [`DigestServer`] implement it
    pub fn is_supported(&self) -> bool {
        self.kind().is_some()
    }
}

impl PartialEq for Algorithm {
    fn eq(&self, other: &Algorithm) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for Algorithm {}

impl fmt::Debug for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Algorithm({})", self.0)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Md5,
    Sha256,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    // from_str_radix alone would take a leading '+'.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl Hash {
    fn hex(self, data: &str) -> String {
        match self {
            Hash::Md5 => hex(&Md5::digest(data.as_bytes())),
            Hash::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

/// One `name=value` of an auth-param list
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthParam {
    /// Name as written (compare case-insensitively).
    pub name: String,
    /// Value, unescaped.
    pub value: String,
    /// Whether it was (and will be written as) a quoted string.
    pub quoted: bool,
}

/// A scheme and its auth-param list: `Digest realm="x", nonce="y", algorithm=MD5`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    /// `Digest`, `Basic`, ...
    pub scheme: String,
    /// Parameters in order.
    pub params: Vec<AuthParam>,
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

impl AuthHeader {
    /// Parse one challenge or credentials value
    pub fn parse(s: &str) -> Result<AuthHeader, AuthError> {
        let syntax = |at, reason| AuthError::Syntax { at, reason };
        let start = s.len() - s.trim_start().len();
        let rest = &s[start..];
        if rest.trim().is_empty() {
            return Err(AuthError::Empty);
        }
        let scheme_len = rest.find(|c: char| !is_tchar(c)).unwrap_or(rest.len());
        if scheme_len == 0 {
            return Err(syntax(start, "expected a scheme"));
        }
        let scheme = rest[..scheme_len].to_owned();
        let mut pos = start + scheme_len;
        let skip_ws = |pos: &mut usize| {
            while s[*pos..].starts_with([' ', '\t', '\r', '\n']) {
                *pos += 1;
            }
        };
        if pos < s.len() && !s[pos..].starts_with([' ', '\t', '\r', '\n']) {
            return Err(syntax(pos, "expected space after the scheme"));
        }
        let mut params = Vec::new();
        loop {
            skip_ws(&mut pos);
            while s[pos..].starts_with(',') {
                pos += 1;
                skip_ws(&mut pos);
            }
            if pos >= s.len() {
                break;
            }
            let name_len = s[pos..]
                .find(|c: char| !is_tchar(c))
                .unwrap_or(s.len() - pos);
            if name_len == 0 {
                return Err(syntax(pos, "expected a parameter name"));
            }
            let name = s[pos..pos + name_len].to_owned();
            pos += name_len;
            skip_ws(&mut pos);
            if !s[pos..].starts_with('=') {
                return Err(syntax(pos, "expected '='"));
            }
            pos += 1;
            skip_ws(&mut pos);
            let (value, quoted) = if s[pos..].starts_with('"') {
                pos += 1;
                let mut value = String::new();
                let mut chars = s[pos..].char_indices();
                let end = loop {
                    match chars.next() {
                        None => return Err(syntax(s.len(), "unterminated quoted string")),
                        Some((i, '"')) => break pos + i + 1,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c)) => value.push(c),
                            None => return Err(syntax(s.len(), "dangling escape")),
                        },
                        Some((_, c)) => value.push(c),
                    }
                };
                pos = end;
                (value, true)
            } else {
                let len = s[pos..]
                    .find(|c: char| c.is_whitespace() || c == ',' || c == '"')
                    .unwrap_or(s.len() - pos);
                if len == 0 {
                    return Err(syntax(pos, "expected a value"));
                }
                let v = s[pos..pos + len].to_owned();
                pos += len;
                (v, false)
            };
            params.push(AuthParam {
                name,
                value,
                quoted,
            });
            skip_ws(&mut pos);
            if pos < s.len() && !s[pos..].starts_with(',') {
                return Err(syntax(pos, "expected ',' between parameters"));
            }
        }
        Ok(AuthHeader { scheme, params })
    }

    /// The value of a parameter (name compared case-insensitively)
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    }

    fn digest(s: &str) -> Result<AuthHeader, AuthError> {
        let h = AuthHeader::parse(s)?;
        if !h.scheme.eq_ignore_ascii_case("Digest") {
            return Err(AuthError::NotDigest(h.scheme));
        }
        for (i, p) in h.params.iter().enumerate() {
            if h.params[..i]
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(&p.name))
            {
                return Err(AuthError::Duplicate(p.name.clone()));
            }
        }
        Ok(h)
    }
}

impl fmt::Display for AuthHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.scheme)?;
        for (i, p) in self.params.iter().enumerate() {
            f.write_str(if i == 0 { " " } else { ", " })?;
            if p.quoted {
                write!(f, "{}=\"", p.name)?;
                for c in p.value.chars() {
                    if c == '"' || c == '\\' {
                        f.write_str("\\")?;
                    }
                    write!(f, "{c}")?;
                }
                f.write_str("\"")?;
            } else {
                write!(f, "{}={}", p.name, p.value)?;
            }
        }
        Ok(())
    }
}

/// The parameters whose names (case-insensitively) are not in `known`, in order.
fn unknown_params(params: Vec<AuthParam>, known: &[&str]) -> Vec<AuthParam> {
    params
        .into_iter()
        .filter(|p| !known.iter().any(|k| p.name.eq_ignore_ascii_case(k)))
        .collect()
}

/// The named algorithm, MD5 when none is named (RFC 2617 §3.2.1).
fn algorithm_or_md5(algorithm: &Option<Algorithm>) -> Algorithm {
    algorithm.clone().unwrap_or(Algorithm::MD5)
}

fn param(name: &str, value: &str, quoted: bool) -> AuthParam {
    AuthParam {
        name: name.to_owned(),
        value: value.to_owned(),
        quoted,
    }
}

const CHALLENGE_KNOWN: [&str; 7] = [
    "realm",
    "nonce",
    "opaque",
    "stale",
    "algorithm",
    "qop",
    "domain",
];

/// A `WWW-Authenticate`/`Proxy-Authenticate` digest challenge
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `realm`
    pub realm: String,
    /// `domain`, raw.
    pub domain: Option<String>,
    /// `nonce`
    pub nonce: String,
    /// `opaque`, echoed by the client.
    pub opaque: Option<String>,
    /// `stale=true`: the nonce expired but the credentials were right; retry without asking the user.
    pub stale: bool,
    /// `algorithm` (absent means MD5).
    pub algorithm: Option<Algorithm>,
    /// `qop` options (`auth`, `auth-int`); empty when absent.
    pub qop: Vec<String>,
    /// Other parameters, in order.
    pub other: Vec<AuthParam>,
}

impl Challenge {
    /// Parse a challenge value (`Digest realm="...", nonce="...", ...`)
    pub fn parse(s: &str) -> Result<Challenge, AuthError> {
        let h = AuthHeader::digest(s)?;
        let stale = match h.get("stale") {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(AuthError::BadParam("stale")),
        };
        Ok(Challenge {
            realm: h
                .get("realm")
                .ok_or(AuthError::Missing("realm"))?
                .to_owned(),
            domain: h.get("domain").map(str::to_owned),
            nonce: h
                .get("nonce")
                .ok_or(AuthError::Missing("nonce"))?
                .to_owned(),
            opaque: h.get("opaque").map(str::to_owned),
            stale,
            algorithm: h.get("algorithm").map(Algorithm::new),
            qop: h
                .get("qop")
                .map(|q| {
                    q.split(',')
                        .map(str::trim)
                        .filter(|q| !q.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            other: unknown_params(h.params, &CHALLENGE_KNOWN),
        })
    }

    /// The algorithm, MD5 when none is named
    pub fn algorithm(&self) -> Algorithm {
        algorithm_or_md5(&self.algorithm)
    }

    /// As a scheme and parameter list
    pub fn to_header(&self) -> AuthHeader {
        let mut params = vec![param("realm", &self.realm, true)];
        if let Some(d) = &self.domain {
            params.push(param("domain", d, true));
        }
        params.push(param("nonce", &self.nonce, true));
        if let Some(o) = &self.opaque {
            params.push(param("opaque", o, true));
        }
        if self.stale {
            params.push(param("stale", "true", false));
        }
        if let Some(a) = &self.algorithm {
            params.push(param("algorithm", a.as_str(), false));
        }
        if !self.qop.is_empty() {
            params.push(param("qop", &self.qop.join(","), true));
        }
        params.extend(self.other.iter().cloned());
        AuthHeader {
            scheme: "Digest".into(),
            params,
        }
    }
}

impl fmt::Display for Challenge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_header().fmt(f)
    }
}

const CREDENTIALS_KNOWN: [&str; 10] = [
    "username",
    "realm",
    "nonce",
    "uri",
    "response",
    "algorithm",
    "cnonce",
    "opaque",
    "qop",
    "nc",
];

/// An `Authorization`/`Proxy-Authorization` digest credentials value
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`
    pub username: String,
    /// `realm`
    pub realm: String,
    /// `nonce` from the challenge.
    pub nonce: String,
    /// `uri`: the Request-URI.
    pub uri: String,
    /// `response`: the hex digest.
    pub response: String,
    /// `algorithm` (absent means MD5).
    pub algorithm: Option<Algorithm>,
    /// `cnonce`
    pub cnonce: Option<String>,
    /// `opaque`, echoed from the challenge.
    pub opaque: Option<String>,
    /// `qop` chosen (`auth`).
    pub qop: Option<String>,
    /// `nc`, the nonce count (8 hex digits on the wire).
    pub nc: Option<u32>,
    /// Other parameters, in order.
    pub other: Vec<AuthParam>,
}

impl Credentials {
    /// Parse a credentials value (`Digest username="...", ...`)
    pub fn parse(s: &str) -> Result<Credentials, AuthError> {
        let h = AuthHeader::digest(s)?;
        let req = |n: &'static str| h.get(n).map(str::to_owned).ok_or(AuthError::Missing(n));
        let nc = match h.get("nc") {
            None => None,
            Some(v) if v.len() == 8 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(u32::from_str_radix(v, 16).map_err(|_| AuthError::BadParam("nc"))?)
            }
            Some(_) => return Err(AuthError::BadParam("nc")),
        };
        Ok(Credentials {
            username: req("username")?,
            realm: req("realm")?,
            nonce: req("nonce")?,
            uri: req("uri")?,
            response: req("response")?,
            algorithm: h.get("algorithm").map(Algorithm::new),
            cnonce: h.get("cnonce").map(str::to_owned),
            opaque: h.get("opaque").map(str::to_owned),
            qop: h.get("qop").map(str::to_owned),
            nc,
            other: unknown_params(h.params, &CREDENTIALS_KNOWN),
        })
    }

    /// The algorithm, MD5 when none is named
    pub fn algorithm(&self) -> Algorithm {
        algorithm_or_md5(&self.algorithm)
    }

    /// As a scheme and parameter list
    pub fn to_header(&self) -> AuthHeader {
        let mut params = vec![
            param("username", &self.username, true),
            param("realm", &self.realm, true),
            param("nonce", &self.nonce, true),
            param("uri", &self.uri, true),
            param("response", &self.response, true),
        ];
        if let Some(a) = &self.algorithm {
            params.push(param("algorithm", a.as_str(), false));
        }
        if let Some(c) = &self.cnonce {
            params.push(param("cnonce", c, true));
        }
        if let Some(o) = &self.opaque {
            params.push(param("opaque", o, true));
        }
        if let Some(q) = &self.qop {
            params.push(param("qop", q, false));
        }
        if let Some(nc) = self.nc {
            params.push(param("nc", &format!("{nc:08x}"), false));
        }
        params.extend(self.other.iter().cloned());
        AuthHeader {
            scheme: "Digest".into(),
            params,
        }
    }
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.to_header().fmt(f)
    }
}

/// The inputs of a digest `response` (RFC 7616 §3.4.1, RFC 2617 §3.2.2)
#[derive(Debug, Clone, Copy)]
pub struct DigestInput<'a> {
    /// Algorithm.
    pub algorithm: &'a Algorithm,
    /// User name.
    pub username: &'a str,
    /// Realm.
    pub realm: &'a str,
    /// Password.
    pub password: &'a str,
    /// Request method (`REGISTER`, `INVITE`; `ACK`/`CANCEL` use the INVITE's).
    pub method: &'a str,
    /// `uri` parameter (the Request-URI).
    pub uri: &'a str,
    /// Server nonce.
    pub nonce: &'a str,
    /// `qop` (`auth`) or none (RFC 2069 compatibility).
    pub qop: Option<&'a str>,
    /// Nonce count (with qop).
    pub nc: Option<u32>,
    /// Client nonce (with qop or a `-sess` algorithm).
    pub cnonce: Option<&'a str>,
}

/// The hex `response` value for these inputs
///
/// `qop=auth-int` is not implemented.
pub fn digest_response(input: &DigestInput<'_>) -> Result<String, AuthError> {
    let (hash, sess) = input
        .algorithm
        .kind()
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(input.algorithm.to_string()))?;
    let mut ha1 = hash.hex(&format!(
        "{}:{}:{}",
        input.username, input.realm, input.password
    ));
    if sess {
        let cnonce = input.cnonce.ok_or(AuthError::Missing("cnonce"))?;
        ha1 = hash.hex(&format!("{ha1}:{}:{cnonce}", input.nonce));
    }
    let ha2 = hash.hex(&format!("{}:{}", input.method, input.uri));
    Ok(match input.qop {
        None => hash.hex(&format!("{ha1}:{}:{ha2}", input.nonce)),
        Some(q) if q.eq_ignore_ascii_case("auth") => {
            let nc = input.nc.ok_or(AuthError::Missing("nc"))?;
            let cnonce = input.cnonce.ok_or(AuthError::Missing("cnonce"))?;
            hash.hex(&format!(
                "{ha1}:{}:{nc:08x}:{cnonce}:{q}:{ha2}",
                input.nonce
            ))
        }
        Some(q) => return Err(AuthError::UnsupportedQop(q.to_owned())),
    })
}

/// What the client knows when answering a challenge
#[derive(Debug, Clone, Copy)]
pub struct ClientRequest<'a> {
    /// User name.
    pub username: &'a str,
    /// Password.
    pub password: &'a str,
    /// Method of the request being retried.
    pub method: &'a str,
    /// Its Request-URI.
    pub uri: &'a str,
    /// Nonce count: 1 for the first request with this nonce, then 2, 3, ...
    pub nc: u32,
    /// A fresh client nonce (e.g. [`cnonce_from_bytes`] of caller-supplied random bytes).
    pub cnonce: &'a str,
}

/// A cnonce from random bytes the caller drew (hex)
pub fn cnonce_from_bytes(bytes: &[u8]) -> String {
    hex(bytes)
}

/// Answer a challenge: the credentials to put in `Authorization`/`Proxy-Authorization`
///
/// Uses `qop=auth` when the challenge offers it, no qop when it offers none; fails if it offers
/// only `auth-int` or names an algorithm we do not implement.
pub fn respond(challenge: &Challenge, req: &ClientRequest<'_>) -> Result<Credentials, AuthError> {
    let algorithm = challenge.algorithm();
    let (_, sess) = algorithm
        .kind()
        .ok_or_else(|| AuthError::UnsupportedAlgorithm(algorithm.to_string()))?;
    let qop = if challenge.qop.is_empty() {
        None
    } else if challenge.qop.iter().any(|q| q.eq_ignore_ascii_case("auth")) {
        Some("auth")
    } else {
        return Err(AuthError::UnsupportedQop(challenge.qop.join(",")));
    };
    let nc = qop.map(|_| req.nc);
    let cnonce = (qop.is_some() || sess).then_some(req.cnonce);
    let response = digest_response(&DigestInput {
        algorithm: &algorithm,
        username: req.username,
        realm: &challenge.realm,
        password: req.password,
        method: req.method,
        uri: req.uri,
        nonce: &challenge.nonce,
        qop,
        nc,
        cnonce,
    })?;
    Ok(Credentials {
        username: req.username.to_owned(),
        realm: challenge.realm.clone(),
        nonce: challenge.nonce.clone(),
        uri: req.uri.to_owned(),
        response,
        algorithm: challenge.algorithm.clone(),
        cnonce: cnonce.map(str::to_owned),
        opaque: challenge.opaque.clone(),
        qop: qop.map(str::to_owned),
        nc,
        other: Vec::new(),
    })
}

/// Proof that a request's credentials verified: only [`DigestServer::verify`] makes one
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    username: String,
    realm: String,
}

impl Authenticated {
    /// The authenticated user name
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The realm it was verified in
    pub fn realm(&self) -> &str {
        &self.realm
    }
}

/// What [`DigestServer::verify`] decided
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
#[non_exhaustive]
pub enum Verdict {
    /// The credentials are right and the nonce is fresh.
    Ok(Authenticated),
    /// The credentials are right but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// The `response` does not match (wrong password, or the request was altered).
    BadResponse,
    /// No such user.
    UnknownUser,
    /// The realm is not ours.
    WrongRealm,
    /// The nonce was not made by us (any instance with the secret), or is from the future.
    BadNonce,
    /// The algorithm is not one we accept.
    UnsupportedAlgorithm,
    /// The qop is not `auth`, or `auth` without `nc`/`cnonce`.
    UnsupportedQop,
    /// The header does not parse.
    Malformed(AuthError),
}

/// Server side of digest: stateless challenges and verification
///
/// Every instance built with the same realm and secret accepts the others' nonces.
#[derive(Clone)]
pub struct DigestServer {
    realm: String,
    secret: Vec<u8>,
    nonce_lifetime: Duration,
    max_skew: Duration,
    algorithms: Vec<Algorithm>,
}

impl fmt::Debug for DigestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestServer")
            .field("realm", &self.realm)
            .field("nonce_lifetime", &self.nonce_lifetime)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type HmacSha256 = Hmac<Sha256>;

impl DigestServer {
    /// Default nonce lifetime: 5 minutes
    pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(300);

    /// A server for `realm` whose nonces are signed with `secret`; nonces last
    /// [`Self::DEFAULT_NONCE_LIFETIME`], all four algorithms are accepted
    pub fn new(realm: impl Into<String>, secret: impl Into<Vec<u8>>) -> DigestServer {
        DigestServer {
            realm: realm.into(),
            secret: secret.into(),
            nonce_lifetime: DigestServer::DEFAULT_NONCE_LIFETIME,
            max_skew: Duration::from_secs(30),
            algorithms: vec![
                Algorithm::MD5,
                Algorithm::MD5_SESS,
                Algorithm::SHA_256,
                Algorithm::SHA_256_SESS,
            ],
        }
    }

    /// How long a nonce is accepted before [`Verdict::Stale`]
    pub fn with_nonce_lifetime(mut self, lifetime: Duration) -> DigestServer {
        self.nonce_lifetime = lifetime;
        self
    }

    /// How far in the future a nonce's time may be (clock skew between instances); default 30 s
    pub fn with_max_skew(mut self, skew: Duration) -> DigestServer {
        self.max_skew = skew;
        self
    }

    /// The algorithms [`Self::verify`] accepts (unsupported names are ignored)
    pub fn with_algorithms(mut self, algorithms: Vec<Algorithm>) -> DigestServer {
        self.algorithms = algorithms
            .into_iter()
            .filter(Algorithm::is_supported)
            .collect();
        self
    }

    /// The realm
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, time: u64) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac =
            HmacSha256::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(&time.to_be_bytes());
        mac.update(self.realm.as_bytes());
        mac
    }

    /// A nonce for `now`
    pub fn nonce(&self, now: SystemTime) -> String {
        let t = unix_seconds(now);
        format!("{t:016x}{}", hex(&self.mac(t).finalize().into_bytes()))
    }

    /// The time a nonce was made, if we (or an instance with the same secret) made it
    fn nonce_time(&self, nonce: &str) -> Option<u64> {
        // Exactly what `nonce` writes: lower-case hex, so one time has one nonce string.
        let lower_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
        if nonce.len() != 16 + 64 || !nonce.bytes().all(lower_hex) {
            return None;
        }
        let t = u64::from_str_radix(&nonce[..16], 16).ok()?;
        let tag = unhex(&nonce[16..])?;
        self.mac(t).verify_slice(&tag).ok()?;
        Some(t)
    }

    /// A challenge for a 401/407 with a fresh nonce and `qop="auth"`
    pub fn challenge(&self, now: SystemTime, algorithm: Algorithm, stale: bool) -> Challenge {
        Challenge {
            realm: self.realm.clone(),
            domain: None,
            nonce: self.nonce(now),
            opaque: None,
            stale,
            algorithm: Some(algorithm),
            qop: vec!["auth".into()],
            other: Vec::new(),
        }
    }

    /// Verify credentials for a request with `method`
    ///
    /// `password_of` looks a user up. The `uri` parameter is used as sent; comparing it with the
    /// Request-URI is the caller's job. Being stateless, the server does not remember which
    /// algorithm it challenged with: any algorithm in [`Self::with_algorithms`] verifies, and
    /// credentials without qop (RFC 2069 style, as RFC 3261 still allows) are accepted.
    /// [`Verdict::Stale`] is only given when the response is right for the expired nonce, so a
    /// wrong password never earns a silent retry.
    pub fn verify(
        &self,
        creds: &Credentials,
        method: &str,
        now: SystemTime,
        password_of: impl FnOnce(&str) -> Option<String>,
    ) -> Verdict {
        if creds.realm != self.realm {
            return Verdict::WrongRealm;
        }
        let algorithm = creds.algorithm();
        if !self.algorithms.contains(&algorithm) {
            return Verdict::UnsupportedAlgorithm;
        }
        let qop_ok = match &creds.qop {
            None => true,
            Some(q) => {
                q.eq_ignore_ascii_case("auth") && creds.nc.is_some() && creds.cnonce.is_some()
            }
        };
        if !qop_ok {
            return Verdict::UnsupportedQop;
        }
        let Some(issued) = self.nonce_time(&creds.nonce) else {
            return Verdict::BadNonce;
        };
        let now = unix_seconds(now);
        if issued > now.saturating_add(self.max_skew.as_secs()) {
            return Verdict::BadNonce;
        }
        let Some(password) = password_of(&creds.username) else {
            return Verdict::UnknownUser;
        };
        let expected = digest_response(&DigestInput {
            algorithm: &algorithm,
            username: &creds.username,
            realm: &creds.realm,
            password: &password,
            method,
            uri: &creds.uri,
            nonce: &creds.nonce,
            qop: creds.qop.as_deref(),
            nc: creds.nc,
            cnonce: creds.cnonce.as_deref(),
        });
        let Ok(expected) = expected else {
            // Only a missing cnonce with a -sess algorithm gets here.
            return Verdict::Malformed(AuthError::Missing("cnonce"));
        };
        if !constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        ) {
            return Verdict::BadResponse;
        }
        if now.saturating_sub(issued) > self.nonce_lifetime.as_secs() {
            return Verdict::Stale;
        }
        Verdict::Ok(Authenticated {
            username: creds.username.clone(),
            realm: self.realm.clone(),
        })
    }

    /// Parse an `Authorization`/`Proxy-Authorization` value and [`verify`](Self::verify) it
    pub fn verify_header(
        &self,
        value: &str,
        method: &str,
        now: SystemTime,
        password_of: impl FnOnce(&str) -> Option<String>,
    ) -> Verdict {
        match Credentials::parse(value) {
            Ok(c) => self.verify(&c, method, now, password_of),
            Err(e) => Verdict::Malformed(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)), Some(bytes));
        assert_eq!(hex(&[0x0f, 0xa0]), "0fa0");
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("+1"), None);
    }

    #[test]
    fn nonce_is_time_then_mac() {
        let server = DigestServer::new("r", b"k".to_vec());
        let now = UNIX_EPOCH + Duration::from_secs(0x1234_5678);
        let nonce = server.nonce(now);
        assert_eq!(nonce.len(), 80);
        assert!(nonce.starts_with("0000000012345678"));
        assert_eq!(server.nonce_time(&nonce), Some(0x1234_5678));
        // One nonce per time: a '+' sign or upper case is another string, not the same nonce.
        assert_eq!(server.nonce_time(&nonce.replacen('0', "+", 1)), None);
        assert_eq!(server.nonce_time(&nonce.to_ascii_uppercase()), None);
        // Same second, same nonce: nothing is stored, so nothing needs to differ.
        assert_eq!(server.nonce(now), nonce);
        // Before the epoch counts as 0 rather than failing.
        assert!(
            server
                .nonce(UNIX_EPOCH - Duration::from_secs(5))
                .starts_with("0000000000000000")
        );
    }

    #[test]
    fn algorithms_compare_case_insensitively() {
        assert_eq!(Algorithm::new("sha-256"), Algorithm::SHA_256);
        assert_ne!(Algorithm::SHA_256, Algorithm::SHA_256_SESS);
        assert!(!Algorithm::new("SHA-512-256").is_supported());
        assert_eq!(Algorithm::new("md5-Sess").kind(), Some((Hash::Md5, true)));
    }
}
