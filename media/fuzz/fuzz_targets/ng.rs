//! Fuzzes the ng control protocol decoders: bencode (decode→encode→decode is a fixed point),
//! JSON, whole request datagrams and reply datagrams.
#![no_main]

use dialplane_media::ng::{self, Limits, bencode, json};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(v) = bencode::decode(data, &limits) {
        let out = v.to_bytes();
        let again = bencode::decode(&out, &limits).expect("encoded bencode decodes");
        assert_eq!(again.to_bytes(), out);
    }
    if let Ok(v) = json::decode(data, &limits) {
        let mut out = Vec::new();
        json::encode(&v, &mut out);
        let again = json::decode(&out, &limits).expect("encoded JSON decodes");
        let mut out2 = Vec::new();
        json::encode(&again, &mut out2);
        assert_eq!(out2, out);
    }
    let _ = ng::message::decode(data, &limits);
    let _ = ng::response::decode_reply(data, &limits);
});
