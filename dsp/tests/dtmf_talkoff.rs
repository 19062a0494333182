//! Talk-off: no digits from speech or music. Over 30 minutes of espeak-ng speech (every voice in
//! `support::VOICES`, 120-220 wpm, several pitches, -30 to -5 dBm0, some through G.711, some in
//! noise) and music-like signals from sox (chords, intervals away from DTMF pairs, sweeps).
mod support;

use dialplane_dsp::g711::Law;
use dialplane_dsp::spectrum::RATE;
use rand::Rng;
use rand::rngs::StdRng;
use support::{
    VOICES, detect_digits, g711_round_trip, ms, rng, set_level, sox_synth, speech, white_noise,
};

/// Words for generated sentences, digits and digit-like words among them.
const WORDS: &[&str] = &[
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "zero",
    "oh",
    "hash",
    "star",
    "pound",
    "press",
    "dial",
    "number",
    "account",
    "please",
    "thank",
    "you",
    "hello",
    "morning",
    "evening",
    "meeting",
    "tomorrow",
    "weather",
    "really",
    "beautiful",
    "children",
    "music",
    "telephone",
    "operator",
    "extension",
    "customer",
    "service",
    "billing",
    "question",
    "answer",
    "message",
    "after",
    "the",
    "tone",
    "record",
    "your",
    "name",
    "and",
    "reason",
    "for",
    "calling",
    "we",
    "will",
    "return",
    "call",
    "as",
    "soon",
    "possible",
    "whistle",
    "sing",
    "singing",
    "season",
    "sixteen",
    "seventy",
    "eighty",
    "ninety",
    "hundred",
    "thousand",
    "million",
    "peach",
    "cheese",
    "ice",
    "scream",
    "she",
    "sells",
    "sea",
    "shells",
    "by",
    "shore",
    "wheel",
    "eel",
    "squeal",
    "yes",
    "no",
    "maybe",
    "certainly",
    "absolutely",
    "never",
    "always",
    "sometimes",
    "quickly",
    "slowly",
    "high",
    "low",
    "pitch",
    "keen",
    "green",
    "tree",
    "bee",
    "free",
    "three",
    "a",
    "an",
    "is",
    "was",
    "were",
    "it",
    "that",
    "this",
    "there",
    "here",
    "where",
    "when",
    "why",
    "how",
    "what",
    "who",
    "which",
    "over",
    "under",
    "between",
    "through",
    "ahead",
    "behind",
    "window",
    "kitchen",
    "garden",
    "station",
    "airport",
    "hospital",
    "library",
    "zebra",
    "yellow",
    "violet",
    "orange",
    "purple",
    "silver",
    "golden",
    "crystal",
    "jazz",
    "rhythm",
    "sympathy",
    "oops",
    "wow",
    "hmm",
    "aha",
    "eeee",
    "ooooh",
    "mmmmm",
    "la",
    "dee",
    "da",
];

/// About `words` words of sentences of 3 to 15 words.
fn sentences(rng: &mut StdRng, words: usize) -> String {
    let mut text = String::new();
    let mut left = words;
    while left > 0 {
        let n = rng.random_range(3..=15).min(left);
        for i in 0..n {
            let w = WORDS[rng.random_range(0..WORDS.len())];
            if i == 0 {
                let mut c = w.chars();
                text.extend(c.next().map(|c| c.to_ascii_uppercase()));
                text.push_str(c.as_str());
            } else {
                text.push(' ');
                text.push_str(w);
            }
        }
        text.push_str([". ", "? ", "! ", ", "][rng.random_range(0..4)]);
        left -= n;
    }
    text
}

/// Speech chunks of about 30 s for one voice, each at its own speed, pitch, level and channel.
fn speak(voice_index: usize, chunks: usize) -> (usize, Vec<String>) {
    let voice = VOICES[voice_index];
    // DTMF_TALKOFF_SEED and DTMF_TALKOFF_CHUNKS (default 9 per voice) widen the search by hand.
    let seed: u64 = std::env::var("DTMF_TALKOFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut rng = rng(seed + voice_index as u64);
    let mut samples = 0;
    let mut hits = Vec::new();
    for chunk in 0..chunks {
        let wpm = [120, 140, 160, 180, 200, 220][(voice_index + chunk) % 6];
        let pitch = [20, 35, 50, 65, 80, 95][(voice_index * 5 + chunk) % 6];
        let text = sentences(&mut rng, wpm as usize / 2);
        let mut x = speech(&text, voice, wpm, pitch);
        let level = -30.0 + 25.0 * ((voice_index * 3 + chunk) % 6) as f32 / 5.0;
        set_level(&mut x, level);
        let channel = (voice_index + chunk) % 4;
        let y = match channel {
            0 => x,
            1 => g711_round_trip(&x, Law::Ulaw),
            2 => {
                let noise = white_noise(&mut rng, x.len(), level - 20.0);
                let noisy: Vec<f32> = x.iter().zip(&noise).map(|(a, b)| a + b).collect();
                g711_round_trip(&noisy, Law::Alaw)
            }
            _ => {
                let noise = white_noise(&mut rng, x.len(), level - 10.0);
                x.iter().zip(&noise).map(|(a, b)| a + b).collect()
            }
        };
        samples += y.len();
        for d in detect_digits(&y) {
            hits.push(format!(
                "{voice} {wpm} wpm pitch {pitch} at {level} dBm0 channel {channel}: {d:?} in {text:?}"
            ));
        }
    }
    (samples, hits)
}

#[test]
fn speech_gives_no_digits() {
    let chunks = std::env::var("DTMF_TALKOFF_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..VOICES.len())
            .map(|v| scope.spawn(move || speak(v, chunks)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("voice thread"))
            .collect()
    });
    let samples: usize = results.iter().map(|r| r.0).sum();
    let minutes = samples as f64 / f64::from(RATE) / 60.0;
    println!("talk-off: {minutes:.1} minutes of speech checked");
    let hits: Vec<&String> = results.iter().flat_map(|r| &r.1).collect();
    assert!(minutes >= 30.0, "only {minutes:.1} minutes of speech");
    assert!(
        hits.is_empty(),
        "{} digits from speech:\n{hits:#?}",
        hits.len()
    );
}

/// Frequency in Hz of MIDI note `n` (69 = A4 = 440 Hz), as sox wants it.
fn note(n: i32) -> String {
    format!("{:.2}", 440.0 * 2f64.powf(f64::from(n - 69) / 12.0))
}

/// Sum of one sox voice per frequency, each `secs` long with the given wave shape.
fn chord(secs: &str, shape: &str, freqs: &[String]) -> Vec<f32> {
    let mut sum: Vec<f32> = Vec::new();
    for f in freqs {
        let x = sox_synth(&[secs, shape, f]);
        if sum.is_empty() {
            sum = x;
        } else {
            sum.iter_mut().zip(&x).for_each(|(a, b)| *a += b);
        }
    }
    sum
}

/// Whether two frequencies are (within 4 %) a DTMF pair.
fn is_dtmf_pair(a: f64, b: f64) -> bool {
    use dialplane_dsp::dtmf::{HIGH_HZ, LOW_HZ};
    let near = |f: f64, g: &[f32; 4]| g.iter().any(|&n| (f / f64::from(n) - 1.0).abs() < 0.04);
    (near(a, &LOW_HZ) && near(b, &HIGH_HZ)) || (near(b, &LOW_HZ) && near(a, &HIGH_HZ))
}

#[test]
fn music_gives_no_digits() {
    let mut signals: Vec<(String, Vec<f32>)> = Vec::new();
    // Chords of 3 and 4 notes over several octaves, including notes close to DTMF tones
    // (F5 = 698 Hz, A#5 = 932 Hz, E6 = 1319 Hz, F#6 = 1480 Hz).
    let chords: &[&[i32]] = &[
        &[60, 64, 67],
        &[57, 60, 64],
        &[55, 59, 62, 65],
        &[77, 81, 84],
        &[77, 81, 84, 88],
        &[70, 74, 77, 90],
        &[72, 76, 79, 84],
        &[65, 77, 88, 90],
        &[53, 65, 69, 72],
        &[82, 86, 89],
        &[79, 83, 86, 89],
        &[66, 70, 73, 78],
    ];
    for (i, notes) in chords.iter().enumerate() {
        let freqs: Vec<String> = notes.iter().map(|&n| note(n)).collect();
        for shape in ["pluck", "sine", "square", "triangle"] {
            let mut x = chord("1.5", shape, &freqs);
            set_level(&mut x, [-25.0, -15.0, -8.0][i % 3]);
            signals.push((format!("{shape} chord {notes:?}"), x));
        }
    }
    // Two-note intervals between every pair of notes from 55 to 91 that is not a DTMF pair.
    let mut rng = rng(7);
    let mut intervals = 0;
    for a in 55..92 {
        for b in (a + 1)..92 {
            let (fa, fb) = (
                440.0 * 2f64.powf((a - 69) as f64 / 12.0),
                440.0 * 2f64.powf((b - 69) as f64 / 12.0),
            );
            if is_dtmf_pair(fa, fb) || rng.random_range(0..4) != 0 {
                continue;
            }
            let shape = ["sine", "triangle", "pluck", "square"][intervals % 4];
            intervals += 1;
            let mut x = chord("0.4", shape, &[note(a), note(b)]);
            set_level(&mut x, -12.0);
            signals.push((format!("{shape} interval {a} {b}"), x));
        }
    }
    // Sweeps, single and dual.
    for args in [
        &["4", "sine", "300-3400", "sine", "3400-300"][..],
        &["4", "sine", "300-3400"],
        &["4", "sine", "3400-300"],
        &["3", "square", "100-1000"],
        &["3", "triangle", "200-2000"],
    ] {
        let mut x = sox_synth(args);
        set_level(&mut x, -10.0);
        signals.push((format!("{args:?}"), x));
    }
    for (up, down) in [
        ("300-3400", "3400-300"),
        ("500-2000", "2000-500"),
        ("300-1000", "3000-1600"),
    ] {
        let mut x = sox_synth(&["4", "sine", up]);
        let y = sox_synth(&["4", "sine", down]);
        x.iter_mut().zip(&y).for_each(|(a, b)| *a += b);
        set_level(&mut x, -10.0);
        signals.push((format!("dual sweep {up} {down}"), x.clone()));
        signals.push((
            format!("dual sweep {up} {down} µ-law"),
            g711_round_trip(&x, Law::Ulaw),
        ));
    }
    let mut samples = 0;
    let mut hits = Vec::new();
    for (name, x) in &signals {
        let mut padded = x.clone();
        padded.extend(vec![0.0; ms(100)]);
        samples += padded.len();
        hits.extend(
            detect_digits(&padded)
                .into_iter()
                .map(|d| format!("{name}: {d:?}")),
        );
    }
    let minutes = samples as f64 / f64::from(RATE) / 60.0;
    println!(
        "talk-off: {minutes:.1} minutes of music-like signals checked ({} signals)",
        signals.len()
    );
    assert!(
        hits.is_empty(),
        "{} digits from music:\n{hits:#?}",
        hits.len()
    );
}
