//! Requests: the datagram framing, the command and the typed fields of its dictionary.

use super::bencode::{self, Dict, Limits, Value};
use super::json;
use super::response::{DropReason, ErrorReason, Reply, Response};

/// How the dictionary was encoded; the reply uses the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// Bencode, what Kamailio and OpenSIPS send.
    Bencode,
    /// A JSON object (the body starts with `{`).
    Json,
}

/// An ng command. Names are matched without regard to ASCII case, and `-`/`_` count as spaces,
/// so `play DTMF`, `play dtmf` and `play_dtmf` are one command.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Command {
    /// `ping` → `result: pong`
    Ping,
    /// `offer`: SDP from the caller, rewritten to point at the relay.
    Offer,
    /// `answer`: SDP from the callee.
    Answer,
    /// `delete`: tear down a call (or one branch of it).
    Delete,
    /// `query`: per-call statistics.
    Query,
    /// `list`: the call-ids of current calls.
    List,
    /// `play DTMF`: inject a digit into a leg.
    PlayDtmf,
    /// `block DTMF`
    BlockDtmf,
    /// `unblock DTMF`
    UnblockDtmf,
    /// `block media`
    BlockMedia,
    /// `unblock media`
    UnblockMedia,
    /// `statistics`: relay-wide counters.
    Statistics,
    /// Anything else, as sent.
    Unknown(String),
}

impl Command {
    /// Parses a command name.
    pub fn parse(name: &[u8]) -> Command {
        let text = String::from_utf8_lossy(name);
        let norm: String = text
            .split(|c: char| c.is_ascii_whitespace() || c == '-' || c == '_')
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase();
        match norm.as_str() {
            "ping" => Command::Ping,
            "offer" => Command::Offer,
            "answer" => Command::Answer,
            "delete" => Command::Delete,
            "query" => Command::Query,
            "list" => Command::List,
            "play dtmf" => Command::PlayDtmf,
            "block dtmf" => Command::BlockDtmf,
            "unblock dtmf" => Command::UnblockDtmf,
            "block media" => Command::BlockMedia,
            "unblock media" => Command::UnblockMedia,
            "statistics" => Command::Statistics,
            _ => Command::Unknown(text.into_owned()),
        }
    }

    /// The name as rtpengine spells it (the name as sent for `Unknown`).
    pub fn as_str(&self) -> &str {
        match self {
            Command::Ping => "ping",
            Command::Offer => "offer",
            Command::Answer => "answer",
            Command::Delete => "delete",
            Command::Query => "query",
            Command::List => "list",
            Command::PlayDtmf => "play DTMF",
            Command::BlockDtmf => "block DTMF",
            Command::UnblockDtmf => "unblock DTMF",
            Command::BlockMedia => "block media",
            Command::UnblockMedia => "unblock media",
            Command::Statistics => "statistics",
            Command::Unknown(s) => s,
        }
    }
}

/// An entry of `replace` (or a `replace-…` flag).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Replace {
    /// `origin`: the `o=` line's address becomes the relay's.
    Origin,
    /// `session-connection`: the session-level `c=` line too.
    SessionConnection,
    /// Any other (`sdp-version`, `username`, `session-name`, `zero-address`, ...), as sent.
    Other(String),
}

impl Replace {
    fn parse(s: &str) -> Replace {
        match normalize(s).as_str() {
            "origin" => Replace::Origin,
            "session-connection" | "session-c-line" => Replace::SessionConnection,
            _ => Replace::Other(s.to_owned()),
        }
    }
}

/// The `ICE` option.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ice {
    /// `remove`: strip ICE attributes.
    Remove,
    /// `force`: add ICE, discarding the offerer's candidates.
    Force,
    /// `default`: keep as offered.
    Default,
    /// `force-relay`
    ForceRelay,
    /// `optional`
    Optional,
    /// Anything else, as sent.
    Other(String),
}

impl Ice {
    fn parse(s: &str) -> Ice {
        match normalize(s).as_str() {
            "remove" => Ice::Remove,
            "force" => Ice::Force,
            "default" => Ice::Default,
            "force-relay" => Ice::ForceRelay,
            "optional" => Ice::Optional,
            _ => Ice::Other(s.to_owned()),
        }
    }
}

/// An entry of `rtcp-mux` (or an `rtcp-mux-…` flag).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RtcpMux {
    /// `offer`: offer rtcp-mux to the answerer.
    Offer,
    /// `demux`: do not offer it onward; demultiplex.
    Demux,
    /// `accept`: accept it if offered.
    Accept,
    /// `reject`: refuse it.
    Reject,
    /// `require`
    Require,
    /// Anything else, as sent.
    Other(String),
}

impl RtcpMux {
    fn parse(s: &str) -> RtcpMux {
        match normalize(s).as_str() {
            "offer" => RtcpMux::Offer,
            "demux" => RtcpMux::Demux,
            "accept" => RtcpMux::Accept,
            "reject" => RtcpMux::Reject,
            "require" => RtcpMux::Require,
            _ => RtcpMux::Other(s.to_owned()),
        }
    }
}

/// `transport-protocol` (or a bare `RTP/AVP`-style flag): the profile of the outgoing SDP.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransportProtocol {
    /// `RTP/AVP`
    RtpAvp,
    /// `RTP/AVPF`
    RtpAvpf,
    /// `RTP/SAVP`
    RtpSavp,
    /// `RTP/SAVPF`
    RtpSavpf,
    /// `UDP/TLS/RTP/SAVP`
    UdpTlsRtpSavp,
    /// `UDP/TLS/RTP/SAVPF`
    UdpTlsRtpSavpf,
    /// Anything else, as sent.
    Other(String),
}

impl TransportProtocol {
    fn parse(s: &str) -> TransportProtocol {
        match s.to_ascii_uppercase().as_str() {
            "RTP/AVP" => TransportProtocol::RtpAvp,
            "RTP/AVPF" => TransportProtocol::RtpAvpf,
            "RTP/SAVP" => TransportProtocol::RtpSavp,
            "RTP/SAVPF" => TransportProtocol::RtpSavpf,
            "UDP/TLS/RTP/SAVP" => TransportProtocol::UdpTlsRtpSavp,
            "UDP/TLS/RTP/SAVPF" => TransportProtocol::UdpTlsRtpSavpf,
            _ => TransportProtocol::Other(s.to_owned()),
        }
    }

    /// As written in an `m=` line.
    pub fn as_str(&self) -> &str {
        match self {
            TransportProtocol::RtpAvp => "RTP/AVP",
            TransportProtocol::RtpAvpf => "RTP/AVPF",
            TransportProtocol::RtpSavp => "RTP/SAVP",
            TransportProtocol::RtpSavpf => "RTP/SAVPF",
            TransportProtocol::UdpTlsRtpSavp => "UDP/TLS/RTP/SAVP",
            TransportProtocol::UdpTlsRtpSavpf => "UDP/TLS/RTP/SAVPF",
            TransportProtocol::Other(s) => s,
        }
    }
}

/// The `codec` dictionary (and `codec-strip-…`-style flags): codec names per operation, as sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CodecOps {
    /// `strip`: remove these codecs (`all` strips everything).
    pub strip: Vec<String>,
    /// `offer`: keep or re-add these.
    pub offer: Vec<String>,
    /// `transcode`: add these, transcoding to them.
    pub transcode: Vec<String>,
    /// `mask`: hide these from the answerer but accept them.
    pub mask: Vec<String>,
    /// `set`: codec parameters to force.
    pub set: Vec<String>,
    /// `consume`
    pub consume: Vec<String>,
    /// `accept`
    pub accept: Vec<String>,
    /// `except`: exceptions to `strip all`/`mask all`.
    pub except: Vec<String>,
}

impl CodecOps {
    /// True when no operation is requested.
    pub fn is_empty(&self) -> bool {
        self.strip.is_empty()
            && self.offer.is_empty()
            && self.transcode.is_empty()
            && self.mask.is_empty()
            && self.set.is_empty()
            && self.consume.is_empty()
            && self.accept.is_empty()
            && self.except.is_empty()
    }

    fn list_mut(&mut self, op: &str) -> Option<&mut Vec<String>> {
        Some(match op {
            "strip" => &mut self.strip,
            "offer" => &mut self.offer,
            "transcode" => &mut self.transcode,
            "mask" => &mut self.mask,
            "set" => &mut self.set,
            "consume" => &mut self.consume,
            "accept" => &mut self.accept,
            "except" => &mut self.except,
            _ => return None,
        })
    }
}

/// The `play DTMF` parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayDtmf {
    /// RFC 4733 event: 0–9, `*` = 10, `#` = 11, `A`–`D` = 12–15.
    pub event: u8,
    /// `duration` in ms, as sent (see [`PlayDtmf::duration_ms`]).
    pub duration: Option<i64>,
    /// `volume` in dB below full scale, as sent (rtpengine takes 8 and −8 alike as −8 dBm0).
    pub volume: Option<i64>,
    /// `pause` after the digit in ms, as sent.
    pub pause: Option<i64>,
}

impl PlayDtmf {
    /// rtpengine's default digit length.
    pub const DEFAULT_DURATION_MS: u32 = 100;
    /// rtpengine's default volume, dBm0.
    pub const DEFAULT_VOLUME_DBM0: i8 = -8;

    /// The digit length: default 100 ms, clamped to 100–5000 ms as rtpengine does.
    pub fn duration_ms(&self) -> u32 {
        self.duration.map_or(Self::DEFAULT_DURATION_MS, |d| {
            // Clamped into range, so the conversion cannot fail.
            u32::try_from(d.clamp(100, 5000)).unwrap_or(Self::DEFAULT_DURATION_MS)
        })
    }

    /// The level in dBm0, never above 0 (a positive `volume` means that many dB below).
    pub fn volume_dbm0(&self) -> i8 {
        // At most 63 dB down, so the cast cannot truncate.
        self.volume.map_or(Self::DEFAULT_VOLUME_DBM0, |v| {
            -(v.unsigned_abs().min(63) as i8)
        })
    }

    /// The digit character of the event.
    pub fn digit(&self) -> char {
        b"0123456789*#ABCD"
            .get(usize::from(self.event))
            .map_or('?', |&b| char::from(b))
    }

    /// `code`: an event number 0–15 (integer, or a string of digits), or one digit character;
    /// refused with rtpengine's four reasons.
    fn parse_code(v: Option<&Value>) -> Result<u8, ErrorReason> {
        let range = |i: i64| {
            u8::try_from(i)
                .ok()
                .filter(|e| *e <= 15)
                .ok_or(ErrorReason::DtmfCodeOutOfRange)
        };
        match v {
            Some(Value::Int(i)) => range(*i),
            Some(Value::Bytes(b)) => {
                if let Some(i) = std::str::from_utf8(b).ok().and_then(|s| s.parse().ok()) {
                    return range(i);
                }
                match b.as_slice() {
                    [c] => match c.to_ascii_uppercase() {
                        b'*' => Ok(10),
                        b'#' => Ok(11),
                        l @ b'A'..=b'D' => Ok(l - b'A' + 12),
                        _ => Err(ErrorReason::DtmfCodeInvalidChar),
                    },
                    _ => Err(ErrorReason::DtmfCodeNotSingleDigit),
                }
            }
            _ => Err(ErrorReason::DtmfCodeMissing),
        }
    }
}

/// A decoded request.
///
/// The typed fields cover what Kamailio's and OpenSIPS's rtpengine modules send; everything
/// else stays in [`Request::raw`]. Identifiers (call-id, tags, branch, label) that are not UTF-8
/// are converted lossily (the raw dictionary keeps the bytes).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// Echoed in the reply; also the retransmission key.
    pub cookie: Vec<u8>,
    /// The reply's encoding.
    pub encoding: Encoding,
    /// What to do.
    pub command: Command,
    /// `call-id`
    pub call_id: Option<String>,
    /// `from-tag`
    pub from_tag: Option<String>,
    /// `to-tag`
    pub to_tag: Option<String>,
    /// `via-branch`
    pub via_branch: Option<String>,
    /// `label`
    pub label: Option<String>,
    /// `from-tags`: the targets of some commands (block/unblock, play DTMF).
    pub from_tags: Vec<String>,
    /// `sdp`, as bytes.
    pub sdp: Option<Vec<u8>>,
    /// Entries of `flags` not folded into a typed field below (e.g. `trust-address`,
    /// `symmetric`, `strict-source`, `all`), as sent.
    pub flags: Vec<String>,
    /// `replace`, plus `replace-…` flags.
    pub replace: Vec<Replace>,
    /// `direction`: interface names per side (e.g. `internal`, `external`).
    pub direction: Vec<String>,
    /// `ICE`
    pub ice: Option<Ice>,
    /// `rtcp-mux`, plus `rtcp-mux-…` flags.
    pub rtcp_mux: Vec<RtcpMux>,
    /// `transport-protocol`, or a bare `RTP/AVP`-style flag.
    pub transport_protocol: Option<TransportProtocol>,
    /// `codec`, plus `codec-strip-…`-style flags.
    pub codec: CodecOps,
    /// `received-from`: `[address family, address]` of the SIP peer (Kamailio sends it).
    pub received_from: Option<(String, String)>,
    /// `address family` (`IP4`, `IP6`).
    pub address_family: Option<String>,
    /// `play DTMF` parameters.
    pub dtmf: Option<PlayDtmf>,
    /// `limit` of `list`.
    pub limit: Option<i64>,
    /// The whole dictionary as received.
    pub raw: Dict,
}

impl Request {
    /// True if `flags` holds `name`, compared without ASCII case and with `_` equal to `-`.
    pub fn has_flag(&self, name: &str) -> bool {
        let want = normalize(name);
        self.flags.iter().any(|f| normalize(f) == want)
    }

    /// True if `replace` holds `r`.
    pub fn replaces(&self, r: &Replace) -> bool {
        self.replace.contains(r)
    }

    /// The reply datagram for this request: its cookie and encoding.
    pub fn reply(&self, response: &Response) -> Vec<u8> {
        response.encode(&self.cookie, self.encoding)
    }
}

/// A datagram that could not become a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejected {
    /// No cookie to answer with.
    Drop(DropReason),
    /// Answer with `result: error`.
    Error {
        /// The request's cookie.
        cookie: Vec<u8>,
        /// The request's encoding (bencode when the body is too broken to tell).
        encoding: Encoding,
        /// What to tell the sender.
        reason: ErrorReason,
        /// What went wrong in more detail, for the log (e.g. the bencode error and position).
        detail: String,
    },
}

impl Rejected {
    /// The reply to send, if any.
    pub fn reply(&self) -> Reply {
        match self {
            Rejected::Drop(r) => Reply::Drop(*r),
            Rejected::Error {
                cookie,
                encoding,
                reason,
                ..
            } => Reply::Send(Response::error(reason).encode(cookie, *encoding)),
        }
    }

    /// A fixed label for a metrics counter.
    pub fn label(&self) -> &'static str {
        match self {
            Rejected::Drop(r) => r.as_str(),
            Rejected::Error { reason, .. } => reason.label(),
        }
    }
}

/// Splits a datagram into cookie and body at the first space.
pub fn split_cookie(datagram: &[u8]) -> Result<(&[u8], &[u8]), DropReason> {
    if datagram.is_empty() {
        return Err(DropReason::Empty);
    }
    let sp = datagram
        .iter()
        .position(|&b| b == b' ')
        .ok_or(DropReason::NoCookie)?;
    if sp == 0 {
        return Err(DropReason::EmptyCookie);
    }
    Ok((&datagram[..sp], &datagram[sp + 1..]))
}

/// Decodes the dictionary of a datagram body: bencode when it starts with `d`, JSON when it
/// starts with `{` (as rtpengine tells them apart). Trailing ASCII whitespace (a newline from
/// `nc`) is ignored, which rtpengine may not do. On failure: the reason to answer with and a
/// detail for the log.
pub fn decode_body(
    body: &[u8],
    limits: &Limits,
) -> (Encoding, Result<Dict, (ErrorReason, String)>) {
    let body = body.trim_ascii_end();
    let not_dict = || (ErrorReason::Malformed, "not a dictionary".to_owned());
    match body.first() {
        None => (
            Encoding::Bencode,
            Err((ErrorReason::NoPayload, String::new())),
        ),
        Some(b'd') => (
            Encoding::Bencode,
            match bencode::decode(body, limits) {
                Ok(Value::Dict(d)) => Ok(d),
                Ok(_) => Err(not_dict()),
                Err(e) => Err((ErrorReason::Malformed, e.to_string())),
            },
        ),
        Some(b'{') => (
            Encoding::Json,
            match json::decode(body, limits) {
                Ok(Value::Dict(d)) => Ok(d),
                Ok(_) => Err(not_dict()),
                Err(e) => Err((ErrorReason::MalformedJson, e.to_string())),
            },
        ),
        Some(&b) => (
            Encoding::Bencode,
            Err((ErrorReason::InvalidFormat, format!("starts with 0x{b:02x}"))),
        ),
    }
}

/// Decodes one datagram into a [`Request`], or says how to answer it.
///
/// Checks what every command needs (a call-id for all but `ping`, `list` and `statistics`; a
/// from-tag and an SDP body for `offer` and `answer`; a digit for `play DTMF`). An unknown
/// command is not an error here: it decodes to [`Command::Unknown`] and the caller answers
/// [`ErrorReason::UnknownCommand`].
pub fn decode(datagram: &[u8], limits: &Limits) -> Result<Request, Rejected> {
    let (cookie, body) = split_cookie(datagram).map_err(Rejected::Drop)?;
    let (encoding, dict) = decode_body(body, limits);
    let fail = |reason: ErrorReason, detail: String| Rejected::Error {
        cookie: cookie.to_vec(),
        encoding,
        reason,
        detail,
    };
    let raw = dict.map_err(|(reason, detail)| fail(reason, detail))?;
    let command = match lookup(&raw, "command").and_then(Value::as_bytes) {
        Some(c) => Command::parse(c),
        None => return Err(fail(ErrorReason::MissingCommand, String::new())),
    };
    let mut req = Request {
        cookie: cookie.to_vec(),
        encoding,
        command,
        call_id: text(&raw, "call-id"),
        from_tag: text(&raw, "from-tag"),
        to_tag: text(&raw, "to-tag"),
        via_branch: text(&raw, "via-branch"),
        label: text(&raw, "label"),
        from_tags: strings(lookup(&raw, "from-tags")),
        sdp: lookup(&raw, "sdp")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec),
        flags: Vec::new(),
        replace: strings(lookup(&raw, "replace"))
            .iter()
            .map(|s| Replace::parse(s))
            .collect(),
        direction: strings(lookup(&raw, "direction")),
        ice: text(&raw, "ICE").map(|s| Ice::parse(&s)),
        rtcp_mux: strings(lookup(&raw, "rtcp-mux"))
            .iter()
            .map(|s| RtcpMux::parse(s))
            .collect(),
        transport_protocol: text(&raw, "transport-protocol").map(|s| TransportProtocol::parse(&s)),
        codec: CodecOps::default(),
        received_from: None,
        address_family: text(&raw, "address family"),
        dtmf: None,
        limit: lookup(&raw, "limit").and_then(int),
        raw: Dict::new(),
    };
    if let Some(codec) = lookup(&raw, "codec").and_then(Value::as_dict) {
        for (op, list) in codec.iter() {
            let op = normalize(&String::from_utf8_lossy(op));
            if let Some(v) = req.codec.list_mut(&op) {
                v.extend(strings(Some(list)));
            }
        }
    }
    if let [family, addr] = strings(lookup(&raw, "received-from")).as_slice() {
        req.received_from = Some((family.clone(), addr.clone()));
    }
    for flag in strings(lookup(&raw, "flags")) {
        fold_flag(&mut req, flag);
    }
    // Newer Kamailio can pass its flag string through untouched, for the relay to parse.
    if let Some(rtpp) = text(&raw, "rtpp-flags") {
        for flag in rtpp.split_ascii_whitespace() {
            fold_flag(&mut req, flag.to_owned());
        }
    }
    check(&mut req, &raw).map_err(|reason| fail(reason, String::new()))?;
    req.raw = raw;
    Ok(req)
}

/// What each command needs before a handler sees it.
fn check(req: &mut Request, raw: &Dict) -> Result<(), ErrorReason> {
    use Command as C;
    match req.command {
        C::Ping | C::List | C::Statistics | C::Unknown(_) => return Ok(()),
        // rtpengine's order of checks: SDP, call-id, from-tag, to-tag.
        C::Offer | C::Answer => {
            if req.sdp.is_none() {
                return Err(ErrorReason::MissingSdp);
            }
            if req.call_id.is_none() {
                return Err(ErrorReason::MissingCallId);
            }
            if req.from_tag.is_none() {
                return Err(ErrorReason::MissingFromTag);
            }
            if req.command == C::Answer && req.to_tag.is_none() {
                return Err(ErrorReason::MissingToTag);
            }
            return Ok(());
        }
        _ => {}
    }
    if req.call_id.is_none() {
        return Err(ErrorReason::MissingCallId);
    }
    if req.command == C::PlayDtmf {
        let event = PlayDtmf::parse_code(lookup(raw, "code"))?;
        req.dtmf = Some(PlayDtmf {
            event,
            duration: lookup(raw, "duration").and_then(int),
            volume: lookup(raw, "volume").and_then(int),
            pause: lookup(raw, "pause").and_then(int),
        });
    }
    Ok(())
}

/// Moves a `flags` (or `rtpp-flags`) entry into its typed field, as rtpengine reads them:
/// `replace-X`, `rtcp-mux-X`, `codec-OP-X`, `KEY=VALUE` for ICE, direction, transport-protocol,
/// label, address-family, replace, rtcp-mux, call-id and tags, and bare transport protocols
/// (`RTP/AVP`). Others stay in `flags`.
fn fold_flag(req: &mut Request, flag: String) {
    if let Some((key, value)) = flag.split_once('=') {
        match normalize(key).as_str() {
            "ice" => req.ice = Some(Ice::parse(value)),
            "direction" => req.direction.push(value.to_owned()),
            "transport-protocol" => {
                req.transport_protocol = Some(TransportProtocol::parse(value));
            }
            "label" => req.label = Some(value.to_owned()),
            "address-family" => req.address_family = Some(value.to_owned()),
            // Dictionary keys win over the same thing given as a flag.
            "call-id" => {
                req.call_id.get_or_insert_with(|| value.to_owned());
            }
            "from-tag" => {
                req.from_tag.get_or_insert_with(|| value.to_owned());
            }
            "to-tag" => {
                req.to_tag.get_or_insert_with(|| value.to_owned());
            }
            "via-branch" => {
                req.via_branch.get_or_insert_with(|| value.to_owned());
            }
            "replace" => req.replace.push(Replace::parse(value)),
            "rtcp-mux" => req.rtcp_mux.push(RtcpMux::parse(value)),
            _ => req.flags.push(flag),
        }
        return;
    }
    let n = normalize(&flag);
    if let Some(what) = n.strip_prefix("replace-") {
        req.replace.push(Replace::parse(what));
    } else if let Some(what) = n.strip_prefix("rtcp-mux-") {
        req.rtcp_mux.push(RtcpMux::parse(what));
    } else if let Some(rest) = n.strip_prefix("codec-") {
        // codec-strip-PCMA: the codec name keeps its original case.
        let op_len = rest.find('-').unwrap_or(rest.len());
        let name = flag.get("codec-".len() + op_len + 1..).unwrap_or("");
        match req.codec.list_mut(&rest[..op_len]) {
            Some(list) if !name.is_empty() => list.push(name.to_owned()),
            _ => req.flags.push(flag),
        }
    } else if flag.contains('/') && flag.to_ascii_uppercase().contains("RTP/") {
        req.transport_protocol = Some(TransportProtocol::parse(&flag));
    } else {
        req.flags.push(flag);
    }
}

/// ASCII lower case with `_` as `-`: how keys and flag names are compared.
fn normalize(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// Looks a key up exactly, then regardless of ASCII case with `-`, `_` and space equal
/// (rtpengine has spelled `address family` with a space and clients vary).
fn lookup<'a>(d: &'a Dict, key: &str) -> Option<&'a Value> {
    if let Some(v) = d.get(key) {
        return Some(v);
    }
    let fold = |b: &u8| match b {
        b'_' | b' ' => b'-',
        b => b.to_ascii_lowercase(),
    };
    let want: Vec<u8> = key.as_bytes().iter().map(fold).collect();
    d.iter()
        .find(|(k, _)| k.len() == want.len() && k.iter().map(fold).eq(want.iter().copied()))
        .map(|(_, v)| v)
}

fn text(d: &Dict, key: &str) -> Option<String> {
    match lookup(d, key)? {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// The strings of a list (other items skipped), or a lone string as a one-item list.
fn strings(v: Option<&Value>) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::Bytes(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    };
    match v {
        Some(Value::List(l)) => l.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<Request, Rejected> {
        decode(s, &Limits::default())
    }

    #[test]
    fn commands_ignore_case_and_separators() {
        assert_eq!(Command::parse(b"PING"), Command::Ping);
        assert_eq!(Command::parse(b"play DTMF"), Command::PlayDtmf);
        assert_eq!(Command::parse(b"play_dtmf"), Command::PlayDtmf);
        assert_eq!(Command::parse(b"Block  Media"), Command::BlockMedia);
        assert_eq!(Command::parse(b"unblock-DTMF"), Command::UnblockDtmf);
        assert_eq!(
            Command::parse(b"start recording"),
            Command::Unknown("start recording".into())
        );
        for c in [
            Command::Ping,
            Command::Offer,
            Command::Answer,
            Command::Delete,
            Command::Query,
            Command::List,
            Command::PlayDtmf,
            Command::BlockDtmf,
            Command::UnblockDtmf,
            Command::BlockMedia,
            Command::UnblockMedia,
            Command::Statistics,
        ] {
            assert_eq!(Command::parse(c.as_str().as_bytes()), c);
        }
    }

    #[test]
    fn framing() {
        assert_eq!(dec(b""), Err(Rejected::Drop(DropReason::Empty)));
        assert_eq!(
            dec(b"d7:command4:pinge"),
            Err(Rejected::Drop(DropReason::NoCookie))
        );
        assert_eq!(
            dec(b" d7:command4:pinge"),
            Err(Rejected::Drop(DropReason::EmptyCookie))
        );
        let r = dec(b"abc d7:command4:pinge\n").unwrap();
        assert_eq!(
            (r.cookie.as_slice(), r.command),
            (&b"abc"[..], Command::Ping)
        );
        let r = dec(b"abc {\"command\":\"ping\"}\r\n").unwrap();
        assert_eq!(r.encoding, Encoding::Json);
        let reason = |d: &[u8]| match dec(d) {
            Err(Rejected::Error { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b"abc "), ErrorReason::NoPayload);
        assert_eq!(reason(b"abc \n"), ErrorReason::NoPayload);
        assert_eq!(
            reason(b"abc  d7:command4:pinge"),
            ErrorReason::InvalidFormat
        );
        assert_eq!(reason(b"abc le"), ErrorReason::InvalidFormat);
        assert_eq!(reason(b"abc d7:command"), ErrorReason::Malformed);
        assert_eq!(reason(b"abc {\"command\""), ErrorReason::MalformedJson);
    }

    #[test]
    fn requirements() {
        let reason = |s: &[u8]| match dec(s) {
            Err(Rejected::Error { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(b"c d7:command5:offere"), ErrorReason::MissingSdp);
        assert_eq!(
            reason(b"c d7:command5:offer3:sdp3:v=0e"),
            ErrorReason::MissingCallId
        );
        assert_eq!(
            reason(b"c d7:command5:offer3:sdp3:v=07:call-id1:xe"),
            ErrorReason::MissingFromTag
        );
        assert!(dec(b"c d7:command5:offer3:sdp3:v=07:call-id1:x8:from-tag1:ye").is_ok());
        assert_eq!(
            reason(b"c d7:command6:answer3:sdp3:v=07:call-id1:x8:from-tag1:ye"),
            ErrorReason::MissingToTag
        );
        assert_eq!(reason(b"c d4:code1:1e"), ErrorReason::MissingCommand);
        assert_eq!(reason(b"c d7:commandi1ee"), ErrorReason::MissingCommand);
        assert_eq!(
            reason(b"c d7:command9:play DTMF7:call-id1:xe"),
            ErrorReason::DtmfCodeMissing
        );
        assert_eq!(
            reason(b"c d7:command9:play DTMF7:call-id1:x4:code1:Xe"),
            ErrorReason::DtmfCodeInvalidChar
        );
        assert_eq!(
            reason(b"c d7:command9:play DTMF7:call-id1:x4:codei16ee"),
            ErrorReason::DtmfCodeOutOfRange
        );
        assert_eq!(reason(b"c d7:command6:deletee"), ErrorReason::MissingCallId);
        assert!(dec(b"c d7:command4:liste").is_ok());
        assert!(dec(b"c d7:command10:statisticse").is_ok());
        assert_eq!(
            dec(b"c d7:command5:dancee").unwrap().command,
            Command::Unknown("dance".into())
        );
    }

    #[test]
    fn dtmf_codes() {
        let code = |v: Value| PlayDtmf::parse_code(Some(&v));
        assert_eq!(code(Value::from("5")), Ok(5));
        assert_eq!(code(Value::from("*")), Ok(10));
        assert_eq!(code(Value::from("#")), Ok(11));
        assert_eq!(code(Value::from("a")), Ok(12));
        assert_eq!(code(Value::from("D")), Ok(15));
        assert_eq!(code(Value::from("15")), Ok(15));
        assert_eq!(code(Value::Int(11)), Ok(11));
        assert_eq!(code(Value::Int(-1)), Err(ErrorReason::DtmfCodeOutOfRange));
        assert_eq!(
            code(Value::from("16")),
            Err(ErrorReason::DtmfCodeOutOfRange)
        );
        assert_eq!(
            code(Value::from("E")),
            Err(ErrorReason::DtmfCodeInvalidChar)
        );
        assert_eq!(
            code(Value::from("")),
            Err(ErrorReason::DtmfCodeNotSingleDigit)
        );
        assert_eq!(
            code(Value::from("**")),
            Err(ErrorReason::DtmfCodeNotSingleDigit)
        );
        assert_eq!(code(Value::List(vec![])), Err(ErrorReason::DtmfCodeMissing));
        assert_eq!(
            PlayDtmf::parse_code(None),
            Err(ErrorReason::DtmfCodeMissing)
        );
        let d = PlayDtmf {
            event: 11,
            duration: Some(50),
            volume: Some(10),
            pause: None,
        };
        assert_eq!(
            (d.digit(), d.duration_ms(), d.volume_dbm0()),
            ('#', 100, -10)
        );
        let d = PlayDtmf {
            event: 3,
            duration: Some(90_000),
            volume: Some(-12),
            pause: None,
        };
        assert_eq!(
            (d.digit(), d.duration_ms(), d.volume_dbm0()),
            ('3', 5000, -12)
        );
        let d = PlayDtmf {
            event: 0,
            duration: None,
            volume: Some(i64::MIN),
            pause: None,
        };
        assert_eq!((d.duration_ms(), d.volume_dbm0()), (100, -63));
    }

    #[test]
    fn flags_fold_like_rtpengine() {
        let r = dec(
            b"c d7:command5:offer7:call-id1:x8:from-tag1:y3:sdp3:v=05:flagsl\
13:trust-address14:replace-origin26:replace-session-connection10:ICE=remove7:RTP/AVP\
14:rtcp-mux-demux16:codec-strip-PCMA18:direction=internal9:symmetricee",
        )
        .unwrap();
        assert_eq!(r.flags, vec!["trust-address", "symmetric"]);
        assert!(r.has_flag("Trust_Address"));
        assert_eq!(r.replace, vec![Replace::Origin, Replace::SessionConnection]);
        assert_eq!(r.ice, Some(Ice::Remove));
        assert_eq!(r.transport_protocol, Some(TransportProtocol::RtpAvp));
        assert_eq!(r.rtcp_mux, vec![RtcpMux::Demux]);
        assert_eq!(r.codec.strip, vec!["PCMA"]);
        assert_eq!(r.direction, vec!["internal"]);
    }

    #[test]
    fn rtpp_flags_string() {
        let r = dec(
            b"c d7:command5:offer3:sdp3:v=07:call-id1:x10:rtpp-flags140:\
replace-origin replace-session-connection strict-source label=caller OSRTP-accept \
address-family=IP4 transport-protocol=RTP/AVP from-tag=ft1e",
        )
        .unwrap();
        assert_eq!(r.replace, vec![Replace::Origin, Replace::SessionConnection]);
        assert_eq!(r.flags, vec!["strict-source", "OSRTP-accept"]);
        assert_eq!(r.label.as_deref(), Some("caller"));
        assert_eq!(r.address_family.as_deref(), Some("IP4"));
        assert_eq!(r.transport_protocol, Some(TransportProtocol::RtpAvp));
        assert_eq!(r.from_tag.as_deref(), Some("ft1"));
        assert_eq!(r.call_id.as_deref(), Some("x"));
    }

    #[test]
    fn lookup_tolerates_spelling() {
        let d: Dict = [("Address_Family", "IP6"), ("call_id", "z")]
            .into_iter()
            .collect();
        assert_eq!(text(&d, "address family").as_deref(), Some("IP6"));
        assert_eq!(text(&d, "call-id").as_deref(), Some("z"));
        assert_eq!(text(&d, "from-tag"), None);
    }
}
