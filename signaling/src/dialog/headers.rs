//! The extension header values the dialog layer reads and writes: RSeq/RAck (RFC 3262),
//! Session-Expires/Min-SE (RFC 4028), option tags, and message/sipfrag bodies (RFC 3420).

use crate::message::{HeaderName, Headers, Method, StatusCode, find_param};

/// Who refreshes a session (RFC 4028 §4), from the point of view of one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    /// The transaction's client.
    Uac,
    /// The transaction's server.
    Uas,
}

impl Refresher {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A Session-Expires value: `delta-seconds *(;param)`, with the refresher if named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionExpires {
    pub(crate) delta: u32,
    pub(crate) refresher: Option<Refresher>,
}

impl SessionExpires {
    pub(crate) fn parse(s: &str) -> Option<SessionExpires> {
        let mut parts = s.split(';');
        let delta = parts.next()?.trim().parse().ok()?;
        let params: Vec<crate::message::Param> = parts
            .map(|p| match p.split_once('=') {
                Some((n, v)) => crate::message::Param::new(n.trim(), Some(v.trim())),
                None => crate::message::Param::new(p.trim(), None::<&str>),
            })
            .collect();
        let refresher = match find_param(&params, "refresher").flatten() {
            Some(v) if v.eq_ignore_ascii_case("uac") => Some(Refresher::Uac),
            Some(v) if v.eq_ignore_ascii_case("uas") => Some(Refresher::Uas),
            _ => None,
        };
        Some(SessionExpires { delta, refresher })
    }

    /// From a message's headers; `None` when absent or malformed.
    pub(crate) fn from_headers(h: &Headers) -> Option<SessionExpires> {
        SessionExpires::parse(h.get(&HeaderName::SESSION_EXPIRES)?)
    }

    pub(crate) fn to_header(self) -> String {
        match self.refresher {
            Some(r) => format!("{};refresher={}", self.delta, r.as_str()),
            None => self.delta.to_string(),
        }
    }
}

/// Min-SE in seconds (`delta-seconds *(;param)`).
pub(crate) fn min_se(h: &Headers) -> Option<u32> {
    let v = h.get(&HeaderName::MIN_SE)?;
    v.split(';').next()?.trim().parse().ok()
}

/// Whether a Supported or Require header (any of `names`) lists `tag`.
pub(crate) fn has_option(h: &Headers, names: &[HeaderName], tag: &str) -> bool {
    names
        .iter()
        .any(|n| h.values(n).any(|v| v.eq_ignore_ascii_case(tag)))
}

/// RSeq (RFC 3262 §7.1): 1 to 2³¹−1.
pub(crate) fn rseq(h: &Headers) -> Option<u32> {
    let v: u32 = h.get(&HeaderName::RSEQ)?.trim().parse().ok()?;
    (1..1 << 31).contains(&v).then_some(v)
}

/// RAck (RFC 3262 §7.2): response-num, CSeq-num, method.
pub(crate) fn rack(h: &Headers) -> Option<(u32, u32, Method)> {
    let mut it = h.get(&HeaderName::RACK)?.split_ascii_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method = Method::new(it.next()?)?;
    it.next().is_none().then_some((rseq, cseq, method))
}

/// The status line of a message/sipfrag body (`SIP/2.0 200 OK`).
pub(crate) fn sipfrag_status(body: &[u8]) -> Option<StatusCode> {
    let text = std::str::from_utf8(body).ok()?;
    let line = text.lines().next()?;
    let mut it = line.splitn(3, ' ');
    if it.next()? != "SIP/2.0" {
        return None;
    }
    StatusCode::new(it.next()?.parse().ok()?)
}

/// A message/sipfrag body holding only a status line.
pub(crate) fn sipfrag(status: StatusCode) -> String {
    format!(
        "SIP/2.0 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_expires_rack_and_sipfrag() {
        assert_eq!(
            SessionExpires::parse("1800; refresher=UAS"),
            Some(SessionExpires {
                delta: 1800,
                refresher: Some(Refresher::Uas)
            })
        );
        assert_eq!(SessionExpires::parse("x"), None);
        assert_eq!(
            SessionExpires {
                delta: 90,
                refresher: Some(Refresher::Uac)
            }
            .to_header(),
            "90;refresher=uac"
        );
        let mut h = Headers::new();
        h.push(HeaderName::RACK, "776656 1 INVITE");
        h.push(HeaderName::RSEQ, "0");
        h.push(HeaderName::SUPPORTED, "timer, 100rel");
        h.push(HeaderName::MIN_SE, "120;x=1");
        assert_eq!(rack(&h), Some((776656, 1, Method::INVITE)));
        assert_eq!(rseq(&h), None);
        assert_eq!(min_se(&h), Some(120));
        assert!(has_option(
            &h,
            &[HeaderName::REQUIRE, HeaderName::SUPPORTED],
            "100REL"
        ));
        assert!(!has_option(&h, &[HeaderName::REQUIRE], "100rel"));
        assert_eq!(
            sipfrag_status(sipfrag(StatusCode::TRYING).as_bytes()),
            Some(StatusCode::TRYING)
        );
        assert_eq!(sipfrag_status(b"HTTP/1.1 200 OK"), None);
    }
}
