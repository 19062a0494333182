//! The offline commands end to end: the real binary on WAV files written here, checked line by
//! line; bad input gives one line on stderr and exit code 2.

use std::path::PathBuf;
use std::process::{Command, Output};

use dsp::dtmf::{DtmfGenerator, ToneSpec};
use dsp::g711::Law;
use signaling::wav;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dialplane"))
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("dialplane runs")
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn pcm16_wav(rate: u32, x: &[f32]) -> Vec<u8> {
    wav::encode_pcm16(rate, &to_i16(x))
}

fn g711_wav(law: Law, x: &[f32]) -> Vec<u8> {
    let codes: Vec<u8> = to_i16(x).into_iter().map(|s| law.encode(s)).collect();
    wav::encode_g711(law, &codes)
}

/// Digits "5", "#", "D" at -10 dBm0: 100 ms on at 200, 500 and 800 ms; total 1.1 s at 8 kHz.
fn three_digits() -> Vec<f32> {
    let mut x = vec![0.0; 8800];
    for (digit, at) in [('5', 1600), ('#', 4000), ('D', 6400)] {
        DtmfGenerator::new(&ToneSpec::new(digit, 100)).fill(&mut x[at..at + 800]);
    }
    x
}

fn upsample_naive(x: &[f32], factor: usize) -> Vec<f32> {
    // Linear interpolation is enough for tones far below the new Nyquist.
    let mut out = Vec::with_capacity(x.len() * factor);
    for w in x.windows(2) {
        for k in 0..factor {
            out.push(w[0] + (w[1] - w[0]) * k as f32 / factor as f32);
        }
    }
    out
}

fn lines(out: &Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn assert_three_digits(found: &[serde_json::Value]) {
    let digits: Vec<&str> = found.iter().map(|v| v["digit"].as_str().unwrap()).collect();
    assert_eq!(digits, ["5", "#", "D"]);
    for (v, start) in found.iter().zip([200, 500, 800]) {
        let s = v["start_ms"].as_u64().unwrap();
        let e = v["end_ms"].as_u64().unwrap();
        assert!(s.abs_diff(start) <= 5, "{v}");
        assert!(e.abs_diff(start + 100) <= 5, "{v}");
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
    }
}

#[test]
fn dtmf_from_pcm16_ulaw_alaw_and_wideband_files() {
    let x = three_digits();
    let files = [
        ("d8k.wav", pcm16_wav(8000, &x)),
        ("dulaw.wav", g711_wav(Law::Ulaw, &x)),
        ("dalaw.wav", g711_wav(Law::Alaw, &x)),
        ("d16k.wav", pcm16_wav(16000, &upsample_naive(&x, 2))),
        ("d48k.wav", pcm16_wav(48000, &upsample_naive(&x, 6))),
    ];
    for (name, bytes) in files {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        assert_three_digits(&lines(&run(&["dsp", "dtmf", path.to_str().unwrap()])));
    }
}

#[test]
fn no_digits_prints_nothing_and_exits_zero() {
    let path = tmp("silence.wav");
    std::fs::write(&path, pcm16_wav(8000, &[0.0; 8000])).unwrap();
    let out = run(&["dsp", "dtmf", path.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_on_stderr_and_exit_2() {
    let not_wav = tmp("not.wav");
    std::fs::write(&not_wav, b"this is not audio").unwrap();
    // Any rate and channel count decodes; a file without samples or cut inside its header does not.
    let empty_path = tmp("empty.wav");
    std::fs::write(&empty_path, wav::encode_pcm16(8000, &[])).unwrap();
    let mut cut = pcm16_wav(11025, &[0.0; 100]);
    cut.truncate(30);
    let cut_path = tmp("cut.wav");
    std::fs::write(&cut_path, cut).unwrap();
    for cmd in ["dtmf", "amd"] {
        for path in [
            not_wav.to_str().unwrap(),
            empty_path.to_str().unwrap(),
            cut_path.to_str().unwrap(),
            "/nonexistent/file.wav",
        ] {
            let out = run(&["dsp", cmd, path]);
            assert_eq!(out.status.code(), Some(2), "{cmd} {path}");
            let err = String::from_utf8(out.stderr).unwrap();
            assert_eq!(err.lines().count(), 1, "{cmd} {path}: {err}");
            assert!(err.starts_with("dialplane: error:"), "{err}");
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn amd_on_the_bundled_sample_finds_a_machine_then_its_beep() {
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/answering-machine.wav"
    );
    let events = lines(&run(&["dsp", "amd", sample]));
    assert!(events.len() >= 2, "{events:?}");
    assert_eq!(events[0]["event"], "amd");
    assert_eq!(events[0]["amd_type"], "machine");
    let beep = events
        .iter()
        .find(|e| e["event"] == "beep")
        .expect("a beep");
    assert_eq!(beep["frequency"], 1000);
    assert_eq!(beep.as_object().unwrap().len(), 3, "{beep}");
    let mut at: Vec<u64> = events
        .iter()
        .map(|e| e["at_ms"].as_u64().unwrap())
        .collect();
    let sorted = {
        at.sort();
        at.clone()
    };
    assert_eq!(at, sorted, "time order");
}

#[test]
fn a_beep_alone_decides_machine_at_its_end_then_reports_it() {
    let mut x = vec![0.0f32; 8000];
    x.extend((0..3200).map(|i| 0.2 * (std::f32::consts::TAU * 1400.0 * i as f32 / 8000.0).sin()));
    x.extend(vec![0.0; 8000]);
    let path = tmp("beep.wav");
    std::fs::write(&path, pcm16_wav(8000, &x)).unwrap();
    let events = lines(&run(&["dsp", "amd", path.to_str().unwrap()]));
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["event"], "amd");
    assert_eq!(events[0]["amd_type"], "machine");
    assert_eq!(events[1]["event"], "beep");
    assert_eq!(events[1]["frequency"], 1400);
    let end = events[1]["at_ms"].as_u64().unwrap();
    assert!(end.abs_diff(1400) <= 15, "beep ends at 1400 ms: {end}");
    assert_eq!(
        events[0]["at_ms"], events[1]["at_ms"],
        "decided by the beep's end"
    );
}

#[test]
fn amd_silence_honours_timer_flags_and_config() {
    let path = tmp("quiet.wav");
    std::fs::write(&path, pcm16_wav(8000, &[0.0; 8000 * 7])).unwrap();
    let p = path.to_str().unwrap();
    let events = lines(&run(&["dsp", "amd", p]));
    assert_eq!(
        events,
        [serde_json::json!({"event":"silence","at_ms":5000})]
    );
    let events = lines(&run(&["dsp", "amd", p, "--no-speech-timeout-ms", "3000"]));
    assert_eq!(
        events,
        [serde_json::json!({"event":"silence","at_ms":3000})]
    );
    let config = tmp("amd.toml");
    std::fs::write(&config, "[amd]\nno_speech_timeout_ms = 4000\n").unwrap();
    let events = lines(&run(&[
        "--config",
        config.to_str().unwrap(),
        "dsp",
        "amd",
        p,
    ]));
    assert_eq!(
        events,
        [serde_json::json!({"event":"silence","at_ms":4000})]
    );
    std::fs::write(&config, "[amd]\nno_speech_timeout = 4000\n").unwrap();
    let out = run(&["--config", config.to_str().unwrap(), "dsp", "amd", p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_speech_timeout"));
}

#[test]
fn metrics_flag_prints_prometheus_counters() {
    let path = tmp("metrics.wav");
    std::fs::write(&path, pcm16_wav(8000, &three_digits())).unwrap();
    let out = run(&["--metrics", "dsp", "dtmf", path.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stderr).unwrap();
    assert!(text.contains("dialplane_dsp_dtmf_digits_total 3"), "{text}");
    assert!(text.contains("dialplane_dsp_frames_total"), "{text}");
}
