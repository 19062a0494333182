//! Codecs when the legs of a call may differ: the relay transcodes PCMU, PCMA and Opus between
//! legs (media's `codec` module), so a fork is offered those on top of the caller's codecs, and
//! the caller is answered with its own codecs when the callee chose one the caller lacks. Media
//! sees the two legs' payload-type tables at the bridge and transcodes when they share no audio
//! codec; when they do, packets are relayed untouched as before.

use crate::sdp::Codec;

/// Codec names the relay decodes and encodes (as SDP spells them, compared case-insensitively).
const TRANSCODABLE: [&str; 3] = ["PCMU", "PCMA", "opus"];

fn transcodable(c: &Codec) -> bool {
    TRANSCODABLE.iter().any(|n| n.eq_ignore_ascii_case(&c.name))
}

/// What a fork is offered: the caller's codecs first (a callee that takes one of them is relayed
/// without transcoding), then each of PCMU, PCMA and Opus the caller lacks, when the caller has
/// one of them to transcode from, and telephone-event/8000 when the caller's runs at another
/// clock (48000 beside Opus: the relay scales the events). Opus gets payload type 111, or the
/// first dynamic type free.
pub(super) fn fork_codecs(mut caller: Vec<Codec>) -> Vec<Codec> {
    if !caller.iter().any(transcodable) {
        return caller;
    }
    let events_elsewhere = caller
        .iter()
        .any(|c| c.is_telephone_event() && c.clock_rate != 8000);
    let event = events_elsewhere.then(Codec::telephone_event);
    for extra in [Codec::pcmu(), Codec::pcma(), Codec::opus()]
        .into_iter()
        .chain(event)
    {
        let present = |c: &Codec| {
            c.name.eq_ignore_ascii_case(&extra.name)
                && (!extra.is_telephone_event() || c.clock_rate == extra.clock_rate)
        };
        if caller.iter().any(present) {
            continue;
        }
        let taken = |pt: u8| caller.iter().any(|c| c.payload_type == pt);
        let pt = if taken(extra.payload_type) {
            match (96..=127).find(|&pt| !taken(pt)) {
                Some(pt) => pt,
                None => continue,
            }
        } else {
            extra.payload_type
        };
        caller.push(Codec {
            payload_type: pt,
            ..extra
        });
    }
    caller
}

/// The codecs to answer the caller with once the callee negotiated `callee`: those when the
/// caller offered one of its audio codecs (a plain relay), else the first of the caller's own
/// codecs the relay transcodes (alone, so the caller sends what the transcoder decodes), with its
/// telephone-event and comfort noise, from `offered`.
pub(super) fn caller_codecs(offered: Vec<Codec>, callee: Vec<Codec>) -> Vec<Codec> {
    let shared = callee
        .iter()
        .any(|c| !c.is_telephone_event() && offered.iter().any(|o| o.same_format(c)));
    if shared {
        // The caller keeps its own telephone-event when the callee's runs at another clock.
        let mut codecs = callee;
        if let Some(te) = offered.iter().find(|c| c.is_telephone_event())
            && codecs.iter().any(Codec::is_telephone_event)
            && !codecs.iter().any(|c| c.same_format(te))
        {
            codecs.push(te.clone());
        }
        return codecs;
    }
    let mut audio = false;
    offered
        .into_iter()
        .filter(|c| {
            if transcodable(c) {
                !std::mem::replace(&mut audio, true)
            } else {
                c.is_telephone_event() || c.name.eq_ignore_ascii_case("CN")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(codecs: &[Codec]) -> Vec<(u8, &str)> {
        codecs
            .iter()
            .map(|c| (c.payload_type, c.name.as_str()))
            .collect()
    }

    #[test]
    fn an_opus_caller_is_offered_to_forks_with_g711_too() {
        let offered = fork_codecs(vec![Codec::opus(), Codec::telephone_event()]);
        assert_eq!(
            names(&offered),
            [
                (111, "opus"),
                (101, "telephone-event"),
                (0, "PCMU"),
                (8, "PCMA")
            ]
        );
    }

    #[test]
    fn a_g711_caller_gets_opus_on_a_free_payload_type() {
        let mut te = Codec::telephone_event();
        te.payload_type = 111;
        let offered = fork_codecs(vec![Codec::pcma(), te]);
        assert_eq!(
            names(&offered),
            [
                (8, "PCMA"),
                (111, "telephone-event"),
                (0, "PCMU"),
                (96, "opus")
            ]
        );
    }

    #[test]
    fn an_opus_caller_with_48_khz_events_gets_8_khz_events_offered_and_kept() {
        let mut te48 = Codec::new(126, "telephone-event", 48000, None);
        te48.fmtp = Some("0-15".into());
        let offered = fork_codecs(vec![Codec::opus(), te48.clone()]);
        assert_eq!(
            names(&offered),
            [
                (111, "opus"),
                (126, "telephone-event"),
                (0, "PCMU"),
                (8, "PCMA"),
                (101, "telephone-event")
            ]
        );
        assert_eq!(offered[4].clock_rate, 8000);
        // A callee taking Opus with 8 kHz events: the caller is answered with its own.
        let callee = vec![Codec::opus(), Codec::telephone_event()];
        let answer = caller_codecs(vec![Codec::opus(), te48], callee);
        assert_eq!(
            names(&answer),
            [
                (111, "opus"),
                (101, "telephone-event"),
                (126, "telephone-event")
            ]
        );
    }

    #[test]
    fn nothing_is_added_without_a_codec_to_transcode_from() {
        let g722 = Codec::new(9, "G722", 8000, None);
        assert_eq!(names(&fork_codecs(vec![g722.clone()])), [(9, "G722")]);
    }

    #[test]
    fn the_caller_keeps_its_codec_when_the_callee_took_another() {
        let caller = vec![Codec::opus(), Codec::pcma(), Codec::telephone_event()];
        let callee = vec![Codec::pcmu(), Codec::telephone_event()];
        assert_eq!(
            names(&caller_codecs(caller.clone(), callee)),
            [(111, "opus"), (101, "telephone-event")]
        );
        // A callee that took the caller's codec is relayed as before.
        let both = vec![Codec::opus()];
        assert_eq!(names(&caller_codecs(caller, both)), [(111, "opus")]);
    }
}
