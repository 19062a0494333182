//! The SIP message codec (RFC 3261 §7, §20, §25).
//!
//! [`Message::parse`] takes one datagram (or one frame cut by [`frame`] from a TCP/TLS stream),
//! checks the start line, the header syntax and the headers every request needs, and keeps the
//! other header values raw; typed accessors on [`Headers`] parse on demand. A failure is a
//! [`ParseError`] that says how a stateless server answers it ([`ParseError::reply`]): 400, 413,
//! 416, 501 or 505 for a request, nothing for a response. Nothing here panics on any input.
//!
//! Serialization ([`Request::to_bytes`], [`Response::to_bytes`]) writes full header names,
//! `\r\n` line ends and a Content-Length that matches the body.

pub(crate) mod header;
mod names;
mod uri;

use std::fmt::{self, Write as _};

use bytes::Bytes;
use header::{NameAddrRef, ViaRef};
use names::trim_ws;

pub use header::{CSeq, Contact, HeaderError, MediaType, NameAddr, Via, split_list};
pub use names::{HeaderName, Method, StatusCode};
pub use uri::{Param, SipUri, TelUri, Uri, UriError, find_param, unescape};

/// Default limit on a message's size (head and body), in bytes.
pub const DEFAULT_MAX_SIZE: usize = 65_535;

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// Larger than the size limit.
    #[error("message larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// No blank line ends the header section.
    #[error("header section not terminated")]
    Truncated,
    /// The head is not UTF-8.
    #[error("header section is not UTF-8")]
    NotUtf8,
    /// Malformed request or status line.
    #[error("bad start line: {0}")]
    StartLine(&'static str),
    /// A SIP version other than 2.0.
    #[error("SIP version not supported")]
    Version,
    /// A well-formed Request-URI with a scheme other than sip, sips or tel.
    #[error("unsupported URI scheme {0:?}")]
    UriScheme(String),
    /// A malformed Request-URI.
    #[error("bad Request-URI: {0}")]
    RequestUri(&'static str),
    /// A header line that is not `name: value`.
    #[error("malformed header line")]
    HeaderLine,
    /// A header whose value does not parse.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// A required header is absent.
    #[error("missing {0} header")]
    Missing(&'static str),
    /// A single-valued header appears more than once.
    #[error("more than one {0} header")]
    Duplicate(&'static str),
    /// Content-Length says more bytes than arrived.
    #[error("body shorter than Content-Length ({declared} > {available})")]
    BodyTruncated {
        /// Content-Length.
        declared: usize,
        /// Bytes after the blank line.
        available: usize,
    },
    /// No Content-Length on a stream transport, where it is mandatory.
    #[error("no Content-Length on a stream")]
    StreamWithoutLength,
    /// The CSeq method differs from the request method.
    #[error("CSeq method differs from the request method")]
    CSeqMismatch,
}

/// A message that could not be parsed, and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    kind: ParseErrorKind,
    request: Option<Method>,
}

impl ParseError {
    /// What was wrong.
    pub fn kind(&self) -> &ParseErrorKind {
        &self.kind
    }

    /// Whether the bytes looked like a request (so a reply is possible).
    pub fn is_request(&self) -> bool {
        self.request.is_some()
    }

    /// The status a stateless server answers with, or `None`: drop silently (responses, and
    /// ACK, which is never answered).
    pub fn reply(&self) -> Option<StatusCode> {
        let method = self.request.as_ref()?;
        if *method == Method::ACK {
            return None;
        }
        Some(match &self.kind {
            ParseErrorKind::TooLarge { .. } => StatusCode::REQUEST_ENTITY_TOO_LARGE,
            ParseErrorKind::Version => StatusCode::VERSION_NOT_SUPPORTED,
            ParseErrorKind::UriScheme(_) => StatusCode::UNSUPPORTED_URI_SCHEME,
            // RFC 4475 §3.1.2.18: an unknown method with a mismatched CSeq is better answered
            // 501 than 400.
            ParseErrorKind::CSeqMismatch if !method.is_known() => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::BAD_REQUEST,
        })
    }

    /// Text for the reply's reason phrase or a `Warning: 399` header.
    pub fn warning(&self) -> String {
        self.kind.to_string()
    }

    fn new(kind: impl Into<ParseErrorKind>, request: Option<&Method>) -> ParseError {
        ParseError {
            kind: kind.into(),
            request: request.cloned(),
        }
    }
}

/// The header fields of a message, in order. Values are stored unfolded and trimmed.
///
/// Parsed values point into one copy of the header section; folded values and values added
/// later own their text.
#[derive(Clone, Default)]
pub struct Headers {
    raw: String,
    entries: Vec<(HeaderName, Value)>,
}

#[derive(Clone, Debug)]
enum Value {
    /// `raw[start..end]`.
    Span(usize, usize),
    Owned(String),
}

impl Value {
    #[inline]
    fn get<'a>(&'a self, raw: &'a str) -> &'a str {
        match self {
            Value::Span(a, b) => raw.get(*a..*b).unwrap_or(""),
            Value::Owned(s) => s,
        }
    }

    /// The same text as bytes, without the char-boundary checks (for writing).
    #[inline]
    fn bytes<'a>(&'a self, raw: &'a str) -> &'a [u8] {
        match self {
            Value::Span(a, b) => raw.as_bytes().get(*a..*b).unwrap_or(b""),
            Value::Owned(s) => s.as_bytes(),
        }
    }
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.entries.len() == other.entries.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.entries.iter().map(|(n, v)| (n, v.get(&self.raw)))
    }

    /// The first field with this name.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.get(&self.raw))
    }

    /// Every field with this name, one per header line.
    pub fn get_all<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.entries
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.get(&self.raw))
    }

    /// Every comma-separated element of every field with this name.
    pub fn values<'a, 'n>(
        &'a self,
        name: &'n HeaderName,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.get_all(name).flat_map(split_list)
    }

    /// Number of fields with this name.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.entries.iter().filter(|(n, _)| n == name).count()
    }

    /// Appends a field.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.entries.push((name, Value::Owned(value.into())));
    }

    /// Replaces every field with this name by one, at the first one's place (or the end).
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.entries[i].1 = Value::Owned(value);
                let mut j = 0;
                self.entries.retain(|(n, _)| {
                    j += 1;
                    j - 1 == i || *n != name
                });
            }
            None => self.entries.push((name, Value::Owned(value))),
        }
    }

    /// Removes every field with this name.
    pub fn remove(&mut self, name: &HeaderName) {
        self.entries.retain(|(n, _)| n != name);
    }

    /// Every Via value, top first.
    pub fn via(&self) -> Result<Vec<Via>, HeaderError> {
        self.values(&HeaderName::VIA).map(Via::parse).collect()
    }

    /// The top Via value.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        self.top_via_ref().map(ViaRef::to_owned)
    }

    /// The first Via value, borrowed (nothing allocated).
    pub(crate) fn top_via_ref(&self) -> Result<ViaRef<'_>, HeaderError> {
        ViaRef::parse(
            self.values(&HeaderName::VIA)
                .next()
                .ok_or(header::err("Via", "missing"))?,
        )
    }

    fn single(&self, name: &HeaderName, n: &'static str) -> Result<&str, HeaderError> {
        let mut it = self.get_all(name);
        let v = it.next().ok_or(header::err(n, "missing"))?;
        if it.next().is_some() {
            return Err(header::err(n, "more than one"));
        }
        Ok(v)
    }

    /// The one element of a single-valued address header.
    fn single_addr_str(&self, name: &HeaderName, n: &'static str) -> Result<&str, HeaderError> {
        let v = self.single(name, n)?;
        let mut it = split_list(v);
        let first = it.next().unwrap_or("");
        if it.next().is_some() {
            return Err(header::err(n, "more than one value"));
        }
        Ok(first)
    }

    fn single_addr(&self, name: &HeaderName, n: &'static str) -> Result<NameAddr, HeaderError> {
        NameAddr::parse(n, self.single_addr_str(name, n)?)
    }

    /// From.
    pub fn from(&self) -> Result<NameAddr, HeaderError> {
        self.single_addr(&HeaderName::FROM, "From")
    }

    /// To.
    pub fn to(&self) -> Result<NameAddr, HeaderError> {
        self.single_addr(&HeaderName::TO, "To")
    }

    /// Call-ID.
    pub fn call_id(&self) -> Result<&str, HeaderError> {
        let v = self.single(&HeaderName::CALL_ID, "Call-ID")?;
        if v.is_empty() || v.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(header::err("Call-ID", "empty or contains whitespace"));
        }
        Ok(v)
    }

    /// CSeq.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(self.single(&HeaderName::CSEQ, "CSeq")?)
    }

    /// Contact, `None` when absent.
    pub fn contact(&self) -> Result<Option<Contact>, HeaderError> {
        if self.count(&HeaderName::CONTACT) == 0 {
            return Ok(None);
        }
        let vals: Vec<&str> = self.values(&HeaderName::CONTACT).collect();
        if vals.contains(&"*") {
            return if vals.len() == 1 {
                Ok(Some(Contact::Star))
            } else {
                Err(header::err("Contact", "* mixed with addresses"))
            };
        }
        vals.into_iter()
            .map(|v| NameAddr::parse("Contact", v))
            .collect::<Result<_, _>>()
            .map(|v| Some(Contact::Addrs(v)))
    }

    fn addr_list(&self, name: &HeaderName, n: &'static str) -> Result<Vec<NameAddr>, HeaderError> {
        self.values(name).map(|v| NameAddr::parse(n, v)).collect()
    }

    /// Route values, in order (empty when absent).
    pub fn route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.addr_list(&HeaderName::ROUTE, "Route")
    }

    /// Record-Route values, in order (empty when absent).
    pub fn record_route(&self) -> Result<Vec<NameAddr>, HeaderError> {
        self.addr_list(&HeaderName::RECORD_ROUTE, "Record-Route")
    }

    fn single_number(
        &self,
        name: &HeaderName,
        n: &'static str,
        max: u64,
    ) -> Result<Option<u64>, HeaderError> {
        if self.count(name) == 0 {
            return Ok(None);
        }
        let v = self.single(name, n)?;
        header::parse_decimal(v, max)
            .map(Some)
            .ok_or(header::err(n, "not a number in range"))
    }

    /// Max-Forwards (0–255), `None` when absent.
    pub fn max_forwards(&self) -> Result<Option<u8>, HeaderError> {
        // At most 255.
        Ok(self
            .single_number(&HeaderName::MAX_FORWARDS, "Max-Forwards", 255)?
            .map(|v| v as u8))
    }

    /// Content-Length, `None` when absent.
    pub fn content_length(&self) -> Result<Option<usize>, HeaderError> {
        // At most u32::MAX, which fits usize on every supported target.
        Ok(self
            .single_number(
                &HeaderName::CONTENT_LENGTH,
                "Content-Length",
                u64::from(u32::MAX),
            )?
            .map(|v| v as usize))
    }

    /// Expires in seconds, `None` when absent.
    pub fn expires(&self) -> Result<Option<u32>, HeaderError> {
        // At most u32::MAX.
        Ok(self
            .single_number(&HeaderName::EXPIRES, "Expires", u64::from(u32::MAX))?
            .map(|v| v as u32))
    }

    /// Content-Type, `None` when absent.
    pub fn content_type(&self) -> Result<Option<MediaType>, HeaderError> {
        if self.count(&HeaderName::CONTENT_TYPE) == 0 {
            return Ok(None);
        }
        MediaType::parse(self.single(&HeaderName::CONTENT_TYPE, "Content-Type")?).map(Some)
    }

    /// Calls `f` on every comma-separated element of every field with this name, in order, up
    /// to its first error: [`Headers::values`] without the iterator adapters, for the checks
    /// every message gets.
    fn each_value(
        &self,
        name: &HeaderName,
        mut f: impl FnMut(&str) -> Result<(), HeaderError>,
    ) -> Result<(), HeaderError> {
        for (n, v) in &self.entries {
            if n == name {
                for element in split_list(v.get(&self.raw)) {
                    f(element)?;
                }
            }
        }
        Ok(())
    }

    /// Bytes [`Headers::write`] writes at most.
    fn wire_len(&self) -> usize {
        const CONTENT_LENGTH_LINE: usize = "Content-Length: 18446744073709551615\r\n\r\n".len();
        self.entries
            .iter()
            .map(|(n, v)| n.as_bytes().len() + v.bytes(&self.raw).len() + 4)
            .sum::<usize>()
            + CONTENT_LENGTH_LINE
    }

    fn write(&self, out: &mut Vec<u8>, body_len: usize) {
        for (n, v) in &self.entries {
            if *n == HeaderName::CONTENT_LENGTH {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(v.bytes(&self.raw));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Content-Length: ");
        // Decimal digits, last first.
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = body_len;
        loop {
            i -= 1;
            // A remainder below 10.
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        out.extend_from_slice(&digits[i..]);
        out.extend_from_slice(b"\r\n\r\n");
    }
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// Header fields.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase (may be empty, may be any UTF-8).
    pub reason: String,
    /// Header fields.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A request or a response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// What [`frame`] found at the start of a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Not a whole message yet: read more.
    Incomplete,
    /// This many bytes of CRLF keepalive to discard.
    Keepalive(usize),
    /// A whole message of this many bytes: hand `&buf[..n]` to [`Message::parse`].
    Message(usize),
}

/// Says how many bytes the next message in a TCP/TLS stream buffer takes. Content-Length is
/// mandatory on streams. An error means the stream is unusable: answer if
/// [`ParseError::reply`] says so, then close the connection.
pub fn frame(buf: &[u8], max_size: usize) -> Result<Frame, ParseError> {
    let ws = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    if ws > 0 {
        return Ok(if ws == buf.len() && buf.last() == Some(&b'\r') {
            if ws == 1 {
                Frame::Incomplete
            } else {
                Frame::Keepalive(ws - 1)
            }
        } else {
            Frame::Keepalive(ws)
        });
    }
    let req = looks_like_request(buf);
    let mut headers = Headers::new();
    let Head {
        body_start, fields, ..
    } = match scan_head(buf, &mut headers) {
        Ok(head) => head,
        Err(ParseErrorKind::Truncated) if buf.len() <= max_size => return Ok(Frame::Incomplete),
        Err(ParseErrorKind::Truncated) => {
            return Err(ParseError::new(
                ParseErrorKind::TooLarge { limit: max_size },
                req.as_ref(),
            ));
        }
        Err(k) => return Err(ParseError::new(k, req.as_ref())),
    };
    fields.map_err(|k| ParseError::new(k, req.as_ref()))?;
    if headers.count(&HeaderName::CONTENT_LENGTH) > 1 {
        return Err(ParseError::new(
            ParseErrorKind::Duplicate("Content-Length"),
            req.as_ref(),
        ));
    }
    let cl = headers
        .content_length()
        .map_err(|e| ParseError::new(e, req.as_ref()))?
        .ok_or(ParseError::new(
            ParseErrorKind::StreamWithoutLength,
            req.as_ref(),
        ))?;
    let total = body_start.saturating_add(cl);
    if total > max_size {
        return Err(ParseError::new(
            ParseErrorKind::TooLarge { limit: max_size },
            req.as_ref(),
        ));
    }
    Ok(if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    })
}

/// The method, if the bytes start like a request (anything not starting `SIP/`).
fn looks_like_request(buf: &[u8]) -> Option<Method> {
    if buf.len() >= 4 && buf[..4].eq_ignore_ascii_case(b"SIP/") {
        return None;
    }
    let n = buf.iter().take_while(|b| names::is_token_byte(**b)).count();
    Some(
        std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(Method::new)
            .unwrap_or(Method::OPTIONS),
    )
}

/// (end of the header section excluding the blank line, start of the body).
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    // The first "\n\r\n" or "\n\n": one scan that stops at the blank line, not the body's end.
    memchr::memchr_iter(b'\n', buf).find_map(|i| match buf.get(i + 1..) {
        Some([b'\n', ..]) => Some((i + 1, i + 2)),
        Some([b'\r', b'\n', ..]) => Some((i + 1, i + 3)),
        _ => None,
    })
}

/// What [`scan_head`] found.
struct Head {
    /// The start line's length, without its line end.
    start_len: usize,
    /// Where the body starts.
    body_start: usize,
    /// The fields' syntax verdict, which callers report after the start line's.
    fields: Result<(), ParseErrorKind>,
}

/// Reads the head of `buf` (start line and header fields, up to the blank line) into `headers`:
/// `raw` gets its text and `entries` its fields. Errors: `Truncated` (no blank line) and
/// `NotUtf8`.
fn scan_head(buf: &[u8], headers: &mut Headers) -> Result<Head, ParseErrorKind> {
    let nl = memchr::memchr(b'\n', buf).ok_or(ParseErrorKind::Truncated)?;
    let start_end = if nl > 0 && buf[nl - 1] == b'\r' {
        nl - 1
    } else {
        nl
    };
    let mut folded = Vec::new();
    let (head_end, body_start, fields) =
        match scan_fields(buf, nl + 1, &mut headers.entries, &mut folded) {
            Some((head_end, body_start)) => (head_end, body_start, Ok(())),
            None => {
                // A malformed line, or no blank line: the errors come in the order a scan for
                // the blank line, then a UTF-8 check, then the line-by-line parse would give.
                headers.entries.clear();
                let (head_end, body_start) = find_head_end(buf).ok_or(ParseErrorKind::Truncated)?;
                (head_end, body_start, Err(ParseErrorKind::HeaderLine))
            }
        };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| ParseErrorKind::NotUtf8)?;
    headers.raw.push_str(head);
    for i in folded {
        if let Some((_, v)) = headers.entries.get_mut(i) {
            *v = Value::Owned(unfold(v.get(&headers.raw)));
        }
    }
    Ok(Head {
        start_len: start_end,
        body_start,
        fields,
    })
}

/// Splits the field lines of `b[pos..]` into `entries` up to the blank line, and returns
/// (where the blank line starts, where the body starts). Values are spans into `b`, trimmed; a
/// folded value's span covers all its lines and its index goes to `folded`. `None` at a
/// malformed line or when no blank line comes.
fn scan_fields(
    b: &[u8],
    mut pos: usize,
    entries: &mut Vec<(HeaderName, Value)>,
    folded: &mut Vec<usize>,
) -> Option<(usize, usize)> {
    loop {
        let continuation = match b.get(pos..)? {
            [] => return None,
            [b'\n', ..] => return Some((pos, pos + 1)),
            [b'\r', b'\n', ..] => return Some((pos, pos + 2)),
            [b' ' | b'\t', ..] => true,
            _ => false,
        };
        // A field line is `token *WS ":" value`; the value starts after the colon.
        let value_start = if continuation {
            pos
        } else {
            let n = b[pos..]
                .iter()
                .take_while(|c| names::is_token_byte(**c))
                .count();
            let mut colon = pos + n;
            while matches!(b.get(colon), Some(b' ' | b'\t')) {
                colon += 1;
            }
            if n == 0 || b.get(colon) != Some(&b':') {
                return None;
            }
            entries.push((HeaderName::from_token(&b[pos..pos + n]), Value::Span(0, 0)));
            colon + 1
        };
        // The line ends at "\r\n" or "\n"; any other CR is malformed.
        let eol = value_start + memchr::memchr2(b'\r', b'\n', &b[value_start..])?;
        pos = match b.get(eol..)? {
            [b'\n', ..] => eol + 1,
            [b'\r', b'\n', ..] => eol + 2,
            _ => return None,
        };
        let last = entries.len().checked_sub(1)?;
        let (_, value) = entries.get_mut(last)?;
        if continuation {
            // Joined with the value above when the head is text (see `unfold`).
            if let Value::Span(_, end) = value {
                *end = eol;
            }
            if folded.last() != Some(&last) {
                folded.push(last);
            }
        } else {
            let mut start = value_start;
            while start < eol && matches!(b[start], b' ' | b'\t') {
                start += 1;
            }
            let mut end = eol;
            while end > start && matches!(b[end - 1], b' ' | b'\t') {
                end -= 1;
            }
            *value = Value::Span(start, end);
        }
    }
}

/// A folded value: its lines trimmed and the non-empty ones joined with one space.
fn unfold(lines: &str) -> String {
    let mut out = String::with_capacity(lines.len());
    for line in lines.split('\n') {
        let part = trim_ws(line.strip_suffix('\r').unwrap_or(line));
        if !part.is_empty() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(part);
        }
    }
    out
}

fn check_version(v: &str) -> Result<(), ParseErrorKind> {
    // Compare bytes first: `v` may hold multi-byte characters anywhere.
    let Some(num) = v
        .as_bytes()
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case(b"SIP/"))
        .and_then(|_| v.get(4..))
    else {
        return Err(ParseErrorKind::StartLine("bad SIP version"));
    };
    let ok_syntax = !num.is_empty()
        && num.split_once('.').is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
        });
    if !ok_syntax {
        Err(ParseErrorKind::StartLine("bad SIP version"))
    } else if num != "2.0" {
        Err(ParseErrorKind::Version)
    } else {
        Ok(())
    }
}

impl Message {
    /// Parses one message from a datagram with the default size limit.
    pub fn parse(buf: &[u8]) -> Result<Message, ParseError> {
        Message::parse_with_limit(buf, DEFAULT_MAX_SIZE)
    }

    /// Parses one message. Without Content-Length (allowed on UDP) the body is the rest of the
    /// buffer; with it, octets after the body are ignored (RFC 3261 §18.3).
    pub fn parse_with_limit(buf: &[u8], max_size: usize) -> Result<Message, ParseError> {
        let lead = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        let buf = &buf[lead..];
        let req = looks_like_request(buf);
        let fail = |k: ParseErrorKind, m: Option<&Method>| ParseError::new(k, m);
        if buf.len() > max_size {
            return Err(fail(
                ParseErrorKind::TooLarge { limit: max_size },
                req.as_ref(),
            ));
        }
        let mut headers = Headers::new();
        // Enough for a carrier INVITE without growing.
        headers.entries.reserve(32);
        let Head {
            start_len,
            body_start,
            fields,
        } = scan_head(buf, &mut headers).map_err(|k| fail(k, req.as_ref()))?;
        let start = headers.raw.get(..start_len).unwrap_or("");

        if req.is_none() {
            // Response: Status-Line = SIP-Version SP Status-Code SP Reason-Phrase.
            let (version, rest_line) = start
                .split_once(' ')
                .ok_or(fail(ParseErrorKind::StartLine("no status code"), None))?;
            check_version(version).map_err(|k| fail(k, None))?;
            let (code, reason) = rest_line.split_once(' ').unwrap_or((rest_line, ""));
            let status = (code.len() == 3)
                .then(|| code.parse::<u16>().ok())
                .flatten()
                .and_then(StatusCode::new)
                .ok_or(fail(ParseErrorKind::StartLine("bad status code"), None))?;
            if reason.bytes().any(|b| b < b' ' && b != b'\t') {
                return Err(fail(
                    ParseErrorKind::StartLine("control character in reason"),
                    None,
                ));
            }
            let reason = reason.to_owned();
            fields.map_err(|k| fail(k, None))?;
            let cl = validate(&headers, None).map_err(|k| fail(k, None))?;
            let body = body_of(buf, body_start, cl).map_err(|k| fail(k, None))?;
            return Ok(Message::Response(Response {
                status,
                reason,
                headers,
                body,
            }));
        }

        // Request-Line = Method SP Request-URI SP SIP-Version: exactly two single spaces.
        let m = req.as_ref();
        let (method, after) = start
            .split_once(' ')
            .ok_or(fail(ParseErrorKind::StartLine("no Request-URI"), m))?;
        let (uri, version) = after
            .rsplit_once(' ')
            .ok_or(fail(ParseErrorKind::StartLine("no SIP version"), m))?;
        let method = Method::new(method).ok_or(fail(ParseErrorKind::StartLine("bad method"), m))?;
        let m = Some(&method);
        check_version(version).map_err(|k| fail(k, m))?;
        if uri.is_empty() || uri.bytes().any(|b| b <= b' ') {
            return Err(fail(
                ParseErrorKind::StartLine("whitespace in the Request-URI"),
                m,
            ));
        }
        let uri = Uri::parse(uri)
            .map_err(|UriError::Syntax(s)| fail(ParseErrorKind::RequestUri(s), m))?;
        match &uri {
            Uri::Other { scheme, .. } => {
                return Err(fail(ParseErrorKind::UriScheme(scheme.clone()), m));
            }
            Uri::Sip(s) if !s.headers.is_empty() => {
                return Err(fail(
                    ParseErrorKind::RequestUri("headers are not allowed in a Request-URI"),
                    m,
                ));
            }
            _ => {}
        }
        fields.map_err(|k| fail(k, m))?;
        let cl = validate(&headers, Some(&method)).map_err(|k| fail(k, m))?;
        let body = body_of(buf, body_start, cl).map_err(|k| fail(k, m))?;
        Ok(Message::Request(Request {
            method,
            uri,
            headers,
            body,
        }))
    }

    /// The headers.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        match self {
            Message::Request(r) => &r.body,
            Message::Response(r) => &r.body,
        }
    }

    /// The request, if this is one.
    pub fn as_request(&self) -> Option<&Request> {
        match self {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        }
    }

    /// The response, if this is one.
    pub fn as_response(&self) -> Option<&Response> {
        match self {
            Message::Response(r) => Some(r),
            Message::Request(_) => None,
        }
    }

    /// Serializes (see [`Request::to_bytes`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }
}

fn body_of(
    buf: &[u8],
    body_start: usize,
    content_length: Option<usize>,
) -> Result<Bytes, ParseErrorKind> {
    let available = buf.len().saturating_sub(body_start);
    let rest = buf.get(body_start..).unwrap_or(&[]);
    match content_length {
        None => Ok(Bytes::copy_from_slice(rest)),
        Some(declared) => match rest.get(..declared) {
            Some(b) => Ok(Bytes::copy_from_slice(b)),
            None => Err(ParseErrorKind::BodyTruncated {
                declared,
                available,
            }),
        },
    }
}

/// The checks every message gets at parse time; `method` is `None` for responses.
/// The checks every message gets at parse time; `method` is `None` for responses. Returns
/// Content-Length.
fn validate(h: &Headers, method: Option<&Method>) -> Result<Option<usize>, ParseErrorKind> {
    // One pass over the fields finds the ones checked here. The first five must appear, the
    // next four at most once; the rest may repeat.
    const WATCH: [(HeaderName, &str); 13] = [
        (HeaderName::VIA, "Via"),
        (HeaderName::FROM, "From"),
        (HeaderName::TO, "To"),
        (HeaderName::CALL_ID, "Call-ID"),
        (HeaderName::CSEQ, "CSeq"),
        (HeaderName::MAX_FORWARDS, "Max-Forwards"),
        (HeaderName::CONTENT_LENGTH, "Content-Length"),
        (HeaderName::CONTENT_TYPE, "Content-Type"),
        (HeaderName::EXPIRES, "Expires"),
        (HeaderName::CONTACT, "Contact"),
        (HeaderName::ROUTE, "Route"),
        (HeaderName::RECORD_ROUTE, "Record-Route"),
        (HeaderName::DATE, "Date"),
    ];
    const SINGLE: std::ops::Range<usize> = 1..9;
    // WATCH's index + 1 by known-name id (0: not watched), so each field costs one load.
    const SLOT: [u8; names::KNOWN_NAMES.len() + 1] = {
        let mut t = [0u8; names::KNOWN_NAMES.len() + 1];
        let mut i = 0;
        while i < WATCH.len() {
            t[WATCH[i].0.id() as usize] = (i + 1) as u8;
            i += 1;
        }
        t
    };
    let mut counts = [0usize; WATCH.len()];
    let mut first = [""; WATCH.len()];
    for (name, value) in &h.entries {
        if let Some(&slot) = SLOT.get(usize::from(name.id()))
            && let Some(i) = usize::from(slot).checked_sub(1)
        {
            if counts[i] == 0 {
                first[i] = value.get(&h.raw);
            }
            counts[i] += 1;
        }
    }
    for i in SINGLE {
        if counts[i] > 1 {
            return Err(ParseErrorKind::Duplicate(WATCH[i].1));
        }
    }
    for (i, (_, n)) in WATCH.iter().enumerate().take(5) {
        if counts[i] == 0 {
            return Err(ParseErrorKind::Missing(n));
        }
    }
    let one_element = |i: usize| -> Result<&str, HeaderError> {
        let mut it = split_list(first[i]);
        let v = it.next().unwrap_or("");
        if it.next().is_some() {
            return Err(header::err(WATCH[i].1, "more than one value"));
        }
        Ok(v)
    };
    // Checked without building the typed values (no allocation); accessors build them later.
    h.each_value(&HeaderName::VIA, |v| ViaRef::parse(v).map(drop))?;
    NameAddrRef::parse("From", one_element(1)?)?;
    NameAddrRef::parse("To", one_element(2)?)?;
    let call_id = first[3];
    if call_id.is_empty() || call_id.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(header::err("Call-ID", "empty or contains whitespace").into());
    }
    let cseq = CSeq::parse(first[4])?;
    if counts[5] > 0 && header::parse_decimal(first[5], 255).is_none() {
        return Err(header::err("Max-Forwards", "not a number in range").into());
    }
    let content_length = if counts[6] > 0 {
        // At most u32::MAX, which fits usize on every supported target.
        Some(
            header::parse_decimal(first[6], u64::from(u32::MAX))
                .ok_or(header::err("Content-Length", "not a number in range"))?
                as usize,
        )
    } else {
        None
    };
    if method.is_some() {
        if counts[9] > 0 {
            let mut star = false;
            let mut n = 0;
            h.each_value(&HeaderName::CONTACT, |v| {
                n += 1;
                if v == "*" {
                    star = true;
                    Ok(())
                } else {
                    NameAddrRef::parse("Contact", v).map(drop)
                }
            })?;
            if star && n > 1 {
                return Err(header::err("Contact", "* mixed with addresses").into());
            }
        }
        if counts[10] > 0 {
            h.each_value(&HeaderName::ROUTE, |v| {
                NameAddrRef::parse("Route", v).map(drop)
            })?;
        }
        if counts[11] > 0 {
            h.each_value(&HeaderName::RECORD_ROUTE, |v| {
                NameAddrRef::parse("Record-Route", v).map(drop)
            })?;
        }
    }
    if counts[12] > 0 && !first[12].ends_with(" GMT") {
        return Err(header::err("Date", "time zone must be GMT").into());
    }
    if let Some(m) = method
        && cseq.method != *m
    {
        return Err(ParseErrorKind::CSeqMismatch);
    }
    Ok(content_length)
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: Method, uri: Uri) -> Request {
        Request {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: HeaderName, value: impl fmt::Display) -> Request {
        self.headers.push(name, value.to_string());
        self
    }

    /// Sets the body and its Content-Type (builder style).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Request {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
        self
    }

    /// Writes the request: full header names, `\r\n`, Content-Length set to the body's length.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_message(
            out,
            format_args!("{} {} SIP/2.0\r\n", self.method, self.uri),
            &self.headers,
            &self.body,
        );
    }

    /// The serialized request.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

impl Response {
    /// A response with the canonical reason phrase, no headers and no body.
    pub fn new(status: StatusCode) -> Response {
        Response {
            status,
            reason: status.canonical_reason().unwrap_or("").to_owned(),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response to `req` (RFC 3261 §8.2.6.2): copies every Via, From, To, Call-ID and CSeq.
    /// Add a To tag with [`Response::with_to_tag`] where the RFC asks for one.
    pub fn for_request(req: &Request, status: StatusCode) -> Response {
        let mut r = Response::new(status);
        for (name, value) in req.headers.iter() {
            if [
                HeaderName::VIA,
                HeaderName::FROM,
                HeaderName::TO,
                HeaderName::CALL_ID,
                HeaderName::CSEQ,
            ]
            .contains(name)
            {
                r.headers.push(name.clone(), value);
            }
        }
        r
    }

    /// Adds `;tag=…` to the To header unless it already has a tag.
    pub fn with_to_tag(mut self, tag: &str) -> Response {
        if let Ok(mut to) = self.headers.to()
            && to.tag().is_none()
        {
            to.params.push(Param::new("tag", Some(tag)));
            self.headers.set(HeaderName::TO, to.to_string());
        }
        self
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: HeaderName, value: impl fmt::Display) -> Response {
        self.headers.push(name, value.to_string());
        self
    }

    /// Sets the body and its Content-Type (builder style).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Bytes>) -> Response {
        set_body(&mut self.headers, &mut self.body, content_type, body.into());
        self
    }

    /// Writes the response: full header names, `\r\n`, Content-Length set to the body's length.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_message(
            out,
            format_args!("SIP/2.0 {} {}\r\n", self.status, self.reason),
            &self.headers,
            &self.body,
        );
    }

    /// The serialized response.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }
}

/// Sets `body` and its Content-Type; shared by the Request and Response builders.
fn set_body(headers: &mut Headers, body: &mut Bytes, content_type: &str, new_body: Bytes) {
    headers.set(HeaderName::CONTENT_TYPE, content_type);
    *body = new_body;
}

/// Writes a message: `start_line` (with its `\r\n`), the headers with Content-Length set to
/// the body's length, then the body; shared by `Request::write_to` and `Response::write_to`.
fn write_message(
    out: &mut Vec<u8>,
    start_line: fmt::Arguments<'_>,
    headers: &Headers,
    body: &Bytes,
) {
    // The start line is short; one reservation covers the rest.
    out.reserve(128 + headers.wire_len() + body.len());
    let _ = ByteWriter(out).write_fmt(start_line);
    headers.write(out, body.len());
    out.extend_from_slice(body);
}

/// `fmt::Write` straight into the output buffer (no temporary `String` for the start line).
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport\r\n\
f: \"Alice\" <sip:alice@example.com>;tag=1\r\n\
t: <sip:bob@example.com>\r\n\
i: abc@192.0.2.1\r\n\
CSeq: 1 INVITE\r\n\
Max-Forwards: 70\r\n\
l: 4\r\n\
\r\nabcdEXTRA";

    #[test]
    fn parses_and_round_trips() {
        let m = Message::parse(INVITE).expect("parses");
        let r = m.as_request().expect("request");
        assert_eq!(r.method, Method::INVITE);
        assert_eq!(&r.body[..], b"abcd");
        let via = r.headers.top_via().expect("via");
        assert_eq!(
            (via.host.as_str(), via.port, via.branch(), via.rport()),
            ("192.0.2.1", Some(5060), Some("z9hG4bK776"), Some(None))
        );
        let out = m.to_bytes();
        assert!(out.starts_with(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP"));
        let again = Message::parse(&out).expect("reparses");
        assert_eq!(again, m);
    }

    #[test]
    fn frames_a_stream() {
        let full = &INVITE[..INVITE.len() - 5];
        assert_eq!(frame(&full[..20], 1000), Ok(Frame::Incomplete));
        assert_eq!(frame(&full[..full.len() - 1], 1000), Ok(Frame::Incomplete));
        assert_eq!(frame(INVITE, 1000), Ok(Frame::Message(full.len())));
        assert_eq!(frame(b"\r\n\r\nINV", 1000), Ok(Frame::Keepalive(4)));
        assert_eq!(
            frame(INVITE, 50).map_err(|e| e.reply()),
            Err(Some(StatusCode::REQUEST_ENTITY_TOO_LARGE))
        );
    }

    #[test]
    fn response_for_request() {
        let Ok(Message::Request(req)) = Message::parse(INVITE) else {
            panic!("parse")
        };
        let resp = Response::for_request(&req, StatusCode::RINGING).with_to_tag("xyz");
        let Ok(Message::Response(back)) = Message::parse(&resp.to_bytes()) else {
            panic!("reparse")
        };
        assert_eq!(back.status, StatusCode::RINGING);
        assert_eq!(back.reason, "Ringing");
        assert_eq!(back.headers.to().expect("to").tag(), Some("xyz"));
        assert_eq!(back.headers.call_id(), Ok("abc@192.0.2.1"));
        assert_eq!(back.headers.cseq().expect("cseq").method, Method::INVITE);
    }

    #[test]
    fn extension_method_and_code_round_trip() {
        let Ok(Message::Response(r)) = Message::parse(b"SIP/2.0 299 Odd\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 FOO\r\n\r\n") else {
            panic!("parse")
        };
        assert_eq!(r.status.as_u16(), 299);
        assert_eq!(r.headers.cseq().expect("cseq").method.as_str(), "FOO");
        assert!(r.to_bytes().starts_with(b"SIP/2.0 299 Odd\r\n"));
    }

    fn req(head: &str) -> Result<Message, ParseError> {
        Message::parse(format!("{head}\r\n\r\n").as_bytes())
    }

    const BASE: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nMax-Forwards: 70";

    #[test]
    fn uris_ipv6_tel_and_contact_star() {
        let m = req(&format!(
            "REGISTER sips:[2001:db8::1]:5061;transport=tls SIP/2.0\r\n{BASE}\r\nCSeq: 2 REGISTER\r\nm: *\r\nExpires: 0"
        ))
        .expect("parses");
        let r = m.as_request().expect("request");
        let u = r.uri.as_sip().expect("sips");
        assert!(u.secure);
        assert_eq!((u.host.as_str(), u.port), ("[2001:db8::1]", Some(5061)));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tls")));
        assert_eq!(r.headers.contact(), Ok(Some(Contact::Star)));
        assert_eq!(r.headers.expires(), Ok(Some(0)));
        let t = Uri::parse("tel:+1-201-555-0123;phone-context=example.com").expect("tel");
        assert_eq!(
            t.to_string(),
            "tel:+1-201-555-0123;phone-context=example.com"
        );
    }

    #[test]
    fn folding_compact_forms_and_lists() {
        let m = req(&format!(
            "OPTIONS sip:x@y SIP/2.0\r\n{BASE}\r\nCSeq: 1 OPTIONS\r\nk: timer,\r\n  100rel\r\nRoute: <sip:p1;lr>, \"A, B\" <sip:p2;lr>\r\nRoute: <sip:p3;lr>"
        ))
        .expect("parses");
        let h = m.headers();
        assert_eq!(h.get(&HeaderName::SUPPORTED), Some("timer, 100rel"));
        assert_eq!(
            h.values(&HeaderName::SUPPORTED).collect::<Vec<_>>(),
            ["timer", "100rel"]
        );
        let route = h.route().expect("Route");
        assert_eq!(route.len(), 3);
        assert_eq!(route[1].display.as_deref(), Some("A, B"));
    }

    #[test]
    fn replies_for_bad_requests_and_silence_for_responses_and_ack() {
        let big = vec![b'a'; DEFAULT_MAX_SIZE + 1];
        let mut msg = b"INVITE sip:x@y SIP/2.0\r\n".to_vec();
        msg.extend_from_slice(&big);
        let e = Message::parse(&msg).expect_err("too large");
        assert_eq!(e.reply(), Some(StatusCode::REQUEST_ENTITY_TOO_LARGE));
        let e =
            req(&format!("ACK sip:x@y SIP/2.0\r\n{BASE}\r\nCSeq: 1 INVITE")).expect_err("mismatch");
        assert_eq!(e.reply(), None);
        let e = Message::parse(b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n").expect_err("bad Via");
        assert_eq!(e.reply(), None);
        assert!(Message::parse(b"").is_err());
        assert!(Message::parse(b"\r\n\r\n").is_err());
        let e = req(&format!("INVITE sip:x@y SIP/2.0\r\n{BASE}")).expect_err("no CSeq");
        assert_eq!(e.kind(), &ParseErrorKind::Missing("CSeq"));
    }

    #[test]
    fn stream_needs_content_length() {
        let m = format!("OPTIONS sip:x@y SIP/2.0\r\n{BASE}\r\nCSeq: 1 OPTIONS\r\n\r\n");
        assert_eq!(
            frame(m.as_bytes(), 4096).map_err(|e| e.kind().clone()),
            Err(ParseErrorKind::StreamWithoutLength)
        );
        assert_eq!(frame(b"\r", 4096), Ok(Frame::Incomplete));
    }
}
