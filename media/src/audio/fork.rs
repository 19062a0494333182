//! Forks: a leg's decoded audio out in 20 ms frames (listen / transcribe streams).
//!
//! The received side arrives in order from the received path (which keeps it on the wall clock
//! through losses and DTX), so a frame goes out each time 160 received samples are in. The sent
//! side (bridged payloads after dubbing, and the leg's own generated frames) waits in a small
//! ring and is taken 160 samples per received frame: silence if none was sent, the oldest
//! dropped if the ring overflows. Each frame out is one `Arc<[i16]>` allocation.

use std::sync::Arc;

use dsp::mix::mix_i16;
use dsp::resample::Resampler;

use super::{AudioEvent, Events, FRAME_SAMPLES};
use crate::api::{ForkId, ForkMix};

/// Sent samples kept for the forks: 8 frames.
const SENT_RING: usize = 8 * FRAME_SAMPLES;
/// Largest output frame: 20 ms of stereo at 48 kHz.
const MAX_OUT: usize = 2 * 960;

#[derive(Debug)]
struct Fork {
    id: ForkId,
    mix: ForkMix,
    /// Output samples per channel per frame.
    per_channel: usize,
    left: Resampler,
    /// Stereo only: the sent side's resampler.
    right: Option<Resampler>,
}

impl Fork {
    /// One frame out: `recv` and `sent` are the same 20 ms, 160 samples each.
    fn frame(&mut self, recv: &[i16], sent: &[i16], events: &mut Events) {
        let mut out = [0i16; MAX_OUT];
        let n = self.per_channel;
        match (self.mix, self.right.as_mut()) {
            (ForkMix::Stereo, Some(right)) => {
                let (mut l, mut r) = ([0i16; MAX_OUT / 2], [0i16; MAX_OUT / 2]);
                resample(&mut self.left, recv, &mut l[..n]);
                resample(right, sent, &mut r[..n]);
                for (pair, (l, r)) in out.chunks_exact_mut(2).zip(l[..n].iter().zip(&r[..n])) {
                    pair[0] = *l;
                    pair[1] = *r;
                }
                events.push(AudioEvent::Frame {
                    fork: self.id,
                    samples: Arc::from(&out[..2 * n]),
                });
                return;
            }
            (ForkMix::Mixed, _) => {
                let mut m = [0i16; FRAME_SAMPLES];
                mix_i16(&[recv, sent], &[1.0, 1.0], &mut m);
                resample(&mut self.left, &m, &mut out[..n]);
            }
            _ => resample(&mut self.left, recv, &mut out[..n]),
        }
        events.push(AudioEvent::Frame {
            fork: self.id,
            samples: Arc::from(&out[..n]),
        });
    }
}

/// 160 samples at 8 kHz → `out.len()` samples at the resampler's rate.
fn resample(r: &mut Resampler, pcm: &[i16], out: &mut [i16]) {
    let mut x = [0.0f32; FRAME_SAMPLES];
    for (x, &s) in x.iter_mut().zip(pcm) {
        *x = f32::from(s) / 32768.0;
    }
    let mut y = [0.0f32; MAX_OUT / 2];
    // 160 in is exactly two of the resampler's 10 ms chunks, so it writes exactly `out.len()`.
    let n = r.process(&x, &mut y).unwrap_or(0).min(out.len());
    for (o, &v) in out[..n].iter_mut().zip(&y[..n]) {
        *o = (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
    }
}

/// Every fork of a leg, and the frame being assembled.
#[derive(Debug, Default)]
pub(crate) struct Forks {
    list: Vec<Fork>,
    /// Allocated with the first fork (a leg without forks carries none of it).
    buffers: Option<Box<Buffers>>,
}

#[derive(Debug)]
struct Buffers {
    /// The received frame being assembled, `filled` samples so far.
    recv: [i16; FRAME_SAMPLES],
    filled: usize,
    /// Sent samples waiting: `sent_len` of them from `sent_head` on.
    sent: [i16; SENT_RING],
    sent_head: usize,
    sent_len: usize,
}

impl Buffers {
    fn push_sent(&mut self, pcm: &[i16]) {
        for &s in pcm {
            if self.sent_len == SENT_RING {
                self.sent_head = (self.sent_head + 1) % SENT_RING;
                self.sent_len -= 1;
            }
            self.sent[(self.sent_head + self.sent_len) % SENT_RING] = s;
            self.sent_len += 1;
        }
    }

    /// The sent side of the frame just assembled (silence where nothing was sent).
    fn take_sent(&mut self) -> [i16; FRAME_SAMPLES] {
        let mut sent = [0i16; FRAME_SAMPLES];
        let take = self.sent_len.min(FRAME_SAMPLES);
        for s in &mut sent[..take] {
            *s = self.sent[self.sent_head];
            self.sent_head = (self.sent_head + 1) % SENT_RING;
        }
        self.sent_len -= take;
        sent
    }
}

impl Forks {
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Start (or replace) a fork; rates other than 8/16/24/48 kHz give 8 kHz.
    pub(crate) fn add(&mut self, id: ForkId, mix: ForkMix, rate: u32) {
        self.remove(id);
        let (left, rate) = match Resampler::new(8000, rate) {
            Ok(r) => (r, rate),
            Err(_) => {
                metrics::counter!("dialplane_audio_fork_rate_rejected_total").increment(1);
                match Resampler::new(8000, 8000) {
                    Ok(r) => (r, 8000),
                    Err(_) => return,
                }
            }
        };
        let right = if mix == ForkMix::Stereo {
            Resampler::new(8000, rate).ok()
        } else {
            None
        };
        self.buffers.get_or_insert_with(|| {
            Box::new(Buffers {
                recv: [0; FRAME_SAMPLES],
                filled: 0,
                sent: [0; SENT_RING],
                sent_head: 0,
                sent_len: 0,
            })
        });
        self.list.push(Fork {
            id,
            mix,
            per_channel: FRAME_SAMPLES * rate as usize / 8000,
            left,
            right,
        });
    }

    /// Stop a fork; `true` if it existed.
    pub(crate) fn remove(&mut self, id: ForkId) -> bool {
        let before = self.list.len();
        self.list.retain(|f| f.id != id);
        if self.list.is_empty() {
            self.buffers = None;
        }
        self.list.len() != before
    }

    /// Some fork carries the sent side.
    pub(crate) fn wants_sent(&self) -> bool {
        self.list.iter().any(|f| f.mix != ForkMix::Received)
    }

    /// Audio sent to the leg.
    pub(crate) fn push_sent(&mut self, pcm: &[i16]) {
        if self.wants_sent()
            && let Some(b) = self.buffers.as_mut()
        {
            b.push_sent(pcm);
        }
    }

    /// Received audio, in order; a frame goes out per 160 samples.
    pub(crate) fn push_received(&mut self, mut pcm: &[i16], events: &mut Events) {
        let Some(b) = self.buffers.as_mut() else {
            return;
        };
        while !pcm.is_empty() {
            let n = (FRAME_SAMPLES - b.filled).min(pcm.len());
            b.recv[b.filled..b.filled + n].copy_from_slice(&pcm[..n]);
            b.filled += n;
            pcm = &pcm[n..];
            if b.filled == FRAME_SAMPLES {
                b.filled = 0;
                let sent = b.take_sent();
                for fork in &mut self.list {
                    fork.frame(&b.recv, &sent, events);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(events: &mut Events) -> Vec<(ForkId, Arc<[i16]>)> {
        std::iter::from_fn(|| events.pop())
            .filter_map(|e| match e {
                AudioEvent::Frame { fork, samples } => Some((fork, samples)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn received_at_16k_is_320_samples_per_frame() {
        let mut f = Forks::default();
        f.add(ForkId(1), ForkMix::Received, 16000);
        f.add(ForkId(2), ForkMix::Received, 8000);
        let mut ev = Events::default();
        // Packets of 80 samples (10 ms ptime): a frame per two.
        let tone: Vec<i16> = (0..1600)
            .map(|i| {
                (8000.0 * (i as f32 * 2.0 * std::f32::consts::PI * 400.0 / 8000.0).sin()) as i16
            })
            .collect();
        for chunk in tone.chunks(80) {
            f.push_received(chunk, &mut ev);
        }
        let got = frames(&mut ev);
        assert_eq!(got.len(), 20);
        let wide: Vec<_> = got.iter().filter(|(id, _)| *id == ForkId(1)).collect();
        assert_eq!(wide.len(), 10);
        assert!(wide.iter().all(|(_, s)| s.len() == 320));
        // The upsampled tone keeps its level once the filter has filled.
        let peak = wide[5].1.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7000..=9000).contains(&peak), "{peak}");
        let narrow: Vec<_> = got.iter().filter(|(id, _)| *id == ForkId(2)).collect();
        assert_eq!(&narrow[3].1[..], &tone[480..640]);
    }

    #[test]
    fn stereo_interleaves_received_left_and_sent_right() {
        let mut f = Forks::default();
        f.add(ForkId(7), ForkMix::Stereo, 8000);
        f.add(ForkId(8), ForkMix::Mixed, 8000);
        let mut ev = Events::default();
        let sent: Vec<i16> = (0..160).map(|i| -(i as i16)).collect();
        let recv: Vec<i16> = (0..160).map(|i| 1000 + i as i16).collect();
        f.push_sent(&sent);
        f.push_received(&recv, &mut ev);
        // Nothing sent for the second frame: its right channel is silence.
        f.push_received(&recv, &mut ev);
        let got = frames(&mut ev);
        assert_eq!(got.len(), 4);
        let stereo = &got[0].1;
        assert_eq!(stereo.len(), 320);
        for i in 0..160 {
            assert_eq!((stereo[2 * i], stereo[2 * i + 1]), (recv[i], sent[i]));
        }
        assert!(got[1].1.iter().all(|&s| s == 1000));
        assert!(got[2].1.chunks(2).all(|p| p[1] == 0));
        assert_eq!(got[3].1[..], recv[..]);
        assert!(f.remove(ForkId(7)) && !f.remove(ForkId(7)));
    }

    #[test]
    fn sent_ring_drops_the_oldest_on_overflow() {
        let mut f = Forks::default();
        f.add(ForkId(1), ForkMix::Stereo, 8000);
        let mut ev = Events::default();
        for k in 0..10i16 {
            f.push_sent(&[k; FRAME_SAMPLES]);
        }
        f.push_received(&[0; FRAME_SAMPLES], &mut ev);
        let got = frames(&mut ev);
        // Frames 0 and 1 were dropped: the oldest kept is frame 2.
        assert!(got[0].1.chunks(2).all(|p| p[1] == 2));
    }
}
