//! Open wire enums: [`Method`], [`StatusCode`] and [`HeaderName`].

use std::borrow::Cow;
use std::fmt;

/// A SIP method: an open newtype so extension methods round-trip exactly.
///
/// Methods are case-sensitive (RFC 3261 §7.1): `invite` is an extension method, not INVITE.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Method(Cow<'static, str>);

macro_rules! methods {
    ($($name:ident = $s:literal),* $(,)?) => {
        impl Method {
            $(
                #[doc = concat!("The `", $s, "` method.")]
                pub const $name: Method = Method(Cow::Borrowed($s));
            )*
            const KNOWN: &'static [Method] = &[$(Method::$name),*];
        }
    };
}

methods! {
    INVITE = "INVITE", ACK = "ACK", BYE = "BYE", CANCEL = "CANCEL", OPTIONS = "OPTIONS",
    REGISTER = "REGISTER", PRACK = "PRACK", UPDATE = "UPDATE", INFO = "INFO", REFER = "REFER",
    NOTIFY = "NOTIFY", SUBSCRIBE = "SUBSCRIBE", MESSAGE = "MESSAGE", PUBLISH = "PUBLISH",
}

impl Method {
    /// A method from its wire spelling. Known methods come back as their consts (no allocation).
    /// Returns `None` unless `s` is a non-empty token (RFC 3261 §25.1).
    pub fn new(s: &str) -> Option<Method> {
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return None;
        }
        Some(
            Method::KNOWN
                .iter()
                .find(|m| m.as_str() == s)
                .cloned()
                .unwrap_or_else(|| Method(Cow::Owned(s.to_owned()))),
        )
    }

    /// The wire spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is one of the methods with a const here (RFC 3261 and its common extensions).
    pub fn is_known(&self) -> bool {
        Method::KNOWN.iter().any(|m| m == self)
    }
}

impl fmt::Debug for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SIP status code (three digits, 100–699): an open newtype so unknown codes round-trip.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

macro_rules! codes {
    ($($name:ident = $n:literal $reason:literal),* $(,)?) => {
        impl StatusCode {
            $(
                #[doc = concat!("`", stringify!($n), " ", $reason, "`.")]
                pub const $name: StatusCode = StatusCode($n);
            )*

            /// The RFC's reason phrase for a known code, `None` for others.
            pub fn canonical_reason(self) -> Option<&'static str> {
                match self.0 {
                    $($n => Some($reason),)*
                    _ => None,
                }
            }
        }
    };
}

codes! {
    TRYING = 100 "Trying", RINGING = 180 "Ringing", CALL_IS_BEING_FORWARDED = 181 "Call Is Being Forwarded",
    QUEUED = 182 "Queued", SESSION_PROGRESS = 183 "Session Progress", OK = 200 "OK",
    ACCEPTED = 202 "Accepted", MULTIPLE_CHOICES = 300 "Multiple Choices",
    MOVED_PERMANENTLY = 301 "Moved Permanently", MOVED_TEMPORARILY = 302 "Moved Temporarily",
    USE_PROXY = 305 "Use Proxy", ALTERNATIVE_SERVICE = 380 "Alternative Service",
    BAD_REQUEST = 400 "Bad Request", UNAUTHORIZED = 401 "Unauthorized", FORBIDDEN = 403 "Forbidden",
    NOT_FOUND = 404 "Not Found", METHOD_NOT_ALLOWED = 405 "Method Not Allowed",
    NOT_ACCEPTABLE = 406 "Not Acceptable",
    PROXY_AUTHENTICATION_REQUIRED = 407 "Proxy Authentication Required",
    REQUEST_TIMEOUT = 408 "Request Timeout", GONE = 410 "Gone",
    REQUEST_ENTITY_TOO_LARGE = 413 "Request Entity Too Large",
    REQUEST_URI_TOO_LONG = 414 "Request-URI Too Long",
    UNSUPPORTED_MEDIA_TYPE = 415 "Unsupported Media Type",
    UNSUPPORTED_URI_SCHEME = 416 "Unsupported URI Scheme", BAD_EXTENSION = 420 "Bad Extension",
    EXTENSION_REQUIRED = 421 "Extension Required", INTERVAL_TOO_BRIEF = 423 "Interval Too Brief",
    TEMPORARILY_UNAVAILABLE = 480 "Temporarily Unavailable",
    CALL_OR_TRANSACTION_DOES_NOT_EXIST = 481 "Call/Transaction Does Not Exist",
    LOOP_DETECTED = 482 "Loop Detected", TOO_MANY_HOPS = 483 "Too Many Hops",
    ADDRESS_INCOMPLETE = 484 "Address Incomplete", AMBIGUOUS = 485 "Ambiguous",
    BUSY_HERE = 486 "Busy Here", REQUEST_TERMINATED = 487 "Request Terminated",
    NOT_ACCEPTABLE_HERE = 488 "Not Acceptable Here", REQUEST_PENDING = 491 "Request Pending",
    UNDECIPHERABLE = 493 "Undecipherable", SERVER_INTERNAL_ERROR = 500 "Server Internal Error",
    NOT_IMPLEMENTED = 501 "Not Implemented", BAD_GATEWAY = 502 "Bad Gateway",
    SERVICE_UNAVAILABLE = 503 "Service Unavailable", SERVER_TIMEOUT = 504 "Server Time-out",
    VERSION_NOT_SUPPORTED = 505 "Version Not Supported", MESSAGE_TOO_LARGE = 513 "Message Too Large",
    BUSY_EVERYWHERE = 600 "Busy Everywhere", DECLINE = 603 "Decline",
    DOES_NOT_EXIST_ANYWHERE = 604 "Does Not Exist Anywhere", NOT_ACCEPTABLE_GLOBAL = 606 "Not Acceptable",
}

impl StatusCode {
    /// A status code from its number; `None` outside 100–699.
    pub fn new(code: u16) -> Option<StatusCode> {
        (100..=699).contains(&code).then_some(StatusCode(code))
    }

    /// The number.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// 1xx.
    pub fn is_provisional(self) -> bool {
        self.0 < 200
    }

    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }

    /// 200–699.
    pub fn is_final(self) -> bool {
        self.0 >= 200
    }
}

impl fmt::Debug for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.canonical_reason() {
            Some(r) => write!(f, "{} {}", self.0, r),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A header field name: an open newtype, compared case-insensitively.
///
/// Known names (full or compact form, any case) parse to their consts, which print the full
/// canonical spelling; unknown names keep the spelling they arrived with.
#[derive(Clone)]
pub struct HeaderName(Spelling);

/// Longest unknown name kept inline (most `X-` and `P-` names fit).
const INLINE: usize = 22;

#[derive(Clone)]
enum Spelling {
    /// A known name by id, 1.. (one per const).
    Known(u8),
    /// A short unknown name as received (token bytes, so ASCII): no allocation.
    Inline { len: u8, bytes: [u8; INLINE] },
    /// A longer unknown name as received.
    Heap(Box<str>),
}

macro_rules! header_names {
    ($($name:ident = $id:literal $s:literal $(/ $compact:literal)?),* $(,)?) => {
        impl HeaderName {
            $(
                #[doc = concat!("The `", $s, "` header.")]
                pub const $name: HeaderName = HeaderName(Spelling::Known($id));
            )*
        }

        /// Every known name, at index `id - 1`.
        pub(crate) const KNOWN_NAMES: &[HeaderName] = &[$(HeaderName::$name),*];
        /// Their full spellings, for the const table below.
        const KNOWN_SPELLINGS: &[&str] = &[$($s),*];
    };
}

header_names! {
    ACCEPT = 1 "Accept", ACCEPT_ENCODING = 2 "Accept-Encoding", ACCEPT_LANGUAGE = 3 "Accept-Language",
    ALERT_INFO = 4 "Alert-Info", ALLOW = 5 "Allow", ALLOW_EVENTS = 6 "Allow-Events" / b'u',
    AUTHENTICATION_INFO = 7 "Authentication-Info", AUTHORIZATION = 8 "Authorization",
    CALL_ID = 9 "Call-ID" / b'i', CALL_INFO = 10 "Call-Info", CONTACT = 11 "Contact" / b'm',
    CONTENT_DISPOSITION = 12 "Content-Disposition", CONTENT_ENCODING = 13 "Content-Encoding" / b'e',
    CONTENT_LANGUAGE = 14 "Content-Language", CONTENT_LENGTH = 15 "Content-Length" / b'l',
    CONTENT_TYPE = 16 "Content-Type" / b'c', CSEQ = 17 "CSeq", DATE = 18 "Date", ERROR_INFO = 19 "Error-Info",
    EVENT = 20 "Event" / b'o', EXPIRES = 21 "Expires", FROM = 22 "From" / b'f', IDENTITY = 23 "Identity" / b'y',
    IN_REPLY_TO = 24 "In-Reply-To", MAX_FORWARDS = 25 "Max-Forwards", MIME_VERSION = 26 "MIME-Version",
    MIN_EXPIRES = 27 "Min-Expires", MIN_SE = 28 "Min-SE", ORGANIZATION = 29 "Organization", PATH = 30 "Path",
    PRIORITY = 31 "Priority", PRIVACY = 32 "Privacy", PROXY_AUTHENTICATE = 33 "Proxy-Authenticate",
    PROXY_AUTHORIZATION = 34 "Proxy-Authorization", PROXY_REQUIRE = 35 "Proxy-Require",
    P_ASSERTED_IDENTITY = 36 "P-Asserted-Identity", RACK = 37 "RAck", REASON = 38 "Reason",
    RECORD_ROUTE = 39 "Record-Route", REFER_TO = 40 "Refer-To" / b'r', REFERRED_BY = 41 "Referred-By" / b'b',
    REPLACES = 42 "Replaces", REPLY_TO = 43 "Reply-To", REQUIRE = 44 "Require", RETRY_AFTER = 45 "Retry-After",
    ROUTE = 46 "Route", RSEQ = 47 "RSeq", SERVER = 48 "Server", SESSION_EXPIRES = 49 "Session-Expires" / b'x',
    SUBJECT = 50 "Subject" / b's', SUBSCRIPTION_STATE = 51 "Subscription-State",
    SUPPORTED = 52 "Supported" / b'k', TIMESTAMP = 53 "Timestamp", TO = 54 "To" / b't',
    UNSUPPORTED = 55 "Unsupported", USER_AGENT = 56 "User-Agent", VIA = 57 "Via" / b'v', WARNING = 58 "Warning",
    WWW_AUTHENTICATE = 59 "WWW-Authenticate",
}

// `KNOWN_NAMES[id - 1]` must be the name with that id.
const _: () = {
    let mut i = 0;
    while i < KNOWN_NAMES.len() {
        assert!(KNOWN_NAMES[i].id() as usize == i + 1);
        i += 1;
    }
};

/// Hash of a name for [`NAME_TABLE`]: length, first, middle and last byte, with ASCII letters
/// folded to lower case (`| 0x20` also folds some punctuation together, which only costs a
/// probe).
#[inline]
const fn name_hash(b: &[u8]) -> usize {
    let n = b.len();
    (n.wrapping_mul(7)
        ^ ((b[0] | 0x20) as usize).wrapping_mul(31)
        ^ ((b[n / 2] | 0x20) as usize).wrapping_mul(17)
        ^ ((b[n - 1] | 0x20) as usize).wrapping_mul(3))
        & (NAME_TABLE_SIZE - 1)
}

const NAME_TABLE_SIZE: usize = 256;

/// Longest known name, in 8-byte words.
const NAME_WORDS: usize = 3;

/// A name of at most `8 * NAME_WORDS` bytes as little-endian words with every byte `| 0x20`
/// (zero padding included). Between a token byte and a known name's byte (a letter or `-`) this
/// is exactly ASCII case folding: the only other byte that folds onto `-` is CR, not a token.
#[inline]
const fn fold_words(b: &[u8]) -> [u64; NAME_WORDS] {
    let mut buf = [0u8; 8 * NAME_WORDS];
    buf.split_at_mut(b.len()).0.copy_from_slice(b);
    let (chunks, _) = buf.as_chunks::<8>();
    let mut w = [0u64; NAME_WORDS];
    let mut k = 0;
    while k < NAME_WORDS {
        w[k] = u64::from_le_bytes(chunks[k]) | 0x2020_2020_2020_2020;
        k += 1;
    }
    w
}

/// Every known full name, folded by [`fold_words`], at index `id - 1`.
static KNOWN_FOLDED: [[u64; NAME_WORDS]; KNOWN_SPELLINGS.len()] = {
    let mut t = [[0u64; NAME_WORDS]; KNOWN_SPELLINGS.len()];
    let mut i = 0;
    while i < t.len() {
        assert!(KNOWN_SPELLINGS[i].len() <= 8 * NAME_WORDS);
        t[i] = fold_words(KNOWN_SPELLINGS[i].as_bytes());
        i += 1;
    }
    t
};

/// Open-addressing table (linear probing) of known full names: ids, 0 for an empty slot.
static NAME_TABLE: [u8; NAME_TABLE_SIZE] = {
    let mut t = [0u8; NAME_TABLE_SIZE];
    let mut i = 0;
    while i < KNOWN_SPELLINGS.len() {
        let mut slot = name_hash(KNOWN_SPELLINGS[i].as_bytes());
        while t[slot] != 0 {
            slot = (slot + 1) & (NAME_TABLE_SIZE - 1);
        }
        t[slot] = (i + 1) as u8;
        i += 1;
    }
    t
};

/// The id of a known name by full spelling (any case) or compact letter, 0 for others; `b` is a
/// non-empty token.
fn known_id(b: &[u8]) -> u8 {
    if b.len() == 1 {
        return match b[0].to_ascii_lowercase() {
            b'u' => HeaderName::ALLOW_EVENTS.id(),
            b'i' => HeaderName::CALL_ID.id(),
            b'm' => HeaderName::CONTACT.id(),
            b'e' => HeaderName::CONTENT_ENCODING.id(),
            b'l' => HeaderName::CONTENT_LENGTH.id(),
            b'c' => HeaderName::CONTENT_TYPE.id(),
            b'o' => HeaderName::EVENT.id(),
            b'f' => HeaderName::FROM.id(),
            b'y' => HeaderName::IDENTITY.id(),
            b'r' => HeaderName::REFER_TO.id(),
            b'b' => HeaderName::REFERRED_BY.id(),
            b'x' => HeaderName::SESSION_EXPIRES.id(),
            b's' => HeaderName::SUBJECT.id(),
            b'k' => HeaderName::SUPPORTED.id(),
            b't' => HeaderName::TO.id(),
            b'v' => HeaderName::VIA.id(),
            _ => 0,
        };
    }
    if b.is_empty() || b.len() > 8 * NAME_WORDS {
        return 0;
    }
    let folded = fold_words(b);
    let mut slot = name_hash(b);
    loop {
        let id = NAME_TABLE[slot];
        match KNOWN_FOLDED.get(usize::from(id).wrapping_sub(1)) {
            None => return 0,
            Some(known)
                if *known == folded && KNOWN_SPELLINGS[usize::from(id) - 1].len() == b.len() =>
            {
                return id;
            }
            Some(_) => slot = (slot + 1) & (NAME_TABLE_SIZE - 1),
        }
    }
}

impl HeaderName {
    /// A header name from its wire spelling (full or compact form, any case); `None` unless a
    /// non-empty token.
    pub fn new(s: &str) -> Option<HeaderName> {
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return None;
        }
        Some(HeaderName::from_token(s.as_bytes()))
    }

    /// A header name from a string already checked to be a non-empty token.
    pub(crate) fn from_token(s: &[u8]) -> HeaderName {
        let id = known_id(s);
        if id != 0 {
            return HeaderName(Spelling::Known(id));
        }
        if let Ok(len) = u8::try_from(s.len())
            && s.len() <= INLINE
        {
            let mut bytes = [0u8; INLINE];
            bytes[..s.len()].copy_from_slice(s);
            return HeaderName(Spelling::Inline { len, bytes });
        }
        // Token characters are ASCII, so this is never empty.
        HeaderName(Spelling::Heap(
            std::str::from_utf8(s).unwrap_or_default().into(),
        ))
    }

    /// 1.. for known names (one per const), 0 for others.
    #[inline(always)]
    pub(crate) const fn id(&self) -> u8 {
        match self.0 {
            Spelling::Known(id) => id,
            _ => 0,
        }
    }

    /// The canonical spelling for known names, the received one for others.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built from token bytes, which are ASCII: always UTF-8.
            Spelling::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or("")
            }
            Spelling::Known(id) => known_spelling(*id),
            Spelling::Heap(s) => s,
        }
    }

    /// [`HeaderName::as_str`] as bytes, without the UTF-8 check (for writing and comparing).
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Spelling::Known(id) => known_spelling(*id).as_bytes(),
            Spelling::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Spelling::Heap(s) => s.as_bytes(),
        }
    }
}

/// Known spellings by id (index 0 unused), so a lookup needs no subtraction.
static SPELLING_BY_ID: [&str; KNOWN_SPELLINGS.len() + 1] = {
    let mut t = [""; KNOWN_SPELLINGS.len() + 1];
    let mut i = 0;
    while i < KNOWN_SPELLINGS.len() {
        t[i + 1] = KNOWN_SPELLINGS[i];
        i += 1;
    }
    t
};

/// The canonical spelling of the known name with this id.
#[inline]
fn known_spelling(id: u8) -> &'static str {
    SPELLING_BY_ID.get(usize::from(id)).copied().unwrap_or("")
}

impl PartialEq for HeaderName {
    #[inline(always)]
    fn eq(&self, other: &HeaderName) -> bool {
        // Every spelling of a known name parses to its const, so known names compare by id,
        // and a known name never equals an unknown one.
        let (a, b) = (self.id(), other.id());
        if a != 0 || b != 0 {
            a == b
        } else {
            eq_unknown(self.as_bytes(), other.as_bytes())
        }
    }
}

impl Eq for HeaderName {}

/// The rare case of `HeaderName::eq`, out of line so the id comparison inlines.
#[inline(never)]
fn eq_unknown(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Character classes (RFC 3261 §25.1), one bit each, looked up by byte.
pub(crate) const TOKEN: u16 = 1;
/// `unreserved`: alphanumerics and marks.
pub(crate) const UNRESERVED: u16 = 2;
/// Extra characters in a URI user part.
pub(crate) const USER: u16 = 4;
/// Extra characters in a URI password.
pub(crate) const PASSWORD: u16 = 8;
/// Extra characters in uri-parameter names and values.
pub(crate) const PARAM: u16 = 16;
/// Extra characters in URI header names and values.
pub(crate) const HNV: u16 = 32;
/// Host name characters.
pub(crate) const HOST: u16 = 64;
/// Generic-parameter values: token characters plus the IPv6 reference's `[]:`.
pub(crate) const PVALUE: u16 = 128;
/// Via sent-by: host characters plus the IPv6 reference's `[]:` and the port's `:`.
pub(crate) const SENT_BY: u16 = 256;

const fn classes() -> [u16; 256] {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        if (i as u8).is_ascii_alphanumeric() {
            t[i] = TOKEN | UNRESERVED | HOST | PVALUE | SENT_BY;
        }
        i += 1;
    }
    let sets: [(&[u8], u16); 10] = [
        (b"-.!%*_+`'~", TOKEN),
        (b"-_.!~*'()", UNRESERVED),
        (b"&=+$,;?/", USER),
        (b"&=+$,", PASSWORD),
        (b"[]/:&+$", PARAM),
        (b"[]/?:+$", HNV),
        (b"-._", HOST),
        (b"-.!%*_+`'~", PVALUE),
        (b"[]:", PVALUE),
        (b"-._[]:", SENT_BY),
    ];
    let mut k = 0;
    while k < sets.len() {
        let (chars, bit) = sets[k];
        let mut j = 0;
        while j < chars.len() {
            t[chars[j] as usize] |= bit;
            j += 1;
        }
        k += 1;
    }
    t
}

/// The class bits of every byte.
pub(crate) static CLASS: [u16; 256] = classes();

/// RFC 3261 §25.1 `token` characters.
#[inline]
pub(crate) fn is_token_byte(b: u8) -> bool {
    is_class(b, TOKEN)
}

/// Whether `b` is in any of the `classes` (bits above).
#[inline]
pub(crate) fn is_class(b: u8, classes: u16) -> bool {
    CLASS[usize::from(b)] & classes != 0
}

/// Position of an ASCII byte (a plain loop: the strings here are short).
#[inline]
pub(crate) fn find_byte(s: &str, c: u8) -> Option<usize> {
    s.bytes().position(|b| b == c)
}

/// Splits at the first occurrence of an ASCII byte.
#[inline]
pub(crate) fn split_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, c)?;
    Some((&s[..i], &s[i + 1..]))
}

/// Trims spaces and tabs at both ends.
#[inline]
pub(crate) fn trim_ws(s: &str) -> &str {
    trim_ws_end(trim_ws_start(s))
}

/// Trims leading spaces and tabs.
#[inline]
pub(crate) fn trim_ws_start(s: &str) -> &str {
    let n = s.bytes().take_while(|b| *b == b' ' || *b == b'\t').count();
    &s[n..]
}

/// Trims trailing spaces and tabs.
#[inline]
pub(crate) fn trim_ws_end(s: &str) -> &str {
    let n = s
        .bytes()
        .rev()
        .take_while(|b| *b == b' ' || *b == b'\t')
        .count();
    &s[..s.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_looks_up_in_any_case() {
        for known in KNOWN_NAMES {
            let s = known.as_str();
            for spelling in [s.to_owned(), s.to_ascii_lowercase(), s.to_ascii_uppercase()] {
                let got = HeaderName::new(&spelling).expect("a token");
                assert_eq!((got.id(), got.as_str()), (known.id(), s), "{spelling}");
            }
        }
        assert_eq!(
            HeaderName::new("v").map(|n| n.id()),
            Some(HeaderName::VIA.id())
        );
    }

    #[test]
    fn unknown_names_keep_their_spelling() {
        // Same length and ends as known names, so they probe the table and miss.
        // Inline up to 22 bytes, boxed beyond.
        let long = "P-A-Very-Long-Extension-Header-Name";
        for s in [
            "Vie",
            "X-Carrier-Route",
            "Fro",
            "P-Charging-Vector",
            "Contakt",
            "RAcc",
            long,
        ] {
            let got = HeaderName::new(s).expect("a token");
            assert_eq!((got.id(), got.as_str()), (0, s));
            assert_eq!(
                got,
                HeaderName::new(&s.to_ascii_lowercase()).expect("token")
            );
        }
        assert_ne!(HeaderName::new("Via"), HeaderName::new("Vie"));
        assert_eq!(HeaderName::new("Bad Name"), None);
        assert_eq!(HeaderName::new(""), None);
    }
}
