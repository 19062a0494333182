//! WAV files: reading for the offline analysis commands (and later dialMusic and dub), writing
//! for tests and sample recordings. Reads 16-bit PCM, µ-law or A-law, mono, at 8, 16, 24
//! or 48 kHz, returned as 8 kHz samples. Every malformed file is an error, never a panic.

use dsp::g711::Law;

/// Why a file cannot be analysed
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WavError {
    /// Not a RIFF/WAVE file at all.
    #[error("not a WAV file (no RIFF/WAVE header)")]
    NotWav,
    /// A chunk header or the fmt chunk is cut short.
    #[error("truncated WAV file: {0}")]
    Truncated(&'static str),
    /// No `fmt ` chunk before the data.
    #[error("WAV file has no fmt chunk before its data")]
    NoFormat,
    /// No `data` chunk.
    #[error("WAV file has no data chunk")]
    NoData,
    /// An encoding other than 16-bit PCM, µ-law or A-law.
    #[error(
        "unsupported WAV encoding: format tag {tag:#06x} with {bits} bits per sample (need 16-bit PCM, µ-law or A-law)"
    )]
    Encoding {
        /// The fmt chunk's format tag (sub-format for WAVE_FORMAT_EXTENSIBLE).
        tag: u16,
        /// Bits per sample.
        bits: u16,
    },
    /// More than one channel.
    #[error("unsupported WAV: {0} channels (need mono)")]
    Channels(u16),
    /// A sample rate the resampler does not take.
    #[error("unsupported sample rate {0} Hz (need 8000, 16000, 24000 or 48000)")]
    Rate(u32),
    /// Resampling failed.
    #[error("cannot resample: {0}")]
    Resample(String),
}

const PCM: u16 = 1;
const ALAW: u16 = 6;
const ULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xFFFE;

struct Format {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse_format(body: &[u8]) -> Result<Format, WavError> {
    let short = WavError::Truncated("fmt chunk");
    let mut tag = u16_at(body, 0).ok_or(short)?;
    if tag == EXTENSIBLE {
        // The real format is the first two bytes of the sub-format GUID at offset 24.
        tag = u16_at(body, 24).ok_or(WavError::Truncated("extensible fmt chunk"))?;
    }
    Ok(Format {
        tag,
        channels: u16_at(body, 2).ok_or(WavError::Truncated("fmt chunk"))?,
        rate: u32_at(body, 4).ok_or(WavError::Truncated("fmt chunk"))?,
        bits: u16_at(body, 14).ok_or(WavError::Truncated("fmt chunk"))?,
    })
}

/// Decodes a WAV file's bytes to samples at 8 kHz (16-bit full scale = 1.0)
pub fn decode_8k(bytes: &[u8]) -> Result<Vec<f32>, WavError> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err(WavError::NotWav);
    }
    let mut at = 12;
    let mut format = None;
    while at < bytes.len() {
        let id = bytes
            .get(at..at + 4)
            .ok_or(WavError::Truncated("chunk header"))?;
        let size = u32_at(bytes, at + 4).ok_or(WavError::Truncated("chunk header"))? as usize;
        let start = at + 8;
        // Streaming writers leave the size at its maximum: take what is there.
        let end = start.saturating_add(size).min(bytes.len());
        let body = &bytes[start..end];
        match id {
            b"fmt " => format = Some(parse_format(body)?),
            b"data" => {
                let f = format.as_ref().ok_or(WavError::NoFormat)?;
                return samples_8k(f, body);
            }
            _ => {}
        }
        // Chunks are padded to an even length.
        at = start.saturating_add(size).saturating_add(size & 1);
    }
    Err(WavError::NoData)
}

fn samples_8k(f: &Format, data: &[u8]) -> Result<Vec<f32>, WavError> {
    if f.channels != 1 {
        return Err(WavError::Channels(f.channels));
    }
    let samples: Vec<f32> = match (f.tag, f.bits) {
        (PCM, 16) => data
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
            .collect(),
        (ULAW | ALAW, 8) => {
            let law = if f.tag == ULAW { Law::Ulaw } else { Law::Alaw };
            let mut out = vec![0.0; data.len()];
            law.decode_f32(data, &mut out);
            out
        }
        (tag, bits) => return Err(WavError::Encoding { tag, bits }),
    };
    match f.rate {
        8000 => Ok(samples),
        16000 | 24000 | 48000 => dsp::resample::resample(&samples, f.rate, 8000)
            .map_err(|e| WavError::Resample(e.to_string())),
        other => Err(WavError::Rate(other)),
    }
}

/// Builds a mono 16-bit PCM WAV file
pub fn encode_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    let mut file = header(PCM, rate, 16, samples.len() * 2);
    file.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
    file
}

/// Builds a mono 8 kHz G.711 WAV file from codes of `law`
pub fn encode_g711(law: Law, codes: &[u8]) -> Vec<u8> {
    let tag = match law {
        Law::Ulaw => ULAW,
        Law::Alaw => ALAW,
    };
    let mut file = header(tag, 8000, 8, codes.len());
    file.extend_from_slice(codes);
    file
}

fn header(tag: u16, rate: u32, bits: u16, data_len: usize) -> Vec<u8> {
    let block = bits / 8;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&(data_len as u32).to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine_i16(rate: u32, freq: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (8000.0 * (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn reads_pcm16_at_8k_exactly() {
        let s = sine_i16(8000, 1000.0, 800);
        let out = decode_8k(&encode_pcm16(8000, &s)).unwrap();
        assert_eq!(out.len(), 800);
        assert_eq!(out[2], f32::from(s[2]) / 32768.0);
    }

    #[test]
    fn resamples_16k_and_48k_to_8k() {
        for rate in [16000, 24000, 48000] {
            let s = sine_i16(rate, 1000.0, rate as usize);
            let out = decode_8k(&encode_pcm16(rate, &s)).unwrap();
            assert!(
                (out.len() as i64 - 8000).abs() <= 1,
                "{rate}: {}",
                out.len()
            );
        }
    }

    #[test]
    fn reads_ulaw_and_alaw() {
        for (tag, law) in [(ULAW, Law::Ulaw), (ALAW, Law::Alaw)] {
            let codes: Vec<u8> = sine_i16(8000, 500.0, 160)
                .into_iter()
                .map(|s| law.encode(s))
                .collect();
            let file = encode_g711(law, &codes);
            assert_eq!(file[20], tag as u8);
            let out = decode_8k(&file).unwrap();
            assert_eq!(out.len(), 160);
            assert_eq!(out[7], f32::from(law.decode(codes[7])) / 32768.0);
        }
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        assert_eq!(decode_8k(b"hello"), Err(WavError::NotWav));
        assert_eq!(decode_8k(&[]), Err(WavError::NotWav));
        let mut stereo = header(PCM, 8000, 16, 4);
        stereo[22] = 2;
        stereo.extend_from_slice(&[0; 4]);
        assert_eq!(decode_8k(&stereo), Err(WavError::Channels(2)));
        let mut float = header(3, 8000, 32, 4);
        float.extend_from_slice(&[0; 4]);
        assert!(matches!(
            decode_8k(&float),
            Err(WavError::Encoding { tag: 3, bits: 32 })
        ));
        let odd_rate = encode_pcm16(11025, &[0; 10]);
        assert_eq!(decode_8k(&odd_rate), Err(WavError::Rate(11025)));
        let no_data = &encode_pcm16(8000, &[])[..36];
        assert_eq!(decode_8k(no_data), Err(WavError::NoData));
    }

    #[test]
    fn never_panics_on_any_truncation_or_corruption() {
        let file = encode_pcm16(16000, &sine_i16(16000, 440.0, 64));
        for len in 0..file.len() {
            let _ = decode_8k(&file[..len]);
        }
        for i in 0..file.len() {
            for v in [0x00, 0xFF, 0x7F, 0x80] {
                let mut f = file.clone();
                f[i] = v;
                let _ = decode_8k(&f);
            }
        }
    }
}
