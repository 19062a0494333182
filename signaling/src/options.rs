//! Answers to OPTIONS (RFC 3261 §11): keepalives from carriers and Kamailio
//!
//! We are the target of the OPTIONS, so it is answered even with `Max-Forwards: 0`. Pure: the
//! caller (the transaction layer) decides that the request is an OPTIONS addressed to us.
//!
//! ```
//! use dialplane_signaling::message::{HeaderName, Message, StatusCode};
//! use dialplane_signaling::options;
//!
//! let req = Message::parse(
//!     b"OPTIONS sip:sbc.example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 0\r\n\
//!       From: <sip:ping@carrier.example>;tag=1\r\nTo: <sip:sbc.example.com>\r\n\
//!       Call-ID: k1\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n",
//! )
//! .unwrap();
//! let res = options::respond(
//!     req.as_request().unwrap(),
//!     options::DEFAULT_ALLOW,
//!     options::DEFAULT_SUPPORTED,
//! );
//! assert_eq!(res.status, StatusCode::OK);
//! assert_eq!(res.headers.get(&HeaderName::ACCEPT), Some("application/sdp"));
//! ```

use crate::message::{HeaderName, Method, Request, Response, StatusCode};

/// The methods dialplane answers as a UAS
pub const DEFAULT_ALLOW: &[Method] = &[
    Method::INVITE,
    Method::ACK,
    Method::BYE,
    Method::CANCEL,
    Method::OPTIONS,
    Method::PRACK,
    Method::UPDATE,
    Method::INFO,
    Method::REFER,
    Method::NOTIFY,
    Method::REGISTER,
];

/// The option tags dialplane supports: reliable provisionals, session timers, Replaces
pub const DEFAULT_SUPPORTED: &[&str] = &["100rel", "timer", "replaces"];

/// 200 OK to an OPTIONS with `Allow`, `Accept: application/sdp` and `Supported`, no body
///
/// The To tag is derived from the request (see [`stable_tag`]), so a retransmitted OPTIONS that
/// reaches this function again gets the same answer.
pub fn respond(req: &Request, allow: &[Method], supported: &[&str]) -> Response {
    let allow = allow
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut res = Response::for_request(req, StatusCode::OK).with_to_tag(&stable_tag(req));
    res.headers.push(HeaderName::ALLOW, allow);
    res.headers.push(HeaderName::ACCEPT, "application/sdp");
    if !supported.is_empty() {
        res.headers
            .push(HeaderName::SUPPORTED, supported.join(", "));
    }
    res
}

/// A To tag that depends only on the request's Call-ID, CSeq and From tag (FNV-1a, 16 hex
/// digits): no randomness is needed and retransmissions get the same tag
pub fn stable_tag(req: &Request) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for name in [HeaderName::CALL_ID, HeaderName::CSEQ, HeaderName::FROM] {
        for b in req.headers.get(&name).unwrap_or("").bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}
