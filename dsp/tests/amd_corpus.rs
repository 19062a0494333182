//! The scored AMD test: our detector and the app_amd baseline on the same labelled corpus
//! (amd_support::corpus, ≥ 200 recordings). Prints both confusion matrices; asserts that ours
//! is at least 90 % accurate and strictly more accurate than app_amd, that a plain "Hello?"
//! at 0.3 s is human within 2 s for every voice, and that every beep is reported within
//! ±2 % of its frequency and 30 ms of its end.
mod amd_support;
mod support;

use std::collections::HashMap;

use amd_support::{AppAmd, AppAmdConfig, Recording, Truth, app_amd, corpus};
use dialplane_dsp::amd::{Amd, AmdConfig, AmdEvent, AmdType};
use dialplane_dsp::g711::Law;
use dialplane_dsp::spectrum::Spectrum;
use dialplane_dsp::vad::Vad;

const COLS: [&str; 5] = ["human", "machine", "silence", "fax", "none"];
const ROWS: [Truth; 4] = [Truth::Human, Truth::Machine, Truth::Silence, Truth::Fax];

fn run_ours(x: &[f32]) -> Vec<AmdEvent> {
    let mut spectrum = Spectrum::new();
    let mut amd = Amd::new(AmdConfig::default());
    let mut events = Vec::new();
    for frame in x.chunks(160) {
        spectrum.push(frame, |s| amd.on_hop(s, &mut events));
    }
    amd.finish(&mut events);
    events
}

/// The decision column and its time
fn decision(events: &[AmdEvent]) -> (usize, Option<u64>) {
    for e in events {
        match *e {
            AmdEvent::Amd { amd_type, at_ms } => {
                let col = match amd_type {
                    AmdType::Human => 0,
                    AmdType::Machine => 1,
                    AmdType::Fax => 3,
                };
                return (col, Some(at_ms));
            }
            AmdEvent::Silence { at_ms } => return (2, Some(at_ms)),
            _ => {}
        }
    }
    (4, None)
}

fn correct_col(t: Truth) -> usize {
    match t {
        Truth::Human => 0,
        Truth::Machine => 1,
        Truth::Silence => 2,
        Truth::Fax => 3,
    }
}

fn print_matrix(title: &str, m: &HashMap<(Truth, usize), usize>, last: &str) -> f64 {
    let mut right = 0;
    let mut total = 0;
    println!("\n{title} (rows = truth, columns = decision)");
    print!("{:>9}", "");
    for (i, c) in COLS.iter().enumerate() {
        print!("{:>9}", if i == 4 { last } else { c });
    }
    println!();
    for t in ROWS {
        print!("{:>9}", format!("{t:?}").to_lowercase());
        for c in 0..COLS.len() {
            let n = m.get(&(t, c)).copied().unwrap_or(0);
            print!("{n:>9}");
            total += n;
            if c == correct_col(t) {
                right += n;
            }
        }
        println!();
    }
    let acc = right as f64 / total as f64;
    println!("accuracy {right}/{total} = {:.1} %", 100.0 * acc);
    acc
}

#[test]
fn amd_beats_app_amd_on_the_corpus() {
    let recordings: Vec<Recording> = corpus();
    assert!(recordings.len() >= 200, "{} recordings", recordings.len());

    let results: Vec<(Vec<AmdEvent>, (AppAmd, u64))> = std::thread::scope(|scope| {
        let chunks: Vec<_> = recordings
            .chunks(recordings.len().div_ceil(4))
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|r| {
                            (
                                run_ours(&r.samples),
                                app_amd(&r.samples, &AppAmdConfig::default()),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        chunks.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });

    let mut ours = HashMap::new();
    let mut base = HashMap::new();
    let mut failures = Vec::new();
    let mut plain_hello_times = Vec::new();
    for (r, (events, (b, b_ms))) in recordings.iter().zip(&results) {
        let (col, at) = decision(events);
        *ours.entry((r.truth, col)).or_insert(0) += 1;
        let bcol = match b {
            AppAmd::Human | AppAmd::NotSure => 0, // dialers connect a NOTSURE call
            AppAmd::Machine => 1,
            AppAmd::Silence => 2,
        };
        let bcol_print = if *b == AppAmd::NotSure { 4 } else { bcol };
        *base.entry((r.truth, bcol_print)).or_insert(0) += 1;
        if col != correct_col(r.truth) {
            println!(
                "ours wrong: {} → {} at {at:?} ms; {events:?}",
                r.name, COLS[col]
            );
        }
        if bcol != correct_col(r.truth) {
            println!("app_amd wrong: {} → {b:?} at {b_ms} ms", r.name);
        }
        // Exactly one decision event.
        let decisions = events
            .iter()
            .filter(|e| matches!(e, AmdEvent::Amd { .. } | AmdEvent::Silence { .. }))
            .count();
        if decisions != 1 {
            failures.push(format!("{}: {decisions} decisions: {events:?}", r.name));
        }
        if r.plain_hello {
            plain_hello_times.push((r.name.clone(), col, at));
            if col != 0 || at.is_none_or(|t| t >= 2000) {
                failures.push(format!(
                    "plain hello not human within 2 s: {} → {events:?}",
                    r.name
                ));
            }
        }
        if let Some((start, end, freq)) = r.beep {
            let end_ms = end as f64 / 8.0;
            let beeps: Vec<_> = events
                .iter()
                .filter_map(|e| match *e {
                    AmdEvent::Beep {
                        at_ms,
                        frequency_hz,
                    } => Some((at_ms, frequency_hz)),
                    _ => None,
                })
                .collect();
            let ok = beeps.len() == 1
                && (beeps[0].0 as f64 - end_ms).abs() <= 30.0
                && (beeps[0].1 as f32 - freq).abs() <= 0.02 * freq;
            if !ok {
                failures.push(format!(
                    "{}: beep {freq:.1} Hz {:.0}..{end_ms:.0} ms reported as {beeps:?}",
                    r.name,
                    start as f64 / 8.0
                ));
            }
        } else if r.truth != Truth::Fax {
            let beeps = events
                .iter()
                .filter(|e| matches!(e, AmdEvent::Beep { .. }))
                .count();
            if beeps > 0 {
                failures.push(format!(
                    "{}: beep reported, none played: {events:?}",
                    r.name
                ));
            }
        }
    }
    let acc_ours = print_matrix("dialplane AMD", &ours, "none");
    let acc_base = print_matrix(
        "app_amd baseline (NOTSURE scored as human)",
        &base,
        "notsure",
    );
    println!("\nplain \"Hello?\" at 0.3 s: {plain_hello_times:?}");
    println!("{} recordings", recordings.len());
    for f in &failures {
        println!("FAIL {f}");
    }
    assert!(
        failures.is_empty(),
        "{} failures (see above)",
        failures.len()
    );
    assert!(acc_ours >= 0.90, "accuracy {acc_ours}");
    assert!(acc_ours > acc_base, "ours {acc_ours} vs app_amd {acc_base}");
}

// ---- VAD --------------------------------------------------------------------------------

/// Per-hop VAD decisions and the final noise floor
fn run_vad(x: &[f32]) -> (Vec<bool>, f32) {
    let mut spectrum = Spectrum::new();
    let mut vad = Vad::new();
    let mut out = Vec::new();
    spectrum.push(x, |s| out.push(vad.on_hop(s)));
    (out, vad.noise_floor_dbm0())
}

fn trimmed_speech(text: &str, voice: &str, level: f32) -> Vec<f32> {
    let x = support::speech(text, voice, 170, 50);
    let a = x.iter().position(|v| v.abs() > 1e-3).unwrap_or(0);
    let b = x.iter().rposition(|v| v.abs() > 1e-3).map_or(0, |p| p + 1);
    let mut x = x[a..b.max(a)].to_vec();
    support::set_level(&mut x, level);
    x
}

#[test]
fn vad_line_noise_is_silence_once_adapted() {
    let mut r = support::rng(31);
    for &level in &[-50.0f32, -45.0, -40.0, -35.0] {
        for law in [None, Some(Law::Ulaw), Some(Law::Alaw)] {
            let mut x = support::white_noise(&mut r, support::ms(6000), level);
            if let Some(law) = law {
                x = support::g711_round_trip(&x, law);
            }
            let (hops, floor) = run_vad(&x);
            // From the first hops on, the floor is the noise itself.
            let speech = hops.iter().skip(2).filter(|&&s| s).count();
            assert_eq!(speech, 0, "{level} dBm0 {law:?}: {speech} speech hops");
            // The floor is the minimum of 20 ms levels in 100-3400 Hz: about 2 dB under the noise.
            assert!((floor - level).abs() <= 4.0, "{level} dBm0: floor {floor}");
        }
    }
    // Noise that rises 15 dB is silence again within 2.5 s.
    let mut x = support::white_noise(&mut r, support::ms(3000), -55.0);
    x.extend(support::white_noise(&mut r, support::ms(5000), -40.0));
    let (hops, _) = run_vad(&x);
    assert!(
        hops[550..].iter().all(|&s| !s),
        "still speech after the rise"
    );
}

#[test]
fn vad_hears_quiet_talkers_and_bridges_word_gaps() {
    let mut r = support::rng(32);
    for &voice in support::VOICES {
        let talk = trimmed_speech("Hello, this is Sam, who is calling please?", voice, -35.0);
        let lead = support::ms(1500);
        let mut x = support::silence(lead);
        x.extend(&talk);
        x.extend(support::silence(support::ms(2000)));
        let noise = support::white_noise(&mut r, x.len(), -55.0);
        x.iter_mut().zip(noise).for_each(|(v, n)| *v += n);
        let (hops, floor) = run_vad(&x);
        let (first, last) = (lead / 80, (lead + talk.len()) / 80);
        let heard = hops[first..last].iter().filter(|&&s| s).count();
        assert!(
            heard * 10 >= (last - first) * 8,
            "{voice}: {heard} of {} hops heard, floor {floor}",
            last - first
        );
        assert!(
            hops[..first].iter().all(|&s| !s),
            "{voice}: speech before the talker"
        );
        // Hangover: silent again 200 ms after the talker stops.
        assert!(
            hops[last + 20..].iter().all(|&s| !s),
            "{voice}: speech after the talker"
        );
    }
    // Two words 120 ms apart are one stretch of speech.
    let word = trimmed_speech("yes", "en-us", -20.0);
    let mut x = support::silence(support::ms(500));
    x.extend(&word);
    let gap_at = x.len() / 80;
    x.extend(support::silence(support::ms(120)));
    x.extend(&word);
    x.extend(support::silence(support::ms(500)));
    let (hops, _) = run_vad(&x);
    assert!(
        hops[gap_at..gap_at + 12].iter().all(|&s| s),
        "word gap not bridged"
    );
}

// ---- AMD event sequences -------------------------------------------------------------------

fn run_cfg(x: &[f32], cfg: AmdConfig) -> Vec<AmdEvent> {
    let mut spectrum = Spectrum::new();
    let mut amd = Amd::new(cfg);
    let mut events = Vec::new();
    // RTP-like 20 ms frames.
    for frame in x.chunks(160) {
        spectrum.push(frame, |s| amd.on_hop(s, &mut events));
    }
    amd.finish(&mut events);
    events
}

fn tone(freq: f32, level: f32, len_ms: u32) -> Vec<f32> {
    let a = dialplane_dsp::spectrum::dbm0_amplitude(level);
    (0..support::ms(len_ms))
        .map(|i| a * (2.0 * std::f32::consts::PI * freq * i as f32 / 8000.0).sin())
        .collect()
}

#[test]
fn machine_greeting_then_beep_then_stopped_speaking() {
    let greeting = trimmed_speech(
        "Hi, you've reached Alex. I can't take your call, please leave a message after the tone.",
        "en-gb",
        -18.0,
    );
    let mut x = support::silence(support::ms(400));
    x.extend(&greeting);
    let greeting_end_ms = x.len() as u64 / 8;
    x.extend(support::silence(support::ms(500)));
    x.extend(tone(1000.0, -12.0, 400));
    let beep_end_ms = x.len() as u64 / 8;
    x.extend(support::silence(support::ms(4000)));
    let ev = run_cfg(&x, AmdConfig::default());
    assert!(ev.len() == 3, "{ev:?}");
    assert!(
        matches!(ev[0], AmdEvent::Amd { amd_type: AmdType::Machine, at_ms } if at_ms < greeting_end_ms),
        "decided while the greeting plays: {ev:?}"
    );
    assert!(
        matches!(ev[1], AmdEvent::Beep { at_ms, frequency_hz: 1000 } if at_ms.abs_diff(beep_end_ms) <= 30),
        "{ev:?}"
    );
    // Greeting completion: 2 s of silence after the last speech (the beep is not speech).
    assert!(
        matches!(ev[2], AmdEvent::MachineStoppedSpeaking { at_ms } if at_ms.abs_diff(greeting_end_ms + 2000) <= 200),
        "{ev:?}"
    );
}

#[test]
fn beeps_are_reported_after_any_decision_until_the_tone_timeout() {
    let hello = trimmed_speech("Hello?", "en-us", -20.0);
    let mut x = support::silence(support::ms(300));
    x.extend(&hello);
    x.extend(support::silence(support::ms(3000)));
    x.extend(tone(850.0, -15.0, 200));
    let beep_end_ms = x.len() as u64 / 8;
    x.extend(support::silence(support::ms(1000)));
    let ev = run_cfg(&x, AmdConfig::default());
    assert!(
        matches!(
            ev[0],
            AmdEvent::Amd {
                amd_type: AmdType::Human,
                ..
            }
        ),
        "{ev:?}"
    );
    assert!(
        matches!(ev[1..], [AmdEvent::Beep { at_ms, frequency_hz: 850 }] if at_ms.abs_diff(beep_end_ms) <= 30),
        "{ev:?}"
    );
    // After silence, and not after the tone timeout.
    let mut x = support::silence(support::ms(6000));
    x.extend(tone(1400.0, -15.0, 300));
    x.extend(support::silence(support::ms(1500)));
    x.extend(tone(1400.0, -15.0, 300));
    x.extend(support::silence(support::ms(500)));
    let cfg = AmdConfig {
        tone_timeout_ms: 7000,
        ..AmdConfig::default()
    };
    let ev = run_cfg(&x, cfg);
    assert!(
        matches!(
            ev[..],
            [
                AmdEvent::Silence { at_ms: 5000 },
                AmdEvent::Beep {
                    at_ms: 6300,
                    frequency_hz: 1400
                }
            ]
        ),
        "{ev:?}"
    );
}

#[test]
fn timers_follow_the_config() {
    let x = support::silence(support::ms(8000));
    let cfg = AmdConfig {
        no_speech_timeout_ms: 3000,
        ..AmdConfig::default()
    };
    assert_eq!(run_cfg(&x, cfg), vec![AmdEvent::Silence { at_ms: 3000 }]);
    let cfg = AmdConfig {
        decision_timeout_ms: 2000,
        ..AmdConfig::default()
    };
    assert_eq!(
        run_cfg(&x, cfg),
        vec![AmdEvent::DecisionTimeout { at_ms: 2000 }]
    );
    // A beep alone (no greeting) is a machine, decided when it ends.
    let mut x = support::silence(support::ms(1000));
    x.extend(tone(440.0, -15.0, 250));
    x.extend(support::silence(support::ms(1000)));
    let ev = run_cfg(&x, AmdConfig::default());
    assert!(
        matches!(ev[..], [AmdEvent::Amd { amd_type: AmdType::Machine, at_ms }, AmdEvent::Beep { at_ms: 1250, frequency_hz: 440 }] if at_ms < 1330),
        "{ev:?}"
    );
}

#[test]
fn hostile_input_does_not_panic() {
    let mut x: Vec<f32> = (0..support::ms(3000))
        .map(|i| if (i / 4) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    x.extend(std::iter::repeat_n(f32::NAN, 1000));
    x.extend(support::silence(support::ms(1000)));
    x.extend(std::iter::repeat_n(f32::NEG_INFINITY, 300));
    x.extend(std::iter::repeat_n(1.0, support::ms(2000)));
    x.extend(support::silence(support::ms(20_000)));
    let ev = run_cfg(&x, AmdConfig::default());
    let decisions = ev
        .iter()
        .filter(|e| matches!(e, AmdEvent::Amd { .. } | AmdEvent::Silence { .. }))
        .count();
    assert!(decisions <= 1, "{ev:?}");
    let (_, floor) = run_vad(&x);
    assert!(floor.is_finite());
}

#[test]
fn a_steady_tone_that_never_ends_does_not_stall_the_decision() {
    // A 10 s test tone (or hum) and nobody speaking: silence on time, and no beep.
    let mut x = tone(600.0, -25.0, 10_000);
    x.extend(support::silence(support::ms(1000)));
    let ev = run_cfg(&x, AmdConfig::default());
    assert_eq!(ev, vec![AmdEvent::Silence { at_ms: 5000 }]);
}

#[test]
fn decisions_and_beeps_are_counted() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let mut x = support::silence(support::ms(1000));
    x.extend(tone(440.0, -15.0, 250));
    x.extend(support::silence(support::ms(1000)));
    metrics::with_local_recorder(&recorder, || {
        run_cfg(&x, AmdConfig::default());
    });
    let counters: HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Counter(n) => {
                let key = key.key();
                let labels: Vec<String> = key
                    .labels()
                    .map(|l| format!("{}={}", l.key(), l.value()))
                    .collect();
                Some((format!("{}{{{}}}", key.name(), labels.join(",")), n))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        counters.get("dialplane_dsp_beeps_total{}"),
        Some(&1),
        "{counters:?}"
    );
    assert_eq!(
        counters.get("dialplane_dsp_amd_decisions_total{type=machine}"),
        Some(&1),
        "{counters:?}"
    );
}
