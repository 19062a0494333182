//! Dub-track mixing: saturating sums of N tracks with a gain per track
//!
//! Gains are given in dB and limited to ±[`MAX_GAIN_DB`]. Sums saturate at full scale: `f32`
//! outputs are clamped to `-1.0..=1.0`, `i16` outputs to `i16::MIN..=i16::MAX`. A track shorter
//! than the output frame is silent for the rest of it. Nothing here allocates after
//! [`Mixer::new`], and no input (NaN included) panics.

/// Largest gain magnitude accepted, in dB.
pub const MAX_GAIN_DB: f32 = 50.0;

/// Why a gain string was refused
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MixError {
    /// Not a number (optionally followed by `dB`).
    #[error("not a gain in dB: {0:?}")]
    Invalid(String),
    /// A number outside ±[`MAX_GAIN_DB`].
    #[error("gain {0} dB is outside ±50 dB")]
    OutOfRange(f32),
}

/// Linear amplitude factor for a gain in dB, with the gain clamped to ±[`MAX_GAIN_DB`]
///
/// NaN is taken as 0 dB (unity).
pub fn db_to_gain(db: f32) -> f32 {
    if db.is_nan() {
        return 1.0;
    }
    10f32.powf(db.clamp(-MAX_GAIN_DB, MAX_GAIN_DB) / 20.0)
}

/// Parses a gain such as `"-6 dB"`, `"+3dB"`, `"6"` or `"-2.5 db"` into dB
///
/// The unit is optional and case-insensitive; surrounding spaces are ignored. Values outside
/// ±[`MAX_GAIN_DB`] are [`MixError::OutOfRange`]; anything else unparsable (including `inf`
/// and `NaN`) is [`MixError::Invalid`].
pub fn parse_gain(s: &str) -> Result<f32, MixError> {
    let t = s.trim();
    let number = match t.len().checked_sub(2) {
        Some(at) if t.is_char_boundary(at) && t[at..].eq_ignore_ascii_case("db") => {
            t[..at].trim_end()
        }
        _ => t,
    };
    let invalid = || MixError::Invalid(s.to_owned());
    // Only digits, sign, point and exponent: rejects "inf", "nan" and the like up front.
    if number.is_empty()
        || !number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return Err(invalid());
    }
    let db: f32 = number.parse().map_err(|_| invalid())?;
    if !db.is_finite() || db.abs() > MAX_GAIN_DB {
        return Err(MixError::OutOfRange(db));
    }
    Ok(db)
}

/// Clamps a sum to the `f32` full-scale range (NaN becomes silence)
fn saturate(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-1.0, 1.0) }
}

/// Mixes `tracks` into `out` with linear `gains` (a missing gain is unity), saturating
///
/// `out` is overwritten; its length is the frame length.
pub fn mix_f32(tracks: &[&[f32]], gains: &[f32], out: &mut [f32]) {
    out.fill(0.0);
    for (i, track) in tracks.iter().enumerate() {
        let g = gains.get(i).copied().unwrap_or(1.0);
        for (o, &x) in out.iter_mut().zip(track.iter()) {
            *o += x * g;
        }
    }
    for o in out.iter_mut() {
        *o = saturate(*o);
    }
}

/// Fraction bits of the fixed-point gains [`mix_i16`] multiplies by.
/// Q20 keeps -50 dB (about 3316 steps) within 0.02 % of its value.
const GAIN_SHIFT: u32 = 20;

/// Linear gain in Q20; NaN is silence, and anything past ±32 768 (which saturates every
/// non-zero sample anyway) is held there so no sum of fewer than 8192 tracks overflows.
fn gain_fixed(g: f32) -> i64 {
    // `as` maps NaN to 0.
    (g.clamp(-32768.0, 32768.0) * (1u32 << GAIN_SHIFT) as f32).round() as i64
}

/// Mixes 16-bit `tracks` into `out` with linear `gains` (a missing gain is unity), saturating
///
/// `out` is overwritten; its length is the frame length. Integer arithmetic: each gain is
/// taken in Q20 (2^-20 steps), sums are rounded to the nearest integer (halves upward).
pub fn mix_i16(tracks: &[&[i16]], gains: &[f32], out: &mut [i16]) {
    // Accumulate in a fixed-size stack block so no frame length needs a heap buffer.
    const BLOCK: usize = 256;
    let mut acc = [0i64; BLOCK];
    for (start, out_block) in (0..).step_by(BLOCK).zip(out.chunks_mut(BLOCK)) {
        let acc = &mut acc[..out_block.len()];
        acc.fill(1 << (GAIN_SHIFT - 1));
        for (i, track) in tracks.iter().enumerate() {
            let g = gain_fixed(gains.get(i).copied().unwrap_or(1.0));
            let part = track.get(start..).unwrap_or(&[]);
            for (a, &x) in acc.iter_mut().zip(part) {
                *a += i64::from(x) * g;
            }
        }
        for (o, &a) in out_block.iter_mut().zip(acc.iter()) {
            *o = (a >> GAIN_SHIFT).clamp(i16::MIN.into(), i16::MAX.into()) as i16;
        }
    }
}

/// Per-track gains for a fixed number of dub tracks
#[derive(Debug, Clone)]
pub struct Mixer {
    gains_db: Vec<f32>,
    gains: Vec<f32>,
}

impl Mixer {
    /// A mixer for `tracks` tracks, all at 0 dB
    pub fn new(tracks: usize) -> Self {
        Self {
            gains_db: vec![0.0; tracks],
            gains: vec![1.0; tracks],
        }
    }

    /// Number of tracks
    pub fn tracks(&self) -> usize {
        self.gains.len()
    }

    /// Sets track `track`'s gain in dB (clamped to ±[`MAX_GAIN_DB`], NaN = 0 dB); returns the
    /// gain applied, or `None` if there is no such track
    pub fn set_gain_db(&mut self, track: usize, db: f32) -> Option<f32> {
        let db = if db.is_nan() {
            0.0
        } else {
            db.clamp(-MAX_GAIN_DB, MAX_GAIN_DB)
        };
        *self.gains_db.get_mut(track)? = db;
        self.gains[track] = db_to_gain(db);
        Some(db)
    }

    /// Track `track`'s gain in dB, or `None` if there is no such track
    pub fn gain_db(&self, track: usize) -> Option<f32> {
        self.gains_db.get(track).copied()
    }

    /// Mixes `tracks` (at most [`Mixer::tracks`] are used) into `out`, saturating at ±1.0
    pub fn mix(&self, tracks: &[&[f32]], out: &mut [f32]) {
        let n = tracks.len().min(self.gains.len());
        mix_f32(&tracks[..n], &self.gains, out);
    }

    /// Mixes 16-bit `tracks` (at most [`Mixer::tracks`] are used) into `out`, saturating
    pub fn mix_i16(&self, tracks: &[&[i16]], out: &mut [i16]) {
        let n = tracks.len().min(self.gains.len());
        mix_i16(&tracks[..n], &self.gains, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn db_to_gain_values_and_bounds() {
        assert_eq!(db_to_gain(0.0), 1.0);
        assert!((db_to_gain(-6.0) - 0.5).abs() < 0.005);
        assert!((db_to_gain(20.0) - 10.0).abs() < 1e-4);
        assert!((db_to_gain(50.0) - 316.227_77).abs() < 0.01);
        assert!((db_to_gain(-50.0) - 0.003_162_277_7).abs() < 1e-7);
        assert_eq!(db_to_gain(80.0), db_to_gain(50.0));
        assert_eq!(db_to_gain(-80.0), db_to_gain(-50.0));
        assert_eq!(db_to_gain(f32::INFINITY), db_to_gain(50.0));
        assert_eq!(db_to_gain(f32::NEG_INFINITY), db_to_gain(-50.0));
        assert_eq!(db_to_gain(f32::NAN), 1.0);
    }

    #[test]
    fn parse_gain_accepts_common_spellings() {
        assert_eq!(parse_gain("-6 dB"), Ok(-6.0));
        assert_eq!(parse_gain("+3dB"), Ok(3.0));
        assert_eq!(parse_gain("6"), Ok(6.0));
        assert_eq!(parse_gain("  -2.5 db "), Ok(-2.5));
        assert_eq!(parse_gain("0DB"), Ok(0.0));
        assert_eq!(parse_gain("50 dB"), Ok(50.0));
        assert_eq!(parse_gain("-50"), Ok(-50.0));
        assert_eq!(parse_gain("1e1 dB"), Ok(10.0));
    }

    #[test]
    fn parse_gain_rejects_bad_strings() {
        for bad in [
            "", " ", "dB", "abc", "6 dBm", "6 d", "--6", "6 6", "inf", "-inf dB", "NaN", "+",
            "db6", "6dB dB", "é", "6é", "ldB",
        ] {
            assert!(
                matches!(parse_gain(bad), Err(MixError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert_eq!(parse_gain("50.5 dB"), Err(MixError::OutOfRange(50.5)));
        assert_eq!(parse_gain("-51"), Err(MixError::OutOfRange(-51.0)));
        assert!(matches!(
            parse_gain("1e39"),
            Err(MixError::OutOfRange(x)) if x.is_infinite()
        ));
    }

    #[test]
    fn zero_db_is_identity() {
        let x: Vec<f32> = (0..160).map(|i| (i as f32 * 0.1).sin() * 0.7).collect();
        let mut out = [0.0; 160];
        let m = Mixer::new(1);
        m.mix(&[&x], &mut out);
        assert_eq!(out[..], x[..]);
        let xi: Vec<i16> = (i16::MIN..=i16::MAX).step_by(7).collect();
        let mut outi = vec![0i16; xi.len()];
        m.mix_i16(&[&xi], &mut outi);
        assert_eq!(outi, xi);
    }

    #[test]
    fn minus_six_db_halves_amplitude() {
        let mut m = Mixer::new(1);
        assert_eq!(m.set_gain_db(0, -6.0), Some(-6.0));
        let x = [0.8f32, -0.8, 0.4, -0.4];
        let mut out = [0.0; 4];
        m.mix(&[&x], &mut out);
        for (o, x) in out.iter().zip(x) {
            assert!((o / x - 0.5).abs() < 0.005, "{o} vs {x}");
        }
        let xi = [20000i16, -20000, 1000, -1000];
        let mut outi = [0i16; 4];
        m.mix_i16(&[&xi], &mut outi);
        for (o, x) in outi.iter().zip(xi) {
            assert!(
                (f32::from(*o) / f32::from(x) - 0.5).abs() < 0.005,
                "{o} vs {x}"
            );
        }
    }

    #[test]
    fn sums_saturate_at_full_scale() {
        let a = [0.9f32, -0.9, 0.5, 1.0];
        let b = [0.9f32, -0.9, -0.25, 1.0];
        let mut out = [0.0; 4];
        Mixer::new(2).mix(&[&a, &b], &mut out);
        assert_eq!(out, [1.0, -1.0, 0.25, 1.0]);

        let ai = [30000i16, -30000, 100, i16::MAX];
        let bi = [30000i16, -30000, -50, i16::MAX];
        let mut outi = [0i16; 4];
        Mixer::new(2).mix_i16(&[&ai, &bi], &mut outi);
        assert_eq!(outi, [i16::MAX, i16::MIN, 50, i16::MAX]);

        // +50 dB on a small signal saturates; -50 dB on full scale is about 104.
        let mut m = Mixer::new(1);
        assert_eq!(m.set_gain_db(0, 50.0), Some(50.0));
        m.mix_i16(&[&[200i16, -200, 100]], &mut outi[..3]);
        assert_eq!(outi[..3], [i16::MAX, i16::MIN, 31623]);
        assert_eq!(m.set_gain_db(0, -50.0), Some(-50.0));
        m.mix_i16(&[&[i16::MAX, i16::MIN]], &mut outi[..2]);
        assert_eq!(outi[..2], [104, -104]);
    }

    /// The fixed-point gains stay within one step of the exact rounded sum.
    #[test]
    fn integer_mix_matches_exact_arithmetic() {
        let a: Vec<i16> = (i16::MIN..=i16::MAX).step_by(5).collect();
        let b: Vec<i16> = a.iter().rev().map(|x| x / 3).collect();
        let mut out = vec![0i16; a.len()];
        for db in [-50.0f32, -20.0, -6.0, -0.5, 0.0, 3.0, 12.0] {
            let gains = [db_to_gain(db), db_to_gain(-db / 2.0)];
            mix_i16(&[&a, &b], &gains, &mut out);
            for ((&o, &x), &y) in out.iter().zip(&a).zip(&b) {
                let exact = (f64::from(x) * f64::from(gains[0])
                    + f64::from(y) * f64::from(gains[1]))
                .round()
                .clamp(-32768.0, 32767.0);
                assert!(
                    (f64::from(o) - exact).abs() <= 1.0,
                    "{db} dB: {x} + {y} -> {o}"
                );
            }
        }
    }

    #[test]
    fn gains_are_clamped_to_fifty_db() {
        let mut m = Mixer::new(2);
        assert_eq!(m.set_gain_db(0, 70.0), Some(50.0));
        assert_eq!(m.set_gain_db(1, -70.0), Some(-50.0));
        assert_eq!(m.set_gain_db(1, f32::NAN), Some(0.0));
        assert_eq!(m.set_gain_db(2, 0.0), None);
        assert_eq!(m.gain_db(0), Some(50.0));
        assert_eq!(m.gain_db(2), None);
    }

    #[test]
    fn ragged_tracks_and_odd_inputs_do_not_panic() {
        let m = Mixer::new(2);
        let mut out = [9.0f32; 6];
        m.mix(&[&[0.5, 0.5], &[0.25; 10], &[1.0; 6]], &mut out);
        assert_eq!(out, [0.75, 0.75, 0.25, 0.25, 0.25, 0.25]);
        m.mix(&[], &mut out);
        assert_eq!(out, [0.0; 6]);
        m.mix(
            &[&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]],
            &mut out[..3],
        );
        assert_eq!(out[..3], [0.0, 1.0, -1.0]);
        let mut outi = [7i16; 600];
        m.mix_i16(&[&[1i16; 300], &[2i16; 600]], &mut outi);
        assert!(outi[..300].iter().all(|&v| v == 3) && outi[300..].iter().all(|&v| v == 2));
        mix_i16(&[&[i16::MAX; 4]], &[f32::NAN], &mut outi[..4]);
        assert_eq!(outi[..4], [0; 4]);
        mix_f32(&[&[0.5; 3]], &[], &mut out[..0]);
    }
}
