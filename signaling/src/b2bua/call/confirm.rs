//! confirmHook: the screening app run on an answered fork's leg before it may be bridged
//!
//! When a fork with a confirmHook answers, the dial asks for [`Action::RunConfirm`]
//! (crate::dial::Action::RunConfirm): the hook is POSTed the fork's call info and answers with
//! verbs, run here on that callee's own media leg while the other forks keep ringing: `play`
//! (a file through [`crate::media_files`], played into the leg until media reports it done),
//! `pause`, `gather` of DTMF keys (numDigits, finishOnKey, timeout; its actionHook is POSTed `{digits,
//! reason}` and its verbs replace the rest of the screening app) and `hangup`. Other verbs are
//! skipped with an error line. The app running out with the callee still there confirms the
//! fork; `hangup`, a failed hook or the callee's BYE decline it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::media::api::{Command as MediaCommand, LegId};

use super::super::Msg;
use super::{Call, Core, DialRun, HookPurpose, Leg, Step};
use crate::dial::{Event as DialEvent, ForkId};
use crate::media_files::MediaFileError;
use crate::payload::{CallInfo, CallSid};
use crate::verbs::{Gather, Verb};

/// One fork's screening app
pub(in crate::b2bua) struct Screening {
    verbs: VecDeque<Verb>,
    state: State,
}

enum State {
    /// Waiting for the confirmHook's (or a gather actionHook's) verbs.
    WaitHook,
    /// `pause` until then.
    Pause(Instant),
    /// `play`: fetching the file (false), then playing it until media says it is done.
    Play { playing: bool },
    /// `gather`: the keys so far; the input ends at `deadline` without another key.
    Gather {
        gather: Gather,
        digits: String,
        deadline: Instant,
    },
}

impl Screening {
    /// Its timer: a pause's end or a gather's timeout.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::WaitHook | State::Play { .. } => None,
            State::Pause(at) => Some(*at),
            State::Gather { deadline, .. } => Some(*deadline),
        }
    }
}

/// A gather actionHook's body: the leg's call info, the keys and why the input ended
#[derive(serde::Serialize)]
struct GatherPayload {
    #[serde(flatten)]
    call: CallInfo,
    digits: String,
    reason: &'static str,
}

impl Core {
    /// [`crate::dial::Action::RunConfirm`]: fetch fork `i`'s screening app; the event to feed
    /// back at once when there is nothing to run.
    pub(super) fn start_confirm(
        &mut self,
        call: &mut Call,
        run: &mut DialRun,
        i: usize,
    ) -> Option<DialEvent> {
        let f = &mut run.forks[i];
        let Some(hook) = f.confirm_hook.clone() else {
            return Some(DialEvent::Confirmed { fork: ForkId(i) });
        };
        tracing::debug!(call_sid = %f.info.call_sid, "confirmHook: screening the callee");
        f.screen = Some(Screening {
            verbs: VecDeque::new(),
            state: State::WaitHook,
        });
        let purpose = HookPurpose::Confirm(f.info.call_sid);
        let info = f.info.clone();
        // Keys pressed in band count too.
        if let Some(leg) = run.media_leg(i) {
            self.tap_dtmf(call, leg, super::dtmf::TapUser::Confirm, true);
        }
        self.send_hook(call, &hook, Some(purpose), info);
        None
    }

    /// The screening app's verbs (from the confirmHook or a gather's actionHook) came back.
    pub(super) fn on_confirm_hook(
        &mut self,
        now: Instant,
        call: &mut Call,
        fork: CallSid,
        verbs: Result<Vec<Verb>, String>,
    ) {
        if !matches!(call.step, Step::Dial(_)) {
            return;
        }
        self.feed_dial(now, call, |core, call, run| {
            let i = run.forks.iter().position(|f| f.info.call_sid == fork)?;
            let s = run.forks[i].screen.as_mut()?;
            if !matches!(s.state, State::WaitHook) {
                return None;
            }
            match verbs {
                Ok(v) => s.verbs = v.into(),
                Err(e) => {
                    tracing::warn!(call_sid = %fork, error = %e,
                        "screening app not fetched: the callee is declined");
                    run.forks[i].screen = None;
                    return Some(DialEvent::ConfirmDeclined {
                        fork: ForkId(i),
                        by_callee: false,
                    });
                }
            }
            core.screen_run(now, call, run, i)
        });
    }

    /// A screening app's file was fetched: played into the fork's leg, or skipped.
    pub(in crate::b2bua) fn on_screen_audio(
        &mut self,
        now: Instant,
        call: &mut Call,
        fork: CallSid,
        result: Result<Arc<[i16]>, MediaFileError>,
    ) {
        if !matches!(call.step, Step::Dial(_)) {
            return;
        }
        self.feed_dial(now, call, |core, call, run| {
            let i = run.forks.iter().position(|f| f.info.call_sid == fork)?;
            let leg = run.media_leg(i);
            let s = run.forks[i].screen.as_mut()?;
            if !matches!(s.state, State::Play { playing: false }) {
                return None;
            }
            match (result, leg) {
                (Ok(samples), Some(leg)) if !samples.is_empty() => {
                    s.state = State::Play { playing: true };
                    core.post_media(MediaCommand::PlayPcm {
                        call_id: call.media_id(),
                        leg,
                        samples,
                        looped: false,
                    });
                    None
                }
                (result, _) => {
                    if let Err(e) = result {
                        tracing::warn!(call_sid = %fork, error = %e, "screening play skipped");
                    }
                    core.screen_run(now, call, run, i)
                }
            }
        });
    }

    /// Media finished a play on `media_leg`: a screening app playing there goes on.
    pub(super) fn on_play_done(&mut self, now: Instant, call: &mut Call, media_leg: LegId) {
        let Some(Leg::Fork(i)) = super::dtmf::leg_of_media(call, media_leg) else {
            return;
        };
        let Step::Dial(run) = &call.step else { return };
        let playing = run.forks[i]
            .screen
            .as_ref()
            .is_some_and(|s| matches!(s.state, State::Play { playing: true }));
        if playing {
            self.feed_dial(now, call, |core, call, run| {
                core.screen_run(now, call, run, i)
            });
        }
    }

    /// A key from fork `i` while its screening app runs: the app's (true), or not (false: no
    /// app runs).
    pub(super) fn screen_digit(
        &mut self,
        now: Instant,
        call: &mut Call,
        i: usize,
        digit: char,
    ) -> bool {
        let Step::Dial(run) = &mut call.step else {
            return false;
        };
        let Some(s) = run.forks.get_mut(i).and_then(|f| f.screen.as_mut()) else {
            return false;
        };
        let State::Gather {
            gather,
            digits,
            deadline,
        } = &mut s.state
        else {
            // Between gathers, keys are dropped.
            return true;
        };
        let finish_key = gather
            .finish_on_key
            .as_deref()
            .and_then(|k| k.chars().next())
            .is_some_and(|k| k.eq_ignore_ascii_case(&digit));
        if !finish_key {
            digits.push(digit);
        }
        let complete = gather
            .num_digits
            .is_some_and(|n| digits.len() >= n as usize);
        if !finish_key && !complete {
            *deadline = now + Duration::from_secs(gather.timeout.into());
            return true;
        }
        self.feed_dial(now, call, |core, call, run| {
            core.gather_done(now, call, run, i, "dtmfDetected")
        });
        true
    }

    /// Pauses and gathers of screening apps that are due.
    pub(super) fn screen_timers(&mut self, now: Instant, call: &mut Call) {
        let Step::Dial(run) = &call.step else { return };
        let due: Vec<usize> = (0..run.forks.len())
            .filter(|&i| {
                let s = run.forks[i].screen.as_ref();
                s.and_then(Screening::deadline).is_some_and(|d| d <= now)
            })
            .collect();
        for i in due {
            self.feed_dial(now, call, |core, call, run| {
                let s = run.forks[i].screen.as_mut()?;
                match s.state {
                    State::Pause(at) if at <= now => core.screen_run(now, call, run, i),
                    State::Gather { deadline, .. } if deadline <= now => {
                        core.gather_done(now, call, run, i, "timeout")
                    }
                    _ => None,
                }
            });
        }
    }

    /// Fork `i`'s gather ended (`reason`): to its actionHook, else on with the app.
    fn gather_done(
        &mut self,
        now: Instant,
        call: &Call,
        run: &mut DialRun,
        i: usize,
        reason: &'static str,
    ) -> Option<DialEvent> {
        let f = &mut run.forks[i];
        let s = f.screen.as_mut()?;
        let State::Gather { gather, digits, .. } = std::mem::replace(&mut s.state, State::WaitHook)
        else {
            return None;
        };
        tracing::debug!(call_sid = %f.info.call_sid, %digits, reason, "screening gather done");
        let Some(hook) = gather.action_hook else {
            return self.screen_run(now, call, run, i);
        };
        let payload = GatherPayload {
            call: f.info.clone(),
            digits,
            reason,
        };
        let purpose = HookPurpose::Confirm(f.info.call_sid);
        self.send_hook(call, &hook, Some(purpose), payload);
        None
    }

    /// Runs fork `i`'s screening verbs until one waits; the dial event when the app is over.
    fn screen_run(
        &mut self,
        now: Instant,
        call: &Call,
        run: &mut DialRun,
        i: usize,
    ) -> Option<DialEvent> {
        let fork = ForkId(i);
        let f = &mut run.forks[i];
        let s = f.screen.as_mut()?;
        loop {
            match s.verbs.pop_front() {
                None => {
                    f.screen = None;
                    tracing::debug!(call_sid = %f.info.call_sid, "screening done: confirmed");
                    return Some(DialEvent::Confirmed { fork });
                }
                Some(Verb::Pause(p)) => {
                    s.state = State::Pause(now + Duration::from_secs(p.length.into()));
                    return None;
                }
                Some(Verb::Play(p)) => {
                    s.state = State::Play { playing: false };
                    let (files, msgs) = (self.svc.media_files.clone(), self.msgs_tx.clone());
                    let (key, fork) = (call.key, f.info.call_sid);
                    tokio::spawn(async move {
                        let result = files.get(&p.url).await;
                        let _ = msgs.send(Msg::ScreenAudio {
                            call: key,
                            fork,
                            result,
                        });
                    });
                    return None;
                }
                Some(Verb::Gather(g)) => {
                    let deadline = now + Duration::from_secs(g.timeout.into());
                    s.state = State::Gather {
                        gather: g,
                        digits: String::new(),
                        deadline,
                    };
                    return None;
                }
                Some(Verb::Hangup(_)) => {
                    f.screen = None;
                    tracing::debug!(call_sid = %f.info.call_sid, "screening app hung up: declined");
                    return Some(DialEvent::ConfirmDeclined {
                        fork,
                        by_callee: false,
                    });
                }
                Some(other) => {
                    tracing::error!(call_sid = %f.info.call_sid, verb = other.name(),
                    "verb not run in a screening app by this build, skipped");
                }
            }
        }
    }
}
