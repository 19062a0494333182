//! The verb JSON of control apps (jambonz's format), parsed strictly into typed verbs
//!
//! A control app answers a webhook with a JSON array of verbs, each either
//! `{"verb": "dial", ...attributes}` or `{"dial": {...attributes}}` (both are jambonz's). The JSON
//! must be strict (no trailing commas); attributes the spec does not list are refused with their
//! name, and every error names where it is: `verb 0 (dial): target 2: unknown type "fax"`.
//! Verbs this build does not execute are kept as [`Verb::Unsupported`] so the app runner can log
//! and skip them.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::message::Uri;

/// At most this many targets per dial, counted after removing duplicates.
pub const MAX_TARGETS: usize = 10;

/// Why a verb list was refused
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerbError {
    /// The text is not strict JSON.
    #[error("app is not valid JSON: {0}")]
    Json(String),
    /// The JSON is not an array of verb objects.
    #[error("app must be a JSON array of verbs, got {0}")]
    NotArray(&'static str),
    /// One verb is malformed; `name` is the verb's name when it has one.
    #[error("verb {index}{}: {message}", name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default())]
    Verb {
        /// Position in the array, from 0.
        index: usize,
        /// The verb's name, when it has one.
        name: Option<String>,
        /// What is wrong, starting with the attribute path.
        message: String,
    },
}

/// One verb of a control app
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Verb {
    /// `dial`: ring targets, bridge the first to answer.
    Dial(Box<Dial>),
    /// `hangup`: end the call.
    Hangup(Hangup),
    /// `pause`: wait.
    Pause(Pause),
    /// `answer`: answer the call.
    Answer(Answer),
    /// `sip:decline`: refuse the call with a final status.
    SipDecline(SipDecline),
    /// `gather` of DTMF keys (run by confirmHook screening apps).
    Gather(Box<Gather>),
    /// `play` of an audio file (run by confirmHook screening apps).
    Play(Play),
    /// A verb this build does not execute, kept for a log line.
    Unsupported {
        /// Its name, e.g. `say`.
        name: String,
        /// Its attributes as received.
        json: Value,
    },
}

impl Verb {
    /// The verb's name as jambonz spells it.
    pub fn name(&self) -> &str {
        match self {
            Verb::Dial(_) => "dial",
            Verb::Hangup(_) => "hangup",
            Verb::Pause(_) => "pause",
            Verb::Answer(_) => "answer",
            Verb::SipDecline(_) => "sip:decline",
            Verb::Gather(_) => "gather",
            Verb::Play(_) => "play",
            Verb::Unsupported { name, .. } => name,
        }
    }

    /// Every hook of the verb with its attribute path, e.g. `("target 1: confirmHook", hook)`.
    pub fn hooks(&self) -> Vec<(String, &Hook)> {
        let Verb::Dial(d) = self else {
            return Vec::new();
        };
        let mut out: Vec<(String, &Hook)> = [
            ("actionHook", d.action_hook.as_ref()),
            ("confirmHook", d.confirm_hook.as_ref()),
            ("dtmfHook", d.dtmf_hook.as_ref()),
            ("referHook", d.refer_hook.as_ref()),
            ("amd.actionHook", d.amd.as_ref().map(|a| &a.action_hook)),
            (
                "listen.actionHook",
                d.listen.as_ref().and_then(|l| l.action_hook.as_ref()),
            ),
        ]
        .into_iter()
        .filter_map(|(path, hook)| hook.map(|h| (path.to_string(), h)))
        .collect();
        for (i, t) in d.target.iter().enumerate() {
            if let Some(h) = &t.confirm_hook {
                out.push((format!("target {i}: confirmHook"), h));
            }
        }
        out
    }
}

/// Parses a verb list from JSON text
pub fn parse_app(text: &str) -> Result<Vec<Verb>, VerbError> {
    let value: Value = serde_json::from_str(text).map_err(|e| VerbError::Json(e.to_string()))?;
    parse_app_value(value)
}

/// Parses a verb list from an already parsed JSON value
pub fn parse_app_value(value: Value) -> Result<Vec<Verb>, VerbError> {
    let Value::Array(items) = value else {
        return Err(VerbError::NotArray(json_type(&value)));
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| parse_verb(index, item))
        .collect()
}

/// Parses a verb list, leaving out the verbs that are malformed: the verbs, and why each one
/// left out was (for a screening app, where one bad verb should not decline the callee)
pub fn parse_app_skipping(text: &str) -> Result<(Vec<Verb>, Vec<VerbError>), VerbError> {
    let value: Value = serde_json::from_str(text).map_err(|e| VerbError::Json(e.to_string()))?;
    let Value::Array(items) = value else {
        return Err(VerbError::NotArray(json_type(&value)));
    };
    let (mut verbs, mut skipped) = (Vec::new(), Vec::new());
    for (index, item) in items.into_iter().enumerate() {
        match parse_verb(index, item) {
            Ok(v) => verbs.push(v),
            Err(e) => skipped.push(e),
        }
    }
    Ok((verbs, skipped))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn parse_verb(index: usize, item: Value) -> Result<Verb, VerbError> {
    let err = |name: Option<&str>, message: String| VerbError::Verb {
        index,
        name: name.map(str::to_string),
        message,
    };
    let Value::Object(mut obj) = item else {
        return Err(err(
            None,
            format!("must be an object, got {}", json_type(&item)),
        ));
    };
    let (name, attrs) = match obj.remove("verb") {
        Some(Value::String(name)) => (name, obj),
        Some(other) => {
            return Err(err(
                None,
                format!("verb: must be a string, got {}", json_type(&other)),
            ));
        }
        None if obj.len() == 1 => {
            let (name, attrs) = obj.into_iter().next().expect("one entry");
            match attrs {
                Value::Object(attrs) => (name, attrs),
                other => {
                    return Err(err(
                        Some(&name),
                        format!("attributes must be an object, got {}", json_type(&other)),
                    ));
                }
            }
        }
        None => return Err(err(None, "missing \"verb\"".into())),
    };
    let attrs = Value::Object(attrs);
    let verb = match name.as_str() {
        "dial" => decode::<Dial>(attrs)
            .and_then(Dial::checked)
            .map(|d| Verb::Dial(Box::new(d))),
        "hangup" => decode(attrs).map(Verb::Hangup),
        "pause" => decode(attrs).map(Verb::Pause),
        "answer" => decode(attrs).map(Verb::Answer),
        "sip:decline" => decode::<SipDecline>(attrs)
            .and_then(SipDecline::checked)
            .map(Verb::SipDecline),
        "play" => decode(attrs).map(Verb::Play),
        "gather" => decode::<Gather>(attrs)
            .and_then(Gather::checked)
            .map(|g| Verb::Gather(Box::new(g))),
        "" => Err("verb: must not be empty".to_string()),
        _ => Ok(Verb::Unsupported {
            name: name.clone(),
            json: attrs,
        }),
    };
    verb.map_err(|m| err(Some(&name), m))
}

/// Deserializes `value`, prefixing any error with the attribute path where it happened
fn decode<T: de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut segments: Vec<_> = e.path().iter().cloned().collect();
        let inner = e.into_inner().to_string();
        // The path of an unknown field ends with that field, which the message names already.
        if let Some(serde_path_to_error::Segment::Map { key }) = segments.last()
            && inner.starts_with(&format!("unknown field `{key}`"))
        {
            segments.pop();
        }
        let path = readable_path(&segments);
        if path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// `target[2].auth` as `target 2.auth`, the way people count attributes in a message
fn readable_path(segments: &[serde_path_to_error::Segment]) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in segments {
        match seg {
            // A list decoded on its own (dub, dtmfCapture) starts with its index.
            Segment::Seq { index } if out.is_empty() => out.push_str(&format!("item {index}")),
            Segment::Seq { index } => out.push_str(&format!(" {index}")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

/// Deserializes through [`decode`] inside a custom `Deserialize`, keeping the inner path
fn decode_nested<'de, D: Deserializer<'de>, T: de::DeserializeOwned>(
    value: Value,
) -> Result<T, D::Error> {
    decode(value).map_err(de::Error::custom)
}

/// HTTP method of a hook
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum HookMethod {
    /// JSON body (the default).
    #[default]
    #[serde(rename = "POST")]
    Post,
    /// Flat fields as query arguments.
    #[serde(rename = "GET")]
    Get,
}

impl<'de> Deserialize<'de> for HookMethod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(HookMethod::Post),
            "GET" => Ok(HookMethod::Get),
            _ => Err(de::Error::custom(format!(
                "unknown method {s:?}, expected \"GET\" or \"POST\""
            ))),
        }
    }
}

/// `{username, password}`: basic auth of a hook, or digest credentials of a SIP target
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A webhook: a URL string, or `{url, method, username, password}`
///
/// The URL may be relative (`/action`); the webhook client resolves it against the call
/// webhook's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// Absolute or relative URL, possibly with a `#rc=..&rp=..` retry fragment.
    pub url: String,
    /// GET or POST (default).
    pub method: HookMethod,
    /// HTTP basic auth, when both username and password were given.
    pub auth: Option<Credentials>,
}

impl Hook {
    /// A POST hook without auth.
    pub fn post(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            method: HookMethod::Post,
            auth: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookObject {
    url: String,
    #[serde(default)]
    method: HookMethod,
    username: Option<String>,
    password: Option<String>,
}

impl<'de> Deserialize<'de> for Hook {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let hook = match Value::deserialize(d)? {
            Value::String(url) => Hook::post(url),
            obj @ Value::Object(_) => {
                let h: HookObject = decode_nested::<D, _>(obj)?;
                let auth = match (h.username, h.password) {
                    (Some(username), Some(password)) => Some(Credentials { username, password }),
                    (None, None) => None,
                    _ => {
                        return Err(de::Error::custom(
                            "username and password must be given together",
                        ));
                    }
                };
                Hook {
                    url: h.url,
                    method: h.method,
                    auth,
                }
            }
            other => {
                return Err(de::Error::custom(format!(
                    "a hook is a URL string or {{url, method, username, password}}, got {}",
                    json_type(&other)
                )));
            }
        };
        let url = hook.url.as_str();
        if url.is_empty() || url.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(de::Error::custom(format!("bad hook url {url:?}")));
        }
        // Relative URLs are resolved later, against the call webhook.
        if let Ok(absolute) = url::Url::parse(url)
            && !matches!(absolute.scheme(), "http" | "https")
        {
            return Err(de::Error::custom(format!(
                "hook url {url:?}: only http and https hooks are supported"
            )));
        }
        Ok(hook)
    }
}

/// SIP headers to add to a request, validated so a value cannot inject another header
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipHeaders(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for SipHeaders {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(d)?;
        let mut out = BTreeMap::new();
        for (name, value) in map {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(de::Error::custom(format!("bad header name {name:?}")));
            }
            let value = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(de::Error::custom(format!(
                        "{name}: header value must be a string, got {}",
                        json_type(&other)
                    )));
                }
            };
            if value.chars().any(|c| c.is_control() && c != '\t') {
                return Err(de::Error::custom(format!(
                    "{name}: header value must not contain control characters"
                )));
            }
            out.insert(name, value);
        }
        Ok(SipHeaders(out))
    }
}

/// RFC 3261 `token` characters
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// `dtmfCapture`: the sequences that trigger the dtmfHook, per leg
///
/// A plain list applies to both legs (as in jambonz); `{parentCall, childCall}` sets each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DtmfCapture {
    /// Sequences listened for on the caller's leg.
    pub parent_call: Vec<String>,
    /// Sequences listened for on the dialled leg.
    pub child_call: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DtmfCaptureObject {
    #[serde(default)]
    parent_call: Vec<String>,
    #[serde(default)]
    child_call: Vec<String>,
}

impl<'de> Deserialize<'de> for DtmfCapture {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let capture = match Value::deserialize(d)? {
            list @ Value::Array(_) => {
                let both: Vec<String> = decode_nested::<D, _>(list)?;
                DtmfCapture {
                    parent_call: both.clone(),
                    child_call: both,
                }
            }
            obj @ Value::Object(_) => {
                let o: DtmfCaptureObject = decode_nested::<D, _>(obj)?;
                DtmfCapture {
                    parent_call: o.parent_call,
                    child_call: o.child_call,
                }
            }
            other => {
                return Err(de::Error::custom(format!(
                    "expected a list of digit strings or {{parentCall, childCall}}, got {}",
                    json_type(&other)
                )));
            }
        };
        let all = capture.parent_call.iter().chain(&capture.child_call);
        for seq in all {
            if seq.is_empty() || !seq.bytes().all(|b| b"0123456789*#ABCDabcd".contains(&b)) {
                return Err(de::Error::custom(format!(
                    "{seq:?} is not a DTMF sequence (0-9, *, #, A-D)"
                )));
            }
        }
        Ok(capture)
    }
}

/// `amd.timers` (jambonz's names; absent ones take the `[amd]` config defaults)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AmdTimersOverride {
    /// No speech at all for this long: `silence`.
    pub no_speech_timeout_ms: Option<u32>,
    /// No decision by then: give up.
    pub decision_timeout_ms: Option<u32>,
    /// How long to listen for a beep.
    pub tone_timeout_ms: Option<u32>,
    /// Silence that ends a machine greeting.
    pub greeting_completion_timeout_ms: Option<u32>,
}

/// `amd`: answering-machine detection on the dialled leg
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Amd {
    /// Receives the amd, beep and silence events.
    pub action_hook: Hook,
    /// Words in the greeting that make a machine.
    pub threshold_word_count: Option<u32>,
    /// Digits spoken that make a machine.
    pub digit_count: Option<u32>,
    /// Timer overrides.
    pub timers: Option<AmdTimersOverride>,
    /// Speech recognizer options (vendor specific, passed on as given).
    pub recognizer: Option<Map<String, Value>>,
    /// jambonz accepts and ignores this one (it is in the spec's example).
    #[serde(rename = "disconnectOnAMD")]
    pub disconnect_on_amd: Option<bool>,
}

/// `listen.mixType`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MixType {
    /// Both legs mixed into one channel.
    Mono,
    /// One channel per leg.
    Stereo,
    /// Mixed (jambonz's third value).
    Mixed,
}

/// `listen.bidirectionalAudio`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BidirectionalAudio {
    /// Audio from the websocket is played into the call.
    pub enabled: Option<bool>,
    /// Streamed (rather than whole-file) audio.
    pub streaming: Option<bool>,
    /// Sample rate of the returned audio.
    pub sample_rate: Option<u32>,
}

/// `listen`: stream the call's audio to a websocket
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Listen {
    /// The `ws://` or `wss://` URL.
    pub url: String,
    /// Called when the stream ends.
    pub action_hook: Option<Hook>,
    /// Basic auth for the websocket.
    pub auth: Option<Credentials>,
    /// Alternative name of `auth`.
    pub ws_auth: Option<Credentials>,
    /// A DTMF key that ends the stream.
    pub finish_on_key: Option<String>,
    /// Maximum length in seconds.
    pub max_length: Option<u32>,
    /// Sent in the first websocket message.
    pub metadata: Option<Map<String, Value>>,
    /// How legs are mixed.
    pub mix_type: Option<MixType>,
    /// DTMF passed as websocket messages.
    pub pass_dtmf: Option<bool>,
    /// Beep when the stream starts.
    pub play_beep: Option<bool>,
    /// No audio back from the websocket.
    pub disable_bidirectional_audio: Option<bool>,
    /// Audio back from the websocket.
    pub bidirectional_audio: Option<BidirectionalAudio>,
    /// Sample rate of the streamed audio.
    pub sample_rate: Option<u32>,
    /// Silence timeout in seconds.
    pub timeout: Option<u32>,
    /// Transcription of the same audio.
    pub transcribe: Option<Transcribe>,
    /// Stream before answer.
    pub early_media: Option<bool>,
    /// Which channel to stream.
    pub channel: Option<u32>,
}

/// `transcribe`: transcribe the call
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Transcribe {
    /// Receives transcripts.
    pub transcription_hook: Option<String>,
    /// Receives translations.
    pub translation_hook: Option<String>,
    /// Speech recognizer options (vendor specific, passed on as given).
    pub recognizer: Option<Map<String, Value>>,
    /// Transcribe before answer.
    pub early_media: Option<bool>,
    /// Which channel to transcribe.
    pub channel: Option<u32>,
}

/// `dub.action`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DubAction {
    /// Create a track.
    AddTrack,
    /// Remove a track.
    RemoveTrack,
    /// Silence a track.
    SilenceTrack,
    /// Play audio on a track.
    PlayOnTrack,
    /// Speak text on a track.
    SayOnTrack,
}

/// `dub.gain`: decibels, as a number or a string such as `"-6 dB"`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Gain {
    /// A number of dB.
    Db(f64),
    /// A string as given.
    Text(String),
}

/// `dub`: an extra audio track mixed into the dialled leg
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dub {
    /// What to do.
    pub action: DubAction,
    /// The track's name.
    pub track: String,
    /// URL of audio to play.
    pub play: Option<String>,
    /// Text (or a say object) to speak.
    pub say: Option<Value>,
    /// Repeat the audio.
    #[serde(rename = "loop")]
    pub loop_: Option<bool>,
    /// Track gain.
    pub gain: Option<Gain>,
}

/// `dub` is one nested verb in the spec, a list in jambonz's schema: both are accepted
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Dub>, D::Error> {
    match Value::deserialize(d)? {
        list @ Value::Array(_) => decode_nested::<D, _>(list),
        obj @ Value::Object(_) => Ok(vec![decode_nested::<D, _>(obj)?]),
        other => Err(de::Error::custom(format!(
            "expected a dub object or a list of them, got {}",
            json_type(&other)
        ))),
    }
}

/// One destination of a dial
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Where to ring, by type.
    pub kind: TargetKind,
    /// Overrides the dial's confirmHook for this target.
    pub confirm_hook: Option<Hook>,
    /// Headers for this target's INVITE; they override the dial's `headers`.
    pub headers: SipHeaders,
}

/// The typed part of a [`Target`]
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// A telephone number through a carrier.
    Phone {
        /// E.164 number.
        number: String,
        /// The carrier's name; none: the first carrier with a gateway.
        trunk: Option<String>,
    },
    /// A SIP URI.
    Sip {
        /// `sip:` or `sips:` URI.
        sip_uri: String,
        /// Digest credentials answered on 401/407.
        auth: Option<Credentials>,
    },
    /// A user registered with us.
    User {
        /// `user@domain`.
        name: String,
    },
    /// A Microsoft Teams user.
    Teams {
        /// The number mapped to the Teams user.
        number: String,
        /// The customer's tenant domain.
        tenant: Option<String>,
        /// Ring straight into the user's voicemail.
        voicemail: bool,
    },
}

impl TargetKind {
    /// The destination as a string, for de-duplication and logs.
    fn destination(&self) -> String {
        match self {
            TargetKind::Phone { number, trunk } => {
                format!("phone:{number}@{}", trunk.as_deref().unwrap_or(""))
            }
            TargetKind::Sip { sip_uri, .. } => format!("sip:{sip_uri}"),
            TargetKind::User { name } => format!("user:{}", name.to_ascii_lowercase()),
            TargetKind::Teams {
                number,
                tenant,
                voicemail,
            } => format!(
                "teams:{number}@{}{}",
                tenant.as_deref().unwrap_or(""),
                if *voicemail { ";vm" } else { "" }
            ),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PhoneTarget {
    number: String,
    trunk: Option<String>,
    confirm_hook: Option<Hook>,
    #[serde(default)]
    headers: SipHeaders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SipTarget {
    sip_uri: String,
    auth: Option<Credentials>,
    confirm_hook: Option<Hook>,
    #[serde(default)]
    headers: SipHeaders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UserTarget {
    name: String,
    confirm_hook: Option<Hook>,
    #[serde(default)]
    headers: SipHeaders,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TeamsTarget {
    number: String,
    tenant: Option<String>,
    /// The spec says `voicemail`; jambonz's schema says `vmail`.
    #[serde(default, alias = "voicemail")]
    vmail: bool,
    confirm_hook: Option<Hook>,
    #[serde(default)]
    headers: SipHeaders,
}

fn is_phone_number(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    (1..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Value::Object(mut obj) = Value::deserialize(d)? else {
            return Err(de::Error::custom("a target must be an object"));
        };
        let kind = match obj.remove("type") {
            Some(Value::String(kind)) => kind,
            Some(_) => return Err(de::Error::custom("type must be a string")),
            None => return Err(de::Error::custom("missing type")),
        };
        let rest = Value::Object(obj);
        let bad = |m: String| de::Error::custom(m);
        let (kind, confirm_hook, headers) = match kind.as_str() {
            "phone" => {
                let t: PhoneTarget = decode_nested::<D, _>(rest)?;
                if !is_phone_number(&t.number) {
                    return Err(bad(format!("number {:?} is not a phone number", t.number)));
                }
                let kind = TargetKind::Phone {
                    number: t.number,
                    trunk: t.trunk,
                };
                (kind, t.confirm_hook, t.headers)
            }
            "sip" => {
                let t: SipTarget = decode_nested::<D, _>(rest)?;
                if !matches!(Uri::parse(&t.sip_uri), Ok(u) if u.as_sip().is_some()) {
                    return Err(bad(format!("sipUri {:?} is not a sip: URI", t.sip_uri)));
                }
                let kind = TargetKind::Sip {
                    sip_uri: t.sip_uri,
                    auth: t.auth,
                };
                (kind, t.confirm_hook, t.headers)
            }
            "user" => {
                let t: UserTarget = decode_nested::<D, _>(rest)?;
                if t.name.is_empty()
                    || t.name
                        .contains(|c: char| c.is_whitespace() || c.is_control())
                {
                    return Err(bad(format!("name {:?} is not a user name", t.name)));
                }
                (TargetKind::User { name: t.name }, t.confirm_hook, t.headers)
            }
            "teams" => {
                let t: TeamsTarget = decode_nested::<D, _>(rest)?;
                if !is_phone_number(&t.number) {
                    return Err(bad(format!("number {:?} is not a phone number", t.number)));
                }
                let kind = TargetKind::Teams {
                    number: t.number,
                    tenant: t.tenant,
                    voicemail: t.vmail,
                };
                (kind, t.confirm_hook, t.headers)
            }
            other => {
                return Err(bad(format!(
                    "unknown type {other:?}, expected \"phone\", \"sip\", \"user\" or \"teams\""
                )));
            }
        };
        Ok(Target {
            kind,
            confirm_hook,
            headers,
        })
    }
}

/// `dial`: ring every target at once, bridge the first to answer
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dial {
    /// jambonz's verb id, echoed in events.
    pub id: Option<String>,
    /// Called when the dial ends; a non-empty answer replaces the rest of the app.
    pub action_hook: Option<Hook>,
    /// Answering-machine detection on the dialled leg.
    pub amd: Option<Amd>,
    /// true: the caller rings until the callee answers; false: answered before the outdial.
    #[serde(default)]
    pub answer_on_bridge: bool,
    /// From user of the outbound legs.
    pub caller_id: Option<String>,
    /// App run on the callee's leg after answer, before the bridge.
    pub confirm_hook: Option<Hook>,
    /// Audio played to the caller while the targets ring.
    pub dial_music: Option<String>,
    /// DTMF sequences reported to the dtmfHook.
    pub dtmf_capture: Option<DtmfCapture>,
    /// Receives dtmfCapture matches.
    pub dtmf_hook: Option<Hook>,
    /// Extra audio tracks on the dialled leg.
    #[serde(default, deserialize_with = "one_or_many")]
    pub dub: Vec<Dub>,
    /// Headers on every outbound INVITE.
    #[serde(default)]
    pub headers: SipHeaders,
    /// Stream the call's audio to a websocket.
    pub listen: Option<Listen>,
    /// Called on a REFER from either leg.
    pub refer_hook: Option<Hook>,
    /// The destinations, de-duplicated, at most [`MAX_TARGETS`].
    pub target: Vec<Target>,
    /// Maximum call length from the bridge, in seconds.
    pub time_limit: Option<u32>,
    /// Ring-no-answer timeout in seconds.
    #[serde(default = "default_timeout")]
    pub timeout: u32,
    /// Transcribe the call.
    pub transcribe: Option<Transcribe>,
}

fn default_timeout() -> u32 {
    60
}

impl Dial {
    /// The headers for one target's INVITE: the dial's, with the target's own replacing any of
    /// the same name (names compare case-insensitively)
    pub fn headers_for(&self, target: &Target) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .headers
            .0
            .iter()
            .filter(|(name, _)| {
                !target
                    .headers
                    .0
                    .keys()
                    .any(|own| own.eq_ignore_ascii_case(name))
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        out.extend(target.headers.0.iter().map(|(n, v)| (n.clone(), v.clone())));
        out
    }

    /// Removes duplicate targets (the first stays) and checks the limits
    fn checked(mut self) -> Result<Self, String> {
        let mut seen = std::collections::HashSet::new();
        self.target.retain(|t| seen.insert(t.kind.destination()));
        if self.target.is_empty() {
            return Err("target: must name at least one destination".into());
        }
        if self.target.len() > MAX_TARGETS {
            return Err(format!(
                "target: at most {MAX_TARGETS} targets, got {} after removing duplicates",
                self.target.len()
            ));
        }
        if self.timeout == 0 {
            return Err("timeout: must be at least 1 second".into());
        }
        if self.time_limit == Some(0) {
            return Err("timeLimit: must be at least 1 second".into());
        }
        if let Some(c) = &self.caller_id
            && (c.is_empty() || c.contains(|ch: char| ch.is_whitespace() || ch.is_control()))
        {
            return Err(format!("callerId: {c:?} is not a caller id"));
        }
        Ok(self)
    }
}

/// `hangup`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hangup {
    /// jambonz's verb id.
    pub id: Option<String>,
    /// Headers on the BYE.
    #[serde(default)]
    pub headers: SipHeaders,
}

/// `pause`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pause {
    /// jambonz's verb id.
    pub id: Option<String>,
    /// Seconds to wait.
    pub length: u32,
}

/// `play`: WAV or MP3 files by http(s) URL or path, in order, `loop` times
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Play {
    /// jambonz's verb id.
    pub id: Option<String>,
    /// Where the files are: one URL, or a list played one after the other.
    #[serde(deserialize_with = "urls")]
    pub url: Vec<String>,
    /// Times the list is played; 0 (or `"forever"`) until the app moves on.
    #[serde(
        rename = "loop",
        default = "Play::once",
        deserialize_with = "loop_count"
    )]
    pub loop_count: u32,
    /// Accepted and ignored: a screening app plays to an answered callee.
    #[serde(default)]
    pub early_media: bool,
}

impl Play {
    fn once() -> u32 {
        1
    }
}

/// `play.url`: a string or a non-empty list of them
fn urls<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(vec![s]),
        list @ Value::Array(_) => {
            let urls: Vec<String> = decode_nested::<D, _>(list)?;
            if urls.is_empty() {
                return Err(de::Error::custom("must not be an empty list"));
            }
            Ok(urls)
        }
        other => Err(de::Error::custom(format!(
            "expected a URL or a list of them, got {}",
            json_type(&other)
        ))),
    }
}

/// `play.loop`: a count, or `"forever"` (0)
fn loop_count<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) if s == "forever" => Ok(0),
        Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| de::Error::custom(format!("{n} is not a count"))),
        other => Err(de::Error::custom(format!(
            "expected a count or \"forever\", got {other}"
        ))),
    }
}

/// `gather` of DTMF keys: until `numDigits` keys, `finishOnKey`, or `timeout` seconds without
/// a key
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Gather {
    /// jambonz's verb id.
    pub id: Option<String>,
    /// What to listen for: only `digits` is gathered by this build.
    #[serde(default)]
    pub input: Vec<String>,
    /// Gets `{digits, reason}` with the leg's call info; its verbs continue the app.
    pub action_hook: Option<Hook>,
    /// Keys that complete the input.
    pub num_digits: Option<u32>,
    /// A key that ends the input (not part of it).
    pub finish_on_key: Option<String>,
    /// Seconds to wait for the first key (after the prompt) and between keys.
    #[serde(default = "Gather::default_timeout")]
    pub timeout: u32,
    /// A prompt played while the keys are collected.
    pub play: Option<Play>,
    /// A spoken prompt (needs a speech synthesizer).
    pub say: Option<Value>,
}

impl Gather {
    fn default_timeout() -> u32 {
        5
    }

    fn checked(self) -> Result<Self, String> {
        if let Some(i) = self.input.iter().find(|i| *i != "digits" && *i != "speech") {
            return Err(format!("input: {i:?} is neither \"digits\" nor \"speech\""));
        }
        if let Some(k) = &self.finish_on_key
            && (k.chars().count() != 1 || !k.chars().all(|c| "0123456789*#ABCDabcd".contains(c)))
        {
            return Err(format!("finishOnKey: {k:?} is not one DTMF key"));
        }
        if self.num_digits == Some(0) {
            return Err("numDigits: must be at least 1".into());
        }
        Ok(self)
    }
}

/// `answer`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// jambonz's verb id.
    pub id: Option<String>,
}

/// `sip:decline`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipDecline {
    /// jambonz's verb id.
    pub id: Option<String>,
    /// Final status, 400-699.
    pub status: u16,
    /// Reason phrase; none: the standard phrase.
    pub reason: Option<String>,
    /// Headers on the response.
    #[serde(default)]
    pub headers: SipHeaders,
}

impl SipDecline {
    fn checked(self) -> Result<Self, String> {
        if !(400..=699).contains(&self.status) {
            return Err(format!(
                "status: {} is not a final error status (400-699)",
                self.status
            ));
        }
        if let Some(r) = &self.reason
            && r.chars().any(|c| c.is_control())
        {
            return Err("reason: must not contain control characters".into());
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's first example with its typos fixed (trailing comma after disconnectOnAMD,
    /// missing comma after the amd object).
    const SPEC_EXAMPLE: &str = include_str!("../tests/verbs-examples/spec-example.json");
    /// Every attribute of dial (the npm test checks it with jambonz's schema too).
    const EVERY_ATTRIBUTE: &str = include_str!("../tests/verbs-examples/every-attribute.json");
    /// answer, pause, an unsupported verb, sip:decline, hangup.
    const OTHER_VERBS: &str = include_str!("../tests/verbs-examples/other-verbs.json");

    fn dial(json: &str) -> Dial {
        match parse_app(json).unwrap().remove(0) {
            Verb::Dial(d) => *d,
            other => panic!("not a dial: {other:?}"),
        }
    }

    fn err(json: &str) -> String {
        parse_app(json).unwrap_err().to_string()
    }

    #[test]
    fn spec_example_parses_into_typed_fields() {
        let d = dial(SPEC_EXAMPLE);
        assert_eq!(d.action_hook, Some(Hook::post("/outdial")));
        assert_eq!(d.caller_id.as_deref(), Some("+16173331212"));
        assert!(d.answer_on_bridge);
        assert_eq!(d.timeout, 60);
        assert_eq!(
            d.dtmf_capture,
            Some(DtmfCapture {
                parent_call: vec!["*2".into(), "*3".into()],
                child_call: vec!["*2".into(), "*3".into()],
            })
        );
        let hook = d.dtmf_hook.as_ref().unwrap();
        assert_eq!((hook.url.as_str(), hook.method), ("/dtmf", HookMethod::Get));
        assert_eq!(
            d.amd.as_ref().unwrap().action_hook.url,
            "/answeringMachineDetection"
        );
        assert_eq!(d.target.len(), 3);
        assert_eq!(
            d.target[0].kind,
            TargetKind::Phone {
                number: "+15083084809".into(),
                trunk: Some("Twilio".into())
            }
        );
        let TargetKind::Sip { sip_uri, auth } = &d.target[1].kind else {
            panic!()
        };
        assert_eq!(sip_uri, "sip:1617333456@sip.trunk1.com");
        assert_eq!(auth.as_ref().unwrap().username, "foo");
        assert_eq!(
            d.target[2].kind,
            TargetKind::User {
                name: "spike@sip.example.com".into()
            }
        );
    }

    #[test]
    fn spec_example_as_written_is_refused() {
        // The spec's text verbatim: a trailing comma, then a missing comma.
        let raw = r#"[{"verb": "dial", "amd": {"actionHook": "/a", "disconnectOnAMD": true,}
            "target": [{"type": "user", "name": "a@b"}]}]"#;
        let e = parse_app(raw).unwrap_err();
        assert!(matches!(e, VerbError::Json(_)), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn every_attribute_parses() {
        let d = dial(EVERY_ATTRIBUTE);
        let ah = d.action_hook.as_ref().unwrap();
        assert_eq!(ah.method, HookMethod::Post);
        assert_eq!(ah.auth.as_ref().unwrap().password, "p");
        assert_eq!(d.headers.0["X-Count"], "7");
        assert_eq!(d.timeout, 25);
        assert_eq!(d.time_limit, Some(3600));
        assert_eq!(d.dub.len(), 2);
        assert_eq!(d.dub[1].gain, Some(Gain::Text("-6 dB".into())));
        assert_eq!(d.listen.as_ref().unwrap().mix_type, Some(MixType::Stereo));
        assert_eq!(
            d.amd.as_ref().unwrap().timers.unwrap().no_speech_timeout_ms,
            Some(4000)
        );
        let capture = d.dtmf_capture.as_ref().unwrap();
        assert_eq!(
            (capture.parent_call.len(), capture.child_call.len()),
            (1, 2)
        );
        assert_eq!(d.target[0].headers.0["X-Leg"], "1");
        assert_eq!(
            d.target[0].confirm_hook.as_ref().unwrap().method,
            HookMethod::Get
        );
        assert!(matches!(
            d.target[1].kind,
            TargetKind::Teams {
                voicemail: true,
                ..
            }
        ));
        assert!(
            matches!(d.target[2].kind, TargetKind::Teams { voicemail: true, ref tenant, .. } if tenant.is_none())
        );
        let teams = dial(
            r#"[{"verb":"dial","target":[{"type":"teams","number":"+1555","voicemail":true}]}]"#,
        );
        assert!(
            matches!(
                teams.target[0].kind,
                TargetKind::Teams {
                    voicemail: true,
                    ..
                }
            ),
            "the spec's spelling `voicemail` is accepted beside jambonz's `vmail`"
        );
        let hooks: Vec<_> = Verb::Dial(Box::new(d))
            .hooks()
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(
            hooks,
            [
                "actionHook",
                "confirmHook",
                "dtmfHook",
                "referHook",
                "amd.actionHook",
                "listen.actionHook",
                "target 0: confirmHook"
            ]
        );
    }

    #[test]
    fn target_headers_override_the_dials() {
        let d = dial(
            r#"[{"verb":"dial","headers":{"X-A":"dial","X-B":"dial"},"target":[
                {"type":"user","name":"a@b","headers":{"x-b":"target","X-C":"target"}},
                {"type":"user","name":"c@d"}]}]"#,
        );
        let pairs = |v: Vec<(String, String)>| -> Vec<String> {
            v.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
        };
        assert_eq!(
            pairs(d.headers_for(&d.target[0])),
            ["X-A=dial", "X-C=target", "x-b=target"]
        );
        assert_eq!(pairs(d.headers_for(&d.target[1])), ["X-A=dial", "X-B=dial"]);
    }

    #[test]
    fn corrupted_apps_give_errors_not_panics() {
        // Every truncation and every single-byte corruption of the richest example.
        let text = EVERY_ATTRIBUTE.as_bytes();
        for cut in 0..text.len() {
            let _ = parse_app(&String::from_utf8_lossy(&text[..cut]));
        }
        for i in 0..text.len() {
            for b in [b'"', b'{', b']', b'0', b'-', b'x', b'\\', 0xff] {
                let mut t = text.to_vec();
                t[i] = b;
                let _ = parse_app(&String::from_utf8_lossy(&t));
            }
        }
    }

    #[test]
    fn other_verbs_and_unsupported_ones() {
        let app = parse_app(OTHER_VERBS).unwrap();
        let names: Vec<_> = app.iter().map(Verb::name).collect();
        assert_eq!(names, ["answer", "pause", "say", "sip:decline", "hangup"]);
        assert_eq!(
            app[1],
            Verb::Pause(Pause {
                id: None,
                length: 2
            })
        );
        assert!(matches!(&app[2], Verb::Unsupported { json, .. } if json["text"] == "hello"));
        assert!(matches!(&app[3], Verb::SipDecline(s) if s.status == 486));
        assert!(matches!(&app[4], Verb::Hangup(h) if h.headers.0["X-Reason"] == "done"));
        assert_eq!(parse_app("[]").unwrap(), vec![]);
    }

    #[test]
    fn duplicates_are_removed_and_the_limit_counts_after_that() {
        let t = |i: usize| format!(r#"{{"type": "sip", "sipUri": "sip:u{i}@example.com"}}"#);
        let app = |targets: &[String]| {
            format!(r#"[{{"verb": "dial", "target": [{}]}}]"#, targets.join(","))
        };
        // 9 URIs, 5 of them twice, and one user named twice (case differs): 10 targets.
        let mut targets: Vec<String> = (0..9).map(t).collect();
        targets.extend((0..5).map(t));
        targets.push(r#"{"type": "user", "name": "U0@example.com"}"#.into());
        targets.push(r#"{"type": "user", "name": "u0@example.com"}"#.into());
        let d = dial(&app(&targets));
        assert_eq!(d.target.len(), 10);
        assert_eq!(
            d.target[0].kind,
            TargetKind::Sip {
                sip_uri: "sip:u0@example.com".into(),
                auth: None
            }
        );
        assert!(matches!(&d.target[9].kind, TargetKind::User { name } if name == "U0@example.com"));
        targets.push(t(9));
        let e = err(&app(&targets));
        assert!(
            e.contains("at most 10 targets, got 11 after removing duplicates"),
            "{e}"
        );
    }

    #[test]
    fn errors_name_the_verb_and_the_path() {
        let user = r#"{"type": "user", "name": "a@b"}"#;
        for (json, expected) in [
            (
                format!(r#"[{{"verb":"answer"}}, {{"verb":"dial","target":[{user},{user},{{"type":"fax"}}]}}]"#),
                r#"verb 1 (dial): target 2: unknown type "fax""#,
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"callerID":"x"}}]"#),
                "verb 0 (dial): unknown field `callerID`",
            ),
            (
                r#"[{"verb":"dial","target":[{"type":"sip","sipUri":"sip:a@b","auth":{"username":"u"}}]}]"#.into(),
                "verb 0 (dial): target 0: auth: missing field `password`",
            ),
            (
                r#"[{"verb":"dial","target":[{"type":"sip","sipURI":"sip:a@b"}]}]"#.into(),
                "verb 0 (dial): target 0: unknown field `sipURI`",
            ),
            (
                r#"[{"verb":"dial","target":[{"type":"sip","sipUri":"tel:+1555"}]}]"#.into(),
                r#"verb 0 (dial): target 0: sipUri "tel:+1555" is not a sip: URI"#,
            ),
            (
                r#"[{"verb":"dial","target":[{"type":"phone","number":"call me"}]}]"#.into(),
                r#"verb 0 (dial): target 0: number "call me" is not a phone number"#,
            ),
            (
                r#"[{"verb":"dial","target":[{"name":"a@b"}]}]"#.into(),
                "verb 0 (dial): target 0: missing type",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"timeout":"30"}}]"#),
                "verb 0 (dial): timeout: invalid type: string \"30\"",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"actionHook":{{"uri":"/a"}}}}]"#),
                "verb 0 (dial): actionHook: unknown field `uri`",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"actionHook":{{"url":"/a","method":"PUT"}}}}]"#),
                "verb 0 (dial): actionHook: method: unknown method \"PUT\"",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"headers":{{"X-A":"1\r\nVia: x"}}}}]"#),
                "verb 0 (dial): headers: X-A: header value must not contain control characters",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"headers":{{"X A":"1"}}}}]"#),
                "verb 0 (dial): headers: bad header name \"X A\"",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"dtmfCapture":["*x"]}}]"#),
                "verb 0 (dial): dtmfCapture: \"*x\" is not a DTMF sequence",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"amd":{{"actionHook":"/a","timers":{{"toneTimeout":1}}}}}}]"#),
                "verb 0 (dial): amd.timers: unknown field `toneTimeout`",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"dub":[{{"action":"shout","track":"a"}}]}}]"#),
                "verb 0 (dial): dub: item 0.action: unknown variant `shout`",
            ),
            (r#"[{"verb":"dial","target":[]}]"#.into(), "verb 0 (dial): target: must name at least one"),
            (r#"[{"verb":"dial"}]"#.into(), "verb 0 (dial): missing field `target`"),
            (r#"[{"verb":"sip:decline","status":200}]"#.into(), "verb 0 (sip:decline): status: 200"),
            (r#"[{"verb":"pause"}]"#.into(), "verb 0 (pause): missing field `length`"),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"referHook":"ftp://h/r"}}]"#),
                "verb 0 (dial): referHook: hook url \"ftp://h/r\": only http and https",
            ),
            (
                format!(r#"[{{"verb":"dial","target":[{user}],"dtmfHook":""}}]"#),
                "verb 0 (dial): dtmfHook: bad hook url \"\"",
            ),
            (r#"[{"verb":"hangup","reason":"x"}]"#.into(), "verb 0 (hangup): unknown field `reason`"),
            (r#"[{"text":"hi","voice":"x"}]"#.into(), "verb 0: missing \"verb\""),
            (r#"[{"verb":7}]"#.into(), "verb 0: verb: must be a string"),
            (r#"["dial"]"#.into(), "verb 0: must be an object, got a string"),
            (r#"{"verb":"dial"}"#.into(), "app must be a JSON array of verbs, got an object"),
        ] {
            let e = err(&json);
            assert!(e.starts_with(expected), "{json}\n  got:      {e}\n  expected: {expected}");
        }
    }

    #[test]
    fn play_takes_a_url_or_a_list_and_a_loop_count() {
        let play = |json: &str| match parse_app(json).unwrap().remove(0) {
            Verb::Play(p) => p,
            other => panic!("not a play: {other:?}"),
        };
        let p = play(r#"[{"verb":"play","url":"/a.wav"}]"#);
        assert_eq!((p.url, p.loop_count), (vec!["/a.wav".to_string()], 1));
        let p = play(r#"[{"verb":"play","url":["/a.wav","/b.mp3"],"loop":3,"earlyMedia":true}]"#);
        assert_eq!((p.url.len(), p.loop_count), (2, 3));
        assert_eq!(
            play(r#"[{"play":{"url":"/a","loop":"forever"}}]"#).loop_count,
            0
        );
        for (json, expected) in [
            (r#"[{"verb":"play","url":[]}]"#, "verb 0 (play): url"),
            (r#"[{"verb":"play","url":7}]"#, "verb 0 (play): url"),
            (
                r#"[{"verb":"play","url":"/a","loop":-1}]"#,
                "verb 0 (play): loop",
            ),
            (
                r#"[{"verb":"play","url":"/a","loop":"often"}]"#,
                "verb 0 (play): loop",
            ),
        ] {
            let e = parse_app(json).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{json}: {e}");
        }
    }

    #[test]
    fn a_screening_app_keeps_its_good_verbs() {
        let (verbs, skipped) = parse_app_skipping(
            r#"[{"verb":"play","url":7},{"verb":"gather","play":{"url":["/a","/b"]},
                "say":{"text":"hi"}},{"verb":"hangup"}]"#,
        )
        .unwrap();
        let names: Vec<_> = verbs.iter().map(Verb::name).collect();
        assert_eq!(names, ["gather", "hangup"]);
        let Verb::Gather(g) = &verbs[0] else { panic!() };
        assert_eq!(g.play.as_ref().unwrap().url.len(), 2);
        assert!(g.say.is_some());
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].to_string().starts_with("verb 0 (play): url"));
        assert!(parse_app_skipping(r#"{"verb":"play"}"#).is_err());
    }

    #[test]
    fn gather_of_digits() {
        let v = parse_app(
            r##"[{"verb":"gather","input":["digits"],"numDigits":1,"finishOnKey":"#",
                "timeout":8,"actionHook":"/screen"}]"##,
        )
        .unwrap();
        let Verb::Gather(g) = &v[0] else {
            panic!("{v:?}")
        };
        assert_eq!(g.num_digits, Some(1));
        assert_eq!(g.finish_on_key.as_deref(), Some("#"));
        assert_eq!(g.timeout, 8);
        assert_eq!(g.action_hook.as_ref().unwrap().url, "/screen");
        let Verb::Gather(g) = &parse_app(r#"[{"verb":"gather"}]"#).unwrap()[0] else {
            panic!()
        };
        assert_eq!(g.timeout, 5, "jambonz's default");
        for (json, expected) in [
            (
                r###"[{"verb":"gather","finishOnKey":"##"}]"###,
                "verb 0 (gather): finishOnKey",
            ),
            (
                r#"[{"verb":"gather","numDigits":0}]"#,
                "verb 0 (gather): numDigits",
            ),
            (
                r#"[{"verb":"gather","input":["fax"]}]"#,
                "verb 0 (gather): input",
            ),
        ] {
            let e = parse_app(json).unwrap_err().to_string();
            assert!(e.starts_with(expected), "{json}: {e}");
        }
    }
}
