//! WAV files out: for tests and sample recordings. Reading (WAV and MP3, any rate, any channel
//! count) is [`crate::media_files::decode_8k`].

use dsp::g711::Law;

const PCM: u16 = 1;
const ALAW: u16 = 6;
const ULAW: u16 = 7;

/// Builds a mono 16-bit PCM WAV file
pub fn encode_pcm16(rate: u32, samples: &[i16]) -> Vec<u8> {
    encode_pcm16_channels(rate, 1, samples)
}

/// Builds a 16-bit PCM WAV file of `channels` channels from interleaved samples
pub fn encode_pcm16_channels(rate: u32, channels: u16, interleaved: &[i16]) -> Vec<u8> {
    let mut file = header(PCM, rate, channels, 16, interleaved.len() * 2);
    file.extend(interleaved.iter().flat_map(|s| s.to_le_bytes()));
    file
}

/// Builds a mono 8 kHz G.711 WAV file from codes of `law`
pub fn encode_g711(law: Law, codes: &[u8]) -> Vec<u8> {
    let tag = match law {
        Law::Ulaw => ULAW,
        Law::Alaw => ALAW,
    };
    let mut file = header(tag, 8000, 1, 8, codes.len());
    file.extend_from_slice(codes);
    file
}

fn header(tag: u16, rate: u32, channels: u16, bits: u16, data_len: usize) -> Vec<u8> {
    let block = bits / 8 * channels;
    // Formats other than PCM carry a cbSize field (WAVEFORMATEX), which readers such as
    // symphonia require.
    let fmt_len: u32 = if tag == PCM { 16 } else { 18 };
    let mut h = Vec::with_capacity(46);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(20 + fmt_len + data_len as u32).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&tag.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    if tag != PCM {
        h.extend_from_slice(&0u16.to_le_bytes());
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&(data_len as u32).to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_describes_the_data() {
        let file = encode_pcm16(16000, &[1, -2, 3]);
        assert_eq!(&file[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(file[4..8].try_into().unwrap()), 36 + 6);
        assert_eq!(u16::from_le_bytes([file[20], file[21]]), PCM);
        assert_eq!(u32::from_le_bytes(file[24..28].try_into().unwrap()), 16000);
        assert_eq!(u32::from_le_bytes(file[28..32].try_into().unwrap()), 32000);
        assert_eq!(&file[44..], &[1, 0, 0xFE, 0xFF, 3, 0]);
        let file = encode_g711(Law::Alaw, &[0xD5; 4]);
        assert_eq!(u16::from_le_bytes([file[20], file[21]]), ALAW);
        assert_eq!(file[34], 8);
        assert_eq!(u32::from_le_bytes(file[16..20].try_into().unwrap()), 18);
        assert_eq!(file.len(), 50);
    }
}
