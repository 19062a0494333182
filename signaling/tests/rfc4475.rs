//! The RFC 4475 torture corpus, file by file: every `valid` message parses and the values its
//! section calls out read back exactly; every `invalid` message gets the status its section
//! describes, or is dropped where no response is possible; application-layer messages get the
//! codec's decision where the codec makes it (400 for missing or repeated single-valued headers,
//! 416 for Request-URI schemes) and otherwise parse, the decision belonging to a later layer
//! (named in the table).

use std::collections::BTreeMap;

use dialplane_signaling::message::{
    Contact, HeaderName, Message, Method, Request, Response, StatusCode, Uri, unescape,
};

/// `../shared/corpus/rfc4475` beside the checkout: `/work/main/signaling/../../shared` for the
/// main checkout, one level further up for a worktree under `/work/wt/`.
fn corpus_dir() -> std::path::PathBuf {
    let base = std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/corpus/rfc4475"
    ));
    if base.is_dir() {
        return base.to_path_buf();
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus/rfc4475"))
        .find(|p| p.is_dir())
        .expect("shared/corpus/rfc4475 beside the checkout")
}

/// What the codec must do with a file.
enum Expect {
    /// Parses; the check reads back the values the section calls out.
    Valid(fn(&Message)),
    /// Parses; the section's status is a later layer's decision (named here).
    Later(&'static str, fn(&Message)),
    /// Rejected, answered with this status.
    Reply(u16),
    /// Rejected, dropped silently (a response).
    Drop,
}

fn req(m: &Message) -> &Request {
    m.as_request().expect("a request")
}

fn resp(m: &Message) -> &Response {
    m.as_response().expect("a response")
}

fn sip_user(u: &Uri) -> Vec<u8> {
    u.as_sip()
        .and_then(|s| s.user_unescaped())
        .expect("a sip URI with a user")
}

fn wsinv(m: &Message) {
    let r = req(m);
    assert_eq!(r.method, Method::INVITE);
    assert_eq!(
        r.uri.as_sip().expect("sip").param("unknownparam"),
        Some(None)
    );
    let h = &r.headers;
    let to = h.to().expect("To");
    assert_eq!(to.display, None);
    assert_eq!(to.uri.to_string(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = h.from().expect("From");
    assert_eq!(from.display.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards(), Ok(Some(68)));
    assert_eq!(h.call_id(), Ok("wsinv.ndaksdj@192.0.2.1"));
    let cseq = h.cseq().expect("CSeq");
    assert_eq!((cseq.seq, cseq.method), (9, Method::INVITE));
    let via = h.via().expect("Via");
    let got: Vec<_> = via
        .iter()
        .map(|v| {
            (
                v.transport.as_str(),
                v.host.as_str(),
                v.branch().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("UDP", "192.0.2.2", "390skdjuw"),
            ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
            ("UDP", "192.168.255.111", "z9hG4bK30239"),
        ]
    );
    assert_eq!(h.get(&HeaderName::SUBJECT), Some(""));
    let nf = HeaderName::new("newfangledheader").expect("name");
    assert_eq!(
        h.get(&nf),
        Some("newfangled value continued newfangled value")
    );
    let Ok(Some(Contact::Addrs(c))) = h.contact() else {
        panic!("Contact")
    };
    assert_eq!(c[0].display.as_deref(), Some("Quoted string \"\""));
    assert_eq!(c[0].param("newparam"), Some(Some("newvalue")));
    assert_eq!(c[0].param("secondparam"), Some(None));
    assert_eq!(c[0].param("q"), Some(Some("0.33")));
    let route = h.route().expect("Route");
    assert_eq!(route[0].uri.as_sip().expect("sip").param("lr"), Some(None));
    assert_eq!(r.body.len(), 150);
}

fn intmeth(m: &Message) {
    let r = req(m);
    assert_eq!(
        r.method.as_str(),
        "!interesting-Method0123456789_*+`.%indeed'~"
    );
    assert!(!r.method.is_known());
    let u = r.uri.as_sip().expect("sip");
    assert_eq!(
        u.user.as_deref(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        u.password.as_deref(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(u.host, "example.com");
    let h = &r.headers;
    assert_eq!(
        h.to().expect("To").display.as_deref(),
        Some("BEL:\x07 NUL:\0 DEL:\x7f")
    );
    let from = h.from().expect("From");
    assert_eq!(
        from.display.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some(
            "\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\""
        ))
    );
    assert_eq!(
        h.top_via().expect("Via").branch(),
        Some("z9hG4bK-.!%66*_+`'~")
    );
    assert_eq!(
        h.call_id(),
        Ok("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
    );
    assert_eq!(h.cseq().expect("CSeq").method, r.method);
    let ext = HeaderName::new("extensionHeader-!.%*+_`'~").expect("name");
    assert_eq!(h.get(&ext), Some("\u{feff}\u{5927}\u{505c}\u{96fb}"));
}

fn esc01(m: &Message) {
    let r = req(m);
    assert_eq!(sip_user(&r.uri), b"sips:user@example.com");
    assert_eq!(sip_user(&r.headers.to().expect("To").uri), b"user");
    assert_eq!(
        sip_user(&r.headers.from().expect("From").uri),
        b"I have spaces"
    );
    let Ok(Some(Contact::Addrs(c))) = r.headers.contact() else {
        panic!("Contact")
    };
    let u = c[0].uri.as_sip().expect("sip");
    assert_eq!(u.user_unescaped().expect("user"), b"caller");
    let params: Vec<_> = u
        .params
        .iter()
        .map(|p| (unescape(&p.name), p.value.as_deref().map(unescape)))
        .collect();
    assert_eq!(
        params,
        [
            (b"lr".to_vec(), None),
            (b"name".to_vec(), Some(b"value%41".to_vec()))
        ]
    );
}

fn escnull(m: &Message) {
    let r = req(m);
    assert_eq!(r.method, Method::REGISTER);
    assert_eq!(sip_user(&r.headers.to().expect("To").uri), b"null-\0-null");
    assert_eq!(
        sip_user(&r.headers.from().expect("From").uri),
        b"null-\0-null"
    );
    let Ok(Some(Contact::Addrs(c))) = r.headers.contact() else {
        panic!("Contact")
    };
    let users: Vec<_> = c.iter().map(|a| sip_user(&a.uri)).collect();
    assert_eq!(users, [b"\0".to_vec(), b"\0\0".to_vec()]);
}

fn esc02(m: &Message) {
    let r = req(m);
    assert_eq!(r.method.as_str(), "RE%47IST%45R");
    assert_ne!(r.method, Method::REGISTER);
    assert_eq!(
        r.headers.to().expect("To").display.as_deref(),
        Some("%Z%45")
    );
    assert_eq!(
        r.headers.top_via().expect("Via").branch(),
        Some("z9hG4bK209%fzsnel234")
    );
    let Ok(Some(Contact::Addrs(c))) = r.headers.contact() else {
        panic!("Contact")
    };
    let hosts: Vec<_> = c
        .iter()
        .map(|a| a.uri.as_sip().expect("sip").host.clone())
        .collect();
    assert_eq!(hosts, ["host1.example.com", "host3.example.com"]);
    let odd = HeaderName::new("C%6Fntact").expect("name");
    assert_eq!(r.headers.get(&odd), Some("<sip:alias2@host2.example.com>"));
}

fn lwsdisp(m: &Message) {
    let from = req(m).headers.from().expect("From");
    assert_eq!(from.display.as_deref(), Some("caller"));
    assert_eq!(from.uri.to_string(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
}

fn longreq(m: &Message) {
    let r = req(m);
    let to = r.headers.to().expect("To");
    assert!(
        to.display
            .as_deref()
            .expect("display")
            .starts_with("I have a user name of extremeextreme")
    );
    let u = to.uri.as_sip().expect("sip");
    assert_eq!(u.port, Some(6000));
    assert_eq!(u.params.len(), 3);
    assert!(u.params[2].name.starts_with("verylonglong") && u.params[2].value.is_none());
    let via = r.headers.via().expect("Via");
    assert_eq!(via.len(), 34);
    assert_eq!(via[0].host, "sip33.example.com");
    assert_eq!(via[33].received(), Some("192.0.2.5"));
    assert!(
        r.headers
            .call_id()
            .expect("Call-ID")
            .ends_with("reallylongcallid")
    );
    assert_eq!(r.body.len(), 150);
}

fn dblreq(m: &Message) {
    let r = req(m);
    assert_eq!(r.method, Method::REGISTER);
    assert_eq!(
        r.headers.call_id(),
        Ok("dblreq.0ha0isndaksdj99sdfafnl3lk233412")
    );
    assert!(r.body.is_empty());
}

fn semiuri(m: &Message) {
    let r = req(m);
    let u = r.uri.as_sip().expect("sip");
    assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
    assert_eq!(u.host, "example.com");
    assert!(u.params.is_empty());
    let accept: Vec<_> = r.headers.values(&HeaderName::ACCEPT).collect();
    assert_eq!(accept.len(), 6);
    assert_eq!(accept[5], "message/sipfrag");
}

fn transports(m: &Message) {
    let via = req(m).headers.via().expect("Via");
    let t: Vec<_> = via.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(t, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(via[3].host, "t4.example.com");
}

fn mpart01(m: &Message) {
    let r = req(m);
    assert_eq!(r.method, Method::MESSAGE);
    let ct = r
        .headers
        .content_type()
        .expect("Content-Type")
        .expect("present");
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params[0].value.as_deref(), Some("7a9cbec02ceef655"));
    assert_eq!(r.body.len(), 553);
    assert_eq!(r.headers.top_via().expect("Via").rport(), Some(None));
}

fn unreason(m: &Message) {
    let r = resp(m);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.reason,
        "= 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"
    );
    assert_eq!(r.body.len(), 154);
}

fn noreason(m: &Message) {
    let r = resp(m);
    assert_eq!(r.status, StatusCode::TRYING);
    assert_eq!(r.reason, "");
    assert_eq!(r.headers.to().expect("To").tag(), Some("902jndnke3"));
}

fn badbranch(m: &Message) {
    let via = req(m).headers.top_via().expect("Via");
    assert_eq!(via.branch(), Some("z9hG4bK"));
}

fn parses(m: &Message) {
    assert!(m.headers().cseq().is_ok());
}

fn unksm2(m: &Message) {
    let h = &req(m).headers;
    assert_eq!(h.to().expect("To").uri.to_string(), "isbn:2983792873");
    assert_eq!(h.from().expect("From").uri.scheme(), "http");
    let Ok(Some(Contact::Addrs(c))) = h.contact() else {
        panic!("Contact")
    };
    assert_eq!(c[0].uri.to_string(), "name:John_Smith");
}

fn bext01(m: &Message) {
    let req_ext: Vec<_> = req(m).headers.values(&HeaderName::REQUIRE).collect();
    assert_eq!(
        req_ext,
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
}

fn bcast(m: &Message) {
    let via = resp(m).headers.via().expect("Via");
    assert_eq!(via[1].host, "255.255.255.255");
}

fn zeromf(m: &Message) {
    assert_eq!(req(m).headers.max_forwards(), Ok(Some(0)));
}

fn cparam01(m: &Message) {
    let Ok(Some(Contact::Addrs(c))) = req(m).headers.contact() else {
        panic!("Contact")
    };
    // addr-spec form: the parameter belongs to the header, not the URI.
    assert_eq!(c[0].param("unknownparam"), Some(None));
    assert!(c[0].uri.as_sip().expect("sip").params.is_empty());
}

fn cparam02(m: &Message) {
    let Ok(Some(Contact::Addrs(c))) = req(m).headers.contact() else {
        panic!("Contact")
    };
    assert_eq!(c[0].param("unknownparam"), None);
    assert_eq!(
        c[0].uri.as_sip().expect("sip").param("unknownparam"),
        Some(None)
    );
}

fn regescrt(m: &Message) {
    let Ok(Some(Contact::Addrs(c))) = req(m).headers.contact() else {
        panic!("Contact")
    };
    let u = c[0].uri.as_sip().expect("sip");
    assert_eq!(
        u.headers,
        [("Route".to_owned(), "%3Csip:sip.example.com%3E".to_owned())]
    );
}

fn inv2543(m: &Message) {
    let r = req(m);
    assert_eq!(r.headers.top_via().expect("Via").branch(), None);
    assert_eq!(r.headers.from().expect("From").tag(), None);
    assert_eq!(r.headers.max_forwards(), Ok(None));
    assert!(r.body.starts_with(b"v=0"));
}

fn expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    BTreeMap::from([
        ("wsinv", Valid(wsinv)),
        ("intmeth", Valid(intmeth)),
        ("esc01", Valid(esc01)),
        ("escnull", Valid(escnull)),
        ("esc02", Valid(esc02)),
        ("lwsdisp", Valid(lwsdisp)),
        ("longreq", Valid(longreq)),
        ("dblreq", Valid(dblreq)),
        ("semiuri", Valid(semiuri)),
        ("transports", Valid(transports)),
        ("mpart01", Valid(mpart01)),
        ("unreason", Valid(unreason)),
        ("noreason", Valid(noreason)),
        ("badinv01", Reply(400)),
        ("clerr", Reply(400)),
        ("ncl", Reply(400)),
        ("scalar02", Reply(400)),
        ("scalarlg", Drop),
        ("quotbal", Reply(400)),
        ("ltgtruri", Reply(400)),
        ("lwsruri", Reply(400)),
        ("lwsstart", Reply(400)),
        ("trws", Reply(400)),
        ("escruri", Reply(400)),
        ("baddate", Reply(400)),
        ("regbadct", Reply(400)),
        ("badaspec", Reply(400)),
        ("baddn", Reply(400)),
        ("badvers", Reply(505)),
        ("mismatch01", Reply(400)),
        ("mismatch02", Reply(501)),
        ("bigcode", Drop),
        (
            "badbranch",
            Later(
                "transaction layer: RFC 2543 matching (cookie-only branch)",
                badbranch,
            ),
        ),
        ("insuf", Reply(400)),
        ("unkscm", Reply(416)),
        ("novelsc", Reply(416)),
        (
            "unksm2",
            Later("registrar: 400, To is not a SIP/SIPS AOR", unksm2),
        ),
        (
            "bext01",
            Later(
                "UAS/proxy: 420 Bad Extension (knows its extensions)",
                bext01,
            ),
        ),
        (
            "invut",
            Later(
                "UAS: 415 Unsupported Media Type (knows its body types)",
                parses,
            ),
        ),
        (
            "regaut01",
            Later("registrar: 401 challenge (unknown auth scheme)", parses),
        ),
        ("multi01", Reply(400)),
        ("mcl01", Reply(400)),
        (
            "bcast",
            Later("transport: never send to the broadcast Via", bcast),
        ),
        (
            "zeromf",
            Later("proxy: 483 Too Many Hops; a UAS answers normally", zeromf),
        ),
        (
            "cparam01",
            Later("registrar: binding with header param", cparam01),
        ),
        (
            "cparam02",
            Later("registrar: binding with uri param", cparam02),
        ),
        (
            "regescrt",
            Later("registrar: binding; URI header kept", regescrt),
        ),
        (
            "sdp01",
            Later(
                "UAS: 406 Not Acceptable (Accept lists no type it can send)",
                parses,
            ),
        ),
        (
            "inv2543",
            Later(
                "transaction/dialog: RFC 2543 rules (no branch, no tag)",
                inv2543,
            ),
        ),
        ("test", Reply(400)),
    ])
}

fn outcome(m: &Result<Message, dialplane_signaling::message::ParseError>) -> String {
    match m {
        Ok(Message::Request(r)) => format!("parsed ({})", r.method),
        Ok(Message::Response(r)) => format!("parsed ({})", r.status.as_u16()),
        Err(e) => match e.reply() {
            Some(s) => format!("{} ({e})", s.as_u16()),
            None => format!("drop ({e})"),
        },
    }
}

#[test]
fn rfc4475_corpus() {
    let dir = corpus_dir();
    let index = std::fs::read_to_string(dir.join("INDEX.tsv")).expect("INDEX.tsv");
    let expect = expectations();
    let mut failures = Vec::new();
    let mut seen = 0;
    println!(
        "{:<11} {:<8} {:<13} {:<44} got",
        "file", "section", "class", "expected"
    );
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let [file, section, class, ..] = cols[..] else {
            panic!("bad INDEX line {line:?}")
        };
        let stem = file.trim_end_matches(".dat");
        let bytes = std::fs::read(dir.join(file)).expect("corpus file");
        let parsed = Message::parse(&bytes);
        let exp = expect
            .get(stem)
            .unwrap_or_else(|| panic!("no expectation for {file}"));
        seen += 1;
        let (want, ok) = match exp {
            Expect::Valid(check) | Expect::Later(_, check) => {
                let label = match exp {
                    Expect::Later(why, _) => format!("parse; {why}"),
                    _ => "parse + values".to_owned(),
                };
                let ok = match &parsed {
                    Ok(m) => {
                        check(m);
                        // Serialization round-trips to the same values, canonically.
                        let out = m.to_bytes();
                        let again = Message::parse(&out).expect("serialized form reparses");
                        check(&again);
                        assert_eq!(again.to_bytes(), out, "{file}: serialization is canonical");
                        true
                    }
                    Err(_) => false,
                };
                (label, ok)
            }
            Expect::Reply(code) => (
                code.to_string(),
                matches!(&parsed, Err(e) if e.reply().map(|s| s.as_u16()) == Some(*code)),
            ),
            Expect::Drop => (
                "drop".to_owned(),
                matches!(&parsed, Err(e) if e.reply().is_none()),
            ),
        };
        let got = outcome(&parsed);
        println!(
            "{file:<11} {section:<8} {class:<13} {:<44} {got}",
            truncate(&want, 44)
        );
        if !ok {
            failures.push(format!("{file}: expected {want}, got {got}"));
        }
    }
    assert_eq!(seen, expect.len(), "every expectation has a file");
    assert!(failures.is_empty(), "{failures:#?}");
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}
