//! `dialplane check-config FILE` end to end: the real binary on files written here. A good file
//! prints what `serve` would run with (exit 0, no secret in it); a bad one prints each problem,
//! naming its key (and its line when the TOML parser knows it), and exits 2.

use std::path::PathBuf;
use std::process::{Command, Output};

fn check(name: &str, toml: &str, flags: &[&str]) -> Output {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-config");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    Command::new(env!("CARGO_BIN_EXE_dialplane"))
        .arg("check-config")
        .arg(&path)
        .args(flags)
        .output()
        .expect("dialplane runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A bad file: exit 2, nothing on stdout, and each of `expected` (each a list of fragments of
/// one line) on some stderr line.
fn assert_rejected(out: &Output, expected: &[&[&str]]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    for fragments in expected {
        assert!(
            err.lines().any(|l| fragments.iter().all(|f| l.contains(f))),
            "no line with {fragments:?} in:\n{err}"
        );
    }
}

const GOOD: &str = r#"
[sip]
listen = ["udp:127.0.0.1:5070", "tcp:127.0.0.1:5070"]
rate_limit = 200
[media]
port_min = 30000
port_max = 30999
num_threads = 2
[http]
listen = "127.0.0.1:3300"
api_token = "TOKEN-SECRET"
[app]
url = "http://127.0.0.1:8080/call"
webhook_secret = "HOOK-SECRET"
status_hook = "/status"
[[carriers]]
name = "acme"
gateways = ["sip:192.0.2.10:5060", "sip:192.0.2.11:5060"]
username = "acme-user"
password = "CARRIER-SECRET"
inbound = ["198.51.100.0/24"]
[[routes]]
to = "+15083084809"
app_url = "http://127.0.0.1:8080/sales"
[registrar]
domain = "sip.example.com"
users = [{ name = "alice", password = "ALICE-SECRET" }, { name = "bob", password = "BOB-SECRET" }]
nonce_secret = "NONCE-SECRET-0123456789"
[security]
allow_from = ["127.0.0.0/8", "10.1.0.0/16"]
"#;

#[test]
fn a_good_file_prints_the_effective_config_without_secrets() {
    let out = check("good", GOOD, &[]);
    let summary = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!summary.contains("SECRET"), "{summary}");
    for shown in [
        "ok; serve would run with:",
        "sip: udp:127.0.0.1:5070, tcp:127.0.0.1:5070",
        "http: 127.0.0.1:3300",
        "ports: 30000-30999",
        "threads: 2",
        "carriers: 1",
        "gateways: sip:192.0.2.10:5060, sip:192.0.2.11:5060",
        "inbound: 198.51.100.0/24",
        "username: acme-user, password: <redacted>",
        "routes: 1",
        "+15083084809 -> http://127.0.0.1:8080/sales",
        "users: 2 (alice, bob)",
        "allow_from: 127.0.0.0/8, 10.1.0.0/16",
        "sip.rate_limit: 200/s per source",
        "app.url: http://127.0.0.1:8080/call",
        "app.status_hook: /status",
        "app.webhook_secret: <redacted>",
        "http.api_token: <redacted>",
        "nonce_secret: <redacted>",
    ] {
        assert!(summary.contains(shown), "{shown:?} not in:\n{summary}");
    }
}

#[test]
fn serve_flags_apply_over_the_file_as_in_serve() {
    // Without an app the file alone would not start serve; --app-url supplies it, --sip wins.
    let out = check("flags", "", &["--app-url", "http://127.0.0.1:9/call"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("app.url: http://127.0.0.1:9/call"));
    let out = check("flags", "", &[]);
    assert_rejected(&out, &[&["app.url", "no control app"]]);
    let out = check(
        "flags-sip",
        GOOD,
        &["--sip", "127.0.0.1:5999", "--webhook-secret", "FLAG-SECRET"],
    );
    let summary = text(&out.stdout);
    assert!(summary.contains("sip: udp:127.0.0.1:5999, tcp:127.0.0.1:5999"));
    assert!(!summary.contains("SECRET"), "{summary}");
}

#[test]
fn unknown_key_is_named_with_its_line() {
    let out = check(
        "unknown",
        "[app]\nurl = \"http://127.0.0.1:8080/call\"\n[[carriers]]\nname = \"a\"\ngatways = []\n",
        &[],
    );
    assert_rejected(&out, &[&["unknown field `gatways`", "line 5"]]);
}

#[test]
fn bad_cidr_is_named_with_its_line() {
    let out = check(
        "cidr",
        "[app]\nurl = \"http://127.0.0.1:8080/call\"\n\n[security]\nallow_from = [\"10.0.0.0/33\"]\n",
        &[],
    );
    assert_rejected(
        &out,
        &[&["line 5", "allow_from", "10.0.0.0/33", "not a network"]],
    );
}

#[test]
fn bad_gateway_uri_is_named_with_its_line() {
    let out = check(
        "uri",
        "[app]\nurl = \"http://127.0.0.1:8080/call\"\n[[carriers]]\nname = \"a\"\n\
         gateways = [\"http://gw.example.com\"]\n",
        &[],
    );
    assert_rejected(
        &out,
        &[&["line 5", "gateways", "must be a sip: or sips: URI"]],
    );
}

#[test]
fn duplicate_route_and_other_problems_are_each_reported() {
    let out = check(
        "duplicate",
        "[app]\nurl = \"/call\"\n[media]\nport_min = 0\n\
         [[routes]]\nto = \"+1555*\"\napp_url = \"http://127.0.0.1:8080/a\"\n\
         [[routes]]\nto = \"+1555*\"\napp_url = \"http://127.0.0.1:8080/b\"\n",
        &[],
    );
    assert_rejected(
        &out,
        &[
            &["routes.to", "route 2", "listed twice"],
            &["media.port_min"],
            &["app.url", "absolute"],
            &["3 problem(s)"],
        ],
    );
}

#[test]
fn missing_file_and_bad_app_file() {
    let out = Command::new(env!("CARGO_BIN_EXE_dialplane"))
        .args(["check-config", "/nonexistent/dialplane.toml"])
        .output()
        .unwrap();
    assert_rejected(&out, &[&["cannot read config /nonexistent/dialplane.toml"]]);
    let out = check("app-file", "[app]\nfile = \"/nonexistent/app.json\"\n", &[]);
    assert_rejected(&out, &[&["loading the app", "/nonexistent/app.json"]]);
}
