//! The io_uring shard relaying RTP between two real UDP "phones" on 127.0.0.1.
//!
//! Skipped (with a printed reason) where io_uring is unavailable. Every wait is bounded: blocking
//! receives carry a read timeout and polling loops a deadline.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dialplane_media::driver::{
    BridgeInfo, RecvMode, RingConfig, Shard, ShardConfig, ShardHandle, ShardStats, probe, spawn,
};

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

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0x80, 0x00];
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(&ts.to_be_bytes());
    v.extend_from_slice(&ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

struct Hdr {
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
}

fn hdr(b: &[u8]) -> Hdr {
    Hdr {
        marker: b[1] & 0x80 != 0,
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

/// Adds a bridge on `h` and latches two fresh phones to it: B first (dropped "unlatched"), then A
/// (relayed to B, received there).
fn latched_bridge(h: &ShardHandle) -> (BridgeInfo, UdpSocket, UdpSocket) {
    let bridge = h.add_bridge(0, 0).unwrap();
    let (a, b) = (phone(), phone());
    b.send_to(&rtp(1, 1, 2, b"latch"), bridge.b).unwrap();
    wait_stats(h, "unlatched drop", |s| s.dropped("unlatched") == 1);
    a.send_to(&rtp(1, 1, 1, b"latch"), bridge.a).unwrap();
    recv(&b);
    (bridge, a, b)
}

fn relay_between_two_phones(force_plain: bool) {
    let config = ShardConfig {
        ring: RingConfig {
            force_plain,
            ..RingConfig::default()
        },
        ..ShardConfig::default()
    };
    let (h, thread) = spawn(config).unwrap();
    let info = h.stats().unwrap().ring;
    println!("ring: {info:?}");
    if force_plain {
        assert_eq!(info.mode, RecvMode::Plain);
    }
    let bridge = h.add_bridge(0, 0).unwrap();
    let (a, b) = (phone(), phone());

    // A's first packet latches A but B is unknown yet: dropped "unlatched".
    a.send_to(&rtp(100, 1000, 0xaaaa, b"first"), bridge.a)
        .unwrap();
    wait_stats(&h, "unlatched drop", |s| s.dropped("unlatched") == 1);
    // B's first packet latches B and reaches A, from A's relay address.
    b.send_to(&rtp(7, 70, 0xbbbb, b"hello A"), bridge.b)
        .unwrap();
    let (pkt, from) = recv(&a);
    assert_eq!(from, bridge.a);
    assert_eq!(&pkt[12..], b"hello A");
    let to_a = hdr(&pkt);
    assert!(
        to_a.marker,
        "first packet of the egress stream carries the marker"
    );
    assert_ne!(to_a.ssrc, 0xbbbb);

    // A → B: payload intact, SSRC constant, sequence and timestamp continuous.
    let mut first = None;
    for i in 0..200u16 {
        let payload = [i as u8; 160];
        a.send_to(
            &rtp(101 + i, 1160 + 160 * u32::from(i), 0xaaaa, &payload),
            bridge.a,
        )
        .unwrap();
        let (pkt, from) = recv(&b);
        assert_eq!(from, bridge.b);
        assert_eq!(&pkt[12..], &payload[..]);
        let h2 = hdr(&pkt);
        let (ssrc, seq0, ts0) = *first.get_or_insert((h2.ssrc, h2.seq, h2.ts));
        assert_eq!(h2.ssrc, ssrc);
        assert_ne!(h2.ssrc, 0xaaaa);
        assert_eq!(h2.seq, seq0.wrapping_add(i));
        assert_eq!(h2.ts, ts0.wrapping_add(160 * u32::from(i)));
        assert_eq!(h2.marker, i == 0);
    }

    // B → A keeps A's egress stream continuous too. B also writes to A's relay address: it is
    // not A's latched source, so that copy is dropped ("source").
    b.send_to(&rtp(8, 230, 0xbbbb, b"wrong leg"), bridge.a)
        .unwrap();
    b.send_to(&rtp(8, 230, 0xbbbb, b"again"), bridge.b).unwrap();
    let (pkt, _) = recv(&a);
    assert_eq!(&pkt[12..], b"again");
    let h2 = hdr(&pkt);
    assert_eq!(h2.ssrc, to_a.ssrc);
    assert_eq!(h2.seq, to_a.seq.wrapping_add(1));
    assert_eq!(h2.ts, to_a.ts.wrapping_add(160));
    wait_stats(&h, "source drop", |s| s.dropped("source") == 1);

    // A third party after latching: dropped, B never sees it.
    let intruder = phone();
    intruder
        .send_to(&rtp(1, 1, 0xeeee, b"intruder"), bridge.a)
        .unwrap();
    wait_stats(&h, "intruder drop", |s| s.dropped("source") == 2);

    // Hostile packets from the latched phone: validated first, dropped and counted.
    a.send_to(&[0x80, 0, 1], bridge.a).unwrap();
    let mut version1 = rtp(1, 1, 1, b"v1");
    version1[0] = 0x40;
    a.send_to(&version1, bridge.a).unwrap();
    let mut padded = rtp(2, 2, 2, b"xx");
    padded[0] |= 0x20;
    *padded.last_mut().unwrap() = 200;
    a.send_to(&padded, bridge.a).unwrap();
    a.send_to(&[], bridge.a).unwrap();
    let s = wait_stats(&h, "hostile drops", |s| {
        s.dropped("short") == 2 && s.dropped("version") == 1 && s.dropped("padding") == 1
    });

    // Next good packet still flows, continuing the sequence.
    a.send_to(&rtp(301, 49_160, 0xaaaa, b"after"), bridge.a)
        .unwrap();
    let (pkt, _) = recv(&b);
    assert_eq!(&pkt[12..], b"after");
    let (ssrc, seq0, _) = first.unwrap();
    assert_eq!(hdr(&pkt).ssrc, ssrc);
    assert_eq!(hdr(&pkt).seq, seq0.wrapping_add(200));

    let s2 = wait_stats(&h, "relayed count", |s| s.relayed == 203);
    println!("stats: {s2:?}");
    assert_eq!(s.bridges, 1);
    if s.ring.mode == RecvMode::Multishot {
        // Every buffer came back to the ring once its send completed.
        wait_stats(&h, "buffers back", |s| s.bufring_in_use == 0);
    }

    assert!(h.remove_bridge(bridge.id).unwrap());
    assert!(!h.remove_bridge(bridge.id).unwrap());
    assert_eq!(h.stats().unwrap().bridges, 0);

    // The freed socket slots (and fixed-file indexes) serve a new bridge.
    let bridge2 = h.add_bridge(0, 0).unwrap();
    let (c, d) = (phone(), phone());
    c.send_to(&rtp(1, 1, 3, b"c"), bridge2.a).unwrap();
    wait_stats(&h, "second unlatched drop", |s| s.dropped("unlatched") == 2);
    d.send_to(&rtp(1, 1, 4, b"to c"), bridge2.b).unwrap();
    let (pkt, from) = recv(&c);
    assert_eq!((from, &pkt[12..]), (bridge2.a, &b"to c"[..]));
    h.stop();
    thread.join().unwrap().unwrap();
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
    let (h, thread) = spawn(config).unwrap();
    let (bridge, a, b) = latched_bridge(&h);
    let mut got = 0u32;
    for round in 0..20u16 {
        for i in 0..50u16 {
            let seq = 2 + round * 50 + i;
            a.send_to(&rtp(seq, u32::from(seq) * 160, 1, &[7; 160]), bridge.a)
                .unwrap();
        }
        // Drain what arrives for this round (bounded by the read timeout on a lost packet).
        b.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = b.recv_from(&mut buf) {
            assert_eq!(n, 172);
            got += 1;
            if got.is_multiple_of(50) {
                break;
            }
        }
    }
    let s = wait_stats(&h, "all sends done", |s| s.bufring_in_use == 0);
    println!("bursts: received {got}/1000, stats {s:?}");
    assert!(got >= 900, "received {got} of 1000");
    h.stop();
    thread.join().unwrap().unwrap();
}

/// 10^5 packets forwarded by a shard driven on this thread allocate nothing after warm-up.
#[test]
fn forwarding_allocates_nothing() {
    if !uring_or_skip("forwarding_allocates_nothing") {
        return;
    }
    let mut shard = Shard::new(ShardConfig::default()).unwrap();
    let bridge = shard.add_bridge(0, 0).unwrap();
    let (a, b) = (phone(), phone());
    let step = |shard: &mut Shard| shard.run_once(Duration::from_millis(10)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);

    b.send_to(&rtp(1, 1, 2, b"latch"), bridge.b).unwrap();
    while shard.stats().dropped("unlatched") == 0 {
        assert!(Instant::now() < deadline);
        step(&mut shard);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let blaster = {
        let stop = stop.clone();
        let dest = bridge.a;
        std::thread::spawn(move || {
            let mut seq = 1u16;
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let p = rtp(seq, u32::from(seq) * 160, 1, &[0x55; 160]);
                let _ = a.send_to(&p, dest);
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
}

/// The exported metrics show the multishot receive, its re-arm and the buffer ring at work: a
/// two-buffer ring runs dry under a burst, the kernel ends the multishot receive (`ENOBUFS`, no
/// `more()`), the shard re-arms it and the rest of the burst still gets through.
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
    let mut shard = metrics::with_local_recorder(&recorder, || Shard::new(config)).unwrap();
    if shard.ring_info().mode != RecvMode::Multishot {
        println!("skipping: kernel lacks multishot receive or buffer rings");
        return;
    }
    let bridge = shard.add_bridge(0, 0).unwrap();
    let (a, b) = (phone(), phone());
    let deadline = Instant::now() + TIMEOUT;
    b.send_to(&rtp(1, 1, 2, b"latch"), bridge.b).unwrap();
    while shard.stats().dropped("unlatched") == 0 {
        assert!(Instant::now() < deadline);
        shard.run_once(Duration::from_millis(10)).unwrap();
    }
    // A burst larger than the buffer ring, all queued in the socket before the loop runs.
    for seq in 0..16u16 {
        a.send_to(&rtp(seq, u32::from(seq) * 160, 1, &[1; 160]), bridge.a)
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
        value("dialplane_media_rtp_dropped_total", Some("unlatched")),
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
    let (h, thread) = spawn(ShardConfig::default()).unwrap();
    let (bridge, a, b) = latched_bridge(&h);
    let mut rng = StdRng::seed_from_u64(0x5eed_0003);
    let n = 2000u64;
    for i in 0..n {
        let len = rng.random_range(0..3000usize);
        let mut p = vec![0u8; len];
        rng.fill(&mut p[..]);
        if rng.random_bool(0.5) && len > 0 {
            p[0] = 0x80 | (p[0] & 0x3f);
        }
        a.send_to(&p, bridge.a).unwrap();
        if i % 16 == 15 {
            // Let the relay drain so its socket's receive queue never overflows (the kernel
            // would drop datagrams before the shard sees them).
            a.send_to(&rtp(2, 2, 1, b"sync"), bridge.a).unwrap();
            while recv(&b).0[12..] != *b"sync" {}
        }
    }
    a.send_to(&rtp(3, 3, 1, b"end"), bridge.a).unwrap();
    while recv(&b).0[12..] != *b"end" {}
    let s = h.stats().unwrap();
    let dropped: u64 = s.dropped.iter().sum();
    println!("random: {s:?}");
    // latch + syncs + end relayed; the unlatched drop; every random datagram accounted for.
    assert!(s.truncated > 0);
    assert_eq!(s.relayed + dropped + s.truncated, 1 + n + n / 16 + 2);
    h.stop();
    thread.join().unwrap().unwrap();
}
