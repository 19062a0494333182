//! `dialplane media` behind Kamailio 5.6's rtpengine module, as carriers deploy rtpengine: SIPp
//! calls through Kamailio (which sends `offer`/`answer`/`delete` over ng), RTP from SIPp's pcap
//! player through our relay to a SIPp UAS that echoes it back. The relay's own counters (ng
//! `statistics`) must show the media both ways, and every call deleted at the end.
//!
//! Needs `kamailio` and `sipp` (Debian `kamailio`, `sip-tester`; `make deps` installs them).

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed (and reaped) when the test ends, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command, log: &Path) -> Guard {
    let out = std::fs::File::create(log).expect("log file");
    let err = out.try_clone().expect("log file");
    Guard(
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
    )
}

/// A port free right now on loopback (the OS picks it).
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind")
        .port()
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kamailio")
}

fn work_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kamailio");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("work dir");
    dir
}

/// Send `request` to `to` until something answers (bounded: 10 s).
fn wait_answer(to: SocketAddr, request: &[u8]) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = vec![0u8; 65536];
    while Instant::now() < deadline {
        sock.send_to(request, to).expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return buf[..n].to_vec();
        }
    }
    panic!("{to} did not answer within 10 s");
}

/// Wait (bounded) for a child to exit; its status.
fn wait_exit(child: &mut Guard, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.0.try_wait().expect("wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "child still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
