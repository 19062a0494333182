//! Whole-relay load for the io_uring shard driver.
//!
//! `relay_load [--calls N] [--secs S]`: one shard thread with N bridges; a blaster thread sends a
//! 172-byte PCMU-sized RTP packet every 20 ms on both legs of every call (like
//! `shared/bench/rtpblast.c`), a receiver thread counts what comes out. Prints relayed packets/s
//! and the shard thread's CPU µs per relayed packet.
//!
//! `relay_load --stdin`: the floor relays' protocol (`a_port relay_a_port b_port relay_b_port`
//! lines on stdin; bridges relay_a_port ↔ relay_b_port), so `shared/bench/rtpblast` can drive
//! it exactly as it drives the C floors. Runs until killed.

use std::io::BufRead;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

fn stdin_mode() {
    let mut shard = Shard::new(ShardConfig::default()).expect("io_uring shard");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let f: Vec<u16> = line
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if let [_, ra, _, rb] = f[..] {
            shard.add_bridge(ra, rb).expect("bind relay ports");
        }
    }
    eprintln!("relay_load: {:?}", shard.ring_info());
    shard.run().expect("shard loop");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--stdin") {
        return stdin_mode();
    }
    let calls = arg(&args, "--calls", 100) as usize;
    let secs = arg(&args, "--secs", 5);
    let (h, thread) = spawn(ShardConfig::default()).expect("io_uring shard");
    let mut legs: Vec<(UdpSocket, SocketAddr)> = Vec::with_capacity(calls * 2);
    for _ in 0..calls {
        let b = h.add_bridge(0, 0).expect("bridge");
        for relay in [b.a, b.b] {
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
        "relay=dialplane-uring mode={:?} calls={calls} secs={secs} sent={sent} relayed={relayed} \
         received={received} lost_pct={:.3} pps={:.0} cpu_s={:.2} us_per_pkt={:.2} rearms={}",
        after.ring.mode,
        100.0 * sent.saturating_sub(received) as f64 / sent.max(1) as f64,
        relayed as f64 / elapsed,
        cpu_us / 1e6,
        cpu_us / relayed.max(1) as f64,
        after.multishot_rearms,
    );
}
