//! JSON in place of bencode: rtpengine accepts a JSON object after the cookie and answers in JSON.
//!
//! Incoming JSON becomes a bencode [`Value`] so that one request parser serves both encodings:
//! strings become byte strings, integers stay integers, `true`/`false` become 1/0, `null` an
//! empty string, and a non-integral number its decimal text. Objects arrive with their keys
//! sorted (serde_json's map), which no ng command depends on.
//!
//! Outgoing values are written by hand so that dictionaries keep their insertion order; byte
//! strings that are not UTF-8 are written lossily (U+FFFD).

use super::bencode::{Dict, Limits, Value};

/// Why a JSON body was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON (serde_json's message, with line and column).
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// An integer outside 64 signed bits.
    #[error("integer out of 64-bit range")]
    IntegerOverflow,
    /// Nested deeper than the limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// Input longer than the limit.
    #[error("input longer than {0} bytes")]
    InputTooLarge(usize),
}

/// Parses a JSON document into a [`Value`] within `limits` (size and depth; serde_json itself
/// stops at 128 levels).
pub fn decode(input: &[u8], limits: &Limits) -> Result<Value, JsonError> {
    if input.len() > limits.max_input {
        return Err(JsonError::InputTooLarge(limits.max_input));
    }
    let json: serde_json::Value = serde_json::from_slice(input)?;
    convert(
        &json,
        0,
        limits.max_depth.min(super::bencode::MAX_DEPTH_CAP),
    )
}

fn convert(j: &serde_json::Value, depth: usize, max_depth: usize) -> Result<Value, JsonError> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => Value::Bytes(Vec::new()),
        J::Bool(b) => Value::Int(i64::from(*b)),
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None if n.is_u64() => return Err(JsonError::IntegerOverflow),
            None => Value::Bytes(n.to_string().into_bytes()),
        },
        J::String(s) => Value::Bytes(s.as_bytes().to_vec()),
        J::Array(a) => {
            if depth + 1 > max_depth {
                return Err(JsonError::TooDeep(max_depth));
            }
            Value::List(
                a.iter()
                    .map(|v| convert(v, depth + 1, max_depth))
                    .collect::<Result<_, _>>()?,
            )
        }
        J::Object(o) => {
            if depth + 1 > max_depth {
                return Err(JsonError::TooDeep(max_depth));
            }
            let mut d = Dict::new();
            for (k, v) in o {
                // serde_json keys are unique already: no need for insert's search.
                d.push(k.as_bytes().to_vec(), convert(v, depth + 1, max_depth)?);
            }
            Value::Dict(d)
        }
    })
}

/// Appends `value` to `out` as compact JSON, dictionary keys in insertion order.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Bytes(b) => encode_string(b, out),
        Value::List(l) => {
            out.push(b'[');
            for (i, v) in l.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode(v, out);
            }
            out.push(b']');
        }
        Value::Dict(d) => encode_dict(d, out),
    }
}

/// Appends `dict` to `out` as a compact JSON object, keys in insertion order.
pub fn encode_dict(d: &Dict, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        encode_string(k, out);
        out.push(b':');
        encode(v, out);
    }
    out.push(b'}');
}

fn encode_string(b: &[u8], out: &mut Vec<u8>) {
    let s = String::from_utf8_lossy(b);
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_into_bencode_values() {
        let v = decode(
            br#"{"command":"offer","n":-3,"t":true,"f":false,"z":null,"x":1.5,"l":["a",{"b":"c"}]}"#,
            &Limits::default(),
        )
        .unwrap();
        let d = v.as_dict().unwrap();
        assert_eq!(d.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(d.get("n"), Some(&Value::Int(-3)));
        assert_eq!(d.get("t"), Some(&Value::Int(1)));
        assert_eq!(d.get("f"), Some(&Value::Int(0)));
        assert_eq!(d.get("z"), Some(&Value::from("")));
        assert_eq!(d.get("x"), Some(&Value::from("1.5")));
        let l = d.get("l").and_then(Value::as_list).unwrap();
        assert_eq!(l[0], Value::from("a"));
        assert_eq!(
            l[1].as_dict().and_then(|d| d.get("b")),
            Some(&Value::from("c"))
        );
    }

    #[test]
    fn refuses_bad_json() {
        let l = Limits::default();
        assert!(matches!(decode(b"{", &l), Err(JsonError::Syntax(_))));
        assert!(matches!(decode(b"{}x", &l), Err(JsonError::Syntax(_))));
        assert!(matches!(
            decode(b"{\"a\":18446744073709551615}", &l),
            Err(JsonError::IntegerOverflow)
        ));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode(deep.as_bytes(), &l).is_err());
        let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
        assert!(matches!(
            decode(deep.as_bytes(), &l),
            Err(JsonError::TooDeep(32))
        ));
    }

    #[test]
    fn encodes_in_insertion_order_with_escapes() {
        let mut d = Dict::new();
        d.insert("result", "ok");
        d.insert("sdp", "v=0\r\n\"q\"\\\u{1}");
        d.insert(
            "n",
            Value::List(vec![Value::Int(-1), Value::from(&b"\xff"[..])]),
        );
        let mut out = Vec::new();
        encode(&Value::Dict(d), &mut out);
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"result":"ok","sdp":"v=0\r\n\"q\"\\\u0001","n":[-1,"�"]}"#
        );
        let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(back["sdp"], "v=0\r\n\"q\"\\\u{1}");
    }
}
