//! One call: the caller's leg, its app, and the dial that is running (its forks' legs)

mod confirm;
mod dtmf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::media::api::{
    CallId as MediaCallId, Command as MediaCommand, EndpointSpec, Event as MediaEvent, LegId,
};
use bytes::Bytes;

use super::media::{answer, codecs_of, endpoint_spec, local, relayable};
use super::srtp;
use super::transcode;
use super::{ACTIVE_METRIC, CALLS_METRIC, Core, ignored};
use crate::app::{AppRunner, Step as AppStep};
use crate::cdr::{Anchor, Cause, Hangup, LegEnd, Record, Track};
use crate::config::Config;
use crate::dial::{Action, Destination, Dial, DialOptions, DialTarget, Event as DialEvent, ForkId};
use crate::dialog::{
    Body, DialogId, InviteId, InviteRequest, Login, Outgoing, Reply, TerminationReason,
};
use crate::dns::{self, DnsError, Plan};
use crate::gateways::{Route, fails_over};
use crate::message::{HeaderName, Method, NameAddr, Request, Response, StatusCode, Uri};
use crate::payload::{
    CallInfo, CallSid, CallStatus, CallStatusPayload, DialActionPayload, Direction, SessionPayload,
    SipRequestInfo,
};
use crate::redact::Text;
use crate::rest::{self, CallUpdate, Registration};
use crate::sdp::{self, Negotiated, SessionDescription};
use crate::transaction::TransactionKey;
use crate::verbs::{self, Hook, TargetKind, Verb};
use crate::webhook::{HookBase, HookReply, WebhookError};

mod amd;
mod music;
mod outbound;

pub(super) use dtmf::TapUser;
pub(super) use music::FileUse;

const SDP: &str = "application/sdp";

/// The caller's headers every outbound INVITE carries unless the dial sets them.
const PASSED_ON: [&str; 3] = ["P-Asserted-Identity", "Privacy", "Diversion"];

/// Where one fork goes
struct Resolved {
    destination: Destination,
    /// Digest credentials for its challenges.
    login: Option<Login>,
    /// INVITE headers the target type adds.
    headers: Vec<(String, String)>,
    /// The carrier of a phone target: its From user goes out in E.164.
    carrier: Option<String>,
    /// A phone target's gateways, tried one after the other.
    route: Option<Route>,
    /// The target requires SRTP (Teams, a carrier with `srtp = true`).
    srtp: bool,
}

impl Resolved {
    fn to(destination: Destination) -> Resolved {
        Resolved {
            destination,
            login: None,
            headers: Vec::new(),
            carrier: None,
            route: None,
            srtp: false,
        }
    }
}

/// Which leg of a call
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leg {
    /// The caller.
    Caller,
    /// Fork `i` of the running dial.
    Fork(usize),
}

/// What a webhook answer is for
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookPurpose {
    /// The call webhook: the app.
    App,
    /// The dial's actionHook: verbs that replace the rest of the app.
    Action,
    /// A referHook: the status for the REFER.
    Refer(DialogId),
    /// A confirmHook or its gather's actionHook: the screening app of the fork with this sid.
    Confirm(CallSid),
    /// An amd actionHook of the leg with this call_sid: verbs that replace the app.
    Amd(CallSid),
}

/// What the call is doing
enum Step {
    /// Ready for the next verb.
    Idle,
    /// Waiting for the call webhook.
    WaitApp,
    /// Waiting for an actionHook's verbs.
    WaitAction,
    /// `pause` until then.
    Pause(Instant),
    /// A dial runs.
    Dial(Box<DialRun>),
    /// Over: the call is removed.
    Over,
}

/// A running dial
struct DialRun {
    dial: Dial,
    verb: Box<verbs::Dial>,
    forks: Vec<ForkLeg>,
    bridged: Option<usize>,
    /// Our RTP port on the forks' media leg ([`FORK_LEG`]), once created.
    port: Option<u16>,
    /// The fork whose SDP that leg last took.
    leg_of: Option<usize>,
    /// dialMusic and dub.
    audio: music::DialAudio,
    /// Each fork has a media leg of its own ([`fork_leg`]): a confirmHook app talks to one
    /// callee while others may still send early media.
    per_fork: bool,
    /// dtmfCapture, when the dial has it and a dtmfHook.
    capture: Option<dtmf::Captures>,
}

impl DialRun {
    /// The media leg of fork `i`: its own, or the shared one while it carries that fork's media.
    fn media_leg(&self, i: usize) -> Option<LegId> {
        if self.per_fork {
            return self.forks[i].port.map(|_| fork_leg(i));
        }
        (self.leg_of == Some(i)).then_some(FORK_LEG)
    }

    /// Our RTP port towards fork `i`, once its leg exists.
    fn port_of(&self, i: usize) -> Option<u16> {
        if self.per_fork {
            self.forks[i].port
        } else {
            self.port
        }
    }

    /// The leg fork `i`'s SDP goes to and the caller is bridged with.
    fn leg_for(&self, i: usize) -> LegId {
        if self.per_fork { fork_leg(i) } else { FORK_LEG }
    }
}

/// Fork `i`'s own media leg in a dial with [`DialRun::per_fork`].
fn fork_leg(i: usize) -> LegId {
    LegId(1 + u32::try_from(i).unwrap_or(u32::MAX - 1))
}

/// One fork's leg
struct ForkLeg {
    info: CallInfo,
    login: Option<Login>,
    /// A phone target's carrier (caller id in E.164 by its rules).
    carrier: Option<String>,
    /// Its carrier's gateways, while a failure may go on to the next one.
    route: Option<Route>,
    /// Offered SRTP (SDES).
    srtp: bool,
    /// Counts it in its carrier's active calls while it may still connect.
    carrier_slot: Option<super::carrier_limits::Slot>,
    invite: Option<InviteId>,
    dialog: Option<DialogId>,
    /// The offer we sent it.
    offer: Option<SessionDescription>,
    /// What its answer (or early SDP) agreed.
    negotiated: Option<Negotiated>,
    /// Its REFER waiting for the referHook.
    refer: Option<TransactionKey>,
    /// For its CDR.
    cdr: Track,
    dns: ForkDns,
    /// Our RTP port on its own media leg (dials with [`DialRun::per_fork`]).
    port: Option<u16>,
    /// Its confirmHook (the target's own, else the dial's).
    confirm_hook: Option<Hook>,
    /// Its screening app, while it runs.
    screen: Option<confirm::Screening>,
}

/// A fork to a URI with a host name (RFC 3263)
#[derive(Default)]
struct ForkDns {
    /// Its INVITE waiting for the lookup.
    waiting: Option<WaitingInvite>,
    /// The URI looked up (pinned to the first destination) and every destination in the order
    /// to try them.
    routed: Option<(String, Vec<dns::Destination>)>,
}

/// What an INVITE waiting for DNS is sent with (as [`Action::Invite`] asked)
struct WaitingInvite {
    uri: String,
    headers: Vec<(String, String)>,
    caller_id: Option<String>,
}

/// One call, from the caller's INVITE to its end
pub(super) struct Call {
    pub(super) key: u64,
    pub(super) sid: CallSid,
    pub(super) hook_base: Option<HookBase>,
    /// The configuration when the call came in: a reload does not change a call in progress.
    pub(super) config: Arc<Config>,
    pub(super) info: CallInfo,
    request: Request,
    /// The caller's INVITE while it has no final response.
    pub(super) invite: Option<InviteId>,
    /// The caller's dialog once a response created it.
    pub(super) dialog: Option<DialogId>,
    offer: SessionDescription,
    /// Our answer to the caller's offer (sent in a 183 or the 200).
    answer: Option<(Bytes, Negotiated)>,
    /// Our RTP port on the caller's leg.
    port: u16,
    answered_at: Option<Instant>,
    app: AppRunner,
    step: Step,
    /// The caller hung up (or was hung up on).
    gone: bool,
    /// The last dial's SIP status when nothing answered: the caller's final status if the app
    /// ends before answering.
    last_failure: Option<u16>,
    /// The caller's REFER waiting for the referHook.
    refer: Option<TransactionKey>,
    /// A referHook of the dial that ran last.
    refer_hook: Option<Hook>,
    registrations: Vec<Registration>,
    /// The last `o=` session version we sent (1 in the first offers and answers).
    sdp_version: u64,
    /// The call's status hooks, sent one after the other so that each leg's arrive in order.
    status_queue: Option<tokio::sync::mpsc::UnboundedSender<CallStatusPayload>>,
    /// The caller's leg, for its CDR; its hangup is also what ended the last thing the call
    /// did (cleared when a verb starts), which the forks' records inherit.
    pub(super) cdr: Track,
    /// The carrier the call came from.
    carrier: Option<String>,
    /// Answering-machine detection on an answered leg.
    amd: Option<amd::AmdRun>,
    /// A call placed by REST createCall, its own leg the callee's.
    outbound: Option<Box<outbound::Outbound>>,
    /// The dial's listen and transcribe streams.
    pub(super) streams: super::listen::Streams,
    /// What each leg's DSP tap detects, for every feature that asked.
    pub(super) taps: dtmf::Taps,
    /// Counts the call in that carrier's active calls while it lives.
    _carrier_slot: Option<super::carrier_limits::Slot>,
}

impl Call {
    /// A call that has done nothing yet: no dialog, no app, waiting for its app.
    #[allow(clippy::too_many_arguments)]
    fn new(
        key: u64,
        sid: CallSid,
        config: Arc<Config>,
        info: CallInfo,
        request: Request,
        offer: SessionDescription,
        port: u16,
        registrations: Vec<Registration>,
        now: Instant,
    ) -> Call {
        Call {
            key,
            sid,
            hook_base: None,
            config,
            info,
            request,
            invite: None,
            dialog: None,
            offer,
            answer: None,
            port,
            answered_at: None,
            app: AppRunner::new(sid.to_string(), Vec::new()),
            step: Step::WaitApp,
            gone: false,
            last_failure: None,
            refer: None,
            refer_hook: None,
            registrations,
            sdp_version: 1,
            status_queue: None,
            cdr: Track::new(now),
            carrier: None,
            amd: None,
            outbound: None,
            streams: Default::default(),
            taps: Default::default(),
            _carrier_slot: None,
        }
    }

    pub(super) fn is_over(&self) -> bool {
        matches!(self.step, Step::Over)
    }

    /// The call's next timer: a pause or the dial's.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let step = match &self.step {
            Step::Pause(at) => Some(*at),
            Step::Dial(run) => run
                .forks
                .iter()
                .filter_map(|f| f.route.as_ref()?.deadline())
                .chain(
                    run.forks
                        .iter()
                        .filter_map(|f| f.screen.as_ref()?.deadline()),
                )
                .chain(run.dial.poll_timeout())
                .min(),
            _ => None,
        };
        step.into_iter()
            .chain(self.amd.as_ref().and_then(amd::AmdRun::deadline))
            .chain(self.outbound.as_ref().and_then(|o| o.deadline()))
            .min()
    }

    pub(super) fn media_id(&self) -> MediaCallId {
        MediaCallId(self.sid.to_string())
    }

    fn answered(&self) -> bool {
        self.answered_at.is_some()
    }

    /// The `o=` version of a new description after a re-offer: above every one sent before.
    fn next_sdp_version(&mut self) -> u64 {
        self.sdp_version += 1;
        self.sdp_version
    }
}

impl Core {
    /// A new INVITE: check its offer, give it a media leg, fetch its app.
    pub(super) fn new_call(&mut self, now: Instant, invite: InviteId, request: Request) {
        let refuse = |core: &mut Core, status: StatusCode, why: &'static str| {
            tracing::info!(status = status.as_u16(), why, "INVITE refused");
            metrics::counter!(CALLS_METRIC, "status" => "failed").increment(1);
            let _ = core.dl.respond_invite(now, invite, Reply::new(status));
            let cause = match status {
                StatusCode::NOT_ACCEPTABLE_HERE => Cause::NoCodec,
                _ => Cause::LocalError,
            };
            core.refused_cdr(now, &request, status, cause);
        };
        let offer = match sdp::SessionDescription::parse_bytes(&request.body) {
            Ok(o) if !relayable(&o).is_empty() => o,
            Ok(_) => return refuse(self, StatusCode::NOT_ACCEPTABLE_HERE, "no codec we relay"),
            Err(_) => return refuse(self, StatusCode::NOT_ACCEPTABLE_HERE, "no SDP offer"),
        };
        let config = &self.svc.config;
        let Ok(carrier_slot) = self.carrier_limits.inbound(config, &request, now) else {
            return refuse(
                self,
                StatusCode::SERVICE_UNAVAILABLE,
                "carrier at its limit",
            );
        };
        let sid = CallSid::new_random();
        let media_id = MediaCallId(sid.to_string());
        let Some(port) = self.create_leg(&media_id, LegId(0)) else {
            return refuse(self, StatusCode::SERVICE_UNAVAILABLE, "no media ports");
        };
        let key = self.next_key;
        self.next_key += 1;
        let info = caller_info(
            &request,
            sid,
            &self.svc.config.app.account_sid,
            self.sent_by,
        );
        let registrations = self
            .rest_registration(sid, &self.svc.config.app.account_sid)
            .into_iter()
            .collect();
        // A `[[routes]]` entry for the called number wins over the default app.
        let (webhook, fixed) = match (self.svc.config.route_for(&info.to), &self.svc.app) {
            (Some(route), _) => (Some(Hook::post(route.app_url.clone())), None),
            (None, super::AppSource::Webhook(hook)) => (Some(hook.clone()), None),
            (None, super::AppSource::Static(app)) => (None, Some(app)),
        };
        let (app, hook_base, step) = match (&webhook, fixed) {
            (None, Some(app)) => (
                app.runner(sid.to_string()),
                app.hook_base.clone(),
                Step::Idle,
            ),
            (hook, _) => (
                AppRunner::new(sid.to_string(), Vec::new()),
                hook.as_ref().and_then(|h| HookBase::from_hook(h).ok()),
                Step::WaitApp,
            ),
        };
        let carrier = crate::cdr::inbound_carrier(&self.svc.config, &request);
        let mut call = Call::new(
            key,
            sid,
            self.svc.config.clone(),
            info,
            request,
            offer,
            port,
            registrations,
            now,
        );
        call.hook_base = hook_base;
        call.invite = Some(invite);
        call.app = app;
        call.step = step;
        call.carrier = carrier;
        call._carrier_slot = carrier_slot;
        metrics::counter!(super::STARTED_METRIC).increment(1);
        self.uas.insert(invite, key);
        let i = &call.info;
        tracing::info!(call_sid = %sid, from = %Text(&i.from), to = %Text(&i.to),
            call_id = %Text(&i.call_id), "new call");
        self.admit(&mut call, None);
        if let Some(hook) = webhook {
            let payload = SessionPayload {
                call: call.info.clone(),
                sip: sip_info(&call.request),
            };
            self.send_hook(&call, &hook, Some(HookPurpose::App), payload);
        }
        self.calls.insert(key, call);
        self.with_call(key, |core, call| core.advance(now, call));
    }

    /// A new call (inbound or createCall) counts as active, is found by its call_sid, and its
    /// status hook (`status_hook`, else the app's) hears it start.
    fn admit(&mut self, call: &mut Call, status_hook: Option<Hook>) {
        metrics::gauge!(ACTIVE_METRIC).increment(1.0);
        self.sids.insert(call.sid, (call.key, Leg::Caller));
        call.status_queue = self.status_queue(call, status_hook);
        self.status_hook(call, &call.info.clone());
    }

    /// Frees a dial's media leg; what its tap was asked for goes with it, so a next dial's
    /// leg of the same number starts from nothing.
    fn destroy_leg(&mut self, call: &mut Call, leg: LegId) {
        call.taps.forget(leg);
        self.post_media(MediaCommand::Destroy {
            call_id: call.media_id(),
            leg: Some(leg),
        });
    }

    /// Registers `sid` for REST updates (none when the registry refuses it, e.g. full).
    fn rest_registration(&self, sid: CallSid, account_sid: &str) -> Option<Registration> {
        self.svc
            .registry
            .register(&sid.to_string(), account_sid, self.updates_tx.clone())
            .ok()
    }

    /// The CDR of a caller refused before its call began (403, 503 while draining, 488...).
    pub(super) fn refused_cdr(
        &self,
        now: Instant,
        request: &Request,
        status: StatusCode,
        cause: Cause,
    ) {
        let Some(sink) = &self.svc.cdr else { return };
        let account = &self.svc.config.app.account_sid;
        let mut info = caller_info(request, CallSid::new_random(), account, self.sent_by);
        info.sip_status = status.as_u16();
        info.call_status = crate::cdr::final_status(false, info.sip_status);
        let mut track = Track::new(now);
        track.hung_up(Hangup::system(cause));
        let carrier = crate::cdr::inbound_carrier(&self.svc.config, request);
        let leg = LegEnd {
            info: &info,
            track: &track,
            carrier: carrier.as_deref(),
            codec: None,
        };
        sink.leg(Record::new(leg, now, Anchor::process()), None);
    }

    /// Creates a media leg; its RTP port.
    fn create_leg(&mut self, call: &MediaCallId, leg: LegId) -> Option<u16> {
        // What was posted before must run first (a leg destroyed, then one created). The shard
        // is not woken for a new leg: nothing is relayed through it before a command that does
        // wake it (the far end's SDP, a bridge), and packets that come first wait in its sockets.
        self.send_media();
        match self
            .svc
            .media
            .create_posted(call.clone(), leg, EndpointSpec::default())
        {
            Ok((_, ports)) => Some(ports.rtp),
            Err(e) => {
                tracing::warn!(error = %e, "no media leg");
                None
            }
        }
    }

    fn update_leg(&mut self, call: &Call, leg: LegId, n: &Negotiated) {
        self.post_media(MediaCommand::UpdateEndpoint {
            call_id: call.media_id(),
            leg,
            spec: endpoint_spec(n),
        });
    }

    /// Runs verbs until one has to wait.
    pub(super) fn advance(&mut self, now: Instant, call: &mut Call) {
        while matches!(call.step, Step::Idle) {
            let step = call.app.next_step();
            if matches!(step, AppStep::Run(_)) {
                // What ended the last verb did not end the call.
                call.cdr.hangup = None;
            }
            match step {
                AppStep::Run(Verb::Dial(d)) => self.dial(now, call, d),
                AppStep::Run(Verb::Hangup(h)) => {
                    let headers = extra_headers(&h.headers.0);
                    self.hang_up_caller(now, call, StatusCode::DECLINE, headers);
                }
                AppStep::Run(Verb::Pause(p)) => {
                    self.answer_caller(now, call, None);
                    call.step = Step::Pause(now + Duration::from_secs(p.length.into()));
                }
                AppStep::Run(Verb::Answer(_)) => self.answer_caller(now, call, None),
                AppStep::Run(Verb::SipDecline(d)) => {
                    if call.answered() {
                        tracing::error!(call_sid = %call.sid, "sip:decline on an answered call, skipped");
                        continue;
                    }
                    let status = StatusCode::new(d.status).unwrap_or(StatusCode::DECLINE);
                    let mut reply = Reply::new(status);
                    reply.headers = extra_headers(&d.headers.0);
                    if let Some(reason) = d.reason {
                        // The reason phrase travels as a Reason header (RFC 3326) as well.
                        reply = reply.header(
                            HeaderName::REASON,
                            format!("SIP;cause={};text=\"{reason}\"", d.status),
                        );
                    }
                    self.reply_caller(now, call, reply);
                    self.end(now, call);
                }
                AppStep::Run(other) => {
                    tracing::error!(call_sid = %call.sid, verb = other.name(),
                        "verb not executed by this build, skipped");
                }
                AppStep::HangUp => {
                    let status = call
                        .last_failure
                        .and_then(StatusCode::new)
                        .unwrap_or(StatusCode::TEMPORARILY_UNAVAILABLE);
                    self.hang_up_caller(now, call, status, Vec::new());
                }
                AppStep::Finished => {
                    // The app was ended from outside (REST, the caller): nothing more runs.
                    self.hang_up_caller(now, call, StatusCode::TEMPORARILY_UNAVAILABLE, Vec::new());
                }
            }
        }
    }

    /// BYE an answered caller, or refuse an unanswered one with `status`; the call ends.
    fn hang_up_caller(
        &mut self,
        now: Instant,
        call: &mut Call,
        status: StatusCode,
        headers: Vec<(HeaderName, String)>,
    ) {
        if call.invite.is_some() {
            let mut reply = Reply::new(status);
            reply.headers = headers;
            self.reply_caller(now, call, reply);
        } else if let Some(d) = call.dialog.take()
            && !call.gone
        {
            let mut bye = Outgoing::new(Method::BYE);
            bye.headers = headers;
            let _ = self.dl.request(now, d, bye);
        }
        self.end(now, call);
    }

    /// Answers the caller with 200 OK: our answer so far, or one built from `codecs` (the
    /// winner's), or from every codec we relay.
    fn answer_caller(&mut self, now: Instant, call: &mut Call, winner: Option<&Negotiated>) {
        if call.answered() || call.invite.is_none() {
            return;
        }
        let Some(body) = self.caller_answer(call, winner) else {
            tracing::warn!(call_sid = %call.sid, "no codec in common with the caller");
            call.cdr.hung_up(Hangup::system(Cause::NoCodec));
            call.last_failure = Some(488);
            return self.hang_up_caller(now, call, StatusCode::NOT_ACCEPTABLE_HERE, Vec::new());
        };
        self.reply_caller(
            now,
            call,
            Reply::new(StatusCode::OK).body(Body::new(SDP, body)),
        );
        call.answered_at = Some(now);
        call.info.call_status = CallStatus::InProgress;
        call.info.sip_status = 200;
        self.status_hook(call, &call.info.clone());
    }

    /// Our SDP answer to the caller (made once, then repeated).
    fn caller_answer(&mut self, call: &mut Call, winner: Option<&Negotiated>) -> Option<Bytes> {
        if let Some((body, _)) = &call.answer {
            return Some(body.clone());
        }
        let codecs = match winner {
            Some(n) => transcode::caller_codecs(relayable(&call.offer), codecs_of(n)),
            None => relayable(&call.offer),
        };
        let mut l = local(call.key, self.svc.media_ip, call.port, codecs);
        l.srtp = srtp::answer_keys(&call.offer);
        let (sdp, n) = answer(&call.offer, &l)?;
        self.update_leg(call, LegId(0), &n);
        let body = Bytes::from(sdp.serialize());
        call.answer = Some((body.clone(), n));
        Some(body)
    }

    /// The caller hung up or cancelled (`status`: what its leg ended with).
    pub(super) fn caller_gone(&mut self, now: Instant, call: &mut Call, status: u16) {
        if call.gone {
            return;
        }
        call.gone = true;
        let cause = if call.answered() {
            Cause::Bye
        } else {
            Cause::Cancel
        };
        call.cdr.hung_up(Hangup::caller(cause));
        if let Some(invite) = call.invite.take() {
            self.uas.remove(&invite);
        }
        call.dialog = None;
        call.info.sip_status = status;
        // What the actionHook and status hooks report from now on (jambonz: an abandoned call
        // is no-answer/487).
        call.info.call_status = if call.answered() {
            CallStatus::Completed
        } else {
            CallStatus::NoAnswer
        };
        call.app.end();
        if let Step::Dial(run) = &mut call.step {
            let event = match run.bridged {
                Some(_) => DialEvent::BridgeEnded { by_callee: false },
                None => DialEvent::CallerHungUp,
            };
            run.dial.handle(now, event);
            self.drain_dial(now, call);
        }
        if !matches!(call.step, Step::Dial(_)) {
            self.end(now, call);
        }
    }

    /// The call is over: free its media, report it, and let the core forget it.
    fn end(&mut self, now: Instant, call: &mut Call) {
        if call.is_over() {
            return;
        }
        if let Step::Dial(run) = std::mem::replace(&mut call.step, Step::Over) {
            // Only on failures inside the dial: its forks go with the call.
            for f in &run.forks {
                if let Some(inv) = f.invite {
                    let _ = self.dl.cancel(now, inv, None);
                }
                if let Some(d) = f.dialog {
                    let _ = self.dl.bye(now, d);
                }
            }
            self.forget_forks(&run);
            self.fork_cdrs(now, call, &run);
        }
        self.amd_call_ended(call);
        self.outbound_cancel(now, call);
        self.post_media(MediaCommand::Destroy {
            call_id: call.media_id(),
            leg: None,
        });
        // What the caller was refused with (486 after a busy dial, 480, 603...) is its leg's
        // status, for the status hook as for the CDR.
        if let Some(code) = call
            .cdr
            .final_code
            .filter(|c| *c >= 300 && !call.answered())
        {
            call.info.sip_status = code;
        }
        let status = crate::cdr::final_status(call.answered(), call.info.sip_status);
        call.info.call_status = status;
        let mut info = call.info.clone();
        if !call.answered() && info.sip_status < 300 {
            info.sip_status = 487;
            call.info.sip_status = 487;
        }
        if let Some(sink) = &self.svc.cdr {
            call.cdr.hung_up(Hangup::system(Cause::App));
            let track = Track {
                answered: call.answered_at,
                ..call.cdr.clone()
            };
            let leg = LegEnd {
                info: &call.info,
                track: &track,
                carrier: call.carrier.as_deref(),
                codec: call
                    .answer
                    .as_ref()
                    .and_then(|(_, n)| n.codecs.first())
                    .map(|c| c.name.as_str()),
            };
            let record = Record::new(leg, now, Anchor::process());
            sink.leg(record, Some((call.media_id(), LegId(0))));
        }
        let duration = call
            .answered_at
            .map(|a| now.saturating_duration_since(a).as_secs());
        self.status_hook_with(call, &info, duration);
        metrics::gauge!(ACTIVE_METRIC).decrement(1.0);
        metrics::counter!(CALLS_METRIC, "status" => status_label(status)).increment(1);
        tracing::info!(call_sid = %call.sid, status = status_label(status), "call ended");
    }

    fn status_hook(&self, call: &Call, info: &CallInfo) {
        self.status_hook_with(call, info, None);
    }

    fn status_hook_with(&self, call: &Call, info: &CallInfo, duration: Option<u64>) {
        if let Some(queue) = &call.status_queue {
            let _ = queue.send(CallStatusPayload {
                call: info.clone(),
                sip_reason: None,
                duration,
            });
        }
    }

    pub(super) fn on_hook(
        &mut self,
        now: Instant,
        call: &mut Call,
        purpose: HookPurpose,
        result: Result<HookReply, WebhookError>,
    ) {
        let verbs = result.map_err(|e| e.to_string()).and_then(|r| {
            let text = String::from_utf8_lossy(&r.body);
            if text.trim().is_empty() {
                Ok(Vec::new())
            } else if let HookPurpose::Confirm(fork) = purpose {
                confirm::parse_app(fork, &text)
            } else {
                verbs::parse_app(&text).map_err(|e| e.to_string())
            }
        });
        match purpose {
            HookPurpose::App => {
                if !matches!(call.step, Step::WaitApp) {
                    return;
                }
                match verbs {
                    Ok(v) => {
                        call.app = AppRunner::new(call.sid.to_string(), v);
                        call.step = Step::Idle;
                        self.advance(now, call);
                    }
                    Err(e) => {
                        let e = e.to_string();
                        tracing::error!(call_sid = %call.sid, error = %Text(&e), "call webhook failed: 480");
                        call.cdr.hung_up(Hangup::system(Cause::AppFailed));
                        call.step = Step::Idle;
                        self.hang_up_caller(
                            now,
                            call,
                            StatusCode::TEMPORARILY_UNAVAILABLE,
                            Vec::new(),
                        );
                    }
                }
            }
            HookPurpose::Action => {
                if !matches!(call.step, Step::WaitAction) {
                    return;
                }
                match verbs {
                    Ok(v) => call.app.replace_rest(v),
                    Err(e) => tracing::warn!(call_sid = %call.sid, error = %Text(&e.to_string()),
                        "actionHook gave no verbs; the app goes on"),
                }
                call.step = Step::Idle;
                self.advance(now, call);
            }
            HookPurpose::Confirm(fork) => self.on_confirm_hook(now, call, fork, verbs),
            HookPurpose::Amd(sid) => self.on_amd_reply(now, call, sid, verbs),
            HookPurpose::Refer(dialog) => {
                let status = match &verbs {
                    Ok(_) => StatusCode::ACCEPTED,
                    Err(_) => StatusCode::new(502).unwrap_or(StatusCode::SERVER_INTERNAL_ERROR),
                };
                let key = match self.dialogs.get(&dialog) {
                    Some((_, Leg::Caller)) => call.refer.take(),
                    Some((_, Leg::Fork(i))) => match &mut call.step {
                        Step::Dial(run) => run.forks.get_mut(*i).and_then(|f| f.refer.take()),
                        _ => None,
                    },
                    None => None,
                };
                if let Some(key) = key {
                    let _ = self.dl.respond(now, &key, Reply::new(status));
                }
            }
        }
    }

    pub(super) fn on_call_timer(&mut self, now: Instant, call: &mut Call) {
        self.amd_timer(now, call);
        self.outbound_timer(now, call);
        match &mut call.step {
            Step::Pause(at) if *at <= now => {
                call.step = Step::Idle;
                self.advance(now, call);
            }
            Step::Dial(run) => {
                let silent: Vec<usize> = (0..run.forks.len())
                    .filter(|&i| {
                        let f = &run.forks[i];
                        f.route
                            .as_ref()
                            .and_then(Route::deadline)
                            .is_some_and(|d| d <= now)
                    })
                    .collect();
                run.dial.handle_timeout(now);
                self.drain_dial(now, call);
                for i in silent {
                    self.gateway_silent(now, call, i);
                }
                self.screen_timers(now, call);
            }
            _ => {}
        }
    }

    /// Fork `i`'s gateway showed no progress in time: its INVITE is given up (cancelled should a
    /// 1xx still come) and the fork fails over as on Timer B.
    fn gateway_silent(&mut self, now: Instant, call: &mut Call, i: usize) {
        self.feed_dial(now, call, |core, call, run| {
            let f = &mut run.forks[i];
            // Still due: the dial's own timers (just run) may have cancelled the fork.
            let due = f.route.as_mut().is_some_and(|r| {
                let due = r.deadline().is_some_and(|d| d <= now);
                r.progressed();
                due
            });
            let inv = f.invite.filter(|_| due)?;
            core.uac.remove(&inv);
            let _ = core.dl.cancel(now, inv, None);
            (!core.fail_over(now, call, run, i, None))
                .then_some(DialEvent::ForkTimedOut { fork: ForkId(i) })
        });
    }

    /// Targets → forks: each resolved to where its INVITE goes.
    fn start_dial(&mut self, now: Instant, call: &mut Call, verb: Box<verbs::Dial>) {
        let mut targets: Vec<DialTarget> = Vec::new();
        let mut forks: Vec<ForkLeg> = Vec::new();
        for t in &verb.target {
            let mut headers = verb.headers_for(t);
            let confirm_hook = t.confirm_hook.clone().or_else(|| verb.confirm_hook.clone());
            for Resolved {
                destination,
                login,
                headers: extra,
                carrier,
                route,
                srtp,
            } in self.resolve_target(&call.config, &t.kind)
            {
                // The dial keeps the first of equal URIs: keep fork indices in step with it.
                if let Destination::Uri(u) = &destination
                    && targets
                        .iter()
                        .any(|x| x.destination == Destination::Uri(u.clone()))
                {
                    continue;
                }
                headers.extend(extra);
                let sid = CallSid::new_random();
                let mut track = Track::new(now);
                if matches!(destination, Destination::Unroutable(_)) {
                    track.hung_up(Hangup::system(Cause::Unroutable));
                }
                let to = match (&route, &destination, &t.kind) {
                    (Some(r), _, _) => r.number.clone(),
                    (None, Destination::Uri(u), _) => u.clone(),
                    // Nowhere to send it: the leg is still named by what was dialled.
                    (None, Destination::Unroutable(_), TargetKind::Sip { sip_uri, .. }) => {
                        sip_uri.clone()
                    }
                    (
                        None,
                        Destination::Unroutable(_),
                        TargetKind::Phone { number, .. } | TargetKind::Teams { number, .. },
                    ) => number.clone(),
                    (None, Destination::Unroutable(_), TargetKind::User { name }) => name.clone(),
                };
                forks.push(ForkLeg {
                    info: fork_info(&call.info, sid, &to),
                    login,
                    carrier,
                    route,
                    srtp,
                    carrier_slot: None,
                    invite: None,
                    dialog: None,
                    offer: None,
                    negotiated: None,
                    refer: None,
                    cdr: track,
                    dns: ForkDns::default(),
                    port: None,
                    confirm_hook: confirm_hook.clone(),
                    screen: None,
                });
                targets.push(DialTarget {
                    call_sid: sid,
                    destination,
                    headers: headers.clone(),
                    confirm: confirm_hook.is_some(),
                });
            }
        }
        let dial = match Dial::new(now, targets, DialOptions::from(&*verb)) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(call_sid = %call.sid, error = %e, "dial not started");
                return;
            }
        };
        for (i, f) in forks.iter().enumerate() {
            self.sids.insert(f.info.call_sid, (call.key, Leg::Fork(i)));
        }
        for f in &forks {
            call.registrations
                .extend(self.rest_registration(f.info.call_sid, &call.config.app.account_sid));
        }
        call.refer_hook = verb.refer_hook.clone();
        let audio = Self::dial_audio(call, &verb);
        let capture = dtmf::Captures::of(&verb, forks.len());
        if capture.as_ref().is_some_and(|c| c.parent_wanted()) {
            self.tap_dtmf(call, LegId(0), dtmf::TapUser::Capture, true);
        }
        call.step = Step::Dial(Box::new(DialRun {
            dial,
            verb,
            per_fork: forks.iter().any(|f| f.confirm_hook.is_some()),
            forks,
            bridged: None,
            port: None,
            leg_of: None,
            audio,
            capture,
        }));
        self.drain_dial(now, call);
    }

    /// Where a target's INVITE goes, one per
    /// registered contact for a user.
    fn resolve_target(&mut self, config: &Config, kind: &TargetKind) -> Vec<Resolved> {
        match kind {
            TargetKind::Sip { sip_uri, auth } => vec![Resolved {
                login: auth.as_ref().map(|c| Login {
                    username: c.username.clone(),
                    password: c.password.clone(),
                }),
                ..Resolved::to(Destination::Uri(sip_uri.clone()))
            }],
            TargetKind::Phone { number, trunk } => {
                match config.resolve_phone(number, trunk.as_deref()) {
                    Ok(route) => {
                        let login = match (&route.carrier.username, &route.carrier.password) {
                            (Some(u), Some(p)) => Some(Login {
                                username: u.clone(),
                                password: p.clone(),
                            }),
                            _ => None,
                        };
                        let user = route.carrier.request_user(&route.number);
                        let gateways = self.gateways.route(route.carrier, &route.number, &user);
                        let first = gateways
                            .first_uri()
                            .unwrap_or_else(|| route.request_uri.to_string());
                        vec![Resolved {
                            login,
                            carrier: Some(route.carrier.name.clone()),
                            route: Some(gateways),
                            srtp: route.carrier.srtp,
                            ..Resolved::to(Destination::Uri(first))
                        }]
                    }
                    Err(e) => {
                        tracing::warn!(error = %Text(&e.to_string()), "phone target not routable");
                        vec![Resolved::to(Destination::Unroutable(404))]
                    }
                }
            }
            TargetKind::User { name } => {
                let user = name.split('@').next().unwrap_or(name);
                let bindings = self.registrar.lookup(std::time::SystemTime::now(), user);
                if bindings.is_empty() {
                    return vec![Resolved::to(Destination::Unroutable(404))];
                }
                bindings
                    .into_iter()
                    .map(|b| {
                        let uri = b.contact.to_string();
                        self.hints.insert(uri.clone(), b.source);
                        Resolved::to(Destination::Uri(uri))
                    })
                    .collect()
            }
            TargetKind::Teams {
                number,
                tenant,
                voicemail,
            } => match config.teams_target(number, tenant.as_deref(), *voicemail) {
                Ok(route) => vec![Resolved {
                    headers: vec![(
                        crate::routing::TEAMS_TENANT_HEADER.to_string(),
                        route.tenant_fqdn,
                    )],
                    // Direct Routing media is SRTP (SDES).
                    srtp: config.teams.srtp,
                    ..Resolved::to(Destination::Uri(route.request_uri.to_string()))
                }],
                Err(e) => {
                    tracing::warn!(error = %Text(&e.to_string()), "teams target not routable");
                    vec![Resolved::to(Destination::Unroutable(404))]
                }
            },
        }
    }

    /// Carries out what the dial asks for, until it asks nothing more.
    fn drain_dial(&mut self, now: Instant, call: &mut Call) {
        let Step::Dial(mut run) = std::mem::replace(&mut call.step, Step::Idle) else {
            return;
        };
        let mut finished = None;
        let mut feedback: Vec<DialEvent> = Vec::new();
        loop {
            while let Some(action) = run.dial.poll_action() {
                match action {
                    Action::Invite {
                        fork,
                        uri,
                        headers,
                        caller_id,
                    } => {
                        let f = &mut run.forks[fork.0];
                        match &mut f.route {
                            // A redirect leaves the carrier's gateways behind.
                            Some(r) if r.started() => f.route = None,
                            Some(r) => r.invited(now, &headers, caller_id.as_deref()),
                            None => {}
                        }
                        let f = &mut run.forks[fork.0];
                        let (carrier, slot) = (f.carrier.as_deref(), &mut f.carrier_slot);
                        if let Err(status) = self
                            .carrier_limits
                            .outbound(&call.config, carrier, slot, now)
                            .and_then(|()| {
                                self.invite_fork(
                                    now, call, &mut run, fork.0, &uri, headers, caller_id,
                                )
                            })
                        {
                            run.forks[fork.0]
                                .cdr
                                .hung_up(Hangup::system(Cause::LocalError));
                            feedback.push(DialEvent::Failed { fork, status });
                        }
                    }
                    Action::Cancel { fork, reason } => {
                        // A loser, else whatever ends the call (the ring timeout if nothing).
                        let why = match reason {
                            Some(_) => Hangup::system(Cause::CompletedElsewhere),
                            None => call
                                .cdr
                                .hangup
                                .unwrap_or(Hangup::system(Cause::RingTimeout)),
                        };
                        run.forks[fork.0].cdr.hung_up(why);
                        run.forks[fork.0].dns.waiting = None;
                        // A cancelled fork does not go on to another gateway.
                        run.forks[fork.0].route = None;
                        if let Some(inv) = run.forks[fork.0].invite {
                            let _ = self.dl.cancel(now, inv, reason.map(str::to_string));
                        }
                    }
                    // The dialog layer ACKed the 2xx already.
                    Action::AckAndBye { fork } | Action::Bye { fork } => {
                        run.forks[fork.0].screen = None;
                        let why = call.cdr.hangup.unwrap_or(Hangup::system(Cause::TimeLimit));
                        run.forks[fork.0].cdr.hung_up(why);
                        if let Some(d) = run.forks[fork.0].dialog.take() {
                            let _ = self.dl.bye(now, d);
                        }
                    }
                    Action::RunConfirm { fork } => {
                        feedback.extend(self.start_confirm(call, &mut run, fork.0));
                    }
                    Action::RingCaller {
                        status,
                        early_media_from,
                    } => {
                        if !self.ring_with_music(now, call, &mut run, status, early_media_from) {
                            self.ring_caller(now, call, &run, status, early_media_from);
                        }
                    }
                    Action::AnswerCaller => {
                        let winner = run.bridged.and_then(|i| run.forks[i].negotiated.clone());
                        self.answer_caller(now, call, winner.as_ref());
                        self.play_music(call, &mut run);
                        if call.is_over() {
                            feedback.push(DialEvent::HangUp);
                        }
                    }
                    Action::Bridge { fork } => {
                        run.bridged = Some(fork.0);
                        // Another fork's early SDP came after the winner's (a 200 without SDP
                        // answers with the 183's): point the leg back at the winner.
                        if !run.per_fork
                            && run.leg_of != Some(fork.0)
                            && let Some(n) = &run.forks[fork.0].negotiated
                        {
                            self.update_leg(call, FORK_LEG, n);
                            run.leg_of = Some(fork.0);
                        }
                        self.stop_music(call, &mut run);
                        self.post_media(MediaCommand::Bridge {
                            call_id: call.media_id(),
                            a: LegId(0),
                            b: run.leg_for(fork.0),
                        });
                        if let Some(amd) = &run.verb.amd {
                            let sid = run.forks[fork.0].info.call_sid;
                            self.start_amd(now, call, amd, run.leg_for(fork.0), sid);
                        }
                        self.start_streams(call, &run.verb);
                        self.dub_on_bridge(call, &mut run);
                    }
                    Action::ForkStatus {
                        fork,
                        status,
                        sip_status,
                        ..
                    } => {
                        let f = &mut run.forks[fork.0];
                        f.info.call_status = status;
                        f.info.sip_status = sip_status;
                        match status {
                            CallStatus::InProgress => f.cdr.answered = Some(now),
                            CallStatus::Completed
                            | CallStatus::Failed
                            | CallStatus::Busy
                            | CallStatus::NoAnswer => f.cdr.ended = Some(now),
                            _ => {}
                        }
                        let info = f.info.clone();
                        self.status_hook(call, &info);
                    }
                    Action::Finished(outcome) => finished = Some(outcome),
                }
            }
            if feedback.is_empty() {
                break;
            }
            for e in feedback.drain(..) {
                run.dial.handle(now, e);
            }
        }
        let Some(outcome) = finished else {
            if !call.is_over() {
                call.step = Step::Dial(run);
            }
            return;
        };
        // The dial is over: its legs go, the caller's stays.
        let replaced = self.amd_dial_ended(call);
        call.streams.stop();
        self.stop_music(call, &mut run);
        self.fork_cdrs(now, call, &run);
        self.post_media(MediaCommand::Unbridge {
            call_id: call.media_id(),
            leg: LegId(0),
        });
        if run.port.is_some() {
            self.destroy_leg(call, FORK_LEG);
        }
        for (i, _) in run
            .forks
            .iter()
            .enumerate()
            .filter(|(_, f)| f.port.is_some())
        {
            self.destroy_leg(call, fork_leg(i));
        }
        if run.capture.as_ref().is_some_and(|c| c.parent_wanted()) {
            self.tap_dtmf(call, LegId(0), dtmf::TapUser::Capture, false);
        }
        self.forget_forks(&run);
        let result = outcome.result;
        if result.dial_status != crate::payload::DialStatus::Completed {
            call.last_failure = Some(match result.dial_sip_status {
                487 => 480,
                s => s,
            });
        }
        if call.is_over() {
            return;
        }
        match &run.verb.action_hook {
            Some(hook) => {
                let payload = DialActionPayload {
                    call: call.info.clone(),
                    result,
                };
                // Verbs from an amd hook replaced the app: this answer is not waited for.
                let purpose = (!call.gone && !replaced).then_some(HookPurpose::Action);
                self.send_hook(call, hook, purpose, payload);
                call.step = if call.gone || replaced {
                    Step::Idle
                } else {
                    Step::WaitAction
                };
            }
            None => call.step = Step::Idle,
        }
        if call.gone {
            self.end(now, call);
        } else {
            self.advance(now, call);
        }
    }

    /// Sends fork `i` its INVITE (again after a redirect); Err is the status the fork fails with.
    #[allow(clippy::too_many_arguments)]
    fn invite_fork(
        &mut self,
        now: Instant,
        call: &mut Call,
        run: &mut DialRun,
        i: usize,
        uri: &str,
        headers: Vec<(String, String)>,
        caller_id: Option<String>,
    ) -> Result<(), u16> {
        let target = Uri::parse(uri).map_err(|_| 416u16)?;
        // A host name is looked up first (RFC 3263); the INVITE goes when the answer is back.
        if let Some(sip) = target.as_sip()
            && matches!(dns::plan(sip), Plan::Lookup { .. })
            && !self.hints.contains_key(uri)
            && run.forks[i]
                .dns
                .routed
                .as_ref()
                .is_none_or(|(u, _)| u != uri)
        {
            run.forks[i].dns.waiting = Some(WaitingInvite {
                uri: uri.to_string(),
                headers,
                caller_id,
            });
            self.look_up(call.key, run.forks[i].info.call_sid, sip.clone());
            return Ok(());
        }
        let port = match run.port_of(i) {
            Some(p) => p,
            None => {
                let leg = run.leg_for(i);
                let p = self.create_leg(&call.media_id(), leg).ok_or(503u16)?;
                if run.per_fork {
                    run.forks[i].port = Some(p);
                } else {
                    run.port = Some(p);
                }
                if run.capture.as_ref().is_some_and(|c| c.child_wanted()) {
                    self.tap_dtmf(call, leg, dtmf::TapUser::Capture, true);
                }
                p
            }
        };
        // Once the caller has answered, its codecs are settled: offer those (plus what the
        // relay transcodes them to).
        let codecs = transcode::fork_codecs(match &call.answer {
            Some((_, n)) => codecs_of(n),
            None => relayable(&call.offer),
        });
        let mut ours = local(call.key * 16 + i as u64, self.svc.media_ip, port, codecs);
        ours.srtp = srtp::offer_keys(run.forks[i].srtp);
        let offer = sdp::offer(&ours);
        let mut user = caller_id.unwrap_or_else(|| call.info.from.clone());
        if let Some(name) = &run.forks[i].carrier
            && let Some(c) = call.config.carriers.iter().find(|c| &c.name == name)
        {
            user = c.caller_id(&user);
        }
        run.forks[i].cdr.from = Some(user.clone());
        let from_uri = Uri::parse(&format!("sip:{user}@{}", self.sent_by)).map_err(|_| 400u16)?;
        let mut from = NameAddr::new(from_uri);
        if !call.info.caller_name.is_empty() {
            from.display = Some(call.info.caller_name.clone());
        }
        let mut spec = InviteRequest::new(target.clone(), from, NameAddr::new(target));
        for name in PASSED_ON {
            if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
                continue;
            }
            let Some(hn) = HeaderName::new(name) else {
                continue;
            };
            for v in call.request.headers.get_all(&hn) {
                spec.headers.push((hn.clone(), v.to_string()));
            }
        }
        spec.headers.extend(extra_headers_owned(headers));
        spec.body = Some(Body::new(SDP, offer.serialize()));
        spec.login = run.forks[i].login.clone();
        let invite = self.dl.invite(now, spec).map_err(|_| 500u16)?;
        let f = &mut run.forks[i];
        // As jambonz's child calls: a leg's call_id is its own SIP Call-ID.
        if let Some(id) = self.dl.invite_call_id(invite) {
            f.info.call_id = id.to_string();
        }
        if let Some(old) = f.invite.replace(invite) {
            self.uac.remove(&old);
        }
        f.offer = Some(offer);
        f.negotiated = None;
        self.uac.insert(invite, (call.key, i));
        Ok(())
    }

    /// A fork's URI was looked up: its INVITE goes to the first destination, or the fork fails
    /// (604 for a name that does not resolve, 503 when DNS failed); the other forks go on.
    pub(super) fn on_resolved(
        &mut self,
        now: Instant,
        call: &mut Call,
        fork: CallSid,
        uri: &str,
        result: Result<Vec<dns::Destination>, DnsError>,
    ) {
        let Step::Dial(run) = &mut call.step else {
            return ignored("dns_late");
        };
        let waiting = run
            .forks
            .iter_mut()
            .position(|f| f.info.call_sid == fork)
            .and_then(|i| {
                let w = &mut run.forks[i].dns.waiting;
                w.take_if(|w| w.uri == uri).map(|w| (i, w))
            });
        let Some((
            i,
            WaitingInvite {
                uri,
                headers,
                caller_id,
            },
        )) = waiting
        else {
            // Cancelled (or redirected elsewhere) while DNS answered.
            return ignored("dns_late");
        };
        self.feed_dial(now, call, |core, call, run| {
            let f = &mut run.forks[i];
            let destinations = match result {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(call_sid = %f.info.call_sid, error = %Text(&e.to_string()),
                        status = e.sip_status(), "fork target does not resolve: the fork fails");
                    return Some(DialEvent::Failed {
                        fork: ForkId(i),
                        status: e.sip_status(),
                    });
                }
            };
            let to = core.pins.pin(&uri, destinations[0].addr);
            tracing::debug!(call_sid = %f.info.call_sid, %to, ?destinations, "fork target resolved");
            if let Some((old, _)) = f.dns.routed.replace((uri.clone(), destinations)) {
                core.pins.unpin(&old);
            }
            core.invite_fork(now, call, run, i, &uri, headers, caller_id)
                .err()
                .map(|status| DialEvent::Failed {
                    fork: ForkId(i),
                    status,
                })
        });
    }

    /// answerOnBridge: 180, or 183 with the one callee's early media.
    fn ring_caller(
        &mut self,
        now: Instant,
        call: &mut Call,
        run: &DialRun,
        status: u16,
        early_from: Option<ForkId>,
    ) {
        let early = early_from.and_then(|f| run.forks.get(f.0).map(|l| (f.0, l)));
        match early.and_then(|(i, l)| Some((i, l.negotiated.clone()?))) {
            Some((i, n)) if status == 183 && run.media_leg(i).is_some() => {
                let Some(body) = self.caller_answer(call, Some(&n)) else {
                    return;
                };
                self.post_media(MediaCommand::Bridge {
                    call_id: call.media_id(),
                    a: LegId(0),
                    b: run.leg_for(i),
                });
                self.reply_caller(
                    now,
                    call,
                    Reply::new(StatusCode::SESSION_PROGRESS).body(Body::new(SDP, body)),
                );
                call.info.call_status = CallStatus::EarlyMedia;
            }
            _ => {
                self.reply_caller(now, call, Reply::new(StatusCode::RINGING));
                call.info.call_status = CallStatus::Ringing;
            }
        }
        call.info.sip_status = status;
    }

    /// Drops the index entries of a dial's forks: what still comes for them belongs to no
    /// fork (a later dial of the call reuses the indices).
    fn forget_forks(&mut self, run: &DialRun) {
        for f in &run.forks {
            if let Some(invite) = f.invite {
                self.uac.remove(&invite);
            }
            if let Some(d) = f.dialog {
                self.dialogs.remove(&d);
            }
            self.sids.remove(&f.info.call_sid);
            if let Some((uri, _)) = &f.dns.routed {
                self.pins.unpin(uri);
            }
        }
    }

    /// Each fork's CDR; the counters of those with a media leg follow when it is freed.
    fn fork_cdrs(&self, now: Instant, call: &Call, run: &DialRun) {
        let Some(sink) = &self.svc.cdr else { return };
        for (i, f) in run.forks.iter().enumerate() {
            let leg = LegEnd {
                info: &f.info,
                track: &f.cdr,
                carrier: f.carrier.as_deref(),
                codec: f
                    .negotiated
                    .as_ref()
                    .and_then(|n| n.codecs.first())
                    .map(|c| c.name.as_str()),
            };
            // The shared leg's counters are those of the fork it last carried.
            let media = run
                .port_of(i)
                .and(run.media_leg(i))
                .map(|leg| (call.media_id(), leg));
            sink.leg(Record::new(leg, now, Anchor::process()), media);
        }
    }

    fn fork_of(&self, invite: InviteId) -> Option<(u64, usize)> {
        self.uac.get(&invite).copied()
    }

    /// Feeds a dial event to the call's running dial.
    fn feed_dial(
        &mut self,
        now: Instant,
        call: &mut Call,
        f: impl FnOnce(&mut Core, &mut Call, &mut DialRun) -> Option<DialEvent>,
    ) {
        let Step::Dial(mut run) = std::mem::replace(&mut call.step, Step::Idle) else {
            return ignored("no_dial");
        };
        let event = f(self, call, &mut run);
        if let Some(e) = event {
            run.dial.handle(now, e);
        }
        call.step = Step::Dial(run);
        self.drain_dial(now, call);
    }

    pub(super) fn on_fork_progress(&mut self, now: Instant, invite: InviteId, r: Response) {
        let Some((key, i)) = self.fork_of(invite) else {
            return;
        };
        let status = r.status.as_u16();
        self.with_call(key, |core, call| {
            core.feed_dial(now, call, |core, call, run| {
                if let Some(route) = &mut run.forks[i].route {
                    route.progressed();
                }
                let has_sdp = core.fork_sdp(call, run, i, &r);
                Some(DialEvent::Provisional {
                    fork: ForkId(i),
                    status,
                    has_sdp,
                })
            })
        });
    }

    /// Takes the SDP of a fork's response into its media leg; whether there was any.
    fn fork_sdp(&mut self, call: &Call, run: &mut DialRun, i: usize, r: &Response) -> bool {
        if r.body.is_empty() {
            return false;
        }
        let f = &mut run.forks[i];
        let Some(offer) = &f.offer else { return false };
        let n = SessionDescription::parse_bytes(&r.body)
            .ok()
            .and_then(|a| sdp::accept_answer(offer, &a).ok().flatten());
        let Some(n) = n else {
            tracing::debug!(call_sid = %f.info.call_sid, "fork SDP unusable");
            return false;
        };
        // Once a fork is bridged, the shared leg is its alone (a loser's late 200 is only
        // ACKed and hung up).
        if run.per_fork {
            self.update_leg(call, fork_leg(i), &n);
        } else if run.bridged.is_none_or(|b| b == i) {
            self.update_leg(call, FORK_LEG, &n);
            run.leg_of = Some(i);
        }
        run.forks[i].negotiated = Some(n);
        true
    }

    pub(super) fn on_fork_answered(
        &mut self,
        now: Instant,
        invite: InviteId,
        dialog: DialogId,
        r: Response,
    ) {
        let Some((key, i)) = self.fork_of(invite) else {
            // Its call is gone: nobody wants this callee.
            let _ = self.dl.bye(now, dialog);
            return;
        };
        self.dialogs.insert(dialog, (key, Leg::Fork(i)));
        self.with_call(key, |core, call| {
            core.feed_dial(now, call, |core, call, run| {
                run.forks[i].dialog = Some(dialog);
                let fresh = core.fork_sdp(call, run, i, &r);
                if !fresh && run.forks[i].negotiated.is_none() {
                    tracing::warn!(call_sid = %run.forks[i].info.call_sid,
                        "2xx without a usable answer: hung up, 488");
                    if let Some(d) = run.forks[i].dialog.take() {
                        let _ = core.dl.bye(now, d);
                    }
                    return Some(DialEvent::Failed {
                        fork: ForkId(i),
                        status: 488,
                    });
                }
                Some(DialEvent::Answered { fork: ForkId(i) })
            })
        });
    }

    pub(super) fn on_fork_failed(&mut self, now: Instant, invite: InviteId, r: Option<Response>) {
        let Some((key, i)) = self.fork_of(invite) else {
            return;
        };
        self.uac.remove(&invite);
        let event = match &r {
            None => DialEvent::ForkTimedOut { fork: ForkId(i) },
            Some(r) if r.status.as_u16() < 400 => DialEvent::Redirected {
                fork: ForkId(i),
                status: r.status.as_u16(),
                contacts: r
                    .headers
                    .get_all(&HeaderName::CONTACT)
                    .flat_map(crate::message::split_list)
                    .filter_map(|c| NameAddr::parse("Contact", c).ok())
                    .map(|c| c.uri.to_string())
                    .collect(),
            },
            Some(r) => DialEvent::Failed {
                fork: ForkId(i),
                status: r.status.as_u16(),
            },
        };
        // A 3xx may be followed: the fork goes on.
        let why = match &r {
            Some(r) if r.status.as_u16() >= 400 => Some(Hangup::callee(Cause::Rejected)),
            Some(_) => None,
            None => Some(Hangup::system(Cause::NoResponse)),
        };
        let status = r.as_ref().map(|r| r.status.as_u16());
        self.with_call(key, |core, call| {
            core.feed_dial(now, call, |core, call, run| {
                // The caller hears nothing of a gateway that failed while another is left.
                if core.fail_over(now, call, run, i, status) {
                    return None;
                }
                // Its call with the carrier is over, whatever the dial does next.
                run.forks[i].carrier_slot = None;
                if let Some(why) = why {
                    run.forks[i].cdr.hung_up(why);
                }
                Some(event)
            })
        });
    }

    /// A carrier fork failed with `status` (`None`: no answer, unreachable): when that
    /// [`fails_over`], its gateway is reported and the next one gets the INVITE; whether one
    /// did.
    fn fail_over(
        &mut self,
        now: Instant,
        call: &mut Call,
        run: &mut DialRun,
        i: usize,
        status: Option<u16>,
    ) -> bool {
        let Some(route) = &mut run.forks[i].route else {
            return false;
        };
        if !fails_over(status) {
            return false;
        }
        if let Some(failed) = route.current() {
            self.gateways.call_failed(failed, status);
        }
        while let Some(route) = &mut run.forks[i].route
            && let Some(next) = route.advance(now)
        {
            tracing::info!(call_sid = %run.forks[i].info.call_sid, ?status,
                "failing over to the carrier's next gateway");
            if self
                .invite_fork(now, call, run, i, &next.uri, next.headers, next.caller_id)
                .is_ok()
            {
                return true;
            }
        }
        false
    }

    pub(super) fn on_dialog_terminated(
        &mut self,
        now: Instant,
        dialog: DialogId,
        reason: TerminationReason,
    ) {
        let Some((key, leg)) = self.dialogs.remove(&dialog) else {
            return;
        };
        let by_peer = reason != TerminationReason::LocalBye;
        self.with_call(key, |core, call| match leg {
            Leg::Caller => {
                if by_peer && call.dialog == Some(dialog) {
                    // An early dialog ends by CANCEL (or a failure), a confirmed one by BYE.
                    let status = if call.answered() { 200 } else { 487 };
                    core.caller_gone(now, call, status);
                }
            }
            Leg::Fork(i) => {
                if !by_peer {
                    return;
                }
                let hangup = Hangup::callee(Cause::Bye);
                if matches!(&call.step, Step::Dial(run) if run.bridged == Some(i)) {
                    // The caller's leg ends with it unless the app goes on.
                    call.cdr.hung_up(hangup);
                }
                core.feed_dial(now, call, |_, _, run| {
                    run.forks[i].cdr.hung_up(hangup);
                    run.forks[i].dialog = None;
                    if run.forks[i].screen.take().is_some() {
                        return Some(DialEvent::ConfirmDeclined {
                            fork: ForkId(i),
                            by_callee: true,
                        });
                    }
                    (run.bridged == Some(i)).then_some(DialEvent::BridgeEnded { by_callee: true })
                });
            }
        });
    }

    /// Requests inside a dialog: re-INVITE/UPDATE carried to the other leg, REFER to the
    /// referHook, the rest answered here.
    pub(super) fn on_in_dialog_request(
        &mut self,
        now: Instant,
        dialog: DialogId,
        key: TransactionKey,
        request: Request,
    ) {
        let Some(&(call_key, leg)) = self.dialogs.get(&dialog) else {
            let _ = self.dl.respond(
                now,
                &key,
                Reply::new(StatusCode::CALL_OR_TRANSACTION_DOES_NOT_EXIST),
            );
            return;
        };
        self.with_call(call_key, |core, call| {
            let method = request.method.clone();
            if method == Method::REFER {
                return core.on_refer(now, call, leg, dialog, key, &request);
            }
            if (method == Method::INVITE || method == Method::UPDATE) && !request.body.is_empty() {
                return core.on_reoffer(now, call, leg, key, &request);
            }
            if method == Method::INFO {
                return core.on_info(now, call, leg, key, &request);
            }
            // Refreshes without SDP, INFO, OPTIONS, MESSAGE: accepted here; a refresh keeps
            // our description.
            let mut reply = Reply::new(StatusCode::OK);
            if method == Method::INVITE {
                let body = match leg {
                    Leg::Caller => call.answer.as_ref().map(|(b, _)| b.clone()),
                    Leg::Fork(i) => match &call.step {
                        Step::Dial(run) => run.forks[i]
                            .offer
                            .as_ref()
                            .map(|o| Bytes::from(o.serialize())),
                        _ => None,
                    },
                };
                if let Some(b) = body {
                    reply = reply.body(Body::new(SDP, b));
                }
            }
            let _ = core.dl.respond(now, &key, reply);
        });
    }

    /// A new offer on one leg of a bridge: answered from our side with the same codecs and
    /// ports, the new direction (hold, resume) applied to its media leg and told to the other
    /// leg with a re-INVITE of our own.
    fn on_reoffer(
        &mut self,
        now: Instant,
        call: &mut Call,
        leg: Leg,
        key: TransactionKey,
        request: &Request,
    ) {
        let Ok(offer) = SessionDescription::parse_bytes(&request.body) else {
            let _ = self
                .dl
                .respond(now, &key, Reply::new(StatusCode::BAD_REQUEST));
            return;
        };
        let (port, codecs, media_leg) = match leg {
            Leg::Caller => (
                call.port,
                call.answer.as_ref().map(|(_, n)| codecs_of(n)),
                Some(LegId(0)),
            ),
            Leg::Fork(i) => match &call.step {
                Step::Dial(run) => (
                    run.port_of(i).unwrap_or(0),
                    run.forks[i].negotiated.as_ref().map(codecs_of),
                    run.media_leg(i),
                ),
                _ => (0, None, None),
            },
        };
        // The leg's codecs first (kept when offered again), then what the relay transcodes: an
        // offer that drops the old codec (PCMU → Opus) moves the leg to the new one.
        let codecs = transcode::fork_codecs(codecs.unwrap_or_default());
        let mut l = local(call.key, self.svc.media_ip, port, codecs);
        l.srtp = srtp::answer_keys(&offer);
        l.origin.session_version = call.next_sdp_version();
        let Some((sdp, n)) = answer(&offer, &l) else {
            let _ = self
                .dl
                .respond(now, &key, Reply::new(StatusCode::NOT_ACCEPTABLE_HERE));
            return;
        };
        if let Some(media_leg) = media_leg {
            self.update_leg(call, media_leg, &n);
        }
        let _ = self.dl.respond(
            now,
            &key,
            Reply::new(StatusCode::OK).body(Body::new(SDP, sdp.serialize())),
        );
        // The other side hears of the new direction (hold/resume) with the same codecs.
        let other = match (leg, &call.step) {
            (Leg::Caller, Step::Dial(run)) => run.bridged.and_then(|i| {
                let f = &run.forks[i];
                Some((f.dialog?, run.port_of(i)?, f.negotiated.as_ref()?))
            }),
            (Leg::Fork(_), _) => call
                .dialog
                .zip(call.answer.as_ref())
                .map(|(d, (_, n))| (d, call.port, n)),
            _ => None,
        }
        .map(|(d, port, n)| (d, port, codecs_of(n), srtp::our_key(n)));
        if let Some((d, port, codecs, keys)) = other {
            let mut l = local(call.key, self.svc.media_ip, port, codecs);
            // The stream stays SRTP with the same key.
            l.srtp = keys;
            l.origin.session_version = call.next_sdp_version();
            // The other side hears what this side offered: its sendonly (hold) is our
            // sendonly towards the other side.
            l.direction = n.direction.reversed();
            let body = sdp::offer(&l).serialize();
            let _ = self.dl.request(
                now,
                d,
                Outgoing::new(request.method.clone()).body(Body::new(SDP, body)),
            );
        }
    }

    /// The answer to our re-INVITE/UPDATE on the other leg: its SDP goes to its media leg.
    pub(super) fn on_in_dialog_response(&mut self, dialog: DialogId, r: Response) {
        let Some(&(key, leg)) = self.dialogs.get(&dialog) else {
            return;
        };
        if !r.status.is_success() || r.body.is_empty() {
            return;
        }
        self.with_call(key, |core, call| {
            let Ok(a) = SessionDescription::parse_bytes(&r.body) else {
                return;
            };
            // What we offered carried the same codecs and key as before: match against those.
            let ours = match leg {
                Leg::Caller => call.answer.as_ref().map(|(_, n)| (call.port, n)),
                Leg::Fork(i) => match &call.step {
                    Step::Dial(run) => run.forks[i]
                        .negotiated
                        .as_ref()
                        .zip(run.port_of(i))
                        .map(|(n, p)| (p, n)),
                    _ => None,
                },
            };
            let Some(ours) = ours.map(|(port, n)| {
                let mut l = local(call.key, core.svc.media_ip, port, codecs_of(n));
                l.srtp = srtp::our_key(n);
                l
            }) else {
                return;
            };
            let media_leg = match (leg, &call.step) {
                (Leg::Caller, _) => Some(LegId(0)),
                (Leg::Fork(i), Step::Dial(run)) => run.media_leg(i),
                _ => None,
            };
            if let Some(media_leg) = media_leg
                && let Ok(Some(n)) = sdp::accept_answer(&sdp::offer(&ours), &a)
            {
                core.update_leg(call, media_leg, &n);
            }
        });
    }

    /// REFER: to the referHook (202 if it answers 2xx), 501 without one.
    fn on_refer(
        &mut self,
        now: Instant,
        call: &mut Call,
        leg: Leg,
        dialog: DialogId,
        key: TransactionKey,
        request: &Request,
    ) {
        let Some(hook) = call.refer_hook.clone() else {
            let _ = self
                .dl
                .respond(now, &key, Reply::new(StatusCode::NOT_IMPLEMENTED));
            return;
        };
        let refer_to = request
            .headers
            .get(&HeaderName::REFER_TO)
            .unwrap_or_default()
            .to_string();
        let referred_by = request
            .headers
            .get(&HeaderName::REFERRED_BY)
            .unwrap_or_default()
            .to_string();
        let info = match leg {
            Leg::Caller => {
                call.refer = Some(key);
                call.info.clone()
            }
            Leg::Fork(i) => match &mut call.step {
                Step::Dial(run) => {
                    run.forks[i].refer = Some(key);
                    run.forks[i].info.clone()
                }
                _ => call.info.clone(),
            },
        };
        let payload = ReferPayload {
            call: info,
            event: "refer",
            refer_details: ReferDetails {
                sip_refer_to: refer_to.clone(),
                sip_referred_by: referred_by,
                refer_to_user: Uri::parse(refer_to.trim_matches(|c| c == '<' || c == '>'))
                    .ok()
                    .and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
                    .unwrap_or_default(),
            },
        };
        self.send_hook(call, &hook, Some(HookPurpose::Refer(dialog)), payload);
    }

    pub(super) fn on_rest(&mut self, now: Instant, call: &mut Call, leg: Leg, update: CallUpdate) {
        if matches!(update, CallUpdate::CallStatus(_)) {
            call.cdr.hung_up(Hangup::system(Cause::Rest));
        }
        match update {
            CallUpdate::CallStatus(rest::CallStatus::Completed) => match (&mut call.step, leg) {
                (Step::Dial(run), Leg::Fork(_)) => {
                    run.dial.handle(now, DialEvent::HangUp);
                    self.drain_dial(now, call);
                }
                (Step::Dial(run), Leg::Caller) => {
                    call.app.end();
                    run.dial.handle(now, DialEvent::HangUp);
                    self.drain_dial(now, call);
                    if !call.is_over() && !matches!(call.step, Step::Dial(_)) {
                        call.step = Step::Idle;
                        self.hang_up_caller(now, call, StatusCode::REQUEST_TERMINATED, Vec::new());
                    }
                }
                _ => {
                    call.app.end();
                    call.step = Step::Idle;
                    self.hang_up_caller(now, call, StatusCode::REQUEST_TERMINATED, Vec::new());
                }
            },
            CallUpdate::CallStatus(rest::CallStatus::NoAnswer) => {
                if let Step::Dial(run) = &mut call.step {
                    run.dial.handle(now, DialEvent::CancelRinging);
                    self.drain_dial(now, call);
                }
            }
            CallUpdate::MuteStatus(m) => {
                let media_leg = match (leg, &call.step) {
                    (Leg::Caller, _) => Some(LegId(0)),
                    (Leg::Fork(i), Step::Dial(run)) => run.media_leg(i),
                    _ => None,
                };
                if let Some(leg) = media_leg {
                    self.post_media(MediaCommand::BlockMedia {
                        call_id: call.media_id(),
                        leg,
                        blocked: m == rest::MuteStatus::Mute,
                    });
                }
            }
            CallUpdate::ListenStatus(s) => {
                if !call.streams.set(s) {
                    ignored("listen_status_without_stream");
                }
            }
            CallUpdate::Dub(list) => {
                for d in list {
                    self.rest_dub(call, d);
                }
            }
            CallUpdate::Dtmf(d) => self.send_dtmf(call, leg, &d),
        }
    }

    pub(super) fn on_media(&mut self, now: Instant, call: &mut Call, e: MediaEvent) {
        match e {
            MediaEvent::MediaTimeout { leg, .. } => {
                tracing::info!(call_sid = %call.sid, %leg, "media timeout: hanging up");
                self.terminate(now, call, Cause::MediaTimeout);
            }
            MediaEvent::Error { leg, error, .. } => {
                tracing::warn!(call_sid = %call.sid, ?leg, %error, "media command failed");
            }
            MediaEvent::Digit {
                leg,
                digit,
                source,
                duration_ms,
                ..
            } => {
                // The caller's keys also go to listen streams (passDtmf, finishOnKey).
                if leg == LegId(0) {
                    call.streams.digit(digit, duration_ms);
                }
                self.on_media_digit(now, call, leg, digit, source);
            }
            MediaEvent::PlayDone { leg, .. } => self.on_play_done(now, call, leg),
            MediaEvent::Amd { leg, event, .. } => self.on_amd(now, call, leg, event),
            _ => {}
        }
    }

    /// Ends the whole call from our side (`cause`: why, for the CDRs): forks cancelled or hung
    /// up, the caller too.
    pub(super) fn terminate(&mut self, now: Instant, call: &mut Call, cause: Cause) {
        call.cdr.hung_up(Hangup::system(cause));
        call.app.end();
        if let Step::Dial(run) = &mut call.step {
            run.dial.handle(now, DialEvent::HangUp);
            self.drain_dial(now, call);
        }
        if !call.is_over() {
            call.step = Step::Idle;
            self.hang_up_caller(now, call, StatusCode::REQUEST_TIMEOUT, Vec::new());
        }
    }
}

/// The media leg every fork of a dial offers (leg 0 is the caller's). Forks share it, as one
/// rtpengine offer serves all branches of a forking proxy: only the fork that answers (or, alone,
/// sends early media) is ever bridged, its answer points the leg at it and latching starts over,
/// and a leg per fork would cost sockets, ports and shard work for media that never flows.
pub(super) const FORK_LEG: LegId = LegId(1);

fn extra_headers(h: &std::collections::BTreeMap<String, String>) -> Vec<(HeaderName, String)> {
    extra_headers_owned(h.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

fn extra_headers_owned(h: Vec<(String, String)>) -> Vec<(HeaderName, String)> {
    h.into_iter()
        .filter_map(|(n, v)| {
            let valid = !v.contains(['\r', '\n']);
            Some((HeaderName::new(&n).filter(|_| valid)?, v))
        })
        .collect()
}

fn status_label(s: CallStatus) -> &'static str {
    match s {
        CallStatus::Completed => "completed",
        CallStatus::Busy => "busy",
        CallStatus::NoAnswer => "no-answer",
        _ => "failed",
    }
}

/// The caller's call info from its INVITE.
fn caller_info(r: &Request, sid: CallSid, account: &str, local: std::net::SocketAddr) -> CallInfo {
    let from = r.headers.from().ok();
    let user_of = |u: &Uri| {
        u.as_sip()
            .and_then(|s| s.user.clone())
            .unwrap_or_else(|| u.to_string())
    };
    CallInfo {
        call_sid: sid,
        parent_call_sid: None,
        direction: Direction::Inbound,
        from: from.as_ref().map(|f| user_of(&f.uri)).unwrap_or_default(),
        to: user_of(&r.uri),
        call_id: r.headers.call_id().unwrap_or_default().to_string(),
        caller_name: from
            .and_then(|f| f.display)
            .unwrap_or_default()
            .trim_matches('"')
            .to_string(),
        sip_status: 100,
        call_status: CallStatus::Trying,
        account_sid: account.to_string(),
        local_sip_address: local.to_string(),
    }
}

/// A fork's call info: the caller's, with its own sid, the parent's, and its target.
fn fork_info(parent: &CallInfo, sid: CallSid, to: &str) -> CallInfo {
    let to = Uri::parse(to)
        .ok()
        .and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
        .unwrap_or_else(|| to.to_string());
    CallInfo {
        call_sid: sid,
        parent_call_sid: Some(parent.call_sid),
        direction: Direction::Outbound,
        to,
        sip_status: 100,
        call_status: CallStatus::Trying,
        ..parent.clone()
    }
}

fn sip_info(r: &Request) -> SipRequestInfo {
    SipRequestInfo::new(
        r.method.as_str(),
        &r.uri.to_string(),
        r.headers.iter().map(|(n, v)| (n.as_str(), v)),
        &String::from_utf8_lossy(&r.body),
    )
}

/// The referHook's body: the leg's call info and what the REFER asked
#[derive(serde::Serialize)]
struct ReferPayload {
    #[serde(flatten)]
    call: CallInfo,
    event: &'static str,
    refer_details: ReferDetails,
}

#[derive(serde::Serialize)]
struct ReferDetails {
    sip_refer_to: String,
    sip_referred_by: String,
    refer_to_user: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    fn invite() -> Request {
        let text = "INVITE sip:+15551230000@127.0.0.1:5060 SIP/2.0\r\n\
            Via: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK1\r\n\
            From: \"Alice Smith\" <sip:+15089991111@127.0.0.1>;tag=a1\r\n\
            To: <sip:+15551230000@127.0.0.1>\r\nCall-ID: c1@host\r\nCSeq: 1 INVITE\r\n\
            Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            Message::Response(_) => unreachable!(),
        }
    }

    #[test]
    fn call_info_of_the_caller_and_a_fork() {
        let sid = CallSid::new_random();
        let local = "127.0.0.1:5060".parse().unwrap();
        let info = caller_info(&invite(), sid, "acct", local);
        assert_eq!(info.from, "+15089991111");
        assert_eq!(info.to, "+15551230000");
        assert_eq!(info.caller_name, "Alice Smith");
        assert_eq!(info.call_id, "c1@host");
        assert_eq!(info.direction, Direction::Inbound);
        let fork_sid = CallSid::new_random();
        let fork = fork_info(&info, fork_sid, "sip:bob@10.0.0.2:5070");
        assert_eq!(fork.to, "bob");
        assert_eq!(fork.parent_call_sid, Some(sid));
        assert_eq!(fork.direction, Direction::Outbound);
        assert_eq!(fork.call_status, CallStatus::Trying);
    }

    #[test]
    fn app_headers_cannot_inject_lines() {
        let h = extra_headers_owned(vec![
            ("X-Ok".into(), "1".into()),
            ("X-Bad".into(), "1\r\nVia: evil".into()),
            ("Bad Name".into(), "1".into()),
        ]);
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].0.as_str(), "X-Ok");
    }

    #[test]
    fn next_hops_are_ip_literals_or_hints() {
        let mut hints = std::collections::HashMap::new();
        let r = |s: &str, h: &std::collections::HashMap<String, std::net::SocketAddr>| {
            super::super::resolve(&Uri::parse(s).unwrap(), h, &crate::dns::Pins::default())
        };
        assert_eq!(
            r("sip:a@127.0.0.1", &hints),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            r("sip:a@[::1]:5070", &hints),
            Some("[::1]:5070".parse().unwrap())
        );
        assert_eq!(
            r("sip:a@example.com", &hints),
            None,
            "names go through DNS first"
        );
        hints.insert(
            "sip:a@10.0.0.9:5060".to_string(),
            "192.0.2.1:40000".parse().unwrap(),
        );
        assert_eq!(
            r("sip:a@10.0.0.9:5060", &hints),
            Some("192.0.2.1:40000".parse().unwrap())
        );
    }
}
