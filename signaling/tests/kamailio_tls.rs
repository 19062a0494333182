//! SIP over TLS with a third-party peer: SIPp (UDP; Debian's SIPp has no TLS) → Kamailio 5.6,
//! which relays every request over TLS (its `tls` module, not verifying the self-signed
//! certificate) → the test UAS listening on TLS only, with a certificate made at test time.
//! OPTIONS, INVITE → 180 → 200 → ACK → BYE, and INVITE with 100rel → reliable 183 → PRACK →
//! 200 → 200 → ACK → BYE must succeed end to end (SIPp exits 0), and the UAS must have received
//! every request over TLS on one connection that Kamailio reuses.
//!
//! Kamailio runs in the foreground (`-DD -E`) and is killed by PID when the test ends.

#[path = "sipp/runner.rs"]
mod runner;
mod uas;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use runner::{CALLS, sipp};
use uas::{Uas, WAIT, free_port, test_cert};

/// Kamailio in its own process group, which is killed (by its ID) when dropped: Kamailio's
/// worker processes outlive a killed main process.
struct Kamailio {
    child: Child,
    /// Its configuration, runtime files and log.
    dir: PathBuf,
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        Command::new("kill")
            .args(["-KILL", "--", &group])
            .status()
            .ok();
        self.child.kill().ok();
        self.child.wait().ok();
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// `tests/kamailio/<name>` with each `@KEY@` replaced, written into `dir`.
fn template(name: &str, dir: &Path, vars: &[(&str, String)]) -> PathBuf {
    let src: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "kamailio", name]
        .iter()
        .collect();
    let mut text = std::fs::read_to_string(&src).expect("read template");
    for (k, v) in vars {
        text = text.replace(&format!("@{k}@"), v);
    }
    assert!(!text.contains("@SIP_PORT@") && !text.contains("@CERT@"));
    let out = dir.join(name);
    std::fs::write(&out, text).expect("write config");
    out
}

impl Kamailio {
    /// Starts Kamailio listening on UDP `sip_port` and TLS `tls_port`, relaying to the UAS's TLS
    /// listener; returns once its TLS port accepts connections.
    fn start(uas_tls: SocketAddr, cert: &Path, key: &Path) -> (Kamailio, SocketAddr) {
        let dir = std::env::temp_dir().join(format!("dialplane-kamailio-{}", std::process::id()));
        let run = dir.join("run");
        std::fs::create_dir_all(&run).expect("temp dir");
        let (sip_port, tls_port) = (free_port(), free_port());
        let tls_cfg = template(
            "tls.cfg",
            &dir,
            &[
                ("CERT", cert.display().to_string()),
                ("KEY", key.display().to_string()),
            ],
        );
        let cfg = template(
            "kamailio.cfg",
            &dir,
            &[
                ("SIP_PORT", sip_port.to_string()),
                ("TLS_PORT", tls_port.to_string()),
                ("TLS_CFG", tls_cfg.display().to_string()),
                ("UAS_PORT", uas_tls.port().to_string()),
            ],
        );
        let log = dir.join("kamailio.log");
        let child = Command::new("kamailio")
            .args(["-DD", "-E", "-m", "64", "-M", "8"])
            .process_group(0)
            .arg("-Y")
            .arg(&run)
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("kamailio is installed (with kamailio-tls-modules: make deps)");
        let mut k = Kamailio { child, dir };
        let deadline = Instant::now() + WAIT;
        let tls_addr = SocketAddr::from(([127, 0, 0, 1], tls_port));
        while TcpStream::connect_timeout(&tls_addr, Duration::from_millis(200)).is_err() {
            let exited = k.child.try_wait().expect("wait kamailio");
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "kamailio did not start ({exited:?}): {}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        (k, SocketAddr::from(([127, 0, 0, 1], sip_port)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kamailio.log")).unwrap_or_default()
    }
}

#[test]
fn sipp_through_kamailio_over_tls() {
    let (cert, key) = test_cert("kamailio");
    let cert_s = cert.display().to_string();
    let key_s = key.display().to_string();
    let mut uas = Uas::start(&[
        "--tls",
        "127.0.0.1:0",
        "--cert",
        &cert_s,
        "--key",
        &key_s,
        "--reliable-183",
    ]);
    let (kamailio, proxy) = Kamailio::start(uas.addr("TLS"), &cert, &key);

    let calls = f64::from(CALLS);
    let run = |scenario: &str| {
        let outcome = std::panic::catch_unwind(|| sipp(scenario, proxy, "u1"));
        if let Err(e) = outcome {
            eprintln!("kamailio's log:\n{}", kamailio.log());
            std::panic::resume_unwind(e);
        }
    };
    run("options.xml");
    let responses = |uas: &mut Uas, method: &str, status: &str| {
        uas.metric(
            "dialplane_uas_responses_total",
            &[("method", method), ("status", status)],
        )
    };
    assert_eq!(responses(&mut uas, "OPTIONS", "200"), calls);

    run("invite.xml");
    assert_eq!(responses(&mut uas, "INVITE", "200"), calls);
    assert_eq!(responses(&mut uas, "BYE", "200"), calls);
    uas.wait_metric("dialplane_uas_acks_total", &[], |v| v == calls);

    run("prack.xml");
    let pracks = "dialplane_uas_pracks_total";
    assert_eq!(uas.metric(pracks, &[("result", "ok")]), calls);
    assert_eq!(responses(&mut uas, "PRACK", "200"), calls);
    assert_eq!(responses(&mut uas, "INVITE", "200"), 2.0 * calls);
    uas.wait_metric("dialplane_uas_acks_total", &[], |v| v == 2.0 * calls);

    // OPTIONS 1 a call; INVITE, ACK, BYE 3; INVITE, PRACK, ACK, BYE 4: all over TLS, on the one
    // connection Kamailio opened and reused.
    let received = uas.metric("dialplane_sip_received_total", &[("transport", "TLS")]);
    assert_eq!(received, calls * 8.0);
    assert_eq!(uas.metric("dialplane_sip_connections", &[]), 1.0);
    assert_eq!(uas.metric("dialplane_sip_dropped_total", &[]), 0.0);
    std::fs::remove_dir_all(cert.parent().expect("cert dir")).ok();
}
