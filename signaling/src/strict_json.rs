//! Request bodies read strictly (REST updateCall and createCall): a JSON object, read into a
//! type that refuses unknown fields, an error naming the field's path.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// `body` as a JSON object: serde would also read a struct from an array.
pub(crate) fn object(body: &[u8]) -> Result<Value, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    if !value.is_object() {
        return Err("the body must be a JSON object".into());
    }
    Ok(value)
}

/// `value` read into `T`; the error names the path of the field at fault below `at` (the
/// field `value` came from, `""` for the body itself).
pub(crate) fn typed<T: DeserializeOwned>(value: Value, at: &str) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match (at, path.as_str()) {
            ("", "." | "") => inner.to_string(),
            ("", path) => format!("{path}: {inner}"),
            (at, "." | "") => format!("{at}: {inner}"),
            (at, path) => format!("{at}.{path}: {inner}"),
        }
    })
}
