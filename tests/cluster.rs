//! Two `dialplane serve` instances sharing one Redis (`--redis`) behind Kamailio 5.6's
//! dispatcher (tests/cluster/kamailio.cfg), everything on loopback, as a cluster is deployed.
//! Proven from each instance's `/metrics` and the SIPp peers:
//! - heartbeats: each instance counts both (`dialplane_cluster_instances`), and one killed
//!   drops out once its heartbeat lapses;
//! - stateless nonces: a REGISTER challenged by one instance is accepted by the other;
//! - registrations: the user registered through one instance is dialled (`user` target) by
//!   calls that Kamailio spreads over both (each instance takes some);
//! - the call index: REST `updateCall` sent to the instance not owning the call is forwarded
//!   to its owner, which hangs up;
//! - failover: with one instance SIGKILLed, a new call reaches the survivor within 5 s and
//!   every later one does too;
//! - Redis lost: calls go on, the loss is counted.
//!
//! Needs `redis-server`, `kamailio` and `sipp` (`make deps` installs them).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::http::{Receiver, request};
use common::serve::{
    CALLED, Serve, TOKEN, callee, config, dial, register_split, scenario, sip_target,
};
use common::sipp::{Run, Sipp};
use common::{Guard, free_port, spawn, wait_answer};

const BOB: &str = "bob-secret";

fn work_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// redis-server on a free loopback port, no persistence; killed by PID when dropped.
struct Redis {
    guard: Guard,
    url: String,
}

impl Redis {
    fn start(work: &Path) -> Redis {
        let port = free_port();
        let guard = spawn(
            Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(work),
            &work.join("redis.log"),
        );
        // Up once it answers PING (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = TcpStream::connect(("127.0.0.1", port)).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                s.write_all(b"PING\r\n")?;
                let mut buf = [0u8; 7];
                s.read_exact(&mut buf)?;
                Ok(buf)
            });
            if pong.is_ok_and(|b| &b == b"+PONG\r\n") {
                break;
            }
            assert!(Instant::now() < deadline, "redis-server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Redis {
            guard,
            url: format!("redis://127.0.0.1:{port}/"),
        }
    }
}

/// Kamailio with the dispatcher over `instances`; up once it answers an OPTIONS.
fn kamailio(work: &Path, instances: &[SocketAddr]) -> (Guard, SocketAddr) {
    let port = free_port();
    let list = work.join("dispatcher.list");
    let entries: Vec<String> = instances.iter().map(|a| format!("1 sip:{a}\n")).collect();
    std::fs::write(&list, entries.concat()).expect("dispatcher list");
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/cluster");
    let cfg = std::fs::read_to_string(here.join("kamailio.cfg"))
        .expect("kamailio.cfg")
        .replace("@SIP_PORT@", &port.to_string())
        .replace("@LIST@", &list.display().to_string());
    std::fs::write(work.join("kamailio.cfg"), cfg).expect("write cfg");
    let guard = spawn(
        Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8", "-Y"])
            .arg(work)
            .arg("-f")
            .arg(work.join("kamailio.cfg")),
        &work.join("kamailio.log"),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-up\r\n\
         From: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: up\r\nCSeq: 1 OPTIONS\r\n\
         Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    let answer = wait_answer(addr, options.as_bytes());
    assert!(
        answer.starts_with(b"SIP/2.0 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    (guard, addr)
}

/// The value of one series (`name` or `name{labels}`) in a /metrics text; 0 when absent.
fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0.0)
}

/// Every call an instance finished, whatever its status.
fn calls(serve: &Serve) -> f64 {
    Serve::calls_total(&serve.wait_idle())
        .iter()
        .map(|(_, n)| n)
        .sum()
}

/// Waits (bounded: 10 s) until `series` of `serve` is `want`.
fn wait_value(serve: &Serve, series: &str, want: f64) {
    wait_metric(serve, series, &format!("{want}"), |v| v == want);
}

/// Waits (bounded: 10 s) until `series` of `serve` satisfies `ok` (`what` says how).
fn wait_metric(serve: &Serve, series: &str, what: &str, ok: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = value(&serve.metrics(), series);
        if ok(got) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {got}, not {what}, after 10 s\n{}",
            serve.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` calls through `proxy` to the called number, all at once (`pause_ms`: hold).
fn callers(proxy: SocketAddr, name: &str, scenario_name: &str, n: u32, pause_ms: u64) -> Sipp {
    Sipp::caller(
        name,
        proxy,
        Run {
            scenario: &scenario(scenario_name),
            calls: n,
            pause_ms,
            extra: &["-s", CALLED],
        },
    )
}

/// Both instances' call webhooks answer `verbs`.
fn answer_all(hooks: &Receiver, verbs: &Value) {
    for name in ["a", "b"] {
        hooks.answer(&format!("/{name}/call"), verbs);
    }
}

#[test]
fn two_instances_behind_kamailio_share_state_and_fail_over() {
    let work = work_dir("cluster");
    let mut redis = Redis::start(&work);
    let hooks = Receiver::start();
    let cfg = config(
        "cluster",
        &format!(
            "[registrar]\ndomain = \"127.0.0.1\"\nusers = [{{ name = \"bob\", password = \"{BOB}\" }}]\n"
        ),
    );
    let start = |name: &str| {
        let app = hooks.url(&format!("/{name}/call"));
        let args = ["--app-url", &app, "--redis", &redis.url];
        Serve::start(
            &format!("cluster-{name}"),
            &[&args[..], &["--config", cfg.to_str().expect("utf-8 path")]].concat(),
        )
    };
    let (a, mut b) = (start("a"), start("b"));

    // Heartbeats: each instance sees both.
    for s in [&a, &b] {
        wait_value(s, "dialplane_cluster_instances", 2.0);
    }
    let auth = format!("Bearer {TOKEN}");
    let (status, body) = request(
        a.http,
        "GET",
        "/v1/instances",
        &[("Authorization", &auth)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let listed: Value = serde_json::from_str(&body).expect("instances JSON");
    let rests: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|i| i["rest"].as_str())
        .collect();
    assert_eq!(rests.len(), 2, "{body}");
    for s in [&a, &b] {
        assert!(
            rests.contains(&format!("http://{}", s.http).as_str()),
            "{body}"
        );
    }

    let (_kamailio, proxy) = kamailio(&work, &[a.sip, b.sip]);

    // Stateless nonces: A challenges, B accepts the answer; A learns the binding from Redis.
    let bob_port = register_split(a.sip, b.sip, "bob", BOB);
    let reg = "dialplane_sip_registrations_total";
    assert_eq!(
        value(&a.metrics(), &format!("{reg}{{result=\"challenged\"}}")),
        1.0
    );
    assert_eq!(value(&b.metrics(), &format!("{reg}{{result=\"ok\"}}")), 1.0);
    wait_value(&a, "dialplane_registrar_bindings", 1.0);

    // Calls through Kamailio land on both instances, and each dials bob where he registered.
    const CALLS: u32 = 4;
    answer_all(
        &hooks,
        &dial(&[json!({"type": "user", "name": "bob"})], json!({})),
    );
    let mut bob = Sipp::callee_on(
        "bob",
        bob_port,
        Run {
            scenario: &scenario("answer"),
            calls: CALLS,
            pause_ms: 50,
            extra: &[],
        },
    );
    let mut alice = callers(proxy, "alice", "call", CALLS, 300);
    a.finish(&mut [&mut alice, &mut bob]);
    let (on_a, on_b) = (calls(&a), calls(&b));
    eprintln!("calls through Kamailio: {on_a} on A, {on_b} on B");
    assert!(on_a >= 1.0 && on_b >= 1.0, "not split: A {on_a}, B {on_b}");
    assert_eq!(on_a + on_b, f64::from(CALLS));

    // REST for a call held on one instance, sent to the other: forwarded to the owner.
    let before = |n: &str| hooks.hits(&format!("/{n}/call")).len();
    let (seen_a, seen_b) = (before("a"), before("b"));
    let mut carol = callee("carol", "answer", 1, 50, &[]);
    // Answered on bridge: the caller's 200 means carol answered.
    let bridged = json!({"answerOnBridge": true});
    answer_all(&hooks, &dial(&[sip_target(&carol.uri("carol"))], bridged));
    let mut held = callers(proxy, "held", "wait_bye", 1, 0);
    held.wait_log("200", Duration::from_secs(10), |l| l == "200");
    let (owner, other) = if before("a") > seen_a {
        (&a, &b)
    } else {
        assert!(before("b") > seen_b, "no call webhook");
        (&b, &a)
    };
    let path = if std::ptr::eq(owner, &a) {
        "/a/call"
    } else {
        "/b/call"
    };
    let sid = hooks.hits(path).last().expect("hit").json["call_sid"]
        .as_str()
        .expect("call_sid")
        .to_string();
    let (status, body) = other.update_call(&sid, Some(TOKEN), r#"{"call_status":"completed"}"#);
    assert_eq!(status, 202, "{body}\n{}", other.log_tail());
    other.finish(&mut [&mut held, &mut carol]);
    assert_eq!(
        value(&other.metrics(), "dialplane_rest_forwarded_total"),
        1.0
    );
    assert_eq!(
        value(&owner.metrics(), "dialplane_rest_forwarded_total"),
        0.0
    );
    let (status, body) = other.update_call(
        "no-such-call",
        Some(TOKEN),
        r#"{"call_status":"completed"}"#,
    );
    assert_eq!(status, 404, "{body}");

    // Failover: B killed; the next call reaches A within 5 s, and so do the ones after it.
    let a_before = calls(&a);
    let mut dave = callee("dave", "answer", 4, 50, &[]);
    answer_all(&hooks, &dial(&[sip_target(&dave.uri("dave"))], json!({})));
    b.kill();
    let killed = Instant::now();
    let mut first = callers(proxy, "after-kill", "call", 1, 100);
    first.wait_log("200", Duration::from_secs(5), |l| l == "200");
    eprintln!(
        "first call after the kill answered after {:?}",
        killed.elapsed()
    );
    let mut rest = callers(proxy, "survivors", "call", 3, 100);
    a.finish(&mut [&mut first, &mut rest, &mut dave]);
    assert_eq!(calls(&a), a_before + 4.0);
    // B's heartbeat lapses.
    wait_value(&a, "dialplane_cluster_instances", 1.0);

    // Redis lost: a call still goes through A, the errors are counted.
    redis.guard.0.kill().expect("kill redis");
    let _ = redis.guard.0.wait();
    let mut erin = callee("erin", "answer", 1, 50, &[]);
    answer_all(&hooks, &dial(&[sip_target(&erin.uri("erin"))], json!({})));
    let mut last = callers(a.sip, "no-redis", "call", 1, 100);
    a.finish(&mut [&mut last, &mut erin]);
    assert_eq!(calls(&a), a_before + 5.0);
    wait_value(&a, "dialplane_redis_up", 0.0);
    // The call's index entries could not be written (each gives up after a bounded wait).
    let errors = "dialplane_redis_errors_total{op=\"call_index\"}";
    wait_metric(&a, errors, "at least 1", |v| v >= 1.0);
}

/// Redis unreachable at startup: `serve` stops at once with the reason, naming the URL.
#[test]
fn serve_refuses_to_start_without_its_redis() {
    let work = work_dir("cluster-no-redis");
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let log = work.join("serve.log");
    let mut serve = spawn(
        Command::new(env!("CARGO_BIN_EXE_dialplane"))
            .arg("serve")
            .args(["--sip", &format!("127.0.0.1:{}", free_port())])
            .args(["--http", &format!("127.0.0.1:{}", free_port())])
            .args(["--app-url", "http://127.0.0.1:9/call", "--redis", &url])
            .args(["--interface", "127.0.0.1", "--num-threads", "1"]),
        &log,
    );
    let status = serve
        .wait_exit(Duration::from_secs(10))
        .expect("serve still running 10 s after Redis refused it");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains(&format!("cannot reach Redis at {url}")),
        "{text}"
    );
}
