//! Writes `examples/answering-machine.wav`, the recording `make run` analyses: an answering
//! machine's greeting (espeak-ng), its 1 kHz beep, then the caller keying "123#" (dialplane's own
//! DTMF generator), as 8 kHz µ-law.
//!
//! Run from the repository root: `cargo run --example make_sample` (needs espeak-ng and sox).

use std::io::Write;
use std::process::{Command, Stdio};

use dsp::dtmf::{DtmfGenerator, ToneSpec};
use dsp::g711::Law;
use dsp::spectrum::dbm0_amplitude;

const RATE: usize = 8000;
const GREETING: &str = "Hi, you have reached the Fischer family. We can't come to the phone \
                        right now, so please leave your name and number after the tone.";

fn speech(text: &str) -> Vec<f32> {
    let wav = Command::new("espeak-ng")
        .args(["-v", "en-gb", "-s", "165", "--stdout", text])
        .output()
        .expect("espeak-ng runs (apt-get install espeak-ng)")
        .stdout;
    let mut sox = Command::new("sox")
        .args([
            "-q", "-t", "wav", "-", "-t", "raw", "-r", "8000", "-e", "signed",
        ])
        .args(["-b", "16", "-c", "1", "-", "gain", "-n", "-12"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("sox runs (apt-get install sox)");
    let mut stdin = sox.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || stdin.write_all(&wav));
    let raw = sox.wait_with_output().expect("sox output").stdout;
    writer
        .join()
        .expect("writer")
        .expect("sox reads the speech");
    raw.chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

fn silence(x: &mut Vec<f32>, ms: usize) {
    x.resize(x.len() + ms * RATE / 1000, 0.0);
}

fn main() {
    let mut x = Vec::new();
    silence(&mut x, 400);
    x.extend(speech(GREETING));
    silence(&mut x, 600);
    let amp = dbm0_amplitude(-12.0);
    let beep = (0..RATE / 2)
        .map(|i| amp * (std::f32::consts::TAU * 1000.0 * i as f32 / RATE as f32).sin());
    x.extend(beep);
    silence(&mut x, 1500);
    for digit in ['1', '2', '3', '#'] {
        let start = x.len();
        silence(&mut x, 100);
        DtmfGenerator::new(&ToneSpec::new(digit, 100)).fill(&mut x[start..]);
        silence(&mut x, 100);
    }
    silence(&mut x, 1000);
    let codes: Vec<u8> = x
        .iter()
        .map(|v| Law::Ulaw.encode((v * 32768.0).clamp(-32768.0, 32767.0) as i16))
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/answering-machine.wav"
    );
    std::fs::write(path, signaling::wav::encode_g711(Law::Ulaw, &codes)).expect("write the sample");
    println!("wrote {path}: {:.1} s", x.len() as f32 / RATE as f32);
}
