//! Audio files in a dial: `dialMusic` looped to the caller while the forks ring, and `dub`
//! tracks mixed into what the callee hears once bridged (from the verb or REST).
//!
//! Files (these and a screening app's prompts) come from [`crate::media_files`]' bounded cache
//! on a task of their own and reach the core as a [`Msg::File`]; media plays the PCM. A dial
//! with dialMusic rings its forks at once and starts the music when the file arrives, if the
//! dial still rings then; the caller hears silence until then. Should the file fail, the caller
//! hears ringback instead: our 183 has told its phone not to make its own.

use std::sync::{Arc, LazyLock};
use std::time::Instant;

use ::media::api::{Command as MediaCommand, DubAction as MediaDub, LegId, TrackId};

use super::super::{Core, Msg};
use super::{Call, DialRun, FORK_LEG, Step};
use crate::media_files::MediaFileError;
use crate::payload::CallSid;
use crate::rest::{self, DubAction, DubSource};
use crate::verbs;

/// What a fetched file is for
#[derive(Debug)]
pub(in crate::b2bua) enum FileUse {
    /// The running dial's dialMusic (from this source).
    DialMusic(String),
    /// A dub track of the running dial's callee.
    Dub {
        track: TrackId,
        looped: bool,
        gain_db: i8,
    },
    /// File `index` of prompt `prompt` of fork `fork`'s screening app.
    Screen {
        fork: CallSid,
        prompt: u64,
        index: usize,
    },
}

/// The audio state of a running dial
#[derive(Debug, Default)]
pub(super) struct DialAudio {
    /// The dialMusic samples, when they could be had.
    music: Option<Arc<[i16]>>,
    /// The caller hears the music now.
    playing: bool,
    /// Dub operations waiting for the bridge.
    pending: Vec<rest::Dub>,
    /// Track names; a track's id is its index.
    tracks: Vec<String>,
}

impl Core {
    /// Starts the dial verb, and fetches its dialMusic meanwhile
    pub(super) fn dial(&mut self, now: Instant, call: &mut Call, verb: Box<verbs::Dial>) {
        let music = verb.dial_music.clone();
        self.start_dial(now, call, verb);
        if let Some(source) = music
            && matches!(call.step, Step::Dial(_))
        {
            self.fetch_file(call.key, source.clone(), FileUse::DialMusic(source));
        }
    }

    pub(super) fn fetch_file(&self, call: u64, source: String, usage: FileUse) {
        let files = self.svc.media_files.clone();
        let msgs = self.msgs_tx.clone();
        tokio::spawn(async move {
            let result = files.get(&source).await;
            let _ = msgs.send(Msg::File {
                call,
                usage,
                result,
            });
        });
    }

    /// A file came back (or failed)
    pub(in crate::b2bua) fn on_file(
        &mut self,
        now: Instant,
        call: &mut Call,
        usage: FileUse,
        result: Result<Arc<[i16]>, MediaFileError>,
    ) {
        match usage {
            FileUse::DialMusic(source) => {
                // Only for the dial that asked, still ringing: not once bridged or over.
                let ringing = |run: &DialRun| {
                    run.bridged.is_none() && run.verb.dial_music.as_ref() == Some(&source)
                };
                if !matches!(&call.step, Step::Dial(run) if ringing(run)) {
                    return;
                }
                let samples = result.unwrap_or_else(|e| {
                    tracing::warn!(call_sid = %call.sid, error = %e,
                        "dialMusic not played: the caller hears ringback while it rings");
                    RINGBACK.clone()
                });
                let Step::Dial(mut run) = std::mem::replace(&mut call.step, Step::Idle) else {
                    return;
                };
                run.audio.music = Some(samples);
                self.play_music(call, &mut run);
                call.step = Step::Dial(run);
            }
            FileUse::Screen {
                fork,
                prompt,
                index,
            } => self.on_screen_file(now, call, (fork, prompt, index), result),
            FileUse::Dub {
                track,
                looped,
                gain_db,
            } => {
                let samples = match result {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(call_sid = %call.sid, error = %e, "dub track not played");
                        return;
                    }
                };
                // Only into the callee of a dial still bridged.
                if !matches!(&call.step, Step::Dial(run) if run.bridged.is_some()) {
                    return;
                }
                self.post_media(MediaCommand::Dub {
                    call_id: call.media_id(),
                    leg: FORK_LEG,
                    track,
                    action: MediaDub::Play {
                        samples,
                        looped,
                        gain_db,
                    },
                });
            }
        }
    }

    /// The audio a new dial starts with: the verb's dub operations (the music comes later)
    pub(super) fn dial_audio(call: &Call, verb: &verbs::Dial) -> DialAudio {
        let pending = verb
            .dub
            .iter()
            .filter_map(|d| {
                rest::Dub::from_verb(d)
                    .inspect_err(
                        |e| tracing::warn!(call_sid = %call.sid, error = %e, "dub skipped"),
                    )
                    .ok()
            })
            .collect();
        DialAudio {
            pending,
            ..DialAudio::default()
        }
    }

    /// `RingCaller` of a dial with music: 183 with our SDP, then the music (once it is here).
    /// `false`: not ours.
    pub(super) fn ring_with_music(
        &mut self,
        now: Instant,
        call: &mut Call,
        run: &mut DialRun,
        status: u16,
        early_from: Option<crate::dial::ForkId>,
    ) -> bool {
        if status != 183 || early_from.is_some() || run.verb.dial_music.is_none() {
            return false;
        }
        let Some(body) = self.caller_answer(call, None) else {
            tracing::warn!(call_sid = %call.sid, "no codec in common with the caller");
            return false;
        };
        self.reply_caller(
            now,
            call,
            crate::dialog::Reply::new(crate::message::StatusCode::SESSION_PROGRESS)
                .body(crate::dialog::Body::new(super::SDP, body)),
        );
        call.info.call_status = crate::payload::CallStatus::EarlyMedia;
        call.info.sip_status = status;
        self.play_music(call, run);
        true
    }

    /// Loops the music to the caller, once it can hear us and until the bridge
    pub(super) fn play_music(&mut self, call: &Call, run: &mut DialRun) {
        let Some(samples) = run.audio.music.clone() else {
            return;
        };
        if run.audio.playing || run.bridged.is_some() || call.answer.is_none() {
            return;
        }
        run.audio.playing = true;
        self.post_media(MediaCommand::PlayPcm {
            call_id: call.media_id(),
            leg: LegId(0),
            samples,
            looped: true,
        });
    }

    /// Stops the music (bridge, or the dial is over); media keeps the caller's stream continuous
    pub(super) fn stop_music(&mut self, call: &Call, run: &mut DialRun) {
        if std::mem::take(&mut run.audio.playing) {
            self.post_media(MediaCommand::StopPlay {
                call_id: call.media_id(),
                leg: LegId(0),
            });
        }
    }

    /// The callee is bridged: the dub operations waiting for it run
    pub(super) fn dub_on_bridge(&mut self, call: &Call, run: &mut DialRun) {
        for d in std::mem::take(&mut run.audio.pending) {
            self.dub(call, run, d);
        }
    }

    /// A REST `dub`: now if the callee is bridged, else at the bridge
    pub(super) fn rest_dub(&mut self, call: &mut Call, d: rest::Dub) {
        if !matches!(call.step, Step::Dial(_)) {
            tracing::warn!(call_sid = %call.sid, "dub without a dial: nobody to dub");
            return super::super::ignored("dub_no_dial");
        }
        let Step::Dial(mut run) = std::mem::replace(&mut call.step, Step::Idle) else {
            return;
        };
        if run.bridged.is_some() {
            self.dub(call, &mut run, d);
        } else {
            run.audio.pending.push(d);
        }
        call.step = Step::Dial(run);
    }

    /// One dub operation on the callee's leg
    fn dub(&mut self, call: &Call, run: &mut DialRun, d: rest::Dub) {
        let tracks = &mut run.audio.tracks;
        let track = match tracks.iter().position(|t| *t == d.track) {
            Some(i) => i,
            None => {
                tracks.push(d.track.clone());
                tracks.len() - 1
            }
        };
        let track = TrackId(track as u32);
        let post = |core: &mut Core, action| {
            core.post_media(MediaCommand::Dub {
                call_id: call.media_id(),
                leg: FORK_LEG,
                track,
                action,
            });
        };
        metrics::counter!("dialplane_dub_actions_total", "action" => action_name(d.action))
            .increment(1);
        match d.action {
            DubAction::AddTrack => post(self, MediaDub::AddTrack),
            DubAction::RemoveTrack => post(self, MediaDub::RemoveTrack),
            DubAction::SilenceTrack => post(self, MediaDub::Silence),
            DubAction::PlayOnTrack | DubAction::SayOnTrack => {}
        }
        let source = match d.source {
            Some(DubSource::Play(url)) => Some(url),
            Some(DubSource::Say(text)) => {
                let said = self.svc.media_files.say_source(&text, None, None);
                if said.is_none() {
                    tracing::error!(call_sid = %call.sid, track = %d.track,
                        "dub sayOnTrack: no speech synthesizer is configured ([speech] tts_url), nothing played");
                }
                said
            }
            None => None,
        };
        if let Some(source) = source {
            let usage = FileUse::Dub {
                track,
                looped: d.looped,
                // Within ±50 (checked with the request).
                gain_db: d.gain_db.round() as i8,
            };
            self.fetch_file(call.key, source, usage);
        }
    }
}

/// Ringback tone at 8 kHz, one cadence: 440 + 480 Hz at -19 dBm0 each for 2 s, 4 s of silence
/// (the North American tone of ITU-T E.180's supplement; the pair is what callers know).
static RINGBACK: LazyLock<Arc<[i16]>> = LazyLock::new(|| {
    let amplitude = dsp::spectrum::dbm0_amplitude(-19.0) * 32767.0;
    let on = 2 * 8000;
    (0..6 * 8000)
        .map(|i| {
            if i >= on {
                return 0;
            }
            let t = i as f32 / 8000.0;
            let tau = 2.0 * std::f32::consts::PI;
            (amplitude * ((tau * 440.0 * t).sin() + (tau * 480.0 * t).sin())) as i16
        })
        .collect()
});

fn action_name(a: DubAction) -> &'static str {
    match a {
        DubAction::AddTrack => "addTrack",
        DubAction::RemoveTrack => "removeTrack",
        DubAction::SilenceTrack => "silenceTrack",
        DubAction::PlayOnTrack => "playOnTrack",
        DubAction::SayOnTrack => "sayOnTrack",
    }
}
