//! Carriers with several gateways, end to end: `dialplane serve` dials a phone number through a
//! carrier whose gateways are SIPp processes (scenarios in `tests/failover/`) that refuse with
//! 503 or 408, a port nobody listens on (ICMP port unreachable), and working ones. The caller is
//! SIPp's `tests/serve/call.xml`, which fails on any final response but a 200: it passing proves
//! the caller never saw a gateway's failure. Each gateway logs the INVITEs (with their
//! Request-URI) and OPTIONS it got, which the tests count. Needs `sipp`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::free_port;
use common::http::Receiver;
use common::serve::{CALLED, CALLING, Serve};
use common::sipp::{Run, Sipp};

fn scenario(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{path}.xml"))
}

/// What a gateway does.
#[derive(Clone, Copy)]
enum Gw {
    /// Answers OPTIONS and INVITEs (`tests/failover/answer.xml`).
    Answer,
    /// Refuses INVITEs with the first code, answers OPTIONS with the second
    /// (`tests/failover/refuse.xml`).
    Refuse(u16, u16),
    /// Never answers an INVITE (`tests/failover/silent.xml`).
    Silent,
}

/// A gateway SIPp on a free port; it takes many "calls", since every OPTIONS is one.
fn gateway(name: &str, what: Gw) -> Sipp {
    gateway_on(name, free_port(), what)
}

fn gateway_on(name: &str, port: u16, what: Gw) -> Sipp {
    let path = match what {
        Gw::Answer => scenario("failover/answer"),
        Gw::Silent => scenario("failover/silent"),
        Gw::Refuse(invite, options) => {
            let text = std::fs::read_to_string(scenario("failover/refuse"))
                .expect("refuse.xml")
                .replace("INVITE_STATUS", &invite.to_string())
                .replace("OPTIONS_STATUS", &options.to_string());
            let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("failover-refuse-{invite}-{options}.xml"));
            std::fs::write(&path, text).expect("write scenario");
            path
        }
    };
    let sipp = Sipp::callee_on(
        name,
        port,
        Run {
            scenario: &path,
            calls: 1000,
            pause_ms: 50,
            extra: &[],
        },
    );
    // Listening before dialplane's first probe.
    sipp.wait_listening();
    sipp
}

/// One call from SIPp, which must end with 200 and its BYE. It is answered at once (no
/// answerOnBridge) and hangs up 1.5 s later: the dial must have reached a gateway by then,
/// which failing over at Timer B (32 s) instead of on the ICMP error would not.
fn call(serve: &Serve) {
    let mut alice = Sipp::caller(
        "caller",
        serve.sip,
        Run {
            scenario: &scenario("serve/call"),
            calls: 1,
            pause_ms: 1500,
            extra: &["-s", CALLED],
        },
    );
    serve.finish(&mut [&mut alice]);
}

/// The Request-URIs of the INVITEs a gateway got.
fn invites(gw: &Sipp) -> Vec<String> {
    gw.log()
        .iter()
        .filter_map(|l| l.strip_prefix("INVITE "))
        .map(str::to_string)
        .collect()
}

fn probes(gw: &Sipp) -> usize {
    gw.log().iter().filter(|l| *l == "OPTIONS").count()
}

/// A carrier `acme` with these gateways (TOML array items) and further keys.
fn carrier(name: &str, gateways: &[String], keys: &str) -> PathBuf {
    config(
        name,
        &format!(
            "[[carriers]]\nname = \"acme\"\ncountry_code = \"1\"\nnational_prefix = \"1\"\n\
             gateways = [{}]\n{keys}\n",
            gateways.join(", ")
        ),
    )
}

fn uri(port: u16) -> String {
    format!("sip:127.0.0.1:{port}")
}

/// The app: dial the national number 1 617 555 0100 through `acme`.
fn app() -> Value {
    json!([{"verb": "dial", "actionHook": "/action",
            "target": [{"type": "phone", "number": "16175550100", "trunk": "acme"}]}])
}

/// A config file for one test.
fn config(name: &str, toml: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.toml"));
    std::fs::write(&path, toml).expect("write config");
    path
}

/// `dialplane serve` with config file `cfg`, its call webhook answering with [`app`].
fn start(name: &str, cfg: &std::path::Path) -> (Receiver, Serve) {
    let hooks = Receiver::start();
    hooks.answer("/call", &app());
    let call = hooks.url("/call");
    let serve = Serve::start(
        name,
        &["--app-url", &call, "--config", cfg.to_str().unwrap()],
    );
    (hooks, serve)
}

/// `dialplane_gateway_up` of the gateway on `port`, from /metrics.
fn gateway_up(serve: &Serve, port: u16) -> Option<f64> {
    let label = format!("gateway=\"{}\"", uri(port));
    serve
        .metrics()
        .lines()
        .find(|l| l.starts_with("dialplane_gateway_up{") && l.contains(&label))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
}

/// Waits (bounded) until the gateway on `port` is `up` (1) or down (0).
fn wait_gateway(serve: &Serve, port: u16, up: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while gateway_up(serve, port) != Some(up) {
        assert!(
            Instant::now() < deadline,
            "gateway {port} not at {up} within 10 s: {:?}\n{}",
            gateway_up(serve, port),
            serve.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_call_fails_over_past_503_408_and_a_closed_port() {
    let g503 = gateway("g503", Gw::Refuse(503, 200));
    let g408 = gateway("g408", Gw::Refuse(408, 200));
    let closed = free_port();
    let good = gateway("good", Gw::Answer);
    // No probes: the closed port must be found by the call itself.
    let cfg = carrier(
        "failover-order",
        &[
            format!("\"{}\"", uri(g503.port)),
            format!("{{ uri = \"{}\", weight = 1 }}", uri(g408.port)),
            format!("\"{}\"", uri(closed)),
            format!("\"{}\"", uri(good.port)),
        ],
        "probe_interval_s = 0\ntech_prefix = \"1234#\"\ncallerid_prefix = \"99\"",
    );
    let (hooks, serve) = start("failover-order", &cfg);
    call(&serve);
    // Each gateway once, in order, the tech prefix (its # escaped) before the E.164 number.
    let expected = |port: u16| vec![format!("sip:1234%23+16175550100@127.0.0.1:{port}")];
    assert_eq!(invites(&g503), expected(g503.port), "{}", g503.report());
    assert_eq!(invites(&g408), expected(g408.port), "{}", g408.report());
    assert_eq!(invites(&good), expected(good.port), "{}", good.report());
    // The caller id in E.164 by the carrier's rules, after its prefix.
    assert!(
        good.log()
            .contains(&format!("FROM sip:99+1{}", &CALLING[1..])),
        "{:?}",
        good.log()
    );
    assert_eq!(probes(&g503) + probes(&g408) + probes(&good), 0);
    let action = &hooks.wait("/action", "actionHook", Duration::from_secs(10), |h| {
        !h.is_empty()
    })[0]
        .json;
    assert_eq!(action["dial_status"], "completed", "{action}");
    assert_eq!(action["dial_sip_status"], 200, "{action}");
    // Without probes nothing leaves rotation.
    assert_eq!(gateway_up(&serve, g503.port), Some(1.0));
    serve.wait_idle();
}

#[test]
fn a_gateway_silent_past_progress_timeout_is_left() {
    let silent = gateway("silent", Gw::Silent);
    let good = gateway("awake", Gw::Answer);
    let cfg = carrier(
        "failover-silent",
        &[
            format!("\"{}\"", uri(silent.port)),
            format!("\"{}\"", uri(good.port)),
        ],
        "probe_interval_s = 0\nprogress_timeout_ms = 300",
    );
    let (hooks, serve) = start("failover-silent", &cfg);
    call(&serve);
    assert_eq!(invites(&silent).len(), 1, "{}", silent.report());
    assert_eq!(invites(&good).len(), 1, "{}", good.report());
    let action = &hooks.wait("/action", "actionHook", Duration::from_secs(10), |h| {
        !h.is_empty()
    })[0]
        .json;
    assert_eq!(action["dial_status"], "completed", "{action}");
    serve.wait_idle();
}

#[test]
fn a_gateway_failing_a_call_leaves_rotation() {
    // Probed once at start (and answers), then not again during the test.
    let flaky = gateway("flaky", Gw::Refuse(502, 200));
    let good = gateway("steady", Gw::Answer);
    let cfg = carrier(
        "failover-call",
        &[
            format!("\"{}\"", uri(flaky.port)),
            format!("\"{}\"", uri(good.port)),
        ],
        "probe_interval_s = 600",
    );
    let (_hooks, serve) = start("failover-call", &cfg);
    flaky.wait_log("a probe", Duration::from_secs(10), |l| l == "OPTIONS");
    call(&serve);
    assert_eq!(invites(&flaky).len(), 1, "{}", flaky.report());
    wait_gateway(&serve, flaky.port, 0.0);
    call(&serve);
    // The second call went straight to the good gateway.
    assert_eq!(invites(&flaky).len(), 1, "{}", flaky.report());
    assert_eq!(invites(&good).len(), 2, "{}", good.report());
    serve.wait_idle();
}

#[test]
fn probes_take_a_gateway_out_of_rotation_and_back() {
    let port = free_port();
    let sick = gateway_on("sick", port, Gw::Refuse(500, 503));
    let good = gateway("healthy", Gw::Answer);
    let cfg = carrier(
        "failover-probe",
        &[
            format!("\"{}\"", uri(port)),
            format!("\"{}\"", uri(good.port)),
        ],
        "probe_interval_s = 1",
    );
    let (_hooks, serve) = start("failover-probe", &cfg);
    wait_gateway(&serve, port, 0.0);
    assert!(probes(&sick) >= 1, "{}", sick.report());
    call(&serve);
    assert_eq!(invites(&sick), Vec::<String>::new(), "{}", sick.report());
    assert_eq!(invites(&good).len(), 1, "{}", good.report());
    // The same address comes back healthy: the next probe puts it back first in line.
    drop(sick);
    let cured = gateway_on("cured", port, Gw::Answer);
    wait_gateway(&serve, port, 1.0);
    assert!(probes(&cured) >= 1, "{}", cured.report());
    call(&serve);
    assert_eq!(invites(&cured).len(), 1, "{}", cured.report());
    assert_eq!(invites(&good).len(), 1, "{}", good.report());
    serve.wait_idle();
}
