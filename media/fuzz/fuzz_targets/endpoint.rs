//! Fuzzes a bridged pair of endpoints (the relay's per-leg, sans-IO logic) with arbitrary
//! datagrams on either leg's RTP or RTCP port, from the SDP address or elsewhere, with random
//! configurations (rtcp-mux, RTCP forward/terminate, DTMF, direction, latching), the clock moving
//! and timers firing.
//!
//! This is the RTCP target too: media parses no received compound RTCP beyond this. RTCP is
//! classified by `rtp::rtcp_type` (also the rtcp-mux demultiplexer), then terminated or
//! forwarded unchanged; the only field read from a remote's report is the SR's NTP time
//! (`driver::rtcp::Reporter::on_receive`, crate-private, behind a 28-byte length check).
//!
//! Checks: each datagram ends as one Forward/Event/Drop and every Drop is counted on the leg that
//! received it; forwarded RTCP is byte-for-byte unchanged; forwarded RTP is valid RTP of the same
//! length and payload carrying the peer's egress SSRC, the peer's payload type for the codec,
//! and a sequence number no newer than the peer's last sent; a Latched event names the latched
//! address.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use dialplane_media::endpoint::{
    Codec, Direction, DtmfMode, Endpoint, EndpointConfig, EndpointEvent, Ingress, PtMap, RtcpPolicy,
};
use dialplane_media::rtp::{self, RtpPacket};
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

const ADDRS: [&str; 4] = [
    "203.0.113.1:4000",
    "198.51.100.7:5000",
    "10.0.0.1:4000",
    "[2001:db8::1]:4000",
];

fn addr(i: u8) -> SocketAddr {
    ADDRS[usize::from(i) % ADDRS.len()]
        .parse()
        .expect("literal")
}

fn config(u: &mut Unstructured<'_>, seed: u32) -> Result<EndpointConfig> {
    let f: u8 = u.arbitrary()?;
    let pt_map = if f & 0x80 == 0 {
        PtMap::default()
    } else {
        PtMap::new(&[
            (8, Codec::Pcma),
            (0, Codec::Pcmu),
            (96, Codec::TelephoneEvent),
        ])
        .expect("valid map")
    };
    Ok(EndpointConfig {
        sdp_address: (f & 0x40 == 0).then(|| addr(f >> 4)),
        latch_any: f & 0x20 != 0,
        relatch_after: (f & 0x10 == 0).then_some(Duration::from_millis(500)),
        media_timeout: Duration::from_millis(u64::from(u.arbitrary::<u8>()?) * 20 + 20),
        rtcp_mux: f & 1 != 0,
        rtcp: if f & 2 == 0 {
            RtcpPolicy::Drop
        } else {
            RtcpPolicy::Forward
        },
        dtmf: if f & 4 == 0 {
            DtmfMode::Forward
        } else {
            DtmfMode::Consume
        },
        pt_map,
        clock_rate: 8000,
        direction: [
            Direction::SendRecv,
            Direction::SendOnly,
            Direction::RecvOnly,
            Direction::Inactive,
        ][usize::from(f >> 2) % 4],
        egress_seed: (seed, u.arbitrary()?, u.arbitrary()?),
    })
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut legs = [
        Endpoint::new(t0, config(&mut u, 0xa)?),
        Endpoint::new(t0, config(&mut u, 0xb)?),
    ];
    let mut drops = [0u64; 2];
    while !u.is_empty() {
        let op: u8 = u.arbitrary()?;
        now += Duration::from_millis(u64::from(u.arbitrary::<u8>()?) * 4);
        let i = usize::from(op & 1);
        let (a, b) = legs.split_at_mut(1);
        let (leg, peer) = if i == 0 {
            (&mut a[0], &mut b[0])
        } else {
            (&mut b[0], &mut a[0])
        };
        let on_rtcp_port = op & 2 != 0;
        if op & 4 != 0 {
            if leg.next_timer().is_some_and(|(at, _)| at <= now) {
                leg.handle_timeout(now);
            }
        } else {
            let len = usize::from(u.arbitrary::<u16>()? % 1500).min(u.len());
            let orig = u.bytes(len)?;
            let mut buf = orig.to_vec();
            let src = addr(op >> 3);
            let rtcp = on_rtcp_port || (leg.config().rtcp_mux && rtp::is_rtcp(orig));
            assert_eq!(rtp::rtcp_type(orig).is_some(), rtp::is_rtcp(orig));
            let out = if on_rtcp_port {
                leg.handle_rtcp(now, src, &buf, Some(peer))
            } else {
                leg.handle_rtp(now, src, &mut buf, Some(peer))
            };
            match out {
                Ingress::Drop(reason) => {
                    assert!(!reason.is_empty());
                    drops[i] += 1;
                }
                Ingress::Event => assert!(!rtcp),
                Ingress::Forward { len, .. } if rtcp => {
                    assert_eq!(len, orig.len());
                    assert_eq!(buf, orig);
                }
                Ingress::Forward { len, .. } => {
                    assert_eq!(len, orig.len());
                    let p = RtpPacket::parse(&buf[..len]).expect("forwarded RTP is valid");
                    let codec = leg
                        .config()
                        .pt_map
                        .codec(RtpPacket::parse(orig).expect("accepted").payload_type())
                        .expect("forwarded packets have a codec");
                    assert_eq!(
                        Some(p.payload_type()),
                        peer.config().pt_map.payload_type(codec)
                    );
                    let (ssrc, last) = peer.egress_state();
                    assert_eq!(p.ssrc(), ssrc);
                    // It is the newest sent, or a late one that leaves the newest alone.
                    let (last_seq, last_ts) = last.expect("something was sent");
                    assert!(
                        (last_seq, last_ts) == (p.sequence(), p.timestamp())
                            || (p.sequence().wrapping_sub(last_seq) as i16) < 0
                    );
                    assert_eq!(p.payload(), RtpPacket::parse(orig).expect("ok").payload());
                }
            }
        }
        assert_eq!(leg.stats().dropped_total(), drops[i]);
        while let Some(ev) = leg.poll_event() {
            if let EndpointEvent::Latched(a) = ev {
                assert_eq!(leg.latched(), Some(a));
            }
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
