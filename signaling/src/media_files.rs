//! Audio files for dialMusic and dub: fetched by http(s) URL or read from a path, decoded (WAV
//! or MP3, by symphonia), mixed down to mono, resampled to 8 kHz and kept as 16-bit PCM in a
//! cache bounded by its total samples, least recently used out first.
//!
//! Media only plays PCM handed to it (DESIGN.md), so this is where files become samples. One
//! fetch per source at a time: callers asking for a source that is being fetched wait for that
//! fetch and share its result, success or failure; failures are not cached (the next call
//! tries again). The fetch runs in a task of its own, so a call hanging up mid-download does not
//! fail the others waiting for the same file. A file is keyed by its source string: a file
//! replaced under the same URL or path is picked up once the old one has left the cache.
//!
//! Synthesised speech is one more kind of file: [`MediaFiles::say_source`] names the text,
//! language and voice as a source, fetched by a POST to the configured synthesizer (jambonz's
//! custom TTS API: JSON `{language, voice, type, text}` in, `audio/mpeg`, `audio/wav` or
//! `audio/l16;rate=N` out), decoded and cached like any file, so a prompt said on every call is
//! synthesised once.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use tokio::sync::watch;

/// The rate every file is converted to: what G.711 legs and media's player run at.
pub const RATE: u32 = 8000;

/// Why a file gives no samples
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaFileError {
    /// The HTTP request failed before an answer (connect, TLS, timeout, reset).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The URL asked for.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The server answered with something other than 2xx.
    #[error("fetching {url}: HTTP status {status}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The status code.
        status: u16,
    },
    /// The file cannot be read from disk.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The path asked for.
        path: String,
        /// The operating system's reason.
        message: String,
    },
    /// The download or file is larger than allowed.
    #[error("{source_name} is larger than the {limit} bytes allowed")]
    TooLarge {
        /// The URL or path.
        source_name: String,
        /// The limit, in bytes.
        limit: u64,
    },
    /// The decoded audio is longer than allowed.
    #[error("{source_name} lasts longer than the {limit_s} s allowed")]
    TooLong {
        /// The URL or path.
        source_name: String,
        /// The limit, in seconds.
        limit_s: u64,
    },
    /// The bytes are not audio in a format we decode.
    #[error("{source_name} is not audio we can play (WAV or MP3): {message}")]
    NotAudio {
        /// The URL or path.
        source_name: String,
        /// The decoder's reason.
        message: String,
    },
    /// The decoding task failed (it panicked or was cancelled at shutdown).
    #[error("decoding {source_name} failed: {message}")]
    Internal {
        /// The URL or path.
        source_name: String,
        /// What happened.
        message: String,
    },
}

/// Why bytes do not decode to samples (no source name yet: [`MediaFiles`] adds it)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a format we decode, or corrupt.
    #[error("{0}")]
    NotAudio(String),
    /// More than the allowed number of 8 kHz samples.
    #[error("longer than {0} samples at 8 kHz")]
    TooLong(usize),
}

/// A speech synthesizer speaking jambonz's custom TTS API
#[derive(Clone)]
pub struct Synthesizer {
    /// Where requests are POSTed.
    pub url: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Language when the app names none.
    pub language: String,
    /// Voice when the app names none.
    pub voice: String,
}

impl std::fmt::Debug for Synthesizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Synthesizer")
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("language", &self.language)
            .field("voice", &self.voice)
            .finish()
    }
}

/// Starts a source that is synthesised speech: NUL is in no path or URL, so no file is taken
/// for speech nor speech for a file.
const SAY: &str = "\0say:";

/// Limits of [`MediaFiles`]
#[derive(Debug, Clone)]
pub struct MediaFilesOptions {
    /// Total 8 kHz samples kept in the cache (2 bytes each).
    pub cache_samples: usize,
    /// Largest download or file read, in bytes.
    pub max_bytes: u64,
    /// Longest decoded audio, in seconds.
    pub max_seconds: u64,
    /// Whole HTTP request timeout.
    pub timeout: Duration,
    /// What `say` is synthesised by; none: [`MediaFiles::say_source`] gives nothing.
    pub synthesizer: Option<Synthesizer>,
}

impl Default for MediaFilesOptions {
    fn default() -> Self {
        Self {
            // One hour of audio: 57.6 MB.
            cache_samples: RATE as usize * 3600,
            max_bytes: 64 << 20,
            // Ten minutes; hold music is looped, it need not be long.
            max_seconds: 600,
            timeout: Duration::from_secs(30),
            synthesizer: None,
        }
    }
}

type Outcome = Option<Result<Arc<[i16]>, MediaFileError>>;

enum Entry {
    Ready { samples: Arc<[i16]>, used: u64 },
    Loading(watch::Receiver<Outcome>),
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Samples held by the `Ready` entries.
    samples: usize,
    /// Use counter: a higher `used` is more recent.
    clock: u64,
}

/// The file cache; cheap to clone (shared state)
#[derive(Clone)]
pub struct MediaFiles {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    options: MediaFilesOptions,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for MediaFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFiles")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

enum Step {
    Hit(Arc<[i16]>),
    Wait(watch::Receiver<Outcome>),
}

impl MediaFiles {
    /// A cache with these limits
    pub fn new(options: MediaFilesOptions) -> Result<Self, MediaFileError> {
        let http =
            crate::webhook::http_client(options.timeout).map_err(|e| MediaFileError::Fetch {
                url: String::new(),
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                options,
                cache: Mutex::new(Cache::default()),
            }),
        })
    }

    /// The file's samples at 8 kHz, mono: from the cache, or fetched and decoded now
    ///
    /// `source` is an `http://` or `https://` URL, a `file://` URL or a path.
    pub async fn get(&self, source: &str) -> Result<Arc<[i16]>, MediaFileError> {
        loop {
            let mut rx = match self.step(source) {
                Step::Hit(samples) => return Ok(samples),
                Step::Wait(rx) => rx,
            };
            // The loading task always sends before dropping its sender; a closed channel with
            // nothing sent means the runtime is shutting down: try again, which fails fast.
            match rx.wait_for(Option::is_some).await {
                Ok(outcome) => return outcome.clone().expect("waited for Some"),
                Err(_) => {
                    self.lock().entries.remove(source);
                }
            }
        }
    }

    /// The source under which [`MediaFiles::get`] gives `text` spoken (SSML when it starts with
    /// `<speak`) in `language` and `voice` (the synthesizer's defaults when `None`); `None` when
    /// no synthesizer is configured
    pub fn say_source(
        &self,
        text: &str,
        language: Option<&str>,
        voice: Option<&str>,
    ) -> Option<String> {
        let synth = self.inner.options.synthesizer.as_ref()?;
        let kind = if text.trim_start().starts_with("<speak") {
            "ssml"
        } else {
            "text"
        };
        let body = serde_json::json!({
            "language": language.unwrap_or(&synth.language),
            "voice": voice.unwrap_or(&synth.voice),
            "type": kind,
            "text": text,
        });
        Some(format!("{SAY}{body}"))
    }

    /// Samples held in the cache now
    pub fn cached_samples(&self) -> usize {
        self.lock().samples
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding this lock leaves counters at worst stale, never unsafe.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A cache hit, or the channel of the load in progress (started here if there was none)
    fn step(&self, source: &str) -> Step {
        let mut cache = self.lock();
        cache.clock += 1;
        let now = cache.clock;
        match cache.entries.get_mut(source) {
            Some(Entry::Ready { samples, used }) => {
                *used = now;
                metrics::counter!("dialplane_media_file_requests_total", "result" => "hit")
                    .increment(1);
                return Step::Hit(samples.clone());
            }
            Some(Entry::Loading(rx)) => {
                metrics::counter!("dialplane_media_file_requests_total", "result" => "shared")
                    .increment(1);
                return Step::Wait(rx.clone());
            }
            None => {}
        }
        metrics::counter!("dialplane_media_file_requests_total", "result" => "miss").increment(1);
        let (tx, rx) = watch::channel(None);
        cache
            .entries
            .insert(source.to_owned(), Entry::Loading(rx.clone()));
        let this = self.clone();
        let source = source.to_owned();
        tokio::spawn(async move {
            let outcome = this.load(&source).await;
            match &outcome {
                Ok(samples) => {
                    metrics::counter!("dialplane_media_file_loads_total", "result" => "ok")
                        .increment(1);
                    tracing::debug!(
                        source = %source,
                        seconds = samples.len() as f32 / RATE as f32,
                        "media file loaded"
                    );
                }
                Err(e) => {
                    metrics::counter!("dialplane_media_file_loads_total", "result" => "error")
                        .increment(1);
                    tracing::warn!(error = %e, "media file failed");
                }
            }
            this.settle(&source, &outcome);
            // Waiters that left (their call ended) are no reason to fail.
            let _ = tx.send(Some(outcome));
        });
        Step::Wait(rx)
    }

    /// Moves a finished load into the cache (success) or out of it (failure), then evicts the
    /// least recently used files until the total fits
    fn settle(&self, source: &str, outcome: &Result<Arc<[i16]>, MediaFileError>) {
        let budget = self.inner.options.cache_samples;
        let mut cache = self.lock();
        cache.entries.remove(source);
        if let Ok(samples) = outcome
            && samples.len() <= budget
        {
            cache.clock += 1;
            let used = cache.clock;
            cache.samples += samples.len();
            cache.entries.insert(
                source.to_owned(),
                Entry::Ready {
                    samples: samples.clone(),
                    used,
                },
            );
            while cache.samples > budget {
                let oldest = cache
                    .entries
                    .iter()
                    .filter_map(|(k, e)| match e {
                        Entry::Ready { used, samples } if k != source => {
                            Some((*used, k.clone(), samples.len()))
                        }
                        _ => None,
                    })
                    .min();
                let Some((_, key, len)) = oldest else { break };
                cache.entries.remove(&key);
                cache.samples -= len;
                metrics::counter!("dialplane_media_file_evictions_total").increment(1);
            }
        }
        metrics::gauge!("dialplane_media_file_cache_samples").set(cache.samples as f64);
    }

    async fn load(&self, source: &str) -> Result<Arc<[i16]>, MediaFileError> {
        if let Some(request) = source.strip_prefix(SAY) {
            return self.synthesize(request).await;
        }
        let remote = source.starts_with("http://") || source.starts_with("https://");
        let bytes = if remote {
            Some(self.download(self.inner.http.get(source), source).await?.0)
        } else {
            None
        };
        let options = self.inner.options.clone();
        let name = source.to_owned();
        // Reading a file and decoding both block: off the runtime's threads. A panic in the
        // decoder ends this task only, as an error.
        tokio::task::spawn_blocking(move || {
            let bytes = match bytes {
                Some(b) => b,
                None => read(&name, options.max_bytes)?,
            };
            let max = (options.max_seconds * u64::from(RATE)) as usize;
            decode_8k_i16(bytes, max).map_err(|e| match e {
                DecodeError::NotAudio(message) => MediaFileError::NotAudio {
                    source_name: name,
                    message,
                },
                DecodeError::TooLong(_) => MediaFileError::TooLong {
                    source_name: name,
                    limit_s: options.max_seconds,
                },
            })
        })
        .await
        .map_err(|e| MediaFileError::Internal {
            source_name: source.to_owned(),
            message: e.to_string(),
        })?
    }

    /// Speech for `request` (the JSON body of [`MediaFiles::say_source`]) from the synthesizer.
    async fn synthesize(&self, request: &str) -> Result<Arc<[i16]>, MediaFileError> {
        let Some(synth) = &self.inner.options.synthesizer else {
            return Err(MediaFileError::Internal {
                source_name: "speech".into(),
                message: "no synthesizer is configured".into(),
            });
        };
        let mut post = self
            .inner
            .http
            .post(&synth.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(request.to_owned());
        if let Some(key) = &synth.api_key {
            post = post.bearer_auth(key);
        }
        let (bytes, content_type) = self.download(post, &synth.url).await?;
        let max = (self.inner.options.max_seconds * u64::from(RATE)) as usize;
        let name = synth.url.clone();
        tokio::task::spawn_blocking(move || {
            decode_speech(bytes, content_type.as_deref(), max).map_err(|e| match e {
                DecodeError::NotAudio(message) => MediaFileError::NotAudio {
                    source_name: name,
                    message,
                },
                DecodeError::TooLong(_) => MediaFileError::TooLong {
                    source_name: name,
                    limit_s: max as u64 / u64::from(RATE),
                },
            })
        })
        .await
        .map_err(|e| MediaFileError::Internal {
            source_name: synth.url.clone(),
            message: e.to_string(),
        })?
    }

    /// The body of a 2xx answer to `request` (at most `max_bytes`) and its content type.
    async fn download(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<(Vec<u8>, Option<String>), MediaFileError> {
        let limit = self.inner.options.max_bytes;
        let fetch_err = |e: reqwest::Error| MediaFileError::Fetch {
            url: url.to_owned(),
            message: e.without_url().to_string(),
        };
        let too_large = || MediaFileError::TooLarge {
            source_name: url.to_owned(),
            limit,
        };
        let mut response = request.send().await.map_err(fetch_err)?;
        let status = response.status();
        if !status.is_success() {
            return Err(MediaFileError::Status {
                url: url.to_owned(),
                status: status.as_u16(),
            });
        }
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        // Chunk by chunk, so a server that lies about (or omits) the length is cut off at the
        // limit rather than filling memory.
        while let Some(chunk) = response.chunk().await.map_err(fetch_err)? {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        Ok((body, content_type))
    }
}

/// A file's bytes: `source` is a path or a `file://` URL
fn read(source: &str, limit: u64) -> Result<Vec<u8>, MediaFileError> {
    let path = source.strip_prefix("file://").unwrap_or(source);
    let read_err = |e: std::io::Error| MediaFileError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a file over it, whatever its metadata says (pipes, /proc).
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > limit {
        return Err(MediaFileError::TooLarge {
            source_name: path.to_owned(),
            limit,
        });
    }
    Ok(bytes)
}

/// Decodes a WAV or MP3 file's bytes to mono samples at 8 kHz (16-bit full scale = 1.0)
///
/// Channels are averaged; any rate in [`dsp::resample::FILE_RATES`] is converted. Corrupt
/// packets inside an MP3 stream are skipped, as players do; a file with no audio at all is an
/// error.
pub fn decode_8k(bytes: &[u8]) -> Result<Vec<f32>, DecodeError> {
    decode_limited(bytes.to_vec(), usize::MAX)
}

/// [`decode_8k`] as 16-bit samples (what media plays), refusing more than `max` of them
pub fn decode_8k_i16(bytes: Vec<u8>, max: usize) -> Result<Arc<[i16]>, DecodeError> {
    decode_limited(bytes, max).map(|s| to_i16(&s))
}

/// Full-scale-1.0 samples as 16-bit ones.
fn to_i16(samples: &[f32]) -> Arc<[i16]> {
    samples
        .iter()
        .map(|&x| (x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Mono samples at `rate` converted to 8 kHz, refusing more than `max` of them or none.
fn to_8k(mono: Vec<f32>, rate: u32, max: usize) -> Result<Vec<f32>, DecodeError> {
    if mono.is_empty() {
        return Err(DecodeError::NotAudio("no audio in the file".into()));
    }
    let out = if rate == RATE {
        mono
    } else {
        dsp::resample::resample(&mono, rate, RATE)
            .map_err(|e| DecodeError::NotAudio(e.to_string()))?
    };
    if out.len() > max {
        return Err(DecodeError::TooLong(max));
    }
    Ok(out)
}

/// A synthesizer's answer as samples: raw `audio/l16;rate=N` (big-endian, RFC 2586) by its
/// header, anything else (MP3, WAV) by what the bytes are
fn decode_speech(
    bytes: Vec<u8>,
    content_type: Option<&str>,
    max: usize,
) -> Result<Arc<[i16]>, DecodeError> {
    let Some(params) = content_type.and_then(|t| t.strip_prefix("audio/l16")) else {
        return decode_8k_i16(bytes, max);
    };
    let rate = params
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("rate="))
        .find_map(|r| r.trim().parse::<u32>().ok())
        .unwrap_or(RATE);
    if bytes.len() / 2 > max.saturating_mul(rate as usize / RATE as usize + 1) {
        return Err(DecodeError::TooLong(max));
    }
    let pcm: Vec<f32> = bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_be_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    to_8k(pcm, rate, max).map(|s| to_i16(&s))
}

/// A copy of a G.711 WAV file whose 16-byte `fmt ` chunk lacks the cbSize field that
/// WAVEFORMATEX requires of non-PCM formats (many telephony tools write it so; symphonia refuses
/// it), with the field added; `None` for every other file
fn with_cb_size(bytes: &[u8]) -> Option<Vec<u8>> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = u32_at(at + 4)? as usize;
        if &bytes[at..at + 4] == b"fmt " {
            let tag = u16::from_le_bytes(bytes.get(at + 8..at + 10)?.try_into().ok()?);
            // 6: A-law, 7: µ-law.
            if size != 16 || !matches!(tag, 6 | 7) {
                return None;
            }
            let end = at + 8 + 16;
            let mut fixed = Vec::with_capacity(bytes.len() + 2);
            fixed.extend_from_slice(bytes.get(..end)?);
            fixed.extend_from_slice(&[0, 0]);
            fixed.extend_from_slice(&bytes[end..]);
            fixed[4..8].copy_from_slice(&u32_at(4)?.saturating_add(2).to_le_bytes());
            fixed[at + 4..at + 8].copy_from_slice(&18u32.to_le_bytes());
            return Some(fixed);
        }
        at = at.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// Takes the file's bytes (a fetched file is not copied again; only a G.711 WAV missing its
/// `cbSize` is rewritten).
fn decode_limited(bytes: Vec<u8>, max: usize) -> Result<Vec<f32>, DecodeError> {
    let not_audio = |e: SymphoniaError| DecodeError::NotAudio(e.to_string());
    let bytes = with_cb_size(&bytes).unwrap_or(bytes);
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(not_audio)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| DecodeError::NotAudio("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(not_audio)?;
    let mut mono: Vec<f32> = Vec::new();
    // The file's own rate: the limit in its samples, so an hour-long file is refused before it
    // is all decoded.
    let limit = |rate: u32| max.saturating_mul(rate as usize / RATE as usize + 1);
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break;
            }
            Err(e) if mono.is_empty() => return Err(not_audio(e)),
            // A damaged tail: keep what decoded.
            Err(_) => break,
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(not_audio(e)),
        };
        let spec = *decoded.spec();
        rate.get_or_insert(spec.rate);
        let channels = spec.channels.count().max(1);
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        let scale = 1.0 / channels as f32;
        mono.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        if mono.len() > limit(rate.unwrap_or(RATE)) {
            return Err(DecodeError::TooLong(max));
        }
    }
    let rate = rate.ok_or_else(|| DecodeError::NotAudio("no sample rate".into()))?;
    to_8k(mono, rate, max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wav;
    use dsp::g711::Law;
    use std::f32::consts::PI;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn sine_i16(rate: u32, freq: f32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (8000.0 * (2.0 * PI * freq * i as f32 / rate as f32).sin()) as i16)
            .collect()
    }

    /// Frequency from rising zero crossings over the whole signal
    fn frequency(x: &[f32]) -> f32 {
        let ups = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        ups as f32 * RATE as f32 / x.len() as f32
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn reads_pcm16_at_8k_exactly() {
        let s = sine_i16(8000, 1000.0, 800);
        let out = decode_8k(&wav::encode_pcm16(8000, &s)).unwrap();
        assert_eq!(out.len(), 800);
        assert_eq!(out[2], f32::from(s[2]) / 32768.0);
        let pcm = decode_8k_i16(wav::encode_pcm16(8000, &s), 800).unwrap();
        assert_eq!(&pcm[..], &s[..]);
    }

    #[test]
    fn resamples_any_file_rate_to_8k() {
        for rate in [11025, 16000, 22050, 44100, 48000] {
            let s = sine_i16(rate, 440.0, rate as usize);
            let out = decode_8k(&wav::encode_pcm16(rate, &s)).unwrap();
            assert!(
                (out.len() as i64 - 8000).abs() <= 1,
                "{rate}: {}",
                out.len()
            );
            let f = frequency(&out);
            assert!((f - 440.0).abs() < 3.0, "{rate}: {f} Hz");
        }
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        // Left a tone, right its inverse: the mix is silence. Left a tone, right silent: half.
        let tone = sine_i16(8000, 500.0, 800);
        let opposite: Vec<i16> = tone.iter().flat_map(|&s| [s, -s]).collect();
        let out = decode_8k(&wav::encode_pcm16_channels(8000, 2, &opposite)).unwrap();
        assert_eq!(out.len(), 800);
        assert!(out.iter().all(|&x| x.abs() < 1e-4));
        let one_side: Vec<i16> = tone.iter().flat_map(|&s| [s, 0]).collect();
        let out = decode_8k(&wav::encode_pcm16_channels(8000, 2, &one_side)).unwrap();
        assert!((out[3] - f32::from(tone[3]) / 65536.0).abs() < 1e-6);
    }

    #[test]
    fn reads_ulaw_and_alaw() {
        for law in [Law::Ulaw, Law::Alaw] {
            let codes: Vec<u8> = sine_i16(8000, 500.0, 160)
                .into_iter()
                .map(|s| law.encode(s))
                .collect();
            let out = decode_8k(&wav::encode_g711(law, &codes)).unwrap();
            assert_eq!(out.len(), 160);
            assert_eq!(out[7], f32::from(law.decode(codes[7])) / 32768.0);
        }
    }

    #[test]
    fn reads_g711_wav_without_cb_size() {
        // As examples/answering-machine.wav and many telephony tools have it: fmt is 16 bytes.
        let codes: Vec<u8> = sine_i16(8000, 500.0, 160)
            .into_iter()
            .map(|s| Law::Ulaw.encode(s))
            .collect();
        let full = wav::encode_g711(Law::Ulaw, &codes);
        let mut short = full[..36].to_vec();
        short[16] = 16;
        short[4..8].copy_from_slice(&(36 + 160u32).to_le_bytes());
        short.extend_from_slice(&full[38..]);
        assert_eq!(decode_8k(&short).unwrap(), decode_8k(&full).unwrap());
        assert_eq!(with_cb_size(&short).as_deref(), Some(&full[..]));
        assert_eq!(with_cb_size(&full), None);
    }

    #[test]
    fn reads_mp3_made_by_sox() {
        let dir = std::env::temp_dir().join(format!("dialplane-mp3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.mp3");
        // Stereo 44.1 kHz, as music files come; sox writes MP3 through libsox-fmt-mp3.
        let status = std::process::Command::new("sox")
            .args(["-n", "-r", "44100", "-c", "2"])
            .arg(&path)
            .args(["synth", "1", "sine", "440", "vol", "0.5"])
            .status()
            .expect("sox runs");
        assert!(
            status.success(),
            "sox cannot write MP3 (install libsox-fmt-mp3: make deps)"
        );
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let out = decode_8k(&bytes).unwrap();
        // The encoder adds up to a few frames of padding (no gapless trimming here).
        assert!((8000..8800).contains(&out.len()), "{} samples", out.len());
        let middle = &out[2000..6000];
        let f = frequency(middle);
        assert!((f - 440.0).abs() < 4.0, "{f} Hz");
        let level = rms(middle) * 2f32.sqrt();
        assert!((level - 0.5).abs() < 0.05, "amplitude {level}");
    }

    #[test]
    fn rejects_what_is_not_audio() {
        for bad in [&b"hello"[..], &[], &[0; 1000], b"<html>Not Found</html>"] {
            assert!(
                matches!(decode_8k(bad), Err(DecodeError::NotAudio(_))),
                "{bad:?}"
            );
        }
        let no_samples = wav::encode_pcm16(8000, &[]);
        assert!(matches!(
            decode_8k(&no_samples),
            Err(DecodeError::NotAudio(_))
        ));
        let long = wav::encode_pcm16(16000, &vec![0; 16000]);
        assert_eq!(
            decode_8k_i16(long.clone(), 7999),
            Err(DecodeError::TooLong(7999))
        );
        assert_eq!(decode_8k_i16(long, 8000).unwrap().len(), 8000);
    }

    #[test]
    fn never_panics_on_any_truncation_or_corruption() {
        let file = wav::encode_pcm16(16000, &sine_i16(16000, 440.0, 64));
        for len in 0..file.len() {
            let _ = decode_8k(&file[..len]);
        }
        for i in 0..file.len() {
            for v in [0x00, 0xFF, 0x7F, 0x80] {
                let mut f = file.clone();
                f[i] = v;
                let _ = decode_8k(&f);
            }
        }
    }

    /// A one-shot-per-connection HTTP server: `/missing` is 404, every other path the file in
    /// `files`, answered once `gate` lets it (closed gate: at once). Counts requests per path.
    struct Server {
        addr: std::net::SocketAddr,
        hits: Arc<Mutex<HashMap<String, usize>>>,
        requests: Arc<AtomicUsize>,
    }

    impl Server {
        async fn start(
            files: HashMap<&'static str, Vec<u8>>,
            gate: Arc<tokio::sync::Semaphore>,
        ) -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
            let requests = Arc::new(AtomicUsize::new(0));
            let files = Arc::new(files);
            let (h, r) = (hits.clone(), requests.clone());
            tokio::spawn(async move {
                while let Ok((mut conn, _)) = listener.accept().await {
                    let (files, hits, requests, gate) =
                        (files.clone(), h.clone(), r.clone(), gate.clone());
                    tokio::spawn(async move {
                        let mut req = Vec::new();
                        let mut buf = [0; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => req.extend_from_slice(&buf[..n]),
                            }
                        }
                        let line = String::from_utf8_lossy(&req);
                        let path = line.split(' ').nth(1).unwrap_or("").to_owned();
                        *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
                        requests.fetch_add(1, Ordering::SeqCst);
                        let _permit = gate.acquire().await;
                        let (status, body) = match files.get(path.as_str()) {
                            Some(b) => ("200 OK", b.clone()),
                            None => ("404 Not Found", b"no such file".to_vec()),
                        };
                        let head = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = conn.write_all(head.as_bytes()).await;
                        let _ = conn.write_all(&body).await;
                    });
                }
            });
            Self {
                addr,
                hits,
                requests,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn hits(&self, path: &str) -> usize {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }
    }

    fn open_gate() -> Arc<tokio::sync::Semaphore> {
        Arc::new(tokio::sync::Semaphore::new(1000))
    }

    fn tone_file(seconds: usize) -> Vec<u8> {
        wav::encode_pcm16(16000, &sine_i16(16000, 440.0, 16000 * seconds))
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_fetch() {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let server =
            Server::start(HashMap::from([("/tone.wav", tone_file(1))]), gate.clone()).await;
        let files = MediaFiles::new(MediaFilesOptions::default()).unwrap();
        let url = server.url("/tone.wav");
        let get = || files.get(&url);
        // join! polls every future once before any can finish (the server holds its answer
        // until the last future opens the gate), so all ten ask while the fetch is under way.
        let (a, b, c, d, e, f, g, h, i, j, ()) = tokio::join!(
            get(),
            get(),
            get(),
            get(),
            get(),
            get(),
            get(),
            get(),
            get(),
            get(),
            async {
                for _ in 0..1000 {
                    if server.requests.load(Ordering::SeqCst) > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                gate.add_permits(1000);
            }
        );
        let first = a.unwrap();
        assert_eq!(first.len(), 8000);
        for other in [b, c, d, e, f, g, h, i, j] {
            assert!(Arc::ptr_eq(&first, &other.unwrap()));
        }
        assert_eq!(server.hits("/tone.wav"), 1);
        // Later requests are cache hits.
        assert!(Arc::ptr_eq(&first, &files.get(&url).await.unwrap()));
        assert_eq!(server.hits("/tone.wav"), 1);
        assert_eq!(files.cached_samples(), 8000);
    }

    #[tokio::test]
    async fn errors_say_what_went_wrong_and_are_not_cached() {
        let files_map = HashMap::from([
            ("/tone.wav", tone_file(1)),
            ("/page.html", b"<html>hello</html>".to_vec()),
            ("/long.wav", tone_file(3)),
        ]);
        let server = Server::start(files_map, open_gate()).await;
        let files = MediaFiles::new(MediaFilesOptions {
            max_bytes: 70_000,
            max_seconds: 2,
            ..MediaFilesOptions::default()
        })
        .unwrap();
        let missing = server.url("/missing");
        for _ in 0..2 {
            assert_eq!(
                files.get(&missing).await,
                Err(MediaFileError::Status {
                    url: missing.clone(),
                    status: 404
                })
            );
        }
        assert_eq!(server.hits("/missing"), 2, "failures are fetched again");
        let page = server.url("/page.html");
        let err = files.get(&page).await.unwrap_err();
        assert!(matches!(err, MediaFileError::NotAudio { .. }), "{err}");
        assert!(err.to_string().contains("is not audio"), "{err}");
        // 3 s at 16 kHz is 96 kB: over the byte limit.
        let long = server.url("/long.wav");
        assert_eq!(
            files.get(&long).await,
            Err(MediaFileError::TooLarge {
                source_name: long,
                limit: 70_000
            })
        );
        assert_eq!(files.cached_samples(), 0);
        // Nobody listening: a connect error, with the URL.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/x.wav", closed.local_addr().unwrap());
        drop(closed);
        let err = files.get(&url).await.unwrap_err();
        assert!(matches!(err, MediaFileError::Fetch { .. }), "{err}");
    }

    #[tokio::test]
    async fn too_long_once_decoded() {
        let dir = std::env::temp_dir().join(format!("dialplane-long-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("long.wav");
        std::fs::write(&path, wav::encode_pcm16(8000, &vec![0; 8000 * 3])).unwrap();
        let files = MediaFiles::new(MediaFilesOptions {
            max_seconds: 2,
            ..MediaFilesOptions::default()
        })
        .unwrap();
        let source = path.to_str().unwrap();
        let err = files.get(source).await.unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            err,
            MediaFileError::TooLong {
                source_name: source.into(),
                limit_s: 2
            }
        );
    }

    #[tokio::test]
    async fn paths_and_file_urls() {
        let dir = std::env::temp_dir().join(format!("dialplane-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tone.wav");
        std::fs::write(&path, tone_file(1)).unwrap();
        let files = MediaFiles::new(MediaFilesOptions::default()).unwrap();
        let by_path = files.get(path.to_str().unwrap()).await.unwrap();
        let by_url = files
            .get(&format!("file://{}", path.display()))
            .await
            .unwrap();
        assert_eq!(by_path.len(), 8000);
        assert_eq!(by_path, by_url);
        let missing = dir.join("missing.wav");
        let err = files.get(missing.to_str().unwrap()).await.unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(matches!(err, MediaFileError::Read { .. }), "{err}");
        assert!(err.to_string().contains("missing.wav"), "{err}");
    }

    #[tokio::test]
    async fn least_recently_used_leaves_first() {
        let server = Server::start(
            HashMap::from([
                ("/a", tone_file(1)),
                ("/b", tone_file(1)),
                ("/c", tone_file(1)),
            ]),
            open_gate(),
        )
        .await;
        // Room for two one-second files.
        let files = MediaFiles::new(MediaFilesOptions {
            cache_samples: 16000,
            ..MediaFilesOptions::default()
        })
        .unwrap();
        for path in ["/a", "/b", "/a", "/c"] {
            files.get(&server.url(path)).await.unwrap();
        }
        assert_eq!(files.cached_samples(), 16000);
        // b was the least recently used when c came: it went, a stayed.
        files.get(&server.url("/a")).await.unwrap();
        assert_eq!(server.hits("/a"), 1);
        files.get(&server.url("/b")).await.unwrap();
        assert_eq!(server.hits("/b"), 2);
        // A file larger than the whole cache is returned but not kept.
        let small = MediaFiles::new(MediaFilesOptions {
            cache_samples: 100,
            ..MediaFilesOptions::default()
        })
        .unwrap();
        assert_eq!(small.get(&server.url("/c")).await.unwrap().len(), 8000);
        assert_eq!(small.cached_samples(), 0);
    }

    #[test]
    fn speech_answers_decode_by_their_content_type() {
        // Raw L16 is big-endian at the rate its type names; WAV and MP3 go by their bytes.
        let s = sine_i16(16000, 500.0, 16000);
        let be: Vec<u8> = s.iter().flat_map(|v| v.to_be_bytes()).collect();
        let out = decode_speech(be.clone(), Some("audio/l16; rate=16000"), 8000).unwrap();
        assert!((out.len() as i64 - 8000).abs() <= 1, "{}", out.len());
        let f: Vec<f32> = out.iter().map(|&v| f32::from(v) / 32768.0).collect();
        assert!((frequency(&f) - 500.0).abs() < 5.0, "{}", frequency(&f));
        assert!(matches!(
            decode_speech(be, Some("audio/l16;rate=16000"), 4000),
            Err(DecodeError::TooLong(4000))
        ));
        let wav = wav::encode_pcm16(8000, &sine_i16(8000, 1000.0, 800));
        assert_eq!(
            decode_speech(wav, Some("audio/wav"), 800).unwrap().len(),
            800
        );
        assert!(decode_speech(Vec::new(), Some("audio/l16"), 800).is_err());
    }

    #[test]
    fn say_needs_a_synthesizer_and_names_its_request() {
        let none = MediaFiles::new(MediaFilesOptions::default()).unwrap();
        assert_eq!(none.say_source("hi", None, None), None);
        let files = MediaFiles::new(MediaFilesOptions {
            synthesizer: Some(Synthesizer {
                url: "http://127.0.0.1:1/tts".into(),
                api_key: None,
                language: "en-GB".into(),
                voice: "v1".into(),
            }),
            ..MediaFilesOptions::default()
        })
        .unwrap();
        let text = files.say_source("hi", None, None).unwrap();
        let ssml = files
            .say_source(" <speak>hi</speak>", Some("de-DE"), Some("v2"))
            .unwrap();
        let body = |s: &str| -> serde_json::Value {
            serde_json::from_str(s.strip_prefix(SAY).unwrap()).unwrap()
        };
        assert_eq!(
            body(&text),
            serde_json::json!({"language": "en-GB", "voice": "v1", "type": "text", "text": "hi"})
        );
        assert_eq!(body(&ssml)["type"], "ssml");
        assert_eq!(body(&ssml)["language"], "de-DE");
        // Never taken for a path or URL.
        assert!(text.starts_with('\0'));
    }
}
