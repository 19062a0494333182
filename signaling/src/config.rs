//! dialplane's one configuration file (TOML)
//!
//! Every section has embedded defaults, so an empty file (or none) is a working configuration.
//! Unknown keys are rejected with their name and position, so a typo never passes silently.
//! Command-line flags override the file; the binary applies them after [`Config::from_toml`].
//! `dialplane.example.toml` at the repository root documents every key; a test keeps the two in
//! step. Later issues add their sections here (`[sip]`, `[media]`, `[http]`, `[app]`, ...).

use std::path::Path;

use serde::Deserialize;

/// Why a configuration could not be loaded
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file named on the command line.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TOML is malformed, has an unknown key or a value of the wrong type; the message
    /// names the key and its line.
    #[error("config {path}: {message}")]
    Parse {
        /// The file (or `<string>`).
        path: String,
        /// toml's description, naming the key.
        message: String,
    },
    /// A value is well-formed but out of range; the message names the key.
    #[error("config {path}: {key}: {message}")]
    Invalid {
        /// The file (or `<string>`).
        path: String,
        /// Dotted key, e.g. `amd.tone_timeout_ms`.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

/// The whole configuration
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[log]`: log filtering.
    pub log: LogConfig,
    /// `[amd]`: answering-machine detection timers (jambonz's names and defaults).
    pub amd: AmdTimers,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `dialplane=debug,info`; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// `[amd]`: the default timers of answering-machine detection
///
/// Names are jambonz's, in snake_case; the dial verb's `amd.timers` override them per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmdTimers {
    /// No speech at all for this long after answer: decide `silence`.
    pub no_speech_timeout_ms: u32,
    /// No decision by this time: give up (`amd_decision_timeout`).
    pub decision_timeout_ms: u32,
    /// How long after answer to keep listening for a beep.
    pub tone_timeout_ms: u32,
    /// Silence that ends a machine's greeting.
    pub greeting_completion_timeout_ms: u32,
}

impl Default for AmdTimers {
    fn default() -> Self {
        // The detector's own defaults are the one source of these numbers.
        let d = dsp::amd::AmdConfig::default();
        Self {
            no_speech_timeout_ms: d.no_speech_timeout_ms,
            decision_timeout_ms: d.decision_timeout_ms,
            tone_timeout_ms: d.tone_timeout_ms,
            greeting_completion_timeout_ms: d.greeting_completion_timeout_ms,
        }
    }
}

impl From<AmdTimers> for dsp::amd::AmdConfig {
    fn from(t: AmdTimers) -> Self {
        Self {
            no_speech_timeout_ms: t.no_speech_timeout_ms,
            decision_timeout_ms: t.decision_timeout_ms,
            tone_timeout_ms: t.tone_timeout_ms,
            greeting_completion_timeout_ms: t.greeting_completion_timeout_ms,
        }
    }
}

impl Config {
    /// Reads and validates a TOML file
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Checks value ranges (after flags have overridden the file); `origin` names the source
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: origin.to_string(),
            key,
            message: message.to_string(),
        };
        let t = &self.amd;
        for (key, value) in [
            ("amd.no_speech_timeout_ms", t.no_speech_timeout_ms),
            ("amd.decision_timeout_ms", t.decision_timeout_ms),
            ("amd.tone_timeout_ms", t.tone_timeout_ms),
            (
                "amd.greeting_completion_timeout_ms",
                t.greeting_completion_timeout_ms,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if t.no_speech_timeout_ms > t.decision_timeout_ms {
            return Err(invalid(
                "amd.no_speech_timeout_ms",
                "must not exceed amd.decision_timeout_ms",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = Config::from_toml("", "<string>").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.amd.no_speech_timeout_ms, 5000);
        assert_eq!(c.amd.decision_timeout_ms, 15000);
        assert_eq!(c.amd.tone_timeout_ms, 20000);
        assert_eq!(c.amd.greeting_completion_timeout_ms, 2000);
        assert_eq!(c.log.level, "info");
    }

    #[test]
    fn example_file_parses_and_documents_the_defaults() {
        let text = include_str!("../../dialplane.example.toml");
        assert_eq!(
            Config::from_toml(text, "example").unwrap(),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = Config::from_toml("[amd]\ntone_timout_ms = 5\n", "x.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("tone_timout_ms"), "{msg}");
        assert!(msg.contains("x.toml"), "{msg}");
        let e = Config::from_toml("[amdd]\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("amdd"), "{e}");
    }

    #[test]
    fn wrong_types_and_ranges_name_the_key() {
        let e = Config::from_toml("[amd]\ntone_timeout_ms = \"x\"\n", "x").unwrap_err();
        assert!(e.to_string().contains("tone_timeout_ms"), "{e}");
        let e = Config::from_toml("[amd]\ndecision_timeout_ms = 0\n", "x").unwrap_err();
        assert!(e.to_string().contains("amd.decision_timeout_ms"), "{e}");
        let e = Config::from_toml("[amd]\nno_speech_timeout_ms = 20000\n", "x").unwrap_err();
        assert!(e.to_string().contains("amd.no_speech_timeout_ms"), "{e}");
    }

    #[test]
    fn overrides_apply() {
        let c = Config::from_toml(
            "[amd]\ntone_timeout_ms = 30000\n[log]\nlevel = \"debug\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(c.amd.tone_timeout_ms, 30000);
        assert_eq!(c.amd.decision_timeout_ms, 15000);
        assert_eq!(c.log.level, "debug");
    }
}
