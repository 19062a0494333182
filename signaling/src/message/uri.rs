//! URIs: `sip:`, `sips:` and `tel:` parsed into parts, any other scheme kept opaque.
//!
//! Parts keep their escaped wire form, so a URI prints back exactly as it arrived; `unescape`
//! gives the octets.

use std::fmt;

use super::names::{HNV, HOST, PARAM, PASSWORD, UNRESERVED, USER, find_byte, is_class, split_byte};

/// A parameter: `name` or `name=value`. Values keep their wire form (quotes, escapes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The name as received.
    pub name: String,
    /// The value as received, `None` for a parameter without `=`.
    pub value: Option<String>,
}

impl Param {
    /// A parameter.
    pub fn new(name: impl Into<String>, value: Option<impl Into<String>>) -> Param {
        Param {
            name: name.into(),
            value: value.map(Into::into),
        }
    }
}

/// Looks a parameter up by name, case-insensitively. `Some(None)`: present without a value.
pub fn find_param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

pub(crate) fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        f.write_str(";")?;
        f.write_str(&p.name)?;
        if let Some(v) = &p.value {
            f.write_str("=")?;
            f.write_str(v)?;
        }
    }
    Ok(())
}

/// Why a URI did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UriError {
    /// Not an absolute URI at all, or a malformed `sip:`/`sips:`/`tel:` URI.
    Syntax(&'static str),
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UriError::Syntax(s) => f.write_str(s),
        }
    }
}

/// A URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Uri {
    /// `sip:` or `sips:`.
    Sip(SipUri),
    /// `tel:` (RFC 3966).
    Tel(TelUri),
    /// Any other syntactically valid absolute URI, kept opaque.
    Other {
        /// The scheme as received.
        scheme: String,
        /// Everything after the first `:`.
        rest: String,
    },
}

/// A `sip:` or `sips:` URI (RFC 3261 §19.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` rather than `sip:`.
    pub secure: bool,
    /// The user part, escaped as received.
    pub user: Option<String>,
    /// The password, escaped as received.
    pub password: Option<String>,
    /// Host name, IPv4 address or bracketed IPv6 reference.
    pub host: String,
    /// The port, if given.
    pub port: Option<u16>,
    /// uri-parameters.
    pub params: Vec<Param>,
    /// URI headers (`?name=value&…`), escaped as received.
    pub headers: Vec<(String, String)>,
}

/// A `tel:` URI (RFC 3966): the number and its parameters, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelUri {
    /// The subscriber number.
    pub number: String,
    /// Parameters.
    pub params: Vec<Param>,
}

/// A URI checked and cut into borrowed parts, nothing allocated.
#[derive(Clone, Copy, Debug)]
pub(crate) enum UriRef<'a> {
    Sip {
        secure: bool,
        user: Option<&'a str>,
        password: Option<&'a str>,
        host: &'a str,
        port: Option<u16>,
        /// Empty or starting with `;`.
        params: &'a str,
        /// After the `?`.
        headers: Option<&'a str>,
    },
    Tel {
        number: &'a str,
        params: &'a str,
    },
    Other {
        scheme: &'a str,
        rest: &'a str,
    },
}

impl<'a> UriRef<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<UriRef<'a>, UriError> {
        // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then ':'.
        let colon = s
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')))
            .unwrap_or(s.len());
        if s.as_bytes().get(colon) != Some(&b':') {
            return Err(UriError::Syntax(if find_byte(s, b':').is_some() {
                "bad URI scheme"
            } else {
                "URI without a scheme"
            }));
        }
        let (scheme, rest) = (&s[..colon], &s[colon + 1..]);
        if !scheme
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
        {
            return Err(UriError::Syntax("bad URI scheme"));
        }
        if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
            parse_sip_rest(scheme.len() == 4, rest)
        } else if scheme.eq_ignore_ascii_case("tel") {
            let (number, params) = match find_byte(rest, b';') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            if number.is_empty()
                || !number
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.()*#%".contains(&b))
            {
                return Err(UriError::Syntax("bad tel number"));
            }
            scan_uri_params(params, |_, _| {})?;
            Ok(UriRef::Tel { number, params })
        } else {
            if rest.is_empty()
                || !rest
                    .bytes()
                    .all(|b| b > b' ' && b < 0x7f && !b"<>\"{}|\\^`".contains(&b))
            {
                return Err(UriError::Syntax("bad URI"));
            }
            Ok(UriRef::Other { scheme, rest })
        }
    }

    pub(crate) fn to_owned(self) -> Uri {
        match self {
            UriRef::Sip {
                secure,
                user,
                password,
                host,
                port,
                params,
                headers,
            } => {
                let mut ps = Vec::new();
                let _ = scan_uri_params(params, |n, v| ps.push(Param::new(n, v)));
                let hs = headers
                    .map(|h| {
                        h.split('&')
                            .filter_map(|kv| split_byte(kv, b'='))
                            .map(|(k, v)| (k.to_owned(), v.to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                Uri::Sip(SipUri {
                    secure,
                    user: user.map(str::to_owned),
                    password: password.map(str::to_owned),
                    host: host.to_owned(),
                    port,
                    params: ps,
                    headers: hs,
                })
            }
            UriRef::Tel { number, params } => {
                let mut ps = Vec::new();
                let _ = scan_uri_params(params, |n, v| ps.push(Param::new(n, v)));
                Uri::Tel(TelUri {
                    number: number.to_owned(),
                    params: ps,
                })
            }
            UriRef::Other { scheme, rest } => Uri::Other {
                scheme: scheme.to_owned(),
                rest: rest.to_owned(),
            },
        }
    }
}

fn parse_sip_rest(secure: bool, rest: &str) -> Result<UriRef<'_>, UriError> {
    let (userinfo, rest) = match memchr::memchr(b'@', rest.as_bytes()) {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(ui) => {
            // The user part runs to the first character it cannot hold; only ':' may follow.
            let n = escaped_len(ui, USER);
            let (u, p) = match ui.as_bytes().get(n) {
                None => (ui, None),
                Some(b':') => (&ui[..n], Some(&ui[n + 1..])),
                Some(_) => return Err(UriError::Syntax("bad user part")),
            };
            if u.is_empty() {
                return Err(UriError::Syntax("bad user part"));
            }
            if let Some(p) = p
                && !valid_escaped(p, PASSWORD)
            {
                return Err(UriError::Syntax("bad password"));
            }
            (Some(u), p)
        }
    };
    // hostport [;params] [?headers], found in one scan.
    let (hostport, params, headers) = match rest.bytes().position(|b| b == b';' || b == b'?') {
        None => (rest, "", None),
        Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], "", Some(&rest[i + 1..])),
        Some(i) => {
            let after = &rest[i..];
            match find_byte(after, b'?') {
                Some(j) => (&rest[..i], &after[..j], Some(&after[j + 1..])),
                None => (&rest[..i], after, None),
            }
        }
    };
    scan_uri_params(params, |_, _| {})?;
    let (host, port) = split_hostport(hostport).ok_or(UriError::Syntax("bad host or port"))?;
    if let Some(h) = headers {
        for kv in h.split('&') {
            let (k, v) = kv
                .split_once('=')
                .ok_or(UriError::Syntax("bad URI header"))?;
            if k.is_empty() || !valid_escaped(k, HNV) || !valid_escaped(v, HNV) {
                return Err(UriError::Syntax("bad URI header"));
            }
        }
    }
    Ok(UriRef::Sip {
        secure,
        user,
        password,
        host,
        port,
        params,
        headers,
    })
}

impl Uri {
    /// Parses an absolute URI (no surrounding whitespace or `<>`).
    pub fn parse(s: &str) -> Result<Uri, UriError> {
        UriRef::parse(s).map(UriRef::to_owned)
    }

    /// The `sip:`/`sips:` URI, if that is what this is.
    pub fn as_sip(&self) -> Option<&SipUri> {
        match self {
            Uri::Sip(u) => Some(u),
            _ => None,
        }
    }

    /// The scheme, lower case for the known ones.
    pub fn scheme(&self) -> &str {
        match self {
            Uri::Sip(u) if u.secure => "sips",
            Uri::Sip(_) => "sip",
            Uri::Tel(_) => "tel",
            Uri::Other { scheme, .. } => scheme,
        }
    }
}

impl SipUri {
    /// A `sip:` URI for a host.
    pub fn new(host: impl Into<String>) -> SipUri {
        SipUri {
            secure: false,
            user: None,
            password: None,
            host: host.into(),
            port: None,
            params: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A uri-parameter by name (case-insensitive); `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The user part with `%XX` escapes decoded.
    pub fn user_unescaped(&self) -> Option<Vec<u8>> {
        self.user.as_deref().map(unescape)
    }
}

/// uri-parameters: `s` is empty or starts with ';'.
fn scan_uri_params<'a>(
    s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), UriError> {
    if s.is_empty() {
        return Ok(());
    }
    // `s` starts with ';': each parameter runs to the next one.
    let mut rest = s.strip_prefix(';').unwrap_or(s);
    loop {
        let (p, next) = match find_byte(rest, b';') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (n, v) = match split_byte(p, b'=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if n.is_empty() || !valid_escaped(n, PARAM) {
            return Err(UriError::Syntax("bad uri-parameter"));
        }
        if let Some(v) = v
            && (v.is_empty() || !valid_escaped(v, PARAM))
        {
            return Err(UriError::Syntax("bad uri-parameter value"));
        }
        f(n, v);
        match next {
            Some(r) => rest = r,
            None => return Ok(()),
        }
    }
}

/// Splits `host[:port]`, checking the host's characters. IPv6 references keep their brackets.
pub(crate) fn split_hostport(s: &str) -> Option<(&str, Option<u16>)> {
    let b = s.as_bytes();
    let host_end = if b.first() == Some(&b'[') {
        let end = find_byte(s, b']')?;
        if end == 1
            || !b[1..end]
                .iter()
                .all(|c| c.is_ascii_hexdigit() || matches!(c, b':' | b'.'))
        {
            return None;
        }
        end + 1
    } else {
        let n = b.iter().take_while(|c| is_class(**c, HOST)).count();
        if n == 0 {
            return None;
        }
        n
    };
    let port = match &b[host_end..] {
        [] => None,
        [b':', digits @ ..] => Some(parse_port(digits)?),
        _ => return None,
    };
    Some((&s[..host_end], port))
}

/// 1 to 5 digits, at most 65535.
fn parse_port(digits: &[u8]) -> Option<u16> {
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    let mut v: u32 = 0;
    for d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    u16::try_from(v).ok()
}

/// Unreserved characters plus `extra`, or `%XX` escapes.
fn valid_escaped(s: &str, extra: u16) -> bool {
    escaped_len(s, extra) == s.len()
}

/// Length of the prefix of `s` made of unreserved characters, `extra`, and `%XX` escapes.
#[inline]
fn escaped_len(s: &str, extra: u16) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if is_class(c, UNRESERVED | extra) {
            i += 1;
        } else if c == b'%'
            && b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
        {
            i += 3;
        } else {
            break;
        }
    }
    i
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1), b.get(i + 2))
            && let (Some(h), Some(l)) = ((*h as char).to_digit(16), (*l as char).to_digit(16))
        {
            // Two hex digits: at most 0xff.
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uri::Sip(u) => u.fmt(f),
            Uri::Tel(t) => {
                write!(f, "tel:{}", t.number)?;
                write_params(f, &t.params)
            }
            Uri::Other { scheme, rest } => write!(f, "{scheme}:{rest}"),
        }
    }
}
