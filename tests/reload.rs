//! SIGHUP end to end: `dialplane serve` started with `--config FILE`, the file rewritten, the
//! process sent SIGHUP, and the next calls checked on the SIPp side. A route names the call
//! webhook of a called number; the webhook receiver answers each route's path with a dial to
//! its own SIPp callee, so where a call rings shows which configuration it got. Each reload is
//! awaited on `/metrics` (`dialplane_config_reloads_total{result}`) before the next call.
//! Needs `sipp` (Debian sip-tester).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::http::Receiver;
use common::serve::{self, CALLED, HOOK_WAIT, Serve, assert_signed, scenario};
use common::sipp::{Run, Sipp};

const WAIT: Duration = HOOK_WAIT;

/// A callee answering `calls` calls after 20 ms of ringing.
fn callee(name: &str, calls: u32) -> Sipp {
    serve::callee(name, "answer", calls, 20, &[])
}

/// `calls` calls to [`CALLED`], `rate` started per second, each held `hold_ms`.
fn callers(serve: &Serve, calls: u32, rate: u32, hold_ms: u64) -> Sipp {
    caller_running(serve, "call", calls, rate, hold_ms)
}

/// As [`callers`], running scenario `name`.
fn caller_running(serve: &Serve, name: &str, calls: u32, rate: u32, hold_ms: u64) -> Sipp {
    Sipp::caller_at_rate(
        "caller",
        serve.sip,
        rate,
        Run {
            scenario: &scenario(name),
            calls,
            pause_ms: hold_ms,
            extra: &["-s", CALLED],
        },
    )
}

fn dial_to(uri: &str) -> Value {
    json!([{"verb": "dial", "target": [{"type": "sip", "sipUri": uri}]}])
}

/// A config routing [`CALLED`] to `app_url`, plus `more`.
fn routed(app_url: &str, more: &str) -> String {
    format!("[[routes]]\nto = \"{CALLED}\"\napp_url = \"{app_url}\"\n{more}")
}

/// Replaces the file in one step (rename), so a reload never reads half of it.
fn write_config(path: &Path, toml: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, toml).expect("write config");
    std::fs::rename(&tmp, path).expect("rename config");
}

fn config_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("reload-{name}.toml"))
}

/// `dialplane_config_reloads_total{result=...}` (0 before the first).
fn reloads(serve: &Serve, result: &str) -> u64 {
    let prefix = format!("dialplane_config_reloads_total{{result=\"{result}\"}}");
    serve
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// SIGHUP, then waits (bounded) until the reload of `result` is counted.
fn hangup_and_wait(serve: &Serve, result: &str) {
    let before = reloads(serve, result);
    serve.hangup();
    let deadline = Instant::now() + WAIT;
    while reloads(serve, result) <= before {
        assert!(
            Instant::now() < deadline,
            "no {result} reload counted\n{}",
            serve.log_tail()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The INVITE lines a callee logged.
fn invites(sipp: &Sipp) -> Vec<String> {
    sipp.log()
        .into_iter()
        .filter(|l| l.starts_with("INVITE "))
        .collect()
}

/// A route change reaches the next call; a bad file is rejected with its key named, and calls
/// keep going where the last good file sent them; the flags still win over the file; a change
/// of a socket section is reported as needing a restart and ignored.
#[test]
fn sighup_swaps_routes_and_rejects_a_bad_file() {
    let mut a = callee("a", 1);
    let mut b = callee("b", 2);
    let hooks = Receiver::start();
    hooks.answer("/a", &dial_to(&a.uri("a")));
    hooks.answer("/b", &dial_to(&b.uri("b")));
    hooks.answer("/default", &json!([{"verb": "sip:decline", "status": 603}]));
    let path = config_path("swap");
    write_config(&path, &routed(&hooks.url("/a"), ""));
    let serve = Serve::start(
        "reload-swap",
        &[
            "--app-url",
            &hooks.url("/default"),
            "--config",
            path.to_str().unwrap(),
        ],
    );

    let mut call = callers(&serve, 1, 1, 100);
    serve.finish(&mut [&mut call, &mut a]);
    assert_eq!(invites(&a).len(), 1, "{:?}", a.log());

    // To B now; the file's secret and listener size lose to the flag and need a restart.
    write_config(
        &path,
        &routed(
            &hooks.url("/b"),
            "[app]\nwebhook_secret = \"file-secret\"\n[sip]\nmax_message_size = 4096\n",
        ),
    );
    hangup_and_wait(&serve, "ok");
    let log = serve.log_text();
    assert!(
        log.contains("config reloaded") && log.contains("routes: 0 added, 0 removed, 1 changed"),
        "{}",
        serve.log_tail()
    );
    assert!(
        log.contains("[sip] changed; that needs a restart"),
        "{}",
        serve.log_tail()
    );
    let mut call = callers(&serve, 1, 1, 100);
    call.finish()
        .unwrap_or_else(|e| panic!("{e}\n{}", serve.log_tail()));
    b.wait_log("INVITE", WAIT, |l| l.starts_with("INVITE "));
    // Signed with --webhook-secret, not the file's.
    hooks
        .wait("/b", "B's webhook", WAIT, |h| !h.is_empty())
        .iter()
        .for_each(assert_signed);

    // A bad file: rejected, the key named; calls still go to B.
    write_config(
        &path,
        &routed(
            &hooks.url("/a"),
            "[security]\nallow_from = [\"10.0.0.0/33\"]\n",
        ),
    );
    hangup_and_wait(&serve, "rejected");
    let log = serve.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap_or_else(|| panic!("no rejection logged\n{}", serve.log_tail()));
    assert!(
        line.contains("allow_from") && line.contains("10.0.0.0/33"),
        "{line}"
    );
    let mut call = callers(&serve, 1, 1, 100);
    serve.finish(&mut [&mut call, &mut b]);
    assert_eq!(invites(&a).len(), 1, "A got no call after the reload");
    assert_eq!(invites(&b).len(), 2, "{:?}", b.log());
    assert_eq!(hooks.hits("/a").len(), 1);
    assert!(hooks.hits("/default").is_empty());
    assert_eq!((reloads(&serve, "ok"), reloads(&serve, "rejected")), (1, 1));
    serve.wait_idle();
}

/// `[security] allow_from` on SIGHUP: a source outside it gets 403; once the reloaded file lets
/// it in, its next call rings the callee.
#[test]
fn sighup_changes_who_may_call() {
    let mut a = callee("a", 1);
    let hooks = Receiver::start();
    hooks.answer("/a", &dial_to(&a.uri("a")));
    let path = config_path("access");
    write_config(&path, "[security]\nallow_from = [\"192.0.2.0/24\"]\n");
    let serve = Serve::start(
        "reload-access",
        &[
            "--app-url",
            &hooks.url("/a"),
            "--config",
            path.to_str().unwrap(),
        ],
    );
    let mut refused = caller_running(&serve, "reject", 1, 1, 0);
    refused
        .finish()
        .unwrap_or_else(|e| panic!("{e}\n{}", serve.log_tail()));
    assert!(
        refused.log().iter().any(|l| l == "final 403"),
        "{:?}",
        refused.log()
    );
    write_config(&path, "[security]\nallow_from = [\"127.0.0.0/8\"]\n");
    hangup_and_wait(&serve, "ok");
    let mut call = callers(&serve, 1, 1, 100);
    serve.finish(&mut [&mut call, &mut a]);
    assert_eq!(invites(&a).len(), 1, "{:?}", a.log());
    assert_eq!(hooks.hits("/a").len(), 1, "the refused call asked no app");
}

/// `dialplane_calls_active` now.
fn active_calls(serve: &Serve) -> f64 {
    serve
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix("dialplane_calls_active "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A call in progress keeps the configuration it started with: a call pausing before it dials
/// a phone number still reaches the carrier gateway of the old file after a SIGHUP moved the
/// carrier to another gateway, while the next call reaches the new one.
#[test]
fn a_call_in_progress_keeps_its_config() {
    let mut a = callee("a", 1);
    let mut b = callee("b", 1);
    let hooks = Receiver::start();
    hooks.answer(
        "/call",
        &json!([
            {"verb": "pause", "length": 4},
            {"verb": "dial", "target": [{"type": "phone", "number": "+15550001111"}]}
        ]),
    );
    // No OPTIONS probes: the callees take one INVITE each and nothing else.
    let carrier = |port: u16| {
        format!(
            "[[carriers]]\nname = \"trunk\"\ngateways = [\"sip:127.0.0.1:{port}\"]\n\
             probe_interval_s = 0\n"
        )
    };
    let path = config_path("in-progress");
    write_config(&path, &carrier(a.port));
    let serve = Serve::start(
        "reload-in-progress",
        &[
            "--app-url",
            &hooks.url("/call"),
            "--config",
            path.to_str().unwrap(),
        ],
    );
    // The pause answers the call: the callers hold past it and the dial.
    let mut first = callers(&serve, 1, 1, 6000);
    let deadline = Instant::now() + WAIT;
    while active_calls(&serve) < 1.0 {
        assert!(Instant::now() < deadline, "{}", serve.log_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    write_config(&path, &carrier(b.port));
    hangup_and_wait(&serve, "ok");
    assert!(
        a.log().is_empty() && b.log().is_empty(),
        "the first call dialled before the reload: the pause was too short for this machine"
    );
    let mut second = callers(&serve, 1, 1, 6000);
    serve.finish(&mut [&mut first, &mut second, &mut a, &mut b]);
    for callee in [&a, &b] {
        let calls = invites(callee);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(
            calls[0].starts_with("INVITE sip:+15550001111@"),
            "{calls:?}"
        );
    }
}

/// Sends `n` OPTIONS at once from one socket; the status of each answer.
fn options_burst(serve: &Serve, n: usize) -> Vec<u16> {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let local = sock.local_addr().unwrap();
    for i in 0..n {
        let request = format!(
            "OPTIONS sip:{} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-opt{i}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@{local}>;tag=p{i}\r\nTo: <sip:{}>\r\n\
             Call-ID: opt-{i}-{}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            serve.sip,
            serve.sip,
            local.port()
        );
        sock.send_to(request.as_bytes(), serve.sip).unwrap();
    }
    let mut buf = [0u8; 4096];
    (0..n)
        .map(|_| {
            let (len, _) = sock.recv_from(&mut buf).expect("an answer to each OPTIONS");
            let text = String::from_utf8_lossy(&buf[..len]);
            text.split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// `[sip] rate_limit` on SIGHUP: unlimited at first, then a burst beyond the new limit is
/// answered 503 (the listeners stay as they are).
#[test]
fn sighup_changes_the_rate_limit() {
    let path = config_path("rate");
    write_config(&path, "[sip]\nrate_limit = 0\n");
    let serve = Serve::start(
        "reload-rate",
        &[
            "--app-url",
            "http://127.0.0.1:9/call",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    let before = options_burst(&serve, 20);
    assert!(before.iter().all(|&s| s == 200), "{before:?}");
    write_config(&path, "[sip]\nrate_limit = 2\n");
    hangup_and_wait(&serve, "ok");
    // Two tokens a second for one source, and as many 503s: a burst of 4 cannot all pass,
    // and is not far enough over the limit to be dropped unanswered.
    let after = options_burst(&serve, 4);
    assert!(after.contains(&503), "{after:?}");
    assert!(after.iter().all(|&s| s == 200 || s == 503), "{after:?}");
    assert!(
        serve.log_text().contains("sip.rate_limit: 2 (was 0)"),
        "{}",
        serve.log_tail()
    );
}

/// Twenty calls a second for four seconds while the route flips between two targets on
/// SIGHUP: every call completes (SIPp exits 0 only then), both targets get calls, and no
/// reload is rejected.
#[test]
fn reload_under_load_fails_no_call() {
    const CALLS: u32 = 80;
    let mut target = callee("target", CALLS);
    let hooks = Receiver::start();
    // One callee, two request URIs: its log tells which route each call took.
    hooks.answer("/a", &dial_to(&target.uri("a")));
    hooks.answer("/b", &dial_to(&target.uri("b")));
    let path = config_path("load");
    write_config(&path, &routed(&hooks.url("/a"), ""));
    let serve = Serve::start(
        "reload-load",
        &[
            "--app-url",
            &hooks.url("/a"),
            "--config",
            path.to_str().unwrap(),
        ],
    );
    let mut load = callers(&serve, CALLS, 20, 500);
    // Reloads until the load ends: a route flip each time, a carrier and a user coming and
    // going, so each swaps more than one section.
    let mut sent = 0;
    while invites(&target).len() < CALLS as usize && sent < 40 {
        std::thread::sleep(Duration::from_millis(150));
        let (url, more) = match sent % 2 {
            0 => (
                hooks.url("/b"),
                "[[carriers]]\nname = \"acme\"\ngateways = [\"sip:127.0.0.1:9\"]\n\
                 [registrar]\ndomain = \"sip.example.com\"\n\
                 users = [{ name = \"alice\", password = \"pw\" }]\n",
            ),
            _ => (hooks.url("/a"), ""),
        };
        write_config(&path, &routed(&url, more));
        hangup_and_wait(&serve, "ok");
        sent += 1;
    }
    serve.finish(&mut [&mut load, &mut target]);
    let calls = invites(&target);
    assert_eq!(calls.len(), CALLS as usize);
    let to = |user: &str| {
        calls
            .iter()
            .filter(|l| l.starts_with(&format!("INVITE sip:{user}@")))
            .count()
    };
    assert!(to("a") > 0 && to("b") > 0, "a {} b {}", to("a"), to("b"));
    assert_eq!(reloads(&serve, "ok"), sent);
    assert_eq!(reloads(&serve, "rejected"), 0);
    let metrics = serve.wait_idle();
    let completed: f64 = Serve::calls_total(&metrics)
        .iter()
        .filter(|(s, _)| s == "completed")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        completed,
        f64::from(CALLS),
        "{:?}",
        Serve::calls_total(&metrics)
    );
}
