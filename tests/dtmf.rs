//! Digits through `dialplane serve` end to end: dtmfCapture/dtmfHook with keys pressed on either
//! leg by SIP INFO and RFC 4733, REST `dtmf` sent into a leg, and confirmHook screening apps.
//!
//! SIPp plays the caller and the callees (scenarios in `tests/dtmf/`, plus `tests/serve/`'s
//! answering and hanging-up callees); RFC 4733 keys are SIPp's own telephone-event pcaps; a
//! callee whose media is a UDP socket of the test receives what REST sends. The webhook
//! receiver plays the control app and counts the dtmfHook's hits. Needs `sipp`.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::free_udp_port;
use common::http::{Hit, Receiver};
use common::serve::{
    CALLED, HOOK_WAIT, Serve, TOKEN, assert_signed, callee, dial, serve_with_app, sip_target,
};
use common::sipp::{Run, Sipp};

fn dtmf_scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/dtmf/{name}.xml"))
}

/// A callee running `tests/dtmf/<scenario>.xml` for one call.
fn dtmf_callee(name: &str, scenario: &str, pause_ms: u64, extra: &[&str]) -> Sipp {
    Sipp::callee(
        name,
        Run {
            scenario: &dtmf_scenario(scenario),
            calls: 1,
            pause_ms,
            extra,
        },
    )
}

/// One call from SIPp running `tests/dtmf/<scenario>.xml`.
fn dtmf_caller(serve: &Serve, scenario: &str, pause_ms: u64) -> Sipp {
    Sipp::caller(
        "caller",
        serve.sip,
        Run {
            scenario: &dtmf_scenario(scenario),
            calls: 1,
            pause_ms,
            extra: &["-s", CALLED],
        },
    )
}

/// The call sid of the caller's leg (the call webhook's).
fn caller_sid(hooks: &Receiver) -> String {
    hooks.hits("/call")[0].json["call_sid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits for the B leg to be answered; its call sid.
fn answered_b_leg(hooks: &Receiver) -> String {
    let hits = hooks.wait("/status", "B leg in-progress", HOOK_WAIT, |h| {
        h.iter().any(is_answered_b_leg)
    });
    let hit = hits.iter().find(|h| is_answered_b_leg(h)).unwrap();
    hit.json["call_sid"].as_str().unwrap().to_string()
}

fn is_answered_b_leg(h: &Hit) -> bool {
    h.json["parent_call_sid"].is_string() && h.json["call_status"] == "in-progress"
}

/// The dtmfHook's hits once the call is over (every hook it caused has been sent by then).
fn dtmf_hits_after(serve: &Serve, hooks: &Receiver) -> Vec<Hit> {
    hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    serve.wait_idle();
    let hits = hooks.hits("/dtmf");
    for h in &hits {
        assert_signed(h);
    }
    hits
}

/// `(dtmf, call_sid, parent_call_sid)` of each hit, sorted.
fn matches_of(hits: &[Hit]) -> Vec<(String, String, Option<String>)> {
    let mut m: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                h.json["dtmf"].as_str().unwrap_or("?").to_string(),
                h.json["call_sid"].as_str().unwrap_or("?").to_string(),
                h.json["parent_call_sid"].as_str().map(str::to_string),
            )
        })
        .collect();
    m.sort();
    m
}

#[test]
fn sip_info_keys_of_both_legs_hit_the_dtmf_hook_once_per_match() {
    // The callee presses # 9 (application/dtmf) 300 ms after answering; the caller presses
    // 1 2 2 (application/dtmf-relay): "12" matches once, the last 2 starts a new sequence.
    let mut bob = dtmf_callee("bob", "callee_info", 300, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-info",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({
                "actionHook": "/action",
                "dtmfCapture": {"parentCall": ["12", "2"], "childCall": ["#9"]},
                "dtmfHook": "/dtmf",
            }),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller_info", 1500);
    let b_leg = answered_b_leg(&hooks);
    serve.finish(&mut [&mut alice, &mut bob]);
    let a_leg = caller_sid(&hooks);
    let hits = dtmf_hits_after(&serve, &hooks);
    let mut expected = vec![
        ("12".to_string(), a_leg.clone(), None),
        // The third key alone matches "2" (the longest pattern won on the second).
        ("2".to_string(), a_leg.clone(), None),
        ("#9".to_string(), b_leg, Some(a_leg)),
    ];
    expected.sort();
    assert_eq!(matches_of(&hits), expected, "{}", serve.log_tail());
    for line in ["INFO 1 200", "INFO 2 200"] {
        assert!(alice.log().iter().any(|l| l == line), "{:?}", alice.log());
    }
    let info = bob.log();
    assert!(info.iter().any(|l| l == "INFO # 200"), "{info:?}");
    assert!(info.iter().any(|l| l == "INFO 9 200"), "{info:?}");
    let h = hits.iter().find(|h| h.json["dtmf"] == "#9").unwrap();
    assert_eq!(h.json["direction"], "outbound", "{}", h.body);
}

#[test]
fn rfc4733_keys_of_both_legs_hit_the_dtmf_hook() {
    // A plain list listens on both legs; each leg presses 1 then 2 by telephone-events.
    let mut bob = dtmf_callee("bob", "callee_rfc4733", 200, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-rfc4733",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "dtmfCapture": ["12"], "dtmfHook": "/dtmf"}),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller_rfc4733", 1500);
    let b_leg = answered_b_leg(&hooks);
    serve.finish(&mut [&mut alice, &mut bob]);
    let a_leg = caller_sid(&hooks);
    let hits = dtmf_hits_after(&serve, &hooks);
    let mut expected = vec![
        ("12".to_string(), a_leg.clone(), None),
        ("12".to_string(), b_leg, Some(a_leg)),
    ];
    expected.sort();
    assert_eq!(matches_of(&hits), expected, "{}", serve.log_tail());
    let metrics = serve.metrics();
    assert!(
        metrics.contains("dialplane_dtmf_digits_total{source=\"rfc4733\"} 4"),
        "four presses by RFC 4733:\n{metrics}"
    );
}

/// One RFC 4733 press as received: event code, end seen, duration in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Press {
    event: u8,
    duration: u16,
}

/// Reads RTP from `socket` until `n` presses have ended (bounded): the telephone-event
/// payload type's packets, grouped by timestamp.
fn receive_presses(socket: &UdpSocket, pt: u8, n: usize) -> Vec<Press> {
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut ended: Vec<(u32, Press)> = Vec::new();
    let mut buf = [0u8; 2048];
    while ended.len() < n {
        assert!(Instant::now() < deadline, "only {ended:?} within 10 s");
        let Ok(len) = socket.recv(&mut buf) else {
            continue;
        };
        let p = &buf[..len];
        if len < 16 || p[0] >> 6 != 2 || p[1] & 0x7f != pt {
            continue;
        }
        let cc = usize::from(p[0] & 0x0f);
        let payload = &p[12 + 4 * cc..];
        let timestamp = u32::from_be_bytes([p[4], p[5], p[6], p[7]]);
        let end = payload[1] & 0x80 != 0;
        if end && !ended.iter().any(|(t, _)| *t == timestamp) {
            ended.push((
                timestamp,
                Press {
                    event: payload[0],
                    duration: u16::from_be_bytes([payload[2], payload[3]]),
                },
            ));
        }
    }
    ended.into_iter().map(|(_, p)| p).collect()
}

#[test]
fn rest_dtmf_reaches_the_leg_as_rfc4733_events_in_order() {
    let rtp = UdpSocket::bind(("127.0.0.1", free_udp_port())).expect("bind rtp");
    let rtp_port = rtp.local_addr().unwrap().port().to_string();
    let mut bob = dtmf_callee("bob", "callee_rtp", 0, &["-key", "rtp_port", &rtp_port]);
    let (hooks, serve) = serve_with_app(
        "dtmf-rest",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller", 4000);
    let b_leg = answered_b_leg(&hooks);
    let (code, body) = serve.update_call(&b_leg, Some(TOKEN), r##"{"dtmf":{"digit":"1#"}}"##);
    assert_eq!(code, 202, "{body}");
    let (code, body) = serve.update_call(
        &b_leg,
        Some(TOKEN),
        r#"{"dtmf":{"digit":"9","duration":400}}"#,
    );
    assert_eq!(code, 202, "{body}");
    let presses = receive_presses(&rtp, 101, 3);
    // 250 ms (jambonz's default) and 400 ms at 8 kHz.
    assert_eq!(
        presses,
        [
            Press {
                event: 1,
                duration: 2000
            },
            Press {
                event: 11,
                duration: 2000
            },
            Press {
                event: 9,
                duration: 3200
            },
        ],
        "{}",
        serve.log_tail()
    );
    serve.finish(&mut [&mut alice, &mut bob]);
}

/// The screening app of the confirm tests: one key, reported to `/screened`.
fn screening_app() -> Value {
    json!([{"verb": "gather", "input": ["digits"], "numDigits": 1, "timeout": 10,
            "actionHook": "/screened"}])
}

#[test]
fn confirm_hook_gathers_the_callees_key_then_bridges() {
    // Bob answers, then presses 1 by SIP INFO; the gather's actionHook answers no verbs: the
    // screening app is over with bob still there, so he is bridged.
    let mut bob = dtmf_callee("bob", "callee_confirm", 300, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-confirm",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
    );
    hooks.answer("/confirm", &screening_app());
    // Held past bob's second key (sent should the first have come too early).
    let mut alice = dtmf_caller(&serve, "caller", 2500);
    serve.finish(&mut [&mut alice, &mut bob]);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    let a_leg = caller_sid(&hooks);
    let confirm = hooks.hits("/confirm");
    assert_eq!(confirm.len(), 1);
    let b_leg = confirm[0].json["call_sid"].as_str().unwrap().to_string();
    assert_eq!(confirm[0].json["parent_call_sid"], a_leg.as_str());
    assert_signed(&confirm[0]);
    let screened = hooks.hits("/screened");
    assert_eq!(screened.len(), 1, "{screened:?}");
    assert_eq!(screened[0].json["digits"], "1");
    assert_eq!(screened[0].json["reason"], "dtmfDetected");
    assert_eq!(screened[0].json["call_sid"], b_leg.as_str());
    assert_eq!(action[0].json["dial_call_status"], "completed");
    assert_eq!(action[0].json["dial_call_sid"], b_leg.as_str());
    assert!(alice.log().iter().any(|l| l == "200"), "{:?}", alice.log());
    serve.wait_idle();
}

#[test]
fn callee_hanging_up_while_screened_is_declined_and_another_fork_wins() {
    // Carol answers at once and is screened (her own confirmHook), but hangs up 500 ms later;
    // bob, still ringing then, answers after 2.5 s with no screening and wins.
    let mut carol = callee("carol", "hangup", 1, 500, &[]);
    let mut bob = callee("bob", "answer", 1, 2500, &[]);
    let mut carol_target = sip_target(&carol.uri("carol"));
    carol_target["confirmHook"] = json!("/confirm");
    let (hooks, serve) = serve_with_app(
        "dtmf-declined",
        dial(
            &[carol_target, sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    hooks.answer("/confirm", &screening_app());
    let mut alice = dtmf_caller(&serve, "caller", 500);
    serve.finish(&mut [&mut alice, &mut bob, &mut carol]);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    let confirm = hooks.hits("/confirm");
    assert_eq!(confirm.len(), 1, "only carol is screened");
    let carol_leg = confirm[0].json["call_sid"].as_str().unwrap();
    assert!(carol.log().iter().any(|l| l == "BYE sent"));
    assert!(hooks.hits("/screened").is_empty(), "no key was pressed");
    assert_eq!(action[0].json["dial_call_status"], "completed");
    let winner = action[0].json["dial_call_sid"].as_str().unwrap();
    assert_ne!(winner, carol_leg, "{}", serve.log_tail());
    let status = hooks.hits("/status");
    let of = |sid: &str| -> Vec<String> {
        status
            .iter()
            .filter(|h| h.json["call_sid"] == sid)
            .map(|h| h.json["call_status"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert!(of(winner).contains(&"in-progress".to_string()));
    let carol_states = of(carol_leg);
    assert!(
        carol_states.ends_with(&["in-progress".to_string(), "completed".to_string()]),
        "{carol_states:?}"
    );
    serve.wait_idle();
}
