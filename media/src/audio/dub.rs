//! The dub mixer: tracks of shared 8 kHz PCM mixed over what the leg hears.
//!
//! Bridged G.711 payloads are decoded, the playing tracks are added with their gains
//! (saturating, [`dsp::mix::mix_i16`]) and the result is encoded back into the same bytes. When
//! no bridged packet has come for a frame time (plus 10 ms of jitter grace) while a track plays,
//! the tracks alone go out on the mixer's own 20 ms clock (the far side is silent, on hold, or
//! in DTX).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dsp::mix::{db_to_gain, mix_i16};

use super::{FRAME, FRAME_SAMPLES, Pacer, Voice};
use crate::api::{ApiError, DubAction, MAX_DUB_QUEUE, TrackId};

/// Most tracks per leg.
pub(crate) const MAX_TRACKS: usize = 8;

/// Lateness of a bridged packet tolerated before the tracks go out alone.
const GRACE: Duration = Duration::from_millis(10);

#[derive(Debug)]
struct Track {
    id: TrackId,
    play: Option<TrackPlay>,
}

#[derive(Debug)]
struct TrackPlay {
    samples: Arc<[i16]>,
    pos: usize,
    looped: bool,
    gain: f32,
    /// Appended pieces, played after `samples` in order (never with `looped`).
    queue: VecDeque<Arc<[i16]>>,
}

impl TrackPlay {
    fn new(samples: Arc<[i16]>, looped: bool, gain_db: i8) -> Self {
        TrackPlay {
            samples,
            pos: 0,
            looped,
            gain: db_to_gain(f32::from(gain_db)),
            queue: VecDeque::new(),
        }
    }

    /// The next `out.len()` samples (silence past the end); `false` once it has ended.
    fn read(&mut self, out: &mut [i16]) -> bool {
        let mut filled = 0;
        while filled < out.len() {
            if self.pos == self.samples.len() {
                if let Some(next) = self.queue.pop_front() {
                    self.samples = next;
                } else if !self.looped {
                    out[filled..].fill(0);
                    return false;
                }
                self.pos = 0;
            }
            let n = (out.len() - filled).min(self.samples.len() - self.pos);
            out[filled..filled + n].copy_from_slice(&self.samples[self.pos..self.pos + n]);
            self.pos += n;
            filled += n;
        }
        self.looped || self.pos < self.samples.len() || !self.queue.is_empty()
    }
}

/// A leg's dub tracks.
#[derive(Debug, Default)]
pub(crate) struct Dub {
    tracks: Vec<Track>,
    /// Clock of the frames the tracks send alone.
    pacer: Pacer,
    /// The leg's codec, from the last `Play`.
    voice: Option<Voice>,
    /// The next track-only frame starts a talk spurt (marker bit).
    spurt: bool,
}

impl Dub {
    /// Any track exists (playing or not).
    pub(crate) fn has_tracks(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// Go on in another codec (once a track has played).
    pub(crate) fn set_voice(&mut self, voice: Voice) {
        if self.voice.is_some() {
            self.voice = Some(voice);
        }
    }

    /// Any track is playing.
    pub(crate) fn playing(&self) -> bool {
        self.tracks.iter().any(|t| t.play.is_some())
    }

    fn track(&mut self, id: TrackId) -> Result<&mut Track, ApiError> {
        self.tracks
            .iter_mut()
            .find(|t| t.id == id)
            .ok_or(ApiError::InvalidArgument("unknown dub track"))
    }

    /// Apply `action` to track `id`; `voice` is the leg's codec (`None`: neither G.711 nor Opus).
    pub(crate) fn apply(
        &mut self,
        now: Instant,
        voice: Option<Voice>,
        id: TrackId,
        action: DubAction,
    ) -> Result<(), ApiError> {
        match action {
            DubAction::AddTrack => {
                if self.tracks.iter().all(|t| t.id != id) {
                    if self.tracks.len() == MAX_TRACKS {
                        return Err(ApiError::InvalidArgument("more than 8 dub tracks"));
                    }
                    self.tracks.reserve_exact(MAX_TRACKS - self.tracks.len());
                    self.tracks.push(Track { id, play: None });
                }
            }
            DubAction::RemoveTrack => {
                self.track(id)?;
                self.tracks.retain(|t| t.id != id);
            }
            DubAction::Play {
                samples,
                looped,
                gain_db,
            } => {
                let voice =
                    voice.ok_or(ApiError::InvalidArgument("dub needs a G.711 or Opus leg"))?;
                if samples.is_empty() {
                    return Err(ApiError::InvalidArgument("empty PCM"));
                }
                let was_playing = self.playing();
                self.track(id)?.play = Some(TrackPlay::new(samples, looped, gain_db));
                self.started(now, voice, was_playing);
            }
            DubAction::Append { samples, gain_db } => {
                let voice =
                    voice.ok_or(ApiError::InvalidArgument("dub needs a G.711 or Opus leg"))?;
                if samples.is_empty() {
                    return Err(ApiError::InvalidArgument("empty PCM"));
                }
                let was_playing = self.playing();
                match &mut self.track(id)?.play {
                    Some(p) if !p.looped => {
                        if p.queue.len() >= MAX_DUB_QUEUE {
                            return Err(ApiError::InvalidArgument("dub track queue full"));
                        }
                        p.queue.push_back(samples);
                    }
                    play => *play = Some(TrackPlay::new(samples, false, gain_db)),
                }
                self.started(now, voice, was_playing);
            }
            DubAction::Silence => self.track(id)?.play = None,
        }
        if !self.playing() {
            self.pacer.stop();
        }
        Ok(())
    }

    /// A track was given audio: the tracks' own clock starts if none was playing.
    fn started(&mut self, now: Instant, voice: Voice, was_playing: bool) {
        self.voice = Some(voice);
        if !was_playing {
            // Bridged packets, if they flow, keep pushing this back.
            self.pacer.start(now + FRAME + GRACE);
            self.spurt = true;
        }
    }

    /// Mix the playing tracks into `pcm` (at most one frame), advancing them by its length.
    pub(crate) fn mix_into(&mut self, pcm: &mut [i16]) {
        let n = pcm.len().min(FRAME_SAMPLES);
        let mut scratch = [[0i16; FRAME_SAMPLES]; MAX_TRACKS + 1];
        let mut gains = [1.0f32; MAX_TRACKS + 1];
        scratch[0][..n].copy_from_slice(&pcm[..n]);
        let mut k = 1;
        for track in &mut self.tracks {
            let Some(play) = &mut track.play else {
                continue;
            };
            gains[k] = play.gain;
            if !play.read(&mut scratch[k][..n]) {
                track.play = None;
            }
            k += 1;
        }
        if k == 1 {
            return;
        }
        let inputs: [&[i16]; MAX_TRACKS + 1] = std::array::from_fn(|i| &scratch[i][..n]);
        mix_i16(&inputs[..k], &gains[..k], &mut pcm[..n]);
        if !self.playing() {
            self.pacer.stop();
        }
    }

    /// A bridged (or played) frame went out at `now`: no track-only frame for a frame time.
    pub(crate) fn on_bridged(&mut self, now: Instant) {
        if self.pacer.next().is_some() {
            self.pacer.start(now + FRAME + GRACE);
            self.spurt = true;
        }
    }

    /// No track-only frame before `until` (DTMF or the player own the egress).
    pub(crate) fn hold(&mut self, until: Instant) {
        self.pacer.hold(until);
    }

    /// When the next track-only frame is due.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.pacer.next()
    }

    /// The track-only frame due at `now`, if any, into `pcm`: its deadline, marker and codec.
    pub(crate) fn poll(
        &mut self,
        now: Instant,
        pcm: &mut [i16; FRAME_SAMPLES],
    ) -> Option<(Instant, bool, Voice)> {
        let voice = self.voice?;
        let deadline = self.pacer.due(now)?;
        pcm.fill(0);
        self.mix_into(pcm);
        Some((deadline, std::mem::take(&mut self.spurt), voice))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsp::g711::Law;

    fn constant(v: i16, n: usize) -> Arc<[i16]> {
        vec![v; n].into()
    }

    fn play(samples: Arc<[i16]>, looped: bool, gain_db: i8) -> DubAction {
        DubAction::Play {
            samples,
            looped,
            gain_db,
        }
    }

    #[test]
    fn minus_six_db_track_adds_half_and_saturates() {
        let t0 = Instant::now();
        let mut d = Dub::default();
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            DubAction::AddTrack,
        )
        .unwrap();
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            play(constant(8000, 1000), true, -6),
        )
        .unwrap();
        let mut pcm = [1000i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        // 8000 · 10^(-6/20) = 4009.
        assert!(pcm.iter().all(|&s| s == 1000 + 4009), "{}", pcm[0]);
        // Saturation: a loud track on a loud payload clips at full scale.
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            play(constant(30000, 160), false, 0),
        )
        .unwrap();
        let mut pcm = [20000i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm.iter().all(|&s| s == i16::MAX));
        // A one-shot track that ended leaves the audio untouched.
        assert!(!d.playing());
        let mut pcm = [-5i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm.iter().all(|&s| s == -5));
    }

    #[test]
    fn two_tracks_sum_and_silence_stops_one() {
        let t0 = Instant::now();
        let mut d = Dub::default();
        for id in [1, 2] {
            d.apply(
                t0,
                Some(Voice::Law(Law::Alaw)),
                TrackId(id),
                DubAction::AddTrack,
            )
            .unwrap();
        }
        d.apply(
            t0,
            Some(Voice::Law(Law::Alaw)),
            TrackId(1),
            play(constant(100, 320), true, 0),
        )
        .unwrap();
        d.apply(
            t0,
            Some(Voice::Law(Law::Alaw)),
            TrackId(2),
            play(constant(-30, 320), true, 0),
        )
        .unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm.iter().all(|&s| s == 70));
        d.apply(t0, None, TrackId(2), DubAction::Silence).unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm.iter().all(|&s| s == 100));
    }

    #[test]
    fn appended_pieces_play_in_order_without_gaps() {
        let t0 = Instant::now();
        let mut d = Dub::default();
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            DubAction::AddTrack,
        )
        .unwrap();
        let append = |v, n| DubAction::Append {
            samples: constant(v, n),
            gain_db: 0,
        };
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            append(100, 150),
        )
        .unwrap();
        d.apply(t0, Some(Voice::Law(Law::Ulaw)), TrackId(1), append(200, 20))
            .unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm[..150].iter().all(|&s| s == 100));
        assert!(pcm[150..].iter().all(|&s| s == 200));
        // The second piece's last 10 samples, then silence: the track has ended.
        d.apply(t0, Some(Voice::Law(Law::Ulaw)), TrackId(1), append(300, 10))
            .unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        d.mix_into(&mut pcm);
        assert!(pcm[..10].iter().all(|&s| s == 200));
        assert!(pcm[10..20].iter().all(|&s| s == 300));
        assert!(pcm[20..].iter().all(|&s| s == 0));
        assert!(!d.playing());
        // Silence drops what is queued; a full queue refuses more.
        for _ in 0..=MAX_DUB_QUEUE {
            d.apply(t0, Some(Voice::Law(Law::Ulaw)), TrackId(1), append(1, 160))
                .unwrap();
        }
        assert!(
            d.apply(t0, Some(Voice::Law(Law::Ulaw)), TrackId(1), append(1, 160))
                .is_err()
        );
        d.apply(t0, None, TrackId(1), DubAction::Silence).unwrap();
        assert!(!d.playing());
    }

    #[test]
    fn errors() {
        let t0 = Instant::now();
        let mut d = Dub::default();
        assert_eq!(
            d.apply(
                t0,
                Some(Voice::Law(Law::Ulaw)),
                TrackId(9),
                DubAction::Silence
            ),
            Err(ApiError::InvalidArgument("unknown dub track"))
        );
        assert!(
            d.apply(
                t0,
                Some(Voice::Law(Law::Ulaw)),
                TrackId(9),
                play(constant(1, 1), false, 0)
            )
            .is_err()
        );
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(9),
            DubAction::AddTrack,
        )
        .unwrap();
        assert_eq!(
            d.apply(t0, None, TrackId(9), play(constant(1, 1), false, 0)),
            Err(ApiError::InvalidArgument("dub needs a G.711 or Opus leg"))
        );
        assert_eq!(
            d.apply(
                t0,
                Some(Voice::Law(Law::Ulaw)),
                TrackId(9),
                play(constant(1, 0), false, 0)
            ),
            Err(ApiError::InvalidArgument("empty PCM"))
        );
        for id in 10..17 {
            d.apply(t0, None, TrackId(id), DubAction::AddTrack).unwrap();
        }
        assert!(d.apply(t0, None, TrackId(99), DubAction::AddTrack).is_err());
        d.apply(t0, None, TrackId(9), DubAction::RemoveTrack)
            .unwrap();
        assert!(
            d.apply(t0, None, TrackId(9), DubAction::RemoveTrack)
                .is_err()
        );
    }

    #[test]
    fn tracks_go_out_alone_when_no_bridged_audio_comes() {
        let t0 = Instant::now();
        let mut d = Dub::default();
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            DubAction::AddTrack,
        )
        .unwrap();
        d.apply(
            t0,
            Some(Voice::Law(Law::Ulaw)),
            TrackId(1),
            play(constant(500, 8000), false, 0),
        )
        .unwrap();
        let mut pcm = [0i16; FRAME_SAMPLES];
        // Bridged packets every 20 ms keep the track-only clock away.
        let mut now = t0;
        for _ in 0..5 {
            assert!(d.poll(now, &mut pcm).is_none());
            let mut bridged = [0i16; FRAME_SAMPLES];
            d.mix_into(&mut bridged);
            d.on_bridged(now);
            now += FRAME;
        }
        // The far side goes quiet after the packet at now - 20 ms: 30 ms later the track goes
        // alone, then every 20 ms.
        let last = now - FRAME;
        assert_eq!(d.poll_timeout(), Some(last + FRAME + GRACE));
        assert!(
            d.poll(last + FRAME + GRACE - Duration::from_micros(1), &mut pcm)
                .is_none()
        );
        let (at, marker, law) = d.poll(last + FRAME + GRACE, &mut pcm).unwrap();
        assert_eq!(
            (at, marker, law),
            (last + FRAME + GRACE, true, Voice::Law(Law::Ulaw))
        );
        assert!(pcm.iter().all(|&s| s == 500));
        let (at2, marker, _) = d.poll(at + FRAME, &mut pcm).unwrap();
        assert_eq!((at2, marker), (at + FRAME, false));
        // The track's 8000 samples end after 50 frames in all.
        let mut frames = 7;
        while let Some(next) = d.poll_timeout() {
            d.poll(next, &mut pcm).unwrap();
            frames += 1;
        }
        assert_eq!(frames, 50);
        assert!(!d.playing());
    }
}
