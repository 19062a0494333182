//! Hostile input against the test UAS over real sockets: garbage datagrams, truncated and
//! oversized messages, a TCP client that stalls half-way through a message, idle connections,
//! too many connections, and a request flood from one source. Each is dropped or answered and
//! counted, and other clients keep being served meanwhile.

mod uas;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};

use rand::{Rng, SeedableRng};
use uas::{Uas, WAIT};

fn options(branch: &str, transport: &str, local: SocketAddr) -> Vec<u8> {
    format!(
        "OPTIONS sip:uas@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         From: <sip:probe@127.0.0.1>;tag={branch}\r\nTo: <sip:uas@127.0.0.1>\r\n\
         Call-ID: {branch}@abuse\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn udp_client(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// The status code of the next datagram `s` receives (bounded by the read timeout).
fn recv_status(s: &UdpSocket) -> u16 {
    let mut buf = [0u8; 65_536];
    let n = s.recv(&mut buf).expect("a reply in time");
    status_of(&buf[..n])
}

fn status_of(reply: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(reply);
    assert!(text.starts_with("SIP/2.0 "), "{text}");
    text[8..11].parse().expect("status code")
}

/// An OPTIONS over UDP from a fresh socket gets 200: the UAS still serves others.
fn served_over_udp(uas: &Uas, ip: &str, branch: &str) {
    let s = udp_client(ip);
    let msg = options(branch, "UDP", s.local_addr().expect("addr"));
    s.send_to(&msg, uas.addr("UDP")).expect("send");
    assert_eq!(recv_status(&s), 200);
}

fn tcp_client(uas: &Uas) -> TcpStream {
    let s = TcpStream::connect(uas.addr("TCP")).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

/// An OPTIONS on a fresh TCP connection gets 200.
fn served_over_tcp(uas: &Uas, branch: &str) {
    let mut s = tcp_client(uas);
    let msg = options(branch, "TCP", s.local_addr().expect("addr"));
    s.write_all(&msg).expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("reply");
    assert_eq!(status_of(&buf[..n]), 200);
}

/// Reads until the peer closes; panics if it does not within the bound.
fn closed_by_peer(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(e) => panic!("not closed in time: {e}"),
        }
    }
}

fn start(extra: &[&str]) -> Uas {
    let mut args = vec!["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    Uas::start(&args)
}

#[test]
fn garbage_and_truncated_datagrams_are_dropped_or_answered_and_counted() {
    let mut uas = start(&[]);
    let s = udp_client("127.0.0.1");
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    // In batches the socket buffers hold, so the kernel drops none of them before the UAS does.
    for batch in 1..=10 {
        for _ in 0..20 {
            let len = rng.random_range(1..1400);
            let junk: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            s.send_to(&junk, uas.addr("UDP")).expect("send");
        }
        let want = f64::from(batch * 20);
        uas.wait_metric(
            "dialplane_sip_dropped_total",
            &[("reason", "malformed")],
            |v| v == want,
        );
    }
    // A message cut inside its headers, and one whose body is shorter than Content-Length:
    // both still name a Via, so both get 400.
    let full = options("trunc1", "UDP", s.local_addr().expect("addr"));
    s.send_to(&full[..full.len() / 2], uas.addr("UDP"))
        .expect("send");
    assert_eq!(recv_status(&s), 400);
    let text = String::from_utf8(options("trunc2", "UDP", s.local_addr().expect("addr")))
        .expect("utf8")
        .replace("Content-Length: 0", "Content-Length: 50");
    s.send_to(format!("{text}short").as_bytes(), uas.addr("UDP"))
        .expect("send");
    assert_eq!(recv_status(&s), 400);
    let m = "dialplane_sip_stateless_replies_total";
    assert_eq!(uas.metric(m, &[("status", "400")]), 2.0);
    served_over_udp(&uas, "127.0.0.1", "after-garbage");
}

#[test]
fn oversized_messages_get_413_over_udp_and_tcp() {
    let mut uas = start(&["--max-message-size", "4096"]);
    let s = udp_client("127.0.0.1");
    let big = String::from_utf8(options("big1", "UDP", s.local_addr().expect("addr")))
        .expect("utf8")
        .replace(
            "Content-Length: 0\r\n\r\n",
            "Content-Type: text/plain\r\nContent-Length: 5000\r\n\r\n",
        )
        + &"x".repeat(5000);
    s.send_to(big.as_bytes(), uas.addr("UDP")).expect("send");
    assert_eq!(recv_status(&s), 413);

    // Over TCP the head announces too much: 413, then the connection is closed (the stream
    // cannot be re-synchronised).
    let mut t = tcp_client(&uas);
    let head = String::from_utf8(options("big2", "TCP", t.local_addr().expect("addr")))
        .expect("utf8")
        .replace("Content-Length: 0", "Content-Length: 100000");
    t.write_all(head.as_bytes()).expect("write");
    let got = closed_by_peer(&mut t);
    assert_eq!(status_of(&got), 413);
    assert_eq!(
        uas.metric("dialplane_sip_dropped_total", &[("reason", "too_large")]),
        2.0
    );
    assert_eq!(
        uas.metric(
            "dialplane_sip_connections_closed_total",
            &[("reason", "framing")]
        ),
        1.0
    );
    served_over_tcp(&uas, "after-big");
}

#[test]
fn stalled_and_idle_tcp_clients_are_closed_without_blocking_others() {
    let mut uas = start(&["--message-timeout-ms", "3000", "--idle-timeout-s", "2"]);
    let mut stalled = tcp_client(&uas);
    let msg = options("stall", "TCP", stalled.local_addr().expect("addr"));
    stalled
        .write_all(&msg[..msg.len() / 2])
        .expect("write half");
    let mut idle = tcp_client(&uas);
    // While both hang, other clients are served on every transport...
    served_over_tcp(&uas, "during-stall-tcp");
    served_over_udp(&uas, "127.0.0.1", "during-stall-udp");
    // ...and the stalled connection was still open then (not served after it was dropped).
    let m = "dialplane_sip_connections_closed_total";
    assert_eq!(uas.metric(m, &[("reason", "message_timeout")]), 0.0);
    assert!(
        closed_by_peer(&mut stalled).is_empty(),
        "closed without a reply"
    );
    uas.wait_metric(m, &[("reason", "message_timeout")], |v| v == 1.0);
    assert!(closed_by_peer(&mut idle).is_empty());
    uas.wait_metric(m, &[("reason", "idle")], |v| v >= 1.0);
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let mut uas = start(&["--max-connections", "2"]);
    let mut a = tcp_client(&uas);
    let _b = tcp_client(&uas);
    uas.wait_metric("dialplane_sip_connections", &[], |v| v == 2.0);
    let mut c = tcp_client(&uas);
    assert!(
        closed_by_peer(&mut c).is_empty(),
        "the third is closed at once"
    );
    assert_eq!(
        uas.metric(
            "dialplane_sip_dropped_total",
            &[("reason", "max_connections")]
        ),
        1.0
    );
    // The admitted ones work.
    let msg = options("within-limit", "TCP", a.local_addr().expect("addr"));
    a.write_all(&msg).expect("write");
    let mut buf = [0u8; 4096];
    let n = a.read(&mut buf).expect("reply");
    assert_eq!(status_of(&buf[..n]), 200);
}

#[test]
fn a_flood_from_one_source_gets_503_then_silence_and_others_are_still_served() {
    let mut uas = start(&["--rate-limit", "20"]);
    let s = udp_client("127.0.0.1");
    let local = s.local_addr().expect("addr");
    // Batches small enough for the socket buffers; all sent before the first reply is read.
    const SENT: usize = 300;
    for batch in 0..10 {
        for i in 0..30 {
            s.send_to(
                &options(&format!("flood{batch}-{i}"), "UDP", local),
                uas.addr("UDP"),
            )
            .expect("send");
        }
        // Every request of the batch parsed, so the socket buffer holds at most one batch.
        let parsed = (30 * (batch + 1)) as f64;
        uas.wait_metric(
            "dialplane_sip_received_total",
            &[("transport", "UDP")],
            |v| v >= parsed,
        );
    }
    let busy = uas.metric("dialplane_sip_rate_limited_total", &[("action", "503")]) as usize;
    let dropped = uas.metric("dialplane_sip_rate_limited_total", &[("action", "drop")]) as usize;
    // What was not dropped is answered: 200 (within the burst and refill) or 503.
    let mut ok = 0;
    for _ in 0..SENT - dropped {
        match recv_status(&s) {
            200 => ok += 1,
            503 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        ok + busy + dropped,
        SENT,
        "ok {ok}, 503 {busy}, dropped {dropped}"
    );
    // Burst 20 plus what refilled meanwhile; as many 503s; the far-over rest dropped.
    assert!(
        ok >= 20 && busy >= 20 && dropped > 0,
        "ok {ok}, 503 {busy}, dropped {dropped}"
    );
    let limited = uas.metric("dialplane_sip_dropped_total", &[("reason", "rate_limited")]);
    assert_eq!(limited, (busy + dropped) as f64);
    assert_eq!(
        uas.metric(
            "dialplane_sip_stateless_replies_total",
            &[("status", "503")]
        ),
        busy as f64
    );
    // In-dialog requests (a To tag) from the same, exhausted, source are never limited.
    for i in 0..30 {
        let branch = format!("indialog-{i}");
        let msg = String::from_utf8(options(&branch, "UDP", local))
            .expect("utf8")
            .replace(
                "To: <sip:uas@127.0.0.1>",
                "To: <sip:uas@127.0.0.1>;tag=callee",
            );
        s.send_to(msg.as_bytes(), uas.addr("UDP")).expect("send");
        assert_ne!(recv_status(&s), 503, "in-dialog request {i} limited");
    }
    // Another source address (127.0.0.2 is loopback too) has its own budget.
    served_over_udp(&uas, "127.0.0.2", "other-source");
}
