//! confirmHook: the screening app run on an answered fork's leg before it may be bridged
//!
//! When a fork with a confirmHook answers, the dial asks for [`Action::RunConfirm`]
//! (crate::dial::Action::RunConfirm): the hook is POSTed the fork's call info and answers with
//! verbs, run here on that callee's own media leg while the other forks keep ringing: `play`
//! (files through [`crate::media_files`]' cache, arriving as [`Msg::File`](super::super::Msg),
//! played into the leg one after the other, `loop` times), `pause`, `gather` of DTMF keys
//! (numDigits, finishOnKey, timeout; a nested `play` prompt while the keys are collected; its
//! actionHook is POSTed `{digits, reason}` and its verbs replace the rest of the screening app)
//! and `hangup`. `say` (a verb or a gather's prompt) is played like a file of synthesised speech
//! when a synthesizer is configured (`[speech] tts_url`), else skipped with an error line, as
//! are other verbs and malformed ones. The app running out with the callee still
//! there confirms the fork; `hangup`, a failed hook or the callee's BYE decline it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::media::api::{Command as MediaCommand, LegId};

use super::music::FileUse;
use super::{Call, Core, DialRun, HookPurpose, Leg, Step};
use crate::dial::{Event as DialEvent, ForkId};
use crate::media_files::{MediaFileError, MediaFiles};
use crate::payload::{CallInfo, CallSid};
use crate::verbs::{self, Gather, Play, Verb};
use serde_json::Value;

/// One fork's screening app
pub(in crate::b2bua) struct Screening {
    verbs: VecDeque<Verb>,
    state: State,
    /// Plays sent to media whose end it has not reported yet: a prompt stopped by a key reports
    /// its end after the next play may have started.
    plays: u32,
    /// The number of the next prompt, so that a file arriving for one that is over is dropped.
    next_prompt: u64,
}

enum State {
    /// Waiting for the confirmHook's (or a gather actionHook's) verbs.
    WaitHook,
    /// `pause` until then.
    Pause(Instant),
    /// `play` until its files have been played.
    Play(Prompt),
    /// `gather`: the keys so far; the input ends at `deadline` without another key (none while
    /// the prompt plays its first pass).
    Gather {
        gather: Box<Gather>,
        digits: String,
        deadline: Option<Instant>,
        prompt: Option<Prompt>,
    },
}

/// A `play` running: its files in order, each fetched once for all the loops
struct Prompt {
    id: u64,
    /// Per URL: `None` while it is fetched, `Some(None)` when it cannot be played.
    files: Vec<Option<Option<Arc<[i16]>>>>,
    /// The file playing or next to play.
    index: usize,
    /// Passes through the list still to start after this one; `None`: forever.
    loops_left: Option<u32>,
    /// Passes through the list completed.
    passes: u32,
    /// A file of this pass was played (a list looped forever whose files all fail ends).
    played: bool,
    /// Media plays `files[index]` now.
    playing: bool,
}

impl Prompt {
    /// Past the current file; false when the play is over.
    fn advance(&mut self) -> bool {
        self.playing = false;
        self.index += 1;
        if self.index < self.files.len() {
            return true;
        }
        self.index = 0;
        self.passes += 1;
        let again = match &mut self.loops_left {
            None => self.played,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        };
        self.played = false;
        again
    }
}

impl Screening {
    /// Its timer: a pause's end or a gather's timeout.
    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.state {
            State::WaitHook | State::Play(_) => None,
            State::Pause(at) => Some(*at),
            State::Gather { deadline, .. } => *deadline,
        }
    }

    fn prompt_mut(&mut self) -> Option<&mut Prompt> {
        match &mut self.state {
            State::Play(p) => Some(p),
            State::Gather { prompt, .. } => prompt.as_mut(),
            State::WaitHook | State::Pause(_) => None,
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

/// A screening app's verbs; malformed ones are left out with an error line rather than
/// declining the callee for one typo.
pub(super) fn parse_app(fork: CallSid, text: &str) -> Result<Vec<Verb>, String> {
    let (verbs, skipped) = verbs::parse_app_skipping(text).map_err(|e| e.to_string())?;
    for e in skipped {
        tracing::error!(call_sid = %fork, error = %e, "screening app: malformed verb skipped");
    }
    Ok(verbs)
}

/// `say` (a verb or a gather's prompt) as a play of synthesised speech: `text` (one or a list),
/// `synthesizer.language` / `.voice`, `loop`. `None` (with an error line) when there is no
/// synthesizer or no text.
fn say_prompt(files: &MediaFiles, fork: CallSid, say: &Value) -> Option<Play> {
    let texts: Vec<&str> = match &say["text"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if texts.iter().all(|t| t.trim().is_empty()) {
        tracing::error!(call_sid = %fork, "screening app: say without text, skipped");
        return None;
    }
    let synth = &say["synthesizer"];
    let (language, voice) = (synth["language"].as_str(), synth["voice"].as_str());
    let url = texts
        .iter()
        .map(|t| files.say_source(t, language, voice))
        .collect::<Option<Vec<_>>>();
    let Some(url) = url else {
        tracing::error!(call_sid = %fork,
            "screening app: no speech synthesizer is configured ([speech] tts_url), say skipped");
        return None;
    };
    Some(Play {
        id: None,
        url,
        loop_count: match &say["loop"] {
            Value::Number(n) => n.as_u64().map_or(1, |n| n.min(u64::from(u32::MAX)) as u32),
            Value::String(s) if s == "forever" => 0,
            _ => 1,
        },
        early_media: false,
    })
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
            plays: 0,
            next_prompt: 0,
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

    /// File `index` of prompt `prompt` of a screening app was fetched (or not): played if the
    /// prompt waits for it.
    pub(in crate::b2bua) fn on_screen_file(
        &mut self,
        now: Instant,
        call: &mut Call,
        (fork, prompt, index): (CallSid, u64, usize),
        result: Result<Arc<[i16]>, MediaFileError>,
    ) {
        if !matches!(call.step, Step::Dial(_)) {
            return;
        }
        self.feed_dial(now, call, |core, call, run| {
            let i = run.forks.iter().position(|f| f.info.call_sid == fork)?;
            let p = run.forks[i].screen.as_mut()?.prompt_mut()?;
            if p.id != prompt {
                return None;
            }
            let file = result
                .inspect_err(|e| tracing::warn!(call_sid = %fork, error = %e, "screening play: file skipped"))
                .ok()
                .filter(|s| !s.is_empty());
            *p.files.get_mut(index)? = Some(file);
            if p.playing || p.index != index {
                return None;
            }
            core.prompt_on(now, call, run, i, false)
        });
    }

    /// Media finished a play on `media_leg`: a screening app's prompt playing there goes on.
    pub(super) fn on_play_done(&mut self, now: Instant, call: &mut Call, media_leg: LegId) {
        let Some(Leg::Fork(i)) = super::dtmf::leg_of_media(call, media_leg) else {
            return;
        };
        let Step::Dial(run) = &mut call.step else {
            return;
        };
        let Some(s) = run.forks[i].screen.as_mut() else {
            return;
        };
        s.plays = s.plays.saturating_sub(1);
        let playing = s.prompt_mut().is_some_and(|p| p.playing);
        if s.plays == 0 && playing {
            self.feed_dial(now, call, |core, call, run| {
                core.prompt_on(now, call, run, i, true)
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
        let call_id = call.media_id();
        let Step::Dial(run) = &mut call.step else {
            return false;
        };
        let leg = run.media_leg(i);
        let Some(s) = run.forks.get_mut(i).and_then(|f| f.screen.as_mut()) else {
            return false;
        };
        let State::Gather {
            gather,
            digits,
            deadline,
            prompt,
        } = &mut s.state
        else {
            // Between gathers, keys are dropped.
            return true;
        };
        // A key interrupts the prompt.
        if prompt.take().is_some_and(|p| p.playing)
            && let Some(leg) = leg
        {
            self.post_media(MediaCommand::StopPlay { call_id, leg });
        }
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
            *deadline = Some(now + Duration::from_secs(gather.timeout.into()));
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
                match s.deadline()? {
                    at if at > now => None,
                    _ if matches!(s.state, State::Pause(_)) => core.screen_run(now, call, run, i),
                    _ => core.gather_done(now, call, run, i, "timeout"),
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
        let leg = run.media_leg(i);
        let f = &mut run.forks[i];
        let s = f.screen.as_mut()?;
        let State::Gather {
            gather,
            digits,
            prompt,
            ..
        } = std::mem::replace(&mut s.state, State::WaitHook)
        else {
            return None;
        };
        // A prompt looped forever still plays when the gather times out.
        if prompt.is_some_and(|p| p.playing)
            && let Some(leg) = leg
        {
            self.post_media(MediaCommand::StopPlay {
                call_id: call.media_id(),
                leg,
            });
        }
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

    /// A new prompt of fork `fork`'s screening app: its files are fetched (each arrives as a
    /// [`FileUse::Screen`]), the first plays once it is there.
    fn start_prompt(&self, call: &Call, fork: CallSid, s: &mut Screening, play: Play) -> Prompt {
        let id = s.next_prompt;
        s.next_prompt += 1;
        let files = vec![None; play.url.len()];
        for (index, url) in play.url.into_iter().enumerate() {
            let usage = FileUse::Screen {
                fork,
                prompt: id,
                index,
            };
            self.fetch_file(call.key, url, usage);
        }
        Prompt {
            id,
            files,
            index: 0,
            loops_left: play.loop_count.checked_sub(1),
            passes: 0,
            played: false,
            playing: false,
        }
    }

    /// Goes on with fork `i`'s prompt (`advance`: past the file that just ended): plays the
    /// next file that can play, or waits for it to arrive; a `play` verb whose files are over
    /// lets the app go on, a gather's prompt starts the gather's timer.
    fn prompt_on(
        &mut self,
        now: Instant,
        call: &Call,
        run: &mut DialRun,
        i: usize,
        advance: bool,
    ) -> Option<DialEvent> {
        let leg = run.media_leg(i);
        let s = run.forks[i].screen.as_mut()?;
        let plays = &mut s.plays;
        match &mut s.state {
            State::Play(p) => {
                let going = (!advance || p.advance()) && self.prompt_go(call, leg, plays, p);
                if !going {
                    return self.screen_run(now, call, run, i);
                }
            }
            State::Gather {
                gather,
                deadline,
                prompt,
                ..
            } => {
                let p = prompt.as_mut()?;
                let going = (!advance || p.advance()) && self.prompt_go(call, leg, plays, p);
                // The timer runs from the prompt's end, or its first pass when it loops forever.
                if deadline.is_none() && (!going || p.passes > 0) {
                    *deadline = Some(now + Duration::from_secs(gather.timeout.into()));
                }
                if !going {
                    *prompt = None;
                }
            }
            State::WaitHook | State::Pause(_) => {}
        }
        None
    }

    /// Plays `p`'s current file, moving past files that cannot be played; false when the
    /// prompt is over, true when it plays or waits for a file.
    fn prompt_go(
        &mut self,
        call: &Call,
        leg: Option<LegId>,
        plays: &mut u32,
        p: &mut Prompt,
    ) -> bool {
        loop {
            match (&p.files[p.index], leg) {
                (None, _) => return true,
                (Some(Some(samples)), Some(leg)) => {
                    self.post_media(MediaCommand::PlayPcm {
                        call_id: call.media_id(),
                        leg,
                        samples: samples.clone(),
                        looped: false,
                    });
                    *plays += 1;
                    p.playing = true;
                    p.played = true;
                    return true;
                }
                // Not fetched, or no leg to play it into.
                (Some(_), _) => {}
            }
            if !p.advance() {
                return false;
            }
        }
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
        let sid = f.info.call_sid;
        let s = f.screen.as_mut()?;
        loop {
            match s.verbs.pop_front() {
                None => {
                    f.screen = None;
                    tracing::debug!(call_sid = %sid, "screening done: confirmed");
                    return Some(DialEvent::Confirmed { fork });
                }
                Some(Verb::Pause(p)) => {
                    s.state = State::Pause(now + Duration::from_secs(p.length.into()));
                    return None;
                }
                Some(Verb::Play(p)) => {
                    s.state = State::Play(self.start_prompt(call, sid, s, p));
                    return None;
                }
                Some(Verb::Gather(mut g)) => {
                    if let Some(other) = g.input.iter().find(|x| *x != "digits") {
                        tracing::warn!(call_sid = %sid, input = %other,
                            "screening gather: only digits are collected, input ignored");
                    }
                    // A gather has one prompt: its play, else its say.
                    let said = g.say.take();
                    let play = g
                        .play
                        .take()
                        .or_else(|| said.and_then(|v| say_prompt(&self.svc.media_files, sid, &v)));
                    let prompt = play.map(|p| self.start_prompt(call, sid, s, p));
                    let deadline = prompt
                        .is_none()
                        .then(|| now + Duration::from_secs(g.timeout.into()));
                    s.state = State::Gather {
                        gather: g,
                        digits: String::new(),
                        deadline,
                        prompt,
                    };
                    return None;
                }
                Some(Verb::Hangup(_)) => {
                    f.screen = None;
                    tracing::debug!(call_sid = %sid, "screening app hung up: declined");
                    return Some(DialEvent::ConfirmDeclined {
                        fork,
                        by_callee: false,
                    });
                }
                Some(Verb::Unsupported { name, json }) if name == "say" => {
                    if let Some(p) = say_prompt(&self.svc.media_files, sid, &json) {
                        s.state = State::Play(self.start_prompt(call, sid, s, p));
                        return None;
                    }
                }
                Some(other) => {
                    tracing::error!(call_sid = %sid, verb = other.name(),
                    "verb not run in a screening app by this build, skipped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(files: usize, loop_count: u32) -> Prompt {
        Prompt {
            id: 0,
            files: vec![None; files],
            index: 0,
            loops_left: loop_count.checked_sub(1),
            passes: 0,
            played: false,
            playing: false,
        }
    }

    /// Plays through `p`, every file playing; the indices played, at most `limit`.
    fn run(p: &mut Prompt, limit: usize) -> Vec<usize> {
        let mut order = Vec::new();
        loop {
            order.push(p.index);
            p.played = true;
            if order.len() == limit || !p.advance() {
                return order;
            }
        }
    }

    #[test]
    fn a_list_plays_in_order_loop_times() {
        assert_eq!(run(&mut prompt(2, 1), 99), [0, 1]);
        let mut p = prompt(2, 3);
        assert_eq!(run(&mut p, 99), [0, 1, 0, 1, 0, 1]);
        assert_eq!(p.passes, 3);
    }

    #[test]
    fn loop_zero_plays_until_stopped_unless_nothing_plays() {
        assert_eq!(run(&mut prompt(2, 0), 7), [0, 1, 0, 1, 0, 1, 0]);
        // No file of a pass could be played: a forever loop ends there.
        let mut p = prompt(2, 0);
        assert!(p.advance());
        assert!(!p.advance());
    }
}
