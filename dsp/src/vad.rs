//! Speech/silence detector with a noise floor that adapts, read from the shared spectrum
//!
//! The level of each hop is the mean square of its window in the speech band (100–3400 Hz,
//! so hum and DC do not count). The noise floor is the minimum of that level over the last
//! ~2 s ("minimum statistics"): speech always has pauses and stop closures within two
//! seconds, so the minimum settles on the line noise whatever its level, within one hop of a
//! noisy start and within 2 s of a drop or a rise. A hop is active when it is
//! [`MARGIN_DB`] above the floor and above [`ABSOLUTE_MIN_DBM0`]; speech starts after
//! [`ONSET_HOPS`] active hops in a row and is held for [`HANGOVER_HOPS`] after the last
//! active hop, which bridges the gaps between words.

use crate::spectrum::{self, Hop};

/// A hop must be this far above the noise floor to count as speech, dB. Stationary noise
/// in one 20 ms window varies by about ±1.5 dB around its mean, and the windowed minimum sits
/// about 1.5 dB below the mean, so 9 dB keeps line noise silent while a talker at
/// −35 dBm0 over a −55 dBm0 floor is 20 dB clear.
pub const MARGIN_DB: f32 = 9.0;
/// Nothing quieter than this is speech, whatever the floor, dBm0.
pub const ABSOLUTE_MIN_DBM0: f32 = -52.0;
/// Active hops in a row that start speech (20 ms: a click is not speech).
pub const ONSET_HOPS: u32 = 2;
/// Hops speech is held after the last active hop (150 ms: gaps between words).
pub const HANGOVER_HOPS: u32 = 15;
/// Lowest floor reported, dBm0 (digital silence).
pub const FLOOR_MIN_DBM0: f32 = -80.0;

/// The same constants as mean squares (full-scale units), compared without logarithms.
const MARGIN: f32 = 7.943_282;
const ABSOLUTE_MIN: f32 = spectrum::DBM0_MEAN_SQUARE * 6.309_573e-6;
const FLOOR_MIN: f32 = spectrum::DBM0_MEAN_SQUARE * 1e-8;
const LOW_BIN: usize = 2;
const HIGH_BIN: usize = 68;
/// Hops per block of the minimum tracker (250 ms).
const BLOCK_HOPS: u32 = 25;
/// Blocks kept: the floor is the minimum over the last 7 full blocks and the current one.
const BLOCKS: usize = 8;

/// Voice activity detector: feed it every hop of a [`Spectrum`]
#[derive(Debug, Clone)]
pub struct Vad {
    /// Minimum level (mean square) of each of the last full blocks.
    blocks: [f32; BLOCKS],
    next_block: usize,
    current_min: f32,
    hops_in_block: u32,
    floor: f32,
    run: u32,
    hangover: u32,
    speech: bool,
    active: bool,
    level: f32,
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    /// A detector that has heard nothing yet
    pub fn new() -> Self {
        Self {
            blocks: [f32::INFINITY; BLOCKS],
            next_block: 0,
            current_min: f32::INFINITY,
            hops_in_block: 0,
            floor: FLOOR_MIN,
            run: 0,
            hangover: 0,
            speech: false,
            active: false,
            level: FLOOR_MIN,
        }
    }

    /// Analyses one hop; true while speech is heard (including the hangover)
    pub fn on_hop(&mut self, s: &Hop<'_>) -> bool {
        let ms = s.band_mean_square(LOW_BIN, HIGH_BIN);
        // NaN or infinite input is treated as silence rather than poisoning the floor.
        let level = if ms.is_finite() {
            ms.max(FLOOR_MIN)
        } else {
            FLOOR_MIN
        };
        self.level = level;
        self.current_min = self.current_min.min(level);
        self.hops_in_block += 1;
        if self.hops_in_block == BLOCK_HOPS {
            self.blocks[self.next_block] = self.current_min;
            self.next_block = (self.next_block + 1) % BLOCKS;
            self.current_min = f32::INFINITY;
            self.hops_in_block = 0;
        }
        let floor = self
            .blocks
            .iter()
            .copied()
            .fold(self.current_min, f32::min)
            .max(FLOOR_MIN);
        self.floor = floor;
        self.active = level >= (floor * MARGIN).max(ABSOLUTE_MIN);
        if self.active {
            self.run += 1;
            if self.run >= ONSET_HOPS || self.speech {
                self.speech = true;
                self.hangover = HANGOVER_HOPS;
            }
        } else {
            self.run = 0;
            self.hangover = self.hangover.saturating_sub(1);
            if self.hangover == 0 {
                self.speech = false;
            }
        }
        self.speech
    }

    /// The current noise floor estimate, dBm0
    pub fn noise_floor_dbm0(&self) -> f32 {
        spectrum::dbm0(self.floor)
    }

    /// Level of the latest hop in the speech band, dBm0
    pub fn level_dbm0(&self) -> f32 {
        spectrum::dbm0(self.level)
    }

    /// True if the latest hop itself was above the threshold (no onset or hangover smoothing)
    pub fn active(&self) -> bool {
        self.active
    }
}
