//! Transcoding between two legs of a bridge that share no audio codec: PCMU, PCMA and Opus.
//!
//! A [`Transcoder`] serves one direction of a bridge (leg A's ingress → leg B's egress). It is
//! made on the control path ([`plan`] decides whether a bridge needs one) and then allocates
//! nothing per packet: [`Transcoder::push`] decodes a payload (G.711 tables, or libopus at 48 kHz
//! through `audiopus`), resamples it to the egress codec's rate ([`dsp::resample::Resampler`], when
//! the rates differ) and queues the PCM; [`Transcoder::pop`] encodes each complete 20 ms frame as
//! a whole RTP packet of its own stream (SSRC, sequence and timestamps at the egress clock). The
//! driver sends those through the egress leg's [`crate::endpoint::Endpoint::egress`], whose
//! continuity rewriting gives the callee one unbroken stream, as it does for relayed packets.
//!
//! Timing follows the ingress timestamps: a gap (lost packets, silence suppression) advances the
//! output timestamps by the same time and drops the unfinished partial frame, so the output never
//! bursts to fill a gap; a packet older than the newest one is dropped (no reordering here).

use audiopus::coder::{Decoder as OpusDecoder, Encoder as OpusEncoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use dsp::g711::Law;
use dsp::resample::Resampler;

use crate::endpoint::{Codec, PtMap};
use crate::rtp::HEADER_LEN;

/// Opus's RTP clock and the rate it is decoded and encoded at (RFC 7587).
pub const OPUS_RATE: u32 = 48_000;
/// Length of every frame a transcoder encodes.
pub const FRAME_MS: u32 = 20;
/// The longest Opus packet (RFC 6716: 120 ms), in samples at 48 kHz.
const MAX_DECODED: usize = 5_760;
/// The encoder's bitrate: wideband speech quality at a carrier-friendly size.
const OPUS_BITRATE: i32 = 32_000;
/// Opus encoder complexity (0–10): 5 keeps most of the quality at about half the CPU of 10.
const OPUS_COMPLEXITY: u8 = 5;
/// Largest Opus payload we write (RFC 6716's maximum for one frame).
const MAX_OPUS_PAYLOAD: usize = 1_275;
/// Room for the PCM of one longest packet plus a frame left over, at the highest rate.
const MAX_FIFO: usize = 2 * MAX_DECODED + (OPUS_RATE as usize * FRAME_MS as usize / 1000);

/// Why a transcoder could not be made or a payload not decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// One side is not PCMU, PCMA or Opus.
    #[error("cannot transcode {0:?}")]
    Unsupported(Codec),
    /// libopus refused (creation or a payload).
    #[error("opus: {0}")]
    Opus(String),
    /// The resampler could not be set up or run.
    #[error("resampler: {0}")]
    Resample(#[from] dsp::resample::ResampleError),
}

impl From<audiopus::Error> for CodecError {
    fn from(e: audiopus::Error) -> Self {
        CodecError::Opus(e.to_string())
    }
}

/// The codecs a transcoder decodes and encodes, in the order a leg's own is preferred.
pub const TRANSCODABLE: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];

/// RTP clock rate (and PCM rate) of a transcodable codec.
pub fn clock_rate(codec: Codec) -> Option<u32> {
    match codec {
        Codec::Pcmu | Codec::Pcma => Some(8_000),
        Codec::Opus => Some(OPUS_RATE),
        _ => None,
    }
}

/// A leg's main audio codec: the first transcodable one of its payload-type table (the order of
/// its SDP), if any.
pub fn audio_codec(map: &PtMap) -> Option<Codec> {
    map.codecs().find(|c| TRANSCODABLE.contains(c))
}

/// What a bridge direction needs: `Some((from, to))` when the ingress leg's audio codec is
/// missing from the egress leg's table and the egress leg has a transcodable one.
pub fn plan(ingress: &PtMap, egress: &PtMap) -> Option<(Codec, Codec)> {
    let from = audio_codec(ingress)?;
    if egress.payload_type(from).is_some() {
        return None;
    }
    Some((from, audio_codec(egress)?))
}

enum Decoder {
    Law(Law),
    Opus(Box<OpusDecoder>),
}

impl Decoder {
    fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match law(codec) {
            Some(l) => Decoder::Law(l),
            None if codec == Codec::Opus => Decoder::Opus(Box::new(OpusDecoder::new(
                SampleRate::Hz48000,
                Channels::Mono,
            )?)),
            None => return Err(CodecError::Unsupported(codec)),
        })
    }

    /// Decode `payload` into `out` at the codec's rate; `None` conceals one lost packet of
    /// `out.len()` samples (Opus's own PLC; silence for G.711). Returns the samples written.
    fn decode(&mut self, payload: Option<&[u8]>, out: &mut [f32]) -> Result<usize, CodecError> {
        match (self, payload) {
            (Decoder::Law(l), Some(p)) => {
                let n = p.len().min(out.len());
                l.decode_f32(&p[..n], &mut out[..n]);
                Ok(n)
            }
            (Decoder::Law(_), None) => {
                out.fill(0.0);
                Ok(out.len())
            }
            (Decoder::Opus(_), Some([])) => Err(CodecError::Opus("empty payload".into())),
            (Decoder::Opus(d), p) => Ok(d.decode_float(p, out, false)?),
        }
    }
}

enum Encoder {
    Law(Law),
    Opus(Box<OpusEncoder>),
}

/// The Opus encoder every stream we generate uses: mono VoIP at [`OPUS_BITRATE`].
fn opus_encoder() -> Result<OpusEncoder, CodecError> {
    let mut e = OpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    e.set_bitrate(Bitrate::BitsPerSecond(OPUS_BITRATE))?;
    e.set_complexity(OPUS_COMPLEXITY)?;
    Ok(e)
}

fn law(codec: Codec) -> Option<Law> {
    match codec {
        Codec::Pcmu => Some(Law::Ulaw),
        Codec::Pcma => Some(Law::Alaw),
        _ => None,
    }
}

/// One bridge direction's decoder, resampler and encoder, with pre-sized buffers.
pub struct Transcoder {
    from: Codec,
    to: Codec,
    decoder: Decoder,
    encoder: Encoder,
    resampler: Resampler,
    /// Ingress and egress RTP clocks (each codec's PCM runs at its RTP clock).
    in_rate: u32,
    out_rate: u32,
    /// Samples per output frame.
    frame: usize,
    decoded: Box<[f32]>,
    /// Resampled PCM waiting to be encoded: `fifo[..queued]`.
    fifo: Box<[f32]>,
    queued: usize,
    /// Output timestamp of `fifo[0]`.
    fifo_ts: u32,
    /// Ingress timestamp expected next (the end of the newest packet).
    next_in_ts: Option<u32>,
    ssrc: u32,
    seq: u16,
    marker: bool,
    /// Scratch for an encoded frame as `i16` (G.711 encodes from 16-bit PCM).
    pcm16: Box<[i16]>,
}

impl std::fmt::Debug for Transcoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoder")
            .field("from", &self.from)
            .field("to", &self.to)
            .field("queued", &self.queued)
            .finish_non_exhaustive()
    }
}

/// One encoded frame [`Transcoder::pop`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Bytes of the RTP packet (header + payload) at the start of the buffer.
    pub len: usize,
    /// The egress codec (for the egress leg's payload-type map).
    pub codec: Codec,
}

impl Transcoder {
    /// A transcoder from `from` to `to` (each of [`TRANSCODABLE`]); `ssrc` names its output
    /// stream (the egress leg's continuity maps it onto the leg's own SSRC).
    pub fn new(from: Codec, to: Codec, ssrc: u32) -> Result<Self, CodecError> {
        let in_rate = clock_rate(from).ok_or(CodecError::Unsupported(from))?;
        let out_rate = clock_rate(to).ok_or(CodecError::Unsupported(to))?;
        let decoder = Decoder::new(from)?;
        let encoder = match law(to) {
            Some(l) => Encoder::Law(l),
            None => Encoder::Opus(Box::new(opus_encoder()?)),
        };
        let frame = (out_rate * FRAME_MS / 1000) as usize;
        Ok(Transcoder {
            from,
            to,
            decoder,
            encoder,
            resampler: Resampler::new(in_rate, out_rate)?,
            in_rate,
            out_rate,
            frame,
            decoded: vec![0.0; MAX_DECODED].into_boxed_slice(),
            fifo: vec![0.0; MAX_FIFO].into_boxed_slice(),
            queued: 0,
            fifo_ts: ssrc.rotate_left(7),
            next_in_ts: None,
            ssrc,
            seq: (ssrc >> 16) as u16,
            marker: true,
            pcm16: vec![0; frame].into_boxed_slice(),
        })
    }

    /// The ingress codec this transcoder decodes.
    pub fn from(&self) -> Codec {
        self.from
    }

    /// The egress codec it encodes.
    pub fn to(&self) -> Codec {
        self.to
    }

    /// The SSRC of the stream it writes.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The output timestamp of ingress timestamp `ts` (on the ingress clock): where an RFC 4733
    /// event of the ingress stream sits on the output stream. `None` before the first packet.
    pub fn map_timestamp(&self, ts: u32) -> Option<u32> {
        let expected = self.next_in_ts?;
        let ahead = i64::from(ts.wrapping_sub(expected) as i32);
        let out = ahead * i64::from(self.out_rate) / i64::from(self.in_rate);
        let end = self.fifo_ts.wrapping_add(self.queued as u32);
        Some(end.wrapping_add(out as i32 as u32))
    }

    /// Decode one ingress payload sent at RTP timestamp `ts` and queue its PCM. `Ok(false)`: an
    /// old or duplicate packet, ignored.
    pub fn push(&mut self, ts: u32, payload: &[u8]) -> Result<bool, CodecError> {
        // Old and duplicate packets are dropped before decoding: no work, and Opus's decoder
        // state does not move for them.
        if let Some(expected) = self.next_in_ts
            && (ts.wrapping_sub(expected) as i32) < 0
        {
            return Ok(false);
        }
        let n = self.decoder.decode(Some(payload), &mut self.decoded)?;
        if let Some(expected) = self.next_in_ts {
            let ahead = ts.wrapping_sub(expected) as i32;
            if ahead > 0 {
                // Lost packets or a new talk spurt: skip the same time on the output and drop
                // the partial frame rather than send it late or pad it out in a burst.
                let skip =
                    u64::from(ahead as u32) * u64::from(self.out_rate) / u64::from(self.in_rate);
                self.fifo_ts = self
                    .fifo_ts
                    .wrapping_add(self.queued as u32)
                    .wrapping_add(skip as u32);
                self.queued = 0;
                self.marker = true;
            }
        }
        self.next_in_ts = Some(ts.wrapping_add(n as u32));
        let room = self.fifo.len() - self.queued;
        if self.resampler.output_len(n) > room {
            // Cannot happen with pop called after each push; drop the oldest audio if it does.
            self.fifo_ts = self.fifo_ts.wrapping_add(self.queued as u32);
            self.queued = 0;
        }
        let written = self
            .resampler
            .process(&self.decoded[..n], &mut self.fifo[self.queued..])?;
        self.queued += written;
        Ok(true)
    }

    /// Encode the next complete 20 ms frame as an RTP packet (payload type 0: the egress leg sets
    /// its own) into `out`; `None` when less than a frame is queued or `out` is too small.
    /// `mix` sees the frame's PCM (at the egress rate, given) before it is encoded: the egress
    /// leg's dub tracks go in there, without decoding the packet again.
    pub fn pop(
        &mut self,
        out: &mut [u8],
        mix: impl FnOnce(&mut [f32], u32),
    ) -> Option<Result<Encoded, CodecError>> {
        if self.queued < self.frame || out.len() < HEADER_LEN + self.frame.max(MAX_OPUS_PAYLOAD) {
            return None;
        }
        mix(&mut self.fifo[..self.frame], self.out_rate);
        let pcm = &self.fifo[..self.frame];
        let payload = &mut out[HEADER_LEN..];
        let len = match &mut self.encoder {
            Encoder::Law(l) => {
                for (o, &x) in self.pcm16.iter_mut().zip(pcm) {
                    *o = (x * 32_768.0).clamp(-32_768.0, 32_767.0) as i16;
                }
                l.encode_slice(&self.pcm16, payload);
                self.frame
            }
            Encoder::Opus(e) => match e.encode_float(pcm, &mut payload[..MAX_OPUS_PAYLOAD]) {
                Ok(len) => len,
                Err(err) => return Some(Err(err.into())),
            },
        };
        out[0] = 0x80;
        out[1] = if self.marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&self.fifo_ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.marker = false;
        self.seq = self.seq.wrapping_add(1);
        self.fifo_ts = self.fifo_ts.wrapping_add(self.frame as u32);
        self.fifo.copy_within(self.frame..self.queued, 0);
        self.queued -= self.frame;
        Some(Ok(Encoded {
            len: HEADER_LEN + len,
            codec: self.to,
        }))
    }
}

/// 20 ms at 8 kHz: the frame the audio pieces ([`crate::audio`]) work in.
const NARROW_FRAME: usize = 160;
/// 20 ms at 48 kHz.
const OPUS_FRAME: usize = (OPUS_RATE * FRAME_MS / 1000) as usize;
/// 48 kHz samples per 8 kHz sample.
const WIDEN: usize = (OPUS_RATE / 8_000) as usize;

fn to_i16(x: f32) -> i16 {
    (x * 32_768.0).clamp(-32_768.0, 32_767.0) as i16
}

/// Opus received by a leg's audio (tap, forks): decoded and resampled to 8 kHz.
pub(crate) struct OpusReceive {
    decoder: Decoder,
    down: Resampler,
    decoded: Box<[f32]>,
    narrow: Box<[f32]>,
}

impl std::fmt::Debug for OpusReceive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusReceive").finish_non_exhaustive()
    }
}

impl OpusReceive {
    pub(crate) fn new() -> Result<Self, CodecError> {
        Ok(OpusReceive {
            decoder: Decoder::new(Codec::Opus)?,
            down: Resampler::new(OPUS_RATE, 8_000)?,
            decoded: vec![0.0; MAX_DECODED].into_boxed_slice(),
            narrow: vec![0.0; MAX_DECODED / WIDEN].into_boxed_slice(),
        })
    }

    /// Decode one payload (`None`: conceal one lost 20 ms packet with libopus's PLC) and hand
    /// its 8 kHz PCM to `sink` in pieces of at most 20 ms; returns the 8 kHz samples handed.
    pub(crate) fn decode(
        &mut self,
        payload: Option<&[u8]>,
        sink: &mut impl FnMut(&[i16]),
    ) -> Result<usize, CodecError> {
        let wide = match payload {
            Some(_) => &mut self.decoded[..],
            None => &mut self.decoded[..OPUS_FRAME],
        };
        let n = self.decoder.decode(payload, wide)?;
        let n = self.down.process(&self.decoded[..n], &mut self.narrow)?;
        let mut pcm = [0i16; NARROW_FRAME];
        for chunk in self.narrow[..n].chunks(NARROW_FRAME) {
            for (o, &x) in pcm.iter_mut().zip(chunk) {
                *o = to_i16(x);
            }
            sink(&pcm[..chunk.len()]);
        }
        Ok(n)
    }
}

/// Opus sent by a leg's audio: 20 ms frames of 8 kHz PCM (player, dub tracks, in-band DTMF)
/// resampled to 48 kHz and encoded; dub tracks widened to mix into 48 kHz audio; 48 kHz audio
/// narrowed for the sent side of forks; bridged Opus payloads decoded for a mix and encoded back
/// into the same bytes.
pub(crate) struct OpusSend {
    encoder: Box<OpusEncoder>,
    up: Resampler,
    down: Resampler,
    /// Decoder of bridged payloads (made on the first one mixed into).
    decoder: Option<Decoder>,
    /// A bridged payload decoded.
    wide: Box<[f32]>,
    /// 8 kHz PCM widened.
    widened: Box<[f32]>,
    narrow: Box<[f32]>,
}

impl std::fmt::Debug for OpusSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusSend").finish_non_exhaustive()
    }
}

impl OpusSend {
    pub(crate) fn new() -> Result<Self, CodecError> {
        Ok(OpusSend {
            encoder: Box::new(opus_encoder()?),
            up: Resampler::new(8_000, OPUS_RATE)?,
            down: Resampler::new(OPUS_RATE, 8_000)?,
            decoder: None,
            wide: vec![0.0; MAX_DECODED].into_boxed_slice(),
            widened: vec![0.0; 2 * OPUS_FRAME].into_boxed_slice(),
            narrow: vec![0.0; MAX_DECODED / WIDEN].into_boxed_slice(),
        })
    }

    /// Encode 20 ms of 8 kHz PCM as one Opus payload into `out`; its length.
    pub(crate) fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        let n = self.widen(pcm)?;
        let max = out.len().min(MAX_OPUS_PAYLOAD);
        Ok(self
            .encoder
            .encode_float(&self.widened[..n], &mut out[..max])?)
    }

    /// Add 8 kHz PCM (`pcm`, the dub tracks' frame) into 48 kHz audio `into`.
    pub(crate) fn add_widened(&mut self, pcm: &[i16], into: &mut [f32]) -> Result<(), CodecError> {
        let n = self.widen(pcm)?;
        for (o, &x) in into.iter_mut().zip(&self.widened[..n]) {
            *o += x;
        }
        Ok(())
    }

    /// 48 kHz audio as 8 kHz PCM into `out` (up to its length); the samples written.
    pub(crate) fn narrow(&mut self, wide: &[f32], out: &mut [i16]) -> Result<usize, CodecError> {
        let n = self.down.process(wide, &mut self.narrow)?.min(out.len());
        for (o, &x) in out.iter_mut().zip(&self.narrow[..n]) {
            *o = to_i16(x);
        }
        Ok(n)
    }

    /// Decode a bridged Opus payload to 48 kHz, let `mix` change it, and encode it back into
    /// the same bytes: the payload keeps its length (constant bitrate, libopus pads), so the
    /// packet is rewritten in place like a G.711 one.
    pub(crate) fn remix(
        &mut self,
        payload: &mut [u8],
        mix: impl FnOnce(&mut Self, &mut [f32]) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let decoder = match &mut self.decoder {
            Some(d) => d,
            None => self.decoder.insert(Decoder::new(Codec::Opus)?),
        };
        let mut wide = std::mem::take(&mut self.wide);
        let decoded = decoder.decode(Some(&*payload), &mut wide);
        let result = decoded.and_then(|n| {
            mix(self, &mut wide[..n])?;
            let len = payload.len().min(MAX_OPUS_PAYLOAD);
            self.encoder.set_vbr(false)?;
            self.encoder.set_bitrate(Bitrate::Max)?;
            let coded = self.encoder.encode_float(&wide[..n], &mut payload[..len]);
            self.encoder.set_vbr(true)?;
            self.encoder
                .set_bitrate(Bitrate::BitsPerSecond(OPUS_BITRATE))?;
            if coded? == len {
                Ok(())
            } else {
                Err(CodecError::Opus("re-encoded payload changed size".into()))
            }
        });
        self.wide = wide;
        result
    }

    /// 8 kHz PCM (up to 20 ms) resampled into `self.widened`; the 48 kHz samples written.
    fn widen(&mut self, pcm: &[i16]) -> Result<usize, CodecError> {
        let mut x = [0.0f32; NARROW_FRAME];
        let mut written = 0;
        for chunk in pcm.chunks(NARROW_FRAME) {
            for (o, &s) in x.iter_mut().zip(chunk) {
                *o = f32::from(s) / 32_768.0;
            }
            written += self
                .up
                .process(&x[..chunk.len()], &mut self.widened[written..])?;
        }
        Ok(written)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::f32::consts::PI;

    /// 20 ms payloads of a tone encoded as `codec`, and their RTP timestamps.
    pub(crate) fn tone_packets(codec: Codec, hz: f32, frames: usize) -> Vec<(u32, Vec<u8>)> {
        let rate = clock_rate(codec).unwrap();
        let n = (rate * FRAME_MS / 1000) as usize;
        let pcm: Vec<f32> = (0..n * frames)
            .map(|i| 0.3 * (2.0 * PI * hz * i as f32 / rate as f32).sin())
            .collect();
        let opus =
            OpusEncoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip).unwrap();
        pcm.chunks(n)
            .enumerate()
            .map(|(k, f)| {
                let payload = match law(codec) {
                    Some(l) => f.iter().map(|&x| l.encode((x * 32_767.0) as i16)).collect(),
                    None => {
                        let mut out = vec![0u8; 1500];
                        let len = opus.encode_float(f, &mut out).unwrap();
                        out.truncate(len);
                        out
                    }
                };
                ((k * n) as u32, payload)
            })
            .collect()
    }

    /// Decode a run of payloads of `codec` to PCM at its own rate.
    pub(crate) fn decode_all(codec: Codec, payloads: &[Vec<u8>]) -> Vec<f32> {
        let mut dec = OpusDecoder::new(SampleRate::Hz48000, Channels::Mono).unwrap();
        let mut pcm = Vec::new();
        for p in payloads {
            match law(codec) {
                Some(l) => pcm.extend(p.iter().map(|&c| f32::from(l.decode(c)) / 32_768.0)),
                None => {
                    let mut out = vec![0.0f32; MAX_DECODED];
                    let n = dec.decode_float(Some(&p[..]), &mut out[..], false).unwrap();
                    pcm.extend_from_slice(&out[..n]);
                }
            }
        }
        pcm
    }

    /// Power of `x` at `hz` relative to its total power (Goertzel), and its RMS.
    pub(crate) fn tone_share(x: &[f32], rate: u32, hz: f32) -> (f32, f32) {
        let w = 2.0 * PI * hz / rate as f32;
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &v in x {
            let s = v + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        let energy: f32 = x.iter().map(|v| v * v).sum();
        let share = 2.0 * power / (x.len() as f32 * energy.max(f32::MIN_POSITIVE));
        (share, (energy / x.len() as f32).sqrt())
    }

    fn run(from: Codec, to: Codec, frames: usize) -> (Vec<u32>, Vec<u16>, Vec<f32>) {
        let mut t = Transcoder::new(from, to, 0x1234_5678).unwrap();
        let mut out = vec![0u8; 2048];
        let (mut ts, mut seqs, mut payloads) = (Vec::new(), Vec::new(), Vec::new());
        for (in_ts, p) in tone_packets(from, 440.0, frames) {
            assert!(t.push(in_ts, &p).unwrap());
            while let Some(e) = t.pop(&mut out, |_, _| {}) {
                let e = e.unwrap();
                let pkt = crate::rtp::RtpPacket::parse(&out[..e.len]).unwrap();
                ts.push(pkt.timestamp());
                seqs.push(pkt.sequence());
                payloads.push(pkt.payload().to_vec());
            }
        }
        let pcm = decode_all(to, &payloads);
        (ts, seqs, pcm)
    }

    fn check(from: Codec, to: Codec) {
        let (ts, seqs, pcm) = run(from, to, 50);
        // One 20 ms packet out per 20 ms in (the resampler's delay aside: at most one fewer).
        assert!(
            (49..=50).contains(&ts.len()),
            "{from:?}→{to:?}: {} packets",
            ts.len()
        );
        let step = clock_rate(to).unwrap() * FRAME_MS / 1000;
        assert!(ts.windows(2).all(|w| w[1].wrapping_sub(w[0]) == step));
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        // Skip the codecs' and resampler's start-up: the steady tone must dominate.
        let rate = clock_rate(to).unwrap();
        let steady = &pcm[pcm.len() / 4..];
        let (share, rms) = tone_share(steady, rate, 440.0);
        assert!(share > 0.8, "{from:?}→{to:?}: 440 Hz share {share}");
        let (off, _) = tone_share(steady, rate, 1000.0);
        assert!(off < 0.01, "{from:?}→{to:?}: 1 kHz share {off}");
        // 0.3 amplitude sine: RMS 0.212 (Opus and G.711 keep the level within ~1.5 dB).
        assert!((0.18..0.25).contains(&rms), "{from:?}→{to:?}: rms {rms}");
    }

    #[test]
    fn opus_to_pcmu_keeps_a_tone() {
        check(Codec::Opus, Codec::Pcmu);
    }

    #[test]
    fn pcmu_to_opus_keeps_a_tone() {
        check(Codec::Pcmu, Codec::Opus);
    }

    #[test]
    fn pcma_to_opus_and_pcmu_to_pcma() {
        check(Codec::Pcma, Codec::Opus);
        check(Codec::Pcmu, Codec::Pcma);
        check(Codec::Opus, Codec::Pcma);
    }

    #[test]
    fn a_gap_skips_the_same_time_and_old_packets_are_ignored() {
        let mut t = Transcoder::new(Codec::Pcmu, Codec::Opus, 7).unwrap();
        let packets = tone_packets(Codec::Pcmu, 440.0, 10);
        let mut out = vec![0u8; 2048];
        let mut stamps = Vec::new();
        for (k, (ts, p)) in packets.iter().enumerate() {
            // Packets 4 and 5 are lost; packet 2 arrives again late.
            if k == 4 || k == 5 {
                continue;
            }
            assert!(t.push(*ts, p).unwrap());
            if k == 6 {
                assert!(!t.push(packets[2].0, &packets[2].1).unwrap());
            }
            while let Some(e) = t.pop(&mut out, |_, _| {}) {
                let e = e.unwrap();
                let pkt = crate::rtp::RtpPacket::parse(&out[..e.len]).unwrap();
                stamps.push((pkt.timestamp(), pkt.marker()));
            }
        }
        let gaps: Vec<u32> = stamps
            .windows(2)
            .map(|w| w[1].0.wrapping_sub(w[0].0))
            .collect();
        // 40 ms lost = 1920 ticks at 48 kHz, plus the partial frame dropped at the gap.
        let jump = gaps.iter().copied().find(|&g| g != 960).expect("a jump");
        assert!((1920 + 960..=1920 + 2 * 960).contains(&jump), "jump {jump}");
        assert!(stamps[0].1);
        assert_eq!(stamps.iter().filter(|s| s.1).count(), 2);
    }

    #[test]
    fn plan_only_when_the_legs_share_no_audio_codec() {
        let opus = PtMap::new(&[(111, Codec::Opus), (101, Codec::TelephoneEvent)]).unwrap();
        let pcmu = PtMap::new(&[(0, Codec::Pcmu), (101, Codec::TelephoneEvent)]).unwrap();
        let both = PtMap::new(&[(0, Codec::Pcmu), (111, Codec::Opus)]).unwrap();
        let g729 = PtMap::new(&[(18, Codec::G729)]).unwrap();
        assert_eq!(plan(&opus, &pcmu), Some((Codec::Opus, Codec::Pcmu)));
        assert_eq!(plan(&pcmu, &opus), Some((Codec::Pcmu, Codec::Opus)));
        assert_eq!(plan(&pcmu, &both), None);
        assert_eq!(plan(&opus, &both), None);
        assert_eq!(plan(&opus, &g729), None);
        assert_eq!(plan(&g729, &pcmu), None);
    }

    #[test]
    fn unsupported_codecs_are_refused() {
        assert_eq!(
            Transcoder::new(Codec::G729, Codec::Pcmu, 1).unwrap_err(),
            CodecError::Unsupported(Codec::G729)
        );
    }
}
