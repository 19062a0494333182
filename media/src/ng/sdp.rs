//! The SDP the relay reads and rewrites for `offer` and `answer`.
//!
//! Line-based, like rtpengine: every line the relay has no reason to touch goes out byte for
//! byte (with its own line ending). What is read: `o=`, session and media `c=`, `m=` (port,
//! protocol, formats), `a=rtpmap` (codec identity; static payload types need none),
//! `a=rtcp`, `a=rtcp-mux`, direction attributes and ICE attributes. What is rewritten, per
//! [`Rewrite`]: `c=` and `m=` to the relay's address and ports, `a=rtcp` to its RTCP port,
//! `o=` on `replace-origin`, the session `c=` on `replace-session-connection` (or when a relayed
//! section has no `c=` of its own), ICE attributes dropped, `a=rtcp-mux` added or removed, codecs
//! stripped, the transport protocol replaced.

use std::net::{IpAddr, SocketAddr};

use crate::api::EndpointSpec;
use crate::endpoint::{self, Codec, Direction, PtMap};
use crate::ports::PortPair;

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body does not start with `v=`.
    #[error("SDP does not start with v=")]
    NoVersion,
    /// An `m=` line that does not parse (line number, 1-based).
    #[error("invalid m= line {0}")]
    InvalidMedia(usize),
    /// A `c=` line that does not parse (line number, 1-based).
    #[error("invalid c= line {0}")]
    InvalidConnection(usize),
}

/// One line of the body: its content and whether it ended with `\r\n`, `\n` or nothing.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    text: &'a [u8],
    ending: &'a [u8],
}

/// An `a=rtpmap` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    /// Payload type.
    pub pt: u8,
    /// Encoding name as written (`PCMU`, `telephone-event`, `opus`).
    pub name: String,
    /// Clock rate.
    pub rate: u32,
    /// Channels, when given.
    pub channels: Option<u8>,
}

/// One `m=` section as parsed.
#[derive(Debug, Clone)]
pub struct Media {
    /// `audio`, `video`, `image`, ...
    pub kind: String,
    /// The port (0: rejected or disabled).
    pub port: u16,
    /// `RTP/AVP`, `RTP/SAVPF`, `udptl`, ...
    pub proto: String,
    /// The formats (payload types for RTP) in order.
    pub formats: Vec<String>,
    /// The section's own `c=` address.
    pub connection: Option<IpAddr>,
    /// `a=rtcp` port.
    pub rtcp_port: Option<u16>,
    /// `a=rtcp-mux` present.
    pub rtcp_mux: bool,
    /// The section's direction attribute, if it has one.
    pub direction: Option<Direction>,
    /// `a=rtpmap` lines.
    pub rtpmap: Vec<RtpMap>,
    /// Line indexes: the `m=` line and one past the section's last line.
    lines: (usize, usize),
}

impl Media {
    /// Whether the relay carries this section: an active (port ≠ 0) RTP section.
    pub fn is_relayable(&self) -> bool {
        self.port != 0 && self.proto.to_ascii_uppercase().starts_with("RTP/")
    }
}

/// A parsed SDP body, borrowing the bytes it came from.
#[derive(Debug, Clone)]
pub struct Sdp<'a> {
    lines: Vec<Line<'a>>,
    /// The session-level `c=` address.
    pub connection: Option<IpAddr>,
    /// The session-level direction attribute.
    pub direction: Option<Direction>,
    /// The `m=` sections in order.
    pub media: Vec<Media>,
    /// The line ending of inserted lines (the first line's).
    eol: &'a [u8],
}

/// Codec operations on the outgoing SDP (ng `codec`): names compared without regard to case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodecFilter {
    /// Remove these (`all`: every codec).
    pub strip: Vec<String>,
    /// Never remove these.
    pub keep: Vec<String>,
}

impl CodecFilter {
    /// Whether a codec of this name goes.
    pub fn strips(&self, name: &str) -> bool {
        let has = |list: &[String], n: &str| list.iter().any(|c| c.eq_ignore_ascii_case(n));
        (has(&self.strip, name) || has(&self.strip, "all")) && !has(&self.keep, name)
    }
}

/// What to do with one `m=` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaPlan {
    /// Leave the section as it is (already rejected, port 0).
    Keep,
    /// Not relayed: set its port to 0.
    Reject,
    /// Relayed: point it at these ports; `rtcp_mux` says whether `a=rtcp-mux` goes out.
    Relay {
        /// The relay's ports for this section.
        ports: PortPair,
        /// Whether the outgoing section carries `a=rtcp-mux`.
        rtcp_mux: bool,
    },
}

/// How to rewrite a body.
#[derive(Debug, Clone)]
pub struct Rewrite {
    /// The relay's address.
    pub address: IpAddr,
    /// One plan per `m=` section (missing entries: [`MediaPlan::Keep`]).
    pub media: Vec<MediaPlan>,
    /// `replace-origin`: the `o=` address becomes ours.
    pub replace_origin: bool,
    /// `replace-session-connection`: the session `c=` becomes ours.
    pub replace_session_connection: bool,
    /// Drop ICE attributes (the relay answers no STUN, so candidates would bypass it).
    pub remove_ice: bool,
    /// Codecs to strip from relayed sections.
    pub codecs: CodecFilter,
    /// Replace the protocol of relayed sections (`RTP/AVP` ↔ `RTP/AVPF`).
    pub transport_protocol: Option<String>,
}

const ICE_ATTRIBUTES: [&str; 8] = [
    "ice-ufrag",
    "ice-pwd",
    "ice-options",
    "ice-lite",
    "ice-mismatch",
    "candidate",
    "end-of-candidates",
    "remote-candidates",
];

fn split_lines(body: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..=i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let text_len = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .map_or(line.len(), <[u8]>::len);
        lines.push(Line {
            text: &line[..text_len],
            ending: &line[text_len..],
        });
        rest = next;
    }
    lines
}

/// The value of an attribute line `a=<name>[:<value>]` if its name is `name`.
fn attribute<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let rest = text.strip_prefix("a=")?;
    let (n, v) = rest.split_once(':').unwrap_or((rest, ""));
    n.eq_ignore_ascii_case(name).then_some(v)
}

fn attribute_name(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("a=")?;
    Some(rest.split_once(':').map_or(rest, |(n, _)| n))
}

fn direction_of(text: &str) -> Option<Direction> {
    match text {
        "a=sendrecv" => Some(Direction::SendRecv),
        "a=sendonly" => Some(Direction::SendOnly),
        "a=recvonly" => Some(Direction::RecvOnly),
        "a=inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

/// `c=IN IP4 192.0.2.1[/ttl[/n]]` → the address.
fn parse_connection(text: &str) -> Option<IpAddr> {
    let mut f = text.strip_prefix("c=")?.split_ascii_whitespace();
    let (_net, _family, addr) = (f.next()?, f.next()?, f.next()?);
    addr.split('/').next()?.parse().ok()
}

fn parse_media(text: &str, index: usize) -> Result<Media, SdpError> {
    let bad = || SdpError::InvalidMedia(index + 1);
    let mut f = text
        .strip_prefix("m=")
        .ok_or_else(bad)?
        .split_ascii_whitespace();
    let kind = f.next().ok_or_else(bad)?.to_owned();
    let port = f.next().ok_or_else(bad)?;
    let port = port
        .split('/')
        .next()
        .unwrap_or(port)
        .parse()
        .map_err(|_| bad())?;
    let proto = f.next().ok_or_else(bad)?.to_owned();
    Ok(Media {
        kind,
        port,
        proto,
        formats: f.map(str::to_owned).collect(),
        connection: None,
        rtcp_port: None,
        rtcp_mux: false,
        direction: None,
        rtpmap: Vec::new(),
        lines: (index, index + 1),
    })
}

/// `a=rtpmap:<pt> <name>/<rate>[/<channels>]`
fn parse_rtpmap(value: &str) -> Option<RtpMap> {
    let (pt, enc) = value.split_once(' ')?;
    let mut e = enc.trim().split('/');
    Some(RtpMap {
        pt: pt.trim().parse().ok()?,
        name: e.next()?.to_owned(),
        rate: e.next()?.parse().ok()?,
        channels: e.next().and_then(|c| c.parse().ok()),
    })
}

impl<'a> Sdp<'a> {
    /// Parses a body. Lines the relay does not read are kept, not checked.
    pub fn parse(body: &'a [u8]) -> Result<Self, SdpError> {
        let lines = split_lines(body);
        let first = lines
            .iter()
            .position(|l| !l.text.is_empty())
            .ok_or(SdpError::NoVersion)?;
        if !lines[first].text.starts_with(b"v=") {
            return Err(SdpError::NoVersion);
        }
        let eol = lines[first].ending;
        let mut sdp = Sdp {
            eol: if eol.is_empty() { b"\r\n" } else { eol },
            lines,
            connection: None,
            direction: None,
            media: Vec::new(),
        };
        for (i, line) in sdp.lines.iter().enumerate() {
            // Lines the relay reads are ASCII; anything else is passed through unread.
            let Ok(text) = std::str::from_utf8(line.text) else {
                continue;
            };
            let text = text.trim_end();
            if text.starts_with("m=") {
                sdp.media.push(parse_media(text, i)?);
                continue;
            }
            let media = sdp.media.last_mut();
            if text.starts_with("c=") {
                let addr = parse_connection(text).ok_or(SdpError::InvalidConnection(i + 1))?;
                match media {
                    Some(m) => m.connection = Some(addr),
                    None => sdp.connection = Some(addr),
                }
            } else if let Some(d) = direction_of(text) {
                match media {
                    Some(m) => m.direction = Some(d),
                    None => sdp.direction = Some(d),
                }
            } else if let Some(m) = media {
                if let Some(v) = attribute(text, "rtpmap") {
                    m.rtpmap.extend(parse_rtpmap(v));
                } else if let Some(v) = attribute(text, "rtcp") {
                    m.rtcp_port = v
                        .split_ascii_whitespace()
                        .next()
                        .and_then(|p| p.parse().ok());
                } else if attribute(text, "rtcp-mux").is_some() {
                    m.rtcp_mux = true;
                }
            }
        }
        let n = sdp.lines.len();
        let starts: Vec<usize> = sdp.media.iter().map(|m| m.lines.0).collect();
        for (k, m) in sdp.media.iter_mut().enumerate() {
            m.lines.1 = starts.get(k + 1).copied().unwrap_or(n);
        }
        Ok(sdp)
    }

    /// Where section `index`'s RTP comes from: its (or the session's) `c=` address and its
    /// port; `None` when rejected or without an address.
    pub fn media_address(&self, index: usize) -> Option<SocketAddr> {
        let m = self.media.get(index)?;
        let ip = m.connection.or(self.connection)?;
        (m.port != 0).then(|| SocketAddr::new(ip, m.port))
    }

    /// Section `index`'s direction (its own attribute, else the session's, else sendrecv).
    pub fn media_direction(&self, index: usize) -> Direction {
        self.media
            .get(index)
            .and_then(|m| m.direction)
            .or(self.direction)
            .unwrap_or_default()
    }

    /// The payload types of section `index`: `a=rtpmap` where given, the static table for
    /// 0–34 otherwise. Formats that cannot be mapped (not a number, a reserved PT, beyond
    /// [`crate::endpoint::MAX_PAYLOAD_TYPES`]) are left out.
    pub fn pt_map(&self, index: usize) -> PtMap {
        let mut map = PtMap::empty();
        let Some(m) = self.media.get(index) else {
            return map;
        };
        for pt in m.formats.iter().filter_map(|f| f.parse::<u8>().ok()) {
            let codec = match m.rtpmap.iter().find(|r| r.pt == pt) {
                Some(r) => Codec::from_rtpmap(&r.name, r.rate, r.channels),
                None => match endpoint::rfc3551_static(pt) {
                    Some((name, rate)) => Codec::from_rtpmap(name, rate, None),
                    None => continue,
                },
            };
            // A full table or a reserved PT: the packets are dropped as unknown PT.
            let _ = map.insert(pt, codec);
        }
        map
    }

    /// The leg parameters for section `index` as its remote described it.
    pub fn endpoint_spec(&self, index: usize) -> EndpointSpec {
        EndpointSpec {
            sdp_address: self.media_address(index),
            pt_map: self.pt_map(index),
            rtcp_mux: self.media.get(index).is_some_and(|m| m.rtcp_mux),
            direction: self.media_direction(index),
            ..EndpointSpec::default()
        }
    }

    /// The encoding name of a format in section `m` (rtpmap, else static).
    fn format_name<'m>(m: &'m Media, format: &str) -> Option<&'m str> {
        let pt: u8 = format.parse().ok()?;
        match m.rtpmap.iter().find(|r| r.pt == pt) {
            Some(r) => Some(&r.name),
            None => endpoint::rfc3551_static(pt).map(|(n, _)| n),
        }
    }

    /// The rewritten body.
    pub fn rewrite(&self, plan: &Rewrite) -> Vec<u8> {
        let family = if plan.address.is_ipv6() { "IP6" } else { "IP4" };
        let addr = plan.address;
        let plan_of = |k: usize| plan.media.get(k).copied().unwrap_or(MediaPlan::Keep);
        // A relayed section relying on the session c= needs that line rewritten too.
        let session_c = plan.replace_session_connection
            || self.media.iter().enumerate().any(|(k, m)| {
                matches!(plan_of(k), MediaPlan::Relay { .. }) && m.connection.is_none()
            });
        let mut out =
            Vec::with_capacity(self.lines.iter().map(|l| l.text.len() + 2).sum::<usize>() + 64);
        let push = |out: &mut Vec<u8>, text: &[u8], ending: &[u8]| {
            out.extend_from_slice(text);
            out.extend_from_slice(ending);
        };
        let first_media = self.media.first().map_or(self.lines.len(), |m| m.lines.0);
        // Session level.
        for line in &self.lines[..first_media] {
            let text = std::str::from_utf8(line.text).unwrap_or("");
            if plan.remove_ice && attribute_name(text).is_some_and(is_ice) {
                continue;
            }
            if plan.replace_origin && text.starts_with("o=") {
                push(
                    &mut out,
                    replace_origin(text, family, addr).as_bytes(),
                    line.ending,
                );
            } else if session_c && text.starts_with("c=") {
                push(
                    &mut out,
                    format!("c=IN {family} {addr}").as_bytes(),
                    line.ending,
                );
            } else {
                push(&mut out, line.text, line.ending);
            }
        }
        for (k, m) in self.media.iter().enumerate() {
            let section = &self.lines[m.lines.0..m.lines.1];
            match plan_of(k) {
                MediaPlan::Keep => {
                    for line in section {
                        push(&mut out, line.text, line.ending);
                    }
                }
                MediaPlan::Reject => {
                    let mut text = format!("m={} 0 {}", m.kind, m.proto);
                    for f in &m.formats {
                        text.push(' ');
                        text.push_str(f);
                    }
                    push(&mut out, text.as_bytes(), section[0].ending);
                    for line in &section[1..] {
                        push(&mut out, line.text, line.ending);
                    }
                }
                MediaPlan::Relay { ports, rtcp_mux } => {
                    self.rewrite_section(m, section, plan, ports, rtcp_mux, &mut out);
                }
            }
        }
        out
    }

    fn rewrite_section(
        &self,
        m: &Media,
        section: &[Line<'a>],
        plan: &Rewrite,
        ports: PortPair,
        rtcp_mux: bool,
        out: &mut Vec<u8>,
    ) {
        let family = if plan.address.is_ipv6() { "IP6" } else { "IP4" };
        let addr = plan.address;
        let kept: Vec<&str> = {
            let kept: Vec<&str> = m
                .formats
                .iter()
                .filter(|f| Self::format_name(m, f).is_none_or(|name| !plan.codecs.strips(name)))
                .map(String::as_str)
                .collect();
            // Stripping everything would leave an invalid m= line: strip nothing instead.
            if kept.is_empty() {
                m.formats.iter().map(String::as_str).collect()
            } else {
                kept
            }
        };
        let stripped = |pt: &str| m.formats.iter().any(|f| f == pt) && !kept.contains(&pt);
        let proto = plan.transport_protocol.as_deref().unwrap_or(&m.proto);
        let mut mline = format!("m={} {} {}", m.kind, ports.rtp, proto);
        for f in &kept {
            mline.push(' ');
            mline.push_str(f);
        }
        let rtcp_port = if rtcp_mux {
            ports.rtp
        } else {
            ports.rtcp.unwrap_or(ports.rtp + 1)
        };
        let mut mux_written = false;
        let mut last_eol = section[0].ending;
        out.extend_from_slice(mline.as_bytes());
        out.extend_from_slice(section[0].ending);
        for line in &section[1..] {
            let text = std::str::from_utf8(line.text).unwrap_or("");
            let name = attribute_name(text);
            if plan.remove_ice && name.is_some_and(is_ice) {
                continue;
            }
            let rewritten: Option<String> = if text.starts_with("c=") {
                Some(format!("c=IN {family} {addr}"))
            } else if let Some(v) = attribute(text, "rtcp") {
                // a=rtcp:<port> [IN IP4 <addr>]
                Some(if v.split_ascii_whitespace().nth(1).is_some() {
                    format!("a=rtcp:{rtcp_port} IN {family} {addr}")
                } else {
                    format!("a=rtcp:{rtcp_port}")
                })
            } else if attribute(text, "rtcp-mux").is_some() {
                if !rtcp_mux || mux_written {
                    continue;
                }
                mux_written = true;
                None
            } else if let Some(v) = ["rtpmap", "fmtp", "rtcp-fb"]
                .iter()
                .find_map(|a| attribute(text, a))
            {
                if stripped(v.split_ascii_whitespace().next().unwrap_or("")) {
                    continue;
                }
                None
            } else {
                None
            };
            match rewritten {
                Some(t) => out.extend_from_slice(t.as_bytes()),
                None => out.extend_from_slice(line.text),
            }
            out.extend_from_slice(line.ending);
            if !line.ending.is_empty() {
                last_eol = line.ending;
            }
        }
        if rtcp_mux && !mux_written {
            // The section's last line may lack an ending (end of body): give it one first.
            if !out.ends_with(b"\n") {
                out.extend_from_slice(self.eol);
            }
            out.extend_from_slice(b"a=rtcp-mux");
            out.extend_from_slice(if last_eol.is_empty() {
                self.eol
            } else {
                last_eol
            });
        }
    }
}

fn is_ice(name: &str) -> bool {
    ICE_ATTRIBUTES.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// `o=<user> <id> <version> IN IP4 <addr>` with the last three fields replaced.
fn replace_origin(text: &str, family: &str, addr: IpAddr) -> String {
    let fields: Vec<&str> = text.split_ascii_whitespace().collect();
    if fields.len() < 6 {
        return text.to_owned();
    }
    format!("{} IN {family} {addr}", fields[..3].join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relay(rtp: u16, rtcp_mux: bool) -> MediaPlan {
        MediaPlan::Relay {
            ports: PortPair {
                rtp,
                rtcp: (!rtcp_mux).then_some(rtp + 1),
            },
            rtcp_mux,
        }
    }

    fn plan(media: Vec<MediaPlan>) -> Rewrite {
        Rewrite {
            address: "203.0.113.7".parse().unwrap(),
            media,
            replace_origin: false,
            replace_session_connection: false,
            remove_ice: true,
            codecs: CodecFilter::default(),
            transport_protocol: None,
        }
    }

    fn text(b: Vec<u8>) -> String {
        String::from_utf8(b).unwrap()
    }

    const AUDIO: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

    #[test]
    fn audio_only_rewrites_c_and_m_and_keeps_the_rest() {
        let sdp = Sdp::parse(AUDIO.as_bytes()).unwrap();
        assert_eq!(sdp.media.len(), 1);
        let out = text(sdp.rewrite(&plan(vec![relay(30000, false)])));
        // The only c= is the session's and the section relies on it: rewritten.
        assert_eq!(
            out,
            "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 203.0.113.7\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n"
        );
        let mut p = plan(vec![relay(30000, false)]);
        p.replace_origin = true;
        let out = text(sdp.rewrite(&p));
        assert!(out.contains("o=alice 2890844526 2890844526 IN IP4 203.0.113.7\r\n"));
    }

    #[test]
    fn endpoint_spec_from_the_offer() {
        let sdp = Sdp::parse(AUDIO.as_bytes()).unwrap();
        let spec = sdp.endpoint_spec(0);
        assert_eq!(spec.sdp_address, Some("192.0.2.10:49170".parse().unwrap()));
        assert_eq!(spec.pt_map.codec(0), Some(Codec::Pcmu));
        assert_eq!(spec.pt_map.codec(8), Some(Codec::Pcma));
        assert_eq!(spec.pt_map.payload_type(Codec::TelephoneEvent), Some(101));
        assert_eq!(spec.pt_map.codec(9), None);
        assert!(!spec.rtcp_mux);
        assert_eq!(spec.direction, Direction::SendRecv);
        // Static PTs without rtpmap, session-level direction, rtcp-mux.
        let s = b"v=0\nc=IN IP4 10.0.0.1\na=sendonly\nm=audio 4000 RTP/AVP 0 13 96\na=rtcp-mux\n\
a=rtpmap:96 speex/16000\n";
        let sdp = Sdp::parse(s).unwrap();
        let spec = sdp.endpoint_spec(0);
        assert_eq!(spec.pt_map.codec(0), Some(Codec::Pcmu));
        assert_eq!(spec.pt_map.codec(13), Some(Codec::ComfortNoise));
        assert!(matches!(spec.pt_map.codec(96), Some(Codec::Other(_))));
        assert_eq!(
            Codec::from_rtpmap("SPEEX", 16000, None),
            Codec::from_rtpmap("speex", 16000, None)
        );
        assert_ne!(
            Codec::from_rtpmap("speex", 8000, None),
            Codec::from_rtpmap("speex", 16000, None)
        );
        assert!(spec.rtcp_mux);
        assert_eq!(spec.direction, Direction::SendOnly);
    }

    #[test]
    fn second_section_rejected_stays_rejected() {
        let s = "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.1\r\n\
s=call\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 8\r\n\
c=IN IP4 198.51.100.1\r\n\
a=rtcp:20001\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 198.51.100.1\r\n\
a=rtpmap:96 H264/90000\r\n";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        assert!(sdp.media[0].is_relayable());
        assert!(!sdp.media[1].is_relayable());
        assert_eq!(sdp.media_address(1), None);
        assert_eq!(sdp.media[0].rtcp_port, Some(20001));
        let out = text(sdp.rewrite(&plan(vec![relay(30010, false), MediaPlan::Keep])));
        assert_eq!(
            out,
            "v=0\r\n\
o=- 1 1 IN IP4 198.51.100.1\r\n\
s=call\r\n\
t=0 0\r\n\
m=audio 30010 RTP/AVP 8\r\n\
c=IN IP4 203.0.113.7\r\n\
a=rtcp:30011\r\n\
m=video 0 RTP/AVP 96\r\n\
c=IN IP4 198.51.100.1\r\n\
a=rtpmap:96 H264/90000\r\n"
        );
    }

    #[test]
    fn ipv6_connection() {
        let s = "v=0\r\no=- 7 7 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
m=audio 5004 RTP/AVP 0\r\n";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        assert_eq!(
            sdp.media_address(0),
            Some("[2001:db8::1]:5004".parse().unwrap())
        );
        let mut p = plan(vec![relay(40000, false)]);
        p.address = "2001:db8::99".parse().unwrap();
        p.replace_origin = true;
        assert_eq!(
            text(sdp.rewrite(&p)),
            "v=0\r\no=- 7 7 IN IP6 2001:db8::99\r\ns=-\r\nc=IN IP6 2001:db8::99\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\n"
        );
        // IPv4 relay for an IPv6 offerer: the families change with the address.
        let out = text(sdp.rewrite(&plan(vec![relay(40000, false)])));
        assert!(out.contains("c=IN IP4 203.0.113.7\r\n"), "{out}");
    }

    #[test]
    fn ice_lines_removed_rtcp_rewritten_mux_added() {
        let s = "v=0\r\n\
o=- 5 2 IN IP4 192.0.2.5\r\n\
s=-\r\n\
c=IN IP4 192.0.2.5\r\n\
t=0 0\r\n\
a=ice-lite\r\n\
a=ice-options:trickle\r\n\
m=audio 9000 RTP/AVPF 111 0\r\n\
c=IN IP4 192.0.2.5\r\n\
a=rtcp:9001 IN IP4 192.0.2.5\r\n\
a=ice-ufrag:F7gI\r\n\
a=ice-pwd:x9cml/YzichV2+XlhiMu8g\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.5 9000 typ host\r\n\
a=candidate:1 2 UDP 2130706430 192.0.2.5 9001 typ host\r\n\
a=end-of-candidates\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=recvonly\r\n";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        assert_eq!(sdp.media_direction(0), Direction::RecvOnly);
        assert_eq!(sdp.pt_map(0).codec(111), Some(Codec::Opus));
        let mut p = plan(vec![relay(30020, true)]);
        p.transport_protocol = Some("RTP/AVP".into());
        p.replace_session_connection = true;
        assert_eq!(
            text(sdp.rewrite(&p)),
            "v=0\r\n\
o=- 5 2 IN IP4 192.0.2.5\r\n\
s=-\r\n\
c=IN IP4 203.0.113.7\r\n\
t=0 0\r\n\
m=audio 30020 RTP/AVP 111 0\r\n\
c=IN IP4 203.0.113.7\r\n\
a=rtcp:30020 IN IP4 203.0.113.7\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=fmtp:111 minptime=10;useinbandfec=1\r\n\
a=rtcp-fb:111 transport-cc\r\n\
a=recvonly\r\n\
a=rtcp-mux\r\n"
        );
        // Keeping ICE keeps the lines (the session c= is left alone: the section has its own).
        let mut p = plan(vec![relay(30020, false)]);
        p.remove_ice = false;
        let out = text(sdp.rewrite(&p));
        assert!(out.contains("a=ice-lite\r\n") && out.contains("a=end-of-candidates\r\n"));
        assert!(out.contains("\r\nc=IN IP4 192.0.2.5\r\nt=0"), "{out}");
    }

    #[test]
    fn rtcp_mux_removed_and_codecs_stripped() {
        let s = "v=0\nc=IN IP4 192.0.2.1\nm=audio 7000 RTP/AVP 0 8 18 101\na=rtpmap:18 G729/8000\n\
a=fmtp:18 annexb=no\na=rtpmap:101 telephone-event/8000\na=rtcp-mux";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        let mut p = plan(vec![relay(30030, false)]);
        p.codecs = CodecFilter {
            strip: vec!["g729".into(), "PCMA".into()],
            keep: vec![],
        };
        assert_eq!(
            text(sdp.rewrite(&p)),
            "v=0\nc=IN IP4 203.0.113.7\nm=audio 30030 RTP/AVP 0 101\n\
a=rtpmap:101 telephone-event/8000\n"
        );
        // strip all except PCMU; and a body without a final newline gets rtcp-mux appended.
        let s = "v=0\nc=IN IP4 192.0.2.1\nm=audio 7000 RTP/AVP 0 8\na=ptime:20";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        let mut p = plan(vec![relay(30030, true)]);
        p.codecs = CodecFilter {
            strip: vec!["all".into()],
            keep: vec!["pcmu".into()],
        };
        assert_eq!(
            text(sdp.rewrite(&p)),
            "v=0\nc=IN IP4 203.0.113.7\nm=audio 30030 RTP/AVP 0\na=ptime:20\na=rtcp-mux\n"
        );
        // Stripping every codec would leave no format: nothing is stripped.
        p.codecs.keep.clear();
        assert!(text(sdp.rewrite(&p)).contains("m=audio 30030 RTP/AVP 0 8\n"));
    }

    #[test]
    fn non_rtp_sections_rejected_and_bad_bodies_refused() {
        let s = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=image 6000 udptl t38\r\na=T38FaxVersion:0\r\n";
        let sdp = Sdp::parse(s.as_bytes()).unwrap();
        assert!(!sdp.media[0].is_relayable());
        assert_eq!(
            text(sdp.rewrite(&plan(vec![MediaPlan::Reject]))),
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=image 0 udptl t38\r\na=T38FaxVersion:0\r\n"
        );
        assert_eq!(Sdp::parse(b"").unwrap_err(), SdpError::NoVersion);
        assert_eq!(Sdp::parse(b"o=x\r\nv=0").unwrap_err(), SdpError::NoVersion);
        assert_eq!(
            Sdp::parse(b"v=0\r\nm=audio x RTP/AVP 0\r\n").unwrap_err(),
            SdpError::InvalidMedia(2)
        );
        assert_eq!(
            Sdp::parse(b"v=0\r\nc=IN IP4 nowhere\r\n").unwrap_err(),
            SdpError::InvalidConnection(2)
        );
        // Non-UTF-8 lines pass through unread; c= with a TTL parses.
        let s = b"v=0\r\ni=caf\xe9\r\nc=IN IP4 233.252.0.1/127\r\nm=audio 1 RTP/AVP 0\r\n";
        let sdp = Sdp::parse(s).unwrap();
        assert_eq!(sdp.connection, Some("233.252.0.1".parse().unwrap()));
        let out = sdp.rewrite(&plan(vec![relay(30040, false)]));
        assert!(out.starts_with(b"v=0\r\ni=caf\xe9\r\nc=IN IP4 203.0.113.7\r\n"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let seeds = [
            AUDIO.as_bytes(),
            b"v=0\nm=audio 1 RTP/AVP 0\na=rtcp:\na=rtpmap:",
        ];
        for _ in 0..2000 {
            let mut b = seeds[rng.random_range(0..seeds.len())].to_vec();
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..b.len());
                b[i] = rng.random();
            }
            if let Ok(sdp) = Sdp::parse(&b) {
                let n = sdp.media.len();
                let _ = sdp.rewrite(&plan(vec![relay(30000, true); n]));
                for k in 0..n {
                    let _ = sdp.endpoint_spec(k);
                }
            }
        }
    }
}
