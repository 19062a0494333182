//! The labelled AMD corpus and the app_amd baseline, shared by the AMD tests.
//!
//! [`corpus`] builds every recording deterministically (seeded) from espeak-ng speech, sox-free
//! synthetic tones and seeded noise: humans answering ("Hello?", "Hi, this is Dana", ...)
//! and then waiting, sometimes saying "Hello?" again; machine greetings long and short with
//! and without beeps; silence with and without line noise; fax tones. Talkers vary in voice,
//! speed, pitch, level (down to −35 dBm0 over a −55 dBm0 floor), answer delay (0.2–1.5 s),
//! line noise and G.711.
//!
//! [`app_amd`] re-implements Asterisk's app_amd decision rules (from its documented
//! parameters and behaviour) on 20 ms frames, as the baseline our detector must beat.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};

use dialplane_dsp::g711::Law;
use rand::{Rng, rngs::StdRng};

use crate::support::{self, VOICES, ms, rng, set_level, sine, white_noise};

/// What really answered
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    Human,
    Machine,
    Silence,
    Fax,
}

/// One labelled recording
#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    pub truth: Truth,
    pub samples: Vec<f32>,
    /// A beep in the recording: start and end sample, frequency.
    pub beep: Option<(usize, usize, f32)>,
    /// Set for the plain "Hello?" at 0.3 s of one voice (must be human within 2 s).
    pub plain_hello: bool,
}

const HUMAN_TEXTS: &[&str] = &[
    "Hello?",
    "Hello.",
    "Hi.",
    "Yes?",
    "Hello, this is Sam.",
    "Hi, this is Dana.",
    "Yeah hello, who's calling?",
    "Hello, who is this?",
    "Good morning.",
    "Hey, what's up?",
];

const LONG_GREETINGS: &[&str] = &[
    "Hi, you've reached the voicemail of Alex Morgan. I can't take your call right now, please leave a message after the tone.",
    "Hello, you have reached five five five, zero one four two. Nobody is available to take your call. Please leave your name and number after the beep.",
    "The person you are calling is not available. Please leave a message after the tone. When you are finished, you may hang up.",
    "Hi, this is Chris. Sorry I missed you, leave me a message and I'll call you back as soon as I can.",
    "Thank you for calling Acme Dental. Our office is currently closed. Our hours are Monday to Friday, nine to five.",
    "You've reached Jordan and Taylor. We're not home right now, but if you leave a message we'll get back to you.",
];

const SHORT_GREETINGS: &[&str] = &[
    "Please leave a message.",
    "Leave a message after the tone.",
    "Hi, it's Pat, leave a message.",
];

/// How one recording is made
#[derive(Debug, Clone)]
enum Spec {
    Human {
        voice: &'static str,
        text: &'static str,
        wpm: u32,
        pitch: u32,
        delay_ms: u32,
        again: bool,
        plain: bool,
    },
    Machine {
        voice: &'static str,
        text: &'static str,
        wpm: u32,
        pitch: u32,
        delay_ms: u32,
        /// Gap after the greeting, frequency, length, level.
        beep: Option<(u32, f32, u32, f32)>,
    },
    Silence,
    Cng {
        delay_ms: u32,
    },
    Ced {
        delay_ms: u32,
        reversals: bool,
    },
}

/// Channel conditions applied on top of a recording
#[derive(Debug, Clone, Copy)]
struct Line {
    talker_dbm0: f32,
    noise_dbm0: Option<f32>,
    law: Option<Law>,
}

fn specs() -> Vec<(Spec, Line, u64)> {
    let mut r = rng(2026);
    let mut out = Vec::new();
    let mut seed = 100;
    let line = |r: &mut StdRng, i: usize| -> Line {
        // Cycle the channel conditions so every voice meets each of them.
        let (talker_dbm0, noise_dbm0) = match i % 6 {
            0 => (-18.0, None),
            1 => (-22.0, Some(-50.0)),
            2 => (-15.0, Some(-40.0)),
            3 => (-35.0, Some(-55.0)), // quiet talker
            4 => (-25.0, Some(-45.0)),
            _ => (-20.0, Some(-60.0)),
        };
        let law = match (i / 6 + i) % 3 {
            0 => None,
            1 => Some(Law::Ulaw),
            _ => Some(Law::Alaw),
        };
        Line {
            talker_dbm0: talker_dbm0 + r.random_range(-3.0..3.0),
            noise_dbm0,
            law,
        }
    };
    let mut push = |spec: Spec, l: Line, out: &mut Vec<(Spec, Line, u64)>| {
        seed += 1;
        out.push((spec, l, seed));
    };
    for (v, &voice) in VOICES.iter().enumerate() {
        // The plain "Hello?" at 0.3 s, clean, at espeak's default speed.
        let clean = Line {
            talker_dbm0: -18.0,
            noise_dbm0: Some(-60.0),
            law: Some(Law::Ulaw),
        };
        let plain = Spec::Human {
            voice,
            text: "Hello?",
            wpm: 175,
            pitch: 50,
            delay_ms: 300,
            again: false,
            plain: true,
        };
        push(plain, clean, &mut out);
        for k in 0..13 {
            let i = v * 13 + k;
            let spec = Spec::Human {
                voice,
                text: HUMAN_TEXTS[(v + k) % HUMAN_TEXTS.len()],
                wpm: r.random_range(150..=210),
                pitch: r.random_range(25..=75),
                delay_ms: r.random_range(200..=1500),
                again: k % 3 == 1,
                plain: false,
            };
            let l = line(&mut r, i);
            push(spec, l, &mut out);
        }
        for k in 0..12 {
            let i = v * 12 + k + 3;
            let short = k % 4 == 3;
            let text = if short {
                SHORT_GREETINGS[(v + k / 4) % SHORT_GREETINGS.len()]
            } else {
                LONG_GREETINGS[(v + k) % LONG_GREETINGS.len()]
            };
            // Short greetings mostly end with a beep; long ones two times in three.
            let has_beep = if short { v % 4 != 0 } else { k % 3 != 2 };
            let beep = has_beep.then(|| {
                let gap = if short {
                    r.random_range(200..=500)
                } else {
                    r.random_range(200..=1200)
                };
                let freq = [440.0, 600.0, 850.0, 1000.0, 1400.0, 2000.0][(v + k) % 6]
                    * r.random_range(0.98..1.02);
                let len = [100, 200, 400, 600, 900, 1200][(v * 5 + k) % 6];
                (gap, freq, len, r.random_range(-22.0..-8.0))
            });
            let spec = Spec::Machine {
                voice,
                text,
                wpm: r.random_range(150..=200),
                pitch: r.random_range(25..=75),
                delay_ms: r.random_range(200..=1000),
                beep,
            };
            let l = line(&mut r, i);
            push(spec, l, &mut out);
        }
    }
    for i in 0..18 {
        let l = Line {
            talker_dbm0: 0.0,
            noise_dbm0: [
                None,
                Some(-60.0),
                Some(-50.0),
                Some(-45.0),
                Some(-40.0),
                Some(-35.0),
            ][i % 6],
            law: [None, Some(Law::Ulaw), Some(Law::Alaw)][i / 6],
        };
        push(Spec::Silence, l, &mut out);
    }
    for i in 0..8 {
        let l = Line {
            talker_dbm0: 0.0,
            noise_dbm0: [None, Some(-55.0), Some(-45.0), Some(-60.0)][i % 4],
            law: [None, Some(Law::Ulaw)][i % 2],
        };
        let delay_ms = r.random_range(0..=1500);
        let spec = match i % 3 {
            0 => Spec::Cng { delay_ms },
            1 => Spec::Ced {
                delay_ms,
                reversals: false,
            },
            _ => Spec::Ced {
                delay_ms,
                reversals: true,
            },
        };
        push(spec, l, &mut out);
    }
    out
}

/// espeak-ng speech with its leading and trailing silence trimmed (a real line has none)
fn talk(text: &str, voice: &str, wpm: u32, pitch: u32) -> Vec<f32> {
    let x = support::speech(text, voice, wpm, pitch);
    let first = x.iter().position(|v| v.abs() > 1e-3).unwrap_or(0);
    let last = x.iter().rposition(|v| v.abs() > 1e-3).map_or(0, |p| p + 1);
    x[first..last.max(first)].to_vec()
}

fn build(spec: &Spec, line: Line, seed: u64) -> Recording {
    let mut r = rng(seed);
    let mut x = Vec::new();
    let mut beep = None;
    let mut plain_hello = false;
    let (truth, name) = match *spec {
        Spec::Human {
            voice,
            text,
            wpm,
            pitch,
            delay_ms,
            again,
            plain,
        } => {
            plain_hello = plain;
            x.resize(ms(delay_ms), 0.0);
            let mut s = talk(text, voice, wpm, pitch);
            set_level(&mut s, line.talker_dbm0);
            x.extend(&s);
            if again {
                x.resize(x.len() + ms(r.random_range(1800..=2500)), 0.0);
                let mut s = talk("Hello?", voice, wpm, pitch);
                set_level(&mut s, line.talker_dbm0);
                x.extend(&s);
            }
            x.resize(x.len().max(ms(7000)), 0.0);
            x.resize(x.len() + ms(1000), 0.0);
            (
                Truth::Human,
                format!(
                    "human {voice} {wpm}wpm +{delay_ms}ms '{text}'{}",
                    if again { " +again" } else { "" }
                ),
            )
        }
        Spec::Machine {
            voice,
            text,
            wpm,
            pitch,
            delay_ms,
            beep: b,
        } => {
            x.resize(ms(delay_ms), 0.0);
            let mut s = talk(text, voice, wpm, pitch);
            set_level(&mut s, line.talker_dbm0);
            x.extend(&s);
            let mut what = String::new();
            if let Some((gap, freq, len, level)) = b {
                x.resize(x.len() + ms(gap), 0.0);
                let start = x.len();
                x.extend(sine(
                    freq,
                    level,
                    ms(len),
                    r.random_range(0.0..std::f32::consts::TAU),
                ));
                beep = Some((start, x.len(), freq));
                what = format!(" beep {freq:.0}Hz {len}ms after {gap}ms");
            }
            x.resize(x.len() + ms(3000), 0.0);
            (
                Truth::Machine,
                format!(
                    "machine {voice} {wpm}wpm +{delay_ms}ms '{}'{what}",
                    &text[..text.len().min(24)]
                ),
            )
        }
        Spec::Silence => {
            x.resize(ms(8000), 0.0);
            (Truth::Silence, "silence".to_string())
        }
        Spec::Cng { delay_ms } => {
            x.resize(ms(delay_ms), 0.0);
            for _ in 0..3 {
                x.extend(sine(
                    1100.0,
                    -15.0,
                    ms(500),
                    r.random_range(0.0..std::f32::consts::TAU),
                ));
                x.resize(x.len() + ms(3000), 0.0);
            }
            (Truth::Fax, format!("fax CNG +{delay_ms}ms"))
        }
        Spec::Ced {
            delay_ms,
            reversals,
        } => {
            x.resize(ms(delay_ms), 0.0);
            let mut ced = sine(
                2100.0,
                -15.0,
                ms(3300),
                r.random_range(0.0..std::f32::consts::TAU),
            );
            if reversals {
                for (i, v) in ced.iter_mut().enumerate() {
                    if (i / ms(450)) % 2 == 1 {
                        *v = -*v;
                    }
                }
            }
            x.extend(ced);
            x.resize(x.len() + ms(3000), 0.0);
            (
                Truth::Fax,
                format!(
                    "fax CED{} +{delay_ms}ms",
                    if reversals { " reversals" } else { "" }
                ),
            )
        }
    };
    if let Some(level) = line.noise_dbm0 {
        let noise = white_noise(&mut r, x.len(), level);
        x.iter_mut().zip(noise).for_each(|(v, n)| *v += n);
    }
    if let Some(law) = line.law {
        x = support::g711_round_trip(&x, law);
    }
    let name = format!(
        "{name} [talker {:.0} dBm0, noise {}, {}]",
        line.talker_dbm0,
        line.noise_dbm0
            .map_or("none".to_string(), |n| format!("{n} dBm0")),
        match line.law {
            None => "linear",
            Some(Law::Ulaw) => "PCMU",
            Some(Law::Alaw) => "PCMA",
        }
    );
    Recording {
        name,
        truth,
        samples: x,
        beep,
        plain_hello,
    }
}

/// Builds the whole corpus on all cores; the order and content are deterministic
pub fn corpus() -> Vec<Recording> {
    let specs = specs();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let mut built: Vec<(usize, Recording)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((spec, line, seed)) = specs.get(i) else {
                            break;
                        };
                        mine.push((i, build(spec, *line, *seed)));
                    }
                    mine
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("corpus worker"))
            .collect()
    });
    built.sort_by_key(|(i, _)| *i);
    built.into_iter().map(|(_, r)| r).collect()
}

/// What app_amd decides
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppAmd {
    Human,
    Machine,
    /// Initial silence too long (app_amd reports MACHINE/INITIALSILENCE; we score it as silence).
    Silence,
    /// Total analysis time exceeded.
    NotSure,
}

/// app_amd's parameters (its documented defaults, and the brief's silence threshold)
pub struct AppAmdConfig {
    pub initial_silence_ms: u32,
    pub greeting_ms: u32,
    pub after_greeting_silence_ms: u32,
    pub total_analysis_ms: u32,
    pub min_word_length_ms: u32,
    pub between_words_silence_ms: u32,
    pub maximum_number_of_words: u32,
    /// Mean absolute 16-bit sample value under which a frame is silent (256 ≈ −35 dBm0).
    pub silence_threshold: f32,
    pub maximum_word_length_ms: u32,
}

impl Default for AppAmdConfig {
    fn default() -> Self {
        Self {
            initial_silence_ms: 2500,
            greeting_ms: 1500,
            after_greeting_silence_ms: 800,
            total_analysis_ms: 5000,
            min_word_length_ms: 100,
            between_words_silence_ms: 50,
            maximum_number_of_words: 2,
            silence_threshold: 256.0,
            maximum_word_length_ms: 5000,
        }
    }
}

/// app_amd's rules on 20 ms frames: returns the decision and when it was made (ms)
pub fn app_amd(x: &[f32], c: &AppAmdConfig) -> (AppAmd, u64) {
    const FRAME_MS: u32 = 20;
    let mut silence_ms = 0u32; // consecutive silence
    let mut consecutive_voice_ms = 0u32;
    let mut voice_ms = 0u32; // total voice
    let mut words = 0u32;
    let mut in_word = true; // app_amd starts "in word": the first word needs silence before it
    let mut in_initial_silence = true;
    let mut in_greeting = false;
    let mut t = 0u32;
    for frame in x.chunks_exact(ms(FRAME_MS)) {
        t += FRAME_MS;
        let avg = frame.iter().map(|v| v.abs()).sum::<f32>() / frame.len() as f32 * 32768.0;
        if avg < c.silence_threshold {
            consecutive_voice_ms = 0;
            silence_ms += FRAME_MS;
            if silence_ms >= c.between_words_silence_ms && in_word {
                in_word = false;
            }
            if in_initial_silence && silence_ms >= c.initial_silence_ms {
                return (AppAmd::Silence, u64::from(t));
            }
            if in_greeting && silence_ms >= c.after_greeting_silence_ms {
                return (AppAmd::Human, u64::from(t));
            }
        } else {
            consecutive_voice_ms += FRAME_MS;
            voice_ms += FRAME_MS;
            if consecutive_voice_ms >= c.min_word_length_ms && !in_word {
                words += 1;
                in_word = true;
                // Once a word is heard, silence is no longer "initial".
                in_initial_silence = false;
                in_greeting = true;
            }
            if consecutive_voice_ms >= c.maximum_word_length_ms {
                return (AppAmd::Machine, u64::from(t));
            }
            if words > c.maximum_number_of_words {
                return (AppAmd::Machine, u64::from(t));
            }
            if in_greeting && voice_ms >= c.greeting_ms {
                return (AppAmd::Machine, u64::from(t));
            }
            silence_ms = 0;
        }
        if t >= c.total_analysis_ms {
            return (AppAmd::NotSure, u64::from(t));
        }
    }
    (AppAmd::NotSure, u64::from(t))
}
