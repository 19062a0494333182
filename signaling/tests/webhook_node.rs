//! Against jambonz's own Node.js packages (tests/webhook-app/, installed with npm into target/):
//! - hooks we sign are accepted by `@jambonz/node-client`'s `verifyJambonzSignature`, and the
//!   verbs that client builds parse with our parser;
//! - our verb examples get the verdict we expect from `@jambonz/verb-specifications`.
//!
//! Skipped (with the reason printed) only when node or npm is not installed.

use std::time::{SystemTime, UNIX_EPOCH};

use dialplane_signaling::payload::{
    CallInfo, CallSid, CallStatus, CallStatusPayload, DialActionPayload, DialResult, Direction,
    ForkOutcome, SessionPayload, SipRequestInfo,
};
use dialplane_signaling::verbs::{self, Hook, TargetKind, Verb};
use dialplane_signaling::webhook::{HookBase, WebhookClient, WebhookError, WebhookOptions};

#[path = "../../tests/webhook-app/harness.rs"]
mod node_app;
use node_app::NodeApp;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The committed sources: package.json, package-lock.json, index.js, validate.js.
fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/webhook-app")
}

fn node_modules() -> Option<PathBuf> {
    node_app::node_modules(&app_dir())
}

/// Runs `node <script>` from the app dir with `stdin` and returns its stdout
fn run_node(node_modules: &Path, script: &str, stdin: &str) -> String {
    let mut child = Command::new("node")
        .arg(app_dir().join(script))
        .env("NODE_PATH", node_modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const SECRET: &str = "dialplane-test-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn caller() -> CallInfo {
    CallInfo {
        call_sid: CallSid::new_random(),
        parent_call_sid: None,
        direction: Direction::Inbound,
        from: "+16173331212".into(),
        to: "+15083084809".into(),
        call_id: "a84b4c76e66710@127.0.0.1".into(),
        caller_name: "Ünïcode \"quoted\" / name".into(),
        sip_status: 100,
        call_status: CallStatus::Trying,
        account_sid: "acct-1".into(),
        local_sip_address: "127.0.0.1:5060".into(),
    }
}

#[tokio::test]
async fn jambonz_node_client_accepts_our_signed_hooks() {
    let Some(modules) = node_modules() else {
        return;
    };
    let app = NodeApp::start(&app_dir(), &modules, SECRET, &[]);
    let client = WebhookClient::new(WebhookOptions {
        secret: Some(SECRET.into()),
        ..Default::default()
    })
    .unwrap();
    let call = caller();
    let session = SessionPayload {
        call: call.clone(),
        sip: SipRequestInfo::new(
            "INVITE",
            "sip:+15083084809@127.0.0.1",
            [
                ("From", "\"A\" <sip:+16173331212@127.0.0.1>;tag=1"),
                ("X-Tab", "a\tb"),
            ],
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n",
        ),
    };
    let call_hook = Hook::post(app.url("/call"));
    let verbs = client
        .fetch_verbs(&call_hook, None, &session, now())
        .await
        .expect("the node client verifies the signature and answers with verbs");
    let [Verb::Dial(dial)] = verbs.as_slice() else {
        panic!("expected one dial, got {verbs:?}")
    };
    assert_eq!(dial.caller_id.as_deref(), Some("+16173331212"));
    assert_eq!(dial.headers.0["X-Call-Sid"], call.call_sid.to_string());
    assert_eq!(dial.timeout, 20);
    assert_eq!(dial.target.len(), 4);
    assert!(matches!(
        dial.target[3].kind,
        TargetKind::Teams {
            voicemail: true,
            ..
        }
    ));

    // The relative actionHook goes to the same app, which reads the dial result back.
    let base = HookBase::from_hook(&call_hook).unwrap();
    let fork = CallSid::new_random();
    let action = DialActionPayload {
        call: call.clone(),
        result: DialResult::of_forks(&[(fork, ForkOutcome::Rejected(486))]).unwrap(),
    };
    let verbs = client
        .fetch_verbs(
            dial.action_hook.as_ref().unwrap(),
            Some(&base),
            &action,
            now(),
        )
        .await
        .unwrap();
    let [Verb::Hangup(h)] = verbs.as_slice() else {
        panic!("expected a hangup, got {verbs:?}")
    };
    assert_eq!(
        h.headers.0["X-Dial-Status"],
        format!("busy/busy/486/{fork}")
    );

    let status = CallStatusPayload {
        call: CallInfo {
            call_status: CallStatus::Completed,
            sip_status: 200,
            ..call
        },
        sip_reason: Some("OK".into()),
        duration: Some(42),
    };
    let reply = client
        .send(&Hook::post("/status"), Some(&base), &status, now())
        .await
        .unwrap();
    assert_eq!(reply.status, 204);
}

#[tokio::test]
async fn jambonz_node_client_rejects_bad_signatures() {
    let Some(modules) = node_modules() else {
        return;
    };
    let app = NodeApp::start(&app_dir(), &modules, SECRET, &[]);
    let session = SessionPayload {
        call: caller(),
        sip: SipRequestInfo::new("INVITE", "sip:a@127.0.0.1", [], ""),
    };
    let hook = Hook::post(app.url("/call"));
    for (secret, t, why) in [
        (Some("another-secret"), now(), "wrong secret"),
        (Some(SECRET), now() - 3600, "timestamp an hour old"),
        (None, now(), "no signature"),
    ] {
        let client = WebhookClient::new(WebhookOptions {
            secret: secret.map(str::to_string),
            ..Default::default()
        })
        .unwrap();
        let e = client
            .fetch_verbs(&hook, None, &session, t)
            .await
            .unwrap_err();
        assert!(
            matches!(e, WebhookError::Status { status: 403, .. }),
            "{why}: {e}"
        );
    }
}

/// Example apps and the verdicts: ours, and @jambonz/verb-specifications' (None = accepted,
/// Some(text) = rejected with a message containing text).
fn verb_cases() -> Vec<(&'static str, String, bool, Option<&'static str>)> {
    let file = |name: &str| {
        std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/verbs-examples")
                .join(name),
        )
        .unwrap()
    };
    let user = r#"{"type":"user","name":"a@b.com"}"#;
    let dial = |extra: &str| format!(r#"[{{"verb":"dial",{extra}"target":[{user}]}}]"#);
    vec![
        // jambonz's schema has no disconnectOnAMD in amd, although the spec's example uses it.
        ("spec example", file("spec-example.json"), true, Some("unknown property disconnectOnAMD")),
        (
            "spec example without disconnectOnAMD",
            file("spec-example.json").replace(",\n      \"disconnectOnAMD\": true", ""),
            true,
            None,
        ),
        ("every attribute", file("every-attribute.json"), true, None),
        ("other verbs", file("other-verbs.json").replace(r#""verb": "say""#, r#""verb": "tag""#).replace(r#""text": "hello""#, r#""data": {}"#), true, None),
        // The spec's spelling of the Teams voicemail flag; jambonz's schema only knows vmail.
        (
            "teams voicemail",
            r#"[{"verb":"dial","target":[{"type":"teams","number":"+1555","voicemail":true}]}]"#.into(),
            true,
            Some("unknown property voicemail"),
        ),
        ("unknown target type", r#"[{"verb":"dial","target":[{"type":"fax"}]}]"#.into(), false, Some("invalid value fax")),
        ("misspelt attribute", dial(r#""callerID":"x","#), false, Some("unknown property callerID")),
        ("timeout as a string", dial(r#""timeout":"30","#), false, Some("invalid data type")),
        (
            "auth without password",
            r#"[{"verb":"dial","target":[{"type":"sip","sipUri":"sip:a@b","auth":{"username":"u"}}]}]"#.into(),
            false,
            Some("missing value for password"),
        ),
        ("dial without target", r#"[{"verb":"dial"}]"#.into(), false, Some("missing value for target")),
        ("pause without length", r#"[{"verb":"pause"}]"#.into(), false, Some("missing value for length")),
        ("decline without status", r#"[{"verb":"sip:decline"}]"#.into(), false, Some("missing value for status")),
        // Where we are stricter than jambonz's schema: values are checked, not only types.
        (
            "tel: URI as sipUri",
            r#"[{"verb":"dial","target":[{"type":"sip","sipUri":"tel:+1555"}]}]"#.into(),
            false,
            None,
        ),
        (
            "words as a phone number",
            r#"[{"verb":"dial","target":[{"type":"phone","number":"call me"}]}]"#.into(),
            false,
            None,
        ),
        ("header injection", dial(r#""headers":{"X-A":"1\r\nVia: x"},"#), false, None),
    ]
}

#[test]
fn our_examples_get_the_expected_verdicts_from_jambonz_verb_specifications() {
    let Some(modules) = node_modules() else {
        return;
    };
    let cases = verb_cases();
    let apps: Vec<serde_json::Value> = cases
        .iter()
        .map(|(name, json, _, _)| {
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect();
    let out = run_node(
        &modules,
        "validate.js",
        &serde_json::to_string(&apps).unwrap(),
    );
    let verdicts: Vec<&str> = out.lines().collect();
    assert_eq!(verdicts.len(), cases.len(), "{out}");
    for ((name, json, ours, npm), verdict) in cases.iter().zip(verdicts) {
        let parsed = verbs::parse_app(json);
        assert_eq!(parsed.is_ok(), *ours, "{name}: ours: {parsed:?}");
        match npm {
            None => assert_eq!(verdict, "ok", "{name}"),
            Some(text) => assert!(
                verdict.starts_with("error:") && verdict.contains(text),
                "{name}: npm said {verdict:?}, expected an error with {text:?}"
            ),
        }
    }
}
