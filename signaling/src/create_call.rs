//! REST createCall (`POST /v1/Accounts/{account_sid}/Calls`): the request body, as jambonz
//! takes it
//!
//! `from` (the calling number), `to` (a dial target: `{type: phone|sip|user|teams, ...}`),
//! `call_hook` (the app run on the call once answered: a URL or `{url, method}`), and optional
//! `call_status_hook`, `amd` (as the dial verb's), `headers` (for the INVITE), `timeout`
//! (seconds to ring, default 60), `callerName` and `tag` (passed through in the call hook).
//! Parsing is strict: an unknown field is named in the error, as `application_sid` (there are
//! no stored applications here: give `call_hook`).

use serde::Deserialize;
use serde_json::Value;

use crate::verbs::{Amd, Hook, SipHeaders, Target};

/// Longest ring time accepted, seconds.
const MAX_TIMEOUT_S: u32 = 600;

/// A call to place, as the request asked
#[derive(Debug, Clone, PartialEq)]
pub struct CreateCall {
    /// The calling number (From user).
    pub from: String,
    /// Its display name.
    pub caller_name: Option<String>,
    /// Where to call.
    pub to: Target,
    /// The app of the call, fetched once it is answered.
    pub call_hook: Hook,
    /// Where the call's status changes go (instead of `[app] status_hook`).
    pub call_status_hook: Option<Hook>,
    /// Answering-machine detection on the answered call.
    pub amd: Option<Amd>,
    /// Extra INVITE headers.
    pub headers: SipHeaders,
    /// Ring time, seconds.
    pub timeout: u32,
    /// Custom data handed back in the call hook.
    pub tag: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    from: String,
    #[serde(rename = "callerName")]
    caller_name: Option<String>,
    to: Target,
    call_hook: Option<Hook>,
    call_status_hook: Option<Hook>,
    amd: Option<Amd>,
    #[serde(default)]
    headers: SipHeaders,
    timeout: Option<u32>,
    tag: Option<Value>,
}

/// Why a createCall body was refused; the message names the field
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadCreateCall(pub String);

impl CreateCall {
    /// Parses a request body (a JSON object).
    pub fn from_json(body: &[u8]) -> Result<CreateCall, BadCreateCall> {
        let value = crate::strict_json::object(body).map_err(BadCreateCall)?;
        let raw: Raw = crate::strict_json::typed(value, "").map_err(BadCreateCall)?;
        let from = raw.from.trim();
        if from.is_empty()
            || !from
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c))
        {
            return Err(BadCreateCall(
                "from: a number or SIP user part expected".into(),
            ));
        }
        let call_hook = raw
            .call_hook
            .ok_or_else(|| BadCreateCall("call_hook is required".into()))?;
        let timeout = raw.timeout.unwrap_or(60);
        if !(1..=MAX_TIMEOUT_S).contains(&timeout) {
            return Err(BadCreateCall(format!(
                "timeout: 1 to {MAX_TIMEOUT_S} seconds expected"
            )));
        }
        Ok(CreateCall {
            from: from.to_string(),
            caller_name: raw.caller_name,
            to: raw.to,
            call_hook,
            call_status_hook: raw.call_status_hook,
            amd: raw.amd,
            headers: raw.headers,
            timeout,
            tag: raw.tag,
        })
    }
}

/// Why a call was not placed
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CreateCallError {
    /// The body asks for something impossible (the message says what).
    #[error("{0}")]
    Bad(String),
    /// Not our account.
    #[error("account not found")]
    UnknownAccount,
    /// No way to reach the target.
    #[error("{0}")]
    Unroutable(String),
    /// Not now: shutting down, no media port, the B2BUA is gone.
    #[error("cannot place the call now: {0}")]
    Unavailable(&'static str),
}

impl CreateCallError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            CreateCallError::Bad(_) | CreateCallError::Unroutable(_) => 400,
            CreateCallError::UnknownAccount => 404,
            CreateCallError::Unavailable(_) => 503,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::TargetKind;

    fn parse(s: &str) -> Result<CreateCall, String> {
        CreateCall::from_json(s.as_bytes()).map_err(|e| e.0)
    }

    #[test]
    fn a_jambonz_body_parses() {
        let c = parse(
            r#"{"from":"+15083084809","to":{"type":"sip","sipUri":"sip:bob@10.0.0.2"},
                "call_hook":{"url":"http://app/call","method":"POST"},
                "call_status_hook":"http://app/status","timeout":20,"tag":{"k":1},
                "headers":{"X-Campaign":"7"},
                "amd":{"actionHook":"/amd","timers":{"toneTimeoutMs":9000}}}"#,
        )
        .unwrap();
        assert_eq!(c.from, "+15083084809");
        assert!(
            matches!(c.to.kind, TargetKind::Sip { ref sip_uri, .. } if sip_uri == "sip:bob@10.0.0.2")
        );
        assert_eq!(c.call_hook.url, "http://app/call");
        assert_eq!(c.call_status_hook.unwrap().url, "http://app/status");
        assert_eq!(c.timeout, 20);
        assert_eq!(c.headers.0["X-Campaign"], "7");
        assert_eq!(c.amd.unwrap().timers.unwrap().tone_timeout_ms, Some(9000));
        let p = parse(r#"{"from":"1","to":{"type":"phone","number":"+1617"},"call_hook":"/c"}"#)
            .unwrap();
        assert_eq!(p.timeout, 60);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        for (body, expect) in [
            ("", "invalid JSON"),
            ("[]", "must be a JSON object"),
            (
                r#"{"to":{"type":"sip","sipUri":"sip:a@b"},"call_hook":"/c"}"#,
                "missing field `from`",
            ),
            (r#"{"from":"1","call_hook":"/c"}"#, "missing field `to`"),
            (
                r#"{"from":"1","to":{"type":"sip","sipUri":"sip:a@b"}}"#,
                "call_hook is required",
            ),
            (r#"{"from":"1","to":{"type":"fax"},"call_hook":"/c"}"#, "to"),
            (r#"{"from":"1","to":"sip:a@b","call_hook":"/c"}"#, "to"),
            (
                r#"{"from":"a b","to":{"type":"sip","sipUri":"sip:a@b"},"call_hook":"/c"}"#,
                "from:",
            ),
            (
                r#"{"from":"1","to":{"type":"sip","sipUri":"sip:a@b"},"call_hook":"/c","timeout":0}"#,
                "timeout",
            ),
            (
                r#"{"from":"1","to":{"type":"sip","sipUri":"sip:a@b"},"application_sid":"x"}"#,
                "unknown field `application_sid`",
            ),
            (
                r#"{"from":"1","to":{"type":"sip","sipUri":"sip:a@b"},"call_hook":"/c","amd":{}}"#,
                "amd: missing field `actionHook`",
            ),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(expect), "{body}: {e}");
        }
    }
}
