//! The stack in process over real UDP sockets, with short timers: it arms the transaction
//! layer's timers on the tokio clock (retransmissions, Timer F, Timer G), hands new requests
//! to the TU and sends the TU's responses. Retransmission instants themselves are asserted
//! with a fake clock in tests/transaction.rs; here only that they happen.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use dialplane_signaling::message::{
    HeaderName, Message, Method, Request, Response, StatusCode, Uri,
};
use dialplane_signaling::stack::{ClientEvent, Endpoint, Incoming, StackConfig};
use dialplane_signaling::transaction::{Timer, TimerConfig};
use dialplane_signaling::transport::{Limits, SipListen, Transport, TransportConfig, Transports};

const WAIT: Duration = Duration::from_secs(20);

async fn stack(t1_ms: u64) -> (Endpoint, tokio::sync::mpsc::Receiver<Incoming>) {
    let (transports, inbound) = Transports::bind(TransportConfig {
        listen: vec![SipListen {
            transport: Transport::Udp,
            addr: "127.0.0.1:0".parse().expect("addr"),
        }],
        external_ip: None,
        limits: Limits::default(),
        tls_server: None,
        tls_client: None,
    })
    .await
    .expect("bind");
    let timers = TimerConfig {
        t1: Duration::from_millis(t1_ms),
        t2: Duration::from_millis(t1_ms * 4),
        ..TimerConfig::default()
    };
    Endpoint::start(
        transports,
        inbound,
        StackConfig {
            timers,
            seed: 1,
            ..StackConfig::default()
        },
    )
}

/// Blocking receive on a std socket, off the runtime's threads.
async fn recv_text(s: &UdpSocket) -> String {
    let s = s.try_clone().expect("clone");
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).expect("a datagram in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("join")
}

fn silent_peer() -> (UdpSocket, SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let a = s.local_addr().expect("addr");
    (s, a)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_transaction_retransmits_then_times_out_with_timer_f() {
    let (ep, _incoming) = stack(10).await;
    let (peer, addr) = silent_peer();
    let req = Request::new(
        Method::OPTIONS,
        Uri::parse("sip:peer@127.0.0.1").expect("uri"),
    )
    .with_header(HeaderName::FROM, "<sip:us@127.0.0.1>;tag=1")
    .with_header(HeaderName::TO, "<sip:peer@127.0.0.1>")
    .with_header(HeaderName::CALL_ID, "stack-f@test")
    .with_header(HeaderName::CSEQ, "1 OPTIONS")
    .with_header(HeaderName::MAX_FORWARDS, 70);
    let mut tx = ep
        .send_request(req, addr, Transport::Udp)
        .await
        .expect("send");
    let via = tx.request.headers.top_via().expect("the stack's Via");
    assert!(via.has_rfc3261_branch());
    assert_eq!(via.transport, "UDP");
    // The original and at least two retransmissions (Timer E) reach the peer, same branch.
    for _ in 0..3 {
        let text = recv_text(&peer).await;
        assert!(text.starts_with("OPTIONS "), "{text}");
        assert!(text.contains(via.branch().expect("branch")), "{text}");
    }
    let event = tokio::time::timeout(WAIT, tx.next())
        .await
        .expect("in time");
    assert_eq!(event, Some(ClientEvent::Timeout(Timer::F)));
    let end = tokio::time::timeout(WAIT, tx.next())
        .await
        .expect("in time");
    assert_eq!(end, None, "the transaction ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_transaction_hands_the_request_up_and_retransmits_the_final_response() {
    let (ep, mut incoming) = stack(10).await;
    let (client, client_addr) = silent_peer();
    let server = ep.transports().local_addrs().first().expect("listener").1;
    let invite = format!(
        "INVITE sip:uas@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {client_addr};branch=z9hG4bKsrv1\r\n\
         From: <sip:c@127.0.0.1>;tag=9\r\nTo: <sip:uas@127.0.0.1>\r\nCall-ID: stack-g@test\r\n\
         CSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    client.send_to(invite.as_bytes(), server).expect("send");
    let Some(Incoming::Request(req)) = tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("in time")
    else {
        panic!("expected a request");
    };
    assert_eq!(req.request.method, Method::INVITE);
    assert_eq!(req.source, client_addr);
    assert_eq!(req.transport, Transport::Udp);
    assert!(recv_text(&client).await.starts_with("SIP/2.0 100 "));
    let busy = Response::for_request(&req.request, StatusCode::BUSY_HERE).with_to_tag("t1");
    req.respond(busy).await.expect("respond");
    // No ACK: the 486 is sent, then retransmitted by Timer G.
    for _ in 0..2 {
        let text = recv_text(&client).await;
        assert!(text.starts_with("SIP/2.0 486 "), "{text}");
    }
    // A second final response is refused by the transaction.
    let again = Response::for_request(&req.request, StatusCode::OK);
    assert!(req.respond(again).await.is_err());
    // The ACK for the 486 is absorbed by the transaction, not passed up.
    let ack = invite
        .replace("INVITE sip", "ACK sip")
        .replace("CSeq: 1 INVITE", "CSeq: 1 ACK")
        .replace("To: <sip:uas@127.0.0.1>", "To: <sip:uas@127.0.0.1>;tag=t1");
    client.send_to(ack.as_bytes(), server).expect("send");
    let stray = Message::parse(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKnext\r\nFrom: <sip:c@x>;tag=1\r\nTo: <sip:x@x>\r\nCall-ID: next\r\nCSeq: 1 OPTIONS\r\n\r\n").expect("parses");
    client.send_to(&stray.to_bytes(), server).expect("send");
    match tokio::time::timeout(WAIT, incoming.recv())
        .await
        .expect("in time")
    {
        Some(Incoming::Request(r)) => assert_eq!(r.request.method, Method::OPTIONS),
        other => panic!("the ACK should have been absorbed, got {other:?}"),
    }
}
