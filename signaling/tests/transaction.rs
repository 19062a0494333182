//! Transaction layer tests: one fake clock (a base `Instant` plus `Duration`s), in-memory
//! links, exact instants.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dialplane_signaling::message::{HeaderName, Message, Method, Request, Response, StatusCode};
use dialplane_signaling::transaction::{
    DropReason, IncomingRequest, KeyError, Routed, Timer, TimerConfig, TimerTable, TransactionKey,
    Transactions, TxEvent,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const UAC: &str = "10.0.0.1:5060";
const UAS: &str = "10.0.0.2:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn request(method: &str, branch: &str, transport: &str) -> Request {
    let cseq_method = if method == "ACK" { "INVITE" } else { method };
    request_cseq(method, branch, transport, cseq_method)
}

fn request_cseq(method: &str, branch: &str, transport: &str, cseq_method: &str) -> Request {
    let cseq_method = if method == "ACK" || method == "CANCEL" {
        method
    } else {
        cseq_method
    };
    let s = format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 10.0.0.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: call-1@10.0.0.1\r\n\
         CSeq: 1 {cseq_method}\r\n\
         Route: <sip:proxy.example.com;lr>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match Message::parse(s.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn response(req: &Request, code: u16) -> Response {
    Response::for_request(req, StatusCode::new(code).unwrap()).with_to_tag("b1")
}

fn transmits(tx: &mut Transactions, now: Instant) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| tx.poll_transmit(now).map(|t| t.bytes)).collect()
}

fn events(tx: &mut Transactions) -> Vec<TxEvent> {
    std::iter::from_fn(|| tx.poll_event()).collect()
}

fn parse(bytes: &[u8]) -> Message {
    Message::parse(bytes).unwrap()
}

fn start_line(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    s.lines().next().unwrap_or("").to_owned()
}

#[derive(Debug, PartialEq)]
enum Seen {
    Sent(String),
    Timeout(Timer),
    Terminated,
}

/// Jumps the clock from deadline to deadline until nothing is armed; records what happened when.
fn run_to_quiet(tx: &mut Transactions, t0: Instant) -> Vec<(Duration, Seen)> {
    let mut seen = Vec::new();
    for _ in 0..1000 {
        let Some(at) = tx.poll_timeout() else { break };
        tx.handle_timeout(at);
        for b in transmits(tx, at) {
            seen.push((at - t0, Seen::Sent(start_line(&b))));
        }
        for e in events(tx) {
            match e {
                TxEvent::Timeout { timer, .. } => seen.push((at - t0, Seen::Timeout(timer))),
                TxEvent::Terminated { .. } => seen.push((at - t0, Seen::Terminated)),
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
    seen
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn sent_at(list: &[f64], line: &str) -> Vec<(Duration, Seen)> {
    list.iter()
        .map(|&s| (secs(s), Seen::Sent(line.to_owned())))
        .collect()
}

/// Hands `req` from the UAC to `tx` and expects a new server transaction.
fn new_request(tx: &mut Transactions, now: Instant, req: &Request) -> IncomingRequest {
    let Routed::NewRequest(inc) = tx.handle(now, addr(UAC), Message::Request(req.clone())) else {
        panic!("not a new request")
    };
    inc
}

/// `line` sent at each of `list`, then `timer` fires at 64*T1 (32 s) and the transaction ends.
fn sent_then_timed_out(list: &[f64], line: &str, timer: Timer) -> Vec<(Duration, Seen)> {
    let mut want = sent_at(list, line);
    want.push((secs(32.0), Seen::Timeout(timer)));
    want.push((secs(32.0), Seen::Terminated));
    want
}

#[test]
fn timer_table_basics() {
    let t0 = Instant::now();
    let mut t = TimerTable::default();
    assert_eq!(t.next(), None);
    t.set(Timer::B, t0 + ms(32_000));
    t.set(Timer::A, t0 + ms(500));
    assert_eq!(t.next(), Some((Timer::A, t0 + ms(500))));
    assert!(!t.is_expired(Timer::A, t0 + ms(499)));
    assert_eq!(t.pop_expired(t0 + ms(499)), None);
    assert_eq!(t.pop_expired(t0 + ms(500)), Some(Timer::A));
    assert_eq!(t.get(Timer::A), None);
    t.stop(Timer::B);
    assert_eq!(t.next(), None);
    let c = TimerConfig::default();
    assert_eq!(
        (c.t1, c.t2, c.t4, c.t1x64()),
        (ms(500), ms(4000), ms(5000), ms(32_000))
    );
}

#[test]
fn timer_a_doubles_from_t1_then_timer_b_at_64_t1() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let key = tx
        .send_request(t0, request("INVITE", "z9hG4bKa", "UDP"), addr(UAS))
        .unwrap();
    assert_eq!(transmits(&mut tx, t0).len(), 1);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(500)));
    assert_eq!(tx.state(&key), Some("Calling"));
    let seen = run_to_quiet(&mut tx, t0);
    // Intervals 0.5, 1, 2, 4, 8, 16 s: retransmissions at 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s.
    let want = sent_then_timed_out(
        &[0.5, 1.5, 3.5, 7.5, 15.5, 31.5],
        "INVITE sip:bob@example.com SIP/2.0",
        Timer::B,
    );
    assert_eq!(seen, want);
    assert!(tx.is_empty());
}

#[test]
fn timer_e_doubles_capped_at_t2_then_timer_f() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    tx.send_request(t0, request("OPTIONS", "z9hG4bKe", "UDP"), addr(UAS))
        .unwrap();
    assert_eq!(transmits(&mut tx, t0).len(), 1);
    let seen = run_to_quiet(&mut tx, t0);
    // Intervals 0.5, 1, 2, 4, 4, 4, … s.
    let want = sent_then_timed_out(
        &[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5],
        "OPTIONS sip:bob@example.com SIP/2.0",
        Timer::F,
    );
    assert_eq!(seen, want);
}

#[test]
fn timer_e_in_proceeding_fires_every_t2() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("OPTIONS", "z9hG4bKe2", "UDP");
    let key = tx.send_request(t0, req.clone(), addr(UAS)).unwrap();
    let _ = transmits(&mut tx, t0);
    tx.handle_timeout(t0 + ms(500));
    assert_eq!(transmits(&mut tx, t0).len(), 1);
    let r = tx.handle(
        t0 + ms(600),
        addr(UAS),
        Message::Response(response(&req, 100)),
    );
    assert_eq!(r, Routed::ToTransaction(key.clone()));
    assert_eq!(tx.state(&key), Some("Proceeding"));
    assert!(matches!(&events(&mut tx)[..], [TxEvent::Response { .. }]));
    let seen = run_to_quiet(&mut tx, t0);
    let want = sent_then_timed_out(
        &[1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5],
        "OPTIONS sip:bob@example.com SIP/2.0",
        Timer::F,
    );
    assert_eq!(seen, want);
}

#[test]
fn timer_g_doubles_capped_at_t2_until_timer_h() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("INVITE", "z9hG4bKg", "UDP");
    let inc = new_request(&mut tx, t0, &req);
    assert_eq!(
        transmits(&mut tx, t0)
            .iter()
            .map(|b| start_line(b))
            .collect::<Vec<_>>(),
        ["SIP/2.0 100 Trying"]
    );
    tx.respond(t0, &inc.key, &response(&req, 486)).unwrap();
    assert_eq!(transmits(&mut tx, t0).len(), 1);
    let seen = run_to_quiet(&mut tx, t0);
    let want = sent_then_timed_out(
        &[0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5],
        "SIP/2.0 486 Busy Here",
        Timer::H,
    );
    assert_eq!(seen, want);
}

#[test]
fn reliable_transport_never_retransmits() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    tx.send_request(t0, request("INVITE", "z9hG4bKr1", "TCP"), addr(UAS))
        .unwrap();
    tx.send_request(t0, request("OPTIONS", "z9hG4bKr2", "TLS"), addr(UAS))
        .unwrap();
    let inv = request("INVITE", "z9hG4bKr3", "TCP");
    let inc = new_request(&mut tx, t0, &inv);
    tx.respond(t0, &inc.key, &response(&inv, 486)).unwrap();
    assert_eq!(transmits(&mut tx, t0).len(), 4); // INVITE, OPTIONS, 100, 486
    let seen = run_to_quiet(&mut tx, t0);
    // Nothing is re-sent; B, F and H all fire at 64·T1 = 32 s.
    assert_eq!(
        seen,
        [
            (secs(32.0), Seen::Timeout(Timer::B)),
            (secs(32.0), Seen::Timeout(Timer::F)),
            (secs(32.0), Seen::Timeout(Timer::H)),
            (secs(32.0), Seen::Terminated),
            (secs(32.0), Seen::Terminated),
            (secs(32.0), Seen::Terminated),
        ]
    );
    // Reliable: the ACK ends Completed at once (Timer I = 0).
    let inv = request("INVITE", "z9hG4bKr4", "TCP");
    let inc = new_request(&mut tx, t0, &inv);
    tx.respond(t0, &inc.key, &response(&inv, 486)).unwrap();
    let _ = transmits(&mut tx, t0);
    let _ = events(&mut tx);
    tx.handle(
        t0,
        addr(UAC),
        Message::Request(request("ACK", "z9hG4bKr4", "TCP")),
    );
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key: inc.key }]);
}

#[test]
fn invite_client_180_then_486_generates_ack_and_resends_it() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("INVITE", "z9hG4bKc", "UDP");
    let key = tx.send_request(t0, req.clone(), addr(UAS)).unwrap();
    let _ = transmits(&mut tx, t0);

    let t = t0 + ms(100);
    let r = tx.handle(t, addr(UAS), Message::Response(response(&req, 180)));
    assert_eq!(r, Routed::ToTransaction(key.clone()));
    assert_eq!(tx.state(&key), Some("Proceeding"));
    assert!(
        matches!(&events(&mut tx)[..], [TxEvent::Response { response, .. }] if response.status == StatusCode::RINGING)
    );
    assert_eq!(tx.poll_timeout(), None, "A and B stop in Proceeding");

    let t = t0 + ms(200);
    tx.handle(t, addr(UAS), Message::Response(response(&req, 486)));
    assert!(
        matches!(&events(&mut tx)[..], [TxEvent::Response { response, .. }] if response.status == StatusCode::BUSY_HERE)
    );
    let sent = transmits(&mut tx, t);
    assert_eq!(sent.len(), 1);
    let Message::Request(ack) = parse(&sent[0]) else {
        panic!()
    };
    assert_eq!(ack.method, Method::ACK);
    assert_eq!(ack.uri, req.uri);
    assert_eq!(ack.headers.top_via().unwrap().branch(), Some("z9hG4bKc"));
    assert_eq!(ack.headers.via().unwrap().len(), 1);
    assert_eq!(ack.headers.to().unwrap().tag(), Some("b1"));
    assert_eq!(ack.headers.from().unwrap().tag(), Some("a1"));
    assert_eq!(ack.headers.call_id().unwrap(), "call-1@10.0.0.1");
    let cseq = ack.headers.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (1, Method::ACK));
    assert_eq!(
        ack.headers.get(&HeaderName::ROUTE),
        Some("<sip:proxy.example.com;lr>")
    );
    assert_eq!(tx.state(&key), Some("Completed"));
    assert_eq!(tx.poll_timeout(), Some(t + ms(32_000)), "Timer D");

    // A retransmitted 486: the same ACK again, nothing for the TU.
    let t2 = t0 + ms(700);
    tx.handle(t2, addr(UAS), Message::Response(response(&req, 486)));
    assert_eq!(transmits(&mut tx, t2), sent);
    assert_eq!(events(&mut tx), []);

    tx.handle_timeout(t + ms(31_999));
    assert_eq!(events(&mut tx), []);
    tx.handle_timeout(t + ms(32_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key }]);
}

#[test]
fn invite_client_2xx_passes_up_every_time_until_timer_m() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("INVITE", "z9hG4bKok", "UDP");
    let key = tx.send_request(t0, req.clone(), addr(UAS)).unwrap();
    let _ = transmits(&mut tx, t0);
    let ok = response(&req, 200);
    let t = t0 + ms(50);
    tx.handle(t, addr(UAS), Message::Response(ok.clone()));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Response {
            key: key.clone(),
            response: ok.clone()
        }]
    );
    assert_eq!(
        transmits(&mut tx, t),
        Vec::<Vec<u8>>::new(),
        "no ACK for 2xx"
    );
    assert_eq!(tx.state(&key), Some("Accepted"));
    assert_eq!(tx.poll_timeout(), Some(t + ms(32_000)), "Timer M");
    tx.handle(t0 + ms(550), addr(UAS), Message::Response(ok.clone()));
    assert_eq!(
        events(&mut tx).len(),
        1,
        "the retransmitted 2xx goes up too"
    );
    assert_eq!(transmits(&mut tx, t), Vec::<Vec<u8>>::new());
    tx.handle_timeout(t + ms(32_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key }]);
    let r = tx.handle(t + ms(32_001), addr(UAS), Message::Response(ok.clone()));
    assert_eq!(r, Routed::StrayResponse(ok));
}

#[test]
fn invite_server_absorbs_retransmissions_until_ack_then_timer_i() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("INVITE", "z9hG4bKs", "UDP");
    let inc = new_request(&mut tx, t0, &req);
    assert_eq!(inc.source, addr(UAC));
    let trying = transmits(&mut tx, t0);
    assert_eq!(start_line(&trying[0]), "SIP/2.0 100 Trying");
    assert_eq!(tx.poll_timeout(), None);

    // Retransmitted INVITE: the last provisional (100) again.
    let r = tx.handle(t0 + ms(500), addr(UAC), Message::Request(req.clone()));
    assert_eq!(r, Routed::ToTransaction(inc.key.clone()));
    assert_eq!(transmits(&mut tx, t0), trying);
    tx.respond(t0 + ms(600), &inc.key, &response(&req, 180))
        .unwrap();
    let ringing = transmits(&mut tx, t0);
    assert_eq!(start_line(&ringing[0]), "SIP/2.0 180 Ringing");
    tx.handle(t0 + ms(1500), addr(UAC), Message::Request(req.clone()));
    assert_eq!(transmits(&mut tx, t0), ringing);
    assert_eq!(events(&mut tx), []);

    let t = t0 + ms(2000);
    tx.respond(t, &inc.key, &response(&req, 486)).unwrap();
    let busy = transmits(&mut tx, t);
    assert_eq!(start_line(&busy[0]), "SIP/2.0 486 Busy Here");
    assert_eq!(
        tx.respond(t, &inc.key, &response(&req, 500)),
        Err(dialplane_signaling::transaction::RespondError::WrongState)
    );
    tx.handle_timeout(t + ms(500));
    assert_eq!(transmits(&mut tx, t), busy, "G at T1");
    // INVITE retransmission in Completed: the final response again.
    tx.handle(t + ms(600), addr(UAC), Message::Request(req.clone()));
    assert_eq!(transmits(&mut tx, t), busy);
    tx.handle_timeout(t + ms(1499));
    assert_eq!(transmits(&mut tx, t).len(), 0);
    tx.handle_timeout(t + ms(1500));
    assert_eq!(transmits(&mut tx, t), busy, "G at 3·T1");

    let ack = request("ACK", "z9hG4bKs", "UDP");
    let ta = t + ms(1600);
    let r = tx.handle(ta, addr(UAC), Message::Request(ack.clone()));
    assert_eq!(r, Routed::ToTransaction(inc.key.clone()));
    assert_eq!(events(&mut tx), [], "the ACK is absorbed");
    assert_eq!(tx.state(&inc.key), Some("Confirmed"));
    assert_eq!(tx.poll_timeout(), Some(ta + ms(5000)), "Timer I = T4");
    tx.handle(ta + ms(10), addr(UAC), Message::Request(ack));
    tx.handle_timeout(ta + ms(4999));
    assert_eq!(transmits(&mut tx, t).len(), 0, "no G after the ACK");
    assert_eq!(events(&mut tx), []);
    tx.handle_timeout(ta + ms(5000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key: inc.key }]);
    assert!(tx.is_empty());
}

#[test]
fn invite_server_2xx_accepted_timer_l_and_acks_go_up() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("INVITE", "z9hG4bK2xx", "UDP");
    let inc = new_request(&mut tx, t0, &req);
    let _ = transmits(&mut tx, t0);
    let ok = response(&req, 200);
    tx.respond(t0, &inc.key, &ok).unwrap();
    assert_eq!(transmits(&mut tx, t0), [ok.to_bytes()]);
    assert_eq!(tx.state(&inc.key), Some("Accepted"));
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)), "Timer L");
    // INVITE retransmission absorbed; the TU's own 2xx retransmission goes out.
    tx.handle(t0 + ms(500), addr(UAC), Message::Request(req.clone()));
    assert_eq!(transmits(&mut tx, t0).len(), 0);
    tx.respond(t0 + ms(500), &inc.key, &ok).unwrap();
    assert_eq!(transmits(&mut tx, t0), [ok.to_bytes()]);
    // An ACK for the 2xx with its own branch is stray (the TU's); one with the INVITE's goes up.
    let ack2xx = request("ACK", "z9hG4bKother", "UDP");
    assert_eq!(
        tx.handle(t0 + ms(600), addr(UAC), Message::Request(ack2xx.clone())),
        Routed::StrayAck(ack2xx)
    );
    let ack = request("ACK", "z9hG4bK2xx", "UDP");
    tx.handle(t0 + ms(700), addr(UAC), Message::Request(ack.clone()));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Ack {
            key: inc.key.clone(),
            request: ack
        }]
    );
    tx.handle_timeout(t0 + ms(32_000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key: inc.key }]);
}

#[test]
fn non_invite_client_final_then_timer_k() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("OPTIONS", "z9hG4bKnic", "UDP");
    let key = tx.send_request(t0, req.clone(), addr(UAS)).unwrap();
    let _ = transmits(&mut tx, t0);
    let ok = response(&req, 200);
    let t = t0 + ms(300);
    tx.handle(t, addr(UAS), Message::Response(ok.clone()));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Response {
            key: key.clone(),
            response: ok.clone()
        }]
    );
    assert_eq!(tx.state(&key), Some("Completed"));
    assert_eq!(tx.poll_timeout(), Some(t + ms(5000)), "Timer K = T4");
    tx.handle(t + ms(100), addr(UAS), Message::Response(ok));
    assert_eq!(events(&mut tx), [], "retransmitted final absorbed");
    assert_eq!(transmits(&mut tx, t).len(), 0);
    tx.handle_timeout(t + ms(5000));
    assert_eq!(events(&mut tx), [TxEvent::Terminated { key }]);
}

#[test]
fn non_invite_server_absorbs_and_resends_last_response_until_timer_j() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("OPTIONS", "z9hG4bKnis", "UDP");
    let inc = new_request(&mut tx, t0, &req);
    assert_eq!(transmits(&mut tx, t0).len(), 0, "no 100 for non-INVITE");
    assert_eq!(
        tx.handle(t0 + ms(500), addr(UAC), Message::Request(req.clone())),
        Routed::ToTransaction(inc.key.clone())
    );
    assert_eq!(
        transmits(&mut tx, t0).len(),
        0,
        "absorbed silently in Trying"
    );
    let t = t0 + ms(700);
    tx.respond(t, &inc.key, &response(&req, 200)).unwrap();
    let ok = transmits(&mut tx, t);
    assert_eq!(ok.len(), 1);
    assert_eq!(tx.state(&inc.key), Some("Completed"));
    tx.handle(t + ms(800), addr(UAC), Message::Request(req.clone()));
    assert_eq!(
        transmits(&mut tx, t),
        ok,
        "retransmission in Completed re-sends the 200"
    );
    assert_eq!(
        tx.respond(t, &inc.key, &response(&req, 200)),
        Err(dialplane_signaling::transaction::RespondError::WrongState)
    );
    assert_eq!(tx.poll_timeout(), Some(t + ms(32_000)), "Timer J = 64·T1");
    tx.handle_timeout(t + ms(32_000));
    assert_eq!(
        events(&mut tx),
        [TxEvent::Terminated {
            key: inc.key.clone()
        }]
    );
    assert_eq!(
        tx.respond(t, &inc.key, &response(&req, 200)),
        Err(dialplane_signaling::transaction::RespondError::NoTransaction)
    );
}

#[test]
fn cancel_is_its_own_transaction_and_names_its_invite() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let inv = request("INVITE", "z9hG4bKcan", "UDP");
    let Routed::NewRequest(i) = tx.handle(t0, addr(UAC), Message::Request(inv)) else {
        panic!()
    };
    let cancel = request("CANCEL", "z9hG4bKcan", "UDP");
    let Routed::NewRequest(c) = tx.handle(t0 + ms(10), addr(UAC), Message::Request(cancel)) else {
        panic!()
    };
    assert_ne!(c.key, i.key);
    assert_eq!(c.key.method(), &Method::CANCEL);
    assert_eq!(c.key.cancel_target(), Some(i.key.clone()));
    assert_eq!(c.cancel_target, Some(i.key.clone()));
    assert_eq!(i.key.cancel_target(), None);
    let lone = request("CANCEL", "z9hG4bKnone", "UDP");
    let Routed::NewRequest(l) = tx.handle(t0, addr(UAC), Message::Request(lone)) else {
        panic!()
    };
    assert_eq!(l.cancel_target, None);
}

#[test]
fn strays_and_malformed_are_reported_not_panicked() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let req = request("OPTIONS", "z9hG4bKstray", "UDP");
    let resp = response(&req, 200);
    assert_eq!(
        tx.handle(t0, addr(UAS), Message::Response(resp.clone())),
        Routed::StrayResponse(resp)
    );
    let old_resp = response(&request("OPTIONS", "rfc2543branch", "UDP"), 200);
    assert_eq!(
        tx.handle(t0, addr(UAS), Message::Response(old_resp)),
        Routed::Dropped(DropReason::Key(KeyError::NotRfc3261Branch))
    );
    let old = request("OPTIONS", "rfc2543branch", "UDP");
    assert_eq!(
        tx.handle(t0, addr(UAC), Message::Request(old)),
        Routed::Dropped(DropReason::Key(KeyError::NotRfc3261Branch))
    );
    let ack = request("ACK", "z9hG4bKnobody", "UDP");
    assert_eq!(
        tx.handle(t0, addr(UAC), Message::Request(ack.clone())),
        Routed::StrayAck(ack)
    );
    // The parser already rejects this; a message built in memory can still carry it.
    let mut bad = request("OPTIONS", "z9hG4bKm", "UDP");
    bad.headers.set(HeaderName::CSEQ, "1 INFO");
    assert_eq!(
        tx.handle(t0, addr(UAC), Message::Request(bad)),
        Routed::Dropped(DropReason::CSeqMismatch)
    );
    assert!(tx.is_empty());
    assert_eq!(events(&mut tx), []);
}

#[test]
fn send_request_generates_a_seeded_branch_when_missing() {
    let t0 = Instant::now();
    let mut a = Transactions::new(TimerConfig::default(), 42);
    let mut b = Transactions::new(TimerConfig::default(), 42);
    let ka = a
        .send_request(t0, request("OPTIONS", "old", "UDP"), addr(UAS))
        .unwrap();
    let kb = b
        .send_request(t0, request("OPTIONS", "old", "UDP"), addr(UAS))
        .unwrap();
    assert_eq!(ka, kb, "same seed, same branch");
    assert!(ka.branch().starts_with("z9hG4bK") && ka.branch().len() == 23);
    let sent = transmits(&mut a, t0);
    let Message::Request(r) = parse(&sent[0]) else {
        panic!()
    };
    assert_eq!(r.headers.top_via().unwrap().branch(), Some(ka.branch()));
    assert_eq!(
        a.send_request(t0, request("ACK", "z9hG4bKx", "UDP"), addr(UAS)),
        Err(dialplane_signaling::transaction::SendError::Ack)
    );
}

#[test]
fn transport_error_ends_the_transaction() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let key = tx
        .send_request(t0, request("OPTIONS", "z9hG4bKte", "UDP"), addr(UAS))
        .unwrap();
    tx.transport_error(&key);
    assert_eq!(
        events(&mut tx),
        [
            TxEvent::TransportError { key: key.clone() },
            TxEvent::Terminated { key }
        ]
    );
    assert_eq!(tx.poll_timeout(), None);
}

#[test]
fn an_unreachable_peer_ends_the_transactions_that_heard_nothing() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    let silent = request("INVITE", "z9hG4bKu1", "UDP");
    let answered = request("OPTIONS", "z9hG4bKu2", "UDP");
    let elsewhere = request("OPTIONS", "z9hG4bKu3", "UDP");
    let k1 = tx.send_request(t0, silent, addr(UAS)).unwrap();
    let k2 = tx.send_request(t0, answered.clone(), addr(UAS)).unwrap();
    let k3 = tx.send_request(t0, elsewhere, addr(UAC)).unwrap();
    tx.handle(t0, addr(UAS), Message::Response(response(&answered, 100)));
    transmits(&mut tx, t0);
    events(&mut tx);
    tx.unreachable(addr(UAS));
    assert_eq!(
        events(&mut tx),
        [
            TxEvent::TransportError { key: k1.clone() },
            TxEvent::Terminated { key: k1.clone() }
        ]
    );
    assert_eq!(tx.state(&k1), None);
    // A peer that answered was there; another destination is not concerned.
    assert_eq!(tx.state(&k2), Some("Proceeding"));
    assert_eq!(tx.state(&k3), Some("Trying"));
}

#[test]
fn random_messages_and_time_jumps_never_panic() {
    let t0 = Instant::now();
    let mut rng = StdRng::seed_from_u64(7);
    let mut tx = Transactions::new(TimerConfig::default(), 3);
    let methods = ["INVITE", "OPTIONS", "ACK", "CANCEL", "BYE", "INFO"];
    let branches = ["z9hG4bK1", "z9hG4bK2", "z9hG4bK3", "nocookie"];
    let transports = ["UDP", "TCP"];
    let mut keys: Vec<TransactionKey> = Vec::new();
    let mut now = t0;
    for _ in 0..20_000 {
        let m = methods[rng.random_range(0..methods.len())];
        let b = branches[rng.random_range(0..branches.len())];
        let tr = transports[rng.random_range(0..2)];
        let req = request(m, b, tr);
        match rng.random_range(0..8) {
            0 => {
                if let Ok(k) = tx.send_request(now, req, addr(UAS)) {
                    keys.push(k);
                }
            }
            1 => {
                if let Routed::NewRequest(i) = tx.handle(now, addr(UAC), Message::Request(req)) {
                    keys.push(i.key);
                }
            }
            2 => {
                let code = [100, 180, 200, 202, 302, 486, 500, 699][rng.random_range(0..8)];
                let _ = tx.handle(now, addr(UAS), Message::Response(response(&req, code)));
            }
            3 if !keys.is_empty() => {
                let k = keys[rng.random_range(0..keys.len())].clone();
                let code = [100, 180, 200, 486, 603][rng.random_range(0..5)];
                let _ = tx.respond(now, &k, &response(&req, code));
            }
            4 => {
                let mut bytes = req.to_bytes();
                for _ in 0..rng.random_range(1..5) {
                    let i = rng.random_range(0..bytes.len());
                    bytes[i] = rng.random();
                }
                if let Ok(msg) = Message::parse(&bytes)
                    && let Routed::NewRequest(i) = tx.handle(now, addr(UAC), msg)
                {
                    keys.push(i.key);
                }
            }
            5 if !keys.is_empty() => {
                let k = keys[rng.random_range(0..keys.len())].clone();
                tx.transport_error(&k);
            }
            6 => {
                // Jumps forwards and sometimes backwards (ignored).
                let j = rng.random_range(0..40_000u64);
                if rng.random_bool(0.1) {
                    now = now.checked_sub(ms(j)).unwrap_or(now).max(t0);
                } else {
                    now += ms(j);
                }
                tx.handle_timeout(now);
            }
            _ => {
                if let Some(at) = tx.poll_timeout() {
                    now = now.max(at);
                    tx.handle_timeout(now);
                }
            }
        }
        let _ = transmits(&mut tx, now);
        let _ = events(&mut tx);
    }
    // Server transactions wait for their TU; once it answers, everything ends.
    let req = request("OPTIONS", "z9hG4bK1", "UDP");
    for k in &keys {
        let _ = tx.respond(now, k, &response(&req, 500));
    }
    now += ms(100_000);
    tx.handle_timeout(now);
    assert!(tx.is_empty(), "{} transactions left", tx.len());
}

/// A lossy in-memory link between two endpoints with a fixed one-way latency.
struct Link {
    rng: StdRng,
    loss: f64,
    latency: Duration,
    in_flight: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
    sent: usize,
    lost: usize,
}

impl Link {
    fn send(&mut self, now: Instant, dest: SocketAddr, bytes: Vec<u8>) {
        self.sent += 1;
        if self.rng.random_bool(self.loss) {
            self.lost += 1;
        } else {
            self.in_flight.push_back((now + self.latency, dest, bytes));
        }
    }
}

#[derive(Default)]
struct Outcome {
    uac_finals: Vec<(Method, u16)>,
    timeouts: usize,
}

/// One UAC manager and one UAS manager; the clock jumps to the earliest deadline (timer or
/// delivery). The UAS TU answers INVITE with 486 and anything else with 200.
struct Pair {
    now: Instant,
    uac: Transactions,
    uas: Transactions,
    link: Link,
    out: Outcome,
}

impl Pair {
    fn new(seed: u64, loss: f64) -> Pair {
        Pair {
            now: Instant::now(),
            uac: Transactions::new(TimerConfig::default(), seed),
            uas: Transactions::new(TimerConfig::default(), seed ^ 0xFFFF),
            link: Link {
                rng: StdRng::seed_from_u64(seed),
                loss,
                latency: ms(20),
                in_flight: VecDeque::new(),
                sent: 0,
                lost: 0,
            },
            out: Outcome::default(),
        }
    }

    fn step(&mut self) {
        let now = self.now;
        while let Some(t) = self.uac.poll_transmit(now) {
            self.link.send(now, t.dest, t.bytes);
        }
        while let Some(t) = self.uas.poll_transmit(now) {
            self.link.send(now, t.dest, t.bytes);
        }
        while let Some(e) = self.uac.poll_event() {
            match e {
                TxEvent::Response { key, response } if response.status.is_final() => {
                    self.out
                        .uac_finals
                        .push((key.method().clone(), response.status.as_u16()));
                }
                TxEvent::Timeout { .. } => self.out.timeouts += 1,
                _ => {}
            }
        }
        while let Some(e) = self.uas.poll_event() {
            if let TxEvent::Timeout { .. } = e {
                self.out.timeouts += 1;
            }
        }
    }

    /// Runs until both sides are idle; returns the elapsed fake time.
    fn drive(&mut self) -> Duration {
        let t0 = self.now;
        for _ in 0..100_000 {
            self.step();
            let next = [
                self.uac.poll_timeout(),
                self.uas.poll_timeout(),
                self.link.in_flight.iter().map(|p| p.0).min(),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next else {
                return self.now - t0;
            };
            self.now = self.now.max(next);
            let now = self.now;
            let due: Vec<_> = {
                let (due, later): (Vec<_>, Vec<_>) =
                    self.link.in_flight.drain(..).partition(|p| p.0 <= now);
                self.link.in_flight = later.into();
                due
            };
            for (_, dest, bytes) in due {
                let Ok(msg) = Message::parse(&bytes) else {
                    panic!("we only send parseable messages")
                };
                if dest == addr(UAS) {
                    if let Routed::NewRequest(i) = self.uas.handle(now, addr(UAC), msg) {
                        let code = if i.request.method == Method::INVITE {
                            StatusCode::BUSY_HERE
                        } else {
                            StatusCode::OK
                        };
                        let resp = Response::for_request(&i.request, code).with_to_tag("uas");
                        self.uas.respond(now, &i.key, &resp).unwrap();
                    }
                } else {
                    let _ = self.uac.handle(now, addr(UAS), msg);
                }
            }
            self.uac.handle_timeout(now);
            self.uas.handle_timeout(now);
        }
        panic!("did not settle");
    }
}

#[test]
fn pair_invite_486_ack_and_options_200_complete_despite_30_percent_loss() {
    let mut total_lost = 0;
    for seed in 0..25 {
        let mut p = Pair::new(seed, 0.3);
        let now = p.now;
        p.uac
            .send_request(now, request("INVITE", "z9hG4bKpi", "UDP"), addr(UAS))
            .unwrap();
        p.uac
            .send_request(now, request("OPTIONS", "z9hG4bKpo", "UDP"), addr(UAS))
            .unwrap();
        let elapsed = p.drive();
        let mut finals = p.out.uac_finals.clone();
        finals.sort_by_key(|f| f.1);
        assert_eq!(
            finals,
            [(Method::OPTIONS, 200), (Method::INVITE, 486)],
            "seed {seed}: each final response reaches the UAC exactly once"
        );
        assert_eq!(p.out.timeouts, 0, "seed {seed}: no B/F/H timeout");
        assert!(p.uac.is_empty() && p.uas.is_empty(), "seed {seed}");
        assert!(
            elapsed >= ms(32_000),
            "OPTIONS server lingers Timer J = 32 s"
        );
        total_lost += p.link.lost;
    }
    assert!(total_lost > 0, "the link did drop packets");
}

#[test]
fn pair_without_loss_sends_exactly_the_minimum() {
    let mut p = Pair::new(1, 0.0);
    let now = p.now;
    p.uac
        .send_request(now, request("INVITE", "z9hG4bKq", "UDP"), addr(UAS))
        .unwrap();
    p.drive();
    // INVITE, 100, 486, ACK: 20 ms latency is under T1, so nothing is retransmitted.
    assert_eq!(p.link.sent, 4);
    assert_eq!(p.out.uac_finals, [(Method::INVITE, 486)]);
}

#[test]
fn transactions_retransmissions_and_timeouts_are_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::collections::HashMap;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let t0 = Instant::now();
        let mut tx = Transactions::new(TimerConfig::default(), 1);
        tx.send_request(t0, request("INVITE", "z9hG4bKm1", "UDP"), addr(UAS))
            .unwrap();
        tx.send_request(t0, request("OPTIONS", "z9hG4bKm2", "UDP"), addr(UAS))
            .unwrap();
        let inv = request("INVITE", "z9hG4bKm3", "UDP");
        let Routed::NewRequest(i) = tx.handle(t0, addr(UAC), Message::Request(inv.clone())) else {
            panic!()
        };
        tx.respond(t0, &i.key, &response(&inv, 486)).unwrap();
        let _ = tx.handle(
            t0,
            addr(UAC),
            Message::Request(request("BYE", "z9hG4bKm4", "UDP")),
        );
        run_to_quiet(&mut tx, t0);
    });
    let counters: HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((format!("{}{{{}}}", key.name(), labels.join(",")), n))
            }
            _ => None,
        })
        .collect();
    let want = [
        ("dialplane_sip_transactions_total{kind=invite_client}", 1),
        (
            "dialplane_sip_transactions_total{kind=non_invite_client}",
            1,
        ),
        ("dialplane_sip_transactions_total{kind=invite_server}", 1),
        (
            "dialplane_sip_transactions_total{kind=non_invite_server}",
            1,
        ),
        ("dialplane_sip_retransmissions_total{timer=A}", 6),
        ("dialplane_sip_retransmissions_total{timer=E}", 10),
        ("dialplane_sip_retransmissions_total{timer=G}", 10),
        ("dialplane_sip_transaction_timeouts_total{timer=B}", 1),
        ("dialplane_sip_transaction_timeouts_total{timer=F}", 1),
        ("dialplane_sip_transaction_timeouts_total{timer=H}", 1),
    ];
    for (k, n) in want {
        assert_eq!(counters.get(k), Some(&n), "{k}: {counters:?}");
    }
}

#[test]
fn time_going_backwards_is_ignored() {
    let t0 = Instant::now();
    let mut tx = Transactions::new(TimerConfig::default(), 1);
    tx.send_request(
        t0 + ms(1000),
        request("OPTIONS", "z9hG4bKb", "UDP"),
        addr(UAS),
    )
    .unwrap();
    let _ = transmits(&mut tx, t0);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(1500)));
    // A `now` before the last one seen counts as the last one: nothing fires early.
    tx.handle_timeout(t0);
    assert_eq!(transmits(&mut tx, t0).len(), 0);
    tx.handle_timeout(t0 + ms(1500));
    assert_eq!(transmits(&mut tx, t0).len(), 1);
    // A second call at the same instant is a no-op.
    tx.handle_timeout(t0 + ms(1500));
    assert_eq!(transmits(&mut tx, t0).len(), 0);
    assert_eq!(tx.poll_timeout(), Some(t0 + ms(2500)));
}

#[test]
fn transaction_modules_read_no_clock_and_no_rng() {
    let sources = [
        include_str!("../src/transaction/mod.rs"),
        include_str!("../src/transaction/timer.rs"),
        include_str!("../src/transaction/key.rs"),
        include_str!("../src/transaction/client.rs"),
        include_str!("../src/transaction/server.rs"),
    ];
    for src in sources {
        for banned in [
            "Instant::now",
            "SystemTime",
            "thread_rng",
            "rand::",
            "tokio",
            "std::net::UdpSocket",
        ] {
            assert!(!src.contains(banned), "{banned} in a transaction module");
        }
    }
}

#[test]
fn absurd_timer_values_disarm_instead_of_overflowing() {
    let t0 = Instant::now();
    let cfg = TimerConfig {
        t1: Duration::MAX,
        ..TimerConfig::default()
    };
    let mut tx = Transactions::new(cfg, 1);
    tx.send_request(t0, request("INVITE", "z9hG4bKbig", "UDP"), addr(UAS))
        .unwrap();
    assert_eq!(tx.poll_timeout(), None);
    tx.handle_timeout(t0 + ms(1));
    assert_eq!(transmits(&mut tx, t0).len(), 1, "only the first send");
}

/// Delivers everything `from` has queued to `to`; returns what `to` made of it.
fn deliver(from: &mut Transactions, to: &mut Transactions, src: &str, now: Instant) -> Vec<Routed> {
    transmits(from, now)
        .into_iter()
        .map(|b| to.handle(now, addr(src), parse(&b)))
        .collect()
}

#[test]
fn invite_cancelled_end_to_end() {
    let t0 = Instant::now();
    let mut uac = Transactions::new(TimerConfig::default(), 1);
    let mut uas = Transactions::new(TimerConfig::default(), 2);
    let inv = request("INVITE", "z9hG4bKx1", "UDP");
    let ik = uac.send_request(t0, inv.clone(), addr(UAS)).unwrap();
    let [Routed::NewRequest(si)] = &deliver(&mut uac, &mut uas, UAC, t0)[..] else {
        panic!()
    };
    // 100 Trying back: the UAC stops Timer A.
    deliver(&mut uas, &mut uac, UAS, t0);
    assert_eq!(uac.state(&ik), Some("Proceeding"));
    assert!(
        matches!(&events(&mut uac)[..], [TxEvent::Response { response, .. }] if response.status == StatusCode::TRYING)
    );

    let t = t0 + ms(1000);
    let ck = uac
        .send_request(t, request("CANCEL", "z9hG4bKx1", "UDP"), addr(UAS))
        .unwrap();
    assert_eq!(ck.cancel_target(), Some(ik.clone()));
    let [Routed::NewRequest(sc)] = &deliver(&mut uac, &mut uas, UAC, t)[..] else {
        panic!()
    };
    assert_eq!(sc.cancel_target, Some(si.key.clone()));
    uas.respond(t, &sc.key, &response(&sc.request, 200))
        .unwrap();
    uas.respond(t, &si.key, &response(&si.request, 487))
        .unwrap();
    deliver(&mut uas, &mut uac, UAS, t);
    let finals: Vec<(TransactionKey, u16)> = events(&mut uac)
        .into_iter()
        .filter_map(|e| match e {
            TxEvent::Response { key, response } => Some((key, response.status.as_u16())),
            _ => None,
        })
        .collect();
    assert_eq!(finals, [(ck.clone(), 200), (ik.clone(), 487)]);
    // The UAC's ACK for the 487 reaches the INVITE server transaction.
    assert_eq!(
        deliver(&mut uac, &mut uas, UAC, t),
        [Routed::ToTransaction(si.key.clone())]
    );
    assert_eq!(uas.state(&si.key), Some("Confirmed"));
    assert_eq!(uac.state(&ik), Some("Completed"));
    assert_eq!(uac.state(&ck), Some("Completed"));
}
