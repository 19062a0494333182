//! Single-tone (beep) and fax-tone detector, read from the shared spectrum once per hop
//!
//! A hop is *tonal* when one spectral line between 285 and 2530 Hz dominates its window and
//! nothing else is there: its main lobe holds at least [`MIN_PURITY`] of the window's power;
//! no bin outside the lobe comes within [`MAX_OTHER_DB`] of the peak bin (this rejects dual
//! tones such as DTMF even with 8 dB of twist, chords, and the harmonic comb of voiced
//! speech, while white noise 8 dB under the tone stays below it); no line stands out of the
//! noise at f/2, 2f or 3f more than 30 dB under it (a voice whose fundamental dominates still
//! has harmonics; a beep has none); and it is at least [`MIN_LEVEL_DBM0`] loud.
//!
//! Tonal hops form a run while the tone is *steady*: the window's level stays within 1.5 dB of
//! the run's, the 2.5 ms sub-block energies of the newest hop are flat (beating dual tones
//! such as ringback 440 + 480 Hz, whose lines share one main lobe, are not), and every steady
//! hop's frequency lies within one tolerance band ([`FREQ_TOLERANCE`], at least
//! [`FREQ_TOLERANCE_HZ`]) so a sweep or a gliding voice cannot creep along. Up to
//! [`BRIDGE_HOPS`] odd hops are ridden over ([`LONG_BRIDGE_HOPS`] while the tone's energy is
//! still there: CED phase reversals, noise). The run's start and end are located to 2.5 ms
//! from the sub-block energies; a run of [`MIN_BEEP_SAMPLES`] (95 ms) to
//! [`MAX_BEEP_SAMPLES`] is a beep, reported when it ends with its level-weighted mean
//! frequency.
//!
//! Fax is decided on the pattern, never on one frequency alone: a 2100 Hz tone still going
//! after [`CED_MIN_SAMPLES`] (2.6 s) is CED (reported then, and no beep when it ends); a
//! second 1100 Hz burst of 0.35–0.75 s starting 3–4.2 s after the previous one is CNG
//! (reported at its end instead of a beep). A lone 1100 Hz 0.5 s tone, or a 1 s 2100 Hz tone,
//! is a beep: the first CNG burst is therefore reported as a beep, and [`crate::amd`] holds
//! its decision on such a tone until the pattern resolves.
//!
//! Per hop the work is one peak search and a few scans of the 81 bins; nothing is allocated.

use crate::spectrum::{self, BIN_HZ, BINS, HOP, Hop, SUB_BLOCK, SUB_BLOCKS, Spectrum, WINDOW};

/// Lowest frequency searched for a beep, Hz.
pub const LOW_HZ: f32 = 275.0;
/// Highest frequency searched for a beep, Hz.
pub const HIGH_HZ: f32 = 2550.0;
/// Share of the window's power the tone's main lobe must hold.
pub const MIN_PURITY: f32 = 0.6;
/// Every bin outside the main lobe must be this many dB below the peak bin.
pub const MAX_OTHER_DB: f32 = 15.0;
/// Quietest tone considered, dBm0.
pub const MIN_LEVEL_DBM0: f32 = -42.0;
/// Relative frequency deviation allowed within one tone (floor of [`FREQ_TOLERANCE_HZ`]).
pub const FREQ_TOLERANCE: f32 = 0.006;
/// Absolute floor of the frequency deviation allowed within one tone, Hz.
pub const FREQ_TOLERANCE_HZ: f32 = 4.0;
/// Odd hops ridden over inside a tone.
pub const BRIDGE_HOPS: u32 = 3;
/// Odd hops ridden over inside a tone while the energy stays at the tone's level.
pub const LONG_BRIDGE_HOPS: u32 = 8;
/// Shortest beep: 95 ms (a 100 ms beep is reported, a 90 ms one is not).
pub const MIN_BEEP_SAMPLES: u64 = 760;
/// Longest beep: a steady tone going on for longer (a test tone, hum) is not reported.
pub const MAX_BEEP_SAMPLES: u64 = 5 * 8000;
/// A 2100 Hz tone lasting this long is CED (T.30: 2.6 s to 4 s).
pub const CED_MIN_SAMPLES: u64 = 2600 * 8;

/// A harmonic (or subharmonic) line 30 dB under the tone marks a voice, not a beep.
const HARMONIC_RATIO: f32 = 1e-3;
/// ... if its three bins hold 12 times the mean noise power of a bin (chance: 5e-4 per try).
const HARMONIC_NOISE_RATIO: f32 = 12.0;
/// [`MIN_LEVEL_DBM0`] as a power ratio to 0 dBm0.
const MIN_LEVEL_RATIO: f32 = 6.309_573e-5;
/// [`MAX_OTHER_DB`] as a power ratio.
const OTHER_RATIO: f32 = 0.031_622_78;
/// Frequency tolerance per unit of sqrt(noise/tone) in the main lobe (4 standard deviations
/// of the interpolated frequency, measured: 2 Hz at 10 dB SNR), Hz.
const JITTER_HZ: f32 = 25.0;
/// A tone that ends by moving less than this (relative) away is gliding.
const GLIDE: f32 = 0.03;
const CED_HZ: f32 = 2100.0;
const CED_TOL_HZ: f32 = 30.0;
const CNG_HZ: f32 = 1100.0;
const CNG_TOL_HZ: f32 = 40.0;
/// CNG burst length accepted (nominal 0.5 s ± 15 %, with margin).
const CNG_MIN: u64 = 350 * 8;
const CNG_MAX: u64 = 750 * 8;
/// CNG cadence: onset to onset (nominal 3.5 s).
const CNG_GAP_MIN: u64 = 3000 * 8;
const CNG_GAP_MAX: u64 = 4200 * 8;
/// Hops of sub-block energies kept for locating onsets and offsets.
const RING_HOPS: usize = 16;
const RING: usize = RING_HOPS * SUB_BLOCKS;
/// Sub-block energy threshold relative to the tone's level for start and end.
const EDGE_RATIO: f32 = 0.4;
/// Steady hops a beep needs at least (its duration is checked on the sub-blocks too).
const MIN_STEADY_HOPS: u32 = 6;
/// Level ratio (1.5 dB) a steady tone stays within from hop to hop.
const STEADY_RATIO: f32 = 1.41;
/// Onset hops (rising level) allowed before the tone must be steady.
const ONSET_HOPS: u32 = 1;
/// Least ratio of the quietest to the loudest 2.5 ms sub-block of a steady hop.
const FLATNESS: f32 = 0.3;
/// Matching hops after which a run is believed to be a tone (for [`ToneDetector::in_tone`]).
const CONFIRM_HOPS: u32 = 3;

/// Which fax tone was heard
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaxTone {
    /// Calling tone: 1100 Hz bursts, 0.5 s on, 3 s off.
    Cng,
    /// Called-station identification (answer tone): 2100 Hz for 2.6 s or more.
    Ced,
}

/// What the detector heard; times are sample indices at 8 kHz from the first sample pushed
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ToneEvent {
    /// One steady tone, reported when it ends.
    Beep {
        /// First sample of the tone.
        start: u64,
        /// One past the last sample of the tone.
        end: u64,
        /// Its frequency, Hz.
        frequency_hz: f32,
    },
    /// A fax tone pattern.
    Fax {
        /// CNG or CED.
        kind: FaxTone,
        /// Sample index at which the pattern was recognised.
        at: u64,
    },
}

#[derive(Debug, Clone, Copy)]
struct Run {
    start: u64,
    /// End sample of the last matching hop's window.
    last_end: u64,
    /// Hops at the tone's full level (the window wholly inside the tone).
    steady: u32,
    misses: u32,
    /// Reference frequency: the latest onset hop's, then the level-weighted mean of steady hops.
    ref_freq: f32,
    /// Reference level: the loudest onset hop's, then the loudest steady hop's (mean square).
    ref_level: f32,
    /// Lowest and highest frequency of the steady hops.
    freq_lo: f32,
    freq_hi: f32,
    /// Largest frequency spread the noise of a steady hop allowed for, Hz.
    jitter: f32,
    /// Lowest and highest level of the steady hops.
    level_lo: f32,
    level_hi: f32,
    freq_sum: f64,
    weight_sum: f64,
    located_start: bool,
    ced_reported: bool,
    /// The tone did not stop but moved on in frequency: a glide or a sweep, not a beep.
    glide: bool,
}

impl Run {
    fn new(now: u64, line: Line) -> Self {
        let Line { freq, level, .. } = line;
        Self {
            start: now.saturating_sub(WINDOW as u64),
            last_end: now,
            steady: 0,
            misses: 0,
            ref_freq: freq,
            ref_level: level,
            freq_lo: f32::INFINITY,
            freq_hi: f32::NEG_INFINITY,
            jitter: 0.0,
            level_lo: f32::INFINITY,
            level_hi: 0.0,
            freq_sum: 0.0,
            weight_sum: 0.0,
            located_start: false,
            ced_reported: false,
            glide: false,
        }
    }

    /// Takes in a tonal hop if it continues this tone; false if it does not
    fn accept(&mut self, line: Line, flat: bool, now: u64) -> bool {
        let Line {
            freq,
            level,
            jitter,
        } = line;
        let tolerance = (self.ref_freq * FREQ_TOLERANCE)
            .max(FREQ_TOLERANCE_HZ)
            .max(jitter.max(self.jitter));
        let offset = (freq - self.ref_freq).abs();
        let rising = self.steady < ONSET_HOPS && level > self.ref_level * STEADY_RATIO;
        // A window only partly filled with the tone puts its peak a little off.
        if offset > tolerance && !(rising && offset <= GLIDE * self.ref_freq) {
            return false;
        }
        if rising {
            // Still rising: the window is filling with the tone.
            self.ref_level = level;
            self.ref_freq = freq;
        } else if flat
            && (self.ref_level / STEADY_RATIO..=self.ref_level * STEADY_RATIO).contains(&level)
        {
            if self.steady <= 2 && level > self.level_lo * STEADY_RATIO {
                // The first "steady" hops were still part of the onset: start over from here.
                self.steady = 0;
                (self.freq_lo, self.freq_hi) = (f32::INFINITY, f32::NEG_INFINITY);
                (self.level_lo, self.level_hi) = (f32::INFINITY, 0.0);
                self.jitter = 0.0;
                (self.freq_sum, self.weight_sum) = (0.0, 0.0);
            }
            // A beep neither glides nor swells: all its steady hops lie within one frequency
            // tolerance and within 1.5 dB.
            let (lo, hi) = (self.freq_lo.min(freq), self.freq_hi.max(freq));
            let (quiet, loud) = (self.level_lo.min(level), self.level_hi.max(level));
            if hi - lo > tolerance || loud > quiet * STEADY_RATIO {
                return false;
            }
            (self.freq_lo, self.freq_hi) = (lo, hi);
            (self.level_lo, self.level_hi) = (quiet, loud);
            self.jitter = self.jitter.max(jitter);
            self.steady += 1;
            self.ref_level = self.ref_level.max(level);
            self.freq_sum += f64::from(freq) * f64::from(level);
            self.weight_sum += f64::from(level);
            self.ref_freq = (self.freq_sum / self.weight_sum) as f32;
        } else {
            // A level jump, a decline or a ripple: not this tone (any more).
            return false;
        }
        self.misses = 0;
        self.last_end = now;
        true
    }
}

/// Beep and fax tone detector: feed it every hop of a [`Spectrum`]
#[derive(Debug, Clone)]
pub struct ToneDetector {
    ring: [f32; RING],
    run: Option<Run>,
    /// Start of the previous CNG-like burst.
    last_cng_start: Option<u64>,
    now: u64,
}

impl Default for ToneDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl ToneDetector {
    /// A detector with no history
    pub fn new() -> Self {
        Self {
            ring: [0.0; RING],
            run: None,
            last_cng_start: None,
            now: 0,
        }
    }

    /// True while a steady tone has been tracked for a few hops (it may still turn out too short)
    pub fn in_tone(&self) -> bool {
        self.run.is_some_and(|r| r.steady >= CONFIRM_HOPS)
    }

    /// True while the detector follows a tone candidate (it may yet be rejected)
    pub fn tracking(&self) -> bool {
        self.run.is_some()
    }

    /// Where the tone candidate being followed began (sample index), if there is one
    pub fn tracking_since(&self) -> Option<u64> {
        self.run.map(|r| r.start)
    }

    /// Analyses one hop; returns an event when a beep ends or a fax pattern is recognised
    pub fn on_hop(&mut self, s: &Hop<'_>) -> Option<ToneEvent> {
        self.now = s.end_sample();
        let base = self.sub_index(self.now.saturating_sub(HOP as u64));
        let subs = s.sub_energies();
        let (mut lo, mut hi) = (f32::INFINITY, 0.0f32);
        for (i, &e) in subs.iter().enumerate() {
            let e = if e.is_finite() { e } else { 0.0 };
            self.ring[(base + i) % RING] = e;
            lo = lo.min(e);
            hi = hi.max(e);
        }
        // A steady tone's 2.5 ms energies are flat; beating dual tones and pulses are not.
        let flat = lo >= hi * FLATNESS;
        let hop = tonal(s);
        let Some(mut run) = self.run else {
            self.run = hop.map(|line| Run::new(self.now, line));
            return None;
        };
        if let Some(line) = hop
            && run.accept(line, flat, self.now)
        {
            if !run.located_start && run.steady >= 2 {
                run.start = self.locate_start(run.ref_level);
                run.located_start = true;
            }
            let event = self.check_ced(&mut run);
            self.run = Some(run);
            return event;
        }
        run.misses += 1;
        let energy = s.energy();
        let level_dropped = energy < run.ref_level * 0.1;
        // While the window still holds the tone's energy, noise may be spoiling a few hops:
        // ride over more of them.
        let bridge = if energy >= run.ref_level * 0.5 {
            LONG_BRIDGE_HOPS
        } else {
            BRIDGE_HOPS
        };
        if run.steady == 0 || run.misses > bridge || (level_dropped && run.misses > 1) {
            // Still a loud line close by: the tone moved rather than stopped.
            let tolerance = (run.ref_freq * FREQ_TOLERANCE)
                .max(FREQ_TOLERANCE_HZ)
                .max(run.jitter);
            let moved = hop.is_some_and(|Line { freq, level, .. }| {
                let offset = (freq - run.ref_freq).abs();
                run.steady >= 3
                    && offset > tolerance
                    && offset <= GLIDE * run.ref_freq
                    && level >= run.ref_level / STEADY_RATIO
            });
            run.glide |= moved;
            self.run = None;
            let event = self.close(run);
            if event.is_none() {
                // The hop that ended one run may start the next (which inherits a glide).
                self.run = hop.map(|line| Run {
                    glide: moved,
                    ..Run::new(self.now, line)
                });
            }
            return event;
        }
        self.run = Some(run);
        None
    }

    /// End of input: closes a tone still sounding
    pub fn finish(&mut self) -> Option<ToneEvent> {
        let run = self.run.take()?;
        self.close(run)
    }

    fn check_ced(&mut self, run: &mut Run) -> Option<ToneEvent> {
        if run.ced_reported || !run.located_start {
            return None;
        }
        let freq = (run.freq_sum / run.weight_sum) as f32;
        if (freq - CED_HZ).abs() <= CED_TOL_HZ
            && self.now.saturating_sub(run.start) >= CED_MIN_SAMPLES
        {
            run.ced_reported = true;
            metrics::counter!("dialplane_dsp_fax_tones_total", "kind" => "ced").increment(1);
            return Some(ToneEvent::Fax {
                kind: FaxTone::Ced,
                at: self.now,
            });
        }
        None
    }

    fn close(&mut self, run: Run) -> Option<ToneEvent> {
        if run.ced_reported || run.glide || run.steady < MIN_STEADY_HOPS || run.weight_sum <= 0.0 {
            return None;
        }
        let start = if run.located_start {
            run.start
        } else {
            self.locate_start(run.ref_level)
        };
        let end = self.locate_end(run.last_end, run.ref_level).max(start);
        let frequency_hz = (run.freq_sum / run.weight_sum) as f32;
        let len = end - start;
        if !(MIN_BEEP_SAMPLES..=MAX_BEEP_SAMPLES).contains(&len) || !frequency_hz.is_finite() {
            return None;
        }
        if (frequency_hz - CNG_HZ).abs() <= CNG_TOL_HZ && (CNG_MIN..=CNG_MAX).contains(&len) {
            let previous = self.last_cng_start.replace(start);
            if previous
                .is_some_and(|p| (CNG_GAP_MIN..=CNG_GAP_MAX).contains(&start.saturating_sub(p)))
            {
                metrics::counter!("dialplane_dsp_fax_tones_total", "kind" => "cng").increment(1);
                return Some(ToneEvent::Fax {
                    kind: FaxTone::Cng,
                    at: self.now,
                });
            }
        }
        metrics::counter!("dialplane_dsp_beeps_total").increment(1);
        Some(ToneEvent::Beep {
            start,
            end,
            frequency_hz,
        })
    }

    fn sub_index(&self, sample: u64) -> usize {
        (sample / SUB_BLOCK as u64) as usize
    }

    fn oldest_kept(&self) -> u64 {
        self.now.saturating_sub((RING * SUB_BLOCK) as u64)
    }

    /// Walks back from the newest sub-block while the energy stays at the tone's level
    fn locate_start(&self, level: f32) -> u64 {
        let threshold = level * EDGE_RATIO;
        let oldest = self.oldest_kept() / SUB_BLOCK as u64;
        let mut k = self.now / SUB_BLOCK as u64;
        while k > oldest && self.ring[(k as usize - 1) % RING] >= threshold {
            k -= 1;
        }
        k * SUB_BLOCK as u64
    }

    /// Walks forward from the middle of the last matching window to where the energy drops
    fn locate_end(&self, last_end: u64, level: f32) -> u64 {
        let threshold = level * EDGE_RATIO;
        let newest = self.now / SUB_BLOCK as u64;
        let from = last_end.saturating_sub(HOP as u64 + 2 * SUB_BLOCK as u64);
        let mut k = (from.max(self.oldest_kept()) / SUB_BLOCK as u64).max(1);
        while k < newest && self.ring[k as usize % RING] >= threshold {
            k += 1;
        }
        k * SUB_BLOCK as u64
    }
}

/// A hop's dominant line
#[derive(Debug, Clone, Copy)]
struct Line {
    freq: f32,
    /// Mean square.
    level: f32,
    /// Frequency spread to allow for the noise in the main lobe, Hz.
    jitter: f32,
}

/// A hop's dominant line, if the hop is tonal
fn tonal(s: &Hop<'_>) -> Option<Line> {
    let min_level = spectrum::DBM0_MEAN_SQUARE * MIN_LEVEL_RATIO;
    // Quiet hops (most of a call) cannot hold a tone: skip the peak search.
    let total_ms = Spectrum::power_to_mean_square(s.total_power());
    if total_ms.is_nan() || total_ms < min_level {
        return None;
    }
    let peak = s.peak(LOW_HZ, HIGH_HZ)?;
    let in_band = peak.freq_hz >= LOW_HZ + 10.0 && peak.freq_hz <= HIGH_HZ - 20.0;
    if !(peak.purity >= MIN_PURITY && peak.mean_square >= min_level && in_band) {
        return None;
    }
    let power = s.power();
    let limit = power[peak.bin] * OTHER_RATIO;
    let (lo, hi) = (peak.bin.saturating_sub(2).max(1), (peak.bin + 3).min(BINS));
    let loudest_other = power[1..lo]
        .iter()
        .chain(&power[hi..])
        .fold(0.0f32, |m, &p| m.max(p));
    if limit.is_nan() || loudest_other > limit {
        return None;
    }
    // A voice's fundamental can dominate its window, but it brings harmonics (or is itself a
    // harmonic); a beep has none. A line at f/2, 2f or 3f more than 30 dB under the tone that
    // stands well out of the noise between the bins rejects the hop.
    let total = s.total_power();
    let lobe_power = peak.purity * total;
    let noise_bin = (total - lobe_power).max(0.0) / (BINS - 5) as f32;
    for k in [0.5f32, 2.0, 3.0] {
        let f = peak.freq_hz * k;
        if !(100.0..=3850.0).contains(&f) {
            continue;
        }
        let c = ((f / BIN_HZ).round() as usize).clamp(1, BINS - 2);
        let p = power[c - 1] + power[c] + power[c + 1];
        if p > HARMONIC_NOISE_RATIO * noise_bin && p > lobe_power * HARMONIC_RATIO {
            return None;
        }
    }
    // Noise in the main lobe scatters the frequency estimate: widen the tolerance with it.
    let noise_to_tone = (1.0 - peak.purity).max(0.0) / peak.purity;
    Some(Line {
        freq: peak.freq_hz,
        level: peak.mean_square,
        jitter: JITTER_HZ * noise_to_tone.sqrt(),
    })
}
