//! Hostile and random RTP, cross-checked against the webrtc-rs `rtp` crate as an independent
//! reader.
//!
//! The reference parser differs from ours on purpose in three places, accounted for below: it
//! does not check the version, it accepts a zero padding count, and it walks RFC 8285 one- and
//! two-byte extension elements (panicking when an element overruns), which we leave as opaque
//! data. Random buffers carrying those profiles are only checked on our side.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use dialplane_media::rtp::{
    Continuity, RtpError, RtpPacket, RtpPacketMut, extend_u16, extend_u32, is_rtcp,
};
use dialplane_media::telephone_event::{EventReceiver, EventSender, PAYLOAD_LEN, SendSpec};
use hex_literal::hex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp::packet::Packet;
use webrtc_util::Unmarshal;

/// What the reference parser makes of `buf`, or `None` when it rejects it.
fn reference(buf: &[u8]) -> Option<Packet> {
    let mut b = buf;
    Packet::unmarshal(&mut b).ok()
}

fn walks_extension_elements(buf: &[u8]) -> bool {
    if buf.len() < 12 || buf[0] & 0x10 == 0 {
        return false;
    }
    let at = 12 + usize::from(buf[0] & 0x0f) * 4;
    matches!(buf.get(at..at + 2), Some([0xbe, 0xde]) | Some([0x10, 0x00]))
}

fn same_as_reference(ours: &RtpPacket<'_>, theirs: &Packet) {
    let h = &theirs.header;
    assert_eq!(ours.version(), h.version);
    assert_eq!(ours.padding(), h.padding);
    assert_eq!(ours.has_extension(), h.extension);
    assert_eq!(ours.marker(), h.marker);
    assert_eq!(ours.payload_type(), h.payload_type);
    assert_eq!(ours.sequence(), h.sequence_number);
    assert_eq!(ours.timestamp(), h.timestamp);
    assert_eq!(ours.ssrc(), h.ssrc);
    assert!(ours.csrcs().eq(h.csrc.iter().copied()));
    match ours.extension() {
        None => assert!(!h.extension),
        Some((profile, data)) => {
            assert_eq!(profile, h.extension_profile);
            if !matches!(profile, 0xbede | 0x1000) {
                assert_eq!(data, &h.extensions[0].payload[..]);
            }
        }
    }
    assert_eq!(ours.payload(), &theirs.payload[..]);
}

fn check(buf: &[u8]) -> Result<(), RtpError> {
    let ours = RtpPacket::parse(buf);
    // The mutable view agrees with the read-only one.
    let mut copy = buf.to_vec();
    assert_eq!(RtpPacketMut::parse(&mut copy).err(), ours.err());
    let _ = is_rtcp(buf);
    if walks_extension_elements(buf) {
        if let Ok(p) = &ours {
            // Every accessor is in bounds.
            let _ = (
                p.csrcs().count(),
                p.extension(),
                p.payload(),
                p.padding_len(),
            );
        }
        return ours.map(|_| ());
    }
    let theirs = reference(buf);
    match (&ours, &theirs) {
        (Ok(p), Some(t)) => same_as_reference(p, t),
        (Ok(_), None) => panic!("we accept what the reference rejects: {buf:02x?}"),
        (Err(RtpError::Version | RtpError::PaddingZero), _) => {}
        (Err(e), Some(_)) => panic!("we reject ({e}) what the reference accepts: {buf:02x?}"),
        (Err(_), None) => {}
    }
    ours.map(|_| ())
}

#[test]
fn valid_fixtures_match_reference() {
    let fixtures: [&[u8]; 4] = [
        // PCMU with marker.
        &hex!("80 80 1234 deadbeef 01020304 ff7f0080"),
        // Two CSRCs, RFC 3550 extension (profile 0xabcd, 2 words), padding of 3.
        &hex!(
            "b2 08 0001 00000010 cafebabe 11111111 22222222 abcd0002 0102030405060708 d5d5d5 000003"
        ),
        // One-byte (RFC 8285) extension, telephone-event payload.
        &hex!("90 e5 ffff ffffffff 00000001 bede0001 10ff0000 0a0a00a0"),
        // Padding that covers the whole payload.
        &hex!("a0 00 0000 00000000 00000000 00000004"),
    ];
    for f in fixtures {
        check(f).unwrap();
        if !walks_extension_elements(f) {
            assert!(reference(f).is_some());
        }
    }
}

#[test]
fn hostile_fixtures_rejected_with_reason() {
    let cases: [(&[u8], &str); 8] = [
        (&hex!("80 00 0001 00000000"), "short"),
        (&hex!("00 00 0001 00000000 00000000 aabb"), "version"),
        (&hex!("c0 00 0001 00000000 00000000 aabb"), "version"),
        (&hex!("8f 00 0001 00000000 00000000 11111111"), "csrc"),
        (&hex!("90 00 0001 00000000 00000000 abcd"), "extension"),
        (
            &hex!("90 00 0001 00000000 00000000 abcdffff 00000000"),
            "extension",
        ),
        (
            &hex!("a0 00 0001 00000000 00000000 aabbcc00"),
            "padding_zero",
        ),
        (&hex!("a0 00 0001 00000000 00000000 aabbcc05"), "padding"),
    ];
    for (buf, reason) in cases {
        assert_eq!(check(buf).unwrap_err().reason(), reason, "{buf:02x?}");
    }
}

#[test]
fn random_buffers_never_panic_and_agree_with_reference() {
    let mut rng = StdRng::seed_from_u64(0x4733_3550);
    let mut buf = [0u8; 96];
    let mut accepted = 0;
    let mut by_reason = [0usize; RtpError::ALL.len()];
    for i in 0..100_000 {
        let len = rng.random_range(0..=buf.len());
        let b = &mut buf[..len];
        rng.fill(&mut b[..]);
        // Half the time force V=2 and small CC/extension lengths so the deeper checks are reached.
        if i % 2 == 0 && len > 0 {
            b[0] = 0x80 | (b[0] & 0x3f);
            if len >= 16 && b[0] & 0x10 != 0 {
                let at = 12 + usize::from(b[0] & 0x0f) * 4;
                if at + 4 <= len {
                    b[at + 2] = 0;
                    b[at + 3] &= 0x07;
                }
            }
        }
        match check(b) {
            Ok(()) => accepted += 1,
            Err(e) => {
                let k = RtpError::ALL.iter().position(|x| *x == e).unwrap();
                by_reason[k] += 1;
            }
        }
    }
    // Every path was exercised.
    assert!(accepted > 1000, "accepted {accepted}");
    assert!(by_reason.iter().all(|&n| n > 20), "{by_reason:?}");
}

#[test]
fn extend_matches_a_plain_counter() {
    let mut rng = StdRng::seed_from_u64(7);
    let (mut seq, mut ts) = (60_000u64, u64::from(u32::MAX) - 5000);
    let (mut eseq, mut ets) = (Some(seq), Some(ts));
    for _ in 0..300_000 {
        // Mostly forward, sometimes back a little (reorder), never more than half the range.
        seq = seq.saturating_add_signed(rng.random_range(-50..=200));
        ts = ts.saturating_add_signed(rng.random_range(-8000..=40_000));
        let s = extend_u16(eseq, seq as u16);
        let t = extend_u32(ets, ts as u32);
        assert_eq!((s, t), (seq, ts));
        eseq = Some(s);
        ets = Some(t);
    }
}

/// Counts allocations made by the current thread (tests run on their own threads).
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; the counter is a const-initialized
// thread-local Cell, whose access does not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn forwarding_and_rfc4733_paths_do_not_allocate() {
    let mut buf = [0xd5u8; 172];
    buf[..12].copy_from_slice(&hex!("80 00 0001 000000a0 cafebabe"));
    // The counter sees this thread's allocations.
    let probe = ALLOCS.with(Cell::get);
    drop(std::hint::black_box(Vec::<u8>::with_capacity(1)));
    assert_eq!(ALLOCS.with(Cell::get), probe + 1);
    let mut cont = Continuity::new(1, 2, 3);
    let mut rx = EventReceiver::new(8000);
    let mut out = [0u8; PAYLOAD_LEN];
    let before = ALLOCS.with(Cell::get);
    let mut events = 0;
    for i in 0..100_000u32 {
        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        buf[4..8].copy_from_slice(&(i.wrapping_mul(160)).to_be_bytes());
        buf[8] = (i / 1000) as u8; // a source switch every 1000 packets
        let mut p = RtpPacketMut::parse(&mut buf).expect("valid fixture");
        cont.rewrite(&mut p, u64::from(i) * 160);
        p.set_payload_type(8);
        if i % 1000 == 0 {
            let spec = SendSpec::digit('1', 100, 8000, i * 160).expect("DTMF key");
            let mut tx = EventSender::new(spec, u64::from(i) * 160);
            while let Some(now) = tx.poll_timeout() {
                if let Some(e) = tx.poll_transmit(now, &mut out) {
                    rx.handle_packet(now, e.timestamp, e.marker, &out)
                        .expect("4 bytes");
                }
            }
            while rx.poll_event().is_some() {
                events += 1;
            }
        }
    }
    assert_eq!(ALLOCS.with(Cell::get) - before, 0);
    assert_eq!(events, 100);
    assert_eq!(RtpPacket::parse(&buf).map(|p| p.ssrc()), Ok(1));
}
