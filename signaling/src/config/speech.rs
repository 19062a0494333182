//! `[speech]`: the speech-to-text service `transcribe` streams to (jambonz's custom speech
//! vendor protocol, [`crate::stream`]) and the text-to-speech service `say` prompts and dub's
//! `sayOnTrack` are synthesised by (jambonz's custom TTS API, [`crate::media_files`])

use serde::Deserialize;

/// `[speech]`: where transcription audio goes
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// The vendor's `ws://` or `wss://` URL; none: `transcribe` is not run.
    pub stt_url: Option<String>,
    /// Sent as `Authorization: Bearer <key>` when the websocket opens.
    pub stt_api_key: Option<String>,
    /// Language when the recognizer or synthesizer names none.
    pub language: String,
    /// The synthesizer's `http://` or `https://` URL; none: `say` is skipped with an error.
    pub tts_url: Option<String>,
    /// Sent as `Authorization: Bearer <key>` with each synthesis request.
    pub tts_api_key: Option<String>,
    /// Voice when the app names none (empty: the synthesizer's own default).
    pub tts_voice: String,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            stt_url: None,
            stt_api_key: None,
            language: "en-US".into(),
            tts_url: None,
            tts_api_key: None,
            tts_voice: String::new(),
        }
    }
}

impl std::fmt::Debug for SpeechConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechConfig")
            .field("stt_url", &self.stt_url)
            .field(
                "stt_api_key",
                &self.stt_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("language", &self.language)
            .field("tts_url", &self.tts_url)
            .field(
                "tts_api_key",
                &self.tts_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("tts_voice", &self.tts_voice)
            .finish()
    }
}

/// Range checks of `[speech]`.
pub(super) fn validate(
    s: &SpeechConfig,
    invalid: &dyn Fn(&'static str, &str) -> super::ConfigError,
) -> Result<(), super::ConfigError> {
    if let Some(u) = &s.stt_url
        && !(u.starts_with("ws://") || u.starts_with("wss://"))
    {
        return Err(invalid("speech.stt_url", "must be a ws:// or wss:// URL"));
    }
    if let Some(u) = &s.tts_url
        && !(u.starts_with("http://") || u.starts_with("https://"))
    {
        return Err(invalid(
            "speech.tts_url",
            "must be an http:// or https:// URL",
        ));
    }
    if s.language.is_empty() {
        return Err(invalid("speech.language", "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Config;

    #[test]
    fn speech_section_parses_and_is_checked() {
        let c = Config::from_toml(
            "[speech]\nstt_url = \"ws://127.0.0.1:9000/stt\"\nstt_api_key = \"k\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.speech.stt_url.as_deref(), Some("ws://127.0.0.1:9000/stt"));
        assert_eq!(c.speech.language, "en-US");
        assert!(!format!("{:?}", c.speech).contains("\"k\""), "key redacted");
        let e = Config::from_toml("[speech]\nstt_url = \"http://x\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("speech.stt_url"), "{e}");
        let e = Config::from_toml("[speech]\ntts_url = \"ws://x\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("speech.tts_url"), "{e}");
        let c = Config::from_toml(
            "[speech]\ntts_url = \"http://127.0.0.1/tts\"\ntts_api_key = \"secret\"\n",
            "t",
        )
        .unwrap();
        assert_eq!(c.speech.tts_url.as_deref(), Some("http://127.0.0.1/tts"));
        assert!(
            !format!("{:?}", c.speech).contains("secret"),
            "key redacted"
        );
        let e = Config::from_toml("[speech]\nurl = \"ws://x\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
    }
}
