//! Runs one call's control app: which verb comes next (sans-IO)
//!
//! The call driver asks [`AppRunner::next_step`] for the next verb, executes it, and when a verb's
//! actionHook answers with verbs it hands them to [`AppRunner::replace_rest`]: a non-empty answer
//! replaces what was left of the app. When the app runs out, the runner says hang up, once.
//! Verbs this build does not execute are skipped with an error log line and a counter.
//! A static app file (`--app FILE.json`) stands in for the call webhook: [`StaticApp`].

use std::collections::VecDeque;
use std::path::Path;

use url::Url;

use crate::verbs::{self, Verb, VerbError};
use crate::webhook::HookBase;

/// What the call should do next
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Execute this verb, then ask again.
    Run(Verb),
    /// The app ran out with the call still up: hang up the caller.
    HangUp,
    /// Nothing more: the call has ended (a `hangup` or `sip:decline` ran, or [`Step::HangUp`]
    /// was already given).
    Finished,
}

/// The verb list of one call and where it stands
#[derive(Debug)]
pub struct AppRunner {
    call_sid: String,
    queue: VecDeque<Verb>,
    ended: bool,
}

impl AppRunner {
    /// A runner for the app the call webhook (or the static file) returned; `call_sid` keys
    /// its log lines.
    pub fn new(call_sid: impl Into<String>, verbs: Vec<Verb>) -> Self {
        Self {
            call_sid: call_sid.into(),
            queue: verbs.into(),
            ended: false,
        }
    }

    /// The next verb to execute, skipping unsupported ones
    pub fn next_step(&mut self) -> Step {
        if self.ended {
            return Step::Finished;
        }
        while let Some(verb) = self.queue.pop_front() {
            match verb {
                Verb::Unsupported { name, .. } => {
                    tracing::error!(call_sid = %self.call_sid, verb = %name,
                        "verb not supported by this build, skipped");
                    metrics::counter!("dialplane_app_verbs_skipped_total").increment(1);
                }
                verb => {
                    if matches!(verb, Verb::Hangup(_) | Verb::SipDecline(_)) {
                        self.ended = true;
                        self.queue.clear();
                    }
                    metrics::counter!("dialplane_app_verbs_total", "verb" => verb.name().to_string())
                        .increment(1);
                    return Step::Run(verb);
                }
            }
        }
        self.ended = true;
        Step::HangUp
    }

    /// An actionHook answered with `verbs`: when there are any, they replace the rest of the app
    pub fn replace_rest(&mut self, verbs: Vec<Verb>) {
        if !verbs.is_empty() && !self.ended {
            self.queue = verbs.into();
        }
    }

    /// The call ended from outside (the caller hung up, REST): nothing more runs.
    pub fn end(&mut self) {
        self.ended = true;
        self.queue.clear();
    }

    /// Verbs not yet started.
    pub fn remaining(&self) -> usize {
        self.queue.len()
    }
}

/// Why a static app file was refused
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StaticAppError {
    /// The file could not be read.
    #[error("cannot read app file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The verbs are malformed.
    #[error("app file {path}: {source}")]
    Verbs {
        /// The file.
        path: String,
        /// Which verb and attribute.
        source: VerbError,
    },
    /// `hook_base_url` is not an absolute http(s) URL.
    #[error("app.hook_base_url {0:?} is not an absolute http or https URL")]
    BadBase(String),
    /// A hook is relative but there is no `hook_base_url` to resolve it against.
    #[error(
        "app file {path}: verb {index} ({verb}): {hook}: relative hook {url:?} needs app.hook_base_url"
    )]
    RelativeHook {
        /// The file.
        path: String,
        /// Which verb.
        index: usize,
        /// Its name.
        verb: String,
        /// Which hook attribute.
        hook: String,
        /// The hook's URL.
        url: String,
    },
}

/// The verbs every call runs when there is no call webhook
#[derive(Debug, Clone, PartialEq)]
pub struct StaticApp {
    /// The verbs, parsed once at startup.
    pub verbs: Vec<Verb>,
    /// What relative hooks resolve against (`app.hook_base_url`).
    pub hook_base: Option<HookBase>,
}

impl StaticApp {
    /// Reads and checks an app file; relative hooks need `hook_base_url`
    pub fn load(path: &Path, hook_base_url: Option<&str>) -> Result<Self, StaticAppError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| StaticAppError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_json(&text, &shown, hook_base_url)
    }

    /// Parses app JSON; `origin` names it in errors
    pub fn from_json(
        text: &str,
        origin: &str,
        hook_base_url: Option<&str>,
    ) -> Result<Self, StaticAppError> {
        let hook_base = hook_base_url
            .map(|b| {
                Url::parse(b)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .map(|url| HookBase { url, auth: None })
                    .ok_or_else(|| StaticAppError::BadBase(b.to_string()))
            })
            .transpose()?;
        let verbs = verbs::parse_app(text).map_err(|source| StaticAppError::Verbs {
            path: origin.to_string(),
            source,
        })?;
        if hook_base.is_none() {
            for (index, verb) in verbs.iter().enumerate() {
                for (hook, h) in verb.hooks() {
                    if Url::parse(&h.url).is_err() {
                        return Err(StaticAppError::RelativeHook {
                            path: origin.to_string(),
                            index,
                            verb: verb.name().to_string(),
                            hook,
                            url: h.url.clone(),
                        });
                    }
                }
            }
        }
        Ok(Self { verbs, hook_base })
    }

    /// A runner over a fresh copy of the verbs, for one call.
    pub fn runner(&self, call_sid: impl Into<String>) -> AppRunner {
        AppRunner::new(call_sid, self.verbs.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verbs::parse_app;

    fn names(r: &mut AppRunner) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match r.next_step() {
                Step::Run(v) => out.push(v.name().to_string()),
                Step::HangUp => out.push("<hang up>".into()),
                Step::Finished => return out,
            }
        }
    }

    const DIAL: &str =
        r#"{"verb":"dial","target":[{"type":"user","name":"a@b"}],"actionHook":"/act"}"#;

    #[test]
    fn runs_in_order_skips_unsupported_then_hangs_up_once() {
        let app = parse_app(&format!(
            r#"[{{"verb":"answer"}},{{"verb":"say","text":"hi"}},{DIAL},{{"verb":"pause","length":1}}]"#
        ))
        .unwrap();
        let mut r = AppRunner::new("sid", app);
        assert_eq!(names(&mut r), ["answer", "dial", "pause", "<hang up>"]);
        assert_eq!(r.next_step(), Step::Finished);
    }

    #[test]
    fn an_empty_app_hangs_up() {
        let mut r = AppRunner::new("sid", vec![]);
        assert_eq!(r.next_step(), Step::HangUp);
        assert_eq!(r.next_step(), Step::Finished);
    }

    #[test]
    fn a_non_empty_action_response_replaces_the_rest() {
        let app = parse_app(&format!(
            r#"[{DIAL},{{"verb":"pause","length":1}},{{"verb":"answer"}}]"#
        ))
        .unwrap();
        let mut r = AppRunner::new("sid", app);
        assert!(matches!(r.next_step(), Step::Run(Verb::Dial(_))));
        r.replace_rest(
            parse_app(r#"[{"verb":"sip:decline","status":486},{"verb":"answer"}]"#).unwrap(),
        );
        // sip:decline ends the call: what followed it never runs.
        assert_eq!(names(&mut r), ["sip:decline"]);
    }

    #[test]
    fn an_empty_action_response_keeps_the_rest() {
        let app = parse_app(&format!(r#"[{DIAL},{{"verb":"pause","length":1}}]"#)).unwrap();
        let mut r = AppRunner::new("sid", app);
        r.next_step();
        r.replace_rest(vec![]);
        assert_eq!(r.remaining(), 1);
        assert_eq!(names(&mut r), ["pause", "<hang up>"]);
    }

    #[test]
    fn hangup_ends_and_end_stops_everything() {
        let app = parse_app(r#"[{"verb":"hangup"},{"verb":"answer"}]"#).unwrap();
        assert_eq!(names(&mut AppRunner::new("sid", app.clone())), ["hangup"]);
        let mut r = AppRunner::new("sid", app);
        r.end();
        assert_eq!(r.next_step(), Step::Finished);
        r.replace_rest(parse_app(r#"[{"verb":"answer"}]"#).unwrap());
        assert_eq!(r.next_step(), Step::Finished);
    }

    #[test]
    fn static_app_checks_relative_hooks_against_the_base() {
        let text = format!("[{DIAL}]");
        let e = StaticApp::from_json(&text, "app.json", None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"app file app.json: verb 0 (dial): actionHook: relative hook "/act" needs app.hook_base_url"#
        );
        let app =
            StaticApp::from_json(&text, "app.json", Some("http://127.0.0.1:8080/base/")).unwrap();
        assert_eq!(
            app.hook_base.as_ref().unwrap().url.as_str(),
            "http://127.0.0.1:8080/base/"
        );
        assert!(matches!(
            app.runner("sid").next_step(),
            Step::Run(Verb::Dial(_))
        ));
        let abs = DIAL.replace("/act", "https://example.com/act");
        StaticApp::from_json(&format!("[{abs}]"), "app.json", None).unwrap();
        let e = StaticApp::from_json(&text, "app.json", Some("ftp://x/")).unwrap_err();
        assert!(matches!(e, StaticAppError::BadBase(_)), "{e}");
        let e = StaticApp::from_json("[{\"verb\":\"dial\"}]", "app.json", None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("app file app.json: verb 0 (dial): missing field"),
            "{e}"
        );
    }

    #[test]
    fn static_app_loads_from_a_file() {
        let dir = std::env::temp_dir().join(format!("dialplane-app-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.json");
        std::fs::write(&path, r#"[{"verb":"answer"},{"verb":"hangup"}]"#).unwrap();
        let app = StaticApp::load(&path, None).unwrap();
        assert_eq!(app.verbs.len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        let e = StaticApp::load(&path, None).unwrap_err();
        assert!(matches!(e, StaticAppError::Read { .. }), "{e}");
    }
}
