//! Between SDP and the media plane: what an endpoint is told about a negotiated stream, and the
//! descriptions we offer and answer with. Legs negotiate the caller's codecs with the caller's
//! payload types, plus what the relay transcodes to (see [`super::transcode`]).

use std::net::{IpAddr, SocketAddr};

use media::api::EndpointSpec;
use media::endpoint::{self, PtMap};

use crate::sdp::{self, Codec, LocalMedia, LocalOrigin, Negotiated, SessionDescription};

/// Codecs the relay carries between legs (by name, any payload type).
const RELAYED: [&str; 6] = ["PCMU", "PCMA", "G722", "opus", "CN", "telephone-event"];

/// The offer's codecs the relay carries, in the offer's order, with its payload types (plain
/// RTP, or SDES SRTP with a key the relay can use).
pub(super) fn relayable(offer: &SessionDescription) -> Vec<Codec> {
    let Some(m) = offer.media.iter().find(|m| {
        m.kind == "audio"
            && m.port != 0
            && m.proto.is_rtp()
            && (!m.proto.is_secure() || super::srtp::usable(m))
    }) else {
        return Vec::new();
    };
    m.codecs()
        .into_iter()
        .filter(|c| RELAYED.iter().any(|n| n.eq_ignore_ascii_case(&c.name)))
        .collect()
}

/// The negotiated codecs plus telephone-event, as one list.
pub(super) fn codecs_of(n: &Negotiated) -> Vec<Codec> {
    n.codecs.iter().chain(&n.telephone_event).cloned().collect()
}

/// Our side of a stream: `codecs` on `port` of `address`.
pub(super) fn local(session_id: u64, address: IpAddr, port: u16, codecs: Vec<Codec>) -> LocalMedia {
    LocalMedia {
        origin: LocalOrigin {
            username: "dialplane".into(),
            session_id,
            session_version: 1,
        },
        codecs,
        address,
        port,
        direction: sdp::Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        srtp: Vec::new(),
    }
}

/// What the endpoint of a leg needs to know of the stream negotiated with its remote.
pub(super) fn endpoint_spec(n: &Negotiated) -> EndpointSpec {
    let mut pt_map = PtMap::empty();
    for c in n.codecs.iter().chain(&n.telephone_event) {
        let channels = c.channels.and_then(|ch| u8::try_from(ch).ok());
        // A PT the table refuses (out of range, duplicate) is simply not relayed.
        let _ = pt_map.insert(
            c.payload_type,
            endpoint::Codec::from_rtpmap(&c.name, c.clock_rate, channels),
        );
    }
    let sdp_address = n
        .remote_address
        .filter(|ip| !ip.is_unspecified() && n.remote_port != 0)
        .map(|ip| SocketAddr::new(ip, n.remote_port));
    // `n.direction` is ours; the endpoint wants the remote's.
    let direction = match n.direction {
        sdp::Direction::SendRecv => endpoint::Direction::SendRecv,
        sdp::Direction::SendOnly => endpoint::Direction::RecvOnly,
        sdp::Direction::RecvOnly => endpoint::Direction::SendOnly,
        sdp::Direction::Inactive => endpoint::Direction::Inactive,
    };
    EndpointSpec {
        sdp_address,
        pt_map,
        telephone_event_rate: n.telephone_event.as_ref().map_or(8000, |c| c.clock_rate),
        rtcp_mux: n.rtcp_mux,
        direction,
        srtp: super::srtp::leg_keys(n).map(Box::new),
        ..EndpointSpec::default()
    }
}

/// Our answer to `offer` with `codecs` on `port`, or `None` when nothing in it can be accepted.
pub(super) fn answer(
    offer: &SessionDescription,
    local: &LocalMedia,
) -> Option<(SessionDescription, Negotiated)> {
    let a = sdp::answer(offer, local);
    Some((a.sdp, a.negotiated?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
        m=audio 4000 RTP/AVP 18 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n";

    #[test]
    fn relays_known_codecs_in_the_offers_order_and_maps_direction() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        let codecs = relayable(&offer);
        let names: Vec<_> = codecs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["PCMA", "PCMU", "telephone-event"],
            "G.729 is not relayed"
        );
        let ip = "192.0.2.9".parse().unwrap();
        let (sdp, n) = answer(&offer, &local(7, ip, 40000, codecs)).unwrap();
        assert_eq!(
            n.codecs[0].name, "PCMA",
            "the offerer's first choice is sent"
        );
        assert_eq!(sdp.media[0].port, 40000);
        let spec = endpoint_spec(&n);
        assert_eq!(spec.sdp_address, Some("10.0.0.1:4000".parse().unwrap()));
        assert_eq!(
            spec.direction,
            endpoint::Direction::SendOnly,
            "the remote only sends"
        );
        assert_eq!(spec.pt_map.codec(8), Some(endpoint::Codec::Pcma));
        assert!(spec.pt_map.codec(101).is_some());
        assert_eq!(spec.pt_map.codec(18), None);
    }
}
