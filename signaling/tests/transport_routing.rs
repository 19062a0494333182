//! Response routing per RFC 3261 §18.2.2 and RFC 3581 against the test UAS, over real sockets:
//! UDP responses go to the source port when the Via asks for `rport`; a TCP response whose
//! connection has gone is delivered over a new connection to the Via's sent-by; a TLS client
//! that never finishes its handshake is closed at the deadline.

mod uas;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};

use uas::{Uas, WAIT, test_cert};

fn invite(branch: &str, transport: &str, sent_by: &str) -> Vec<u8> {
    format!(
        "INVITE sip:uas@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} {sent_by};branch=z9hG4bK{branch};rport\r\n\
         From: <sip:probe@127.0.0.1>;tag={branch}\r\nTo: <sip:uas@127.0.0.1>\r\n\
         Call-ID: {branch}@routing\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\
         Contact: <sip:probe@{sent_by}>\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

/// Reads whole messages from a stream until one has status `want`; returns its text.
fn read_until_status(s: &mut TcpStream, want: &str) -> String {
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(i) = got.find(&format!("SIP/2.0 {want} ")) {
            return got[i..].to_owned();
        }
        let n = s.read(&mut buf).expect("read in time");
        assert!(n > 0, "closed before {want}: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[test]
fn udp_responses_follow_rport_not_the_via_port() {
    let uas = Uas::start(&["--udp", "127.0.0.1:0"]);
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    // The Via names port 9 (discard); the answer must come back to our real port.
    s.send_to(&invite("rport1", "UDP", "127.0.0.1:9"), uas.addr("UDP"))
        .expect("send");
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("a response at the source port");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("SIP/2.0 1"), "{text}");
    let port = s.local_addr().expect("addr").port();
    assert!(
        text.contains(&format!(";received=127.0.0.1;rport={port}")),
        "{text}"
    );
}

#[test]
fn tcp_response_after_the_connection_closed_goes_to_the_via_sent_by() {
    let uas = Uas::start(&["--tcp", "127.0.0.1:0", "--answer-delay-ms", "800"]);
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let sent_by = listener.local_addr().expect("addr").to_string();
    let mut conn = TcpStream::connect(uas.addr("TCP")).expect("connect");
    conn.set_read_timeout(Some(WAIT)).expect("timeout");
    conn.write_all(&invite("fallback1", "TCP", &sent_by))
        .expect("write");
    read_until_status(&mut conn, "180");
    drop(conn);
    // The 200 comes over a connection the UAS opens to our sent-by.
    listener.set_nonblocking(false).expect("blocking");
    let (mut back, _) = {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(listener.accept()).ok());
        rx.recv_timeout(WAIT)
            .expect("the UAS connected back in time")
            .expect("accept")
    };
    back.set_read_timeout(Some(WAIT)).expect("timeout");
    let ok = read_until_status(&mut back, "200");
    assert!(ok.contains("Call-ID: fallback1@routing"), "{ok}");
}

#[test]
fn tls_handshake_that_never_starts_is_closed_at_the_deadline() {
    let (cert, key) = test_cert("stall");
    let mut uas = Uas::start(&[
        "--tls",
        "127.0.0.1:0",
        "--cert",
        cert.to_str().expect("utf8"),
        "--key",
        key.to_str().expect("utf8"),
        "--message-timeout-ms",
        "500",
    ]);
    let mut silent = TcpStream::connect(uas.addr("TLS")).expect("connect");
    silent.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut buf = [0u8; 64];
    assert_eq!(silent.read(&mut buf).expect("closed in time"), 0);
    let m = "dialplane_sip_connections_closed_total";
    uas.wait_metric(m, &[("reason", "handshake")], |v| v == 1.0);
}
