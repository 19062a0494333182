//! The io_uring shard running the media API on real UDP "phones" on 127.0.0.1: endpoints,
//! bridges, latching, PT mapping, RFC 4733, media timeouts, RTCP reports, port exhaustion,
//! hostile packets, allocation-free forwarding, and the multi-shard [`Media`] front.
//!
//! Skipped (with a printed reason) where io_uring is unavailable. Every wait is bounded: blocking
//! receives carry a read timeout, event waits a timeout and polling loops a deadline.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dialplane_media::api::{ApiError, CallId, Command, EndpointSpec, Event, LegId, MediaControl};
use dialplane_media::driver::{
    Media, MediaConfig, RecvMode, RingConfig, Shard, ShardConfig, ShardHandle, ShardStats, probe,
    spawn,
};
use dialplane_media::endpoint::{Codec, LegStats, PtMap};

// Counting allocator: counts only on threads that set COUNTING (the shard thread, after warm-up).
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; the bookkeeping touches only
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TIMEOUT: Duration = Duration::from_secs(5);

fn uring_or_skip(test: &str) -> bool {
    match probe() {
        Ok(()) => true,
        Err(why) => {
            println!("skipping {test}: {why}");
            false
        }
    }
}

fn rtp_pt(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, pt];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    rtp_pt(0, seq, ts, ssrc, payload)
}

#[derive(Debug)]
struct Hdr {
    marker: bool,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

fn hdr(b: &[u8]) -> Hdr {
    Hdr {
        marker: b[1] & 0x80 != 0,
        pt: b[1] & 0x7f,
        seq: u16::from_be_bytes([b[2], b[3]]),
        ts: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        ssrc: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    }
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Receive one datagram (bounded by the read timeout; an interrupted call is retried until the
/// same deadline); panics on timeout.
fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => return (buf[..n].to_vec(), from),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            Err(e) => panic!("no packet within the read timeout: {e}"),
        }
    }
}

/// A spawned shard, stopped and joined on drop (also when a test fails).
struct Running {
    h: ShardHandle,
    events: Receiver<Event>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.h.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(config: ShardConfig) -> Running {
    let (tx, events) = mpsc::channel();
    let (h, thread) = spawn(config, tx).unwrap();
    Running {
        h,
        events,
        thread: Some(thread),
    }
}

fn call() -> CallId {
    CallId("call-1@test".into())
}

/// Leg spec whose SDP address is `phone`'s (it latches on its first packet).
fn spec_for(phone: &UdpSocket) -> EndpointSpec {
    EndpointSpec {
        sdp_address: Some(phone.local_addr().unwrap()),
        ..EndpointSpec::default()
    }
}

/// Create a leg; its relay address.
fn create(h: &impl MediaControl, call_id: &CallId, leg: u32, spec: EndpointSpec) -> SocketAddr {
    let answer = h
        .request(Command::CreateEndpoint {
            call_id: call_id.clone(),
            leg: LegId(leg),
            spec,
        })
        .unwrap();
    match answer[..] {
        [Event::EndpointCreated { local, ports, .. }] => {
            assert_eq!(local.port(), ports.rtp);
            assert_eq!(ports.rtp % 2, 0);
            local
        }
        ref other => panic!("{other:?}"),
    }
}

fn bridge(h: &impl MediaControl, call_id: &CallId) {
    h.request(Command::Bridge {
        call_id: call_id.clone(),
        a: LegId(0),
        b: LegId(1),
    })
    .unwrap();
}

fn leg_stats(h: &impl MediaControl, call_id: &CallId, leg: u32) -> LegStats {
    match h
        .request(Command::Query {
            call_id: call_id.clone(),
            leg: Some(LegId(leg)),
        })
        .unwrap()[..]
    {
        [Event::Stats { stats, .. }] => stats,
        ref other => panic!("{other:?}"),
    }
}

/// Poll the shard's counters until `pred` holds (bounded by TIMEOUT).
fn wait_stats(h: &ShardHandle, what: &str, pred: impl Fn(&ShardStats) -> bool) -> ShardStats {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let s = h.stats().unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        std::thread::yield_now();
    }
}

/// The next event matching `pred` (others are skipped), within TIMEOUT.
fn wait_event(events: &Receiver<Event>, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(e) if pred(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("no {what} event in time"),
        }
    }
}

/// Two phones, two legs with their SDP addresses, bridged (leg 1 maps telephone-event to 96).
struct Call {
    a: UdpSocket,
    b: UdpSocket,
    relay_a: SocketAddr,
    relay_b: SocketAddr,
}

fn bridged_call(h: &impl MediaControl, call_id: &CallId) -> Call {
    let (a, b) = (phone(), phone());
    let relay_a = create(h, call_id, 0, spec_for(&a));
    let spec_b = EndpointSpec {
        pt_map: PtMap::new(&[(0, Codec::Pcmu), (96, Codec::TelephoneEvent)]).unwrap(),
        ..spec_for(&b)
    };
    let relay_b = create(h, call_id, 1, spec_b);
    bridge(h, call_id);
    Call {
        a,
        b,
        relay_a,
        relay_b,
    }
}

fn relay_between_two_phones(force_plain: bool) {
    let config = ShardConfig {
        ring: RingConfig {
            force_plain,
            ..RingConfig::default()
        },
        ..ShardConfig::default()
    };
    let r = start(config);
    let h = &r.h;
    let info = h.stats().unwrap().ring;
    println!("ring: {info:?}");
    if force_plain {
        assert_eq!(info.mode, RecvMode::Plain);
    }
    let c = bridged_call(h, &call());

    // B's first packet latches B (leg 1) and reaches A, from A's relay address.
    c.b.send_to(&rtp(7, 70, 0xbbbb, b"hello A"), c.relay_b)
        .unwrap();
    let (pkt, from) = recv(&c.a);
    assert_eq!(from, c.relay_a);
    assert_eq!(&pkt[12..], b"hello A");
    let to_a = hdr(&pkt);
    assert!(to_a.marker, "first packet of the egress stream is marked");
    assert_ne!(to_a.ssrc, 0xbbbb);
    let latched = wait_event(&r.events, "latched", |e| matches!(e, Event::Latched { .. }));
    assert!(
        matches!(latched, Event::Latched { leg: LegId(1), remote, .. } if remote == c.b.local_addr().unwrap())
    );

    // A → B: payload intact, SSRC constant, sequence and timestamp continuous, PCMU stays 0.
    let mut first = None;
    for i in 0..200u16 {
        let payload = [i as u8; 160];
        c.a.send_to(
            &rtp(101 + i, 1160 + 160 * u32::from(i), 0xaaaa, &payload),
            c.relay_a,
        )
        .unwrap();
        let (pkt, from) = recv(&c.b);
        assert_eq!(from, c.relay_b);
        assert_eq!(&pkt[12..], &payload[..]);
        let h2 = hdr(&pkt);
        let (ssrc, seq0, ts0) = *first.get_or_insert((h2.ssrc, h2.seq, h2.ts));
        assert_eq!((h2.ssrc, h2.pt), (ssrc, 0));
        assert_ne!(h2.ssrc, 0xaaaa);
        assert_eq!(h2.seq, seq0.wrapping_add(i));
        assert_eq!(h2.ts, ts0.wrapping_add(160 * u32::from(i)));
        assert_eq!(h2.marker, i == 0);
    }
    let (ssrc_b, seq0, ts0) = first.unwrap();

    // telephone-event: 101 on A's side is 96 on B's, same stream.
    let event = [5, 0x0a, 0, 160];
    c.a.send_to(&rtp_pt(101, 301, 33_160, 0xaaaa, &event), c.relay_a)
        .unwrap();
    let (pkt, _) = recv(&c.b);
    let h2 = hdr(&pkt);
    assert_eq!(
        (h2.pt, h2.ssrc, h2.seq),
        (96, ssrc_b, seq0.wrapping_add(200))
    );
    assert_eq!(h2.ts, ts0.wrapping_add(32_000));
    assert_eq!(&pkt[12..], &event);

    // B → A continues A's egress stream. B also writes to A's relay address: not A's latched
    // source, so that copy is dropped ("source").
    c.b.send_to(&rtp(8, 230, 0xbbbb, b"wrong leg"), c.relay_a)
        .unwrap();
    c.b.send_to(&rtp(8, 230, 0xbbbb, b"again"), c.relay_b)
        .unwrap();
    let (pkt, _) = recv(&c.a);
    assert_eq!(&pkt[12..], b"again");
    let h2 = hdr(&pkt);
    assert_eq!(h2.ssrc, to_a.ssrc);
    assert_eq!(h2.seq, to_a.seq.wrapping_add(1));
    assert_eq!(h2.ts, to_a.ts.wrapping_add(160));
    wait_stats(h, "source drop", |s| s.dropped("source") == 1);

    // A third party: dropped and counted on the leg, B never sees it.
    let intruder = phone();
    intruder
        .send_to(&rtp(1, 1, 0xeeee, b"intruder"), c.relay_a)
        .unwrap();
    wait_stats(h, "intruder drop", |s| s.dropped("source") == 2);
    assert_eq!(leg_stats(h, &call(), 0).dropped("source"), 2);

    // Hostile packets from the latched phone: validated first, dropped and counted by reason.
    c.a.send_to(&[0x80, 0, 1], c.relay_a).unwrap();
    c.a.send_to(&[], c.relay_a).unwrap();
    let mut version1 = rtp(1, 1, 1, b"v1");
    version1[0] = 0x40;
    c.a.send_to(&version1, c.relay_a).unwrap();
    let mut csrc = rtp(1, 1, 1, b"xx");
    csrc[0] |= 0x0f; // 15 CSRCs announced, 2 bytes follow
    c.a.send_to(&csrc, c.relay_a).unwrap();
    let mut padded = rtp(2, 2, 2, b"xx");
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 200;
    c.a.send_to(&padded, c.relay_a).unwrap();
    let s = wait_stats(h, "hostile drops", |s| {
        s.dropped("short") == 2
            && s.dropped("version") == 1
            && s.dropped("csrc") == 1
            && s.dropped("padding") == 1
    });
    let leg0 = leg_stats(h, &call(), 0);
    assert_eq!(
        [
            leg0.dropped("short"),
            leg0.dropped("version"),
            leg0.dropped("csrc"),
            leg0.dropped("padding")
        ],
        [2, 1, 1, 1]
    );

    // The next good packet still flows, continuing the sequence.
    c.a.send_to(&rtp(302, 49_160, 0xaaaa, b"after"), c.relay_a)
        .unwrap();
    let (pkt, _) = recv(&c.b);
    assert_eq!(&pkt[12..], b"after");
    assert_eq!(hdr(&pkt).ssrc, ssrc_b);
    assert_eq!(hdr(&pkt).seq, seq0.wrapping_add(201));

    let s2 = wait_stats(h, "relayed count", |s| s.relayed == 204);
    println!("stats: {s2:?}");
    assert_eq!((s.legs, s.bridges), (2, 1));
    if s.ring.mode == RecvMode::Multishot {
        // Every buffer came back to the ring once its send completed.
        wait_stats(h, "buffers back", |s| s.bufring_in_use == 0);
    }
    // Final numbers on destroy, one Stats per leg; the call is gone afterwards.
    let done = h
        .request(Command::Destroy {
            call_id: call(),
            leg: None,
        })
        .unwrap();
    assert_eq!(done.len(), 2);
    for e in &done {
        match e {
            Event::Stats {
                leg: LegId(0),
                stats,
                ..
            } => assert_eq!((stats.packets_in, stats.packets_out), (202, 2)),
            Event::Stats {
                leg: LegId(1),
                stats,
                ..
            } => assert_eq!((stats.packets_in, stats.packets_out), (2, 202)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        h.request(Command::Query {
            call_id: call(),
            leg: None
        })
        .unwrap_err(),
        ApiError::UnknownCall(call())
    );
    assert_eq!(h.stats().unwrap().legs, 0);

    // Freed socket slots serve a new call.
    let c2 = bridged_call(h, &CallId("call-2".into()));
    c2.a.send_to(&rtp(1, 1, 3, b"to b"), c2.relay_a).unwrap();
    let (pkt, from) = recv(&c2.b);
    assert_eq!((from, &pkt[12..]), (c2.relay_b, &b"to b"[..]));
}

#[test]
fn relays_rtp_with_multishot_and_buffer_ring() {
    if uring_or_skip("relays_rtp_with_multishot_and_buffer_ring") {
        relay_between_two_phones(false);
    }
}

#[test]
fn relays_rtp_with_plain_recvmsg_fallback() {
    if uring_or_skip("relays_rtp_with_plain_recvmsg_fallback") {
        relay_between_two_phones(true);
    }
}

/// A re-INVITE moves leg 0 to a new address: the new phone latches, the old one is refused.
#[test]
fn update_endpoint_relatches() {
    if !uring_or_skip("update_endpoint_relatches") {
        return;
    }
    let r = start(ShardConfig::default());
    let h = &r.h;
    let c = bridged_call(h, &call());
    c.a.send_to(&rtp(1, 160, 0xaaaa, b"a1"), c.relay_a).unwrap();
    assert_eq!(&recv(&c.b).0[12..], b"a1");
    let moved = phone();
    // Not the SDP address yet: refused.
    moved
        .send_to(&rtp(1, 160, 0xcccc, b"early"), c.relay_a)
        .unwrap();
    wait_stats(h, "early drop", |s| s.dropped("source") == 1);
    let answer = h
        .request(Command::UpdateEndpoint {
            call_id: call(),
            leg: LegId(0),
            spec: spec_for(&moved),
        })
        .unwrap();
    assert!(matches!(answer[..], [Event::EndpointCreated { local, .. }] if local == c.relay_a));
    moved
        .send_to(&rtp(2, 320, 0xcccc, b"moved"), c.relay_a)
        .unwrap();
    assert_eq!(&recv(&c.b).0[12..], b"moved");
    wait_event(
        &r.events,
        "relatch",
        |e| matches!(e, Event::Latched { leg: LegId(0), remote, .. } if *remote == moved.local_addr().unwrap()),
    );
    // B's packets now go to the new phone; the old one is refused.
    c.b.send_to(&rtp(1, 160, 0xbbbb, b"to moved"), c.relay_b)
        .unwrap();
    assert_eq!(&recv(&moved).0[12..], b"to moved");
    c.a.send_to(&rtp(3, 480, 0xaaaa, b"old"), c.relay_a)
        .unwrap();
    wait_stats(h, "old address drop", |s| s.dropped("source") == 2);
}

/// A two-pair range: the third leg is refused with 503, nothing leaks, and a destroyed leg's
/// ports (and sockets) are free again.
#[test]
fn port_exhaustion_and_reuse() {
    if !uring_or_skip("port_exhaustion_and_reuse") {
        return;
    }
    let config = ShardConfig::new([127, 0, 0, 1].into(), 23470, 23473).unwrap();
    let r = start(config);
    let h = &r.h;
    let spec = || EndpointSpec {
        latch_any: true,
        ..EndpointSpec::default()
    };
    let first = create(h, &call(), 0, spec());
    let second = create(h, &call(), 1, spec());
    let refused = h
        .request(Command::CreateEndpoint {
            call_id: call(),
            leg: LegId(2),
            spec: spec(),
        })
        .unwrap_err();
    assert_eq!(refused, ApiError::PortsExhausted);
    assert_eq!(refused.status(), 503);
    // The same leg twice is a conflict, not a leak.
    let again = h.request(Command::CreateEndpoint {
        call_id: call(),
        leg: LegId(0),
        spec: spec(),
    });
    assert_eq!(again.unwrap_err(), ApiError::LegExists(call(), LegId(0)));
    let done = h
        .request(Command::Destroy {
            call_id: call(),
            leg: Some(LegId(0)),
        })
        .unwrap();
    assert!(matches!(done[..], [Event::Stats { leg: LegId(0), .. }]));
    // The sockets close once the kernel is done with their receive: poll until the ports bind.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let rtp_free = UdpSocket::bind(first).is_ok();
        let rtcp_free = UdpSocket::bind(SocketAddr::new(first.ip(), first.port() + 1)).is_ok();
        if rtp_free && rtcp_free {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "destroyed leg's sockets still open"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let third = create(h, &call(), 2, spec());
    assert_eq!(third, first, "the freed pair is handed out again");
    assert_ne!(third, second);
    assert_eq!(h.stats().unwrap().legs, 2);
}

/// A destroyed leg's sockets are parked: a new leg right after gets other ports, a packet for
/// the old call reaching the parked pair is dropped (counted "unknown", never reaching a leg), and
/// once the quarantine is over the next leg gets the same pair back, working.
#[test]
fn parked_sockets_are_reused_only_after_the_quarantine() {
    if !uring_or_skip("parked_sockets_are_reused_only_after_the_quarantine") {
        return;
    }
    let quarantine = Duration::from_millis(300);
    let config = ShardConfig {
        quarantine,
        ..ShardConfig::new([127, 0, 0, 1].into(), 23430, 23469).unwrap()
    };
    let r = start(config);
    let h = &r.h;
    let spec = || EndpointSpec {
        latch_any: true,
        ..EndpointSpec::default()
    };
    let (old_call, new_call) = (CallId("old@test".into()), CallId("new@test".into()));
    let old = create(h, &old_call, 0, spec());
    h.request(Command::Destroy {
        call_id: old_call.clone(),
        leg: None,
    })
    .unwrap();
    let destroyed = Instant::now();
    assert_eq!(h.stats().unwrap().parked, 1);
    let fresh = create(h, &new_call, 0, spec());
    assert_ne!(fresh, old, "no reuse during the quarantine");

    // The old call's far end still sends: dropped, and the new call's leg saw nothing.
    let unknown = h.stats().unwrap().dropped("unknown");
    phone().send_to(&rtp(1, 160, 0x01d0, b"late"), old).unwrap();
    wait_stats(h, "the stray packet dropped", |s| {
        s.dropped("unknown") == unknown + 1
    });
    assert_eq!(leg_stats(h, &new_call, 0).packets_in, 0);

    std::thread::sleep(quarantine.saturating_sub(destroyed.elapsed()));
    let reused = create(h, &new_call, 1, spec());
    assert_eq!(
        reused, old,
        "the parked pair is handed out after its quarantine"
    );
    assert_eq!(h.stats().unwrap().parked, 0);
    let p = phone();
    p.send_to(&rtp(1, 160, 0x0e1, b"new"), reused).unwrap();
    wait_stats(h, "the reused leg's packet", |_| {
        leg_stats(h, &new_call, 1).packets_in == 1
    });
    assert_eq!(h.stats().unwrap().dropped("unknown"), unknown + 1);
}

/// A per-spec media timeout of 200 ms fires once after the last packet.
#[test]
fn media_timeout_event() {
    if !uring_or_skip("media_timeout_event") {
        return;
    }
    let r = start(ShardConfig::default());
    let a = phone();
    let relay = create(
        &r.h,
        &call(),
        0,
        EndpointSpec {
            media_timeout: Some(Duration::from_millis(200)),
            ..spec_for(&a)
        },
    );
    a.send_to(&rtp(1, 160, 1, b"x"), relay).unwrap();
    wait_event(&r.events, "latch", |e| matches!(e, Event::Latched { .. }));
    let sent = Instant::now();
    wait_event(&r.events, "media timeout", |e| {
        matches!(e, Event::MediaTimeout { leg: LegId(0), .. })
    });
    assert!(sent.elapsed() >= Duration::from_millis(150));
    // Once per silence: nothing more without new packets.
    assert!(r.events.recv_timeout(Duration::from_millis(400)).is_err());
}

/// One RFC 4733 key press (begin, updates, three end packets) → one Digit event.
#[test]
fn rfc4733_press_is_one_digit() {
    if !uring_or_skip("rfc4733_press_is_one_digit") {
        return;
    }
    let r = start(ShardConfig::default());
    let a = phone();
    let relay = create(&r.h, &call(), 0, spec_for(&a));
    let ts = 8000;
    for (seq, (dur, end)) in (10u16..).zip([
        (160u16, false),
        (320, false),
        (480, false),
        (800, true),
        (800, true),
        (800, true),
    ]) {
        let mut payload = [9u8, 10, 0, 0];
        if end {
            payload[1] |= 0x80;
        }
        payload[2..4].copy_from_slice(&dur.to_be_bytes());
        let pt = if dur == 160 { 0x80 | 101 } else { 101 };
        a.send_to(&rtp_pt(pt, seq, ts, 0x77, &payload), relay)
            .unwrap();
    }
    let digit = wait_event(&r.events, "digit", |e| matches!(e, Event::Digit { .. }));
    match digit {
        Event::Digit {
            digit,
            duration_ms,
            leg,
            ..
        } => assert_eq!((digit, duration_ms, leg), ('9', 100, LegId(0))),
        other => panic!("{other:?}"),
    }
    // The repeats of the end report nothing more.
    let more = r.events.recv_timeout(Duration::from_millis(300));
    assert!(!matches!(more, Ok(Event::Digit { .. })), "{more:?}");
    // Unbridged: forwarded nowhere, counted.
    assert_eq!(leg_stats(&r.h, &call(), 0).dropped("unbridged"), 6);
}

/// Query numbers: packets in/out, loss from a sequence gap, jitter with a clock rate.
#[test]
fn query_reports_leg_stats() {
    if !uring_or_skip("query_reports_leg_stats") {
        return;
    }
    let r = start(ShardConfig::default());
    let c = bridged_call(&r.h, &call());
    // Sequence 1..=20 with 5 and 6 missing: 18 received of 20 expected.
    for seq in (1..=20u16).filter(|s| ![5, 6].contains(s)) {
        c.a.send_to(
            &rtp(seq, u32::from(seq) * 160, 0xa, &[0xd5; 160]),
            c.relay_a,
        )
        .unwrap();
        recv(&c.b);
    }
    let s = leg_stats(&r.h, &call(), 0);
    assert_eq!((s.packets_in, s.bytes_in), (18, 18 * 172));
    assert_eq!((s.expected, s.received, s.lost()), (20, 18, 2));
    assert_eq!(s.clock_rate, 8000);
    let b = leg_stats(&r.h, &call(), 1);
    assert_eq!(
        (b.packets_out, b.bytes_out, b.packets_in),
        (18, 18 * 172, 0)
    );
}

/// Terminated RTCP: the phone's SR is counted and not relayed; every leg sends its own SR/RR
/// about the streams the relay sees, with the phone's SR time echoed in LSR.
#[test]
fn rtcp_is_terminated_and_reports_are_generated() {
    if !uring_or_skip("rtcp_is_terminated_and_reports_are_generated") {
        return;
    }
    let config = ShardConfig {
        rtcp_interval: Duration::from_millis(100),
        ..ShardConfig::default()
    };
    let r = start(config);
    let (a, b) = (phone(), phone());
    let relay_a = create(
        &r.h,
        &call(),
        0,
        EndpointSpec {
            rtcp_mux: true,
            ..spec_for(&a)
        },
    );
    let relay_b = create(&r.h, &call(), 1, spec_for(&b));
    bridge(&r.h, &call());
    // B latches, A sends 10 packets with one gap, B gets them.
    b.send_to(&rtp(1, 160, 0xb, b"b"), relay_b).unwrap();
    recv(&a);
    for seq in [1u16, 2, 3, 5, 6, 7, 8, 9, 10, 11] {
        a.send_to(&rtp(seq, u32::from(seq) * 160, 0xa, &[0xd5; 160]), relay_a)
            .unwrap();
    }
    // A sends an SR (rtcp-mux) with NTP middle bits 0x1234_5678: terminated, counted.
    let mut sr = vec![0x80, 200, 0, 6, 0, 0, 0, 0xa];
    sr.extend_from_slice(&[0, 0, 0x12, 0x34, 0x56, 0x78, 0, 0]);
    sr.extend_from_slice(&[0; 12]);
    a.send_to(&sr, relay_a).unwrap();
    wait_stats(&r.h, "rtcp terminated", |s| s.dropped("rtcp") == 1);
    assert_eq!(leg_stats(&r.h, &call(), 0).rtcp_in, 1);
    // A's reports come on its RTP port (rtcp-mux); skip relayed RTP until one has a block about
    // 0xa with the SR echoed.
    let deadline = Instant::now() + TIMEOUT;
    let report = loop {
        assert!(Instant::now() < deadline, "no report with LSR");
        let (p, from) = recv(&a);
        assert_eq!(from, relay_a);
        if (200..=201).contains(&p[1]) && p[0] & 0x1f == 1 {
            let at = if p[1] == 200 { 28 } else { 8 };
            let word = |i: usize| u32::from_be_bytes(p[at + i..at + i + 4].try_into().unwrap());
            if word(16) == 0x1234_5678 {
                break p;
            }
        }
    };
    let at = if report[1] == 200 { 28 } else { 8 };
    let word = |i: usize| u32::from_be_bytes(report[at + i..at + i + 4].try_into().unwrap());
    assert_eq!(word(0), 0xa, "report block about the phone's SSRC");
    assert_eq!(word(4) & 0xff_ffff, 1, "one packet lost");
    assert_eq!(word(8), 11, "extended highest sequence");
    // The SR (A was sent B's packet) names A's egress SSRC, the one B's packet carried.
    assert_eq!(report[1], 200);
    // B has no rtcp-mux: its reports reach B's port + 1, from the relay's RTCP port.
    let b_rtcp = UdpSocket::bind(SocketAddr::new(
        b.local_addr().unwrap().ip(),
        b.local_addr().unwrap().port() + 1,
    ));
    if let Ok(b_rtcp) = b_rtcp {
        b_rtcp.set_read_timeout(Some(TIMEOUT)).unwrap();
        let (p, from) = recv(&b_rtcp);
        assert_eq!(from.port(), relay_b.port() + 1);
        assert!((200..=201).contains(&p[1]), "{p:?}");
    }
    // Nothing of A's RTCP reached B's RTP socket: everything B got is A's RTP.
    b.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = b.recv_from(&mut buf) {
        assert_eq!(
            buf[1] & 0x7f,
            0,
            "only RTP reaches B's RTP port ({n} bytes)"
        );
    }
}

/// More packets in flight than buffers: buffers recycle, nothing leaks, multishot re-arms on
/// `ENOBUFS` if the ring runs dry.
#[test]
fn bursts_recycle_buffers() {
    if !uring_or_skip("bursts_recycle_buffers") {
        return;
    }
    let config = ShardConfig {
        ring: RingConfig {
            buffers: 64,
            ..RingConfig::default()
        },
        ..ShardConfig::default()
    };
    let r = start(config);
    let c = bridged_call(&r.h, &call());
    let mut got = 0u32;
    c.b.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for round in 0..20u16 {
        for i in 0..50u16 {
            let seq = 2 + round * 50 + i;
            c.a.send_to(&rtp(seq, u32::from(seq) * 160, 1, &[7; 160]), c.relay_a)
                .unwrap();
        }
        // Drain what arrives for this round (bounded by the read timeout on a lost packet).
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = c.b.recv_from(&mut buf) {
            assert_eq!(n, 172);
            got += 1;
            if got.is_multiple_of(50) {
                break;
            }
        }
    }
    let s = wait_stats(&r.h, "all sends done", |s| s.bufring_in_use == 0);
    println!("bursts: received {got}/1000, stats {s:?}");
    assert!(got >= 900, "received {got} of 1000");
}

/// 10^5 packets forwarded through the command path (two endpoints + bridge) by a shard driven on
/// this thread allocate nothing after warm-up; neither do the timers (RTCP reports every ~20 ms
/// per leg, so the timer heap and the report writer run all along).
#[test]
fn forwarding_allocates_nothing() {
    if !uring_or_skip("forwarding_allocates_nothing") {
        return;
    }
    let (tx, _events) = mpsc::channel();
    let config = ShardConfig {
        rtcp_interval: Duration::from_millis(20),
        ..ShardConfig::default()
    };
    let mut shard = Shard::new(config, tx).unwrap();
    let (a, b) = (phone(), phone());
    let run = |shard: &mut Shard, leg, spec| match shard
        .execute(Command::CreateEndpoint {
            call_id: call(),
            leg: LegId(leg),
            spec,
        })
        .unwrap()[..]
    {
        [Event::EndpointCreated { local, .. }] => local,
        ref other => panic!("{other:?}"),
    };
    let relay_a = run(&mut shard, 0, spec_for(&a));
    run(&mut shard, 1, spec_for(&b));
    shard
        .execute(Command::Bridge {
            call_id: call(),
            a: LegId(0),
            b: LegId(1),
        })
        .unwrap();
    let step = |shard: &mut Shard| shard.run_once(Duration::from_millis(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stop = Arc::new(AtomicBool::new(false));
    let blaster = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut seq = 1u16;
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = rtp(seq, u32::from(seq) * 160, 1, &[0x55; 160]);
                let _ = a.send_to(&p, relay_a);
                seq = seq.wrapping_add(1);
                sent += 1;
                if sent.is_multiple_of(64) {
                    std::thread::yield_now();
                }
            }
            sent
        })
    };
    // Drain B so its socket keeps accepting (not required for the relay, keeps sends clean).
    let drain_stop = stop.clone();
    let drainer = std::thread::spawn(move || {
        b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 2048];
        let mut n = 0u64;
        while !drain_stop.load(Ordering::Relaxed) {
            if b.recv_from(&mut buf).is_ok() {
                n += 1;
            }
        }
        n
    });

    while shard.stats().relayed < 2000 {
        assert!(Instant::now() < deadline, "warm-up stalled");
        step(&mut shard);
    }
    let start = shard.stats().relayed;
    COUNTING.with(|c| c.set(true));
    while shard.stats().relayed < start + 100_000 && Instant::now() < deadline {
        step(&mut shard);
    }
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(Cell::get);
    stop.store(true, Ordering::Relaxed);
    let sent = blaster.join().unwrap();
    let received = drainer.join().unwrap();
    let s = shard.stats();
    println!(
        "sent {sent}, relayed {}, received {received}, {s:?}",
        s.relayed
    );
    assert!(
        s.relayed >= start + 100_000,
        "only {} relayed",
        s.relayed - start
    );
    assert_eq!(
        allocs, 0,
        "allocations on the shard thread while forwarding"
    );
    assert!(s.generated > 10, "RTCP reports were sent meanwhile: {s:?}");
}

/// The exported metrics show the multishot receive, its re-arm and the buffer ring at work: a
/// two-buffer ring runs dry under a burst, the kernel ends the multishot receive (`ENOBUFS`, no
/// `more()`), the shard re-arms it and the rest of the burst still gets through. Endpoint drop
/// reasons are exported too.
#[test]
fn metrics_show_multishot_rearm_and_buffer_ring() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    if !uring_or_skip("metrics_show_multishot_rearm_and_buffer_ring") {
        return;
    }
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let config = ShardConfig {
        ring: RingConfig {
            buffers: 2,
            ..RingConfig::default()
        },
        ..ShardConfig::default()
    };
    let (tx, _events) = mpsc::channel();
    let mut shard = metrics::with_local_recorder(&recorder, || Shard::new(config, tx)).unwrap();
    if shard.ring_info().mode != RecvMode::Multishot {
        println!("skipping: kernel lacks multishot receive or buffer rings");
        return;
    }
    let (a, b) = (phone(), phone());
    let create = |shard: &mut Shard, leg, spec| match shard
        .execute(Command::CreateEndpoint {
            call_id: call(),
            leg: LegId(leg),
            spec,
        })
        .unwrap()[..]
    {
        [Event::EndpointCreated { local, .. }] => local,
        ref other => panic!("{other:?}"),
    };
    let relay_a = create(&mut shard, 0, spec_for(&a));
    create(&mut shard, 1, spec_for(&b));
    let deadline = Instant::now() + TIMEOUT;
    // Unbridged: one drop under "unbridged".
    a.send_to(&rtp(0, 0, 1, b"early"), relay_a).unwrap();
    while shard.stats().dropped("unbridged") == 0 {
        assert!(Instant::now() < deadline);
        shard.run_once(Duration::from_millis(10)).unwrap();
    }
    shard
        .execute(Command::Bridge {
            call_id: call(),
            a: LegId(0),
            b: LegId(1),
        })
        .unwrap();
    // A burst larger than the buffer ring, all queued in the socket before the loop runs.
    for seq in 1..17u16 {
        a.send_to(&rtp(seq, u32::from(seq) * 160, 1, &[1; 160]), relay_a)
            .unwrap();
    }
    while shard.stats().relayed < 16 {
        assert!(
            Instant::now() < deadline,
            "burst stalled: {:?}",
            shard.stats()
        );
        shard.run_once(Duration::from_millis(10)).unwrap();
    }
    for _ in 0..16 {
        recv(&b);
    }
    while shard.stats().bufring_in_use != 0 {
        assert!(Instant::now() < deadline);
        shard.run_once(Duration::from_millis(10)).unwrap();
    }
    let stats = shard.stats();
    assert!(stats.multishot_rearms >= 1, "{stats:?}");
    // Per-leg numbers go to histograms when the legs end.
    shard
        .execute(Command::Destroy {
            call_id: call(),
            leg: None,
        })
        .unwrap();
    // One snapshot: taking it resets the debugging recorder's counters.
    let snapshot = snapshotter.snapshot().into_vec();
    let value = |name: &str, label: Option<&str>| {
        snapshot
            .iter()
            .find(|(k, ..)| {
                k.key().name() == name
                    && label.is_none_or(|l| k.key().labels().any(|x| x.value() == l))
            })
            .map(|(.., v)| v)
    };
    assert_eq!(
        value("dialplane_media_packets_relayed_total", None),
        Some(&DebugValue::Counter(16))
    );
    assert_eq!(
        value("dialplane_media_rtp_dropped_total", Some("unbridged")),
        Some(&DebugValue::Counter(1))
    );
    assert_eq!(
        value("dialplane_media_uring_multishot_rearms_total", None),
        Some(&DebugValue::Counter(stats.multishot_rearms))
    );
    assert!(matches!(
        value("dialplane_media_uring_bufring_in_use", None),
        Some(&DebugValue::Gauge(_))
    ));
    assert!(matches!(
        value("dialplane_media_uring_plain_recv", None),
        Some(&DebugValue::Gauge(_))
    ));
    match value("dialplane_media_leg_packets_in", None) {
        Some(DebugValue::Histogram(v)) => {
            let mut v: Vec<f64> = v.iter().map(|x| x.into_inner()).collect();
            v.sort_by(f64::total_cmp);
            assert_eq!(v, [0.0, 17.0], "leg B received nothing, leg A 17 packets");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        value("dialplane_media_leg_jitter_ms", None),
        Some(DebugValue::Histogram(v)) if v.len() == 2
    ));
}

/// Random datagrams (random lengths up to 3000 bytes, half with a valid-looking first byte) from
/// the latched phone: none panics the shard, every one is relayed, dropped or counted as too
/// large, and good packets still flow afterwards.
#[test]
fn random_datagrams_never_break_the_shard() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    if !uring_or_skip("random_datagrams_never_break_the_shard") {
        return;
    }
    let r = start(ShardConfig::default());
    let c = bridged_call(&r.h, &call());
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    let n = 2000u64;
    // Latch first, so that every random datagram comes from the latched source.
    c.a.send_to(&rtp(1, 1, 1, b"latch"), c.relay_a).unwrap();
    recv(&c.b);
    for i in 0..n {
        let len = rng.random_range(0..3000usize);
        let mut p = vec![0u8; len];
        rng.fill(&mut p[..]);
        if rng.random_bool(0.5) && len > 0 {
            p[0] = 0x80 | (p[0] & 0x3f);
        }
        c.a.send_to(&p, c.relay_a).unwrap();
        if i % 16 == 15 {
            // Let the relay drain so its socket's receive queue never overflows (the kernel
            // would drop datagrams before the shard sees them).
            c.a.send_to(&rtp(2, 2, 1, b"sync"), c.relay_a).unwrap();
            while recv(&c.b).0.get(12..) != Some(&b"sync"[..]) {}
        }
    }
    c.a.send_to(&rtp(3, 3, 1, b"end"), c.relay_a).unwrap();
    while recv(&c.b).0.get(12..) != Some(&b"end"[..]) {}
    let s = r.h.stats().unwrap();
    let dropped: u64 = s.dropped.iter().sum();
    println!("random: {s:?}");
    // latch + syncs + end relayed; every random datagram accounted for.
    assert!(s.truncated > 0);
    assert_eq!(s.relayed + dropped + s.truncated, 1 + n + n / 16 + 1);
}

/// The multi-shard front: calls spread over two shards, each call's commands reach its shard,
/// the events of all shards arrive on one channel, unknown calls are 404s.
#[test]
fn media_front_routes_calls_to_shards() {
    if !uring_or_skip("media_front_routes_calls_to_shards") {
        return;
    }
    let (media, events) = Media::start(MediaConfig {
        num_threads: 2,
        port_min: 23500,
        port_max: 23799,
        ..MediaConfig::default()
    })
    .unwrap();
    assert_eq!(media.num_shards(), 2);
    let calls: Vec<(CallId, Call)> = (0..8)
        .map(|i| {
            let id = CallId(format!("front-{i}"));
            let c = bridged_call(&media, &id);
            (id, c)
        })
        .collect();
    for (i, (_, c)) in calls.iter().enumerate() {
        c.a.send_to(&rtp(1, 160, i as u32, b"via front"), c.relay_a)
            .unwrap();
        assert_eq!(&recv(&c.b).0[12..], b"via front");
    }
    let stats = media.stats().unwrap();
    let legs: Vec<usize> = stats.iter().map(|s| s.legs).collect();
    assert_eq!(legs.iter().sum::<usize>(), 16);
    assert!(
        legs.iter().all(|l| *l > 0),
        "both shards have calls: {legs:?}"
    );
    assert_eq!(stats.iter().map(|s| s.relayed).sum::<u64>(), 8);
    let mut latched: Vec<CallId> = (0..8)
        .map(|_| {
            wait_event(&events, "latch", |e| matches!(e, Event::Latched { .. }))
                .call_id()
                .clone()
        })
        .collect();
    latched.sort();
    let mut ids: Vec<CallId> = calls.iter().map(|(id, _)| id.clone()).collect();
    ids.sort();
    assert_eq!(latched, ids, "one latch per call, from both shards");
    assert_eq!(
        media
            .request(Command::Query {
                call_id: CallId("nope".into()),
                leg: None
            })
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        media
            .request(Command::Bridge {
                call_id: calls[0].0.clone(),
                a: LegId(1),
                b: LegId(1)
            })
            .unwrap_err()
            .status(),
        400
    );
    // Posted commands run in order on each call's shard, nobody waiting: half the calls are
    // destroyed that way, and a command that fails comes back as an Error event.
    let mut posted: Vec<Command> = calls[..4]
        .iter()
        .map(|(id, _)| Command::Destroy {
            call_id: id.clone(),
            leg: None,
        })
        .collect();
    posted.push(Command::Unbridge {
        call_id: CallId("nope".into()),
        leg: LegId(3),
    });
    media.post(posted);
    // Each destroyed leg's final counters come on the event channel too (for its CDR).
    let final_counters = std::cell::Cell::new(0);
    let destroyed = |e: &Event| matches!(e, Event::Stats { call_id, .. } if calls[..4].iter().any(|(id, _)| id == call_id));
    let failed = wait_event(&events, "posted error", |e| {
        if destroyed(e) {
            final_counters.set(final_counters.get() + 1);
        }
        matches!(e, Event::Error { .. })
    });
    // Two legs per destroyed call; another shard's may come after the error.
    while final_counters.get() < 8 {
        wait_event(&events, "final counters", destroyed);
        final_counters.set(final_counters.get() + 1);
    }
    assert!(
        matches!(&failed, Event::Error { call_id, leg: Some(LegId(3)), error }
            if call_id.0 == "nope" && error.status() == 404),
        "{failed:?}"
    );
    // A leg created without waiting is there for the commands that follow it.
    let posted_call = CallId("posted".into());
    let (local, ports) = media
        .create_posted(posted_call.clone(), LegId(0), EndpointSpec::default())
        .unwrap();
    assert_eq!(local.port(), ports.rtp);
    let stats = media
        .request(Command::Query {
            call_id: posted_call.clone(),
            leg: Some(LegId(0)),
        })
        .unwrap();
    assert!(
        matches!(stats[..], [Event::Stats { leg: LegId(0), .. }]),
        "{stats:?}"
    );
    for (i, (id, _)) in calls.iter().enumerate() {
        let answer = media.request(Command::Destroy {
            call_id: id.clone(),
            leg: None,
        });
        match answer {
            Ok(done) => assert!(i >= 4 && done.len() == 2, "call {i}: {done:?}"),
            Err(e) => assert!(i < 4 && e.status() == 404, "call {i}: {e}"),
        }
    }
    media.stop();
}

/// 8 kHz samples of a 1 kHz tone at about -10 dBFS.
fn tone(ms: usize) -> Arc<[i16]> {
    (0..ms * 8)
        .map(|i| ((i as f32 * std::f32::consts::TAU / 8.0).sin() * 10_000.0) as i16)
        .collect()
}

/// Receive RTP on `s` until `n` packets arrived; each with its arrival time.
fn recv_n(s: &UdpSocket, n: usize) -> Vec<(Hdr, usize, Instant)> {
    (0..n)
        .map(|_| {
            let (p, _) = recv(s);
            (hdr(&p), p.len(), Instant::now())
        })
        .collect()
}

/// Checks that `next` continues the egress stream after `last` across a source switch: same
/// SSRC, next sequence number, the marker, and a timestamp advanced by the time between them.
fn continues_after_switch(last: &(Hdr, usize, Instant), next: &(Hdr, usize, Instant)) {
    assert_eq!(next.0.ssrc, last.0.ssrc);
    assert_eq!(next.0.seq, last.0.seq.wrapping_add(1));
    assert!(next.0.marker, "first packet after a switch is marked");
    let ticks = next.0.ts.wrapping_sub(last.0.ts) as i64;
    let elapsed = next.2.duration_since(last.2).as_micros() as i64 * 8 / 1000;
    // Arrival times stand in for send times: allow 80 ms of scheduling noise either way.
    assert!(
        (ticks - elapsed).abs() <= 640,
        "timestamp advanced {ticks} ticks over {elapsed} ticks of wall time"
    );
}

/// Player → bridged peer → player on one leg: one egress stream (SSRC stable, sequence
/// continuous, timestamps advanced by the time elapsed, marker after each switch).
#[test]
fn play_bridge_play_keeps_one_egress_stream() {
    if !uring_or_skip("play_bridge_play_keeps_one_egress_stream") {
        return;
    }
    let r = start(ShardConfig::default());
    let (a, b) = (phone(), phone());
    create(&r.h, &call(), 0, spec_for(&a));
    let relay_b = create(&r.h, &call(), 1, spec_for(&b));
    let play = || {
        r.h.request(Command::PlayPcm {
            call_id: call(),
            leg: LegId(0),
            samples: tone(200),
            looped: false,
        })
        .unwrap();
    };
    play();
    let first = recv_n(&a, 10);
    for (i, (h, len, _)) in first.iter().enumerate() {
        assert_eq!((h.pt, *len), (0, 172));
        assert_eq!(h.ssrc, first[0].0.ssrc);
        assert_eq!(h.seq, first[0].0.seq.wrapping_add(i as u16));
        assert_eq!(h.ts, first[0].0.ts.wrapping_add(160 * i as u32));
        assert_eq!(h.marker, i == 0);
    }
    wait_event(&r.events, "play done", |e| {
        matches!(e, Event::PlayDone { leg: LegId(0), .. })
    });
    bridge(&r.h, &call());
    // Some time passes before B talks: the timestamps must show it.
    std::thread::sleep(Duration::from_millis(150));
    for seq in 0..5u16 {
        b.send_to(&rtp(seq, u32::from(seq) * 160, 0xb, &[0xd5; 160]), relay_b)
            .unwrap();
    }
    let bridged = recv_n(&a, 5);
    continues_after_switch(first.last().unwrap(), &bridged[0]);
    for (i, (h, ..)) in bridged.iter().enumerate().skip(1) {
        assert_eq!(h.seq, bridged[0].0.seq.wrapping_add(i as u16));
        assert!(!h.marker);
    }
    std::thread::sleep(Duration::from_millis(150));
    play();
    let second = recv_n(&a, 10);
    continues_after_switch(bridged.last().unwrap(), &second[0]);
    assert!(second[1..].iter().all(|(h, ..)| !h.marker));
    let s = r.h.stats().unwrap();
    assert_eq!((s.generated >= 20, s.relayed), (true, 5), "{s:?}");
}

/// SendDtmf on a leg with telephone-event: RFC 4733 packets with one timestamp, growing
/// durations, the marker on the first and three end packets.
#[test]
fn send_dtmf_as_rfc4733() {
    if !uring_or_skip("send_dtmf_as_rfc4733") {
        return;
    }
    let r = start(ShardConfig::default());
    let a = phone();
    create(&r.h, &call(), 0, spec_for(&a));
    r.h.request(Command::SendDtmf {
        call_id: call(),
        leg: LegId(0),
        digit: '7',
        duration_ms: 100,
        volume: 10,
    })
    .unwrap();
    let mut got = Vec::new();
    while got
        .iter()
        .filter(|(_, p): &&(Hdr, [u8; 4])| p[1] & 0x80 != 0)
        .count()
        < 3
    {
        let (p, _) = recv(&a);
        assert_eq!(p.len(), 16, "{p:?}");
        got.push((hdr(&p), [p[12], p[13], p[14], p[15]]));
    }
    let (h0, _) = &got[0];
    assert!(h0.marker);
    let mut last_duration = 0;
    for (i, (h, p)) in got.iter().enumerate() {
        assert_eq!((h.pt, h.ssrc, h.ts), (101, h0.ssrc, h0.ts));
        assert_eq!(h.seq, h0.seq.wrapping_add(i as u16));
        assert_eq!(h.marker, i == 0);
        assert_eq!((p[0], p[1] & 0x3f), (7, 10), "event 7, volume 10");
        let duration = u16::from_be_bytes([p[2], p[3]]);
        assert!(duration >= last_duration);
        last_duration = duration;
    }
    let ends: Vec<_> = got.iter().filter(|(_, p)| p[1] & 0x80 != 0).collect();
    assert_eq!(ends.len(), 3);
    assert!(
        ends.iter()
            .all(|(_, p)| u16::from_be_bytes([p[2], p[3]]) == 800),
        "100 ms at 8 kHz"
    );
    assert!(got.len() >= 3 + 4, "updates every 20 ms before the end");
}

/// A DTMF tap on a leg reports a key the phone sends in-band, and a fork hands out the decoded
/// frames.
#[test]
fn tap_reports_in_band_digit_and_fork_frames() {
    use dialplane_media::api::{DigitSource, ForkId, ForkMix};
    use dsp::g711::Law;
    if !uring_or_skip("tap_reports_in_band_digit_and_fork_frames") {
        return;
    }
    let r = start(ShardConfig::default());
    let a = phone();
    let relay = create(&r.h, &call(), 0, spec_for(&a));
    r.h.request(Command::Tap {
        call_id: call(),
        leg: LegId(0),
        dtmf: true,
        amd: None,
    })
    .unwrap();
    r.h.request(Command::ForkAudio {
        call_id: call(),
        leg: LegId(0),
        fork: ForkId(3),
        mix: ForkMix::Received,
        sample_rate: 8000,
    })
    .unwrap();
    let mut x = vec![0.0f32; 800];
    x.extend(dsp::dtmf::digits("4", 100, 300));
    x.resize(x.len().div_ceil(160) * 160, 0.0);
    let start = Instant::now();
    for (k, frame) in x.chunks(160).enumerate() {
        let payload: Vec<u8> = frame
            .iter()
            .map(|v| Law::Ulaw.encode((v * 32767.0) as i16))
            .collect();
        a.send_to(&rtp(100 + k as u16, 160 * k as u32, 0xa, &payload), relay)
            .unwrap();
        // Paced like a phone, so the tap's reorder buffer sees real-time arrivals.
        let next = start + Duration::from_millis(20) * (k as u32 + 1);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let digit = wait_event(&r.events, "in-band digit", |e| {
        matches!(e, Event::Digit { .. })
    });
    assert!(
        matches!(
            digit,
            Event::Digit {
                digit: '4',
                source: DigitSource::InBand,
                leg: LegId(0),
                ..
            }
        ),
        "{digit:?}"
    );
    let frame = wait_event(&r.events, "fork frame", |e| {
        matches!(e, Event::AudioFrame { .. })
    });
    assert!(
        matches!(frame, Event::AudioFrame { fork: ForkId(3), ref samples, .. } if samples.len() == 160)
    );
    r.h.request(Command::StopFork {
        call_id: call(),
        fork: ForkId(3),
    })
    .unwrap();
    assert_eq!(
        r.h.request(Command::StopFork {
            call_id: call(),
            fork: ForkId(3),
        })
        .unwrap_err(),
        ApiError::InvalidArgument("unknown fork")
    );
}

/// Without telephone-event the key goes in-band: the tone the relay plays into one leg, sent
/// back by the phone into a tapped leg of another call, is detected there as that key.
#[test]
fn send_dtmf_in_band_is_heard_by_a_tap() {
    use dialplane_media::api::DigitSource;
    if !uring_or_skip("send_dtmf_in_band_is_heard_by_a_tap") {
        return;
    }
    let r = start(ShardConfig::default());
    let (p, q) = (phone(), phone());
    let pcmu_only = PtMap::new(&[(0, Codec::Pcmu)]).unwrap();
    create(
        &r.h,
        &call(),
        0,
        EndpointSpec {
            pt_map: pcmu_only,
            ..spec_for(&p)
        },
    );
    let listener = CallId("listener".into());
    let tapped = create(&r.h, &listener, 0, spec_for(&q));
    r.h.request(Command::Tap {
        call_id: listener.clone(),
        leg: LegId(0),
        dtmf: true,
        amd: None,
    })
    .unwrap();
    r.h.request(Command::SendDtmf {
        call_id: call(),
        leg: LegId(0),
        digit: '#',
        duration_ms: 120,
        volume: 10,
    })
    .unwrap();
    // Relay what P hears into the tapped leg until the tone stops, then some silence.
    let mut seq = 0u16;
    let (first, _) = recv(&p);
    assert_eq!(
        (first.len(), hdr(&first).pt),
        (172, 0),
        "PCMU, no telephone-event"
    );
    q.send_to(&rtp(seq, 0, 0x9, &first[12..]), tapped).unwrap();
    p.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while let Ok((n, _)) = p.recv_from(&mut buf) {
        seq += 1;
        q.send_to(&rtp(seq, 160 * u32::from(seq), 0x9, &buf[12..n]), tapped)
            .unwrap();
    }
    assert!(seq >= 5, "about 120 ms of tone, got {} packets", seq + 1);
    for _ in 0..15 {
        seq += 1;
        q.send_to(&rtp(seq, 160 * u32::from(seq), 0x9, &[0xff; 160]), tapped)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let digit = wait_event(&r.events, "in-band digit", |e| {
        matches!(e, Event::Digit { .. })
    });
    assert!(
        matches!(
            digit,
            Event::Digit { digit: '#', source: DigitSource::InBand, ref call_id, .. } if *call_id == listener
        ),
        "{digit:?}"
    );
}

/// A dub track mixes into the bridged audio in place and is gone after RemoveTrack.
#[test]
fn dub_track_mixes_into_bridged_audio() {
    use dialplane_media::api::{DubAction, TrackId};
    if !uring_or_skip("dub_track_mixes_into_bridged_audio") {
        return;
    }
    let r = start(ShardConfig::default());
    let c = bridged_call(&r.h, &call());
    let dub = |action| {
        r.h.request(Command::Dub {
            call_id: call(),
            leg: LegId(0),
            track: TrackId(1),
            action,
        })
    };
    dub(DubAction::AddTrack).unwrap();
    dub(DubAction::Play {
        samples: tone(1000),
        looped: true,
        gain_db: 0,
    })
    .unwrap();
    // B sends µ-law silence; what reaches A carries the tone (and B's sequence numbers).
    let silent = |from: u16| {
        let mut got = Vec::new();
        for seq in from..from + 10 {
            c.b.send_to(
                &rtp(seq, 160 * u32::from(seq), 0xb, &[0xff; 160]),
                c.relay_b,
            )
            .unwrap();
            let (p, _) = recv(&c.a);
            got.push(p);
            std::thread::sleep(Duration::from_millis(20));
        }
        got
    };
    let mixed = silent(0);
    assert!(
        mixed.iter().any(|p| p[12..].iter().any(|&b| b != 0xff)),
        "the tone is mixed in"
    );
    dub(DubAction::RemoveTrack).unwrap();
    // Drain what was generated meanwhile, then B's silence arrives unchanged.
    c.a.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while c.a.recv_from(&mut buf).is_ok() {}
    c.a.set_read_timeout(Some(TIMEOUT)).unwrap();
    let plain = silent(10);
    assert!(plain.iter().all(|p| p[12..].iter().all(|&b| b == 0xff)));
    assert!(
        dub(DubAction::RemoveTrack).is_err(),
        "no such track any more"
    );
}
