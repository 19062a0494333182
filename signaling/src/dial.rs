//! The dial verb's core: ring every target at once, the first answer wins, cancel the rest
//!
//! Sans-IO, like the transaction layer: a [`Dial`] is fed [`Event`]s (the B2BUA maps dialog and
//! transaction events, REST updates and the caller's leg onto them) together with the current
//! time, and hands back [`Action`]s to carry out and the next deadline. It reads no clock and
//! does no I/O, so its timers are tested on a fake clock.
//!
//! Driving it: after [`Dial::new`] and after every [`Dial::handle`] or [`Dial::handle_timeout`],
//! drain [`Dial::poll_action`] until it returns `None`, then arm one timer for
//! [`Dial::poll_timeout`]. `handle_timeout` may be called early or twice: nothing fires before
//! its instant. A `now` older than one already seen is taken as the newest one seen.
//!
//! The call flow: every target is INVITEd at once (the caller is answered first unless
//! answerOnBridge; then it hears 180, or 183 with the callee's early media when there is one
//! target and no dialMusic). The first 2xx wins: [`Action::Bridge`], then CANCEL with
//! [`COMPLETED_ELSEWHERE`] to every other fork, ACK+BYE to any 2xx that still arrives. With a
//! confirmHook the answering fork's app runs first ([`Action::RunConfirm`]) while the others
//! ring, and the first confirmed fork wins. 3xx are followed up to [`MAX_REDIRECTS`] times per
//! fork. The ring timeout, the caller hanging up and REST no-answer send plain CANCELs; the
//! timeLimit (from the bridge) sends the callee a BYE and the caller goes on with the app.
//!
//! Outcomes follow [`crate::payload`]: every fork ends as a [`ForkOutcome`] and the dial's result
//! is [`DialResult::of_forks`] (completed > busy > no-answer > failed). Events that make no
//! sense in the current state (an unknown fork, a second answer from the winner, a 180 crossing
//! our CANCEL, anything after the dial finished) are dropped with a debug line and
//! `dialplane_dial_ignored_events_total{reason}`; the one exception is a 2xx from a fork we
//! cancelled, which always gets ACK then BYE so that no callee is left connected to nothing.
//! Metrics: `dialplane_dial_forks_total` (forks started) and
//! `dialplane_dial_outcomes_total{status}` (one per finished dial).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::payload::{CallSid, CallStatus, DialResult, DialStatus, ForkOutcome};

/// At most this many targets (after de-duplication), as jambonz allows
pub const MAX_TARGETS: usize = 10;
/// 3xx responses followed per fork; the next one fails the fork
pub const MAX_REDIRECTS: u8 = 5;
/// The ring-no-answer timeout when the verb names none
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The `Reason` header of the CANCELs sent to the losers once a fork has won (RFC 3326)
pub const COMPLETED_ELSEWHERE: &str = "SIP;cause=200;text=\"Call completed elsewhere\"";

const OUTCOMES_METRIC: &str = "dialplane_dial_outcomes_total";
const FORKS_METRIC: &str = "dialplane_dial_forks_total";
const IGNORED_METRIC: &str = "dialplane_dial_ignored_events_total";

/// One fork of a dial: the index of its target after de-duplication
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ForkId(pub usize);

/// Where a target's INVITE goes, as resolved by the caller of [`Dial::new`]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// INVITE this request URI.
    Uri(String),
    /// Nothing to call (a user with no registered contact: 404; no carrier for a number): the
    /// fork fails at once with this status.
    Unroutable(u16),
}

/// One destination to ring
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialTarget {
    /// The call sid of the leg this fork creates.
    pub call_sid: CallSid,
    /// Where its INVITE goes.
    pub destination: Destination,
    /// Every header of its INVITE: the dial's `headers` with the target's own replacing those
    /// of the same name (`verbs::Dial::headers_for`).
    pub headers: Vec<(String, String)>,
    /// A confirmHook applies (the target's own or the dial's): when this fork answers, its
    /// app runs on the callee's leg first ([`Action::RunConfirm`]) and the others keep ringing.
    pub confirm: bool,
}

/// The dial verb's attributes that steer the call flow
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOptions {
    /// true: the caller rings until a callee answers; false: answered before the outdial.
    pub answer_on_bridge: bool,
    /// Ring-no-answer timeout for all forks together.
    pub timeout: Duration,
    /// Longest bridged call, counted from the bridge.
    pub time_limit: Option<Duration>,
    /// From user of the outbound INVITEs; `None` keeps the caller's.
    pub caller_id: Option<String>,
    /// `dialMusic` is set: the caller hears it, never a callee's early media.
    pub dial_music: bool,
}

impl Default for DialOptions {
    fn default() -> Self {
        Self {
            answer_on_bridge: false,
            timeout: DEFAULT_TIMEOUT,
            time_limit: None,
            caller_id: None,
            dial_music: false,
        }
    }
}

impl From<&crate::verbs::Dial> for DialOptions {
    fn from(verb: &crate::verbs::Dial) -> Self {
        Self {
            answer_on_bridge: verb.answer_on_bridge,
            timeout: Duration::from_secs(verb.timeout.into()),
            time_limit: verb.time_limit.map(|s| Duration::from_secs(s.into())),
            caller_id: verb.caller_id.clone(),
            dial_music: verb.dial_music.is_some(),
        }
    }
}

/// Why a dial could not start
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    /// The target list was empty.
    #[error("dial has no target")]
    NoTargets,
    /// More than [`MAX_TARGETS`] distinct targets.
    #[error("dial has {0} distinct targets, at most {MAX_TARGETS} are allowed")]
    TooManyTargets(usize),
}

/// Something that happened to the dial, fed to [`Dial::handle`]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A 1xx on a fork's INVITE.
    Provisional {
        /// The fork.
        fork: ForkId,
        /// 100–199.
        status: u16,
        /// It carried SDP (early media).
        has_sdp: bool,
    },
    /// A 2xx on a fork's INVITE.
    Answered {
        /// The fork.
        fork: ForkId,
    },
    /// A final non-2xx, non-3xx response on a fork's INVITE (401/407 are retried upstream).
    Failed {
        /// The fork.
        fork: ForkId,
        /// 400–699.
        status: u16,
    },
    /// A 3xx on a fork's INVITE.
    Redirected {
        /// The fork.
        fork: ForkId,
        /// 300–399, reported if the redirect is not followed.
        status: u16,
        /// The Contact URIs, in order of preference.
        contacts: Vec<String>,
    },
    /// The fork's INVITE transaction timed out (reported as 408).
    ForkTimedOut {
        /// The fork.
        fork: ForkId,
    },
    /// The caller hung up (CANCEL or BYE).
    CallerHungUp,
    /// REST `call_status: no-answer`: stop ringing.
    CancelRinging,
    /// REST `call_status: completed`: end the call.
    HangUp,
    /// The confirmHook app finished with the callee still connected: it may be bridged.
    Confirmed {
        /// The fork.
        fork: ForkId,
    },
    /// The callee's leg ended while its confirmHook app ran.
    ConfirmDeclined {
        /// The fork.
        fork: ForkId,
        /// true: the callee hung up; false: the app ended it (the callee still needs a BYE).
        by_callee: bool,
    },
    /// The bridged call ended by a BYE from one side.
    BridgeEnded {
        /// true: the callee hung up; false: the caller did (the callee still needs a BYE).
        by_callee: bool,
    },
}

/// How a finished dial went
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialOutcome {
    /// What the actionHook reports.
    pub result: DialResult,
    /// Every fork's final state, in fork order.
    pub forks: Vec<ForkReport>,
}

/// One fork's final state
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForkReport {
    /// The fork.
    pub fork: ForkId,
    /// Its leg's call sid.
    pub call_sid: CallSid,
    /// completed (it answered), busy, no-answer or failed.
    pub status: CallStatus,
    /// The SIP status it ended with (487 when we cancelled it, 200 when it answered).
    pub sip_status: u16,
}

/// Something for the B2BUA to do, from [`Dial::poll_action`]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send an INVITE for this fork (again after a redirect, to the new URI).
    Invite {
        /// The fork.
        fork: ForkId,
        /// The request URI.
        uri: String,
        /// Every extra header.
        headers: Vec<(String, String)>,
        /// From user, when the dial sets one.
        caller_id: Option<String>,
    },
    /// CANCEL the fork's INVITE (the transaction layer holds it until a 1xx arrived).
    Cancel {
        /// The fork.
        fork: ForkId,
        /// The `Reason` header: [`COMPLETED_ELSEWHERE`] for losers, none otherwise.
        reason: Option<&'static str>,
    },
    /// ACK the fork's 2xx, then BYE it: it answered after losing.
    AckAndBye {
        /// The fork.
        fork: ForkId,
    },
    /// ACK the fork's 2xx and run the confirmHook app on its leg; [`Event::Confirmed`] or
    /// [`Event::ConfirmDeclined`] tells how that went.
    RunConfirm {
        /// The fork.
        fork: ForkId,
    },
    /// BYE an answered callee that is not (or no longer) wanted.
    Bye {
        /// The fork.
        fork: ForkId,
    },
    /// Send the caller a provisional response (answerOnBridge).
    RingCaller {
        /// 180, or 183 for early media.
        status: u16,
        /// Relay this fork's early media to the caller; `None` with 183 means our own (dialMusic).
        early_media_from: Option<ForkId>,
    },
    /// Answer the caller with 200 OK.
    AnswerCaller,
    /// Connect the fork's media with the caller's.
    Bridge {
        /// The winner.
        fork: ForkId,
    },
    /// A fork's leg changed state: the call-status webhook.
    ForkStatus {
        /// The fork.
        fork: ForkId,
        /// Its leg's call sid.
        call_sid: CallSid,
        /// The new state.
        status: CallStatus,
        /// The SIP status behind it.
        sip_status: u16,
    },
    /// The dial is over (exactly once): run the actionHook, then the rest of the app.
    Finished(DialOutcome),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ForkState {
    /// INVITE outstanding.
    Calling,
    /// Answered; its confirmHook app runs.
    Confirming,
    /// Won and bridged.
    Bridged,
    /// We cancelled it; `killed` once a crossing 2xx got ACK+BYE.
    Cancelled { killed: bool },
    /// Over, with this outcome.
    Done(ForkOutcome),
}

#[derive(Debug)]
struct Fork {
    call_sid: CallSid,
    headers: Vec<(String, String)>,
    /// URIs INVITEd so far; a redirect never goes back to one of them.
    tried: Vec<String>,
    redirects: u8,
    confirm: bool,
    state: ForkState,
    /// The last status reported (and its SIP status), so each change is reported once.
    reported: Option<(CallStatus, u16)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ringing,
    Bridged(ForkId),
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum CallerRing {
    Silent,
    Ringing,
    EarlyMedia,
}

#[derive(Debug, Clone, Copy)]
enum Timer {
    /// Ring-no-answer, from the start.
    Ring,
    /// timeLimit, from the bridge.
    TimeLimit,
}

impl Timer {
    const VALUES: [Timer; 2] = [Timer::Ring, Timer::TimeLimit];
}

/// One execution of the dial verb
///
/// Getters: [`Dial::is_finished`], [`Dial::call_sid`]. Inputs: [`Dial::handle`],
/// [`Dial::handle_timeout`]. Outputs: [`Dial::poll_action`], [`Dial::poll_timeout`].
#[derive(Debug)]
pub struct Dial {
    options: DialOptions,
    forks: Vec<Fork>,
    phase: Phase,
    caller_ring: CallerRing,
    timers: [Option<Instant>; 2],
    now: Instant,
    actions: VecDeque<Action>,
}

impl Dial {
    /// Starts the dial at `now`: answers the caller first unless answerOnBridge, then INVITEs
    /// every distinct target (the first of equal URIs stays)
    pub fn new(
        now: Instant,
        targets: Vec<DialTarget>,
        options: DialOptions,
    ) -> Result<Self, DialError> {
        let mut forks: Vec<Fork> = Vec::with_capacity(targets.len().min(MAX_TARGETS));
        for target in targets {
            let (tried, state) = match target.destination {
                Destination::Uri(uri) => {
                    let duplicate = forks.iter().any(|f| f.tried.first() == Some(&uri));
                    if duplicate {
                        continue;
                    }
                    (vec![uri], ForkState::Calling)
                }
                Destination::Unroutable(status) => {
                    (Vec::new(), ForkState::Done(ForkOutcome::Rejected(status)))
                }
            };
            forks.push(Fork {
                call_sid: target.call_sid,
                headers: target.headers,
                tried,
                redirects: 0,
                confirm: target.confirm,
                state,
                reported: None,
            });
        }
        if forks.is_empty() {
            return Err(DialError::NoTargets);
        }
        if forks.len() > MAX_TARGETS {
            return Err(DialError::TooManyTargets(forks.len()));
        }
        metrics::counter!(FORKS_METRIC).increment(forks.len() as u64);
        let mut dial = Self {
            options,
            forks,
            phase: Phase::Ringing,
            caller_ring: CallerRing::Silent,
            timers: [None; 2],
            now,
            actions: VecDeque::new(),
        };
        if !dial.options.answer_on_bridge {
            dial.actions.push_back(Action::AnswerCaller);
        } else if dial.options.dial_music {
            // The music is our own early media, from the start.
            dial.caller_ring = CallerRing::EarlyMedia;
            dial.actions.push_back(Action::RingCaller {
                status: 183,
                early_media_from: None,
            });
        }
        for i in 0..dial.forks.len() {
            match dial.forks[i].state {
                ForkState::Calling => {
                    let uri = dial.forks[i].tried[0].clone();
                    dial.invite(ForkId(i), uri);
                }
                ForkState::Done(outcome) => dial.report_final(i, outcome),
                ForkState::Confirming | ForkState::Bridged | ForkState::Cancelled { .. } => {}
            }
        }
        dial.set_timer(Timer::Ring, Some(now + dial.options.timeout));
        dial.finish_if_nothing_rings();
        Ok(dial)
    }

    /// The call sid of a fork's leg
    pub fn call_sid(&self, fork: ForkId) -> Option<CallSid> {
        self.forks.get(fork.0).map(|f| f.call_sid)
    }

    /// [`Action::Finished`] has been queued
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// The next thing to do, in order; poll until `None` after every input
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Dial::handle_timeout`] is due next; `None` when no timer runs
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// Fires the timers due at `now` (none early: spurious calls are harmless)
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        for timer in Timer::VALUES {
            if self.timers[timer as usize].is_none_or(|at| at > now) {
                continue;
            }
            self.set_timer(timer, None);
            match (timer, self.phase) {
                (Timer::Ring, Phase::Ringing) => self.stop_ringing(),
                (Timer::TimeLimit, Phase::Bridged(fork)) => self.end_bridge(fork, true),
                _ => {}
            }
        }
    }

    /// Takes one event at `now`
    pub fn handle(&mut self, now: Instant, event: Event) {
        self.advance(now);
        match event {
            Event::Provisional {
                fork,
                status,
                has_sdp,
            } => self.on_provisional(fork, status, has_sdp),
            Event::Answered { fork } => self.on_answered(fork),
            Event::Failed { fork, status } if (400..=699).contains(&status) => {
                self.on_final(fork, status);
            }
            Event::ForkTimedOut { fork } => self.on_final(fork, 408),
            Event::Redirected {
                fork,
                status,
                contacts,
            } if (300..=399).contains(&status) => self.on_redirect(fork, status, &contacts),
            Event::Failed { .. } | Event::Redirected { .. } => ignored("bad_status", &event),
            Event::CallerHungUp | Event::HangUp => match self.phase {
                Phase::Ringing => self.abandon(),
                Phase::Bridged(fork) => self.end_bridge(fork, true),
                Phase::Finished => ignored("after_finish", &event),
            },
            Event::CancelRinging => match self.phase {
                Phase::Ringing => self.stop_ringing(),
                Phase::Bridged(_) => ignored("nothing_ringing", &event),
                Phase::Finished => ignored("after_finish", &event),
            },
            Event::Confirmed { fork } => self.on_confirmed(fork),
            Event::ConfirmDeclined { fork, by_callee } => {
                self.on_confirm_declined(fork, by_callee);
            }
            Event::BridgeEnded { by_callee } => match self.phase {
                Phase::Bridged(fork) => self.end_bridge(fork, !by_callee),
                Phase::Ringing => ignored("not_bridged", &event),
                Phase::Finished => ignored("after_finish", &event),
            },
        }
    }

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    fn set_timer(&mut self, timer: Timer, at: Option<Instant>) {
        self.timers[timer as usize] = at;
    }

    /// The fork, if it still has an INVITE outstanding while the dial rings
    fn calling(&self, fork: ForkId) -> Option<usize> {
        let f = self.forks.get(fork.0)?;
        (f.state == ForkState::Calling && self.phase == Phase::Ringing).then_some(fork.0)
    }

    fn on_provisional(&mut self, fork: ForkId, status: u16, has_sdp: bool) {
        if !(100..=199).contains(&status) {
            return ignored(
                "bad_status",
                &Event::Provisional {
                    fork,
                    status,
                    has_sdp,
                },
            );
        }
        let Some(i) = self.calling(fork) else {
            return self.stray(fork, "provisional");
        };
        let reached = self.forks[i].reported.map(|(s, _)| s);
        if has_sdp {
            self.report(i, CallStatus::EarlyMedia, status);
        } else if status >= 180 && reached != Some(CallStatus::EarlyMedia) {
            self.report(i, CallStatus::Ringing, status);
        }
        if !self.options.answer_on_bridge || self.options.dial_music {
            return;
        }
        // One callee's early media can reach the caller only when no other fork competes.
        let ring = if has_sdp && self.forks.len() == 1 {
            CallerRing::EarlyMedia
        } else if has_sdp || status >= 180 {
            CallerRing::Ringing
        } else {
            CallerRing::Silent
        };
        if ring > self.caller_ring {
            self.caller_ring = ring;
            self.actions.push_back(match ring {
                CallerRing::EarlyMedia => Action::RingCaller {
                    status: 183,
                    early_media_from: Some(fork),
                },
                _ => Action::RingCaller {
                    status: 180,
                    early_media_from: None,
                },
            });
        }
    }

    fn on_answered(&mut self, fork: ForkId) {
        if let Some(f) = self.forks.get_mut(fork.0)
            && f.state == (ForkState::Cancelled { killed: false })
        {
            // Its 2xx crossed our CANCEL (or lost the race to another 2xx).
            f.state = ForkState::Cancelled { killed: true };
            self.actions.push_back(Action::AckAndBye { fork });
            return;
        }
        let Some(i) = self.calling(fork) else {
            return self.stray(fork, "answered");
        };
        self.report(i, CallStatus::InProgress, 200);
        if self.forks[i].confirm {
            self.forks[i].state = ForkState::Confirming;
            self.actions.push_back(Action::RunConfirm { fork });
        } else {
            self.win(fork);
        }
    }

    /// The fork whose confirmHook app is running, while the dial rings
    fn confirming(&self, fork: ForkId) -> Option<usize> {
        let f = self.forks.get(fork.0)?;
        (f.state == ForkState::Confirming && self.phase == Phase::Ringing).then_some(fork.0)
    }

    fn on_confirmed(&mut self, fork: ForkId) {
        match self.confirming(fork) {
            Some(_) => self.win(fork),
            None => self.stray(fork, "confirmed"),
        }
    }

    fn on_confirm_declined(&mut self, fork: ForkId, by_callee: bool) {
        let Some(i) = self.confirming(fork) else {
            return self.stray(fork, "confirm_declined");
        };
        if !by_callee {
            self.actions.push_back(Action::Bye { fork });
        }
        // 603 Decline: the callee (or its screening app) turned the call down.
        self.forks[i].state = ForkState::Done(ForkOutcome::Rejected(603));
        self.report(i, CallStatus::Completed, 200);
        self.finish_if_nothing_rings();
    }

    /// The fork is bridged with the caller; every other fork is cancelled or hung up
    fn win(&mut self, fork: ForkId) {
        self.forks[fork.0].state = ForkState::Bridged;
        self.actions.push_back(Action::Bridge { fork });
        if self.options.answer_on_bridge {
            self.actions.push_back(Action::AnswerCaller);
        }
        self.phase = Phase::Bridged(fork);
        self.set_timer(Timer::Ring, None);
        let limit = self.options.time_limit.map(|d| self.now + d);
        self.set_timer(Timer::TimeLimit, limit);
        self.cancel_calling(Some(COMPLETED_ELSEWHERE));
        self.bye_confirming();
    }

    fn on_final(&mut self, fork: ForkId, status: u16) {
        if let Some(f) = self.forks.get(fork.0)
            && matches!(f.state, ForkState::Cancelled { .. })
        {
            // The 487 (or whatever crossed) answering our CANCEL: already accounted for.
            return;
        }
        let Some(i) = self.calling(fork) else {
            return self.stray(fork, "final");
        };
        self.fail(i, status);
    }

    fn on_redirect(&mut self, fork: ForkId, status: u16, contacts: &[String]) {
        let Some(i) = self.calling(fork) else {
            return self.stray(fork, "redirect");
        };
        let f = &mut self.forks[i];
        f.redirects += 1;
        let next = contacts.iter().find(|c| !f.tried.contains(c));
        match next {
            Some(uri) if f.redirects <= MAX_REDIRECTS => {
                let uri = uri.clone();
                f.tried.push(uri.clone());
                self.invite(fork, uri);
            }
            _ => self.fail(i, status),
        }
    }

    fn invite(&mut self, fork: ForkId, uri: String) {
        let f = &self.forks[fork.0];
        self.actions.push_back(Action::Invite {
            fork,
            uri,
            headers: f.headers.clone(),
            caller_id: self.options.caller_id.clone(),
        });
        self.report(fork.0, CallStatus::Trying, 100);
    }

    fn fail(&mut self, i: usize, status: u16) {
        let outcome = ForkOutcome::Rejected(status);
        self.forks[i].state = ForkState::Done(outcome);
        self.report_final(i, outcome);
        self.finish_if_nothing_rings();
    }

    /// Ring timeout or REST no-answer: plain CANCELs; forks that answered and are being
    /// confirmed go on, and the dial ends when they are done
    fn stop_ringing(&mut self) {
        self.cancel_calling(None);
        self.finish_if_nothing_rings();
    }

    /// The caller or REST hung up before a bridge: every fork goes
    fn abandon(&mut self) {
        self.cancel_calling(None);
        self.bye_confirming();
        self.finish_if_nothing_rings();
    }

    fn bye_confirming(&mut self) {
        for i in 0..self.forks.len() {
            if self.forks[i].state == ForkState::Confirming {
                self.forks[i].state = ForkState::Done(ForkOutcome::Cancelled);
                self.actions.push_back(Action::Bye { fork: ForkId(i) });
                self.report(i, CallStatus::Completed, 200);
            }
        }
    }

    fn cancel_calling(&mut self, reason: Option<&'static str>) {
        for i in 0..self.forks.len() {
            if self.forks[i].state == ForkState::Calling {
                self.forks[i].state = ForkState::Cancelled { killed: false };
                self.actions.push_back(Action::Cancel {
                    fork: ForkId(i),
                    reason,
                });
                self.report_final(i, ForkOutcome::Cancelled);
            }
        }
    }

    fn end_bridge(&mut self, fork: ForkId, bye: bool) {
        if bye {
            self.actions.push_back(Action::Bye { fork });
        }
        self.forks[fork.0].state = ForkState::Done(ForkOutcome::Bridged);
        self.report_final(fork.0, ForkOutcome::Bridged);
        self.finish();
    }

    fn finish_if_nothing_rings(&mut self) {
        let pending = self
            .forks
            .iter()
            .any(|f| matches!(f.state, ForkState::Calling | ForkState::Confirming));
        if self.phase == Phase::Ringing && !pending {
            self.finish();
        }
    }

    fn finish(&mut self) {
        let outcomes: Vec<(CallSid, ForkOutcome)> = self
            .forks
            .iter()
            .map(|f| (f.call_sid, f.outcome()))
            .collect();
        let Some(result) = DialResult::of_forks(&outcomes) else {
            return; // unreachable: a dial has at least one fork
        };
        let forks = self
            .forks
            .iter()
            .enumerate()
            .map(|(i, f)| {
                // Every fork reported a final status by now: its last report is the answer.
                let (status, sip_status) = f.reported.unwrap_or((CallStatus::Failed, 0));
                ForkReport {
                    fork: ForkId(i),
                    call_sid: f.call_sid,
                    status,
                    sip_status,
                }
            })
            .collect();
        metrics::counter!(OUTCOMES_METRIC, "status" => status_label(result.dial_status))
            .increment(1);
        self.phase = Phase::Finished;
        self.timers = [None; 2];
        self.actions
            .push_back(Action::Finished(DialOutcome { result, forks }));
    }

    fn report_final(&mut self, i: usize, outcome: ForkOutcome) {
        let (status, sip_status) = outcome.status();
        self.report(i, final_call_status(status), sip_status);
    }

    fn report(&mut self, i: usize, status: CallStatus, sip_status: u16) {
        let f = &mut self.forks[i];
        if f.reported.map(|(s, _)| s) != Some(status) {
            f.reported = Some((status, sip_status));
            self.actions.push_back(Action::ForkStatus {
                fork: ForkId(i),
                call_sid: f.call_sid,
                status,
                sip_status,
            });
        }
    }

    fn stray(&self, fork: ForkId, what: &'static str) {
        let reason = if fork.0 >= self.forks.len() {
            "unknown_fork"
        } else if self.phase == Phase::Finished {
            "after_finish"
        } else if matches!(self.forks[fork.0].state, ForkState::Cancelled { .. }) {
            "after_cancel"
        } else {
            "out_of_order"
        };
        ignored(reason, &format_args!("{what} on fork {}", fork.0));
    }
}

impl Fork {
    /// How the fork ended, or would end if the dial finished now
    fn outcome(&self) -> ForkOutcome {
        match self.state {
            ForkState::Done(outcome) => outcome,
            ForkState::Bridged => ForkOutcome::Bridged,
            ForkState::Calling | ForkState::Confirming | ForkState::Cancelled { .. } => {
                ForkOutcome::Cancelled
            }
        }
    }
}

fn ignored(reason: &'static str, event: &dyn std::fmt::Debug) {
    tracing::debug!(?event, reason, "dial: event ignored");
    metrics::counter!(IGNORED_METRIC, "reason" => reason).increment(1);
}

/// The leg's final call status for the dial status it ended with
fn final_call_status(status: DialStatus) -> CallStatus {
    match status {
        DialStatus::Completed => CallStatus::Completed,
        DialStatus::Busy => CallStatus::Busy,
        DialStatus::NoAnswer => CallStatus::NoAnswer,
        DialStatus::Failed => CallStatus::Failed,
    }
}

fn status_label(status: DialStatus) -> &'static str {
    match status {
        DialStatus::Completed => "completed",
        DialStatus::Busy => "busy",
        DialStatus::NoAnswer => "no-answer",
        DialStatus::Failed => "failed",
    }
}
