//! Media features on Opus legs end to end: `dialplane serve` with SIPp for the signaling (the
//! scenarios of `tests/transcode/`, codecs swapped where a test needs the other side in Opus,
//! and `tests/opus_media/`) and the test's own UDP sockets as the RTP endpoints, encoding and
//! decoding Opus with libopus (audiopus). An Opus caller's in-band key reaches dtmfCapture; a
//! dub track is heard on an Opus callee, alone and mixed over the caller's transcoded audio; a
//! caller moving from PCMU to Opus by re-INVITE keeps being heard and hears Opus. Needs `sipp`.

mod common;

use std::time::Duration;

use common::rtp::*;
use common::serve::{CALLED, HOOK_WAIT, dial, serve_with_app, sip_target};
use common::sipp::{Run, Sipp};
use dsp::g711::Law;
use serde_json::json;

/// Longest wait for a call to be set up (SIPp starts slowly on a loaded machine).
const SETUP: Duration = Duration::from_secs(10);

/// How long each direction is listened to.
const LISTEN: Duration = Duration::from_millis(1500);

/// tests/transcode/caller.xml offering PCMU instead of Opus.
const PCMU_CALLER: [(&str, &str); 3] = [
    ("RTP/AVP 111", "RTP/AVP 0"),
    ("a=rtpmap:111 opus/48000/2", "a=rtpmap:0 PCMU/8000"),
    ("      a=fmtp:111 useinbandfec=1\n", ""),
];

/// tests/transcode/callee.xml answering Opus instead of PCMU.
const OPUS_CALLEE: [(&str, &str); 2] = [
    ("RTP/AVP 0", "RTP/AVP 111"),
    ("a=rtpmap:0 PCMU/8000", "a=rtpmap:111 opus/48000/2"),
];

fn callee(name: &str, scenario: &std::path::Path) -> Sipp {
    Sipp::callee(
        name,
        Run {
            scenario,
            calls: 1,
            pause_ms: 0,
            extra: &[],
        },
    )
}

fn caller(name: &str, sip: std::net::SocketAddr, scenario: &std::path::Path, ms: u64) -> Sipp {
    Sipp::caller(
        name,
        sip,
        Run {
            scenario,
            calls: 1,
            pause_ms: ms,
            extra: &["-s", CALLED],
        },
    )
}

#[test]
fn in_band_keys_of_an_opus_caller_hit_the_dtmf_hook() {
    let (alice_rtp, bob_rtp) = (RtpPeer::bind(), RtpPeer::bind());
    let mut bob = callee(
        "opus-dtmf-bob",
        &scenario_at("transcode/callee", bob_rtp.port(), &[]),
    );
    let (hooks, serve) = serve_with_app(
        "opus-dtmf",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({
                "actionHook": "/action",
                "dtmfCapture": {"parentCall": ["12"]},
                "dtmfHook": "/dtmf",
            }),
        ),
    );
    let scenario = scenario_at("transcode/caller", alice_rtp.port(), &[]);
    let mut alice = caller("opus-dtmf-alice", serve.sip, &scenario, 3000);
    let alice_leg = alice.relay(SETUP);
    // Q.24 tones of 1 and 2 in the caller's Opus, no telephone-event.
    let mut pcm = silence(200);
    pcm.extend(dtmf("12", 100, 100));
    pcm.extend(silence(300));
    alice_rtp.send_paced(alice_leg, &Stream::new(0xa11ce).opus(&pcm, PT_OPUS));
    let hits = hooks.wait("/dtmf", "the dtmfHook", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(hits[0].json["dtmf"], "12", "{}", serve.log_tail());
    serve.finish(&mut [&mut alice, &mut bob]);
    let metrics = serve.metrics();
    assert!(
        metrics.contains("dialplane_dtmf_digits_total{source=\"inband\"} 2"),
        "two presses in band:\n{metrics}"
    );
}

#[test]
fn a_dub_track_is_heard_on_an_opus_callee_alone_and_over_the_caller() {
    let (alice_rtp, bob_rtp) = (RtpPeer::bind(), RtpPeer::bind());
    let mut bob = callee(
        "opus-dub-bob",
        &scenario_at("transcode/callee", bob_rtp.port(), &OPUS_CALLEE),
    );
    let (hooks, serve) = serve_with_app("opus-dub", json!([]));
    let wav = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("opus-dub.wav");
    write_wav(&wav, &tone(440.0, 1000, 0.4));
    hooks.answer_bytes("/dub.wav", "audio/wav", &std::fs::read(&wav).expect("wav"));
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"dub": [
                {"action": "addTrack", "track": "a"},
                {"action": "playOnTrack", "track": "a", "play": hooks.url("/dub.wav"), "loop": true}
            ]}),
        ),
    );
    let scenario = scenario_at("transcode/caller", alice_rtp.port(), &PCMU_CALLER);
    let mut alice = caller("opus-dub-alice", serve.sip, &scenario, 6000);
    let (alice_leg, bob_leg) = (alice.relay(SETUP), bob.relay(SETUP));

    // The caller is silent: the track goes alone, Opus on the leg's 20 ms clock.
    let _ = bob_rtp.receive_for(Duration::from_millis(600));
    let alone = bob_rtp.receive_for(Duration::from_millis(1000));
    check_stream(&alone, bob_leg, PT_OPUS, OPUS_CLOCK / 50, 50);
    check_tone(&decode_opus(&alone, PT_OPUS), 440.0, 0.4, 1000.0);

    // The caller's 1 kHz PCMU tone, transcoded to Opus with the track mixed in before encoding.
    let sent = Stream::new(0xb0b).audio(&tone(1000.0, 1000, 0.3), Law::Ulaw);
    let mixed = through(&alice_rtp, alice_leg, &sent, &bob_rtp, LISTEN);
    assert!(
        mixed
            .iter()
            .all(|p| p.pt == PT_OPUS && p.ssrc == alone[0].ssrc)
    );
    let pcm = decode_opus(&mixed, PT_OPUS);
    // 200–900 ms: both tones at their levels.
    let both = &pcm[(RATE / 5) as usize..(RATE * 9 / 10) as usize];
    let (dub, far) = (tone_amplitude(both, 440.0), tone_amplitude(both, 1000.0));
    assert!((0.3..0.48).contains(&dub), "track at {dub}");
    assert!((0.21..0.36).contains(&far), "caller at {far}");
    serve.finish(&mut [&mut alice, &mut bob]);
}

#[test]
fn a_caller_moving_to_opus_mid_call_is_heard_and_hears_opus() {
    let (alice_rtp, bob_rtp) = (RtpPeer::bind(), RtpPeer::bind());
    let mut bob = callee(
        "opus-reinvite-bob",
        &scenario_at("opus_media/callee_reinvited", bob_rtp.port(), &[]),
    );
    let (_hooks, serve) = serve_with_app(
        "opus-reinvite",
        dial(&[sip_target(&bob.uri("bob"))], json!({})),
    );
    let scenario = scenario_at("opus_media/caller_reinvite", alice_rtp.port(), &[]);
    let mut alice = caller("opus-reinvite-alice", serve.sip, &scenario, 2500);
    let (alice_leg, bob_leg) = (alice.relay(SETUP), bob.relay(SETUP));

    // PCMU both sides: relayed as it is.
    let sent = Stream::new(1).audio(&tone(1000.0, 400, 0.5), Law::Ulaw);
    let before = through(
        &bob_rtp,
        bob_leg,
        &sent,
        &alice_rtp,
        Duration::from_millis(800),
    );
    assert!(before.len() >= 15 && before.iter().all(|p| p.pt == PT_PCMU));

    // The caller re-INVITEs with Opus only: answered with Opus.
    let answer = alice.logged("REINVITE ", Duration::from_secs(10));
    assert!(
        answer.starts_with("m=audio ") && answer.ends_with("RTP/AVP 111"),
        "{answer}"
    );

    // Its Opus reaches the PCMU callee.
    let sent = Stream::new(2).opus(&tone(440.0, 1000, 0.5), PT_OPUS);
    let at_bob = through(&alice_rtp, alice_leg, &sent, &bob_rtp, LISTEN);
    check_stream(&at_bob, bob_leg, PT_PCMU, FRAME as u32, sent.len());
    check_tone(&decode(&at_bob), 440.0, 0.5, 1000.0);

    // The callee's PCMU reaches it as Opus at 48 kHz, on the same stream as before the change.
    let sent = Stream::new(3).audio(&tone(1000.0, 1000, 0.5), Law::Ulaw);
    let at_alice = through(&bob_rtp, bob_leg, &sent, &alice_rtp, LISTEN);
    check_stream(&at_alice, alice_leg, PT_OPUS, OPUS_CLOCK / 50, sent.len());
    check_tone(&decode_opus(&at_alice, PT_OPUS), 1000.0, 0.5, 440.0);
    let last = before.last().expect("packets before");
    assert_eq!(at_alice[0].ssrc, last.ssrc, "one egress stream");
    let jump = at_alice[0].ts.wrapping_sub(last.ts);
    assert!(
        (OPUS_CLOCK..OPUS_CLOCK * 10).contains(&jump),
        "timestamps go on at 48 kHz: +{jump}"
    );
    serve.finish(&mut [&mut alice, &mut bob]);
}
