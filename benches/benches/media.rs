//! Per-packet cost of the media plane's pure stages
//!
//! `rtp/parse_rewrite_pcmu_172` validates a 172-byte PCMU packet (12-byte header + 160 bytes,
//! 20 ms at 8 kHz) and rewrites it in place for an egress stream (SSRC, sequence, timestamp,
//! payload type, marker) through [`media::rtp::Continuity`], as the relay does for every
//! forwarded packet: ns per packet. The packet's sequence and timestamp advance every iteration,
//! like a live leg. The `rfc4733/*` functions encode a whole key press (updates and end repeats)
//! and feed it to a receiver: ns per telephone-event packet. `srtp/protect_pcmu_172` protects
//! that packet in place (AES-CM + HMAC-SHA1-80, as for a leg that speaks SRTP); `srtp/
//! protect_unprotect_pcmu_172` also authenticates and decrypts it on a receiving session (the
//! cost of an SRTP ingress leg plus an SRTP egress leg): ns per packet, to set against
//! `rtp/parse_rewrite_pcmu_172`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use media::rtp::{Continuity, RtpPacketMut};
use media::srtp::{MAX_OVERHEAD, MasterKey, Session, Suite};
use media::telephone_event::{EventReceiver, EventSender, PAYLOAD_LEN, SendSpec};

fn pcmu_packet() -> [u8; 172] {
    let mut p = [0xd5u8; 172];
    p[..12].copy_from_slice(&[0x80, 0x00, 0, 1, 0, 0, 0, 160, 0xca, 0xfe, 0xba, 0xbe]);
    p
}

fn rtp(c: &mut Criterion) {
    let mut g = c.benchmark_group("rtp");
    g.throughput(Throughput::Elements(1));
    let mut buf = pcmu_packet();
    let mut cont = Continuity::new(0x5eed_0001, 1000, 123_456);
    let (mut seq, mut ts, mut now) = (1u16, 160u32, 0u64);
    g.bench_function("parse_rewrite_pcmu_172", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            now += 160;
            // The "arrival": the source's own numbering in the received buffer.
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&ts.to_be_bytes());
            let Ok(mut p) = RtpPacketMut::parse(black_box(&mut buf[..])) else {
                unreachable!("the fixture is valid")
            };
            cont.rewrite(&mut p, now);
            p.set_payload_type(0);
            p.set_marker(false);
            black_box(p.sequence())
        })
    });
    g.bench_function("parse_only_pcmu_172", |b| {
        b.iter(|| {
            let p = RtpPacketMut::parse(black_box(&mut buf[..]));
            black_box(p.map(|p| p.payload().len()).ok())
        })
    });
    g.finish();
}

fn srtp(c: &mut Criterion) {
    let key = MasterKey {
        suite: Suite::AesCm128HmacSha1_80,
        key: [0x11; 16],
        salt: [0x22; 14],
    };
    let mut g = c.benchmark_group("srtp");
    g.throughput(Throughput::Elements(1));
    let mut buf = [0u8; 172 + MAX_OVERHEAD];
    let mut tx = Session::new(key, key);
    let mut rx = Session::new(key, key);
    let mut seq = 0u16;
    g.bench_function("protect_pcmu_172", |b| {
        b.iter(|| {
            buf[..172].copy_from_slice(&pcmu_packet());
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            black_box(tx.protect_rtp(black_box(&mut buf), 172))
        })
    });
    g.bench_function("protect_unprotect_pcmu_172", |b| {
        b.iter(|| {
            buf[..172].copy_from_slice(&pcmu_packet());
            seq = seq.wrapping_add(1);
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            let Ok(len) = tx.protect_rtp(&mut buf, 172) else {
                unreachable!("the buffer has room for the tag")
            };
            black_box(rx.unprotect_rtp(black_box(&mut buf[..len])))
        })
    });
    g.finish();
}

fn rfc4733(c: &mut Criterion) {
    // 100 ms key press, 50 ms updates: 2 updates (the second is the first end) + 2 repeats.
    let spec = SendSpec::digit('5', 100, 8000, 1000).expect("'5' is a DTMF key");
    let per_press = {
        let mut s = EventSender::new(spec, 0);
        let mut out = [0; PAYLOAD_LEN];
        std::iter::from_fn(|| s.next_packet(&mut out)).count() as u64
    };
    let mut g = c.benchmark_group("rfc4733");
    g.throughput(Throughput::Elements(per_press));
    g.bench_function("encode_press", |b| {
        b.iter(|| {
            let mut s = EventSender::new(black_box(spec), 0);
            let mut out = [0; PAYLOAD_LEN];
            let mut sum = 0u32;
            while let Some(p) = s.next_packet(&mut out) {
                sum = sum.wrapping_add(p.timestamp) ^ u32::from_be_bytes(out);
            }
            black_box(sum)
        })
    });
    let mut packets = [(0u64, 0u32, false, [0u8; PAYLOAD_LEN]); 8];
    let mut n = 0;
    let mut s = EventSender::new(spec, 0);
    let mut out = [0; PAYLOAD_LEN];
    while let Some(p) = s.next_packet(&mut out) {
        packets[n] = (p.due, p.timestamp, p.marker, out);
        n += 1;
    }
    let mut rx = EventReceiver::new(8000);
    for &(due, ts, m, payload) in &packets[..n] {
        let _ = rx.handle_packet(due, ts, m, &payload);
    }
    assert!(
        rx.poll_event()
            .is_some_and(|k| k.digit() == Some('5') && k.duration == 800)
    );
    let mut shift = 0u32;
    g.bench_function("decode_press", |b| {
        b.iter(|| {
            // A new press (new timestamp) every iteration.
            shift = shift.wrapping_add(8000);
            for &(due, ts, m, payload) in &packets[..n] {
                let _ =
                    rx.handle_packet(u64::from(shift) + due, ts.wrapping_add(shift), m, &payload);
            }
            black_box(rx.poll_event())
        })
    });
    g.finish();
}

criterion_group!(benches, rtp, srtp, rfc4733);
criterion_main!(benches);
