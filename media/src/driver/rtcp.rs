//! RTCP termination: each leg's own SR/RR + SDES, sans-IO.
//!
//! The relay rewrites SSRC, sequence numbers and timestamps, so the far ends' reports describe
//! streams the other side never saw. Instead of rewriting every report block consistently
//! (RFC 8079 pass-through, which also needs the per-source offsets of every switch the egress
//! stream made), the shard terminates RTCP: what a leg's remote sends is checked, counted and
//! read for its sender-report time (LSR/DLSR), and every leg sends its remote a compound report
//! of its own: an SR when the relay sent the remote media (about the egress stream: its SSRC,
//! packet and octet counts, an RTP timestamp on the egress clock) or else an RR, with one
//! reception report block about the remote's current source (loss, extended highest sequence,
//! jitter, LSR/DLSR from the endpoint's RFC 3550 A.3/A.8 counters), then an SDES CNAME.
//! `RtcpPolicy::Forward` legs pass RTCP through unchanged instead and generate nothing.

use std::time::{Duration, Instant};

use crate::endpoint::Endpoint;

/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// RTCP packet types.
const PT_SR: u8 = 200;
const PT_RR: u8 = 201;
const PT_SDES: u8 = 202;

/// Longest compound report written: SR (28) + one block (24) + SDES (8 + CNAME up to 32 + pad).
pub(crate) const MAX_REPORT: usize = 28 + 24 + 8 + 2 + 32 + 4;

/// 64-bit NTP time (seconds << 32 | fraction) of a wall-clock time since the Unix epoch.
pub(crate) fn ntp_time(since_unix: Duration) -> u64 {
    let secs = since_unix.as_secs() + NTP_UNIX_OFFSET;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// One leg's report state.
#[derive(Debug, Clone)]
pub(crate) struct Reporter {
    /// Middle 32 bits of the NTP time of the remote's last SR, and when it arrived.
    last_sr: Option<(u32, Instant)>,
    /// Counters at the previous report, for the interval's fraction lost.
    prev_expected: u64,
    prev_received: u64,
    cname: [u8; 32],
    cname_len: usize,
}

/// The leg's egress state when a report is written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Egress {
    /// RTP timestamp of the egress stream at the report's NTP time.
    pub(crate) rtp_ts: Option<u32>,
}

impl Reporter {
    /// A reporter whose SDES CNAME is `cname` (cut to 32 bytes).
    pub(crate) fn new(cname: &str) -> Reporter {
        let mut c = [0u8; 32];
        let n = cname.len().min(32);
        c[..n].copy_from_slice(&cname.as_bytes()[..n]);
        Reporter {
            last_sr: None,
            prev_expected: 0,
            prev_received: 0,
            cname: c,
            cname_len: n,
        }
    }

    /// An RTCP compound packet from the leg's (checked) remote: remember its SR's time.
    pub(crate) fn on_receive(&mut self, now: Instant, buf: &[u8]) {
        // Only the first packet of a compound can be the SR (RFC 3550 6.1).
        if buf.len() >= 28 && buf[1] == PT_SR {
            let ntp_mid = u32::from_be_bytes([buf[10], buf[11], buf[12], buf[13]]);
            self.last_sr = Some((ntp_mid, now));
        }
    }

    /// Write the leg's compound report into `out` (at least [`MAX_REPORT`] bytes); returns its
    /// length. `ntp` is the wall clock ([`ntp_time`]) at `now`.
    pub(crate) fn write(
        &mut self,
        now: Instant,
        ntp: u64,
        ep: &Endpoint,
        egress: Egress,
        out: &mut [u8],
    ) -> usize {
        let stats = ep.stats();
        let (ssrc, _) = ep.egress_state();
        let block = ep.remote_source();
        let rc = u8::from(block.is_some());
        let sr = stats.packets_out > 0 && egress.rtp_ts.is_some();
        let mut w = Writer { out, len: 0 };
        let len_words = if sr { 6 } else { 1 } + 6 * u16::from(rc);
        w.u8(0x80 | rc);
        w.u8(if sr { PT_SR } else { PT_RR });
        w.u16(len_words);
        w.u32(ssrc);
        if sr {
            w.u32((ntp >> 32) as u32);
            w.u32(ntp as u32);
            w.u32(egress.rtp_ts.unwrap_or(0));
            w.u32(stats.packets_out as u32);
            // Octets of payload: whole packets minus the fixed header.
            w.u32(stats.bytes_out.saturating_sub(12 * stats.packets_out) as u32);
        }
        if let Some((src, ext_max)) = block {
            let expected = stats.expected - self.prev_expected;
            let received = stats.received - self.prev_received;
            self.prev_expected = stats.expected;
            self.prev_received = stats.received;
            let lost_interval = expected.saturating_sub(received);
            let fraction = (lost_interval << 8)
                .checked_div(expected)
                .map_or(0, |f| f.min(255) as u32);
            // 24-bit signed cumulative loss, clamped.
            let cumulative = stats.lost().clamp(-0x80_0000, 0x7f_ffff) as u32 & 0xff_ffff;
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => {
                    let d = now.saturating_duration_since(at);
                    let units = (d.as_nanos() * 65536 / 1_000_000_000).min(u128::from(u32::MAX));
                    (lsr, units as u32)
                }
                None => (0, 0),
            };
            w.u32(src);
            w.u32((fraction << 24) | cumulative);
            w.u32(ext_max);
            w.u32(stats.jitter);
            w.u32(lsr);
            w.u32(dlsr);
        }
        // SDES: one chunk, CNAME item, END, padded to a 32-bit boundary.
        let item = 2 + self.cname_len;
        let chunk = (4 + item + 1).div_ceil(4) * 4;
        w.u8(0x81);
        w.u8(PT_SDES);
        w.u16((chunk / 4) as u16);
        w.u32(ssrc);
        w.u8(1);
        w.u8(self.cname_len as u8);
        for i in 0..self.cname_len {
            w.u8(self.cname[i]);
        }
        for _ in 0..chunk - 4 - item {
            w.u8(0);
        }
        w.len
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        if let Some(b) = self.out.get_mut(self.len) {
            *b = v;
        }
        self.len += 1;
    }
    fn u16(&mut self, v: u16) {
        v.to_be_bytes().iter().for_each(|b| self.u8(*b));
    }
    fn u32(&mut self, v: u32) {
        v.to_be_bytes().iter().for_each(|b| self.u8(*b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Endpoint, EndpointConfig};

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut v = vec![0x80, 0x00];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[0xd5; 160]);
        v
    }

    fn word(out: &[u8], i: usize) -> u32 {
        u32::from_be_bytes(out[i..i + 4].try_into().unwrap())
    }

    #[test]
    fn ntp_conversion() {
        assert_eq!(ntp_time(Duration::ZERO) >> 32, NTP_UNIX_OFFSET);
        assert_eq!(ntp_time(Duration::from_millis(500)) as u32, 1 << 31);
    }

    #[test]
    fn receiver_report_then_sender_report() {
        let t0 = Instant::now();
        let src: std::net::SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut ep = Endpoint::new(
            t0,
            EndpointConfig {
                sdp_address: Some(src),
                ..Default::default()
            },
        );
        let mut r = Reporter::new("dialplane@test");
        let mut out = [0u8; MAX_REPORT];
        // Nothing received or sent: a bare RR and the SDES.
        let n = r.write(t0, 0, &ep, Egress { rtp_ts: None }, &mut out);
        assert_eq!(&out[..4], &[0x80, PT_RR, 0, 1]);
        assert_eq!(n % 4, 0);
        assert_eq!(out[8..10], [0x81, PT_SDES]);
        // Seqs 10, 11, 14: two lost of five expected.
        for (i, seq) in [10u16, 11, 14].into_iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * i as u64);
            let mut p = rtp(seq, u32::from(seq) * 160, 0xabcd);
            assert!(ep.receive(now, src, &mut p).is_ok());
        }
        let mut sr = [0u8; 28];
        sr[0] = 0x80;
        sr[1] = PT_SR;
        sr[10..14].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        r.on_receive(t0, &sr);
        let later = t0 + Duration::from_millis(500);
        let n = r.write(later, 7, &ep, Egress { rtp_ts: None }, &mut out);
        assert_eq!(&out[..4], &[0x81, PT_RR, 0, 7]);
        assert_eq!(word(&out, 8), 0xabcd);
        assert_eq!(
            word(&out, 12),
            (102 << 24) | 2,
            "fraction 2/5 of 256, cumulative 2"
        );
        assert_eq!(word(&out, 16), 14, "extended highest sequence");
        assert_eq!(word(&out, 24), 0x1234_5678);
        assert_eq!(word(&out, 28), 32768, "half a second in 1/65536 s");
        // RR with one block, then SDES: header, SSRC, CNAME item (2 + 14), END, padding.
        assert_eq!(n, 32 + 28);
        // After sending: an SR with the egress counters.
        let mut b = Endpoint::new(t0, EndpointConfig::default());
        let mut p = rtp(15, 15 * 160, 0xabcd);
        assert!(matches!(
            ep.handle_rtp(later, src, &mut p, Some(&mut b)),
            crate::endpoint::Ingress::Drop("peer_address")
        ));
        let mut p = rtp(16, 16 * 160, 0xabcd);
        let (mut pkt, codec) = ep.receive(later, src, &mut p).unwrap();
        let mut peer = Endpoint::new(
            t0,
            EndpointConfig {
                sdp_address: Some("127.0.0.1:5000".parse().unwrap()),
                ..Default::default()
            },
        );
        let _ = ep.forward(later, &mut pkt, codec, Some(&mut peer));
        let n = r.write(later, 1 << 32, &peer, Egress { rtp_ts: Some(99) }, &mut out);
        assert_eq!(&out[..4], &[0x80, PT_SR, 0, 6]);
        assert_eq!(word(&out, 8), 1);
        assert_eq!(word(&out, 16), 99);
        assert_eq!(word(&out, 20), 1);
        assert_eq!(word(&out, 24), 160);
        assert_eq!(n, 28 + 28);
    }
}
