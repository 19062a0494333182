//! Replies: `<cookie> <dictionary>` in the request's encoding.

use super::bencode::{Dict, Limits, Value};
use super::json;
use super::message::{self, Encoding, Rejected};

/// Why a request failed, worded as rtpengine words it where the wording is known, so that
/// Kamailio logs read the same whichever relay answered.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorReason {
    /// Nothing after the cookie.
    NoPayload,
    /// The body starts with neither `d` (bencode) nor `{` (JSON).
    InvalidFormat,
    /// Bencode that does not decode (or JSON that is not an object).
    Malformed,
    /// JSON that does not parse.
    MalformedJson,
    /// The dictionary has no `command` string.
    MissingCommand,
    /// A command this relay does not implement.
    UnknownCommand,
    /// `offer`, `answer`, `delete`, `query`, ... without `call-id`.
    MissingCallId,
    /// `offer` or `answer` without `from-tag`.
    MissingFromTag,
    /// `answer` without `to-tag`.
    MissingToTag,
    /// `offer` or `answer` without `sdp`.
    MissingSdp,
    /// No call with this call-id (query, play DTMF, block/unblock).
    UnknownCall,
    /// `delete` of a call, or tags, not known, when the request has the `fatal` flag; without
    /// it rtpengine answers `ok` with this text as a `warning` ([`Response::delete_not_found`]).
    CallNotFound,
    /// An SDP body that could not be parsed.
    InvalidSdp,
    /// `play DTMF` without a `code` (or with a list or dictionary for one).
    DtmfCodeMissing,
    /// `play DTMF` with a string `code` longer than one character.
    DtmfCodeNotSingleDigit,
    /// `play DTMF` with a `code` character that is no DTMF digit.
    DtmfCodeInvalidChar,
    /// `play DTMF` with a numeric `code` outside 0–15.
    DtmfCodeOutOfRange,
    /// The port range is exhausted.
    OutOfPorts,
    /// Anything else, worded by the caller.
    Other(String),
}

impl ErrorReason {
    /// The `error-reason` text.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorReason::NoPayload => "Invalid data (no payload)",
            ErrorReason::InvalidFormat => "Invalid NG data format",
            ErrorReason::Malformed => "Could not decode bencode dictionary",
            ErrorReason::MalformedJson => "Failed to parse JSON document",
            ErrorReason::MissingCommand => "Dictionary contains no key \"command\"",
            ErrorReason::UnknownCommand => "Unrecognized command",
            ErrorReason::MissingCallId => "No call-id in message",
            ErrorReason::MissingFromTag => "No from-tag in message",
            ErrorReason::MissingToTag => "No to-tag in message",
            ErrorReason::MissingSdp => "No SDP body in message",
            ErrorReason::UnknownCall => "Unknown call-id",
            ErrorReason::CallNotFound => "Call-ID not found or tags didn't match",
            ErrorReason::InvalidSdp => "Failed to parse SDP",
            ErrorReason::DtmfCodeMissing => "No valid 'code' specified",
            ErrorReason::DtmfCodeNotSingleDigit => "Given 'code' is not a single digit",
            ErrorReason::DtmfCodeInvalidChar => "Invalid 'code' character",
            ErrorReason::DtmfCodeOutOfRange => "Out of range 'code' specified",
            ErrorReason::OutOfPorts => "Ran out of ports",
            ErrorReason::Other(s) => s,
        }
    }

    /// A short fixed label for a metrics counter (never the free text of `Other`).
    pub fn label(&self) -> &'static str {
        match self {
            ErrorReason::NoPayload => "no_payload",
            ErrorReason::InvalidFormat => "invalid_format",
            ErrorReason::Malformed => "malformed",
            ErrorReason::MalformedJson => "malformed_json",
            ErrorReason::MissingCommand => "missing_command",
            ErrorReason::UnknownCommand => "unknown_command",
            ErrorReason::MissingCallId => "missing_call_id",
            ErrorReason::MissingFromTag => "missing_from_tag",
            ErrorReason::MissingToTag => "missing_to_tag",
            ErrorReason::MissingSdp => "missing_sdp",
            ErrorReason::UnknownCall => "unknown_call",
            ErrorReason::CallNotFound => "call_not_found",
            ErrorReason::InvalidSdp => "invalid_sdp",
            ErrorReason::DtmfCodeMissing
            | ErrorReason::DtmfCodeNotSingleDigit
            | ErrorReason::DtmfCodeInvalidChar
            | ErrorReason::DtmfCodeOutOfRange => "invalid_dtmf_code",
            ErrorReason::OutOfPorts => "out_of_ports",
            ErrorReason::Other(_) => "other",
        }
    }
}

impl std::fmt::Display for ErrorReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A reply dictionary under construction.
///
/// Keys go out in rtpengine's order: an error is `result`, `error-reason`, then anything else;
/// any other reply lists its keys in the order they were set and ends with `result` (rtpengine
/// adds `result` after the command has filled in the rest: `d3:sdp…6:result2:oke`). Clients
/// look keys up by name; the order only matters to byte-exact comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    result: String,
    fields: Dict,
}

impl Response {
    /// `result: ok`
    pub fn ok() -> Self {
        Self::with_result("ok")
    }

    /// `result: pong`, the answer to `ping`.
    pub fn pong() -> Self {
        Self::with_result("pong")
    }

    /// `result: error` with its `error-reason`.
    pub fn error(reason: &ErrorReason) -> Self {
        Self::with_result("error").with("error-reason", reason.as_str())
    }

    /// A `delete` of a call (or tags) that is not there: `result: ok` with rtpengine's
    /// `warning`, or, when the request carried the `fatal` flag, an error.
    pub fn delete_not_found(fatal: bool) -> Self {
        if fatal {
            Self::error(&ErrorReason::CallNotFound)
        } else {
            Self::ok().with_warning(ErrorReason::CallNotFound.as_str())
        }
    }

    fn with_result(r: &str) -> Self {
        Self {
            result: r.to_owned(),
            fields: Dict::new(),
        }
    }

    /// Sets `key` (replacing an earlier value in place). Setting `result` changes the result.
    pub fn set(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        if key == b"result"
            && let Some(r) = value.as_bytes()
        {
            self.result = String::from_utf8_lossy(r).into_owned();
            return;
        }
        self.fields.insert(key, value);
    }

    /// Sets `key` and returns the response.
    #[must_use]
    pub fn with(mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) -> Self {
        self.set(key, value);
        self
    }

    /// Sets the rewritten `sdp`.
    #[must_use]
    pub fn with_sdp(self, sdp: impl Into<Vec<u8>>) -> Self {
        self.with("sdp", Value::Bytes(sdp.into()))
    }

    /// Adds a `warning` (rtpengine sends one alongside `result: ok` for a soft failure).
    #[must_use]
    pub fn with_warning(self, text: impl Into<String>) -> Self {
        self.with("warning", text.into())
    }

    /// `ok`, `pong`, `error`, ...
    pub fn result(&self) -> &str {
        &self.result
    }

    /// The keys other than `result`, in the order they were set.
    pub fn fields(&self) -> &Dict {
        &self.fields
    }

    /// The whole dictionary in wire order.
    pub fn to_dict(&self) -> Dict {
        let mut d = Dict::new();
        let error = self.result == "error";
        if error {
            d.push(b"result".to_vec(), Value::from(self.result.as_str()));
        }
        for (k, v) in self.fields.iter() {
            d.push(k.to_vec(), v.clone());
        }
        if !error {
            d.push(b"result".to_vec(), Value::from(self.result.as_str()));
        }
        d
    }

    /// `<cookie> <dictionary>` appended to `out`.
    pub fn encode_into(&self, cookie: &[u8], encoding: Encoding, out: &mut Vec<u8>) {
        out.extend_from_slice(cookie);
        out.push(b' ');
        encode_dict(&self.to_dict(), encoding, out);
    }

    /// `<cookie> <dictionary>` as a new datagram.
    pub fn encode(&self, cookie: &[u8], encoding: Encoding) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(cookie, encoding, &mut out);
        out
    }
}

/// A reply as a client reads it (tests, load generators, a proxy-side ng client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyMessage {
    /// The cookie, which matches the request's.
    pub cookie: Vec<u8>,
    /// The reply's encoding.
    pub encoding: Encoding,
    /// The reply dictionary.
    pub dict: Dict,
}

impl ReplyMessage {
    /// `result`: `ok`, `pong`, `error`, ...
    pub fn result(&self) -> Option<&str> {
        self.dict.get("result").and_then(Value::as_str)
    }

    /// `error-reason`, on an error.
    pub fn error_reason(&self) -> Option<&str> {
        self.dict.get("error-reason").and_then(Value::as_str)
    }

    /// `sdp`, on an offer or answer.
    pub fn sdp(&self) -> Option<&[u8]> {
        self.dict.get("sdp").and_then(Value::as_bytes)
    }
}

/// Decodes a reply datagram (bencode or JSON, like requests).
pub fn decode_reply(datagram: &[u8], limits: &Limits) -> Result<ReplyMessage, Rejected> {
    let (cookie, body) = message::split_cookie(datagram).map_err(Rejected::Drop)?;
    let (encoding, dict) = message::decode_body(body, limits);
    match dict {
        Ok(dict) => Ok(ReplyMessage {
            cookie: cookie.to_vec(),
            encoding,
            dict,
        }),
        Err((reason, detail)) => Err(Rejected::Error {
            cookie: cookie.to_vec(),
            encoding,
            reason,
            detail,
        }),
    }
}

/// `<cookie> <dictionary>` for any dictionary: how a client encodes a request.
pub fn encode_datagram(cookie: &[u8], encoding: Encoding, dict: &Dict) -> Vec<u8> {
    let mut out = cookie.to_vec();
    out.push(b' ');
    encode_dict(dict, encoding, &mut out);
    out
}

/// Appends a dictionary in `encoding`.
pub(crate) fn encode_dict(dict: &Dict, encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Bencode => dict.encode(out),
        Encoding::Json => json::encode_dict(dict, out),
    }
}

/// What to do about a datagram that failed to decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send these bytes back to the sender.
    Send(Vec<u8>),
    /// No reply is possible (no cookie to answer with); count the reason and drop.
    Drop(DropReason),
}

/// Why a datagram was dropped without a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DropReason {
    /// A zero-length datagram.
    Empty,
    /// No space separating a cookie from a body.
    NoCookie,
    /// The datagram starts with the separator: an empty cookie.
    EmptyCookie,
}

impl DropReason {
    /// A fixed label for a metrics counter.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Empty => "empty",
            DropReason::NoCookie => "no_cookie",
            DropReason::EmptyCookie => "empty_cookie",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_bytes() {
        assert_eq!(
            Response::pong().encode(b"5323_1", Encoding::Bencode),
            b"5323_1 d6:result4:ponge"
        );
        assert_eq!(
            Response::ok().encode(b"c", Encoding::Bencode),
            b"c d6:result2:oke"
        );
        assert_eq!(
            Response::ok()
                .with_sdp("v=0\r\n")
                .encode(b"c", Encoding::Bencode),
            b"c d3:sdp5:v=0\r\n6:result2:oke"
        );
        assert_eq!(
            Response::delete_not_found(false).encode(b"0_1", Encoding::Bencode),
            b"0_1 d7:warning38:Call-ID not found or tags didn't match6:result2:oke"
        );
        assert_eq!(
            Response::delete_not_found(true).encode(b"0_1", Encoding::Bencode),
            b"0_1 d6:result5:error12:error-reason38:Call-ID not found or tags didn't matche"
        );
        assert_eq!(
            Response::error(&ErrorReason::UnknownCommand).encode(b"x", Encoding::Bencode),
            b"x d6:result5:error12:error-reason20:Unrecognized commande"
        );
        assert_eq!(
            Response::error(&ErrorReason::MissingCallId).encode(b"x", Encoding::Json),
            br#"x {"result":"error","error-reason":"No call-id in message"}"#
        );
        assert_eq!(
            Response::pong().encode(b"1", Encoding::Json),
            br#"1 {"result":"pong"}"#
        );
    }

    #[test]
    fn client_side_round_trip() {
        let req: Dict = [("command", "ping")].into_iter().collect();
        for enc in [Encoding::Bencode, Encoding::Json] {
            let d = encode_datagram(b"42", enc, &req);
            let back = message::decode(&d, &Limits::default()).unwrap();
            assert_eq!(
                (back.encoding, &back.command),
                (enc, &message::Command::Ping)
            );
            let reply = back.reply(&Response::error(&ErrorReason::UnknownCall));
            let r = decode_reply(&reply, &Limits::default()).unwrap();
            assert_eq!(r.cookie, b"42");
            assert_eq!(r.encoding, enc);
            assert_eq!(r.result(), Some("error"));
            assert_eq!(r.error_reason(), Some("Unknown call-id"));
            assert_eq!(r.sdp(), None);
        }
        assert!(decode_reply(b"42 d6:result", &Limits::default()).is_err());
        assert_eq!(
            decode_reply(b"42", &Limits::default()),
            Err(Rejected::Drop(DropReason::NoCookie))
        );
    }

    #[test]
    fn set_replaces_in_place() {
        let mut r = Response::ok().with("a", 1i64).with("b", 2i64);
        r.set("a", 3i64);
        assert_eq!(
            r.encode(b"c", Encoding::Bencode),
            b"c d1:ai3e1:bi2e6:result2:oke"
        );
        r.set("result", "load limit");
        assert_eq!(r.result(), "load limit");
        assert_eq!(r.fields().len(), 2);
        assert_eq!(
            r.encode(b"c", Encoding::Json),
            br#"c {"a":3,"b":2,"result":"load limit"}"#
        );
    }
}
