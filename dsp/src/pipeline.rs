//! One leg's DSP: decode, one spectrum, every enabled detector
//!
//! The media plane's tap and the offline CLI both run audio through [`LegDsp`]: G.711 codes or
//! PCM in, [`Event`]s out. Everything is allocated in [`LegDsp::new`]; pushing frames allocates
//! nothing (the caller's `out` collection aside, which a caller reuses).

use crate::amd::{Amd, AmdConfig, AmdEvent};
use crate::dtmf::{Digit, DtmfReceiver};
use crate::g711::Law;
use crate::spectrum::Spectrum;

/// Largest frame decoded in one step (20 ms at 8 kHz); longer inputs are taken in pieces.
const DECODE_CHUNK: usize = 160;

/// Which detectors run on a leg
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    /// Detect DTMF digits in the audio.
    pub dtmf: bool,
    /// Run answering-machine detection (with its beep and fax detector) from the first sample.
    pub amd: Option<AmdConfig>,
}

/// What a leg's audio revealed
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A key press, reported when its tone ended.
    Digit(Digit),
    /// An answering-machine detection event.
    Amd(AmdEvent),
}

/// The per-leg pipeline
pub struct LegDsp {
    spectrum: Spectrum,
    dtmf: Option<DtmfReceiver>,
    amd: Option<Amd>,
    frames: metrics::Counter,
    /// Frames not yet added to `frames`: the shared counter is touched once a second per leg,
    /// not per packet.
    unreported: u64,
}

/// Frames counted per leg before they are added to the shared counter (1 s of 20 ms frames).
const REPORT_EVERY: u64 = 50;

impl LegDsp {
    /// Builds the detectors `config` asks for
    pub fn new(config: PipelineConfig) -> Self {
        Self {
            spectrum: Spectrum::new(),
            dtmf: config.dtmf.then(DtmfReceiver::new),
            amd: config.amd.map(Amd::new),
            frames: metrics::counter!("dialplane_dsp_frames_total"),
            unreported: 0,
        }
    }

    /// Feeds G.711 codes (any length; 160 per 20 ms packet)
    pub fn push_g711(&mut self, law: Law, codes: &[u8], out: &mut impl Extend<Event>) {
        for chunk in codes.chunks(DECODE_CHUNK) {
            let mut decoded = [0.0; DECODE_CHUNK];
            law.decode_f32(chunk, &mut decoded[..chunk.len()]);
            self.push_pcm(&decoded[..chunk.len()], out);
        }
    }

    /// Feeds 8 kHz samples (16-bit full scale = 1.0)
    pub fn push_pcm(&mut self, samples: &[f32], out: &mut impl Extend<Event>) {
        self.unreported += 1;
        if self.unreported == REPORT_EVERY {
            self.frames.increment(std::mem::take(&mut self.unreported));
        }
        let Self {
            spectrum,
            dtmf,
            amd,
            ..
        } = self;
        spectrum.push(samples, |s| {
            if let Some(d) = dtmf.as_mut().and_then(|d| d.on_hop(s)) {
                out.extend(Some(Event::Digit(d)));
            }
            if let Some(a) = amd.as_mut() {
                a.on_hop(s, &mut Mapped(out));
            }
        });
    }

    /// Ends the input: reports what was still open (a digit still sounding, a pending decision)
    pub fn finish(&mut self, out: &mut impl Extend<Event>) {
        if let Some(d) = self.dtmf.as_mut().and_then(DtmfReceiver::finish) {
            out.extend(Some(Event::Digit(d)));
        }
        if let Some(a) = self.amd.as_mut() {
            a.finish(&mut Mapped(out));
        }
    }
}

impl Drop for LegDsp {
    fn drop(&mut self) {
        self.frames.increment(self.unreported);
    }
}

/// Adapts an `Extend<Event>` to take [`AmdEvent`]s without an intermediate buffer.
struct Mapped<'a, E>(&'a mut E);

impl<E: Extend<Event>> Extend<AmdEvent> for Mapped<'_, E> {
    fn extend<I: IntoIterator<Item = AmdEvent>>(&mut self, iter: I) {
        self.0.extend(iter.into_iter().map(Event::Amd));
    }
}
