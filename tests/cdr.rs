//! CDRs end to end: `dialplane serve` (tests/common/serve.rs) with `--cdr-file` and a `[cdr]
//! webhook` on the test's HTTP receiver, SIPp callers and callees (tests/serve/), and every
//! record checked field by field against what the SIP side did: one line per leg (the caller's
//! and each fork's, cancelled and failed ones too), statuses and codes as the status hook says
//! them, parent links, who hung up, times consistent with durations, the codec, the relay's
//! counters. Needs `sipp` (Debian sip-tester).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::free_tcp_port;
use common::serve::{
    CALLED, CALLING, HOOK_WAIT, Serve, callee, caller, config, dial, ringing, serve_with_app_and,
    sip_target,
};

/// A fresh CDR file for one test (none there yet).
fn cdr_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cdr-{name}.jsonl"));
    let _ = std::fs::remove_file(&path);
    path
}

/// Waits (bounded) until `path` holds `n` lines; they parsed. More than `n` fails.
fn wait_lines(serve: &Serve, path: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + HOOK_WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert!(lines.len() <= n, "{text}");
        if lines.len() == n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} CDR lines:\n{text}\n{}",
            lines.len(),
            serve.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The record whose `key` is `value`.
fn record<'a>(lines: &'a [Value], key: &str, value: &str) -> &'a Value {
    lines
        .iter()
        .find(|l| l[key] == value)
        .unwrap_or_else(|| panic!("no record with {key} = {value} in {lines:#?}"))
}

/// Milliseconds since the epoch of `2026-11-27T21:41:44.123Z` (the exact form written).
fn ms(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    assert!(s.len() == 24 && s.ends_with('Z'), "{s}");
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's days_from_civil).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

/// Times in order, durations equal to answer→end, 0 and no answer_time when unanswered.
fn assert_times(r: &Value) {
    let (invite, end) = (ms(&r["invite_time"]), ms(&r["end_time"]));
    assert!(invite <= end, "{r}");
    match r.get("answer_time") {
        Some(a) => {
            let answer = ms(a);
            assert!(invite <= answer && answer <= end, "{r}");
            assert_eq!(r["duration_ms"], end - answer, "{r}");
            assert_eq!(r["duration"], (end - answer) / 1000, "{r}");
        }
        None => assert_eq!((&r["duration"], &r["duration_ms"]), (&json!(0), &json!(0))),
    }
}

/// `dialplane_cdr_<what>_total{sink="…"}` from /metrics.
fn counted(serve: &Serve, what: &str, sink: &str) -> f64 {
    let prefix = format!("dialplane_cdr_{what}_total{{sink=\"{sink}\"}}");
    serve
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn written(serve: &Serve, sink: &str) -> f64 {
    counted(serve, "written", sink)
}

#[test]
fn answered_and_cancelled_forks_and_the_caller_one_line_each_also_to_the_webhook() {
    let path = cdr_path("two-forks");
    let mut bob = callee("cdr-bob", "answer", 1, 300, &[]);
    let mut ring = ringing("cdr-ring", 1);
    let hooks = common::http::Receiver::start();
    let cfg = config(
        "cdr-two-forks",
        &format!("[cdr]\nwebhook = \"{}\"\n", hooks.url("/cdr")),
    );
    let verbs = dial(
        &[sip_target(&bob.uri("bob")), sip_target(&ring.uri("frank"))],
        json!({"answerOnBridge": true}),
    );
    let (app, serve) = serve_with_app_and(
        "cdr-two-forks",
        verbs,
        &[
            "--cdr-file",
            path.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut alice = caller(&serve, "call", 500);
    serve.finish(&mut [&mut alice, &mut bob, &mut ring]);
    let lines = wait_lines(&serve, &path, 3);
    let session = &app.hits("/call")[0].json;

    let a = record(&lines, "direction", "inbound");
    assert_eq!(a["call_sid"], session["call_sid"]);
    assert_eq!(a["call_id"], session["call_id"], "the caller's SIP Call-ID");
    assert!(a.get("parent_call_sid").is_none(), "{a}");
    assert_eq!((&a["from"], &a["to"]), (&json!(CALLING), &json!(CALLED)));
    assert_eq!(
        (&a["call_status"], &a["sip_status"]),
        (&json!("completed"), &json!(200))
    );
    assert_eq!(
        (&a["hangup_by"], &a["hangup_cause"]),
        (&json!("caller"), &json!("bye"))
    );
    assert_eq!(a["codec"], "PCMU");
    assert!(a.get("carrier").is_none(), "127.0.0.1 is no carrier's: {a}");
    assert_times(a);
    assert!(
        a["duration_ms"].as_i64().unwrap() >= 500,
        "held 500 ms: {a}"
    );
    // The caller played RTP (ten telephone-event packets) into the bridge; nobody sent it any.
    let a_in = a["media"]["packets_in"].as_u64().unwrap();
    assert!(a_in > 0, "{a}");
    assert_eq!(a["media"]["packets_out"], 0, "{a}");

    let b = record(&lines, "to", "bob");
    assert_eq!(b["parent_call_sid"], a["call_sid"]);
    assert_eq!(b["direction"], "outbound");
    assert_eq!(b["from"], CALLING);
    assert_ne!(b["call_id"], a["call_id"], "a B leg has its own Call-ID");
    assert_eq!(
        (&b["call_status"], &b["sip_status"]),
        (&json!("completed"), &json!(200))
    );
    assert_eq!(
        (&b["hangup_by"], &b["hangup_cause"]),
        (&json!("caller"), &json!("bye"))
    );
    assert_eq!(b["codec"], "PCMU");
    assert_times(b);
    assert!(
        ms(&b["answer_time"]) >= ms(&b["invite_time"]) + 300,
        "bob answers after 300 ms"
    );
    // With answerOnBridge the caller is answered when bob is: same instant.
    assert_eq!(a["answer_time"], b["answer_time"]);
    let b_out = b["media"]["packets_out"].as_u64().unwrap();
    assert!(b_out > 0 && b_out <= a_in, "relayed from the caller: {b}");
    assert_eq!(b["media"]["packets_in"], 0, "{b}");

    let f = record(&lines, "to", "frank");
    assert_eq!(f["parent_call_sid"], a["call_sid"]);
    assert_eq!(f["direction"], "outbound");
    assert_ne!(f["call_id"], b["call_id"]);
    assert_eq!(
        (&f["call_status"], &f["sip_status"]),
        (&json!("no-answer"), &json!(487))
    );
    assert_eq!(
        (&f["hangup_by"], &f["hangup_cause"]),
        (&json!("system"), &json!("completed-elsewhere"))
    );
    assert!(
        f.get("answer_time").is_none() && f.get("codec").is_none(),
        "{f}"
    );
    assert_times(f);
    assert_eq!(f["end_time"], b["answer_time"], "cancelled as bob answered");
    assert_eq!(f["invite_time"], b["invite_time"], "forked at once");
    // The forks share one media leg: its counters are the winner's, a loser has none.
    assert!(f.get("media").is_none(), "{f}");

    // The webhook gets the same records, signed like every hook.
    let posted = hooks.wait("/cdr", "3 CDRs", HOOK_WAIT, |h| h.len() >= 3);
    for hit in &posted {
        assert!(hit.headers.contains_key("jambonz-signature"), "{hit:?}");
        assert!(lines.contains(&hit.json), "{} not in the file", hit.body);
    }
    assert_eq!(
        (written(&serve, "file"), written(&serve, "webhook")),
        (3.0, 3.0)
    );
    serve.wait_idle();
}

#[test]
fn busy_unanswered_and_unroutable_forks_with_the_webhook_down() {
    let path = cdr_path("failures");
    // Nothing listens there: every POST fails, and the call does not notice.
    let closed = format!("http://127.0.0.1:{}/cdr", free_tcp_port());
    let cfg = config("cdr-failures", &format!("[cdr]\nwebhook = \"{closed}\"\n"));
    let mut bob = callee("cdr-busy", "busy", 1, 0, &[]);
    let mut ring = ringing("cdr-noanswer", 1);
    let verbs = dial(
        &[
            sip_target(&bob.uri("bob")),
            sip_target(&ring.uri("frank")),
            json!({"type": "user", "name": "nobody"}),
        ],
        json!({"answerOnBridge": true, "timeout": 2}),
    );
    let (app, serve) = serve_with_app_and(
        "cdr-failures",
        verbs,
        &[
            "--cdr-file",
            path.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    // The dial's most telling outcome (busy) is what the caller gets when the app ends.
    let mut alice = caller(&serve, "reject", 0);
    serve.finish(&mut [&mut alice, &mut bob, &mut ring]);
    assert!(
        alice.log().iter().any(|l| l == "final 486"),
        "{:?}",
        alice.log()
    );
    let lines = wait_lines(&serve, &path, 4);
    let session = &app.hits("/call")[0].json;

    let a = record(&lines, "direction", "inbound");
    assert_eq!(a["call_sid"], session["call_sid"]);
    assert_eq!(
        (&a["call_status"], &a["sip_status"]),
        (&json!("busy"), &json!(486))
    );
    assert_eq!(
        (&a["hangup_by"], &a["hangup_cause"]),
        (&json!("system"), &json!("app"))
    );
    assert!(
        a.get("answer_time").is_none() && a.get("codec").is_none(),
        "{a}"
    );
    assert_times(a);
    assert_eq!(a["media"]["packets_out"], 0, "{a}");

    let b = record(&lines, "to", "bob");
    assert_eq!(b["parent_call_sid"], a["call_sid"]);
    assert_eq!(
        (&b["call_status"], &b["sip_status"]),
        (&json!("busy"), &json!(486))
    );
    assert_eq!(
        (&b["hangup_by"], &b["hangup_cause"]),
        (&json!("callee"), &json!("rejected"))
    );
    assert!(b.get("answer_time").is_none(), "{b}");
    assert_times(b);
    assert!(
        b.get("media").is_none(),
        "never carried by the forks' leg: {b}"
    );

    let f = record(&lines, "to", "frank");
    assert_eq!(f["parent_call_sid"], a["call_sid"]);
    assert_eq!(
        (&f["call_status"], &f["sip_status"]),
        (&json!("no-answer"), &json!(487))
    );
    assert_eq!(
        (&f["hangup_by"], &f["hangup_cause"]),
        (&json!("system"), &json!("ring-timeout"))
    );
    assert_times(f);
    assert!(
        ms(&f["end_time"]) - ms(&f["invite_time"]) >= 2000,
        "timeout 2 s: {f}"
    );
    assert!(f.get("media").is_none(), "{f}");

    // No contact registered: failed at once, no INVITE, no media leg.
    let u = lines
        .iter()
        .find(|l| l["sip_status"] == 404)
        .unwrap_or_else(|| panic!("no 404 leg in {lines:#?}"));
    assert_eq!(u["parent_call_sid"], a["call_sid"]);
    assert_eq!(u["call_status"], "failed");
    assert_eq!(u["to"], "nobody", "named by the target");
    assert_eq!(
        (&u["hangup_by"], &u["hangup_cause"]),
        (&json!("system"), &json!("unroutable"))
    );
    assert!(u.get("media").is_none(), "{u}");
    assert_times(u);
    assert_eq!(written(&serve, "file"), 4.0);
    let deadline = Instant::now() + HOOK_WAIT;
    while counted(&serve, "failures", "webhook") < 4.0 {
        assert!(Instant::now() < deadline, "{}", serve.metrics());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(written(&serve, "webhook"), 0.0);
    serve.wait_idle();
}

/// A phone number through a carrier that also sends the call: both legs name it; the callee
/// hangs up, and the caller's leg, hung up as the app ends, says so too.
#[test]
fn carrier_legs_and_the_callee_hanging_up() {
    let path = cdr_path("carrier");
    let mut gw = callee("cdr-gw", "hangup", 1, 500, &[]);
    // No OPTIONS probes: the gateway's SIPp takes the one INVITE and nothing else.
    let cfg = config(
        "cdr-carrier",
        &format!(
            "[[carriers]]\nname = \"acme\"\ngateways = [\"sip:127.0.0.1:{}\"]\n\
             inbound = [\"127.0.0.1/32\"]\ncountry_code = \"1\"\nnational_prefix = \"1\"\n\
             probe_interval_s = 0\n",
            gw.port
        ),
    );
    let target = json!({"type": "phone", "number": "+15083331234", "trunk": "acme"});
    let (_app, serve) = serve_with_app_and(
        "cdr-carrier",
        dial(&[target], json!({})),
        &[
            "--cdr-file",
            path.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut gw]);
    let lines = wait_lines(&serve, &path, 2);

    let a = record(&lines, "direction", "inbound");
    assert_eq!(a["carrier"], "acme", "came from its inbound network: {a}");
    assert_eq!(
        (&a["call_status"], &a["sip_status"]),
        (&json!("completed"), &json!(200))
    );
    assert_eq!(
        (&a["hangup_by"], &a["hangup_cause"]),
        (&json!("callee"), &json!("bye"))
    );
    assert_times(a);

    let b = record(&lines, "direction", "outbound");
    assert_eq!(b["parent_call_sid"], a["call_sid"]);
    assert_eq!(b["carrier"], "acme");
    assert_eq!(b["to"], "+15083331234");
    assert_eq!(
        b["from"], "+15083084809",
        "the From user sent: E.164 by the carrier's rules"
    );
    assert_eq!(
        (&b["call_status"], &b["sip_status"]),
        (&json!("completed"), &json!(200))
    );
    assert_eq!(
        (&b["hangup_by"], &b["hangup_cause"]),
        (&json!("callee"), &json!("bye"))
    );
    assert_eq!(b["codec"], "PCMU");
    assert_times(b);
    assert!(
        b["duration_ms"].as_i64().unwrap() >= 500,
        "hung up 500 ms after the ACK: {b}"
    );
    assert!(ms(&a["end_time"]) >= ms(&b["end_time"]), "{a}\n{b}");
    serve.wait_idle();
}

/// SIGTERM with a call up: at the drain deadline both legs are hung up, and their records are
/// in the file when the process has exited.
#[test]
fn drain_deadline_hangs_up_and_the_records_are_written_before_exit() {
    let path = cdr_path("drain");
    let mut bob = callee("cdr-drain", "answer", 1, 0, &[]);
    let (app, mut serve) = serve_with_app_and(
        "cdr-drain",
        dial(&[sip_target(&bob.uri("bob"))], json!({})),
        &["--cdr-file", path.to_str().unwrap(), "--drain-timeout", "1"],
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    app.wait("/status", "both legs answered", HOOK_WAIT, |hits| {
        hits.iter()
            .filter(|h| h.json["call_status"] == "in-progress")
            .count()
            >= 2
    });
    let exit = serve.terminate(HOOK_WAIT);
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}\n{}",
        serve.log_tail()
    );
    serve.finish(&mut [&mut alice, &mut bob]);
    let lines = wait_lines(&serve, &path, 2);
    for leg in ["inbound", "outbound"] {
        let r = record(&lines, "direction", leg);
        assert_eq!(
            (&r["hangup_by"], &r["hangup_cause"]),
            (&json!("system"), &json!("drain"))
        );
        assert_eq!(
            (&r["call_status"], &r["sip_status"]),
            (&json!("completed"), &json!(200))
        );
        assert!(
            r["duration_ms"].as_i64().unwrap() >= 1000,
            "drained after 1 s: {r}"
        );
        assert!(r.get("media").is_some(), "{r}");
        assert_times(r);
    }
}

/// A caller refused before any call began (here 403: its source is not allowed) has its line.
#[test]
fn a_refused_caller_has_its_record() {
    let path = cdr_path("forbidden");
    let cfg = config(
        "cdr-forbidden",
        "[security]\nallow_from = [\"10.0.0.0/8\"]\n",
    );
    let (app, serve) = serve_with_app_and(
        "cdr-forbidden",
        dial(&[sip_target("sip:bob@127.0.0.1:9")], json!({})),
        &[
            "--cdr-file",
            path.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut alice = caller(&serve, "reject", 0);
    serve.finish(&mut [&mut alice]);
    assert!(
        alice.log().iter().any(|l| l == "final 403"),
        "{:?}",
        alice.log()
    );
    let lines = wait_lines(&serve, &path, 1);
    let a = &lines[0];
    assert_eq!(a["direction"], "inbound");
    assert_eq!((&a["from"], &a["to"]), (&json!(CALLING), &json!(CALLED)));
    assert_eq!(
        (&a["call_status"], &a["sip_status"]),
        (&json!("failed"), &json!(403))
    );
    assert_eq!(
        (&a["hangup_by"], &a["hangup_cause"]),
        (&json!("system"), &json!("forbidden"))
    );
    for absent in ["answer_time", "codec", "media", "parent_call_sid"] {
        assert!(a.get(absent).is_none(), "{absent}: {a}");
    }
    assert_times(a);
    assert!(app.hits("/call").is_empty(), "no app for a refused call");
    let metrics = serve.metrics();
    assert_eq!(
        Serve::calls_total(&metrics),
        [("forbidden".to_string(), 1.0)],
        "{metrics}"
    );
}
