//! SIP codec cost per message: parse, serialize, and both, for a typical INVITE with SDP
//!
//! The INVITE ([`dialplane_benches::sip::INVITE`], 1.2 kB) is what a carrier sends: two Vias,
//! Record-Route, display names, P- and X- headers, Allow, Supported and a 245-byte SDP offer.
//! Parsing includes the checks every request gets (Via, From, To, Call-ID, CSeq, Contact,
//! Route, Record-Route); the figures are ns per message. `make bench-instructions` counts the
//! instructions of the same work (sip_instructions).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dialplane_benches::sip::INVITE;
use signaling::message::{Message, Response, StatusCode};

fn sip(c: &mut Criterion) {
    let parsed = Message::parse(INVITE).expect("the bench INVITE parses");
    assert_eq!(parsed.body().len(), 245, "Content-Length matches the SDP");
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
