//! Deterministic test signals at 8 kHz: DTMF digits and speech-like sound
//!
//! Samples are `f32` with 16-bit full scale = 1.0, like dialplane-dsp's.

use std::f32::consts::PI;

use dsp::dtmf::ToneSpec;
use dsp::spectrum::{RATE, dbm0_amplitude};

/// Samples per 20 ms frame at 8 kHz.
pub const FRAME: usize = 160;

/// `digits` as DTMF from dsp's generator, each tone at `level_dbm0`, `on_ms` of tone then
/// `off_ms` of silence
pub fn dtmf_sequence(digits: &str, level_dbm0: f32, on_ms: u32, off_ms: u32) -> Vec<f32> {
    let off = (RATE * off_ms / 1000) as usize;
    let parts: Vec<(ToneSpec, usize)> = digits
        .chars()
        .map(|d| (ToneSpec::new(d, on_ms).levels(level_dbm0, level_dbm0), off))
        .collect();
    dsp::dtmf::sequence(&parts)
}

/// Small xorshift generator: deterministic noise without a dependency
struct XorShift(u32);

impl XorShift {
    /// Uniform in -1.0..1.0
    fn next(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

/// `seconds` of speech-like sound, about −20 dBm0 while "talking"
///
/// A voiced buzz (harmonics of a drifting 100–160 Hz pitch, rolled off like a glottal source)
/// plus breath noise, gated into 150–400 ms syllables with short pauses between them.
pub fn speech_like(seconds: f32, seed: u32) -> Vec<f32> {
    let n = (seconds * RATE as f32) as usize;
    let mut rng = XorShift(seed.max(1));
    let mut out = Vec::with_capacity(n);
    let (mut phase, mut lp) = (0.0f32, 0.0f32);
    let mut syllable_left = 0usize;
    let mut talking = false;
    let mut pitch = 120.0f32;
    let amp = dbm0_amplitude(-20.0);
    for i in 0..n {
        if syllable_left == 0 {
            talking = !talking || rng.next() > 0.6;
            let ms = if talking {
                275.0 + 125.0 * rng.next()
            } else {
                110.0 + 90.0 * rng.next()
            };
            syllable_left = (ms * RATE as f32 / 1000.0) as usize;
            pitch = 130.0 + 30.0 * rng.next();
        }
        syllable_left -= 1;
        let t = i as f32 / RATE as f32;
        let f0 = pitch * (1.0 + 0.05 * (2.0 * PI * 3.0 * t).sin());
        phase = (phase + f0 / RATE as f32).fract();
        let mut voiced = 0.0;
        let mut k = 1.0;
        while k * f0 < 3400.0 {
            voiced += (2.0 * PI * k * phase).sin() / k;
            k += 1.0;
        }
        lp = 0.7 * lp + 0.3 * rng.next();
        let x = 0.35 * voiced + 0.5 * lp;
        out.push(if talking { amp * x } else { 0.01 * amp * lp });
    }
    out
}

/// Full-scale `f32` to 16-bit, rounding and saturating
pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter().map(|&v| (v * 32768.0).round() as i16).collect()
}

/// A few seconds of a call's audio for per-frame benches: speech-like sound with DTMF
/// bursts ("123", "456#", "7890*") in the pauses, a whole number of 20 ms frames
pub fn call_audio() -> Vec<f32> {
    let mut x = Vec::new();
    for (i, digits) in ["123", "456#", "7890*"].iter().enumerate() {
        x.extend(speech_like(1.2, 11 + i as u32));
        x.extend(dtmf_sequence(digits, -10.0, 60, 60));
    }
    x.extend(speech_like(1.0, 99));
    x.resize(x.len().div_ceil(FRAME) * FRAME, 0.0);
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtmf_level_is_minus_ten_dbm0_per_tone() {
        let x = dtmf_sequence("5", -10.0, 1000, 0);
        let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        // Two tones, each −10 dBm0: total −6.99 dBm0.
        let level = dsp::spectrum::dbm0(ms);
        assert!((level + 6.99).abs() < 0.05, "{level}");
    }

    #[test]
    fn call_audio_is_whole_frames_and_in_range() {
        let x = call_audio();
        assert_eq!(x.len() % FRAME, 0);
        assert!(x.len() > 5 * RATE as usize);
        assert!(x.iter().all(|v| v.abs() < 1.0));
    }
}
