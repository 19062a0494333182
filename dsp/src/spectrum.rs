//! The shared spectrum stage: one real FFT per 10 ms hop, read by every detector
//!
//! Audio at 8 kHz is cut into 20 ms windows ([`WINDOW`] samples) advancing by 10 ms ([`HOP`]).
//! Each window is Hann-weighted and transformed once; detectors read the bins, the
//! interpolated peak frequency ([`Spectrum::peak`]) and the time-domain energies of the window
//! and of its 2.5 ms sub-blocks (for onset and offset timing finer than the hop). Adding a
//! detector adds no transform.
//!
//! Samples are `f32` scaled so that 16-bit full scale is 1.0 (`i16 as f32 / 32768.0`).

use std::sync::Arc;

use num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

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
/// Samples per sub-block: 2.5 ms, the time resolution of [`Spectrum::sub_energies`].
pub const SUB_BLOCK: usize = 20;
/// Sub-blocks in one hop.
pub const SUB_BLOCKS: usize = HOP / SUB_BLOCK;

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

/// Hann-windowed spectrum of the latest 20 ms, refreshed every 10 ms
pub struct Spectrum {
    fft: Arc<dyn RealToComplex<f32>>,
    hann: [f32; WINDOW],
    /// The latest `WINDOW` samples in time order.
    history: [f32; WINDOW],
    /// Samples of the current hop received so far (at the end of `history`'s new part).
    pending: usize,
    input: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    bins: Vec<Complex<f32>>,
    power: [f32; BINS],
    total_power: f32,
    sub_energies: [f32; SUB_BLOCKS],
    energy: f32,
    end: u64,
}

impl Default for Spectrum {
    fn default() -> Self {
        Self::new()
    }
}

impl Spectrum {
    /// Plans the transform and allocates every buffer; nothing is allocated afterwards
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(WINDOW);
        let mut hann = [0.0; WINDOW];
        for (i, w) in hann.iter_mut().enumerate() {
            // Periodic Hann: its DFT main lobe has the exact shape `peak` interpolates.
            *w = 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / WINDOW as f32).cos();
        }
        Self {
            input: fft.make_input_vec(),
            scratch: fft.make_scratch_vec(),
            bins: fft.make_output_vec(),
            fft,
            hann,
            history: [0.0; WINDOW],
            pending: 0,
            power: [0.0; BINS],
            total_power: 0.0,
            sub_energies: [0.0; SUB_BLOCKS],
            energy: 0.0,
            end: 0,
        }
    }

    /// Feeds samples; calls `on_hop` once per completed 10 ms hop, in order
    pub fn push(&mut self, samples: &[f32], mut on_hop: impl FnMut(&Spectrum)) {
        let mut rest = samples;
        while !rest.is_empty() {
            let take = (HOP - self.pending).min(rest.len());
            let start = WINDOW - HOP + self.pending;
            self.history[start..start + take].copy_from_slice(&rest[..take]);
            self.pending += take;
            rest = &rest[take..];
            if self.pending == HOP {
                self.analyse();
                on_hop(self);
                self.history.copy_within(HOP.., 0);
                self.pending = 0;
            }
        }
    }

    fn analyse(&mut self) {
        self.end += HOP as u64;
        let mut energy = 0.0;
        for ((x, w), dst) in self.history.iter().zip(&self.hann).zip(&mut self.input) {
            energy += x * x;
            *dst = x * w;
        }
        self.energy = energy / WINDOW as f32;
        let new = &self.history[WINDOW - HOP..];
        for (e, block) in self
            .sub_energies
            .iter_mut()
            .zip(new.chunks_exact(SUB_BLOCK))
        {
            *e = block.iter().map(|x| x * x).sum::<f32>() / SUB_BLOCK as f32;
        }
        self.fft
            .process_with_scratch(&mut self.input, &mut self.bins, &mut self.scratch)
            // Lengths come from the plan itself, so this cannot fail.
            .expect("buffers sized by the FFT plan");
        let mut total = 0.0;
        for (k, (p, b)) in self.power.iter_mut().zip(&self.bins).enumerate() {
            // Interior bins stand for their negative-frequency twin too.
            let weight = if k == 0 || k == BINS - 1 { 1.0 } else { 2.0 };
            *p = weight * b.norm_sqr();
            total += *p;
        }
        self.total_power = total;
    }

    /// Sample index (at 8 kHz, from the first sample pushed) one past the window's last sample
    pub fn end_sample(&self) -> u64 {
        self.end
    }

    /// The latest window's samples, oldest first, without weighting
    pub fn window(&self) -> &[f32; WINDOW] {
        &self.history
    }

    /// Hann-weighted complex bins of the latest window
    pub fn bins(&self) -> &[Complex<f32>] {
        &self.bins
    }

    /// Power per bin (negative frequencies folded in); sums to [`Spectrum::total_power`]
    pub fn power(&self) -> &[f32; BINS] {
        &self.power
    }

    /// Total spectral power of the latest window
    pub fn total_power(&self) -> f32 {
        self.total_power
    }

    /// Mean square of the latest window's samples (full-scale units, unweighted)
    pub fn energy(&self) -> f32 {
        self.energy
    }

    /// Mean square of each 2.5 ms sub-block of the newest hop, oldest first
    pub fn sub_energies(&self) -> &[f32; SUB_BLOCKS] {
        &self.sub_energies
    }

    /// Converts a sum of [`Spectrum::power`] bins covering one tone's main lobe to that tone's mean square
    pub fn power_to_mean_square(power: f32) -> f32 {
        // A sine of amplitude A gives total windowed power N * sum(w^2) * A^2 / 2, sum(w^2) = 3N/8.
        power / (WINDOW as f32 * WINDOW as f32 * 0.375)
    }

    /// Mean square of the signal in bins `lo..=hi` (full-scale units)
    pub fn band_mean_square(&self, lo: usize, hi: usize) -> f32 {
        Self::power_to_mean_square(self.power[lo..=hi.min(BINS - 1)].iter().sum())
    }

    /// Strongest line with its peak bin in `lo_hz..=hi_hz`, or `None` if the band is silent
    pub fn peak(&self, lo_hz: f32, hi_hz: f32) -> Option<Peak> {
        let lo = ((lo_hz / BIN_HZ).floor() as usize).max(1);
        let hi = ((hi_hz / BIN_HZ).ceil() as usize).min(BINS - 2);
        if lo > hi {
            return None;
        }
        let (bin, &p) = self.power[lo..=hi]
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, p)| (i + lo, p))?;
        if p <= 0.0 {
            return None;
        }
        let mag = |k: usize| self.power[k].sqrt();
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
        let lobe: f32 = self.power[lobe_lo..=lobe_hi].iter().sum();
        Some(Peak {
            bin,
            freq_hz: (bin as f32 + offset.clamp(-1.0, 1.0)) * BIN_HZ,
            mean_square: Self::power_to_mean_square(lobe),
            purity: if self.total_power > 0.0 {
                lobe / self.total_power
            } else {
                0.0
            },
        })
    }
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
