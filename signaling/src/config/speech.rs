//! `[speech]`: the speech-to-text service `transcribe` streams to (jambonz's custom speech
//! vendor protocol, [`crate::stream`])

use serde::Deserialize;

/// `[speech]`: where transcription audio goes
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechConfig {
    /// The vendor's `ws://` or `wss://` URL; none: `transcribe` is not run.
    pub stt_url: Option<String>,
    /// Sent as `Authorization: Bearer <key>` when the websocket opens.
    pub stt_api_key: Option<String>,
    /// Language when the recognizer names none.
    pub language: String,
}

impl Default for SpeechConfig {
    fn default() -> Self {
        Self {
            stt_url: None,
            stt_api_key: None,
            language: "en-US".into(),
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
        let e = Config::from_toml("[speech]\nurl = \"ws://x\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("url"), "{e}");
    }
}
