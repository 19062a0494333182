//! In-place RTP header view (RFC 3550), sequence/timestamp widening and egress continuity
//!
//! [`RtpPacket::parse`] and [`RtpPacketMut::parse`] validate the whole header before any field is
//! read: length ≥ 12, version 2, the CSRC list, the extension header and its data, and the padding
//! count must all lie inside the buffer. Each failure is one [`RtpError`] variant whose
//! [`reason`](RtpError::reason) is a metrics label (see [`DROPPED_METRIC`]). After a successful
//! parse no accessor can panic, and the setters rewrite the caller's buffer in place: the relay
//! forwards a packet from the buffer it arrived in, without a copy or an allocation.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! |                           timestamp                           |
//! |           synchronization source (SSRC) identifier            |
//! |            contributing source (CSRC) identifiers (CC)        |
//! |  profile (if X)               |  length in 32-bit words       |
//! |  extension data ... | payload ... | padding ... | pad count   |
//! ```
//!
//! [`extend_u16`] / [`extend_u32`] widen wrapping sequence numbers and timestamps to `u64`
//! (RFC 3711 appendix A style), and [`Continuity`] keeps one egress stream's SSRC, sequence
//! numbers and timestamps continuous while its source changes (player → bridged peer → player).
//!
//! ```
//! use dialplane_media::rtp::{Continuity, RtpPacketMut};
//!
//! // A received PCMU packet, rewritten for the other leg in the buffer it arrived in.
//! let mut buf = [0x80, 0x00, 0x00, 0x01, 0, 0, 0, 160, 1, 2, 3, 4, 0xd5, 0xd5];
//! let mut egress = Continuity::new(0x5eed, 1000, 0);
//! let now_ticks = 0; // the caller's clock, in 8 kHz ticks
//! match RtpPacketMut::parse(&mut buf) {
//!     Ok(mut pkt) => {
//!         egress.rewrite(&mut pkt, now_ticks);
//!         pkt.set_payload_type(0);
//!     }
//!     // The relay counts `DROPPED_METRIC` with label reason = e.reason() and drops it.
//!     Err(e) => unreachable!("{}", e.reason()),
//! }
//! assert_eq!(buf[..12], [0x80, 0x80, 0x03, 0xe8, 0, 0, 0, 0, 0, 0, 0x5e, 0xed]);
//! ```

use std::fmt;

/// Fixed RTP header length in bytes.
pub const HEADER_LEN: usize = 12;

/// Name of the counter the relay increments, labelled `reason` = [`RtpError::reason`], for every
/// dropped packet.
pub const DROPPED_METRIC: &str = "dialplane_media_rtp_dropped_total";

/// Why a buffer is not a valid RTP packet. Checked in the order of the variants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer than 12 bytes.
    Short,
    /// Version field is not 2.
    Version,
    /// The CSRC count runs past the end of the buffer.
    Csrc,
    /// The extension header, or the length it announces, runs past the end of the buffer.
    Extension,
    /// The P bit is set but the padding count (last byte) is zero.
    PaddingZero,
    /// The padding count is larger than what follows the header.
    Padding,
}

impl RtpError {
    /// Every variant, for pre-registering metrics labels.
    pub const ALL: [RtpError; 6] = [
        RtpError::Short,
        RtpError::Version,
        RtpError::Csrc,
        RtpError::Extension,
        RtpError::PaddingZero,
        RtpError::Padding,
    ];

    /// Short, stable label for `dialplane_media_rtp_dropped_total{reason=...}`.
    pub const fn reason(self) -> &'static str {
        match self {
            RtpError::Short => "short",
            RtpError::Version => "version",
            RtpError::Csrc => "csrc",
            RtpError::Extension => "extension",
            RtpError::PaddingZero => "padding_zero",
            RtpError::Padding => "padding",
        }
    }
}

/// A drop-reason label list: the [`RtpError::ALL`] reasons in order, then `rest`. Shared by the
/// relay (`driver`) and the endpoint lists; a build-time panic if `N` is not `6 + rest.len()`.
pub(crate) const fn drop_reasons<const N: usize>(rest: &[&'static str]) -> [&'static str; N] {
    let mut out = [""; N];
    let mut i = 0;
    while i < RtpError::ALL.len() {
        out[i] = RtpError::ALL[i].reason();
        i += 1;
    }
    let mut j = 0;
    while j < rest.len() {
        out[i + j] = rest[j];
        j += 1;
    }
    assert!(i + j == N, "drop reason list length mismatch");
    out
}

/// The count in `counts` under the label `reason` of `reasons` (same order), 0 for an unknown label.
pub(crate) fn count_for(reasons: &[&str], counts: &[u64], reason: &str) -> u64 {
    reasons
        .iter()
        .position(|r| *r == reason)
        .map_or(0, |i| counts[i])
}

impl fmt::Display for RtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            RtpError::Short => "RTP packet shorter than 12 bytes",
            RtpError::Version => "RTP version is not 2",
            RtpError::Csrc => "RTP CSRC list runs past the end of the packet",
            RtpError::Extension => "RTP header extension runs past the end of the packet",
            RtpError::PaddingZero => "RTP padding count is zero",
            RtpError::Padding => "RTP padding longer than the payload",
        };
        f.write_str(text)
    }
}

impl std::error::Error for RtpError {}

/// Offsets found by validation: header end (payload start) and payload end (padding start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    header_len: usize,
    payload_end: usize,
}

/// Bytes of the RTP header of `buf`, CSRCs and extension included; padding is not looked at
/// (SRTP reads the header of a packet whose padding count is still encrypted).
pub(crate) fn header_len(buf: &[u8]) -> Result<usize, RtpError> {
    if buf.len() < HEADER_LEN {
        return Err(RtpError::Short);
    }
    if buf[0] >> 6 != 2 {
        return Err(RtpError::Version);
    }
    let mut header_len = HEADER_LEN + usize::from(buf[0] & 0x0f) * 4;
    if header_len > buf.len() {
        return Err(RtpError::Csrc);
    }
    if buf[0] & 0x10 != 0 {
        let Some(ext) = buf.get(header_len..header_len + 4) else {
            return Err(RtpError::Extension);
        };
        let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        header_len += 4 + words * 4;
        if header_len > buf.len() {
            return Err(RtpError::Extension);
        }
    }
    Ok(header_len)
}

fn validate(buf: &[u8]) -> Result<Layout, RtpError> {
    let header_len = header_len(buf)?;
    let mut payload_end = buf.len();
    if buf[0] & 0x20 != 0 {
        let count = usize::from(buf[buf.len() - 1]);
        if count == 0 {
            return Err(RtpError::PaddingZero);
        }
        if count > buf.len() - header_len {
            return Err(RtpError::Padding);
        }
        payload_end -= count;
    }
    Ok(Layout {
        header_len,
        payload_end,
    })
}

/// Read-only accessors shared by both views; `self.buf` has been validated.
macro_rules! getters {
    () => {
        /// Version field (always 2 after a successful parse).
        pub fn version(&self) -> u8 {
            self.buf[0] >> 6
        }
        /// P bit.
        pub fn padding(&self) -> bool {
            self.buf[0] & 0x20 != 0
        }
        /// X bit.
        pub fn has_extension(&self) -> bool {
            self.buf[0] & 0x10 != 0
        }
        /// CSRC count (CC).
        pub fn csrc_count(&self) -> u8 {
            self.buf[0] & 0x0f
        }
        /// M bit.
        pub fn marker(&self) -> bool {
            self.buf[1] & 0x80 != 0
        }
        /// Payload type (7 bits).
        pub fn payload_type(&self) -> u8 {
            self.buf[1] & 0x7f
        }
        /// Sequence number.
        pub fn sequence(&self) -> u16 {
            u16::from_be_bytes([self.buf[2], self.buf[3]])
        }
        /// RTP timestamp.
        pub fn timestamp(&self) -> u32 {
            u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]])
        }
        /// Synchronization source.
        pub fn ssrc(&self) -> u32 {
            u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]])
        }
        /// Contributing sources, in order; no allocation.
        pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + '_ {
            self.buf[HEADER_LEN..HEADER_LEN + usize::from(self.csrc_count()) * 4]
                .chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        }
        /// Header extension as (profile, data), when the X bit is set.
        pub fn extension(&self) -> Option<(u16, &[u8])> {
            if !self.has_extension() {
                return None;
            }
            let at = HEADER_LEN + usize::from(self.csrc_count()) * 4;
            let profile = u16::from_be_bytes([self.buf[at], self.buf[at + 1]]);
            Some((profile, &self.buf[at + 4..self.layout.header_len]))
        }
        /// Length of the header including CSRCs and extension: the payload's offset.
        pub fn header_len(&self) -> usize {
            self.layout.header_len
        }
        /// Payload without padding.
        pub fn payload(&self) -> &[u8] {
            &self.buf[self.layout.header_len..self.layout.payload_end]
        }
        /// Padding bytes (including the count byte); empty without the P bit.
        pub fn padding_len(&self) -> usize {
            self.buf.len() - self.layout.payload_end
        }
        /// The whole packet.
        pub fn as_bytes(&self) -> &[u8] {
            &self.buf[..]
        }
    };
}

/// Validated read-only view over an RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<'a> {
    buf: &'a [u8],
    layout: Layout,
}

impl<'a> RtpPacket<'a> {
    /// Validate `buf` (see the module docs) and wrap it.
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let layout = validate(buf)?;
        Ok(RtpPacket { buf, layout })
    }

    getters!();
}

/// Validated view over an RTP packet in a mutable buffer; setters rewrite it in place.
#[derive(Debug)]
pub struct RtpPacketMut<'a> {
    buf: &'a mut [u8],
    layout: Layout,
}

impl<'a> RtpPacketMut<'a> {
    /// Validate `buf` (see the module docs) and wrap it.
    pub fn parse(buf: &'a mut [u8]) -> Result<Self, RtpError> {
        let layout = validate(buf)?;
        Ok(RtpPacketMut { buf, layout })
    }

    getters!();

    /// Read-only view of the same packet.
    pub fn as_packet(&self) -> RtpPacket<'_> {
        RtpPacket {
            buf: self.buf,
            layout: self.layout,
        }
    }

    /// Set or clear the M bit.
    pub fn set_marker(&mut self, marker: bool) {
        self.buf[1] = (self.buf[1] & 0x7f) | if marker { 0x80 } else { 0 };
    }

    /// Set the payload type; only the low 7 bits of `pt` are used.
    pub fn set_payload_type(&mut self, pt: u8) {
        self.buf[1] = (self.buf[1] & 0x80) | (pt & 0x7f);
    }

    /// Set the sequence number.
    pub fn set_sequence(&mut self, seq: u16) {
        self.buf[2..4].copy_from_slice(&seq.to_be_bytes());
    }

    /// Set the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buf[4..8].copy_from_slice(&ts.to_be_bytes());
    }

    /// Set the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Payload without padding, writable (e.g. for transcoding in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.layout.header_len..self.layout.payload_end]
    }
}

/// RTCP packet types that RFC 5761 §4 keeps apart from RTP payload types 64–95.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtcpType {
    /// 200, sender report (RTP PT 72 if read as RTP).
    SenderReport,
    /// 201, receiver report (PT 73).
    ReceiverReport,
    /// 202, source description (PT 74).
    SourceDescription,
    /// 203, goodbye (PT 75).
    Bye,
    /// 204, application defined (PT 76).
    App,
    /// Any other RTCP packet type in 192–223 (RTPFB 205, PSFB 206, XR 207, ...).
    Other(u8),
}

/// Demultiplex rtcp-mux (RFC 5761 §4): a version-2 packet whose second byte, read as M + PT, has
/// a payload type in 64–95 (RTCP packet types 192–223) is RTCP. Needs at least 8 bytes (the
/// smallest RTCP packet, an empty RR). `None` means: treat it as RTP (and let [`RtpPacket::parse`]
/// judge it).
pub fn rtcp_type(buf: &[u8]) -> Option<RtcpType> {
    if buf.len() < 8 || buf[0] >> 6 != 2 || !(64..=95).contains(&(buf[1] & 0x7f)) {
        return None;
    }
    Some(match buf[1] {
        200 => RtcpType::SenderReport,
        201 => RtcpType::ReceiverReport,
        202 => RtcpType::SourceDescription,
        203 => RtcpType::Bye,
        204 => RtcpType::App,
        other => RtcpType::Other(other),
    })
}

/// True when [`rtcp_type`] classifies `buf` as RTCP.
pub fn is_rtcp(buf: &[u8]) -> bool {
    rtcp_type(buf).is_some()
}

/// Widen a 16-bit sequence number to 64 bits: the value nearest to `prev` (the last widened
/// value) whose low 16 bits are `value`, so a packet just before a wrap stays in the old cycle
/// and one just after moves to the next. Never goes below zero. `None` (first packet) gives
/// `value` itself.
pub fn extend_u16(prev: Option<u64>, value: u16) -> u64 {
    let Some(prev) = prev else {
        return u64::from(value);
    };
    let delta = i64::from(value.wrapping_sub(prev as u16) as i16);
    match prev.checked_add_signed(delta) {
        Some(ext) => ext,
        None => u64::from(value),
    }
}

/// [`extend_u16`] for 32-bit RTP timestamps.
pub fn extend_u32(prev: Option<u64>, value: u32) -> u64 {
    let Some(prev) = prev else {
        return u64::from(value);
    };
    let delta = i64::from(value.wrapping_sub(prev as u32) as i32);
    match prev.checked_add_signed(delta) {
        Some(ext) => ext,
        None => u64::from(value),
    }
}

/// One egress stream's SSRC, sequence numbers and timestamps kept continuous across sources.
///
/// The egress stream always carries the SSRC given to [`Continuity::new`]. Within one source
/// (identified by its SSRC) the source's own sequence and timestamp deltas are kept, so its gaps,
/// reordering and DTX silences reach the far end unchanged. When the source changes (or after
/// [`Continuity::switch_source`]) the next packet gets sequence = last sent + 1 and timestamp =
/// last sent + media-clock ticks elapsed since that packet was sent, and its marker bit is set.
///
/// `now_ticks` is the caller's monotonic clock in the stream's media-clock units (e.g. 8000 per
/// second for PCMU); the rewriter reads no clock itself.
#[derive(Debug, Clone)]
pub struct Continuity {
    ssrc: u32,
    next_seq: u16,
    next_ts: u32,
    state: Option<Source>,
}

#[derive(Debug, Clone, Copy)]
struct Source {
    /// Source SSRC, or `None` after a forced switch.
    ssrc: Option<u32>,
    /// Added (wrapping) to the source's sequence numbers.
    seq_offset: u16,
    /// Added (wrapping) to the source's timestamps.
    ts_offset: u32,
    /// Newest sequence number sent.
    last_seq: u16,
    /// Timestamp of the newest packet sent.
    last_ts: u32,
    /// `now_ticks` when the newest packet was sent.
    last_sent: u64,
}

impl Continuity {
    /// Egress stream with `ssrc`; the first packet gets `first_seq` and `first_ts` (pick them at
    /// random per RFC 3550 §5.1) and the marker bit.
    pub fn new(ssrc: u32, first_seq: u16, first_ts: u32) -> Self {
        Continuity {
            ssrc,
            next_seq: first_seq,
            next_ts: first_ts,
            state: None,
        }
    }

    /// The egress SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Treat the next packet as coming from a new source even if its SSRC is unchanged (e.g. the
    /// player restarts a file).
    pub fn switch_source(&mut self) {
        if let Some(s) = &mut self.state {
            s.ssrc = None;
        }
    }

    /// The stream's media clock changes from `old_rate` to `new_rate` (a re-INVITE switched the
    /// codec); `old_now` and `new_now` are the same instant in the old and the new ticks. The
    /// next packet starts a new source whose timestamp continues from the last one sent plus
    /// the time elapsed since, counted at the new rate.
    pub fn rescale(&mut self, old_rate: u32, new_rate: u32, old_now: u64, new_now: u64) {
        if let Some(s) = &mut self.state {
            let elapsed = old_now.saturating_sub(s.last_sent);
            let scaled = u128::from(elapsed) * u128::from(new_rate) / u128::from(old_rate.max(1));
            s.last_sent = new_now.saturating_sub(scaled as u64);
            s.ssrc = None;
        }
    }

    /// Sequence number and timestamp of the newest packet sent, if any.
    pub fn last_sent(&self) -> Option<(u16, u32)> {
        self.state.map(|s| (s.last_seq, s.last_ts))
    }

    /// Rewrite `pkt` in place for this egress stream (SSRC, sequence, timestamp and, on a switch,
    /// the marker). Payload type mapping is the caller's ([`RtpPacketMut::set_payload_type`]).
    pub fn rewrite(&mut self, pkt: &mut RtpPacketMut<'_>, now_ticks: u64) {
        let src_ssrc = pkt.ssrc();
        let src_seq = pkt.sequence();
        let src_ts = pkt.timestamp();
        let state = match self.state {
            Some(s) if s.ssrc == Some(src_ssrc) => s,
            previous => {
                let (seq, ts) = match previous {
                    None => (self.next_seq, self.next_ts),
                    Some(p) => {
                        let elapsed = now_ticks.saturating_sub(p.last_sent) as u32;
                        (p.last_seq.wrapping_add(1), p.last_ts.wrapping_add(elapsed))
                    }
                };
                pkt.set_marker(true);
                let s = Source {
                    ssrc: Some(src_ssrc),
                    seq_offset: seq.wrapping_sub(src_seq),
                    ts_offset: ts.wrapping_sub(src_ts),
                    last_seq: seq,
                    last_ts: ts,
                    last_sent: now_ticks,
                };
                self.state = Some(s);
                s
            }
        };
        let seq = src_seq.wrapping_add(state.seq_offset);
        let ts = src_ts.wrapping_add(state.ts_offset);
        pkt.set_ssrc(self.ssrc);
        pkt.set_sequence(seq);
        pkt.set_timestamp(ts);
        if let Some(s) = &mut self.state
            && (seq.wrapping_sub(s.last_seq) as i16) >= 0
        {
            // Newest so far (a late, reordered packet does not move the continuation point).
            s.last_seq = seq;
            s.last_ts = ts;
            s.last_sent = now_ticks;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// PCMU, M=1, seq 0x1234, ts 0xdeadbeef, ssrc 0x01020304, 4 payload bytes.
    const SIMPLE: [u8; 16] = hex!("80 80 1234 deadbeef 01020304 ff7f0080");

    #[test]
    fn simple_fields() {
        let p = RtpPacket::parse(&SIMPLE).unwrap();
        assert_eq!(p.version(), 2);
        assert!(!p.padding() && !p.has_extension());
        assert_eq!(p.csrc_count(), 0);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 0);
        assert_eq!(p.sequence(), 0x1234);
        assert_eq!(p.timestamp(), 0xdead_beef);
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.csrcs().count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.payload(), hex!("ff7f0080"));
        assert_eq!(p.header_len(), 12);
    }

    #[test]
    fn csrc_extension_padding() {
        // V=2 P=1 X=1 CC=2, PT 8, two CSRCs, extension profile 0xbede with 1 word, 3 payload
        // bytes, 3 padding bytes (count 3).
        let buf = hex!(
            "b2 08 0001 00000010 cafebabe"
            "11111111 22222222"
            "bede 0001 10ff0000"
            "d5d5d5"
            "000003"
        );
        let p = RtpPacket::parse(&buf).unwrap();
        assert!(p.padding() && p.has_extension());
        assert_eq!(p.csrc_count(), 2);
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 8);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), [0x1111_1111, 0x2222_2222]);
        assert_eq!(p.extension(), Some((0xbede, &hex!("10ff0000")[..])));
        assert_eq!(p.header_len(), 12 + 8 + 8);
        assert_eq!(p.payload(), hex!("d5d5d5"));
        assert_eq!(p.padding_len(), 3);
    }

    #[test]
    fn padding_fills_whole_payload_and_empty_extension() {
        let buf = hex!("b0 00 0001 00000000 00000001 abcd 0000 00000004");
        let p = RtpPacket::parse(&buf).unwrap();
        assert_eq!(p.extension(), Some((0xabcd, &[][..])));
        assert!(p.payload().is_empty());
        assert_eq!(p.padding_len(), 4);
    }

    #[test]
    fn hostile_each_reason() {
        let cases: [(&[u8], RtpError); 9] = [
            (&[], RtpError::Short),
            (&hex!("80 00 0001 00000000 000000"), RtpError::Short),
            (&hex!("40 00 0001 00000000 00000000"), RtpError::Version),
            (&hex!("00 00 0001 00000000 00000000"), RtpError::Version),
            (&hex!("81 00 0001 00000000 00000000 000000"), RtpError::Csrc),
            (
                &hex!("90 00 0001 00000000 00000000 bede00"),
                RtpError::Extension,
            ),
            (
                &hex!("90 00 0001 00000000 00000000 bede0002 00000000"),
                RtpError::Extension,
            ),
            (
                &hex!("a0 00 0001 00000000 00000000 aa00"),
                RtpError::PaddingZero,
            ),
            (
                &hex!("a0 00 0001 00000000 00000000 aa03"),
                RtpError::Padding,
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(RtpPacket::parse(buf).unwrap_err(), want, "{buf:02x?}");
            let mut copy = buf.to_vec();
            assert_eq!(RtpPacketMut::parse(&mut copy).unwrap_err(), want);
        }
        let labels: Vec<_> = RtpError::ALL.iter().map(|e| e.reason()).collect();
        assert_eq!(
            labels,
            [
                "short",
                "version",
                "csrc",
                "extension",
                "padding_zero",
                "padding"
            ]
        );
    }

    #[test]
    fn setters_rewrite_in_place() {
        let mut buf = SIMPLE;
        let mut p = RtpPacketMut::parse(&mut buf).unwrap();
        p.set_marker(false);
        p.set_payload_type(101);
        p.set_sequence(0xfffe);
        p.set_timestamp(7);
        p.set_ssrc(0xaabb_ccdd);
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 101);
        p.set_marker(true);
        assert_eq!(p.payload_type(), 101);
        assert_eq!(buf, hex!("80 e5 fffe 00000007 aabbccdd ff7f0080"));
    }

    #[test]
    fn rtcp_demux() {
        // RR with no report blocks, SR header, and PCMU/telephone-event RTP.
        assert_eq!(
            rtcp_type(&hex!("80c9 0001 01020304")),
            Some(RtcpType::ReceiverReport)
        );
        assert_eq!(
            rtcp_type(&hex!("80c8 0006 01020304")),
            Some(RtcpType::SenderReport)
        );
        assert_eq!(
            rtcp_type(&hex!("81ca 0006 01020304")),
            Some(RtcpType::SourceDescription)
        );
        assert_eq!(rtcp_type(&hex!("80cb 0001 01020304")), Some(RtcpType::Bye));
        assert_eq!(rtcp_type(&hex!("80cc 0001 01020304")), Some(RtcpType::App));
        assert_eq!(
            rtcp_type(&hex!("81cd 0001 01020304")),
            Some(RtcpType::Other(205))
        );
        assert!(!is_rtcp(&SIMPLE));
        assert!(!is_rtcp(&hex!("80 65 0001 00000000 00000000")));
        assert!(!is_rtcp(&hex!("80c9 0001")));
        assert!(!is_rtcp(&hex!("40c9 0001 01020304")));
    }

    #[test]
    fn extend_rollover() {
        assert_eq!(extend_u16(None, 65535), 65535);
        assert_eq!(extend_u16(Some(65535), 0), 65536);
        assert_eq!(extend_u16(Some(65536), 65535), 65535);
        assert_eq!(extend_u16(Some(65536 * 3 + 10), 5), 65536 * 3 + 5);
        assert_eq!(extend_u16(Some(65536 * 3 + 65000), 100), 65536 * 4 + 100);
        assert_eq!(extend_u16(Some(65536 * 4 + 100), 65000), 65536 * 3 + 65000);
        // Never negative: an early packet "before" zero stays in cycle 0.
        assert_eq!(extend_u16(Some(3), 65534), 65534);
        assert_eq!(extend_u32(None, u32::MAX), u64::from(u32::MAX));
        assert_eq!(extend_u32(Some(u64::from(u32::MAX)), 159), (1 << 32) + 159);
        assert_eq!(
            extend_u32(Some((1 << 32) + 159), u32::MAX - 1),
            u64::from(u32::MAX) - 1
        );
        assert_eq!(
            extend_u32(Some(100), u32::MAX - 100),
            u64::from(u32::MAX) - 100
        );
    }

    fn packet(ssrc: u32, seq: u16, ts: u32, marker: bool) -> [u8; 16] {
        let mut b = SIMPLE;
        let mut p = RtpPacketMut::parse(&mut b).unwrap();
        p.set_ssrc(ssrc);
        p.set_sequence(seq);
        p.set_timestamp(ts);
        p.set_marker(marker);
        b
    }

    /// Rewrite one packet; returns (seq, ts, marker, ssrc) as sent.
    fn send(c: &mut Continuity, ssrc: u32, seq: u16, ts: u32, now: u64) -> (u16, u32, bool, u32) {
        let mut b = packet(ssrc, seq, ts, false);
        let mut p = RtpPacketMut::parse(&mut b).unwrap();
        c.rewrite(&mut p, now);
        (p.sequence(), p.timestamp(), p.marker(), p.ssrc())
    }

    #[test]
    fn continuity_across_two_switches_with_wrap() {
        const OUT: u32 = 0x5eed_5eed;
        // Egress starts near both wraps; `t(x)` is the first egress timestamp plus x.
        let t = |x: u32| (u32::MAX - 300).wrapping_add(x);
        let mut c = Continuity::new(OUT, 65533, t(0));
        // Player: ssrc A, its own numbering.
        assert_eq!(send(&mut c, 0xa, 100, 1000, 0), (65533, t(0), true, OUT));
        assert_eq!(
            send(&mut c, 0xa, 101, 1160, 160),
            (65534, t(160), false, OUT)
        );
        // Source gap (seq 102 late) and a DTX pause of 800 ticks are kept; both wrap here.
        assert_eq!(send(&mut c, 0xa, 103, 2120, 1120), (0, t(1120), false, OUT));
        assert!(t(1120) < 1000);
        // Late reordered 102 maps between, without moving the continuation point.
        assert_eq!(
            send(&mut c, 0xa, 102, 1320, 1130),
            (65535, t(320), false, OUT)
        );
        assert_eq!(c.last_sent(), Some((0, t(1120))));
        // Switch to the bridged peer (ssrc B, unrelated numbering) 200 ticks after the last send.
        assert_eq!(send(&mut c, 0xb, 40000, 9, 1320), (1, t(1320), true, OUT));
        assert_eq!(
            send(&mut c, 0xb, 40001, 169, 1480),
            (2, t(1480), false, OUT)
        );
        // B wraps its own seq/ts: the deltas still apply.
        let mut c2 = c.clone();
        let wrapped = send(&mut c2, 0xb, 65535, u32::MAX, 2000);
        assert_eq!(
            wrapped,
            (25536, t(1320).wrapping_add(u32::MAX - 9), false, OUT)
        );
        assert_eq!(
            send(&mut c2, 0xb, 0, 150, 2010),
            (25537, t(1320 + 141), false, OUT)
        );
        // Back to the player (A again, its numbering moved on meanwhile), 1000 ticks later.
        assert_eq!(send(&mut c, 0xa, 500, 77777, 2480), (3, t(2480), true, OUT));
        assert_eq!(
            send(&mut c, 0xa, 501, 77937, 2640),
            (4, t(2640), false, OUT)
        );
        // Forced switch with the same SSRC (player restarted a file).
        c.switch_source();
        assert_eq!(send(&mut c, 0xa, 0, 0, 2800), (5, t(2800), true, OUT));
    }

    #[test]
    fn rewrite_does_not_touch_payload() {
        let mut c = Continuity::new(1, 0, 0);
        let mut b = packet(9, 9, 9, false);
        let before = b;
        let mut p = RtpPacketMut::parse(&mut b).unwrap();
        c.rewrite(&mut p, 0);
        assert_eq!(p.payload(), &before[12..]);
        assert_eq!(b[0], before[0]);
    }

    #[test]
    fn random_switches_keep_egress_continuous() {
        let mut seed = 0x3550_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut c = Continuity::new(77, next() as u16, next() as u32);
        // Three sources, each with its own running numbering, 20 ms packets.
        let mut src = [(next() as u16, next() as u32); 3];
        let (mut now, mut last): (u64, Option<(u16, u32)>) = (0, None);
        let mut current = 0;
        for _ in 0..50_000 {
            let r = next();
            let switched = r.is_multiple_of(50);
            if switched {
                current = (current + 1 + (r >> 8) as usize % 2) % 3;
                now += 160 * ((r >> 16) % 20); // silence while switching
            }
            let (seq, ts) = src[current];
            src[current] = (seq.wrapping_add(1), ts.wrapping_add(160));
            // The other sources keep running meanwhile.
            for (i, s) in src.iter_mut().enumerate() {
                if i != current {
                    *s = (s.0.wrapping_add(1), s.1.wrapping_add(160));
                }
            }
            now += 160;
            let (oseq, ots, marker, ssrc) = send(&mut c, 1000 + current as u32, seq, ts, now);
            assert_eq!(ssrc, 77);
            if let Some((lseq, lts)) = last {
                assert_eq!(oseq, lseq.wrapping_add(1));
                assert!(ots.wrapping_sub(lts) >= 160 && ots.wrapping_sub(lts) < 160 * 21);
                assert_eq!(marker, switched);
            }
            last = Some((oseq, ots));
        }
    }
}
