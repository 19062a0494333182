//! Digits through `dialplane serve` end to end: dtmfCapture/dtmfHook with keys pressed on either
//! leg by SIP INFO and RFC 4733, REST `dtmf` sent into a leg, and confirmHook screening apps.
//!
//! SIPp plays the caller and the callees (scenarios in `tests/dtmf/`, plus `tests/serve/`'s
//! answering and hanging-up callees); RFC 4733 keys are SIPp's own telephone-event pcaps; a
//! callee whose media is a UDP socket of the test receives what REST sends. The webhook
//! receiver plays the control app and counts the dtmfHook's hits. Needs `sipp`.

use std::path::PathBuf;
use std::time::Duration;

use dsp::g711::Law;
use media::telephone_event::EventPayload;

use serde_json::{Value, json};

mod common;
use common::http::{Hit, Receiver};
use common::rtp::{self, PT_EVENT, Received, RtpPeer, Stream};
use common::serve::{
    CALLED, HOOK_WAIT, Serve, TOKEN, assert_signed, callee, caller, config, dial, serve_with_app,
    serve_with_app_and, sip_target,
};
use common::sipp::{Run, Sipp};

fn dtmf_scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/dtmf/{name}.xml"))
}

/// A callee running `tests/dtmf/<scenario>.xml` for one call.
fn dtmf_callee(name: &str, scenario: &str, pause_ms: u64, extra: &[&str]) -> Sipp {
    Sipp::callee(
        name,
        Run {
            scenario: &dtmf_scenario(scenario),
            calls: 1,
            pause_ms,
            extra,
        },
    )
}

/// One call from SIPp running `tests/dtmf/<scenario>.xml`.
fn dtmf_caller(serve: &Serve, scenario: &str, pause_ms: u64) -> Sipp {
    Sipp::caller(
        "caller",
        serve.sip,
        Run {
            scenario: &dtmf_scenario(scenario),
            calls: 1,
            pause_ms,
            extra: &["-s", CALLED],
        },
    )
}

/// The call sid of the caller's leg (the call webhook's).
fn caller_sid(hooks: &Receiver) -> String {
    hooks.hits("/call")[0].json["call_sid"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Waits for the B leg to be answered; its call sid.
fn answered_b_leg(hooks: &Receiver) -> String {
    let hits = hooks.wait("/status", "B leg in-progress", HOOK_WAIT, |h| {
        h.iter().any(is_answered_b_leg)
    });
    let hit = hits.iter().find(|h| is_answered_b_leg(h)).unwrap();
    hit.json["call_sid"].as_str().unwrap().to_string()
}

fn is_answered_b_leg(h: &Hit) -> bool {
    h.json["parent_call_sid"].is_string() && h.json["call_status"] == "in-progress"
}

/// The dtmfHook's hits once the call is over (every hook it caused has been sent by then).
fn dtmf_hits_after(serve: &Serve, hooks: &Receiver) -> Vec<Hit> {
    hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    serve.wait_idle();
    let hits = hooks.hits("/dtmf");
    for h in &hits {
        assert_signed(h);
    }
    hits
}

/// `(dtmf, call_sid, parent_call_sid)` of each hit, sorted.
fn matches_of(hits: &[Hit]) -> Vec<(String, String, Option<String>)> {
    let mut m: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                h.json["dtmf"].as_str().unwrap_or("?").to_string(),
                h.json["call_sid"].as_str().unwrap_or("?").to_string(),
                h.json["parent_call_sid"].as_str().map(str::to_string),
            )
        })
        .collect();
    m.sort();
    m
}

#[test]
fn sip_info_keys_of_both_legs_hit_the_dtmf_hook_once_per_match() {
    // The callee presses # 9 (application/dtmf) 300 ms after answering; the caller presses
    // 1 2 2 (application/dtmf-relay): "12" matches once, the last 2 starts a new sequence.
    let mut bob = dtmf_callee("bob", "callee_info", 300, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-info",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({
                "actionHook": "/action",
                "dtmfCapture": {"parentCall": ["12", "2"], "childCall": ["#9"]},
                "dtmfHook": "/dtmf",
            }),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller_info", 1500);
    let b_leg = answered_b_leg(&hooks);
    serve.finish(&mut [&mut alice, &mut bob]);
    let a_leg = caller_sid(&hooks);
    let hits = dtmf_hits_after(&serve, &hooks);
    let mut expected = vec![
        ("12".to_string(), a_leg.clone(), None),
        // The third key alone matches "2" (the longest pattern won on the second).
        ("2".to_string(), a_leg.clone(), None),
        ("#9".to_string(), b_leg, Some(a_leg)),
    ];
    expected.sort();
    assert_eq!(matches_of(&hits), expected, "{}", serve.log_tail());
    for line in ["INFO 1 200", "INFO 2 200"] {
        assert!(alice.log().iter().any(|l| l == line), "{:?}", alice.log());
    }
    let info = bob.log();
    assert!(info.iter().any(|l| l == "INFO # 200"), "{info:?}");
    assert!(info.iter().any(|l| l == "INFO 9 200"), "{info:?}");
    let h = hits.iter().find(|h| h.json["dtmf"] == "#9").unwrap();
    assert_eq!(h.json["direction"], "outbound", "{}", h.body);
}

#[test]
fn rfc4733_keys_of_both_legs_hit_the_dtmf_hook() {
    // A plain list listens on both legs; each leg presses 1 then 2 by telephone-events.
    let mut bob = dtmf_callee("bob", "callee_rfc4733", 200, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-rfc4733",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "dtmfCapture": ["12"], "dtmfHook": "/dtmf"}),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller_rfc4733", 1500);
    let b_leg = answered_b_leg(&hooks);
    serve.finish(&mut [&mut alice, &mut bob]);
    let a_leg = caller_sid(&hooks);
    let hits = dtmf_hits_after(&serve, &hooks);
    let mut expected = vec![
        ("12".to_string(), a_leg.clone(), None),
        ("12".to_string(), b_leg, Some(a_leg)),
    ];
    expected.sort();
    assert_eq!(matches_of(&hits), expected, "{}", serve.log_tail());
    let metrics = serve.metrics();
    assert!(
        metrics.contains("dialplane_dtmf_digits_total{source=\"rfc4733\"} 4"),
        "four presses by RFC 4733:\n{metrics}"
    );
}

/// The RFC 4733 presses among `packets`, in order: `(event, duration in ticks)` of each end
/// packet, its repeats (same timestamp) counted once.
fn presses(packets: &[Received]) -> Vec<(u8, u16)> {
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for p in packets.iter().filter(|p| p.pt == PT_EVENT) {
        let e = EventPayload::decode(&p.payload).expect("a telephone-event payload");
        if e.end && !seen.contains(&p.ts) {
            seen.push(p.ts);
            out.push((e.event, e.duration));
        }
    }
    out
}

#[test]
fn rest_dtmf_reaches_the_leg_as_rfc4733_events_in_order() {
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee("bob", "callee_rtp", 0, &["-key", "rtp_port", &rtp_port]);
    let (hooks, serve) = serve_with_app(
        "dtmf-rest",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let mut alice = dtmf_caller(&serve, "caller", 4000);
    let b_leg = answered_b_leg(&hooks);
    let (code, body) = serve.update_call(&b_leg, Some(TOKEN), r##"{"dtmf":{"digit":"1#"}}"##);
    assert_eq!(code, 202, "{body}");
    let (code, body) = serve.update_call(
        &b_leg,
        Some(TOKEN),
        r#"{"dtmf":{"digit":"9","duration":400}}"#,
    );
    assert_eq!(code, 202, "{body}");
    // Three keys of at most 400 ms with 60 ms gaps: all sent well within 3 s.
    let received = rtp.receive_for(Duration::from_secs(3));
    // 250 ms (jambonz's default) and 400 ms at 8 kHz; # is event 11.
    assert_eq!(
        presses(&received),
        [(1, 2000), (11, 2000), (9, 3200)],
        "{}",
        serve.log_tail()
    );
    serve.finish(&mut [&mut alice, &mut bob]);
}

#[test]
fn in_band_keys_of_the_caller_hit_the_dtmf_hook() {
    // The caller's audio carries the tones of 1 and 2 (Q.24 levels, 100 ms each, 100 ms apart)
    // in PCMU, no telephone-event: the tap on its leg hears them.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dtmf-inband");
    std::fs::create_dir_all(&dir).unwrap();
    let mut pcm = rtp::silence(200);
    pcm.extend(rtp::dtmf("12", 100, 100));
    pcm.extend(rtp::silence(200));
    let pcap = dir.join("keys-12.pcap");
    rtp::write_pcap(&pcap, &Stream::new(0x1234).audio(&pcm, Law::Ulaw));
    let scenario = rtp::pcap_scenario(&dtmf_scenario("caller_pcap"), &pcap, &dir);
    let mut bob = callee("bob", "answer", 1, 0, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-inband",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({
                "actionHook": "/action",
                "dtmfCapture": {"parentCall": ["12"]},
                "dtmfHook": "/dtmf",
            }),
        ),
    );
    let mut alice = Sipp::caller(
        "caller",
        serve.sip,
        Run {
            scenario: &scenario,
            calls: 1,
            pause_ms: 1500,
            extra: &["-s", CALLED],
        },
    );
    serve.finish(&mut [&mut alice, &mut bob]);
    let a_leg = caller_sid(&hooks);
    let hits = dtmf_hits_after(&serve, &hooks);
    assert_eq!(
        matches_of(&hits),
        [("12".to_string(), a_leg, None)],
        "{}",
        serve.log_tail()
    );
    let metrics = serve.metrics();
    assert!(
        metrics.contains("dialplane_dtmf_digits_total{source=\"inband\"} 2"),
        "two presses in band:\n{metrics}"
    );
}

/// The screening app of the confirm tests: one key, reported to `/screened`.
fn screening_app() -> Value {
    json!([{"verb": "gather", "input": ["digits"], "numDigits": 1, "timeout": 10,
            "actionHook": "/screened"}])
}

#[test]
fn confirm_hook_gathers_the_callees_key_then_bridges() {
    // Bob answers, then presses 1 by SIP INFO; the gather's actionHook answers no verbs: the
    // screening app is over with bob still there, so he is bridged.
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee(
        "bob",
        "callee_confirm",
        300,
        &["-key", "rtp_port", &rtp_port],
    );
    let (hooks, serve) = serve_with_app(
        "dtmf-confirm",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
    );
    hooks.answer("/confirm", &screening_app());
    // Held past bob's second key (sent should the first have come too early).
    let mut alice = dtmf_caller(&serve, "caller", 2500);
    serve.finish(&mut [&mut alice, &mut bob]);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    let a_leg = caller_sid(&hooks);
    let confirm = hooks.hits("/confirm");
    assert_eq!(confirm.len(), 1);
    let b_leg = confirm[0].json["call_sid"].as_str().unwrap().to_string();
    assert_eq!(confirm[0].json["parent_call_sid"], a_leg.as_str());
    assert_signed(&confirm[0]);
    let screened = hooks.hits("/screened");
    assert_eq!(screened.len(), 1, "{screened:?}");
    assert_eq!(screened[0].json["digits"], "1");
    assert_eq!(screened[0].json["reason"], "dtmfDetected");
    assert_eq!(screened[0].json["call_sid"], b_leg.as_str());
    assert_eq!(action[0].json["dial_call_status"], "completed");
    assert_eq!(action[0].json["dial_call_sid"], b_leg.as_str());
    assert!(alice.log().iter().any(|l| l == "200"), "{:?}", alice.log());
    serve.wait_idle();
}

#[test]
fn callee_hanging_up_while_screened_is_declined_and_another_fork_wins() {
    // Carol answers at once and is screened (her own confirmHook), but hangs up 500 ms later;
    // bob, still ringing then, answers after 2.5 s with no screening and wins.
    let mut carol = callee("carol", "hangup", 1, 500, &[]);
    let mut bob = callee("bob", "answer", 1, 2500, &[]);
    let mut carol_target = sip_target(&carol.uri("carol"));
    carol_target["confirmHook"] = json!("/confirm");
    let (hooks, serve) = serve_with_app(
        "dtmf-declined",
        dial(
            &[carol_target, sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true}),
        ),
    );
    hooks.answer("/confirm", &screening_app());
    let mut alice = dtmf_caller(&serve, "caller", 500);
    serve.finish(&mut [&mut alice, &mut bob, &mut carol]);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    let confirm = hooks.hits("/confirm");
    assert_eq!(confirm.len(), 1, "only carol is screened");
    let carol_leg = confirm[0].json["call_sid"].as_str().unwrap();
    assert!(carol.log().iter().any(|l| l == "BYE sent"));
    assert!(hooks.hits("/screened").is_empty(), "no key was pressed");
    assert_eq!(action[0].json["dial_call_status"], "completed");
    let winner = action[0].json["dial_call_sid"].as_str().unwrap();
    assert_ne!(winner, carol_leg, "{}", serve.log_tail());
    let status = hooks.hits("/status");
    let of = |sid: &str| -> Vec<String> {
        status
            .iter()
            .filter(|h| h.json["call_sid"] == sid)
            .map(|h| h.json["call_status"].as_str().unwrap_or("?").to_string())
            .collect()
    };
    assert!(of(winner).contains(&"in-progress".to_string()));
    let carol_states = of(carol_leg);
    assert!(
        carol_states.ends_with(&["in-progress".to_string(), "completed".to_string()]),
        "{carol_states:?}"
    );
    serve.wait_idle();
}

#[test]
fn screening_app_hanging_up_declines_the_callee() {
    // The screening app pauses a second, then hangs up: bob gets a BYE, the dial fails with
    // 603 and the app (nothing after the dial) hangs up the caller.
    let mut bob = callee("bob", "answer", 1, 0, &[]);
    let (hooks, serve) = serve_with_app(
        "dtmf-screen-hangup",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "confirmHook": "/confirm"}),
        ),
    );
    hooks.answer(
        "/confirm",
        &json!([{"verb": "pause", "length": 1}, {"verb": "hangup"}]),
    );
    let mut alice = caller(&serve, "wait_bye", 0);
    serve.finish(&mut [&mut alice, &mut bob]);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(
        action[0].json["dial_call_status"], "failed",
        "{}",
        action[0].body
    );
    assert_eq!(action[0].json["dial_sip_status"], 603);
    assert!(
        bob.log().iter().any(|l| l.starts_with("BYE ")),
        "{:?}",
        bob.log()
    );
    assert!(alice.log().iter().any(|l| l == "BYE"), "{:?}", alice.log());
    serve.wait_idle();
}

#[test]
fn screening_app_plays_a_file_to_the_callee_then_bridges() {
    // The screening app plays a 1 kHz WAV (by path) to bob, whose media is the test's socket;
    // once media reports the play done the app is over and bob is bridged.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dtmf-screen-play");
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("prompt.wav");
    rtp::write_wav(&wav, &rtp::tone(1000.0, 800, 0.5));
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee("bob", "callee_rtp", 0, &["-key", "rtp_port", &rtp_port]);
    let (hooks, serve) = serve_with_app(
        "dtmf-screen-play",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
    );
    hooks.answer(
        "/confirm",
        &json!([{"verb": "play", "url": wav.to_str().unwrap()}]),
    );
    let mut alice = dtmf_caller(&serve, "caller", 500);
    // The prompt lasts 0.8 s; the caller sends no media, so bob hears nothing else.
    let received = rtp.receive_for(Duration::from_secs(3));
    serve.finish(&mut [&mut alice, &mut bob]);
    let heard = rtp::decode(&received);
    // Most of the 6400 samples arrived, and they are the tone (0.5 of full scale).
    assert!(
        heard.len() >= 6000,
        "{} samples\n{}",
        heard.len(),
        serve.log_tail()
    );
    let level = rtp::tone_amplitude(&heard[..6000], 1000.0);
    assert!(level > 0.3, "1 kHz at {level}");
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(action[0].json["dial_call_status"], "completed");
    let confirm = hooks.hits("/confirm");
    assert_eq!(action[0].json["dial_call_sid"], confirm[0].json["call_sid"]);
    assert!(alice.log().iter().any(|l| l == "200"), "{:?}", alice.log());
    serve.wait_idle();
}

const FIRST_HZ: f32 = 600.0;
const SECOND_HZ: f32 = 1000.0;

/// Two prompt files served over HTTP: `/first.wav` (600 Hz) and `/second.wav` (1 kHz), 400 ms
/// each.
fn serve_two_tones(hooks: &Receiver, dir: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, hz) in [("first.wav", FIRST_HZ), ("second.wav", SECOND_HZ)] {
        let wav = dir.join(name);
        rtp::write_wav(&wav, &rtp::tone(hz, 400, 0.5));
        hooks.answer_bytes(
            &format!("/{name}"),
            "audio/wav",
            &std::fs::read(&wav).unwrap(),
        );
    }
}

/// Which of the two tones each 100 ms of `received` carries, runs merged: e.g. `"1212"`.
fn tone_sequence(received: &[Received]) -> String {
    let mut seq = String::new();
    for chunk in received.chunks(5).filter(|c| c.len() == 5) {
        let pcm = rtp::decode(chunk);
        let (a, b) = (
            rtp::tone_amplitude(&pcm, FIRST_HZ),
            rtp::tone_amplitude(&pcm, SECOND_HZ),
        );
        let tone = match (a.max(b) > 0.2, a > b) {
            (false, _) => continue,
            (true, true) => '1',
            (true, false) => '2',
        };
        if !seq.ends_with(tone) {
            seq.push(tone);
        }
    }
    seq
}

#[test]
fn screening_app_plays_a_url_list_in_order_and_loops_then_bridges() {
    // The play lists three files (the first twice), looped twice: bob (media at the test's
    // socket) hears 600 Hz, 1 kHz, 600 Hz (twice over), 1 kHz, 600 Hz; each URL is fetched once
    // (the media-file cache). A say (no synthesizer) and a malformed verb before it are skipped
    // with an error, not a decline; then bob is bridged.
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee("bob", "callee_rtp", 0, &["-key", "rtp_port", &rtp_port]);
    let (hooks, serve) = serve_with_app(
        "dtmf-screen-list",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
    );
    serve_two_tones(&hooks, "dtmf-screen-list");
    hooks.answer(
        "/confirm",
        &json!([
            {"verb": "say", "text": "You have a call"},
            {"verb": "play", "url": 7},
            {"verb": "play", "url": [hooks.url("/first.wav"), hooks.url("/second.wav"),
                hooks.url("/first.wav")], "loop": 2, "earlyMedia": true}
        ]),
    );
    let mut alice = dtmf_caller(&serve, "caller", 500);
    // The caller sends no media: bob hears the prompts only.
    let received = rtp.receive_for(Duration::from_secs(4));
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(
        tone_sequence(&received),
        "12121",
        "{} packets\n{}",
        received.len(),
        serve.log_tail()
    );
    assert_eq!(hooks.hits("/first.wav").len(), 1);
    assert_eq!(hooks.hits("/second.wav").len(), 1);
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(action[0].json["dial_call_status"], "completed");
    assert!(alice.log().iter().any(|l| l == "200"), "{:?}", alice.log());
    let log = serve.log_text();
    assert!(
        log.contains("no speech synthesizer is configured"),
        "{}",
        serve.log_tail()
    );
    assert!(
        log.contains("malformed verb skipped"),
        "{}",
        serve.log_tail()
    );
    serve.wait_idle();
}

#[test]
fn screening_say_is_spoken_by_the_configured_synthesizer() {
    // A synthesizer speaking jambonz's custom TTS API answers the say with raw L16 at 16 kHz
    // (the first tone); the play after it is the second tone: bob hears "12". The synthesizer
    // got one POST with the text, the default language, the bearer key.
    let tts = Receiver::start();
    let speech: Vec<u8> = (0..16_000 * 6 / 10)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            (0.5 * 32767.0 * (2.0 * std::f32::consts::PI * FIRST_HZ * t).sin()) as i16
        })
        .flat_map(i16::to_be_bytes)
        .collect();
    tts.answer_bytes("/tts", "audio/L16;rate=16000", &speech);
    let toml = format!(
        "[speech]\ntts_url = \"{}\"\ntts_api_key = \"tts-key\"\n",
        tts.url("/tts")
    );
    let cfg = config("dtmf-screen-say", &toml);
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee("bob", "callee_rtp", 0, &["-key", "rtp_port", &rtp_port]);
    let (hooks, serve) = serve_with_app_and(
        "dtmf-screen-say",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
        &["--config", cfg.to_str().unwrap()],
    );
    serve_two_tones(&hooks, "dtmf-screen-say");
    hooks.answer(
        "/confirm",
        &json!([
            {"verb": "say", "text": "You have a call"},
            {"verb": "play", "url": hooks.url("/second.wav")}
        ]),
    );
    let mut alice = dtmf_caller(&serve, "caller", 500);
    let received = rtp.receive_for(Duration::from_secs(3));
    serve.finish(&mut [&mut alice, &mut bob]);
    assert_eq!(
        tone_sequence(&received),
        "12",
        "{} packets\n{}",
        received.len(),
        serve.log_tail()
    );
    let posts = tts.hits("/tts");
    assert_eq!(posts.len(), 1, "one synthesis");
    assert_eq!(posts[0].method, "POST");
    assert_eq!(
        posts[0].json,
        json!({"language": "en-US", "voice": "", "type": "text", "text": "You have a call"})
    );
    assert_eq!(posts[0].headers["authorization"], "Bearer tts-key");
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(action[0].json["dial_call_status"], "completed");
}

#[test]
fn screening_gather_plays_its_prompt_until_the_key_then_bridges() {
    // The gather's prompt (the two files, looped until the app moves on) plays to bob; his key
    // (SIP INFO 1.5 s after answering) stops it, completes the gather and reaches its
    // actionHook; then bob is bridged and hears no more of the prompt.
    let rtp = RtpPeer::bind();
    let rtp_port = rtp.port().to_string();
    let mut bob = dtmf_callee(
        "bob",
        "callee_confirm",
        1500,
        &["-key", "rtp_port", &rtp_port],
    );
    let (hooks, serve) = serve_with_app(
        "dtmf-screen-prompt",
        dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action", "answerOnBridge": true, "confirmHook": "/confirm"}),
        ),
    );
    serve_two_tones(&hooks, "dtmf-screen-prompt");
    hooks.answer(
        "/confirm",
        &json!([{"verb": "gather", "input": ["digits", "speech"], "numDigits": 1,
            "timeout": 10, "actionHook": "/screened",
            "play": {"url": [hooks.url("/first.wav"), hooks.url("/second.wav")], "loop": 0}}]),
    );
    let mut alice = dtmf_caller(&serve, "caller", 3000);
    // Bob answered when the confirmHook is asked; his key comes 1.5 s after that.
    hooks.wait("/confirm", "the confirmHook", HOOK_WAIT, |h| !h.is_empty());
    let prompt = rtp.receive_for(Duration::from_millis(1300));
    let screened = hooks.wait("/screened", "the gather's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    // From well after the key on: nothing of the prompt.
    let _ = rtp.receive_for(Duration::from_millis(300));
    let after = rtp.receive_for(Duration::from_millis(1000));
    serve.finish(&mut [&mut alice, &mut bob]);
    assert!(
        tone_sequence(&prompt).starts_with("12"),
        "prompt: {}\n{}",
        tone_sequence(&prompt),
        serve.log_tail()
    );
    assert_eq!(
        tone_sequence(&after),
        "",
        "the prompt went on after the key"
    );
    assert_eq!(screened.len(), 1, "{screened:?}");
    assert_eq!(screened[0].json["digits"], "1");
    assert_eq!(screened[0].json["reason"], "dtmfDetected");
    let action = hooks.wait("/action", "the dial's actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(action[0].json["dial_call_status"], "completed");
    assert!(alice.log().iter().any(|l| l == "200"), "{:?}", alice.log());
    assert!(
        serve.log_text().contains("only digits are collected"),
        "{}",
        serve.log_tail()
    );
    serve.wait_idle();
}
