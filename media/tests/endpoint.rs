//! Sans-IO endpoint tests with a fake clock (`t0 + offsets`), plus a per-thread counting
//! allocator proving the forwarding path allocates nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dialplane_media::endpoint::{
    Codec, Direction, DtmfMode, Endpoint, EndpointConfig, EndpointEvent, Ingress, PtMap,
    RtcpPolicy, Timer,
};
use dialplane_media::rtp::{RtpPacket, RtpPacketMut};
use dialplane_media::telephone_event::{EventSender, SendSpec};

mod counting_alloc;
use counting_alloc::allocs;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const A_SDP: &str = "203.0.113.10:4000";
const B_SDP: &str = "198.51.100.20:5000";

fn ms(t0: Instant, ms: u64) -> Instant {
    t0 + Duration::from_millis(ms)
}

/// Write an RTP packet (12-byte header + `payload_len` bytes of 0xd5) into `buf`; returns its length.
fn rtp(
    buf: &mut [u8],
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload_len: usize,
) -> usize {
    buf[0] = 0x80;
    buf[1] = (u8::from(marker) << 7) | pt;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..12 + payload_len].fill(0xd5);
    12 + payload_len
}

fn config(sdp: &str) -> EndpointConfig {
    EndpointConfig {
        sdp_address: Some(addr(sdp)),
        ..EndpointConfig::default()
    }
}

fn pair(t0: Instant) -> (Endpoint, Endpoint) {
    let a = Endpoint::new(t0, config(A_SDP));
    let mut bc = config(B_SDP);
    bc.egress_seed = (0xb0b0_b0b0, 65534, u32::MAX - 100);
    (a, Endpoint::new(t0, bc))
}

fn send(ep: &mut Endpoint, peer: &mut Endpoint, now: Instant, src: &str, seq: u16) -> Ingress {
    let mut buf = [0u8; 172];
    let n = rtp(&mut buf, 0, false, seq, u32::from(seq) * 160, 0xaaaa, 160);
    ep.handle_rtp(now, addr(src), &mut buf[..n], Some(peer))
}

fn drain(ep: &mut Endpoint) -> Vec<EndpointEvent> {
    std::iter::from_fn(|| ep.poll_event()).collect()
}

#[test]
fn latches_on_matching_sdp_address_then_strict_source() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    // Public SDP address: a packet from elsewhere does not latch.
    assert_eq!(
        send(&mut a, &mut b, t0, "203.0.113.10:4002", 1),
        Ingress::Drop("source")
    );
    assert_eq!(a.latched(), None);
    let r = send(&mut a, &mut b, ms(t0, 20), A_SDP, 2);
    assert_eq!(
        r,
        Ingress::Forward {
            dest: addr(B_SDP),
            len: 172
        }
    );
    assert_eq!(a.latched(), Some(addr(A_SDP)));
    assert_eq!(drain(&mut a), [EndpointEvent::Latched(addr(A_SDP))]);
    // A third party after the latch: dropped and counted.
    for i in 0..3 {
        assert_eq!(
            send(&mut a, &mut b, ms(t0, 40 + i), "192.0.2.66:6666", 3),
            Ingress::Drop("source")
        );
    }
    let s = a.stats();
    assert_eq!(s.dropped("source"), 4);
    assert_eq!(s.packets_in, 1);
    assert_eq!(b.stats().packets_out, 1);
    assert_eq!(a.latched(), Some(addr(A_SDP)));
}

#[test]
fn private_sdp_address_latches_first_packet() {
    let t0 = Instant::now();
    let (_, mut b) = pair(t0);
    for sdp in [
        "192.168.1.10:4000",
        "100.64.3.4:4000",
        "0.0.0.0:4000",
        "169.254.0.9:4000",
    ] {
        let mut a = Endpoint::new(t0, config(sdp));
        assert!(matches!(
            send(&mut a, &mut b, t0, "198.51.100.99:31000", 1),
            Ingress::Forward { .. }
        ));
        assert_eq!(a.latched(), Some(addr("198.51.100.99:31000")));
        // Now strict: even the SDP address itself is foreign.
        assert_eq!(send(&mut a, &mut b, t0, sdp, 2), Ingress::Drop("source"));
    }
    // latch_any with a public SDP address.
    let mut c = config(A_SDP);
    c.latch_any = true;
    let mut a = Endpoint::new(t0, c);
    assert!(matches!(
        send(&mut a, &mut b, t0, "192.0.2.1:1234", 1),
        Ingress::Forward { .. }
    ));
    assert_eq!(a.latched(), Some(addr("192.0.2.1:1234")));
}

#[test]
fn relatch_after_quiet_period_and_explicitly() {
    let t0 = Instant::now();
    let (_, mut b) = pair(t0);
    let mut c = config("10.0.0.5:4000");
    c.relatch_after = Some(Duration::from_secs(5));
    let mut a = Endpoint::new(t0, c);
    let x = "198.51.100.1:4000";
    let y = "198.51.100.2:4000";
    assert!(matches!(
        send(&mut a, &mut b, t0, x, 1),
        Ingress::Forward { .. }
    ));
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 1000), x, 2),
        Ingress::Forward { .. }
    ));
    // Quiet for 4.999 s: still locked.
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 5999), y, 1),
        Ingress::Drop("source")
    );
    // Quiet for 5 s: y takes over, x is now foreign.
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 6000), y, 2),
        Ingress::Forward { .. }
    ));
    assert_eq!(a.latched(), Some(addr(y)));
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 6020), x, 3),
        Ingress::Drop("source")
    );
    // Explicit relatch (re-INVITE): the first qualifying packet locks again; from the old
    // address it simply keeps the latch.
    a.relatch();
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 6040), y, 3),
        Ingress::Forward { .. }
    ));
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 6060), x, 4),
        Ingress::Drop("source")
    );
    // From a new address it moves the latch there.
    a.relatch();
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 6080), x, 5),
        Ingress::Forward { .. }
    ));
    assert_eq!(a.latched(), Some(addr(x)));
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 6100), y, 4),
        Ingress::Drop("source")
    );
    let ev = drain(&mut a);
    let latches: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            EndpointEvent::Latched(a) => Some(a.to_string()),
            _ => None,
        })
        .collect();
    // Only the newest latch is reported when several happen between drains.
    assert_eq!(latches, [x]);
    // No quiet-period relatch when disabled.
    let mut c = config("10.0.0.5:4000");
    c.relatch_after = None;
    let mut a = Endpoint::new(t0, c);
    let _ = send(&mut a, &mut b, t0, x, 1);
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 3_600_000), y, 1),
        Ingress::Drop("source")
    );
}

#[test]
fn new_sdp_address_moves_the_latch() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let _ = send(&mut a, &mut b, t0, A_SDP, 1);
    assert_eq!(a.latched(), Some(addr(A_SDP)));
    // re-INVITE to a new public address: the old source is still accepted (it no longer
    // qualifies, so it does not end the relatch) until the new address sends.
    let new = "203.0.113.99:4100";
    a.set_sdp_address(Some(addr(new)));
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 20), A_SDP, 2),
        Ingress::Forward { .. }
    ));
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 40), "192.0.2.3:3", 3),
        Ingress::Drop("source")
    );
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 60), new, 4),
        Ingress::Forward { .. }
    ));
    assert_eq!(a.latched(), Some(addr(new)));
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 80), A_SDP, 5),
        Ingress::Drop("source")
    );
}

#[test]
fn media_timeout_exactly_at_deadline() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    a.handle_timeout(ms(t0, 29_999));
    assert_eq!(a.poll_event(), None);
    // A packet at 30 s resets the deadline to 90 s.
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 30_000), A_SDP, 1),
        Ingress::Forward { .. }
    ));
    let _ = drain(&mut a);
    assert_eq!(a.poll_timeout(), Some(ms(t0, 90_000)));
    a.handle_timeout(ms(t0, 60_000));
    a.handle_timeout(ms(t0, 89_999));
    assert_eq!(a.poll_event(), None);
    a.handle_timeout(ms(t0, 90_000));
    assert_eq!(drain(&mut a), [EndpointEvent::MediaTimeout]);
    // Once only.
    a.handle_timeout(ms(t0, 200_000));
    assert_eq!(a.poll_event(), None);
    assert_eq!(a.poll_timeout(), None);
    // A foreign packet does not re-arm it; the latched source does.
    let _ = send(&mut a, &mut b, ms(t0, 200_000), "192.0.2.9:9", 2);
    assert_eq!(a.poll_timeout(), None);
    let _ = send(&mut a, &mut b, ms(t0, 200_000), A_SDP, 2);
    assert_eq!(a.poll_timeout(), Some(ms(t0, 260_000)));
    // Without any packet: from creation, default 60 s.
    let mut e = Endpoint::new(t0, config(A_SDP));
    e.handle_timeout(ms(t0, 59_999));
    assert_eq!(e.poll_event(), None);
    e.handle_timeout(ms(t0, 60_000));
    assert_eq!(e.poll_event(), Some(EndpointEvent::MediaTimeout));
    // Configurable.
    let mut c = config(A_SDP);
    c.media_timeout = Duration::from_secs(5);
    let mut e = Endpoint::new(t0, c);
    e.handle_timeout(ms(t0, 4999));
    assert_eq!(e.poll_event(), None);
    e.handle_timeout(ms(t0, 5000));
    assert_eq!(e.poll_event(), Some(EndpointEvent::MediaTimeout));
}

#[test]
fn payload_type_mapping() {
    let t0 = Instant::now();
    let a_map = PtMap::default(); // PCMU 0, PCMA 8, G722 9, CN 13, G729 18, TE 101
    let b_map = PtMap::new(&[
        (0, Codec::Pcmu),
        (13, Codec::ComfortNoise),
        (96, Codec::TelephoneEvent),
    ])
    .unwrap();
    let mut a = Endpoint::new(
        t0,
        EndpointConfig {
            pt_map: a_map,
            ..config(A_SDP)
        },
    );
    let mut b = Endpoint::new(
        t0,
        EndpointConfig {
            pt_map: b_map,
            ..config(B_SDP)
        },
    );
    let mut buf = [0u8; 172];
    let mut go = |pt: u8, seq: u16, len: usize| {
        let n = rtp(&mut buf, pt, false, seq, u32::from(seq) * 160, 1, len);
        let r = a.handle_rtp(
            ms(t0, u64::from(seq) * 20),
            addr(A_SDP),
            &mut buf[..n],
            Some(&mut b),
        );
        (r, RtpPacket::parse(&buf[..n]).unwrap().payload_type())
    };
    // PCMU stays 0.
    assert!(matches!(go(0, 1, 160).0, Ingress::Forward { .. }));
    assert_eq!(go(0, 2, 160).1, 0);
    // Comfort noise passes through.
    assert_eq!(go(13, 3, 1).1, 13);
    // telephone-event 101 → 96.
    let (r, pt) = go(101, 4, 4);
    assert!(matches!(r, Ingress::Forward { .. }));
    assert_eq!(pt, 96);
    // G722 is not negotiated on B; PT 120 unknown on A.
    assert_eq!(go(9, 5, 160).0, Ingress::Drop("codec"));
    assert_eq!(go(120, 6, 160).0, Ingress::Drop("payload_type"));
    assert_eq!(a.stats().dropped("codec"), 1);
    assert_eq!(a.stats().dropped("payload_type"), 1);
}

/// Egress seq/ts/ssrc/marker of a rewritten buffer.
fn out(buf: &[u8]) -> (u16, u32, u32, bool) {
    let p = RtpPacket::parse(buf).unwrap();
    (p.sequence(), p.timestamp(), p.ssrc(), p.marker())
}

#[test]
fn continuity_bridged_player_bridged_with_wrap() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0); // B egress: ssrc 0xb0b0b0b0, seq 65534, ts u32::MAX - 100
    let mut buf = [0u8; 172];
    let mut seen = Vec::new();
    // 3 bridged packets from A at 0, 20, 40 ms (A's seq 7000.., ts 0..).
    for i in 0..3u16 {
        let n = rtp(
            &mut buf,
            0,
            i == 0,
            7000 + i,
            u32::from(i) * 160,
            0xaaaa,
            160,
        );
        let r = a.handle_rtp(
            ms(t0, u64::from(i) * 20),
            addr(A_SDP),
            &mut buf[..n],
            Some(&mut b),
        );
        assert!(matches!(r, Ingress::Forward { .. }));
        seen.push(out(&buf[..n]));
    }
    // The player takes over at 100 ms (its own SSRC and numbering).
    for i in 0..2u16 {
        let n = rtp(
            &mut buf,
            0,
            false,
            100 + i,
            5_000_000 + u32::from(i) * 160,
            0x9999,
            160,
        );
        let mut p = RtpPacketMut::parse(&mut buf[..n]).unwrap();
        let dest = b.egress(ms(t0, 100 + u64::from(i) * 20), &mut p, Codec::Pcmu);
        assert_eq!(dest, Ok(addr(B_SDP)));
        seen.push(out(&buf[..n]));
    }
    // Bridged again at 200 ms.
    let n = rtp(&mut buf, 0, false, 7010, 1600, 0xaaaa, 160);
    let r = a.handle_rtp(ms(t0, 200), addr(A_SDP), &mut buf[..n], Some(&mut b));
    assert!(matches!(r, Ingress::Forward { .. }));
    seen.push(out(&buf[..n]));
    let s = 0xb0b0_b0b0;
    let ts0 = u32::MAX - 100;
    assert_eq!(
        seen,
        [
            (65534, ts0, s, true),
            (65535, ts0.wrapping_add(160), s, false),
            (0, ts0.wrapping_add(320), s, false),
            // Switch at 100 ms: 60 ms (480 ticks) after the last packet at 40 ms.
            (1, ts0.wrapping_add(800), s, true),
            (2, ts0.wrapping_add(960), s, false),
            // Switch at 200 ms: 80 ms (640 ticks) after the player's last packet at 120 ms.
            (3, ts0.wrapping_add(1600), s, true),
        ]
    );
}

#[test]
fn ingress_wrap_stays_continuous_through_switches() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let mut buf = [0u8; 172];
    let mut t = 0u64;
    let mut outs = Vec::new();
    // A's own seq and ts wrap while bridged; then a player burst; then A again (still wrapping
    // numbers); then the player restarts with an unchanged SSRC (switch_source).
    let mut a_seq = 65533u16;
    let mut a_ts = u32::MAX - 319;
    for round in 0..3 {
        for _ in 0..4 {
            let n = rtp(&mut buf, 0, false, a_seq, a_ts, 0xaaaa, 160);
            let r = a.handle_rtp(ms(t0, t), addr(A_SDP), &mut buf[..n], Some(&mut b));
            assert!(matches!(r, Ingress::Forward { .. }));
            outs.push(out(&buf[..n]));
            a_seq = a_seq.wrapping_add(1);
            a_ts = a_ts.wrapping_add(160);
            t += 20;
        }
        for i in 0..3u16 {
            if round == 1 && i == 0 {
                b.switch_source();
            }
            let n = rtp(
                &mut buf,
                0,
                false,
                40 + i,
                7 + u32::from(i) * 160,
                0x9999,
                160,
            );
            let mut p = RtpPacketMut::parse(&mut buf[..n]).unwrap();
            b.egress(ms(t0, t), &mut p, Codec::Pcmu).unwrap();
            outs.push(out(&buf[..n]));
            t += 20;
        }
    }
    // Every packet was sent 20 ms after the previous one: seq +1 and ts +160 all the way, with
    // the marker exactly on the switches.
    for w in outs.windows(2) {
        assert_eq!(w[1].0, w[0].0.wrapping_add(1));
        assert_eq!(w[1].1, w[0].1.wrapping_add(160));
        assert_eq!(w[1].2, 0xb0b0_b0b0);
    }
    let markers: Vec<usize> = (0..outs.len()).filter(|&i| outs[i].3).collect();
    assert_eq!(markers, [0, 4, 7, 11, 14, 18]);
}

#[test]
fn rfc4733_press_in_is_one_digit() {
    let t0 = Instant::now();
    for mode in [DtmfMode::Forward, DtmfMode::Consume] {
        let (_, mut b) = pair(t0);
        let mut a = Endpoint::new(
            t0,
            EndpointConfig {
                dtmf: mode,
                ..config(A_SDP)
            },
        );
        let mut tx = EventSender::new(SendSpec::digit('5', 100, 8000, 8000).unwrap(), 0);
        let mut payload = [0u8; 4];
        let mut buf = [0u8; 16];
        let mut seq = 500u16;
        while let Some(tick) = tx.poll_timeout() {
            let p = tx.poll_transmit(tick, &mut payload).unwrap();
            let n = rtp(&mut buf, 101, p.marker, seq, p.timestamp, 0xaaaa, 0);
            buf[12..16].copy_from_slice(&payload);
            seq += 1;
            let now = t0 + Duration::from_micros(tick * 125);
            let r = a.handle_rtp(now, addr(A_SDP), &mut buf[..n + 4], Some(&mut b));
            match mode {
                DtmfMode::Forward => assert!(matches!(r, Ingress::Forward { .. })),
                DtmfMode::Consume => assert_eq!(r, Ingress::Event),
            }
        }
        let digits: Vec<_> = drain(&mut a)
            .into_iter()
            .filter_map(|e| match e {
                EndpointEvent::Digit(k) => Some((k.digit(), k.timestamp, k.duration)),
                _ => None,
            })
            .collect();
        assert_eq!(digits, [(Some('5'), 8000, 800)]);
    }
}

#[test]
fn rfc4733_lost_end_closed_by_timeout() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let mut buf = [0u8; 16];
    let n = rtp(&mut buf, 101, true, 1, 0, 0xaaaa, 0);
    buf[12..16].copy_from_slice(&[1, 10, 0, 160]);
    let _ = a.handle_rtp(t0, addr(A_SDP), &mut buf[..n + 4], Some(&mut b));
    let _ = drain(&mut a);
    // The press's 200 ms timer comes before the media timeout.
    let deadline = a.poll_timeout().unwrap();
    assert_eq!(deadline, ms(t0, 200));
    assert_eq!(a.next_timer(), Some((deadline, Timer::DtmfEnd)));
    a.handle_timeout(ms(t0, 199));
    assert_eq!(a.poll_event(), None);
    a.handle_timeout(deadline);
    match a.poll_event() {
        Some(EndpointEvent::Digit(k)) => assert_eq!(k.digit(), Some('1')),
        other => panic!("{other:?}"),
    }
    assert_eq!(a.poll_timeout(), Some(ms(t0, 60_000)));
    assert_eq!(a.next_timer(), Some((ms(t0, 60_000), Timer::Media)));
    // An unrepresentable timeout never fires and never panics.
    let mut c = config(A_SDP);
    c.media_timeout = Duration::MAX;
    let mut e = Endpoint::new(t0, c);
    e.handle_timeout(ms(t0, 1 << 40));
    assert_eq!((e.poll_timeout(), e.poll_event()), (None, None));
}

#[test]
fn loss_and_jitter_hand_computed() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let mut buf = [0u8; 172];
    // seq 1..=5 at ts 0,160,320,480,640; seq 3 lost; seq 4 arrives 10 ms late.
    // Arrivals in ticks: 0, 160, -, 560, 640 → transit 0, 0, 80, 0 → |D| = 0, 80, 80.
    // A.8 fixed point: J16 = 0 → 0 + 80 - 0 = 80 → 80 + 80 - ((80 + 8) >> 4) = 155; J = 155 >> 4 = 9.
    for (seq, at_ms) in [(1u16, 0u64), (2, 20), (4, 70), (5, 80)] {
        let n = rtp(
            &mut buf,
            0,
            false,
            seq,
            u32::from(seq - 1) * 160,
            0x1234,
            160,
        );
        let r = a.handle_rtp(ms(t0, at_ms), addr(A_SDP), &mut buf[..n], Some(&mut b));
        assert!(matches!(r, Ingress::Forward { .. }));
    }
    let s = a.stats();
    assert_eq!((s.expected, s.received, s.lost()), (5, 4, 1));
    assert_eq!(s.jitter, 9);
    assert!((s.jitter_ms() - 1.125).abs() < 1e-9);
    assert_eq!((s.packets_in, s.bytes_in), (4, 4 * 172));
    // A duplicate makes loss go negative-ward (A.3 counts duplicates as received).
    let n = rtp(&mut buf, 0, false, 5, 640, 0x1234, 160);
    let _ = a.handle_rtp(ms(t0, 81), addr(A_SDP), &mut buf[..n], Some(&mut b));
    assert_eq!(a.stats().lost(), 0);
    // Wrap: a new source from 65534 across 0 loses nothing.
    let (mut c, _) = pair(t0);
    for (i, seq) in [65534u16, 65535, 0, 1].into_iter().enumerate() {
        let n = rtp(&mut buf, 0, false, seq, i as u32 * 160, 7, 160);
        let _ = c.handle_rtp(
            ms(t0, i as u64 * 20),
            addr(A_SDP),
            &mut buf[..n],
            Some(&mut b),
        );
    }
    let s = c.stats();
    assert_eq!((s.expected, s.received, s.lost(), s.jitter), (4, 4, 0, 0));
}

#[test]
fn hostile_packets_dropped_with_reason() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let cases: [(&[u8], &str); 7] = [
        (&[0x80, 0, 0, 1, 0], "short"),
        (
            &[0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xd5, 0],
            "padding_zero",
        ),
        // A telephone-event (PT 101) with a 2-byte payload: a valid RTP header, a bad event.
        (
            &[0x80, 101, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 5, 0x8a],
            "event_short",
        ),
        (&[0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], "version"),
        (&[0x83, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0], "csrc"),
        (&[0xa0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 9], "padding"),
        (
            &[0x90, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5],
            "extension",
        ),
    ];
    for (bytes, reason) in cases {
        let mut buf = bytes.to_vec();
        assert_eq!(
            a.handle_rtp(t0, addr(A_SDP), &mut buf, Some(&mut b)),
            Ingress::Drop(reason)
        );
        assert_eq!(a.stats().dropped(reason), 1, "{reason}");
    }
    // (the event_short packet is valid RTP from the SDP address, so it latched)
    assert_eq!(a.latched(), Some(addr(A_SDP)));
    assert_eq!(a.stats().packets_in, 1);
    let mut a = Endpoint::new(t0, config(A_SDP));
    // Random bytes: never a panic, never a latch from a foreign source.
    let mut x = 0x1234_5678u32;
    for len in 0..2000usize {
        let mut buf = [0u8; 64];
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        let _ = a.handle_rtp(t0, addr("192.0.2.77:1"), &mut buf[..len % 64], Some(&mut b));
    }
    assert_eq!(a.latched(), None);
    assert_eq!(a.stats().packets_in, 0);
    assert_eq!(b.stats().packets_out, 0);
}

#[test]
fn direction_hold_and_unbridged() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    a.set_direction(Direction::RecvOnly);
    assert_eq!(
        send(&mut a, &mut b, t0, A_SDP, 1),
        Ingress::Drop("direction")
    );
    assert_eq!(a.latched(), Some(addr(A_SDP)), "still latched and counted");
    a.set_direction(Direction::SendRecv);
    b.set_direction(Direction::SendOnly);
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 20), A_SDP, 2),
        Ingress::Drop("direction")
    );
    b.set_direction(Direction::Inactive);
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 40), A_SDP, 3),
        Ingress::Drop("direction")
    );
    b.set_direction(Direction::SendRecv);
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 60), A_SDP, 4),
        Ingress::Forward { .. }
    ));
    let mut buf = [0u8; 172];
    let n = rtp(&mut buf, 0, false, 5, 800, 0xaaaa, 160);
    assert_eq!(
        a.handle_rtp(ms(t0, 80), addr(A_SDP), &mut buf[..n], None),
        Ingress::Drop("unbridged")
    );
    assert_eq!(a.stats().dropped("direction"), 3);
    assert_eq!(a.stats().packets_in, 5);
}

#[test]
fn rtcp_mux_dropped_by_default_forwarded_on_request() {
    let t0 = Instant::now();
    let rr = [0x80u8, 201, 0, 1, 0, 0, 0, 0xaa];
    for (policy, want) in [
        (RtcpPolicy::Drop, Ingress::Drop("rtcp")),
        (
            RtcpPolicy::Forward,
            Ingress::Forward {
                dest: addr(B_SDP),
                len: 8,
            },
        ),
    ] {
        let mut a = Endpoint::new(
            t0,
            EndpointConfig {
                rtcp_mux: true,
                rtcp: policy,
                ..config(A_SDP)
            },
        );
        let mut b = Endpoint::new(
            t0,
            EndpointConfig {
                rtcp_mux: true,
                ..config(B_SDP)
            },
        );
        // RTCP before any RTP: never latches.
        let mut buf = rr;
        assert_eq!(
            a.handle_rtp(t0, addr(A_SDP), &mut buf, Some(&mut b)),
            Ingress::Drop("source")
        );
        let _ = send(&mut a, &mut b, t0, A_SDP, 1);
        let mut buf = rr;
        assert_eq!(a.handle_rtp(t0, addr(A_SDP), &mut buf, Some(&mut b)), want);
        assert_eq!(a.stats().rtcp_in, 1);
    }
    // Separate RTCP port: the peer's RTCP address is its RTP port + 1.
    let (mut a, b) = pair(t0);
    let mut cfg = a.config().clone();
    cfg.rtcp = RtcpPolicy::Forward;
    a = Endpoint::new(t0, cfg);
    let mut b2 = b.clone();
    let _ = send(&mut a, &mut b2, t0, A_SDP, 1);
    assert_eq!(
        a.handle_rtcp(t0, addr("203.0.113.10:4000"), &rr, Some(&b)),
        Ingress::Forward {
            dest: addr("198.51.100.20:5001"),
            len: 8
        }
    );
}

#[test]
fn rtcp_port_rejects_non_rtcp() {
    let t0 = Instant::now();
    let (mut a, b) = pair(t0);
    assert_eq!(
        a.handle_rtcp(
            t0,
            addr(A_SDP),
            &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1],
            Some(&b)
        ),
        Ingress::Drop("rtcp_invalid")
    );
    assert_eq!(a.stats().dropped("rtcp_invalid"), 1);
    assert_eq!(a.stats().dropped_total(), 1);
}

#[test]
fn new_ssrc_restarts_sequence_space_and_event_receiver() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let mut buf = [0u8; 172];
    // Source 1: seq 100..=102 (no loss). Source 2: seq 9000, 9002 (one lost).
    for (i, (ssrc, seq)) in [(1u32, 100u16), (1, 101), (1, 102), (2, 9000), (2, 9002)]
        .into_iter()
        .enumerate()
    {
        let n = rtp(&mut buf, 0, false, seq, i as u32 * 160, ssrc, 160);
        let _ = a.handle_rtp(
            ms(t0, i as u64 * 20),
            addr(A_SDP),
            &mut buf[..n],
            Some(&mut b),
        );
    }
    let s = a.stats();
    assert_eq!((s.expected, s.received, s.lost()), (6, 5, 1));
    // An event begun by the old stream is closed (as NextEvent) when the SSRC changes.
    let n = rtp(&mut buf, 101, true, 9003, 50_000, 2, 0);
    buf[12..16].copy_from_slice(&[3, 10, 0, 160]);
    let _ = a.handle_rtp(ms(t0, 200), addr(A_SDP), &mut buf[..n + 4], Some(&mut b));
    let n = rtp(&mut buf, 0, false, 7, 0, 3, 160);
    let _ = a.handle_rtp(ms(t0, 220), addr(A_SDP), &mut buf[..n], Some(&mut b));
    let digits: Vec<_> = drain(&mut a)
        .into_iter()
        .filter_map(|e| match e {
            EndpointEvent::Digit(k) => k.digit(),
            _ => None,
        })
        .collect();
    assert_eq!(digits, ['3']);
}

#[test]
fn blocked_media_still_reports_dtmf() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    a.set_media_blocked(true);
    assert_eq!(send(&mut a, &mut b, t0, A_SDP, 1), Ingress::Drop("blocked"));
    let mut buf = [0u8; 16];
    let n = rtp(&mut buf, 101, true, 2, 0, 0xaaaa, 0);
    buf[12..16].copy_from_slice(&[11, 0x8a, 0, 160]);
    assert_eq!(
        a.handle_rtp(ms(t0, 20), addr(A_SDP), &mut buf[..n + 4], Some(&mut b)),
        Ingress::Drop("blocked")
    );
    assert!(drain(&mut a).contains(&EndpointEvent::Digit(
        dialplane_media::telephone_event::KeyPress {
            event: 11,
            timestamp: 0,
            duration: 160,
            volume: 10,
            end: dialplane_media::telephone_event::EndReason::EndBit,
        }
    )));
    a.set_media_blocked(false);
    a.set_dtmf_mode(DtmfMode::Consume);
    let n = rtp(&mut buf, 101, true, 3, 800, 0xaaaa, 0);
    buf[12..16].copy_from_slice(&[1, 0x8a, 0, 160]);
    assert_eq!(
        a.handle_rtp(ms(t0, 40), addr(A_SDP), &mut buf[..n + 4], Some(&mut b)),
        Ingress::Event
    );
    assert!(matches!(
        send(&mut a, &mut b, ms(t0, 60), A_SDP, 4),
        Ingress::Forward { .. }
    ));
    assert_eq!(a.stats().dropped("blocked"), 2);
}

#[test]
fn backwards_clock_is_ignored() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let _ = send(&mut a, &mut b, ms(t0, 1000), A_SDP, 1);
    // An earlier `now` is treated as the latest one: no underflow, deadline unchanged.
    let _ = send(&mut a, &mut b, t0, A_SDP, 2);
    assert_eq!(a.poll_timeout(), Some(ms(t0, 61_000)));
}

#[test]
fn forwarding_allocates_nothing() {
    let t0 = Instant::now();
    let (mut a, mut b) = pair(t0);
    let mut tx = EventSender::new(SendSpec::digit('9', 100, 8000, 0).unwrap(), 0);
    let mut payload = [0u8; 4];
    let mut buf = [0u8; 172];
    let mut ebuf = [0u8; 16];
    let mut forwarded = 0u32;
    let before = allocs();
    for i in 0..100_000u32 {
        let now = t0 + Duration::from_micros(u64::from(i) * 20_000);
        let seq = i as u16;
        let n = rtp(&mut buf, 0, false, seq, i.wrapping_mul(160), 0xaaaa, 160);
        if let Ingress::Forward { len, .. } =
            a.handle_rtp(now, addr(A_SDP), &mut buf[..n], Some(&mut b))
        {
            assert_eq!(len, 172);
            forwarded += 1;
        }
        // Hostile and foreign packets on the same path.
        if i % 1000 == 0 {
            let _ = a.handle_rtp(now, addr("192.0.2.1:1"), &mut buf[..n], Some(&mut b));
            let _ = a.handle_rtp(now, addr(A_SDP), &mut buf[..5], Some(&mut b));
        }
        // A few telephone-events and player packets through B's egress.
        if i < 20
            && let Some(tick) = tx.poll_timeout()
        {
            let p = tx.poll_transmit(tick, &mut payload).unwrap();
            let n = rtp(
                &mut ebuf,
                101,
                p.marker,
                60_000 + i as u16,
                p.timestamp,
                0xaaaa,
                0,
            );
            ebuf[12..16].copy_from_slice(&payload);
            let _ = a.handle_rtp(now, addr(A_SDP), &mut ebuf[..n + 4], Some(&mut b));
        }
        if i % 5000 == 4999 {
            let n = rtp(&mut buf, 0, false, seq, 0, 0x7777, 160);
            let mut p = RtpPacketMut::parse(&mut buf[..n]).unwrap();
            let _ = b.egress(now, &mut p, Codec::Pcmu);
        }
        a.handle_timeout(now);
        while a.poll_event().is_some() {}
    }
    let after = allocs();
    assert_eq!(after - before, 0, "allocations on the packet path");
    assert!(forwarded >= 99_990, "{forwarded}");
    assert_eq!(a.stats().dropped("source"), 100);
    assert_eq!(a.stats().dropped("short"), 100);
}

#[test]
fn peer_without_address_drops() {
    let t0 = Instant::now();
    let mut a = Endpoint::new(t0, config(A_SDP));
    let mut b = Endpoint::new(t0, EndpointConfig::default()); // no SDP address, not latched
    assert_eq!(b.destination(), None);
    assert_eq!(
        send(&mut a, &mut b, t0, A_SDP, 1),
        Ingress::Drop("peer_address")
    );
    // Once B latches, A's packets go to B's latched source.
    let _ = send(&mut b, &mut a, t0, "192.0.2.50:7000", 1);
    assert_eq!(
        send(&mut a, &mut b, ms(t0, 20), A_SDP, 2),
        Ingress::Forward {
            dest: addr("192.0.2.50:7000"),
            len: 172
        }
    );
}

/// Seeded random traffic both ways (valid, mutated, foreign, reordered, events), with random
/// clock steps: no panic, and every call is accounted for exactly once in the stats.
#[test]
fn random_traffic_is_accounted_for() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    for seed in 0..20u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let t0 = Instant::now();
        let (mut a, mut b) = pair(t0);
        let mut now = t0;
        let (mut fwd, mut ev, mut calls) = ([0u64; 2], [0u64; 2], [0u64; 2]);
        let srcs = [A_SDP, B_SDP, "192.0.2.1:1", "10.0.0.1:4000"];
        for i in 0..5000u32 {
            now += Duration::from_micros(rng.random_range(0..40_000));
            let mut buf = [0u8; 200];
            let pt = [0u8, 8, 101, 13, 9, 120, 200][rng.random_range(0..7)];
            let seq = (i as u16).wrapping_add(rng.random_range(0..5));
            let mut n = rtp(&mut buf, pt & 0x7f, rng.random(), seq, i * 160, 0xaaaa, 20);
            if pt == 101 {
                buf[12..16].copy_from_slice(&[rng.random_range(0..17), rng.random(), 0, 160]);
            }
            match rng.random_range(0..10) {
                0 => n = rng.random_range(0..n),
                1 => buf[rng.random_range(0..n)] = rng.random(),
                2 => buf[0] = rng.random(),
                _ => {}
            }
            let src = addr(srcs[rng.random_range(0..srcs.len())]);
            let dir = rng.random_range(0..2);
            let (x, y) = if dir == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            if rng.random_range(0..50) == 0 {
                x.relatch();
            }
            calls[dir] += 1;
            match x.handle_rtp(now, src, &mut buf[..n], Some(y)) {
                Ingress::Forward { len, .. } => {
                    assert_eq!(len, n);
                    fwd[dir] += 1;
                }
                Ingress::Event => ev[dir] += 1,
                Ingress::Drop(_) => {}
            }
            x.handle_timeout(now);
            while x.poll_event().is_some() {}
        }
        for (dir, ep) in [(0, &a), (1, &b)] {
            let s = ep.stats();
            assert_eq!(
                fwd[dir] + ev[dir] + s.dropped_total(),
                calls[dir],
                "seed {seed}"
            );
            // No rtcp-mux here, so every forward is an RTP packet the other leg sent.
            let other = if dir == 0 { b.stats() } else { a.stats() };
            assert_eq!(other.packets_out, fwd[dir], "seed {seed}");
        }
    }
}
