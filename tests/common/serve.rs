//! A running `dialplane serve` for the end-to-end tests: the real binary on its own ports with
//! the tests' webhook secret and API token, its log in target/tmp/serve-NAME.log, stopped by
//! SIGTERM (then SIGKILL) when dropped; and what the tests read from it (/metrics, REST).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::http::{Hit, request};
use super::sipp::{Sipp, tail};
use super::{Guard, free_port, port_range};

/// Signs every hook of the tests' servers.
pub const SECRET: &str = "e2e-webhook-secret";
/// The tests' servers' REST bearer token.
pub const TOKEN: &str = "e2e-api-token";

/// A running `dialplane serve`, stopped by SIGTERM (then SIGKILL) when dropped.
pub struct Serve {
    guard: Guard,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub log: PathBuf,
}

impl Serve {
    /// Starts it with `args` (the app) plus its own ports, the secret and the token; returns
    /// once it printed its ready line.
    pub fn start(name: &str, args: &[&str]) -> Serve {
        let sip: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let (port_min, port_max) = port_range();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{name}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_dialplane"))
            .arg("serve")
            .args(["--sip", &sip.to_string(), "--http", &http.to_string()])
            .args(["--interface", "127.0.0.1", "--num-threads", "1"])
            .args(["--port-min", &port_min.to_string()])
            .args(["--port-max", &port_max.to_string()])
            .args(["--webhook-secret", SECRET, "--api-token", TOKEN])
            .args(args)
            .env("RUST_LOG", "info,dialplane=debug,dialplane_signaling=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("dialplane starts");
        // Reads stdout to its end so the child never blocks on a full pipe.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let serve = Serve {
            guard: Guard(child),
            sip,
            http,
            log,
        };
        let expected = format!("ready sip={sip} http={http}");
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => assert_eq!(line, expected, "{}", serve.log_tail()),
            Err(e) => panic!("no ready line ({e}):\n{}", serve.log_tail()),
        }
        serve
    }

    /// Sends it SIGHUP (reload the config file).
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.guard.0.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -HUP failed");
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log_text();
        format!(
            "--- dialplane serve log (last 6000 bytes):\n{}",
            tail(&log, 6000)
        )
    }

    /// Waits for every SIPp to finish successfully; panics with their logs and ours otherwise.
    pub fn finish(&self, sipps: &mut [&mut Sipp]) {
        let failures: Vec<String> = sipps.iter_mut().filter_map(|s| s.finish().err()).collect();
        assert!(
            failures.is_empty(),
            "{}\n{}",
            failures.join("\n"),
            self.log_tail()
        );
    }

    pub fn metrics(&self) -> String {
        let (status, body) = request(self.http, "GET", "/metrics", &[], "");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Waits (bounded) until /metrics shows no call active; the metrics text.
    pub fn wait_idle(&self) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.metrics();
            let active = text
                .lines()
                .find(|l| l.starts_with("dialplane_calls_active"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse::<f64>().ok());
            if active == Some(0.0) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "dialplane_calls_active is {active:?}, not 0, 5 s after the calls:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `dialplane_calls_total` by status, from a /metrics text.
    pub fn calls_total(metrics: &str) -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix("dialplane_calls_total{status=\""))
            .filter_map(|l| {
                let (status, rest) = l.split_once('"')?;
                let count = rest.split_whitespace().last()?.parse().ok()?;
                Some((status.to_string(), count))
            })
            .collect()
    }

    /// POST /v1/updateCall/{sid} with `token` (None: no Authorization header).
    pub fn update_call(&self, sid: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a), ("Content-Type", "application/json")])
            .unwrap_or_else(|| vec![("Content-Type", "application/json")]);
        request(
            self.http,
            "POST",
            &format!("/v1/updateCall/{sid}"),
            &headers,
            body,
        )
    }
}

/// `Jambonz-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "t.body")>` checked over the exact
/// bytes received, with a timestamp within a minute of now.
pub fn assert_signed(hit: &Hit) {
    let header = hit
        .headers
        .get("jambonz-signature")
        .unwrap_or_else(|| panic!("unsigned {} {}: {:?}", hit.method, hit.path, hit.headers));
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value),
            Some(("v1", value)) => v1 = Some(value),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t= in signature"), v1.expect("v1= in signature"));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let t_secs: u64 = t.parse().expect("t is unix seconds");
    assert!(
        t_secs.abs_diff(now) <= 60,
        "signature time {t} vs now {now}"
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.{}", hit.body).as_bytes());
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, expected, "signature of {} {}", hit.path, hit.body);
}
