//! Per-packet cost of a leg's audio (media::audio::LegAudio), ns per 20 ms packet
//!
//! - `audio/tap_dtmf_amd`: a received PCMU packet through the tap: reorder buffer, decode, the
//!   dsp pipeline with in-band DTMF and AMD (beep, fax, VAD), events drained.
//! - `audio/tap_dtmf_amd_2000_legs`: the same, each packet to the next of 2000 tapped legs in
//!   turn, as a shard with 1000 tapped calls sees them: each leg's state is cold in the cache.
//! - `audio/dub_mix_one_track`: a bridged PCMU payload with one dub track mixed in place
//!   (decode, mix at -6 dB, encode).
//! - `audio/player_frame`: one player frame (shared PCM → PCMU) from `poll_transmit`.
//!
//! The clock advances 20 ms per iteration, as on a live leg.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dsp::amd::AmdConfig;
use dsp::g711::Law;
use media::api::{DubAction, TrackId};
use media::audio::{FRAME_SAMPLES, LegAudio};
use media::endpoint::Codec;

const FRAME: Duration = Duration::from_millis(20);

/// Ten seconds of µ-law: DTMF keys, noise bursts and pauses, cut into 20 ms payloads.
fn payloads() -> Vec<[u8; FRAME_SAMPLES]> {
    let mut x = Vec::new();
    let mut seed = 0x1234_5678_u32;
    while x.len() < 80_000 {
        x.extend(dsp::dtmf::digits("7", 100, 200));
        for i in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let envelope = if i < 2400 { 0.3 } else { 0.0 };
            x.push((seed as f32 / u32::MAX as f32 - 0.5) * envelope);
        }
    }
    x.chunks_exact(FRAME_SAMPLES)
        .map(|c| {
            let mut p = [0u8; FRAME_SAMPLES];
            for (p, &v) in p.iter_mut().zip(c) {
                *p = Law::Ulaw.encode((v * 32767.0) as i16);
            }
            p
        })
        .collect()
}

fn audio(c: &mut Criterion) {
    let packets = payloads();
    let mut g = c.benchmark_group("audio");
    g.throughput(Throughput::Elements(1));

    let t0 = Instant::now();
    let mut tap = LegAudio::default();
    tap.set_tap(t0, true, Some(AmdConfig::default()));
    let mut k = 0usize;
    g.bench_function("tap_dtmf_amd", |b| {
        b.iter(|| {
            let now = t0 + FRAME * k as u32;
            tap.on_received(now, Codec::Pcmu, k as u16, &packets[k % packets.len()]);
            while let Some(e) = tap.poll_event() {
                black_box(e);
            }
            k += 1;
        })
    });

    // Every leg at its own sequence/time offset, as calls set up at different moments are.
    const LEGS: usize = 2000;
    let mut legs: Vec<LegAudio> = (0..LEGS)
        .map(|_| {
            let mut leg = LegAudio::default();
            leg.set_tap(t0, true, Some(AmdConfig::default()));
            leg
        })
        .collect();
    let mut k = 0usize;
    g.bench_function("tap_dtmf_amd_2000_legs", |b| {
        b.iter(|| {
            let (round, i) = (k / LEGS, k % LEGS);
            let now = t0 + FRAME * round as u32;
            let leg = &mut legs[i];
            leg.on_received(
                now,
                Codec::Pcmu,
                round as u16,
                &packets[(round + i) % packets.len()],
            );
            while let Some(e) = leg.poll_event() {
                black_box(e);
            }
            k += 1;
        })
    });

    let mut dub = LegAudio::default();
    dub.dub(t0, Codec::Pcmu, TrackId(1), DubAction::AddTrack)
        .expect("new track");
    let music: Arc<[i16]> = (0..80_000)
        .map(|i| ((i as f32 * 0.05).sin() * 6000.0) as i16)
        .collect();
    dub.dub(
        t0,
        Codec::Pcmu,
        TrackId(1),
        DubAction::Play {
            samples: music.clone(),
            looped: true,
            gain_db: -6,
        },
    )
    .expect("track exists");
    let mut k = 0usize;
    g.bench_function("dub_mix_one_track", |b| {
        b.iter(|| {
            let now = t0 + FRAME * k as u32;
            let mut payload = packets[k % packets.len()];
            black_box(dub.on_egress(now, Codec::Pcmu, &mut payload));
            black_box(payload);
            k += 1;
        })
    });

    let mut player = LegAudio::default();
    player.play(t0, Codec::Pcmu, music, true);
    let mut out = [0u8; FRAME_SAMPLES];
    let mut k = 0u32;
    g.bench_function("player_frame", |b| {
        b.iter(|| {
            let now = t0 + FRAME * k;
            black_box(player.poll_transmit(now, &mut out));
            k += 1;
        })
    });
    g.finish();
}

criterion_group!(benches, audio);
criterion_main!(benches);
