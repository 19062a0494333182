//! Answering-machine detection: human / machine / silence / fax from speech timing plus tones
//!
//! One [`Amd`] per leg reads every hop of the shared [`Spectrum`] and runs its own
//! [`ToneDetector`] and [`Vad`] on it; no other glue is needed. Times are milliseconds from
//! answer (the first sample pushed into the spectrum), derived from the sample index.
//!
//! The rules, with their physical reasons:
//! - A person answering says one short phrase ("Hello?", "Hi, this is Dana") and then waits
//!   for the caller: an utterance followed by [`HUMAN_SILENCE_MS`] of silence is **human**.
//!   750 ms is longer than the pause at a comma or between words, and short enough that a
//!   "Hello?" at 0.3 s is decided well within 2 s.
//! - A greeting is a monologue: an utterance (pauses shorter than [`HUMAN_SILENCE_MS`] do not
//!   end it) still going [`MACHINE_SPEECH_MS`] after it began is **machine**, decided while
//!   the greeting plays, not at its end. 2.8 s is above what people say when they pick up
//!   ("Yeah hello, who's calling?" is 2.5 s even at a slow 120 words per minute) and below
//!   the 3–6 s of a voicemail greeting.
//! - A short greeting with no beep ("Please leave a message." and silence) is, by timing,
//!   a human: no rule here can tell them apart, and the corpus test counts them as errors.
//! - A beep (one steady tone of 100 ms or more, see [`crate::tone`]) while undecided is
//!   **machine**; tone hops never count as speech or as silence, so a beep that follows a
//!   short greeting holds the human decision until it ends.
//! - CNG (second burst) or CED is **fax**. A lone 1100 Hz 0.35–0.75 s tone heard before any
//!   speech may be CNG's first burst: the decision waits up to [`CNG_HOLD_MS`] from its
//!   start for the second burst, then reports machine and the beep.
//! - Nobody speaking for `no_speech_timeout_ms` is **silence**; utterances shorter than
//!   [`MIN_UTTERANCE_MS`] (clicks, pops) are not speech.
//!
//! Events: exactly one [`AmdEvent::Amd`] or [`AmdEvent::Silence`] (unless
//! [`AmdEvent::DecisionTimeout`] comes first), then each [`AmdEvent::Beep`] whose tone ended
//! before `tone_timeout_ms`; [`AmdEvent::MachineStoppedSpeaking`] once, after a machine's
//! speech is followed by `greeting_completion_timeout_ms` of silence.

use crate::spectrum::{Hop, RATE};
use crate::tone::{ToneDetector, ToneEvent};
use crate::vad::Vad;

/// Silence after an utterance that makes it a human's answer, ms.
pub const HUMAN_SILENCE_MS: u64 = 750;
/// Length of an utterance that makes it a machine's greeting, ms.
pub const MACHINE_SPEECH_MS: u64 = 2800;
/// Shortest utterance (first to last active hop) that counts as speech, ms.
pub const MIN_UTTERANCE_MS: u64 = 100;
/// How long after a possible first CNG burst starts the decision waits for the second, ms.
pub const CNG_HOLD_MS: u64 = 5000;

/// Longest a tone candidate holds the speech and silence decisions (samples: 5 s).
const MAX_HOLD_SAMPLES: u64 = 5 * RATE as u64;

/// Timers, with jambonz's names and defaults
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmdConfig {
    /// Nobody speaking this long after answer → [`AmdEvent::Silence`].
    pub no_speech_timeout_ms: u32,
    /// No decision this long after answer → [`AmdEvent::DecisionTimeout`].
    pub decision_timeout_ms: u32,
    /// Beeps ending later than this after answer are not reported.
    pub tone_timeout_ms: u32,
    /// Silence that ends a machine's greeting → [`AmdEvent::MachineStoppedSpeaking`].
    pub greeting_completion_timeout_ms: u32,
}

impl Default for AmdConfig {
    fn default() -> Self {
        Self {
            no_speech_timeout_ms: 5000,
            decision_timeout_ms: 15000,
            tone_timeout_ms: 20000,
            greeting_completion_timeout_ms: 2000,
        }
    }
}

/// Who answered
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmdType {
    /// A person.
    Human,
    /// An answering machine or voicemail.
    Machine,
    /// A fax machine (CNG or CED heard).
    Fax,
}

impl AmdType {
    /// The name used on the wire: `human`, `machine` or `fax` (jambonz's `amd_type`)
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::Machine => "machine",
            Self::Fax => "fax",
        }
    }
}

/// What the detector reports; `at_ms` counts from answer
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AmdEvent {
    /// The decision.
    Amd {
        /// Who answered.
        amd_type: AmdType,
        /// When it was decided.
        at_ms: u64,
    },
    /// The decision: nobody spoke within `no_speech_timeout_ms`.
    Silence {
        /// When it was decided.
        at_ms: u64,
    },
    /// A beep ended.
    Beep {
        /// End of the tone.
        at_ms: u64,
        /// Its frequency, rounded to Hz.
        frequency_hz: u32,
    },
    /// A machine's greeting was followed by `greeting_completion_timeout_ms` of silence.
    MachineStoppedSpeaking {
        /// When the silence reached the timeout.
        at_ms: u64,
    },
    /// No decision within `decision_timeout_ms`; no decision follows.
    DecisionTimeout {
        /// When the timeout passed.
        at_ms: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Undecided,
    Decided(Option<AmdType>),
    TimedOut,
}

#[derive(Debug, Clone, Copy)]
struct Utterance {
    start_ms: u64,
    last_active_ms: u64,
}

#[derive(Debug, Clone, Copy)]
struct HeldBeep {
    start_ms: u64,
    end_ms: u64,
    event: AmdEvent,
}

/// Answering-machine detector for one leg
#[derive(Debug, Clone)]
pub struct Amd {
    cfg: AmdConfig,
    tone: ToneDetector,
    vad: Vad,
    state: State,
    utterance: Option<Utterance>,
    /// Some utterance long enough to be speech has been heard.
    spoke: bool,
    held: Option<HeldBeep>,
    stopped_reported: bool,
    /// Last hop heard as speech.
    last_speech_ms: Option<u64>,
    /// First and last speech hop (ms) heard while a tone candidate was being followed.
    pending: Option<(u64, u64)>,
    now_ms: u64,
}

fn ms(sample: u64) -> u64 {
    (sample * 1000 + u64::from(RATE) / 2) / u64::from(RATE)
}

fn emit(out: &mut impl Extend<AmdEvent>, event: AmdEvent) {
    out.extend(core::iter::once(event));
}

impl Amd {
    /// A detector for a leg answered at the first sample the spectrum will receive
    pub fn new(cfg: AmdConfig) -> Self {
        Self {
            cfg,
            tone: ToneDetector::new(),
            vad: Vad::new(),
            state: State::Undecided,
            utterance: None,
            spoke: false,
            held: None,
            stopped_reported: false,
            last_speech_ms: None,
            pending: None,
            now_ms: 0,
        }
    }

    /// The voice activity detector's view (noise floor, level)
    pub fn vad(&self) -> &Vad {
        &self.vad
    }

    /// The decision so far: `Some(Some(t))` decided `t`, `Some(None)` silence, `None` not yet
    pub fn decision(&self) -> Option<Option<AmdType>> {
        match self.state {
            State::Decided(d) => Some(d),
            _ => None,
        }
    }

    /// Analyses one hop, appending any events to `out` (at most a few per hop)
    pub fn on_hop(&mut self, s: &Hop<'_>, out: &mut impl Extend<AmdEvent>) {
        self.now_ms = ms(s.end_sample());
        let tone_event = self.tone.on_hop(s);
        let speech = self.vad.on_hop(s);
        let heard = speech && self.vad.active();
        // Hops while the tone detector follows a candidate may be a beep's onset: hold them
        // until it either confirms the tone (then they were not speech) or drops it.
        // A "tone" going on for longer than any beep or CED (hum, a test tone) stops holding.
        let tracking = self
            .tone
            .tracking_since()
            .is_some_and(|start| s.end_sample().saturating_sub(start) < MAX_HOLD_SAMPLES);
        if self.tone.in_tone() {
            self.pending = None;
        } else if tracking {
            if heard {
                let first = self.pending.map_or(self.now_ms, |(first, _)| first);
                self.pending = Some((first, self.now_ms));
            }
        } else {
            if let Some((first, last)) = self.pending.take() {
                self.note_speech(first, last);
            }
            if heard {
                self.note_speech(self.now_ms, self.now_ms);
            }
        }
        if let Some(event) = tone_event {
            self.on_tone(event, out);
        }
        self.timers(tracking, out);
    }

    /// Speech heard from `first` to `last` (ms): extends the utterance or starts one
    fn note_speech(&mut self, first: u64, last: u64) {
        self.last_speech_ms = Some(last);
        match &mut self.utterance {
            Some(u) if first.saturating_sub(u.last_active_ms) < HUMAN_SILENCE_MS => {
                u.last_active_ms = last;
            }
            _ => {
                self.utterance = Some(Utterance {
                    start_ms: first,
                    last_active_ms: last,
                });
            }
        }
    }

    /// End of input: reports a tone still sounding and releases a beep held for CNG
    pub fn finish(&mut self, out: &mut impl Extend<AmdEvent>) {
        if let Some(event) = self.tone.finish() {
            self.on_tone(event, out);
        }
        if let Some(held) = self.held.take() {
            if self.state == State::Undecided {
                self.decide(Some(AmdType::Machine), held.end_ms, out);
            }
            emit(out, held.event);
        }
    }

    /// Decides at `at_ms`: now, or the end of the beep that decided it (so that the decision,
    /// which is reported before that beep, is never later than it)
    fn decide(&mut self, decision: Option<AmdType>, at_ms: u64, out: &mut impl Extend<AmdEvent>) {
        self.state = State::Decided(decision);
        // Literal labels make a static metric key: no allocation on the media path.
        match decision {
            Some(AmdType::Human) => {
                metrics::counter!("dialplane_dsp_amd_decisions_total", "type" => "human")
            }
            Some(AmdType::Machine) => {
                metrics::counter!("dialplane_dsp_amd_decisions_total", "type" => "machine")
            }
            Some(AmdType::Fax) => {
                metrics::counter!("dialplane_dsp_amd_decisions_total", "type" => "fax")
            }
            None => metrics::counter!("dialplane_dsp_amd_decisions_total", "type" => "silence"),
        }
        .increment(1);
        emit(
            out,
            match decision {
                Some(amd_type) => AmdEvent::Amd { amd_type, at_ms },
                None => AmdEvent::Silence { at_ms },
            },
        );
        if let Some(held) = self.held.take()
            && decision != Some(AmdType::Fax)
        {
            emit(out, held.event);
        }
    }

    fn on_tone(&mut self, event: ToneEvent, out: &mut impl Extend<AmdEvent>) {
        match event {
            ToneEvent::Fax { .. } => {
                self.held = None;
                if self.state == State::Undecided {
                    self.decide(Some(AmdType::Fax), self.now_ms, out);
                }
            }
            ToneEvent::Beep {
                start,
                end,
                frequency_hz,
            } => {
                let at_ms = ms(end);
                if at_ms >= u64::from(self.cfg.tone_timeout_ms) {
                    return;
                }
                let beep = AmdEvent::Beep {
                    at_ms,
                    frequency_hz: frequency_hz.round() as u32,
                };
                if self.state != State::Undecided {
                    emit(out, beep);
                    return;
                }
                let len = end.saturating_sub(start);
                // Tone onset hops may have opened an utterance; it is not speech unless long.
                let heard_speech = self.spoke
                    || self.utterance.is_some_and(|u| {
                        u.last_active_ms.saturating_sub(u.start_ms) + 10 >= MIN_UTTERANCE_MS
                    });
                let maybe_cng = !heard_speech
                    && (frequency_hz - 1100.0).abs() <= 40.0
                    && (350 * 8..=750 * 8).contains(&len)
                    && self.held.is_none();
                if maybe_cng {
                    self.held = Some(HeldBeep {
                        start_ms: ms(start),
                        end_ms: at_ms,
                        event: beep,
                    });
                } else {
                    self.decide(Some(AmdType::Machine), at_ms, out);
                    emit(out, beep);
                }
            }
        }
    }

    fn timers(&mut self, tracking: bool, out: &mut impl Extend<AmdEvent>) {
        let now = self.now_ms;
        // An utterance ends after HUMAN_SILENCE_MS without speech (tone hops keep it open).
        if let Some(u) = self.utterance {
            let silence = now.saturating_sub(u.last_active_ms);
            let length = u.last_active_ms.saturating_sub(u.start_ms);
            if silence >= HUMAN_SILENCE_MS && !tracking {
                self.utterance = None;
                if length + 10 >= MIN_UTTERANCE_MS {
                    self.spoke = true;
                    if self.state == State::Undecided {
                        self.decide(Some(AmdType::Human), now, out);
                    }
                }
            } else if length >= MACHINE_SPEECH_MS {
                self.spoke = true;
                if self.state == State::Undecided {
                    self.decide(Some(AmdType::Machine), now, out);
                }
            }
        }
        if let Some(held) = self.held
            && now >= held.start_ms + CNG_HOLD_MS
            && self.state == State::Undecided
        {
            self.decide(Some(AmdType::Machine), held.end_ms, out);
        }
        if self.state == State::Undecided
            && !self.spoke
            && self.utterance.is_none()
            && self.held.is_none()
            && !tracking
            && now >= u64::from(self.cfg.no_speech_timeout_ms)
        {
            self.decide(None, now, out);
        }
        if self.state == State::Undecided && now >= u64::from(self.cfg.decision_timeout_ms) {
            self.state = State::TimedOut;
            emit(out, AmdEvent::DecisionTimeout { at_ms: now });
        }
        if self.state == State::Decided(Some(AmdType::Machine))
            && self.spoke
            && !self.stopped_reported
            && !tracking
            && let Some(last) = self.last_speech_ms
            && now.saturating_sub(last) >= u64::from(self.cfg.greeting_completion_timeout_ms)
        {
            self.stopped_reported = true;
            emit(out, AmdEvent::MachineStoppedSpeaking { at_ms: now });
        }
    }
}
