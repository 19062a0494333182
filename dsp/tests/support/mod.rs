//! Signal sources shared by the dsp integration tests: speech from espeak-ng, music-like
//! signals from sox, white noise, levels in dBm0 and the G.711 round trip.
//!
//! espeak-ng and sox are Debian packages the Makefile installs; a missing one fails the test
//! with its name rather than skipping it.
#![allow(dead_code, unreachable_pub)] // each test binary uses its own subset

use std::io::Write;
use std::process::{Command, Stdio};

use dialplane_dsp::dtmf::{Digit, DtmfReceiver};
use dialplane_dsp::g711::Law;
use dialplane_dsp::spectrum::{DBM0_MEAN_SQUARE, RATE, Spectrum, dbm0_amplitude};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// Voices with distinct pitch and formants, spoken through espeak-ng's own synthesiser.
pub const VOICES: &[&str] = &[
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-029",
    "en-us+f3",
    "en-gb+f4",
    "en+m3",
    "en-us+klatt2",
];

/// Runs `cmd`, feeding `stdin`, and returns its stdout; panics with the command if it fails.
fn run(cmd: &mut Command, stdin: &[u8]) -> Vec<u8> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?} (run `make test` to install it): {e}"));
    let mut input = child.stdin.take().expect("stdin was piped");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("child output");
    writer.join().expect("stdin writer");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Raw signed 16-bit little-endian mono bytes to full-scale samples.
pub fn from_s16le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// Converts any audio sox reads (on stdin, of type `kind`) to 8 kHz mono samples.
fn sox_to_8k(kind: &str, input: &[u8]) -> Vec<f32> {
    let rate = RATE.to_string();
    from_s16le(&run(
        Command::new("sox").args([
            "-q", "-R", "-t", kind, "-", "-t", "raw", "-r", &rate, "-e", "signed", "-b", "16",
            "-c", "1", "-",
        ]),
        input,
    ))
}

/// Speech from espeak-ng at 8 kHz: `voice` from [`VOICES`], `wpm` words per minute, `pitch` 0-99.
pub fn speech(text: &str, voice: &str, wpm: u32, pitch: u32) -> Vec<f32> {
    let wav = run(
        Command::new("espeak-ng").args([
            "-v",
            voice,
            "-s",
            &wpm.to_string(),
            "-p",
            &pitch.to_string(),
            "--stdout",
            text,
        ]),
        &[],
    );
    sox_to_8k("wav", &wav)
}

/// A signal made by `sox -n … synth <args>` at 8 kHz, e.g. `&["2", "sine", "300-3000"]`.
pub fn sox_synth(args: &[&str]) -> Vec<f32> {
    let rate = RATE.to_string();
    let mut all = vec![
        "-q", "-R", "-n", "-t", "raw", "-r", &rate, "-e", "signed", "-b", "16", "-c", "1", "-",
        "synth",
    ];
    all.extend_from_slice(args);
    from_s16le(&run(Command::new("sox").args(&all), &[]))
}

/// Mean square of a signal (full-scale units).
pub fn mean_square(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32
}

/// Scales `x` in place so its mean square over the non-silent part is `level` dBm0.
pub fn set_level(x: &mut [f32], level: f32) {
    // Count only samples above -60 dBFS so the pauses in speech do not lower the level.
    let active: Vec<f32> = x.iter().copied().filter(|v| v.abs() > 1e-3).collect();
    let ms = mean_square(&active);
    if ms > 0.0 {
        let g = (DBM0_MEAN_SQUARE * 10f32.powf(level / 10.0) / ms).sqrt();
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// White noise (uniform over 0-4 kHz) at `level` dBm0, `n` samples, seeded.
pub fn white_noise(rng: &mut StdRng, n: usize, level: f32) -> Vec<f32> {
    // Gaussian by summing 12 uniforms: close enough for a flat spectrum and a set power.
    let sigma = (DBM0_MEAN_SQUARE * 10f32.powf(level / 10.0)).sqrt();
    (0..n)
        .map(|_| sigma * ((0..12).map(|_| rng.random::<f32>()).sum::<f32>() - 6.0))
        .collect()
}

/// A seeded RNG for reproducible signals.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Full-scale samples to 16-bit with saturation, as a codec or a sound card would clip.
pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Encodes to G.711 and back, as a call through a PCMU or PCMA trunk would.
pub fn g711_round_trip(x: &[f32], law: Law) -> Vec<f32> {
    to_i16(x)
        .into_iter()
        .map(|s| f32::from(law.decode(law.encode(s))) / 32768.0)
        .collect()
}

/// `n` samples of silence.
pub fn silence(n: usize) -> Vec<f32> {
    vec![0.0; n]
}

/// Samples in `ms` milliseconds at 8 kHz.
pub fn ms(ms: u32) -> usize {
    (ms * RATE / 1000) as usize
}

/// A sine at `level` dBm0, `n` samples, starting at `phase` radians.
pub fn sine(freq: f32, level: f32, n: usize, phase: f32) -> Vec<f32> {
    let a = dbm0_amplitude(level);
    (0..n)
        .map(|i| a * (2.0 * std::f32::consts::PI * freq * i as f32 / RATE as f32 + phase).sin())
        .collect()
}

/// Runs the shared spectrum and a DTMF receiver over `x`, fed in uneven chunks as RTP would.
pub fn detect_digits(x: &[f32]) -> Vec<Digit> {
    let mut s = Spectrum::new();
    let mut r = DtmfReceiver::new();
    let mut out = Vec::new();
    for chunk in x.chunks(97) {
        s.push(chunk, |s| out.extend(r.on_hop(s)));
    }
    out.extend(r.finish());
    out
}
