//! G.711 µ-law and A-law, bit-exact with ITU-T G.711's tables
//!
//! Encoders take 16-bit linear samples and drop the bits G.711 does not carry (µ-law is 14-bit,
//! A-law 13-bit); decoders return the 16-bit value at the centre of each code's interval.

/// µ-law bias added before segment search (33 in 14-bit units, 0x84 in 16-bit units).
const ULAW_BIAS: i32 = 0x84;
/// Largest 14-bit magnitude µ-law represents.
const ULAW_CLIP: i32 = 8159;

const fn ulaw_decode_one(code: u8) -> i16 {
    let u = !code;
    let mantissa = ((u & 0x0F) as i32) << 3;
    let exponent = (u & 0x70) >> 4;
    let t = (mantissa + ULAW_BIAS) << exponent;
    (if u & 0x80 != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

const fn alaw_decode_one(code: u8) -> i16 {
    let a = code ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_one(i as u8)
        } else {
            ulaw_decode_one(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = table(false);
static ALAW_TABLE: [i16; 256] = table(true);

const fn table_f32(t: &[i16; 256]) -> [f32; 256] {
    let mut f = [0.0; 256];
    let mut i = 0;
    while i < 256 {
        f[i] = t[i] as f32 / 32768.0;
        i += 1;
    }
    f
}

/// The decoders' outputs at full scale 1.0, so decoding a frame is one load per sample.
static ULAW_F32: [f32; 256] = table_f32(&ULAW_TABLE);
static ALAW_F32: [f32; 256] = table_f32(&ALAW_TABLE);

/// Encodes one 16-bit sample as µ-law
///
/// Branch-free: the segment is the position of the biased magnitude's top bit, so no search.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    let v = i32::from(sample) >> 2;
    // 0x7F for negative samples, 0xFF for the rest (the sign bit is inverted on the wire).
    let mask = 0xFF ^ (((v >> 31) & 0x80) as u8);
    // Biased magnitude, kept within segment 7 (the largest, ULAW_CLIP + 33 = 0x2000, would be
    // segment 8, whose clipped code is segment 7's last one anyway).
    let v = v.abs().min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let v = v.min(0x1FFF) as u32;
    // Segment e holds magnitudes with their top bit at 5 + e (segment 0 also everything below).
    let seg = 31 - (v | 0x3F).leading_zeros() - 5;
    (((seg << 4) | ((v >> (seg + 1)) & 0x0F)) as u8) ^ mask
}

/// Decodes one µ-law code to 16-bit linear
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_TABLE[usize::from(code)]
}

/// Encodes one 16-bit sample as A-law
///
/// Branch-free, like [`ulaw_encode`]; the 13-bit magnitude never exceeds segment 7.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let v = i32::from(sample) >> 3;
    // 0xD5 for non-negative samples, 0x55 for negative ones, whose magnitude is -v - 1 = !v.
    let neg = v >> 31;
    let mask = 0xD5 ^ ((neg & 0x80) as u8);
    let v = (v ^ neg) as u32;
    // Segment e >= 1 holds magnitudes with their top bit at 4 + e; segment 0 everything below.
    let seg = 31 - (v | 0x1F).leading_zeros() - 4;
    let shift = seg.max(1);
    (((seg << 4) | ((v >> shift) & 0x0F)) as u8) ^ mask
}

/// Decodes one A-law code to 16-bit linear
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_TABLE[usize::from(code)]
}

/// The two G.711 companding laws
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Law {
    /// µ-law (PCMU, RTP payload type 0)
    Ulaw,
    /// A-law (PCMA, RTP payload type 8)
    Alaw,
}

impl Law {
    /// Encodes one 16-bit sample
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => ulaw_encode(sample),
            Law::Alaw => alaw_encode(sample),
        }
    }

    /// Decodes one code to 16-bit linear
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_decode(code),
            Law::Alaw => alaw_decode(code),
        }
    }

    /// Encodes `pcm` into `out` (up to the shorter length)
    #[inline]
    pub fn encode_slice(self, pcm: &[i16], out: &mut [u8]) {
        match self {
            Law::Ulaw => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = ulaw_encode(s)),
            Law::Alaw => out
                .iter_mut()
                .zip(pcm)
                .for_each(|(o, &s)| *o = alaw_encode(s)),
        }
    }

    /// Decodes `codes` into `out` (up to the shorter length)
    #[inline]
    pub fn decode_slice(self, codes: &[u8], out: &mut [i16]) {
        let table = match self {
            Law::Ulaw => &ULAW_TABLE,
            Law::Alaw => &ALAW_TABLE,
        };
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = table[usize::from(c)];
        }
    }

    /// Decodes codes into `out` as full-scale `f32` (the detectors' input); lengths must match
    pub fn decode_f32(self, codes: &[u8], out: &mut [f32]) {
        let table = match self {
            Law::Ulaw => &ULAW_F32,
            Law::Alaw => &ALAW_F32,
        };
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = table[usize::from(c)];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_matches_g711_table_points() {
        // G.711 Table 2a: code words with their decoder outputs (14-bit values scaled by 4).
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0xFE), 8);
        assert_eq!(ulaw_decode(0xF0), 120);
        assert_eq!(ulaw_decode(0x90), 15996);
        assert_eq!(ulaw_decode(0x8F), 16764);
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_matches_g711_table_points() {
        // G.711 Table 1a: even bits inverted (0x55), sign 1 = positive.
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    /// Decoder outputs from G.711's own definition, written independently of the code above:
    /// µ-law (Table 2): magnitude ((2m + 33) << e) - 33 in 14-bit units, bits inverted on the
    /// wire; A-law (Table 1): 2m + 1 in segment 0, (2m + 33) << (e - 1) above, in 13-bit units,
    /// even bits inverted.
    #[test]
    fn all_256_codes_decode_as_g711_defines() {
        for code in 0..=255u8 {
            let u = !code;
            let (sign, e, m) = (u & 0x80, i32::from((u >> 4) & 7), i32::from(u & 0x0F));
            let magnitude = (((2 * m + 33) << e) - 33) * 4;
            let want = if sign != 0 { -magnitude } else { magnitude };
            assert_eq!(i32::from(ulaw_decode(code)), want, "µ-law {code:#04x}");

            let a = code ^ 0x55;
            let (sign, e, m) = (a & 0x80, i32::from((a >> 4) & 7), i32::from(a & 0x0F));
            let magnitude = if e == 0 {
                2 * m + 1
            } else {
                (2 * m + 33) << (e - 1)
            } * 8;
            let want = if sign != 0 { magnitude } else { -magnitude };
            assert_eq!(i32::from(alaw_decode(code)), want, "A-law {code:#04x}");
        }
    }

    /// The encoder puts every sample in the decision interval G.711 gives its code word.
    /// µ-law, segment e, mantissa m: 14-bit magnitudes from ((2m + 32) << e) - 33 up to
    /// ((2m + 34) << e) - 33. A-law: 13-bit magnitudes from 2m up to 2m + 2 in segment 0, from
    /// (2m + 32) << (e - 1) up to (2m + 34) << (e - 1) above. Past the last interval it clips.
    #[test]
    fn encoders_use_the_g711_decision_intervals() {
        for s in i16::MIN..=i16::MAX {
            let x = i32::from(s);
            let u = !ulaw_encode(s);
            let (e, m) = (i32::from((u >> 4) & 7), i32::from(u & 0x0F));
            // The sign bit set (after inversion) means negative; its magnitude is -floor(x / 4).
            let mag = if u & 0x80 != 0 { -(x >> 2) } else { x >> 2 };
            let (lo, hi) = (((2 * m + 32) << e) - 33, ((2 * m + 34) << e) - 33);
            assert!(mag >= lo && (mag < hi || (e, m) == (7, 15)), "µ-law {s}");

            let a = alaw_encode(s) ^ 0x55;
            let (e, m) = (i32::from((a >> 4) & 7), i32::from(a & 0x0F));
            let mag = if a & 0x80 != 0 { x >> 3 } else { -(x >> 3) - 1 };
            let (lo, hi) = if e == 0 {
                (2 * m, 2 * m + 2)
            } else {
                ((2 * m + 32) << (e - 1), (2 * m + 34) << (e - 1))
            };
            assert!(mag >= lo && (mag < hi || (e, m) == (7, 15)), "A-law {s}");
        }
    }

    #[test]
    fn slices_match_one_sample_at_a_time() {
        let pcm: Vec<i16> = (i16::MIN..=i16::MAX).step_by(3).collect();
        for law in [Law::Ulaw, Law::Alaw] {
            let mut codes = vec![0u8; pcm.len()];
            law.encode_slice(&pcm, &mut codes);
            let mut back = vec![0i16; pcm.len()];
            law.decode_slice(&codes, &mut back);
            for ((&s, &c), &d) in pcm.iter().zip(&codes).zip(&back) {
                assert_eq!(c, law.encode(s), "{law:?} {s}");
                assert_eq!(d, law.decode(c), "{law:?} {c:#04x}");
            }
        }
    }

    #[test]
    fn every_code_round_trips() {
        for code in 0..=255u8 {
            if code != 0x7F {
                // 0x7F is µ-law's negative zero; it encodes back as positive zero 0xFF.
                assert_eq!(ulaw_encode(ulaw_decode(code)), code, "ulaw {code:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(code)), code, "alaw {code:#04x}");
        }
    }

    #[test]
    fn encoders_are_monotonic() {
        for law in [Law::Ulaw, Law::Alaw] {
            let mut prev = law.decode(law.encode(i16::MIN));
            for s in i16::MIN..=i16::MAX {
                let d = law.decode(law.encode(s));
                assert!(d >= prev, "{law:?} not monotonic at {s}");
                // Quantisation error stays within one step of the segment (max step 1024 / 2).
                assert!(
                    (i32::from(d) - i32::from(s)).abs() <= 1024,
                    "{law:?} {s} -> {d}"
                );
                prev = d;
            }
        }
    }
}
