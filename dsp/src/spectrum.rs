//! The shared spectrum stage: one spectrum per 10 ms hop, read by every detector
//!
//! Audio at 8 kHz is cut into 20 ms windows ([`WINDOW`] samples) advancing by 10 ms ([`HOP`]).
//! Each window is Hann-weighted and transformed once; detectors read the power per bin, the
//! interpolated peak frequency ([`Spectrum::peak`]) and the time-domain energies of the window
//! and of its 2.5 ms sub-blocks (for onset and offset timing finer than the hop). Adding a
//! detector adds no transform.
//!
//! Two hops that are both complete (a 20 ms RTP frame brings two) share one complex FFT: the
//! first window goes in the real part, the second in the imaginary part, and the two real
//! spectra are separated by conjugate symmetry. That costs less than two real FFTs, whose
//! post-processing pass is as dear as the transform at this size. A hop left alone at the end
//! of a push is transformed by itself, so no hop waits for more input.
//!
//! Samples are `f32` scaled so that 16-bit full scale is 1.0 (`i16 as f32 / 32768.0`).

use std::cell::RefCell;
use std::sync::{Arc, LazyLock};

use num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Sample rate every detector works at, in Hz.
pub const RATE: u32 = 8000;
/// Samples per hop (10 ms): how often the spectrum is refreshed.
pub const HOP: usize = 80;
/// Samples per analysis window (20 ms).
pub const WINDOW: usize = 160;
/// Bins of the real FFT of one window (DC to Nyquist).
pub const BINS: usize = WINDOW / 2 + 1;
/// Width of one bin in Hz.
pub const BIN_HZ: f32 = RATE as f32 / WINDOW as f32;
// A window is exactly the previous hop and the newest one; `analyse` relies on it.
const _: () = assert!(WINDOW == 2 * HOP);
/// Samples per sub-block: 2.5 ms, the time resolution of [`Spectrum::sub_energies`].
pub const SUB_BLOCK: usize = 20;
/// Sub-blocks in one hop.
pub const SUB_BLOCKS: usize = HOP / SUB_BLOCK;

/// Most power a tone's main lobe (strongest bin ± 2) holds per unit of its strongest bin
///
/// Periodic Hann: 1.5 with the tone on a bin, 2.08 with it half-way between two. So a tone
/// whose lobe holds a share P of the window's power has a strongest bin of at least P / 2.1.
pub const MAX_LOBE_PER_BIN: f32 = 2.1;

/// Mean square (in full-scale units) of a sine at 0 dBm0: 3.17 dB below 16-bit full scale.
pub const DBM0_MEAN_SQUARE: f32 = 0.240_96;

/// Level in dBm0 of a signal with the given mean square (full-scale units).
pub fn dbm0(mean_square: f32) -> f32 {
    10.0 * (mean_square.max(1e-20) / DBM0_MEAN_SQUARE).log10()
}

/// Peak amplitude (full-scale units) of a sine at `level` dBm0.
pub fn dbm0_amplitude(level: f32) -> f32 {
    (2.0 * DBM0_MEAN_SQUARE * 10f32.powf(level / 10.0)).sqrt()
}

/// The strongest spectral line in a band, located between bins
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Index of the strongest bin.
    pub bin: usize,
    /// Frequency in Hz, interpolated between bins from the Hann main-lobe shape.
    pub freq_hz: f32,
    /// Mean square of the tone (full-scale units), from the main lobe's power.
    pub mean_square: f32,
    /// Share of the window's total spectral power held by this main lobe (0..=1).
    pub purity: f32,
}

/// One leg's input to the spectrum: the samples of the window in progress
///
/// Only the samples stay with the leg. The transform's buffers and the analysis of the latest
/// hops are the thread's ([`Work`]): a shard with a thousand tapped legs then touches a few
/// hundred bytes of each leg per packet instead of kilobytes, and the shared buffers stay in
/// cache (with the leg's state cold, the analysis cost about twice as much).
pub struct Spectrum {
    /// `WINDOW - HOP` samples of context, then up to two new hops.
    samples: [f32; WINDOW + HOP],
    /// Valid samples in `samples`.
    filled: usize,
    /// Sub-block energies of the hop before the latest transform (the context's second half).
    previous_subs: [f32; SUB_BLOCKS],
    end: u64,
}

/// The analysis of one 10 ms hop, handed to every detector: the latest 20 ms, Hann-windowed
pub struct Hop<'a> {
    window: &'a [f32],
    analysis: &'a HopAnalysis,
    end: u64,
}

#[derive(Clone)]
struct HopAnalysis {
    power: [f32; BINS],
    total_power: f32,
    sub_energies: [f32; SUB_BLOCKS],
    energy: f32,
}

/// The transform's working memory, one per thread (see [`Spectrum`]).
struct Work {
    fft: Arc<dyn Fft<f32>>,
    /// The shared window (one copy for every leg: thousands of legs share the cache).
    hann: &'static [f32; WINDOW],
    packed: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    /// Per analysed hop of the latest transform (one or two): power and energies.
    hops: [HopAnalysis; 2],
}

/// One FFT plan (twiddles included) and one Hann window for every `Spectrum` of the process:
/// planning per leg gave each of a thousand legs its own tables and evicted them from cache.
static PLAN: LazyLock<(Arc<dyn Fft<f32>>, [f32; WINDOW])> = LazyLock::new(|| {
    let fft = FftPlanner::<f32>::new().plan_fft_forward(WINDOW);
    let mut hann = [0.0; WINDOW];
    for (i, w) in hann.iter_mut().enumerate() {
        // Periodic Hann: its DFT main lobe has the exact shape `peak` interpolates.
        *w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32).cos();
    }
    (fft, hann)
});

thread_local! {
    static WORK: RefCell<Work> = RefCell::new(Work::new());
}

impl Work {
    fn new() -> Self {
        let fft = Arc::clone(&PLAN.0);
        let empty = HopAnalysis {
            power: [0.0; BINS],
            total_power: 0.0,
            sub_energies: [0.0; SUB_BLOCKS],
            energy: 0.0,
        };
        Work {
            packed: vec![Complex::default(); WINDOW],
            scratch: vec![Complex::default(); fft.get_inplace_scratch_len()],
            fft,
            hann: &PLAN.1,
            hops: [empty.clone(), empty],
        }
    }

    /// Transforms the first `hops` windows of `samples` (one or two) in one complex FFT.
    fn analyse(
        &mut self,
        samples: &[f32; WINDOW + HOP],
        previous_subs: [f32; SUB_BLOCKS],
        hops: usize,
    ) {
        let (first, second) = (&samples[..WINDOW], &samples[HOP..HOP + WINDOW]);
        if hops == 2 {
            for (((z, a), b), w) in self.packed.iter_mut().zip(first).zip(second).zip(self.hann) {
                *z = Complex::new(a * w, b * w);
            }
        } else {
            for ((z, a), w) in self.packed.iter_mut().zip(first).zip(self.hann) {
                *z = Complex::new(a * w, 0.0);
            }
        }
        self.fft
            .process_with_scratch(&mut self.packed, &mut self.scratch);
        let z = &self.packed;
        let half = WINDOW / 2;
        let [one, two] = &mut self.hops;
        if hops == 2 {
            // z = x + iy with x, y real: X[k] = (Z[k] + Z*[N-k]) / 2, Y[k] = (Z[k] - Z*[N-k]) / 2i.
            // Interior bins are doubled for their negative-frequency twin.
            for k in 1..half {
                let (a, b) = (z[k], z[WINDOW - k]);
                let (sum_re, diff_re) = (a.re + b.re, a.re - b.re);
                let (sum_im, diff_im) = (a.im + b.im, a.im - b.im);
                one.power[k] = 0.5 * (sum_re * sum_re + diff_im * diff_im);
                two.power[k] = 0.5 * (sum_im * sum_im + diff_re * diff_re);
            }
            for k in [0, half] {
                one.power[k] = z[k].re * z[k].re;
                two.power[k] = z[k].im * z[k].im;
            }
        } else {
            for (p, b) in one.power[1..half].iter_mut().zip(&z[1..half]) {
                *p = 2.0 * b.norm_sqr();
            }
            for k in [0, half] {
                one.power[k] = z[k].norm_sqr();
            }
        }
        let mut previous = previous_subs;
        for (h, hop) in self.hops[..hops].iter_mut().enumerate() {
            hop.total_power = sum(&hop.power);
            let new = &samples[h * HOP + WINDOW - HOP..h * HOP + WINDOW];
            for (e, block) in hop.sub_energies.iter_mut().zip(new.chunks_exact(SUB_BLOCK)) {
                *e = sum_of_squares(block) / SUB_BLOCK as f32;
            }
            // The window is the previous hop's new samples and this hop's: 2 x SUB_BLOCKS blocks.
            hop.energy = (sum(&previous) + sum(&hop.sub_energies)) / (2 * SUB_BLOCKS) as f32;
            previous = hop.sub_energies;
        }
    }
}

impl Default for Spectrum {
    fn default() -> Self {
        Self::new()
    }
}

impl Spectrum {
    /// An empty window; the thread's [`Work`] is made here if it has none yet, so pushing on
    /// this thread allocates nothing
    pub fn new() -> Self {
        WORK.with(|_| ());
        Self {
            samples: [0.0; WINDOW + HOP],
            filled: WINDOW - HOP,
            previous_subs: [0.0; SUB_BLOCKS],
            end: 0,
        }
    }

    /// Feeds samples; calls `on_hop` once per completed 10 ms hop, in order
    pub fn push(&mut self, samples: &[f32], mut on_hop: impl FnMut(&Hop<'_>)) {
        WORK.with(|work| match work.try_borrow_mut() {
            Ok(mut work) => self.push_with(&mut work, samples, &mut on_hop),
            // Pushed from inside another push's `on_hop`: correct, if slower, with its own.
            Err(_) => self.push_with(&mut Work::new(), samples, &mut on_hop),
        })
    }

    fn push_with(&mut self, work: &mut Work, samples: &[f32], on_hop: &mut impl FnMut(&Hop<'_>)) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (self.samples.len() - self.filled).min(rest.len());
            self.samples[self.filled..self.filled + take].copy_from_slice(&rest[..take]);
            self.filled += take;
            rest = &rest[take..];
            if self.filled == self.samples.len() {
                work.analyse(&self.samples, self.previous_subs, 2);
                self.report(work, 2, on_hop);
            }
        }
        if self.filled >= WINDOW {
            work.analyse(&self.samples, self.previous_subs, 1);
            self.report(work, 1, on_hop);
        }
    }

    /// Hands each analysed hop to `on_hop`, then keeps the context for the next window.
    fn report(&mut self, work: &Work, hops: usize, on_hop: &mut impl FnMut(&Hop<'_>)) {
        for (h, analysis) in work.hops[..hops].iter().enumerate() {
            self.end += HOP as u64;
            on_hop(&Hop {
                window: &self.samples[h * HOP..h * HOP + WINDOW],
                analysis,
                end: self.end,
            });
        }
        self.previous_subs = work.hops[hops - 1].sub_energies;
        let shift = hops * HOP;
        self.samples.copy_within(shift..self.filled, 0);
        self.filled -= shift;
    }

    /// Converts a sum of [`Hop::power`] bins covering one tone's main lobe to that tone's mean square
    pub fn power_to_mean_square(power: f32) -> f32 {
        // A sine of amplitude A gives total windowed power N * sum(w^2) * A^2 / 2, sum(w^2) = 3N/8.
        power / (WINDOW as f32 * WINDOW as f32 * 0.375)
    }
}

impl Hop<'_> {
    /// Sample index (at 8 kHz, from the first sample pushed) one past the window's last sample
    pub fn end_sample(&self) -> u64 {
        self.end
    }

    /// The window's samples, oldest first, without weighting
    pub fn window(&self) -> &[f32] {
        self.window
    }

    /// Power per bin (negative frequencies folded in); sums to [`Hop::total_power`]
    pub fn power(&self) -> &[f32; BINS] {
        &self.analysis.power
    }

    /// Total spectral power of the window
    pub fn total_power(&self) -> f32 {
        self.analysis.total_power
    }

    /// Mean square of the window's samples (full-scale units, unweighted)
    pub fn energy(&self) -> f32 {
        self.analysis.energy
    }

    /// Mean square of each 2.5 ms sub-block of the newest hop, oldest first
    pub fn sub_energies(&self) -> &[f32; SUB_BLOCKS] {
        &self.analysis.sub_energies
    }

    /// Mean square of the signal in bins `lo..=hi` (full-scale units)
    pub fn band_mean_square(&self, lo: usize, hi: usize) -> f32 {
        Spectrum::power_to_mean_square(sum(&self.power()[lo..=hi.min(BINS - 1)]))
    }

    /// Strongest bin in `lo_hz..=hi_hz` and its power, or `None` if the band is silent
    ///
    /// The cheap first half of [`Hop::peak`], for detectors that can rule a hop out from
    /// the bin alone (see [`MAX_LOBE_PER_BIN`]).
    pub fn strongest(&self, lo_hz: f32, hi_hz: f32) -> Option<(usize, f32)> {
        // Float-to-int casts truncate (floor for these positive values) and saturate.
        let lo = ((lo_hz / BIN_HZ) as usize).max(1);
        let hi = ((hi_hz / BIN_HZ + 0.999) as usize).min(BINS - 2);
        if lo > hi {
            return None;
        }
        let power = self.power();
        let (mut bin, mut p) = (lo, power[lo]);
        for (k, &v) in power[lo..=hi].iter().enumerate() {
            if v > p {
                (bin, p) = (lo + k, v);
            }
        }
        (p > 0.0).then_some((bin, p))
    }

    /// Strongest line with its peak bin in `lo_hz..=hi_hz`, or `None` if the band is silent
    pub fn peak(&self, lo_hz: f32, hi_hz: f32) -> Option<Peak> {
        self.strongest(lo_hz, hi_hz)
            .map(|(bin, _)| self.line_at(bin))
    }

    /// The line whose strongest bin is `bin` (1..BINS-1): interpolated frequency, level, purity
    pub fn line_at(&self, bin: usize) -> Peak {
        let bin = bin.clamp(1, BINS - 2);
        let power = self.power();
        let total = self.total_power();
        let mag = |k: usize| power[k].sqrt();
        let (left, centre, right) = (mag(bin - 1), mag(bin), mag(bin + 1));
        // Periodic Hann main lobe: |X(k±1)| / |X(k)| = (1 + d) / (2 - d) for offset d in bins.
        let offset = if right >= left {
            let r = right / centre;
            (2.0 * r - 1.0) / (1.0 + r)
        } else {
            let r = left / centre;
            -(2.0 * r - 1.0) / (1.0 + r)
        };
        let lobe_lo = bin.saturating_sub(2);
        let lobe_hi = (bin + 2).min(BINS - 1);
        let lobe: f32 = power[lobe_lo..=lobe_hi].iter().sum();
        Peak {
            bin,
            freq_hz: (bin as f32 + offset.clamp(-1.0, 1.0)) * BIN_HZ,
            mean_square: Spectrum::power_to_mean_square(lobe),
            purity: if total > 0.0 { lobe / total } else { 0.0 },
        }
    }
}

/// Sum with eight running totals: one total is a chain of dependent adds the compiler may not
/// reorder, which costs more than the FFT itself.
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Sum of squares, with running totals like [`sum`]
fn sum_of_squares(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
    for c in chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, amp: f32, n: usize, phase: f32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                amp * (2.0 * std::f32::consts::PI * freq * i as f32 / RATE as f32 + phase).sin()
            })
            .collect()
    }

    #[test]
    fn hops_every_ten_ms_across_odd_pushes() {
        let mut s = Spectrum::new();
        let mut ends = Vec::new();
        let x = sine(1000.0, 0.5, 1000, 0.0);
        for chunk in x.chunks(33) {
            s.push(chunk, |s| ends.push(s.end_sample()));
        }
        assert_eq!(ends, (1..=12).map(|h| h * 80).collect::<Vec<u64>>());
    }

    #[test]
    fn peak_frequency_and_level_between_bins() {
        for &(freq, level) in &[
            (697.0, 0.0),
            (941.0, -25.0),
            (1633.0, -10.0),
            (2100.0, -30.0),
        ] {
            for &phase in &[0.0, 1.0, 2.5] {
                let mut s = Spectrum::new();
                let mut last = None;
                s.push(&sine(freq, dbm0_amplitude(level), 400, phase), |s| {
                    last = s.peak(300.0, 3000.0)
                });
                let p = last.unwrap();
                assert!((p.freq_hz - freq).abs() < 0.5, "{freq}: {p:?}");
                assert!((dbm0(p.mean_square) - level).abs() < 0.3, "{level}: {p:?}");
                assert!(p.purity > 0.99, "{p:?}");
            }
        }
    }

    #[test]
    fn paired_hops_equal_single_hops() {
        let x: Vec<f32> = sine(697.0, 0.3, 1600, 0.4)
            .iter()
            .zip(sine(1477.0, 0.2, 1600, 1.1))
            .enumerate()
            .map(|(i, (a, b))| a + b + 0.01 * ((i * 7919) % 13) as f32)
            .collect();
        let collect = |chunk: usize| {
            let mut s = Spectrum::new();
            let mut out = Vec::new();
            for c in x.chunks(chunk) {
                s.push(c, |s| {
                    out.push((
                        s.end_sample(),
                        *s.power(),
                        s.energy(),
                        *s.sub_energies(),
                        s.window()[7],
                    ))
                });
            }
            out
        };
        let (paired, single) = (collect(160), collect(80));
        assert_eq!(paired.len(), 20);
        for (p, q) in paired.iter().zip(&single) {
            assert_eq!((p.0, p.2, p.3, p.4), (q.0, q.2, q.3, q.4));
            for (a, b) in p.1.iter().zip(&q.1) {
                assert!((a - b).abs() <= 1e-3 * (a.abs() + 1e-3), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn sub_block_energies_locate_an_onset() {
        let mut s = Spectrum::new();
        let mut x = vec![0.0; 50];
        x.extend(sine(1000.0, 0.5, 30, 0.0));
        let mut subs = [0.0; SUB_BLOCKS];
        s.push(&x, |s| subs = *s.sub_energies());
        assert_eq!(subs[0], 0.0);
        assert_eq!(subs[1], 0.0);
        assert!(subs[2] > 0.0 && subs[3] > 0.1);
    }
}
