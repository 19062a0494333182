//! Audio streams to websockets: jambonz's `listen` protocol and its custom speech-to-text
//! vendor protocol
//!
//! Media forks a leg's decoded audio ([`media::api::Command::ForkAudio`]); its frames reach a
//! stream's task through [`Taps`] straight from the media event thread, past the B2BUA task (50
//! frames a second per stream have no business there). Each task owns its websocket:
//!
//! - `listen`: one text frame of metadata, then binary frames of L16 (16-bit little-endian
//!   PCM) at the stream's rate, interleaved left/right in stereo; paused or resumed by
//!   [`Control`], ended by `maxLength`, by the far end, or when its [`Control`] sender drops.
//!   With `bidirectionalAudio`, what the far end sends back goes to its [`Playback`].
//! - `transcribe`: a `start` message (language, `LINEAR16`, `sampleRateHz`, interimResults),
//!   binary L16, a `stop` message at the end; the vendor's `transcription` messages come back
//!   as [`Transcript`]s until it closes (or a grace period passes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use media::api::ForkId;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::playback::{Playback, Verdict};

/// Frames waiting for a stream's websocket (5 s of 20 ms frames); more are dropped.
const FRAME_QUEUE: usize = 250;
/// How long the far end gets to open the websocket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// After `stop`, how long a speech vendor may still send transcripts before we close.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The subprotocol a listen server accepts (jambonz's).
pub const LISTEN_SUBPROTOCOL: &str = "audio.jambonz.org";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A stream's queue of frames.
type FrameTx = mpsc::Sender<Arc<[i16]>>;

/// Where each fork's frames go: fork id → its stream's queue
#[derive(Debug, Clone, Default)]
pub struct Taps(Arc<Mutex<HashMap<u32, FrameTx>>>);

impl Taps {
    /// A queue for `fork`'s frames.
    pub fn open(&self, fork: ForkId) -> mpsc::Receiver<Arc<[i16]>> {
        let (tx, rx) = mpsc::channel(FRAME_QUEUE);
        self.lock().insert(fork.0, tx);
        rx
    }

    /// No more frames for `fork`.
    pub fn close(&self, fork: ForkId) {
        self.lock().remove(&fork.0);
    }

    /// Hands a frame to its stream; `false` when no stream has that fork (any more).
    pub fn deliver(&self, fork: ForkId, samples: Arc<[i16]>) -> bool {
        let taps = self.lock();
        let Some(tx) = taps.get(&fork.0) else {
            return false;
        };
        if tx.try_send(samples).is_err() {
            metrics::counter!("dialplane_stream_frames_dropped_total").increment(1);
        }
        true
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u32, FrameTx>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A live change to a stream (REST `listen_status`), or a key the caller pressed
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Send no audio.
    Pause,
    /// Send silence in place of the audio.
    Silence,
    /// Send the audio again.
    Resume,
    /// A DTMF key from the caller (listen: `passDtmf`, `finishOnKey`).
    Dtmf {
        /// The key.
        digit: char,
        /// How long it was pressed.
        duration_ms: u32,
    },
}

/// Why a stream ended
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Its owner stopped it (the dial or the call ended).
    Stopped,
    /// `maxLength` passed.
    MaxLength,
    /// The caller pressed `finishOnKey`.
    FinishKey,
    /// The far end closed the websocket.
    Closed,
    /// The far end sent `disconnect` (bidirectional audio).
    Disconnect,
    /// The websocket could not be opened or broke (why).
    Failed(String),
}

/// How to reach a websocket server
#[derive(Debug, Clone)]
pub struct Target {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
    /// `Sec-WebSocket-Protocol`, if any.
    pub subprotocol: Option<&'static str>,
}

impl Target {
    /// HTTP basic auth (listen's `wsAuth`).
    pub fn basic(user: &str, password: &str) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        format!("Basic {b64}")
    }
}

/// Opens the websocket (TLS for `wss://`, with the webpki roots).
async fn connect(target: &Target) -> Result<Ws, String> {
    let mut request = target
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("bad websocket URL: {e}"))?;
    let headers = request.headers_mut();
    if let Some(auth) = &target.authorization {
        let v = HeaderValue::from_str(auth).map_err(|_| "bad authorization value".to_string())?;
        headers.insert("authorization", v);
    }
    if let Some(p) = target.subprotocol {
        headers.insert("sec-websocket-protocol", HeaderValue::from_static(p));
    }
    let connecting = tokio_tungstenite::connect_async_tls_with_config(request, None, true, tls());
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timeout".into()),
    }
}

/// Our rustls setup (ring, webpki roots), built once; `None` if rustls refuses it.
fn tls() -> Option<Connector> {
    static CONFIG: std::sync::OnceLock<Option<Arc<rustls::ClientConfig>>> =
        std::sync::OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .ok()?;
        Some(Arc::new(
            builder.with_root_certificates(roots).with_no_client_auth(),
        ))
    });
    config.clone().map(Connector::Rustls)
}

/// L16: little-endian 16-bit PCM.
fn l16(samples: &[i16], silent: bool) -> Message {
    let mut out = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        let s = if silent { 0 } else { *s };
        out.extend_from_slice(&s.to_le_bytes());
    }
    Message::Binary(Bytes::from(out))
}

/// What a stream's task reads from its owner
#[derive(Debug)]
pub struct Feed {
    /// The fork's frames.
    pub frames: mpsc::Receiver<Arc<[i16]>>,
    /// Pause/resume; the stream ends when the sender drops.
    pub control: mpsc::UnboundedReceiver<Control>,
}

/// What ends a listen stream, and whether keys are passed on
#[derive(Debug, Clone, Default)]
pub struct ListenOptions {
    /// `maxLength`.
    pub max_length: Option<Duration>,
    /// `passDtmf`: each key as a text frame `{"event":"dtmf","dtmf":"5","duration":120}`.
    pub pass_dtmf: bool,
    /// `finishOnKey`.
    pub finish_on_key: Option<char>,
}

/// Runs a listen stream: `metadata` as the first text frame, then the frames; with
/// `playback`, audio and commands from the far end play into the call.
pub async fn listen(
    target: Target,
    metadata: Value,
    opts: ListenOptions,
    mut feed: Feed,
    mut playback: Option<Playback>,
) -> End {
    let mut ws = match connect(&target).await {
        Ok(ws) => ws,
        Err(e) => return End::Failed(e),
    };
    if let Err(e) = ws.send(Message::text(metadata.to_string())).await {
        return End::Failed(e.to_string());
    }
    let deadline = opts.max_length.map(|d| tokio::time::Instant::now() + d);
    let mut mode = Control::Resume;
    let end = loop {
        tokio::select! {
            f = feed.frames.recv() => match f {
                Some(f) if mode != Control::Pause => {
                    if let Err(e) = ws.send(l16(&f, mode == Control::Silence)).await {
                        break End::Failed(e.to_string());
                    }
                }
                Some(_) => {}
                None => break End::Stopped,
            },
            c = feed.control.recv() => match c {
                Some(Control::Dtmf { digit, .. }) if opts.finish_on_key == Some(digit) => {
                    break End::FinishKey;
                }
                Some(Control::Dtmf { digit, duration_ms }) => {
                    let key = json!({"event": "dtmf", "dtmf": digit.to_string(), "duration": duration_ms});
                    if opts.pass_dtmf && let Err(e) = ws.send(Message::text(key.to_string())).await {
                        break End::Failed(e.to_string());
                    }
                }
                Some(c) => mode = c,
                None => break End::Stopped,
            },
            m = ws.next() => match m {
                Some(Ok(Message::Close(_))) | None => break End::Closed,
                Some(Ok(Message::Text(t))) => if let Some(p) = &mut playback {
                    let mut replies = Vec::new();
                    let verdict = p.text(tokio::time::Instant::now(), &t, &mut replies);
                    if let Err(e) = send_all(&mut ws, replies).await {
                        break End::Failed(e);
                    }
                    if verdict == Verdict::Disconnect {
                        break End::Disconnect;
                    }
                },
                Some(Ok(Message::Binary(b))) => if let Some(p) = &mut playback {
                    p.binary(tokio::time::Instant::now(), &b);
                },
                Some(Ok(_)) => {}
                Some(Err(e)) => break End::Failed(e.to_string()),
            },
            _ = sleep_until(playback.as_ref().and_then(Playback::next_due)),
                if playback.as_ref().is_some_and(|p| p.next_due().is_some()) => {
                if let Some(p) = &mut playback {
                    let mut replies = Vec::new();
                    p.due(tokio::time::Instant::now(), &mut replies);
                    if let Err(e) = send_all(&mut ws, replies).await {
                        break End::Failed(e);
                    }
                }
            }
            _ = sleep_until(deadline), if deadline.is_some() => break End::MaxLength,
        }
    };
    if end != End::Closed {
        let _ = tokio::time::timeout(STOP_GRACE, ws.close(None)).await;
    }
    end
}

/// Sends each of `replies` as a text frame.
async fn send_all(ws: &mut Ws, replies: Vec<Value>) -> Result<(), String> {
    for r in replies {
        ws.send(Message::text(r.to_string()))
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The custom speech vendor's `start` message settings
#[derive(Debug, Clone)]
pub struct SttStart {
    /// ISO language code.
    pub language: String,
    /// Interim results wanted.
    pub interim: bool,
    /// Rate of the audio sent.
    pub sample_rate: u32,
    /// Vendor options passed through.
    pub options: Map<String, Value>,
    /// The channel this stream carries (1 caller, 2 callee): each transcript is tagged with it.
    pub channel: u32,
}

/// One `transcription` message of the vendor
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Transcript {
    /// Final or interim.
    #[serde(default)]
    pub is_final: bool,
    /// Candidates, best first.
    #[serde(default)]
    pub alternatives: Vec<Alternative>,
    /// The language the vendor heard, if it says.
    #[serde(default)]
    pub language: Option<String>,
}

/// One candidate transcript
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct Alternative {
    /// The words.
    pub transcript: String,
    /// 0 to 1.
    #[serde(default)]
    pub confidence: Option<f64>,
}

/// Runs a transcription stream; each transcript goes to `out` as it arrives, with the stream's
/// channel.
pub async fn transcribe(
    target: Target,
    start: SttStart,
    mut feed: Feed,
    out: mpsc::UnboundedSender<(u32, Transcript)>,
) -> End {
    let mut ws = match connect(&target).await {
        Ok(ws) => ws,
        Err(e) => return End::Failed(e),
    };
    let hello = json!({
        "type": "start",
        "language": start.language,
        "format": "raw",
        "encoding": "LINEAR16",
        "interimResults": start.interim,
        "sampleRateHz": start.sample_rate,
        "options": start.options,
    });
    if let Err(e) = ws.send(Message::text(hello.to_string())).await {
        return End::Failed(e.to_string());
    }
    let mut paused = false;
    let end = loop {
        tokio::select! {
            f = feed.frames.recv() => match f {
                Some(f) if !paused => {
                    if let Err(e) = ws.send(l16(&f, false)).await {
                        break End::Failed(e.to_string());
                    }
                }
                Some(_) => {}
                None => break End::Stopped,
            },
            c = feed.control.recv() => match c {
                Some(Control::Pause) => paused = true,
                Some(Control::Resume | Control::Silence) => paused = false,
                Some(Control::Dtmf { .. }) => {}
                None => break End::Stopped,
            },
            m = ws.next() => if let Some(end) = vendor_message(m, start.channel, &out) {
                break end;
            },
        }
    };
    if end != End::Stopped {
        return end;
    }
    // The vendor closes once it has sent its last results.
    if ws.send(Message::text(r#"{"type":"stop"}"#)).await.is_ok() {
        let drain =
            async { while vendor_message(ws.next().await, start.channel, &out).is_none() {} };
        let _ = tokio::time::timeout(STOP_GRACE, drain).await;
    }
    let _ = tokio::time::timeout(STOP_GRACE, ws.close(None)).await;
    End::Stopped
}

/// Handles one message from the vendor; `Some` when the websocket is over.
fn vendor_message(
    m: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    channel: u32,
    out: &mpsc::UnboundedSender<(u32, Transcript)>,
) -> Option<End> {
    match m {
        Some(Ok(Message::Text(t))) => {
            #[derive(Deserialize)]
            struct Typed {
                #[serde(rename = "type")]
                kind: String,
                #[serde(default)]
                error: Option<Value>,
            }
            match serde_json::from_str::<Typed>(&t) {
                Ok(m) if m.kind == "transcription" => match serde_json::from_str(&t) {
                    Ok(tr) => {
                        let _ = out.send((channel, tr));
                    }
                    Err(e) => tracing::warn!(error = %e, "bad transcription message"),
                },
                Ok(m) if m.kind == "error" => {
                    tracing::warn!(error = ?m.error, "speech vendor error");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "speech vendor message not understood"),
            }
            None
        }
        Some(Ok(Message::Close(_))) | None => Some(End::Closed),
        Some(Ok(_)) => None,
        Some(Err(e)) => Some(End::Failed(e.to_string())),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l16_is_little_endian_and_silence_is_zeros() {
        let Message::Binary(b) = l16(&[1, -2, 0x1234], false) else {
            panic!("binary")
        };
        assert_eq!(&b[..], [1, 0, 0xfe, 0xff, 0x34, 0x12]);
        let Message::Binary(b) = l16(&[7, 7], true) else {
            panic!("binary")
        };
        assert_eq!(&b[..], [0, 0, 0, 0]);
    }

    #[test]
    fn basic_auth_header() {
        assert_eq!(Target::basic("user", "pass"), "Basic dXNlcjpwYXNz");
    }

    #[test]
    fn taps_route_frames_to_their_fork_only() {
        let taps = Taps::default();
        let mut rx = taps.open(ForkId(3));
        assert!(taps.deliver(ForkId(3), Arc::from(&[1i16, 2][..])));
        assert!(!taps.deliver(ForkId(4), Arc::from(&[9i16][..])));
        assert_eq!(&rx.try_recv().unwrap()[..], [1, 2]);
        taps.close(ForkId(3));
        assert!(!taps.deliver(ForkId(3), Arc::from(&[1i16][..])));
    }
}
