//! Sample-rate conversion between 8, 16, 24 and 48 kHz (rubato's FFT resampler)
//!
//! [`Resampler`] streams: it takes input of any length (10 ms chunks are the natural unit),
//! buffers up to one chunk internally and writes every completed 10 ms of output into the
//! caller's buffer. Everything is allocated in [`Resampler::new`]; `process` allocates nothing.
//! The filter is linear-phase, so the output lags the input by a constant
//! [`Resampler::output_delay`] output samples.
//!
//! [`resample`] converts a whole signal at once (WAV and MP3 files) and removes that delay,
//! so output sample `i` sits at input time `i · from / to`. It also takes the rates files come
//! in (44.1 kHz, 22.05 kHz, ...): any rate in [`FILE_RATES`].

use rubato::{FftFixedInOut, Resampler as _};

/// The sample rates supported, in Hz.
pub const RATES: [u32; 4] = [8000, 16000, 24000, 48000];

/// The rates [`resample`] converts between, in Hz: what audio files use.
pub const FILE_RATES: std::ops::RangeInclusive<u32> = 4000..=192_000;

/// Why a conversion could not be set up or run
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    /// A rate outside [`RATES`] (streaming) or [`FILE_RATES`] (whole signals).
    #[error("unsupported sample rate {0} Hz")]
    UnsupportedRate(u32),
    /// The caller's output buffer cannot hold what this call produces; nothing was consumed.
    #[error("output buffer holds {available} samples, {needed} needed")]
    OutputTooSmall {
        /// Samples this call would write.
        needed: usize,
        /// Length of the buffer given.
        available: usize,
    },
    /// The underlying resampler refused buffers sized by its own plan (a bug, not an input error).
    #[error("internal resampler error")]
    Internal,
}

fn check_rate(hz: u32) -> Result<(), ResampleError> {
    if RATES.contains(&hz) {
        Ok(())
    } else {
        Err(ResampleError::UnsupportedRate(hz))
    }
}

/// Largest magnitude passed to the transform: far beyond full scale, yet finite through it.
const LIMIT: f32 = 1.0e4;

/// Keeps the transform finite: NaN becomes silence, everything else is clamped to ±[`LIMIT`]
fn sanitize(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-LIMIT, LIMIT)
    }
}

/// Streaming converter from one supported rate to another, mono
pub struct Resampler {
    from_hz: u32,
    to_hz: u32,
    /// `None` when the rates are equal: samples pass through untouched.
    inner: Option<FftFixedInOut<f32>>,
    /// Input samples per processing chunk (10 ms at `from_hz`).
    chunk_in: usize,
    /// Output samples per processing chunk (10 ms at `to_hz`).
    chunk_out: usize,
    /// Partial input chunk, `pending` samples long.
    buf: Vec<f32>,
    pending: usize,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("from_hz", &self.from_hz)
            .field("to_hz", &self.to_hz)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Plans a converter from `from_hz` to `to_hz`; both must be in [`RATES`]
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        check_rate(from_hz)?;
        check_rate(to_hz)?;
        // Every supported rate is a multiple of 8 kHz, so 10 ms is a whole number of the
        // resampler's minimum chunks.
        Self::with_chunks(from_hz, to_hz, from_hz as usize / 100, to_hz as usize / 100)
    }

    /// A converter between any two rates of [`FILE_RATES`], with the smallest chunks that hold
    /// a whole number of both periods and last at least 10 ms (20 ms from 22.05 kHz, ...)
    fn for_file(from_hz: u32, to_hz: u32) -> Result<Self, ResampleError> {
        for hz in [from_hz, to_hz] {
            if !FILE_RATES.contains(&hz) {
                return Err(ResampleError::UnsupportedRate(hz));
            }
        }
        let g = gcd(from_hz, to_hz) as usize;
        let (min_in, min_out) = (from_hz as usize / g, to_hz as usize / g);
        let k = (from_hz as usize / 100).div_ceil(min_in).max(1);
        Self::with_chunks(from_hz, to_hz, min_in * k, min_out * k)
    }

    fn with_chunks(
        from_hz: u32,
        to_hz: u32,
        chunk_in: usize,
        chunk_out: usize,
    ) -> Result<Self, ResampleError> {
        let inner = if from_hz == to_hz {
            None
        } else {
            // The chunks are whole multiples of the rates' common period, so the resampler
            // keeps exactly the sizes asked for.
            let r = FftFixedInOut::<f32>::new(from_hz as usize, to_hz as usize, chunk_in, 1)
                .map_err(|_| ResampleError::Internal)?;
            if r.input_frames_next() != chunk_in || r.output_frames_next() != chunk_out {
                return Err(ResampleError::Internal);
            }
            Some(r)
        };
        Ok(Self {
            from_hz,
            to_hz,
            inner,
            chunk_in,
            chunk_out,
            buf: vec![0.0; chunk_in],
            pending: 0,
        })
    }

    /// Input rate in Hz
    pub fn from_hz(&self) -> u32 {
        self.from_hz
    }

    /// Output rate in Hz
    pub fn to_hz(&self) -> u32 {
        self.to_hz
    }

    /// Input samples in one chunk (10 ms from [`Resampler::new`])
    pub fn input_chunk(&self) -> usize {
        self.chunk_in
    }

    /// Output samples in one chunk (10 ms from [`Resampler::new`])
    pub fn output_chunk(&self) -> usize {
        self.chunk_out
    }

    /// Lag of the output behind the input, in output samples (0 when the rates are equal)
    pub fn output_delay(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    /// Samples the next [`Resampler::process`] call will write for `input_len` input samples
    pub fn output_len(&self, input_len: usize) -> usize {
        if self.inner.is_none() {
            return input_len;
        }
        (self.pending.saturating_add(input_len) / self.chunk_in).saturating_mul(self.chunk_out)
    }

    /// Feeds `input` (any length) and writes each completed output chunk into `out`
    ///
    /// NaN input samples are taken as silence and magnitudes are limited to 10⁴ (80 dB over full
    /// scale), so no input can upset the transform.
    ///
    /// Returns how many samples were written: [`Resampler::output_len`] of `input.len()`. With
    /// 10 ms of input per call that is exactly 10 ms of output. If `out` is shorter than that,
    /// returns [`ResampleError::OutputTooSmall`] and consumes nothing.
    pub fn process(&mut self, input: &[f32], out: &mut [f32]) -> Result<usize, ResampleError> {
        let needed = self.output_len(input.len());
        if out.len() < needed {
            return Err(ResampleError::OutputTooSmall {
                needed,
                available: out.len(),
            });
        }
        let Some(inner) = self.inner.as_mut() else {
            out[..needed].copy_from_slice(input);
            return Ok(needed);
        };
        let (chunk_in, chunk_out) = (self.chunk_in, self.chunk_out);
        let mut rest = input;
        let mut written = 0;
        while !rest.is_empty() {
            let take = (chunk_in - self.pending).min(rest.len());
            for (b, &x) in self.buf[self.pending..self.pending + take]
                .iter_mut()
                .zip(rest)
            {
                *b = sanitize(x);
            }
            self.pending += take;
            rest = &rest[take..];
            if self.pending < chunk_in {
                break;
            }
            self.pending = 0;
            let dst = &mut out[written..written + chunk_out];
            inner
                .process_into_buffer(&[&self.buf[..]], &mut [dst], None)
                .map_err(|_| ResampleError::Internal)?;
            written += chunk_out;
        }
        Ok(written)
    }

    /// Forgets all history and any partial chunk, as if newly constructed
    pub fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
        self.pending = 0;
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Converts a whole signal from `from_hz` to `to_hz` (both in [`FILE_RATES`]), compensating the
/// filter delay
///
/// The result has `round(input.len() · to / from)` samples and output sample `i` lies at input
/// time `i · from / to` (the input is taken as silent beyond its ends). Empty input gives an
/// empty output.
pub fn resample(input: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, ResampleError> {
    let mut r = Resampler::for_file(from_hz, to_hz)?;
    // u128: no slice length times 192000 can overflow it.
    let (from, to) = (u128::from(from_hz), u128::from(to_hz));
    let len = usize::try_from((input.len() as u128 * to + from / 2) / from)
        .map_err(|_| ResampleError::Internal)?;
    if len == 0 {
        return Ok(Vec::new());
    }
    let delay = r.output_delay();
    // Whole chunks covering the delay plus the wanted output; the tail is fed as silence.
    let chunks = (delay + len).div_ceil(r.output_chunk());
    let mut padded = vec![0.0; chunks * r.input_chunk()];
    let n = input.len().min(padded.len());
    padded[..n].copy_from_slice(&input[..n]);
    let mut out = vec![0.0; chunks * r.output_chunk()];
    let written = r.process(&padded, &mut out)?;
    out.truncate(written);
    out.drain(..delay.min(out.len()));
    out.truncate(len);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    fn sine(freq: f32, amp: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (2.0 * PI * freq * i as f32 / rate as f32).sin())
            .collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    /// Lag (in samples, within ±`max`) maximising the cross-correlation of `b` against `a`
    fn best_lag(a: &[f32], b: &[f32], max: isize) -> isize {
        let corr = |lag: isize| -> f32 {
            (0..a.len() as isize)
                .filter_map(|i| {
                    let j = i + lag;
                    (j >= 0 && (j as usize) < b.len()).then(|| a[i as usize] * b[j as usize])
                })
                .sum()
        };
        (-max..=max)
            .max_by(|&x, &y| corr(x).total_cmp(&corr(y)))
            .unwrap()
    }

    #[test]
    fn every_supported_pair_has_ten_ms_chunks() {
        for from in RATES {
            for to in RATES {
                let r = Resampler::new(from, to).unwrap();
                assert_eq!(r.input_chunk(), from as usize / 100);
                assert_eq!(r.output_chunk(), to as usize / 100);
                assert_eq!(r.output_delay() == 0, from == to, "{from}->{to}");
            }
        }
    }

    #[test]
    fn unsupported_rates_are_errors() {
        for bad in [0, 1, 11025, 22050, 44100, 96000, u32::MAX] {
            assert_eq!(
                Resampler::new(bad, 8000).unwrap_err(),
                ResampleError::UnsupportedRate(bad)
            );
        }
        for bad in [0, 1, 3999, 192_001, u32::MAX] {
            assert_eq!(
                resample(&[0.0; 10], 8000, bad).unwrap_err(),
                ResampleError::UnsupportedRate(bad)
            );
        }
    }

    #[test]
    fn file_rates_to_8k_keep_level_frequency_and_alignment() {
        for from in [11025, 22050, 32000, 44100, 96000, 44101] {
            let y = resample(&sine(1000.0, 0.5, from, from as usize), from, 8000).unwrap();
            assert_eq!(y.len(), 8000, "{from}");
            // Correlation with 1 kHz at 8 kHz: a wrong frequency would average away, a shift
            // shows as phase. rubato reports the filter's delay in whole output samples, so up
            // to half a sample (62 µs) is left: nothing a listener hears.
            let (mut s, mut c) = (0.0f32, 0.0f32);
            for (i, v) in y.iter().enumerate().take(7600).skip(400) {
                let t = 2.0 * PI * 1000.0 * i as f32 / 8000.0;
                s += v * t.sin();
                c += v * t.cos();
            }
            let amp = 2.0 * s.hypot(c) / 7200.0;
            let phase = c.atan2(s);
            eprintln!("{from} Hz -> 8 kHz: amplitude {amp:.4}, phase {phase:.4} rad");
            assert!((amp / 0.5 - 1.0).abs() < 0.01, "{from}: amplitude {amp}");
            assert!(phase.abs() <= 2.0 * PI / 8.0 / 2.0, "{from}: phase {phase}");
        }
    }

    #[test]
    fn empty_and_tiny_inputs() {
        for from in RATES {
            for to in RATES {
                assert!(resample(&[], from, to).unwrap().is_empty());
                let mut r = Resampler::new(from, to).unwrap();
                assert_eq!(r.process(&[], &mut []), Ok(0));
                for n in 1..8 {
                    let out = resample(&vec![0.5; n], from, to).unwrap();
                    let want = (n as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
                    assert_eq!(out.len() as u64, want, "{from}->{to} n={n}");
                }
            }
        }
    }

    #[test]
    fn output_length_is_rounded_ratio() {
        for from in RATES {
            for to in RATES {
                for n in [159, 160, 161, 1000, 4801] {
                    let out = resample(&sine(440.0, 0.3, from, n), from, to).unwrap();
                    let want = (n as u64 * u64::from(to) + u64::from(from) / 2) / u64::from(from);
                    assert_eq!(out.len() as u64, want, "{from}->{to} n={n}");
                }
            }
        }
    }

    #[test]
    fn sine_round_trip_8k_48k_8k_keeps_frequency_level_and_alignment() {
        let x = sine(1000.0, 0.5, 8000, 8000);
        let up = resample(&x, 8000, 48000).unwrap();
        assert_eq!(up.len(), 48000);
        let y = resample(&up, 48000, 8000).unwrap();
        assert_eq!(y.len(), x.len());
        // Steady-state region, away from the edges where the signal starts and stops.
        let (a, b) = (&x[400..7600], &y[400..7600]);
        let level_db = 20.0 * (rms(b) / rms(a)).log10();
        eprintln!("8k->48k->8k level change {level_db:.4} dB");
        assert!(level_db.abs() <= 0.2, "level changed by {level_db} dB");
        assert_eq!(best_lag(a, b, 4).abs(), 0);
        // Upsampled signal alone: same level, aligned at 48 kHz.
        let up_db = 20.0 * (rms(&up[2400..45600]) / rms(a)).log10();
        assert!(up_db.abs() <= 0.2, "48k level changed by {up_db} dB");
        let x48 = sine(1000.0, 0.5, 48000, 48000);
        assert!(best_lag(&x48[2400..45600], &up[2400..45600], 12).abs() <= 1);
        // Frequency through the shared spectrum stage.
        let mut s = crate::spectrum::Spectrum::new();
        let mut peaks = Vec::new();
        s.push(b, |s| peaks.extend(s.peak(300.0, 3500.0)));
        assert!(peaks.len() > 10);
        // The first hop's window still holds the spectrum stage's initial silence.
        for p in &peaks[1..] {
            assert!((p.freq_hz - 1000.0).abs() < 1.0, "{p:?}");
        }
        // Residual after subtracting the input: the conversion is close to transparent.
        let err: Vec<f32> = a.iter().zip(b).map(|(p, q)| p - q).collect();
        assert!(20.0 * (rms(&err) / rms(a)).log10() < -40.0);
    }

    #[test]
    fn alignment_holds_for_every_pair() {
        for from in RATES {
            for to in RATES {
                let n = from as usize; // one second
                let x = sine(700.0, 0.4, from, n);
                let y = resample(&x, from, to).unwrap();
                let want = sine(700.0, 0.4, to, y.len());
                let edge = to as usize / 20;
                let (a, b) = (&want[edge..y.len() - edge], &y[edge..y.len() - edge]);
                assert_eq!(best_lag(a, b, 8), 0, "{from}->{to}");
                let db = 20.0 * (rms(b) / rms(a)).log10();
                assert!(db.abs() <= 0.2, "{from}->{to}: {db} dB");
            }
        }
    }

    #[test]
    fn downsampling_48k_to_8k_removes_6khz() {
        let x = sine(6000.0, 0.5, 48000, 48000);
        let y = resample(&x, 48000, 8000).unwrap();
        let down_db = 20.0 * (rms(&y[400..7600]) / rms(&x)).log10();
        eprintln!("6 kHz through 48k->8k: {down_db:.1} dB");
        assert!(down_db <= -40.0, "6 kHz only {down_db} dB down");
    }

    #[test]
    fn streaming_matches_whole_file() {
        for (from, to) in [(8000, 48000), (48000, 8000), (16000, 24000), (24000, 8000)] {
            let x: Vec<f32> = sine(523.0, 0.3, from, from as usize)
                .iter()
                .zip(sine(1789.0, 0.2, from, from as usize))
                .map(|(a, b)| a + b)
                .collect();
            let whole = resample(&x, from, to).unwrap();
            let mut r = Resampler::new(from, to).unwrap();
            let delay = r.output_delay();
            let mut streamed = Vec::new();
            let mut out = vec![0.0; r.output_chunk() * 8];
            // Odd push sizes exercise the internal buffering.
            let tail = vec![0.0; from as usize / 20];
            for piece in x.chunks(37).chain(tail.chunks(37)) {
                let n = r.process(piece, &mut out).unwrap();
                streamed.extend_from_slice(&out[..n]);
            }
            let streamed = &streamed[delay..];
            let n = whole.len().min(streamed.len());
            assert!(n + to as usize / 50 >= whole.len());
            for (i, (a, b)) in whole[..n].iter().zip(&streamed[..n]).enumerate() {
                assert!((a - b).abs() < 1e-5, "{from}->{to} sample {i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn ten_ms_in_gives_ten_ms_out_and_short_buffers_are_refused() {
        let mut r = Resampler::new(8000, 16000).unwrap();
        let mut out = [0.0; 160];
        assert_eq!(r.process(&[0.1; 80], &mut out), Ok(160));
        assert_eq!(r.output_len(79), 0);
        assert_eq!(r.process(&[0.1; 79], &mut out), Ok(0));
        assert_eq!(r.output_len(1), 160);
        assert_eq!(
            r.process(&[0.1; 1], &mut out[..10]),
            Err(ResampleError::OutputTooSmall {
                needed: 160,
                available: 10
            })
        );
        assert_eq!(r.process(&[0.1; 1], &mut out), Ok(160));
        let mut same = Resampler::new(16000, 16000).unwrap();
        assert_eq!(same.process(&[0.25; 7], &mut out), Ok(7));
        assert_eq!(out[..7], [0.25; 7]);
    }

    #[test]
    fn non_finite_input_does_not_panic() {
        let mut r = Resampler::new(48000, 8000).unwrap();
        let mut out = [0.0; 80];
        let x = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::MIN,
        ];
        let x: Vec<f32> = x.iter().copied().cycle().take(480).collect();
        assert_eq!(r.process(&x, &mut out), Ok(80));
        assert_eq!(resample(&x, 8000, 24000).unwrap().len(), 1440);
    }
}
