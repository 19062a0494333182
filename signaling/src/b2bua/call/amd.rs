//! `amd`: answering-machine detection on an answered leg
//!
//! When the dial's winning fork answers (or the callee of a REST-created call), the leg's media
//! gets a DSP tap with the detector (`dsp::amd`) and its timers: the verb's `amd.timers` over
//! the `[amd]` defaults. Each detector result goes to `amd.actionHook` with the call's info:
//!
//! | detector | `event` (spec) | `type` (jambonz) |
//! |---|---|---|
//! | human | `amd`, `amd_type: human` | `amd_human_detected` |
//! | machine | `amd`, `amd_type: machine` | `amd_machine_detected` |
//! | fax | `amd`, `amd_type: fax` | `amd_machine_detected`, `reason: fax` |
//! | nobody spoke | `silence` | `amd_no_speech_detected` |
//! | a beep ended | `beep` (with `frequency`) | `amd_tone_detected` |
//! | no decision in time | | `amd_decision_timeout` |
//! | a machine's greeting ended | | `amd_machine_stopped_speaking` |
//! | listening ends | | `amd_stopped` |
//!
//! Every payload has `at_ms` (counted from answer) except `amd_stopped`. The tap keeps listening
//! for a beep until `toneTimeoutMs` after answer (or until the decision, if that comes later),
//! then it is removed and `amd_stopped` is sent; the end of the dial stops it as well.
//! `disconnectOnAMD` hangs up the callee on a machine (or fax): the dial ends as if the callee
//! had hung up and the app goes on. A non-empty verb list answering any of these hooks replaces
//! the rest of the app and ends the dial (its actionHook is still sent, its answer ignored).

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use ::media::api::LegId;
use dsp::amd::{AmdConfig, AmdEvent, AmdType};

use super::{Call, Core, HookPurpose, Step};

/// The caller's leg; AMD on any other leg runs on a dial's callee (the shared fork leg, or a
/// fork's own leg in a confirmHook dial).
const CALL_LEG: LegId = LegId(0);
use crate::b2bua::Msg;
use crate::cdr::{Cause, Hangup};
use crate::config::AmdTimers;
use crate::dial::Event as DialEvent;
use crate::payload::{CallInfo, CallSid};
use crate::verbs::{self, Hook, Verb};

/// Detection running (or done) on one leg of a call
pub(in crate::b2bua) struct AmdRun {
    /// The hooks, sent one after the other (an app sees the events in order).
    hooks: mpsc::UnboundedSender<AmdPayload>,
    disconnect: bool,
    leg: LegId,
    /// The answered leg's call_sid: hook answers are for this run only.
    sid: CallSid,
    /// When the beep stops being listened for; `None` once the tap is removed.
    until: Option<Instant>,
    /// The detector decided (or gave up).
    decided: bool,
    /// A hook answered with verbs that replace the app.
    replaced: bool,
}

impl AmdRun {
    /// When the tap is to be removed: the tone timeout, once there is a decision (an undecided
    /// detector keeps listening until it decides or gives up).
    pub(in crate::b2bua) fn deadline(&self) -> Option<Instant> {
        self.until.filter(|_| self.decided)
    }
}

/// The detector's timers: the verb's over the configured defaults.
fn timers(defaults: &AmdTimers, o: Option<verbs::AmdTimersOverride>) -> AmdConfig {
    let o = o.unwrap_or_default();
    AmdConfig {
        no_speech_timeout_ms: o
            .no_speech_timeout_ms
            .unwrap_or(defaults.no_speech_timeout_ms),
        decision_timeout_ms: o
            .decision_timeout_ms
            .unwrap_or(defaults.decision_timeout_ms),
        tone_timeout_ms: o.tone_timeout_ms.unwrap_or(defaults.tone_timeout_ms),
        greeting_completion_timeout_ms: o
            .greeting_completion_timeout_ms
            .unwrap_or(defaults.greeting_completion_timeout_ms),
    }
}

/// The actionHook's body
#[derive(Debug, serde::Serialize)]
struct AmdPayload {
    #[serde(flatten)]
    call: CallInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amd_type: Option<&'static str>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frequency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    at_ms: Option<u64>,
}

impl AmdPayload {
    /// `amd_stopped` is a notification; the detector's results may answer with verbs.
    fn wants_verbs(&self) -> bool {
        self.kind != "amd_stopped"
    }
}

impl AmdPayload {
    fn new(call: CallInfo, kind: &'static str) -> Self {
        Self {
            call,
            event: None,
            amd_type: None,
            kind,
            reason: None,
            frequency: None,
            at_ms: None,
        }
    }

    fn of(call: CallInfo, e: AmdEvent) -> Self {
        match e {
            AmdEvent::Amd { amd_type, at_ms } => Self {
                event: Some("amd"),
                amd_type: Some(amd_type.as_str()),
                reason: (amd_type == AmdType::Fax).then_some("fax"),
                at_ms: Some(at_ms),
                ..Self::new(
                    call,
                    match amd_type {
                        AmdType::Human => "amd_human_detected",
                        AmdType::Machine | AmdType::Fax => "amd_machine_detected",
                    },
                )
            },
            AmdEvent::Silence { at_ms } => Self {
                event: Some("silence"),
                at_ms: Some(at_ms),
                ..Self::new(call, "amd_no_speech_detected")
            },
            AmdEvent::Beep {
                at_ms,
                frequency_hz,
            } => Self {
                event: Some("beep"),
                frequency: Some(frequency_hz),
                at_ms: Some(at_ms),
                ..Self::new(call, "amd_tone_detected")
            },
            AmdEvent::MachineStoppedSpeaking { at_ms } => Self {
                at_ms: Some(at_ms),
                ..Self::new(call, "amd_machine_stopped_speaking")
            },
            AmdEvent::DecisionTimeout { at_ms } => Self {
                at_ms: Some(at_ms),
                ..Self::new(call, "amd_decision_timeout")
            },
        }
    }
}

impl Core {
    /// Starts detection on `leg` (answered now, its call_sid `sid`) as `amd` asks.
    pub(in crate::b2bua) fn start_amd(
        &mut self,
        now: Instant,
        call: &mut Call,
        amd: &verbs::Amd,
        leg: LegId,
        sid: CallSid,
    ) {
        let config = timers(&call.config.amd, amd.timers);
        tracing::debug!(call_sid = %call.sid, %leg, ?config, "amd started");
        self.tap_amd(call, leg, Some(config));
        call.amd = Some(AmdRun {
            hooks: self.amd_hooks(call, &amd.action_hook, sid),
            disconnect: amd.disconnect_on_amd.unwrap_or(false),
            leg,
            sid,
            until: Some(now + Duration::from_millis(config.tone_timeout_ms.into())),
            decided: false,
            replaced: false,
        });
    }

    /// A detector result from the media plane.
    pub(in crate::b2bua) fn on_amd(
        &mut self,
        now: Instant,
        call: &mut Call,
        leg: LegId,
        event: AmdEvent,
    ) {
        let Some(run) = call
            .amd
            .as_mut()
            .filter(|r| r.leg == leg && r.until.is_some())
        else {
            return;
        };
        let machine = matches!(
            event,
            AmdEvent::Amd {
                amd_type: AmdType::Machine | AmdType::Fax,
                ..
            }
        );
        if matches!(
            event,
            AmdEvent::Amd { .. } | AmdEvent::Silence { .. } | AmdEvent::DecisionTimeout { .. }
        ) {
            run.decided = true;
        }
        tracing::info!(call_sid = %call.sid, ?event, "amd");
        let _ = run.hooks.send(AmdPayload::of(call.info.clone(), event));
        if run.disconnect && machine {
            tracing::info!(call_sid = %call.sid, "amd: machine, disconnectOnAMD: hanging up the callee");
            self.amd_hang_up(now, call, leg);
        }
    }

    /// disconnectOnAMD: the callee goes. A dial's ends (the app goes on); a REST-created call,
    /// whose callee is the call itself, ends.
    fn amd_hang_up(&mut self, now: Instant, call: &mut Call, leg: LegId) {
        call.cdr.hung_up(Hangup::system(Cause::App));
        match &mut call.step {
            Step::Dial(run) if leg != CALL_LEG => {
                run.dial.handle(now, DialEvent::HangUp);
                self.drain_dial(now, call);
            }
            _ if leg != CALL_LEG => {}
            _ => self.terminate(now, call, Cause::App),
        }
    }

    /// The tone timeout passed with a decision made: the tap goes.
    pub(in crate::b2bua) fn amd_timer(&mut self, now: Instant, call: &mut Call) {
        if call
            .amd
            .as_ref()
            .and_then(AmdRun::deadline)
            .is_some_and(|d| d <= now)
        {
            self.stop_amd(call);
        }
    }

    /// Removes the tap (when still there) and tells the hook with `amd_stopped`.
    fn stop_amd(&mut self, call: &mut Call) {
        let Some(run) = call.amd.as_mut() else { return };
        if run.until.take().is_none() {
            return;
        }
        let _ = run
            .hooks
            .send(AmdPayload::new(call.info.clone(), "amd_stopped"));
        let leg = run.leg;
        self.tap_amd(call, leg, None);
    }

    /// A task sending a run's hooks in order; the verbs they answer with come back as
    /// [`HookPurpose::Amd`]. It ends once the run is dropped and its queue is sent.
    fn amd_hooks(
        &self,
        call: &Call,
        hook: &Hook,
        sid: CallSid,
    ) -> mpsc::UnboundedSender<AmdPayload> {
        let (msgs, key) = (self.msgs_tx.clone(), call.key);
        self.hook_queue(
            call,
            hook.clone(),
            "amd hook",
            |p| p,
            move |payload: &AmdPayload, result| {
                if payload.wants_verbs() {
                    let purpose = HookPurpose::Amd(sid);
                    let _ = msgs.send(Msg::Hook {
                        call: key,
                        purpose,
                        result,
                    });
                }
            },
        )
    }

    /// The dial ended: detection on its leg stops. Whether an AMD hook replaced the app (the
    /// dial's actionHook is then not waited for).
    pub(in crate::b2bua) fn amd_dial_ended(&mut self, call: &mut Call) -> bool {
        if call.amd.as_ref().is_none_or(|r| r.leg == CALL_LEG) {
            return false;
        }
        self.stop_amd(call);
        call.amd.take().is_some_and(|r| r.replaced)
    }

    /// The call ended: detection on its own leg stops (tells the hook).
    pub(in crate::b2bua) fn amd_call_ended(&mut self, call: &mut Call) {
        self.stop_amd(call);
        call.amd = None;
    }

    /// An AMD hook answered: a verb list replaces the rest of the app, ending the dial it ran in.
    pub(in crate::b2bua) fn on_amd_reply(
        &mut self,
        now: Instant,
        call: &mut Call,
        sid: CallSid,
        verbs: Result<Vec<Verb>, String>,
    ) {
        let verbs = match verbs {
            Ok(v) if !v.is_empty() => v,
            Ok(_) => return,
            Err(e) => {
                return tracing::warn!(call_sid = %call.sid, error = %e,
                    "amd actionHook gave no verbs; the app goes on");
            }
        };
        let Some(run) = call.amd.as_mut().filter(|r| r.sid == sid) else {
            return tracing::info!(call_sid = %call.sid,
                "amd actionHook answered after its dial ended: verbs ignored");
        };
        tracing::info!(call_sid = %call.sid, verbs = verbs.len(), "amd actionHook replaces the app");
        run.replaced = true;
        call.app.replace_rest(verbs);
        match &mut call.step {
            Step::Dial(run) => {
                run.dial.handle(now, DialEvent::HangUp);
                self.drain_dial(now, call);
            }
            Step::Pause(_) | Step::WaitAction => {
                call.step = Step::Idle;
                self.advance(now, call);
            }
            Step::Idle | Step::WaitApp | Step::Over => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info() -> CallInfo {
        CallInfo {
            call_sid: CallSid::new_random(),
            parent_call_sid: None,
            direction: crate::payload::Direction::Inbound,
            from: "a".into(),
            to: "b".into(),
            call_id: "c".into(),
            caller_name: String::new(),
            sip_status: 200,
            call_status: crate::payload::CallStatus::InProgress,
            account_sid: "acct".into(),
            local_sip_address: "127.0.0.1:5060".into(),
        }
    }

    fn json(e: AmdEvent) -> serde_json::Value {
        serde_json::to_value(AmdPayload::of(info(), e)).unwrap()
    }

    #[test]
    fn payloads_carry_the_spec_and_jambonz_names() {
        let human = json(AmdEvent::Amd {
            amd_type: AmdType::Human,
            at_ms: 1200,
        });
        assert_eq!(human["event"], "amd");
        assert_eq!(human["amd_type"], "human");
        assert_eq!(human["type"], "amd_human_detected");
        assert_eq!(human["at_ms"], 1200);
        assert_eq!(human["call_status"], "in-progress");
        assert!(human.get("reason").is_none());
        let fax = json(AmdEvent::Amd {
            amd_type: AmdType::Fax,
            at_ms: 3,
        });
        assert_eq!(
            (&fax["amd_type"], &fax["type"], &fax["reason"]),
            (&"fax".into(), &"amd_machine_detected".into(), &"fax".into())
        );
        let beep = json(AmdEvent::Beep {
            at_ms: 5000,
            frequency_hz: 1000,
        });
        assert_eq!(
            (&beep["event"], &beep["type"], &beep["frequency"]),
            (&"beep".into(), &"amd_tone_detected".into(), &1000.into())
        );
        let silence = json(AmdEvent::Silence { at_ms: 5000 });
        assert_eq!(
            (&silence["event"], &silence["type"]),
            (&"silence".into(), &"amd_no_speech_detected".into())
        );
        let timeout = json(AmdEvent::DecisionTimeout { at_ms: 15000 });
        assert!(timeout.get("event").is_none());
        assert_eq!(timeout["type"], "amd_decision_timeout");
        let stopped = json(AmdEvent::MachineStoppedSpeaking { at_ms: 7000 });
        assert_eq!(stopped["type"], "amd_machine_stopped_speaking");
    }

    #[test]
    fn verb_timers_override_the_configured_ones() {
        let defaults = AmdTimers::default();
        let c = timers(
            &defaults,
            Some(verbs::AmdTimersOverride {
                tone_timeout_ms: Some(3000),
                ..Default::default()
            }),
        );
        assert_eq!(c.tone_timeout_ms, 3000);
        assert_eq!(c.no_speech_timeout_ms, defaults.no_speech_timeout_ms);
        assert_eq!(timers(&defaults, None), AmdConfig::from(defaults));
    }
}
