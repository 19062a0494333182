//! The player: shared 8 kHz PCM cut into 20 ms frames on the leg's own clock.
//!
//! The samples stay in the caller's `Arc` (one announcement can play on many legs at once); the
//! player keeps only a position. The last frame of a play that is not looped is padded with
//! silence.

use std::sync::Arc;
use std::time::Instant;

use super::{FRAME_SAMPLES, Pacer, Voice};

/// One play in progress.
#[derive(Debug)]
pub(crate) struct Player {
    samples: Arc<[i16]>,
    /// Next sample to play.
    pos: usize,
    looped: bool,
    voice: Voice,
    pacer: Pacer,
    /// The next frame is the play's first (marker bit).
    first: bool,
    done: bool,
}

impl Player {
    /// Start playing at `now` (the first frame is due at once); `samples` is not empty.
    pub(crate) fn new(now: Instant, voice: Voice, samples: Arc<[i16]>, looped: bool) -> Self {
        let mut pacer = Pacer::default();
        pacer.start(now);
        Player {
            samples,
            pos: 0,
            looped,
            voice,
            pacer,
            first: true,
            done: false,
        }
    }

    /// The leg's codec.
    pub(crate) fn voice(&self) -> Voice {
        self.voice
    }

    /// Go on in another codec.
    pub(crate) fn set_voice(&mut self, voice: Voice) {
        self.voice = voice;
    }

    /// When the next frame is due (`None` once done).
    pub(crate) fn next(&self) -> Option<Instant> {
        self.pacer.next()
    }

    /// No frame before `until`; the play pauses rather than skipping samples.
    pub(crate) fn hold(&mut self, until: Instant) {
        self.pacer.hold(until);
    }

    /// The last frame was produced (not looped, end of samples).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// The frame due at `now`, if any, into `pcm`: its deadline and marker.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        pcm: &mut [i16; FRAME_SAMPLES],
    ) -> Option<(Instant, bool)> {
        if self.done {
            return None;
        }
        let deadline = self.pacer.due(now)?;
        let mut filled = 0;
        while filled < FRAME_SAMPLES {
            if self.pos == self.samples.len() {
                if !self.looped {
                    pcm[filled..].fill(0);
                    break;
                }
                self.pos = 0;
            }
            let n = (FRAME_SAMPLES - filled).min(self.samples.len() - self.pos);
            pcm[filled..filled + n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        if !self.looped && self.pos == self.samples.len() {
            self.done = true;
            self.pacer.stop();
        }
        Some((deadline, std::mem::take(&mut self.first)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::FRAME;
    use dsp::g711::Law;
    use std::time::Duration;

    fn ramp(n: usize) -> Arc<[i16]> {
        (0..n).map(|i| i as i16).collect()
    }

    #[test]
    fn one_second_is_fifty_frames_on_exact_deadlines() {
        let t0 = Instant::now();
        let mut p = Player::new(t0, Voice::Law(Law::Ulaw), ramp(8000), false);
        let mut pcm = [0; FRAME_SAMPLES];
        let mut deadlines = Vec::new();
        let mut now = t0;
        while !p.is_done() {
            // Nothing before the deadline.
            assert_eq!(p.next(), Some(t0 + FRAME * deadlines.len() as u32));
            if now > t0 {
                assert!(p.poll(now - Duration::from_micros(1), &mut pcm).is_none());
            }
            let (at, marker) = p.poll(now, &mut pcm).unwrap();
            assert_eq!(marker, deadlines.is_empty());
            let k = deadlines.len();
            assert_eq!(pcm[0], (k * FRAME_SAMPLES) as i16);
            assert_eq!(pcm[159], (k * FRAME_SAMPLES + 159) as i16);
            deadlines.push(at);
            now = p.next().unwrap_or(now);
        }
        assert_eq!(deadlines.len(), 50);
        for (k, at) in deadlines.iter().enumerate() {
            assert_eq!(*at, t0 + FRAME * k as u32);
        }
        assert!(p.poll(t0 + Duration::from_secs(5), &mut pcm).is_none());
    }

    #[test]
    fn looped_wraps_inside_a_frame_and_short_tail_is_padded() {
        let t0 = Instant::now();
        let mut p = Player::new(t0, Voice::Law(Law::Alaw), ramp(100), true);
        let mut pcm = [0; FRAME_SAMPLES];
        p.poll(t0, &mut pcm).unwrap();
        assert_eq!((pcm[99], pcm[100], pcm[159]), (99, 0, 59));
        p.poll(t0 + FRAME, &mut pcm).unwrap();
        assert_eq!((pcm[0], pcm[40], pcm[41]), (60, 0, 1));
        assert!(!p.is_done());

        let mut once = Player::new(t0, Voice::Law(Law::Alaw), ramp(200), false);
        once.poll(t0, &mut pcm).unwrap();
        assert!(!once.is_done());
        once.poll(t0 + FRAME, &mut pcm).unwrap();
        assert!(once.is_done());
        assert_eq!((pcm[39], pcm[40], pcm[159]), (199, 0, 0));
    }

    #[test]
    fn late_poll_catches_up_at_most_three_frames() {
        let t0 = Instant::now();
        let mut p = Player::new(t0, Voice::Law(Law::Ulaw), ramp(8000), true);
        let mut pcm = [0; FRAME_SAMPLES];
        let late = t0 + Duration::from_millis(500);
        let mut sent = Vec::new();
        while let Some((at, _)) = p.poll(late, &mut pcm) {
            sent.push(at);
        }
        assert_eq!(sent, [late - FRAME * 2, late - FRAME, late]);
        assert_eq!(p.next(), Some(late + FRAME));
        // Samples were not skipped: the fourth frame continues where the third ended.
        p.poll(late + FRAME, &mut pcm).unwrap();
        assert_eq!(pcm[0], 480);
    }

    #[test]
    fn hold_pauses_without_skipping() {
        let t0 = Instant::now();
        let mut p = Player::new(t0, Voice::Law(Law::Ulaw), ramp(8000), false);
        let mut pcm = [0; FRAME_SAMPLES];
        p.poll(t0, &mut pcm).unwrap();
        p.hold(t0 + Duration::from_millis(300));
        assert!(p.poll(t0 + Duration::from_millis(299), &mut pcm).is_none());
        let (at, marker) = p.poll(t0 + Duration::from_millis(300), &mut pcm).unwrap();
        assert_eq!(
            (at, marker, pcm[0]),
            (t0 + Duration::from_millis(300), false, 160)
        );
    }
}
