//! `dialplane serve` end to end: the real binary on loopback, one per test on its own ports,
//! SIPp as the caller and as the callees (scenarios in `tests/serve/`), and a webhook receiver
//! written here playing the control app: it answers the call webhook with the test's verbs and
//! records every hook (actionHook, call status) with its `Jambonz-Signature`.
//!
//! Each SIPp callee logs what it received (`INVITE <uri>`, `CANCEL <uri> reason=<Reason>`,
//! `BYE`), and exits 0 only when its whole exchange happened; the caller likewise logs the
//! responses it got; their message traces give the headers. One test runs jambonz's own
//! Node.js client app (tests/webhook-app/) as the control app instead. On failure the SIPp
//! logs and dialplane's log (target/tmp/serve-NAME.log) are in the message. Needs `sipp`
//! (Debian sip-tester; `make deps` installs it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use signaling::auth::{Credentials, DigestInput, digest_response};

mod common;
#[path = "webhook-app/harness.rs"]
mod node_app;
use common::http::{Hit, Receiver, request};
use common::serve::{
    CALLED, CALLING, ELSEWHERE, HOOK_WAIT, SECRET, Serve, TOKEN, assert_signed, callee, caller,
    caller_over, config, dial, register, ringing, scenario, serve_with_app, serve_with_app_and,
    sip_target,
};
use common::sipp::{Run, Sipp};
use common::{free_port, free_tcp_port};

/// `sipp`'s action log has `line`.
fn assert_logged(sipp: &Sipp, line: &str) {
    let log = sipp.log();
    assert!(log.iter().any(|l| l == line), "{line:?} not in {log:?}");
}

/// The value of header `name` in a SIP message.
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A Proxy-Authorization (as auth.xml logs it, "AUTH Digest k=v,…") answering auth.xml's
/// challenge with `user` and `password`.
fn assert_digest(line: &str, user: &str, password: &str) {
    let c = Credentials::parse(line.trim_start_matches("AUTH").trim())
        .unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(c.username, user, "{line}");
    assert_eq!(c.realm, "callee.test", "{line}");
    assert_eq!(c.nonce, "6a0c1ba25e3f41d1a1a3c4c9b1f0e2d7", "{line}");
    let expected = digest_response(&DigestInput {
        algorithm: &c.algorithm(),
        username: &c.username,
        realm: &c.realm,
        password,
        method: "INVITE",
        uri: &c.uri,
        nonce: &c.nonce,
        qop: c.qop.as_deref(),
        nc: c.nc,
        cnonce: c.cnonce.as_deref(),
    });
    assert_eq!(Ok(c.response.clone()), expected, "{line}");
}

/// The first actionHook POST to `path`.
fn action(hooks: &Receiver, path: &str) -> Value {
    hooks.wait(path, "actionHook", HOOK_WAIT, |h| !h.is_empty())[0]
        .json
        .clone()
}

fn assert_dial(action: &Value, status: &str, sip_status: u64) {
    assert_eq!(action["dial_status"], status, "{action}");
    assert_eq!(action["dial_call_status"], status, "{action}");
    assert_eq!(action["dial_sip_status"], sip_status, "{action}");
    let sid = action["dial_call_sid"].as_str().unwrap_or_default();
    assert!(is_uuid(sid), "dial_call_sid {action}");
    assert_ne!(action["dial_call_sid"], action["call_sid"], "{action}");
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// The call status hooks of one leg, in order.
fn statuses_of(hits: &[Hit], sid: &str) -> Vec<String> {
    hits.iter()
        .filter(|h| h.json["call_sid"] == sid)
        .map(|h| h.json["call_status"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The call sids of the B legs (status hooks with a parent), in order of first appearance.
fn b_legs(hits: &[Hit]) -> Vec<String> {
    let mut sids: Vec<String> = Vec::new();
    for h in hits {
        if h.json["parent_call_sid"].is_string() {
            let sid = h.json["call_sid"].as_str().unwrap_or_default().to_string();
            if !sids.contains(&sid) {
                sids.push(sid);
            }
        }
    }
    sids
}

const FINAL: [&str; 4] = ["completed", "failed", "busy", "no-answer"];

/// The final status a leg reported, wherever it is among its hooks: dialplane sends each hook
/// on a task of its own, so a leg's hooks may arrive out of order (the order itself is checked
/// by the tests named so).
fn final_status(hits: &[Hit], sid: &str) -> Option<String> {
    statuses_of(hits, sid)
        .into_iter()
        .rfind(|s| FINAL.contains(&s.as_str()))
}

/// Waits until `n` B legs reported a final status; the status hooks so far.
fn wait_b_legs_final(hooks: &Receiver, n: usize) -> Vec<Hit> {
    hooks.wait(
        "/status",
        "final status of every B leg",
        HOOK_WAIT,
        |hits| {
            let legs = b_legs(hits);
            legs.len() == n && legs.iter().all(|sid| final_status(hits, sid).is_some())
        },
    )
}

fn callee_lines(sipp: &Sipp, prefix: &str) -> Vec<String> {
    sipp.log()
        .into_iter()
        .filter(|l| l.starts_with(prefix))
        .collect()
}

/// The Reason of every CANCEL a ringing callee got.
fn cancel_reasons(sipp: &Sipp) -> Vec<String> {
    callee_lines(sipp, "CANCEL ")
        .iter()
        .map(|l| {
            l.split_once(" reason=")
                .map_or("", |(_, r)| r)
                .trim()
                .to_string()
        })
        .collect()
}

#[test]
fn dial_answered_reports_completed_in_signed_hooks() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let (hooks, serve) = serve_with_app(
        "answered",
        // A relative hook resolves against the call webhook's URL, as in jambonz.
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "call", 1000);
    serve.finish(&mut [&mut alice, &mut bob]);

    let call = hooks.wait("/call", "call webhook", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(call.len(), 1, "one call webhook per call");
    let session = &call[0].json;
    assert_eq!(call[0].method, "POST");
    assert!(
        is_uuid(session["call_sid"].as_str().unwrap_or("")),
        "{session}"
    );
    assert_eq!(session["direction"], "inbound", "{session}");
    assert_eq!(session["from"], CALLING, "{session}");
    assert_eq!(session["to"], CALLED, "{session}");
    assert_eq!(session["caller_name"], "Alice", "{session}");
    assert_eq!(
        session["local_sip_address"],
        serve.sip.to_string(),
        "{session}"
    );
    assert_eq!(session["sip"]["method"], "INVITE", "{session}");
    assert_eq!(
        session["sip"]["headers"]["call-id"], session["call_id"],
        "{session}"
    );
    assert!(
        session["sip"]["body"]
            .as_str()
            .is_some_and(|b| b.contains("telephone-event/8000")),
        "{session}"
    );

    let done = action(&hooks, "/action");
    assert_dial(&done, "completed", 200);
    assert_eq!(done["call_sid"], session["call_sid"], "{done}");
    assert_eq!(done["direction"], "inbound", "{done}");

    // The outbound INVITE went to the target URI with our --interface address in its SDP; the
    // callee's BYE came from the caller hanging up.
    let invites = callee_lines(&bob, "INVITE ");
    assert_eq!(
        invites,
        [format!("INVITE {} c=IN IP4 127.0.0.1", bob.uri("bob"))]
    );
    assert_eq!(callee_lines(&bob, "BYE ").len(), 1, "{:?}", bob.log());
    let invite = bob
        .received()
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    assert_eq!(
        header(&invite, "P-Asserted-Identity"),
        Some("\"Alice\" <sip:+15083084809@127.0.0.1>"),
        "the caller's identity is passed on: {invite}"
    );

    for hit in hooks.hits("/call").iter().chain(&hooks.hits("/action")) {
        assert_signed(hit);
    }
    wait_b_legs_final(&hooks, 1).iter().for_each(assert_signed);
    let metrics = serve.wait_idle();
    assert_eq!(
        Serve::calls_total(&metrics),
        [("completed".to_string(), 1.0)],
        "{metrics}"
    );
}

#[test]
fn media_flows_between_caller_and_the_winner() {
    // The callee echoes the RTP it gets; the caller sends ten telephone-event packets once
    // answered, which with answerOnBridge is once bridged.
    let mut bob = callee("echo", "answer", 1, 50, &["-rtp_echo"]);
    let (_hooks, serve) = serve_with_app(
        "media",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    let mut alice = caller(&serve, "call", 1500);
    serve.finish(&mut [&mut alice, &mut bob]);
    let metrics = serve.wait_idle();
    assert_eq!(
        metric_sum(&metrics, "dialplane_media_packets_relayed_total"),
        20.0,
        "ten packets each way: {metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "dialplane_media_rtp_dropped_total"),
        0.0,
        "{metrics}"
    );
}

#[test]
fn media_reaches_the_winner_after_another_forks_early_sdp() {
    // The forks share one media leg: the ringing fork's 183 points it at that fork first, the
    // winner's 200 must point it back (latching starts over) or the echo never comes back.
    let mut bob = callee("echo2", "answer", 1, 300, &["-rtp_echo"]);
    let mut ring = ringing("early", 1);
    let (_hooks, serve) = serve_with_app(
        "media-two",
        dial(
            &[sip_target(&ring.uri("early")), sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    let mut alice = caller(&serve, "call", 1500);
    serve.finish(&mut [&mut alice, &mut bob, &mut ring]);
    assert_eq!(cancel_reasons(&ring), [ELSEWHERE], "{:?}", ring.log());
    let metrics = serve.wait_idle();
    assert_eq!(
        metric_sum(&metrics, "dialplane_media_packets_relayed_total"),
        20.0,
        "ten packets each way: {metrics}"
    );
    assert_eq!(
        metric_sum(&metrics, "dialplane_media_rtp_dropped_total"),
        0.0,
        "{metrics}"
    );
}

/// The sum of every series of metric `name`.
fn metric_sum(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn dial_busy_from_static_app_file() {
    let mut busy = callee("busy", "busy", 1, 0, &[]);
    let hooks = Receiver::start();
    let app = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("app-{}.json", busy.port));
    let verbs = dial(
        &[sip_target(&busy.uri("carol"))],
        json!({"actionHook": hooks.url("/action")}),
    );
    std::fs::write(&app, verbs.to_string()).unwrap();
    // A status hook nobody listens on: failing hooks never stop the call.
    let refused = format!("http://127.0.0.1:{}/status", free_tcp_port());
    let serve = Serve::start(
        "busy",
        &["--app", app.to_str().unwrap(), "--status-hook", &refused],
    );
    // Answered before the outdial (answerOnBridge false), hung up when the app runs out.
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut busy]);
    assert_dial(&action(&hooks, "/action"), "busy", 486);
    assert!(
        hooks.hits("/call").is_empty(),
        "--app needs no call webhook"
    );
    serve.wait_idle();
}

#[test]
fn dial_timeout_cancels_ringing_callee_as_no_answer() {
    let mut ring = ringing("ring", 1);
    // The actionHook as an object: GET with the fields as query args, HTTP basic auth.
    let hook = json!({"url": "/action", "method": "GET", "username": "app", "password": "pw"});
    let (hooks, serve) = serve_with_app(
        "timeout",
        dial(
            &[sip_target(&ring.uri("dave"))],
            json!({"actionHook": hook, "timeout": 2}),
        ),
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut ring]);
    let hit = hooks.wait("/action", "actionHook", HOOK_WAIT, |h| !h.is_empty())[0].clone();
    assert_eq!(hit.method, "GET");
    // base64("app:pw")
    assert_eq!(
        hit.headers.get("authorization").map(String::as_str),
        Some("Basic YXBwOnB3")
    );
    // Signed over the JSON payload, as jambonz does for GET too (no body to check it on here).
    assert!(hit.headers.contains_key("jambonz-signature"), "{hit:?}");
    let args: HashMap<&str, &str> = hit
        .query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    for (key, value) in [
        ("dial_status", "no-answer"),
        ("dial_call_status", "no-answer"),
        ("dial_sip_status", "487"),
        ("direction", "inbound"),
    ] {
        assert_eq!(args.get(key), Some(&value), "{key} in {}", hit.query);
    }
    let reasons = cancel_reasons(&ring);
    assert_eq!(reasons.len(), 1, "{:?}", ring.log());
    assert_ne!(
        reasons[0], ELSEWHERE,
        "a timeout is not completed elsewhere"
    );
    serve.wait_idle();
}

#[test]
fn dial_timeout_cancels_callee_that_only_sent_100() {
    let mut silent = ringing("silent", 1);
    let (hooks, serve) = serve_with_app(
        "silent",
        dial(
            &[sip_target(&silent.uri("silent-erin"))],
            json!({"actionHook": "/action", "timeout": 2}),
        ),
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut silent]);
    assert_dial(&action(&hooks, "/action"), "no-answer", 487);
    assert_eq!(cancel_reasons(&silent).len(), 1, "{:?}", silent.log());
    serve.wait_idle();
}

#[test]
fn first_answer_wins_and_other_fork_is_cancelled_with_reason() {
    let mut bob = callee("bob", "answer", 1, 300, &[]);
    let mut ring = ringing("ring", 1);
    let (hooks, serve) = serve_with_app(
        "two-forks",
        dial(
            &[sip_target(&bob.uri("bob")), sip_target(&ring.uri("frank"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut bob, &mut ring]);
    assert_eq!(cancel_reasons(&ring), [ELSEWHERE], "{:?}", ring.log());
    let done = action(&hooks, "/action");
    assert_dial(&done, "completed", 200);
    // dial_call_sid names the B leg that was answered.
    let status = wait_b_legs_final(&hooks, 2);
    let winner = done["dial_call_sid"].as_str().unwrap();
    assert!(
        statuses_of(&status, winner).contains(&"in-progress".to_string()),
        "{winner} in {:?}",
        status.iter().map(|h| &h.body).collect::<Vec<_>>()
    );
    serve.wait_idle();
}

#[test]
fn two_answering_at_once_leave_one_leg_up() {
    let mut both = callee("both", "answer_now", 2, 0, &[]);
    let (hooks, serve) = serve_with_app(
        "two-answers",
        dial(
            &[sip_target(&both.uri("nina")), sip_target(&both.uri("omar"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "call", 2000);
    serve.finish(&mut [&mut alice, &mut both]);
    let done = action(&hooks, "/action");
    assert_dial(&done, "completed", 200);
    // The winner is the leg dial_call_sid names; the other one got ACK and BYE at once, long
    // before the caller hung up and the winner with it.
    let status = wait_b_legs_final(&hooks, 2);
    let winner = status
        .iter()
        .find(|h| h.json["call_sid"] == done["dial_call_sid"])
        .map(|h| h.json["to"].as_str().unwrap().to_string())
        .expect("status hooks of the winner");
    let byes = callee_lines(&both, "BYE ");
    assert_eq!(byes.len(), 2, "{:?}", both.log());
    assert!(
        !byes[0].contains(&format!("sip:{winner}@")) && byes[1].contains(&format!("sip:{winner}@")),
        "the loser is hung up first, the winner {winner} when the caller leaves: {byes:?}"
    );
    serve.wait_idle();
}

#[test]
fn ten_targets_ten_invites_nine_cancels_with_reason() {
    let mut bob = callee("bob", "answer", 1, 300, &[]);
    let mut ring = ringing("ring9", 9);
    let mut targets = vec![sip_target(&bob.uri("bob"))];
    targets.extend((0..9).map(|i| sip_target(&ring.uri(&format!("fork{i}")))));
    let (hooks, serve) = serve_with_app("ten", dial(&targets, json!({"actionHook": "/action"})));
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut bob, &mut ring]);

    let mut invited: Vec<String> = callee_lines(&ring, "INVITE ");
    invited.sort();
    let expected: Vec<String> = (0..9)
        .map(|i| format!("INVITE {}", ring.uri(&format!("fork{i}"))))
        .collect();
    assert_eq!(invited, expected, "nine ringing forks");
    assert_eq!(callee_lines(&bob, "INVITE ").len(), 1, "{:?}", bob.log());
    assert_eq!(
        cancel_reasons(&ring),
        vec![ELSEWHERE; 9],
        "{:?}",
        ring.log()
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn digest_challenge_answered_with_target_auth() {
    let mut guarded = callee("auth", "auth", 1, 0, &[]);
    let target = json!({"type": "sip", "sipUri": guarded.uri("bob"),
                        "auth": {"username": "bob", "password": "s3cret"}});
    let (hooks, serve) = serve_with_app("auth", dial(&[target], json!({"actionHook": "/action"})));
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut guarded]);
    let credentials = callee_lines(&guarded, "AUTH ");
    assert_eq!(credentials.len(), 1, "{:?}", guarded.log());
    assert_digest(&credentials[0], "bob", "s3cret");
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn redirect_302_is_followed() {
    let mut moved = callee("moved", "answer", 1, 50, &[]);
    let port = moved.port.to_string();
    let mut redirect = callee("redirect", "redirect", 1, 0, &["-key", "moved_port", &port]);
    let (hooks, serve) = serve_with_app(
        "redirect",
        dial(
            &[sip_target(&redirect.uri("grace"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut redirect, &mut moved]);
    assert_eq!(
        callee_lines(&moved, "INVITE "),
        [format!("INVITE {} c=IN IP4 127.0.0.1", moved.uri("moved"))]
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn answer_on_bridge_caller_rings_until_callee_answers_late() {
    let mut late = callee("late", "answer", 1, 1500, &[]);
    let (hooks, serve) = serve_with_app(
        "answer-on-bridge",
        dial(
            &[sip_target(&late.uri("heidi"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut late]);
    let responses = alice.log();
    let ringing = responses.iter().position(|l| l == "180" || l == "183");
    let answered = responses.iter().position(|l| l == "200");
    assert!(
        matches!((ringing, answered), (Some(r), Some(a)) if r < a),
        "caller's responses: {responses:?}"
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn caller_cancel_while_forks_ring_cancels_every_fork() {
    let mut ring = ringing("ring2", 2);
    let (hooks, serve) = serve_with_app(
        "caller-cancel",
        dial(
            &[sip_target(&ring.uri("ivan")), sip_target(&ring.uri("judy"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    let mut alice = caller(&serve, "cancel", 500);
    serve.finish(&mut [&mut alice, &mut ring]);
    let reasons = cancel_reasons(&ring);
    assert_eq!(reasons.len(), 2, "{:?}", ring.log());
    assert!(
        reasons.iter().all(|r| r != ELSEWHERE),
        "no fork was answered elsewhere: {reasons:?}"
    );
    // Each leg's final status is reported: both forks and the caller's leg no-answer.
    let status = wait_b_legs_final(&hooks, 2);
    for sid in b_legs(&status) {
        assert_eq!(
            final_status(&status, &sid).as_deref(),
            Some("no-answer"),
            "{sid}"
        );
    }
    let a_leg = hooks.hits("/call")[0].json["call_sid"]
        .as_str()
        .unwrap()
        .to_string();
    hooks.wait("/status", "the caller leg's final status", HOOK_WAIT, |h| {
        final_status(h, &a_leg).is_some()
    });
    assert_eq!(
        final_status(&hooks.hits("/status"), &a_leg).as_deref(),
        Some("no-answer"),
        "the caller cancelled: jambonz reports no-answer (487) for its leg"
    );
    serve.wait_idle();
}

#[test]
fn rest_completed_hangs_up_both_legs() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let (hooks, serve) = serve_with_app(
        "rest",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    // Bridged once the B leg is in progress; the caller leg's sid is the call webhook's.
    hooks.wait("/status", "B leg in-progress", HOOK_WAIT, |h| {
        h.iter().any(|h| {
            h.json["parent_call_sid"].is_string() && h.json["call_status"] == "in-progress"
        })
    });
    let sid = hooks.hits("/call")[0].json["call_sid"]
        .as_str()
        .unwrap()
        .to_string();
    let hang_up = r#"{"call_status":"completed"}"#;
    assert_eq!(serve.update_call(&sid, None, hang_up).0, 401, "no token");
    assert_eq!(
        serve.update_call(&sid, Some("wrong"), hang_up).0,
        401,
        "wrong token"
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    assert_eq!(serve.update_call(unknown, Some(TOKEN), hang_up).0, 404);
    let (code, body) = serve.update_call(&sid, Some(TOKEN), r#"{"call_status":"sideways"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = serve.update_call(&sid, Some(TOKEN), hang_up);
    assert_eq!(code, 202, "{body}");
    // Both SIPp sides got a BYE (each exits 0 only after answering it).
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(callee_lines(&bob, "BYE ").len(), 1);
    assert_logged(&alice, "BYE");
    serve.wait_idle();
}

#[test]
fn status_hooks_of_a_b_leg_in_order() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let (hooks, serve) = serve_with_app(
        "status",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut bob]);
    let status = wait_b_legs_final(&hooks, 1);
    let a_leg = hooks.hits("/call")[0].json["call_sid"].clone();
    let b_leg = &b_legs(&status)[0];
    assert_eq!(
        statuses_of(&status, b_leg),
        ["trying", "ringing", "in-progress", "completed"],
        "one leg's status hooks, in the order they reached the app"
    );
    for hit in status
        .iter()
        .filter(|h| h.json["call_sid"] == b_leg.as_str())
    {
        assert_eq!(hit.json["parent_call_sid"], a_leg, "{}", hit.body);
        assert_eq!(hit.json["direction"], "outbound", "{}", hit.body);
        assert_signed(hit);
    }
    let a = a_leg.as_str().unwrap();
    hooks.wait("/status", "the caller leg's completed", HOOK_WAIT, |h| {
        final_status(h, a).as_deref() == Some("completed")
    });
    serve.wait_idle();
    // As in jambonz (CallInfo of a child call), a leg's call_id is its own SIP Call-ID.
    let invite = bob
        .received()
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    let b_hit = status
        .iter()
        .find(|h| h.json["call_sid"] == b_leg.as_str())
        .unwrap();
    assert_eq!(
        b_hit.json["call_id"].as_str(),
        header(&invite, "Call-ID"),
        "the B leg's call_id: {}",
        b_hit.body
    );
}

#[test]
fn dial_caller_id_headers_and_time_limit() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let (hooks, serve) = serve_with_app(
        "attributes",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "callerId": "+15550001111",
                   "headers": {"X-Custom": "from-the-app"}, "timeLimit": 2}),
        ),
    );
    // The callee is hung up at the time limit, then the caller when the app runs out.
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(callee_lines(&bob, "FROM "), ["FROM sip:+15550001111"]);
    assert_eq!(
        callee_lines(&bob, "X-Custom ")
            .iter()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>(),
        ["X-Custom from-the-app"]
    );
    assert_eq!(callee_lines(&bob, "BYE ").len(), 1);
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn action_hook_verbs_replace_the_rest_of_the_app() {
    let mut busy = callee("busy", "busy", 1, 0, &[]);
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let ring_through = json!({"answerOnBridge": true, "actionHook": "/action"});
    let mut app = dial(&[sip_target(&busy.uri("kate"))], ring_through);
    // Never reached: the actionHook's answer replaces it with a second dial.
    app.as_array_mut()
        .unwrap()
        .push(json!({"verb": "sip:decline", "status": 486}));
    let (hooks, serve) = serve_with_app("failover", app);
    hooks.answer(
        "/action",
        &dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"answerOnBridge": true, "actionHook": "/action2"}),
        ),
    );
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut busy, &mut bob]);
    assert_dial(&action(&hooks, "/action"), "busy", 486);
    assert_dial(&action(&hooks, "/action2"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn rest_no_answer_cancels_ringing_forks() {
    let mut ring = ringing("ring2", 2);
    let cfg = config("rest-account", "[app]\naccount_sid = \"AC-e2e\"\n");
    let (hooks, serve) = serve_with_app_and(
        "rest-no-answer",
        dial(
            &[sip_target(&ring.uri("leo")), sip_target(&ring.uri("mia"))],
            json!({"actionHook": "/action"}),
        ),
        &["--config", cfg.to_str().unwrap()],
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    hooks.wait("/status", "both forks ringing", HOOK_WAIT, |h| {
        h.iter()
            .filter(|h| h.json["call_status"] == "ringing" && h.json["parent_call_sid"].is_string())
            .count()
            == 2
    });
    let sid = hooks.hits("/call")[0].json["call_sid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(hooks.hits("/call")[0].json["account_sid"], "AC-e2e");
    // jambonz's other form of the update, under the account.
    let auth = format!("Bearer {TOKEN}");
    let (code, body) = request(
        serve.http,
        "PUT",
        &format!("/v1/Accounts/AC-e2e/Calls/{sid}"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        r#"{"call_status":"no-answer"}"#,
    );
    assert_eq!(code, 202, "{body}");
    serve.finish(&mut [&mut alice, &mut ring]);
    assert_eq!(cancel_reasons(&ring).len(), 2, "{:?}", ring.log());
    assert_dial(&action(&hooks, "/action"), "no-answer", 487);
    serve.wait_idle();
}

#[test]
fn callee_hangup_hangs_up_the_caller() {
    let mut bob = callee("bob", "hangup", 1, 500, &[]);
    let (hooks, serve) = serve_with_app(
        "callee-hangup",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    // The callee's BYE reaches dialplane at the B leg's Contact; the caller gets one.
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_logged(&bob, "BYE sent");
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    let status = wait_b_legs_final(&hooks, 1);
    let b_leg = &b_legs(&status)[0];
    assert_eq!(final_status(&status, b_leg).as_deref(), Some("completed"));
    serve.wait_idle();
}

#[test]
fn phone_target_through_carrier_with_its_credentials() {
    let mut carrier = callee("carrier", "auth", 1, 0, &[]);
    // No OPTIONS probes: this carrier's SIPp takes the one INVITE and nothing else.
    let cfg = config(
        "phone",
        &format!(
            "[[carriers]]\nname = \"acme\"\ngateways = [\"sip:127.0.0.1:{}\"]\n\
             username = \"bob\"\npassword = \"s3cret\"\nprobe_interval_s = 0\n",
            carrier.port
        ),
    );
    let target = json!({"type": "phone", "number": "+15083331234", "trunk": "acme"});
    let (hooks, serve) = serve_with_app_and(
        "phone",
        dial(&[target], json!({"actionHook": "/action"})),
        &["--config", cfg.to_str().unwrap()],
    );
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut carrier]);
    assert_eq!(
        callee_lines(&carrier, "INVITE "),
        [format!(
            "INVITE sip:+15083331234@127.0.0.1:{}",
            carrier.port
        )]
    );
    let credentials = callee_lines(&carrier, "AUTH ");
    assert_eq!(credentials.len(), 1, "{:?}", carrier.log());
    assert_digest(&credentials[0], "bob", "s3cret");
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn teams_target_carries_tenant_and_voicemail() {
    let mut teams = callee("teams", "answer", 1, 50, &[]);
    let cfg = config(
        "teams",
        &format!(
            // The SIPp callee answers plain RTP (tests/srtp.rs covers SRTP).
            "[teams]\nfqdn = \"sbc.example.com\"\ngateway = \"sip:127.0.0.1:{}\"\nsrtp = false\n",
            teams.port
        ),
    );
    let target = json!({"type": "teams", "number": "+15551234567", "tenant": "contoso.com",
                        "voicemail": true});
    let (hooks, serve) = serve_with_app_and(
        "teams",
        dial(&[target], json!({"actionHook": "/action"})),
        &["--config", cfg.to_str().unwrap()],
    );
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut teams]);
    let invites: Vec<String> = teams
        .received()
        .into_iter()
        .filter(|m| m.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 1, "{invites:?}");
    let uri = invites[0].split(' ').nth(1).unwrap();
    assert!(
        uri.starts_with(&format!("sip:+15551234567@127.0.0.1:{}", teams.port))
            && uri.contains(";opaque=app:voicemail"),
        "{uri}"
    );
    assert_eq!(
        header(&invites[0], "X-MS-Teams-Tenant-FQDN"),
        Some("contoso.com"),
        "{}",
        invites[0]
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn user_target_rings_the_registered_contact() {
    let cfg = config(
        "user",
        "[registrar]\ndomain = \"127.0.0.1\"\n\
         users = [{ name = \"bob\", password = \"bob-secret\" }, \
                  { name = \"carol\", password = \"carol-secret\" }]\n",
    );
    // carol is a user but not registered: her fork fails (404) and bob's still answers.
    let targets = [
        json!({"type": "user", "name": "bob@127.0.0.1"}),
        json!({"type": "user", "name": "carol@127.0.0.1"}),
    ];
    let (hooks, serve) = serve_with_app_and(
        "user",
        dial(&targets, json!({"actionHook": "/action"})),
        &["--config", cfg.to_str().unwrap()],
    );
    let port = register(serve.sip, "bob", "bob-secret");
    let run = Run {
        scenario: &scenario("answer"),
        calls: 1,
        pause_ms: 50,
        extra: &[],
    };
    let mut bob = Sipp::callee_on("bob", port, run);
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(
        callee_lines(&bob, "INVITE ")
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap_or_default().to_string())
            .collect::<Vec<_>>(),
        [format!("sip:bob@127.0.0.1:{}", bob.port)]
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn caller_over_tcp_dials_over_udp() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let (hooks, serve) = serve_with_app(
        "tcp",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = caller_over(&serve, "call", 300, "t1");
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    assert_eq!(callee_lines(&bob, "BYE ").len(), 1, "{:?}", bob.log());
    serve.wait_idle();
}

#[test]
fn early_media_of_the_only_callee_reaches_the_caller() {
    let mut bob = callee("early", "answer", 1, 1000, &[]);
    let (hooks, serve) = serve_with_app(
        "early-media",
        dial(
            &[sip_target(&bob.uri("early-bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut bob]);
    let responses = alice.received();
    let early = responses
        .iter()
        .position(|m| m.starts_with("SIP/2.0 183") && m.contains("m=audio "));
    let answer = responses.iter().position(|m| m.starts_with("SIP/2.0 200"));
    assert!(
        matches!((early, answer), (Some(e), Some(a)) if e < a),
        "the caller gets 183 with SDP, then 200: {responses:#?}"
    );
    let status = wait_b_legs_final(&hooks, 1);
    assert_eq!(
        statuses_of(&status, &b_legs(&status)[0]),
        ["trying", "early-media", "in-progress", "completed"],
        "one leg's status hooks, in the order they reached the app"
    );
    assert_dial(&action(&hooks, "/action"), "completed", 200);
    serve.wait_idle();
}

#[test]
fn call_webhook_retried_per_url_fragment() {
    let hooks = Receiver::start();
    hooks.answer("/call", &json!([{"verb": "sip:decline", "status": 486}]));
    hooks.fail("/call", 2, 503);
    let url = format!("{}#rc=2&rp=5xx", hooks.url("/call"));
    let serve = Serve::start("retries", &["--app-url", &url]);
    let mut alice = caller(&serve, "reject", 0);
    serve.finish(&mut [&mut alice]);
    // The third attempt's verbs ran.
    assert_logged(&alice, "final 486");
    assert_eq!(hooks.hits("/call").len(), 3);
    serve.wait_idle();
}

#[test]
fn refer_without_refer_hook_gets_501() {
    let mut bob = callee("refer", "refer", 1, 300, &[]);
    let (_hooks, serve) =
        serve_with_app("refer-501", dial(&[sip_target(&bob.uri("bob"))], json!({})));
    let mut alice = caller(&serve, "call", 1500);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_logged(&bob, "REFER 501");
    serve.wait_idle();
}

#[test]
fn refer_goes_to_the_refer_hook_and_gets_202() {
    let mut bob = callee("refer", "refer", 1, 300, &[]);
    let (hooks, serve) = serve_with_app(
        "refer-202",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"referHook": "/refer"}),
        ),
    );
    let mut alice = caller(&serve, "call", 1500);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_logged(&bob, "REFER 202");
    let refer = hooks.wait("/refer", "referHook", HOOK_WAIT, |h| !h.is_empty());
    assert!(
        refer[0].body.contains("sip:carol@127.0.0.1"),
        "refer details: {}",
        refer[0].body
    );
    assert_signed(&refer[0]);
    serve.wait_idle();
}

#[test]
fn hold_by_the_callee_is_carried_to_the_caller() {
    let mut bob = callee("hold", "hold", 1, 300, &[]);
    let (_hooks, serve) = serve_with_app("hold", dial(&[sip_target(&bob.uri("bob"))], json!({})));
    let mut alice = caller(&serve, "held", 500);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert!(
        alice.log().contains(&"REINVITE a=sendonly".to_string()),
        "the caller is offered the callee's sendonly: {:?}",
        alice.log()
    );
    assert!(
        bob.log().contains(&"HOLD 200 a=recvonly".to_string()),
        "the callee gets the caller's recvonly: {:?}",
        bob.log()
    );
    serve.wait_idle();
}

#[test]
fn hangup_verb_ends_an_answered_call() {
    let (hooks, serve) = serve_with_app(
        "hangup",
        json!([{"verb": "answer"}, {"verb": "pause", "length": 1}, {"verb": "hangup"}]),
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice]);
    assert_logged(&alice, "BYE");
    assert_eq!(hooks.hits("/call").len(), 1);
    serve.wait_idle();
}

#[test]
fn sip_decline_verb_rejects_the_caller() {
    let (_hooks, serve) =
        serve_with_app("decline", json!([{"verb": "sip:decline", "status": 486}]));
    let mut alice = caller(&serve, "reject", 0);
    serve.finish(&mut [&mut alice]);
    assert_logged(&alice, "final 486");
    serve.wait_idle();
}

#[test]
fn call_webhook_refused_gives_480() {
    // Nothing listens there: connection refused.
    let closed = format!("http://127.0.0.1:{}/call", free_tcp_port());
    let serve = Serve::start("webhook-down", &["--app-url", &closed]);
    let mut alice = caller(&serve, "reject", 0);
    serve.finish(&mut [&mut alice]);
    assert_logged(&alice, "final 480");
    serve.wait_idle();
}

/// A control app that answers 500, or something that is not a verb list, gets the caller a
/// 480 too, and nothing of the call is left behind.
#[test]
fn call_webhook_failing_or_invalid_gives_480() {
    for (name, setup) in [
        (
            "webhook-500",
            Box::new(|h: &Receiver| h.fail("/call", 1, 500)) as Box<dyn Fn(&Receiver)>,
        ),
        (
            "webhook-not-json",
            Box::new(|h: &Receiver| h.answer_raw("/call", "<html>oops</html>")),
        ),
        (
            "webhook-not-verbs",
            Box::new(|h: &Receiver| h.answer("/call", &json!({"verb": 1}))),
        ),
    ] {
        let hooks = Receiver::start();
        hooks.answer("/call", &json!([]));
        setup(&hooks);
        let serve = Serve::start(name, &["--app-url", &hooks.url("/call")]);
        let mut alice = caller(&serve, "reject", 0);
        serve.finish(&mut [&mut alice]);
        assert!(
            alice.log().contains(&"final 480".to_string()),
            "{name}: {:?}",
            alice.log()
        );
        assert_eq!(hooks.hits("/call").len(), 1, "{name}: no retry without #rc");
        serve.wait_idle();
    }
}

#[test]
fn serve_without_app_exits_2() {
    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("serve-no-app.log");
    let mut serve = common::spawn(
        Command::new(env!("CARGO_BIN_EXE_dialplane"))
            .arg("serve")
            .args(["--sip", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{}", free_port())]),
        &log,
    );
    let status = serve.wait_exit(Duration::from_secs(10));
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{output}");
    assert!(output.contains("--app"), "names the missing flag: {output}");
    assert!(!output.contains("ready "), "no ready line: {output}");
}

/// jambonz's own Node.js client as the control app (tests/webhook-app/, express +
/// `@jambonz/node-client`, which answers 403 to a hook whose Jambonz-Signature it cannot verify
/// by re-serialising the body): its call webhook dials the callee with an `X-Call-Sid` header,
/// the callee hangs up, its actionHook answers `hangup` with the dial result in `X-Dial-Status`.
#[test]
fn jambonz_node_app_accepts_our_hooks_and_drives_the_call() {
    let app = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/webhook-app");
    let Some(modules) = node_app::node_modules(&app) else {
        return;
    };
    let mut bob = callee("bob", "hangup", 1, 500, &[]);
    let node =
        node_app::NodeApp::start(&app, &modules, SECRET, &[("DIAL_SIP_URI", &bob.uri("bob"))]);
    let serve = Serve::start(
        "node-app",
        &[
            "--app-url",
            &node.url("/call"),
            "--status-hook",
            &node.url("/status"),
        ],
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut bob]);
    let invite = bob
        .received()
        .into_iter()
        .find(|m| m.starts_with("INVITE "))
        .unwrap();
    let call_sid = header(&invite, "X-Call-Sid").unwrap_or_default();
    assert!(
        is_uuid(call_sid),
        "the call webhook's verbs applied: {invite}"
    );
    let bye = alice
        .received()
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap();
    let dial_status = header(&bye, "X-Dial-Status").unwrap_or_default();
    let parts: Vec<&str> = dial_status.split('/').collect();
    assert!(
        matches!(parts[..], ["completed", "completed", "200", sid] if is_uuid(sid) && sid != call_sid),
        "the actionHook's hangup verb, with the dial result: {bye}"
    );
    serve.wait_idle();
}

/// The harness itself, without dialplane: the callers' scenarios against the callees' ones
/// directly, so a failure above is dialplane's and not a broken scenario.
#[test]
fn scenarios_work_against_each_other() {
    let direct = |callee: &mut Sipp, scenario_name: &str, user: &str, pause_ms: u64| {
        let target: SocketAddr = ([127, 0, 0, 1], callee.port).into();
        let mut caller = Sipp::caller(
            "direct-caller",
            target,
            Run {
                scenario: &scenario(scenario_name),
                calls: 1,
                pause_ms,
                extra: &["-s", user],
            },
        );
        for sipp in [&mut caller, callee] {
            sipp.finish().unwrap_or_else(|e| panic!("{e}"));
        }
        caller.log()
    };
    let mut answer = callee("direct-answer", "answer", 1, 50, &[]);
    assert_eq!(
        direct(&mut answer, "call", "bob", 100),
        ["180", "200", "200 BYE"]
    );
    assert_eq!(callee_lines(&answer, "BYE ").len(), 1);
    let mut ring = ringing("direct-ring", 1);
    assert_eq!(
        direct(&mut ring, "cancel", "carol", 100),
        ["100", "180", "200 CANCEL", "487"]
    );
    assert_eq!(cancel_reasons(&ring), [""], "our CANCEL has no Reason");
    let mut busy = callee("direct-busy", "busy", 1, 0, &[]);
    assert_eq!(direct(&mut busy, "reject", "dave", 0), ["final 486"]);
}

/// The harness's webhook receiver over keep-alive HTTP, and its signature check agreeing with
/// the signer dialplane uses (a body signed for another secret or altered is refused).
#[test]
fn webhook_receiver_answers_records_and_checks_signatures() {
    let hooks = Receiver::start();
    let verbs = json!([{"verb": "hangup"}]);
    hooks.answer("/call", &verbs);
    let body = r#"{"call_sid":"x","n":1}"#;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let signed = signaling::webhook::signature(SECRET, now, body);
    let post = |path: &str, signature: &str| {
        request(
            hooks.addr,
            "POST",
            path,
            &[
                ("Jambonz-Signature", signature),
                ("Content-Type", "application/json"),
            ],
            body,
        )
    };
    assert_eq!(post("/call", &signed), (200, verbs.to_string()));
    assert_eq!(post("/status?x=1", &signed), (200, String::new()));
    let hits = hooks.wait("/call", "the POST", HOOK_WAIT, |h| h.len() == 1);
    assert_eq!(hits[0].json["n"], 1);
    assert_signed(&hits[0]);
    let status = &hooks.hits("/status")[0];
    assert_eq!(status.query, "x=1");
    assert_signed(status);

    let other = signaling::webhook::signature("another secret", now, body);
    post("/other", &other);
    let hit = hooks.wait("/other", "the POST", HOOK_WAIT, |h| h.len() == 1);
    assert!(std::panic::catch_unwind(|| assert_signed(&hit[0])).is_err());
    let mut altered = hits[0].clone();
    altered.body = altered.body.replace("1}", "2}");
    assert!(std::panic::catch_unwind(|| assert_signed(&altered)).is_err());
}

/// `[[routes]]`: a called number matching a route's pattern gets that route's call webhook
/// instead of the default app.
#[test]
fn routes_pick_the_call_webhook_by_called_number() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let hooks = Receiver::start();
    hooks.answer("/call", &json!([{"verb": "sip:decline", "status": 603}]));
    hooks.answer("/sales", &dial(&[sip_target(&bob.uri("bob"))], json!({})));
    let cfg = config(
        "routes",
        &format!(
            "[[routes]]\nto = \"{}*\"\napp_url = \"{}\"\n[[routes]]\nto = \"9{CALLED}\"\napp_url = \"{}\"\n",
            &CALLED[..4],
            hooks.url("/sales"),
            hooks.url("/call"),
        ),
    );
    let (call, cfg) = (hooks.url("/call"), cfg.to_str().unwrap().to_string());
    let serve = Serve::start("routes", &["--app-url", &call, "--config", &cfg]);
    let mut alice = caller(&serve, "call", 300);
    serve.finish(&mut [&mut alice, &mut bob]);
    let sales = hooks.wait("/sales", "routed call webhook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(sales[0].json["to"], CALLED, "{}", sales[0].json);
    assert!(
        hooks.hits("/call").is_empty(),
        "the default app was not asked"
    );
    assert_eq!(callee_lines(&bob, "INVITE ").len(), 1, "{:?}", bob.log());
    serve.wait_idle();
}

/// A leg without a packet for `[media] media_timeout_s` ends the whole call: the callee and the
/// caller both get a BYE and the B leg's status hook says completed.
#[test]
fn media_timeout_hangs_up_both_legs() {
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let cfg = config("media-timeout", "[media]\nmedia_timeout_s = 2\n");
    let (hooks, serve) = serve_with_app_and(
        "media-timeout",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
        &["--config", cfg.to_str().unwrap()],
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(callee_lines(&bob, "BYE ").len(), 1, "{:?}", bob.log());
    let status = wait_b_legs_final(&hooks, 1);
    let b_leg = &b_legs(&status)[0];
    assert_eq!(final_status(&status, b_leg).as_deref(), Some("completed"));
    serve.wait_idle();
}
