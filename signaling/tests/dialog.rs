//! Dialog layer tests: user agents (each a `Transactions` plus a `DialogLayer`) linked in
//! memory under one fake clock, with exact instants. A "proxy" address forks a request to
//! several user agents; a drop filter loses messages in flight.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dialplane_signaling::dialog::{
    Body, DialogConfig, DialogEvent, DialogId, DialogLayer, DialogState, InviteId, InviteRequest,
    Outgoing, Output, Reply, SessionTimer, TerminationReason,
};
use dialplane_signaling::message::{
    HeaderName, Message, Method, NameAddr, Response, StatusCode, Uri,
};
use dialplane_signaling::transaction::{
    IncomingRequest, Routed, TimerConfig, TransactionKey, Transactions, TxEvent,
};

const A: &str = "10.0.0.1:5060";
const B: &str = "10.0.0.2:5060";
const B2: &str = "10.0.0.3:5060";
const B3: &str = "10.0.0.4:5060";
const PROXY: &str = "10.0.0.9:5060";
const SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn uri(s: &str) -> Uri {
    Uri::parse(s).unwrap()
}

fn sdp() -> Body {
    Body::new("application/sdp", SDP)
}

fn config(host: &str) -> DialogConfig {
    DialogConfig::new(
        format!("SIP/2.0/UDP {host}"),
        uri(&format!("sip:ua@{host}")),
    )
}

struct Ua {
    addr: SocketAddr,
    tx: Transactions,
    dl: DialogLayer,
    events: Vec<(f64, DialogEvent)>,
    /// Answer every in-dialog request for the user: 200 (with SDP for INVITE), 202 for REFER.
    auto_answer: bool,
}

struct Sent {
    at: f64,
    from: SocketAddr,
    msg: Message,
}

type DropFn = Box<dyn FnMut(f64, SocketAddr, &Message) -> bool>;
type MangleFn = Box<dyn FnMut(&mut Message)>;

struct Net {
    t0: Instant,
    now: Instant,
    uas: Vec<Ua>,
    log: Vec<Sent>,
    fork: Vec<SocketAddr>,
    drop: DropFn,
    mangle: MangleFn,
    /// Mangled requests may fall outside any dialog: don't insist they are all ours.
    lenient: bool,
}

/// A `sip:` URI's host and port as an address (all test URIs are IP literals).
fn resolve(uri: &Uri) -> Option<SocketAddr> {
    let u = uri.as_sip()?;
    format!("{}:{}", u.host, u.port.unwrap_or(5060))
        .parse()
        .ok()
}

/// `METHOD` for a request, `CODE METHOD` for a response (CSeq method).
fn summary(msg: &Message) -> String {
    match msg {
        Message::Request(r) => r.method.to_string(),
        Message::Response(r) => {
            format!("{} {}", r.status.as_u16(), r.headers.cseq().unwrap().method)
        }
    }
}

impl Net {
    fn new(hosts: &[(&str, DialogConfig)]) -> Net {
        let t0 = Instant::now();
        let uas = hosts
            .iter()
            .enumerate()
            .map(|(i, (h, cfg))| Ua {
                addr: addr(h),
                tx: Transactions::new(cfg.timers, 100 + i as u64),
                dl: DialogLayer::new(cfg.clone(), 200 + i as u64),
                events: Vec::new(),
                auto_answer: false,
            })
            .collect();
        Net {
            t0,
            now: t0,
            uas,
            log: Vec::new(),
            fork: Vec::new(),
            drop: Box::new(|_, _, _| false),
            mangle: Box::new(|_| {}),
            lenient: false,
        }
    }

    fn pair() -> Net {
        Net::new(&[(A, config(A)), (B, config(B))])
    }

    fn secs(&self) -> f64 {
        (self.now - self.t0).as_secs_f64()
    }

    fn ua(&mut self, h: &str) -> &mut Ua {
        let a = addr(h);
        self.uas.iter_mut().find(|u| u.addr == a).unwrap()
    }

    /// Delivers messages until nothing moves.
    fn pump(&mut self) {
        let now = self.now;
        let at = self.secs();
        let lenient = self.lenient;
        for _ in 0..1000 {
            let mut queue = Vec::new();
            for ua in &mut self.uas {
                loop {
                    ua.dl.flush_into(now, &mut ua.tx, resolve);
                    let evs: Vec<TxEvent> = std::iter::from_fn(|| ua.tx.poll_event()).collect();
                    if evs.is_empty() {
                        break;
                    }
                    for e in evs {
                        ua.dl.handle_tx_event(now, e);
                    }
                }
                while let Some(t) = ua.tx.poll_transmit(now) {
                    queue.push((ua.addr, t.dest, t.bytes));
                }
                let mut answered = false;
                while let Some(e) = ua.dl.poll_event() {
                    if let (true, DialogEvent::Request { key, request, .. }) = (ua.auto_answer, &e)
                    {
                        let reply = if request.method == Method::INVITE {
                            Reply::new(StatusCode::OK).body(sdp())
                        } else if request.method == Method::REFER {
                            Reply::new(StatusCode::ACCEPTED)
                        } else {
                            Reply::new(StatusCode::OK)
                        };
                        // Mangled runs may end the dialog before the answer.
                        let r = ua.dl.respond(now, key, reply);
                        assert!(lenient || r.is_ok(), "{r:?}");
                        answered = true;
                    }
                    ua.events.push((at, e));
                }
                if answered {
                    ua.dl.flush_into(now, &mut ua.tx, resolve);
                    while let Some(t) = ua.tx.poll_transmit(now) {
                        queue.push((ua.addr, t.dest, t.bytes));
                    }
                }
            }
            if queue.is_empty() {
                return;
            }
            for (from, to, bytes) in queue {
                // Only mangled input can make a user agent send what does not parse (an echoed
                // header); the network drops it.
                let Ok(mut msg) = Message::parse(&bytes) else {
                    assert!(self.lenient, "{}", String::from_utf8_lossy(&bytes));
                    continue;
                };
                (self.mangle)(&mut msg);
                let dropped = (self.drop)(at, from, &msg);
                self.log.push(Sent {
                    at,
                    from,
                    msg: msg.clone(),
                });
                if dropped {
                    continue;
                }
                let targets = if to == addr(PROXY) {
                    self.fork.clone()
                } else {
                    vec![to]
                };
                for t in targets {
                    if let Some(ua) = self.uas.iter_mut().find(|u| u.addr == t) {
                        let routed = ua.tx.handle(now, from, msg.clone());
                        let rest: Option<IncomingRequest> = ua.dl.handle_routed(now, routed);
                        assert!(
                            self.lenient || rest.is_none(),
                            "not for the dialog layer: {rest:?}"
                        );
                    }
                }
            }
        }
        panic!("the network never went quiet");
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.uas
            .iter()
            .flat_map(|u| [u.tx.poll_timeout(), u.dl.poll_timeout()])
            .flatten()
            .min()
    }

    /// Runs every deadline up to `t` seconds, then sets the clock to `t`.
    fn run_until(&mut self, t: f64) {
        let end = self.t0 + Duration::from_secs_f64(t);
        for _ in 0..100_000 {
            match self.next_deadline() {
                Some(at) if at <= end => {
                    self.now = at.max(self.now);
                    let now = self.now;
                    for ua in &mut self.uas {
                        ua.tx.handle_timeout(now);
                        ua.dl.handle_timeout(now);
                    }
                    self.pump();
                }
                _ => break,
            }
        }
        self.now = end.max(self.now);
        self.pump();
    }

    fn events(&mut self, h: &str) -> Vec<(f64, DialogEvent)> {
        std::mem::take(&mut self.ua(h).events)
    }

    /// What `h` sent, as (seconds, summary).
    fn sent_by(&self, h: &str) -> Vec<(f64, String)> {
        let a = addr(h);
        self.log
            .iter()
            .filter(|s| s.from == a)
            .map(|s| (round(s.at), summary(&s.msg)))
            .collect()
    }

    /// The instants at which `h` sent messages with this summary.
    fn instants(&self, h: &str, what: &str) -> Vec<f64> {
        self.sent_by(h)
            .into_iter()
            .filter(|(_, s)| s == what)
            .map(|(t, _)| t)
            .collect()
    }

    /// The last message `h` sent with this summary.
    fn last(&self, h: &str, what: &str) -> Message {
        let a = addr(h);
        self.log
            .iter()
            .rev()
            .find(|s| s.from == a && summary(&s.msg) == what)
            .map(|s| s.msg.clone())
            .unwrap()
    }

    fn inject(&mut self, from: &str, to: &str, msg: Message) {
        let now = self.now;
        let from = addr(from);
        let ua = self.ua(to);
        let routed = ua.tx.handle(now, from, msg);
        assert!(ua.dl.handle_routed(now, routed).is_none());
        self.pump();
    }

    /// A calls `to` (an address or the proxy): INVITE with SDP.
    fn invite(&mut self, to: &str) -> InviteId {
        let now = self.now;
        let spec = InviteRequest {
            body: Some(sdp()),
            ..InviteRequest::new(
                uri(&format!("sip:bob@{to}")),
                NameAddr::new(uri("sip:alice@example.com")),
                NameAddr::new(uri("sip:bob@example.com")),
            )
        };
        let id = self.ua(A).dl.invite(now, spec).unwrap();
        self.pump();
        id
    }

    /// The INVITE `h` was offered.
    fn incoming(&mut self, h: &str) -> InviteId {
        let evs = self.events(h);
        evs.iter()
            .find_map(|(_, e)| match e {
                DialogEvent::Invite { invite, .. } => Some(*invite),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no INVITE at {h}: {evs:?}"))
    }

    fn answer(&mut self, h: &str, inv: InviteId, reply: Reply) -> DialogId {
        let now = self.now;
        let d = self
            .ua(h)
            .dl
            .respond_invite(now, inv, reply)
            .unwrap()
            .unwrap();
        self.pump();
        d
    }

    /// A call from A to B, answered and ACKed: (A's dialog, B's dialog).
    fn call(&mut self) -> (DialogId, DialogId) {
        let inv = self.invite(B);
        let b_inv = self.incoming(B);
        let db = self.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp()));
        let da = answered(&self.events(A), inv);
        assert!(
            matches!(self.events(B)[..], [(_, DialogEvent::Acked { dialog, .. })] if dialog == db)
        );
        (da, db)
    }
}

fn round(t: f64) -> f64 {
    (t * 1000.0).round() / 1000.0
}

fn answered(evs: &[(f64, DialogEvent)], inv: InviteId) -> DialogId {
    evs.iter()
        .find_map(|(_, e)| match e {
            DialogEvent::Answered { invite, dialog, .. } if *invite == inv => Some(*dialog),
            _ => None,
        })
        .unwrap_or_else(|| panic!("not answered: {evs:?}"))
}

fn terminations(evs: &[(f64, DialogEvent)]) -> Vec<(f64, DialogId, TerminationReason)> {
    evs.iter()
        .filter_map(|(t, e)| match e {
            DialogEvent::Terminated { dialog, reason, .. } => Some((round(*t), *dialog, *reason)),
            _ => None,
        })
        .collect()
}

fn request_of(m: &Message) -> &dialplane_signaling::message::Request {
    m.as_request().unwrap()
}

#[test]
fn invite_ringing_answer_ack_bye() {
    let mut net = Net::pair();
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let db = net.answer(B, b_inv, Reply::new(StatusCode::RINGING));
    let evs = net.events(A);
    let [
        (
            _,
            DialogEvent::Progress {
                invite,
                dialog: Some(da),
                response,
            },
        ),
    ] = &evs[..]
    else {
        panic!("{evs:?}")
    };
    assert_eq!((*invite, response.status), (inv, StatusCode::RINGING));
    let da = *da;
    assert_eq!(net.ua(A).dl.dialog(da).unwrap().state(), DialogState::Early);
    assert_eq!(
        net.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp())),
        db
    );
    assert_eq!(answered(&net.events(A), inv), da);
    assert!(matches!(net.events(B)[..], [(_, DialogEvent::Acked { dialog, .. })] if dialog == db));

    // The two ends agree on the dialog id, mirrored.
    let ka = net.ua(A).dl.dialog(da).unwrap().key().clone();
    let kb = net.ua(B).dl.dialog(db).unwrap().key().clone();
    assert_eq!(
        (&ka.call_id, &ka.local_tag, &ka.remote_tag),
        (&kb.call_id, &kb.remote_tag, &kb.local_tag)
    );
    let a = net.ua(A).dl.dialog(da).unwrap();
    assert_eq!(a.state(), DialogState::Confirmed);
    assert_eq!(a.remote_target().to_string(), "sip:ua@10.0.0.2:5060");
    assert_eq!(a.local_seq(), 1);

    let now = net.now;
    net.ua(A).dl.bye(now, da).unwrap();
    net.pump();
    assert_eq!(
        terminations(&net.events(A)),
        [(0.0, da, TerminationReason::LocalBye)]
    );
    assert_eq!(
        terminations(&net.events(B)),
        [(0.0, db, TerminationReason::RemoteBye)]
    );
    let sent_a: Vec<String> = net.sent_by(A).into_iter().map(|(_, s)| s).collect();
    let sent_b: Vec<String> = net.sent_by(B).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sent_a, ["INVITE", "ACK", "BYE"]);
    assert_eq!(
        sent_b,
        ["100 INVITE", "180 INVITE", "200 INVITE", "200 BYE"]
    );
    let bye = net.last(A, "BYE");
    let bye = request_of(&bye);
    assert_eq!(bye.headers.cseq().unwrap().seq, 2);
    assert_eq!(bye.uri.to_string(), "sip:ua@10.0.0.2:5060");
    let ack = net.last(A, "ACK");
    assert_eq!(request_of(&ack).headers.cseq().unwrap().seq, 1);
    assert!(net.ua(A).dl.is_empty() && net.ua(B).dl.is_empty());
    // BYE again: the dialog is gone.
    assert!(net.ua(A).dl.bye(now, da).is_err());
}

#[test]
fn forked_invite_two_early_dialogs_late_200_acked_and_byed() {
    let mut net = Net::new(&[
        (A, config(A)),
        (B, config(B)),
        (B2, config(B2)),
        (B3, config(B3)),
    ]);
    net.fork = vec![addr(B), addr(B2), addr(B3)];
    let inv = net.invite(PROXY);
    let (i1, i2, i3) = (net.incoming(B), net.incoming(B2), net.incoming(B3));
    net.answer(B, i1, Reply::new(StatusCode::RINGING));
    let d2 = net.answer(B2, i2, Reply::new(StatusCode::RINGING));
    net.answer(B3, i3, Reply::new(StatusCode::RINGING));
    let early: Vec<DialogId> = net
        .events(A)
        .iter()
        .map(|(_, e)| match e {
            DialogEvent::Progress {
                dialog: Some(d), ..
            } => *d,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(early.len(), 3);
    assert_eq!(net.ua(A).dl.invite_dialogs(inv).len(), 3);
    let tags: std::collections::HashSet<String> = early
        .iter()
        .map(|d| net.uas[0].dl.dialog(*d).unwrap().key().remote_tag.clone())
        .collect();
    assert_eq!(tags.len(), 3, "three To tags");

    // The first 200 confirms its dialog.
    net.answer(B, i1, Reply::new(StatusCode::OK).body(sdp()));
    let winner = answered(&net.events(A), inv);
    assert_eq!(winner, early[0]);

    // A late 200 from the second fork: ACK, then BYE.
    net.run_until(1.0);
    net.answer(B2, i2, Reply::new(StatusCode::OK).body(sdp()));
    let evs = net.events(A);
    assert!(matches!(
        &evs[0],
        (_, DialogEvent::LateAnswer { invite, dialog, .. }) if *invite == inv && *dialog == early[1]
    ));
    assert_eq!(
        terminations(&evs),
        [(1.0, early[1], TerminationReason::LateAnswer)]
    );
    let to_b2: Vec<String> = net
        .log
        .iter()
        .filter(|s| {
            s.from == addr(A)
                && s.msg
                    .as_request()
                    .is_some_and(|r| r.uri.to_string() == "sip:ua@10.0.0.3:5060")
        })
        .map(|s| summary(&s.msg))
        .collect();
    assert_eq!(to_b2, ["ACK", "BYE"]);
    let evs = net.events(B2);
    assert!(matches!(evs[0], (_, DialogEvent::Acked { dialog, .. }) if dialog == d2));
    assert_eq!(
        terminations(&evs),
        [(1.0, d2, TerminationReason::RemoteBye)]
    );

    // The third fork never answers: its early dialog ends with the INVITE transaction
    // (Timer M, 64·T1 after the first 2xx).
    net.run_until(40.0);
    assert_eq!(
        terminations(&net.events(A)),
        [(32.0, early[2], TerminationReason::ForkLost)]
    );
    assert_eq!(net.ua(A).dl.len(), 1);
    assert_eq!(
        net.ua(A).dl.dialog(winner).unwrap().state(),
        DialogState::Confirmed
    );
}

#[test]
fn uas_retransmits_2xx_until_ack_then_gives_up_with_bye() {
    let mut net = Net::pair();
    net.drop = Box::new(|_, _, m| m.as_request().is_some_and(|r| r.method == Method::ACK));
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let db = net.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp()));
    let da = answered(&net.events(A), inv);
    net.run_until(40.0);
    assert_eq!(
        net.instants(B, "200 INVITE"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(net.instants(B, "BYE"), [32.0]);
    assert_eq!(
        terminations(&net.events(B)),
        [(32.0, db, TerminationReason::NoAck)]
    );
    assert_eq!(
        terminations(&net.events(A)),
        [(32.0, da, TerminationReason::RemoteBye)]
    );
    // The UAC re-sent the same ACK for every retransmission.
    let acks: Vec<_> = net
        .log
        .iter()
        .filter(|s| summary(&s.msg) == "ACK")
        .collect();
    assert_eq!(acks.len(), 11);
    assert!(acks.iter().all(|s| s.msg == acks[0].msg));
}

fn uac_t1_one_second() -> DialogConfig {
    let mut c = config(A);
    c.timers = TimerConfig {
        t1: Duration::from_secs(1),
        ..TimerConfig::default()
    };
    c
}

#[test]
fn prack_for_each_reliable_provisional_in_order() {
    // The UAC's T1 is 1 s so its PRACK retransmissions (1, 3 s) never coincide with the UAS's
    // 183 retransmissions (0.5, 1.5, 3.5 s); PRACKs before 2 s are lost.
    let mut net = Net::new(&[(A, uac_t1_one_second()), (B, config(B))]);
    net.drop =
        Box::new(|t, _, m| t < 2.0 && m.as_request().is_some_and(|r| r.method == Method::PRACK));
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let now = net.now;
    let db = net
        .ua(B)
        .dl
        .respond_invite(
            now,
            b_inv,
            Reply::new(StatusCode::SESSION_PROGRESS)
                .reliable()
                .body(sdp()),
        )
        .unwrap()
        .unwrap();
    // A second reliable provisional waits for the first PRACK.
    net.ua(B)
        .dl
        .respond_invite(now, b_inv, Reply::new(StatusCode::RINGING).reliable())
        .unwrap();
    net.pump();
    net.run_until(5.0);
    assert_eq!(net.instants(B, "183 INVITE"), [0.0, 0.5, 1.5]);
    assert_eq!(net.instants(A, "PRACK"), [0.0, 1.0, 3.0, 3.0]);
    assert_eq!(net.instants(B, "180 INVITE"), [3.0]);
    assert_eq!(net.instants(B, "200 PRACK"), [3.0, 3.0]);

    let r183 = net
        .log
        .iter()
        .find(|s| summary(&s.msg) == "183 INVITE")
        .unwrap();
    let r183 = r183.msg.as_response().unwrap();
    assert_eq!(r183.headers.get(&HeaderName::REQUIRE), Some("100rel"));
    let rseq: u32 = r183
        .headers
        .get(&HeaderName::RSEQ)
        .unwrap()
        .parse()
        .unwrap();
    let r180 = net.last(B, "180 INVITE");
    assert_eq!(
        r180.headers().get(&HeaderName::RSEQ),
        Some((rseq + 1).to_string().as_str())
    );
    // One PRACK transaction per provisional (the 1 s and first 3 s sends are retransmissions).
    let pracks: Vec<(u32, String)> = net
        .log
        .iter()
        .filter(|s| summary(&s.msg) == "PRACK")
        .map(|s| {
            let h = s.msg.headers();
            (
                h.cseq().unwrap().seq,
                h.get(&HeaderName::RACK).unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        pracks,
        [
            (2, format!("{rseq} 1 INVITE")),
            (2, format!("{rseq} 1 INVITE")),
            (2, format!("{rseq} 1 INVITE")),
            (3, format!("{} 1 INVITE", rseq + 1)),
        ]
    );
    // Retransmitted 183s were not reported twice.
    let progress = net
        .events(A)
        .into_iter()
        .filter(|(_, e)| matches!(e, DialogEvent::Progress { .. }))
        .count();
    assert_eq!(progress, 2);
    let pracks_seen = net
        .events(B)
        .into_iter()
        .filter(|(_, e)| matches!(e, DialogEvent::Prack { dialog, .. } if *dialog == db))
        .count();
    assert_eq!(pracks_seen, 2);

    // An out-of-order RSeq (a gap) is discarded: no event, no PRACK.
    let mut skip = r180.as_response().unwrap().clone();
    skip.headers.set(HeaderName::RSEQ, (rseq + 5).to_string());
    net.inject(B, A, Message::Response(skip));
    assert!(net.events(A).is_empty());
    assert_eq!(net.instants(A, "PRACK").len(), 4);

    net.answer(B, b_inv, Reply::new(StatusCode::OK));
    answered(&net.events(A), inv);
}

#[test]
fn reliable_provisional_without_prack_gives_up_at_64_t1() {
    let mut net = Net::new(&[(A, uac_t1_one_second()), (B, config(B))]);
    net.drop = Box::new(|_, _, m| m.as_request().is_some_and(|r| r.method == Method::PRACK));
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let db = net.answer(
        B,
        b_inv,
        Reply::new(StatusCode::SESSION_PROGRESS).reliable(),
    );
    net.run_until(40.0);
    assert_eq!(
        net.instants(B, "183 INVITE"),
        [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    );
    assert_eq!(net.instants(B, "504 INVITE"), [32.0]);
    assert_eq!(
        terminations(&net.events(B)),
        [(32.0, db, TerminationReason::NoPrack)]
    );
    let evs = net.events(A);
    assert!(evs.iter().any(|(t, e)| *t == 32.0
        && matches!(e, DialogEvent::Failed { invite, response: Some(r) } if *invite == inv && r.status.as_u16() == 504)));
}

#[test]
fn reinvite_glare_491_then_retries_within_rfc_ranges() {
    for seed in 0..5u64 {
        let mut net = Net::pair();
        // Different seeds move the random delays around.
        net.uas[0].dl = DialogLayer::new(config(A), 1000 + seed);
        net.uas[1].dl = DialogLayer::new(config(B), 2000 + seed);
        let (da, db) = net.call();
        net.ua(A).auto_answer = true;
        net.ua(B).auto_answer = true;
        net.run_until(10.0);
        let now = net.now;
        let reinvite = || Outgoing::new(Method::INVITE).body(sdp());
        net.ua(A).dl.request(now, da, reinvite()).unwrap();
        net.ua(B).dl.request(now, db, reinvite()).unwrap();
        // Only one INVITE transaction at a time per dialog.
        assert!(net.ua(A).dl.request(now, da, reinvite()).is_err());
        net.pump();
        assert_eq!(net.instants(A, "491 INVITE"), [10.0]);
        assert_eq!(net.instants(B, "491 INVITE"), [10.0]);
        net.run_until(20.0);
        // A created the Call-ID: 2.1–4 s; B did not: 0–2 s; both in 10 ms steps.
        let a_retry = net.instants(A, "INVITE")[2] - 10.0;
        let b_retry = net.instants(B, "INVITE")[1] - 10.0;
        assert!(
            (2.1..=4.0).contains(&round(a_retry)),
            "A retried after {a_retry}"
        );
        assert!(
            (0.0..=2.0).contains(&round(b_retry)),
            "B retried after {b_retry}"
        );
        for t in [a_retry, b_retry] {
            let ms = (t * 1000.0).round() as u64;
            assert_eq!(ms % 10, 0);
        }
        // Both retries succeeded and were ACKed.
        for h in [A, B] {
            let evs = net.events(h);
            let oks = evs
                .iter()
                .filter(|(_, e)| matches!(e, DialogEvent::Response { response, .. } if response.status == StatusCode::OK))
                .count();
            assert_eq!(oks, 1, "{h}: {evs:?}");
        }
        assert_eq!(net.instants(A, "ACK").len(), 3);
    }
}

#[test]
fn update_info_refer_and_notify_sipfrag() {
    let mut net = Net::pair();
    let (da, db) = net.call();
    net.ua(B).auto_answer = true;
    let now = net.now;
    net.ua(A)
        .dl
        .request(now, da, Outgoing::new(Method::UPDATE).body(sdp()))
        .unwrap();
    net.ua(A)
        .dl
        .request(
            now,
            da,
            Outgoing::new(Method::INFO).body(Body::new(
                "application/dtmf-relay",
                "Signal=5\r\nDuration=160\r\n",
            )),
        )
        .unwrap();
    net.pump();
    let evs = net.events(B);
    let got: Vec<(Method, Vec<u8>)> = evs
        .iter()
        .filter_map(|(_, e)| match e {
            DialogEvent::Request {
                dialog, request, ..
            } if *dialog == db => Some((request.method.clone(), request.body.to_vec())),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            (Method::UPDATE, SDP.as_bytes().to_vec()),
            (Method::INFO, b"Signal=5\r\nDuration=160\r\n".to_vec())
        ]
    );
    let info = net.last(A, "INFO");
    assert_eq!(
        info.headers().get(&HeaderName::CONTENT_TYPE),
        Some("application/dtmf-relay")
    );
    let oks: Vec<(Method, u16)> = net
        .events(A)
        .iter()
        .filter_map(|(_, e)| match e {
            DialogEvent::Response { response, .. } => Some((
                response.headers.cseq().unwrap().method,
                response.status.as_u16(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(oks, [(Method::UPDATE, 200), (Method::INFO, 200)]);

    // REFER from A; B accepts (202) and reports progress with NOTIFY.
    let now = net.now;
    net.ua(A)
        .dl
        .refer(now, da, &NameAddr::new(uri("sip:carol@example.com")))
        .unwrap();
    net.pump();
    let refer = net.last(A, "REFER");
    assert_eq!(
        refer.headers().get(&HeaderName::REFER_TO),
        Some("<sip:carol@example.com>")
    );
    let refer_seq = refer.headers().cseq().unwrap().seq;
    assert_eq!(net.instants(B, "202 REFER"), [0.0]);
    net.events(A);
    net.ua(B)
        .dl
        .notify_refer(now, db, StatusCode::TRYING)
        .unwrap();
    net.ua(B).dl.notify_refer(now, db, StatusCode::OK).unwrap();
    net.pump();
    let notify = net.last(B, "NOTIFY");
    let h = notify.headers();
    assert_eq!(
        h.get(&HeaderName::EVENT),
        Some(format!("refer;id={refer_seq}").as_str())
    );
    assert_eq!(
        h.get(&HeaderName::CONTENT_TYPE),
        Some("message/sipfrag;version=2.0")
    );
    assert_eq!(
        h.get(&HeaderName::SUBSCRIPTION_STATE),
        Some("terminated;reason=noresource")
    );
    assert_eq!(&request_of(&notify).body[..], b"SIP/2.0 200 OK\r\n");
    let statuses: Vec<(u16, bool)> = net
        .events(A)
        .iter()
        .filter_map(|(_, e)| match e {
            DialogEvent::ReferStatus {
                status, terminated, ..
            } => Some((status.as_u16(), *terminated)),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [(100, false), (200, true)]);
    assert_eq!(net.instants(A, "200 NOTIFY").len(), 2);
}

#[test]
fn cseq_out_of_order_gets_500_and_unknown_dialog_481() {
    let mut net = Net::pair();
    let (da, _db) = net.call();
    net.ua(B).auto_answer = true;
    let now = net.now;
    for _ in 0..2 {
        net.ua(A)
            .dl
            .request(now, da, Outgoing::new(Method::INFO))
            .unwrap();
    }
    net.pump();
    assert_eq!(net.ua(B).dl.dialog(_db).unwrap().remote_seq(), Some(3));
    let info = net.last(A, "INFO");
    let mut old = request_of(&info).clone();
    old.headers.set(HeaderName::CSEQ, "2 INFO");
    old.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKold",
    );
    net.inject(A, B, Message::Request(old.clone()));
    assert_eq!(net.instants(B, "500 INFO"), [0.0]);
    let mut stranger = old;
    stranger.headers.set(HeaderName::CSEQ, "9 INFO");
    stranger.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKstranger",
    );
    let mut to = stranger.headers.to().unwrap();
    to.params.retain(|p| p.name != "tag");
    to.params.push(dialplane_signaling::message::Param::new(
        "tag",
        Some("nope"),
    ));
    stranger.headers.set(HeaderName::TO, to.to_string());
    net.inject(A, B, Message::Request(stranger));
    assert_eq!(net.instants(B, "481 INFO"), [0.0]);
    // Neither touched the dialog.
    assert_eq!(net.ua(B).dl.dialog(_db).unwrap().remote_seq(), Some(3));
}

#[test]
fn session_timer_refresh_at_half_and_bye_at_expiry_when_refresh_lost() {
    let mut ca = config(A);
    let mut cb = config(B);
    ca.session_expires = Some(90);
    cb.session_expires = Some(90);
    let mut net = Net::new(&[(A, ca), (B, cb)]);
    let (da, db) = net.call();
    assert_eq!(
        net.ua(A).dl.dialog(da).unwrap().session_timer(),
        Some(SessionTimer {
            interval: 90,
            we_refresh: true
        })
    );
    assert_eq!(
        net.ua(B).dl.dialog(db).unwrap().session_timer(),
        Some(SessionTimer {
            interval: 90,
            we_refresh: false
        })
    );
    let ok = net.last(B, "200 INVITE");
    assert_eq!(
        ok.headers().get(&HeaderName::SESSION_EXPIRES),
        Some("90;refresher=uac")
    );
    assert_eq!(ok.headers().get(&HeaderName::REQUIRE), Some("timer"));
    // Refreshes from t = 50 s on are lost.
    net.drop =
        Box::new(|t, _, m| t > 50.0 && m.as_request().is_some_and(|r| r.method == Method::UPDATE));
    net.run_until(120.0);
    let updates: Vec<(f64, u32)> = net
        .log
        .iter()
        .filter(|s| s.from == addr(A) && summary(&s.msg) == "UPDATE")
        .map(|s| (round(s.at), s.msg.headers().cseq().unwrap().seq))
        .collect();
    assert_eq!(updates[0], (45.0, 2));
    assert_eq!(updates[1], (90.0, 3));
    assert_eq!(
        net.last(A, "UPDATE")
            .headers()
            .get(&HeaderName::SESSION_EXPIRES),
        Some("90;refresher=uac")
    );
    assert_eq!(net.instants(B, "200 UPDATE"), [45.0]);
    // B expects a refresh by 45 + 90 − min(32, 30) = 105 s.
    assert_eq!(net.instants(B, "BYE"), [105.0]);
    assert_eq!(
        terminations(&net.events(B)),
        [(105.0, db, TerminationReason::SessionExpired)]
    );
    let evs = net.events(A);
    assert!(evs.iter().any(|(t, e)| *t == 45.0
        && matches!(
            e,
            DialogEvent::Refreshed {
                timer: Some(SessionTimer {
                    interval: 90,
                    we_refresh: true
                }),
                ..
            }
        )));
    assert_eq!(
        terminations(&evs),
        [(105.0, da, TerminationReason::RemoteBye)]
    );
}

#[test]
fn session_interval_too_small_gets_422_and_the_uac_retries_with_min_se() {
    let mut ca = config(A);
    ca.session_expires = Some(90);
    let mut cb = config(B);
    cb.min_se = 120;
    let mut net = Net::new(&[(A, ca), (B, cb)]);
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let sent: Vec<String> = net.sent_by(A).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sent, ["INVITE", "ACK", "INVITE"]);
    let r422 = net.last(B, "422 INVITE");
    assert_eq!(r422.headers().get(&HeaderName::MIN_SE), Some("120"));
    let retry = net.last(A, "INVITE");
    let h = retry.headers();
    assert_eq!(h.cseq().unwrap().seq, 2);
    assert_eq!(h.get(&HeaderName::SESSION_EXPIRES), Some("120"));
    assert_eq!(h.get(&HeaderName::MIN_SE), Some("120"));
    let db = net.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp()));
    let da = answered(&net.events(A), inv);
    assert_eq!(
        net.ua(A).dl.dialog(da).unwrap().session_timer(),
        Some(SessionTimer {
            interval: 120,
            we_refresh: true
        })
    );
    assert_eq!(
        net.ua(B).dl.dialog(db).unwrap().session_timer(),
        Some(SessionTimer {
            interval: 120,
            we_refresh: false
        })
    );
    assert_eq!(net.ua(A).dl.dialog(da).unwrap().local_seq(), 2);
}

#[test]
fn cancel_before_and_after_provisional() {
    let mut net = Net::pair();
    let now = net.now;
    let spec = InviteRequest {
        body: Some(sdp()),
        ..InviteRequest::new(
            uri(&format!("sip:bob@{B}")),
            NameAddr::new(uri("sip:alice@example.com")),
            NameAddr::new(uri("sip:bob@example.com")),
        )
    };
    // B's answers are lost at first: A has no provisional response yet.
    let b_addr = addr(B);
    net.drop = Box::new(move |_, from, _| from == b_addr);
    let inv = net.ua(A).dl.invite(now, spec).unwrap();
    net.pump();
    net.ua(A)
        .dl
        .cancel(
            now,
            inv,
            Some("SIP;cause=200;text=\"Call completed elsewhere\"".into()),
        )
        .unwrap();
    net.pump();
    assert!(
        net.instants(A, "CANCEL").is_empty(),
        "no CANCEL before a provisional (§9.1)"
    );
    // The INVITE retransmitted at 0.5 s gets B's 100 Trying through: a provisional like any
    // other, so the CANCEL leaves with it (no 180 needed).
    net.drop = Box::new(|_, _, _| false);
    net.run_until(0.5);
    let evs = net.events(B);
    let b_inv = evs
        .iter()
        .find_map(|(_, e)| match e {
            DialogEvent::Invite { invite, .. } => Some(*invite),
            _ => None,
        })
        .expect("B got the INVITE");
    assert_eq!(net.instants(A, "CANCEL"), [0.5]);
    let cancel = net.last(A, "CANCEL");
    assert_eq!(
        cancel.headers().get(&HeaderName::REASON),
        Some("SIP;cause=200;text=\"Call completed elsewhere\"")
    );
    assert_eq!(net.instants(B, "200 CANCEL"), [0.5]);
    assert_eq!(net.instants(B, "487 INVITE"), [0.5]);
    assert!(
        evs.iter()
            .any(|(_, e)| matches!(e, DialogEvent::Cancelled { invite } if *invite == b_inv))
    );
    let evs = net.events(A);
    assert!(evs.iter().any(|(_, e)| matches!(e, DialogEvent::Failed { response: Some(r), .. } if r.status.as_u16() == 487)));
    assert!(net.ua(A).dl.is_empty() && net.ua(B).dl.is_empty());
}

/// Route sets from Record-Route, checked on the requests the layer builds (no network).
mod route_sets {
    use super::*;
    use dialplane_signaling::message::Request;

    fn layer(host: &str) -> DialogLayer {
        DialogLayer::new(config(host), 7)
    }

    fn first_request(dl: &mut DialogLayer) -> (TransactionKey, Request, Uri) {
        loop {
            match dl.poll_output() {
                Some(Output::Request {
                    key,
                    request,
                    next_hop,
                }) => return (key, request, next_hop),
                Some(_) => continue,
                None => panic!("no request"),
            }
        }
    }

    /// A's dialog after a 200 with these Record-Route values; the BYE it then builds.
    fn uac_bye(record_route: &[&str]) -> (Request, Uri) {
        let t = Instant::now();
        let mut a = layer(A);
        let inv = a
            .invite(
                t,
                InviteRequest::new(
                    uri("sip:bob@example.com"),
                    NameAddr::new(uri("sip:alice@example.com")),
                    NameAddr::new(uri("sip:bob@example.com")),
                ),
            )
            .unwrap();
        let (key, invite, _) = first_request(&mut a);
        let mut ok = Response::for_request(&invite, StatusCode::OK)
            .with_to_tag("bt")
            .with_header(HeaderName::CONTACT, "<sip:bob@10.0.0.2:5070>");
        for rr in record_route {
            ok = ok.with_header(HeaderName::RECORD_ROUTE, rr);
        }
        a.handle_tx_event(t, TxEvent::Response { key, response: ok });
        let d = answered(&[(0.0, a.poll_event().unwrap())], inv);
        let Some(Output::Ack { request: ack, .. }) = a.poll_output() else {
            panic!("no ACK")
        };
        assert_eq!(ack.headers.cseq().unwrap().seq, 1);
        a.bye(t, d).unwrap();
        let (_, bye, hop) = first_request(&mut a);
        (bye, hop)
    }

    fn routes(r: &Request) -> Vec<String> {
        r.headers
            .route()
            .unwrap()
            .iter()
            .map(|n| n.uri.to_string())
            .collect()
    }

    #[test]
    fn uac_loose_routes_reversed() {
        let (bye, hop) = uac_bye(&["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]);
        assert_eq!(bye.uri.to_string(), "sip:bob@10.0.0.2:5070");
        assert_eq!(
            routes(&bye),
            ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
        );
        assert_eq!(hop.to_string(), "sip:p1.example.com;lr");
    }

    #[test]
    fn uac_strict_router_becomes_request_uri() {
        let (bye, hop) = uac_bye(&["<sip:p2.example.com;lr>", "<sip:p1.example.com>"]);
        assert_eq!(bye.uri.to_string(), "sip:p1.example.com");
        assert_eq!(
            routes(&bye),
            ["sip:p2.example.com;lr", "sip:bob@10.0.0.2:5070"]
        );
        assert_eq!(hop.to_string(), "sip:p1.example.com");
    }

    #[test]
    fn no_route_set_goes_to_the_remote_target() {
        let (bye, hop) = uac_bye(&[]);
        assert!(routes(&bye).is_empty());
        assert_eq!(hop.to_string(), "sip:bob@10.0.0.2:5070");
    }

    #[test]
    fn uas_keeps_record_route_order_and_copies_it_into_responses() {
        let t = Instant::now();
        let mut b = layer(B);
        let invite = Message::parse(
            b"INVITE sip:bob@10.0.0.2 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bKp1\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa1\r\n\
Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
From: <sip:alice@example.com>;tag=at\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: rr-1\r\n\
CSeq: 5 INVITE\r\n\
Contact: <sip:alice@10.0.0.1:5080>\r\n\
Max-Forwards: 69\r\n\r\n",
        )
        .unwrap();
        let Message::Request(invite) = invite else {
            panic!()
        };
        let key = TransactionKey::for_request(&invite).unwrap();
        let inc = IncomingRequest {
            key: key.clone(),
            source: addr(PROXY),
            request: invite,
            cancel_target: None,
        };
        assert!(b.handle_routed(t, Routed::NewRequest(inc)).is_none());
        let Some(DialogEvent::Invite { invite: inv, .. }) = b.poll_event() else {
            panic!()
        };
        let d = b
            .respond_invite(t, inv, Reply::new(StatusCode::OK))
            .unwrap()
            .unwrap();
        let Some(Output::Response { key: k, response }) = b.poll_output() else {
            panic!()
        };
        assert_eq!(k, key);
        assert_eq!(
            response
                .headers
                .get_all(&HeaderName::RECORD_ROUTE)
                .collect::<Vec<_>>(),
            ["<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"]
        );
        assert!(response.headers.to().unwrap().tag().is_some());
        let dl = b.dialog(d).unwrap();
        assert_eq!(dl.remote_seq(), Some(5));
        b.bye(t, d).unwrap();
        let (_, bye, hop) = first_request(&mut b);
        assert_eq!(bye.uri.to_string(), "sip:alice@10.0.0.1:5080");
        assert_eq!(
            routes(&bye),
            ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
        );
        assert_eq!(hop.to_string(), "sip:p1.example.com;lr");
        // The UAS's first request starts its own CSeq space; From/To are swapped.
        assert_eq!(bye.headers.cseq().unwrap().seq, 1);
        assert_eq!(bye.headers.to().unwrap().tag(), Some("at"));
    }
}

#[test]
fn invite_challenged_with_407_is_retried_with_credentials() {
    use dialplane_signaling::auth::{Algorithm, DigestServer, Verdict};
    use dialplane_signaling::dialog::Login;
    use std::time::UNIX_EPOCH;
    let wall = UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let server = DigestServer::new("example.com", b"secret".to_vec());
    let mut net = Net::pair();
    let now = net.now;
    let spec = InviteRequest {
        login: Some(Login {
            username: "alice".into(),
            password: "pw".into(),
        }),
        ..InviteRequest::new(
            uri("sip:bob@10.0.0.2:5060"),
            NameAddr::new(uri("sip:alice@example.com")),
            NameAddr::new(uri("sip:bob@example.com")),
        )
    };
    let inv = net.ua(A).dl.invite(now, spec).unwrap();
    net.pump();
    let first = net.incoming(B);
    let challenge = server.challenge(wall, Algorithm::MD5, false).to_string();
    let now = net.now;
    net.ua(B)
        .dl
        .respond_invite(
            now,
            first,
            Reply::new(StatusCode::PROXY_AUTHENTICATION_REQUIRED)
                .header(HeaderName::PROXY_AUTHENTICATE, challenge),
        )
        .unwrap();
    net.pump();
    let evs = net.events(B);
    let Some(DialogEvent::Invite {
        invite: second,
        request,
    }) = evs.into_iter().map(|(_, e)| e).next()
    else {
        panic!("no retry")
    };
    let creds = request
        .headers
        .get(&HeaderName::PROXY_AUTHORIZATION)
        .unwrap();
    let verdict = server.verify_header(creds, "INVITE", wall, |u| {
        (u == "alice").then(|| "pw".into())
    });
    assert!(matches!(verdict, Verdict::Ok(_)), "{verdict:?}");
    assert_eq!(request.headers.cseq().unwrap().seq, 2);
    net.answer(B, second, Reply::new(StatusCode::OK));
    answered(&net.events(A), inv);
    let sent: Vec<String> = net.sent_by(A).into_iter().map(|(_, s)| s).collect();
    assert_eq!(sent, ["INVITE", "ACK", "INVITE", "ACK"]);
}

#[test]
fn bad_rack_gets_481_and_second_reinvite_gets_500_with_retry_after() {
    let mut net = Net::pair();
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    net.answer(
        B,
        b_inv,
        Reply::new(StatusCode::SESSION_PROGRESS).reliable(),
    );
    let prack = net.last(A, "PRACK");
    let mut bad = request_of(&prack).clone();
    bad.headers.set(HeaderName::RACK, "999 1 INVITE");
    bad.headers.set(HeaderName::CSEQ, "2 PRACK");
    bad.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKbadrack",
    );
    net.inject(A, B, Message::Request(bad));
    assert_eq!(net.instants(B, "481 PRACK"), [0.0]);
    assert_eq!(net.instants(B, "200 PRACK"), [0.0]);

    let db = net.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp()));
    let da = answered(&net.events(A), inv);
    net.events(B);
    // A re-INVITE B leaves unanswered, then a second one: 500 with Retry-After (§14.2).
    let now = net.now;
    net.ua(A)
        .dl
        .request(now, da, Outgoing::new(Method::INVITE).body(sdp()))
        .unwrap();
    net.pump();
    let key = net
        .events(B)
        .into_iter()
        .find_map(|(_, e)| match e {
            DialogEvent::Request { key, dialog, .. } if dialog == db => Some(key),
            _ => None,
        })
        .unwrap();
    let reinvite = net.last(A, "INVITE");
    let mut second = request_of(&reinvite).clone();
    second.headers.set(HeaderName::CSEQ, "20 INVITE");
    second.headers.set(
        HeaderName::VIA,
        "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKsecond",
    );
    net.inject(A, B, Message::Request(second));
    let r500 = net.last(B, "500 INVITE");
    let retry: u32 = r500
        .headers()
        .get(&HeaderName::RETRY_AFTER)
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry <= 10);
    // The first one is still answerable.
    let now = net.now;
    net.ua(B)
        .dl
        .respond(now, &key, Reply::new(StatusCode::OK).body(sdp()))
        .unwrap();
    net.pump();
    assert!(net.events(A).iter().any(|(_, e)| matches!(e, DialogEvent::Response { response, .. } if response.status == StatusCode::OK)));
}

#[test]
fn dialogs_are_counted_by_termination_reason() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let mut net = Net::pair();
        let (da, _) = net.call();
        let (_, _) = net.call();
        let now = net.now;
        net.ua(A).dl.bye(now, da).unwrap();
        net.pump();
    });
    let mut got: Vec<(String, String)> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let k = key.key();
            let labels: Vec<String> = k
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let v = match value {
                DebugValue::Counter(n) => n.to_string(),
                DebugValue::Gauge(g) => g.into_inner().to_string(),
                DebugValue::Histogram(_) => "histogram".into(),
            };
            (format!("{}{{{}}}", k.name(), labels.join(",")), v)
        })
        .filter(|(k, _)| k.starts_with("dialplane_sip_dialog"))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("dialplane_sip_dialogs_active{}".to_owned(), "2".to_owned()),
            (
                "dialplane_sip_dialogs_terminated_total{reason=local_bye}".to_owned(),
                "1".to_owned()
            ),
            (
                "dialplane_sip_dialogs_terminated_total{reason=remote_bye}".to_owned(),
                "1".to_owned()
            ),
        ]
    );
}

#[test]
fn a_2xx_waits_for_the_prack_of_a_provisional_with_sdp() {
    let mut net = Net::new(&[(A, uac_t1_one_second()), (B, config(B))]);
    net.drop =
        Box::new(|t, _, m| t < 1.0 && m.as_request().is_some_and(|r| r.method == Method::PRACK));
    let inv = net.invite(B);
    let b_inv = net.incoming(B);
    let now = net.now;
    let db = net
        .ua(B)
        .dl
        .respond_invite(
            now,
            b_inv,
            Reply::new(StatusCode::SESSION_PROGRESS)
                .reliable()
                .body(sdp()),
        )
        .unwrap()
        .unwrap();
    assert_eq!(
        net.ua(B)
            .dl
            .respond_invite(now, b_inv, Reply::new(StatusCode::OK).body(sdp())),
        Ok(Some(db))
    );
    net.pump();
    assert!(net.instants(B, "200 INVITE").is_empty());
    net.run_until(2.0);
    // The PRACK retransmission at 1 s gets through; the 200 follows at once.
    assert_eq!(net.instants(B, "200 PRACK"), [1.0]);
    assert_eq!(net.instants(B, "200 INVITE"), [1.0]);
    assert_eq!(
        answered(&net.events(A), inv),
        net.ua(A).dl.invite_dialogs(inv)[0]
    );
}

#[test]
fn late_offer_the_user_answers_in_the_ack() {
    let mut net = Net::pair();
    let now = net.now;
    let spec = InviteRequest::new(
        uri("sip:bob@10.0.0.2:5060"),
        NameAddr::new(uri("sip:alice@example.com")),
        NameAddr::new(uri("sip:bob@example.com")),
    );
    let inv = net.ua(A).dl.invite(now, spec).unwrap();
    net.pump();
    let b_inv = net.incoming(B);
    let db = net.answer(B, b_inv, Reply::new(StatusCode::OK).body(sdp()));
    let da = answered(&net.events(A), inv);
    net.run_until(0.7);
    assert!(net.instants(A, "ACK").is_empty());
    assert_eq!(net.instants(B, "200 INVITE"), [0.0, 0.5]);
    let now = net.now;
    net.ua(A).dl.ack(now, da, Some(sdp())).unwrap();
    assert_eq!(
        net.ua(A).dl.ack(now, da, None),
        Err(dialplane_signaling::dialog::DialogError::NoAckDue)
    );
    net.pump();
    net.run_until(5.0);
    assert_eq!(net.instants(A, "ACK"), [0.7]);
    assert_eq!(net.instants(B, "200 INVITE"), [0.0, 0.5]);
    let evs = net.events(B);
    assert!(evs.iter().any(|(t, e)| *t == 0.7
        && matches!(e, DialogEvent::Acked { dialog, request } if *dialog == db && &request.body[..] == SDP.as_bytes())));
}

#[test]
fn required_extension_we_do_not_support_gets_420() {
    let mut cb = config(B);
    cb.rel100 = false;
    let mut net = Net::new(&[(A, config(A)), (B, cb)]);
    let now = net.now;
    let spec = InviteRequest {
        headers: vec![(HeaderName::REQUIRE, "100rel, foo".into())],
        ..InviteRequest::new(
            uri("sip:bob@10.0.0.2:5060"),
            NameAddr::new(uri("sip:alice@example.com")),
            NameAddr::new(uri("sip:bob@example.com")),
        )
    };
    let inv = net.ua(A).dl.invite(now, spec).unwrap();
    net.pump();
    let r = net.last(B, "420 INVITE");
    assert_eq!(
        r.headers().get(&HeaderName::UNSUPPORTED),
        Some("100rel, foo")
    );
    assert!(net.events(B).is_empty());
    assert!(
        net.events(A)
            .iter()
            .any(|(_, e)| matches!(e, DialogEvent::Failed { invite, .. } if *invite == inv))
    );
}

/// Hostile values in the headers the dialog layer reads: nothing panics, and every run ends.
#[test]
fn mangled_headers_never_panic() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    const HEADERS: [HeaderName; 10] = [
        HeaderName::RSEQ,
        HeaderName::RACK,
        HeaderName::SESSION_EXPIRES,
        HeaderName::MIN_SE,
        HeaderName::RECORD_ROUTE,
        HeaderName::CONTACT,
        HeaderName::TO,
        HeaderName::REQUIRE,
        HeaderName::EVENT,
        HeaderName::CSEQ,
    ];
    const JUNK: [&str; 10] = [
        "",
        "abc",
        "0",
        "4294967296",
        "<sip:",
        "1 2 3 4",
        ";;;",
        "0;refresher=uas",
        "99999999999999999999 INVITE",
        "<sip:x@[::1]:99999>;tag=",
    ];
    for seed in 0..300u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut ca = config(A);
        ca.session_expires = Some(90);
        let mut net = Net::pair();
        net.uas[0].dl = DialogLayer::new(ca, seed);
        net.ua(B).auto_answer = true;
        net.lenient = true;
        net.mangle = Box::new(move |m: &mut Message| {
            if rng.random_bool(0.3) {
                let h = &HEADERS[rng.random_range(0..HEADERS.len())];
                let v = JUNK[rng.random_range(0..JUNK.len())];
                match m {
                    Message::Request(r) => r.headers.set(h.clone(), v),
                    Message::Response(r) => r.headers.set(h.clone(), v),
                }
            }
        });
        let inv = net.invite(B);
        let b_inv = net.events(B).into_iter().find_map(|(_, e)| match e {
            DialogEvent::Invite { invite, .. } => Some(invite),
            _ => None,
        });
        let now = net.now;
        if let Some(b_inv) = b_inv {
            let _ = net.ua(B).dl.respond_invite(
                now,
                b_inv,
                Reply::new(StatusCode::SESSION_PROGRESS)
                    .reliable()
                    .body(sdp()),
            );
            net.pump();
            let _ = net
                .ua(B)
                .dl
                .respond_invite(now, b_inv, Reply::new(StatusCode::OK).body(sdp()));
            net.pump();
        }
        let dialogs = net.ua(A).dl.invite_dialogs(inv);
        for d in dialogs {
            let _ = net.ua(A).dl.request(now, d, Outgoing::new(Method::INFO));
            let _ = net
                .ua(A)
                .dl
                .refer(now, d, &NameAddr::new(uri("sip:c@example.com")));
        }
        net.run_until(200.0);
        assert!(net.ua(A).dl.poll_timeout().is_none_or(|t| t > net.now));
    }
}
