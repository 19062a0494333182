//! A shard transcoding a real bridge: an Opus phone and a PCMU phone on 127.0.0.1, each hearing
//! the other's tone in its own codec, on one continuous stream per direction.

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{ShardConfig, probe, spawn};
use crate::api::{CallId, Command, EndpointSpec, Event, LegId, MediaControl};
use crate::codec::tests::{decode_all, tone_packets, tone_share};
use crate::codec::{FRAME_MS, clock_rate};
use crate::endpoint::{Codec, PtMap};
use crate::rtp::RtpPacket;

const TIMEOUT: Duration = Duration::from_secs(5);
const PACKETS: usize = 50;

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// Send `codec` tone packets (`pt`) from `from` to `to`; what `at` receives: (pt, seq, ts, ssrc,
/// payload) of up to `PACKETS` packets, stopping at the read timeout.
fn send_tone(
    from: &UdpSocket,
    to: SocketAddr,
    codec: Codec,
    pt: u8,
    hz: f32,
    at: &UdpSocket,
) -> Vec<(u8, u16, u32, u32, Vec<u8>)> {
    for (k, (ts, payload)) in tone_packets(codec, hz, PACKETS).into_iter().enumerate() {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&(100 + k as u16).to_be_bytes());
        p.extend_from_slice(&ts.wrapping_add(12_345).to_be_bytes());
        p.extend_from_slice(&0xabcd_0001u32.to_be_bytes());
        p.extend_from_slice(&payload);
        from.send_to(&p, to).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    // The resampler holds back at most a frame: one packet fewer is complete.
    at.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    while got.len() < PACKETS {
        let Ok((n, _)) = at.recv_from(&mut buf) else {
            break;
        };
        let Ok(p) = RtpPacket::parse(&buf[..n]) else {
            continue;
        };
        got.push((
            p.payload_type(),
            p.sequence(),
            p.timestamp(),
            p.ssrc(),
            p.payload().to_vec(),
        ));
    }
    got
}

/// One direction's output: all `pt`, one SSRC, consecutive sequence numbers, 20 ms timestamp
/// steps at `codec`'s clock, and the tone at `hz` dominating the decoded audio.
fn check(got: &[(u8, u16, u32, u32, Vec<u8>)], codec: Codec, pt: u8, hz: f32) {
    assert!(got.len() >= PACKETS - 1, "{codec:?}: {} packets", got.len());
    assert!(got.iter().all(|p| p.0 == pt && p.3 == got[0].3));
    let step = clock_rate(codec).unwrap() * FRAME_MS / 1000;
    for w in got.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1));
        assert_eq!(w[1].2.wrapping_sub(w[0].2), step);
    }
    let payloads: Vec<Vec<u8>> = got.iter().map(|p| p.4.clone()).collect();
    let pcm = decode_all(codec, &payloads);
    let steady = &pcm[pcm.len() / 4..];
    let rate = clock_rate(codec).unwrap();
    let (share, rms) = tone_share(steady, rate, hz);
    assert!(share > 0.8, "{codec:?}: {hz} Hz share {share}");
    assert!((0.18..0.25).contains(&rms), "{codec:?}: rms {rms}");
}

#[test]
fn opus_leg_and_pcmu_leg_hear_each_other() {
    if let Err(why) = probe() {
        println!("skipping: {why}");
        return;
    }
    let (tx, _events) = mpsc::channel();
    let (h, thread) = spawn(ShardConfig::default(), tx).unwrap();
    let call = CallId("transcode@test".into());
    let (a, b) = (phone(), phone());
    let create = |leg: u32, phone: &UdpSocket, map: PtMap| {
        let spec = EndpointSpec {
            sdp_address: Some(phone.local_addr().unwrap()),
            pt_map: map,
            ..EndpointSpec::default()
        };
        match h
            .request(Command::CreateEndpoint {
                call_id: call.clone(),
                leg: LegId(leg),
                spec,
            })
            .unwrap()[..]
        {
            [Event::EndpointCreated { local, .. }] => local,
            ref other => panic!("{other:?}"),
        }
    };
    let relay_a = create(
        0,
        &a,
        PtMap::new(&[(111, Codec::Opus), (101, Codec::TelephoneEvent)]).unwrap(),
    );
    let relay_b = create(
        1,
        &b,
        PtMap::new(&[(0, Codec::Pcmu), (101, Codec::TelephoneEvent)]).unwrap(),
    );
    h.request(Command::Bridge {
        call_id: call.clone(),
        a: LegId(0),
        b: LegId(1),
    })
    .unwrap();

    let at_b = send_tone(&a, relay_a, Codec::Opus, 111, 440.0, &b);
    check(&at_b, Codec::Pcmu, 0, 440.0);
    let at_a = send_tone(&b, relay_b, Codec::Pcmu, 0, 1000.0, &a);
    check(&at_a, Codec::Opus, 111, 1000.0);

    let deadline = Instant::now() + TIMEOUT;
    let stats = loop {
        let s = h.stats().unwrap();
        if s.relayed >= at_a.len() as u64 + at_b.len() as u64 || Instant::now() > deadline {
            break s;
        }
    };
    assert_eq!(stats.dropped("transcode"), 0, "{stats:?}");
    h.stop();
    thread.join().unwrap().unwrap();
}
