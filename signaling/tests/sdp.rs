//! SDP: real-world-like offers parsed field by field, answered, round-tripped; hold, rejection,
//! our own offers, hostile bodies

use std::net::{IpAddr, Ipv4Addr};

use dialplane_signaling::sdp::{
    Answer, AnswerError, Attribute, Codec, Connection, Direction, LocalMedia, LocalOrigin, Proto,
    SdpError, SessionDescription, SrtpKey, accept_answer, answer, offer,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn crlf(s: &str) -> String {
    s.lines().map(|l| format!("{l}\r\n")).collect()
}

/// rtpengine in front of Kamailio: ICE, rtcp-mux, telephone-event
const RTPENGINE: &str = "v=0
o=- 1545997027 3 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
a=sendrecv
m=audio 30000 RTP/AVP 0 8 101
a=mid:0
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtcp:30001
a=rtcp-mux
a=ice-ufrag:Dfw2Ghd7
a=ice-pwd:Q2gbHnlX4PzKW3cN9q7v1o
a=ice-options:trickle
a=candidate:Y7Z0sVvJ3Fl8qQ3a 1 UDP 2130706431 198.51.100.1 30000 typ host
a=candidate:Y7Z0sVvJ3Fl8qQ3a 2 UDP 2130706430 198.51.100.1 30001 typ host
a=ptime:20
";

/// Microsoft Teams direct routing style: SDES-SRTP with two crypto lines, many codecs
const TEAMS: &str = "v=0
o=- 0 0 IN IP4 52.114.76.76
s=session
c=IN IP4 52.114.76.76
b=CT:10000000
t=0 0
m=audio 52214 RTP/SAVP 104 9 103 111 18 0 8 97 101 13 118
c=IN IP4 52.114.76.76
a=rtcp:52215
a=ice-ufrag:Rt6H
a=ice-pwd:5kSd7kUnLQnoYRo4Zhz7oD0f
a=rtcp-mux
a=candidate:1 1 UDP 2130706431 52.114.76.76 52214 typ srflx raddr 10.0.0.4 rport 52214
a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1
a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:5FoKkQlZt4YbM5nZ0bUm3rWQxk2PVd8u1iGz5vXf|2^31
a=maxptime:200
a=rtpmap:104 SILK/16000
a=rtpmap:9 G722/8000
a=rtpmap:103 SILK/8000
a=rtpmap:111 SIREN/16000
a=fmtp:111 bitrate=16000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 RED/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=rtpmap:13 CN/8000
a=rtpmap:118 CN/16000
a=ptime:20
";

/// A carrier SBC: G729 first, telephone-event on 100 with 0-15, static types partly without rtpmap
const CARRIER: &str = "v=0
o=Sonus_UAC 245 1001 IN IP4 203.0.113.10
s=SIP Media Capabilities
c=IN IP4 203.0.113.11
t=0 0
m=audio 20000 RTP/AVP 18 0 8 100
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:100 telephone-event/8000
a=fmtp:100 0-15
a=sendrecv
a=maxptime:20
";

/// A browser: Opus first, DTLS-SRTP, ICE with 0.0.0.0, plus a video stream
const WEBRTC: &str = "v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=extmap-allow-mixed
a=msid-semantic: WMS stream
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126
c=IN IP4 0.0.0.0
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:EsAw
a=ice-pwd:bP+XJMM09aR8AiX1jdukzR6Y
a=ice-options:trickle
a=fingerprint:sha-256 DA:39:A3:EE:5E:6B:4B:0D:32:55:BF:EF:95:60:18:90:AF:D8:07:09:1A:5C:E0:C4:6B:DD:09:4C:7B:52:2E:01
a=setup:actpass
a=mid:0
a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level
a=sendrecv
a=msid:stream track
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=rtcp-fb:111 transport-cc
a=fmtp:111 minptime=10;useinbandfec=1
a=rtpmap:63 red/48000/2
a=fmtp:63 111/111
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:13 CN/8000
a=rtpmap:110 telephone-event/48000
a=rtpmap:126 telephone-event/8000
a=ssrc:1001 cname:aBcDeFgHiJkLmNoP
m=video 9 UDP/TLS/RTP/SAVPF 96 97
c=IN IP4 0.0.0.0
a=mid:1
a=rtpmap:96 VP8/90000
a=rtpmap:97 rtx/90000
a=fmtp:97 apt=96
";

/// A SIP softphone offering Opus over plain RTP, with a video stream we do not take
const SOFTPHONE_OPUS: &str = "v=0
o=linphone 1234 5678 IN IP6 2001:db8::10
s=Talk
c=IN IP6 2001:db8::10
t=0 0
m=audio 7078 RTP/AVP 96 0 8 101
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-11
m=video 9078 RTP/AVP 102
a=rtpmap:102 H264/90000
";

const ALL: [&str; 5] = [RTPENGINE, TEAMS, CARRIER, WEBRTC, SOFTPHONE_OPUS];

fn ours() -> LocalMedia {
    LocalMedia {
        origin: LocalOrigin {
            username: "dialplane".into(),
            session_id: 42,
            session_version: 1,
        },
        codecs: Codec::defaults(),
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        port: 40_000,
        direction: Direction::SendRecv,
        ptime: Some(20),
        rtcp_mux: true,
        srtp: Vec::new(),
    }
}

fn parse(s: &str) -> SessionDescription {
    SessionDescription::parse(&crlf(s)).unwrap()
}

/// Answer, then check the answer survives the wire
fn answer_checked(offer: &SessionDescription, config: &LocalMedia) -> Answer {
    let a = answer(offer, config);
    let wire = a.sdp.to_string();
    assert_eq!(SessionDescription::parse(&wire).unwrap(), a.sdp, "{wire}");
    assert_eq!(a.sdp.media.len(), offer.media.len());
    a
}

fn pts(m: &dialplane_signaling::sdp::Media) -> Vec<&str> {
    m.formats.iter().map(String::as_str).collect()
}

#[test]
fn rtpengine_offer_parses_field_by_field() {
    let sdp = parse(RTPENGINE);
    assert_eq!(sdp.origin.session_id, "1545997027");
    assert_eq!(sdp.origin.session_version, 3);
    assert_eq!(sdp.origin.address, "198.51.100.1");
    assert_eq!(
        sdp.connection.as_ref().unwrap().ip(),
        Some("198.51.100.1".parse().unwrap())
    );
    assert_eq!(sdp.timing[0].start, 0);
    assert_eq!(sdp.attributes, [Attribute::Direction(Direction::SendRecv)]);
    let m = &sdp.media[0];
    assert_eq!(m.kind, "audio");
    assert_eq!(m.port, 30000);
    assert_eq!(m.proto, Proto::RTP_AVP);
    assert_eq!(pts(m), ["0", "8", "101"]);
    assert!(m.rtcp_mux());
    assert_eq!(m.ptime(), Some(20));
    assert_eq!(m.fmtp("101"), Some("0-16"));
    assert!(
        m.attributes
            .contains(&Attribute::IceUfrag("Dfw2Ghd7".into()))
    );
    assert!(m.attributes.contains(&Attribute::Rtcp {
        port: 30001,
        connection: None
    }));
    let candidates: Vec<_> = m
        .attributes
        .iter()
        .filter_map(|a| match a {
            Attribute::Candidate(c) => Some(c.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        candidates[1],
        "Y7Z0sVvJ3Fl8qQ3a 2 UDP 2130706430 198.51.100.1 30001 typ host"
    );
    // Unknown attributes are kept in place.
    assert_eq!(
        m.attributes[0],
        Attribute::Other {
            name: "mid".into(),
            value: Some("0".into())
        }
    );
    assert_eq!(
        m.codecs(),
        [Codec::pcmu(), Codec::pcma(), Codec::telephone_event()]
    );
    assert!(!sdp.is_hold(m));
}

#[test]
fn rtpengine_offer_answered() {
    let a = answer_checked(&parse(RTPENGINE), &ours());
    let n = a.negotiated.unwrap();
    assert_eq!(n.index, 0);
    assert_eq!(n.codecs, [Codec::pcmu(), Codec::pcma()]);
    assert_eq!(n.telephone_event, Some(Codec::telephone_event()));
    assert_eq!(n.remote_address, Some("198.51.100.1".parse().unwrap()));
    assert_eq!(n.remote_port, 30000);
    assert_eq!(n.remote_rtcp_port, Some(30001));
    assert_eq!(n.direction, Direction::SendRecv);
    assert!(!n.remote_hold);
    assert!(n.rtcp_mux);
    assert_eq!(n.srtp, None);
    assert_eq!(n.remote_ptime, Some(20));

    let wire = a.sdp.to_string();
    assert_eq!(
        wire,
        "v=0\r\n\
         o=dialplane 42 1 IN IP4 203.0.113.5\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.5\r\n\
         t=0 0\r\n\
         m=audio 40000 RTP/AVP 0 8 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=rtcp-mux\r\n\
         a=sendrecv\r\n"
    );
    // Without rtcp-mux on our side it is not answered.
    let a = answer_checked(
        &parse(RTPENGINE),
        &LocalMedia {
            rtcp_mux: false,
            ..ours()
        },
    );
    assert!(!a.negotiated.unwrap().rtcp_mux);
    assert!(!a.sdp.media[0].rtcp_mux());
}

#[test]
fn teams_srtp_offer() {
    let sdp = parse(TEAMS);
    assert_eq!(sdp.bandwidths[0].bwtype, "CT");
    assert_eq!(sdp.bandwidths[0].value, 10_000_000);
    let m = &sdp.media[0];
    assert_eq!(m.proto, Proto::RTP_SAVP);
    assert!(m.proto.is_secure() && !m.proto.is_dtls() && m.proto.is_rtp());
    let crypto: Vec<_> = m.crypto().collect();
    assert_eq!(crypto.len(), 2);
    assert_eq!(crypto[0].tag, 2);
    assert_eq!(crypto[0].suite, "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(crypto[0].keys[0].method, "inline");
    assert_eq!(
        crypto[0].keys[0].key_salt(),
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
    );
    assert_eq!(crypto[0].keys[0].lifetime(), Some("2^31"));
    assert_eq!(crypto[0].keys[0].mki(), Some("1:1"));
    assert_eq!(crypto[1].keys[0].mki(), None);
    assert!(m.attributes.contains(&Attribute::MaxPtime(200)));
    let codecs = m.codecs();
    assert_eq!(codecs.len(), 11);
    assert_eq!(codecs[3], {
        let mut c = Codec::new(111, "SIREN", 16000, None);
        c.fmtp = Some("bitrate=16000".into());
        c
    });

    // Without SRTP keys the only stream is rejected.
    let a = answer_checked(&sdp, &ours());
    assert_eq!(a.negotiated, None);
    assert_eq!(a.sdp.media[0].port, 0);
    assert_eq!(a.sdp.media[0].proto, Proto::RTP_SAVP);
    assert_eq!(a.sdp.media[0].formats, m.formats);

    // With a key for the suite, the first matching crypto line (tag 2) is accepted.
    let key = SrtpKey {
        suite: "AES_CM_128_HMAC_SHA1_80".into(),
        key_salt: "d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj".into(),
    };
    let config = LocalMedia {
        srtp: vec![
            SrtpKey {
                suite: "AES_256_CM_HMAC_SHA1_80".into(),
                key_salt: "unused".into(),
            },
            key.clone(),
        ],
        ..ours()
    };
    let a = answer_checked(&sdp, &config);
    let n = a.negotiated.unwrap();
    // SIREN on 111 is not our Opus on 111.
    assert_eq!(n.codecs, [Codec::pcmu(), Codec::pcma()]);
    assert_eq!(n.telephone_event, Some(Codec::telephone_event()));
    let (theirs, mine) = n.srtp.unwrap();
    assert_eq!(theirs.tag, 2);
    assert_eq!(mine.tag, 2);
    assert_eq!(mine.suite, key.suite);
    assert_eq!(mine.keys[0].key_salt(), key.key_salt);
    let m = &a.sdp.media[0];
    assert_eq!(m.proto, Proto::RTP_SAVP);
    assert_eq!(pts(m), ["0", "8", "101"]);
    assert!(a.sdp.to_string().contains(
        "a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj\r\n"
    ));
}

#[test]
fn carrier_offer_with_static_types_and_g729() {
    let sdp = parse(CARRIER);
    assert_eq!(sdp.origin.username, "Sonus_UAC");
    assert_eq!(sdp.session_name, "SIP Media Capabilities");
    let m = &sdp.media[0];
    let codecs = m.codecs();
    assert_eq!(
        codecs.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        ["G729", "PCMU", "PCMA", "telephone-event"]
    );
    assert_eq!(codecs[0].fmtp.as_deref(), Some("annexb=no"));
    // PCMU and PCMA come from the static table.
    assert_eq!(m.rtpmap(0), None);
    assert_eq!(codecs[1], Codec::pcmu());
    assert_eq!(Codec::from_static(9).unwrap().name, "G722");
    assert_eq!(Codec::from_static(13).unwrap().name, "CN");
    assert_eq!(Codec::from_static(96), None);

    let a = answer_checked(&sdp, &ours());
    let n = a.negotiated.unwrap();
    assert_eq!(n.codecs, [Codec::pcmu(), Codec::pcma()]);
    let te = n.telephone_event.unwrap();
    assert_eq!(te.payload_type, 100);
    assert_eq!(te.fmtp.as_deref(), Some("0-15"));
    assert_eq!(n.remote_address, Some("203.0.113.11".parse().unwrap()));
    assert_eq!(n.remote_port, 20000);
    assert_eq!(n.remote_rtcp_port, None);
    assert!(!n.rtcp_mux);
    let m = &a.sdp.media[0];
    assert_eq!(pts(m), ["0", "8", "100"]);
    assert_eq!(m.fmtp("100"), Some("0-15"));
    assert_eq!(m.direction(), Some(Direction::SendRecv));

    // A carrier that only does G729: rejected.
    let g729 = parse(&CARRIER.replace("18 0 8 100", "18"));
    let a = answer_checked(&g729, &ours());
    assert_eq!(a.negotiated, None);
    assert_eq!(a.sdp.media[0].port, 0);
    assert_eq!(pts(&a.sdp.media[0]), ["18"]);
    // telephone-event alone is not a codec.
    let te_only = parse(&CARRIER.replace("18 0 8 100", "100"));
    assert_eq!(answer_checked(&te_only, &ours()).negotiated, None);
}

#[test]
fn webrtc_offer_parsed_and_dtls_rejected() {
    let sdp = parse(WEBRTC);
    assert_eq!(sdp.media.len(), 2);
    let m = &sdp.media[0];
    assert_eq!(m.proto, Proto::UDP_TLS_RTP_SAVPF);
    assert!(m.proto.is_dtls());
    assert!(m.attributes.contains(&Attribute::Rtcp {
        port: 9,
        connection: Some(Connection::from_ip("0.0.0.0".parse().unwrap()))
    }));
    let codecs = m.codecs();
    assert_eq!(codecs[0].name, "opus");
    assert_eq!(codecs[0].channels, Some(2));
    assert_eq!(
        codecs[0].fmtp.as_deref(),
        Some("minptime=10;useinbandfec=1")
    );
    // ICE's 0.0.0.0 is not hold.
    assert!(!sdp.is_hold(m));
    // Session-level unknowns kept in order, including the odd "msid-semantic: WMS".
    assert_eq!(sdp.attributes.len(), 3);
    assert_eq!(
        sdp.attributes[2],
        Attribute::Other {
            name: "msid-semantic".into(),
            value: Some(" WMS stream".into())
        }
    );
    let a = answer_checked(&sdp, &ours());
    assert_eq!(a.negotiated, None);
    assert!(a.sdp.media.iter().all(|m| m.port == 0));
    assert_eq!(a.sdp.media[1].kind, "video");
    assert_eq!(pts(&a.sdp.media[1]), ["96", "97"]);
}

#[test]
fn opus_over_plain_rtp() {
    let sdp = parse(SOFTPHONE_OPUS);
    let a = answer_checked(&sdp, &ours());
    let n = a.negotiated.unwrap();
    // Our preference order (PCMU, PCMA, Opus) with their payload types.
    let mut opus = Codec::opus();
    opus.payload_type = 96;
    opus.fmtp = Some("useinbandfec=1".into());
    assert_eq!(n.codecs, [Codec::pcmu(), Codec::pcma(), opus.clone()]);
    assert_eq!(n.telephone_event.unwrap().fmtp.as_deref(), Some("0-11"));
    assert_eq!(n.remote_address, Some("2001:db8::10".parse().unwrap()));
    assert_eq!(pts(&a.sdp.media[0]), ["0", "8", "96", "101"]);
    assert_eq!(a.sdp.media[1].port, 0);
    assert_eq!(a.sdp.media[1].kind, "video");

    // Opus first in our list; IPv6 answer address.
    let config = LocalMedia {
        codecs: vec![Codec::opus(), Codec::pcmu(), Codec::telephone_event()],
        address: "2001:db8::5".parse().unwrap(),
        ..ours()
    };
    let a = answer_checked(&sdp, &config);
    assert_eq!(a.negotiated.unwrap().codecs, [opus, Codec::pcmu()]);
    assert_eq!(a.sdp.connection.as_ref().unwrap().addr_type, "IP6");
    assert!(a.sdp.to_string().contains("a=rtpmap:96 opus/48000/2\r\n"));

    // Opus must match channels: a mono "opus/48000" is not our opus/48000/2.
    let mono = parse(&SOFTPHONE_OPUS.replace("opus/48000/2", "opus/48000"));
    let a = answer_checked(&mono, &config);
    assert_eq!(a.negotiated.unwrap().codecs, [Codec::pcmu()]);
}

#[test]
fn direction_answers_per_rfc3264() {
    use Direction::*;
    let table = [
        (SendRecv, SendRecv, SendRecv),
        (SendOnly, SendRecv, RecvOnly),
        (RecvOnly, SendRecv, SendOnly),
        (Inactive, SendRecv, Inactive),
        (SendRecv, SendOnly, SendOnly),
        (SendRecv, Inactive, Inactive),
        (SendOnly, SendOnly, Inactive),
        (RecvOnly, RecvOnly, Inactive),
    ];
    for (offered, local, expected) in table {
        assert_eq!(offered.answer(local), expected, "{offered:?} / {local:?}");
    }
}

#[test]
fn hold_offers() {
    for (dir, answered, hold) in [
        ("sendonly", Direction::RecvOnly, true),
        ("inactive", Direction::Inactive, true),
        ("recvonly", Direction::SendOnly, false),
        ("sendrecv", Direction::SendRecv, false),
    ] {
        let sdp = parse(&CARRIER.replace("a=sendrecv", &format!("a={dir}")));
        let a = answer_checked(&sdp, &ours());
        let n = a.negotiated.unwrap();
        assert_eq!(n.direction, answered, "{dir}");
        assert_eq!(n.remote_hold, hold, "{dir}");
        assert_eq!(a.sdp.media[0].direction(), Some(answered));
    }
    // Session-level direction applies to media without one.
    let sdp = parse(&RTPENGINE.replace("a=sendrecv", "a=sendonly"));
    assert!(sdp.is_hold(&sdp.media[0]));
    let n = answer_checked(&sdp, &ours()).negotiated.unwrap();
    assert_eq!(n.direction, Direction::RecvOnly);
    // RFC 2543 hold: c=0.0.0.0 without ICE.
    let sdp = parse(&CARRIER.replace("c=IN IP4 203.0.113.11", "c=IN IP4 0.0.0.0"));
    let n = answer_checked(&sdp, &ours()).negotiated.unwrap();
    assert!(n.remote_hold);
    assert_eq!(n.direction, Direction::SendRecv);
    // We hold them: we ask for sendonly.
    let config = LocalMedia {
        direction: Direction::SendOnly,
        ..ours()
    };
    let n = answer_checked(&parse(CARRIER), &config).negotiated.unwrap();
    assert_eq!(n.direction, Direction::SendOnly);
}

#[test]
fn rejections() {
    // A disabled stream stays disabled; the next audio stream is taken.
    let two = parse(&format!(
        "{CARRIER}m=audio 20002 RTP/AVP 0\n{}",
        "a=sendrecv\n"
    ));
    let disabled = parse(&format!(
        "{}m=audio 20002 RTP/AVP 0\n",
        CARRIER.replace("m=audio 20000", "m=audio 0")
    ));
    let a = answer_checked(&disabled, &ours());
    assert_eq!(a.sdp.media[0].port, 0);
    assert_eq!(a.sdp.media[1].port, 40_000);
    assert_eq!(a.negotiated.unwrap().index, 1);
    // Only one audio stream is accepted.
    let a = answer_checked(&two, &ours());
    assert_eq!(a.sdp.media[0].port, 40_000);
    assert_eq!(a.sdp.media[1].port, 0);
    // Non-RTP media.
    let t38 = parse(&CARRIER.replace(
        "m=audio 20000 RTP/AVP 18 0 8 100",
        "m=image 20000 udptl t38",
    ));
    let a = answer_checked(&t38, &ours());
    assert_eq!(a.negotiated, None);
    assert_eq!(a.sdp.media[0].kind, "image");
    assert_eq!(pts(&a.sdp.media[0]), ["t38"]);
}

#[test]
fn our_offer_and_the_answer_to_it() {
    let config = LocalMedia {
        origin: LocalOrigin {
            username: "dialplane".into(),
            session_id: 7,
            session_version: 2,
        },
        codecs: Codec::defaults(),
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        port: 40_002,
        direction: Direction::SendRecv,
        ptime: Some(20),
        rtcp_mux: false,
        srtp: Vec::new(),
    };
    let sdp = offer(&config);
    assert_eq!(
        sdp.to_string(),
        "v=0\r\n\
         o=dialplane 7 2 IN IP4 203.0.113.5\r\n\
         s=-\r\n\
         c=IN IP4 203.0.113.5\r\n\
         t=0 0\r\n\
         m=audio 40002 RTP/AVP 0 8 111 101\r\n\
         a=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:111 opus/48000/2\r\n\
         a=rtpmap:101 telephone-event/8000\r\n\
         a=fmtp:101 0-16\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n"
    );
    let parsed = SessionDescription::parse(&sdp.to_string()).unwrap();
    assert_eq!(parsed, sdp);
    assert_eq!(parsed.media[0].codecs(), Codec::defaults());

    // A peer that only has PCMA answers our offer.
    let peer = LocalMedia {
        codecs: vec![Codec::pcma(), Codec::telephone_event()],
        ..ours()
    };
    let n = answer_checked(&parsed, &peer).negotiated.unwrap();
    assert_eq!(n.codecs, [Codec::pcma()]);
    assert_eq!(n.remote_port, 40_002);

    // Hold offer with SRTP.
    let hold = offer(&LocalMedia {
        direction: Direction::SendOnly,
        srtp: vec![SrtpKey {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_salt: "a2V5".into(),
        }],
        ..config
    });
    assert_eq!(hold.media[0].proto, Proto::RTP_SAVP);
    assert!(hold.is_hold(&hold.media[0]));
    assert_eq!(hold.media[0].crypto().next().unwrap().tag, 1);
}

#[test]
fn round_trip_keeps_everything() {
    for body in ALL {
        let first = parse(body);
        let wire = first.to_string();
        let second = SessionDescription::parse(&wire).unwrap();
        assert_eq!(second, first);
        // These fixtures are written in RFC order, so the bytes come back as given.
        assert_eq!(wire, crlf(body));
        // Bare LF bodies parse the same.
        assert_eq!(SessionDescription::parse(body).unwrap(), first);
    }
}

#[test]
fn unknown_lines_round_trip_in_rfc_order() {
    let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=x\r\nz=2882844526 -1h\r\nu=http://example.com\r\n\
                e=ops@example.com\r\ni=info\r\nc=IN IP4 224.2.17.12/127\r\nt=2873397496 2873404696\r\n\
                r=7d 1h 0 25h\r\nk=prompt\r\nx=experimental\r\na=recvonly\r\n\
                m=audio 49170/2 RTP/AVP 0\r\ni=media info\r\nb=AS:64\r\nk=clear:x\r\na=rtpmap:96\r\n\
                a=ptime:abc\r\na=crypto:x\r\n";
    let sdp = SessionDescription::parse(body).unwrap();
    assert_eq!(sdp.info.as_deref(), Some("info"));
    assert_eq!(sdp.timing[0].repeats, ["7d 1h 0 25h"]);
    assert_eq!(
        sdp.extra.iter().map(|(k, _)| *k).collect::<String>(),
        "uezkx"
    );
    let m = &sdp.media[0];
    assert_eq!(m.port_count, Some(2));
    assert_eq!(m.bandwidths[0].value, 64);
    assert_eq!(m.extra, [('k', "clear:x".to_owned())]);
    // Typed attributes that do not parse are kept raw.
    assert!(
        m.attributes
            .iter()
            .all(|a| matches!(a, Attribute::Other { .. }))
    );
    let wire = sdp.to_string();
    assert_eq!(SessionDescription::parse(&wire).unwrap(), sdp);
    assert!(wire.contains("a=rtpmap:96\r\na=ptime:abc\r\na=crypto:x\r\n"));
}

#[test]
fn structural_errors_are_typed() {
    let ok = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nt=0 0\n";
    assert!(SessionDescription::parse(ok).is_ok());
    let cases: [(&str, SdpError); 10] = [
        ("", SdpError::Empty),
        ("\r\n\r\n", SdpError::Empty),
        ("o=- 1 1 IN IP4 x\n", SdpError::MissingVersion),
        ("v=1\n", SdpError::UnsupportedVersion("1".into())),
        ("v=0\ns=-\n", SdpError::Missing('o')),
        ("v=0\no=- 1 1 IN IP4 192.0.2.1\n", SdpError::Missing('s')),
        (
            "v=0\no=- 1 IN IP4 192.0.2.1\ns=-\n",
            SdpError::Malformed {
                line: 2,
                kind: 'o',
                reason: "bad origin",
            },
        ),
        (
            "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio x RTP/AVP 0\n",
            SdpError::Malformed {
                line: 4,
                kind: 'm',
                reason: "bad media",
            },
        ),
        (
            "v=0\no=- 1 1 IN IP4 a\ns=-\nhello\n",
            SdpError::Malformed {
                line: 4,
                kind: '?',
                reason: "not <type>=<value>",
            },
        ),
        (
            "v=0\no=- 1 1 IN IP4 a\ns=-\nm=audio 1 RTP/AVP 0\nt=0 0\n",
            SdpError::Malformed {
                line: 5,
                kind: 't',
                reason: "session-level line inside a media section",
            },
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(
            SessionDescription::parse(body).unwrap_err(),
            expected,
            "{body:?}"
        );
    }
    assert_eq!(
        SessionDescription::parse_bytes(b"v=0\n\xff").unwrap_err(),
        SdpError::NotUtf8
    );
}

/// Truncations, mutations and random bytes never panic, and whatever parses round-trips
#[test]
fn fuzzish_never_panics_and_round_trips() {
    let alphabet = b"v=oscmtab:/ 0123456789\r\nIPN4.-;|\xc3\xa9AVP";
    let mut rng = StdRng::seed_from_u64(7);
    let mut parsed = 0;
    for i in 0..30_000 {
        let mut bytes = crlf(ALL[i % ALL.len()]).into_bytes();
        match i % 5 {
            0 => bytes.truncate(rng.random_range(0..=bytes.len())),
            1 | 2 => {
                for _ in 0..rng.random_range(1..8) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = alphabet[rng.random_range(0..alphabet.len())];
                }
            }
            3 => {
                // Drop a line.
                let s = String::from_utf8(bytes).unwrap();
                let lines: Vec<&str> = s.split("\r\n").collect();
                let skip = rng.random_range(0..lines.len());
                bytes = lines
                    .iter()
                    .enumerate()
                    .filter(|(n, _)| *n != skip)
                    .map(|(_, l)| format!("{l}\r\n"))
                    .collect::<String>()
                    .into_bytes();
            }
            _ => {
                let n = rng.random_range(0..200);
                bytes = (0..n).map(|_| rng.random()).collect();
                if i % 10 == 4 {
                    bytes.splice(0..0, b"v=0\r\n".iter().copied());
                }
            }
        }
        if let Ok(sdp) = SessionDescription::parse_bytes(&bytes) {
            parsed += 1;
            let again = SessionDescription::parse(&sdp.to_string())
                .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&bytes)));
            assert_eq!(again, sdp, "{:?}", String::from_utf8_lossy(&bytes));
            let _ = answer(&sdp, &ours());
            for m in &sdp.media {
                let _ = (sdp.is_hold(m), m.codecs());
            }
        }
    }
    assert!(parsed > 5_000, "{parsed}");
}

#[test]
fn answers_to_our_offer_are_accepted() {
    let config = LocalMedia {
        origin: LocalOrigin {
            username: "dialplane".into(),
            session_id: 9,
            session_version: 1,
        },
        codecs: Codec::defaults(),
        address: IpAddr::V4(Ipv4Addr::new(203, 0, 113, 5)),
        port: 40_004,
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: true,
        srtp: vec![SrtpKey {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_salt: "b3Vycw==".into(),
        }],
    };
    let ours = offer(&config);
    // The far end answers with PCMA and telephone-event, holds us, and returns its key.
    let far = LocalMedia {
        codecs: vec![Codec::pcma(), Codec::telephone_event()],
        address: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9)),
        port: 31_000,
        direction: Direction::SendOnly,
        srtp: vec![SrtpKey {
            suite: "AES_CM_128_HMAC_SHA1_80".into(),
            key_salt: "dGhlaXJz".into(),
        }],
        ..self::ours()
    };
    let their_answer = SessionDescription::parse(&answer(&ours, &far).sdp.to_string()).unwrap();
    let n = accept_answer(&ours, &their_answer).unwrap().unwrap();
    assert_eq!(n.index, 0);
    assert_eq!(n.codecs, [Codec::pcma()]);
    assert_eq!(n.telephone_event, Some(Codec::telephone_event()));
    assert_eq!(n.remote_address, Some("198.51.100.9".parse().unwrap()));
    assert_eq!(n.remote_port, 31_000);
    assert_eq!(n.direction, Direction::RecvOnly);
    assert!(n.remote_hold);
    assert!(n.rtcp_mux);
    let (theirs, mine) = n.srtp.unwrap();
    assert_eq!(theirs.keys[0].key_salt(), "dGhlaXJz");
    assert_eq!(mine.keys[0].key_salt(), "b3Vycw==");

    // Rejected everywhere, wrong m= count, changed protocol.
    let mut rejected = their_answer.clone();
    rejected.media[0].port = 0;
    assert_eq!(accept_answer(&ours, &rejected), Ok(None));
    let mut short = their_answer.clone();
    short.media.clear();
    assert_eq!(
        accept_answer(&ours, &short),
        Err(AnswerError::MediaCount {
            offer: 1,
            answer: 0
        })
    );
    let mut changed = their_answer;
    changed.media[0].proto = Proto::RTP_AVP;
    assert_eq!(
        accept_answer(&ours, &changed),
        Err(AnswerError::MediaChanged(0))
    );
}

/// The modules are pure: no clock, no RNG, no I/O (STYLE.md item 6)
#[test]
fn sdp_and_auth_read_no_clock_and_no_rng() {
    for (name, src) in [
        ("sdp.rs", include_str!("../src/sdp.rs")),
        ("auth.rs", include_str!("../src/auth.rs")),
    ] {
        for banned in [
            "SystemTime::now",
            "Instant::now",
            "thread_rng",
            "rand::",
            "std::fs",
            "std::net::UdpSocket",
            "tokio",
        ] {
            assert!(!src.contains(banned), "{name} uses {banned}");
        }
    }
}
