//! SIPp (Debian sip-tester) as a caller or a callee on loopback: one process per role, its
//! `<log>` actions in a file the test reads, killed by PID when dropped.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Guard, free_port, free_udp_port, spawn};

/// SIPp gives up (and fails) after this long, so a lost message never hangs a test.
const SIPP_TIMEOUT_S: u32 = 15;

/// A running SIPp.
pub struct Sipp {
    guard: Guard,
    /// Its SIP port on 127.0.0.1.
    pub port: u16,
    name: String,
    dir: PathBuf,
}

/// How to run a scenario.
pub struct Run<'a> {
    /// The scenario file.
    pub scenario: &'a Path,
    /// Calls to make (caller) or take (callee) before exiting.
    pub calls: u32,
    /// Duration of the scenario's `<pause/>` in ms (`-d`).
    pub pause_ms: u64,
    /// Further arguments (`-key NAME VALUE`, `-s SERVICE`).
    pub extra: &'a [&'a str],
}

impl Sipp {
    /// A callee listening on a free port of 127.0.0.1.
    pub fn callee(name: &str, run: Run) -> Sipp {
        Self::spawn(name, free_port(), None, run)
    }

    /// A callee listening on `port` of 127.0.0.1.
    pub fn callee_on(name: &str, port: u16, run: Run) -> Sipp {
        Self::spawn(name, port, None, run)
    }

    /// A caller sending its calls to `target`, all at once.
    pub fn caller(name: &str, target: SocketAddr, run: Run) -> Sipp {
        let rate = run.calls;
        Self::spawn(name, free_port(), Some((target, rate)), run)
    }

    /// A caller starting `rate` of its calls per second towards `target`.
    pub fn caller_at_rate(name: &str, target: SocketAddr, rate: u32, run: Run) -> Sipp {
        Self::spawn(name, free_port(), Some((target, rate)), run)
    }

    fn spawn(name: &str, port: u16, target: Option<(SocketAddr, u32)>, run: Run) -> Sipp {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("sipp")
            .join(format!("{name}-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("sipp dir");
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir);
        if let Some((target, _)) = target {
            cmd.arg(target.to_string());
        }
        cmd.arg("-sf")
            .arg(run.scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-mp", &free_udp_port().to_string()])
            .args(["-m", &run.calls.to_string()])
            .args(["-d", &run.pause_ms.to_string()])
            .args(["-nostdin", "-timeout", &format!("{SIPP_TIMEOUT_S}s")])
            .args(["-timeout_error", "-trace_err", "-trace_logs", "-trace_msg"])
            .arg("-error_file")
            .arg(dir.join("errors.log"))
            .arg("-log_file")
            .arg(dir.join("actions.log"))
            .arg("-message_file")
            .arg(dir.join("messages.log"))
            .args(run.extra);
        if let Some((_, rate)) = target {
            cmd.args(["-r", &rate.to_string(), "-l", &run.calls.to_string()]);
        }
        let guard = spawn(&mut cmd, &dir.join("screen.log"));
        Sipp {
            guard,
            port,
            name: name.to_string(),
            dir,
        }
    }

    /// Its address, for a dial target.
    pub fn uri(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    /// Waits (bounded) until it listens on its port: SIPp takes a while to start on a loaded
    /// machine, and a request that comes first is refused by ICMP. Read from /proc rather than
    /// by trying to bind the port, which could make SIPp's own bind fail.
    pub fn wait_listening(&self) {
        let local = format!(":{:04X}", self.port);
        let bound = || {
            let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
            table.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&local))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !bound() {
            assert!(
                Instant::now() < deadline,
                "{} not listening on {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines its `<log>` actions wrote so far.
    pub fn log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("actions.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The SIP messages it received so far (from its `-trace_msg` file), oldest first.
    pub fn received(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("messages.log")).unwrap_or_default();
        let mut messages = Vec::new();
        // Blocks: a line of dashes with a timestamp, "UDP message received [N] bytes :", a blank
        // line, the message.
        for block in text.split("-----------------------------------------------") {
            let mut lines = block.lines().skip(1);
            if lines.next().is_some_and(|l| l.contains("message received")) {
                let message: Vec<&str> = lines.skip_while(|l| l.is_empty()).collect();
                messages.push(message.join("\n").trim_end().to_string());
            }
        }
        messages
    }

    /// Waits (bounded) until its log has a line for which `pred` holds.
    pub fn wait_log(&self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + limit;
        while !self.log().iter().any(|l| pred(l)) {
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {limit:?}\n{}",
                self.name,
                self.report()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The value of the first `<log>` line starting with `prefix`, once there is one (waits
    /// `limit`).
    pub fn logged(&self, prefix: &str, limit: Duration) -> String {
        self.wait_log(prefix, limit, |l| l.starts_with(prefix));
        let line = self.log().into_iter().find(|l| l.starts_with(prefix));
        line.expect("logged")[prefix.len()..].trim().to_string()
    }

    /// The relay's loopback address for the leg whose scenario logged "RELAY <port> ...".
    pub fn relay(&self, limit: Duration) -> SocketAddr {
        // "RELAY <port> (m=audio <port>...)": SIPp wants every captured group used.
        let line = self.logged("RELAY ", limit);
        let port = line.split(' ').next().and_then(|p| p.parse::<u16>().ok());
        let port = port.expect("relay port");
        ([127, 0, 0, 1], port).into()
    }

    /// Waits (bounded by SIPp's own timeout) for it to finish; Err with its logs unless every
    /// call succeeded.
    pub fn finish(&mut self) -> Result<(), String> {
        let status = self
            .guard
            .wait_exit(Duration::from_secs(u64::from(SIPP_TIMEOUT_S) + 5))
            .ok_or_else(|| format!("{} still running\n{}", self.name, self.report()))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited {status}\n{}", self.name, self.report()))
        }
    }

    /// Its action log and error log, for a failure message.
    pub fn report(&self) -> String {
        let errors = std::fs::read_to_string(self.dir.join("errors.log")).unwrap_or_default();
        format!(
            "--- {} actions:\n{}\n--- {} errors (last 4000 bytes; messages in {}):\n{}",
            self.name,
            self.log().join("\n"),
            self.name,
            self.dir.join("messages.log").display(),
            tail(&errors, 4000)
        )
    }
}

/// The last `n` bytes of `s` (from a char boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut start = s.len().saturating_sub(n);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}
