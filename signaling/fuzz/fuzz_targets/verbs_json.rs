//! Structured variant of `verbs`: builds verb lists from the verb vocabulary (names, attribute
//! keys, plausible and hostile values) so the fuzzer reaches the typed decoders instead of
//! stopping at JSON syntax. Checks that parsing the value and parsing its text agree, and the
//! invariants of `verbs_check` on whatever parses.
#![no_main]

use dialplane_signaling::verbs;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

#[path = "verbs_check.rs"]
mod verbs_check;

const VERBS: &[&str] = &[
    "dial",
    "hangup",
    "pause",
    "answer",
    "sip:decline",
    "say",
    "",
];

const KEYS: &[&str] = &[
    "verb",
    "id",
    "target",
    "type",
    "number",
    "trunk",
    "sipUri",
    "name",
    "tenant",
    "vmail",
    "voicemail",
    "auth",
    "username",
    "password",
    "headers",
    "confirmHook",
    "actionHook",
    "dtmfHook",
    "referHook",
    "url",
    "method",
    "amd",
    "listen",
    "dub",
    "dtmfCapture",
    "parentCall",
    "childCall",
    "transcribe",
    "timeout",
    "timeLimit",
    "callerId",
    "answerOnBridge",
    "dialMusic",
    "length",
    "status",
    "reason",
    "timers",
    "track",
    "action",
    "gain",
    "mixType",
    "sampleRate",
    "wsAuth",
    "X-Custom",
    "Bad Name",
    "",
];

const STRINGS: &[&str] = &[
    "phone",
    "sip",
    "user",
    "teams",
    "+15551234567",
    "123",
    "sip:alice@example.com",
    "sips:b@[::1]:5061",
    "tel:+1",
    "alice@example.com",
    "Alice",
    "http://h.example/x",
    "/rel",
    "ftp://x",
    "GET",
    "post",
    "PUT",
    "a b",
    "x\r\nVia: y",
    "\u{0}",
    "é",
    "",
];

fn value(u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
    let pick = if depth == 0 { 5 } else { 8 };
    Ok(match u.choose_index(pick)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => match u.choose_index(3)? {
            0 => u.arbitrary::<u32>()?.into(),
            1 => u.arbitrary::<i64>()?.into(),
            // Quarters print and read back exactly (serde_json's default float reading may be
            // off by one ulp, which would make value and text disagree for Unsupported verbs).
            _ => (f64::from(u.arbitrary::<i16>()?) / 4.0).into(),
        },
        3 => Value::String((*u.choose(STRINGS)?).to_string()),
        4 => Value::String(u.arbitrary()?),
        5 | 6 => Value::Object(object(u, depth - 1)?),
        _ => Value::Array(
            (0..u.int_in_range(0..=3)?)
                .map(|_| value(u, depth - 1))
                .collect::<Result<_>>()?,
        ),
    })
}

fn object(u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
    let mut m = Map::new();
    for _ in 0..u.int_in_range(0..=5)? {
        let key = if u.ratio(1, 8)? {
            u.arbitrary()?
        } else {
            (*u.choose(KEYS)?).to_string()
        };
        m.insert(key, value(u, depth)?);
    }
    Ok(m)
}

fn verb(u: &mut Unstructured<'_>) -> Result<Value> {
    let name = (*u.choose(VERBS)?).to_string();
    let mut attrs = object(u, 3)?;
    if u.ratio(1, 2)? {
        attrs.insert("verb".into(), Value::String(name));
        Ok(Value::Object(attrs))
    } else {
        Ok(Value::Object(Map::from_iter([(
            name,
            Value::Object(attrs),
        )])))
    }
}

fn run(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let app = Value::Array(
        (0..u.int_in_range(1..=3)?)
            .map(|_| verb(&mut u))
            .collect::<Result<_>>()?,
    );
    let parsed = verbs::parse_app_value(app.clone());
    assert_eq!(verbs::parse_app(&app.to_string()), parsed);
    match parsed {
        Ok(app) => verbs_check::check_app(&app),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
