//! `listen` and `transcribe` on the dial verb, end to end: `dialplane serve` bridges a SIPp
//! caller playing a 440 Hz tone to a SIPp callee playing a 1000 Hz tone (pcaps written by
//! tests/common/rtp.rs), and streams the call to a websocket server written here, which records
//! the handshake, the first text frame and every binary frame with its arrival time. The
//! audio is checked by its length (bytes against the time it streamed, rate × channels × 2) and
//! by each channel's tones. A fake speech-to-text vendor speaks jambonz's custom speech
//! protocol: it checks the `start` message, counts the audio, and answers canned transcripts,
//! which must reach the transcriptionHook.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::http::Receiver;
use common::rtp::{PT_EVENT, Packet, Stream, pcap_scenario, tone, tone_amplitude, write_pcap};
use common::serve::{
    CALLED, HOOK_WAIT, Serve, TOKEN, config, dial, serve_with_app_and, sip_target,
};
use common::sipp::{Run, Sipp};
use dsp::g711::Law;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::{Message, WebSocket, accept_hdr};

/// The caller's tone and the callee's.
const CALLER_HZ: f32 = 440.0;
const CALLEE_HZ: f32 = 1000.0;

/// One websocket connection as the server saw it.
#[derive(Debug, Default, Clone)]
struct Conn {
    /// Request headers, names in lower case.
    headers: Vec<(String, String)>,
    texts: Vec<String>,
    /// Binary frames with their arrival.
    frames: Vec<(Instant, Vec<u8>)>,
    closed: bool,
}

impl Conn {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn bytes(&self) -> usize {
        self.frames.iter().map(|(_, b)| b.len()).sum()
    }

    /// The L16 samples of every frame received in `[from, to)`.
    fn samples_between(&self, from: Instant, to: Instant) -> Vec<i16> {
        self.frames
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .flat_map(|(_, b)| b.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])))
            .collect()
    }
}

/// What a server does with a text message: replies to send, and whether to close then.
type Script = dyn Fn(&Conn, &Message) -> (Vec<Message>, bool) + Send + Sync;

/// A websocket server on loopback recording every connection; stops when dropped.
struct WsServer {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Conn>>>,
    stop: Arc<AtomicBool>,
}

impl Drop for WsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl WsServer {
    /// `subprotocol`: the one it selects when the client asks for it.
    fn start(subprotocol: Option<&'static str>, script: Arc<Script>) -> WsServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind ws");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<Conn>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (conns.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        let (c, s, script) = (c.clone(), s.clone(), script.clone());
                        std::thread::spawn(move || serve_ws(tcp, subprotocol, &c, &s, &*script));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        WsServer { addr, conns, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    fn conns(&self) -> Vec<Conn> {
        self.conns.lock().unwrap().clone()
    }

    /// Waits (bounded) until connection 0 satisfies `done`.
    fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Conn) -> bool) -> Conn {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(c) = self.conns().first()
                && done(c)
            {
                return c.clone();
            }
            let c = self.conns().first().cloned();
            assert!(
                Instant::now() < deadline,
                "no {what} within {limit:?}: {:?}",
                c.map(|c| (c.headers, c.texts, c.frames.len(), c.closed))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

// tungstenite's handshake callback returns its own (large) error response type.
#[allow(clippy::result_large_err)]
fn serve_ws(
    tcp: TcpStream,
    subprotocol: Option<&'static str>,
    conns: &Mutex<Vec<Conn>>,
    stop: &AtomicBool,
    script: &Script,
) {
    tcp.set_nonblocking(false).expect("blocking");
    let mut headers = Vec::new();
    let callback = |req: &Request, mut resp: Response| {
        for (n, v) in req.headers() {
            headers.push((
                n.as_str().to_ascii_lowercase(),
                v.to_str().unwrap_or("").to_string(),
            ));
        }
        let asked = req.headers().get("sec-websocket-protocol");
        if let (Some(p), Some(asked)) = (subprotocol, asked)
            && asked
                .to_str()
                .unwrap_or("")
                .split(',')
                .any(|a| a.trim() == p)
        {
            resp.headers_mut()
                .insert("sec-websocket-protocol", p.parse().expect("header"));
        }
        Ok(resp)
    };
    let Ok(mut ws): Result<WebSocket<TcpStream>, _> = accept_hdr(tcp, callback) else {
        return;
    };
    // Reads time out so the thread sees the stop flag.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let i = {
        let mut all = conns.lock().unwrap();
        all.push(Conn {
            headers,
            ..Conn::default()
        });
        all.len() - 1
    };
    while !stop.load(Ordering::SeqCst) {
        let m = match ws.read() {
            Ok(m) => m,
            Err(tokio_tungstenite::tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        let (replies, close) = {
            let mut all = conns.lock().unwrap();
            let c = &mut all[i];
            match &m {
                Message::Text(t) => c.texts.push(t.to_string()),
                Message::Binary(b) => c.frames.push((Instant::now(), b.to_vec())),
                _ => {}
            }
            script(c, &m)
        };
        for r in replies {
            let _ = ws.send(r);
        }
        if close {
            let _ = ws.close(None);
        }
    }
    conns.lock().unwrap()[i].closed = true;
}

/// A pcap of `packets`, and a copy of `template` that plays it.
fn pcap_scenario_of(dir: &Path, name: &str, template: &Path, packets: &[Packet]) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let pcap = sub.join("audio.pcap");
    write_pcap(&pcap, packets);
    pcap_scenario(template, &pcap, &sub)
}

/// `freq` Hz for `ms`, with each of `keys` pressed (RFC 4733, 200 ms) after the first second
/// and 500 ms apart.
fn tone_with_keys(freq: f32, ms: u32, keys: &str) -> Vec<Packet> {
    let mut s = Stream::new(7);
    let mut packets = s.audio(&tone(freq, 1000, 0.5), Law::Ulaw);
    let mut used = 1000;
    for k in keys.chars() {
        packets.extend(s.event(k, 200, PT_EVENT));
        packets.extend(s.audio(&tone(freq, 500, 0.5), Law::Ulaw));
        used += 700;
    }
    packets.extend(s.audio(&tone(freq, ms.saturating_sub(used), 0.5), Law::Ulaw));
    packets
}

/// A SIPp callee playing the callee's tone and a SIPp caller playing the caller's, holding
/// `hold_ms`; `verbs(callee)` is the app.
fn call(
    name: &str,
    hold_ms: u64,
    extra_args: &[&str],
    verbs: impl Fn(&Sipp) -> Value,
) -> (Receiver, Serve, Sipp, Sipp) {
    call_pressing(name, hold_ms, extra_args, "", verbs)
}

/// As [`call`], the caller pressing `keys` ([`tone_with_keys`]).
fn call_pressing(
    name: &str,
    hold_ms: u64,
    extra_args: &[&str],
    keys: &str,
    verbs: impl Fn(&Sipp) -> Value,
) -> (Receiver, Serve, Sipp, Sipp) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("listen-{name}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tone_ms = hold_ms as u32 + 3000;
    let answer = pcap_scenario_of(
        &dir,
        "callee",
        &root.join("tests/rtp_tools/play.xml"),
        &tone_with_keys(CALLEE_HZ, tone_ms, ""),
    );
    let play = pcap_scenario_of(
        &dir,
        "caller",
        &root.join("tests/listen/call_play.xml"),
        &tone_with_keys(CALLER_HZ, tone_ms, keys),
    );
    let callee = Sipp::callee(
        &format!("listen-{name}-callee"),
        Run {
            scenario: &answer,
            calls: 1,
            pause_ms: 0,
            extra: &[],
        },
    );
    let (hooks, serve) = serve_with_app_and(name, verbs(&callee), extra_args);
    let caller = Sipp::caller(
        &format!("listen-{name}-caller"),
        serve.sip,
        Run {
            scenario: &play,
            calls: 1,
            pause_ms: hold_ms,
            extra: &["-s", CALLED],
        },
    );
    (hooks, serve, caller, callee)
}

/// Every `step`-th sample: the 8 kHz tone meter then reads 16/24/48 kHz audio (the tones are
/// far below 4 kHz, so nothing folds onto them).
fn at_8k(pcm: &[i16], rate: u32) -> Vec<i16> {
    pcm.iter()
        .step_by((rate / 8000) as usize)
        .copied()
        .collect()
}

/// One channel of interleaved stereo.
fn channel(pcm: &[i16], ch: usize) -> Vec<i16> {
    pcm.iter().skip(ch).step_by(2).copied().collect()
}

/// Streams a call at `rate` with `mix`; checks the metadata, the length, and the tones of
/// each channel.
fn stream_checked(rate: u32, mix: &str) {
    let name = format!("listen-{rate}-{mix}");
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(|_, _| (Vec::new(), false)),
    );
    let url = ws.url("/audio");
    let (hooks, serve, mut caller, mut callee) = call(&name, 3000, &[], |callee| {
        dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"listen": {
                "url": url,
                "mixType": mix,
                "sampleRate": rate,
                "wsAuth": {"username": "lis", "password": "ten"},
                "metadata": {"campaign": "spring"},
                "actionHook": "/listen-done",
            }}),
        )
    });
    let conn = ws.wait("the caller's hangup", Duration::from_secs(15), |c| c.closed);
    serve.finish(&mut [&mut caller, &mut callee]);
    let log = serve.log_tail();
    // The handshake: jambonz's subprotocol and wsAuth as basic auth ("lis:ten").
    assert_eq!(
        conn.header("sec-websocket-protocol"),
        Some("audio.jambonz.org")
    );
    assert_eq!(conn.header("authorization"), Some("Basic bGlzOnRlbg=="));
    assert_eq!(conn.texts.len(), 1, "one text frame: {:?}", conn.texts);
    let meta: Value = serde_json::from_str(&conn.texts[0]).expect("metadata JSON");
    assert_eq!(meta["sampleRate"], rate, "{meta}");
    assert_eq!(meta["mixType"], mix, "{meta}");
    assert_eq!(meta["campaign"], "spring", "{meta}");
    assert_eq!(meta["to"], CALLED, "{meta}");
    assert_eq!(meta["direction"], "inbound", "{meta}");
    let sid = meta["callSid"].as_str().expect("callSid").to_string();
    // Length: 20 ms frames in real time, ≈ the time they streamed × rate × channels × 2.
    let channels = if mix == "stereo" { 2 } else { 1 };
    let per_frame = (rate as usize / 50) * channels * 2;
    assert!(
        conn.frames.iter().all(|(_, b)| b.len() == per_frame),
        "every frame is 20 ms: {:?}\n{log}",
        conn.frames
            .iter()
            .map(|(_, b)| b.len())
            .collect::<std::collections::BTreeSet<_>>()
    );
    let (first, last) = (conn.frames[0].0, conn.frames.last().expect("frames").0);
    let streamed = last.duration_since(first).as_secs_f64() + 0.02;
    let expected = streamed * f64::from(rate) * channels as f64 * 2.0;
    let bytes = conn.bytes() as f64;
    assert!(
        (bytes / expected - 1.0).abs() < 0.1,
        "{bytes} bytes over {streamed:.2} s, expected ≈ {expected:.0}\n{log}"
    );
    assert!(
        streamed > 2.0 && streamed < 4.0,
        "the call held 3 s: {streamed:.2} s"
    );
    // Tones over a steady second in the middle.
    let pcm = conn.samples_between(
        first + Duration::from_millis(800),
        first + Duration::from_millis(1800),
    );
    let amp = |pcm: &[i16], f: f32| tone_amplitude(&at_8k(pcm, rate), f);
    match mix {
        "stereo" => {
            let (l, r) = (channel(&pcm, 0), channel(&pcm, 1));
            assert!(
                amp(&l, CALLER_HZ) > 0.35,
                "left: caller {}",
                amp(&l, CALLER_HZ)
            );
            assert!(
                amp(&l, CALLEE_HZ) < 0.05,
                "left: no callee {}",
                amp(&l, CALLEE_HZ)
            );
            assert!(
                amp(&r, CALLEE_HZ) > 0.35,
                "right: callee {}",
                amp(&r, CALLEE_HZ)
            );
            assert!(
                amp(&r, CALLER_HZ) < 0.05,
                "right: no caller {}",
                amp(&r, CALLER_HZ)
            );
        }
        "mixed" => {
            assert!(
                amp(&pcm, CALLER_HZ) > 0.35,
                "caller {}",
                amp(&pcm, CALLER_HZ)
            );
            assert!(
                amp(&pcm, CALLEE_HZ) > 0.35,
                "callee {}",
                amp(&pcm, CALLEE_HZ)
            );
        }
        _ => {
            assert!(
                amp(&pcm, CALLER_HZ) > 0.35,
                "caller {}",
                amp(&pcm, CALLER_HZ)
            );
            assert!(
                amp(&pcm, CALLEE_HZ) < 0.05,
                "no callee {}",
                amp(&pcm, CALLEE_HZ)
            );
        }
    }
    // The actionHook when the stream ended, with the caller's call info.
    let done = hooks.wait("/listen-done", "listen actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    assert_eq!(done[0].json["call_sid"], sid.as_str());
}

#[test]
fn mono_at_8k_streams_the_caller() {
    stream_checked(8000, "mono");
}

#[test]
fn stereo_at_16k_puts_the_caller_left_and_the_callee_right() {
    stream_checked(16000, "stereo");
}

#[test]
fn mixed_at_48k_carries_both() {
    stream_checked(48000, "mixed");
}

/// REST listen_status: `pause` stops the frames, `resume` restarts them.
#[test]
fn listen_status_pauses_and_resumes() {
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(|_, _| (Vec::new(), false)),
    );
    let url = ws.url("/audio");
    let (_hooks, serve, mut caller, mut callee) = call("listen-pause", 6000, &[], |callee| {
        dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"listen": {"url": url}}),
        )
    });
    let conn = ws.wait("frames", Duration::from_secs(10), |c| c.frames.len() >= 25);
    let meta: Value = serde_json::from_str(&conn.texts[0]).expect("metadata");
    let sid = meta["callSid"].as_str().expect("callSid");
    let update = |status: &str| {
        let (code, body) = serve.update_call(
            sid,
            Some(TOKEN),
            &json!({"listen_status": status}).to_string(),
        );
        assert_eq!(code, 202, "{body}");
    };
    update("pause");
    // Frames in flight when it paused still arrive; after that, none for a second.
    std::thread::sleep(Duration::from_millis(300));
    let paused_at = ws.conns()[0].frames.len();
    std::thread::sleep(Duration::from_millis(1000));
    let after = ws.conns()[0].frames.len();
    assert_eq!(
        paused_at,
        after,
        "no frames while paused\n{}",
        serve.log_tail()
    );
    update("resume");
    ws.wait("frames after resume", Duration::from_secs(3), |c| {
        c.frames.len() >= after + 25
    });
    serve.finish(&mut [&mut caller, &mut callee]);
}

/// What a fake vendor heard: the tone that dominates the audio so far.
fn heard(c: &Conn) -> &'static str {
    let pcm: Vec<i16> = c
        .frames
        .iter()
        .flat_map(|(_, b)| b.chunks_exact(2).map(|p| i16::from_le_bytes([p[0], p[1]])))
        .collect();
    if tone_amplitude(&pcm, CALLER_HZ) > tone_amplitude(&pcm, CALLEE_HZ) {
        "caller tone"
    } else {
        "callee tone"
    }
}

/// transcribe nested in dial, as jambonz does it: one vendor connection per party (caller
/// channel 1, callee channel 2). The fake vendor checks jambonz's `start` message, answers an
/// interim and a final transcript naming the tone it hears while audio flows, and one more
/// after `stop`; each reaches the transcriptionHook in jambonz's shape, tagged with its channel.
#[test]
fn transcribe_posts_each_partys_transcripts_with_its_channel() {
    let transcription = |final_: bool, text: String| {
        Message::text(
            json!({"type": "transcription", "is_final": final_, "language": "en-GB",
                "alternatives": [{"transcript": text, "confidence": 0.9}]})
            .to_string(),
        )
    };
    let stt = WsServer::start(
        None,
        Arc::new(move |c: &Conn, m: &Message| {
            let second = 8000 * 2;
            match m {
                Message::Binary(b) => {
                    let before = c.bytes() - b.len();
                    if before < second && c.bytes() >= second {
                        (vec![transcription(false, heard(c).into())], false)
                    } else if before < 2 * second && c.bytes() >= 2 * second {
                        (
                            vec![transcription(true, format!("{} final", heard(c)))],
                            false,
                        )
                    } else {
                        (Vec::new(), false)
                    }
                }
                Message::Text(t) if t.contains("\"stop\"") => {
                    (vec![transcription(true, "goodbye".into())], true)
                }
                _ => (Vec::new(), false),
            }
        }),
    );
    let cfg = config(
        "listen-transcribe",
        &format!(
            "[speech]\nstt_url = \"{}\"\nstt_api_key = \"stt-key\"\n",
            stt.url("/stt")
        ),
    );
    let cfg = cfg.to_string_lossy().to_string();
    let (hooks, serve, mut caller, mut callee) =
        call("listen-transcribe", 3000, &["--config", &cfg], |callee| {
            dial(
                &[sip_target(&callee.uri("bob"))],
                json!({"transcribe": {
                    "transcriptionHook": "/transcript",
                    "recognizer": {"vendor": "custom:fake", "language": "en-GB", "interim": true},
                }}),
            )
        });
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(stt.conns().len() == 2 && stt.conns().iter().all(|c| c.closed)) {
        assert!(
            Instant::now() < deadline,
            "two vendor connections, both closed: {:?}",
            stt.conns().iter().map(|c| c.closed).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    serve.finish(&mut [&mut caller, &mut callee]);
    let mut tones = Vec::new();
    for conn in stt.conns() {
        assert_eq!(conn.header("authorization"), Some("Bearer stt-key"));
        let start: Value = serde_json::from_str(&conn.texts[0]).expect("start JSON");
        assert_eq!(start["type"], "start", "{start}");
        assert_eq!(start["language"], "en-GB", "{start}");
        assert_eq!(start["format"], "raw", "{start}");
        assert_eq!(start["encoding"], "LINEAR16", "{start}");
        assert_eq!(start["sampleRateHz"], 8000, "{start}");
        assert_eq!(start["interimResults"], true, "{start}");
        assert_eq!(
            conn.texts.last().map(String::as_str),
            Some(r#"{"type":"stop"}"#)
        );
        assert!(conn.bytes() > 2 * 8000 * 2, "{} bytes", conn.bytes());
        // Each connection carries one party alone, 8 kHz L16.
        let (first, _) = conn.frames[0];
        let pcm = conn.samples_between(
            first + Duration::from_millis(800),
            first + Duration::from_millis(1800),
        );
        let (caller_amp, callee_amp) = (
            tone_amplitude(&pcm, CALLER_HZ),
            tone_amplitude(&pcm, CALLEE_HZ),
        );
        let (mine, other) = (caller_amp.max(callee_amp), caller_amp.min(callee_amp));
        assert!(mine > 0.35 && other < 0.05, "{caller_amp} {callee_amp}");
        tones.push(heard(&conn));
    }
    tones.sort_unstable();
    assert_eq!(tones, ["callee tone", "caller tone"]);
    let posted = hooks.wait("/transcript", "six transcripts", HOOK_WAIT, |h| {
        h.len() >= 6
    });
    let said = |tag: u64| -> Vec<(String, bool)> {
        posted
            .iter()
            .map(|h| &h.json["speech"])
            .filter(|s| s["channel_tag"] == tag)
            .map(|s| {
                (
                    s["alternatives"][0]["transcript"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    s["is_final"].as_bool().unwrap_or(false),
                )
            })
            .collect()
    };
    let expect = |who: &str| {
        vec![
            (who.to_string(), false),
            (format!("{who} final"), true),
            ("goodbye".to_string(), true),
        ]
    };
    assert_eq!(said(1), expect("caller tone"), "channel 1 is the caller");
    assert_eq!(said(2), expect("callee tone"), "channel 2 is the callee");
    for h in &posted {
        let h = &h.json;
        assert_eq!(h["speech"]["language_code"], "en-GB", "{h}");
        assert_eq!(h["speech"]["alternatives"][0]["confidence"], 0.9, "{h}");
        assert_eq!(h["to"], CALLED, "{h}");
        assert_eq!(h["direction"], "inbound", "the caller's call info: {h}");
        assert_eq!(h["call_sid"], posted[0].json["call_sid"], "{h}");
    }
}

/// `channel: 2` transcribes the callee alone.
#[test]
fn transcribe_channel_2_takes_the_callee_only() {
    let stt = WsServer::start(
        None,
        Arc::new(|c: &Conn, m: &Message| match m {
            Message::Text(t) if t.contains("\"stop\"") => (
                vec![Message::text(
                    json!({"type": "transcription", "is_final": true,
                        "alternatives": [{"transcript": heard(c)}]})
                    .to_string(),
                )],
                true,
            ),
            _ => (Vec::new(), false),
        }),
    );
    let cfg = config(
        "listen-transcribe-ch2",
        &format!("[speech]\nstt_url = \"{}\"\n", stt.url("/stt")),
    );
    let cfg = cfg.to_string_lossy().to_string();
    let (hooks, serve, mut caller, mut callee) = call(
        "listen-transcribe-ch2",
        2000,
        &["--config", &cfg],
        |callee| {
            dial(
                &[sip_target(&callee.uri("bob"))],
                json!({"transcribe": {"transcriptionHook": "/transcript", "channel": 2}}),
            )
        },
    );
    stt.wait("the vendor's close", Duration::from_secs(15), |c| c.closed);
    serve.finish(&mut [&mut caller, &mut callee]);
    let posted = hooks.wait("/transcript", "a transcript", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(stt.conns().len(), 1, "one connection");
    let s = &posted[0].json["speech"];
    assert_eq!(s["channel_tag"], 2, "{s}");
    assert_eq!(s["alternatives"][0]["transcript"], "callee tone", "{s}");
}

/// `maxLength` ends the stream (the websocket closes, the actionHook is posted) while the call
/// goes on.
#[test]
fn max_length_ends_the_stream_before_the_call() {
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(|_, _| (Vec::new(), false)),
    );
    let url = ws.url("/audio");
    let (hooks, serve, mut caller, mut callee) = call("listen-max", 4000, &[], |callee| {
        dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"listen": {"url": url, "maxLength": 1, "actionHook": "/listen-done"}}),
        )
    });
    let conn = ws.wait("the stream's end", Duration::from_secs(10), |c| c.closed);
    let done = hooks.wait("/listen-done", "listen actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    // The call (4 s) is still up: its completed status comes later.
    let completed = |h: &[common::http::Hit]| {
        h.iter()
            .any(|h| h.json["call_status"] == "completed" && h.json["direction"] == "inbound")
    };
    assert!(!completed(&hooks.hits("/status")), "the call ended first");
    let (first, last) = (conn.frames[0].0, conn.frames.last().expect("frames").0);
    let streamed = last.duration_since(first).as_secs_f64();
    assert!(
        streamed > 0.5 && streamed < 1.5,
        "maxLength 1 s streamed {streamed:.2} s"
    );
    assert_eq!(done[0].json["direction"], "inbound");
    serve.finish(&mut [&mut caller, &mut callee]);
}

/// `passDtmf` sends the caller's keys as text frames; `finishOnKey` ends the stream (and posts
/// the actionHook) while the call goes on.
#[test]
fn keys_are_passed_and_finish_on_key_ends_the_stream() {
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(|_, _| (Vec::new(), false)),
    );
    let url = ws.url("/audio");
    let (hooks, serve, mut caller, mut callee) =
        call_pressing("listen-keys", 4000, &[], "5#", |callee| {
            dial(
                &[sip_target(&callee.uri("bob"))],
                json!({"listen": {"url": url, "passDtmf": true, "finishOnKey": "#",
                    "actionHook": "/listen-done"}}),
            )
        });
    let conn = ws.wait("the stream's end", Duration::from_secs(10), |c| c.closed);
    hooks.wait("/listen-done", "listen actionHook", HOOK_WAIT, |h| {
        !h.is_empty()
    });
    let log = serve.log_tail();
    assert_eq!(
        conn.texts.len(),
        2,
        "metadata and one key: {:?}\n{log}",
        conn.texts
    );
    let key: Value = serde_json::from_str(&conn.texts[1]).expect("key JSON");
    assert_eq!(key["event"], "dtmf", "{key}");
    assert_eq!(key["dtmf"], "5", "{key}");
    assert!(key["duration"].as_u64().is_some_and(|d| d >= 150), "{key}");
    // '#' came 1.7 s in: the stream ended then, not with the 4 s call.
    let (first, last) = (conn.frames[0].0, conn.frames.last().expect("frames").0);
    let streamed = last.duration_since(first).as_secs_f64();
    assert!(
        streamed > 1.2 && streamed < 3.0,
        "streamed {streamed:.2} s\n{log}"
    );
    serve.finish(&mut [&mut caller, &mut callee]);
}

/// Tones the listen server plays back (neither party's).
const BACK_HZ: f32 = 700.0;
const BACK2_HZ: f32 = 1700.0;

/// `ms` of `freq` Hz at `rate` as L16 bytes, peak 0.3, starting at sample `from` (so pieces
/// join without a phase jump).
fn l16_tone(rate: u32, freq: f32, from: usize, samples: usize) -> Vec<u8> {
    (from..from + samples)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            let s = (0.3 * 32767.0 * (2.0 * std::f32::consts::PI * freq * t).sin()) as i16;
            s.to_le_bytes()
        })
        .collect()
}

fn play_audio(rate: u32, freq: f32, ms: usize) -> Message {
    use base64::Engine;
    let pcm = l16_tone(rate, freq, 0, rate as usize * ms / 1000);
    Message::text(
        json!({"type": "playAudio", "data": {"audioContentType": "raw",
            "sampleRate": rate, "audioContent": base64::engine::general_purpose::STANDARD.encode(pcm)}})
        .to_string(),
    )
}

fn command(v: Value) -> Message {
    Message::text(v.to_string())
}

/// A call whose caller is the test's own UDP socket (it hears what dialplane sends it) and
/// whose callee plays the callee's tone; the peer collects for `hold_ms` + 1 s.
fn call_with_peer(
    name: &str,
    hold_ms: u64,
    verbs: impl Fn(&Sipp) -> Value,
) -> (Vec<common::rtp::Received>, Serve) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("listen-{name}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let answer = pcap_scenario_of(
        &dir,
        "callee",
        &root.join("tests/rtp_tools/play.xml"),
        &tone_with_keys(CALLEE_HZ, hold_ms as u32 + 3000, ""),
    );
    let mut callee = Sipp::callee(
        &format!("listen-{name}-callee"),
        Run {
            scenario: &answer,
            calls: 1,
            pause_ms: 0,
            extra: &[],
        },
    );
    let (_hooks, serve) = serve_with_app_and(name, verbs(&callee), &[]);
    let peer = common::rtp::RtpPeer::bind();
    let port = peer.port().to_string();
    let mut caller = Sipp::caller(
        &format!("listen-{name}-caller"),
        serve.sip,
        Run {
            scenario: &root.join("tests/music/caller.xml"),
            calls: 1,
            pause_ms: hold_ms,
            extra: &["-s", CALLED, "-key", "rtp_port", &port],
        },
    );
    let packets = peer.receive_for(Duration::from_millis(hold_ms + 1000));
    serve.finish(&mut [&mut caller, &mut callee]);
    (packets, serve)
}

/// Amplitude of `freq` in what the peer received in `[from, to)`.
fn heard_between(packets: &[common::rtp::Received], from: Instant, to: Instant, freq: f32) -> f32 {
    let window: Vec<_> = packets
        .iter()
        .filter(|p| p.at >= from && p.at < to)
        .cloned()
        .collect();
    tone_amplitude(&common::rtp::decode(&window), freq)
}

/// When each text the server got arrived, by content.
type Seen = Arc<Mutex<Vec<(Instant, String)>>>;

fn seen_at(seen: &Seen, what: &str) -> Instant {
    let seen = seen.lock().unwrap();
    seen.iter()
        .find(|(_, t)| t.contains(what))
        .unwrap_or_else(|| panic!("no {what} in {seen:?}"))
        .0
}

/// bidirectionalAudio (clips): the server answers the metadata with a 1 s 700 Hz clip (raw L16
/// at 16 kHz, base64) and a mark; the caller (who sends no audio: nothing but the server's
/// replies drives this) hears it over the callee, the mark comes back once it has played
/// (after playDone). Then a 1 s 1700 Hz clip and a 4 s one queued behind it: `killAudio`, sent
/// when the first of them is done, stops the second and clears the mark queued after it.
#[test]
fn listen_plays_clips_back_to_the_caller_with_marks_and_kill() {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(move |c: &Conn, m: &Message| {
            let Message::Text(t) = m else {
                return (Vec::new(), false);
            };
            s.lock().unwrap().push((Instant::now(), t.to_string()));
            let done = c.texts.iter().filter(|t| t.contains("playDone")).count();
            if c.texts.len() == 1 {
                let first = vec![
                    play_audio(16000, BACK_HZ, 1000),
                    command(json!({"type": "mark", "data": {"name": "first"}})),
                ];
                (first, false)
            } else if t.contains("\"first\"") {
                let two = vec![
                    play_audio(8000, BACK2_HZ, 1000),
                    play_audio(8000, BACK2_HZ, 4000),
                    command(json!({"type": "mark", "data": {"name": "second"}})),
                ];
                (two, false)
            } else if t.contains("playDone") && done == 2 {
                s.lock()
                    .unwrap()
                    .push((Instant::now(), "killAudio sent".into()));
                (vec![command(json!({"type": "killAudio"}))], false)
            } else {
                (Vec::new(), false)
            }
        }),
    );
    let url = ws.url("/audio");
    let (packets, serve) = call_with_peer("listen-bidi-clips", 4500, |callee| {
        dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"listen": {"url": url, "bidirectionalAudio": {"enabled": true}}}),
        )
    });
    let log = serve.log_tail();
    let texts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    let first = seen_at(&seen, "\"first\"");
    let killed = seen_at(&seen, "killAudio sent");
    let ms = |t: Instant, ms: i64| {
        if ms >= 0 {
            t + Duration::from_millis(ms as u64)
        } else {
            t - Duration::from_millis((-ms) as u64)
        }
    };
    // jambonz's replies, in order: the clip's end, its mark played, then (killAudio) the
    // second mark cleared.
    let events: Vec<Value> = texts[1..]
        .iter()
        .filter(|t| !t.contains("killAudio"))
        .map(|t| serde_json::from_str(t).expect("JSON"))
        .collect();
    assert_eq!(
        events,
        [
            json!({"type": "playDone"}),
            json!({"type": "mark", "data": {"name": "first", "event": "playout"}}),
            json!({"type": "playDone"}),
            json!({"type": "mark", "data": {"name": "second", "event": "cleared"}}),
        ],
        "{log}"
    );
    // The first clip played over the callee before its mark came back, and not after.
    let clip1 = packets
        .iter()
        .filter(|p| tone_amplitude(&common::rtp::decode(std::slice::from_ref(p)), BACK_HZ) > 0.15)
        .map(|p| p.at)
        .collect::<Vec<_>>();
    let (start1, end1) = (clip1[0], *clip1.last().expect("clip 1 heard"));
    let played = end1.duration_since(start1).as_secs_f64();
    assert!(
        (0.85..1.15).contains(&played),
        "clip 1 played {played:.2} s\n{log}"
    );
    assert!(
        end1 <= ms(first, 30),
        "the mark came {:?} before its audio ended",
        end1.duration_since(first)
    );
    let during = heard_between(&packets, ms(first, -800), ms(first, -200), BACK_HZ);
    assert!(during > 0.2, "clip 1 at {during}");
    let callee = heard_between(&packets, ms(first, -800), ms(first, -200), CALLEE_HZ);
    assert!(callee > 0.2, "the callee under it at {callee}");
    // The next clip plays from the mark; the one behind it until killAudio, then stops.
    let clip2 = heard_between(&packets, ms(first, 200), ms(killed, -100), BACK2_HZ);
    assert!(clip2 > 0.2, "clip 2 at {clip2}\n{log}");
    let after = heard_between(&packets, ms(killed, 200), ms(killed, 1200), BACK2_HZ);
    assert!(after < 0.02, "clip 2 after killAudio at {after}");
    let callee = heard_between(&packets, ms(killed, 200), ms(killed, 1200), CALLEE_HZ);
    assert!(callee > 0.2, "the callee after killAudio at {callee}");
}

/// bidirectionalAudio streaming: the server answers the metadata with 1.5 s of a 700 Hz tone
/// as 75 binary frames of L16 at 16 kHz (faster than real time, as a synthesizer sends; one
/// frame split at an odd byte), then a mark; the caller hears the whole tone in order, the mark
/// comes back after the last of it, and the bad frames sent first (broken JSON, a playAudio,
/// which streaming ignores) change nothing.
#[test]
fn listen_streams_binary_audio_back_to_the_caller() {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let ws = WsServer::start(
        Some("audio.jambonz.org"),
        Arc::new(move |c: &Conn, m: &Message| {
            let Message::Text(t) = m else {
                return (Vec::new(), false);
            };
            s.lock().unwrap().push((Instant::now(), t.to_string()));
            if c.texts.len() > 1 {
                return (Vec::new(), false);
            }
            let mut out = vec![Message::text("{not json"), play_audio(8000, BACK2_HZ, 500)];
            let per = 320;
            for i in 0..75 {
                let mut bytes = l16_tone(16000, BACK_HZ, i * per, per);
                if i == 10 {
                    let tail = bytes.split_off(301);
                    out.push(Message::binary(bytes));
                    bytes = tail;
                }
                out.push(Message::binary(bytes));
            }
            out.push(command(json!({"type": "mark", "data": {"name": "end"}})));
            s.lock()
                .unwrap()
                .push((Instant::now(), "last frame sent".into()));
            (out, false)
        }),
    );
    let url = ws.url("/audio");
    let (packets, serve) = call_with_peer("listen-bidi-stream", 3500, |callee| {
        dial(
            &[sip_target(&callee.uri("bob"))],
            json!({"listen": {"url": url, "sampleRate": 8000,
                "bidirectionalAudio": {"enabled": true, "streaming": true, "sampleRate": 16000}}}),
        )
    });
    let log = serve.log_tail();
    let end = seen_at(&seen, "\"end\"");
    let last = seen_at(&seen, "last frame sent");
    let mark: Value = serde_json::from_str(
        &seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, t)| t.contains("\"end\""))
            .expect("mark")
            .1,
    )
    .expect("JSON");
    assert_eq!(
        mark,
        json!({"type": "mark", "data": {"name": "end", "event": "playout"}})
    );
    let heard: Vec<Instant> = packets
        .iter()
        .filter(|p| tone_amplitude(&common::rtp::decode(std::slice::from_ref(p)), BACK_HZ) > 0.15)
        .map(|p| p.at)
        .collect();
    let (start, stop) = (heard[0], *heard.last().expect("the stream heard"));
    let played = stop.duration_since(start).as_secs_f64();
    assert!(
        (1.3..1.7).contains(&played),
        "1.5 s streamed, {played:.2} s heard\n{log}"
    );
    assert!(
        stop <= end + Duration::from_millis(30),
        "the mark came before its audio ended"
    );
    assert!(end >= last, "the mark follows the audio");
    let mid = start + Duration::from_millis(300);
    let level = heard_between(&packets, mid, mid + Duration::from_millis(800), BACK_HZ);
    assert!(
        (0.2..0.4).contains(&level),
        "700 Hz at {level} (0.3 sent)\n{log}"
    );
    let callee = heard_between(&packets, mid, mid + Duration::from_millis(800), CALLEE_HZ);
    assert!(callee > 0.2, "the callee under it at {callee}");
    assert!(
        serve
            .log_text()
            .contains("audio from the websocket dropped"),
        "the bad frames are logged\n{log}"
    );
}
