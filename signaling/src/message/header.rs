//! Typed header values, parsed on demand from the raw (unfolded) header text.

use std::fmt;

use super::names::{
    Method, PVALUE, SENT_BY, find_byte, is_class, is_token_byte, trim_ws, trim_ws_end,
    trim_ws_start,
};
use super::uri::{Param, Uri, UriRef, find_param, split_hostport, write_params};

/// Why a header value did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad {header} header: {reason}")]
pub struct HeaderError {
    /// The header's canonical name.
    pub header: &'static str,
    /// What was wrong.
    pub reason: &'static str,
}

pub(crate) fn err(header: &'static str, reason: &'static str) -> HeaderError {
    HeaderError { header, reason }
}

/// Splits a header value at top-level commas (not inside quoted strings or `<…>`), trimming
/// each element. Empty elements are kept, so `a,,b` yields three.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    let b = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut done = false;
    // Most values hold no comma at all: one element, no scan.
    let single = memchr::memchr(b',', b).is_none();
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        if single {
            done = true;
            return Some(trim_ws(s));
        }
        let (mut quoted, mut angle) = (false, false);
        while i < b.len() {
            match b[i] {
                b'\\' if quoted => i += 1,
                b'"' if !angle => quoted = !quoted,
                b'<' if !quoted => angle = true,
                b'>' if !quoted => angle = false,
                b',' if !quoted && !angle => {
                    let item = trim_ws(s.get(start..i).unwrap_or(""));
                    i += 1;
                    start = i;
                    return Some(item);
                }
                _ => {}
            }
            i += 1;
        }
        done = true;
        Some(trim_ws(s.get(start..).unwrap_or("")))
    })
}

fn skip_ws(s: &str) -> &str {
    trim_ws_start(s)
}

fn take_token(s: &str) -> (&str, &str) {
    let n = s.bytes().take_while(|b| is_token_byte(*b)).count();
    s.split_at(n)
}

/// Checks a quoted string at the start of `s` (which starts with `"`): the content between the
/// quotes, still escaped, and the rest after the closing quote.
pub(crate) fn skip_quoted(s: &str) -> Option<(&str, &str)> {
    let b = s.as_bytes();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((&s[1..i], &s[i + 1..])),
            b'\\' => {
                if matches!(b.get(i + 1), None | Some(b'\r' | b'\n')) {
                    return None;
                }
                i += 2;
            }
            b'\r' | b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// Decodes quoted-pairs in the content of a quoted string.
pub(crate) fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Generic parameters `*( SEMI token [ EQUAL (token / host / quoted-string) ] )`, allowing
/// linear whitespace around `;` and `=`. `s` is what follows the value the parameters belong to.
fn scan_params<'a>(
    header: &'static str,
    mut s: &'a str,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), HeaderError> {
    loop {
        s = skip_ws(s);
        if s.is_empty() {
            return Ok(());
        }
        s = s.strip_prefix(';').ok_or(err(header, "junk after value"))?;
        s = skip_ws(s);
        let (name, rest) = take_token(s);
        if name.is_empty() {
            return Err(err(header, "empty parameter"));
        }
        s = skip_ws(rest);
        let value = if let Some(rest) = s.strip_prefix('=') {
            let rest = skip_ws(rest);
            if rest.starts_with('"') {
                let (_, after) = skip_quoted(rest).ok_or(err(header, "unterminated quote"))?;
                s = after;
                Some(&rest[..rest.len() - after.len()])
            } else {
                let n = rest.bytes().take_while(|b| is_class(*b, PVALUE)).count();
                if n == 0 {
                    return Err(err(header, "empty parameter value"));
                }
                s = &rest[n..];
                Some(&rest[..n])
            }
        } else {
            None
        };
        f(name, value);
    }
}

/// Parses generic parameters (already checked, or checked now).
pub(crate) fn parse_params(header: &'static str, s: &str) -> Result<Vec<Param>, HeaderError> {
    let mut out = Vec::new();
    scan_params(header, s, |n, v| out.push(Param::new(n, v)))?;
    Ok(out)
}

/// One Via value (RFC 3261 §20.42).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Protocol version after `SIP/`, normally `2.0`.
    pub version: String,
    /// Transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, or an unknown one).
    pub transport: String,
    /// sent-by host (IPv6 references keep their brackets).
    pub host: String,
    /// sent-by port.
    pub port: Option<u16>,
    /// via-params, including branch, received and rport.
    pub params: Vec<Param>,
}

/// A Via value checked and cut into borrowed parts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViaRef<'a> {
    version: &'a str,
    transport: &'a str,
    host: &'a str,
    port: Option<u16>,
    params: &'a str,
}

impl<'a> ViaRef<'a> {
    pub(crate) fn parse(s: &'a str) -> Result<ViaRef<'a>, HeaderError> {
        const H: &str = "Via";
        let e = |r| err(H, r);
        let (proto, s) = take_token(skip_ws(s));
        if !proto.eq_ignore_ascii_case("SIP") {
            return Err(e("protocol is not SIP"));
        }
        let s = skip_ws(skip_ws(s).strip_prefix('/').ok_or(e("expected /"))?);
        let (version, s) = take_token(s);
        let s = skip_ws(skip_ws(s).strip_prefix('/').ok_or(e("expected /"))?);
        let (transport, s) = take_token(s);
        if version.is_empty() || transport.is_empty() {
            return Err(e("empty protocol field"));
        }
        let s = skip_ws(s);
        let n = s.bytes().take_while(|b| is_class(*b, SENT_BY)).count();
        let (host, port) = split_hostport(&s[..n]).ok_or(e("bad sent-by"))?;
        let params = &s[n..];
        let mut bad_branch = false;
        scan_params(H, params, |n, v| {
            if n.eq_ignore_ascii_case("branch") && v.is_none_or(|v| v.starts_with('"')) {
                bad_branch = true;
            }
        })?;
        if bad_branch {
            return Err(e("bad branch"));
        }
        Ok(ViaRef {
            version,
            transport,
            host,
            port,
            params,
        })
    }

    /// The sent-by host, as written.
    pub(crate) fn host(&self) -> &'a str {
        self.host
    }

    /// The sent-by port.
    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    /// The `branch` parameter's value.
    pub(crate) fn branch(&self) -> Option<&'a str> {
        let mut branch = None;
        let _ = scan_params("Via", self.params, |n, v| {
            if branch.is_none() && n.eq_ignore_ascii_case("branch") {
                branch = v;
            }
        });
        branch
    }

    pub(crate) fn to_owned(self) -> Via {
        Via {
            version: self.version.to_owned(),
            transport: self.transport.to_owned(),
            host: self.host.to_owned(),
            port: self.port,
            params: parse_params("Via", self.params).unwrap_or_default(),
        }
    }
}

impl Via {
    /// Parses one Via value (one element of the comma list).
    pub fn parse(s: &str) -> Result<Via, HeaderError> {
        ViaRef::parse(s).map(ViaRef::to_owned)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        find_param(&self.params, "branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        find_param(&self.params, "received").flatten()
    }

    /// The `rport` parameter: `Some(None)` when present without a value (a request for it).
    pub fn rport(&self) -> Option<Option<u16>> {
        find_param(&self.params, "rport").map(|v| v.and_then(|v| v.parse().ok()))
    }

    /// Whether the branch starts with the RFC 3261 magic cookie `z9hG4bK`.
    pub fn has_rfc3261_branch(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/{}/{} {}", self.version, self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write_params(f, &self.params)
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route,
/// Reply-To, Refer-To… (RFC 3261 §20.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted and unescaped.
    pub display: Option<String>,
    /// The URI.
    pub uri: Uri,
    /// Header parameters (after the URI, outside `<>`).
    pub params: Vec<Param>,
}

impl NameAddr {
    /// A bare URI with no display name or parameters.
    pub fn new(uri: Uri) -> NameAddr {
        NameAddr {
            display: None,
            uri,
            params: Vec::new(),
        }
    }

    /// Parses one value. `header` names the header for errors.
    pub fn parse(header: &'static str, s: &str) -> Result<NameAddr, HeaderError> {
        NameAddrRef::parse(header, s).map(NameAddrRef::to_owned)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        find_param(&self.params, "tag").flatten()
    }

    /// A header parameter by name; `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            f.write_str("\"")?;
            for c in d.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// A name-addr or addr-spec checked and cut into borrowed parts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NameAddrRef<'a> {
    /// Display name: the raw text and whether it was quoted.
    display: Option<(&'a str, bool)>,
    uri: UriRef<'a>,
    params: &'a str,
}

impl<'a> NameAddrRef<'a> {
    pub(crate) fn parse(header: &'static str, s: &'a str) -> Result<NameAddrRef<'a>, HeaderError> {
        let e = |r| err(header, r);
        let s = trim_ws(s);
        let (display, rest) = if s.starts_with('"') {
            let (d, rest) = skip_quoted(s).ok_or(e("unterminated quoted string"))?;
            let rest = skip_ws(rest);
            if !rest.starts_with('<') {
                return Err(e("quoted display name without <URI>"));
            }
            (Some((d, true)), rest)
        } else if let Some(lt) = find_byte(s, b'<') {
            let d = trim_ws_end(&s[..lt]);
            if !d
                .bytes()
                .all(|b| is_token_byte(b) || b == b' ' || b == b'\t')
            {
                return Err(e("display name is not tokens"));
            }
            (if d.is_empty() { None } else { Some((d, false)) }, &s[lt..])
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            // One scan finds '>' and any whitespace before it.
            let gt = inner
                .bytes()
                .position(|b| matches!(b, b'>' | b' ' | b'\t'))
                .filter(|i| inner.as_bytes()[*i] == b'>');
            let Some(gt) = gt else {
                return Err(e(if find_byte(inner, b'>').is_some() {
                    "whitespace inside <>"
                } else {
                    "missing >"
                }));
            };
            let spec = &inner[..gt];
            (
                UriRef::parse(spec).map_err(|_| e("bad URI"))?,
                &inner[gt + 1..],
            )
        } else {
            // addr-spec: the URI runs to the first ';' or whitespace, and cannot contain '?'
            // or ',' (RFC 3261 §20.10); what follows is header parameters.
            let n = rest
                .bytes()
                .take_while(|b| !matches!(b, b';' | b' ' | b'\t'))
                .count();
            let spec = &rest[..n];
            if spec
                .bytes()
                .any(|b| matches!(b, b'?' | b',' | b'<' | b'>' | b'"'))
            {
                return Err(e("addr-spec with ?, or <> must be in name-addr form"));
            }
            (UriRef::parse(spec).map_err(|_| e("bad URI"))?, &rest[n..])
        };
        scan_params(header, params, |_, _| {})?;
        Ok(NameAddrRef {
            display,
            uri,
            params,
        })
    }

    fn to_owned(self) -> NameAddr {
        NameAddr {
            display: self
                .display
                .map(|(d, quoted)| if quoted { unquote(d) } else { d.to_owned() }),
            uri: self.uri.to_owned(),
            params: parse_params("", self.params).unwrap_or_default(),
        }
    }
}

/// The Contact header: `*` or a list of addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contact {
    /// `Contact: *` (REGISTER with Expires: 0 removes all bindings).
    Star,
    /// One or more addresses.
    Addrs(Vec<NameAddr>),
}

/// CSeq (RFC 3261 §20.16): sequence number below 2³¹ and method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<CSeq, HeaderError> {
        let e = |r| err("CSeq", r);
        let s = trim_ws(s);
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        let seq = parse_decimal(&s[..n], (1 << 31) - 1).ok_or(e("bad sequence number"))?;
        let rest = &s[n..];
        if !rest.starts_with([' ', '\t']) {
            return Err(e("expected LWS after the number"));
        }
        let method = Method::new(skip_ws(rest)).ok_or(e("bad method"))?;
        Ok(CSeq {
            seq: seq as u32,
            method,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// `1*DIGIT` no greater than `max`.
pub(crate) fn parse_decimal(s: &str, max: u64) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        if v > max {
            return None;
        }
    }
    Some(v)
}

/// A media type: `type/subtype;params`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediaType {
    /// Type, as received.
    pub ty: String,
    /// Subtype, as received.
    pub subtype: String,
    /// Parameters.
    pub params: Vec<Param>,
}

impl MediaType {
    /// Parses a Content-Type value.
    pub fn parse(s: &str) -> Result<MediaType, HeaderError> {
        const H: &str = "Content-Type";
        let (ty, rest) = take_token(skip_ws(s));
        let rest = skip_ws(rest)
            .strip_prefix('/')
            .ok_or(err(H, "expected /"))?;
        let (subtype, rest) = take_token(skip_ws(rest));
        if ty.is_empty() || subtype.is_empty() {
            return Err(err(H, "empty type"));
        }
        let params = parse_params(H, rest)?;
        Ok(MediaType {
            ty: ty.to_owned(),
            subtype: subtype.to_owned(),
            params,
        })
    }

    /// Whether this is `type/subtype`, case-insensitively.
    pub fn is(&self, ty: &str, subtype: &str) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}
