//! Per-frame cost of the DSP stages, against spandsp as the reference
//!
//! Every function in the `per_20ms_frame` group processes one 20 ms frame (160 samples at
//! 8 kHz) per iteration, walking through a few seconds of call audio (speech-like sound with
//! DTMF bursts) frame by frame and wrapping around, with its state carried across iterations
//! like a live leg. So the figures are ns per frame per leg.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use dialplane_benches::signal::{FRAME, call_audio, to_i16};
use dialplane_benches::spandsp::SpandspDtmf;
use dsp::amd::AmdConfig;
use dsp::dtmf::DtmfReceiver;
use dsp::g711::Law;
use dsp::pipeline::{LegDsp, PipelineConfig};
use dsp::spectrum::Spectrum;

/// Benchmarks `step` on one frame of `signal` per iteration, in order, wrapping around
///
/// `state` is built once and carried across frames; `step` gets it with the next frame.
fn per_frame<T, S, R>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    signal: &[T],
    mut state: S,
    mut step: impl FnMut(&mut S, &[T]) -> R,
) {
    let mut frames = signal.chunks_exact(FRAME).cycle();
    group.bench_function(name, |b| {
        b.iter(|| {
            let frame = frames.next().expect("signal holds at least one frame");
            black_box(step(&mut state, black_box(frame)))
        })
    });
}

fn per_20ms_frame(c: &mut Criterion) {
    let audio = call_audio();
    let pcm = to_i16(&audio);
    let ulaw: Vec<u8> = pcm.iter().map(|&s| Law::Ulaw.encode(s)).collect();

    let mut group = c.benchmark_group("per_20ms_frame");

    per_frame(
        &mut group,
        "spandsp_dtmf_rx",
        &pcm,
        SpandspDtmf::new(),
        |rx, frame| {
            let n = rx.process(frame);
            if n > 0 {
                rx.clear_digits(); // keep the digit string from growing over millions of frames
            }
            n
        },
    );

    per_frame(
        &mut group,
        "g711_decode+spectrum",
        &ulaw,
        (Spectrum::new(), [0.0f32; FRAME]),
        |(spectrum, buf), codes| {
            Law::Ulaw.decode_f32(codes, buf);
            let mut energy = 0.0;
            spectrum.push(buf, |s| energy += s.energy());
            energy
        },
    );

    per_frame(
        &mut group,
        "dtmf_rx",
        &ulaw,
        (Spectrum::new(), DtmfReceiver::new(), [0.0f32; FRAME]),
        |(spectrum, rx, buf), codes| {
            Law::Ulaw.decode_f32(codes, buf);
            let mut digits = 0;
            spectrum.push(buf, |s| digits += usize::from(rx.on_hop(s).is_some()));
            digits
        },
    );

    let config = PipelineConfig {
        dtmf: true,
        amd: Some(AmdConfig::default()),
    };
    per_frame(
        &mut group,
        "pipeline",
        &ulaw,
        (LegDsp::new(config), Vec::with_capacity(16)),
        |(leg, events), codes| {
            events.clear();
            leg.push_g711(Law::Ulaw, codes, events);
            events.len()
        },
    );

    group.finish();
}

criterion_group!(benches, per_20ms_frame);
criterion_main!(benches);
