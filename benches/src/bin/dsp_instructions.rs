//! Runs one DSP stage over call audio, frame by frame, for instruction counting:
//!
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null dsp_instructions STAGE FRAMES`
//!
//! STAGE is `none` (signal set-up only: subtract it), `spandsp` (spandsp's dtmf_rx), `dtmf`
//! (decode + spectrum + our DTMF receiver) or `pipeline` (the whole per-leg pipeline).
//! Instruction counts repeat exactly whatever else the machine does, unlike the criterion
//! timings, so the ratio to spandsp is stable on a noisy machine.

use std::hint::black_box;
use std::process::ExitCode;

use dialplane_benches::signal::{FRAME, call_audio, to_i16};
use dialplane_benches::spandsp::SpandspDtmf;
use dsp::amd::AmdConfig;
use dsp::dtmf::DtmfReceiver;
use dsp::g711::Law;
use dsp::pipeline::{LegDsp, PipelineConfig};
use dsp::spectrum::Spectrum;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(stage), Some(frames)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: dsp_instructions none|spandsp|dtmf|pipeline FRAMES");
        return ExitCode::from(2);
    };
    let frames: usize = frames;
    let pcm = to_i16(&call_audio());
    let ulaw: Vec<u8> = pcm.iter().map(|&s| Law::Ulaw.encode(s)).collect();
    let pcm_frames = pcm.chunks_exact(FRAME).cycle().take(frames);
    let ulaw_frames = ulaw.chunks_exact(FRAME).cycle().take(frames);
    let mut count = 0usize;
    match stage.as_str() {
        "none" => count = black_box(ulaw_frames.count()),
        "spandsp" => {
            let mut rx = SpandspDtmf::new();
            for frame in pcm_frames {
                count += rx.process(black_box(frame));
                rx.clear_digits();
            }
        }
        "dtmf" => {
            let (mut spectrum, mut rx, mut buf) =
                (Spectrum::new(), DtmfReceiver::new(), [0.0f32; FRAME]);
            for codes in ulaw_frames {
                Law::Ulaw.decode_f32(black_box(codes), &mut buf);
                spectrum.push(&buf, |s| count += usize::from(rx.on_hop(s).is_some()));
            }
        }
        "pipeline" => {
            let mut leg = LegDsp::new(PipelineConfig {
                dtmf: true,
                amd: Some(AmdConfig::default()),
            });
            let mut events = Vec::with_capacity(16);
            for codes in ulaw_frames {
                events.clear();
                leg.push_g711(Law::Ulaw, black_box(codes), &mut events);
                count += events.len();
            }
        }
        other => {
            eprintln!("unknown stage {other}");
            return ExitCode::from(2);
        }
    }
    println!("{stage}: {frames} frames, {count} results");
    ExitCode::SUCCESS
}
