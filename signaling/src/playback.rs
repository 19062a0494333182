//! Audio back from a listen websocket: jambonz's `bidirectionalAudio`
//!
//! The far end either sends whole clips as JSON text frames (`playAudio` with base64 raw L16 or
//! WAV; the default) or, with `streaming`, binary L16 frames at `bidirectionalAudio.sampleRate`.
//! Either way the audio is decoded here to 8 kHz PCM and appended to a dub track of the leg
//! the listen is on (media plays it on the leg's own 20 ms clock, clips in order). `killAudio`
//! flushes it; `mark` puts a named mark after the audio queued so far, reported back with
//! `{"type":"mark","data":{"name":..,"event":"playout"}}` once played, or `"cleared"` when
//! `killAudio`/`clearMarks` drops it first (as jambonz's mod_audio_fork does); each clip ends
//! with `{"type":"playDone"}`. Media plays 8000 samples a second from the moment a piece
//! arrives, so when a mark passes is known here from the audio's length.
//!
//! The far end is not trusted: bad JSON, bad base64, unknown types and oversized payloads are
//! logged, counted and dropped, and at most [`MAX_AHEAD`] of audio is queued.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use dsp::resample::{self, Resampler};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::media_files::{RATE, decode_8k_i16};

/// Most audio queued ahead of what plays; more is dropped.
pub const MAX_AHEAD: Duration = Duration::from_secs(30);
/// Largest `playAudio` text frame taken (base64 of 30 s of 48 kHz L16 and some JSON).
const MAX_TEXT: usize = 4 << 20;
/// Most marks waiting (jambonz's limit).
const MAX_MARKS: usize = 30;
/// Streamed audio goes to media in pieces of at least this many samples (20 ms), so media's
/// bounded queue of pieces holds seconds however small the far end's frames are.
const PIECE: usize = 160;
/// Slack after the computed end of the audio before a mark is reported: media starts a piece
/// on its next 20 ms tick.
const SLACK: Duration = Duration::from_millis(40);

/// What the far end asked for
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BidiOptions {
    /// Binary L16 frames rather than `playAudio` clips.
    pub streaming: bool,
    /// Rate of the streamed frames.
    pub sample_rate: u32,
}

/// What the playback asks of media
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Play these 8 kHz samples after what is queued.
    Append(Arc<[i16]>),
    /// Stop and drop everything queued.
    Flush,
    /// The stream is over (the playback was dropped).
    End,
}

/// What a text frame from the far end means for the stream
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Carry on.
    Continue,
    /// `disconnect`: end the listen.
    Disconnect,
}

/// Why something from the far end was dropped (the metric's label)
fn dropped(reason: &'static str, detail: &dyn std::fmt::Display) {
    tracing::warn!(reason, %detail, "listen: audio from the websocket dropped");
    metrics::counter!("dialplane_listen_bidi_dropped_total", "reason" => reason).increment(1);
}

enum Pending {
    Mark(String),
    PlayDone,
}

/// One listen stream's playback state
pub struct Playback {
    opts: BidiOptions,
    sink: Box<dyn FnMut(Out) + Send>,
    /// Streaming: the converter to 8 kHz (`None` at 8 kHz).
    resampler: Option<Resampler>,
    /// Streaming: an odd byte waiting for its pair.
    odd: Option<u8>,
    /// Streaming: samples not yet a whole piece.
    partial: Vec<i16>,
    /// When the audio handed to media so far ends.
    end: Instant,
    /// Marks and clip ends, with when they pass, in order.
    pending: VecDeque<(Instant, Pending)>,
}

impl std::fmt::Debug for Playback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playback")
            .field("opts", &self.opts)
            .field("end", &self.end)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Command {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    data: Option<Value>,
}

impl Playback {
    /// Playback with `opts`; `sink` carries the audio to media. `None` for a streaming rate
    /// that cannot be converted.
    pub fn new(opts: BidiOptions, sink: Box<dyn FnMut(Out) + Send>) -> Option<Playback> {
        let resampler = if opts.streaming && opts.sample_rate != RATE {
            Some(Resampler::new(opts.sample_rate, RATE).ok()?)
        } else {
            None
        };
        Some(Playback {
            opts,
            sink,
            resampler,
            odd: None,
            partial: Vec::new(),
            end: Instant::now(),
            pending: VecDeque::new(),
        })
    }

    /// A text frame from the far end. `replies` gets what to send back at once.
    pub fn text(&mut self, now: Instant, text: &str, replies: &mut Vec<Value>) -> Verdict {
        if text.len() > MAX_TEXT {
            dropped("too_large", &format_args!("{} bytes", text.len()));
            return Verdict::Continue;
        }
        let cmd: Command = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(e) => {
                dropped("bad_json", &e);
                return Verdict::Continue;
            }
        };
        match cmd.kind.as_str() {
            "playAudio" if self.opts.streaming => {
                dropped("play_audio_while_streaming", &"playAudio ignored");
            }
            "playAudio" => match clip(cmd.data.as_ref()) {
                Ok(pcm) => {
                    if self.append(now, pcm) {
                        self.pending.push_back((self.end, Pending::PlayDone));
                    }
                }
                Err((reason, why)) => dropped(reason, &why),
            },
            "killAudio" => self.kill(replies),
            "disconnect" => return Verdict::Disconnect,
            "mark" => {
                let name = cmd
                    .data
                    .as_ref()
                    .and_then(|d| d.get("name"))
                    .and_then(Value::as_str);
                match name {
                    Some(_) if self.marks() >= MAX_MARKS => dropped("too_many_marks", &"mark"),
                    Some(name) => {
                        let at = self.end.max(now);
                        self.pending
                            .push_back((at, Pending::Mark(name.to_string())));
                    }
                    None => dropped("bad_mark", &"mark without a name"),
                }
            }
            "clearMarks" => self.clear_marks(replies),
            other => dropped("unknown_type", &other),
        }
        Verdict::Continue
    }

    /// A binary frame from the far end (streaming: L16 at the stream's rate).
    pub fn binary(&mut self, now: Instant, bytes: &[u8]) {
        if !self.opts.streaming {
            dropped(
                "binary_not_streaming",
                &format_args!("{} bytes", bytes.len()),
            );
            return;
        }
        let mut samples = Vec::with_capacity(bytes.len() / 2 + 1);
        let mut rest = bytes;
        if let Some(lo) = self.odd.take()
            && let Some((&hi, tail)) = rest.split_first()
        {
            samples.push(i16::from_le_bytes([lo, hi]));
            rest = tail;
        }
        let mut pairs = rest.chunks_exact(2);
        samples.extend(pairs.by_ref().map(|p| i16::from_le_bytes([p[0], p[1]])));
        self.odd = pairs.remainder().first().copied();
        let at_8k = match &mut self.resampler {
            None => samples,
            Some(r) => {
                let input: Vec<f32> = samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
                let mut out = vec![0.0; r.output_len(input.len())];
                match r.process(&input, &mut out) {
                    Ok(n) => out[..n].iter().map(|&x| to_i16(x)).collect(),
                    Err(e) => {
                        dropped("resample", &e);
                        return;
                    }
                }
            }
        };
        self.partial.extend_from_slice(&at_8k);
        if self.partial.len() >= PIECE {
            let piece = std::mem::take(&mut self.partial);
            self.append(now, piece);
        }
    }

    /// When the next mark or clip end passes.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.front().map(|(at, _)| *at + SLACK)
    }

    /// The events that have passed by `now`, to send back.
    pub fn due(&mut self, now: Instant, replies: &mut Vec<Value>) {
        while let Some((at, _)) = self.pending.front()
            && *at + SLACK <= now
        {
            if let Some((_, p)) = self.pending.pop_front() {
                replies.push(match p {
                    Pending::Mark(name) => mark_event(&name, "playout"),
                    Pending::PlayDone => json!({"type": "playDone"}),
                });
            }
        }
    }

    /// Hands `pcm` to media unless that would queue more than [`MAX_AHEAD`]; `false` if
    /// dropped.
    fn append(&mut self, now: Instant, pcm: Vec<i16>) -> bool {
        if pcm.is_empty() {
            return false;
        }
        let start = self.end.max(now);
        let length = Duration::from_secs_f64(pcm.len() as f64 / f64::from(RATE));
        if start + length > now + MAX_AHEAD {
            dropped(
                "queue_full",
                &format_args!("{length:?} more than {MAX_AHEAD:?} ahead"),
            );
            return false;
        }
        self.end = start + length;
        (self.sink)(Out::Append(pcm.into()));
        true
    }

    /// `killAudio`: the audio stops, what is queued goes, and so do the marks (reported as
    /// cleared).
    fn kill(&mut self, replies: &mut Vec<Value>) {
        (self.sink)(Out::Flush);
        self.partial.clear();
        self.odd = None;
        if let Some(r) = &mut self.resampler {
            r.reset();
        }
        self.end = Instant::now();
        self.clear_marks(replies);
    }

    fn clear_marks(&mut self, replies: &mut Vec<Value>) {
        for (_, p) in self.pending.drain(..) {
            if let Pending::Mark(name) = p {
                replies.push(mark_event(&name, "cleared"));
            }
        }
    }

    fn marks(&self) -> usize {
        self.pending
            .iter()
            .filter(|(_, p)| matches!(p, Pending::Mark(_)))
            .count()
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        (self.sink)(Out::End);
    }
}

fn mark_event(name: &str, event: &str) -> Value {
    json!({"type": "mark", "data": {"name": name, "event": event}})
}

fn to_i16(x: f32) -> i16 {
    (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

/// A `playAudio` clip as 8 kHz samples; why not (the metric's reason and a detail).
fn clip(data: Option<&Value>) -> Result<Vec<i16>, (&'static str, String)> {
    let data = data.ok_or(("bad_play", "playAudio without data".to_string()))?;
    let content = data
        .get("audioContent")
        .and_then(Value::as_str)
        .ok_or(("bad_play", "no audioContent".to_string()))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(content)
        .map_err(|e| ("bad_base64", e.to_string()))?;
    let max = (MAX_AHEAD.as_secs() as usize) * RATE as usize;
    match data.get("audioContentType").and_then(Value::as_str) {
        Some("raw") => {
            // jambonz sends the rate as a number or a string.
            let rate = match data.get("sampleRate") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.parse().ok(),
                _ => None,
            }
            .and_then(|r| u32::try_from(r).ok())
            .ok_or(("bad_play", "raw audio without a sampleRate".to_string()))?;
            let pcm: Vec<f32> = bytes
                .chunks_exact(2)
                .map(|p| f32::from(i16::from_le_bytes([p[0], p[1]])) / 32768.0)
                .collect();
            let at_8k =
                resample::resample(&pcm, rate, RATE).map_err(|e| ("bad_rate", e.to_string()))?;
            if at_8k.len() > max {
                return Err(("too_large", format!("{} samples", at_8k.len())));
            }
            Ok(at_8k.into_iter().map(to_i16).collect())
        }
        Some("wav" | "wave") => decode_8k_i16(bytes, max)
            .map(|s| s.to_vec())
            .map_err(|e| ("bad_wav", e.to_string())),
        other => Err(("bad_play", format!("audioContentType {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn recorder(opts: BidiOptions) -> (Playback, Arc<Mutex<Vec<Out>>>) {
        let outs: Arc<Mutex<Vec<Out>>> = Arc::default();
        let o = outs.clone();
        let p = Playback::new(opts, Box::new(move |out| o.lock().unwrap().push(out))).unwrap();
        (p, outs)
    }

    fn raw_play(samples: &[i16], rate: u32) -> String {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        json!({"type": "playAudio", "data": {"audioContentType": "raw",
            "sampleRate": rate.to_string(), "audioContent": b64}})
        .to_string()
    }

    const CLIPS: BidiOptions = BidiOptions {
        streaming: false,
        sample_rate: 8000,
    };

    #[test]
    fn a_clip_is_resampled_and_its_mark_and_end_pass_after_its_length() {
        let (mut p, outs) = recorder(CLIPS);
        let t0 = Instant::now();
        let mut replies = Vec::new();
        // 0.5 s at 16 kHz → 4000 samples at 8 kHz.
        p.text(t0, &raw_play(&vec![1000; 8000], 16000), &mut replies);
        p.text(t0, r#"{"type":"mark","data":{"name":"a"}}"#, &mut replies);
        assert!(replies.is_empty());
        match &outs.lock().unwrap()[..] {
            [Out::Append(s)] => assert_eq!(s.len(), 4000),
            o => panic!("{o:?}"),
        }
        p.due(t0 + Duration::from_millis(400), &mut replies);
        assert!(replies.is_empty(), "{replies:?}");
        p.due(t0 + Duration::from_millis(600), &mut replies);
        assert_eq!(
            replies,
            [
                json!({"type": "playDone"}),
                json!({"type": "mark", "data": {"name": "a", "event": "playout"}})
            ]
        );
    }

    #[test]
    fn kill_flushes_and_clears_marks() {
        let (mut p, outs) = recorder(CLIPS);
        let t0 = Instant::now();
        let mut replies = Vec::new();
        p.text(t0, &raw_play(&[5; 8000], 8000), &mut replies);
        p.text(t0, r#"{"type":"mark","data":{"name":"m"}}"#, &mut replies);
        p.text(t0, r#"{"type":"killAudio"}"#, &mut replies);
        assert_eq!(
            replies,
            [json!({"type": "mark", "data": {"name": "m", "event": "cleared"}})]
        );
        assert_eq!(outs.lock().unwrap().last(), Some(&Out::Flush));
        assert_eq!(p.next_due(), None);
    }

    #[test]
    fn bad_frames_are_dropped() {
        let (mut p, outs) = recorder(CLIPS);
        let t0 = Instant::now();
        let mut r = Vec::new();
        for bad in [
            "not json",
            r#"{"type":"playAudio"}"#,
            r#"{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":8000,"audioContent":"***"}}"#,
            r#"{"type":"playAudio","data":{"audioContentType":"raw","sampleRate":7,"audioContent":"AAAA"}}"#,
            r#"{"type":"playAudio","data":{"audioContentType":"wav","audioContent":"AAAA"}}"#,
            r#"{"type":"playAudio","data":{"audioContentType":"mp4","audioContent":"AAAA"}}"#,
            r#"{"type":"nonsense"}"#,
        ] {
            assert_eq!(p.text(t0, bad, &mut r), Verdict::Continue, "{bad}");
        }
        // Over 30 s of audio is refused; a huge frame too.
        p.text(t0, &raw_play(&vec![1; 8000 * 31], 8000), &mut r);
        p.text(t0, &"x".repeat(MAX_TEXT + 1), &mut r);
        p.binary(t0, &[1, 2, 3]);
        assert!(outs.lock().unwrap().is_empty());
        assert!(r.is_empty());
        assert_eq!(
            p.text(t0, r#"{"type":"disconnect"}"#, &mut r),
            Verdict::Disconnect
        );
    }

    #[test]
    fn streamed_frames_join_across_odd_bytes_and_go_in_whole_pieces() {
        let (mut p, outs) = recorder(BidiOptions {
            streaming: true,
            sample_rate: 8000,
        });
        let t0 = Instant::now();
        let bytes: Vec<u8> = (0..200i16).flat_map(|s| s.to_le_bytes()).collect();
        p.binary(t0, &bytes[..101]);
        assert!(outs.lock().unwrap().is_empty(), "under 20 ms waits");
        p.binary(t0, &bytes[101..]);
        match &outs.lock().unwrap()[..] {
            [Out::Append(s)] => assert_eq!(&s[..], (0..200).collect::<Vec<i16>>()),
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn streamed_16k_is_halved() {
        let (mut p, outs) = recorder(BidiOptions {
            streaming: true,
            sample_rate: 16000,
        });
        let bytes: Vec<u8> = [100i16; 640].iter().flat_map(|s| s.to_le_bytes()).collect();
        p.binary(Instant::now(), &bytes);
        match &outs.lock().unwrap()[..] {
            [Out::Append(s)] => assert_eq!(s.len(), 320),
            o => panic!("{o:?}"),
        }
        assert!(
            Playback::new(
                BidiOptions {
                    streaming: true,
                    sample_rate: 11025
                },
                Box::new(|_| {})
            )
            .is_none()
        );
    }
}
