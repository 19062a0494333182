//! Digest authentication: RFC test vectors, client → server round trips, stale and tampered
//! nonces, hostile header values

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dialplane_signaling::auth::{
    Algorithm, AuthError, AuthHeader, Challenge, ClientRequest, Credentials, DigestServer, Verdict,
    cnonce_from_bytes, respond,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// RFC 2617 §3.5: the challenge and the credentials, response as published
#[test]
fn rfc2617_example() {
    let challenge = Challenge::parse(
        "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(challenge.realm, "testrealm@host.com");
    assert_eq!(challenge.qop, ["auth", "auth-int"]);
    assert_eq!(challenge.algorithm(), Algorithm::MD5);
    let creds = respond(
        &challenge,
        &ClientRequest {
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nc: 1,
            cnonce: "0a4f113b",
        },
    )
    .unwrap();
    assert_eq!(creds.response, "6629fae49393a05397450978507c4ef1");
    assert_eq!(creds.qop.as_deref(), Some("auth"));
    assert_eq!(creds.nc, Some(1));
    assert_eq!(
        creds.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
    let written = creds.to_string();
    assert!(written.contains("nc=00000001"), "{written}");
    assert!(written.contains("qop=auth,"), "{written}");
    assert_eq!(Credentials::parse(&written).unwrap(), creds);

    // The published Authorization value parses to the same thing.
    let published = Credentials::parse(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
         nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(published, creds);
}

const RFC7616_CHALLENGE_SHA256: &str = "Digest\r\n    realm=\"http-auth@example.org\",\r\n    \
    qop=\"auth, auth-int\",\r\n    algorithm=SHA-256,\r\n    \
    nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\",\r\n    \
    opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

fn rfc7616_request() -> ClientRequest<'static> {
    ClientRequest {
        username: "Mufasa",
        password: "Circle of Life",
        method: "GET",
        uri: "/dir/index.html",
        nc: 1,
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    }
}

/// RFC 7616 §3.9.1: SHA-256 and MD5 responses as published
#[test]
fn rfc7616_example() {
    let sha = Challenge::parse(RFC7616_CHALLENGE_SHA256).unwrap();
    assert_eq!(sha.algorithm(), Algorithm::SHA_256);
    assert_eq!(sha.qop, ["auth", "auth-int"]);
    let creds = respond(&sha, &rfc7616_request()).unwrap();
    assert_eq!(
        creds.response,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    assert!(creds.to_string().contains("algorithm=SHA-256"));

    let md5 = Challenge::parse(&RFC7616_CHALLENGE_SHA256.replace("SHA-256", "MD5")).unwrap();
    let creds = respond(&md5, &rfc7616_request()).unwrap();
    assert_eq!(creds.response, "8ca523f5e9506fed4657c9700eebdbec");
}

#[test]
fn challenge_round_trips_and_names_are_case_insensitive() {
    let c = Challenge::parse(
        "digest REALM=\"a \\\"quoted\\\" realm\",NONCE=abc, Stale=TRUE, ALGORITHM=md5-SESS, \
         qop=\"auth\", x-ext=\"keep me\", y=1",
    )
    .unwrap();
    assert_eq!(c.realm, "a \"quoted\" realm");
    assert_eq!(c.nonce, "abc");
    assert!(c.stale);
    assert_eq!(c.algorithm(), Algorithm::MD5_SESS);
    assert_eq!(c.other.len(), 2);
    let again = Challenge::parse(&c.to_string()).unwrap();
    assert_eq!(again, c);
    assert!(c.to_string().contains(r#"realm="a \"quoted\" realm""#));
    assert!(c.to_string().contains("stale=true"));
    assert!(c.to_string().contains(r#"x-ext="keep me", y=1"#));
}

#[test]
fn client_without_qop_and_with_auth_int_only() {
    let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\"").unwrap();
    let req = ClientRequest {
        username: "u",
        password: "p",
        method: "REGISTER",
        uri: "sip:example.com",
        nc: 1,
        cnonce: "c",
    };
    let creds = respond(&c, &req).unwrap();
    assert_eq!(creds.qop, None);
    assert_eq!(creds.nc, None);
    assert_eq!(creds.cnonce, None);
    assert_eq!(creds.response.len(), 32);

    let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"").unwrap();
    assert!(matches!(
        respond(&c, &req),
        Err(AuthError::UnsupportedQop(_))
    ));
    let c = Challenge::parse("Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256").unwrap();
    assert!(matches!(
        respond(&c, &req),
        Err(AuthError::UnsupportedAlgorithm(_))
    ));
}

fn users(name: &str) -> Option<String> {
    (name == "alice").then(|| "s3cret".to_owned())
}

fn client(challenge: &Challenge, password: &str, nc: u32) -> Credentials {
    respond(
        challenge,
        &ClientRequest {
            username: "alice",
            password,
            method: "REGISTER",
            uri: "sip:dialplane.example",
            nc,
            cnonce: &cnonce_from_bytes(&[7, 1, 2, 3, 4, 5, 6, 7]),
        },
    )
    .unwrap()
}

const T0: u64 = 1_790_000_000;

#[test]
fn round_trip_each_algorithm_across_instances() {
    let a = DigestServer::new("dialplane.example", b"shared secret".to_vec());
    let b = DigestServer::new("dialplane.example", b"shared secret".to_vec());
    for alg in [
        Algorithm::MD5,
        Algorithm::MD5_SESS,
        Algorithm::SHA_256,
        Algorithm::SHA_256_SESS,
    ] {
        let challenge = a.challenge(at(T0), alg.clone(), false);
        // Over the wire and back.
        let challenge = Challenge::parse(&challenge.to_string()).unwrap();
        let header = client(&challenge, "s3cret", 1).to_string();
        // The retry lands on the other instance, a little later.
        match b.verify_header(&header, "REGISTER", at(T0 + 10), users) {
            Verdict::Ok(who) => {
                assert_eq!(who.username(), "alice");
                assert_eq!(who.realm(), "dialplane.example");
            }
            other => panic!("{alg}: {other:?}"),
        }
        // Wrong method (the response covers it).
        assert_eq!(
            b.verify_header(&header, "INVITE", at(T0 + 10), users),
            Verdict::BadResponse,
            "{alg}"
        );
        // Wrong password.
        let bad = client(&challenge, "guess", 1);
        assert_eq!(
            b.verify(&bad, "REGISTER", at(T0 + 10), users),
            Verdict::BadResponse
        );
    }
}

#[test]
fn stale_after_lifetime_then_fresh_challenge_works() {
    let server =
        DigestServer::new("r.example", b"k".to_vec()).with_nonce_lifetime(Duration::from_secs(60));
    let challenge = server.challenge(at(T0), Algorithm::SHA_256, false);
    let creds = client(&challenge, "s3cret", 1);
    assert!(matches!(
        server.verify(&creds, "REGISTER", at(T0 + 60), users),
        Verdict::Ok(_)
    ));
    assert_eq!(
        server.verify(&creds, "REGISTER", at(T0 + 61), users),
        Verdict::Stale
    );
    // A wrong password with a stale nonce is not "stale": the user must not be retried silently.
    let bad = client(&challenge, "nope", 1);
    assert_eq!(
        server.verify(&bad, "REGISTER", at(T0 + 61), users),
        Verdict::BadResponse
    );
    let again = server.challenge(at(T0 + 61), Algorithm::SHA_256, true);
    assert!(again.to_string().contains("stale=true"));
    let parsed = Challenge::parse(&again.to_string()).unwrap();
    assert!(parsed.stale);
    let creds = client(&parsed, "s3cret", 1);
    assert!(matches!(
        server.verify(&creds, "REGISTER", at(T0 + 62), users),
        Verdict::Ok(_)
    ));
}

#[test]
fn nonce_from_the_future_is_rejected() {
    let server = DigestServer::new("r.example", b"k".to_vec());
    let challenge = server.challenge(at(T0 + 3600), Algorithm::MD5, false);
    let creds = client(&challenge, "s3cret", 1);
    assert_eq!(
        server.verify(&creds, "REGISTER", at(T0), users),
        Verdict::BadNonce
    );
    // Within the skew it is fine.
    let challenge = server.challenge(at(T0 + 20), Algorithm::MD5, false);
    let creds = client(&challenge, "s3cret", 1);
    assert!(matches!(
        server.verify(&creds, "REGISTER", at(T0), users),
        Verdict::Ok(_)
    ));
}

#[test]
fn tampering_is_rejected() {
    let server = DigestServer::new("r.example", b"k".to_vec());
    let challenge = server.challenge(at(T0), Algorithm::MD5, false);
    let good = client(&challenge, "s3cret", 1);

    // Nonce time pushed forward to dodge expiry: the MAC no longer matches.
    let mut t = good.clone();
    let later = format!("{:016x}", T0 + 1000);
    t.nonce.replace_range(..16, &later);
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadNonce
    );
    // One flipped MAC digit.
    let mut t = good.clone();
    let last = if t.nonce.ends_with('0') { "1" } else { "0" };
    t.nonce.replace_range(t.nonce.len() - 1.., last);
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadNonce
    );
    // Garbage nonces.
    for nonce in ["", "zz", &"0".repeat(80), &"é".repeat(40)] {
        let mut t = good.clone();
        t.nonce = nonce.to_owned();
        assert_eq!(
            server.verify(&t, "REGISTER", at(T0), users),
            Verdict::BadNonce
        );
    }
    // A different secret (another deployment).
    let other = DigestServer::new("r.example", b"other".to_vec());
    assert_eq!(
        other.verify(&good, "REGISTER", at(T0), users),
        Verdict::BadNonce
    );
    // Another realm's nonce, even with our secret.
    let realm2 = DigestServer::new("r2.example", b"k".to_vec());
    let c2 = realm2.challenge(at(T0), Algorithm::MD5, false);
    let mut t = client(&c2, "s3cret", 1);
    t.realm = "r.example".into();
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadNonce
    );
    // Realm changed.
    let mut t = good.clone();
    t.realm = "evil.example".into();
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::WrongRealm
    );
    // Response changed, uri changed, nc replayed with a different value.
    let mut t = good.clone();
    t.response.replace_range(
        ..1,
        if t.response.starts_with('a') {
            "b"
        } else {
            "a"
        },
    );
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadResponse
    );
    let mut t = good.clone();
    t.uri = "sip:other.example".into();
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadResponse
    );
    let mut t = good.clone();
    t.nc = Some(2);
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::BadResponse
    );
    // Upper-case hex response is accepted.
    let mut t = good.clone();
    t.response = t.response.to_ascii_uppercase();
    assert!(matches!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::Ok(_)
    ));
    // Unknown user, algorithm not accepted, qop not implemented.
    let mut t = good.clone();
    t.username = "mallory".into();
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::UnknownUser
    );
    let md5_off = server.clone().with_algorithms(vec![Algorithm::SHA_256]);
    assert_eq!(
        md5_off.verify(&good, "REGISTER", at(T0), users),
        Verdict::UnsupportedAlgorithm
    );
    let mut t = good.clone();
    t.qop = Some("auth-int".into());
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::UnsupportedQop
    );
    let mut t = good;
    t.cnonce = None;
    assert_eq!(
        server.verify(&t, "REGISTER", at(T0), users),
        Verdict::UnsupportedQop
    );
}

#[test]
fn malformed_headers_are_typed_errors() {
    type Check = fn(&AuthError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| *e == AuthError::Empty),
        ("   ", |e| *e == AuthError::Empty),
        ("Basic realm=\"x\"", |e| {
            matches!(e, AuthError::NotDigest(_))
        }),
        ("Digest realm=\"x", |e| {
            matches!(e, AuthError::Syntax { .. })
        }),
        ("Digest realm=\"x\\", |e| {
            matches!(e, AuthError::Syntax { .. })
        }),
        ("Digest realm", |e| matches!(e, AuthError::Syntax { .. })),
        ("Digest =x", |e| matches!(e, AuthError::Syntax { .. })),
        ("Digest realm=", |e| matches!(e, AuthError::Syntax { .. })),
        ("Digest realm=\"a\" nonce=\"b\"", |e| {
            matches!(e, AuthError::Syntax { .. })
        }),
        ("Digest,realm=a", |e| matches!(e, AuthError::Syntax { .. })),
        ("Digest realm=a, realm=b, nonce=c", |e| {
            matches!(e, AuthError::Duplicate(_))
        }),
        ("Digest nonce=c", |e| *e == AuthError::Missing("realm")),
        ("Digest realm=a, nonce=c, stale=maybe", |e| {
            *e == AuthError::BadParam("stale")
        }),
    ];
    for (value, check) in cases {
        let e = Challenge::parse(value).unwrap_err();
        assert!(check(&e), "{value:?}: {e:?}");
    }
    let base = "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"00\"";
    assert!(Credentials::parse(base).is_ok());
    for nc in ["nc=1", "nc=0000000g", "nc=000000001", "nc=\"\""] {
        assert_eq!(
            Credentials::parse(&format!("{base}, {nc}")).unwrap_err(),
            AuthError::BadParam("nc"),
            "{nc}"
        );
    }
    assert_eq!(
        Credentials::parse("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\"")
            .unwrap_err(),
        AuthError::Missing("response")
    );
    let server = DigestServer::new("r", b"k".to_vec());
    assert!(matches!(
        server.verify_header("Digest username=", "REGISTER", at(T0), users),
        Verdict::Malformed(_)
    ));
}

#[test]
fn empty_list_elements_and_unicode_are_tolerated() {
    let h = AuthHeader::parse("Digest , realm=\"réalm ☎\",, nonce=x ,").unwrap();
    assert_eq!(h.get("REALM"), Some("réalm ☎"));
    assert_eq!(h.get("nonce"), Some("x"));
    assert_eq!(AuthHeader::parse(&h.to_string()).unwrap(), h);
}

/// Random bytes, truncations and mutations of real values never panic
#[test]
fn fuzzish_never_panics() {
    let seeds = [
        RFC7616_CHALLENGE_SHA256.to_owned(),
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\", algorithm=MD5-sess".to_owned(),
    ];
    let alphabet = b"Digest =\",\\ \t\r\nabc019-_\xc3\xa9";
    let server = DigestServer::new("testrealm@host.com", b"k".to_vec());
    let mut rng = StdRng::seed_from_u64(4);
    for i in 0..20_000 {
        let mut bytes: Vec<u8> = seeds[i % seeds.len()].clone().into_bytes();
        match i % 4 {
            0 => bytes.truncate(rng.random_range(0..=bytes.len())),
            1 => {
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] = alphabet[rng.random_range(0..alphabet.len())];
                }
            }
            2 => {
                let at = rng.random_range(0..bytes.len());
                let b = alphabet[rng.random_range(0..alphabet.len())];
                bytes.insert(at, b);
            }
            _ => {
                let n = rng.random_range(0..64);
                bytes = (0..n).map(|_| rng.random()).collect();
            }
        }
        let s = String::from_utf8_lossy(&bytes);
        let _ = AuthHeader::parse(&s).map(|h| h.to_string());
        if let Ok(c) = Challenge::parse(&s) {
            assert_eq!(Challenge::parse(&c.to_string()).unwrap(), c, "{s:?}");
        }
        if let Ok(c) = Credentials::parse(&s) {
            assert_eq!(Credentials::parse(&c.to_string()).unwrap(), c, "{s:?}");
        }
        let _ = server.verify_header(&s, "GET", at(T0), |_| Some("p".into()));
    }
}
