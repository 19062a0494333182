//! Digits on a call's legs: dtmfCapture matches posted to the dtmfHook, SIP INFO digits, and
//! REST `dtmf` sent into a leg
//!
//! One key press is one digit whichever way it came: the media plane reports RFC 4733 presses
//! and, on legs with an in-band tap, tones (unified with RFC 4733 there); SIP INFO bodies are
//! parsed here. While a fork's confirmHook app runs, its digits are the app's
//! ([`Core::screen_digit`]); otherwise each leg's [`Capture`] gets them.
//!
//! Metrics: `dialplane_dtmf_digits_total{source}` (rfc4733, inband, info),
//! `dialplane_dtmf_matches_total`.

use std::time::Instant;

use ::media::api::{Command as MediaCommand, DigitSource, LegId};
use dsp::amd::AmdConfig;

use super::{Call, Core, Leg, Step};
use crate::dialog::Reply;
use crate::dtmf_capture::{Capture, info_digit};
use crate::message::{HeaderName, Request, StatusCode};
use crate::payload::CallInfo;
use crate::rest;
use crate::transaction::TransactionKey;
use crate::verbs::{self, Hook};

const DIGITS_METRIC: &str = "dialplane_dtmf_digits_total";
const MATCHES_METRIC: &str = "dialplane_dtmf_matches_total";
/// RFC 4733 volume of the digits REST sends (-10 dBm0, the usual level).
const SEND_VOLUME: u8 = 10;

/// Who wants in-band DTMF detection on a leg (bits of [`LegTap::dtmf`])
#[derive(Debug, Clone, Copy)]
pub(in crate::b2bua) enum TapUser {
    /// dtmfCapture.
    Capture = 1,
    /// listen's passDtmf / finishOnKey.
    Listen = 2,
    /// A confirmHook app's gather.
    Confirm = 4,
}

/// What one leg's DSP tap is asked for
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(in crate::b2bua) struct LegTap {
    /// [`TapUser`] bits.
    dtmf: u8,
    amd: Option<AmdConfig>,
}

/// Each leg's tap wants: dtmfCapture, listen, confirmHook and amd share one media tap per leg,
/// and one feature turning its part off must not switch off another's detector.
#[derive(Debug, Default)]
pub(in crate::b2bua) struct Taps(Vec<(LegId, LegTap)>);

impl Taps {
    /// The leg is gone (its media tap with it).
    pub(in crate::b2bua) fn forget(&mut self, leg: LegId) {
        self.0.retain(|(l, _)| *l != leg);
    }

    fn leg(&mut self, leg: LegId) -> &mut LegTap {
        let i = match self.0.iter().position(|(l, _)| *l == leg) {
            Some(i) => i,
            None => {
                self.0.push((leg, LegTap::default()));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }
}

/// A dial's dtmfCapture: the hook and each leg's buffer
pub(super) struct Captures {
    hook: Hook,
    parent: Capture,
    /// One per fork, each with the childCall patterns.
    child: Vec<Capture>,
}

impl Captures {
    /// The dial's captures, when it has both patterns and a dtmfHook.
    pub(super) fn of(verb: &verbs::Dial, forks: usize) -> Option<Captures> {
        let (Some(hook), Some(c)) = (&verb.dtmf_hook, &verb.dtmf_capture) else {
            return None;
        };
        Some(Captures {
            hook: hook.clone(),
            parent: Capture::new(&c.parent_call),
            child: vec![Capture::new(&c.child_call); forks],
        })
    }

    /// The caller's leg listens for something.
    pub(super) fn parent_wanted(&self) -> bool {
        !self.parent.is_empty()
    }

    /// The forks' legs listen for something.
    pub(super) fn child_wanted(&self) -> bool {
        self.child.first().is_some_and(|c| !c.is_empty())
    }
}

/// The dtmfHook's body: the pressing leg's call info and the sequence it matched
#[derive(serde::Serialize)]
struct DtmfPayload {
    #[serde(flatten)]
    call: CallInfo,
    dtmf: String,
}

/// The leg of the call a media leg carries.
pub(super) fn leg_of_media(call: &Call, media_leg: LegId) -> Option<Leg> {
    match (&call.step, media_leg) {
        (_, LegId(0)) => Some(Leg::Caller),
        (Step::Dial(run), l) => (0..run.forks.len())
            .find(|&i| run.media_leg(i) == Some(l))
            .map(Leg::Fork),
        _ => None,
    }
}

impl Core {
    /// A digit from the media plane: which leg of the call pressed it.
    pub(super) fn on_media_digit(
        &mut self,
        now: Instant,
        call: &mut Call,
        media_leg: LegId,
        digit: char,
        source: DigitSource,
    ) {
        let leg = leg_of_media(call, media_leg);
        let label = match source {
            DigitSource::Rfc4733 => "rfc4733",
            DigitSource::InBand => "inband",
            DigitSource::Info => "info",
        };
        match leg {
            Some(leg) => self.on_digit(now, call, leg, digit, label),
            None => super::super::ignored("digit_no_leg"),
        }
    }

    /// SIP INFO in a leg's dialog: 200, and its digit (if it carries one) counts as a press.
    pub(super) fn on_info(
        &mut self,
        now: Instant,
        call: &mut Call,
        leg: Leg,
        key: TransactionKey,
        request: &Request,
    ) {
        let content_type = request
            .headers
            .get(&HeaderName::CONTENT_TYPE)
            .unwrap_or_default();
        let digit = info_digit(content_type, &String::from_utf8_lossy(&request.body));
        let _ = self.dl.respond(now, &key, Reply::new(StatusCode::OK));
        if let Some(d) = digit {
            self.on_digit(now, call, leg, d, "info");
        }
    }

    /// One key press on `leg`: to its screening app, else to its capture; a match is posted.
    fn on_digit(
        &mut self,
        now: Instant,
        call: &mut Call,
        leg: Leg,
        digit: char,
        source: &'static str,
    ) {
        metrics::counter!(DIGITS_METRIC, "source" => source).increment(1);
        tracing::debug!(call_sid = %call.sid, ?leg, %digit, source, "digit");
        if let Leg::Fork(i) = leg
            && self.screen_digit(now, call, i, digit)
        {
            return;
        }
        let Step::Dial(run) = &mut call.step else {
            return;
        };
        let Some(c) = &mut run.capture else { return };
        let (hit, info) = match leg {
            Leg::Caller => (c.parent.press(now, digit), &call.info),
            Leg::Fork(i) => match c.child.get_mut(i) {
                Some(capture) => (capture.press(now, digit), &run.forks[i].info),
                None => return,
            },
        };
        let Some(dtmf) = hit else { return };
        metrics::counter!(MATCHES_METRIC).increment(1);
        let (hook, payload) = (
            c.hook.clone(),
            DtmfPayload {
                call: info.clone(),
                dtmf,
            },
        );
        // Notification only: the answer is not waited for.
        self.send_hook(call, &hook, None, payload);
    }

    /// REST `dtmf`: each key into the leg, in order (media queues them): RFC 4733 where the leg
    /// negotiated telephone-event, tones in its audio otherwise.
    pub(super) fn send_dtmf(&mut self, call: &Call, leg: Leg, d: &rest::Dtmf) {
        let media_leg = match (leg, &call.step) {
            (Leg::Caller, _) => Some(LegId(0)),
            (Leg::Fork(i), Step::Dial(run)) => run.media_leg(i),
            _ => None,
        };
        let Some(media_leg) = media_leg else {
            tracing::warn!(call_sid = %call.sid, "REST dtmf: the leg has no media");
            return super::super::ignored("dtmf_no_media");
        };
        for digit in d.digits.chars() {
            self.post_media(MediaCommand::SendDtmf {
                call_id: call.media_id(),
                leg: media_leg,
                digit,
                duration_ms: d.duration_ms,
                volume: SEND_VOLUME,
            });
        }
    }

    /// In-band DTMF detection on a leg, on or off.
    /// Turns `user`'s want of in-band DTMF detection on `leg` on or off.
    pub(in crate::b2bua) fn tap_dtmf(
        &mut self,
        call: &mut Call,
        leg: LegId,
        user: TapUser,
        on: bool,
    ) {
        let t = call.taps.leg(leg);
        let before = *t;
        if on {
            t.dtmf |= user as u8;
        } else {
            t.dtmf &= !(user as u8);
        }
        self.retap(call, leg, before);
    }

    /// Sets (or with `None` removes) answering-machine detection on `leg`.
    pub(in crate::b2bua) fn tap_amd(
        &mut self,
        call: &mut Call,
        leg: LegId,
        amd: Option<AmdConfig>,
    ) {
        let t = call.taps.leg(leg);
        let before = *t;
        t.amd = amd;
        self.retap(call, leg, before);
    }

    /// Sends the leg's whole tap when what it detects changed: the media command replaces the
    /// tap, so it always carries every feature's wants.
    fn retap(&mut self, call: &mut Call, leg: LegId, before: LegTap) {
        let now = *call.taps.leg(leg);
        if (now.dtmf != 0) == (before.dtmf != 0) && now.amd == before.amd {
            return;
        }
        self.post_media(MediaCommand::Tap {
            call_id: call.media_id(),
            leg,
            dtmf: now.dtmf != 0,
            amd: now.amd,
        });
    }
}
