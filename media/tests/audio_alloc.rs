//! A leg's audio allocates nothing per packet once set up: the tap (reorder, decode, DTMF + AMD,
//! unified digits) and the dub mixer over 10^4 packets; a fork allocates exactly its one `Arc`
//! per 20 ms frame. A per-thread counting allocator counts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dialplane_media::api::{DubAction, ForkId, ForkMix, TrackId};
use dialplane_media::audio::{AudioEvent, FRAME_SAMPLES, LegAudio};
use dialplane_media::endpoint::Codec;
use dialplane_media::telephone_event::{EndReason, KeyPress};
use dsp::amd::AmdConfig;
use dsp::g711::Law;

mod counting_alloc;
use counting_alloc::allocs;

const PACKETS: usize = 10_000;

/// 20 ms µ-law packets: a DTMF key every second among noise-like "speech" bursts.
fn packets() -> Vec<Vec<u8>> {
    signal()
        .chunks(FRAME_SAMPLES)
        .take(PACKETS)
        .map(|c| {
            c.iter()
                .map(|&v| Law::Ulaw.encode((v * 32767.0) as i16))
                .collect()
        })
        .collect()
}

/// The same audio as 20 ms Opus packets (resampled to 48 kHz, as an Opus phone sends it).
fn opus_packets(count: usize) -> Vec<Vec<u8>> {
    use audiopus::coder::Encoder;
    use audiopus::{Application, Channels, SampleRate};
    let enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
    let x = signal();
    let wide = dsp::resample::resample(&x[..count * FRAME_SAMPLES], 8000, 48000).unwrap();
    wide.chunks_exact(960)
        .map(|c| {
            let mut out = vec![0u8; 1275];
            let n = enc.encode_float(c, &mut out).unwrap();
            out.truncate(n);
            out
        })
        .collect()
}

/// A DTMF key every second among noise-like "speech" bursts, at 8 kHz.
fn signal() -> Vec<f32> {
    let mut x = Vec::new();
    let mut seed = 0x5eed_u32;
    while x.len() < PACKETS * FRAME_SAMPLES {
        x.extend(dsp::dtmf::digits("5", 100, 100));
        for _ in 0..6400 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            x.push((seed as f32 / u32::MAX as f32 - 0.5) * 0.3);
        }
    }
    x
}

/// Run every per-packet entry point for packets `range` of `packets` in `codec` (some
/// reordered, some lost); returns the events seen.
fn run(
    a: &mut LegAudio,
    t0: Instant,
    codec: Codec,
    packets: &[Vec<u8>],
    range: std::ops::Range<usize>,
) -> (u64, u64, u64) {
    let (mut digits, mut frames, mut generated) = (0, 0, 0);
    let mut out = [0u8; FRAME_SAMPLES];
    let mut bridged = [0u8; 1275];
    let press = KeyPress {
        event: 5,
        timestamp: 0,
        duration: 800,
        volume: 10,
        end: EndReason::EndBit,
    };
    for k in range {
        let now = t0 + Duration::from_millis(20 * k as u64);
        // Swap every 7th pair, lose every 50th packet.
        let i = match k % 7 {
            3 => k + 1,
            4 => k - 1,
            _ => k,
        }
        .min(packets.len() - 1);
        if i % 50 != 49 {
            a.on_received(now, codec, i as u16, &packets[i]);
        }
        if k % 50 == 5 {
            a.on_key_press(now, &press);
        }
        let bridged = &mut bridged[..packets[k].len()];
        bridged.copy_from_slice(&packets[k]);
        if k % 100 < 90 {
            // The far side goes quiet 10 % of the time: the dub track goes alone.
            assert!(a.on_egress(now, codec, bridged));
        }
        if a.poll_timeout().is_some_and(|t| t <= now) {
            a.handle_timeout(now);
            while a.poll_transmit(now, &mut out).is_some() {
                generated += 1;
            }
        }
        while let Some(e) = a.poll_event() {
            match e {
                AudioEvent::Digit { .. } => digits += 1,
                AudioEvent::Frame { .. } => frames += 1,
                _ => {}
            }
        }
    }
    (digits, frames, generated)
}

fn leg(t0: Instant, codec: Codec) -> LegAudio {
    let mut a = LegAudio::default();
    a.set_tap(t0, true, Some(AmdConfig::default()));
    a.dub(t0, codec, TrackId(1), DubAction::AddTrack).unwrap();
    let music: Arc<[i16]> = (0..8000)
        .map(|i| ((i as f32 * 0.05).sin() * 3000.0) as i16)
        .collect();
    a.dub(
        t0,
        codec,
        TrackId(1),
        DubAction::Play {
            samples: music,
            looped: true,
            gain_db: -6,
        },
    )
    .unwrap();
    a
}

#[test]
fn tap_and_dub_allocate_nothing_per_packet() {
    let packets = packets();
    let t0 = Instant::now();
    let mut a = leg(t0, Codec::Pcmu);
    let before = allocs();
    let (digits, _, generated) = run(&mut a, t0, Codec::Pcmu, &packets, 0..PACKETS);
    assert_eq!(allocs() - before, 0);
    // The path did its work: one digit per second (heard both ways, reported once) and the
    // track went out alone while the far side was quiet.
    let seconds = (PACKETS / 50) as u64;
    assert!(
        digits.abs_diff(seconds) <= 2,
        "{digits} digits in {seconds} s"
    );
    assert!(generated > 500, "{generated}");
}

#[test]
fn a_fork_allocates_one_arc_per_frame() {
    let packets = packets();
    let t0 = Instant::now();
    let mut a = leg(t0, Codec::Pcmu);
    a.fork(ForkId(1), ForkMix::Stereo, 16000);
    let before = allocs();
    let (_, frames, _) = run(&mut a, t0, Codec::Pcmu, &packets, 0..2000);
    assert!(frames >= 1990, "{frames}");
    assert_eq!(allocs() - before, frames);
}

#[test]
fn an_opus_leg_allocates_nothing_per_packet_after_its_first() {
    // Opus decoding, resampling both ways, the dub mixed into relayed Opus and sent alone.
    let count = 1500;
    let packets = opus_packets(count);
    let t0 = Instant::now();
    let mut a = leg(t0, Codec::Opus);
    // The first packet makes the tap's Opus decoder (set-up).
    let _ = run(&mut a, t0, Codec::Opus, &packets, 0..100);
    let before = allocs();
    let (digits, _, generated) = run(&mut a, t0, Codec::Opus, &packets, 100..count);
    assert_eq!(allocs() - before, 0);
    let seconds = ((count - 100) / 50) as u64;
    assert!(
        digits.abs_diff(seconds) <= 2,
        "{digits} digits in {seconds} s"
    );
    assert!(generated > 100, "{generated}");
}
