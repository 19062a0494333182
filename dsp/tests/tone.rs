//! The beep and fax-tone detector against its requirements (DESIGN.md, `dsp`): steady tones of
//! 300–2500 Hz and 100 ms to 1.5 s are beeps with start and end within 15 ms and frequency
//! within 2 %; speech, music, dual tones and noise are not; CNG and CED are fax on their
//! pattern, while a lone 1100 Hz or a short 2100 Hz tone stays a beep.
mod support;

use dialplane_dsp::g711::Law;
use dialplane_dsp::spectrum::Spectrum;
use dialplane_dsp::tone::{FaxTone, ToneDetector, ToneEvent};
use rand::Rng;
use support::{ms, rng, silence, sine, white_noise};

fn detect(x: &[f32]) -> Vec<ToneEvent> {
    let mut spectrum = Spectrum::new();
    let mut det = ToneDetector::new();
    let mut events = Vec::new();
    // Odd chunk sizes, as RTP frames of any size would arrive.
    for chunk in x.chunks(173) {
        spectrum.push(chunk, |s| events.extend(det.on_hop(s)));
    }
    events.extend(det.finish());
    events
}

fn add(x: &mut [f32], at: usize, y: &[f32]) {
    for (d, s) in x[at..].iter_mut().zip(y) {
        *d += s;
    }
}

fn beeps(events: &[ToneEvent]) -> Vec<(u64, u64, f32)> {
    events
        .iter()
        .filter_map(|e| match *e {
            ToneEvent::Beep {
                start,
                end,
                frequency_hz,
            } => Some((start, end, frequency_hz)),
            ToneEvent::Fax { .. } => None,
        })
        .collect()
}

fn faxes(events: &[ToneEvent]) -> Vec<(FaxTone, u64)> {
    events
        .iter()
        .filter_map(|e| match *e {
            ToneEvent::Fax { kind, at } => Some((kind, at)),
            ToneEvent::Beep { .. } => None,
        })
        .collect()
}

#[test]
fn beeps_are_timed_and_measured() {
    let mut r = rng(1);
    let mut cases = 0;
    for &freq in &[300.0f32, 440.0, 1000.0, 1400.0, 2500.0] {
        for &len_ms in &[100u32, 180, 400, 1000, 1500] {
            for &(level, noise) in &[
                (-30.0f32, -50.0f32),
                (-20.0, -30.0), // 10 dB S/N
                (-20.0, -40.0),
                (-5.0, -30.0),
                (-25.0, -70.0),
            ] {
                let f = freq * r.random_range(0.995..1.005);
                let lead = ms(r.random_range(300..700));
                let n = lead + ms(len_ms) + ms(600);
                let mut x = white_noise(&mut r, n, noise);
                add(
                    &mut x,
                    lead,
                    &sine(
                        f,
                        level,
                        ms(len_ms),
                        r.random_range(0.0..std::f32::consts::TAU),
                    ),
                );
                if cases % 3 == 1 {
                    x = support::g711_round_trip(&x, Law::Ulaw);
                } else if cases % 3 == 2 {
                    x = support::g711_round_trip(&x, Law::Alaw);
                }
                cases += 1;
                let ev = detect(&x);
                let b = beeps(&ev);
                let what = format!("{f} Hz {len_ms} ms {level} dBm0 noise {noise}: {ev:?}");
                assert_eq!(b.len(), 1, "{what}");
                assert!(faxes(&ev).is_empty(), "{what}");
                let (start, end, got) = b[0];
                let (ts, te) = (lead as i64, (lead + ms(len_ms)) as i64);
                assert!(
                    (start as i64 - ts).abs() <= 120,
                    "start {start} vs {ts}: {what}"
                );
                assert!((end as i64 - te).abs() <= 120, "end {end} vs {te}: {what}");
                assert!((got - f).abs() <= 0.02 * f, "freq {got}: {what}");
            }
        }
    }
}

#[test]
fn beep_right_after_speech_is_found() {
    let mut r = rng(2);
    for (i, voice) in support::VOICES.iter().enumerate() {
        let mut speech = support::speech("Please leave a message after the tone.", voice, 170, 50);
        support::set_level(&mut speech, -18.0);
        let gap = ms(150 + 50 * i as u32);
        let freq = [440.0, 1000.0, 850.0, 1400.0][i % 4];
        let start = speech.len() + gap;
        let mut x = speech;
        x.extend(silence(gap));
        x.extend(sine(freq, -15.0, ms(300), 0.3));
        x.extend(silence(ms(500)));
        let noise = white_noise(&mut r, x.len(), -55.0);
        add(&mut x, 0, &noise);
        let ev = detect(&x);
        let b = beeps(&ev);
        assert_eq!(b.len(), 1, "{voice}: {ev:?}");
        assert!(
            (b[0].0 as i64 - start as i64).abs() <= 120,
            "{voice}: {ev:?}"
        );
        assert!(
            (b[0].1 as i64 - (start + ms(300)) as i64).abs() <= 120,
            "{voice}: {ev:?}"
        );
    }
}

#[test]
fn ninety_ms_is_not_a_beep() {
    let mut r = rng(3);
    for &freq in &[300.0f32, 440.0, 1000.0, 1400.0, 2500.0] {
        for _ in 0..4 {
            let mut x = white_noise(&mut r, ms(1000), -60.0);
            add(
                &mut x,
                ms(300) + r.random_range(0..80),
                &sine(
                    freq,
                    -10.0,
                    ms(90),
                    r.random_range(0.0..std::f32::consts::TAU),
                ),
            );
            let ev = detect(&x);
            assert!(ev.is_empty(), "{freq}: {ev:?}");
        }
    }
}

#[test]
fn speech_gives_no_tones() {
    let texts = [
        "Hi, you've reached the voicemail of Alex Morgan. I can't take your call right now, so please leave your name, number and a short message after the tone, and I'll get back to you as soon as I can.",
        "Hello? Yes, this is Dana speaking. Who is calling, please? Oh, I see. No, I'm not interested, thank you. Goodbye.",
        "Thank you for calling. All of our agents are busy. Please stay on the line, your call is important to us. Mmm, ooh, aah, hmmmm, noooo, weeee.",
    ];
    let handles: Vec<_> = support::VOICES
        .iter()
        .map(|&voice| {
            std::thread::spawn(move || {
                let mut total = 0;
                for (i, text) in texts.iter().enumerate() {
                    for &(wpm, pitch) in &[(140, 30), (175, 50), (210, 80)] {
                        let mut x = support::speech(text, voice, wpm, pitch);
                        support::set_level(&mut x, -20.0 + 5.0 * (i as f32 - 1.0));
                        total += x.len();
                        let ev = detect(&x);
                        assert!(
                            ev.is_empty(),
                            "{voice} {wpm} wpm pitch {pitch}: {text}: {ev:?}"
                        );
                    }
                }
                total
            })
        })
        .collect();
    let samples: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(
        samples > ms(60_000) * 3,
        "only {} s of speech",
        samples / 8000
    );
}

#[test]
fn music_gives_no_beeps() {
    let signals: Vec<Vec<&str>> = vec![
        vec!["2", "sine", "261.6", "sine", "329.6", "sine", "392"],
        vec!["2", "sine", "440", "sine", "554.4", "sine", "659.3"],
        vec!["2", "square", "220", "square", "277.2"],
        vec!["2", "pluck", "C4", "pluck", "E4", "pluck", "G4"],
        vec![
            "2", "pluck", "A3", "pluck", "C4", "pluck", "E4", "pluck", "A4",
        ],
        vec!["2", "sine", "300-3000"],
        vec!["2", "sine", "3000-300"],
        vec!["4", "sine", "200-2600"],
        vec!["2", "sine", "1000-1500", "sine", "700-500"],
        vec!["2", "triangle", "500-2000"],
        // Slow glides: steady over 100 ms, but moving on.
        vec!["6", "sine", "1000-1300"],
        vec!["10", "sine", "300:3000"],
    ];
    for args in &signals {
        let mut x = support::sox_synth(args);
        support::set_level(&mut x, -15.0);
        let ev = detect(&x);
        assert!(
            beeps(&ev).is_empty() && faxes(&ev).is_empty(),
            "{args:?}: {ev:?}"
        );
    }
}

#[test]
fn dual_tones_give_no_beeps() {
    let mut r = rng(4);
    // Ringback (North America): 440 + 480 Hz, 2 s on, 4 s off, twice; UK 400+450 too.
    for &(f1, f2) in &[(440.0f32, 480.0f32), (400.0, 450.0), (350.0, 440.0)] {
        for &noise in &[-70.0f32, -45.0] {
            let mut x = white_noise(&mut r, ms(12_000), noise);
            for k in 0..2 {
                let at = ms(6000 * k);
                add(&mut x, at, &sine(f1, -19.0, ms(2000), 0.0));
                add(&mut x, at, &sine(f2, -19.0, ms(2000), 1.0));
            }
            let ev = detect(&x);
            assert!(ev.is_empty(), "{f1}+{f2} noise {noise}: {ev:?}");
        }
    }
    // DTMF: all 16 pairs, short and held, with twist either way.
    let low = [697.0f32, 770.0, 852.0, 941.0];
    let high = [1209.0f32, 1336.0, 1477.0, 1633.0];
    for &twist in &[-4.0f32, 0.0, 6.0] {
        for &len in &[60u32, 120, 600] {
            let mut x = white_noise(&mut r, ms(16 * (len + 100) + 200), -60.0);
            let mut at = ms(100);
            for &fl in &low {
                for &fh in &high {
                    add(
                        &mut x,
                        at,
                        &sine(
                            fl,
                            -10.0 + twist / 2.0,
                            ms(len),
                            r.random_range(0.0..std::f32::consts::TAU),
                        ),
                    );
                    add(
                        &mut x,
                        at,
                        &sine(
                            fh,
                            -10.0 - twist / 2.0,
                            ms(len),
                            r.random_range(0.0..std::f32::consts::TAU),
                        ),
                    );
                    at += ms(len + 100);
                }
            }
            let x = support::g711_round_trip(&x, Law::Ulaw);
            let ev = detect(&x);
            assert!(ev.is_empty(), "DTMF {len} ms twist {twist}: {ev:?}");
        }
    }
}

#[test]
fn noise_gives_no_tones() {
    let mut r = rng(5);
    for &level in &[-60.0f32, -40.0, -20.0, -5.0] {
        let x = white_noise(&mut r, ms(10_000), level);
        let ev = detect(&x);
        assert!(ev.is_empty(), "{level}: {ev:?}");
    }
}

#[test]
fn cng_pattern_is_fax() {
    let mut r = rng(6);
    for &(freq, noise, lead) in &[
        (1100.0f32, -60.0f32, 200u32),
        (1090.0, -40.0, 1300),
        (1110.0, -50.0, 0),
    ] {
        let mut x = white_noise(&mut r, ms(lead + 3 * 3500 + 500), noise);
        for k in 0..3 {
            add(
                &mut x,
                ms(lead + 3500 * k),
                &sine(
                    freq,
                    -12.0,
                    ms(500),
                    r.random_range(0.0..std::f32::consts::TAU),
                ),
            );
        }
        let ev = detect(&x);
        let f = faxes(&ev);
        assert!(!f.is_empty(), "{freq}: {ev:?}");
        assert_eq!(f[0].0, FaxTone::Cng, "{ev:?}");
        // Recognised at the end of the second burst, within the hops the detector needs.
        let second_end = ms(lead + 3500 + 500) as i64;
        assert!(
            (f[0].1 as i64 - second_end).abs() <= ms(60) as i64,
            "{ev:?}"
        );
        // Only the first burst, alone indistinguishable from a beep, may be reported as one.
        assert!(beeps(&ev).len() <= 1, "{ev:?}");
    }
}

#[test]
fn ced_is_fax_and_a_short_2100_or_lone_1100_is_a_beep() {
    let mut r = rng(7);
    for &(reversals, am) in &[(false, false), (true, false), (true, true)] {
        let mut x = white_noise(&mut r, ms(5000), -55.0);
        let mut ced = sine(2100.0, -12.0, ms(3300), 0.0);
        for (i, v) in ced.iter_mut().enumerate() {
            // ANS with phase reversals every 450 ms (V.25), and ANSam's 15 Hz, 20 % AM (V.8).
            if reversals && (i / ms(450)) % 2 == 1 {
                *v = -*v;
            }
            if am {
                *v *= 1.0 + 0.2 * (2.0 * std::f32::consts::PI * 15.0 * i as f32 / 8000.0).sin();
            }
        }
        add(&mut x, ms(500), &ced);
        let ev = detect(&x);
        assert_eq!(faxes(&ev).len(), 1, "reversals {reversals} am {am}: {ev:?}");
        let (kind, at) = faxes(&ev)[0];
        assert_eq!(kind, FaxTone::Ced);
        assert!(
            (at as i64 - ms(500 + 2600) as i64).abs() <= ms(50) as i64,
            "{ev:?}"
        );
        assert!(beeps(&ev).is_empty(), "reversals {reversals}: {ev:?}");
    }
    for &(freq, len) in &[(2100.0f32, 1000u32), (2100.0, 1500), (1100.0, 500)] {
        let mut x = white_noise(&mut r, ms(len + 6000), -55.0);
        add(&mut x, ms(400), &sine(freq, -12.0, ms(len), 0.0));
        let ev = detect(&x);
        assert!(faxes(&ev).is_empty(), "{freq} {len}: {ev:?}");
        assert_eq!(beeps(&ev).len(), 1, "{freq} {len}: {ev:?}");
        let (start, end, got) = beeps(&ev)[0];
        assert!(start.abs_diff(ms(400) as u64) <= 120, "{ev:?}");
        assert!(end.abs_diff(ms(400 + len) as u64) <= 120, "{ev:?}");
        assert!((got - freq).abs() <= 0.02 * freq, "{ev:?}");
    }
}

#[test]
fn hostile_input_does_not_panic() {
    let mut x: Vec<f32> = (0..ms(2000))
        .map(|i| if (i / 4) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    x.extend(std::iter::repeat_n(f32::NAN, 500));
    x.extend(silence(ms(500)));
    x.extend(std::iter::repeat_n(f32::INFINITY, 300));
    x.extend(sine(1000.0, -10.0, ms(500), 0.0));
    x.extend(std::iter::repeat_n(1.0, 1000));
    let _ = detect(&x);
    let _ = detect(&[]);
}
