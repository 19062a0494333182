//! A running `dialplane serve` for the end-to-end suites (tests/serve.rs, tests/cdr.rs,
//! tests/reload.rs): the real binary on its own loopback ports with the tests' webhook secret
//! and API token, its log in target/tmp/serve-NAME.log, stopped by SIGTERM (then SIGKILL) when
//! dropped; what the tests read from it (/metrics, REST); SIPp callers and callees running the
//! scenarios of `tests/serve/`, and the helpers that build dial verbs.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use signaling::auth::{Algorithm, Challenge, ClientRequest, respond};

use super::http::{Hit, Receiver, request};
use super::sipp::{Run, Sipp, tail};
use super::{Guard, free_port, port_range};

/// Signs every hook of the tests' servers.
pub const SECRET: &str = "e2e-webhook-secret";
/// The tests' servers' REST bearer token.
pub const TOKEN: &str = "e2e-api-token";
/// What the callers dial (the To user) and who they are (From user and display name).
pub const CALLED: &str = "16173331212";
pub const CALLING: &str = "15083084809";
/// The CANCEL of a fork that lost to another's 200.
pub const ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";
/// How long a hook may take to arrive after the SIP exchange that causes it.
pub const HOOK_WAIT: Duration = Duration::from_secs(10);

pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/serve/{name}.xml"))
}

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
        Serve::start_logging(name, args, "info,dialplane=debug,dialplane_signaling=debug")
    }

    /// As [`Serve::start`], logging as `rust_log` (RUST_LOG) says.
    pub fn start_logging(name: &str, args: &[&str], rust_log: &str) -> Serve {
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
            .env("RUST_LOG", rust_log)
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

    /// SIGKILL by PID, as a crash: no drain, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.guard.0.kill();
        let _ = self.guard.0.wait();
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM (a drain); the exit status, or None if it still runs after `limit`.
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.guard.0.id().to_string();
        let sent = Command::new("kill").arg(&pid).status().expect("kill");
        assert!(sent.success(), "kill {pid}");
        self.guard.wait_exit(limit)
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

    /// One series of /metrics, e.g. `name{label="v"}` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
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

/// The receiver answering the call webhook (`/call`) with `verbs`, and a `dialplane serve`
/// using it, with call status hooks to `/status`.
pub fn serve_with_app(name: &str, verbs: Value) -> (Receiver, Serve) {
    serve_with_app_and(name, verbs, &[])
}

/// As [`serve_with_app`], with further arguments (`--config FILE`).
pub fn serve_with_app_and(name: &str, verbs: Value, extra: &[&str]) -> (Receiver, Serve) {
    let hooks = Receiver::start();
    hooks.answer("/call", &verbs);
    let (call, status) = (hooks.url("/call"), hooks.url("/status"));
    let mut args = vec!["--app-url", &call, "--status-hook", &status];
    args.extend_from_slice(extra);
    let serve = Serve::start(name, &args);
    (hooks, serve)
}

/// A config file for one test.
pub fn config(name: &str, toml: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("serve-{name}.toml"));
    std::fs::write(&path, toml).expect("write config");
    path
}

pub fn callee(name: &str, scenario_name: &str, calls: u32, pause_ms: u64, extra: &[&str]) -> Sipp {
    Sipp::callee(
        name,
        Run {
            scenario: &scenario(scenario_name),
            calls,
            pause_ms,
            extra,
        },
    )
}

/// A callee that rings until cancelled (only 100 Trying for users named `silent…`).
pub fn ringing(name: &str, calls: u32) -> Sipp {
    callee(name, "ring", calls, 0, &[])
}

/// One call from SIPp running `scenario_name` (`pause_ms`: hold, or ring before CANCEL).
pub fn caller(serve: &Serve, scenario_name: &str, pause_ms: u64) -> Sipp {
    caller_over(serve, scenario_name, pause_ms, "u1")
}

/// As [`caller`], over SIPp transport `transport` (`u1` UDP, `t1` TCP).
pub fn caller_over(serve: &Serve, scenario_name: &str, pause_ms: u64, transport: &str) -> Sipp {
    Sipp::caller(
        "caller",
        serve.sip,
        Run {
            scenario: &scenario(scenario_name),
            calls: 1,
            pause_ms,
            extra: &["-s", CALLED, "-t", transport],
        },
    )
}

pub fn dial(targets: &[Value], extra: Value) -> Value {
    let mut verb = json!({"verb": "dial", "target": targets});
    for (k, v) in extra.as_object().expect("object") {
        verb[k] = v.clone();
    }
    json!([verb])
}

pub fn sip_target(uri: &str) -> Value {
    json!({"type": "sip", "sipUri": uri})
}

/// The `Authorization` value answering the MD5 challenge of the 401 `challenge` (domain
/// 127.0.0.1) as `user` with `password`.
pub fn md5_authorization(challenge: &str, user: &str, password: &str) -> String {
    let md5 = challenge
        .lines()
        .filter_map(|l| l.strip_prefix("WWW-Authenticate:"))
        .filter_map(|v| Challenge::parse(v.trim()).ok())
        .find(|c| c.algorithm() == Algorithm::MD5)
        .unwrap_or_else(|| panic!("no MD5 challenge: {challenge}"));
    respond(
        &md5,
        &ClientRequest {
            username: user,
            password,
            method: "REGISTER",
            uri: "sip:127.0.0.1",
            nc: 1,
            cnonce: "e2e",
        },
    )
    .expect("an MD5 challenge can be answered")
    .to_string()
}

/// Registers `user` (domain 127.0.0.1) at `registrar` from a free port of 127.0.0.1 with that
/// address as its contact; the port, closed again for a callee to take (the registrar sends
/// requests to where the REGISTER came from, as behind NAT). Answers the MD5 challenge: SIPp
/// 3.6 would take the SHA-256 one offered first, which it cannot compute.
pub fn register(registrar: SocketAddr, user: &str, password: &str) -> u16 {
    register_split(registrar, registrar, user, password)
}

/// As [`register`], the first REGISTER (challenged) to `challenger`, the one answering the
/// challenge to `answerer` (two instances of a cluster sharing the nonce secret).
pub fn register_split(
    challenger: SocketAddr,
    answerer: SocketAddr,
    user: &str,
    password: &str,
) -> u16 {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let local = sock.local_addr().unwrap();
    let contact = format!("sip:{user}@{local}");
    let send = |registrar: SocketAddr, cseq: u32, authorization: &str| {
        let request = format!(
            "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-reg{cseq};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=e2e\r\nTo: <sip:{user}@127.0.0.1>\r\n\
             Call-ID: reg-{user}-{}\r\nCSeq: {cseq} REGISTER\r\nContact: <{contact}>\r\nExpires: 300\r\n\
             {authorization}Content-Length: 0\r\n\r\n",
            local.port()
        );
        sock.send_to(request.as_bytes(), registrar).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            let (n, _) = sock.recv_from(&mut buf).expect("registrar answers");
            let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            if !answer.starts_with("SIP/2.0 100") {
                return answer;
            }
        }
    };
    let challenge = send(challenger, 1, "");
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let authorization = format!(
        "Authorization: {}\r\n",
        md5_authorization(&challenge, user, password)
    );
    let answer = send(answerer, 2, &authorization);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    local.port()
}
