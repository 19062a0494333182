//! DTMF (touch-tone) receiver meeting ITU-T Q.24 (AT&T column) and a streaming generator
//!
//! The receiver adds no transform: once per 10 ms hop it reads the shared [`Spectrum`] (the
//! interpolated peak of the low and the high group, their main-lobe power and purity) to label the
//! hop with a digit, and the 2.5 ms sub-block energies to time the tone's onset and offset. Timing
//! comes from energy because a 20 ms window fits inside a 23 ms tone (which must be rejected), so
//! counting labelled hops cannot tell 23 ms from 40 ms (which must be accepted).
//!
//! A hop is labelled with a digit when both group peaks lie within 2.5 % of a nominal frequency,
//! each tone is above -38 dBm0, the twist is within +10/-6 dB and the two main lobes hold 90 % of
//! the window's power. A run of labelled hops is reported as one digit once energy has stayed
//! below 30 % of the tone's for 25 ms (a shorter gap is a drop-out, ridden over), or another
//! digit's label takes over (the change of label then bounds both), if:
//! - the tone, timed from the sub-block energies, lasted at least 31 ms;
//! - energy rose at its onset and fell at its offset (no tone-like moment inside speech);
//! - at least three hops were labelled (two around a ridden-over drop-out), two of them with the
//!   tone filling the whole window (or a drop-out in between), and at least half of its span;
//! - both frequencies held still over the whole windows: a line fitted through them travels at
//!   most 1 % and scatters at most 0.6 % (sweeps and speech glide, oscillators do not).
//!
//! Per hop the work is two band peak searches over the FFT bins and a few comparisons; nothing is
//! allocated after [`DtmfReceiver::new`], and no input (NaN, infinities, clipping) can panic it.

use crate::spectrum::{self, HOP, Hop, RATE, SUB_BLOCK, SUB_BLOCKS, WINDOW, dbm0_amplitude};

/// Low-group (row) frequencies in Hz.
pub const LOW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies in Hz.
pub const HIGH_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
/// Keypad: `KEYS[row][column]`, row by low tone and column by high tone.
pub const KEYS: [[char; 4]; 4] = [
    ['1', '2', '3', 'A'],
    ['4', '5', '6', 'B'],
    ['7', '8', '9', 'C'],
    ['*', '0', '#', 'D'],
];

/// Largest accepted deviation of each tone from its nominal frequency (fraction): Q.24 asks for
/// acceptance at 1.5 % and rejection at 3.5 %; 2.5 % is midway, leaving 1 % (7-16 Hz) for the
/// estimation error in noise and on partly filled windows.
const MAX_DEVIATION: f32 = 0.025;
/// Weakest accepted tone, dBm0 (Q.24: accept -25 dBm0 per tone, with 8 dB twist the weak tone can be
/// at -33; reject -55).
pub const MIN_LEVEL_DBM0: f32 = -38.0;
/// [`MIN_LEVEL_DBM0`] as a mean square, so the hop needs no logarithm: 0.24096 * 10^-3.8.
const MIN_LEVEL_MS: f32 = 3.819e-5;
/// Low group may be stronger than the high group by up to this (dB); Q.24 requires 8.
pub const MAX_TWIST_DB: f32 = 10.0;
/// [`MAX_TWIST_DB`] as a power ratio.
const MAX_TWIST: f32 = 10.0;
/// High group may be stronger than the low group by up to this (dB); Q.24 requires 4.
pub const MAX_REVERSE_TWIST_DB: f32 = 6.0;
/// [`MAX_REVERSE_TWIST_DB`] as a power ratio.
const MAX_REVERSE_TWIST: f32 = 3.981;
/// Share of the window's spectral power the two main lobes must hold. 15 dB S/N of white noise
/// leaves about 0.97 (detection starts failing at 0.96); speech rarely exceeds 0.8 (of the hops of
/// speech that pass the frequency, level and twist tests, 2 % reach 0.8 and 0.03 % reach 0.9).
const MIN_PURITY: f32 = 0.9;
/// A sub-block is "on" (tone present) when its mean square is at least this share of the tone's.
const ON_SHARE: f32 = 0.3;
/// A gap in energy this long (sub-blocks) ends a digit: 25 ms, between the 10 ms drop-out Q.24
/// bridges and the 40 ms pause it must recognise.
const GAP_BLOCKS: u64 = 10;
/// Hops without the digit's label that end it whatever the energy says (speech right after it).
/// A 10 ms drop-out touches at most 3 windows.
const MAX_MISSES: u32 = 4;
/// Shortest accepted tone in samples: 31 ms, midway between 23 ms (reject) and 40 ms (accept).
const MIN_DURATION: u64 = 31 * RATE as u64 / 1000;
/// Largest travel of either tone's frequency along a straight line fitted over the digit's whole
/// windows (fraction of nominal): an oscillator holds still; a sweep through a DTMF pair travels.
/// Over 8000 random digits inside Q.24's ranges (15 dB S/N at worst) the largest travel was
/// 0.6 %; the dual sweeps of the talk-off test travel 1.7 % and more while on a pair.
const MAX_DRIFT: f32 = 0.01;
/// Largest scatter (RMS, fraction of nominal) of either tone's frequency about that line: a weak
/// tone in 15 dB S/N scatters up to about 0.3 %.
const MAX_SCATTER: f32 = 0.006;
/// Sub-block energies kept for timing (320 ms).
const RING: usize = 128;

/// One key press: the 16 digits are '0'-'9', '*', '#', 'A'-'D' (capitals)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// The key.
    pub digit: char,
    /// Sample index (8 kHz) of the tone's onset as detected.
    pub start: u64,
    /// Sample index (8 kHz) one past the tone's offset as detected.
    pub end: u64,
}

/// A digit being heard.
#[derive(Debug, Clone, Copy)]
struct Active {
    digit: char,
    /// Mean square of the tone pair (largest seen over the hops labelled with it).
    level: f32,
    first_hit_end: u64,
    last_hit_end: u64,
    hits: u32,
    misses: u32,
    /// Sub-block index one past the last sub-block with tone-like energy.
    last_on_block: u64,
    onset: Option<(u64, bool)>,
    /// Straight-line fits of the low and the high tone's relative deviation over the hops whose
    /// whole window held the tone.
    fit: [Fit; 2],
    /// The newest whole-window points, not yet in `fit`: `(hop, lo_dev, hi_dev, window end)`.
    queue: [(f64, f32, f32, u64); 2],
    queued: usize,
    /// Hops whose whole window held the tone.
    full_hits: u32,
    /// Whether a drop-out was ridden over.
    bridged: bool,
    /// Whether energy came back after a gap since the last labelled hop.
    resumed: bool,
    /// Where the previous digit gave way to this one without a pause in energy (estimated from
    /// the labels): the onset is not looked for before it.
    after: Option<u64>,
    /// Where the next digit took over: the offset is not looked for after it.
    until: Option<u64>,
}

impl Active {
    /// Counts a hop (ending at sample `end`) labelled with this digit; `full` if the tone filled
    /// its whole window.
    fn track(&mut self, l: &Label, end: u64, full: bool) {
        // A window reaching back over the previous digit (no pause between them) is not this
        // tone alone, whatever its energy says.
        let clean = self
            .after
            .is_none_or(|t| end.saturating_sub(WINDOW as u64) >= t);
        if full && clean {
            // The newest points wait: if the next digit follows without a pause, they may turn
            // out to reach over it.
            if self.queued == self.queue.len() {
                let (t, lo, hi, _) = self.queue[0];
                self.fit[0].add(t, lo);
                self.fit[1].add(t, hi);
                self.queue.rotate_left(1);
                self.queued -= 1;
            }
            let t = end.saturating_sub(self.first_hit_end) as f64 / HOP as f64;
            self.queue[self.queued] = (t, l.lo_dev, l.hi_dev, end);
            self.queued += 1;
            self.full_hits += 1;
        }
        self.level = self.level.max(l.level);
    }

    /// Adds the waiting points that end before the next digit took over.
    fn flush(&mut self) {
        for &(t, lo, hi, end) in &self.queue[..self.queued] {
            if self.until.is_none_or(|u| end <= u + SUB_BLOCK as u64) {
                self.fit[0].add(t, lo);
                self.fit[1].add(t, hi);
            }
        }
        self.queued = 0;
    }

    /// Whether both frequencies held still, as an oscillator's do and speech and sweeps do not.
    fn steady(&self) -> bool {
        self.fit.iter().all(Fit::steady)
    }
}

/// Least-squares line through a tone's relative frequency deviation against time (hops).
#[derive(Debug, Clone, Copy, Default)]
struct Fit {
    n: f64,
    t: f64,
    tt: f64,
    f: f64,
    tf: f64,
    ff: f64,
    first: f64,
    last: f64,
}

impl Fit {
    fn add(&mut self, t: f64, dev: f32) {
        let f = f64::from(dev);
        if self.n == 0.0 {
            self.first = t;
        }
        self.last = t;
        self.n += 1.0;
        self.t += t;
        self.tt += t * t;
        self.f += f;
        self.tf += t * f;
        self.ff += f * f;
    }

    /// Frequency change along the fitted line from the first to the last point (a sweep's
    /// travel), and the scatter (RMS) about the line (a wobble's).
    fn drift_and_scatter(&self) -> (f64, f64) {
        if self.n < 2.0 {
            return (0.0, 0.0);
        }
        let mean_t = self.t / self.n;
        let mean_f = self.f / self.n;
        let var_t = self.tt / self.n - mean_t * mean_t;
        let var_f = (self.ff / self.n - mean_f * mean_f).max(0.0);
        let cov = self.tf / self.n - mean_t * mean_f;
        if var_t <= 0.0 {
            return (0.0, var_f.sqrt());
        }
        let slope = cov / var_t;
        let drift = (slope * (self.last - self.first)).abs();
        (drift, (var_f - slope * cov).max(0.0).sqrt())
    }

    fn steady(&self) -> bool {
        let (drift, scatter) = self.drift_and_scatter();
        // Written so that NaN fails.
        drift <= f64::from(MAX_DRIFT) && scatter <= f64::from(MAX_SCATTER)
    }
}

/// Q.24 DTMF receiver reading the shared spectrum once per hop
pub struct DtmfReceiver {
    /// Sub-block mean squares, by absolute sub-block index modulo `RING`.
    ring: [f32; RING],
    /// Sub-blocks received (absolute index of the next).
    blocks: u64,
    active: Option<Active>,
    /// Boundary with the digit just ended by a change of label, for the next one.
    boundary: Option<u64>,
}

impl Default for DtmfReceiver {
    fn default() -> Self {
        Self::new()
    }
}

/// Nearest nominal frequency to `f` among `group`, with its relative deviation.
fn nearest(group: &[f32; 4], f: f32) -> (usize, f32) {
    let mut best = (0, f32::INFINITY);
    for (i, &nominal) in group.iter().enumerate() {
        let dev = ((f - nominal) / nominal).abs();
        if dev < best.1 {
            best = (i, dev);
        }
    }
    best
}

/// What one hop's spectrum says.
#[derive(Debug, Clone, Copy)]
struct Label {
    digit: char,
    /// Mean square of the tone pair.
    level: f32,
    /// Relative deviations of the measured low and high frequencies from the nominal ones.
    lo_dev: f32,
    hi_dev: f32,
}

/// The digit a hop's spectrum holds, with the pair's mean square, or `None`.
fn classify(s: &Hop<'_>) -> Option<Label> {
    let (lo_bin, lo_power) = s.strongest(650.0, 990.0)?;
    let (hi_bin, hi_power) = s.strongest(1150.0, 1700.0)?;
    // Most hops of a call fail here, before any interpolation: two lobes holding MIN_PURITY of
    // the power (noise in them at most the rest) need strongest bins of at least this share.
    let least = (2.0 * MIN_PURITY - 1.0) / spectrum::MAX_LOBE_PER_BIN;
    if lo_power + hi_power < least * s.total_power() {
        return None;
    }
    let (lo, hi) = (s.line_at(lo_bin), s.line_at(hi_bin));
    let (row, _) = nearest(&LOW_HZ, lo.freq_hz);
    let (col, _) = nearest(&HIGH_HZ, hi.freq_hz);
    let lo_dev = lo.freq_hz / LOW_HZ[row] - 1.0;
    let hi_dev = hi.freq_hz / HIGH_HZ[col] - 1.0;
    // Written so that NaN fails every test.
    let ok_freq = lo_dev.abs() <= MAX_DEVIATION && hi_dev.abs() <= MAX_DEVIATION;
    let (lo_ms, hi_ms) = (lo.mean_square, hi.mean_square);
    let ok_level = lo_ms >= MIN_LEVEL_MS && hi_ms >= MIN_LEVEL_MS;
    let ok_twist = lo_ms <= MAX_TWIST * hi_ms && hi_ms <= MAX_REVERSE_TWIST * lo_ms;
    let ok_purity = lo.purity + hi.purity >= MIN_PURITY;
    if ok_freq && ok_level && ok_twist && ok_purity {
        let level = lo.mean_square + hi.mean_square;
        level.is_finite().then_some(Label {
            digit: KEYS[row][col],
            level,
            lo_dev,
            hi_dev,
        })
    } else {
        None
    }
}

impl DtmfReceiver {
    /// A receiver with no history
    pub fn new() -> Self {
        Self {
            ring: [0.0; RING],
            blocks: 0,
            active: None,
            boundary: None,
        }
    }

    fn energy(&self, block: u64) -> f32 {
        let e = self.ring[(block % RING as u64) as usize];
        if e.is_nan() { 0.0 } else { e }
    }

    /// Whether `block` is still in the ring.
    fn held(&self, block: u64) -> bool {
        block < self.blocks && self.blocks - block <= RING as u64
    }

    /// Fill (0..=1) of a sub-block by a tone of mean square `level`.
    fn fill(&self, block: u64, level: f32) -> f32 {
        if !self.held(block) || level <= 0.0 {
            return 0.0;
        }
        (self.energy(block) / level).clamp(0.0, 1.0)
    }

    fn on(&self, block: u64, level: f32) -> bool {
        self.held(block) && self.energy(block) >= ON_SHARE * level
    }

    /// Whether the tone labelled `l` filled the whole window ending at `end`.
    fn whole(&self, end: u64, l: &Label) -> bool {
        let first = end.saturating_sub(WINDOW as u64) / SUB_BLOCK as u64;
        end >= WINDOW as u64 && (first..self.blocks).all(|b| self.on(b, l.level))
    }

    /// Onset of `a`'s tone, located in the sub-blocks of its first labelled window, and whether
    /// energy really rose there (speech around a tone-like moment does not).
    fn onset(&self, a: &Active) -> (u64, bool) {
        let fallback = (a.first_hit_end.saturating_sub(WINDOW as u64 / 2), false);
        let first = a.first_hit_end.saturating_sub(WINDOW as u64) / SUB_BLOCK as u64;
        let last = a.first_hit_end / SUB_BLOCK as u64; // exclusive
        let limit = a.after.map(|t| t / SUB_BLOCK as u64);
        // Start from the loudest sub-block of that window (after the previous digit), surely
        // inside the tone.
        let mut loudest = None;
        for b in first.max(limit.unwrap_or(0))..last {
            if self.held(b) && loudest.is_none_or(|(_, e)| self.energy(b) > e) {
                loudest = Some((b, self.energy(b)));
            }
        }
        let Some((mut b, _)) = loudest else {
            return fallback;
        };
        if !self.on(b, a.level) {
            return fallback;
        }
        // Walk back over tone-like sub-blocks; the tone began at most 5 ms before the window,
        // and not before the previous digit gave way.
        let floor = first.saturating_sub(2).max(limit.unwrap_or(0));
        while b > floor && self.on(b - 1, a.level) {
            b -= 1;
        }
        if let Some(t) = a.after
            && limit == Some(b)
            && b > 0
            && self.on(b - 1, a.level)
        {
            // No pause in energy: the change of label marks the onset.
            return (t, true);
        }
        let edge = b == 0 || !self.on(b - 1, a.level);
        let start = (b * SUB_BLOCK as u64) as f32;
        let before = if b > 0 {
            self.fill(b - 1, a.level)
        } else {
            0.0
        };
        let onset = start + (1.0 - self.fill(b, a.level) - before) * SUB_BLOCK as f32;
        (onset.max(0.0) as u64, edge)
    }

    /// Offset of `a`'s tone, located in the sub-blocks around its last labelled window, and
    /// whether energy really fell there.
    fn offset(&self, a: &Active) -> (u64, bool) {
        let fallback = (a.last_hit_end.saturating_sub(HOP as u64), false);
        let first = a.last_hit_end.saturating_sub(WINDOW as u64) / SUB_BLOCK as u64;
        // The tone may run up to 5 ms past the last labelled window, not past the next digit.
        let mut last = ((a.last_hit_end + HOP as u64 / 2) / SUB_BLOCK as u64).min(self.blocks);
        if let Some(t) = a.until {
            last = last.min(t.div_ceil(SUB_BLOCK as u64)).max(first);
        }
        let mut b = last;
        if let Some(t) = a.until {
            // Skip the next digit's onset back to the short pause before it, if there is one.
            while b > first && self.on(b - 1, a.level) {
                b -= 1;
            }
            if b == first {
                // No pause in energy: the change of label marks the offset.
                return (t, true);
            }
        }
        while b > first && !self.on(b - 1, a.level) {
            b -= 1;
        }
        if b == first {
            return fallback;
        }
        let edge = a.until.is_some() || !(self.on(last, a.level) && self.on(last + 1, a.level));
        let j = b - 1; // last tone-like sub-block
        let after = if b < self.blocks {
            self.fill(b, a.level)
        } else {
            0.0
        };
        let end = (b * SUB_BLOCK as u64) as f32;
        let offset = end - (1.0 - self.fill(j, a.level) - after) * SUB_BLOCK as f32;
        (offset.max(0.0) as u64, edge)
    }

    /// Ends the active digit: reports it if it lasted long enough.
    fn finalize(&mut self) -> Option<Digit> {
        let mut a = self.active.take()?;
        a.flush();
        let (start, rose) = a.onset.unwrap_or_else(|| self.onset(&a));
        let (end, fell) = self.offset(&a);
        let end = end.max(start);
        let span_hops = a.last_hit_end.saturating_sub(a.first_hit_end) / HOP as u64 + 1;
        // Two whole windows need 30 ms of tone; a tone-like moment in speech rarely fills them.
        // A drop-out may leave none whole, and the windows straddling it (a phase jump) often
        // lose the label: two labelled hops then suffice, the energy edges vouching for the rest.
        let filled = a.full_hits >= 2 || a.bridged;
        let labelled = a.hits >= 3 || (a.bridged && a.hits >= 2);
        let steady = labelled && filled && 2 * u64::from(a.hits) >= span_hops && a.steady();
        let edges = rose && fell;
        if end - start >= MIN_DURATION && steady && edges {
            metrics::counter!("dialplane_dsp_dtmf_digits_total").increment(1);
            Some(Digit {
                digit: a.digit,
                start,
                end,
            })
        } else {
            None
        }
    }

    /// Reads one hop of the shared spectrum; returns a digit once its tone has ended
    ///
    /// Call once per hop, in order. A digit is reported 25-40 ms after its offset, when the gap
    /// shows it is not a drop-out.
    pub fn on_hop(&mut self, s: &Hop<'_>) -> Option<Digit> {
        let end = s.end_sample();
        let first_new = end.saturating_sub(HOP as u64) / SUB_BLOCK as u64;
        for (i, &e) in s.sub_energies().iter().enumerate() {
            let b = first_new + i as u64;
            self.ring[(b % RING as u64) as usize] = e;
        }
        self.blocks = first_new + SUB_BLOCKS as u64;
        let label = classify(s);
        // A tone starting shows in the newest sub-blocks; a window holding only the tail of the
        // previous tone does not.
        let newest = s.sub_energies().iter().fold(0.0f32, |m, &e| m.max(e));
        let starting = label.filter(|l| newest >= ON_SHARE * l.level);
        let mut out = None;
        if let Some(a) = self.active
            && starting.is_some_and(|l| l.digit != a.digit && l.level >= 0.25 * a.level)
        {
            // Another digit after a pause too short to show in energy: this one has ended. The
            // change happened between the old digit's last labelled window and the new one's
            // first, which the new tone must mostly fill.
            let boundary = (a.last_hit_end + end.saturating_sub(WINDOW as u64)) / 2;
            let boundary = boundary.max(a.first_hit_end.saturating_sub(WINDOW as u64 / 2));
            if let Some(a) = &mut self.active {
                a.until = Some(boundary);
            }
            out = self.finalize();
            self.boundary = Some(boundary);
        }
        if let Some(mut a) = self.active {
            let hit = label.filter(|l| l.digit == a.digit && l.level >= 0.25 * a.level);
            if let Some(l) = &hit {
                // Energy came back after a gap and the digit with it: a drop-out ridden over.
                a.bridged |= a.resumed;
                a.resumed = false;
                a.hits += 1;
                a.misses = 0;
                a.last_hit_end = end;
                a.track(l, end, self.whole(end, l));
            } else {
                a.misses += 1;
            }
            for b in first_new..self.blocks {
                if self.on(b, a.level) {
                    a.resumed |= b > a.last_on_block;
                    a.last_on_block = b + 1;
                }
            }
            if a.onset.is_none() && a.hits >= 4 {
                a.onset = Some(self.onset(&a));
            }
            let gap = self.blocks.saturating_sub(a.last_on_block);
            self.active = Some(a);
            if hit.is_none() && (gap >= GAP_BLOCKS || a.misses >= MAX_MISSES) {
                out = self.finalize();
            }
        }
        if self.active.is_none()
            && let Some(l) = starting
        {
            let mut a = Active {
                digit: l.digit,
                level: l.level,
                first_hit_end: end,
                last_hit_end: end,
                hits: 1,
                misses: 0,
                last_on_block: self.blocks,
                onset: None,
                fit: [Fit::default(); 2],
                queue: [(0.0, 0.0, 0.0, 0); 2],
                queued: 0,
                full_hits: 0,
                bridged: false,
                resumed: false,
                after: self.boundary.take(),
                until: None,
            };
            a.track(&l, end, self.whole(end, &l));
            self.active = Some(a);
        }
        out
    }

    /// End of input: reports a digit still sounding if it qualifies
    pub fn finish(&mut self) -> Option<Digit> {
        self.finalize()
    }
}

/// Samples in `ms` milliseconds at 8 kHz.
fn samples_in(ms: u32) -> usize {
    usize::try_from(u64::from(ms) * u64::from(RATE) / 1000).unwrap_or(usize::MAX)
}

/// One DTMF tone pair to generate
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSpec {
    /// Key, one of `KEYS` (anything else makes silence).
    pub digit: char,
    /// Level of the low-group tone in dBm0.
    pub low_dbm0: f32,
    /// Level of the high-group tone in dBm0.
    pub high_dbm0: f32,
    /// Length of the tone in samples at 8 kHz.
    pub samples: usize,
    /// Factor on the nominal low frequency (1.0 = nominal, 1.015 = +1.5 %).
    pub low_factor: f32,
    /// Factor on the nominal high frequency.
    pub high_factor: f32,
    /// Starting phase of the low tone (radians).
    pub low_phase: f32,
    /// Starting phase of the high tone (radians).
    pub high_phase: f32,
}

impl ToneSpec {
    /// `digit` for `ms` milliseconds at -8 dBm0 (low) and -6 dBm0 (high), nominal frequencies
    pub fn new(digit: char, ms: u32) -> Self {
        Self {
            digit,
            low_dbm0: -8.0,
            high_dbm0: -6.0,
            samples: samples_in(ms),
            low_factor: 1.0,
            high_factor: 1.0,
            low_phase: 0.0,
            high_phase: 0.0,
        }
    }

    /// Sets both levels (dBm0)
    pub fn levels(mut self, low_dbm0: f32, high_dbm0: f32) -> Self {
        self.low_dbm0 = low_dbm0;
        self.high_dbm0 = high_dbm0;
        self
    }

    /// Sets both frequency factors
    pub fn deviation(mut self, low_factor: f32, high_factor: f32) -> Self {
        self.low_factor = low_factor;
        self.high_factor = high_factor;
        self
    }

    /// Sets both starting phases (radians)
    pub fn phases(mut self, low_phase: f32, high_phase: f32) -> Self {
        self.low_phase = low_phase;
        self.high_phase = high_phase;
        self
    }

    /// Row and column of the digit in [`KEYS`]
    pub fn position(digit: char) -> Option<(usize, usize)> {
        KEYS.iter()
            .enumerate()
            .find_map(|(r, row)| row.iter().position(|&k| k == digit).map(|c| (r, c)))
    }
}

/// Streaming DTMF generator: writes one tone pair into caller buffers, resuming across calls
#[derive(Debug, Clone)]
pub struct DtmfGenerator {
    /// Per tone: angular step per sample, amplitude, starting phase.
    tones: [(f64, f64, f64); 2],
    done: usize,
    total: usize,
}

impl DtmfGenerator {
    /// A generator for `spec`
    pub fn new(spec: &ToneSpec) -> Self {
        let tau = 2.0 * std::f64::consts::PI;
        let tone = |f: f32, factor: f32, level: f32, phase: f32| {
            (
                tau * f64::from(f * factor) / f64::from(RATE),
                f64::from(dbm0_amplitude(level)),
                f64::from(phase),
            )
        };
        let (tones, total) = match ToneSpec::position(spec.digit) {
            Some((r, c)) => (
                [
                    tone(LOW_HZ[r], spec.low_factor, spec.low_dbm0, spec.low_phase),
                    tone(
                        HIGH_HZ[c],
                        spec.high_factor,
                        spec.high_dbm0,
                        spec.high_phase,
                    ),
                ],
                spec.samples,
            ),
            None => ([(0.0, 0.0, 0.0); 2], spec.samples),
        };
        Self {
            tones,
            done: 0,
            total,
        }
    }

    /// Samples still to come
    pub fn remaining(&self) -> usize {
        self.total - self.done
    }

    /// Writes the next samples into `out` (saturating at full scale like a 16-bit codec);
    /// returns how many were written: fewer than `out.len()` only when the tone is over
    pub fn fill(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.remaining());
        for (i, o) in out[..n].iter_mut().enumerate() {
            let t = (self.done + i) as f64;
            let v: f64 = self
                .tones
                .iter()
                .map(|&(step, amp, phase)| amp * (step * t + phase).sin())
                .sum();
            *o = v.clamp(-1.0, 1.0) as f32;
        }
        self.done += n;
        n
    }
}

/// A whole test or announcement sequence: each tone followed by its pause (samples of silence)
pub fn sequence(parts: &[(ToneSpec, usize)]) -> Vec<f32> {
    let len = parts.iter().map(|(t, gap)| t.samples + gap).sum();
    let mut out = vec![0.0; len];
    let mut at = 0;
    for (spec, gap) in parts {
        at += DtmfGenerator::new(spec).fill(&mut out[at..at + spec.samples]);
        at += gap;
    }
    out
}

/// `digits` at default levels, each `on_ms` long and followed by `off_ms` of silence
pub fn digits(digits: &str, on_ms: u32, off_ms: u32) -> Vec<f32> {
    let gap = samples_in(off_ms);
    let parts: Vec<(ToneSpec, usize)> = digits
        .chars()
        .map(|d| (ToneSpec::new(d, on_ms), gap))
        .collect();
    sequence(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrum::Spectrum;

    fn run(x: &[f32]) -> Vec<Digit> {
        let mut s = Spectrum::new();
        let mut r = DtmfReceiver::new();
        let mut out = Vec::new();
        s.push(x, |s| out.extend(r.on_hop(s)));
        out.extend(r.finish());
        out
    }

    #[test]
    fn ratio_constants_match_their_decibels() {
        let db = |r: f32| 10.0 * r.log10();
        assert!((crate::spectrum::dbm0(MIN_LEVEL_MS) - MIN_LEVEL_DBM0).abs() < 0.01);
        assert!((db(MAX_TWIST) - MAX_TWIST_DB).abs() < 0.01);
        assert!((db(MAX_REVERSE_TWIST) - MAX_REVERSE_TWIST_DB).abs() < 0.01);
    }

    #[test]
    fn streaming_fill_matches_one_shot() {
        let spec = ToneSpec::new('5', 100).phases(0.3, 1.2);
        let whole = sequence(&[(spec, 0)]);
        let mut g = DtmfGenerator::new(&spec);
        let mut parts = vec![0.0; whole.len() + 7];
        let mut at = 0;
        while g.remaining() > 0 {
            at += g.fill(&mut parts[at..(at + 33).min(whole.len() + 7)]);
        }
        assert_eq!(at, whole.len());
        assert_eq!(&parts[..at], &whole[..]);
    }

    #[test]
    fn a_string_of_digits() {
        let mut x = vec![0.0; 400];
        x.extend(digits("123A456B789C*0#D", 50, 50));
        let got: String = run(&x).iter().map(|d| d.digit).collect();
        assert_eq!(got, "123A456B789C*0#D");
    }
}
