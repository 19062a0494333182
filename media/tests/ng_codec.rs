//! The ng codec against what its clients really send: `../shared/bench/ng.py` (fixtures made by
//! importing it, and a live run of it against a UDP listener when python3 and the script are
//! there), Kamailio 5.6's rtpengine module (hand-built fixtures), JSON bodies, error replies, the
//! retransmission cache and hostile bytes.

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use dialplane_media::ng::{
    self, Command, DropReason, Encoding, ErrorReason, Ice, Limits, Rejected, Replace, Reply,
    ReplyCache, Request, Response, TransportProtocol, Value,
};

const NGPY_PING: &[u8] = include_bytes!("fixtures/ng/ngpy_ping.bin");
const NGPY_OFFER: &[u8] = include_bytes!("fixtures/ng/ngpy_offer.bin");
const NGPY_ANSWER: &[u8] = include_bytes!("fixtures/ng/ngpy_answer.bin");
const KAM_OFFER: &[u8] = include_bytes!("fixtures/ng/kamailio_offer.bin");
const KAM_ANSWER: &[u8] = include_bytes!("fixtures/ng/kamailio_answer.bin");
const KAM_DELETE: &[u8] = include_bytes!("fixtures/ng/kamailio_delete.bin");

fn decode(d: &[u8]) -> Request {
    match ng::decode(d, &Limits::default()) {
        Ok(r) => r,
        Err(e) => panic!("{e:?} for {}", d.escape_ascii()),
    }
}

fn body(d: &[u8]) -> &[u8] {
    ng::split_cookie(d).expect("has a cookie").1
}

fn ngpy_sdp(port: u16, sess: u32) -> String {
    format!(
        "v=0\r\no=- {sess} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )
}

#[test]
fn ngpy_ping_and_exact_pong() {
    assert_eq!(NGPY_PING, b"4242_0 d7:command4:pinge");
    let r = decode(NGPY_PING);
    assert_eq!(r.cookie, b"4242_0");
    assert_eq!(r.command, Command::Ping);
    assert_eq!(r.encoding, Encoding::Bencode);
    assert_eq!(r.reply(&Response::pong()), b"4242_0 d6:result4:ponge");
}

#[test]
fn ngpy_offer_and_answer() {
    let o = decode(NGPY_OFFER);
    assert_eq!(o.cookie, b"4242_3");
    assert_eq!(o.command, Command::Offer);
    assert_eq!(o.call_id.as_deref(), Some("bench-1"));
    assert_eq!(o.from_tag.as_deref(), Some("ft1"));
    assert_eq!(o.to_tag, None);
    assert_eq!(o.replace, vec![Replace::Origin]);
    assert_eq!(o.sdp.as_deref(), Some(ngpy_sdp(20004, 1).as_bytes()));
    assert!(o.flags.is_empty() && o.ice.is_none() && o.transport_protocol.is_none());

    let a = decode(NGPY_ANSWER);
    assert_eq!(a.cookie, b"4242_4");
    assert_eq!(a.command, Command::Answer);
    assert_eq!(a.call_id.as_deref(), Some("bench-1"));
    assert_eq!(a.from_tag.as_deref(), Some("ft1"));
    assert_eq!(a.to_tag.as_deref(), Some("tt1"));
    assert!(a.replace.is_empty());
    assert_eq!(a.sdp.as_deref(), Some(ngpy_sdp(20006, 1).as_bytes()));

    // ng.py sorts its keys, so its bodies are canonical: the raw dictionary re-encodes to them.
    for (req, d) in [(&o, NGPY_OFFER), (&a, NGPY_ANSWER)] {
        let mut out = Vec::new();
        Value::Dict(req.raw.clone()).encode_canonical(&mut out);
        assert_eq!(out, body(d));
    }
}

/// The reply ng.py needs: `result: ok` and an SDP whose `m=audio` port it reads.
#[test]
fn ngpy_reply_shape() {
    let o = decode(NGPY_OFFER);
    let sdp = ngpy_sdp(30000, 1);
    let reply = o.reply(&Response::ok().with_sdp(sdp.clone()));
    let mut want = b"4242_3 d3:sdp".to_vec();
    want.extend_from_slice(format!("{}:{sdp}6:result2:oke", sdp.len()).as_bytes());
    assert_eq!(reply, want);
}

#[test]
fn kamailio_offer() {
    let r = decode(KAM_OFFER);
    assert_eq!(r.cookie, b"3071_1");
    assert_eq!(r.command, Command::Offer);
    assert_eq!(r.call_id.as_deref(), Some("1-12345@192.0.2.10"));
    assert_eq!(r.from_tag.as_deref(), Some("12345SIPpTag001"));
    assert_eq!(r.via_branch.as_deref(), Some("z9hG4bK-12345-1-0"));
    assert_eq!(r.flags, vec!["trust-address"]);
    assert!(r.has_flag("trust-address"));
    assert!(r.replaces(&Replace::Origin));
    assert!(r.replaces(&Replace::SessionConnection));
    assert_eq!(r.ice, Some(Ice::Remove));
    assert_eq!(r.transport_protocol, Some(TransportProtocol::RtpAvp));
    assert_eq!(
        r.received_from,
        Some(("IP4".to_owned(), "192.0.2.10".to_owned()))
    );
    let sdp = r.sdp.as_deref().expect("sdp");
    assert!(sdp.starts_with(b"v=0\r\no=user1 53655765"));
    assert!(sdp.ends_with(b"a=sendrecv\r\n"));
    // Kamailio's key order survives in the raw dictionary, and re-encodes byte for byte.
    let keys: Vec<&[u8]> = r.raw.iter().map(|(k, _)| k).collect();
    assert_eq!(keys[..3], [&b"ICE"[..], b"transport-protocol", b"sdp"]);
    assert_eq!(Value::Dict(r.raw.clone()).to_bytes(), body(KAM_OFFER));
}

#[test]
fn kamailio_answer_and_delete() {
    let a = decode(KAM_ANSWER);
    assert_eq!(a.command, Command::Answer);
    assert_eq!(a.to_tag.as_deref(), Some("67890SIPpTag011"));
    assert_eq!(a.ice, Some(Ice::Remove));
    assert_eq!(
        a.received_from.as_ref().map(|(_, ip)| ip.as_str()),
        Some("198.51.100.20")
    );
    let d = decode(KAM_DELETE);
    assert_eq!(d.cookie, b"3072_1");
    assert_eq!(d.command, Command::Delete);
    assert_eq!(d.call_id.as_deref(), Some("1-12345@192.0.2.10"));
    assert_eq!(d.from_tag.as_deref(), Some("12345SIPpTag001"));
    assert_eq!(d.to_tag.as_deref(), Some("67890SIPpTag011"));
    assert_eq!(d.sdp, None);
}

#[test]
fn json_body_same_request_json_reply() {
    let j = br#"3071_1 {"command":"offer","call-id":"1-12345@192.0.2.10","from-tag":"12345SIPpTag001","sdp":"v=0\r\n","flags":["trust-address","replace-origin"],"replace":["session-connection"],"ICE":"remove","transport-protocol":"RTP/AVP","direction":["internal","external"],"rtcp-mux":["demux"],"codec":{"strip":["PCMA"],"offer":["PCMU"]}}"#;
    let r = decode(j);
    assert_eq!(r.encoding, Encoding::Json);
    assert_eq!(r.command, Command::Offer);
    assert_eq!(r.flags, vec!["trust-address"]);
    assert_eq!(r.replace, vec![Replace::SessionConnection, Replace::Origin]);
    assert_eq!(r.ice, Some(Ice::Remove));
    assert_eq!(r.transport_protocol, Some(TransportProtocol::RtpAvp));
    assert_eq!(r.direction, vec!["internal", "external"]);
    assert_eq!(r.rtcp_mux, vec![ng::RtcpMux::Demux]);
    assert_eq!(r.codec.strip, vec!["PCMA"]);
    assert_eq!(r.codec.offer, vec!["PCMU"]);
    assert_eq!(r.sdp.as_deref(), Some(&b"v=0\r\n"[..]));
    assert_eq!(
        r.reply(&Response::ok().with_sdp("v=0\r\n")),
        br#"3071_1 {"sdp":"v=0\r\n","result":"ok"}"#
    );
    let ping = decode(br#"7 {"command":"ping"}"#);
    assert_eq!(ping.reply(&Response::pong()), br#"7 {"result":"pong"}"#);
    // Broken JSON is answered in JSON.
    let bad = ng::decode(br#"8 {"command":"#, &Limits::default()).unwrap_err();
    assert_eq!(
        bad.reply(),
        Reply::Send(
            br#"8 {"result":"error","error-reason":"Failed to parse JSON document"}"#.to_vec()
        )
    );
}

#[test]
fn every_command() {
    let cases: &[(&[u8], Command)] = &[
        (b"d7:command4:pinge", Command::Ping),
        (b"d7:command4:liste", Command::List),
        (b"d7:command10:statisticse", Command::Statistics),
        (b"d7:command5:query7:call-id1:xe", Command::Query),
        (b"d7:command6:delete7:call-id1:xe", Command::Delete),
        (b"d7:command10:block DTMF7:call-id1:xe", Command::BlockDtmf),
        (
            b"d7:command12:unblock DTMF7:call-id1:xe",
            Command::UnblockDtmf,
        ),
        (
            b"d7:command11:block media7:call-id1:xe",
            Command::BlockMedia,
        ),
        (
            b"d7:command13:unblock media7:call-id1:xe",
            Command::UnblockMedia,
        ),
        (
            b"d7:command9:play DTMF7:call-id1:x4:code1:#e",
            Command::PlayDtmf,
        ),
        (b"d7:command4:PINGe", Command::Ping),
        (b"d7:command6:frobnie", Command::Unknown("frobni".into())),
    ];
    for (b, want) in cases {
        let mut d = b"ck ".to_vec();
        d.extend_from_slice(b);
        assert_eq!(&decode(&d).command, want, "{}", d.escape_ascii());
    }
    let list = decode(b"c d7:command4:list5:limiti10ee");
    assert_eq!(list.limit, Some(10));
}

#[test]
fn play_dtmf_parameters() {
    let r = decode(
        b"c d7:command9:play DTMF7:call-id1:x8:from-tag1:y4:code1:*8:durationi250e6:volumei12ee",
    );
    let d = r.dtmf.expect("dtmf");
    assert_eq!(
        (d.event, d.digit(), d.duration_ms(), d.volume_dbm0()),
        (10, '*', 250, -12)
    );
    let r = decode(b"c d7:command9:play DTMF7:call-id1:x4:codei5e8:duration3:200e");
    let d = r.dtmf.expect("dtmf");
    assert_eq!((d.event, d.duration_ms(), d.volume_dbm0()), (5, 200, -8));
    let r = decode(b"c d7:command10:block DTMF7:call-id1:x9:from-tagsl2:t12:t2ee");
    assert_eq!(r.from_tags, vec!["t1", "t2"]);
}

fn error_reply(d: &[u8]) -> Vec<u8> {
    match ng::decode(d, &Limits::default()) {
        Err(e) => match e.reply() {
            Reply::Send(b) => b,
            Reply::Drop(r) => panic!("dropped: {r:?}"),
        },
        Ok(r) => panic!("decoded: {r:?}"),
    }
}

#[test]
fn error_replies_exact() {
    assert_eq!(
        error_reply(b"c1 d7:command4:ping"),
        b"c1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
    assert_eq!(
        error_reply(b"c1 d99999999999:"),
        b"c1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
    assert_eq!(
        error_reply(b"c1 99999999999:"),
        b"c1 d6:result5:error12:error-reason22:Invalid NG data formate"
    );
    assert_eq!(
        error_reply(b"c1 "),
        b"c1 d6:result5:error12:error-reason25:Invalid data (no payload)e"
    );
    assert_eq!(
        error_reply(b"c2 d7:command5:offer8:from-tag1:y3:sdp3:v=0e"),
        b"c2 d6:result5:error12:error-reason21:No call-id in messagee"
    );
    assert_eq!(
        error_reply(b"c2 d7:command6:answer7:call-id1:x8:from-tag1:ye"),
        b"c2 d6:result5:error12:error-reason22:No SDP body in messagee"
    );
    assert_eq!(
        error_reply(b"c2 d7:command9:play DTMF7:call-id1:x4:code2:99e"),
        b"c2 d6:result5:error12:error-reason29:Out of range 'code' specifiede"
    );
    assert_eq!(
        error_reply(b"c3 d3:foo3:bare"),
        b"c3 d6:result5:error12:error-reason36:Dictionary contains no key \"command\"e"
    );
    // Unknown command and unknown call are decided by the handler; the codec words them.
    let r = decode(b"c4 d7:command5:dancee");
    assert_eq!(
        r.reply(&Response::error(&ErrorReason::UnknownCommand)),
        b"c4 d6:result5:error12:error-reason20:Unrecognized commande"
    );
    let r = decode(b"c5 d7:command5:query7:call-id4:nonee");
    assert_eq!(
        r.reply(&Response::error(&ErrorReason::UnknownCall)),
        b"c5 d6:result5:error12:error-reason15:Unknown call-ide"
    );
    // 10 000 levels of nesting, in bencode and in JSON: an error reply, not a stack overflow.
    let mut deep = b"c6 ".to_vec();
    deep.extend(b"d1:k".repeat(10_000));
    deep.extend(vec![b'e'; 10_000]);
    assert_eq!(
        error_reply(&deep),
        b"c6 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
    );
    let mut deep = b"c7 ".to_vec();
    deep.extend(b"{\"k\":".repeat(10_000));
    deep.extend(vec![b'}'; 10_000]);
    assert_eq!(
        error_reply(&deep),
        br#"c7 {"result":"error","error-reason":"Failed to parse JSON document"}"#
    );
    // Without a cookie nothing can be answered.
    for (d, why) in [
        (&b""[..], DropReason::Empty),
        (b"d7:command4:pinge", DropReason::NoCookie),
        (b" d7:command4:pinge", DropReason::EmptyCookie),
    ] {
        let e = ng::decode(d, &Limits::default()).unwrap_err();
        assert_eq!(e, Rejected::Drop(why));
        assert_eq!(e.reply(), Reply::Drop(why));
        assert_eq!(e.label(), why.as_str());
    }
}

/// The driver's path: cache lookup by cookie, else decode, run, cache.
#[test]
fn retransmission_gets_cached_reply_without_rerunning() {
    let t0 = Instant::now();
    let mut cache = ReplyCache::new(100, Duration::from_secs(30));
    let mut runs = 0;
    let mut handle = |d: &[u8], now: Instant, cache: &mut ReplyCache| -> Vec<u8> {
        let (cookie, _) = ng::split_cookie(d).expect("cookie");
        if let Some(hit) = cache.get(cookie, now) {
            return hit.to_vec();
        }
        let req = decode(d);
        runs += 1;
        let reply = req.reply(&Response::ok().with_sdp(ngpy_sdp(30000 + runs * 2, 1)));
        cache.insert(&req.cookie, reply.clone(), now);
        reply
    };
    let first = handle(NGPY_OFFER, t0, &mut cache);
    let again = handle(NGPY_OFFER, t0 + Duration::from_millis(500), &mut cache);
    assert_eq!(first, again);
    let other = handle(NGPY_ANSWER, t0 + Duration::from_millis(600), &mut cache);
    assert_ne!(first, other);
    // After the ttl the request is new again.
    let late = handle(NGPY_OFFER, t0 + Duration::from_secs(31), &mut cache);
    assert_ne!(first, late);
    assert_eq!(runs, 3);
}

/// Seeded mutations of every fixture (and pure noise): decode never panics, and every refusal
/// with a cookie yields a reply our own decoder reads back as `result: error`.
#[test]
fn hostile_datagrams_never_panic() {
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let seeds = [
        NGPY_PING,
        NGPY_OFFER,
        NGPY_ANSWER,
        KAM_OFFER,
        KAM_ANSWER,
        KAM_DELETE,
        br#"1 {"command":"play DTMF","call-id":"x","code":"1"}"#,
    ];
    let limits = Limits::default();
    let (mut ok, mut replied, mut dropped) = (0, 0, 0);
    for i in 0..100_000u32 {
        let buf: Vec<u8> = if i % 10 == 0 {
            (0..next() % 200).map(|_| next() as u8).collect()
        } else {
            let mut b = seeds[(next() % seeds.len() as u64) as usize].to_vec();
            for _ in 0..1 + next() % 4 {
                if b.is_empty() {
                    break;
                }
                let at = (next() as usize) % b.len();
                match next() % 4 {
                    0 => b[at] = next() as u8,
                    1 => b.truncate(at),
                    2 => b.insert(at, b"0123456789:ilde {}[]\","[(next() % 22) as usize]),
                    _ => {
                        b.remove(at);
                    }
                }
            }
            b
        };
        match ng::decode(&buf, &limits) {
            Ok(_) => ok += 1,
            Err(e) => match e.reply() {
                Reply::Send(reply) => {
                    replied += 1;
                    let (_, body) = ng::split_cookie(&reply).expect("reply has a cookie");
                    let (_, dict) = ng::decode_body(body, &limits);
                    let dict = dict.expect("reply decodes");
                    assert_eq!(dict.get("result"), Some(&Value::from("error")));
                }
                Reply::Drop(_) => dropped += 1,
            },
        }
    }
    assert!(
        ok > 1000 && replied > 1000 && dropped > 100,
        "{ok} {replied} {dropped}"
    );
}

/// Finds `shared/bench/ng.py` above the crate (the worktree depth varies).
fn ng_py() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NG_PY") {
        return Some(PathBuf::from(p));
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/bench/ng.py"))
        .find(|p| p.is_file())
}

/// Runs the real ng.py (ping, then two calls) against a UDP listener answering with this codec,
/// and checks its datagrams byte for byte against the fixtures' shape and that it accepts the
/// replies. Skipped, loudly, where python3 or ng.py is missing.
#[test]
fn live_ngpy_against_the_codec() {
    let Some(script) = ng_py() else {
        eprintln!("skipped: shared/bench/ng.py not found (set NG_PY)");
        return;
    };
    if Process::new("python3").arg("-V").output().is_err() {
        eprintln!("skipped: no python3");
        return;
    }
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let addr = sock.local_addr().expect("addr");
    let limits = Limits::default();

    // Serves `n` requests, answering offers and answers with SDP on a made-up relay port.
    let serve = |n: usize| -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 65_535];
        for i in 0..n {
            let (len, from) = sock.recv_from(&mut buf).expect("ng.py sent nothing");
            let d = buf[..len].to_vec();
            let req = ng::decode(&d, &limits).expect("ng.py's request decodes");
            let resp = match req.command {
                Command::Ping => Response::pong(),
                Command::Offer | Command::Answer => {
                    Response::ok().with_sdp(ngpy_sdp(40_000 + 2 * i as u16, 7))
                }
                _ => Response::error(&ErrorReason::UnknownCommand),
            };
            sock.send_to(&req.reply(&resp), from).expect("send");
            seen.push(d);
        }
        seen
    };

    let ping = Process::new("python3")
        .arg(&script)
        .arg(addr.to_string())
        .arg("0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ng.py");
    let seen = serve(1);
    let out = ping.wait_with_output().expect("ng.py ping");
    assert!(out.status.success());
    let pid = ping_pid(&seen[0]);
    assert_eq!(seen[0], format!("{pid}_0 d7:command4:pinge").into_bytes());

    let calls = Process::new("python3")
        .arg(&script)
        .arg(addr.to_string())
        .arg("2")
        .arg("20000")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn ng.py");
    let seen = serve(4);
    let out = calls.wait_with_output().expect("ng.py calls");
    assert!(out.status.success(), "ng.py failed: {out:?}");
    let pid = ping_pid(&seen[0]);
    // Call 1 (requests 3 and 4) is exactly the fixtures, but for the pid in the cookie.
    let fix = |f: &[u8], seq: u32| {
        let mut v = format!("{pid}_{seq} ").into_bytes();
        v.extend_from_slice(body(f));
        v
    };
    assert_eq!(seen[2], fix(NGPY_OFFER, 3));
    assert_eq!(seen[3], fix(NGPY_ANSWER, 4));
    // It read our relay ports back: "a_port relay_a_port b_port relay_b_port" per call.
    let stdout = String::from_utf8(out.stdout).expect("utf-8");
    assert_eq!(stdout, "20000 40002 20002 40000\n20004 40006 20006 40004\n");
}

fn ping_pid(d: &[u8]) -> String {
    let (cookie, _) = ng::split_cookie(d).expect("cookie");
    let cookie = std::str::from_utf8(cookie).expect("ascii cookie");
    cookie.split('_').next().expect("pid").to_owned()
}
