//! SIP over TLS end to end: this crate's stack as the client (Debian's SIPp has no TLS) against
//! the test UAS, with a certificate made at test time (rcgen). OPTIONS, REGISTER with a digest
//! challenge (SHA-256, the first one offered), INVITE → 180 → 200 → ACK → BYE, and INVITE then
//! CANCEL (487), all over one TLS connection.

mod uas;

use std::net::SocketAddr;

use dialplane_signaling::auth::{self, Challenge, ClientRequest};
use dialplane_signaling::message::{HeaderName, Message, Method, Request, Response, Uri};
use dialplane_signaling::sdp::{self, Codec, Direction, LocalMedia, LocalOrigin};
use dialplane_signaling::stack::{ClientEvent, ClientTransaction, Endpoint, StackConfig};
use dialplane_signaling::transport::{
    Limits, SipListen, Transport, TransportConfig, Transports, load_tls_server,
    tls_client_with_roots,
};
use uas::{Uas, test_cert};

struct Client {
    ep: Endpoint,
    server: SocketAddr,
}

impl Client {
    fn request(&self, method: Method, call: &str, cseq: u32, to_tag: Option<&str>) -> Request {
        let uri = format!("sip:uas@{}", self.server);
        let to = match to_tag {
            Some(t) => format!("<{uri}>;tag={t}"),
            None => format!("<{uri}>"),
        };
        Request::new(method.clone(), Uri::parse(&uri).expect("uri"))
            .with_header(
                HeaderName::FROM,
                format!("<sip:alice@127.0.0.1>;tag=c{call}"),
            )
            .with_header(HeaderName::TO, to)
            .with_header(HeaderName::CALL_ID, format!("{call}@tls-test"))
            .with_header(HeaderName::CSEQ, format!("{cseq} {method}"))
            .with_header(HeaderName::MAX_FORWARDS, 70)
    }

    async fn send(&self, req: Request) -> ClientTransaction {
        self.ep
            .send_request(req, self.server, Transport::Tls)
            .await
            .expect("send")
    }
}

/// The next response of `tx`, within the bound.
async fn next_response(tx: &mut ClientTransaction) -> Response {
    match tokio::time::timeout(uas::WAIT, tx.next()).await {
        Ok(Some(ClientEvent::Response(r))) => r,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// Skips provisionals other than `want`; returns the first response with a status >= `want`.
async fn response_at_least(tx: &mut ClientTransaction, want: u16) -> Response {
    loop {
        let r = next_response(tx).await;
        if r.status.as_u16() >= want {
            return r;
        }
    }
}

fn offer() -> String {
    sdp::offer(&LocalMedia {
        origin: LocalOrigin {
            username: "-".into(),
            session_id: 7,
            session_version: 1,
        },
        codecs: vec![Codec::pcma(), Codec::telephone_event()],
        address: "127.0.0.1".parse().expect("ip"),
        port: 30_000,
        direction: Direction::SendRecv,
        ptime: None,
        rtcp_mux: false,
        srtp: Vec::new(),
    })
    .serialize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_register_options_invite_cancel_on_one_connection() {
    let (cert, key) = test_cert("e2e");
    let (cert_s, key_s) = (cert.to_str().expect("utf8"), key.to_str().expect("utf8"));
    let mut uas = Uas::start(&[
        "--tls",
        "127.0.0.1:0",
        "--cert",
        cert_s,
        "--key",
        key_s,
        "--user",
        "alice:secret",
        "--answer-delay-ms",
        "1500",
    ]);
    let server = uas.addr("TLS");
    let (transports, inbound) = Transports::bind(TransportConfig {
        listen: vec![SipListen {
            transport: Transport::Tls,
            addr: "127.0.0.1:0".parse().expect("addr"),
        }],
        external_ip: None,
        limits: Limits::default(),
        tls_server: Some(load_tls_server(&cert, &key).expect("server config")),
        tls_client: Some(tls_client_with_roots(&cert).expect("client config")),
    })
    .await
    .expect("bind");
    let (ep, _incoming) = Endpoint::start(transports, inbound, StackConfig::default());
    let c = Client { ep, server };

    // OPTIONS
    let req = c.request(Method::OPTIONS, "o1", 1, None);
    let r = next_response(&mut c.send(req).await).await;
    assert_eq!(r.status.as_u16(), 200);
    assert!(
        r.headers
            .get(&HeaderName::ALLOW)
            .expect("Allow")
            .contains("INVITE")
    );

    // REGISTER, 401, REGISTER with credentials, 200
    let uri = "sip:127.0.0.1";
    let register = |c: &Client, cseq| {
        let mut r = c
            .request(Method::REGISTER, "r1", cseq, None)
            .with_header(HeaderName::CONTACT, "<sip:alice@127.0.0.1;transport=tls>");
        r.uri = Uri::parse(uri).expect("uri");
        r.headers.set(HeaderName::TO, "<sip:alice@127.0.0.1>");
        r
    };
    let req = register(&c, 1);
    let r = next_response(&mut c.send(req).await).await;
    assert_eq!(r.status.as_u16(), 401);
    let challenge = Challenge::parse(
        r.headers
            .get(&HeaderName::WWW_AUTHENTICATE)
            .expect("challenge"),
    )
    .expect("parses");
    let creds = auth::respond(
        &challenge,
        &ClientRequest {
            username: "alice",
            password: "secret",
            method: "REGISTER",
            uri,
            nc: 1,
            cnonce: "0a4f113b",
        },
    )
    .expect("credentials");
    let req = register(&c, 2).with_header(HeaderName::AUTHORIZATION, creds);
    let r = next_response(&mut c.send(req).await).await;
    assert_eq!(r.status.as_u16(), 200, "{r:?}");

    // INVITE, 180, 200, ACK, BYE, 200
    let req = c
        .request(Method::INVITE, "i1", 1, None)
        .with_header(HeaderName::CONTACT, "<sip:alice@127.0.0.1;transport=tls>")
        .with_body("application/sdp", offer());
    let mut invite = c.send(req).await;
    assert_eq!(
        response_at_least(&mut invite, 180).await.status.as_u16(),
        180
    );
    let ok = response_at_least(&mut invite, 200).await;
    assert_eq!(ok.status.as_u16(), 200);
    let answer = sdp::SessionDescription::parse_bytes(&ok.body).expect("SDP answer");
    assert_eq!(answer.media[0].codecs()[0].name, "PCMA");
    let to_tag = ok.headers.to().expect("To").tag().expect("tag").to_owned();
    let via_host = c.ep.sent_by(Transport::Tls, server).expect("sent-by");
    let ack = c.request(Method::ACK, "i1", 1, Some(&to_tag)).with_header(
        HeaderName::VIA,
        format!("SIP/2.0/TLS {via_host};branch=z9hG4bKack1;rport"),
    );
    c.ep.send_stateless(Message::Request(ack), server)
        .await
        .expect("ACK");
    let bye = c.request(Method::BYE, "i1", 2, Some(&to_tag));
    let r = next_response(&mut c.send(bye).await).await;
    assert_eq!(r.status.as_u16(), 200);
    uas.wait_metric("dialplane_uas_acks_total", &[], |v| v == 1.0);

    // INVITE, 180, CANCEL (same Via), 200 for the CANCEL, 487 for the INVITE
    let req = c.request(Method::INVITE, "i2", 1, None);
    let mut invite = c.send(req).await;
    assert_eq!(
        response_at_least(&mut invite, 180).await.status.as_u16(),
        180
    );
    let mut cancel = c.request(Method::CANCEL, "i2", 1, None);
    let via = invite.request.headers.get(&HeaderName::VIA).expect("Via");
    cancel.headers.push(HeaderName::VIA, via);
    let r = next_response(&mut c.send(cancel).await).await;
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(
        response_at_least(&mut invite, 200).await.status.as_u16(),
        487
    );

    // One connection carried it all: 9 requests (the ACK for the 487 included).
    uas.wait_metric(
        "dialplane_sip_received_total",
        &[("transport", "TLS")],
        |v| v == 9.0,
    );
    assert_eq!(uas.metric("dialplane_sip_connections", &[]), 1.0);
    assert_eq!(uas.metric("dialplane_sip_dropped_total", &[]), 0.0);
}
