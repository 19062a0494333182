//! The ng commands: a call table shaped like rtpengine's, driving a [`MediaControl`].
//!
//! A call holds monologues, one per party (SIP tag). Each monologue has one leg per relayed `m=`
//! section; the leg's remote is that party and its local ports are where that party sends.
//!
//! ```text
//!   offer  (from-tag A, SDP of A)  → legs of A (remote: A's SDP) + legs facing B (remote unknown)
//!                                    ← SDP for B with the B-facing legs' ports
//!   answer (to-tag B, SDP of B)    → B's SDP sets the B-facing legs' remote, legs bridged
//!                                    ← SDP for A with A's legs' ports
//! ```
//!
//! An offer from a tag that already has a peer (re-INVITE, from either side) updates that
//! tag's legs and answers with the peer's ports. One dialogue per call: a second to-tag
//! answering (a forked branch) takes over the B-facing legs. The relay answers no STUN, so ICE
//! attributes are always dropped (`ICE=remove` is what it does anyway). The `direction` option
//! names interfaces; with one interface it is accepted and has no effect. Codec `strip`, `mask`
//! (no transcoding: masked codecs are simply not offered), `offer` and `except` are honoured;
//! `transcode`, `set`, `consume` and `accept` are not (the relay does not transcode).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dsp::amd::AmdConfig;

use super::bencode::{Dict, Value};
use super::message::{Command as NgCommand, Replace, Request, RtcpMux, TransportProtocol};
use super::response::{ErrorReason, Response};
use super::sdp::{CodecFilter, MediaPlan, Rewrite, Sdp};
use crate::api::{ApiError, CallId, Command, DubAction, EndpointSpec, Event, LegId, MediaControl};
use crate::endpoint::LegStats;
use crate::ports::PortPair;

/// What the handler does beyond what requests ask.
#[derive(Debug, Clone, Default)]
pub struct HandlerConfig {
    /// Put DTMF and AMD taps on every leg created (`--dsp-taps`: measures their cost).
    pub dsp_taps: bool,
    /// On every n-th new call, a dub track looping a tone into the leg facing the answerer
    /// (`--dsp-dub-every`: measures the mixer's cost); 0 = never.
    pub dub_every: u32,
}

/// The dub track `--dsp-dub-every` adds, and what it plays: one second of 440 Hz at -12 dB
/// (a whole number of periods, so the loop has no click).
const BENCH_DUB_TRACK: crate::api::TrackId = crate::api::TrackId(1);
const BENCH_DUB_GAIN_DB: i8 = -12;

fn bench_dub_tone() -> Arc<[i16]> {
    let w = 2.0 * std::f32::consts::PI * 440.0 / 8000.0;
    (0..8000)
        .map(|i| ((w * i as f32).sin() * 16_000.0) as i16)
        .collect()
}

/// One leg: a relayed `m=` section of one party.
#[derive(Debug, Clone)]
struct Leg {
    id: LegId,
    local: SocketAddr,
    ports: PortPair,
    rtcp_mux: bool,
    kind: String,
    proto: String,
    /// The party's address from its SDP.
    advertised: Option<SocketAddr>,
    bridged: bool,
    timed_out: bool,
}

/// One party of a call.
#[derive(Debug, Clone)]
struct Monologue {
    /// `None`: the side facing the answerer before its to-tag is known.
    tag: Option<String>,
    label: Option<String>,
    created: SystemTime,
    /// Index of the other party in [`Call::monologues`].
    peer: usize,
    /// One entry per `m=` section; `None` where the section is not relayed.
    legs: Vec<Option<Leg>>,
}

#[derive(Debug, Clone)]
struct Call {
    created: SystemTime,
    last_signal: SystemTime,
    monologues: Vec<Monologue>,
    next_leg: u32,
}

impl Call {
    fn find(&self, tag: &str) -> Option<usize> {
        self.monologues
            .iter()
            .position(|m| m.tag.as_deref() == Some(tag))
    }

    fn legs(&self) -> impl Iterator<Item = &Leg> {
        self.monologues.iter().flat_map(|m| m.legs.iter().flatten())
    }
}

/// Counters since start (ng `statistics`). The relayed packets, bytes and errors are added when
/// a call ends (deleted or timed out), from its legs' final numbers.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    managed: u64,
    deleted: u64,
    timed_out: u64,
    packets: u64,
    bytes: u64,
    errors: u64,
}

/// The ng session logic: requests in, responses out, commands to a [`MediaControl`].
#[derive(Debug)]
pub struct NgHandler {
    config: HandlerConfig,
    /// What `--dsp-dub-every` plays, shared by every dubbed leg.
    dub_tone: Arc<[i16]>,
    calls: HashMap<String, Call>,
    started: SystemTime,
    totals: Totals,
}

fn api_error(e: ApiError) -> ErrorReason {
    match e {
        ApiError::PortsExhausted => ErrorReason::OutOfPorts,
        e => ErrorReason::Other(e.to_string()),
    }
}

fn unix(t: SystemTime) -> (i64, i64) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_secs() as i64, d.as_micros() as i64)
}

fn dict<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Dict(entries.into_iter().collect())
}

fn count(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// rtpengine's `{packets, bytes, errors}`.
fn traffic(packets: u64, bytes: u64, errors: u64) -> Value {
    dict([
        ("packets", count(packets)),
        ("bytes", count(bytes)),
        ("errors", count(errors)),
    ])
}

const NO_SUCH_TAG: &str = "From-tag given, but no such tag exists";
const INVALID_DIALOGUE: &str = "Invalid dialogue association";

impl NgHandler {
    /// An empty call table; `now` starts the uptime.
    pub fn new(config: HandlerConfig, now: SystemTime) -> Self {
        NgHandler {
            dub_tone: if config.dub_every > 0 {
                bench_dub_tone()
            } else {
                Arc::from([])
            },
            config,
            calls: HashMap::new(),
            started: now,
            totals: Totals::default(),
        }
    }

    /// Whether the call being set up now is one `--dsp-dub-every` dubs (new calls are counted
    /// in `totals.managed` once their offer succeeds).
    fn dub_due(&self) -> bool {
        let every = u64::from(self.config.dub_every);
        every > 0 && self.totals.managed.is_multiple_of(every)
    }

    /// Calls in the table.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is in the table.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Runs one request at wall-clock time `now`.
    pub fn handle(&mut self, req: &Request, media: &dyn MediaControl, now: SystemTime) -> Response {
        let result = match &req.command {
            NgCommand::Ping => Ok(Response::pong()),
            NgCommand::Offer => self.offer(req, media, now),
            NgCommand::Answer => self.answer(req, media, now),
            NgCommand::Delete => Ok(self.delete(req, media, now)),
            NgCommand::Query => self.query(req, media),
            NgCommand::List => Ok(self.list(req)),
            NgCommand::PlayDtmf => self.play_dtmf(req, media),
            NgCommand::BlockDtmf | NgCommand::UnblockDtmf => self.block(req, media, true),
            NgCommand::BlockMedia | NgCommand::UnblockMedia => self.block(req, media, false),
            NgCommand::Statistics => Ok(self.statistics(now)),
            NgCommand::Unknown(_) => Err(ErrorReason::UnknownCommand),
        };
        result.unwrap_or_else(|reason| Response::error(&reason))
    }

    /// Reacts to a shard event: a call whose legs have all timed out is deleted, as rtpengine
    /// does.
    pub fn on_event(&mut self, event: &Event, media: &dyn MediaControl) {
        let Event::MediaTimeout { call_id, leg } = event else {
            return;
        };
        let Some(call) = self.calls.get_mut(&call_id.0) else {
            return;
        };
        for m in &mut call.monologues {
            for l in m.legs.iter_mut().flatten() {
                if l.id == *leg {
                    l.timed_out = true;
                }
            }
        }
        if call.legs().all(|l| l.timed_out) {
            tracing::info!(call_id = %call_id, "media timeout on every leg: call deleted");
            self.totals.timed_out += 1;
            let key = call_id.0.clone();
            self.remove_call(&key, media);
        }
    }

    fn spec_for_offer_side(sdp: &Sdp<'_>, k: usize, req: &Request) -> EndpointSpec {
        let mut spec = sdp.endpoint_spec(k);
        // The offerer's rtcp-mux is accepted unless refused.
        spec.rtcp_mux &= !req.rtcp_mux.contains(&RtcpMux::Reject);
        spec
    }

    /// Whether the side that receives the offer is offered rtcp-mux.
    fn mux_onward(offered: bool, req: &Request) -> bool {
        let has = |m: RtcpMux| req.rtcp_mux.contains(&m);
        if has(RtcpMux::Demux) || has(RtcpMux::Reject) {
            false
        } else if has(RtcpMux::Offer) || has(RtcpMux::Require) {
            true
        } else {
            offered
        }
    }

    /// The outgoing transport protocol: `RTP/AVP` and `RTP/AVPF` only (no SRTP here).
    fn transport(req: &Request) -> Result<Option<String>, ErrorReason> {
        match &req.transport_protocol {
            None => Ok(None),
            Some(p @ (TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf)) => {
                Ok(Some(p.as_str().to_owned()))
            }
            Some(other) => Err(ErrorReason::Other(format!(
                "Unsupported transport protocol {}",
                other.as_str()
            ))),
        }
    }

    fn rewrite_plan(
        req: &Request,
        media: Vec<MediaPlan>,
        address: IpAddr,
        transport_protocol: Option<String>,
    ) -> Rewrite {
        let c = &req.codec;
        let mut strip = c.strip.clone();
        strip.extend(c.mask.iter().cloned());
        let mut keep = c.offer.clone();
        keep.extend(c.except.iter().cloned());
        Rewrite {
            address,
            media,
            replace_origin: req.replaces(&Replace::Origin),
            replace_session_connection: req.replaces(&Replace::SessionConnection),
            remove_ice: true,
            codecs: CodecFilter { strip, keep },
            transport_protocol,
        }
    }

    /// Creates a leg on the media plane (and its tap and dub track when configured).
    fn create_leg(
        &self,
        media: &dyn MediaControl,
        call_id: &CallId,
        id: LegId,
        spec: EndpointSpec,
        section: &super::sdp::Media,
        dub: bool,
    ) -> Result<Leg, ErrorReason> {
        let rtcp_mux = spec.rtcp_mux;
        let advertised = spec.sdp_address;
        let events = media
            .request(Command::CreateEndpoint {
                call_id: call_id.clone(),
                leg: id,
                spec,
            })
            .map_err(api_error)?;
        let (local, ports) = events
            .iter()
            .find_map(|e| match e {
                Event::EndpointCreated { local, ports, .. } => Some((*local, *ports)),
                _ => None,
            })
            .ok_or_else(|| ErrorReason::Other("media plane created no endpoint".into()))?;
        if self.config.dsp_taps && section.kind.eq_ignore_ascii_case("audio") {
            media
                .request(Command::Tap {
                    call_id: call_id.clone(),
                    leg: id,
                    dtmf: true,
                    amd: Some(AmdConfig::default()),
                })
                .map_err(api_error)?;
        }
        if dub && section.kind.eq_ignore_ascii_case("audio") {
            let samples = self.dub_tone.clone();
            for action in [
                DubAction::AddTrack,
                DubAction::Play {
                    samples,
                    looped: true,
                    gain_db: BENCH_DUB_GAIN_DB,
                },
            ] {
                media
                    .request(Command::Dub {
                        call_id: call_id.clone(),
                        leg: id,
                        track: BENCH_DUB_TRACK,
                        action,
                    })
                    .map_err(api_error)?;
            }
        }
        Ok(Leg {
            id,
            local,
            ports,
            rtcp_mux,
            kind: section.kind.clone(),
            proto: section.proto.clone(),
            advertised,
            bridged: false,
            timed_out: false,
        })
    }

    fn offer(
        &mut self,
        req: &Request,
        media: &dyn MediaControl,
        now: SystemTime,
    ) -> Result<Response, ErrorReason> {
        let body = req.sdp.as_deref().unwrap_or_default();
        let sdp = Sdp::parse(body).map_err(|e| {
            tracing::debug!(error = %e, "offer with bad SDP");
            ErrorReason::InvalidSdp
        })?;
        let transport = Self::transport(req)?;
        // decode() guarantees both for an offer.
        let Some(call_key) = req.call_id.as_deref() else {
            return Err(ErrorReason::MissingCallId);
        };
        if req.from_tag.is_none() {
            return Err(ErrorReason::MissingFromTag);
        }
        let call_id = CallId(call_key.to_owned());
        let is_new = !self.calls.contains_key(call_key);
        let mut call = self.calls.remove(call_key).unwrap_or_else(|| Call {
            created: now,
            last_signal: now,
            monologues: Vec::new(),
            next_leg: 0,
        });
        call.last_signal = now;
        let result = self
            .offer_into(&mut call, &sdp, req, media)
            .map(|(plans, address)| {
                let rewrite = Self::rewrite_plan(req, plans, address, transport);
                Response::ok().with_sdp(sdp.rewrite(&rewrite))
            });
        match result {
            Ok(resp) => {
                if is_new {
                    self.totals.managed += 1;
                }
                self.calls.insert(call_key.to_owned(), call);
                Ok(resp)
            }
            Err(reason) => {
                if is_new {
                    // Free whatever this failed offer allocated.
                    let _ = media.request(Command::Destroy { call_id, leg: None });
                } else {
                    self.calls.insert(call_key.to_owned(), call);
                }
                Err(reason)
            }
        }
    }

    /// Creates or updates the offerer's legs and the legs facing the answerer; returns the
    /// plan for the SDP going to the answerer. `call.last_signal` is the request's time.
    fn offer_into(
        &self,
        call: &mut Call,
        sdp: &Sdp<'_>,
        req: &Request,
        media: &dyn MediaControl,
    ) -> Result<(Vec<MediaPlan>, IpAddr), ErrorReason> {
        let call_id = &CallId(req.call_id.clone().unwrap_or_default());
        let from_tag = req.from_tag.as_deref().unwrap_or_default();
        let now = call.last_signal;
        let x = match call.find(from_tag) {
            Some(x) => x,
            None => {
                let x = call.monologues.len();
                let new = |tag: Option<String>, peer: usize| Monologue {
                    tag,
                    label: None,
                    created: now,
                    peer,
                    legs: Vec::new(),
                };
                call.monologues.push(new(Some(from_tag.to_owned()), x + 1));
                call.monologues.push(new(req.to_tag.clone(), x));
                x
            }
        };
        if req.label.is_some() {
            call.monologues[x].label = req.label.clone();
        }
        let y = call.monologues[x].peer;
        let mut plans = Vec::with_capacity(sdp.media.len());
        let mut address = None;
        for (k, section) in sdp.media.iter().enumerate() {
            if !section.is_relayable() {
                plans.push(if section.port == 0 {
                    MediaPlan::Keep
                } else {
                    MediaPlan::Reject
                });
                continue;
            }
            let spec = Self::spec_for_offer_side(sdp, k, req);
            let mux_out = Self::mux_onward(section.rtcp_mux, req);
            for side in [x, y] {
                let legs = &mut call.monologues[side].legs;
                if legs.len() <= k {
                    legs.resize(k + 1, None);
                }
            }
            match &mut call.monologues[x].legs[k] {
                Some(leg) => {
                    leg.advertised = spec.sdp_address;
                    media
                        .request(Command::UpdateEndpoint {
                            call_id: call_id.clone(),
                            leg: leg.id,
                            spec: spec.clone(),
                        })
                        .map_err(api_error)?;
                }
                slot @ None => {
                    let id = LegId(call.next_leg);
                    call.next_leg += 1;
                    *slot =
                        Some(self.create_leg(media, call_id, id, spec.clone(), section, false)?);
                }
            }
            let peer_leg = match &call.monologues[y].legs[k] {
                Some(leg) => leg.clone(),
                None => {
                    let id = LegId(call.next_leg);
                    call.next_leg += 1;
                    let peer_spec = EndpointSpec {
                        pt_map: spec.pt_map,
                        rtcp_mux: mux_out,
                        ..EndpointSpec::default()
                    };
                    let leg =
                        self.create_leg(media, call_id, id, peer_spec, section, self.dub_due())?;
                    call.monologues[y].legs[k] = Some(leg.clone());
                    leg
                }
            };
            address.get_or_insert(peer_leg.local.ip());
            plans.push(MediaPlan::Relay {
                ports: peer_leg.ports,
                rtcp_mux: peer_leg.rtcp_mux,
            });
        }
        let address = address.ok_or_else(|| ErrorReason::Other("No usable media stream".into()))?;
        Ok((plans, address))
    }

    fn answer(
        &mut self,
        req: &Request,
        media: &dyn MediaControl,
        now: SystemTime,
    ) -> Result<Response, ErrorReason> {
        let body = req.sdp.as_deref().unwrap_or_default();
        let sdp = Sdp::parse(body).map_err(|_| ErrorReason::InvalidSdp)?;
        let transport = Self::transport(req)?;
        let (Some(call_key), Some(from_tag), Some(to_tag)) = (
            req.call_id.as_deref(),
            req.from_tag.as_deref(),
            req.to_tag.as_deref(),
        ) else {
            return Err(ErrorReason::MissingToTag);
        };
        let call_id = CallId(call_key.to_owned());
        let plan_address;
        let mut plans = Vec::with_capacity(sdp.media.len());
        {
            let call = self
                .calls
                .get_mut(call_key)
                .ok_or(ErrorReason::UnknownCall)?;
            call.last_signal = now;
            let x = call
                .find(from_tag)
                .ok_or_else(|| ErrorReason::Other(INVALID_DIALOGUE.into()))?;
            let y = call.monologues[x].peer;
            if call.monologues[y].tag.as_deref() != Some(to_tag) {
                if call.find(to_tag).is_some_and(|other| other != y) {
                    return Err(ErrorReason::Other(INVALID_DIALOGUE.into()));
                }
                // First answer names the B side; a later branch's answer takes it over.
                call.monologues[y].tag = Some(to_tag.to_owned());
            }
            if req.label.is_some() {
                call.monologues[y].label = req.label.clone();
            }
            let mut address = None;
            for (k, section) in sdp.media.iter().enumerate() {
                let mine = call.monologues[x].legs.get(k).cloned().flatten();
                let theirs = call.monologues[y].legs.get(k).cloned().flatten();
                let (Some(mine), Some(theirs)) = (mine, theirs) else {
                    plans.push(if section.port == 0 {
                        MediaPlan::Keep
                    } else {
                        MediaPlan::Reject
                    });
                    continue;
                };
                if !section.is_relayable() {
                    // Rejected by the answerer: stop relaying it.
                    plans.push(MediaPlan::Keep);
                    continue;
                }
                let spec = sdp.endpoint_spec(k);
                let advertised = spec.sdp_address;
                media
                    .request(Command::UpdateEndpoint {
                        call_id: call_id.clone(),
                        leg: theirs.id,
                        spec,
                    })
                    .map_err(api_error)?;
                if !mine.bridged {
                    media
                        .request(Command::Bridge {
                            call_id: call_id.clone(),
                            a: mine.id,
                            b: theirs.id,
                        })
                        .map_err(api_error)?;
                }
                for (side, adv) in [(x, None), (y, Some(advertised))] {
                    if let Some(Some(leg)) = call.monologues[side].legs.get_mut(k) {
                        leg.bridged = true;
                        if let Some(a) = adv {
                            leg.advertised = a;
                        }
                    }
                }
                address.get_or_insert(mine.local.ip());
                plans.push(MediaPlan::Relay {
                    ports: mine.ports,
                    rtcp_mux: mine.rtcp_mux,
                });
            }
            // Every section rejected: the answer still goes back (with our address where the
            // flags ask for it), as rtpengine's does.
            plan_address = address
                .or_else(|| call.legs().next().map(|l| l.local.ip()))
                .ok_or_else(|| ErrorReason::Other("No usable media stream".into()))?;
        }
        let rewrite = Self::rewrite_plan(req, plans, plan_address, transport);
        Ok(Response::ok().with_sdp(sdp.rewrite(&rewrite)))
    }

    /// Frees every leg of a call; returns the final per-leg numbers.
    fn remove_call(
        &mut self,
        key: &str,
        media: &dyn MediaControl,
    ) -> Option<(Call, Vec<(LegId, LegStats)>)> {
        let call = self.calls.remove(key)?;
        let events = media
            .request(Command::Destroy {
                call_id: CallId(key.to_owned()),
                leg: None,
            })
            .unwrap_or_else(|e| {
                tracing::warn!(call_id = key, error = %e, "destroying the call's legs failed");
                Vec::new()
            });
        let stats = leg_stats(events);
        for (_, s) in &stats {
            self.totals.packets += s.packets_in;
            self.totals.bytes += s.bytes_in;
            self.totals.errors += s.dropped_total();
        }
        Some((call, stats))
    }

    fn delete(&mut self, req: &Request, media: &dyn MediaControl, now: SystemTime) -> Response {
        let fatal = req.has_flag("fatal");
        let key = req.call_id.as_deref().unwrap_or_default();
        let Some(call) = self.calls.get(key) else {
            return Response::delete_not_found(fatal);
        };
        // One dialogue per call: naming either of its tags deletes it.
        let tag_known = |t: &Option<String>| t.as_deref().is_none_or(|t| call.find(t).is_some());
        if !tag_known(&req.from_tag) || !tag_known(&req.to_tag) {
            return Response::delete_not_found(fatal);
        }
        let Some((call, stats)) = self.remove_call(key, media) else {
            return Response::delete_not_found(fatal);
        };
        self.totals.deleted += 1;
        let mut call = call;
        call.last_signal = now;
        report(Response::ok(), &call, &stats)
    }

    fn query(&self, req: &Request, media: &dyn MediaControl) -> Result<Response, ErrorReason> {
        let key = req.call_id.as_deref().unwrap_or_default();
        let call = self.calls.get(key).ok_or(ErrorReason::UnknownCall)?;
        let events = media
            .request(Command::Query {
                call_id: CallId(key.to_owned()),
                leg: None,
            })
            .map_err(api_error)?;
        Ok(report(Response::ok(), call, &leg_stats(events)))
    }

    fn list(&self, req: &Request) -> Response {
        let limit = req.limit.unwrap_or(32).max(0) as usize;
        let mut calls: Vec<(&String, &Call)> = self.calls.iter().collect();
        calls.sort_by(|a, b| a.1.created.cmp(&b.1.created).then(a.0.cmp(b.0)));
        let ids: Vec<Value> = calls
            .into_iter()
            .take(limit)
            .map(|(id, _)| Value::from(id.as_str()))
            .collect();
        Response::ok().with("calls", ids)
    }

    /// The monologue a request selects: from-tag, else to-tag, else label.
    fn select(call: &Call, req: &Request) -> Result<Option<usize>, ErrorReason> {
        if let Some(tag) = req.from_tag.as_deref().or(req.to_tag.as_deref()) {
            return call
                .find(tag)
                .map(Some)
                .ok_or_else(|| ErrorReason::Other(NO_SUCH_TAG.into()));
        }
        if let Some(label) = req.label.as_deref() {
            return call
                .monologues
                .iter()
                .position(|m| m.label.as_deref() == Some(label))
                .map(Some)
                .ok_or_else(|| ErrorReason::Other("No monologue matching the given label".into()));
        }
        Ok(None)
    }

    fn play_dtmf(&self, req: &Request, media: &dyn MediaControl) -> Result<Response, ErrorReason> {
        let key = req.call_id.as_deref().unwrap_or_default();
        let call = self.calls.get(key).ok_or(ErrorReason::UnknownCall)?;
        let dtmf = req.dtmf.ok_or(ErrorReason::DtmfCodeMissing)?;
        // The selected party is the one the digit seems to come from: it goes out of the legs
        // facing its peer.
        let x = Self::select(call, req)?
            .ok_or_else(|| ErrorReason::Other("No participant selected".into()))?;
        let peer = &call.monologues[call.monologues[x].peer];
        let leg = peer
            .legs
            .iter()
            .flatten()
            .find(|l| l.kind.eq_ignore_ascii_case("audio"))
            .ok_or_else(|| ErrorReason::Other("No usable audio stream".into()))?;
        media
            .request(Command::SendDtmf {
                call_id: CallId(key.to_owned()),
                leg: leg.id,
                digit: dtmf.digit(),
                duration_ms: dtmf.duration_ms(),
                volume: dtmf.volume_dbm0().unsigned_abs(),
            })
            .map_err(api_error)?;
        Ok(Response::ok())
    }

    /// `block/unblock DTMF` (`dtmf`) and `block/unblock media`: what the selected party sends
    /// (every party without a selection).
    fn block(
        &self,
        req: &Request,
        media: &dyn MediaControl,
        dtmf: bool,
    ) -> Result<Response, ErrorReason> {
        let key = req.call_id.as_deref().unwrap_or_default();
        let call = self.calls.get(key).ok_or(ErrorReason::UnknownCall)?;
        let blocked = matches!(req.command, NgCommand::BlockDtmf | NgCommand::BlockMedia);
        let legs: Vec<LegId> = match Self::select(call, req)? {
            Some(x) => call.monologues[x]
                .legs
                .iter()
                .flatten()
                .map(|l| l.id)
                .collect(),
            None => call.legs().map(|l| l.id).collect(),
        };
        for leg in legs {
            let call_id = CallId(key.to_owned());
            let cmd = if dtmf {
                Command::BlockDtmf {
                    call_id,
                    leg,
                    blocked,
                }
            } else {
                Command::BlockMedia {
                    call_id,
                    leg,
                    blocked,
                }
            };
            media.request(cmd).map_err(api_error)?;
        }
        Ok(Response::ok())
    }

    fn statistics(&self, now: SystemTime) -> Response {
        let t = self.totals;
        let uptime = now
            .duration_since(self.started)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let current = dict([
            ("sessionsown", count(self.calls.len() as u64)),
            ("sessionsforeign", Value::Int(0)),
            ("sessionstotal", count(self.calls.len() as u64)),
        ]);
        let total = dict([
            ("uptime", count(uptime)),
            ("managedsessions", count(t.managed)),
            ("regularterminatedsessions", count(t.deleted)),
            ("timeoutsessions", count(t.timed_out)),
            ("relayedpackets", count(t.packets)),
            ("relayedbytes", count(t.bytes)),
            ("relayedpacketerrors", count(t.errors)),
        ]);
        Response::ok().with(
            "statistics",
            dict([("currentstatistics", current), ("totalstatistics", total)]),
        )
    }
}

fn leg_stats(events: Vec<Event>) -> Vec<(LegId, LegStats)> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Stats { leg, stats, .. } => Some((leg, stats)),
            _ => None,
        })
        .collect()
}

fn endpoint(addr: SocketAddr) -> Value {
    dict([
        (
            "family",
            Value::from(if addr.is_ipv6() { "IPv6" } else { "IPv4" }),
        ),
        ("address", Value::from(addr.ip().to_string())),
        ("port", Value::from(u32::from(addr.port()))),
    ])
}

/// rtpengine's `query`/`delete` report: `created`, `last signal`, `tags` (per party, per
/// section: local port, advertised endpoint, `stats` {packets, bytes, errors} received from the
/// party, `stats_out` sent to it, `packets lost`, `jitter` in ms) and `totals`.
fn report(mut resp: Response, call: &Call, stats: &[(LegId, LegStats)]) -> Response {
    let (created, created_us) = unix(call.created);
    resp.set("created", created);
    resp.set("created_us", created_us);
    resp.set("last signal", unix(call.last_signal).0);
    let mut tags = Dict::new();
    let (mut rtp, mut rtcp) = ((0, 0, 0), 0);
    for m in &call.monologues {
        let tag = m.tag.clone().unwrap_or_default();
        let mut medias = Vec::new();
        for (k, leg) in m.legs.iter().enumerate() {
            let Some(leg) = leg else { continue };
            let s = stats
                .iter()
                .find(|(id, _)| *id == leg.id)
                .map(|(_, s)| *s)
                .unwrap_or_default();
            rtp.0 += s.packets_in;
            rtp.1 += s.bytes_in;
            rtp.2 += s.dropped_total();
            rtcp += s.rtcp_in;
            let mut stream = Dict::new();
            stream.insert("local port", u32::from(leg.ports.rtp));
            stream.insert("local address", leg.local.ip().to_string());
            if let Some(a) = leg.advertised {
                stream.insert("advertised endpoint", endpoint(a));
            }
            stream.insert(
                "stats",
                traffic(s.packets_in, s.bytes_in, s.dropped_total()),
            );
            stream.insert("stats_out", traffic(s.packets_out, s.bytes_out, 0));
            stream.insert("packets lost", s.lost());
            stream.insert("jitter", s.jitter_ms().round() as i64);
            medias.push(dict([
                ("index", count(k as u64 + 1)),
                ("type", Value::from(leg.kind.as_str())),
                ("protocol", Value::from(leg.proto.as_str())),
                ("streams", Value::List(vec![Value::Dict(stream)])),
            ]));
        }
        let mut d = Dict::new();
        d.insert("tag", tag.as_str());
        if let Some(l) = &m.label {
            d.insert("label", l.as_str());
        }
        d.insert("created", unix(m.created).0);
        if let Some(peer) = call.monologues.get(m.peer).and_then(|p| p.tag.as_deref()) {
            d.insert("in dialogue with", peer);
        }
        d.insert("medias", medias);
        tags.insert(tag, d);
    }
    resp.set("tags", tags);
    resp.set(
        "totals",
        dict([
            ("RTP", traffic(rtp.0, rtp.1, rtp.2)),
            ("RTCP", traffic(rtcp, 0, 0)),
        ]),
    );
    resp
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::Mutex;

    use super::*;
    use crate::ng::bencode::Limits;
    use crate::ng::message::{Encoding, decode};
    use crate::ng::response::{ReplyMessage, decode_reply, encode_datagram};

    /// Ports from 30000 up, two per leg; records every command; may run out of ports.
    #[derive(Default)]
    struct Mock {
        log: Mutex<Vec<Command>>,
        legs: Mutex<Vec<(CallId, LegId)>>,
        ports_left: Mutex<Option<usize>>,
    }

    impl Mock {
        fn commands(&self) -> Vec<String> {
            self.log
                .lock()
                .unwrap()
                .iter()
                .map(|c| match c {
                    Command::CreateEndpoint { leg, spec, .. } => {
                        format!(
                            "create {} {:?} mux={}",
                            leg.0, spec.sdp_address, spec.rtcp_mux
                        )
                    }
                    Command::UpdateEndpoint { leg, spec, .. } => {
                        format!("update {} {:?}", leg.0, spec.sdp_address)
                    }
                    Command::Bridge { a, b, .. } => format!("bridge {} {}", a.0, b.0),
                    Command::SendDtmf {
                        leg,
                        digit,
                        duration_ms,
                        volume,
                        ..
                    } => {
                        format!("dtmf {} {digit} {duration_ms} {volume}", leg.0)
                    }
                    Command::BlockDtmf { leg, blocked, .. } => {
                        format!("block-dtmf {} {blocked}", leg.0)
                    }
                    Command::BlockMedia { leg, blocked, .. } => {
                        format!("block-media {} {blocked}", leg.0)
                    }
                    Command::Destroy { leg, .. } => format!("destroy {leg:?}"),
                    Command::Query { .. } => "query".into(),
                    Command::Tap { leg, dtmf, amd, .. } => {
                        format!("tap {} {dtmf} {}", leg.0, amd.is_some())
                    }
                    Command::Dub { leg, action, .. } => match action {
                        DubAction::Play {
                            samples,
                            looped,
                            gain_db,
                        } => format!(
                            "dub {} play {} looped={looped} {gain_db} dB",
                            leg.0,
                            samples.len()
                        ),
                        other => format!("dub {} {other:?}", leg.0),
                    },
                    other => format!("{other:?}"),
                })
                .collect()
        }

        fn stats(&self, call: &CallId) -> Vec<Event> {
            self.legs
                .lock()
                .unwrap()
                .iter()
                .filter(|(c, _)| c == call)
                .map(|(c, l)| Event::Stats {
                    call_id: c.clone(),
                    leg: *l,
                    stats: LegStats {
                        packets_in: 10 * u64::from(l.0 + 1),
                        bytes_in: 1720 * u64::from(l.0 + 1),
                        packets_out: 5,
                        bytes_out: 860,
                        expected: 12,
                        received: 10,
                        jitter: 16,
                        clock_rate: 8000,
                        ..LegStats::default()
                    },
                })
                .collect()
        }
    }

    impl MediaControl for Mock {
        fn request(&self, cmd: Command) -> Result<Vec<Event>, ApiError> {
            self.log.lock().unwrap().push(cmd.clone());
            match cmd {
                Command::CreateEndpoint { call_id, leg, spec } => {
                    if let Some(n) = self.ports_left.lock().unwrap().as_mut() {
                        if *n == 0 {
                            return Err(ApiError::PortsExhausted);
                        }
                        *n -= 1;
                    }
                    let rtp = 30000 + 2 * leg.0 as u16;
                    self.legs.lock().unwrap().push((call_id.clone(), leg));
                    Ok(vec![Event::EndpointCreated {
                        call_id,
                        leg,
                        local: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), rtp),
                        ports: PortPair {
                            rtp,
                            rtcp: (!spec.rtcp_mux).then_some(rtp + 1),
                        },
                    }])
                }
                Command::Query { call_id, .. } => Ok(self.stats(&call_id)),
                Command::Destroy { call_id, .. } => {
                    let out = self.stats(&call_id);
                    self.legs.lock().unwrap().retain(|(c, _)| *c != call_id);
                    Ok(out)
                }
                _ => Ok(Vec::new()),
            }
        }
    }

    fn sdp(port: u16) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        )
    }

    struct Harness {
        handler: NgHandler,
        media: Mock,
        now: SystemTime,
    }

    impl Harness {
        fn new(config: HandlerConfig) -> Self {
            let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            Harness {
                handler: NgHandler::new(config, now),
                media: Mock::default(),
                now,
            }
        }

        fn run(&mut self, pairs: &[(&str, Value)]) -> ReplyMessage {
            let d: Dict = pairs.iter().cloned().collect();
            let datagram = encode_datagram(b"c1", Encoding::Bencode, &d);
            let reply = match decode(&datagram, &Limits::default()) {
                Ok(req) => {
                    self.now += Duration::from_secs(1);
                    req.reply(&self.handler.handle(&req, &self.media, self.now))
                }
                Err(rejected) => match rejected.reply() {
                    crate::ng::Reply::Send(b) => b,
                    other => panic!("{other:?}"),
                },
            };
            decode_reply(&reply, &Limits::default()).unwrap()
        }

        fn offer(&mut self, call: &str, tag: &str, port: u16) -> ReplyMessage {
            self.run(&[
                ("command", "offer".into()),
                ("call-id", call.into()),
                ("from-tag", tag.into()),
                ("sdp", sdp(port).into()),
                ("replace", Value::List(vec!["origin".into()])),
            ])
        }

        fn answer(&mut self, call: &str, from: &str, to: &str, port: u16) -> ReplyMessage {
            self.run(&[
                ("command", "answer".into()),
                ("call-id", call.into()),
                ("from-tag", from.into()),
                ("to-tag", to.into()),
                ("sdp", sdp(port).into()),
            ])
        }
    }

    fn mport(r: &ReplyMessage) -> u16 {
        let s = std::str::from_utf8(r.sdp().expect("sdp")).unwrap();
        let m = s.lines().find(|l| l.starts_with("m=audio ")).unwrap();
        m.split(' ').nth(1).unwrap().parse().unwrap()
    }

    fn get<'a>(d: &'a Dict, path: &[&str]) -> &'a Value {
        let mut v = d.get(path[0]).unwrap_or_else(|| panic!("no {}", path[0]));
        for p in &path[1..] {
            v = match v {
                Value::Dict(d) => d.get(*p).unwrap_or_else(|| panic!("no {p}")),
                Value::List(l) => &l[p.parse::<usize>().unwrap()],
                other => panic!("{other:?}"),
            };
        }
        v
    }

    #[test]
    fn offer_answer_bridge_and_exact_sdp() {
        let mut h = Harness::new(HandlerConfig::default());
        let r = h.offer("call1", "ft", 20000);
        assert_eq!(r.result(), Some("ok"));
        assert_eq!(
            std::str::from_utf8(r.sdp().unwrap()).unwrap(),
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
        );
        let r = h.answer("call1", "ft", "tt", 20002);
        assert_eq!(mport(&r), 30000);
        assert_eq!(
            h.media.commands(),
            [
                "create 0 Some(127.0.0.1:20000) mux=false",
                "create 1 None mux=false",
                "update 1 Some(127.0.0.1:20002)",
                "bridge 0 1",
            ]
        );
        // A retransmitted answer (183 then 200) updates without bridging again.
        assert_eq!(mport(&h.answer("call1", "ft", "tt", 20002)), 30000);
        assert_eq!(
            h.media.commands().last().unwrap(),
            "update 1 Some(127.0.0.1:20002)"
        );
        assert_eq!(h.handler.len(), 1);
    }

    #[test]
    fn only_active_rtp_sections_get_legs() {
        let mut h = Harness::new(HandlerConfig::default());
        let body = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 20000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=image 20004 udptl t38\r\n";
        let r = h.run(&[
            ("command", "offer".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("sdp", body.into()),
        ]);
        assert_eq!(
            std::str::from_utf8(r.sdp().unwrap()).unwrap(),
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 30002 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\nm=image 0 udptl t38\r\n"
        );
        assert_eq!(h.media.commands().len(), 2);
        // An answer that rejects the audio leaves it unbridged.
        let answer = "v=0\r\nc=IN IP4 192.0.2.2\r\nm=audio 0 RTP/AVP 0\r\n\
m=video 0 RTP/AVP 96\r\nm=image 0 udptl t38\r\n";
        let r = h.run(&[
            ("command", "answer".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("to-tag", "B".into()),
            ("sdp", answer.into()),
        ]);
        assert_eq!(r.sdp(), Some(answer.as_bytes()));
        assert_eq!(h.media.commands().len(), 2, "nothing bridged");
    }

    #[test]
    fn reinvite_from_either_side_updates() {
        let mut h = Harness::new(HandlerConfig::default());
        h.offer("c", "A", 20000);
        h.answer("c", "A", "B", 20002);
        // Re-INVITE from A: same ports towards B, A's leg updated.
        assert_eq!(mport(&h.offer("c", "A", 20010)), 30002);
        assert_eq!(h.media.commands()[4], "update 0 Some(127.0.0.1:20010)");
        // Re-INVITE from B: its SDP goes to A, with A's ports.
        assert_eq!(mport(&h.offer("c", "B", 20012)), 30000);
        assert_eq!(h.media.commands()[5], "update 1 Some(127.0.0.1:20012)");
        assert_eq!(mport(&h.answer("c", "B", "A", 20014)), 30002);
        assert_eq!(h.media.commands()[6], "update 0 Some(127.0.0.1:20014)");
        assert_eq!(h.media.commands().len(), 7, "no new legs, no second bridge");
        // A third tag answering for a dialogue it is not in.
        let r = h.answer("c", "Z", "A", 20016);
        assert_eq!(r.error_reason(), Some(INVALID_DIALOGUE));
    }

    #[test]
    fn query_delete_statistics() {
        let mut h = Harness::new(HandlerConfig::default());
        h.offer("c", "A", 20000);
        h.answer("c", "A", "B", 20002);
        let q = h.run(&[("command", "query".into()), ("call-id", "c".into())]);
        assert_eq!(q.result(), Some("ok"));
        let stream = ["tags", "A", "medias", "0", "streams", "0"];
        let at = |extra: &[&str]| {
            let mut p = stream.to_vec();
            p.extend_from_slice(extra);
            get(&q.dict, &p).as_int().unwrap()
        };
        assert_eq!(at(&["stats", "packets"]), 10);
        assert_eq!(at(&["stats", "bytes"]), 1720);
        assert_eq!(at(&["stats_out", "packets"]), 5);
        assert_eq!(at(&["packets lost"]), 2);
        assert_eq!(at(&["jitter"]), 2);
        assert_eq!(at(&["local port"]), 30000);
        assert_eq!(
            get(&q.dict, &["tags", "B", "in dialogue with"]).as_str(),
            Some("A")
        );
        assert_eq!(
            get(&q.dict, &["totals", "RTP", "packets"]).as_int(),
            Some(30)
        );
        let q = h.run(&[("command", "query".into()), ("call-id", "nope".into())]);
        assert_eq!(q.error_reason(), Some("Unknown call-id"));
        let l = h.run(&[("command", "list".into())]);
        assert_eq!(get(&l.dict, &["calls", "0"]).as_str(), Some("c"));

        // Deleting with a tag that is not in the call: rtpengine's warning.
        let d = h.run(&[
            ("command", "delete".into()),
            ("call-id", "c".into()),
            ("from-tag", "X".into()),
        ]);
        assert_eq!(d.result(), Some("ok"));
        assert_eq!(
            d.dict.get("warning").and_then(Value::as_str),
            Some("Call-ID not found or tags didn't match")
        );
        let d = h.run(&[
            ("command", "delete".into()),
            ("call-id", "c".into()),
            ("from-tag", "B".into()),
        ]);
        assert_eq!((d.result(), d.dict.get("warning")), (Some("ok"), None));
        assert_eq!(
            get(&d.dict, &["totals", "RTP", "packets"]).as_int(),
            Some(30)
        );
        assert!(h.handler.is_empty());
        assert_eq!(h.media.commands().last().unwrap(), "destroy None");
        let d = h.run(&[
            ("command", "delete".into()),
            ("call-id", "c".into()),
            ("flags", Value::List(vec!["fatal".into()])),
        ]);
        assert_eq!(
            d.error_reason(),
            Some("Call-ID not found or tags didn't match")
        );

        let s = h.run(&[("command", "statistics".into())]);
        let total = |k: &str| get(&s.dict, &["statistics", "totalstatistics", k]).as_int();
        assert_eq!(total("managedsessions"), Some(1));
        assert_eq!(total("regularterminatedsessions"), Some(1));
        assert_eq!(total("relayedpackets"), Some(30));
        assert_eq!(total("uptime"), Some(9));
        assert_eq!(
            get(&s.dict, &["statistics", "currentstatistics", "sessionsown"]).as_int(),
            Some(0)
        );
    }

    #[test]
    fn dtmf_and_blocking_select_parties() {
        let mut h = Harness::new(HandlerConfig::default());
        h.offer("c", "A", 20000);
        h.answer("c", "A", "B", 20002);
        let n = h.media.commands().len();
        let r = h.run(&[
            ("command", "play DTMF".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("code", "#".into()),
            ("duration", Value::Int(250)),
        ]);
        assert_eq!(r.result(), Some("ok"));
        let r = h.run(&[
            ("command", "block DTMF".into()),
            ("call-id", "c".into()),
            ("from-tag", "B".into()),
        ]);
        assert_eq!(r.result(), Some("ok"));
        h.run(&[("command", "unblock media".into()), ("call-id", "c".into())]);
        assert_eq!(
            h.media.commands()[n..],
            [
                // A's digit goes out towards B: from the B-facing leg.
                "dtmf 1 # 250 8",
                "block-dtmf 1 true",
                "block-media 0 false",
                "block-media 1 false",
            ]
        );
        let r = h.run(&[
            ("command", "play DTMF".into()),
            ("call-id", "c".into()),
            ("code", "1".into()),
        ]);
        assert_eq!(r.error_reason(), Some("No participant selected"));
        let r = h.run(&[
            ("command", "block media".into()),
            ("call-id", "c".into()),
            ("from-tag", "Q".into()),
        ]);
        assert_eq!(r.error_reason(), Some(NO_SUCH_TAG));
        let r = h.run(&[("command", "block media".into()), ("call-id", "x".into())]);
        assert_eq!(r.error_reason(), Some("Unknown call-id"));
    }

    #[test]
    fn errors_never_leave_half_calls() {
        let mut h = Harness::new(HandlerConfig::default());
        *h.media.ports_left.lock().unwrap() = Some(1);
        let r = h.offer("c", "A", 20000);
        assert_eq!(r.error_reason(), Some("Ran out of ports"));
        assert!(h.handler.is_empty());
        assert_eq!(h.media.commands().last().unwrap(), "destroy None");
        let r = h.answer("c", "A", "B", 20002);
        assert_eq!(r.error_reason(), Some("Unknown call-id"));
        let r = h.run(&[("command", "dance".into())]);
        assert_eq!(r.error_reason(), Some("Unrecognized command"));
        let r = h.run(&[("command", "ping".into())]);
        assert_eq!(r.result(), Some("pong"));
        let r = h.run(&[
            ("command", "offer".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("sdp", "hello".into()),
        ]);
        assert_eq!(r.error_reason(), Some("Failed to parse SDP"));
        *h.media.ports_left.lock().unwrap() = None;
        let r = h.run(&[
            ("command", "offer".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("sdp", sdp(20000).into()),
            ("transport-protocol", "RTP/SAVP".into()),
        ]);
        assert_eq!(
            r.error_reason(),
            Some("Unsupported transport protocol RTP/SAVP")
        );
    }

    #[test]
    fn taps_and_rtcp_mux_flags_and_timeouts() {
        let mut h = Harness::new(HandlerConfig {
            dsp_taps: true,
            ..HandlerConfig::default()
        });
        let r = h.run(&[
            ("command", "offer".into()),
            ("call-id", "c".into()),
            ("from-tag", "A".into()),
            ("sdp", sdp(20000).into()),
            ("rtcp-mux", Value::List(vec!["offer".into()])),
        ]);
        assert!(
            std::str::from_utf8(r.sdp().unwrap())
                .unwrap()
                .ends_with("a=sendrecv\r\na=rtcp-mux\r\n")
        );
        assert_eq!(
            h.media.commands(),
            [
                "create 0 Some(127.0.0.1:20000) mux=false",
                "tap 0 true true",
                "create 1 None mux=true",
                "tap 1 true true",
            ]
        );
        let media = Mock::default();
        for leg in [0, 1] {
            assert_eq!(h.handler.len(), 1);
            h.handler.on_event(
                &Event::MediaTimeout {
                    call_id: CallId("c".into()),
                    leg: LegId(leg),
                },
                &media,
            );
        }
        assert!(h.handler.is_empty());
    }

    #[test]
    fn every_nth_call_gets_a_dub_track_facing_the_answerer() {
        let mut h = Harness::new(HandlerConfig {
            dub_every: 2,
            ..HandlerConfig::default()
        });
        for call in ["c0", "c1", "c2"] {
            let r = h.run(&[
                ("command", "offer".into()),
                ("call-id", call.into()),
                ("from-tag", "A".into()),
                ("sdp", sdp(20000).into()),
            ]);
            assert!(r.sdp().is_some(), "{call}");
        }
        let dubs: Vec<String> = h
            .media
            .commands()
            .into_iter()
            .filter(|c| c.starts_with("dub"))
            .collect();
        // Calls 0 and 2, on leg 1 (the side facing the answerer), a looped second of tone.
        assert_eq!(
            dubs,
            [
                "dub 1 AddTrack",
                "dub 1 play 8000 looped=true -12 dB",
                "dub 1 AddTrack",
                "dub 1 play 8000 looped=true -12 dB",
            ]
        );
    }
}
