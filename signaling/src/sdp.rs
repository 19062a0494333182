//! SDP session descriptions (RFC 4566) and the offer/answer model (RFC 3264)
//!
//! Pure: [`SessionDescription::parse`] turns a body into typed lines, [`Display`](std::fmt::Display)
//! writes it back, [`answer`] and [`offer`] build descriptions. No I/O, no clock, no RNG: session ids,
//! versions and SRTP keys are arguments.
//!
//! Parsing is strict about structure (`v=` first, well-formed `o=`, `c=`, `m=`, `t=`, `b=`) and
//! lenient about attributes: an attribute we type (`rtpmap`, `crypto`, ...) whose value does not
//! parse is kept as [`Attribute::Other`], so nothing is lost and one odd line from a carrier does
//! not fail the call. Lines we do not type (`u=`, `e=`, `p=`, `z=`, `k=`, unknown letters) are kept
//! raw and written back in RFC 4566 order, so `parse(serialize(parse(x))) == parse(x)`. `t=` is
//! not required (some stacks omit it); `o=` and `s=` are.
//!
//! ```
//! use dialplane_signaling::sdp::{LocalMedia, Codec, Direction, LocalOrigin, SessionDescription, answer};
//!
//! let offer = SessionDescription::parse(
//!     "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
//!      m=audio 5004 RTP/AVP 18 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
//!      a=fmtp:101 0-15\r\na=sendonly\r\n",
//! )?;
//! let config = LocalMedia {
//!     origin: LocalOrigin { username: "-".into(), session_id: 1, session_version: 1 },
//!     codecs: Codec::defaults(),
//!     address: "203.0.113.5".parse().unwrap(),
//!     port: 40000,
//!     direction: Direction::SendRecv,
//!     ptime: Some(20),
//!     rtcp_mux: false,
//!     srtp: Vec::new(),
//! };
//! let answer = answer(&offer, &config);
//! let agreed = answer.negotiated.unwrap();
//! assert_eq!(agreed.codecs, [Codec::pcma()]);
//! assert_eq!(agreed.telephone_event.unwrap().payload_type, 101);
//! assert_eq!(agreed.direction, Direction::RecvOnly);
//! assert!(agreed.remote_hold);
//! let body = answer.sdp.to_string(); // m=audio 40000 RTP/AVP 8 101 ... a=recvonly
//! # assert!(body.contains("m=audio 40000 RTP/AVP 8 101\r\n"));
//! # Ok::<(), dialplane_signaling::sdp::SdpError>(())
//! ```

use std::fmt::{self, Write as _};
use std::net::IpAddr;

/// Why an SDP body could not be parsed
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// The body has no lines at all.
    #[error("empty SDP body")]
    Empty,
    /// The body is not valid UTF-8.
    #[error("SDP body is not UTF-8")]
    NotUtf8,
    /// The first line is not `v=`.
    #[error("SDP does not start with v=")]
    MissingVersion,
    /// `v=` is not `0`.
    #[error("unsupported SDP version {0:?}")]
    UnsupportedVersion(String),
    /// A line is not `<letter>=<value>` or its value does not parse.
    #[error("SDP line {line} ({kind}=): {reason}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line's type letter (`?` when there is none).
        kind: char,
        /// What is wrong.
        reason: &'static str,
    },
    /// A mandatory session-level line (`o=` or `s=`) is missing.
    #[error("SDP has no {0}= line")]
    Missing(char),
}

/// A transport protocol from an `m=` line (open: unknown values round-trip)
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Proto(std::borrow::Cow<'static, str>);

impl Proto {
    /// `RTP/AVP` (RFC 3551)
    pub const RTP_AVP: Proto = Proto(std::borrow::Cow::Borrowed("RTP/AVP"));
    /// `RTP/AVPF` (RFC 4585)
    pub const RTP_AVPF: Proto = Proto(std::borrow::Cow::Borrowed("RTP/AVPF"));
    /// `RTP/SAVP` (RFC 3711, keys in `a=crypto`)
    pub const RTP_SAVP: Proto = Proto(std::borrow::Cow::Borrowed("RTP/SAVP"));
    /// `RTP/SAVPF` (RFC 5124)
    pub const RTP_SAVPF: Proto = Proto(std::borrow::Cow::Borrowed("RTP/SAVPF"));
    /// `UDP/TLS/RTP/SAVPF` (DTLS-SRTP, RFC 5764)
    pub const UDP_TLS_RTP_SAVPF: Proto = Proto(std::borrow::Cow::Borrowed("UDP/TLS/RTP/SAVPF"));

    /// A protocol by name
    pub fn new(name: &str) -> Proto {
        Proto(std::borrow::Cow::Owned(name.to_owned()))
    }

    /// The name as written on the wire
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the formats are RTP payload type numbers
    pub fn is_rtp(&self) -> bool {
        self.0.split('/').any(|p| p == "RTP")
    }

    /// Whether media is SRTP (`SAVP` or `SAVPF`)
    pub fn is_secure(&self) -> bool {
        self.0.ends_with("SAVP") || self.0.ends_with("SAVPF")
    }

    /// Whether SRTP keys come from DTLS (`UDP/TLS/...`), not `a=crypto`
    pub fn is_dtls(&self) -> bool {
        self.0.starts_with("UDP/TLS/") || self.0.starts_with("TCP/TLS/")
    }
}

impl fmt::Debug for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proto({})", self.0)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `o=`: who made the session and which version of it this is
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// User name, `-` when none.
    pub username: String,
    /// Session id (kept as text: some stacks send more digits than fit in 64 bits).
    pub session_id: String,
    /// Session version, incremented on every change.
    pub session_version: u64,
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Address or host name of the originator.
    pub address: String,
}

/// `c=`: where media goes
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Network type, `IN`.
    pub net_type: String,
    /// Address type, `IP4` or `IP6`.
    pub addr_type: String,
    /// Address, possibly with `/ttl` or `/count` for multicast.
    pub address: String,
}

impl Connection {
    /// `IN IP4 <addr>` or `IN IP6 <addr>`
    pub fn from_ip(ip: IpAddr) -> Connection {
        Connection {
            net_type: "IN".into(),
            addr_type: if ip.is_ipv4() { "IP4" } else { "IP6" }.into(),
            address: ip.to_string(),
        }
    }

    /// The address as an IP, if it is one (without multicast suffixes)
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.split('/').next()?.parse().ok()
    }

    /// The RFC 2543 hold address `0.0.0.0` (also `::`, which some stacks send)
    pub fn is_hold_address(&self) -> bool {
        self.ip().is_some_and(|ip| ip.is_unspecified())
    }
}

/// `b=<type>:<kbps>`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bandwidth {
    /// `AS`, `CT`, `TIAS`, `RS`, `RR`, ...
    pub bwtype: String,
    /// The value (kbit/s, or bit/s for TIAS).
    pub value: u64,
}

/// `t=` with its `r=` lines
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timing {
    /// Start (NTP seconds, 0 for unbounded).
    pub start: u64,
    /// Stop (NTP seconds, 0 for unbounded).
    pub stop: u64,
    /// `r=` lines, raw.
    pub repeats: Vec<String>,
}

/// Media direction (RFC 3264 §5.1, §6.1)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `a=sendrecv` (the default)
    SendRecv,
    /// `a=sendonly`
    SendOnly,
    /// `a=recvonly`
    RecvOnly,
    /// `a=inactive`
    Inactive,
}

impl Direction {
    /// The attribute name
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_name(s: &str) -> Option<Direction> {
        Some(match s {
            "sendrecv" => Direction::SendRecv,
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => return None,
        })
    }

    /// Whether this side sends media
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether this side receives media
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    fn from_flags(send: bool, recv: bool) -> Direction {
        match (send, recv) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// The same stream seen from the other end (sendonly ↔ recvonly)
    pub fn reversed(self) -> Direction {
        Direction::from_flags(self.receives(), self.sends())
    }

    /// The answer to an offer with direction `self`, when we would like `local` (RFC 3264 §6.1)
    ///
    /// We may only send what they receive and receive what they send: sendonly → recvonly,
    /// recvonly → sendonly, inactive → inactive, sendrecv → `local`.
    pub fn answer(self, local: Direction) -> Direction {
        let allowed = self.reversed();
        Direction::from_flags(
            allowed.sends() && local.sends(),
            allowed.receives() && local.receives(),
        )
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rtpmap {
    /// RTP payload type.
    pub payload_type: u8,
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`, ...).
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Channels (audio), when given.
    pub channels: Option<u16>,
}

/// One `inline:` (or other method) key parameter of an `a=crypto` line (RFC 4568 §9.1)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyParam {
    /// Key method, `inline`.
    pub method: String,
    /// `key||salt base64[|lifetime][|MKI:length]`, raw.
    pub info: String,
}

impl KeyParam {
    /// The base64 key and salt (the part of `info` before the first `|`)
    pub fn key_salt(&self) -> &str {
        self.info.split('|').next().unwrap_or("")
    }

    /// The lifetime (`2^31`, `1048576`), when given
    pub fn lifetime(&self) -> Option<&str> {
        self.info.split('|').skip(1).find(|p| !p.contains(':'))
    }

    /// The MKI value and length (`1:4`), when given
    pub fn mki(&self) -> Option<&str> {
        self.info.split('|').skip(1).find(|p| p.contains(':'))
    }
}

/// `a=crypto:<tag> <suite> <key-params> [<session-params>]` (RFC 4568)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    /// Tag that the answer echoes.
    pub tag: u32,
    /// Crypto suite, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: String,
    /// Key parameters (`;`-separated on the wire).
    pub keys: Vec<KeyParam>,
    /// Session parameters (`UNENCRYPTED_SRTCP`, `KDR=...`), raw.
    pub session_params: Vec<String>,
}

/// An `a=` line
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute {
    /// `a=rtpmap`
    Rtpmap(Rtpmap),
    /// `a=fmtp:<format> <parameters>`
    Fmtp {
        /// The format (payload type) it applies to.
        format: String,
        /// Format-specific parameters, raw (`0-16`, `minptime=10;useinbandfec=1`).
        params: String,
    },
    /// `a=ptime:<ms>`
    Ptime(u32),
    /// `a=maxptime:<ms>`
    MaxPtime(u32),
    /// `a=sendrecv`, `a=sendonly`, `a=recvonly`, `a=inactive`
    Direction(Direction),
    /// `a=rtcp:<port> [<nettype> <addrtype> <address>]` (RFC 3605)
    Rtcp {
        /// RTCP port.
        port: u16,
        /// RTCP address, when not the RTP one.
        connection: Option<Connection>,
    },
    /// `a=rtcp-mux` (RFC 5761)
    RtcpMux,
    /// `a=crypto` (RFC 4568)
    Crypto(Crypto),
    /// `a=ice-ufrag` (raw)
    IceUfrag(String),
    /// `a=ice-pwd` (raw)
    IcePwd(String),
    /// `a=candidate` (raw, without the `candidate:` prefix)
    Candidate(String),
    /// Anything else, and typed attributes whose value did not parse, kept as written
    Other {
        /// The name (before `:`).
        name: String,
        /// The value (after `:`), if there was a colon.
        value: Option<String>,
    },
}

impl Attribute {
    fn parse(s: &str) -> Attribute {
        let (name, value) = match s.split_once(':') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        let typed = match (name, value) {
            ("rtpmap", Some(v)) => parse_rtpmap(v).map(Attribute::Rtpmap),
            ("fmtp", Some(v)) => {
                let (format, params) = v.split_once(' ').unwrap_or((v, ""));
                (!format.is_empty()).then(|| Attribute::Fmtp {
                    format: format.to_owned(),
                    params: params.trim_start().to_owned(),
                })
            }
            ("ptime", Some(v)) => v.trim().parse().ok().map(Attribute::Ptime),
            ("maxptime", Some(v)) => v.trim().parse().ok().map(Attribute::MaxPtime),
            ("rtcp", Some(v)) => parse_rtcp(v),
            ("rtcp-mux", None) => Some(Attribute::RtcpMux),
            ("crypto", Some(v)) => parse_crypto(v).map(Attribute::Crypto),
            ("ice-ufrag", Some(v)) => Some(Attribute::IceUfrag(v.to_owned())),
            ("ice-pwd", Some(v)) => Some(Attribute::IcePwd(v.to_owned())),
            ("candidate", Some(v)) => Some(Attribute::Candidate(v.to_owned())),
            (n, None) => Direction::from_name(n).map(Attribute::Direction),
            _ => None,
        };
        typed.unwrap_or_else(|| Attribute::Other {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        })
    }
}

impl fmt::Display for Attribute {
    /// The line without `a=`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attribute::Rtpmap(r) => {
                write!(
                    f,
                    "rtpmap:{} {}/{}",
                    r.payload_type, r.encoding, r.clock_rate
                )?;
                if let Some(c) = r.channels {
                    write!(f, "/{c}")?;
                }
                Ok(())
            }
            Attribute::Fmtp { format, params } => write!(f, "fmtp:{format} {params}"),
            Attribute::Ptime(p) => write!(f, "ptime:{p}"),
            Attribute::MaxPtime(p) => write!(f, "maxptime:{p}"),
            Attribute::Direction(d) => f.write_str(d.as_str()),
            Attribute::Rtcp { port, connection } => {
                write!(f, "rtcp:{port}")?;
                if let Some(c) = connection {
                    write!(f, " {} {} {}", c.net_type, c.addr_type, c.address)?;
                }
                Ok(())
            }
            Attribute::RtcpMux => f.write_str("rtcp-mux"),
            Attribute::Crypto(c) => {
                write!(f, "crypto:{} {} ", c.tag, c.suite)?;
                for (i, k) in c.keys.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ";" };
                    write!(f, "{sep}{}:{}", k.method, k.info)?;
                }
                for p in &c.session_params {
                    write!(f, " {p}")?;
                }
                Ok(())
            }
            Attribute::IceUfrag(v) => write!(f, "ice-ufrag:{v}"),
            Attribute::IcePwd(v) => write!(f, "ice-pwd:{v}"),
            Attribute::Candidate(v) => write!(f, "candidate:{v}"),
            Attribute::Other { name, value } => match value {
                Some(v) => write!(f, "{name}:{v}"),
                None => f.write_str(name),
            },
        }
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace)
}

fn parse_rtpmap(v: &str) -> Option<Rtpmap> {
    let (pt, rest) = v.split_once(' ')?;
    let mut parts = rest.trim().split('/');
    let encoding = parts.next()?;
    let clock_rate = parts.next()?.parse().ok()?;
    let channels = match parts.next() {
        Some(c) => Some(c.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() || !is_token(encoding) {
        return None;
    }
    Some(Rtpmap {
        payload_type: pt.parse().ok().filter(|p| *p < 128)?,
        encoding: encoding.to_owned(),
        clock_rate,
        channels,
    })
}

fn parse_rtcp(v: &str) -> Option<Attribute> {
    let mut it = v.split_whitespace();
    let port = it.next()?.parse().ok()?;
    let connection = match (it.next(), it.next(), it.next()) {
        (None, ..) => None,
        (Some(n), Some(a), Some(addr)) => Some(Connection {
            net_type: n.into(),
            addr_type: a.into(),
            address: addr.into(),
        }),
        _ => return None,
    };
    if it.next().is_some() {
        return None;
    }
    Some(Attribute::Rtcp { port, connection })
}

fn parse_crypto(v: &str) -> Option<Crypto> {
    let mut it = v.split_whitespace();
    let tag = it.next()?.parse().ok()?;
    let suite = it.next()?.to_owned();
    let keys = it
        .next()?
        .split(';')
        .map(|k| {
            let (m, i) = k.split_once(':')?;
            (!m.is_empty() && !i.is_empty()).then(|| KeyParam {
                method: m.to_owned(),
                info: i.to_owned(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Crypto {
        tag,
        suite,
        keys,
        session_params: it.map(str::to_owned).collect(),
    })
}

/// A codec as used by negotiation: an rtpmap (explicit or static) plus its fmtp
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    /// RTP payload type (theirs in an answer, our default in an offer).
    pub payload_type: u8,
    /// Encoding name (`PCMU`, `opus`, `telephone-event`).
    pub name: String,
    /// Clock rate in Hz.
    pub clock_rate: u32,
    /// Channels, when given (absent means 1).
    pub channels: Option<u16>,
    /// `a=fmtp` parameters, when given.
    pub fmtp: Option<String>,
}

impl Codec {
    /// A codec with no fmtp
    pub fn new(payload_type: u8, name: &str, clock_rate: u32, channels: Option<u16>) -> Codec {
        Codec {
            payload_type,
            name: name.to_owned(),
            clock_rate,
            channels,
            fmtp: None,
        }
    }

    /// `PCMU/8000` on payload type 0
    pub fn pcmu() -> Codec {
        Codec::new(0, "PCMU", 8000, None)
    }

    /// `PCMA/8000` on payload type 8
    pub fn pcma() -> Codec {
        Codec::new(8, "PCMA", 8000, None)
    }

    /// `opus/48000/2` on payload type 111
    pub fn opus() -> Codec {
        Codec::new(111, "opus", 48000, Some(2))
    }

    /// `telephone-event/8000` (RFC 4733) on payload type 101 with events `0-16`
    pub fn telephone_event() -> Codec {
        Codec {
            fmtp: Some("0-16".into()),
            ..Codec::new(101, "telephone-event", 8000, None)
        }
    }

    /// dialplane's codecs in preference order: PCMU, PCMA, Opus, telephone-event
    pub fn defaults() -> Vec<Codec> {
        vec![
            Codec::pcmu(),
            Codec::pcma(),
            Codec::opus(),
            Codec::telephone_event(),
        ]
    }

    /// The codec a static payload type stands for without an rtpmap (RFC 3551 table 4)
    pub fn from_static(payload_type: u8) -> Option<Codec> {
        let (name, rate) = media::endpoint::rfc3551_static(payload_type)?;
        Some(Codec::new(payload_type, name, rate, None))
    }

    /// Whether this is RFC 4733 `telephone-event`
    pub fn is_telephone_event(&self) -> bool {
        self.name.eq_ignore_ascii_case("telephone-event")
    }

    /// Same encoding, clock rate and channel count (names compare case-insensitively)
    pub fn same_format(&self, other: &Codec) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.clock_rate == other.clock_rate
            && self.channels.unwrap_or(1) == other.channels.unwrap_or(1)
    }

    fn rtpmap(&self) -> Rtpmap {
        Rtpmap {
            payload_type: self.payload_type,
            encoding: self.name.clone(),
            clock_rate: self.clock_rate,
            channels: self.channels,
        }
    }
}

/// One `m=` section
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    /// `audio`, `video`, `application`, ...
    pub kind: String,
    /// Port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// Port count (`m=audio 49170/2`), when given.
    pub port_count: Option<u16>,
    /// Transport protocol.
    pub proto: Proto,
    /// Formats (RTP payload types for RTP protocols), in preference order.
    pub formats: Vec<String>,
    /// `i=`
    pub info: Option<String>,
    /// `c=` lines (several for multicast layers).
    pub connections: Vec<Connection>,
    /// `b=` lines.
    pub bandwidths: Vec<Bandwidth>,
    /// Other lines (`k=`, unknown letters), raw, in order.
    pub extra: Vec<(char, String)>,
    /// `a=` lines in order.
    pub attributes: Vec<Attribute>,
}

impl Media {
    /// The `a=` direction of this stream, if it has one
    pub fn direction(&self) -> Option<Direction> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Direction(d) => Some(*d),
            _ => None,
        })
    }

    /// Whether `a=rtcp-mux` is present
    pub fn rtcp_mux(&self) -> bool {
        self.attributes.contains(&Attribute::RtcpMux)
    }

    /// `a=ptime`, if present
    pub fn ptime(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Ptime(p) => Some(*p),
            _ => None,
        })
    }

    /// `a=crypto` lines in order
    pub fn crypto(&self) -> impl Iterator<Item = &Crypto> {
        self.attributes.iter().filter_map(|a| match a {
            Attribute::Crypto(c) => Some(c),
            _ => None,
        })
    }

    /// The rtpmap for a payload type, if any
    pub fn rtpmap(&self, payload_type: u8) -> Option<&Rtpmap> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Rtpmap(r) if r.payload_type == payload_type => Some(r),
            _ => None,
        })
    }

    /// The fmtp parameters for a format, if any
    pub fn fmtp(&self, format: &str) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            Attribute::Fmtp { format: f, params } if f == format => Some(params.as_str()),
            _ => None,
        })
    }

    /// The codecs of an RTP stream in offer order (rtpmap, else the static table)
    ///
    /// Formats that are not payload type numbers, or dynamic types without an rtpmap, are
    /// skipped.
    pub fn codecs(&self) -> Vec<Codec> {
        if !self.proto.is_rtp() {
            return Vec::new();
        }
        self.formats
            .iter()
            .filter_map(|f| {
                let pt: u8 = f.parse().ok().filter(|p| *p < 128)?;
                let mut codec = match self.rtpmap(pt) {
                    Some(r) => Codec {
                        payload_type: pt,
                        name: r.encoding.clone(),
                        clock_rate: r.clock_rate,
                        channels: r.channels,
                        fmtp: None,
                    },
                    None => Codec::from_static(pt)?,
                };
                codec.fmtp = self.fmtp(f).map(str::to_owned);
                Some(codec)
            })
            .collect()
    }
}

/// A parsed SDP body
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// `o=`
    pub origin: Origin,
    /// `s=` (`-` when the sender had nothing to say)
    pub session_name: String,
    /// `i=`
    pub info: Option<String>,
    /// `c=` at session level.
    pub connection: Option<Connection>,
    /// `b=` at session level.
    pub bandwidths: Vec<Bandwidth>,
    /// `t=` lines with their `r=` lines.
    pub timing: Vec<Timing>,
    /// Other session-level lines (`u=`, `e=`, `p=`, `z=`, `k=`, unknown letters), raw, in order.
    pub extra: Vec<(char, String)>,
    /// Session-level `a=` lines in order.
    pub attributes: Vec<Attribute>,
    /// `m=` sections in order.
    pub media: Vec<Media>,
}

fn malformed(line: usize, kind: char, reason: &'static str) -> SdpError {
    SdpError::Malformed { line, kind, reason }
}

fn parse_connection(v: &str) -> Option<Connection> {
    let mut it = v.split_whitespace();
    let c = Connection {
        net_type: it.next()?.to_owned(),
        addr_type: it.next()?.to_owned(),
        address: it.next()?.to_owned(),
    };
    it.next().is_none().then_some(c)
}

fn parse_origin(v: &str) -> Option<Origin> {
    let f: Vec<&str> = v.split_whitespace().collect();
    let [username, id, version, net, addr_type, address] = f[..] else {
        return None;
    };
    Some(Origin {
        username: username.into(),
        session_id: id.into(),
        session_version: version.parse().ok()?,
        net_type: net.into(),
        addr_type: addr_type.into(),
        address: address.into(),
    })
}

fn parse_bandwidth(v: &str) -> Option<Bandwidth> {
    let (t, n) = v.split_once(':')?;
    let bwtype = t.trim();
    is_token(bwtype).then_some(())?;
    Some(Bandwidth {
        bwtype: bwtype.to_owned(),
        value: n.trim().parse().ok()?,
    })
}

fn parse_media(v: &str) -> Option<Media> {
    let mut it = v.split_whitespace();
    let kind = it.next()?.to_owned();
    let (port, port_count) = match it.next()?.split_once('/') {
        Some((p, n)) => (p.parse().ok()?, Some(n.parse().ok()?)),
        None => (port_of(v)?, None),
    };
    let proto = Proto::new(it.next()?);
    Some(Media {
        kind,
        port,
        port_count,
        proto,
        formats: it.map(str::to_owned).collect(),
        info: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        extra: Vec::new(),
        attributes: Vec::new(),
    })
}

fn port_of(v: &str) -> Option<u16> {
    v.split_whitespace().nth(1)?.parse().ok()
}

impl SessionDescription {
    /// Parse an SDP body (`\r\n` or bare `\n` line ends; blank lines ignored)
    pub fn parse(body: &str) -> Result<SessionDescription, SdpError> {
        let mut lines = body
            .split('\n')
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .enumerate()
            .map(|(i, l)| (i + 1, l))
            .filter(|(_, l)| !l.trim().is_empty());
        let (_, first) = lines.next().ok_or(SdpError::Empty)?;
        let version = first.strip_prefix("v=").ok_or(SdpError::MissingVersion)?;
        if version.trim() != "0" {
            return Err(SdpError::UnsupportedVersion(version.to_owned()));
        }
        let mut origin = None;
        let mut session_name = None;
        let mut sdp = SessionDescription {
            origin: Origin {
                username: String::new(),
                session_id: String::new(),
                session_version: 0,
                net_type: String::new(),
                addr_type: String::new(),
                address: String::new(),
            },
            session_name: String::new(),
            info: None,
            connection: None,
            bandwidths: Vec::new(),
            timing: Vec::new(),
            extra: Vec::new(),
            attributes: Vec::new(),
            media: Vec::new(),
        };
        for (n, line) in lines {
            let mut chars = line.chars();
            let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
                return Err(malformed(n, '?', "not <type>=<value>"));
            };
            if !kind.is_ascii_alphabetic() {
                return Err(malformed(n, '?', "type is not a letter"));
            }
            let v = chars.as_str();
            let bad = |reason| malformed(n, kind, reason);
            if let Some(m) = sdp.media.last_mut() {
                match kind {
                    'm' => {}
                    'i' => m.info = Some(v.to_owned()),
                    'c' => m
                        .connections
                        .push(parse_connection(v).ok_or(bad("bad connection"))?),
                    'b' => m
                        .bandwidths
                        .push(parse_bandwidth(v).ok_or(bad("bad bandwidth"))?),
                    'a' => m.attributes.push(Attribute::parse(v)),
                    'v' | 'o' | 's' | 't' | 'r' | 'z' => {
                        return Err(bad("session-level line inside a media section"));
                    }
                    _ => m.extra.push((kind, v.to_owned())),
                }
                if kind != 'm' {
                    continue;
                }
            }
            match kind {
                'v' => return Err(bad("second v= line")),
                'o' => origin = Some(parse_origin(v).ok_or(bad("bad origin"))?),
                's' => session_name = Some(v.to_owned()),
                'i' => sdp.info = Some(v.to_owned()),
                'c' => sdp.connection = Some(parse_connection(v).ok_or(bad("bad connection"))?),
                'b' => sdp
                    .bandwidths
                    .push(parse_bandwidth(v).ok_or(bad("bad bandwidth"))?),
                't' => {
                    let mut it = v.split_whitespace();
                    let (Some(Ok(start)), Some(Ok(stop)), None) = (
                        it.next().map(str::parse),
                        it.next().map(str::parse),
                        it.next(),
                    ) else {
                        return Err(bad("bad timing"));
                    };
                    sdp.timing.push(Timing {
                        start,
                        stop,
                        repeats: Vec::new(),
                    });
                }
                'r' => sdp
                    .timing
                    .last_mut()
                    .ok_or(bad("r= before t="))?
                    .repeats
                    .push(v.to_owned()),
                'a' => sdp.attributes.push(Attribute::parse(v)),
                'm' => sdp.media.push(parse_media(v).ok_or(bad("bad media"))?),
                _ => sdp.extra.push((kind, v.to_owned())),
            }
        }
        // u=, e=, p= are written before c=, the rest after t=: order them so now.
        sdp.extra.sort_by_key(|(k, _)| !"uep".contains(*k));
        sdp.origin = origin.ok_or(SdpError::Missing('o'))?;
        sdp.session_name = session_name.ok_or(SdpError::Missing('s'))?;
        Ok(sdp)
    }

    /// Parse a body given as bytes
    pub fn parse_bytes(body: &[u8]) -> Result<SessionDescription, SdpError> {
        SessionDescription::parse(std::str::from_utf8(body).map_err(|_| SdpError::NotUtf8)?)
    }

    /// The connection for a media section: its own `c=`, else the session's
    pub fn connection_for<'a>(&'a self, media: &'a Media) -> Option<&'a Connection> {
        media.connections.first().or(self.connection.as_ref())
    }

    /// The direction of a media section: its own, else the session's, else sendrecv
    pub fn direction_for(&self, media: &Media) -> Direction {
        media.direction().unwrap_or_else(|| {
            self.attributes
                .iter()
                .find_map(|a| match a {
                    Attribute::Direction(d) => Some(*d),
                    _ => None,
                })
                .unwrap_or(Direction::SendRecv)
        })
    }

    /// Whether the sender of this description puts `media` on hold
    ///
    /// Hold is `sendonly` or `inactive` (RFC 3264 §8.4) or the RFC 2543 address `c=0.0.0.0`,
    /// except where ICE is in use (`a=ice-ufrag`), whose offers carry `0.0.0.0` as a placeholder
    /// (RFC 8839 §4.2.1).
    pub fn is_hold(&self, media: &Media) -> bool {
        let ice = media
            .attributes
            .iter()
            .chain(&self.attributes)
            .any(|a| matches!(a, Attribute::IceUfrag(_)));
        !self.direction_for(media).receives()
            || (!ice
                && self
                    .connection_for(media)
                    .is_some_and(Connection::is_hold_address))
    }
}

fn write_extra(f: &mut impl fmt::Write, extra: &[(char, String)], kinds: &str) -> fmt::Result {
    for (k, v) in extra {
        if kinds.contains(*k) {
            write!(f, "{k}={v}\r\n")?;
        }
    }
    Ok(())
}

impl fmt::Display for SessionDescription {
    /// The body, `\r\n` line ends, in RFC 4566 order
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.origin;
        write!(
            f,
            "v=0\r\no={} {} {} {} {} {}\r\ns={}\r\n",
            o.username,
            o.session_id,
            o.session_version,
            o.net_type,
            o.addr_type,
            o.address,
            self.session_name
        )?;
        if let Some(i) = &self.info {
            write!(f, "i={i}\r\n")?;
        }
        write_extra(f, &self.extra, "uep")?;
        if let Some(c) = &self.connection {
            write!(f, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address)?;
        }
        for b in &self.bandwidths {
            write!(f, "b={}:{}\r\n", b.bwtype, b.value)?;
        }
        for t in &self.timing {
            write!(f, "t={} {}\r\n", t.start, t.stop)?;
            for r in &t.repeats {
                write!(f, "r={r}\r\n")?;
            }
        }
        let rest: String = self
            .extra
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !"uep".contains(*k))
            .collect();
        write_extra(f, &self.extra, &rest)?;
        for a in &self.attributes {
            write!(f, "a={a}\r\n")?;
        }
        for m in &self.media {
            write!(f, "m={} {}", m.kind, m.port)?;
            if let Some(n) = m.port_count {
                write!(f, "/{n}")?;
            }
            write!(f, " {}", m.proto)?;
            for fmt in &m.formats {
                write!(f, " {fmt}")?;
            }
            f.write_str("\r\n")?;
            if let Some(i) = &m.info {
                write!(f, "i={i}\r\n")?;
            }
            for c in &m.connections {
                write!(f, "c={} {} {}\r\n", c.net_type, c.addr_type, c.address)?;
            }
            for b in &m.bandwidths {
                write!(f, "b={}:{}\r\n", b.bwtype, b.value)?;
            }
            for (k, v) in &m.extra {
                write!(f, "{k}={v}\r\n")?;
            }
            for a in &m.attributes {
                write!(f, "a={a}\r\n")?;
            }
        }
        Ok(())
    }
}

/// Who we are in an `o=` line: user name, session id and version (the caller keeps these
/// across re-INVITEs and bumps the version on every change)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalOrigin {
    /// `o=` user name (`-` or a product name).
    pub username: String,
    /// Session id, stable for the dialog.
    pub session_id: u64,
    /// Session version, bumped by the caller on every new description.
    pub session_version: u64,
}

/// An SRTP key we can answer or offer with (RFC 4568): suite plus base64 key‖salt
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKey {
    /// Crypto suite, e.g. `AES_CM_128_HMAC_SHA1_80`.
    pub suite: String,
    /// Base64 of the master key and salt (made by the caller from its own randomness).
    pub key_salt: String,
}

/// Our side of the audio stream, for an answer or an offer
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// Our `o=` line.
    pub origin: LocalOrigin,
    /// Codecs in preference order. An offer uses their payload types; an answer keeps the
    /// offerer's.
    pub codecs: Vec<Codec>,
    /// Where we receive media.
    pub address: IpAddr,
    /// Our RTP port.
    pub port: u16,
    /// Our direction (usually sendrecv; sendonly or inactive when we hold).
    pub direction: Direction,
    /// `a=ptime` to add, if any.
    pub ptime: Option<u32>,
    /// Offer `a=rtcp-mux`, or accept it when offered.
    pub rtcp_mux: bool,
    /// SRTP keys (RFC 4568). An offer lists them (tags 1, 2, ...) and becomes `RTP/SAVP`; an
    /// answer picks one by suite, and with none an `RTP/SAVP` offer is rejected.
    pub srtp: Vec<SrtpKey>,
}

/// The outcome of negotiating the accepted audio stream
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Index of the accepted `m=` line in offer and answer.
    pub index: usize,
    /// Agreed codecs (excluding telephone-event), with the offerer's payload types, in our
    /// preference order; the first is the one to send.
    pub codecs: Vec<Codec>,
    /// Agreed telephone-event, with the offerer's payload type and fmtp.
    pub telephone_event: Option<Codec>,
    /// Where to send media, from the offer (`None` when the offer's `c=` is not an IP).
    pub remote_address: Option<IpAddr>,
    /// Remote RTP port.
    pub remote_port: u16,
    /// Remote RTCP port if `a=rtcp` gave one.
    pub remote_rtcp_port: Option<u16>,
    /// Our direction for the stream: what we answered, or for [`accept_answer`] what our offer
    /// and their answer leave us.
    pub direction: Direction,
    /// Whether the offerer holds us (sendonly, inactive or c=0.0.0.0).
    pub remote_hold: bool,
    /// Whether RTP and RTCP share the port.
    pub rtcp_mux: bool,
    /// Their crypto line we accepted (their key, for decrypting what they send) and ours.
    pub srtp: Option<(Crypto, Crypto)>,
    /// Remote `a=ptime`, if any.
    pub remote_ptime: Option<u32>,
}

/// An answer: the description to send and what was agreed
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP to send back.
    pub sdp: SessionDescription,
    /// The accepted audio stream, `None` if every stream was rejected.
    pub negotiated: Option<Negotiated>,
}

fn session(origin: &LocalOrigin, address: IpAddr) -> SessionDescription {
    let c = Connection::from_ip(address);
    SessionDescription {
        origin: Origin {
            username: origin.username.clone(),
            session_id: origin.session_id.to_string(),
            session_version: origin.session_version,
            net_type: c.net_type.clone(),
            addr_type: c.addr_type.clone(),
            address: c.address.clone(),
        },
        session_name: "-".into(),
        info: None,
        connection: Some(c),
        bandwidths: Vec::new(),
        timing: vec![Timing {
            start: 0,
            stop: 0,
            repeats: Vec::new(),
        }],
        extra: Vec::new(),
        attributes: Vec::new(),
        media: Vec::new(),
    }
}

fn codec_attributes(codecs: &[Codec], attrs: &mut Vec<Attribute>) {
    for c in codecs {
        attrs.push(Attribute::Rtpmap(c.rtpmap()));
        if let Some(p) = &c.fmtp {
            attrs.push(Attribute::Fmtp {
                format: c.payload_type.to_string(),
                params: p.clone(),
            });
        }
    }
}

fn rejected(m: &Media) -> Media {
    Media {
        kind: m.kind.clone(),
        port: 0,
        port_count: None,
        proto: m.proto.clone(),
        formats: if m.formats.is_empty() {
            vec!["0".into()]
        } else {
            m.formats.clone()
        },
        info: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        extra: Vec::new(),
        attributes: Vec::new(),
    }
}

/// Answer a remote offer (RFC 3264 §6)
///
/// The first audio stream over plain RTP (`RTP/AVP`, `RTP/AVPF`) — or over `RTP/SAVP(F)` with
/// `a=crypto` when `config.srtp` has a matching suite — that shares a codec with us is accepted;
/// every other `m=` line is answered with port 0. Codecs are ours ∩ theirs in our preference
/// order, keeping their payload types and fmtp; telephone-event is kept alongside when both
/// sides have it. DTLS-SRTP and ICE are not negotiated here (such streams are rejected or
/// answered without ICE).
pub fn answer(offer: &SessionDescription, config: &LocalMedia) -> Answer {
    let mut sdp = session(&config.origin, config.address);
    let mut negotiated = None;
    for (index, m) in offer.media.iter().enumerate() {
        let accepted = if negotiated.is_some() || m.port == 0 || m.kind != "audio" {
            None
        } else {
            negotiate(offer, m, index, config)
        };
        match accepted {
            Some((media, n)) => {
                sdp.media.push(media);
                negotiated = Some(n);
            }
            None => sdp.media.push(rejected(m)),
        }
    }
    Answer { sdp, negotiated }
}

fn negotiate(
    offer: &SessionDescription,
    m: &Media,
    index: usize,
    config: &LocalMedia,
) -> Option<(Media, Negotiated)> {
    let plain = m.proto == Proto::RTP_AVP || m.proto == Proto::RTP_AVPF;
    let sdes = (m.proto == Proto::RTP_SAVP || m.proto == Proto::RTP_SAVPF) && !m.proto.is_dtls();
    let srtp = if sdes {
        let (theirs, ours) = m.crypto().find_map(|c| {
            let k = config.srtp.iter().find(|k| k.suite == c.suite)?;
            Some((c, k))
        })?;
        let ours = Crypto {
            tag: theirs.tag,
            suite: ours.suite.clone(),
            keys: vec![KeyParam {
                method: "inline".into(),
                info: ours.key_salt.clone(),
            }],
            session_params: Vec::new(),
        };
        Some((theirs.clone(), ours))
    } else if plain {
        None
    } else {
        return None;
    };
    let theirs = m.codecs();
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for ours in &config.codecs {
        let Some(t) = theirs.iter().find(|t| t.same_format(ours)) else {
            continue;
        };
        if t.is_telephone_event() {
            telephone_event.get_or_insert_with(|| t.clone());
        } else if !codecs
            .iter()
            .any(|c: &Codec| c.payload_type == t.payload_type)
        {
            codecs.push(t.clone());
        }
    }
    if codecs.is_empty() {
        return None;
    }
    let offered = offer.direction_for(m);
    let direction = offered.answer(config.direction);
    let rtcp_mux = config.rtcp_mux && m.rtcp_mux();
    let mut all = codecs.clone();
    all.extend(telephone_event.clone());
    let mut attributes = Vec::new();
    codec_attributes(&all, &mut attributes);
    if let Some(p) = config.ptime {
        attributes.push(Attribute::Ptime(p));
    }
    if rtcp_mux {
        attributes.push(Attribute::RtcpMux);
    }
    if let Some((_, ours)) = &srtp {
        attributes.push(Attribute::Crypto(ours.clone()));
    }
    attributes.push(Attribute::Direction(direction));
    let media = Media {
        kind: m.kind.clone(),
        port: config.port,
        port_count: None,
        proto: m.proto.clone(),
        formats: all.iter().map(|c| c.payload_type.to_string()).collect(),
        info: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        extra: Vec::new(),
        attributes,
    };
    let negotiated = Negotiated {
        index,
        codecs,
        telephone_event,
        remote_address: offer.connection_for(m).and_then(Connection::ip),
        remote_port: m.port,
        remote_rtcp_port: m.attributes.iter().find_map(|a| match a {
            Attribute::Rtcp { port, .. } => Some(*port),
            _ => None,
        }),
        direction,
        remote_hold: offer.is_hold(m),
        rtcp_mux,
        srtp,
        remote_ptime: m.ptime(),
    };
    Some((media, negotiated))
}

/// Why an answer does not fit our offer
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnswerError {
    /// The answer does not have one `m=` line per offered one (RFC 3264 §6).
    #[error("answer has {answer} m= lines, the offer {offer}")]
    MediaCount {
        /// `m=` lines in our offer.
        offer: usize,
        /// `m=` lines in the answer.
        answer: usize,
    },
    /// An accepted stream changed its media type or protocol.
    #[error("answer changes m= line {0}")]
    MediaChanged(usize),
}

/// What the answer to our offer agreed (RFC 3264 §7), `Ok(None)` if it rejected every stream
///
/// The first audio stream that the answer accepts (port ≠ 0) with a codec from our offer is the
/// one; codecs are in the answer's order, with the answer's payload types, restricted to what
/// we offered. The SRTP pair is (their crypto line, our offered line with the same tag).
pub fn accept_answer(
    offer: &SessionDescription,
    answer: &SessionDescription,
) -> Result<Option<Negotiated>, AnswerError> {
    if offer.media.len() != answer.media.len() {
        return Err(AnswerError::MediaCount {
            offer: offer.media.len(),
            answer: answer.media.len(),
        });
    }
    for (index, (ours, theirs)) in offer.media.iter().zip(&answer.media).enumerate() {
        if theirs.port == 0 {
            continue;
        }
        if ours.kind != theirs.kind || ours.proto != theirs.proto {
            return Err(AnswerError::MediaChanged(index));
        }
        if ours.kind != "audio" || !ours.proto.is_rtp() || ours.port == 0 {
            continue;
        }
        let offered = ours.codecs();
        let mut codecs = Vec::new();
        let mut telephone_event = None;
        for c in theirs.codecs() {
            if !offered.iter().any(|o| o.same_format(&c)) {
                continue;
            }
            if c.is_telephone_event() {
                telephone_event.get_or_insert(c);
            } else {
                codecs.push(c);
            }
        }
        if codecs.is_empty() {
            continue;
        }
        let srtp = theirs.crypto().find_map(|t| {
            let o = ours
                .crypto()
                .find(|o| o.tag == t.tag && o.suite == t.suite)?;
            Some((t.clone(), o.clone()))
        });
        return Ok(Some(Negotiated {
            index,
            codecs,
            telephone_event,
            remote_address: answer.connection_for(theirs).and_then(Connection::ip),
            remote_port: theirs.port,
            remote_rtcp_port: theirs.attributes.iter().find_map(|a| match a {
                Attribute::Rtcp { port, .. } => Some(*port),
                _ => None,
            }),
            direction: answer
                .direction_for(theirs)
                .answer(offer.direction_for(ours)),
            remote_hold: answer.is_hold(theirs),
            rtcp_mux: ours.rtcp_mux() && theirs.rtcp_mux(),
            srtp,
            remote_ptime: theirs.ptime(),
        }));
    }
    Ok(None)
}

/// Build an offer with one audio stream
pub fn offer(config: &LocalMedia) -> SessionDescription {
    let mut sdp = session(&config.origin, config.address);
    let mut attributes = Vec::new();
    codec_attributes(&config.codecs, &mut attributes);
    if let Some(p) = config.ptime {
        attributes.push(Attribute::Ptime(p));
    }
    if config.rtcp_mux {
        attributes.push(Attribute::RtcpMux);
    }
    for (i, k) in config.srtp.iter().enumerate() {
        attributes.push(Attribute::Crypto(Crypto {
            tag: u32::try_from(i + 1).unwrap_or(u32::MAX),
            suite: k.suite.clone(),
            keys: vec![KeyParam {
                method: "inline".into(),
                info: k.key_salt.clone(),
            }],
            session_params: Vec::new(),
        }));
    }
    attributes.push(Attribute::Direction(config.direction));
    sdp.media.push(Media {
        kind: "audio".into(),
        port: config.port,
        port_count: None,
        proto: if config.srtp.is_empty() {
            Proto::RTP_AVP
        } else {
            Proto::RTP_SAVP
        },
        formats: config
            .codecs
            .iter()
            .map(|c| c.payload_type.to_string())
            .collect(),
        info: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        extra: Vec::new(),
        attributes,
    });
    sdp
}

impl SessionDescription {
    /// The body as a `String` (same as `to_string`)
    pub fn serialize(&self) -> String {
        let mut s = String::with_capacity(512);
        let _ = write!(s, "{self}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_reversal() {
        assert_eq!(Direction::SendOnly.reversed(), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.reversed(), Direction::SendOnly);
        assert_eq!(Direction::SendRecv.reversed(), Direction::SendRecv);
        assert_eq!(Direction::Inactive.reversed(), Direction::Inactive);
    }

    #[test]
    fn proto_classes() {
        assert!(Proto::RTP_AVP.is_rtp() && !Proto::RTP_AVP.is_secure());
        assert!(Proto::RTP_SAVPF.is_secure() && !Proto::RTP_SAVPF.is_dtls());
        assert!(Proto::UDP_TLS_RTP_SAVPF.is_dtls() && Proto::UDP_TLS_RTP_SAVPF.is_rtp());
        assert!(!Proto::new("udptl").is_rtp());
        assert_eq!(Proto::new("RTP/AVP"), Proto::RTP_AVP);
    }

    #[test]
    fn attributes_parse_and_print_back() {
        for line in [
            "rtpmap:111 opus/48000/2",
            "fmtp:101 0-16",
            "ptime:20",
            "maxptime:40",
            "sendonly",
            "rtcp:9 IN IP4 0.0.0.0",
            "rtcp-mux",
            "crypto:1 AES_CM_128_HMAC_SHA1_32 inline:a2V5|2^20|1:4;inline:b3Ro|2^20|2:4 KDR=1 UNENCRYPTED_SRTP",
            "ice-ufrag:x",
            "candidate:1 1 udp 1 192.0.2.1 5000 typ host",
            "x-unknown",
            "x-unknown:with: colons",
        ] {
            let a = Attribute::parse(line);
            assert_eq!(a.to_string(), line);
        }
        let Attribute::Crypto(c) = Attribute::parse(
            "crypto:1 AES_CM_128_HMAC_SHA1_32 inline:a2V5|2^20|1:4;inline:b3Ro|2^20|2:4 KDR=1",
        ) else {
            panic!("crypto");
        };
        assert_eq!(c.keys.len(), 2);
        assert_eq!(c.keys[1].key_salt(), "b3Ro");
        assert_eq!(c.keys[1].mki(), Some("2:4"));
        assert_eq!(c.session_params, ["KDR=1"]);
        // Bad values stay raw.
        for line in [
            "rtpmap:300 X/8000",
            "rtpmap:0 PCMU",
            "ptime:x",
            "rtcp:9 IN",
            "crypto:1 S",
        ] {
            assert!(
                matches!(Attribute::parse(line), Attribute::Other { .. }),
                "{line}"
            );
        }
    }
}
