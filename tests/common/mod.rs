//! What the end-to-end tests share: child processes killed by PID when dropped, free ports on
//! loopback, the real `dialplane media` with an ng client, SIPp, and an HTTP webhook receiver.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod http;
pub mod rtp;
pub mod serve;
pub mod sipp;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use media::ng::{Dict, Encoding, Limits, ReplyMessage, Value, decode_reply, encode_datagram};

pub const WAIT: Duration = Duration::from_secs(5);

/// A child process stopped (and reaped) when the test ends, pass or fail. SIGTERM first:
/// Kamailio's main process takes its worker processes down with it only on a signal it handles,
/// and `dialplane serve` exits cleanly on it.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .arg(self.0.id().to_string())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Waits (bounded) for the child to exit; its status, or None if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.0.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Spawns `cmd` with stdout and stderr into `log`.
pub fn spawn(cmd: &mut Command, log: &Path) -> Guard {
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

/// A running `dialplane media`; killed by PID when dropped.
pub struct Relay {
    pub child: Child,
    pub ng: SocketAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub client: UdpSocket,
    cookie: u32,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port range of its own per relay: by process id, then by count within the process; below
/// Linux's ephemeral ports (32768 and up), so no client socket sits in it.
pub fn port_range() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let slot = (std::process::id() % 25) as u16 * 8 + NEXT.fetch_add(1, Ordering::Relaxed) % 8;
    let min = 10000 + slot * 100;
    (min, min + 99)
}

pub fn free_udp_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// A port free for both UDP and TCP on 127.0.0.1 (a SIP or HTTP listener), from 30000–32599:
/// below Linux's ephemeral ports, so no client socket takes it between this check and the
/// listener's bind, above [`port_range`]'s RTP ranges, and a slice of its own per process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 30000 + (std::process::id() % 13) as u16 * 200;
    for _ in 0..200 {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 200;
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port in {base}..{}", base + 200);
}

pub fn free_tcp_port() -> u16 {
    let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

/// Send `request` to `to` until something answers (bounded: 10 s).
pub fn wait_answer(to: SocketAddr, request: &[u8]) -> Vec<u8> {
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

impl Relay {
    pub fn start(extra: &[&str]) -> Relay {
        let (port_min, port_max) = port_range();
        let ng: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
        let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ng-{}.log", ng.port()));
        let child = Command::new(env!("CARGO_BIN_EXE_dialplane"))
            .args([
                "media",
                "--listen-ng",
                &ng.to_string(),
                "--interface",
                "127.0.0.1",
            ])
            .args(["--port-min", &port_min.to_string()])
            .args(["--port-max", &port_max.to_string()])
            .args(["--num-threads", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dialplane starts");
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let relay = Relay {
            child,
            ng,
            port_min,
            port_max,
            client,
            cookie: 0,
        };
        // Up once it answers a ping (bounded).
        let deadline = Instant::now() + WAIT;
        let mut buf = [0u8; 256];
        loop {
            relay
                .client
                .send_to(b"up d7:command4:pinge", relay.ng)
                .unwrap();
            if let Ok((n, _)) = relay.client.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"up d6:result4:ponge");
                break;
            }
            assert!(Instant::now() < deadline, "relay did not come up");
        }
        relay.client.set_read_timeout(Some(WAIT)).unwrap();
        relay
    }

    /// Sends raw bytes, returns the raw reply.
    pub fn raw(&self, datagram: &[u8]) -> Vec<u8> {
        self.client.send_to(datagram, self.ng).unwrap();
        let mut buf = vec![0u8; 65536];
        let (n, _) = self.client.recv_from(&mut buf).expect("ng reply");
        buf.truncate(n);
        buf
    }

    pub fn datagram(&mut self, pairs: &[(&str, Value)]) -> Vec<u8> {
        self.cookie += 1;
        let d: Dict = pairs.iter().cloned().collect();
        encode_datagram(
            format!("t{}", self.cookie).as_bytes(),
            Encoding::Bencode,
            &d,
        )
    }

    pub fn ng(&mut self, pairs: &[(&str, Value)]) -> ReplyMessage {
        let d = self.datagram(pairs);
        decode_reply(&self.raw(&d), &Limits::default()).unwrap()
    }
}

/// The value at `path` in a reply (dict keys, or list indexes).
pub fn get<'a>(d: &'a Dict, path: &[&str]) -> &'a Value {
    let mut v = d
        .get(path[0])
        .unwrap_or_else(|| panic!("no {} in {d:?}", path[0]));
    for p in &path[1..] {
        v = match v {
            Value::Dict(d) => d.get(*p).unwrap_or_else(|| panic!("no {p} in {d:?}")),
            Value::List(l) => &l[p.parse::<usize>().unwrap()],
            other => panic!("{other:?}"),
        };
    }
    v
}
