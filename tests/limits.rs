//! Access limits of `dialplane serve` over real sockets: the per-source rate limit on new
//! requests, the registrar's brute-force throttling, per-carrier call limits, and the
//! redaction of numbers, URIs and addresses in its logs.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use serde_json::json;

mod common;
use common::http::Receiver;
use common::serve::{
    CALLED, CALLING, HOOK_WAIT, Serve, callee, caller, config, dial, md5_authorization, ringing,
    sip_target,
};

fn serve(name: &str, toml: &str) -> Serve {
    let cfg = config(name, toml);
    // No call is placed: the app is never asked.
    let app = format!("http://127.0.0.1:{}/call", common::free_port());
    Serve::start(
        name,
        &["--config", cfg.to_str().unwrap(), "--app-url", &app],
    )
}

fn client(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// The next final response `s` receives (100 Trying skipped).
fn answer(s: &UdpSocket) -> String {
    let mut buf = [0u8; 8192];
    loop {
        let n = s.recv(&mut buf).expect("an answer in time");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            return text;
        }
    }
}

fn status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {answer}"))
}

/// A REGISTER for `user`@127.0.0.1 from `s` (Call-ID per user and socket), with an optional
/// Authorization value.
fn register(s: &UdpSocket, to: SocketAddr, user: &str, cseq: u32, auth: Option<&str>) -> String {
    let local = s.local_addr().expect("addr");
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let request = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{user}-{cseq};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@127.0.0.1>;tag=t{cseq}\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: reg-{user}-{}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@{local}>\r\n\
         Expires: 300\r\n{auth}Content-Length: 0\r\n\r\n",
        local.port()
    );
    s.send_to(request.as_bytes(), to).expect("send");
    answer(s)
}

/// One REGISTER round with `password` (challenge, then the answer); the final status.
fn attempt(s: &UdpSocket, to: SocketAddr, user: &str, password: &str, cseq: u32) -> u16 {
    let first = register(s, to, user, cseq, None);
    if status(&first) != 401 {
        return status(&first);
    }
    let auth = md5_authorization(&first, user, password);
    status(&register(s, to, user, cseq + 1, Some(&auth)))
}

#[test]
fn wrong_passwords_lock_out_the_source_and_the_user_and_success_resets() {
    let serve = serve(
        "throttle",
        "[registrar]\ndomain = \"127.0.0.1\"\n\
         users = [{ name = \"alice\", password = \"alice-secret\" }, \
                  { name = \"bob\", password = \"bob-secret\" }, \
                  { name = \"carol\", password = \"carol-secret\" }]\n\
         max_auth_failures = 3\nauth_window_s = 60\nauth_lockout_s = 300\n",
    );
    let guesser = client("127.0.0.1");
    for (i, guess) in ["123456", "password", "alice"].iter().enumerate() {
        let cseq = 10 * i as u32 + 1;
        assert_eq!(attempt(&guesser, serve.sip, "alice", guess, cseq), 401);
    }
    // Locked out: even the right password from that source, or another user, gets 403.
    assert_eq!(
        attempt(&guesser, serve.sip, "alice", "alice-secret", 100),
        403
    );
    assert_eq!(
        attempt(&guesser, serve.sip, "carol", "carol-secret", 110),
        403
    );
    // The username is locked from anywhere; other users elsewhere are served.
    let elsewhere = client("127.0.0.2");
    assert_eq!(
        attempt(&elsewhere, serve.sip, "alice", "alice-secret", 1),
        403
    );
    assert_eq!(
        attempt(&elsewhere, serve.sip, "carol", "carol-secret", 10),
        200
    );
    // A success resets the count: two failures, a success, two failures: still no lockout.
    let bob = client("127.0.0.3");
    let mut cseq = 1;
    for password in ["x", "y", "bob-secret", "z", "w"] {
        let expected = if password == "bob-secret" { 200 } else { 401 };
        assert_eq!(attempt(&bob, serve.sip, "bob", password, cseq), expected);
        cseq += 10;
    }
    assert_eq!(attempt(&bob, serve.sip, "bob", "bob-secret", cseq), 200);
    assert_eq!(
        serve.metric("dialplane_auth_lockouts_total{by=\"source\"}"),
        1.0
    );
    assert_eq!(
        serve.metric("dialplane_auth_lockouts_total{by=\"user\"}"),
        1.0
    );
    assert_eq!(serve.metric("dialplane_auth_throttled_total"), 3.0);
}

/// An OPTIONS outside any dialog (`to_tag` None) or inside one.
fn options(s: &UdpSocket, to: SocketAddr, branch: &str, to_tag: Option<&str>) {
    let local = s.local_addr().expect("addr");
    let tag = to_tag.map_or(String::new(), |t| format!(";tag={t}"));
    let request = format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:dialplane@127.0.0.1>{tag}\r\n\
         Call-ID: {branch}@limits\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    s.send_to(request.as_bytes(), to).expect("send");
}

#[test]
fn new_requests_beyond_the_rate_get_503_then_silence_per_source() {
    let serve = serve(
        "rate",
        "[sip]\nrate_limit = { requests_per_s = 5, burst = 10 }\n",
    );
    let flood = client("127.0.0.1");
    const SENT: usize = 40;
    for i in 0..SENT {
        options(&flood, serve.sip, &format!("flood-{i}"), None);
    }
    // Wait (bounded) until every request is judged, then read the answers that exist.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (refused, dropped) = loop {
        let text = serve.metrics();
        let m = |s: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(s)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0) as usize
        };
        let received = m("dialplane_sip_received_total{transport=\"UDP\"}");
        let judged = (
            m("dialplane_sip_rate_limited_total{action=\"503\"}"),
            m("dialplane_sip_rate_limited_total{action=\"drop\"}"),
        );
        if received >= SENT {
            break judged;
        }
        assert!(std::time::Instant::now() < deadline, "{received} received");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut ok = 0;
    for _ in 0..SENT - dropped {
        match status(&answer(&flood)) {
            200 => ok += 1,
            503 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        ok + refused + dropped,
        SENT,
        "ok {ok}, 503 {refused}, dropped {dropped}"
    );
    assert!(
        ok >= 10 && refused >= 10 && dropped > 0,
        "ok {ok}, 503 {refused}, dropped {dropped}"
    );
    // In-dialog requests from the exhausted source are not limited (no such dialog: 481).
    for i in 0..20 {
        options(&flood, serve.sip, &format!("in-dialog-{i}"), Some("ours"));
        assert_eq!(status(&answer(&flood)), 481, "in-dialog request {i}");
    }
    // Another source has its own bucket.
    let other = client("127.0.0.2");
    options(&other, serve.sip, "other", None);
    assert_eq!(status(&answer(&other)), 200);
}

/// A dial of two numbers through carrier `acme` and of `other`'s user bob.
fn carrier_app(other: &str) -> serde_json::Value {
    let phone = |n: &str| json!({"type": "phone", "number": n, "trunk": "acme"});
    dial(
        &[
            phone("16175550100"),
            phone("16175550111"),
            sip_target(other),
        ],
        json!({"actionHook": "/action"}),
    )
}

#[test]
fn a_carrier_at_its_limit_fails_the_fork_with_503_and_the_slot_comes_back() {
    // The carrier's gateway rings for the first fork; the second, to the same carrier, is over
    // max_concurrent_calls and fails at once; bob answers, so the gateway's fork is cancelled.
    let mut gw = ringing("gw", 1);
    let mut bob = callee("bob", "answer", 1, 50, &[]);
    let cfg = config(
        "carrier-limit",
        &format!(
            "[[carriers]]\nname = \"acme\"\ncountry_code = \"1\"\nnational_prefix = \"1\"\n\
             gateways = [\"sip:127.0.0.1:{}\"]\nprobe_interval_s = 0\nmax_concurrent_calls = 1\n",
            gw.port
        ),
    );
    let hooks = Receiver::start();
    hooks.answer("/call", &carrier_app(&bob.uri("bob")));
    let serve = Serve::start(
        "carrier-limit",
        &[
            "--app-url",
            &hooks.url("/call"),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    // The caller is answered at once (no answerOnBridge): it holds past bob's answer.
    let mut alice = caller(&serve, "call", 1000);
    serve.finish(&mut [&mut alice, &mut gw, &mut bob]);
    let invites: Vec<String> = gw
        .log()
        .into_iter()
        .filter(|l| l.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 1, "{invites:?}");
    let action = hooks.wait("/action", "actionHook", HOOK_WAIT, |h| !h.is_empty());
    assert_eq!(
        action[0].json["dial_call_status"], "completed",
        "{}",
        action[0].body
    );
    let limited = "dialplane_carrier_limited_total{carrier=\"acme\",direction=\"outbound\",limit=\"concurrent\"}";
    assert_eq!(serve.metric(limited), 1.0, "{}", serve.metrics());
    // The cancelled fork gave its slot back.
    serve.wait_idle();
    assert_eq!(
        serve.metric("dialplane_carrier_active_calls{carrier=\"acme\"}"),
        0.0
    );
}

#[test]
fn an_inbound_call_from_a_carrier_at_its_limit_gets_503() {
    // Every call from loopback is acme's, one at a time; a held call takes the only slot.
    let mut bob = callee("bob-in", "answer", 1, 50, &[]);
    let cfg = config(
        "carrier-inbound",
        "[[carriers]]\nname = \"acme\"\ninbound = [\"127.0.0.0/8\"]\nmax_concurrent_calls = 1\n",
    );
    let hooks = Receiver::start();
    hooks.answer("/call", &dial(&[sip_target(&bob.uri("bob"))], json!({})));
    let serve = Serve::start(
        "carrier-inbound",
        &[
            "--app-url",
            &hooks.url("/call"),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let mut first = caller(&serve, "call", 3000);
    // While the first call is up, a second INVITE from acme gets 503.
    let deadline = std::time::Instant::now() + HOOK_WAIT;
    while serve.metric("dialplane_carrier_active_calls{carrier=\"acme\"}") < 1.0 {
        assert!(std::time::Instant::now() < deadline, "{}", serve.log_tail());
        std::thread::sleep(Duration::from_millis(20));
    }
    let s = client("127.0.0.1");
    let local = s.local_addr().expect("addr");
    let invite = format!(
        "INVITE sip:{CALLED}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-second;rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{CALLING}@127.0.0.1>;tag=second\r\nTo: <sip:{CALLED}@127.0.0.1>\r\n\
         Call-ID: second@limits\r\nCSeq: 1 INVITE\r\nContact: <sip:{CALLING}@{local}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    s.send_to(invite.as_bytes(), serve.sip).expect("send");
    assert_eq!(status(&answer(&s)), 503);
    serve.finish(&mut [&mut first, &mut bob]);
    let limited = "dialplane_carrier_limited_total{carrier=\"acme\",direction=\"inbound\",limit=\"concurrent\"}";
    assert_eq!(serve.metric(limited), 1.0);
    // The refused call never started (the CPS counter), but is counted as failed.
    assert_eq!(serve.metric("dialplane_calls_started_total"), 1.0);
    assert_eq!(
        serve.metric("dialplane_calls_total{status=\"failed\"}"),
        1.0
    );
    serve.wait_idle();
    assert_eq!(
        serve.metric("dialplane_carrier_active_calls{carrier=\"acme\"}"),
        0.0
    );
}

const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                   m=audio 40998 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

/// The log of one call through `dialplane serve` logging as `rust_log`.
fn call_log(name: &str, rust_log: &str) -> (String, String) {
    let mut bob = callee(&format!("{name}-bob"), "answer", 1, 50, &[]);
    let hooks = Receiver::start();
    hooks.answer(
        "/call",
        &dial(
            &[sip_target(&bob.uri("bob"))],
            json!({"actionHook": "/action"}),
        ),
    );
    let serve = Serve::start_logging(name, &["--app-url", &hooks.url("/call")], rust_log);
    let mut alice = caller(&serve, "call", 100);
    serve.finish(&mut [&mut alice, &mut bob]);
    hooks.wait("/action", "actionHook", HOOK_WAIT, |h| !h.is_empty());
    serve.wait_idle();
    (serve.log_text(), bob.uri("bob"))
}

#[test]
fn logs_at_info_redact_numbers_uris_and_addresses_and_debug_shows_them() {
    let (info, bob) = call_log("redact-info", "info");
    for secret in [
        CALLED,
        CALLING,
        "127.0.0.1",
        bob.as_str(),
        common::serve::SECRET,
    ] {
        assert!(
            !info.contains(secret),
            "{secret:?} in the info log:\n{info}"
        );
    }
    // What is left is enough to follow the call.
    assert!(info.contains("16173***1212"), "{info}");
    assert!(info.contains("new call"), "{info}");
    let (debug, _) = call_log("redact-debug", "info,dialplane_signaling=debug");
    assert!(
        debug.contains(CALLED) && debug.contains("127.0.0.1"),
        "{debug}"
    );
}
