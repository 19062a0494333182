//! SIP codec cost per message: parse, serialize, and both, for a typical INVITE with SDP
//!
//! The INVITE is what a carrier sends: two Vias, Record-Route, P-Asserted-Identity, Allow,
//! Supported and a 236-byte SDP offer. Parsing includes the checks every request gets (Via, From,
//! To, Call-ID, CSeq, Contact, Route); the figures are ns per message.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use signaling::message::{Message, Response, StatusCode};

const INVITE: &[u8] = b"INVITE sip:+15551234567@198.51.100.10:5060;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-524287-1---4c7e3a9f1b2d;rport\r\n\
Via: SIP/2.0/UDP 10.0.0.5:5060;received=10.0.0.5;branch=z9hG4bK8a1b2c3d4e5f\r\n\
Record-Route: <sip:203.0.113.7;lr;ftag=as5f3c9a1e>\r\n\
Max-Forwards: 69\r\n\
From: \"Alice Example\" <sip:+15557654321@203.0.113.7>;tag=as5f3c9a1e\r\n\
To: <sip:+15551234567@198.51.100.10>\r\n\
Contact: <sip:+15557654321@203.0.113.7:5060;transport=udp>\r\n\
Call-ID: 3c26700b4f5a1e2d7c9b@203.0.113.7\r\n\
CSeq: 102 INVITE\r\n\
P-Asserted-Identity: <sip:+15557654321@203.0.113.7;user=phone>\r\n\
User-Agent: CarrierSBC 4.2\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO, PRACK, UPDATE\r\n\
Supported: replaces, timer, 100rel\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 236\r\n\
\r\n\
v=0\r\n\
o=- 1720000000 1720000000 IN IP4 203.0.113.7\r\n\
s=-\r\n\
c=IN IP4 203.0.113.7\r\n\
t=0 0\r\n\
m=audio 31000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

fn sip(c: &mut Criterion) {
    let parsed = Message::parse(INVITE).expect("the bench INVITE parses");
    assert_eq!(parsed.body().len(), 236, "Content-Length matches the SDP");
    let mut g = c.benchmark_group("sip_invite");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| b.iter(|| Message::parse(black_box(INVITE))));
    let mut out = Vec::with_capacity(2048);
    g.bench_function("serialize", |b| {
        b.iter(|| {
            out.clear();
            if let Message::Request(r) = black_box(&parsed) {
                r.write_to(&mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("parse_serialize", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Message::Request(r)) = Message::parse(black_box(INVITE)) {
                r.write_to(&mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("parse_and_answer_180", |b| {
        b.iter(|| {
            out.clear();
            if let Ok(Message::Request(r)) = Message::parse(black_box(INVITE)) {
                Response::for_request(&r, StatusCode::RINGING)
                    .with_to_tag("b2b1")
                    .write_to(&mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, sip);
criterion_main!(benches);
