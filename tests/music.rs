//! dialMusic and dub end to end: `dialplane serve` with SIPp for the signaling and the test's
//! own UDP sockets as the RTP endpoint whose audio is measured (scenarios in `tests/music/`:
//! their SDPs point at `-key rtp_port`). Audio files are synthesised here, served by the webhook
//! receiver over HTTP or read from a path; tones are told apart by their frequency (Goertzel).
//! Needs `sipp` and `sox` with MP3 support (`make deps`).

use std::path::PathBuf;
use std::time::Duration;

use dsp::g711::Law;
use serde_json::{Value, json};

mod common;
use common::http::Receiver;
use common::rtp::{
    Received, RtpPeer, Stream, decode, pcap_scenario, tone, tone_amplitude, write_wav,
};
use common::serve::{HOOK_WAIT, Serve, TOKEN, dial, serve_with_app, sip_target};
use common::sipp::{Run, Sipp};

const MUSIC_HZ: f32 = 440.0;
const CALLEE_HZ: f32 = 1000.0;
const DUB_HZ: f32 = 700.0;
/// Packets per analysis window: 200 ms.
const WINDOW: usize = 10;

fn dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("music");
    std::fs::create_dir_all(&d).expect("dir");
    d
}

fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/music/{name}.xml"))
}

/// A WAV file of a tone at 8 kHz.
fn tone_wav(name: &str, freq: f32, amplitude: f32) -> PathBuf {
    let path = dir().join(name);
    write_wav(&path, &tone(freq, 1000, amplitude));
    path
}

/// An MP3 of a tone, stereo at 44.1 kHz, made by sox.
fn tone_mp3(name: &str, freq: f32, amplitude: f32) -> Vec<u8> {
    let path = dir().join(name);
    let status = std::process::Command::new("sox")
        .args(["-n", "-r", "44100", "-c", "2"])
        .arg(&path)
        .args(["synth", "1", "sine", &freq.to_string(), "vol"])
        .arg(amplitude.to_string())
        .status()
        .expect("sox runs");
    assert!(
        status.success(),
        "sox cannot write MP3: make deps installs libsox-fmt-mp3"
    );
    std::fs::read(&path).expect("mp3")
}

/// The caller: its SDP points at `peer`; holds `hold_ms` after the 200.
fn caller(serve: &Serve, peer_port: u16, hold_ms: u64) -> Sipp {
    let port = peer_port.to_string();
    Sipp::caller(
        "music-caller",
        serve.sip,
        Run {
            scenario: &scenario("caller"),
            calls: 1,
            pause_ms: hold_ms,
            extra: &["-s", common::serve::CALLED, "-key", "rtp_port", &port],
        },
    )
}

/// A callee ringing `ring_ms`, then answering and playing `ms` of a `CALLEE_HZ` tone.
fn ringing_player(name: &str, ring_ms: u64, ms: u32) -> Sipp {
    let pcap = dir().join(format!("{name}.pcap"));
    common::rtp::write_pcap(
        &pcap,
        &Stream::new(7).audio(&tone(CALLEE_HZ, ms, 0.3), Law::Ulaw),
    );
    let sub = dir().join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let scenario = pcap_scenario(&scenario("ring_play"), &pcap, &sub);
    Sipp::callee(
        name,
        Run {
            scenario: &scenario,
            calls: 1,
            pause_ms: ring_ms,
            extra: &[],
        },
    )
}

/// Amplitudes of `freq` in consecutive windows of the received audio.
fn windows(packets: &[Received], freq: f32) -> Vec<f32> {
    packets
        .chunks(WINDOW)
        .filter(|c| c.len() == WINDOW)
        .map(|c| tone_amplitude(&decode(c), freq))
        .collect()
}

/// One stream: one SSRC, sequence numbers without a gap or a step back.
fn assert_continuous(packets: &[Received]) {
    let ssrc = packets[0].ssrc;
    for w in packets.windows(2) {
        assert_eq!(w[1].ssrc, ssrc, "SSRC changed");
        assert_eq!(
            w[1].seq,
            w[0].seq.wrapping_add(1),
            "sequence jumps from {} to {}",
            w[0].seq,
            w[1].seq
        );
    }
}

fn call_sid(hooks: &Receiver) -> String {
    let hits = hooks.wait("/call", "the call webhook", HOOK_WAIT, |h| !h.is_empty());
    hits[0].json["call_sid"]
        .as_str()
        .expect("call_sid")
        .to_string()
}

fn fmt(xs: &[f32]) -> String {
    xs.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the caller heard: the music (early media) while the callee rang, then the callee only,
/// in one continuous RTP stream.
fn heard_music_then_callee(packets: &[Received], ring_ms: u64) {
    assert!(!packets.is_empty(), "the caller got no RTP");
    let music = windows(packets, MUSIC_HZ);
    let callee = windows(packets, CALLEE_HZ);
    eprintln!("music {}\ncallee {}", fmt(&music), fmt(&callee));
    let first_callee = callee
        .iter()
        .position(|&a| a > 0.15)
        .unwrap_or_else(|| panic!("the callee never heard: {}", fmt(&callee)));
    // The music plays from the start, at its level (0.4 through µ-law), until the callee.
    let music_windows = &music[..first_callee.saturating_sub(1)];
    let expected = (ring_ms as usize / 200).saturating_sub(3);
    assert!(
        music_windows.len() >= expected,
        "{} windows of music, {expected} expected",
        music_windows.len()
    );
    for (i, &a) in music_windows.iter().enumerate() {
        assert!((a - 0.4).abs() < 0.04, "window {i}: music at {a}");
    }
    // After the bridge: the callee (0.3), no music.
    for (i, &a) in music.iter().enumerate().skip(first_callee + 1) {
        assert!(a < 0.01, "window {i}: music still there ({a})");
    }
    let heard = &callee[first_callee + 1..];
    assert!(
        heard.len() >= 5,
        "only {} windows of the callee",
        heard.len()
    );
    for &a in &heard[..heard.len() - 1] {
        assert!((a - 0.3).abs() < 0.04, "callee at {a}: {}", fmt(heard));
    }
    assert_continuous(packets);
}

#[test]
fn dial_music_is_early_media_with_answer_on_bridge_then_the_callee() {
    let music = tone_wav("music.wav", MUSIC_HZ, 0.4);
    let (hooks, serve) = serve_with_app("music-early", json!([]));
    let ring_ms = 2000;
    let mut callee = ringing_player("music-callee", ring_ms, 2000);
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"answerOnBridge": true, "dialMusic": music.to_str().unwrap()}),
        ),
    );
    let peer = RtpPeer::bind();
    let mut caller = caller(&serve, peer.port(), 2500);
    let packets = peer.receive_for(Duration::from_millis(ring_ms + 3500));
    serve.finish(&mut [&mut caller, &mut callee]);
    let log = caller.log();
    assert!(
        log.iter().any(|l| l == "183"),
        "no 183 before the answer: {log:?}"
    );
    assert!(!log.iter().any(|l| l == "180"), "a 180: {log:?}");
    heard_music_then_callee(&packets, ring_ms);
}

#[test]
fn dial_music_mp3_over_http_after_answering_the_caller() {
    let (hooks, serve) = serve_with_app("music-answered", json!([]));
    hooks.answer_bytes(
        "/hold.mp3",
        "audio/mpeg",
        &tone_mp3("hold.mp3", MUSIC_HZ, 0.4),
    );
    let ring_ms = 2000;
    let mut callee = ringing_player("music-callee-2", ring_ms, 2000);
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"dialMusic": hooks.url("/hold.mp3")}),
        ),
    );
    let peer = RtpPeer::bind();
    let mut caller = caller(&serve, peer.port(), ring_ms + 2500);
    let packets = peer.receive_for(Duration::from_millis(ring_ms + 3500));
    serve.finish(&mut [&mut caller, &mut callee]);
    assert!(
        !caller.log().iter().any(|l| l == "183"),
        "{:?}",
        caller.log()
    );
    // The MP3's first and last frames fade in and out (encoder delay): the looped file dips
    // once a second. Windows of steady tone are what is checked.
    let music = windows(&packets, MUSIC_HZ);
    let callee_level = windows(&packets, CALLEE_HZ);
    eprintln!("music {}\ncallee {}", fmt(&music), fmt(&callee_level));
    let first_callee = callee_level
        .iter()
        .position(|&a| a > 0.15)
        .expect("the callee heard");
    let steady = music[..first_callee]
        .iter()
        .filter(|&&a| (a - 0.4).abs() < 0.05);
    assert!(steady.count() >= 5, "music: {}", fmt(&music));
    assert!(music[first_callee + 1..].iter().all(|&a| a < 0.01));
    assert_eq!(hooks.hits("/hold.mp3").len(), 1);
    assert_continuous(&packets);
}

#[test]
fn dial_music_that_cannot_be_fetched_gives_the_caller_ringback_until_the_callee() {
    let (hooks, serve) = serve_with_app("music-missing", json!([]));
    let mut callee = ringing_player("music-callee-3", 1000, 1500);
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"answerOnBridge": true, "dialMusic": hooks.url("/missing.wav")}),
        ),
    );
    hooks.fail("/missing.wav", 10, 404);
    let peer = RtpPeer::bind();
    let mut caller = caller(&serve, peer.port(), 2000);
    let packets = peer.receive_for(Duration::from_millis(3500));
    serve.finish(&mut [&mut caller, &mut callee]);
    // Our early media was offered before the fetch failed (the forks do not wait for it): the
    // caller hears ringback (440 + 480 Hz) instead, then the callee.
    let log = caller.log();
    assert!(log.iter().any(|l| l == "183"), "{log:?}");
    assert!(!log.iter().any(|l| l == "180"), "{log:?}");
    let (ring_440, ring_480) = (windows(&packets, 440.0), windows(&packets, 480.0));
    eprintln!("440 Hz {}\n480 Hz {}", fmt(&ring_440), fmt(&ring_480));
    // -19 dBm0 is 0.078 of full scale; both lines of the pair, in the same windows.
    let ringing = ring_440
        .iter()
        .zip(&ring_480)
        .filter(|&(&a, &b)| (0.06..0.10).contains(&a) && (0.06..0.10).contains(&b))
        .count();
    assert!(ringing >= 3, "no ringback heard");
    assert!(windows(&packets, CALLEE_HZ).iter().any(|&a| a > 0.25));
    assert!(
        serve.log_text().contains("dialMusic not played"),
        "{}",
        serve.log_tail()
    );
}

#[test]
fn dial_music_served_slowly_rings_the_callee_first_then_plays() {
    // The music's answer is held until the callee has its INVITE: the outdial does not wait
    // for the file, and the music starts once the file arrives, while the callee still rings.
    let (hooks, serve) = serve_with_app("music-slow", json!([]));
    let wav = std::fs::read(tone_wav("slow.wav", MUSIC_HZ, 0.4)).expect("wav");
    hooks.answer_bytes("/slow.wav", "audio/wav", &wav);
    hooks.hold("/slow.wav");
    let ring_ms = 3000;
    let mut callee = ringing_player("music-callee-slow", ring_ms, 2000);
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"answerOnBridge": true, "dialMusic": hooks.url("/slow.wav")}),
        ),
    );
    let peer = RtpPeer::bind();
    let mut caller = caller(&serve, peer.port(), 3500);
    hooks.wait("/slow.wav", "the music's request", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    callee.wait_log("INVITE while the music is held", HOOK_WAIT, |l| {
        l == "INVITE"
    });
    hooks.release("/slow.wav");
    let packets = peer.receive_for(Duration::from_millis(ring_ms + 3500));
    serve.finish(&mut [&mut caller, &mut callee]);
    assert!(
        caller.log().iter().any(|l| l == "183"),
        "{:?}",
        caller.log()
    );
    let music = windows(&packets, MUSIC_HZ);
    let callee_level = windows(&packets, CALLEE_HZ);
    eprintln!("music {}\ncallee {}", fmt(&music), fmt(&callee_level));
    let first_callee = callee_level
        .iter()
        .position(|&a| a > 0.15)
        .unwrap_or_else(|| panic!("the callee never heard: {}", fmt(&callee_level)));
    // Music before the callee (from when the file arrived), none after the bridge.
    let heard = music[..first_callee]
        .iter()
        .filter(|&&a| (a - 0.4).abs() < 0.04)
        .count();
    assert!(heard >= 5, "music: {}", fmt(&music));
    assert!(music[first_callee + 1..].iter().all(|&a| a < 0.01));
    assert_eq!(hooks.hits("/slow.wav").len(), 1);
    assert_continuous(&packets);
}

/// Mean amplitude of `freq` over the packets received in the next `ms`.
fn level(peer: &RtpPeer, ms: u64, freq: f32) -> (f32, usize) {
    let packets = peer.receive_for(Duration::from_millis(ms));
    let w = windows(&packets, freq);
    let mean = if w.is_empty() {
        0.0
    } else {
        w.iter().sum::<f32>() / w.len() as f32
    };
    (mean, packets.len())
}

fn update(serve: &Serve, sid: &str, body: Value) {
    let (status, text) = serve.update_call(sid, Some(TOKEN), &body.to_string());
    assert!((200..300).contains(&status), "{status} {text}");
}

#[test]
fn dub_tracks_mix_into_what_the_callee_hears_and_follow_rest() {
    let (hooks, serve) = serve_with_app("music-dub", json!([]));
    let wav = std::fs::read(tone_wav("dub.wav", MUSIC_HZ, 0.4)).expect("wav");
    hooks.answer_bytes("/dub.wav", "audio/wav", &wav);
    let second = tone_wav("second.wav", DUB_HZ, 0.4);
    let callee_rtp = RtpPeer::bind();
    let port = callee_rtp.port().to_string();
    let mut callee = Sipp::callee(
        "music-dub-callee",
        Run {
            scenario: &scenario("answer_rtp"),
            calls: 1,
            pause_ms: 0,
            extra: &["-key", "rtp_port", &port],
        },
    );
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"dub": [
                {"action": "addTrack", "track": "a"},
                {"action": "playOnTrack", "track": "a", "play": hooks.url("/dub.wav"), "loop": true},
                {"action": "sayOnTrack", "track": "a", "say": "hello"}
            ]}),
        ),
    );
    // The caller sends no audio: the tracks go out on the leg's own clock.
    let caller_rtp = RtpPeer::bind();
    let mut caller = caller(&serve, caller_rtp.port(), 7000);
    let sid = call_sid(&hooks);
    // Track a from the verb, at its level.
    let _ = level(&callee_rtp, 600, MUSIC_HZ);
    let (a, n) = level(&callee_rtp, 1000, MUSIC_HZ);
    assert!(n >= 40, "{n} packets in 1 s");
    assert!((a - 0.4).abs() < 0.04, "track a at {a}");
    // REST adds track b from a path at -6 dB (a list, as jambonz apps send): both mixed, b at
    // half amplitude.
    update(
        &serve,
        &sid,
        json!({"dub": [
            {"action": "addTrack", "track": "b"},
            {"action": "playOnTrack", "track": "b", "play": second.to_str().unwrap(),
                "loop": true, "gain": "-6 dB"}
        ]}),
    );
    let _ = level(&callee_rtp, 500, DUB_HZ);
    let packets = callee_rtp.receive_for(Duration::from_millis(1000));
    let (a, b) = (windows(&packets, MUSIC_HZ), windows(&packets, DUB_HZ));
    eprintln!("a {}\nb {}", fmt(&a), fmt(&b));
    let mean = |x: &[f32]| x.iter().sum::<f32>() / x.len() as f32;
    assert!((mean(&a) - 0.4).abs() < 0.04, "a: {}", fmt(&a));
    assert!((mean(&b) - 0.2).abs() < 0.03, "b at -6 dB: {}", fmt(&b));
    // silenceTrack a: b alone.
    update(
        &serve,
        &sid,
        json!({"dub": {"action": "silenceTrack", "track": "a"}}),
    );
    let _ = level(&callee_rtp, 500, DUB_HZ);
    let packets = callee_rtp.receive_for(Duration::from_millis(1000));
    let (a, b) = (windows(&packets, MUSIC_HZ), windows(&packets, DUB_HZ));
    assert!(a.iter().all(|&x| x < 0.01), "a silenced: {}", fmt(&a));
    assert!((mean(&b) - 0.2).abs() < 0.03, "b: {}", fmt(&b));
    // removeTrack b: nothing more is played.
    update(
        &serve,
        &sid,
        json!({"dub": {"action": "removeTrack", "track": "b"}}),
    );
    let _ = level(&callee_rtp, 500, DUB_HZ);
    let (b, _) = level(&callee_rtp, 1000, DUB_HZ);
    assert!(b < 0.01, "b removed: {b}");
    serve.finish(&mut [&mut caller, &mut callee]);
    let log = serve.log_text();
    assert!(
        log.contains("no speech synthesizer is configured"),
        "{}",
        serve.log_tail()
    );
    assert_eq!(hooks.hits("/dub.wav").len(), 1);
}
