//! `listen` and `transcribe` of a dial: once the callee is bridged, the caller's leg is forked
//! in media and its frames streamed by a task of [`crate::stream`] per stream. The call keeps
//! only each stream's [`Control`] sender: REST `listen_status` goes through it, and dropping it
//! (the dial or the call ends) ends the stream. The task stops its media fork, and posts
//! listen's actionHook, when the stream ends for whatever reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use media::api::{
    Command as MediaCommand, DubAction as MediaDub, ForkId, ForkMix, LegId, MediaControl, TrackId,
};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::call::{Call, FORK_LEG};
use super::{Core, unix_now};
use crate::payload::CallInfo;
use crate::playback::{BidiOptions, Out, Playback};
use crate::rest::ListenStatus;
use crate::stream::{
    self, Alternative, Control, End, Feed, ListenOptions, SttStart, Taps, Target, Transcript,
};
use crate::verbs::{self, Hook, Listen, MixType, Transcribe};
use crate::webhook::{HookBase, WebhookClient};

/// Rates a listen stream can have (media's fork resamples to them).
const LISTEN_RATES: [u32; 4] = [8000, 16000, 24000, 48000];
/// Audio sent to the speech vendor: 8 kHz, as jambonz sends.
const STT_RATE: u32 = 8000;

/// Fork ids, unique in the process (so [`Taps`] needs no call id).
static NEXT_FORK: AtomicU32 = AtomicU32::new(1);

/// A call's running streams
#[derive(Debug, Default)]
pub(super) struct Streams {
    listen: Vec<mpsc::UnboundedSender<Control>>,
    transcribe: Vec<mpsc::UnboundedSender<Control>>,
}

impl Streams {
    /// REST `listen_status`: pauses or resumes the listen streams (and the transcriptions of
    /// the same audio); `false` when there is none.
    pub(super) fn set(&mut self, s: ListenStatus) -> bool {
        let c = match s {
            ListenStatus::Pause => Control::Pause,
            ListenStatus::Silence => Control::Silence,
            ListenStatus::Resume => Control::Resume,
        };
        self.listen.retain(|tx| tx.send(c).is_ok());
        self.transcribe.retain(|tx| tx.send(c).is_ok());
        !(self.listen.is_empty() && self.transcribe.is_empty())
    }

    /// A key the caller pressed, for the listen streams.
    pub(super) fn digit(&mut self, digit: char, duration_ms: u32) {
        let key = Control::Dtmf { digit, duration_ms };
        self.listen.retain(|tx| tx.send(key).is_ok());
    }

    /// Ends every stream.
    pub(super) fn stop(&mut self) {
        self.listen.clear();
        self.transcribe.clear();
    }
}

/// What a stream's task needs of the core
struct Env {
    taps: Taps,
    media: Arc<dyn MediaControl>,
    webhooks: WebhookClient,
    base: Option<HookBase>,
    call_id: media::api::CallId,
    fork: ForkId,
}

impl Env {
    /// The stream is over: no more frames, the fork goes.
    fn close(&self) {
        self.taps.close(self.fork);
        self.media.post(vec![MediaCommand::StopFork {
            call_id: self.call_id.clone(),
            fork: self.fork,
        }]);
    }
}

impl Core {
    /// The dial bridged its callee: start what `verb` streams.
    pub(super) fn start_streams(&mut self, call: &mut Call, verb: &verbs::Dial) {
        if let Some(l) = &verb.listen {
            self.start_listen(call, l);
            if let Some(t) = &l.transcribe {
                self.start_transcribe(call, t, false);
            }
        }
        if let Some(t) = &verb.transcribe {
            self.start_transcribe(call, t, true);
        }
    }

    /// Forks `leg` for a stream: what its task needs, and its control sender.
    fn open(
        &mut self,
        call: &Call,
        leg: LegId,
        mix: ForkMix,
        sample_rate: u32,
    ) -> (Env, Feed, mpsc::UnboundedSender<Control>) {
        let fork = ForkId(NEXT_FORK.fetch_add(1, Ordering::Relaxed));
        let call_id = call.media_id();
        let frames = self.taps.open(fork);
        self.post_media(MediaCommand::ForkAudio {
            call_id: call_id.clone(),
            leg,
            fork,
            mix,
            sample_rate,
        });
        let (tx, control) = mpsc::unbounded_channel();
        let env = Env {
            taps: self.taps.clone(),
            media: self.svc.media.clone(),
            webhooks: self.svc.webhooks.clone(),
            base: call.hook_base.clone(),
            call_id,
            fork,
        };
        (env, Feed { frames, control }, tx)
    }

    fn start_listen(&mut self, call: &mut Call, l: &Listen) {
        let rate = l.sample_rate.unwrap_or(8000);
        if !LISTEN_RATES.contains(&rate) {
            tracing::warn!(call_sid = %call.sid, rate, "listen: sampleRate not supported; not streamed");
            return;
        }
        let mix_type = l.mix_type.unwrap_or(MixType::Mono);
        let mix = match mix_type {
            MixType::Mono => ForkMix::Received,
            MixType::Stereo => ForkMix::Stereo,
            MixType::Mixed => ForkMix::Mixed,
        };
        let target = Target {
            url: l.url.clone(),
            authorization: l
                .ws_auth
                .as_ref()
                .or(l.auth.as_ref())
                .map(|c| Target::basic(&c.username, &c.password)),
            subprotocol: Some(stream::LISTEN_SUBPROTOCOL),
        };
        let metadata = listen_metadata(&call.info, l.metadata.as_ref(), rate, mix_type);
        let opts = ListenOptions {
            max_length: l.max_length.map(|s| Duration::from_secs(u64::from(s))),
            pass_dtmf: l.pass_dtmf.unwrap_or(false),
            finish_on_key: l.finish_on_key.as_deref().and_then(|k| k.chars().next()),
        };
        if opts.pass_dtmf || opts.finish_on_key.is_some() {
            // The caller's keys (RFC 4733 and in-band) come as media digit events.
            self.tap_dtmf(call, LegId(0), super::call::TapUser::Listen, true);
        }
        let (env, feed, control) = self.open(call, LegId(0), mix, rate);
        call.streams.listen.push(control);
        let playback = bidi_options(l).and_then(|opts| self.playback(call, env.fork, opts));
        let hook = l.action_hook.clone();
        let info = call.info.clone();
        let sid = call.sid;
        tokio::spawn(async move {
            let end = stream::listen(target, metadata, opts, feed, playback).await;
            env.close();
            match &end {
                End::Failed(why) => tracing::warn!(call_sid = %sid, %why, "listen stream failed"),
                e => tracing::info!(call_sid = %sid, end = ?e, "listen stream ended"),
            }
            if let Some(hook) = hook
                && let Err(e) = env
                    .webhooks
                    .send(&hook, env.base.as_ref(), &info, unix_now())
                    .await
            {
                tracing::warn!(call_sid = %sid, error = %e, "listen actionHook failed");
            }
        });
    }

    /// Audio back from a listen's websocket plays to the caller (jambonz plays it on the
    /// endpoint the listen forks, the caller's) on a dub track of its own, mixed over the
    /// callee. The track is added with the first audio (an idle leg stays idle in media) and
    /// removed when the stream ends. `None` when the rate cannot be converted.
    fn playback(&self, call: &Call, fork: ForkId, opts: BidiOptions) -> Option<Playback> {
        let call_id = call.media_id();
        let track = TrackId(fork.0);
        let media = self.svc.media.clone();
        let mut added = false;
        let sink = Box::new(move |out| {
            let actions = match out {
                Out::Append(samples) => {
                    let append = MediaDub::Append {
                        samples,
                        gain_db: 0,
                    };
                    if std::mem::replace(&mut added, true) {
                        vec![append]
                    } else {
                        vec![MediaDub::AddTrack, append]
                    }
                }
                Out::Flush if added => vec![MediaDub::Silence],
                Out::End if added => vec![MediaDub::RemoveTrack],
                Out::Flush | Out::End => Vec::new(),
            };
            let commands: Vec<_> = actions
                .into_iter()
                .map(|action| MediaCommand::Dub {
                    call_id: call_id.clone(),
                    leg: LegId(0),
                    track,
                    action,
                })
                .collect();
            if !commands.is_empty() {
                media.post(commands);
            }
        });
        let playback = Playback::new(opts, sink);
        if playback.is_none() {
            tracing::warn!(call_sid = %call.sid, rate = opts.sample_rate,
                "listen: bidirectionalAudio sampleRate not supported; audio back not played");
        }
        playback
    }

    /// Transcribes the channels `t` asks for, one vendor connection per channel as jambonz
    /// runs one recognition session per leg: a nested transcribe of a dial takes both (caller
    /// 1, callee 2) unless it names a `channel` or sets `separateRecognitionPerChannel: false`;
    /// elsewhere (nested in listen) only the caller.
    fn start_transcribe(&mut self, call: &mut Call, t: &Transcribe, in_dial: bool) {
        let speech = &call.config.speech;
        let Some(url) = speech.stt_url.clone() else {
            tracing::warn!(call_sid = %call.sid, "transcribe: no [speech] stt_url configured");
            return;
        };
        let Some(hook) = t.transcription_hook.clone().map(Hook::post) else {
            tracing::warn!(call_sid = %call.sid, "transcribe without a transcriptionHook");
            return;
        };
        let recognizer = t.recognizer.clone().unwrap_or_default();
        let start = SttStart {
            language: recognizer
                .get("language")
                .and_then(Value::as_str)
                .unwrap_or(&speech.language)
                .to_string(),
            interim: recognizer
                .get("interim")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            sample_rate: STT_RATE,
            options: recognizer
                .get("options")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            channel: 1,
        };
        let target = Target {
            url,
            authorization: speech.stt_api_key.as_ref().map(|k| format!("Bearer {k}")),
            subprotocol: None,
        };
        let separate = recognizer
            .get("separateRecognitionPerChannel")
            .and_then(Value::as_bool);
        let info = call.info.clone();
        let language = start.language.clone();
        // Transcripts of both channels are posted in order, on a task of their own so a slow
        // hook never holds up the audio. Both carry the caller's call info, as jambonz's do.
        let out = self.hook_queue(
            call,
            hook,
            "transcriptionHook",
            move |(channel, tr): (u32, Transcript)| TranscriptionPayload {
                call: info.clone(),
                speech: Speech {
                    language_code: tr.language.unwrap_or_else(|| language.clone()),
                    channel_tag: channel,
                    is_final: tr.is_final,
                    alternatives: tr.alternatives,
                },
            },
            |_, _| {},
        );
        let sid = call.sid;
        for channel in transcribed_channels(in_dial, t.channel, separate) {
            let leg = if channel == 1 { LegId(0) } else { FORK_LEG };
            let (env, feed, control) = self.open(call, leg, ForkMix::Received, STT_RATE);
            call.streams.transcribe.push(control);
            let (target, start, out) = (
                target.clone(),
                SttStart {
                    channel,
                    ..start.clone()
                },
                out.clone(),
            );
            tokio::spawn(async move {
                let end = stream::transcribe(target, start, feed, out).await;
                env.close();
                match &end {
                    End::Failed(why) => {
                        tracing::warn!(call_sid = %sid, channel, %why, "transcription failed");
                    }
                    e => tracing::info!(call_sid = %sid, channel, end = ?e, "transcription ended"),
                }
            });
        }
    }
}

/// `bidirectionalAudio` as jambonz reads it: on unless `enabled: false` or
/// `disableBidirectionalAudio`; clips unless `streaming`; streamed at 8 kHz unless told.
fn bidi_options(l: &Listen) -> Option<BidiOptions> {
    let b = l.bidirectional_audio.unwrap_or(verbs::BidirectionalAudio {
        enabled: None,
        streaming: None,
        sample_rate: None,
    });
    if l.disable_bidirectional_audio == Some(true) || b.enabled == Some(false) {
        return None;
    }
    Some(BidiOptions {
        streaming: b.streaming.unwrap_or(false),
        sample_rate: b.sample_rate.unwrap_or(8000),
    })
}

/// The channels a transcribe streams (jambonz's rule; see [`Core::start_transcribe`]).
fn transcribed_channels(in_dial: bool, channel: Option<u32>, separate: Option<bool>) -> Vec<u32> {
    match channel {
        Some(c @ (1 | 2)) if in_dial => vec![c],
        _ if in_dial && separate != Some(false) => vec![1, 2],
        _ => vec![1],
    }
}

/// The first text frame of a listen stream: the call's attributes (camelCase, as jambonz sends
/// them there), the app's `metadata`, `sampleRate` and `mixType`.
fn listen_metadata(
    info: &CallInfo,
    metadata: Option<&Map<String, Value>>,
    rate: u32,
    mix: MixType,
) -> Value {
    let mut out = Map::new();
    if let Ok(Value::Object(fields)) = serde_json::to_value(info) {
        for (k, v) in fields {
            out.insert(camel(&k), v);
        }
    }
    for (k, v) in metadata.into_iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out.insert("sampleRate".into(), rate.into());
    let mix = match mix {
        MixType::Mono => "mono",
        MixType::Stereo => "stereo",
        MixType::Mixed => "mixed",
    };
    out.insert("mixType".into(), mix.into());
    Value::Object(out)
}

/// `call_sid` → `callSid`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        match c {
            '_' => upper = true,
            c if upper => {
                out.extend(c.to_uppercase());
                upper = false;
            }
            c => out.push(c),
        }
    }
    out
}

/// What the transcriptionHook gets (jambonz's shape)
#[derive(Serialize)]
struct TranscriptionPayload {
    #[serde(flatten)]
    call: CallInfo,
    speech: Speech,
}

#[derive(Serialize)]
struct Speech {
    language_code: String,
    channel_tag: u32,
    is_final: bool,
    alternatives: Vec<Alternative>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn camel_cases_call_attributes() {
        assert_eq!(camel("call_sid"), "callSid");
        assert_eq!(camel("local_sip_address"), "localSipAddress");
        assert_eq!(camel("from"), "from");
    }

    #[test]
    fn a_dial_transcribes_both_channels_unless_told_otherwise() {
        assert_eq!(transcribed_channels(true, None, None), [1, 2]);
        assert_eq!(transcribed_channels(true, None, Some(true)), [1, 2]);
        assert_eq!(transcribed_channels(true, None, Some(false)), [1]);
        assert_eq!(transcribed_channels(true, Some(2), None), [2]);
        assert_eq!(transcribed_channels(true, Some(1), Some(true)), [1]);
        assert_eq!(transcribed_channels(false, None, None), [1]);
        assert_eq!(transcribed_channels(false, Some(2), None), [1]);
    }

    #[test]
    fn streams_report_whether_any_is_left() {
        let mut s = Streams::default();
        assert!(!s.set(ListenStatus::Pause));
        let (tx, mut rx) = mpsc::unbounded_channel();
        s.listen.push(tx);
        assert!(s.set(ListenStatus::Pause));
        assert_eq!(rx.try_recv().unwrap(), Control::Pause);
        drop(rx);
        assert!(
            !s.set(ListenStatus::Resume),
            "a finished stream is forgotten"
        );
    }
}
