//! Runs SIPp scenarios from `tests/sipp/` (shared by the SIPp and Kamailio tests).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::uas::free_port;

/// Calls per SIPp run.
pub const CALLS: u32 = 3;

/// SIPp, killed by PID when dropped.
struct Sipp(Child);

impl Drop for Sipp {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// Runs `scenario` for `CALLS` calls against `target`; panics with SIPp's error log unless
/// it exits 0.
pub fn sipp(scenario: &str, target: SocketAddr, transport: &str) {
    let dir = std::env::temp_dir().join(format!(
        "dialplane-sipp-{}-{}-{scenario}-{transport}",
        std::process::id(),
        target.port()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let errors = dir.join("errors.log");
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "sipp", scenario]
        .iter()
        .collect();
    let local_ip = if target.is_ipv6() { "::1" } else { "127.0.0.1" };
    let child = Command::new("sipp")
        .current_dir(&dir)
        .arg(target.to_string())
        .arg("-sf")
        .arg(&path)
        .args(["-t", transport, "-i", local_ip])
        .args(["-p", &free_port().to_string()])
        .args(["-m", &CALLS.to_string(), "-r", "20"])
        .args(["-s", "alice", "-au", "alice", "-ap", "secret"])
        .args(["-nostdin", "-timeout", "20", "-timeout_error", "-trace_err"])
        .arg("-error_file")
        .arg(&errors)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp is installed (Debian sip-tester)");
    let mut sipp = Sipp(child);
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = sipp.0.try_wait().expect("wait sipp") {
            break s;
        }
        assert!(Instant::now() < deadline, "sipp {scenario} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    let log = std::fs::read_to_string(&errors).unwrap_or_default();
    assert_eq!(
        status.code(),
        Some(0),
        "sipp {scenario} over {transport}: {log}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
