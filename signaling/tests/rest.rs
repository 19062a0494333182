//! The REST API over real HTTP: a server on 127.0.0.1:0, a hyper client, and the test playing
//! the live call on the other end of the registry's channel.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use dialplane_signaling::config::HttpConfig;
use dialplane_signaling::rest::{
    CallRegistry, CallStatus, CallUpdate, Dtmf, LiveUpdate, MuteStatus, Registration, RestApi,
};
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

const TOKEN: &str = "test-token-0123456789";
/// Bound on every wait for the server.
const WAIT: Duration = Duration::from_secs(5);

/// The process-wide recorder: every test's server renders from it.
fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

struct Server {
    addr: SocketAddr,
    registry: Arc<CallRegistry>,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(http: HttpConfig) -> Server {
        let registry = Arc::new(CallRegistry::default());
        let api = RestApi::new(registry.clone(), prometheus(), &http);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(api.serve(listener, async {
            let _ = stopped.await;
        }));
        Server {
            addr,
            registry,
            client: Client::builder(TokioExecutor::new()).build_http(),
            stop: Some(stop),
            task,
        }
    }

    async fn with_token() -> Server {
        Server::start(HttpConfig {
            api_token: Some(TOKEN.into()),
            ..HttpConfig::default()
        })
        .await
    }

    /// Registers a live call; the receiver plays the call's task.
    fn call(&self, call_sid: &str, account: &str) -> (Registration, mpsc::Receiver<LiveUpdate>) {
        let (tx, rx) = mpsc::channel(8);
        (self.registry.register(call_sid, account, tx).unwrap(), rx)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        body: &str,
    ) -> (StatusCode, hyper::HeaderMap, String) {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr))
            .header("content-type", "application/json");
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
        let resp = tokio::time::timeout(WAIT, self.client.request(req))
            .await
            .expect("answered in time")
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    async fn update(&self, call_sid: &str, body: &str) -> (StatusCode, String) {
        let bearer = format!("Bearer {TOKEN}");
        let path = format!("/v1/updateCall/{call_sid}");
        let (status, _, body) = self.send(Method::POST, &path, Some(&bearer), body).await;
        (status, body)
    }

    async fn metrics(&self) -> String {
        let (status, headers, body) = self.send(Method::GET, "/metrics", None, "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        body
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(WAIT, &mut self.task)
            .await
            .expect("server stops in time")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn next(rx: &mut mpsc::Receiver<LiveUpdate>) -> LiveUpdate {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("an update in time")
        .expect("channel open")
}

fn msg(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON error body");
    v["msg"].as_str().expect("a msg").to_string()
}

#[tokio::test]
async fn updates_reach_the_live_call() {
    let server = Server::with_token().await;
    let (_reg, mut rx) = server.call("call-1", "acct-1");

    let (status, body) = server.update("call-1", r#"{"mute_status":"mute"}"#).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let got = next(&mut rx).await;
    assert_eq!(&*got.call_sid, "call-1");
    assert_eq!(got.update, CallUpdate::MuteStatus(MuteStatus::Mute));

    let (status, _) = server
        .update("call-1", r#"{"dtmf":{"digit":"5","duration":300}}"#)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        next(&mut rx).await.update,
        CallUpdate::Dtmf(Dtmf {
            digits: "5".into(),
            duration_ms: 300
        })
    );

    // The account form, lower-case scheme.
    let (status, _, body) = server
        .send(
            Method::PUT,
            "/v1/Accounts/acct-1/Calls/call-1",
            Some(&format!("bearer {TOKEN}")),
            r#"{"call_status":"completed"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        next(&mut rx).await.update,
        CallUpdate::CallStatus(CallStatus::Completed)
    );
    assert!(rx.try_recv().is_err(), "one update per request");
    server.stop().await;
}

#[tokio::test]
async fn unknown_calls_and_other_accounts_get_404() {
    let server = Server::with_token().await;
    let (reg, mut rx) = server.call("call-2", "acct-2");
    let bearer = format!("Bearer {TOKEN}");

    let (status, body) = server
        .update("nope", r#"{"call_status":"completed"}"#)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(msg(&body).contains("nope"), "{body}");

    let (status, _, body) = server
        .send(
            Method::PUT,
            "/v1/Accounts/acct-other/Calls/call-2",
            Some(&bearer),
            r#"{"call_status":"completed"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(msg(&body).contains("account"), "{body}");
    assert!(rx.try_recv().is_err(), "nothing reached the call");

    // Once the call has ended (its registration dropped) it is gone.
    drop(reg);
    let (status, _) = server
        .update("call-2", r#"{"call_status":"completed"}"#)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, _) = server.send(Method::GET, "/v1/nothing", None, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = server
        .send(Method::GET, "/v1/updateCall/call-2", Some(&bearer), "")
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    server.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_400_naming_the_field() {
    let server = Server::with_token().await;
    let (_reg, mut rx) = server.call("call-3", "acct");
    for (body, expect) in [
        (r#"{"mute_status":"loud"}"#, "mute_status"),
        (r#"{"call_status":"completed","whisper":{}}"#, "whisper"),
        (
            r#"{"dub":{"action":"playOnTrack","track":"t"}}"#,
            "dub.play",
        ),
        (r#"{"dtmf":{"digit":"Z"}}"#, "dtmf.digit"),
        (r#"{"call_status":"completed",}"#, "invalid JSON"),
        ("{}", "call_status"),
    ] {
        let (status, resp) = server.update("call-3", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(msg(&resp).contains(expect), "{body}: {resp}");
    }
    assert!(rx.try_recv().is_err(), "nothing reached the call");

    // Over max_body_bytes (64 KiB by default).
    let big = format!(
        r#"{{"dub":{{"action":"sayOnTrack","track":"t","say":"{}"}}}}"#,
        "a".repeat(70_000)
    );
    let (status, _) = server.update("call-3", &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    server.stop().await;
}

#[tokio::test]
async fn requests_without_the_token_get_401() {
    let server = Server::with_token().await;
    let (_reg, mut rx) = server.call("call-4", "acct");
    let body = r#"{"call_status":"completed"}"#;
    for auth in [
        None,
        Some("Bearer wrong-token"),
        Some(&format!("Bearer {TOKEN}x")[..]),
        Some(&format!("Basic {TOKEN}")[..]),
        Some(TOKEN),
        Some("Bearer"),
    ] {
        for (method, path) in [
            (Method::POST, "/v1/updateCall/call-4"),
            (Method::PUT, "/v1/Accounts/acct/Calls/call-4"),
        ] {
            let (status, headers, resp) = server.send(method, path, auth, body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?} {path}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(!msg(&resp).is_empty());
        }
    }
    assert!(rx.try_recv().is_err(), "nothing reached the call");
    server.stop().await;

    // No token configured: REST is closed to everyone, /metrics stays open.
    let server = Server::start(HttpConfig::default()).await;
    let (_reg, _rx) = server.call("call-4", "acct");
    let (status, _) = server.update("call-4", body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    server.metrics().await;
    server.stop().await;
}

/// The value of a counter sample in Prometheus text, 0 when absent.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let server = Server::with_token().await;
    let (_reg, mut rx) = server.call("call-5", "acct");
    let accepted =
        r#"dialplane_http_requests_total{route="/v1/updateCall/{call_sid}",status="202"}"#;
    let unauthorized = r#"dialplane_http_requests_total{route="/v1/Accounts/{account_sid}/Calls/{call_sid}",status="401"}"#;
    let unmatched = r#"dialplane_http_requests_total{route="unmatched",status="404"}"#;
    let before = server.metrics().await;
    for _ in 0..3 {
        let (status, _) = server
            .update("call-5", r#"{"listen_status":"pause"}"#)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        next(&mut rx).await;
    }
    server
        .send(Method::PUT, "/v1/Accounts/a/Calls/call-5", None, "{}")
        .await;
    server.send(Method::GET, "/favicon.ico", None, "").await;
    let after = server.metrics().await;
    // Other tests share the recorder and run in parallel: at least ours were counted.
    assert!(
        sample(&after, accepted) >= sample(&before, accepted) + 3,
        "{after}"
    );
    assert!(
        sample(&after, unauthorized) > sample(&before, unauthorized),
        "{after}"
    );
    assert!(
        sample(&after, unmatched) > sample(&before, unmatched),
        "{after}"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_request_whose_body_never_comes_times_out() {
    let server = Server::start(HttpConfig {
        api_token: Some(TOKEN.into()),
        request_timeout_ms: 200,
        ..HttpConfig::default()
    })
    .await;
    let (_reg, mut rx) = server.call("call-6", "acct");
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/updateCall/call-6 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"call_"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    // The server answers (and closes) without the rest of the body.
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(rx.try_recv().is_err());
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let server = Server::start(HttpConfig {
        request_timeout_ms: 200,
        ..HttpConfig::default()
    })
    .await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /v1/updateCall/c HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    // Whatever the server says, it ends with the connection closed.
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
    }
    server.stop().await;
}
