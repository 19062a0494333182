//! Transcoding end to end: `dialplane serve` dials an Opus-only caller (SIPp) through to a
//! PCMU-only callee (SIPp), each SDP pointing at an RTP socket of this test. The callee is offered
//! PCMU and PCMA besides the caller's Opus; it answers PCMU, so the relay transcodes: a 440 Hz
//! tone sent as Opus arrives at the callee as PCMU, and a 1 kHz tone sent as PCMU arrives at the
//! caller as Opus (decoded here with libopus), each on one continuous RTP stream.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::WAIT;
use common::rtp::*;
use common::serve::{CALLED, dial, serve_with_app, sip_target};
use common::sipp::{Run, Sipp};
use dsp::g711::Law;
use serde_json::json;

/// The scenario `name` of tests/transcode/ with its SDP's media port set to `rtp_port`.
fn scenario(name: &str, rtp_port: u16) -> PathBuf {
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/transcode/{name}.xml"));
    let text = std::fs::read_to_string(&template)
        .expect("scenario template")
        .replace("RTP_PORT", &rtp_port.to_string());
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("transcode-{name}.xml"));
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// The value of the first `<log>` line of `sipp` starting with `prefix`, once there is one.
fn logged(sipp: &Sipp, prefix: &str) -> String {
    sipp.wait_log(prefix, WAIT, |l| l.starts_with(prefix));
    let line = sipp.log().into_iter().find(|l| l.starts_with(prefix));
    line.expect("logged")[prefix.len()..].trim().to_string()
}

/// The relay's address for the leg whose SIPp logged "RELAY <port>".
fn relay(sipp: &Sipp) -> SocketAddr {
    // "RELAY <port> (m=audio <port>...)": SIPp wants every captured group used.
    let line = logged(sipp, "RELAY ");
    let port = line.split(' ').next().and_then(|p| p.parse::<u16>().ok());
    let port = port.expect("relay port");
    ([127, 0, 0, 1], port).into()
}

/// Sends `packets` from `from` to `to` (paced) while `at` collects what arrives.
fn through(from: &RtpPeer, to: SocketAddr, packets: &[Packet], at: &RtpPeer) -> Vec<Received> {
    std::thread::scope(|s| {
        s.spawn(|| from.send_paced(to, packets));
        at.receive_for(Duration::from_millis(1500))
    })
}

/// One stream of `pt` packets from `relay`: one SSRC, consecutive sequence numbers, timestamps
/// `step` apart, and most of the `sent` packets.
fn check_stream(got: &[Received], relay: SocketAddr, pt: u8, step: u32, sent: usize) {
    assert!(
        got.len() + 3 >= sent,
        "{} of {sent} packets arrived",
        got.len()
    );
    assert!(got.iter().all(|p| p.pt == pt), "payload types");
    assert!(got.iter().all(|p| p.from == relay), "all from the relay");
    assert!(got.iter().all(|p| p.ssrc == got[0].ssrc), "one SSRC");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence");
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), step, "timestamp step");
    }
}

/// `pcm` after its first 200 ms (codec and resampler start-up) carries `hz` at about `amplitude`
/// and little at `other`.
fn check_tone(pcm: &[i16], hz: f32, amplitude: f32, other: f32) {
    let steady = &pcm[(RATE / 5) as usize..];
    let level = tone_amplitude(steady, hz);
    assert!(
        (amplitude * 0.7..amplitude * 1.2).contains(&level),
        "{hz} Hz at {level}, sent at {amplitude}"
    );
    let leak = tone_amplitude(steady, other);
    assert!(leak < 0.05, "{other} Hz at {leak}");
}

#[test]
fn opus_caller_and_pcmu_callee_hear_each_other() {
    let (alice_rtp, bob_rtp) = (RtpPeer::bind(), RtpPeer::bind());
    let run = |scenario, pause_ms, extra| Run {
        scenario,
        calls: 1,
        pause_ms,
        extra,
    };
    let bob_scenario = scenario("callee", bob_rtp.port());
    let mut bob = Sipp::callee("transcode-bob", run(&bob_scenario, 0, &[]));
    let (_hooks, serve) =
        serve_with_app("transcode", dial(&[sip_target(&bob.uri("bob"))], json!({})));
    let alice_scenario = scenario("caller", alice_rtp.port());
    let mut alice = Sipp::caller(
        "transcode-alice",
        serve.sip,
        run(&alice_scenario, 6000, &["-s", CALLED]),
    );
    let (alice_leg, bob_leg) = (relay(&alice), relay(&bob));
    let offer = logged(&bob, "OFFER ");
    let formats: Vec<&str> = offer.split(' ').skip(3).collect();
    assert_eq!(formats, ["111", "0", "8"], "the callee's offer: {offer}");

    // Opus → PCMU.
    let sent = Stream::new(0xa11ce).opus(&tone(440.0, 1000, 0.5), PT_OPUS);
    let at_bob = through(&alice_rtp, alice_leg, &sent, &bob_rtp);
    check_stream(&at_bob, bob_leg, PT_PCMU, FRAME as u32, sent.len());
    check_tone(&decode(&at_bob), 440.0, 0.5, 1000.0);

    // PCMU → Opus.
    let sent = Stream::new(0xb0b).audio(&tone(1000.0, 1000, 0.5), Law::Ulaw);
    let at_alice = through(&bob_rtp, bob_leg, &sent, &alice_rtp);
    check_stream(&at_alice, alice_leg, PT_OPUS, OPUS_CLOCK / 50, sent.len());
    check_tone(&decode_opus(&at_alice, PT_OPUS), 1000.0, 0.5, 440.0);

    serve.finish(&mut [&mut alice, &mut bob]);
}
