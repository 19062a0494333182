//! Parses and serializes the bench INVITE in a loop, for instruction counting:
//!
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null sip_instructions MODE COUNT`
//!
//! MODE is `none` (the loop alone: subtract it), `parse`, `serialize` (of one parsed message) or
//! `both` (parse then serialize). Instruction counts repeat exactly whatever else the machine
//! does, unlike the criterion timings; divide the difference to `none` by COUNT.

use std::hint::black_box;
use std::process::ExitCode;

use dialplane_benches::sip::INVITE;
use signaling::message::Message;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(count)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: sip_instructions none|parse|serialize|both COUNT");
        return ExitCode::from(2);
    };
    let count: usize = count;
    let Ok(parsed) = Message::parse(INVITE) else {
        eprintln!("the bench INVITE does not parse");
        return ExitCode::FAILURE;
    };
    let mut out = Vec::with_capacity(2048);
    let mut bytes = 0usize;
    for _ in 0..count {
        out.clear();
        match mode.as_str() {
            "none" => bytes += black_box(INVITE).len(),
            "parse" => bytes += Message::parse(black_box(INVITE)).map_or(0, |m| m.body().len()),
            "serialize" => {
                if let Message::Request(r) = black_box(&parsed) {
                    r.write_to(&mut out);
                }
                bytes += out.len();
            }
            "both" => {
                if let Ok(Message::Request(r)) = Message::parse(black_box(INVITE)) {
                    r.write_to(&mut out);
                }
                bytes += out.len();
            }
            other => {
                eprintln!("unknown mode {other}");
                return ExitCode::from(2);
            }
        }
    }
    println!("{mode}: {count} messages, {bytes} bytes");
    ExitCode::SUCCESS
}
