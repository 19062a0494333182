//! Fuzzes the verb JSON parser with any text: parsed or refused, it never panics, errors print,
//! and whatever parses keeps the invariants of `verbs_check`.
#![no_main]

use dialplane_signaling::verbs;
use libfuzzer_sys::fuzz_target;

#[path = "verbs_check.rs"]
mod verbs_check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match verbs::parse_app(text) {
        Ok(app) => verbs_check::check_app(&app),
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
