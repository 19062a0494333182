//! Fuzzes the SDP parser: whatever parses prints to text that parses back and prints the same.
#![no_main]

use dialplane_signaling::sdp::SessionDescription;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = SessionDescription::parse_bytes(data) {
        let text = sdp.to_string();
        let again = SessionDescription::parse(&text).expect("printed SDP reparses");
        assert_eq!(again.to_string(), text);
    }
});
