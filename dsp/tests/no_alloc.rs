//! Per-frame paths allocate nothing once constructed
//!
//! A counting global allocator wraps the system one. Counting is switched on per thread (a
//! thread-local flag), so the test harness and other tests' threads never count, and a mutex
//! keeps two counted sections from overlapping on the shared counter.
//!
//! Each per-frame stage of a leg is a [`Stage`]: built (and allocated) in [`stages`], then run
//! over 10 000 frames of 20 ms with counting on. A new stage is one more entry in [`stages`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::f32::consts::PI;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use dialplane_dsp::amd::{AmdConfig, AmdEvent};
use dialplane_dsp::dtmf;
use dialplane_dsp::g711::Law;
use dialplane_dsp::mix::{Mixer, mix_f32};
use dialplane_dsp::pipeline::{Event, LegDsp, PipelineConfig};
use dialplane_dsp::resample::Resampler;
use dialplane_dsp::spectrum::{RATE, Spectrum};

/// Heap operations (alloc, alloc_zeroed, realloc, dealloc) made while counting.
static HEAP_OPS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Whether this thread's heap operations count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn note() {
    if counting() {
        HEAP_OPS.fetch_add(1, Ordering::Relaxed);
    }
}

struct CountingAlloc;

// SAFETY: every call is forwarded unchanged to `System`; counting touches no heap.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Serialises counted sections: the counter is shared, the flag is per thread.
static SERIAL: Mutex<()> = Mutex::new(());

/// Runs `f` on this thread with counting on; returns the heap operations it made
fn heap_ops(f: impl FnOnce()) -> usize {
    let _guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    HEAP_OPS.store(0, Ordering::Relaxed);
    COUNTING.set(true);
    f();
    COUNTING.set(false);
    HEAP_OPS.load(Ordering::Relaxed)
}

/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Frames each stage runs with counting on.
const FRAMES: usize = 10_000;

/// One per-frame stage of a leg: takes the frame's 160 µ-law codes
type Stage = Box<dyn FnMut(&[u8])>;

/// Every stage, constructed: all allocation happens here, none when they run
fn stages() -> Vec<(&'static str, Stage)> {
    vec![
        ("g711 decode + spectrum", g711_spectrum()),
        ("streaming resampler", resampling()),
        ("mixer", mixing()),
        (
            "pipeline: decode + spectrum + DTMF + tones + VAD/AMD",
            pipeline(),
        ),
    ]
}

fn g711_spectrum() -> Stage {
    let mut spectrum = Spectrum::new();
    let mut pcm = [0.0f32; FRAME];
    Box::new(move |codes| {
        Law::Ulaw.decode_f32(codes, &mut pcm);
        spectrum.push(&pcm, |s| {
            black_box((
                s.peak(300.0, 3400.0),
                s.band_mean_square(10, 20),
                s.energy(),
            ));
        });
    })
}

fn pipeline() -> Stage {
    let mut leg = LegDsp::new(PipelineConfig {
        dtmf: true,
        amd: Some(AmdConfig::default()),
    });
    // The caller's event buffer is reused; its capacity is allocated here, once.
    let mut events = Vec::with_capacity(16);
    Box::new(move |codes| {
        events.clear();
        leg.push_g711(Law::Ulaw, codes, &mut events);
        black_box(&events);
    })
}

fn resampling() -> Stage {
    let mut up = Resampler::new(8000, 48000).expect("supported");
    let mut down = Resampler::new(48000, 8000).expect("supported");
    let mut wide = Resampler::new(8000, 16000).expect("supported");
    let mut pcm = [0.0f32; FRAME];
    let mut hi = vec![0.0f32; 6 * FRAME];
    let mut back = [0.0f32; FRAME];
    let mut wide_out = vec![0.0f32; 4 * FRAME];
    Box::new(move |codes| {
        Law::Alaw.decode_f32(codes, &mut pcm);
        // 20 ms up to 48 kHz and back, in the natural 10 ms chunks...
        for half in pcm.chunks(FRAME / 2) {
            let n = up.process(half, &mut hi).expect("buffer sized for 10 ms");
            let m = down
                .process(&hi[..n], &mut back)
                .expect("buffer sized for 10 ms");
            black_box(&back[..m]);
        }
        // ...and to 16 kHz in odd pieces that straddle chunk boundaries.
        let (a, b) = pcm.split_at(37);
        for piece in [a, b] {
            let n = wide
                .process(piece, &mut wide_out)
                .expect("buffer sized for 40 ms");
            black_box(&wide_out[..n]);
        }
    })
}

fn mixing() -> Stage {
    let mut mixer = Mixer::new(3);
    mixer.set_gain_db(0, -6.0);
    mixer.set_gain_db(1, 3.0);
    mixer.set_gain_db(2, -50.0);
    let dub: Vec<f32> = (0..FRAME).map(|i| 0.4 * (i as f32 * 0.3).sin()).collect();
    let dub_i16: Vec<i16> = dub.iter().map(|&v| (v * 32767.0) as i16).collect();
    let mut pcm = [0.0f32; FRAME];
    let mut pcm_i16 = [0i16; FRAME];
    let mut out = [0.0f32; FRAME];
    let mut sum = [0.0f32; FRAME];
    let mut out_i16 = [0i16; FRAME];
    Box::new(move |codes| {
        Law::Ulaw.decode_f32(codes, &mut pcm);
        for (o, &c) in pcm_i16.iter_mut().zip(codes) {
            *o = Law::Ulaw.decode(c);
        }
        mixer.mix(&[&pcm, &dub, &pcm], &mut out);
        mixer.mix_i16(&[&pcm_i16, &dub_i16, &pcm_i16], &mut out_i16);
        mix_f32(&[&out, &pcm], &[1.0, 0.5], &mut sum);
        black_box((&out, &out_i16, &sum));
    })
}

/// Two seconds of µ-law call audio: a sweeping tone plus deterministic noise, and silences
fn call_audio() -> Vec<u8> {
    let mut seed = 0x2545_f491u32;
    (0..2 * RATE as usize)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let noise = (seed as f32 / u32::MAX as f32 - 0.5) * 0.05;
            let t = i as f32 / RATE as f32;
            let on = (i / 1600) % 3 != 2;
            let tone = if on {
                0.3 * (2.0 * PI * (400.0 + 600.0 * t) * t).sin()
            } else {
                0.0
            };
            Law::Ulaw.encode(((tone + noise) * 32767.0) as i16)
        })
        .collect()
}

/// Call audio with every DTMF digit and a beep in it, so detectors report while counted.
fn eventful_audio() -> Vec<u8> {
    let mut x = dtmf::digits("1234567890*#ABCD", 60, 60);
    x.extend((0..2400).map(|i| 0.2 * (2.0 * PI * 1000.0 * i as f32 / RATE as f32).sin()));
    x.extend(std::iter::repeat_n(0.0, 1600));
    x.iter()
        .map(|v| Law::Ulaw.encode((v * 32767.0) as i16))
        .collect()
}

#[test]
fn the_pipeline_reports_events_without_allocating() {
    let audio = eventful_audio();
    let mut leg = LegDsp::new(PipelineConfig {
        dtmf: true,
        amd: Some(AmdConfig::default()),
    });
    let mut events = Vec::with_capacity(64);
    let mut digits = 0;
    let mut beeps = 0;
    let rounds = 20;
    let ops = heap_ops(|| {
        for _ in 0..rounds {
            for codes in audio.chunks(FRAME) {
                events.clear();
                leg.push_g711(Law::Ulaw, codes, &mut events);
                for e in &events {
                    match e {
                        Event::Digit(_) => digits += 1,
                        Event::Amd(AmdEvent::Beep { .. }) => beeps += 1,
                        Event::Amd(_) => {}
                    }
                }
            }
        }
    });
    assert_eq!(ops, 0, "{ops} heap operations");
    assert_eq!(digits, 16 * rounds);
    assert!(beeps >= 1, "the beep before the tone timeout is heard");
}

#[test]
fn the_counter_sees_allocations() {
    assert!(heap_ops(|| drop(black_box(vec![1u8; 64]))) >= 2);
    assert_eq!(heap_ops(|| black_box(())), 0);
}

#[test]
fn per_frame_stages_do_not_allocate() {
    let audio = call_audio();
    let mut frames = audio.chunks_exact(FRAME).cycle();
    for (name, mut stage) in stages() {
        let ops = heap_ops(|| {
            for _ in 0..FRAMES {
                stage(frames.next().expect("audio is not empty"));
            }
        });
        assert_eq!(ops, 0, "{name}: {ops} heap operations over {FRAMES} frames");
    }
}

#[test]
fn a_whole_leg_does_not_allocate() {
    let audio = call_audio();
    let mut stages = stages();
    let ops = heap_ops(|| {
        for codes in audio.chunks_exact(FRAME).cycle().take(FRAMES) {
            for (_, stage) in stages.iter_mut() {
                stage(codes);
            }
        }
    });
    assert_eq!(ops, 0, "{ops} heap operations over {FRAMES} frames");
}
