//! RFC 3263 end to end: `dialplane serve --dns ADDR` dialing SIP URIs whose hosts are names,
//! served by a DNS server the test runs on 127.0.0.1, leading to SIPp callees on loopback.
//!
//! The DNS server is written here on hickory-proto's message types (already built for
//! hickory-resolver, so nothing more to compile): a fixed zone, NXDOMAIN for names outside it,
//! every query counted by name and type, so a test can tell what dialplane asked and that a
//! cached answer was not asked again. Scenarios and SIPp helpers are those of tests/serve.rs.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, NAPTR, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::{Value, json};
use signaling::config::DnsConfig;
use signaling::dns::{Destination, Resolver};
use signaling::message::{SipUri, Uri};
use signaling::transport::Transport;

mod common;
use common::free_udp_port;
use common::http::Receiver;
use common::serve::{self, HOOK_WAIT, Serve, callee, caller, sip_target};
use common::sipp::Sipp;

/// TTL of the records served: longer than any test.
const TTL: u32 = 300;

/// A DNS server on 127.0.0.1 answering from a fixed zone; stopped and joined when dropped.
struct DnsServer {
    addr: SocketAddr,
    /// Every query so far: name (lower case, final dot) and type.
    queries: Arc<Mutex<Vec<(String, RecordType)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    fn start(zone: Vec<Record>) -> DnsServer {
        let socket = UdpSocket::bind(("127.0.0.1", free_udp_port())).expect("DNS socket");
        // Wakes the loop to see `stop`.
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let queries = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (queries, stop) = (queries.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Ok(query) = Message::from_vec(&buf[..n]) else {
                        continue;
                    };
                    let reply = answer(&zone, &query, &queries);
                    let _ = socket.send_to(&reply.to_vec().expect("encodes"), from);
                }
            })
        };
        DnsServer {
            addr,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// How many queries asked for `name` (no final dot) of type `t`.
    fn count(&self, name: &str, t: RecordType) -> usize {
        let name = format!("{name}.");
        let q = self.queries.lock().unwrap();
        q.iter().filter(|(n, qt)| *n == name && *qt == t).count()
    }

    fn all(&self) -> Vec<(String, RecordType)> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The zone's answer to `query` (counted): its records of that name and type, none when the
/// name has records of other types only, NXDOMAIN when the zone has no such name.
fn answer(zone: &[Record], query: &Message, queries: &Mutex<Vec<(String, RecordType)>>) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.queries = query.queries.clone();
    for q in &query.queries {
        let name = q.name.to_ascii().to_ascii_lowercase();
        queries.lock().unwrap().push((name.clone(), q.query_type));
        let of_name: Vec<&Record> = zone
            .iter()
            .filter(|r| r.name.to_ascii().eq_ignore_ascii_case(&name))
            .collect();
        if of_name.is_empty() {
            reply.metadata.response_code = ResponseCode::NXDomain;
        }
        reply.answers.extend(
            of_name
                .into_iter()
                .filter(|r| r.data.record_type() == q.query_type)
                .cloned(),
        );
    }
    reply
}

fn name(n: &str) -> Name {
    Name::from_ascii(format!("{n}.")).unwrap()
}

fn naptr(
    owner: &str,
    ttl: u32,
    order: u16,
    preference: u16,
    service: &str,
    replacement: &str,
) -> Record {
    let rdata = NAPTR::new(
        order,
        preference,
        b"s".to_vec().into_boxed_slice(),
        service.as_bytes().to_vec().into_boxed_slice(),
        Vec::new().into_boxed_slice(),
        name(replacement),
    );
    Record::from_rdata(name(owner), ttl, RData::NAPTR(rdata))
}

fn srv(owner: &str, ttl: u32, priority: u16, port: u16, target: &str) -> Record {
    let rdata = SRV::new(priority, 10, port, name(target));
    Record::from_rdata(name(owner), ttl, RData::SRV(rdata))
}

fn a(owner: &str, ttl: u32) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A(Ipv4Addr::LOCALHOST)))
}

/// `example.test`: NAPTR prefers TCP (which we do not send on: a TCP pick would reach the busy
/// callee) over UDP; UDP's SRV records put the answering callee at priority 10 and the busy one
/// at 20. Every record lives `ttl` seconds.
fn zone_ttl(answering: u16, busy: u16, ttl: u32) -> Vec<Record> {
    let t = ttl;
    vec![
        naptr(
            "example.test",
            t,
            10,
            10,
            "SIP+D2T",
            "_sip._tcp.example.test",
        ),
        naptr(
            "example.test",
            t,
            20,
            10,
            "SIP+D2U",
            "_sip._udp.example.test",
        ),
        srv("_sip._tcp.example.test", t, 1, busy, "b.example.test"),
        srv("_sip._udp.example.test", t, 20, busy, "b.example.test"),
        srv("_sip._udp.example.test", t, 10, answering, "a.example.test"),
        a("a.example.test", t),
        a("b.example.test", t),
    ]
}

fn zone(answering: u16, busy: u16) -> Vec<Record> {
    zone_ttl(answering, busy, TTL)
}

fn dial(uris: &[&str]) -> Value {
    let targets: Vec<Value> = uris.iter().map(|u| sip_target(u)).collect();
    serve::dial(&targets, json!({"actionHook": "/action"}))
}

/// The receiver answering the call webhook with `verbs`, and `dialplane serve` asking `dns`.
fn serve_with(name: &str, dns: &DnsServer, verbs: &Value) -> (Receiver, Serve) {
    let hooks = Receiver::start();
    hooks.answer("/call", verbs);
    let call = hooks.url("/call");
    let dns = dns.addr.to_string();
    let serve = Serve::start(name, &["--app-url", &call, "--dns", &dns]);
    (hooks, serve)
}

/// The `n`th actionHook POST (from 1), once it arrived.
fn action(hooks: &Receiver, n: usize) -> Value {
    hooks.wait("/action", "actionHook", HOOK_WAIT, |h| h.len() >= n)[n - 1]
        .json
        .clone()
}

fn invites(sipp: &Sipp) -> Vec<String> {
    sipp.log()
        .into_iter()
        .filter(|l| l.starts_with("INVITE "))
        .collect()
}

/// A metric's value in a /metrics text (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn naptr_then_srv_priority_reach_the_answering_callee_and_answers_are_cached() {
    let mut alice = callee("alice", "answer", 2, 50, &[]);
    let busy = callee("busy", "busy", 1, 50, &[]);
    let dns = DnsServer::start(zone(alice.port, busy.port));
    let (hooks, serve) = serve_with("dns-naptr", &dns, &dial(&["sip:callee@example.test"]));

    let mut first = caller(&serve, "call", 300);
    serve.finish(&mut [&mut first]);
    assert_eq!(action(&hooks, 1)["dial_status"], "completed");
    let asked = dns.all();
    // NAPTR, then the UDP SRV name NAPTR chose (never the TCP one), then both targets' A
    // records (the second is the fallback); once each.
    assert_eq!(dns.count("example.test", RecordType::NAPTR), 1, "{asked:?}");
    assert_eq!(
        dns.count("_sip._udp.example.test", RecordType::SRV),
        1,
        "{asked:?}"
    );
    assert_eq!(
        dns.count("_sip._tcp.example.test", RecordType::SRV),
        0,
        "{asked:?}"
    );
    assert_eq!(dns.count("a.example.test", RecordType::A), 1, "{asked:?}");
    assert_eq!(dns.count("b.example.test", RecordType::A), 1, "{asked:?}");

    // The second call: every answer from the cache (TTL 300 s), the same callee.
    let mut second = caller(&serve, "call", 300);
    serve.finish(&mut [&mut second, &mut alice]);
    assert_eq!(action(&hooks, 2)["dial_status"], "completed");
    assert_eq!(dns.all(), asked, "the second call asked DNS again");

    // The Request-URI keeps the name (RFC 3263 changes where, not what); the priority-20
    // callee saw nothing.
    assert_eq!(
        invites(&alice),
        ["INVITE sip:callee@example.test c=IN IP4 127.0.0.1"; 2]
    );
    assert!(invites(&busy).is_empty(), "{:?}", busy.log());
    let metrics = serve.wait_idle();
    assert_eq!(
        metric(&metrics, "dialplane_dns_lookups_total{result=\"ok\"}"),
        2.0,
        "{metrics}"
    );
}

#[test]
fn a_name_that_does_not_resolve_fails_its_fork_and_the_others_go_on() {
    let mut alice = callee("alice", "answer", 1, 50, &[]);
    let busy = callee("busy", "busy", 1, 50, &[]);
    let dns = DnsServer::start(zone(alice.port, busy.port));
    let (hooks, serve) = serve_with(
        "dns-nxdomain",
        &dns,
        &dial(&["sip:ghost@nowhere.test", "sip:callee@example.test"]),
    );
    let mut first = caller(&serve, "call", 300);
    serve.finish(&mut [&mut first, &mut alice]);
    assert_eq!(action(&hooks, 1)["dial_status"], "completed");
    assert_eq!(invites(&alice).len(), 1, "{:?}", alice.log());
    // nowhere.test does not exist: nothing below it is asked for (RFC 8020).
    let nowhere = |dns: &DnsServer| {
        dns.all()
            .into_iter()
            .filter(|(n, _)| n.ends_with("nowhere.test."))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        nowhere(&dns),
        [("nowhere.test.".to_string(), RecordType::NAPTR)]
    );

    // Alone, the fork that does not resolve fails the dial with 604; the negative answer
    // comes from the cache.
    hooks.answer("/call", &dial(&["sip:ghost@nowhere.test"]));
    let mut second = caller(&serve, "wait_bye", 300);
    serve.finish(&mut [&mut second]);
    let done = action(&hooks, 2);
    assert_eq!(done["dial_status"], "failed", "{done}");
    assert_eq!(done["dial_sip_status"], 604, "{done}");
    assert_eq!(nowhere(&dns).len(), 1, "asked again: {:?}", dns.all());
    assert!(invites(&busy).is_empty(), "{:?}", busy.log());

    let metrics = serve.wait_idle();
    assert_eq!(
        metric(
            &metrics,
            "dialplane_dns_lookups_total{result=\"not_found\"}"
        ),
        2.0,
        "{metrics}"
    );
    let log = serve.log_text();
    assert_eq!(
        log.matches("fork target does not resolve").count(),
        2,
        "{}",
        serve.log_tail()
    );
}

#[test]
fn an_explicit_port_asks_only_for_the_hosts_address() {
    let mut alice = callee("alice", "answer", 1, 50, &[]);
    let busy = callee("busy", "busy", 1, 50, &[]);
    let dns = DnsServer::start(zone(alice.port, busy.port));
    // The port given decides (§4.2): no NAPTR or SRV query, only the host's address.
    let uri = format!("sip:callee@b.example.test:{}", alice.port);
    let (hooks, serve) = serve_with("dns-port", &dns, &dial(&[&uri]));
    let mut first = caller(&serve, "call", 300);
    serve.finish(&mut [&mut first, &mut alice]);
    assert_eq!(action(&hooks, 1)["dial_status"], "completed");
    assert_eq!(
        invites(&alice),
        [format!("INVITE {uri} c=IN IP4 127.0.0.1")]
    );
    assert_eq!(dns.all(), [("b.example.test.".to_string(), RecordType::A)]);
    assert!(invites(&busy).is_empty(), "{:?}", busy.log());
    serve.wait_idle();
}

#[test]
fn an_answer_is_asked_again_once_its_ttl_ran_out() {
    let mut alice = callee("alice", "answer", 2, 50, &[]);
    let busy = callee("busy", "busy", 1, 50, &[]);
    let dns = DnsServer::start(zone_ttl(alice.port, busy.port, 1));
    let (hooks, serve) = serve_with("dns-ttl", &dns, &dial(&["sip:callee@example.test"]));
    let mut first = caller(&serve, "call", 300);
    serve.finish(&mut [&mut first]);
    assert_eq!(dns.count("example.test", RecordType::NAPTR), 1);
    // Time passing, not waiting for an event: the 1 s TTL must run out.
    std::thread::sleep(Duration::from_millis(1500));
    let mut second = caller(&serve, "call", 300);
    serve.finish(&mut [&mut second, &mut alice]);
    assert_eq!(action(&hooks, 2)["dial_status"], "completed");
    assert_eq!(
        dns.count("example.test", RecordType::NAPTR),
        2,
        "{:?}",
        dns.all()
    );
    assert_eq!(dns.count("_sip._udp.example.test", RecordType::SRV), 2);
    assert!(invites(&busy).is_empty(), "{:?}", busy.log());
    serve.wait_idle();
}

/// The resolver itself against the test's DNS server, for the paths a SIPp callee on a random
/// port cannot show (default ports, transports we do not send on yet).
fn resolver(dns: &DnsServer, supported: &[Transport]) -> Resolver {
    let config = DnsConfig {
        nameservers: vec![dns.addr],
        ..DnsConfig::default()
    };
    Resolver::new(&config, supported).unwrap()
}

fn dest(transport: Transport, addr: &str) -> Destination {
    Destination {
        transport,
        addr: addr.parse().unwrap(),
    }
}

fn sip_uri(s: &str) -> SipUri {
    Uri::parse(s).unwrap().as_sip().unwrap().clone()
}

#[tokio::test]
async fn without_naptr_srv_then_the_hosts_own_address() {
    let mut records = zone(5070, 5080);
    records.extend([
        a("srvonly.test", TTL),
        srv("_sip._udp.srvonly.test", TTL, 10, 5090, "a.example.test"),
        Record::from_rdata(
            name("aonly.test"),
            TTL,
            RData::A(A(Ipv4Addr::new(127, 0, 0, 9))),
        ),
    ]);
    let dns = DnsServer::start(records);
    let r = resolver(&dns, &[Transport::Udp]);
    assert_eq!(
        r.resolve(&sip_uri("sip:x@srvonly.test")).await.unwrap(),
        [dest(Transport::Udp, "127.0.0.1:5090")]
    );
    // Neither NAPTR nor SRV: the host's address on the default port.
    assert_eq!(
        r.resolve(&sip_uri("sip:x@aonly.test")).await.unwrap(),
        [dest(Transport::Udp, "127.0.0.9:5060")]
    );
    let asked: Vec<(String, RecordType)> = dns
        .all()
        .into_iter()
        .filter(|(n, _)| n.ends_with("aonly.test."))
        .collect();
    assert_eq!(
        asked,
        [
            ("aonly.test.".to_string(), RecordType::NAPTR),
            ("_sip._udp.aonly.test.".to_string(), RecordType::SRV),
            ("aonly.test.".to_string(), RecordType::A),
        ]
    );
}

#[tokio::test]
async fn naptr_order_across_the_transports_we_send_on() {
    let dns = DnsServer::start(zone(5070, 5080));
    let uri = sip_uri("sip:x@example.test");
    // TCP too: NAPTR's order 10 (TCP) comes before 20 (UDP), each with its SRV targets.
    let both = resolver(&dns, &[Transport::Udp, Transport::Tcp]);
    assert_eq!(
        both.resolve(&uri).await.unwrap(),
        [
            dest(Transport::Tcp, "127.0.0.1:5080"),
            dest(Transport::Udp, "127.0.0.1:5070"),
            dest(Transport::Udp, "127.0.0.1:5080"),
        ]
    );
    // A transport parameter skips NAPTR: its SRV name only.
    let before = dns.count("example.test", RecordType::NAPTR);
    assert_eq!(
        both.resolve(&sip_uri("sip:x@example.test;transport=udp"))
            .await
            .unwrap(),
        [
            dest(Transport::Udp, "127.0.0.1:5070"),
            dest(Transport::Udp, "127.0.0.1:5080"),
        ]
    );
    assert_eq!(dns.count("example.test", RecordType::NAPTR), before);
    // sips: only SIPS+D2T records count; there are none, nor _sips._tcp SRV records: the host
    // has no address of its own either.
    let e = both
        .resolve(&sip_uri("sips:x@example.test"))
        .await
        .unwrap_err();
    assert_eq!(e.sip_status(), 604, "{e}");
}
