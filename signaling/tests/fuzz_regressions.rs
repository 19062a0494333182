//! Inputs the `parse` fuzz target (signaling/fuzz) found crashing, replayed through the same
//! checks the target makes: parse, frame, and serialize→reparse of whatever parses.

use dialplane_signaling::message::{Frame, Message, frame};

fn replay(data: &[u8]) {
    if let Ok(Frame::Message(n)) = frame(data, 4096) {
        let _ = Message::parse(&data[..n]);
    }
    match Message::parse(data) {
        Ok(m) => {
            let out = m.to_bytes();
            let again = Message::parse(&out).expect("serialized message reparses");
            assert_eq!(again.body(), m.body());
            assert_eq!(again.to_bytes(), out);
        }
        Err(e) => {
            let _ = (e.reply(), e.warning());
        }
    }
}

#[test]
fn every_saved_crash_input() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fuzz-regressions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("regression dir") {
        let path = entry.expect("dir entry").path();
        replay(&std::fs::read(&path).expect("regression input"));
        n += 1;
    }
    assert!(n > 0);
}

/// `SIP/` version check sliced a `&str` at byte 4 inside a multi-byte character.
#[test]
fn version_with_multibyte_character() {
    let m = Message::parse(b"INVITE sip:a@b hos\xef\xbb\xbf\r\nl: 0\r\n\r\n");
    assert_eq!(m.map_err(|e| e.reply().map(|s| s.as_u16())), Err(Some(400)));
}
