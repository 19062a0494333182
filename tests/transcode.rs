//! Transcoding end to end: `dialplane serve` dials an Opus-only caller (SIPp) through to a
//! PCMU-only callee (SIPp), each SDP pointing at an RTP socket of this test. The callee is offered
//! PCMU and PCMA besides the caller's Opus; it answers PCMU, so the relay transcodes: a 440 Hz
//! tone sent as Opus arrives at the callee as PCMU, and a 1 kHz tone sent as PCMU arrives at the
//! caller as Opus (decoded here with libopus), each on one continuous RTP stream.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::WAIT;
use common::rtp::*;
use common::serve::{CALLED, dial, serve_with_app, sip_target};
use common::sipp::{Run, Sipp};
use dsp::g711::Law;
use serde_json::json;

/// How long each direction is listened to.
const LISTEN: Duration = Duration::from_millis(1500);

/// The scenario `name` of tests/transcode/ with its SDP's media port set to `rtp_port`.
fn scenario(name: &str, rtp_port: u16) -> PathBuf {
    scenario_at(&format!("transcode/{name}"), rtp_port, &[])
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
    let (alice_leg, bob_leg) = (alice.relay(WAIT), bob.relay(WAIT));
    let offer = bob.logged("OFFER ", WAIT);
    let formats: Vec<&str> = offer.split(' ').skip(3).collect();
    assert_eq!(formats, ["111", "0", "8"], "the callee's offer: {offer}");

    // Opus → PCMU.
    let sent = Stream::new(0xa11ce).opus(&tone(440.0, 1000, 0.5), PT_OPUS);
    let at_bob = through(&alice_rtp, alice_leg, &sent, &bob_rtp, LISTEN);
    check_stream(&at_bob, bob_leg, PT_PCMU, FRAME as u32, sent.len());
    check_tone(&decode(&at_bob), 440.0, 0.5, 1000.0);

    // PCMU → Opus.
    let sent = Stream::new(0xb0b).audio(&tone(1000.0, 1000, 0.5), Law::Ulaw);
    let at_alice = through(&bob_rtp, bob_leg, &sent, &alice_rtp, LISTEN);
    check_stream(&at_alice, alice_leg, PT_OPUS, OPUS_CLOCK / 50, sent.len());
    check_tone(&decode_opus(&at_alice, PT_OPUS), 1000.0, 0.5, 440.0);

    serve.finish(&mut [&mut alice, &mut bob]);
}
