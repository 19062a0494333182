//! SDES SRTP (RFC 4568) for the B2BUA's legs: which offers we can answer with SRTP, our fresh
//! keys for answers and offers, and the keys a negotiated stream gives its media leg.
//!
//! A leg that offers `RTP/SAVP` with a suite the relay speaks is answered `RTP/SAVP` with a key
//! of our own; a fork whose target requires SRTP (Teams, a carrier with `srtp = true`) is offered
//! `RTP/SAVP`. The media plane decrypts and encrypts at that leg, so the other leg of the bridge
//! may be plain RTP. Keys are drawn from the thread RNG (a CSPRNG seeded by the OS) for every
//! offer and answer; key lifetimes, MKIs and session parameters are not supported (such lines
//! are skipped).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use media::srtp::{KEY_LEN, MasterKey, SALT_LEN, SrtpKeys, Suite};

use crate::sdp::{Crypto, Media, Negotiated, SessionDescription, SrtpKey};

/// A fresh key for `suite`, as an offer or answer carries it.
pub(super) fn fresh_key(suite: Suite) -> SrtpKey {
    let key_salt: [u8; KEY_LEN + SALT_LEN] = rand::random();
    SrtpKey {
        suite: suite.name().into(),
        key_salt: STANDARD.encode(key_salt),
    }
}

/// The master key of a crypto line we can use: a suite we speak, one `inline:` key of the
/// right length, no MKI, no lifetime other than the default, no session parameters.
fn master_key(c: &Crypto) -> Option<MasterKey> {
    let suite = Suite::from_name(&c.suite)?;
    let [k] = &c.keys[..] else { return None };
    if k.method != "inline" || k.mki().is_some() || !c.session_params.is_empty() {
        return None;
    }
    let key_salt = STANDARD.decode(k.key_salt()).ok()?;
    MasterKey::from_inline(suite, &key_salt)
}

/// Whether `m` is SDES SRTP (`RTP/SAVP`, `RTP/SAVPF`) with a crypto line we can use.
pub(super) fn usable(m: &Media) -> bool {
    m.proto.is_secure() && !m.proto.is_dtls() && m.crypto().any(|c| master_key(c).is_some())
}

/// Our keys for answering `offer`: one fresh key per suite of its first usable crypto line, or
/// none when its audio is not SDES SRTP.
pub(super) fn answer_keys(offer: &SessionDescription) -> Vec<SrtpKey> {
    offer
        .media
        .iter()
        .find(|m| m.kind == "audio" && m.port != 0 && m.proto.is_rtp())
        .filter(|m| m.proto.is_secure())
        .and_then(|m| m.crypto().find_map(master_key))
        .map(|k| vec![fresh_key(k.suite)])
        .unwrap_or_default()
}

/// Our key for an offer to a target that requires SRTP.
pub(super) fn offer_keys(required: bool) -> Vec<SrtpKey> {
    if required {
        vec![fresh_key(Suite::AesCm128HmacSha1_80)]
    } else {
        Vec::new()
    }
}

/// The media leg's keys for a negotiated stream: theirs decrypt what they send, ours encrypt
/// what we send. `None` for plain RTP (or a line we could not use).
pub(super) fn leg_keys(n: &Negotiated) -> Option<SrtpKeys> {
    let (theirs, ours) = n.srtp.as_ref()?;
    Some(SrtpKeys {
        ingress: master_key(theirs)?,
        egress: master_key(ours)?,
    })
}

/// Our key of a negotiated stream, to offer again in a re-INVITE (keeps the stream's keys).
pub(super) fn our_key(n: &Negotiated) -> Vec<SrtpKey> {
    n.srtp
        .iter()
        .filter_map(|(_, ours)| {
            Some(SrtpKey {
                suite: ours.suite.clone(),
                key_salt: ours.keys.first()?.key_salt().to_owned(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b2bua::media::{answer, endpoint_spec, local, relayable};
    use crate::sdp::Proto;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n\
        a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n\
        a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj\r\n";

    #[test]
    fn savp_offer_answered_with_fresh_key_and_leg_keys() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        assert!(!relayable(&offer).is_empty(), "an SDES offer is relayable");
        let mut l = local(1, "198.51.100.1".parse().unwrap(), 40000, relayable(&offer));
        l.srtp = answer_keys(&offer);
        // The MKI line (tag 1) is skipped: the answer takes tag 2, the 32-bit suite.
        assert_eq!(l.srtp.len(), 1);
        assert_eq!(l.srtp[0].suite, "AES_CM_128_HMAC_SHA1_32");
        let (sdp, n) = answer(&offer, &l).unwrap();
        assert_eq!(sdp.media[0].proto, Proto::RTP_SAVP);
        let ours = sdp.media[0].crypto().next().unwrap();
        assert_eq!(
            (ours.tag, ours.suite.as_str()),
            (2, "AES_CM_128_HMAC_SHA1_32")
        );
        let keys = endpoint_spec(&n).srtp.expect("SRTP leg");
        assert_eq!(keys.ingress.suite, Suite::AesCm128HmacSha1_32);
        assert_eq!(
            STANDARD.encode(keys.ingress.inline()),
            "NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
        );
        assert_eq!(STANDARD.encode(keys.egress.inline()), l.srtp[0].key_salt);
        assert_ne!(
            answer_keys(&offer)[0],
            l.srtp[0],
            "every answer gets a fresh key"
        );
        assert_eq!(our_key(&n), l.srtp);
    }

    #[test]
    fn unusable_crypto_is_not_relayed() {
        let offer = OFFER.replace(
            "a=crypto:2 AES_CM_128_HMAC_SHA1_32",
            "a=crypto:2 F8_128_HMAC_SHA1_80",
        );
        let offer = SessionDescription::parse(&offer).unwrap();
        assert!(relayable(&offer).is_empty());
        assert!(answer_keys(&offer).is_empty());
        let plain = OFFER.replace("RTP/SAVP", "RTP/AVP");
        let plain = SessionDescription::parse(&plain).unwrap();
        assert!(
            answer_keys(&plain).is_empty(),
            "plain RTP is answered plain"
        );
    }
}
