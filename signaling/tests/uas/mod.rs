//! The test UAS binary as a child process: started on free ports, asked for its counters over
//! stdin, killed by PID when dropped. Every wait is bounded.

#![allow(dead_code)] // each test binary uses its own part of this helper

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long any single wait on the UAS may take.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Uas {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    pub addrs: Vec<(String, SocketAddr)>,
}

impl Uas {
    /// Starts `sip_uas` with `args`; returns once it printed `ready`.
    pub fn start(args: &[&str]) -> Uas {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sip_uas"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sip_uas");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut uas = Uas {
            child,
            stdin,
            lines,
            addrs: Vec::new(),
        };
        loop {
            let line = uas.line();
            if line == "ready" {
                break;
            }
            let mut parts = line.split_whitespace();
            if let (Some("listening"), Some(t), Some(a)) =
                (parts.next(), parts.next(), parts.next())
            {
                uas.addrs.push((t.to_owned(), a.parse().expect("address")));
            }
        }
        uas
    }

    fn line(&mut self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("sip_uas stopped or said nothing in time")
    }

    /// The listener address of `transport` (`UDP`, `TCP`, `TLS`).
    pub fn addr(&self, transport: &str) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(t, _)| t == transport)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no {transport} listener"))
    }

    /// The Prometheus text of every metric.
    pub fn stats(&mut self) -> String {
        self.stdin.write_all(b"stats\n").expect("write stats");
        self.stdin.flush().expect("flush");
        let mut out = String::new();
        loop {
            let line = self.line();
            if line == "# EOF" {
                return out;
            }
            out.push_str(&line);
            out.push('\n');
        }
    }

    /// The sum of the samples of `name` whose labels include all of `labels`.
    pub fn metric(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric(&self.stats(), name, labels)
    }

    /// Asks for the counters until `pred` holds for `name{labels}` (bounded).
    pub fn wait_metric(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        pred: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let v = self.metric(name, labels);
            if pred(v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{name}{labels:?} stayed at {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Reads one metric from Prometheus text: the sum over matching label sets.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name
                && labels
                    .iter()
                    .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
            .then(|| value.parse::<f64>().ok())
            .flatten()
        })
        .sum()
}

/// A port free on 127.0.0.1 for both UDP and TCP right now.
pub fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

/// A self-signed certificate for 127.0.0.1 made now (rcgen), in a fresh directory named after
/// `tag`: (cert, key) PEM paths.
pub fn test_cert(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("dialplane-tls-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("rcgen");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}
