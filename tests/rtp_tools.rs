//! The test tools of tests/common/rtp.rs measure what they claim: the pcap writer's packets,
//! the RFC 4733 builder and the tone meter, checked against known signals.

mod common;

use std::time::Duration;

use common::rtp::*;
use dsp::g711::Law;
use media::rtp::RtpPacket;
use media::telephone_event::EventPayload;

#[test]
fn a_tone_measures_at_its_frequency_only() {
    let pcm = tone(440.0, 1000, 0.5);
    assert!((tone_amplitude(&pcm, 440.0) - 0.5).abs() < 0.02);
    assert!(tone_amplitude(&pcm, 1000.0) < 0.01);
    assert!((rms(&pcm) - 0.5 / 2f32.sqrt()).abs() < 0.01);
}

#[test]
fn audio_packets_are_continuous_and_decode_back() {
    let mut s = Stream::new(7);
    let pcm = tone(1000.0, 100, 0.5);
    let packets = s.audio(&pcm, Law::Ulaw);
    assert_eq!(packets.len(), 5);
    let parsed: Vec<_> = packets
        .iter()
        .map(|p| RtpPacket::parse(&p.data).expect("RTP"))
        .collect();
    assert!(parsed[0].marker() && !parsed[1].marker());
    assert_eq!(parsed[1].sequence(), parsed[0].sequence() + 1);
    assert_eq!(parsed[1].timestamp(), parsed[0].timestamp() + FRAME as u32);
    assert_eq!(packets[4].at, Duration::from_millis(80));
    let from = "127.0.0.1:1".parse().expect("addr");
    let received: Vec<_> = packets
        .iter()
        .filter_map(|p| Received::parse(&p.data, from))
        .collect();
    assert!((tone_amplitude(&decode(&received), 1000.0) - 0.5).abs() < 0.03);
}

#[test]
fn a_key_press_is_one_event_with_three_ends() {
    let mut s = Stream::new(7);
    let packets = s.event('5', 200, PT_EVENT);
    let events: Vec<_> = packets
        .iter()
        .map(|p| {
            let r = RtpPacket::parse(&p.data).expect("RTP");
            (
                r.timestamp(),
                EventPayload::decode(r.payload()).expect("event"),
            )
        })
        .collect();
    assert!(events.iter().all(|(ts, e)| *ts == 0 && e.event == 5));
    assert_eq!(events.iter().filter(|(_, e)| e.end).count(), 3);
    assert_eq!(events.last().expect("end").1.duration, 1600);
    assert_eq!(s.audio(&silence(20), Law::Ulaw).len(), 1);
}

/// SIPp plays a pcap written here: a callee answering with `play_pcap_audio` sends the tone to
/// the caller's media address, where it decodes back to the same tone.
#[test]
fn sipp_plays_a_written_pcap() {
    use common::sipp::{Run, Sipp};
    use std::net::UdpSocket;

    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rtp_tools");
    std::fs::create_dir_all(&dir).expect("dir");
    let pcap = dir.join("tone.pcap");
    write_pcap(
        &pcap,
        &Stream::new(42).audio(&tone(440.0, 1000, 0.5), Law::Ulaw),
    );
    let template =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rtp_tools/play.xml");
    let scenario = pcap_scenario(&template, &pcap, &dir);
    let callee = Sipp::callee(
        "rtp-tools-play",
        Run {
            scenario: &scenario,
            calls: 1,
            pause_ms: 0,
            extra: &[],
        },
    );
    let peer = RtpPeer::bind();
    let sip = UdpSocket::bind("127.0.0.1:0").expect("sip socket");
    sip.set_read_timeout(Some(common::WAIT)).expect("timeout");
    let me = sip.local_addr().expect("addr");
    let to: std::net::SocketAddr = format!("127.0.0.1:{}", callee.port).parse().expect("addr");
    let sdp = format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
        peer.port()
    );
    let request = |method: &str, cseq: u32, body: &str| {
        format!(
            "{method} sip:play@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-{method}{cseq}\r\n\
             From: <sip:t@{me}>;tag=t1\r\nTo: <sip:play@{to}>{totag}\r\nCall-ID: rtp-tools-1\r\n\
             CSeq: {cseq} {method}\r\nContact: <sip:t@{me}>\r\nMax-Forwards: 70\r\n{ctype}\
             Content-Length: {}\r\n\r\n{body}",
            body.len(),
            totag = if method == "INVITE" {
                ""
            } else {
                ";tag=[totag]"
            },
            ctype = if body.is_empty() {
                ""
            } else {
                "Content-Type: application/sdp\r\n"
            },
        )
    };
    // SIPp may not listen yet: resend the INVITE until it answers.
    let mut buf = [0u8; 4096];
    let mut answer = None;
    for _ in 0..50 {
        sip.send_to(request("INVITE", 1, &sdp).as_bytes(), to)
            .expect("INVITE");
        sip.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        if let Ok(n) = sip.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with("SIP/2.0 200") {
                answer = Some(text);
                break;
            }
        }
    }
    let answer = answer.expect("SIPp answers 200");
    let to_tag = answer
        .lines()
        .find(|l| l.starts_with("To:"))
        .and_then(|l| l.split("tag=").nth(1))
        .expect("To tag")
        .trim()
        .to_string();
    let ack = request("ACK", 1, "").replace("[totag]", &to_tag);
    sip.send_to(ack.as_bytes(), to).expect("ACK");
    let received = peer.receive_for(Duration::from_millis(1500));
    let bye = request("BYE", 2, "").replace("[totag]", &to_tag);
    sip.send_to(bye.as_bytes(), to).expect("BYE");
    assert!(received.len() >= 45, "{} packets", received.len());
    let pcm = decode(&received);
    assert!(
        tone_amplitude(&pcm, 440.0) > 0.4,
        "{}",
        tone_amplitude(&pcm, 440.0)
    );
    assert!(tone_amplitude(&pcm, 1000.0) < 0.02);
    drop(callee);
}

#[test]
fn speech_is_synthesised_at_8k() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("rtp_tools-speech");
    std::fs::create_dir_all(&dir).expect("dir");
    let pcm = speech("Hello, you have reached the test.", &dir);
    // A second or more of audible speech.
    assert!(pcm.len() > RATE as usize, "{} samples", pcm.len());
    assert!(rms(&pcm) > 0.01, "{}", rms(&pcm));
}
