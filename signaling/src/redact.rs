//! Redaction of personal data in logs: phone numbers, SIP URIs and IP addresses are shown in
//! part at info level and above, in full only when debug logging is on for this crate
//!
//! The scheme keeps what a carrier's engineer needs to match a log line with a trace or a CDR
//! without the log being a directory of who called whom:
//! - a phone number keeps its first five characters (`+` and country/area code) and its last
//!   four digits: `+16173331212` → `+1617***1212`; numbers of 8 digits or fewer keep only the
//!   last four (`***1234`); 4 digits or fewer (extensions) are shown as they are;
//! - an IPv4 address loses its last octet (`203.0.113.x`), an IPv6 address keeps its first
//!   three groups (`2001:db8:1::x`); ports are kept;
//! - a SIP URI's user part is redacted as a number when it is one (`sip:+1617***1212@gw.example`),
//!   else replaced by `***`; a host that is an IP address is redacted as above, a host name is
//!   kept (it names a carrier or a domain, not a person); parameters are dropped.
//!
//! [`Text`] applies the same rules to free text (error messages that quote a number or an
//! address). Secrets (passwords, tokens, the webhook secret, Authorization headers) are never
//! logged at any level: they are not passed to these wrappers but left out or replaced by
//! `redacted` where they are formatted ([`url_without_password`], the configuration's Debug).
//!
//! Whether to redact is decided per formatting, with `tracing::enabled!` at debug level for
//! this module's target: `RUST_LOG=dialplane_signaling=debug` shows full values everywhere.

use std::fmt::{self, Display, Write};
use std::net::{IpAddr, SocketAddr};

/// Whether values are shown in full (debug logging on).
fn full() -> bool {
    tracing::enabled!(tracing::Level::DEBUG)
}

/// A phone number (or any digit string)
#[derive(Debug, Clone, Copy)]
pub struct Number<'a>(pub &'a str);

impl Display for Number<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full() {
            return f.write_str(self.0);
        }
        write_number(f, self.0)
    }
}

fn write_number(f: &mut impl Write, n: &str) -> fmt::Result {
    let digits = n.chars().filter(char::is_ascii_digit).count();
    if digits <= 4 {
        return f.write_str(n);
    }
    // Only ASCII digits and '+' reach here from the scanners; be safe with others anyway.
    let chars: Vec<char> = n.chars().collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    if digits <= 8 {
        return write!(f, "***{tail}");
    }
    let head: String = chars[..5.min(chars.len())].iter().collect();
    write!(f, "{head}***{tail}")
}

/// An IP address
#[derive(Debug, Clone, Copy)]
pub struct Ip(pub IpAddr);

impl Display for Ip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full() {
            return write!(f, "{}", self.0);
        }
        write_ip(f, self.0)
    }
}

fn write_ip(f: &mut impl Write, ip: IpAddr) -> fmt::Result {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            write!(f, "{a}.{b}.{c}.x")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            write!(f, "{:x}:{:x}:{:x}::x", s[0], s[1], s[2])
        }
    }
}

/// An address and port
#[derive(Debug, Clone, Copy)]
pub struct Addr(pub SocketAddr);

impl Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full() {
            return write!(f, "{}", self.0);
        }
        match self.0.ip().to_canonical() {
            IpAddr::V4(_) => write_ip(f, self.0.ip())?,
            IpAddr::V6(_) => {
                f.write_char('[')?;
                write_ip(f, self.0.ip())?;
                f.write_char(']')?;
            }
        }
        write!(f, ":{}", self.0.port())
    }
}

/// A SIP URI (or anything `scheme:user@host…`)
#[derive(Debug, Clone, Copy)]
pub struct Uri<'a>(pub &'a str);

impl Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full() {
            return f.write_str(self.0);
        }
        write_uri(f, self.0)
    }
}

fn write_uri(f: &mut impl Write, uri: &str) -> fmt::Result {
    let (scheme, rest) = match uri.split_once(':') {
        Some((s, r)) if s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips") => (s, r),
        _ => ("", uri),
    };
    if !scheme.is_empty() {
        write!(f, "{scheme}:")?;
    }
    let (user, hostport) = match rest.split_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(user) = user {
        let user = user.split(';').next().unwrap_or(user);
        if is_number(user) {
            write_number(f, user)?;
        } else {
            f.write_str("***")?;
        }
        f.write_char('@')?;
    }
    let hostport = hostport.split([';', '?', '>']).next().unwrap_or(hostport);
    write_text(f, hostport)
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Free text (e.g. an error message): digit runs of 7 or more (with a leading `+`) redacted as
/// numbers, IPv4 addresses as addresses, and the user part of `sip:`/`sips:` URIs.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl Display for Text<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if full() {
            return f.write_str(self.0);
        }
        write_text(f, self.0)
    }
}

fn write_text(f: &mut impl Write, text: &str) -> fmt::Result {
    let b = text.as_bytes();
    let mut i = 0;
    let mut plain = 0;
    while i < b.len() {
        // Digits after ':' are a port, after a letter or '.' part of a word or version.
        let starts_word =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'.' | b':'));
        // A sip: URI's user part.
        if starts_word {
            let lower = text[i..].get(..5).map(str::to_ascii_lowercase);
            let scheme_len = match lower.as_deref() {
                Some("sips:") => 5,
                Some(l) if l.starts_with("sip:") => 4,
                _ => 0,
            };
            if scheme_len > 0 {
                let rest = &text[i + scheme_len..];
                if let Some(at) = rest.find('@')
                    && !rest[..at].contains([' ', '"', '<', '>', ','])
                {
                    f.write_str(&text[plain..i + scheme_len])?;
                    let user = &rest[..at];
                    if is_number(user) {
                        write_number(f, user)?;
                    } else {
                        f.write_str("***")?;
                    }
                    f.write_char('@')?;
                    i += scheme_len + at + 1;
                    plain = i;
                    continue;
                }
            }
        }
        if starts_word
            && (b[i].is_ascii_digit()
                || (b[i] == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
        {
            let end = i
                + 1
                + b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit() || **c == b'.')
                    .count();
            let token = text[i..end].trim_end_matches('.');
            let end = i + token.len();
            let next_is_word = b.get(end).is_some_and(u8::is_ascii_alphanumeric);
            if !next_is_word {
                if let Ok(std::net::IpAddr::V4(v4)) = token.parse::<IpAddr>() {
                    f.write_str(&text[plain..i])?;
                    write_ip(f, IpAddr::V4(v4))?;
                    i = end;
                    plain = i;
                    continue;
                }
                if is_number(token) && token.trim_start_matches('+').len() >= 7 {
                    f.write_str(&text[plain..i])?;
                    write_number(f, token)?;
                    i = end;
                    plain = i;
                    continue;
                }
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    f.write_str(&text[plain..])
}

/// A URL as logs may show it at any level: its password replaced by `redacted`.
pub fn url_without_password(url: &url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("redacted"));
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The redacted form, whatever the test's subscriber (none: nothing is enabled).
    fn r(write: impl Fn(&mut String) -> fmt::Result) -> String {
        let mut s = String::new();
        write(&mut s).unwrap();
        s
    }

    #[test]
    fn numbers_keep_the_prefix_and_the_last_four_digits() {
        assert_eq!(r(|f| write_number(f, "+16173331212")), "+1617***1212");
        assert_eq!(r(|f| write_number(f, "16173331212")), "16173***1212");
        assert_eq!(r(|f| write_number(f, "5551234")), "***1234");
        assert_eq!(r(|f| write_number(f, "101")), "101");
    }

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(
            r(|f| write_ip(f, "203.0.113.77".parse().unwrap())),
            "203.0.113.x"
        );
        assert_eq!(
            r(|f| write_ip(f, "2001:db8:1:2::77".parse().unwrap())),
            "2001:db8:1::x"
        );
        assert_eq!(
            r(|f| write_ip(f, "::ffff:198.51.100.9".parse().unwrap())),
            "198.51.100.x"
        );
    }

    #[test]
    fn uris_hide_the_user_and_an_ip_host() {
        assert_eq!(
            r(|f| write_uri(f, "sip:+16173331212@gw.acme.net:5060;transport=udp")),
            "sip:+1617***1212@gw.acme.net:5060"
        );
        assert_eq!(
            r(|f| write_uri(f, "sip:alice@192.0.2.10:5062")),
            "sip:***@192.0.2.x:5062"
        );
        assert_eq!(r(|f| write_uri(f, "sips:gw.acme.net")), "sips:gw.acme.net");
    }

    #[test]
    fn free_text_is_scanned_for_numbers_addresses_and_uris() {
        assert_eq!(
            r(|f| write_text(f, "\"+16173331212\" is not a valid phone number: too long")),
            "\"+1617***1212\" is not a valid phone number: too long"
        );
        assert_eq!(
            r(|f| write_text(
                f,
                "hook http://10.1.2.3:8080/call: HTTP status 500 after 3 attempt(s)"
            )),
            "hook http://10.1.2.x:8080/call: HTTP status 500 after 3 attempt(s)"
        );
        assert_eq!(
            r(|f| write_text(f, "bob-7.example: no such SIP host (sip:bob@bob-7.example)")),
            "bob-7.example: no such SIP host (sip:***@bob-7.example)"
        );
        assert_eq!(
            r(|f| write_text(
                f,
                "v1.2.3 timeout 30000 ms to 127.0.0.1:40000, call 5551234"
            )),
            "v1.2.3 timeout 30000 ms to 127.0.0.x:40000, call ***1234"
        );
    }

    #[test]
    fn without_a_debug_subscriber_the_wrappers_redact() {
        assert_eq!(Number("+16173331212").to_string(), "+1617***1212");
        assert_eq!(
            Addr("192.0.2.10:5060".parse().unwrap()).to_string(),
            "192.0.2.x:5060"
        );
        let u = url::Url::parse("https://user:hunter2@hooks.example/call?x=1").unwrap();
        assert_eq!(
            url_without_password(&u),
            "https://user:redacted@hooks.example/call?x=1"
        );
    }
}
