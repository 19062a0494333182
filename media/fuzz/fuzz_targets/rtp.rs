//! Fuzzes the RTP view (every getter of whatever validates, read-only and mutable) and the
//! telephone-event payload decoder (decode→encode is exact on the first four bytes, up to the
//! reserved bit).
#![no_main]

use dialplane_media::rtp::{RtpPacket, RtpPacketMut};
use dialplane_media::telephone_event::{EventPayload, digit_event, event_digit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = RtpPacket::parse(data) {
        let _ = (p.version(), p.padding(), p.marker(), p.payload_type());
        let _ = (p.sequence(), p.timestamp(), p.ssrc(), p.csrc_count());
        assert_eq!(p.csrcs().count(), usize::from(p.csrc_count()));
        let _ = p.extension();
        assert!(p.header_len() + p.payload().len() <= data.len());
        if let Ok(e) = EventPayload::decode(p.payload())
            && let Some(d) = event_digit(e.event)
        {
            assert_eq!(digit_event(d), Some(e.event));
        }
        let mut copy = data.to_vec();
        let m = RtpPacketMut::parse(&mut copy).expect("the same bytes validate mutably");
        assert_eq!(m.as_packet().payload(), p.payload());
    }
    if let Ok(e) = EventPayload::decode(data) {
        let again = e.encode();
        assert_eq!(again[0], data[0]);
        assert_eq!(again[1] & 0xbf, data[1] & 0xbf);
        assert_eq!(again[2..4], data[2..4]);
    }
});
