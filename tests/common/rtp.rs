//! Audio and RTP for end-to-end tests: sounds synthesised (tones, DTMF, espeak-ng speech through
//! sox), packetised as G.711 RTP and RFC 4733 events, written as pcap files SIPp's
//! `play_pcap_audio` plays, and a raw UDP endpoint that receives RTP and decodes it so a test
//! can measure what arrived (level, tone power).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dsp::g711::Law;
use media::rtp::RtpPacket;
use media::telephone_event::{EventPayload, digit_event};

/// Sample rate of every sound here.
pub const RATE: u32 = 8000;
/// Samples per 20 ms packet.
pub const FRAME: usize = 160;
/// Static payload type of PCMU.
pub const PT_PCMU: u8 = 0;
/// Static payload type of PCMA.
pub const PT_PCMA: u8 = 8;
/// The telephone-event payload type the tests' SDPs use.
pub const PT_EVENT: u8 = 101;
/// The Opus payload type the tests' SDPs use.
pub const PT_OPUS: u8 = 111;
/// Opus's RTP clock (RFC 7587), whatever the audio's bandwidth.
pub const OPUS_CLOCK: u32 = 48_000;

/// `ms` of a sine at `freq` Hz with peak `amplitude` (0.0–1.0 of full scale).
pub fn tone(freq: f32, ms: u32, amplitude: f32) -> Vec<i16> {
    let n = (RATE * ms / 1000) as usize;
    let w = 2.0 * std::f32::consts::PI * freq / RATE as f32;
    (0..n)
        .map(|i| ((w * i as f32).sin() * amplitude * 32767.0) as i16)
        .collect()
}

/// `ms` of digital silence.
pub fn silence(ms: u32) -> Vec<i16> {
    vec![0; (RATE * ms / 1000) as usize]
}

/// In-band DTMF: each digit `on_ms` of tone then `off_ms` of silence (Q.24 levels).
pub fn dtmf(digits: &str, on_ms: u32, off_ms: u32) -> Vec<i16> {
    to_i16(&dsp::dtmf::digits(digits, on_ms, off_ms))
}

/// `text` spoken by espeak-ng, resampled by sox to 8 kHz mono. `dir` holds the scratch files.
pub fn speech(text: &str, dir: &Path) -> Vec<i16> {
    let raw = dir.join("espeak.wav");
    let at8k = dir.join("espeak-8k.wav");
    run(Command::new("espeak-ng").arg("-w").arg(&raw).arg(text));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&at8k));
    let bytes = std::fs::read(&at8k).expect("sox output");
    to_i16(&signaling::media_files::decode_8k(&bytes).expect("8 kHz WAV from sox"))
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `f32` samples (full scale 1.0) as 16-bit.
pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|v| (v * 32768.0).clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Write `pcm` as a 16-bit 8 kHz mono WAV file (for dialMusic, dub and play sources).
pub fn write_wav(path: &Path, pcm: &[i16]) {
    std::fs::write(path, signaling::wav::encode_pcm16(RATE, pcm)).expect("write WAV");
}

/// One RTP packet and when it is due, counted from the stream's start.
#[derive(Debug, Clone)]
pub struct Packet {
    /// Send time relative to the first packet.
    pub at: Duration,
    /// The whole RTP packet.
    pub data: Vec<u8>,
}

/// An RTP sender's state: SSRC, sequence, timestamp and clock, so audio and events cut from
/// one stream are continuous.
#[derive(Debug, Clone)]
pub struct Stream {
    ssrc: u32,
    seq: u16,
    ts: u32,
    at: Duration,
    marker: bool,
}

impl Stream {
    /// A stream starting at sequence 1000, timestamp 0, time 0.
    pub fn new(ssrc: u32) -> Stream {
        Stream {
            ssrc,
            seq: 1000,
            ts: 0,
            at: Duration::ZERO,
            marker: true,
        }
    }

    fn packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) -> Packet {
        let mut data = Vec::with_capacity(12 + payload.len());
        data.push(0x80);
        data.push(pt | if marker { 0x80 } else { 0 });
        data.extend_from_slice(&self.seq.to_be_bytes());
        data.extend_from_slice(&ts.to_be_bytes());
        data.extend_from_slice(&self.ssrc.to_be_bytes());
        data.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        Packet { at: self.at, data }
    }

    /// `pcm` as 20 ms G.711 packets (the last one padded with silence).
    pub fn audio(&mut self, pcm: &[i16], law: Law) -> Vec<Packet> {
        let pt = match law {
            Law::Ulaw => PT_PCMU,
            Law::Alaw => PT_PCMA,
        };
        let mut out = Vec::with_capacity(pcm.len().div_ceil(FRAME));
        let mut codes = [0u8; FRAME];
        for chunk in pcm.chunks(FRAME) {
            let mut frame = [0i16; FRAME];
            frame[..chunk.len()].copy_from_slice(chunk);
            law.encode_slice(&frame, &mut codes);
            let marker = std::mem::take(&mut self.marker);
            let ts = self.ts;
            out.push(self.packet(pt, marker, ts, &codes));
            self.advance(FRAME as u32);
        }
        out
    }

    /// `pcm` (8 kHz) as 20 ms Opus packets on `pt` (libopus through audiopus, timestamps at
    /// 48 kHz); the last one padded with silence.
    pub fn opus(&mut self, pcm: &[i16], pt: u8) -> Vec<Packet> {
        use audiopus::{Application, Channels, SampleRate, coder::Encoder};
        let encoder = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip)
            .expect("opus encoder");
        let mut out = Vec::with_capacity(pcm.len().div_ceil(FRAME));
        let mut payload = [0u8; 1275];
        for chunk in pcm.chunks(FRAME) {
            let mut frame = [0i16; FRAME];
            frame[..chunk.len()].copy_from_slice(chunk);
            let len = encoder.encode(&frame, &mut payload).expect("opus encode");
            let marker = std::mem::take(&mut self.marker);
            let ts = self.ts;
            out.push(self.packet(pt, marker, ts, &payload[..len]));
            self.ts = self.ts.wrapping_add(OPUS_CLOCK / 50);
            self.at += Duration::from_millis(20);
        }
        out
    }

    /// One key press as RFC 4733 events on `pt`: a begin packet (marker), updates every 50 ms,
    /// and the end packet sent three times; the stream's clock moves on by `ms`.
    pub fn event(&mut self, digit: char, ms: u32, pt: u8) -> Vec<Packet> {
        let event = digit_event(digit).expect("a DTMF digit");
        let start_ts = self.ts;
        let total = (RATE * ms / 1000) as u16;
        let step = (RATE / 20) as u16; // 50 ms
        let mut out = Vec::new();
        let mut duration = 0u16;
        let mut first = true;
        while duration < total {
            duration = (duration + step).min(total);
            let end = duration == total;
            let payload = EventPayload {
                event,
                end,
                volume: 10,
                duration,
            }
            .encode();
            let repeats = if end { 3 } else { 1 };
            for _ in 0..repeats {
                out.push(self.packet(pt, first, start_ts, &payload));
                first = false;
            }
            self.at += Duration::from_millis(50);
        }
        self.ts = self.ts.wrapping_add(u32::from(total));
        out
    }

    /// Nothing sent for `ms` (DTX): time and timestamps move on.
    pub fn gap(&mut self, ms: u32) {
        self.advance(RATE * ms / 1000);
    }

    fn advance(&mut self, samples: u32) {
        self.ts = self.ts.wrapping_add(samples);
        self.at += Duration::from_micros(u64::from(samples) * 1_000_000 / u64::from(RATE));
    }
}

/// Write `packets` as a pcap file (Ethernet, IPv4, UDP 127.0.0.1:6000 → 127.0.0.1:6002) for
/// SIPp's `play_pcap_audio`, which sends each UDP payload at its capture time to the peer's
/// media address.
pub fn write_pcap(path: &Path, packets: &[Packet]) {
    let mut f = Vec::new();
    // Global header: magic, v2.4, zone 0, sigfigs 0, snaplen, LINKTYPE_ETHERNET.
    f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    f.extend_from_slice(&2u16.to_le_bytes());
    f.extend_from_slice(&4u16.to_le_bytes());
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&65535u32.to_le_bytes());
    f.extend_from_slice(&1u32.to_le_bytes());
    for p in packets {
        let udp_len = 8 + p.data.len();
        let ip_len = 20 + udp_len;
        let frame_len = 14 + ip_len;
        f.extend_from_slice(&(p.at.as_secs() as u32).to_le_bytes());
        f.extend_from_slice(&p.at.subsec_micros().to_le_bytes());
        f.extend_from_slice(&(frame_len as u32).to_le_bytes());
        f.extend_from_slice(&(frame_len as u32).to_le_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[127, 0, 0, 1]);
        ip[16..20].copy_from_slice(&[127, 0, 0, 1]);
        let sum = ip
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum::<u32>();
        let sum = (sum & 0xffff) + (sum >> 16);
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&6000u16.to_be_bytes());
        f.extend_from_slice(&6002u16.to_be_bytes());
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]); // no UDP checksum (allowed on IPv4)
        f.extend_from_slice(&p.data);
    }
    std::fs::write(path, f).expect("write pcap");
}

/// A copy of the SIPp scenario `template` (in `dir`) with every `PCAP_FILE` replaced by `pcap`'s
/// absolute path: SIPp loads `play_pcap_audio` files when it reads the scenario, so the path
/// must be literal.
pub fn pcap_scenario(template: &Path, pcap: &Path, dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(template).expect("scenario template");
    let pcap = std::fs::canonicalize(pcap).expect("pcap path");
    let out = dir.join(template.file_name().expect("scenario name"));
    std::fs::write(&out, text.replace("PCAP_FILE", &pcap.to_string_lossy())).expect("scenario");
    out
}

/// An RTP packet as received.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived.
    pub at: Instant,
    /// Where from.
    pub from: SocketAddr,
    /// Payload type.
    pub pt: u8,
    /// Marker bit.
    pub marker: bool,
    /// Sequence number.
    pub seq: u16,
    /// Timestamp.
    pub ts: u32,
    /// SSRC.
    pub ssrc: u32,
    /// Payload.
    pub payload: Vec<u8>,
}

impl Received {
    /// `data` as an RTP packet from `from`, arrived now (`None`: not RTP).
    pub fn parse(data: &[u8], from: SocketAddr) -> Option<Received> {
        let p = RtpPacket::parse(data).ok()?;
        Some(Received {
            at: Instant::now(),
            from,
            pt: p.payload_type(),
            marker: p.marker(),
            seq: p.sequence(),
            ts: p.timestamp(),
            ssrc: p.ssrc(),
            payload: p.payload().to_vec(),
        })
    }
}

/// A raw RTP endpoint on a loopback UDP port (a test's own media address in an SDP).
pub struct RtpPeer {
    /// The socket.
    pub socket: UdpSocket,
}

impl RtpPeer {
    /// Bound to a free port on 127.0.0.1.
    pub fn bind() -> RtpPeer {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind RTP peer");
        RtpPeer { socket }
    }

    /// The port to put in an SDP.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("local addr").port()
    }

    /// Send `packets` to `to`, paced by their times.
    pub fn send_paced(&self, to: SocketAddr, packets: &[Packet]) {
        let start = Instant::now();
        for p in packets {
            if let Some(wait) = p.at.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            self.socket.send_to(&p.data, to).expect("send RTP");
        }
    }

    /// Every RTP packet received within `limit` (RTCP and non-RTP datagrams skipped).
    pub fn receive_for(&self, limit: Duration) -> Vec<Received> {
        let end = Instant::now() + limit;
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            self.socket
                .set_read_timeout(Some(left))
                .expect("read timeout");
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                break;
            };
            if media::rtp::is_rtcp(&buf[..n]) {
                continue;
            }
            out.extend(Received::parse(&buf[..n], from));
        }
        out
    }
}

/// A scenario template of `tests/` (`name` like "transcode/caller") with its SDP's media port
/// `RTP_PORT` set to `rtp_port` and each `(from, to)` of `swaps` replaced; its path.
pub fn scenario_at(name: &str, rtp_port: u16, swaps: &[(&str, &str)]) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut text = std::fs::read_to_string(dir.join(format!("{name}.xml")))
        .expect("scenario template")
        .replace("RTP_PORT", &rtp_port.to_string());
    for (from, to) in swaps {
        text = text.replace(from, to);
    }
    let file = format!("{}-{rtp_port}.xml", name.replace('/', "-"));
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(file);
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// Sends `packets` from `from` to `to` (paced) while `at` collects what arrives in `limit`.
pub fn through(
    from: &RtpPeer,
    to: SocketAddr,
    packets: &[Packet],
    at: &RtpPeer,
    limit: Duration,
) -> Vec<Received> {
    std::thread::scope(|s| {
        s.spawn(|| from.send_paced(to, packets));
        at.receive_for(limit)
    })
}

/// One stream of `pt` packets from `relay`: one SSRC, consecutive sequence numbers, timestamps
/// `step` apart, and most of the `sent` packets.
pub fn check_stream(got: &[Received], relay: SocketAddr, pt: u8, step: u32, sent: usize) {
    assert!(
        got.len() + 3 >= sent,
        "{} of {sent} packets arrived",
        got.len()
    );
    assert!(got.iter().all(|p| p.pt == pt), "payload types");
    assert!(got.iter().all(|p| p.from == relay), "all from the relay");
    assert!(got.iter().all(|p| p.ssrc == got[0].ssrc), "one SSRC");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "sequence");
        assert_eq!(w[1].ts.wrapping_sub(w[0].ts), step, "timestamp step");
    }
}

/// `pcm` after its first 200 ms (codec and resampler start-up) carries `hz` at about `amplitude`
/// and little at `other`.
pub fn check_tone(pcm: &[i16], hz: f32, amplitude: f32, other: f32) {
    let steady = &pcm[(RATE / 5) as usize..];
    let level = tone_amplitude(steady, hz);
    assert!(
        (amplitude * 0.7..amplitude * 1.2).contains(&level),
        "{hz} Hz at {level}, sent at {amplitude}"
    );
    let leak = tone_amplitude(steady, other);
    assert!(leak < 0.05, "{other} Hz at {leak}");
}

/// The audio of the G.711 packets among `packets` (PCMU and PCMA by their static types), in
/// arrival order; other payload types are skipped.
pub fn decode(packets: &[Received]) -> Vec<i16> {
    let mut pcm = Vec::new();
    for p in packets {
        let law = match p.pt {
            PT_PCMU => Law::Ulaw,
            PT_PCMA => Law::Alaw,
            _ => continue,
        };
        let start = pcm.len();
        pcm.resize(start + p.payload.len(), 0);
        law.decode_slice(&p.payload, &mut pcm[start..]);
    }
    pcm
}

/// The audio of the Opus packets (payload type `pt`) among `packets`, decoded by libopus at
/// 8 kHz (so [`rms`] and [`tone_amplitude`] apply), in arrival order.
pub fn decode_opus(packets: &[Received], pt: u8) -> Vec<i16> {
    use audiopus::{Channels, SampleRate, coder::Decoder};
    let mut decoder = Decoder::new(SampleRate::Hz8000, Channels::Mono).expect("opus decoder");
    let mut pcm = Vec::new();
    // 120 ms, the longest Opus packet, at 8 kHz.
    let mut frame = [0i16; 960];
    for p in packets.iter().filter(|p| p.pt == pt) {
        let n = decoder
            .decode(Some(&p.payload[..]), &mut frame[..], false)
            .expect("opus decode");
        pcm.extend_from_slice(&frame[..n]);
    }
    pcm
}

/// Root mean square level, as a fraction of full scale.
pub fn rms(pcm: &[i16]) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let sum: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    ((sum / pcm.len() as f64).sqrt() / 32768.0) as f32
}

/// Amplitude (fraction of full scale) of the `freq` Hz component of `pcm`, by the Goertzel
/// algorithm: a pure tone of peak `a` at `freq` gives ≈ `a`; other frequencies give ≈ 0.
pub fn tone_amplitude(pcm: &[i16], freq: f32) -> f32 {
    if pcm.is_empty() {
        return 0.0;
    }
    let w = 2.0 * std::f64::consts::PI * f64::from(freq) / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s0 = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    (2.0 * power.max(0.0).sqrt() / pcm.len() as f64) as f32
}
