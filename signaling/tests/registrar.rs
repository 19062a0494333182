//! The registrar end to end through the codec: challenge, register, refresh, remove, query,
//! expiry over fake time, lookup order, refusals, hostile input; and OPTIONS answers

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dialplane_signaling::auth::{Challenge, ClientRequest, respond};
use dialplane_signaling::config::{RegistrarConfig, RegistrarUser};
use dialplane_signaling::message::{HeaderName, Message, NameAddr, Request, StatusCode};
use dialplane_signaling::options;
use dialplane_signaling::registrar::{MemoryStore, Registrar, RegistrationStore, Transport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DOMAIN: &str = "sip.example.com";

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs)
}

fn src() -> SocketAddr {
    "198.51.100.7:5062".parse().unwrap()
}

fn config() -> RegistrarConfig {
    RegistrarConfig {
        domain: DOMAIN.into(),
        users: vec![
            RegistrarUser {
                name: "alice".into(),
                password: "wonderland".into(),
            },
            RegistrarUser {
                name: "bob".into(),
                password: "builder".into(),
            },
        ],
        ..RegistrarConfig::default()
    }
}

fn registrar() -> Registrar<MemoryStore> {
    Registrar::new(&config(), b"test secret, long enough", MemoryStore::new())
}

/// A REGISTER for `user` with extra header lines (each ending in CRLF)
fn register_text(user: &str, call_id: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{call_id}{cseq}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{DOMAIN}>;tag=f{cseq}\r\n\
         To: <sip:{user}@{DOMAIN}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} REGISTER\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    )
}

fn parse(text: &str) -> Request {
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("not a request"),
    }
}

/// Answer the SHA-256 challenge of a 401 as `user`/`password`
fn authorization(
    res: &dialplane_signaling::message::Response,
    user: &str,
    password: &str,
) -> String {
    let www = res
        .headers
        .get(&HeaderName::WWW_AUTHENTICATE)
        .expect("a challenge");
    let ch = Challenge::parse(www).unwrap();
    respond(
        &ch,
        &ClientRequest {
            username: user,
            password,
            method: "REGISTER",
            uri: &format!("sip:{DOMAIN}"),
            nc: 1,
            cnonce: "0a4f113b",
        },
    )
    .unwrap()
    .to_string()
}

/// Challenge then authorized REGISTER; returns the final response
fn register(
    r: &mut Registrar<MemoryStore>,
    now: SystemTime,
    user: &str,
    call_id: &str,
    cseq: u32,
    extra: &str,
) -> dialplane_signaling::message::Response {
    let first = r.handle(
        now,
        &parse(&register_text(user, call_id, cseq, extra)),
        src(),
        Transport::Udp,
    );
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    let password = config()
        .users
        .iter()
        .find(|u| u.name == user)
        .map_or("nope".to_owned(), |u| u.password.clone());
    let auth = authorization(&first, user, &password);
    let extra = format!("{extra}Authorization: {auth}\r\n");
    r.handle(
        now,
        &parse(&register_text(user, call_id, cseq + 1, &extra)),
        src(),
        Transport::Udp,
    )
}

/// Sends alice's first REGISTER (Call-ID c1, CSeq 1, Contact <sip:a@h>) at time 0 and returns
/// the CSeq 2 retry that answers its challenge with `password`
fn answer_first_challenge(r: &mut Registrar<MemoryStore>, password: &str) -> Request {
    let req = parse(&register_text("alice", "c1", 1, "Contact: <sip:a@h>\r\n"));
    let first = r.handle(at(0), &req, src(), Transport::Udp);
    let auth = authorization(&first, "alice", password);
    parse(&register_text(
        "alice",
        "c1",
        2,
        &format!("Contact: <sip:a@h>\r\nAuthorization: {auth}\r\n"),
    ))
}

/// The contacts of a 200 with their `expires`
fn contacts(res: &dialplane_signaling::message::Response) -> Vec<(String, u64)> {
    res.headers
        .values(&HeaderName::CONTACT)
        .map(|v| {
            let na = NameAddr::parse("Contact", v).unwrap();
            let e = na.param("expires").flatten().unwrap().parse().unwrap();
            (na.uri.to_string(), e)
        })
        .collect()
}

#[test]
fn challenge_then_register() {
    let mut r = registrar();
    let first = r.handle(
        at(0),
        &parse(&register_text(
            "alice",
            "c1",
            1,
            "Contact: <sip:alice@10.0.0.5:5062>\r\n",
        )),
        src(),
        Transport::Udp,
    );
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    let challenges: Vec<_> = first
        .headers
        .get_all(&HeaderName::WWW_AUTHENTICATE)
        .collect();
    assert_eq!(challenges.len(), 2, "SHA-256 and MD5");
    assert!(challenges[0].contains("SHA-256") && challenges[1].contains("MD5"));
    assert!(
        first
            .headers
            .to()
            .unwrap()
            .tag()
            .is_some_and(|t| !t.is_empty())
    );

    let res = register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:alice@10.0.0.5:5062>\r\nPath: <sip:edge.example.com;lr>\r\n",
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(
        contacts(&res),
        [("sip:alice@10.0.0.5:5062".to_owned(), 3600)]
    );
    assert_eq!(
        res.headers.get(&HeaderName::PATH),
        Some("<sip:edge.example.com;lr>")
    );
    let b = r.lookup(at(10), "alice");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].source, src());
    assert_eq!(b[0].transport, Transport::Udp);
    assert_eq!(b[0].path, ["<sip:edge.example.com;lr>"]);
    assert_eq!(b[0].call_id, "c1");
    assert_eq!(b[0].cseq, 2);
    assert_eq!(b[0].aor, "sip:alice@sip.example.com");
    assert_eq!(r.store().len(), 1);
    // The response is a well-formed message.
    assert!(Message::parse(&res.to_bytes()).is_ok());
}

#[test]
fn wrong_password_is_challenged_again() {
    let mut r = registrar();
    let req = answer_first_challenge(&mut r, "guess");
    let res = r.handle(at(0), &req, src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(
        !res.headers
            .get(&HeaderName::WWW_AUTHENTICATE)
            .unwrap()
            .contains("stale=true")
    );
    assert!(r.store().is_empty());
    // Unknown user: challenged, nothing stored.
    let res = register(&mut r, at(0), "mallory", "c9", 1, "Contact: <sip:m@h>\r\n");
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert!(r.store().is_empty());
}

#[test]
fn stale_nonce_gets_stale_true() {
    let mut r = registrar();
    let req = answer_first_challenge(&mut r, "wonderland");
    // Past the default 5-minute nonce lifetime.
    let res = r.handle(at(301), &req, src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    let www = res.headers.get(&HeaderName::WWW_AUTHENTICATE).unwrap();
    assert!(Challenge::parse(www).unwrap().stale, "{www}");
    assert!(r.store().is_empty());
}

#[test]
fn too_brief_gets_423_with_min_expires() {
    let mut r = registrar();
    let res = register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h>\r\nExpires: 30\r\n",
    );
    assert_eq!(res.status, StatusCode::INTERVAL_TOO_BRIEF);
    assert_eq!(res.headers.get(&HeaderName::MIN_EXPIRES), Some("60"));
    assert!(r.store().is_empty());
    // The Contact parameter wins over the header.
    let res = register(
        &mut r,
        at(0),
        "alice",
        "c2",
        1,
        "Contact: <sip:a@h>;expires=59\r\nExpires: 600\r\n",
    );
    assert_eq!(res.status, StatusCode::INTERVAL_TOO_BRIEF);
}

#[test]
fn long_expiry_is_clamped_and_param_beats_header() {
    let mut r = registrar();
    let res = register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h>;expires=99999999999\r\nContact: <sip:b@h>\r\nExpires: 120\r\n",
    );
    assert_eq!(res.status, StatusCode::OK);
    let mut c = contacts(&res);
    c.sort();
    assert_eq!(
        c,
        [("sip:a@h".to_owned(), 3600), ("sip:b@h".to_owned(), 120)]
    );
}

#[test]
fn several_contacts_then_one_removed_then_star() {
    let mut r = registrar();
    let res = register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h1>, <sip:a@h2>;q=0.5\r\nContact: <sip:a@h3>;q=0.9\r\n",
    );
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(contacts(&res).len(), 3);
    assert_eq!(r.store().len(), 3);
    // Another device of alice's with its own Call-ID adds a fourth.
    let res = register(&mut r, at(5), "alice", "c2", 1, "Contact: <sip:a@h4>\r\n");
    assert_eq!(contacts(&res).len(), 4);
    // expires=0 on one contact removes it, the others stay (listed with remaining time).
    let res = register(
        &mut r,
        at(100),
        "alice",
        "c1",
        10,
        "Contact: <sip:a@h2>;expires=0\r\n",
    );
    assert_eq!(res.status, StatusCode::OK);
    let c = contacts(&res);
    assert_eq!(c.len(), 3);
    assert!(!c.iter().any(|(u, _)| u == "sip:a@h2"));
    assert!(c.contains(&("sip:a@h1".to_owned(), 3500)));
    assert!(c.contains(&("sip:a@h4".to_owned(), 3505)));
    // * with a non-zero Expires is refused, * without Expires too.
    for extra in ["Contact: *\r\nExpires: 10\r\n", "Contact: *\r\n"] {
        let res = register(&mut r, at(100), "alice", "c1", 20, extra);
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{extra}");
    }
    assert_eq!(r.store().len(), 3);
    // * with Expires: 0 removes them all.
    let res = register(
        &mut r,
        at(100),
        "alice",
        "c1",
        30,
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert_eq!(res.status, StatusCode::OK);
    assert!(contacts(&res).is_empty());
    assert!(r.store().is_empty());
}

#[test]
fn out_of_order_cseq_is_500() {
    let mut r = registrar();
    let res = register(&mut r, at(0), "alice", "c1", 10, "Contact: <sip:a@h>\r\n");
    assert_eq!(res.status, StatusCode::OK);
    // Stored CSeq is 11; 11 again (a replay) and 5 are out of order.
    for cseq in [10, 4] {
        let res = register(
            &mut r,
            at(1),
            "alice",
            "c1",
            cseq,
            "Contact: <sip:a@h>;expires=0\r\n",
        );
        assert_eq!(res.status, StatusCode::SERVER_INTERNAL_ERROR, "{cseq}");
    }
    let res = register(
        &mut r,
        at(1),
        "alice",
        "c1",
        3,
        "Contact: *\r\nExpires: 0\r\n",
    );
    assert_eq!(res.status, StatusCode::SERVER_INTERNAL_ERROR);
    assert_eq!(r.store().len(), 1);
    // Another Call-ID with any CSeq is fine.
    let res = register(&mut r, at(1), "alice", "c2", 1, "Contact: <sip:a@h>\r\n");
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(r.lookup(at(1), "alice")[0].call_id, "c2");
}

#[test]
fn query_lists_current_bindings() {
    let mut r = registrar();
    register(&mut r, at(0), "alice", "c1", 1, "Contact: <sip:a@h>\r\n");
    let res = register(&mut r, at(600), "alice", "q1", 1, "");
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(contacts(&res), [("sip:a@h".to_owned(), 3000)]);
    assert_eq!(r.store().len(), 1);
    // Bob has none.
    let res = register(&mut r, at(600), "bob", "q2", 1, "");
    assert_eq!(res.status, StatusCode::OK);
    assert!(contacts(&res).is_empty());
}

#[test]
fn bindings_expire_over_fake_time() {
    let mut r = registrar();
    register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h1>;expires=60\r\nContact: <sip:a@h2>;expires=600\r\n",
    );
    assert_eq!(r.lookup(at(59), "alice").len(), 2);
    assert_eq!(r.lookup(at(60), "alice").len(), 1);
    // A query at 100 no longer lists the lapsed one.
    let res = register(&mut r, at(100), "alice", "c1", 5, "");
    assert_eq!(contacts(&res), [("sip:a@h2".to_owned(), 500)]);
    assert_eq!(r.store().len(), 2, "kept until swept");
    assert_eq!(r.expire(at(100)), 1);
    assert_eq!(r.expire(at(600)), 1);
    assert!(r.store().is_empty());
    assert!(r.lookup(at(600), "alice").is_empty());
}

#[test]
fn lookup_orders_by_q_then_freshness() {
    let mut r = registrar();
    register(&mut r, at(0), "alice", "c1", 1, "Contact: <sip:old@h>\r\n");
    register(
        &mut r,
        at(10),
        "alice",
        "c2",
        1,
        "Contact: <sip:low@h>;q=0.1\r\n",
    );
    register(&mut r, at(20), "alice", "c3", 1, "Contact: <sip:new@h>\r\n");
    register(
        &mut r,
        at(30),
        "alice",
        "c4",
        1,
        "Contact: <sip:mid@h>;q=0.7\r\n",
    );
    let order: Vec<String> = r
        .lookup(at(40), "alice")
        .iter()
        .map(|b| b.contact.to_string())
        .collect();
    assert_eq!(order, ["sip:new@h", "sip:old@h", "sip:mid@h", "sip:low@h"]);
    assert_eq!(r.lookup(at(40), "alice")[3].q, Some(100));
}

#[test]
fn instance_id_replaces_the_old_contact() {
    let mut r = registrar();
    let inst = "+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1";
    register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        &format!("Contact: <sip:a@10.0.0.5>;{inst}\r\n"),
    );
    let res = register(
        &mut r,
        at(10),
        "alice",
        "c2",
        1,
        &format!("Contact: <sip:a@10.0.0.99>;{inst}\r\n"),
    );
    assert_eq!(contacts(&res), [("sip:a@10.0.0.99".to_owned(), 3600)]);
    let b = &r.lookup(at(10), "alice")[0];
    assert_eq!(
        b.instance.as_deref(),
        Some("\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"")
    );
    assert_eq!(b.reg_id, Some(1));
}

#[test]
fn to_user_must_be_the_authenticated_user() {
    let mut r = registrar();
    let text = register_text("bob", "c1", 1, "Contact: <sip:b@h>\r\n");
    let first = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    let auth = authorization(&first, "alice", "wonderland");
    let text = register_text(
        "bob",
        "c1",
        2,
        &format!("Contact: <sip:b@h>\r\nAuthorization: {auth}\r\n"),
    );
    let res = r.handle(at(0), &parse(&text), src(), Transport::Tcp);
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(r.store().is_empty());
}

#[test]
fn other_domains_are_404() {
    let mut r = registrar();
    let text = register_text("alice", "c1", 1, "Contact: <sip:a@h>\r\n")
        .replace("sip.example.com", "other.example.net");
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // Request-URI ours, To elsewhere.
    let text = register_text("alice", "c1", 1, "Contact: <sip:a@h>\r\n").replace(
        "To: <sip:alice@sip.example.com>",
        "To: <sip:alice@other.example.net>",
    );
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::NOT_FOUND);
    // No domain configured: everything is 404.
    let mut none = Registrar::new(
        &RegistrarConfig::default(),
        b"0123456789abcdef",
        MemoryStore::new(),
    );
    let text = register_text("alice", "c1", 1, "Contact: <sip:a@h>\r\n");
    let res = none.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[test]
fn other_methods_and_extensions() {
    let mut r = registrar();
    let text = register_text("alice", "c1", 1, "").replace("REGISTER", "OPTIONS");
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(res.headers.get(&HeaderName::ALLOW), Some("REGISTER"));
    let text = register_text("alice", "c1", 1, "Require: path, gruu\r\n");
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::BAD_EXTENSION);
    assert_eq!(res.headers.get(&HeaderName::UNSUPPORTED), Some("gruu"));
    let text = register_text("alice", "c1", 1, "Require: path\r\n");
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
}

#[test]
fn malformed_headers_are_400() {
    let mut r = registrar();
    // What the codec already refuses is its 400, before the registrar sees it.
    for extra in [
        "Contact: <sip:a@h\r\n",
        "Contact: *, <sip:a@h>\r\nExpires: 0\r\n",
        "Contact: <sip:a@h>\r\nExpires: 10\r\nExpires: 20\r\n",
    ] {
        let text = register_text("alice", "c1", 1, extra);
        let e = Message::parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.reply(), Some(StatusCode::BAD_REQUEST), "{extra}");
    }
    for extra in [
        "Contact: <sip:a@h>;expires=-5\r\n",
        "Contact: <sip:a@h>;expires=soon\r\n",
        "Contact: <sip:a@h>;expires\r\n",
        "Contact: <sip:a@h>;q=2\r\n",
        "Contact: <sip:a@h>;reg-id=x\r\n",
        "Contact: <sip:a@h>\r\nExpires: soon\r\n",
    ] {
        let res = register(&mut r, at(0), "alice", "c1", 1, extra);
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{extra}");
        assert!(res.headers.get(&HeaderName::WARNING).is_some());
    }
    assert!(r.store().is_empty());
    let text = register_text("alice", "c1", 1, "Authorization: Digest realm\r\n");
    let res = r.handle(at(0), &parse(&text), src(), Transport::Udp);
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
}

/// A valid authorized REGISTER, mutated at random: whatever parses gets a response and never a
/// panic; whatever succeeds leaves only sane bindings
#[test]
fn random_mutations_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed_4e61);
    let mut r = registrar();
    let first = r.handle(
        at(0),
        &parse(&register_text("alice", "c1", 1, "")),
        src(),
        Transport::Udp,
    );
    let auth = authorization(&first, "alice", "wonderland");
    let base = register_text(
        "alice",
        "c1",
        2,
        &format!(
            "Contact: \"A\" <sip:alice@10.0.0.5:5062;transport=tcp>;q=0.5;expires=600, \
             <sip:alice@[2001:db8::1]>\r\nExpires: 300\r\nPath: <sip:p@edge;lr>\r\n\
             Authorization: {auth}\r\n"
        ),
    );
    let alphabet = b"<>;=,:*\"@ \r\n0123456789qexpiresContact-";
    let (mut answered, mut ok) = (0, 0);
    for i in 0..20_000u32 {
        let mut bytes = base.clone().into_bytes();
        for _ in 0..rng.random_range(1..4) {
            let pos = rng.random_range(0..bytes.len());
            match rng.random_range(0..3) {
                0 => bytes[pos] = alphabet[rng.random_range(0..alphabet.len())],
                1 => {
                    bytes.remove(pos);
                }
                _ => bytes.insert(pos, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        let Ok(Message::Request(req)) = Message::parse(&bytes) else {
            continue;
        };
        let res = r.handle(at(u64::from(i % 200)), &req, src(), Transport::Udp);
        answered += 1;
        assert!(res.status.as_u16() >= 200, "a final response");
        if res.status == StatusCode::OK {
            ok += 1;
        }
        for b in r.lookup(at(0), "alice") {
            assert!(b.remaining(at(0)) <= 3600 + 200);
        }
    }
    assert!(answered > 1000, "{answered}");
    assert!(ok > 0, "some mutations still register");
}

#[test]
fn options_answer() {
    let req = parse(
        "OPTIONS sip:sbc.example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKopt1\r\n\
         Max-Forwards: 0\r\n\
         From: <sip:ping@carrier.example>;tag=abc\r\n\
         To: <sip:sbc.example.com>\r\n\
         Call-ID: ka1\r\n\
         CSeq: 7 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
    );
    let res = options::respond(&req, options::DEFAULT_ALLOW, options::DEFAULT_SUPPORTED);
    assert_eq!(res.status, StatusCode::OK);
    let allow = res.headers.get(&HeaderName::ALLOW).unwrap();
    for m in [
        "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "PRACK", "UPDATE",
    ] {
        assert!(allow.contains(m), "{allow}");
    }
    assert_eq!(
        res.headers.get(&HeaderName::ACCEPT),
        Some("application/sdp")
    );
    assert_eq!(
        res.headers.get(&HeaderName::SUPPORTED),
        Some("100rel, timer, replaces")
    );
    assert!(res.body.is_empty());
    assert_eq!(res.headers.get(&HeaderName::CALL_ID), Some("ka1"));
    assert_eq!(res.headers.get(&HeaderName::CSEQ), Some("7 OPTIONS"));
    let tag = res.headers.to().unwrap().tag().unwrap().to_owned();
    // A retransmission gets the same tag.
    let again = options::respond(&req, options::DEFAULT_ALLOW, &[]);
    assert_eq!(again.headers.to().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(again.headers.get(&HeaderName::SUPPORTED), None);
    let text = String::from_utf8(res.to_bytes()).unwrap();
    assert!(text.contains("Content-Length: 0\r\n"), "{text}");
}

#[test]
fn outcomes_and_bindings_are_metered() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    use std::collections::HashMap;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || {
        let mut r = registrar();
        // challenged, then ok
        register(
            &mut r,
            at(0),
            "alice",
            "c1",
            1,
            "Contact: <sip:a@h1>, <sip:a@h2>\r\n",
        );
        // challenged, then rejected (423)
        register(
            &mut r,
            at(0),
            "alice",
            "c2",
            1,
            "Contact: <sip:a@h3>;expires=5\r\n",
        );
    });
    let values: HashMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let v = match value {
                DebugValue::Counter(n) => n as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(_) => f64::NAN,
            };
            (format!("{}{{{}}}", key.name(), labels.join(",")), v)
        })
        .collect();
    let get = |k: &str| values.get(k).copied();
    assert_eq!(
        get("dialplane_sip_registrations_total{result=challenged}"),
        Some(2.0),
        "{values:?}"
    );
    assert_eq!(
        get("dialplane_sip_registrations_total{result=ok}"),
        Some(1.0)
    );
    assert_eq!(
        get("dialplane_sip_registrations_total{result=rejected}"),
        Some(1.0)
    );
    assert_eq!(get("dialplane_registrar_bindings{}"), Some(2.0));
}

#[test]
fn refresh_with_same_call_id_updates_the_binding() {
    let mut r = registrar();
    register(
        &mut r,
        at(0),
        "alice",
        "c1",
        1,
        "Contact: <sip:a@h>;expires=600\r\n",
    );
    // The phone refreshes over TCP from another port (NAT rebinding), same Call-ID, CSeq up.
    let text = register_text("alice", "c1", 3, "Contact: <sip:a@h>;expires=600\r\n");
    let first = r.handle(at(500), &parse(&text), src(), Transport::Tcp);
    let auth = authorization(&first, "alice", "wonderland");
    let text = register_text(
        "alice",
        "c1",
        4,
        &format!("Contact: <sip:a@h>;expires=600\r\nAuthorization: {auth}\r\n"),
    );
    let moved: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let res = r.handle(at(500), &parse(&text), moved, Transport::Tcp);
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(contacts(&res), [("sip:a@h".to_owned(), 600)]);
    let b = r.lookup(at(1000), "alice");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].source, b[0].transport, b[0].cseq),
        (moved, Transport::Tcp, 4)
    );
    assert_eq!(b[0].updated_at, at(500));
}

/// A configuration reload: new passwords and users apply to the next REGISTER, while the
/// bindings made before stay.
#[test]
fn reconfigure_changes_users_and_keeps_bindings() {
    let mut r = registrar();
    let res = register(&mut r, at(0), "alice", "c1", 1, "Contact: <sip:a@h>\r\n");
    assert_eq!(res.status, StatusCode::OK);
    let mut new = config();
    new.users = vec![RegistrarUser {
        name: "alice".into(),
        password: "looking-glass".into(),
    }];
    r.reconfigure(&new, b"test secret, long enough");
    assert_eq!(r.lookup(at(1), "alice").len(), 1, "the binding stays");
    let attempt = |r: &mut Registrar<MemoryStore>, user: &str, password: &str, call_id: &str| {
        let contact = "Contact: <sip:a@h>\r\n";
        let first = r.handle(
            at(2),
            &parse(&register_text(user, call_id, 1, contact)),
            src(),
            Transport::Udp,
        );
        let auth = authorization(&first, user, password);
        let retry = register_text(
            user,
            call_id,
            2,
            &format!("{contact}Authorization: {auth}\r\n"),
        );
        r.handle(at(2), &parse(&retry), src(), Transport::Udp)
            .status
    };
    assert_eq!(
        attempt(&mut r, "alice", "wonderland", "c2"),
        StatusCode::UNAUTHORIZED,
        "the old password no longer works"
    );
    assert_eq!(
        attempt(&mut r, "alice", "looking-glass", "c3"),
        StatusCode::OK
    );
    assert_eq!(
        attempt(&mut r, "bob", "builder", "c4"),
        StatusCode::UNAUTHORIZED,
        "bob was removed"
    );
}
