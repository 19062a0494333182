//! `dialplane dsp dtmf|amd FILE.wav`: offline analysis through the same per-leg pipeline the
//! media plane runs, printed as JSON lines on stdout.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use dsp::amd::{AmdConfig, AmdEvent};
use dsp::pipeline::{Event, LegDsp, PipelineConfig};
use dsp::spectrum::RATE;
use serde::Serialize;

/// Samples fed per call, as one 20 ms RTP packet would bring them.
const FRAME: usize = 160;

fn ms(sample: u64) -> u64 {
    sample * 1000 / u64::from(RATE)
}

fn read(file: &Path) -> anyhow::Result<Vec<f32>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let samples =
        signaling::media_files::decode_8k(&bytes).with_context(|| file.display().to_string())?;
    tracing::debug!(
        file = %file.display(),
        seconds = samples.len() as f32 / RATE as f32,
        "decoded to 8 kHz"
    );
    Ok(samples)
}

/// Runs the pipeline over the whole file and returns its events in time order.
fn events(samples: &[f32], config: PipelineConfig) -> Vec<Event> {
    let mut leg = LegDsp::new(config);
    let mut out = Vec::new();
    for frame in samples.chunks(FRAME) {
        leg.push_pcm(frame, &mut out);
    }
    leg.finish(&mut out);
    out
}

#[derive(Serialize)]
struct DigitLine {
    digit: String,
    start_ms: u64,
    end_ms: u64,
}

#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum AmdLine {
    Amd { amd_type: &'static str, at_ms: u64 },
    Beep { at_ms: u64, frequency: u32 },
    Silence { at_ms: u64 },
}

fn print<T: Serialize>(out: &mut impl Write, line: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, line)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `dsp dtmf`: one line per digit
pub(crate) fn dtmf(file: &Path, mut out: impl Write) -> anyhow::Result<()> {
    let samples = read(file)?;
    let config = PipelineConfig {
        dtmf: true,
        amd: None,
    };
    for event in events(&samples, config) {
        if let Event::Digit(d) = event {
            let line = DigitLine {
                digit: d.digit.to_string(),
                start_ms: ms(d.start),
                end_ms: ms(d.end),
            };
            print(&mut out, &line)?;
        }
    }
    Ok(())
}

/// `dsp amd`: the decision (amd or silence) and each beep, as DESIGN.md's AMD events
pub(crate) fn amd(file: &Path, timers: AmdConfig, mut out: impl Write) -> anyhow::Result<()> {
    let samples = read(file)?;
    let config = PipelineConfig {
        dtmf: false,
        amd: Some(timers),
    };
    for event in events(&samples, config) {
        let line = match event {
            Event::Amd(AmdEvent::Amd { amd_type, at_ms }) => AmdLine::Amd {
                amd_type: amd_type.as_str(),
                at_ms,
            },
            Event::Amd(AmdEvent::Silence { at_ms }) => AmdLine::Silence { at_ms },
            Event::Amd(AmdEvent::Beep {
                at_ms,
                frequency_hz,
            }) => AmdLine::Beep {
                at_ms,
                frequency: frequency_hz,
            },
            // The offline command prints the decision and beeps; the others serve live calls.
            _ => continue,
        };
        print(&mut out, &line)?;
    }
    Ok(())
}
