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
pub struct HeaderName(Cow<'static, str>);

macro_rules! header_names {
    ($($name:ident = $s:literal $(/ $compact:literal)?),* $(,)?) => {
        impl HeaderName {
            $(
                #[doc = concat!("The `", $s, "` header.")]
                pub const $name: HeaderName = HeaderName(Cow::Borrowed($s));
            )*
            const KNOWN: &'static [(HeaderName, Option<u8>)] = &[
                $((HeaderName::$name, header_names!(@compact $($compact)?))),*
            ];
        }
    };
    (@compact $c:literal) => { Some($c) };
    (@compact) => { None };
}

header_names! {
    ACCEPT = "Accept", ACCEPT_ENCODING = "Accept-Encoding", ACCEPT_LANGUAGE = "Accept-Language",
    ALERT_INFO = "Alert-Info", ALLOW = "Allow", ALLOW_EVENTS = "Allow-Events" / b'u',
    AUTHENTICATION_INFO = "Authentication-Info", AUTHORIZATION = "Authorization",
    CALL_ID = "Call-ID" / b'i', CALL_INFO = "Call-Info", CONTACT = "Contact" / b'm',
    CONTENT_DISPOSITION = "Content-Disposition", CONTENT_ENCODING = "Content-Encoding" / b'e',
    CONTENT_LANGUAGE = "Content-Language", CONTENT_LENGTH = "Content-Length" / b'l',
    CONTENT_TYPE = "Content-Type" / b'c', CSEQ = "CSeq", DATE = "Date", ERROR_INFO = "Error-Info",
    EVENT = "Event" / b'o', EXPIRES = "Expires", FROM = "From" / b'f', IDENTITY = "Identity" / b'y',
    IN_REPLY_TO = "In-Reply-To", MAX_FORWARDS = "Max-Forwards", MIME_VERSION = "MIME-Version",
    MIN_EXPIRES = "Min-Expires", MIN_SE = "Min-SE", ORGANIZATION = "Organization", PATH = "Path",
    PRIORITY = "Priority", PRIVACY = "Privacy", PROXY_AUTHENTICATE = "Proxy-Authenticate",
    PROXY_AUTHORIZATION = "Proxy-Authorization", PROXY_REQUIRE = "Proxy-Require",
    P_ASSERTED_IDENTITY = "P-Asserted-Identity", RACK = "RAck", REASON = "Reason",
    RECORD_ROUTE = "Record-Route", REFER_TO = "Refer-To" / b'r', REFERRED_BY = "Referred-By" / b'b',
    REPLACES = "Replaces", REPLY_TO = "Reply-To", REQUIRE = "Require", RETRY_AFTER = "Retry-After",
    ROUTE = "Route", RSEQ = "RSeq", SERVER = "Server", SESSION_EXPIRES = "Session-Expires" / b'x',
    SUBJECT = "Subject" / b's', SUBSCRIPTION_STATE = "Subscription-State",
    SUPPORTED = "Supported" / b'k', TIMESTAMP = "Timestamp", TO = "To" / b't',
    UNSUPPORTED = "Unsupported", USER_AGENT = "User-Agent", VIA = "Via" / b'v', WARNING = "Warning",
    WWW_AUTHENTICATE = "WWW-Authenticate",
}

impl HeaderName {
    /// A header name from its wire spelling (full or compact form, any case); `None` unless a
    /// non-empty token.
    pub fn new(s: &str) -> Option<HeaderName> {
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            return None;
        }
        let b = s.as_bytes();
        let known = if b.len() == 1 {
            let c = b[0].to_ascii_lowercase();
            HeaderName::KNOWN
                .iter()
                .find(|(_, compact)| *compact == Some(c))
        } else {
            HeaderName::KNOWN
                .iter()
                .find(|(n, _)| n.0.len() == s.len() && n.0.eq_ignore_ascii_case(s))
        };
        Some(match known {
            Some((n, _)) => n.clone(),
            None => HeaderName(Cow::Owned(s.to_owned())),
        })
    }

    /// The canonical spelling for known names, the received one for others.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &HeaderName) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for HeaderName {}

impl fmt::Debug for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// RFC 3261 §25.1 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
        )
}
