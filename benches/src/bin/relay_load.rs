//! Whole-relay load for the io_uring shard driver.
//!
//! `relay_load [--calls N] [--secs S]`: one shard thread with N calls (two endpoints and a bridge
//! each, through the command API); a blaster thread sends a 172-byte PCMU-sized RTP packet every
//! 20 ms on both legs of every call (like `shared/bench/rtpblast.c`), a receiver thread counts what
//! comes out. Prints relayed packets/s and the shard thread's CPU µs per relayed packet.
//!
//! `relay_load --stdin`: the floor relays' protocol (`a_port relay_a_port b_port relay_b_port`
//! lines on stdin, relay ports ascending even pairs as `relay-bench` writes them): the shard's port
//! range starts at the first relay port, each line creates two endpoints (their SDP addresses the
//! phones' ports) and bridges them, so `shared/bench/rtpblast` can drive it exactly as it drives
//! the C floors. Runs until killed.
//!
//! `--taps` (either mode) adds a DTMF + AMD tap on every leg (the "with taps" load).

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use dsp::amd::AmdConfig;
use media::api::{CallId, Command, EndpointSpec, Event, LegId, MediaControl};
use media::driver::{Shard, ShardConfig, spawn};

fn rtp(seq: u16, ssrc: u32) -> [u8; 172] {
    let mut p = [0u8; 172];
    p[0] = 0x80;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Two endpoints (SDP addresses `phones`, when known) bridged as call `n`, with DTMF + AMD taps
/// on both legs when `taps`; their relay addresses.
fn call(
    run: &mut dyn FnMut(Command) -> Vec<Event>,
    n: usize,
    phones: [Option<SocketAddr>; 2],
    taps: bool,
) -> [SocketAddr; 2] {
    let call_id = CallId(format!("load-{n}"));
    let mut out = [SocketAddr::from(([0, 0, 0, 0], 0)); 2];
    for (i, sdp_address) in phones.into_iter().enumerate() {
        let spec = EndpointSpec {
            sdp_address,
            latch_any: sdp_address.is_none(),
            ..EndpointSpec::default()
        };
        let leg = LegId(i as u32);
        match run(Command::CreateEndpoint {
            call_id: call_id.clone(),
            leg,
            spec,
        })[..]
        {
            [Event::EndpointCreated { local, .. }] => out[i] = local,
            ref other => panic!("create endpoint: {other:?}"),
        }
        if taps {
            run(Command::Tap {
                call_id: call_id.clone(),
                leg,
                dtmf: true,
                amd: Some(AmdConfig::default()),
            });
        }
    }
    run(Command::Bridge {
        call_id,
        a: LegId(0),
        b: LegId(1),
    });
    out
}

fn stdin_mode(taps: bool) {
    let lines: Vec<[u16; 4]> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let f: Vec<u16> = line
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            f.try_into().ok()
        })
        .collect();
    let first = lines.first().map_or(30000, |l| l[1]);
    let last = lines.iter().map(|l| l[1].max(l[3])).max().unwrap_or(30000);
    let config = ShardConfig::new([127, 0, 0, 1].into(), first, last.saturating_add(1))
        .expect("relay port range");
    let (events, _rx) = std::sync::mpsc::channel();
    let mut shard = Shard::new(config, events).expect("io_uring shard");
    let mut run = |cmd| shard.execute(cmd).expect("command");
    for (n, [a, ra, b, rb]) in lines.into_iter().enumerate() {
        let phone = |p: u16| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        let got = call(&mut run, n, [phone(a), phone(b)], taps);
        assert_eq!(
            [got[0].port(), got[1].port()],
            [ra, rb],
            "relay ports must be ascending even pairs, free on this host"
        );
    }
    eprintln!("relay_load: {:?}", shard.ring_info());
    shard.run().expect("shard loop");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let taps = args.iter().any(|a| a == "--taps");
    if args.iter().any(|a| a == "--stdin") {
        return stdin_mode(taps);
    }
    let calls = arg(&args, "--calls", 100) as usize;
    let secs = arg(&args, "--secs", 5);
    let (events, _rx) = std::sync::mpsc::channel();
    let (h, thread) = spawn(ShardConfig::default(), events).expect("io_uring shard");
    let mut legs: Vec<(UdpSocket, SocketAddr)> = Vec::with_capacity(calls * 2);
    let mut run = |cmd| h.request(cmd).expect("command");
    for n in 0..calls {
        for relay in call(&mut run, n, [None, None], taps) {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind phone");
            s.set_nonblocking(true).expect("nonblocking");
            legs.push((s, relay));
        }
    }
    let senders: Vec<(UdpSocket, SocketAddr)> = legs
        .iter()
        .map(|(s, r)| (s.try_clone().expect("clone"), *r))
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut got = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut any = false;
                for (s, _) in &legs {
                    while s.recv_from(&mut buf).is_ok() {
                        got += 1;
                        any = true;
                    }
                }
                if !any {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            got
        })
    };
    let before = h.stats().expect("stats");
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut tick = 0u32;
    while Instant::now() < end {
        let seq = tick as u16;
        for (i, (s, relay)) in senders.iter().enumerate() {
            if s.send_to(&rtp(seq, i as u32), relay).is_ok() {
                sent += 1;
            }
        }
        tick += 1;
        let next = start + Duration::from_millis(20) * tick;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    let after = h.stats().expect("stats");
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let received = receiver.join().expect("receiver");
    h.stop();
    thread.join().expect("shard thread").expect("shard loop");
    let relayed = after.relayed - before.relayed;
    let cpu_us = (after.cpu_ns - before.cpu_ns) as f64 / 1000.0;
    println!(
        "relay=dialplane-uring mode={:?} taps={taps} calls={calls} secs={secs} sent={sent} relayed={relayed} \
         received={received} lost_pct={:.3} pps={:.0} cpu_s={:.2} us_per_pkt={:.2} rearms={}",
        after.ring.mode,
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64,
        relayed as f64 / elapsed,
        cpu_us / 1e6,
        cpu_us / relayed.max(1) as f64,
        after.multishot_rearms,
    );
}
