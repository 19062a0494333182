//! The JSON bodies of webhooks, as jambonz sends them (snake_case), and the dial status mapping
//!
//! Only integers and strings go on the wire: jambonz's Node client checks the signature over
//! `JSON.stringify` of the parsed body, which would print a float such as `1.0` as `1`.

use std::collections::BTreeMap;

use serde::Serialize;

/// A call's identifier in webhooks and REST paths: a random UUID
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CallSid(uuid::Uuid);

impl CallSid {
    /// A fresh random (v4) call sid.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }

    /// Parses the hyphenated form (as found in REST paths).
    pub fn parse(s: &str) -> Option<Self> {
        uuid::Uuid::parse_str(s).ok().map(Self)
    }
}

impl std::fmt::Display for CallSid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Which way a leg goes
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The caller's leg.
    Inbound,
    /// A leg we dialled.
    Outbound,
    /// A call placed by REST createCall.
    #[serde(rename = "outbound-api")]
    OutboundApi,
}

/// `call_status` of a leg, as in the call-status webhook
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// INVITE sent or received, nothing back yet.
    Trying,
    /// 180 Ringing.
    Ringing,
    /// 183 with SDP.
    EarlyMedia,
    /// Answered.
    InProgress,
    /// Answered, then ended.
    Completed,
    /// Ended with an error status.
    Failed,
    /// 486 or 600.
    Busy,
    /// Not answered in time, or cancelled.
    NoAnswer,
}

/// The call's identity, common to every payload of that call
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallInfo {
    /// Our id of the call (leg).
    pub call_sid: CallSid,
    /// For a dialled leg: the caller's call sid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_call_sid: Option<CallSid>,
    /// Inbound (the caller) or outbound (a dialled leg).
    pub direction: Direction,
    /// The From user (or the whole URI when it has no user part).
    pub from: String,
    /// The To (request URI) user.
    pub to: String,
    /// The SIP Call-ID.
    pub call_id: String,
    /// From's display name; empty when none.
    pub caller_name: String,
    /// The last SIP status of the leg (100 when nothing was answered yet).
    pub sip_status: u16,
    /// The leg's state.
    pub call_status: CallStatus,
    /// From the `[app]` configuration.
    pub account_sid: String,
    /// Our SIP address that took the call, `ip:port`.
    pub local_sip_address: String,
}

/// The SIP request that started a call, as shown to the call webhook
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SipRequestInfo {
    /// `INVITE`.
    pub method: String,
    /// The request URI.
    pub uri: String,
    /// Headers by lower-case name; repeated headers joined with `,`.
    pub headers: BTreeMap<String, String>,
    /// The body (SDP), as text.
    pub body: String,
}

impl SipRequestInfo {
    /// Builds the header map from `(name, value)` pairs in message order
    pub fn new<'a>(
        method: &str,
        uri: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        body: &str,
    ) -> Self {
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            map.entry(name.to_ascii_lowercase())
                .and_modify(|v| {
                    v.push(',');
                    v.push_str(value);
                })
                .or_insert_with(|| value.to_string());
        }
        Self {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: map,
            body: body.to_string(),
        }
    }
}

/// The body of the call webhook (jambonz's session payload)
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionPayload {
    /// Who is calling whom.
    #[serde(flatten)]
    pub call: CallInfo,
    /// The INVITE.
    pub sip: SipRequestInfo,
}

/// The body of the call-status webhook, one per state change of a leg
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallStatusPayload {
    /// The leg, with its new `call_status` and `sip_status`.
    #[serde(flatten)]
    pub call: CallInfo,
    /// The reason phrase of `sip_status`, when a response gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip_reason: Option<String>,
    /// Whole seconds from answer to end, on `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
}

/// The final status of a dial, in the actionHook
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DialStatus {
    /// Nothing answered for another reason.
    Failed,
    /// Not answered in time (or cancelled).
    NoAnswer,
    /// The callee was busy.
    Busy,
    /// A callee answered and was bridged.
    Completed,
}

/// How one fork of a dial ended
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForkOutcome {
    /// It answered and was bridged with the caller.
    Bridged,
    /// It answered a final error status (or one we made up, e.g. 404 for a user with no
    /// contacts, 408 for a transaction timeout).
    Rejected(u16),
    /// We cancelled it while it rang: dial timeout, the caller hung up, another fork won or a
    /// REST no-answer. Its final status is 487.
    Cancelled,
}

impl ForkOutcome {
    /// The jambonz status and the SIP status of this fork
    pub fn status(self) -> (DialStatus, u16) {
        match self {
            ForkOutcome::Bridged => (DialStatus::Completed, 200),
            ForkOutcome::Rejected(code @ (486 | 600)) => (DialStatus::Busy, code),
            ForkOutcome::Rejected(code @ (408 | 480)) => (DialStatus::NoAnswer, code),
            ForkOutcome::Rejected(code) => (DialStatus::Failed, code),
            ForkOutcome::Cancelled => (DialStatus::NoAnswer, 487),
        }
    }
}

/// What the actionHook reports of a dial
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DialResult {
    /// The fork whose status is reported (the bridged one, else the most telling).
    pub dial_call_sid: CallSid,
    /// completed, busy, no-answer or failed.
    pub dial_status: DialStatus,
    /// The same value, under the name jambonz apps read.
    pub dial_call_status: DialStatus,
    /// The SIP status of that fork.
    pub dial_sip_status: u16,
}

impl DialResult {
    /// The most telling outcome of all forks (completed > busy > no-answer > failed; the
    /// earliest fork wins a tie). None when there were no forks.
    pub fn of_forks(forks: &[(CallSid, ForkOutcome)]) -> Option<Self> {
        let mut best: Option<(CallSid, DialStatus, u16)> = None;
        for &(sid, outcome) in forks {
            let (status, code) = outcome.status();
            if best.is_none_or(|(_, b, _)| status > b) {
                best = Some((sid, status, code));
            }
        }
        best.map(|(dial_call_sid, status, dial_sip_status)| DialResult {
            dial_call_sid,
            dial_status: status,
            dial_call_status: status,
            dial_sip_status,
        })
    }
}

/// The body of the dial's actionHook: the caller's call info plus the dial result
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DialActionPayload {
    /// The caller's leg.
    #[serde(flatten)]
    pub call: CallInfo,
    /// The outcome.
    #[serde(flatten)]
    pub result: DialResult,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(sid: CallSid) -> CallInfo {
        CallInfo {
            call_sid: sid,
            parent_call_sid: None,
            direction: Direction::Inbound,
            from: "+15083084809".into(),
            to: "+16173331212".into(),
            call_id: "abc@10.0.0.1".into(),
            caller_name: "Alice".into(),
            sip_status: 100,
            call_status: CallStatus::Trying,
            account_sid: "acct".into(),
            local_sip_address: "127.0.0.1:5060".into(),
        }
    }

    #[test]
    fn session_payload_is_compact_snake_case_with_integers() {
        let sid = CallSid::parse("0e3c1b5a-2a5b-4f31-9a4b-6f1d0c2b7e11").unwrap();
        let p = SessionPayload {
            call: info(sid),
            sip: SipRequestInfo::new(
                "INVITE",
                "sip:+16173331212@127.0.0.1",
                [
                    ("Via", "SIP/2.0/UDP a"),
                    ("via", "SIP/2.0/UDP b"),
                    ("X-Tag", "1"),
                ],
                "v=0\r\n",
            ),
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"call_sid":"0e3c1b5a-2a5b-4f31-9a4b-6f1d0c2b7e11","direction":"inbound","from":"+15083084809","to":"+16173331212","call_id":"abc@10.0.0.1","caller_name":"Alice","sip_status":100,"call_status":"trying","account_sid":"acct","local_sip_address":"127.0.0.1:5060","sip":{"method":"INVITE","uri":"sip:+16173331212@127.0.0.1","headers":{"via":"SIP/2.0/UDP a,SIP/2.0/UDP b","x-tag":"1"},"body":"v=0\r\n"}}"#
        );
    }

    #[test]
    fn status_payload_names_every_status() {
        let mut call = info(CallSid::new_random());
        call.parent_call_sid = Some(CallSid::new_random());
        call.direction = Direction::Outbound;
        for (status, name) in [
            (CallStatus::Trying, "trying"),
            (CallStatus::Ringing, "ringing"),
            (CallStatus::EarlyMedia, "early-media"),
            (CallStatus::InProgress, "in-progress"),
            (CallStatus::Completed, "completed"),
            (CallStatus::Failed, "failed"),
            (CallStatus::Busy, "busy"),
            (CallStatus::NoAnswer, "no-answer"),
        ] {
            call.call_status = status;
            let v = serde_json::to_value(CallStatusPayload {
                call: call.clone(),
                sip_reason: Some("OK".into()),
                duration: Some(12),
            })
            .unwrap();
            assert_eq!(v["call_status"], name);
            assert_eq!(v["direction"], "outbound");
            assert_eq!(v["duration"], 12);
            assert!(v["parent_call_sid"].is_string());
        }
    }

    #[test]
    fn each_fork_outcome_maps_as_the_issue_says() {
        use DialStatus::*;
        use ForkOutcome::*;
        for (outcome, expected) in [
            (Bridged, (Completed, 200)),
            (Rejected(486), (Busy, 486)),
            (Rejected(600), (Busy, 600)),
            (Cancelled, (NoAnswer, 487)),
            (Rejected(408), (NoAnswer, 408)),
            (Rejected(480), (NoAnswer, 480)),
            (Rejected(404), (Failed, 404)),
            (Rejected(487), (Failed, 487)),
            (Rejected(503), (Failed, 503)),
            (Rejected(603), (Failed, 603)),
        ] {
            assert_eq!(outcome.status(), expected, "{outcome:?}");
        }
    }

    #[test]
    fn the_most_telling_fork_wins() {
        use ForkOutcome::*;
        let s: Vec<CallSid> = (0..4).map(|_| CallSid::new_random()).collect();
        let r = |forks: &[(CallSid, ForkOutcome)]| {
            let r = DialResult::of_forks(forks).unwrap();
            (r.dial_call_sid, r.dial_status, r.dial_sip_status)
        };
        assert_eq!(
            r(&[
                (s[0], Rejected(503)),
                (s[1], Bridged),
                (s[2], Rejected(486))
            ]),
            (s[1], DialStatus::Completed, 200)
        );
        assert_eq!(
            r(&[
                (s[0], Rejected(503)),
                (s[1], Cancelled),
                (s[2], Rejected(486))
            ]),
            (s[2], DialStatus::Busy, 486)
        );
        assert_eq!(
            r(&[
                (s[0], Rejected(404)),
                (s[1], Rejected(480)),
                (s[2], Cancelled)
            ]),
            (s[1], DialStatus::NoAnswer, 480)
        );
        assert_eq!(
            r(&[(s[0], Rejected(404)), (s[1], Rejected(503))]),
            (s[0], DialStatus::Failed, 404)
        );
        assert_eq!(DialResult::of_forks(&[]), None);
    }

    #[test]
    fn action_payload_carries_both_status_names() {
        let caller = info(CallSid::new_random());
        let fork = CallSid::new_random();
        let result = DialResult::of_forks(&[(fork, ForkOutcome::Rejected(486))]).unwrap();
        let v = serde_json::to_value(DialActionPayload {
            call: caller.clone(),
            result,
        })
        .unwrap();
        assert_eq!(v["call_sid"], caller.call_sid.to_string());
        assert_eq!(v["dial_call_sid"], fork.to_string());
        assert_eq!(v["dial_status"], "busy");
        assert_eq!(v["dial_call_status"], "busy");
        assert_eq!(v["dial_sip_status"], 486);
    }
}
