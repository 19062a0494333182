//! `dialplane media` end to end: the real binary on loopback, driven over the ng protocol by
//! `../shared/bench/ng.py` and by a client written here, with real RTP through the relay.
//!
//! ng.py is found beside the repository (`$CARGO_MANIFEST_DIR/../shared/bench/ng.py`, as CI
//! lays it out) or under `$DIALPLANE_SHARED/bench/`.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use media::ng::{Limits, ReplyMessage, Value, decode_reply};

mod common;
use common::{Relay, WAIT, get};

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n"
    )
}

fn media_port(r: &ReplyMessage) -> u16 {
    assert_eq!(r.result(), Some("ok"), "{:?}", r.dict);
    let s = std::str::from_utf8(r.sdp().expect("sdp")).unwrap();
    assert!(s.contains("c=IN IP4 127.0.0.1\r\n"), "{s}");
    let m = s.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    m.split(' ').nth(1).unwrap().parse().unwrap()
}

fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let (n, _) = s.recv_from(&mut buf).expect("RTP through the relay");
    buf[..n].to_vec()
}

fn phone() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

fn shared_bench() -> PathBuf {
    let dir = std::env::var_os("DIALPLANE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    let ng = dir.join("bench/ng.py");
    assert!(
        ng.exists(),
        "{} not found: check out shared/ beside the repository or set DIALPLANE_SHARED",
        ng.display()
    );
    ng
}

#[test]
fn the_shared_ng_client_sets_up_calls() {
    let relay = Relay::start(&[]);
    let out = Command::new("python3")
        .arg(shared_bench())
        .args([relay.ng.to_string().as_str(), "5", "24000"])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<u16>> = text
        .lines()
        .map(|l| l.split(' ').map(|p| p.parse().unwrap()).collect())
        .collect();
    assert_eq!(lines.len(), 5, "{text}");
    let mut relay_ports = Vec::new();
    for (k, l) in lines.iter().enumerate() {
        let k = k as u16;
        assert_eq!((l[0], l[2]), (24000 + 4 * k, 24002 + 4 * k));
        for p in [l[1], l[3]] {
            assert!((relay.port_min..=relay.port_max).contains(&p), "{p}");
            assert_eq!(p % 2, 0);
            relay_ports.push(p);
        }
    }
    relay_ports.sort_unstable();
    relay_ports.dedup();
    assert_eq!(relay_ports.len(), 10, "every leg has its own port");
}

/// A request about call `e2e-1` from tag `ft`.
fn with(extra: &[(&'static str, Value)]) -> Vec<(&'static str, Value)> {
    let call = [("call-id", Value::from("e2e-1")), ("from-tag", "ft".into())];
    call.into_iter().chain(extra.iter().cloned()).collect()
}

#[test]
fn offer_answer_rtp_query_dtmf_block_delete() {
    let mut relay = Relay::start(&[]);
    let r = relay.ng(&[("command", "ping".into())]);
    assert_eq!(r.result(), Some("pong"));

    let (a, a_port) = phone();
    let (b, b_port) = phone();
    let offer = with(&[
        ("command", "offer".into()),
        ("sdp", sdp(a_port).into()),
        ("replace", Value::List(vec!["origin".into()])),
    ]);
    let relay_for_b = media_port(&relay.ng(&offer));
    let answer = with(&[
        ("command", "answer".into()),
        ("to-tag", "tt".into()),
        ("sdp", sdp(b_port).into()),
    ]);
    let relay_for_a = media_port(&relay.ng(&answer));
    assert_ne!(relay_for_a, relay_for_b);

    // RTP both ways, payload intact.
    for seq in 0..10u16 {
        let payload = [seq as u8; 160];
        a.send_to(&rtp(0, 100 + seq, &payload), ("127.0.0.1", relay_for_a))
            .unwrap();
        let got = recv(&b);
        assert_eq!((got[1] & 0x7f, &got[12..]), (0, &payload[..]));
        b.send_to(&rtp(0, 500 + seq, &payload), ("127.0.0.1", relay_for_b))
            .unwrap();
        assert_eq!(recv(&a)[12..], payload);
    }

    let q = relay.ng(&with(&[("command", "query".into())]));
    assert_eq!(q.result(), Some("ok"));
    for tag in ["ft", "tt"] {
        let stats = get(
            &q.dict,
            &["tags", tag, "medias", "0", "streams", "0", "stats"],
        );
        assert_eq!(
            get(stats.as_dict().unwrap(), &["packets"]).as_int(),
            Some(10)
        );
        assert_eq!(
            get(stats.as_dict().unwrap(), &["bytes"]).as_int(),
            Some(10 * 172)
        );
    }
    assert_eq!(
        get(&q.dict, &["totals", "RTP", "packets"]).as_int(),
        Some(20)
    );

    // play DTMF as if from A: B hears RFC 4733 events for digit 5, ending with the E bit.
    let r = relay.ng(&with(&[
        ("command", "play DTMF".into()),
        ("code", "5".into()),
    ]));
    assert_eq!(r.result(), Some("ok"), "{:?}", r.dict);
    let mut ends = 0;
    while ends < 3 {
        let p = recv(&b);
        assert_eq!((p[1] & 0x7f, p[12]), (101, 5), "a telephone-event for 5");
        ends += usize::from(p[13] & 0x80 != 0);
    }

    // block media from A: its packet is dropped; after unblocking the next one arrives first.
    let r = relay.ng(&with(&[("command", "block media".into())]));
    assert_eq!(r.result(), Some("ok"));
    a.send_to(&rtp(0, 200, &[0xAA; 160]), ("127.0.0.1", relay_for_a))
        .unwrap();
    // B still reaches A while A is blocked; A's own packet above is dropped.
    b.send_to(&rtp(0, 600, &[0xBB; 160]), ("127.0.0.1", relay_for_b))
        .unwrap();
    assert_eq!(recv(&a)[12..], [0xBB; 160]);
    let r = relay.ng(&with(&[("command", "unblock media".into())]));
    assert_eq!(r.result(), Some("ok"));
    // The blocked packet went in first, so had it been relayed it would arrive first. Sent
    // until one arrives: the digit's player may still own B's stream for a tick.
    let p = (0..50u16)
        .find_map(|k| {
            a.send_to(&rtp(0, 201 + k, &[0xCC; 160]), ("127.0.0.1", relay_for_a))
                .unwrap();
            b.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 2048];
            let got = b.recv_from(&mut buf).ok().map(|(n, _)| buf[..n].to_vec());
            b.set_read_timeout(Some(WAIT)).unwrap();
            got
        })
        .expect("A's audio flows again after unblock");
    assert_eq!(p[12..], [0xCC; 160], "the blocked packet was relayed");
    // Drain the other 0xCC packets in flight before the next step.
    b.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while b.recv_from(&mut buf).is_ok() {}
    b.set_read_timeout(Some(WAIT)).unwrap();

    // block DTMF from A: its telephone-event is consumed, its audio still flows.
    let r = relay.ng(&with(&[("command", "block DTMF".into())]));
    assert_eq!(r.result(), Some("ok"));
    let event = [7u8, 0x0a, 0x01, 0x40];
    a.send_to(&rtp(101, 300, &event), ("127.0.0.1", relay_for_a))
        .unwrap();
    a.send_to(&rtp(0, 301, &[0xDD; 160]), ("127.0.0.1", relay_for_a))
        .unwrap();
    let p = recv(&b);
    assert_eq!((p[1] & 0x7f, &p[12..]), (0, &[0xDD; 160][..]));
    let r = relay.ng(&with(&[("command", "unblock DTMF".into())]));
    assert_eq!(r.result(), Some("ok"));

    let l = relay.ng(&[("command", "list".into())]);
    assert_eq!(get(&l.dict, &["calls", "0"]).as_str(), Some("e2e-1"));

    // delete, retransmitted: the cached reply, byte for byte (run again it would warn).
    let delete = relay.datagram(&with(&[("command", "delete".into())]));
    let first = relay.raw(&delete);
    let reply = decode_reply(&first, &Limits::default()).unwrap();
    assert_eq!(
        (reply.result(), reply.dict.get("warning")),
        (Some("ok"), None)
    );
    assert!(
        get(&reply.dict, &["totals", "RTP", "packets"]).as_int() >= Some(20),
        "final stats in the delete reply"
    );
    assert_eq!(relay.raw(&delete), first);
    let again = relay.ng(&with(&[("command", "delete".into())]));
    assert_eq!(
        again.dict.get("warning").and_then(Value::as_str),
        Some("Call-ID not found or tags didn't match")
    );
    let q = relay.ng(&with(&[("command", "query".into())]));
    assert_eq!(q.error_reason(), Some("Unknown call-id"));

    let s = relay.ng(&[("command", "statistics".into())]);
    let total = |k: &str| get(&s.dict, &["statistics", "totalstatistics", k]).as_int();
    assert_eq!(total("managedsessions"), Some(1));
    assert!(total("relayedpackets") >= Some(20));
}

#[test]
fn malformed_requests_get_rtpengine_errors_and_sigterm_exits_cleanly() {
    let mut relay = Relay::start(&["--dsp-taps"]);
    assert_eq!(
        relay.raw(b"m1 d7:commandi3e"),
        b"m1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
    assert_eq!(
        relay.raw(b"m2 xyz"),
        b"m2 d6:result5:error12:error-reason22:Invalid NG data formate"
    );
    assert_eq!(
        relay.raw(b"m3 d7:command5:dancee"),
        b"m3 d6:result5:error12:error-reason20:Unrecognized commande"
    );
    assert_eq!(
        relay.raw(b"m4 d7:command5:query7:call-id7:missinge"),
        b"m4 d6:result5:error12:error-reason15:Unknown call-ide"
    );
    assert_eq!(
        relay.raw(br#"m5 {"command":"play DTMF","call-id":"missing","code":"1"}"#),
        br#"m5 {"result":"error","error-reason":"Unknown call-id"}"#
    );
    let r = relay.ng(&[
        ("command", "offer".into()),
        ("call-id", "x".into()),
        ("from-tag", "y".into()),
        ("sdp", "not sdp".into()),
    ]);
    assert_eq!(r.error_reason(), Some("Failed to parse SDP"));
    // Datagrams without a cookie get no answer; the relay keeps serving.
    relay.client.send_to(b"nocookie", relay.ng).unwrap();
    let r = relay.ng(&[("command", "ping".into())]);
    assert_eq!(r.result(), Some("pong"));

    // With taps on every leg, calls still set up.
    let (_, a_port) = phone();
    let r = relay.ng(&[
        ("command", "offer".into()),
        ("call-id", "tapped".into()),
        ("from-tag", "a".into()),
        ("sdp", sdp(a_port).into()),
    ]);
    media_port(&r);

    let status = Command::new("kill")
        .args(["-TERM", &relay.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(s) = relay.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}
