//! REST createCall: a call we place ourselves (direction `outbound-api`)
//!
//! The callee's leg is the call's own leg (media leg 0, the dialog of [`Call::dialog`]), as the
//! caller's is for an inbound call: once it answers, `call_hook` is fetched with the call's info
//! and its verbs run on it exactly as an inbound call's would (a `dial` from there bridges the
//! callee to the dialled party), with `amd` on it when asked for. Our offer carries PCMU, PCMA and
//! telephone-event. The ring timeout (`timeout`) CANCELs the INVITE; a final failure (busy, no
//! answer, an error) ends the call, whose status hook (`call_status_hook`, else `[app]
//! status_hook`) reports it as for any leg.

use std::time::{Duration, Instant};

use ::media::api::{CallId as MediaCallId, LegId};
use bytes::Bytes;

use super::{Call, Core, HookPurpose, Leg, SDP, Step, extra_headers_owned, local};
use crate::cdr::{Cause, Hangup};
use crate::create_call::{CreateCall, CreateCallError};
use crate::dial::Destination;
use crate::dialog::{Body, DialogId, InviteId, InviteRequest};
use crate::dns::{self, Plan};
use crate::message::{HeaderName, Method, NameAddr, Request, Response, Uri};
use crate::payload::{CallInfo, CallSid, CallStatus, Direction, SessionPayload};
use crate::sdp::{self, Codec, SessionDescription};
use crate::verbs::{self, Hook};
use crate::webhook::HookBase;

/// What a REST-created call keeps until it is answered
pub(in crate::b2bua) struct Outbound {
    /// Our INVITE while it has no final answer.
    invite: Option<InviteId>,
    /// The ring timeout.
    ring_until: Instant,
    call_hook: Hook,
    amd: Option<verbs::Amd>,
    /// `tag`, handed back as `customerData` in the call hook.
    tag: Option<serde_json::Value>,
}

impl Outbound {
    /// The ring timeout, while ringing.
    pub(in crate::b2bua) fn deadline(&self) -> Option<Instant> {
        self.invite.map(|_| self.ring_until)
    }
}

/// The call hook of a REST-created call: the session payload and the request's `tag`
#[derive(serde::Serialize)]
struct OutboundPayload {
    #[serde(flatten)]
    session: SessionPayload,
    #[serde(rename = "customerData", skip_serializing_if = "Option::is_none")]
    customer_data: Option<serde_json::Value>,
}

/// What we offer: G.711 both laws and RFC 4733.
fn offer_codecs() -> Vec<Codec> {
    let mut event = Codec::new(101, "telephone-event", 8000, None);
    event.fmtp = Some("0-16".into());
    vec![
        Codec::new(0, "PCMU", 8000, None),
        Codec::new(8, "PCMA", 8000, None),
        event,
    ]
}

impl Core {
    /// Places the call `req` asks for; its call_sid. The INVITE is sent at once; what happens
    /// next comes to the call as for any leg.
    pub(in crate::b2bua) fn create_call(
        &mut self,
        now: Instant,
        account_sid: &str,
        req: CreateCall,
    ) -> Result<CallSid, CreateCallError> {
        let config = self.svc.config.clone();
        if account_sid != config.app.account_sid {
            return Err(CreateCallError::UnknownAccount);
        }
        // Relative hooks resolve against the call hook, which has nothing to resolve against.
        let hook_base = HookBase::from_hook(&req.call_hook).map_err(|_| {
            CreateCallError::Bad("call_hook: an absolute http(s) URL expected".into())
        })?;
        if self.draining.is_some() {
            return Err(CreateCallError::Unavailable("shutting down"));
        }
        let resolved = self
            .resolve_target(&config, &req.to.kind)
            .into_iter()
            .find_map(|r| match &r.destination {
                Destination::Uri(u) => Some((u.clone(), r)),
                Destination::Unroutable(_) => None,
            });
        let Some((uri, resolved)) = resolved else {
            return Err(CreateCallError::Unroutable(
                "to: no route to this target".into(),
            ));
        };
        let target = Uri::parse(&uri)
            .map_err(|_| CreateCallError::Unroutable(format!("to: {uri:?} is not a SIP URI")))?;
        if let Some(sip) = target.as_sip()
            && matches!(dns::plan(sip), Plan::Lookup { .. })
            && !self.hints.contains_key(&uri)
        {
            return Err(CreateCallError::Unroutable(format!(
                "to: {uri}: host names are not looked up for createCall, give an address"
            )));
        }
        let sid = CallSid::new_random();
        let media_id = MediaCallId(sid.to_string());
        let port = self
            .create_leg(&media_id, LegId(0))
            .ok_or(CreateCallError::Unavailable("no media ports"))?;
        let key = self.next_key;
        self.next_key += 1;
        let offer = sdp::offer(&local(key, self.svc.media_ip, port, offer_codecs()));
        let from_uri = Uri::parse(&format!("sip:{}@{}", req.from, self.sent_by))
            .map_err(|_| CreateCallError::Unroutable("from: not a SIP user".into()))?;
        let mut from = NameAddr::new(from_uri);
        from.display.clone_from(&req.caller_name);
        let mut spec = InviteRequest::new(target.clone(), from.clone(), NameAddr::new(target));
        let mut headers: Vec<(String, String)> = req.headers.0.clone().into_iter().collect();
        headers.extend(resolved.headers);
        spec.headers.extend(extra_headers_owned(headers));
        let body = Bytes::from(offer.serialize());
        spec.body = Some(Body::new(SDP, body.clone()));
        spec.login = resolved.login;
        let invite = self.dl.invite(now, spec).map_err(|e| {
            tracing::warn!(error = %e, "createCall: INVITE not sent");
            CreateCallError::Unavailable("the INVITE could not be sent")
        })?;
        let call_id = self
            .dl
            .invite_call_id(invite)
            .unwrap_or_default()
            .to_string();
        // Our INVITE as the call's request: what the call hook shows as `sip`.
        let request = Request::new(Method::INVITE, Uri::parse(&uri).expect("parsed above"))
            .with_header(HeaderName::FROM, &from)
            .with_header(HeaderName::TO, format!("<{uri}>"))
            .with_header(HeaderName::CALL_ID, &call_id)
            .with_body(SDP, body);
        let to = target_user(&uri);
        let info = CallInfo {
            call_sid: sid,
            parent_call_sid: None,
            direction: Direction::OutboundApi,
            from: req.from.clone(),
            to,
            call_id,
            caller_name: req.caller_name.clone().unwrap_or_default(),
            sip_status: 100,
            call_status: CallStatus::Trying,
            account_sid: config.app.account_sid.clone(),
            local_sip_address: self.sent_by.to_string(),
        };
        let registrations = self
            .rest_registration(sid, &config.app.account_sid)
            .into_iter()
            .collect();
        let mut call = Call::new(
            key,
            sid,
            config,
            info,
            request,
            offer,
            port,
            registrations,
            now,
        );
        call.hook_base = Some(hook_base);
        call.carrier = resolved.carrier;
        call.outbound = Some(Box::new(Outbound {
            invite: Some(invite),
            ring_until: now + Duration::from_secs(req.timeout.into()),
            call_hook: req.call_hook,
            amd: req.amd,
            tag: req.tag,
        }));
        metrics::counter!("dialplane_rest_calls_created_total").increment(1);
        self.outbound.insert(invite, key);
        self.admit(&mut call, req.call_status_hook);
        tracing::info!(call_sid = %sid, %uri, "createCall: calling");
        self.calls.insert(key, call);
        self.with_call(key, |_, _| {});
        Ok(sid)
    }

    /// A provisional response to our INVITE.
    pub(in crate::b2bua) fn on_outbound_progress(&mut self, invite: InviteId, r: &Response) {
        let Some(&key) = self.outbound.get(&invite) else {
            return;
        };
        let status = r.status.as_u16();
        self.with_call(key, |core, call| {
            if status >= 180 {
                call.info.call_status = CallStatus::Ringing;
                call.info.sip_status = status;
                core.status_hook(call, &call.info.clone());
            }
        });
    }

    /// Our INVITE was answered: the call hook is fetched, its verbs run on this leg.
    pub(in crate::b2bua) fn on_outbound_answered(
        &mut self,
        now: Instant,
        invite: InviteId,
        dialog: DialogId,
        r: &Response,
    ) {
        let Some(key) = self.outbound.remove(&invite) else {
            return;
        };
        self.dialogs.insert(dialog, (key, Leg::Caller));
        self.with_call(key, |core, call| {
            let Some(out) = call.outbound.as_mut() else {
                return;
            };
            out.invite = None;
            let (hook, amd, tag) = (out.call_hook.clone(), out.amd.clone(), out.tag.take());
            call.dialog = Some(dialog);
            let negotiated = SessionDescription::parse_bytes(&r.body)
                .ok()
                .and_then(|a| sdp::accept_answer(&call.offer, &a).ok().flatten());
            let Some(n) = negotiated else {
                tracing::warn!(call_sid = %call.sid, "createCall: answer without a usable SDP: hung up, 488");
                call.cdr.hung_up(Hangup::system(Cause::NoCodec));
                call.answered_at = Some(now);
                call.step = Step::Idle;
                return core.hang_up_caller(now, call, crate::message::StatusCode::NOT_ACCEPTABLE_HERE, Vec::new());
            };
            core.update_leg(call, LegId(0), &n);
            call.answer = Some((Bytes::from(call.offer.serialize()), n));
            call.answered_at = Some(now);
            call.info.call_status = CallStatus::InProgress;
            call.info.sip_status = 200;
            core.status_hook(call, &call.info.clone());
            let payload = OutboundPayload {
                session: SessionPayload {
                    call: call.info.clone(),
                    sip: super::sip_info(&call.request),
                },
                customer_data: tag,
            };
            core.send_hook(call, &hook, Some(HookPurpose::App), payload);
            if let Some(amd) = amd {
                let sid = call.sid;
                core.start_amd(now, call, &amd, LegId(0), sid);
            }
        });
    }

    /// Our INVITE failed (`None`: no final answer): the call ends with that status.
    pub(in crate::b2bua) fn on_outbound_failed(
        &mut self,
        now: Instant,
        invite: InviteId,
        r: Option<&Response>,
    ) {
        let Some(key) = self.outbound.remove(&invite) else {
            return;
        };
        let status = r.map_or(408, |r| r.status.as_u16());
        self.with_call(key, |core, call| {
            if let Some(out) = call.outbound.as_mut() {
                out.invite = None;
            }
            tracing::info!(call_sid = %call.sid, status, "createCall: not answered");
            call.cdr.final_code = Some(status);
            call.cdr.hung_up(match r {
                Some(_) => Hangup::callee(Cause::Rejected),
                None => Hangup::system(Cause::NoResponse),
            });
            call.info.sip_status = status;
            call.app.end();
            call.step = Step::Idle;
            core.end(now, call);
        });
    }

    /// The ring timeout passed: the INVITE is cancelled (its 487 ends the call).
    pub(in crate::b2bua) fn outbound_timer(&mut self, now: Instant, call: &mut Call) {
        let due = call
            .outbound
            .as_ref()
            .and_then(|o| o.deadline())
            .is_some_and(|d| d <= now);
        if due {
            call.cdr.hung_up(Hangup::system(Cause::RingTimeout));
            self.outbound_cancel(now, call);
        }
    }

    /// CANCELs our INVITE while it has no final answer (the call is ending, or rang too long).
    pub(in crate::b2bua) fn outbound_cancel(&mut self, now: Instant, call: &mut Call) {
        if let Some(inv) = call.outbound.as_mut().and_then(|o| o.invite.take()) {
            let _ = self.dl.cancel(now, inv, None);
            // The 487 still ends the call when it is not over already.
            if call.is_over() {
                self.outbound.remove(&inv);
            }
        }
    }
}

/// The user part of a target URI (the whole URI when it has none).
fn target_user(uri: &str) -> String {
    Uri::parse(uri)
        .ok()
        .and_then(|u| u.as_sip().and_then(|s| s.user.clone()))
        .unwrap_or_else(|| uri.to_string())
}
