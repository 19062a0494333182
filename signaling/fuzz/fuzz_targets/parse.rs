//! Fuzzes the SIP parser, the stream framer, and serialize→reparse of whatever parses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use dialplane_signaling::message::{Frame, Message, frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(Frame::Message(n)) = frame(data, 4096) {
        let _ = Message::parse(&data[..n]);
    }
    match Message::parse(data) {
        Ok(m) => {
            let h = m.headers();
            let _ = (h.via(), h.contact(), h.route(), h.expires(), h.content_type());
            // What we write must parse back to the same message, and writing is canonical.
            let out = m.to_bytes();
            let again = Message::parse(&out).expect("serialized message reparses");
            assert_eq!(again.body(), m.body());
            assert_eq!(again.to_bytes(), out);
        }
        Err(e) => {
            let _ = (e.reply(), e.warning());
        }
    }
});
