//! Answering-machine detection end to end: `dialplane serve` dials SIPp callees that answer and
//! play a recording (a person saying "Hello?", a voicemail greeting with its beep, silence),
//! synthesised here with espeak-ng and sox and written as pcap files; the amd actionHook must
//! hear what the spec and jambonz say, with the caller's call info.

mod common;

use std::path::PathBuf;

use common::http::Receiver;
use common::rtp::{Stream, pcap_scenario, silence, speech, tone, write_pcap};
use common::serve::{HOOK_WAIT, Serve, caller, dial, serve_with_app, sip_target};
use common::sipp::{Run, Sipp};
use dsp::g711::Law;
use serde_json::{Value, json};

/// What a callee plays after answering.
#[derive(Clone, Copy)]
enum Recording {
    /// "Hello?" and then silence.
    Human,
    /// A greeting of about 4.5 s, a 1000 Hz beep of 500 ms, silence.
    Voicemail,
    /// Nothing but silence.
    Silence,
}

/// A scratch directory of its own for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("amd-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A SIPp callee answering at once and playing `recording`, synthesised into `dir`.
fn callee(name: &str, recording: Recording, dir: &std::path::Path) -> Sipp {
    let pcm = match recording {
        Recording::Human => [speech("Hello?", dir), silence(9000)].concat(),
        Recording::Voicemail => [
            speech(
                "You have reached the voicemail of Dana Smith. Please leave a message.",
                dir,
            ),
            silence(300),
            tone(1000.0, 500, 0.5),
            silence(8000),
        ]
        .concat(),
        Recording::Silence => silence(9000),
    };
    let pcap = dir.join("callee.pcap");
    write_pcap(&pcap, &Stream::new(7).audio(&pcm, Law::Ulaw));
    let template = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/amd/callee.xml");
    let scenario = pcap_scenario(&template, &pcap, dir);
    Sipp::callee(
        name,
        Run {
            scenario: &scenario,
            calls: 1,
            pause_ms: 0,
            extra: &[],
        },
    )
}

/// The `amd` object of a dial: hook `/amd` and these timers.
fn amd(timers: Value, disconnect: bool) -> Value {
    json!({"actionHook": "/amd", "timers": timers, "disconnectOnAMD": disconnect})
}

/// Waits for the amd hook of `type` (jambonz's name); that hook's body.
fn amd_hook(hooks: &Receiver, kind: &str) -> Value {
    let hits = hooks.wait("/amd", kind, HOOK_WAIT, |h| {
        h.iter().any(|h| h.json["type"] == kind)
    });
    let hit = hits
        .into_iter()
        .find(|h| h.json["type"] == kind)
        .expect("found");
    common::serve::assert_signed(&hit);
    hit.json
}

/// Every amd hook's `type`, in arrival order.
fn amd_types(hooks: &Receiver) -> Vec<String> {
    hooks
        .hits("/amd")
        .iter()
        .map(|h| h.json["type"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// The caller's call_sid, from the call webhook.
fn caller_sid(hooks: &Receiver) -> Value {
    hooks.wait("/call", "call webhook", HOOK_WAIT, |h| !h.is_empty())[0].json["call_sid"].clone()
}

/// One dial with `amd` to a callee playing `recording`, the caller holding for `hold_ms`.
fn run_dial(name: &str, recording: Recording, amd: Value, rest: Value) -> Session {
    let dir = scratch(name);
    let callee = callee(&format!("{name}-callee"), recording, &dir);
    let mut verbs = dial(
        &[sip_target(&callee.uri("amd"))],
        json!({"amd": amd, "actionHook": "/action"}),
    );
    for v in rest.as_array().expect("verbs") {
        verbs.as_array_mut().expect("verbs").push(v.clone());
    }
    let (hooks, serve) = serve_with_app(name, verbs);
    Session {
        hooks,
        serve,
        callee,
    }
}

struct Session {
    hooks: Receiver,
    serve: Serve,
    callee: Sipp,
}

#[test]
fn a_short_hello_is_a_human() {
    let mut s = run_dial(
        "human",
        Recording::Human,
        amd(json!({"toneTimeoutMs": 4000}), true),
        json!([]),
    );
    let mut caller = caller(&s.serve, "call", 6000);
    let sid = caller_sid(&s.hooks);
    let human = amd_hook(&s.hooks, "amd_human_detected");
    assert_eq!(human["event"], "amd");
    assert_eq!(human["amd_type"], "human");
    assert_eq!(human["call_sid"], sid, "the caller's call info");
    assert_eq!(human["direction"], "inbound");
    assert_eq!(human["from"], common::serve::CALLING);
    let at = human["at_ms"].as_u64().expect("at_ms");
    assert!((700..=4000).contains(&at), "decided at {at} ms");
    // Listening for a beep ends at the tone timeout; a human is not disconnected.
    let stopped = amd_hook(&s.hooks, "amd_stopped");
    assert_eq!(stopped["call_sid"], sid);
    s.serve.finish(&mut [&mut caller, &mut s.callee]);
    assert_eq!(
        amd_types(&s.hooks),
        ["amd_human_detected", "amd_stopped"],
        "one decision, then the end"
    );
    let action = s
        .hooks
        .wait("/action", "dial actionHook", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(action[0].json["dial_call_status"], "completed");
}

#[test]
fn a_voicemail_greeting_is_a_machine_then_its_beep() {
    let mut s = run_dial(
        "machine",
        Recording::Voicemail,
        amd(json!({"toneTimeoutMs": 9000}), false),
        json!([]),
    );
    let mut caller = caller(&s.serve, "call", 10_000);
    let sid = caller_sid(&s.hooks);
    let machine = amd_hook(&s.hooks, "amd_machine_detected");
    assert_eq!(
        (
            &machine["event"],
            &machine["amd_type"],
            &machine["call_sid"]
        ),
        (&json!("amd"), &json!("machine"), &sid)
    );
    let beep = amd_hook(&s.hooks, "amd_tone_detected");
    assert_eq!(beep["event"], "beep");
    let f = beep["frequency"].as_u64().expect("frequency");
    assert!((980..=1020).contains(&f), "beep at {f} Hz");
    assert!(beep["at_ms"].as_u64() > machine["at_ms"].as_u64());
    amd_hook(&s.hooks, "amd_machine_stopped_speaking");
    amd_hook(&s.hooks, "amd_stopped");
    s.serve.finish(&mut [&mut caller, &mut s.callee]);
    let types = amd_types(&s.hooks);
    assert_eq!(
        types.first().map(String::as_str),
        Some("amd_machine_detected")
    );
    assert_eq!(types.last().map(String::as_str), Some("amd_stopped"));
    assert_eq!(
        types.iter().filter(|t| *t == "amd_tone_detected").count(),
        1
    );
}

#[test]
fn nobody_speaking_is_silence() {
    let mut s = run_dial(
        "silence",
        Recording::Silence,
        amd(
            json!({"noSpeechTimeoutMs": 2000, "toneTimeoutMs": 3000}),
            true,
        ),
        json!([]),
    );
    let mut caller = caller(&s.serve, "call", 5000);
    let sid = caller_sid(&s.hooks);
    let silence = amd_hook(&s.hooks, "amd_no_speech_detected");
    assert_eq!(
        (&silence["event"], &silence["call_sid"]),
        (&json!("silence"), &sid)
    );
    assert!(silence.get("amd_type").is_none());
    let at = silence["at_ms"].as_u64().expect("at_ms");
    assert!((2000..3000).contains(&at), "decided at {at} ms");
    amd_hook(&s.hooks, "amd_stopped");
    s.serve.finish(&mut [&mut caller, &mut s.callee]);
    assert_eq!(
        amd_types(&s.hooks),
        ["amd_no_speech_detected", "amd_stopped"]
    );
}

/// disconnectOnAMD: the machine is hung up on; the dial ends and the caller's app goes on
/// (here: a hangup, which the caller sees as a BYE).
#[test]
fn disconnect_on_amd_hangs_up_the_machine() {
    let mut s = run_dial(
        "disconnect",
        Recording::Voicemail,
        amd(json!({}), true),
        json!([{"verb": "hangup"}]),
    );
    let mut caller = caller(&s.serve, "wait_bye", 0);
    amd_hook(&s.hooks, "amd_machine_detected");
    s.callee
        .wait_log("BYE from dialplane", HOOK_WAIT, |l| l == "BYE");
    let action = s
        .hooks
        .wait("/action", "dial actionHook", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(action[0].json["dial_call_status"], "completed");
    s.serve.finish(&mut [&mut caller, &mut s.callee]);
    let types = amd_types(&s.hooks);
    assert_eq!(types, ["amd_machine_detected", "amd_stopped"]);
}

/// Verbs answering the amd hook replace the app: the dial ends (the callee gets a BYE) and the
/// caller hears the new app (a hangup) instead of the old one's long pause; the dial's
/// actionHook is sent but its verbs are not run.
#[test]
fn verbs_from_the_amd_hook_replace_the_app() {
    let mut s = run_dial(
        "replace",
        Recording::Human,
        amd(json!({}), false),
        json!([{"verb": "pause", "length": 30}]),
    );
    s.hooks.answer("/amd", &json!([{"verb": "hangup"}]));
    s.hooks
        .answer("/action", &json!([{"verb": "pause", "length": 30}]));
    let mut caller = caller(&s.serve, "wait_bye", 0);
    amd_hook(&s.hooks, "amd_human_detected");
    s.callee
        .wait_log("BYE from dialplane", HOOK_WAIT, |l| l == "BYE");
    s.hooks
        .wait("/action", "dial actionHook", HOOK_WAIT, |h| !h.is_empty());
    s.serve.finish(&mut [&mut caller, &mut s.callee]);
    s.serve.wait_idle();
}

/// The account of the createCall tests' server.
const ACCOUNT: &str = "acct-e2e";

/// A server whose account is [`ACCOUNT`] (inbound calls get an empty app).
fn serve_for_rest(name: &str) -> (Receiver, Serve) {
    let cfg = common::serve::config(name, &format!("[app]\naccount_sid = \"{ACCOUNT}\"\n"));
    common::serve::serve_with_app_and(name, json!([]), &["--config", cfg.to_str().expect("path")])
}

/// POST /v1/Accounts/{account}/Calls with `token`; the status and the JSON answer.
fn create_call(serve: &Serve, account: &str, token: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, text) = common::http::request(
        serve.http,
        "POST",
        &format!("/v1/Accounts/{account}/Calls"),
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    );
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The dialer case: createCall rings the callee with the From and To asked for, runs the
/// call_hook's app on it once answered (direction outbound-api; a pause, then a hangup the
/// callee sees as a BYE) and detects its voicemail greeting as a machine.
#[test]
fn create_call_runs_its_app_on_the_callee_and_detects_a_machine() {
    let dir = scratch("create");
    let mut callee = callee("create-callee", Recording::Voicemail, &dir);
    let (hooks, serve) = serve_for_rest("amd-create");
    hooks.answer(
        "/outbound",
        &json!([{"verb": "pause", "length": 5}, {"verb": "hangup"}]),
    );
    let target = callee.uri("dialer");
    let body = json!({
        "from": "15550001111",
        "to": {"type": "sip", "sipUri": target},
        "call_hook": {"url": hooks.url("/outbound"), "method": "POST"},
        "call_status_hook": hooks.url("/outbound-status"),
        "amd": {"actionHook": "/amd", "timers": {"toneTimeoutMs": 4000}},
        "tag": {"campaign": 7},
    });
    callee.wait_listening();
    let (status, answer) = create_call(&serve, ACCOUNT, common::serve::TOKEN, &body);
    assert_eq!(status, 201, "{answer}\n{}", serve.log_tail());
    let sid = answer["sid"].clone();
    assert!(sid.is_string(), "{answer}");
    callee.wait_log("INVITE", HOOK_WAIT, |l| l.starts_with("INVITE"));
    let log = callee.log();
    assert!(
        log.iter()
            .any(|l| l.starts_with("FROM sip:15550001111@127.0.0.1")),
        "{log:?}"
    );
    assert!(log.contains(&format!("TO {target}")), "{log:?}");
    let app = hooks.wait("/outbound", "call hook", HOOK_WAIT, |h| !h.is_empty());
    common::serve::assert_signed(&app[0]);
    let call = &app[0].json;
    assert_eq!(call["call_sid"], sid);
    assert_eq!(call["direction"], "outbound-api");
    assert_eq!(
        (&call["from"], &call["to"]),
        (&json!("15550001111"), &json!("dialer"))
    );
    assert_eq!(call["call_status"], "in-progress");
    assert_eq!(call["customerData"]["campaign"], 7);
    let machine = amd_hook(&hooks, "amd_machine_detected");
    assert_eq!(
        (&machine["amd_type"], &machine["call_sid"]),
        (&json!("machine"), &sid)
    );
    callee.wait_log("BYE after the app's pause", HOOK_WAIT, |l| l == "BYE");
    serve.finish(&mut [&mut callee]);
    let statuses = hooks.wait("/outbound-status", "completed", HOOK_WAIT, |h| {
        h.iter().any(|h| h.json["call_status"] == "completed")
    });
    assert!(statuses.iter().all(|h| h.json["call_sid"] == sid));
    assert!(
        statuses
            .iter()
            .any(|h| h.json["call_status"] == "in-progress")
    );
    assert!(
        hooks.hits("/status").is_empty(),
        "call_status_hook replaces [app] status_hook"
    );
    serve.wait_idle();
}

/// createCall's refusals name what is wrong, and a callee that is busy reaches the
/// call_status_hook as the call's final status.
#[test]
fn create_call_refuses_bad_requests_and_reports_a_busy_callee() {
    let (hooks, serve) = serve_for_rest("amd-create-busy");
    let mut busy = common::serve::callee("create-busy", "busy", 1, 0, &[]);
    let good = json!({
        "from": "15550001111",
        "to": {"type": "sip", "sipUri": busy.uri("busy")},
        "call_hook": hooks.url("/outbound"),
        "call_status_hook": hooks.url("/outbound-status"),
    });
    let token = common::serve::TOKEN;
    assert_eq!(create_call(&serve, ACCOUNT, "wrong", &good).0, 401);
    let mut no_to = good.clone();
    no_to.as_object_mut().expect("object").remove("to");
    for (body, expect) in [
        (no_to, "missing field `to`"),
        (
            json!({"from": "1", "to": good["to"]}),
            "call_hook is required",
        ),
        (
            json!({"from": "1", "to": {"type": "fax"}, "call_hook": hooks.url("/c")}),
            "to",
        ),
        (
            json!({"from": "1", "to": good["to"], "call_hook": "/relative"}),
            "call_hook: an absolute",
        ),
    ] {
        let (status, answer) = create_call(&serve, ACCOUNT, token, &body);
        assert_eq!(status, 400, "{body}: {answer}");
        let msg = answer["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(expect), "{body}: {msg}");
    }
    assert_eq!(create_call(&serve, "another", token, &good).0, 404);
    busy.wait_listening();
    let (status, answer) = create_call(&serve, ACCOUNT, token, &good);
    assert_eq!(status, 201, "{answer}");
    let statuses = hooks.wait("/outbound-status", "busy", HOOK_WAIT, |h| {
        h.iter().any(|h| h.json["call_status"] == "busy")
    });
    let last = statuses.last().expect("a status");
    assert_eq!(
        (&last.json["call_sid"], &last.json["sip_status"]),
        (&answer["sid"], &json!(486))
    );
    assert!(
        hooks.hits("/outbound").is_empty(),
        "no app for an unanswered call"
    );
    serve.finish(&mut [&mut busy]);
    serve.wait_idle();
}

/// The app of a REST-created call runs as an inbound call's does: its `dial` rings a second
/// party from the answered callee (the callee's call is the parent) and bridges them; when that
/// party hangs up, the app ends and the callee gets its BYE.
#[test]
fn create_call_app_can_dial_onwards() {
    let dir = scratch("create-dial");
    let mut first = callee("create-dial-first", Recording::Human, &dir);
    let mut second = common::serve::callee("create-dial-second", "hangup", 1, 1000, &[]);
    let (hooks, serve) = serve_for_rest("amd-create-dial");
    hooks.answer(
        "/outbound",
        &dial(
            &[sip_target(&second.uri("agent"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let body = json!({
        "from": "15550001111",
        "to": {"type": "sip", "sipUri": first.uri("lead")},
        "call_hook": hooks.url("/outbound"),
    });
    first.wait_listening();
    second.wait_listening();
    let (status, answer) = create_call(&serve, ACCOUNT, common::serve::TOKEN, &body);
    assert_eq!(status, 201, "{answer}");
    let action = hooks.wait("/action", "dial actionHook", HOOK_WAIT, |h| !h.is_empty());
    let action = &action[0].json;
    assert_eq!(action["call_sid"], answer["sid"]);
    assert_eq!(action["direction"], "outbound-api");
    assert_eq!(action["dial_call_status"], "completed");
    first.wait_log("BYE once the app ends", HOOK_WAIT, |l| l == "BYE");
    serve.finish(&mut [&mut first, &mut second]);
    serve.wait_idle();
}
