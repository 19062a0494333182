//! Per-packet cost of transcoding (media::codec) next to the plain relay's
//!
//! Each function feeds one 20 ms payload of a 440 Hz tone to a [`Transcoder`] and encodes the
//! 20 ms frame that comes out, as the shard does for each packet of a bridge whose legs share no
//! codec: ns per packet. Compare with `rtp/parse_rewrite_pcmu_172` of the `media` bench (the
//! in-place relay of a packet): `cargo bench -p dialplane-benches --bench transcode --bench media`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dsp::g711::Law;
use media::codec::Transcoder;
use media::endpoint::Codec;

/// One second of 20 ms payloads of a 440 Hz tone in `codec` (Opus made by a transcoder too).
fn payloads(codec: Codec) -> Vec<Vec<u8>> {
    let pcmu: Vec<Vec<u8>> = (0..50u32)
        .map(|k| {
            (0..160u32)
                .map(|i| {
                    let t = (k * 160 + i) as f32 / 8000.0;
                    let x = 8000.0 * (2.0 * std::f32::consts::PI * 440.0 * t).sin();
                    Law::Ulaw.encode(x as i16)
                })
                .collect()
        })
        .collect();
    if codec == Codec::Pcmu {
        return pcmu;
    }
    let mut t = Transcoder::new(Codec::Pcmu, codec, 1).expect("transcoder");
    let mut out = [0u8; 2048];
    let mut encoded = Vec::new();
    for (k, p) in pcmu.iter().enumerate() {
        t.push(k as u32 * 160, p).expect("pcmu decodes");
        while let Some(e) = t.pop(&mut out, |_, _| {}) {
            encoded.push(out[12..e.expect("encodes").len].to_vec());
        }
    }
    encoded
}

fn transcode(c: &mut Criterion) {
    let mut g = c.benchmark_group("transcode");
    g.throughput(Throughput::Elements(1));
    for (name, from, to) in [
        ("opus_to_pcmu_20ms", Codec::Opus, Codec::Pcmu),
        ("pcmu_to_opus_20ms", Codec::Pcmu, Codec::Opus),
        ("pcmu_to_pcma_20ms", Codec::Pcmu, Codec::Pcma),
    ] {
        let input = payloads(from);
        let step = if from == Codec::Opus { 960 } else { 160 };
        let mut t = Transcoder::new(from, to, 2).expect("transcoder");
        let mut out = [0u8; 2048];
        let (mut k, mut ts) = (0usize, 0u32);
        g.bench_function(name, |b| {
            b.iter(|| {
                let p = &input[k % input.len()];
                k += 1;
                ts = ts.wrapping_add(step);
                let _ = t.push(ts, black_box(p));
                let mut sent = 0;
                while let Some(e) = t.pop(&mut out, |_, _| {}) {
                    sent += e.map_or(0, |e| e.len);
                }
                black_box(sent)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, transcode);
criterion_main!(benches);
