//! SRTP and SRTCP (RFC 3711) with the AES-CM / HMAC-SHA1 suites SDES negotiates (RFC 4568):
//! `AES_CM_128_HMAC_SHA1_80` and `AES_CM_128_HMAC_SHA1_32`.
//!
//! A [`Session`] holds one leg's two directions: the keys we announced protect what we send
//! ([`Session::protect_rtp`], [`Session::protect_rtcp`]), the peer's keys authenticate and
//! decrypt what it sends ([`Session::unprotect_rtp`], [`Session::unprotect_rtcp`]). The session
//! keys are derived once (RFC 3711 §4.3, key derivation rate 0) when the session is built; per
//! packet nothing is allocated: the packet is transformed in place in the receive buffer, and
//! protecting appends the tag (and the SRTCP index) after the packet, in the room the caller's
//! buffer has past it.
//!
//! ```
//! use dialplane_media::srtp::{MasterKey, Session, Suite};
//!
//! let key = MasterKey { suite: Suite::AesCm128HmacSha1_80, key: [7; 16], salt: [9; 14] };
//! let (mut alice, mut bob) = (Session::new(key, key), Session::new(key, key));
//! let mut buf = [0u8; 64];
//! buf[..14].copy_from_slice(&[0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 42, 0xd5, 0xd5]);
//! let len = alice.protect_rtp(&mut buf, 14).unwrap();
//! assert_eq!(len, 14 + 10);
//! assert_ne!(buf[12..14], [0xd5, 0xd5]); // the payload is encrypted
//! assert_eq!(bob.unprotect_rtp(&mut buf[..len]), Ok(14));
//! assert_eq!(buf[12..14], [0xd5, 0xd5]);
//! ```
//!
//! # Decisions
//! - **Master key lifetime and MKI** are not supported (SDES lines with an MKI are refused by
//!   signaling), and the key derivation rate is 0: keys are derived once per session.
//! - **Replay** (§3.3.2): a 64-packet window per direction for SRTP (per the peer's current SSRC:
//!   a new SSRC starts a new ROC, as RFC 3711 keeps one context per SSRC) and for SRTCP.
//! - **SRTCP** always carries an 80-bit tag, also with `AES_CM_128_HMAC_SHA1_32` (RFC 4568
//!   §6.2.2), and always encrypts (E bit set); an unencrypted SRTCP packet is accepted.

use aes::Aes128;
use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::rtp;

type AesCtr = ctr::Ctr128BE<Aes128>;
type HmacSha1 = Hmac<Sha1>;

/// An SDES crypto suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-128 counter mode, HMAC-SHA1 with an 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 with a 32-bit SRTP tag (80-bit for SRTCP).
    AesCm128HmacSha1_32,
}

impl Suite {
    /// Every suite, in order of preference.
    pub const ALL: [Suite; 2] = [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32];

    /// The RFC 4568 name (`a=crypto` suite field).
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    /// The suite an `a=crypto` line names (case-sensitive, as RFC 4568 registers them).
    pub fn from_name(name: &str) -> Option<Suite> {
        Suite::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Bytes of the SRTP authentication tag.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            Suite::AesCm128HmacSha1_80 => 10,
            Suite::AesCm128HmacSha1_32 => 4,
        }
    }
}

/// Bytes of the SRTCP authentication tag (both suites).
pub const RTCP_TAG_LEN: usize = 10;
/// Bytes SRTCP adds to an RTCP packet: the E bit and index, then the tag.
pub const RTCP_OVERHEAD: usize = 4 + RTCP_TAG_LEN;
/// Most bytes protecting adds to a packet (SRTCP; SRTP adds at most 10).
pub const MAX_OVERHEAD: usize = RTCP_OVERHEAD;
/// Bytes of an SDES master key.
pub const KEY_LEN: usize = 16;
/// Bytes of an SDES master salt.
pub const SALT_LEN: usize = 14;
/// Packets of the replay window.
pub const REPLAY_WINDOW: u64 = 64;

/// One direction's master key and salt (the `inline:` key of an `a=crypto` line).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MasterKey {
    /// The suite the key is for.
    pub suite: Suite,
    /// Master key.
    pub key: [u8; KEY_LEN],
    /// Master salt.
    pub salt: [u8; SALT_LEN],
}

impl std::fmt::Debug for MasterKey {
    /// The suite only: key material stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey")
            .field("suite", &self.suite)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// The key from the `inline:` key||salt (30 bytes).
    pub fn from_inline(suite: Suite, key_salt: &[u8]) -> Option<MasterKey> {
        if key_salt.len() != KEY_LEN + SALT_LEN {
            return None;
        }
        let mut key = MasterKey {
            suite,
            key: [0; KEY_LEN],
            salt: [0; SALT_LEN],
        };
        key.key.copy_from_slice(&key_salt[..KEY_LEN]);
        key.salt.copy_from_slice(&key_salt[KEY_LEN..]);
        Some(key)
    }

    /// key||salt, as the `inline:` parameter carries it (base64 by the caller).
    pub fn inline(&self) -> [u8; KEY_LEN + SALT_LEN] {
        let mut out = [0; KEY_LEN + SALT_LEN];
        out[..KEY_LEN].copy_from_slice(&self.key);
        out[KEY_LEN..].copy_from_slice(&self.salt);
        out
    }
}

/// A leg's SDES keys: ours (what we announced) for egress, the peer's for ingress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpKeys {
    /// Protects what we send to the leg.
    pub egress: MasterKey,
    /// Authenticates and decrypts what the leg sends.
    pub ingress: MasterKey,
}

/// Why a packet was not protected or unprotected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrtpError {
    /// The tag does not match (wrong key, tampered or not SRTP at all).
    Auth,
    /// A packet already received or older than the replay window.
    Replay,
    /// Too short to be SRTP/SRTCP, or no room past the packet for the tag.
    Size,
}

impl SrtpError {
    /// Every error, for pre-registering metrics labels.
    pub const ALL: [SrtpError; 3] = [SrtpError::Auth, SrtpError::Replay, SrtpError::Size];

    /// The drop reason label (`dialplane_media_rtp_dropped_total{reason}`).
    pub const fn reason(self) -> &'static str {
        match self {
            SrtpError::Auth => "srtp_auth",
            SrtpError::Replay => "srtp_replay",
            SrtpError::Size => "srtp_size",
        }
    }
}

/// The drop reasons of [`SrtpError`], in [`SrtpError::ALL`] order.
pub const DROP_REASONS: [&str; 3] = [
    SrtpError::ALL[0].reason(),
    SrtpError::ALL[1].reason(),
    SrtpError::ALL[2].reason(),
];

/// XOR the AES-CM keystream (RFC 3711 §4.1.1) for counter block `iv` into `data`.
fn aes_cm(cipher: &Aes128, iv: &[u8; 16], data: &mut [u8]) {
    // Ctr128BE increments the whole block; the IVs here have 16 zero low bits and no packet
    // has 2^16 blocks, so that is the RFC's 16-bit block counter.
    let mut ctr = AesCtr::from_core(ctr::CtrCore::inner_iv_init(cipher.clone(), iv.into()));
    ctr.apply_keystream(data);
}

/// RFC 3711 §4.3.1 with key derivation rate 0: the PRF output for `label`, `out.len()` bytes.
fn derive(master: &MasterKey, label: u8, out: &mut [u8]) {
    let cipher = Aes128::new(&master.key.into());
    // x = (label || r) XOR master salt, r = 0 (48 bits): the label lands on byte 7 of the salt.
    let mut iv = [0u8; 16];
    iv[..SALT_LEN].copy_from_slice(&master.salt);
    iv[7] ^= label;
    out.fill(0);
    aes_cm(&cipher, &iv, out);
}

/// The session keys of one stream kind (SRTP or SRTCP) in one direction.
#[derive(Clone)]
struct SessionKeys {
    cipher: Aes128,
    salt: [u8; SALT_LEN],
    /// HMAC state with the auth key absorbed; cloned per packet.
    mac: HmacSha1,
}

impl SessionKeys {
    /// Labels: encryption, authentication, salt (0, 1, 2 for SRTP; 3, 4, 5 for SRTCP).
    fn new(master: &MasterKey, first_label: u8) -> SessionKeys {
        let (mut enc, mut auth, mut salt) = ([0u8; 16], [0u8; 20], [0u8; SALT_LEN]);
        derive(master, first_label, &mut enc);
        derive(master, first_label + 1, &mut auth);
        derive(master, first_label + 2, &mut salt);
        SessionKeys {
            cipher: Aes128::new(&enc.into()),
            salt,
            mac: <HmacSha1 as KeyInit>::new_from_slice(&auth).expect("HMAC takes any key length"),
        }
    }

    /// The counter block of packet `index` of `ssrc` (§4.1.1).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..SALT_LEN].copy_from_slice(&self.salt);
        for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *b ^= s;
        }
        for (b, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *b ^= s;
        }
        iv
    }

    fn crypt(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        aes_cm(&self.cipher, &self.iv(ssrc, index), data);
    }

    /// HMAC-SHA1 over `parts`, the full 20 bytes.
    fn tag(&self, parts: [&[u8]; 2]) -> [u8; 20] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of a (truncated) tag.
    fn verify(&self, parts: [&[u8]; 2], tag: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.verify_truncated_left(tag).is_ok()
    }
}

/// A 64-packet replay window over 48-bit (SRTP) or 31-bit (SRTCP) indexes.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    /// Highest index authenticated, if any.
    top: Option<u64>,
    /// Bit n: index `top - n` was received.
    seen: u64,
}

impl ReplayWindow {
    fn check(&self, index: u64) -> Result<(), SrtpError> {
        let Some(top) = self.top else { return Ok(()) };
        if index > top {
            return Ok(());
        }
        let age = top - index;
        if age >= REPLAY_WINDOW || self.seen & (1 << age) != 0 {
            return Err(SrtpError::Replay);
        }
        Ok(())
    }

    /// Record an authenticated index (after [`check`](Self::check)).
    fn accept(&mut self, index: u64) {
        match self.top {
            Some(top) if index <= top => self.seen |= 1 << (top - index),
            Some(top) => {
                let shift = index - top;
                self.seen = if shift >= REPLAY_WINDOW {
                    1
                } else {
                    (self.seen << shift) | 1
                };
                self.top = Some(index);
            }
            None => {
                self.top = Some(index);
                self.seen = 1;
            }
        }
    }
}

/// The 48-bit index of `seq` given the highest index so far (RFC 3711 §3.3.1 / Appendix A).
/// Not [`rtp::extend_u16`]: RFC 3711's guess keeps the ROC for a packet exactly 2^15 away and
/// wraps below ROC 0, as libsrtp does; the peer's tag depends on it.
fn estimate_index(top: Option<u64>, seq: u16) -> u64 {
    let Some(top) = top else {
        return u64::from(seq);
    };
    let (s_l, roc) = ((top & 0xffff) as i64, top >> 16);
    let seq = i64::from(seq);
    let v = if s_l < 1 << 15 {
        if seq - s_l > 1 << 15 {
            roc.wrapping_sub(1)
        } else {
            roc
        }
    } else if s_l - (1 << 15) > seq {
        roc + 1
    } else {
        roc
    };
    ((v & 0xffff_ffff) << 16) | seq as u64
}

fn ssrc_at(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// One direction of SRTP and SRTCP.
#[derive(Clone)]
struct Direction {
    master: MasterKey,
    rtp: SessionKeys,
    rtcp: SessionKeys,
    /// The SSRC `rtp_index` belongs to.
    ssrc: Option<u32>,
    /// Highest SRTP index (ROC || SEQ) and the window behind it.
    rtp_index: ReplayWindow,
    /// Sender: the last SRTCP index sent; receiver: the window.
    rtcp_index: ReplayWindow,
}

impl Direction {
    fn new(master: MasterKey) -> Direction {
        Direction {
            master,
            rtp: SessionKeys::new(&master, 0),
            rtcp: SessionKeys::new(&master, 3),
            ssrc: None,
            rtp_index: ReplayWindow::default(),
            rtcp_index: ReplayWindow::default(),
        }
    }

    /// The index of `seq` from `ssrc`; a new SSRC starts a new context.
    fn index(&mut self, ssrc: u32, seq: u16) -> u64 {
        if self.ssrc != Some(ssrc) {
            self.ssrc = Some(ssrc);
            self.rtp_index = ReplayWindow::default();
        }
        estimate_index(self.rtp_index.top, seq)
    }
}

/// One leg's SRTP: our keys for what we send, the peer's for what it sends.
#[derive(Clone)]
pub struct Session {
    tx: Direction,
    rx: Direction,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("egress", &self.tx.master)
            .field("ingress", &self.rx.master)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Derive the session keys of both directions (control path).
    pub fn new(egress: MasterKey, ingress: MasterKey) -> Session {
        Session {
            tx: Direction::new(egress),
            rx: Direction::new(ingress),
        }
    }

    /// Derive the session keys of a leg's [`SrtpKeys`].
    pub fn from_keys(keys: SrtpKeys) -> Session {
        Session::new(keys.egress, keys.ingress)
    }

    /// The master keys the session was built from.
    pub fn keys(&self) -> SrtpKeys {
        SrtpKeys {
            egress: self.tx.master,
            ingress: self.rx.master,
        }
    }

    /// Protect the RTP packet `buf[..len]` in place: encrypt the payload and append the tag.
    /// `Ok` is the new length; `Err(Size)` when `buf` has no room for the tag or `buf[..len]` is
    /// not RTP.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        let tag_len = self.tx.master.suite.rtp_tag_len();
        let pkt = buf.get(..len).ok_or(SrtpError::Size)?;
        let header = rtp::header_len(pkt).map_err(|_| SrtpError::Size)?;
        if buf.len() < len + tag_len {
            return Err(SrtpError::Size);
        }
        let (ssrc, seq) = (ssrc_at(buf, 8), u16::from_be_bytes([buf[2], buf[3]]));
        let dir = &mut self.tx;
        let index = dir.index(ssrc, seq);
        dir.rtp.crypt(ssrc, index, &mut buf[header..len]);
        let roc = ((index >> 16) as u32).to_be_bytes();
        let tag = dir.rtp.tag([&buf[..len], &roc]);
        buf[len..len + tag_len].copy_from_slice(&tag[..tag_len]);
        dir.rtp_index.accept(index);
        Ok(len + tag_len)
    }

    /// Authenticate, replay-check and decrypt the SRTP packet `buf` in place; `Ok` is the RTP
    /// length (the tag stripped). Nothing changes on `Err`.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let tag_len = self.rx.master.suite.rtp_tag_len();
        let len = buf.len().checked_sub(tag_len).ok_or(SrtpError::Size)?;
        let header = rtp::header_len(&buf[..len]).map_err(|_| SrtpError::Size)?;
        let (ssrc, seq) = (ssrc_at(buf, 8), u16::from_be_bytes([buf[2], buf[3]]));
        let dir = &mut self.rx;
        // A packet from a new SSRC only resets the context once it authenticates.
        let (index, same_ssrc) = if dir.ssrc == Some(ssrc) {
            (estimate_index(dir.rtp_index.top, seq), true)
        } else {
            (u64::from(seq), false)
        };
        if same_ssrc {
            dir.rtp_index.check(index)?;
        }
        let roc = ((index >> 16) as u32).to_be_bytes();
        let (pkt, tag) = buf.split_at(len);
        if !dir.rtp.verify([pkt, &roc], tag) {
            return Err(SrtpError::Auth);
        }
        if !same_ssrc {
            dir.index(ssrc, seq);
        }
        dir.rtp_index.accept(index);
        dir.rtp.crypt(ssrc, index, &mut buf[header..len]);
        Ok(len)
    }

    /// Protect the RTCP compound packet `buf[..len]` in place: encrypt all but the first
    /// header and SSRC, append E||index and the tag. `Ok` is the new length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 || buf.len() < len + RTCP_OVERHEAD {
            return Err(SrtpError::Size);
        }
        let dir = &mut self.tx;
        let index = dir.rtcp_index.top.map_or(0, |i| (i + 1) & 0x7fff_ffff);
        dir.rtcp_index.top = Some(index);
        let ssrc = ssrc_at(buf, 4);
        dir.rtcp.crypt(ssrc, index, &mut buf[8..len]);
        buf[len..len + 4].copy_from_slice(&(0x8000_0000 | index as u32).to_be_bytes());
        let tag = dir.rtcp.tag([&buf[..len + 4], &[]]);
        buf[len + 4..len + RTCP_OVERHEAD].copy_from_slice(&tag[..RTCP_TAG_LEN]);
        Ok(len + RTCP_OVERHEAD)
    }

    /// Authenticate, replay-check and decrypt the SRTCP packet `buf` in place; `Ok` is the RTCP
    /// length (index and tag stripped). Nothing changes on `Err`.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<usize, SrtpError> {
        let len = buf
            .len()
            .checked_sub(RTCP_OVERHEAD)
            .filter(|&l| l >= 8)
            .ok_or(SrtpError::Size)?;
        let e_index = ssrc_at(buf, len);
        let index = u64::from(e_index & 0x7fff_ffff);
        let dir = &mut self.rx;
        dir.rtcp_index.check(index)?;
        let (authed, tag) = buf.split_at(len + 4);
        if !dir.rtcp.verify([authed, &[]], tag) {
            return Err(SrtpError::Auth);
        }
        dir.rtcp_index.accept(index);
        if e_index & 0x8000_0000 != 0 {
            let ssrc = ssrc_at(buf, 4);
            dir.rtcp.crypt(ssrc, index, &mut buf[8..len]);
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    /// RFC 3711 Appendix B.3: key derivation.
    #[test]
    fn key_derivation_b3() {
        let master = MasterKey {
            suite: Suite::AesCm128HmacSha1_80,
            key: hex!("E1F97A0D3E018BE0D64FA32C06DE4139"),
            salt: hex!("0EC675AD498AFEEBB6960B3AABE6"),
        };
        let mut enc = [0u8; 16];
        derive(&master, 0, &mut enc);
        assert_eq!(enc, hex!("C61E7A93744F39EE10734AFE3FF7A087"));
        let mut salt = [0u8; 14];
        derive(&master, 2, &mut salt);
        assert_eq!(salt, hex!("30CBBC08863D8C85D49DB34A9AE1"));
        let mut auth = [0u8; 94];
        derive(&master, 1, &mut auth);
        assert_eq!(
            auth,
            hex!(
                "CEBE321F6FF7716B6FD4AB49AF256A15"
                "6D38BAA48F0A0ACF3C34E2359E6CDBCE"
                "E049646C43D9327AD175578EF7227098"
                "6371C10C9A369AC2F94A8C5FBCDDDC25"
                "6D6E919A48B610EF17C2041E47403576"
                "6B68642C59BBFC2F34DB60DBDFB2"
            )
        );
    }

    /// RFC 3711 Appendix B.2: the AES-CM keystream of the first blocks and of block 0xFEFF.
    #[test]
    fn aes_cm_keystream_b2() {
        let cipher = Aes128::new(&hex!("2B7E151628AED2A6ABF7158809CF4F3C").into());
        let iv = hex!("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000");
        let mut ks = [0u8; 48];
        aes_cm(&cipher, &iv, &mut ks);
        assert_eq!(
            ks,
            hex!(
                "E03EAD0935C95E80E166B16DD92B4EB4"
                "D23513162B02D0F72A43A2FE4A5F97AB"
                "41E95B3BB0A2E8DD477901E4FCA894C0"
            )
        );
        let mut iv = iv;
        iv[14..].copy_from_slice(&[0xfe, 0xff]);
        let mut ks = [0u8; 32];
        aes_cm(&cipher, &iv, &mut ks);
        assert_eq!(
            ks,
            hex!("EC8CDF7398607CB0F2D21675EA9EA1E4" "362B7C3C6773516318A077D7FC5073AE")
        );
    }

    /// The B.2 IV is salt XOR SSRC XOR index; check `Keys::iv` puts each field in its place.
    #[test]
    fn packet_iv_layout() {
        let keys = SessionKeys {
            cipher: Aes128::new(&[0; 16].into()),
            salt: hex!("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"),
            mac: <HmacSha1 as KeyInit>::new_from_slice(&[0; 20]).unwrap(),
        };
        assert_eq!(
            keys.iv(0x0102_0304, 0x0000_a0a1_a2a3_a4a5),
            hex!("F0F1F2F3F5F7F5F35858585858580000")
        );
    }

    fn key(seed: u8) -> MasterKey {
        MasterKey {
            suite: Suite::AesCm128HmacSha1_80,
            key: [seed; 16],
            salt: [seed ^ 0x5a; 14],
        }
    }

    fn rtp(seq: u16, payload: u8) -> [u8; 64] {
        let mut buf = [0u8; 64];
        buf[..12].copy_from_slice(&[0x80, 0, 0, 0, 0, 0, 0, 160, 0xca, 0xfe, 0, 1]);
        buf[2..4].copy_from_slice(&seq.to_be_bytes());
        buf[12..32].fill(payload);
        buf
    }

    #[test]
    fn rtp_round_trip_replay_and_tamper() {
        let mut tx = Session::new(key(1), key(2));
        let mut rx = Session::new(key(2), key(1));
        let mut sent = Vec::new();
        for seq in [65530u16, 65531, 65535, 0, 1, 2] {
            let mut buf = rtp(seq, seq as u8);
            let len = tx.protect_rtp(&mut buf, 32).unwrap();
            sent.push((buf, len));
        }
        // Reordered across the wrap: index estimation keeps the ROC right.
        for i in [0, 2, 1, 3, 5, 4] {
            let (mut buf, len) = sent[i];
            assert_eq!(rx.unprotect_rtp(&mut buf[..len]), Ok(32), "packet {i}");
            assert_eq!(
                buf[..32],
                rtp(u16::from_be_bytes([buf[2], buf[3]]), buf[12])[..32]
            );
        }
        assert_eq!(rx.rx.rtp_index.top, Some((1 << 16) | 2));
        let (mut again, len) = sent[4];
        assert_eq!(rx.unprotect_rtp(&mut again[..len]), Err(SrtpError::Replay));
        let mut buf = rtp(3, 9);
        let len = tx.protect_rtp(&mut buf, 32).unwrap();
        buf[20] ^= 1;
        let before = buf;
        assert_eq!(rx.unprotect_rtp(&mut buf[..len]), Err(SrtpError::Auth));
        assert_eq!(buf, before, "a rejected packet is left as it was");
        // Wrong key.
        let mut other = Session::new(key(2), key(3));
        let mut buf = rtp(4, 9);
        let len = tx.protect_rtp(&mut buf, 32).unwrap();
        assert_eq!(other.unprotect_rtp(&mut buf[..len]), Err(SrtpError::Auth));
        // No room for the tag.
        assert_eq!(
            tx.protect_rtp(&mut rtp(5, 0)[..35], 32),
            Err(SrtpError::Size)
        );
    }

    #[test]
    fn replay_window_edges() {
        let mut w = ReplayWindow::default();
        w.accept(100);
        assert_eq!(w.check(100), Err(SrtpError::Replay));
        assert_eq!(w.check(37), Ok(()));
        assert_eq!(w.check(36), Err(SrtpError::Replay));
        w.accept(37);
        assert_eq!(w.check(37), Err(SrtpError::Replay));
        w.accept(300);
        assert_eq!(w.check(100), Err(SrtpError::Replay));
        assert_eq!(w.check(299), Ok(()));
    }

    #[test]
    fn rtcp_round_trip_and_suite_32() {
        let k32 = |s| MasterKey {
            suite: Suite::AesCm128HmacSha1_32,
            ..key(s)
        };
        let mut tx = Session::new(k32(1), k32(2));
        let mut rx = Session::new(k32(2), k32(1));
        let mut buf = rtp(7, 3);
        assert_eq!(tx.protect_rtp(&mut buf, 32), Ok(36));
        assert_eq!(rx.unprotect_rtp(&mut buf[..36]), Ok(32));
        let mut sr = [0u8; 64];
        sr[..8].copy_from_slice(&[0x80, 200, 0, 6, 1, 2, 3, 4]);
        sr[8..28].fill(0x33);
        let plain = sr;
        for n in 0..3u8 {
            let mut buf = plain;
            assert_eq!(tx.protect_rtcp(&mut buf, 28), Ok(28 + RTCP_OVERHEAD));
            assert_eq!(buf[28..32], [0x80, 0, 0, n]);
            assert_ne!(buf[8..28], plain[8..28]);
            let replay = buf;
            assert_eq!(rx.unprotect_rtcp(&mut buf[..42]), Ok(28));
            assert_eq!(buf[..28], plain[..28]);
            let mut replay = replay;
            assert_eq!(rx.unprotect_rtcp(&mut replay[..42]), Err(SrtpError::Replay));
        }
    }
}
