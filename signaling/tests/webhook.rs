//! The webhook client against a real HTTP server on loopback, started by each test
//!
//! The server is a small HTTP/1.1 responder on a tokio TcpListener that records every request
//! and answers from a script (a status and body, or never answering).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dialplane_signaling::verbs::{Credentials, Hook, HookMethod, Verb};
use dialplane_signaling::webhook::{HookBase, WebhookClient, WebhookError, WebhookOptions};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One request as the server saw it
#[derive(Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
enum Reply {
    Answer(u16, &'static str),
    /// Read the request, then never answer.
    Hang,
}

struct Server {
    addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Server {
    /// Serves `script` in order (the last reply repeats)
    async fn start(script: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (tx, script) = (tx.clone(), script.clone());
                tokio::spawn(async move { handle(stream, tx, script).await });
            }
        });
        Server { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request, waiting at most 5 s for it
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(5), self.seen.recv())
            .await
            .expect("a request within 5 s")
            .unwrap()
    }

    /// Waits for exactly `n` requests (call after the client is done: the server records a
    /// request before it answers)
    async fn expect(&mut self, n: usize) {
        for _ in 0..n {
            self.next().await;
        }
        assert!(self.seen.try_recv().is_err(), "more than {n} requests");
    }
}

async fn handle(
    mut stream: TcpStream,
    tx: mpsc::UnboundedSender<Seen>,
    script: Arc<Mutex<VecDeque<Reply>>>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap().split(' ');
    let (method, target) = (request_line.next().unwrap(), request_line.next().unwrap());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "client closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let reply = {
        let mut s = script.lock().unwrap();
        if s.len() > 1 {
            s.pop_front().unwrap()
        } else {
            s[0].clone()
        }
    };
    tx.send(Seen {
        method: method.into(),
        target: target.into(),
        headers,
        body,
    })
    .unwrap();
    match reply {
        Reply::Answer(status, body) => {
            let resp = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            // The client may hang up first (oversized answers).
            let _ = stream.write_all(resp.as_bytes()).await;
        }
        Reply::Hang => std::future::pending::<()>().await,
    }
}

const NOW: u64 = 1_700_000_000;

fn client(secret: Option<&str>, timeout: Duration) -> WebhookClient {
    WebhookClient::new(WebhookOptions {
        secret: secret.map(str::to_string),
        timeout,
    })
    .unwrap()
}

fn payload() -> serde_json::Value {
    serde_json::json!({
        "call_sid": "0e3c1b5a-2a5b-4f31-9a4b-6f1d0c2b7e11",
        "from": "+15083084809",
        "sip_status": 180,
        "sip": {"method": "INVITE"}
    })
}

/// HMAC recomputed here, independently of the client's code
fn expected_signature(secret: &str, t: u64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t={t},v1={hex}")
}

#[tokio::test]
async fn post_is_compact_json_signed_and_answered_with_verbs() {
    let mut server = Server::start(vec![Reply::Answer(
        200,
        r#"[{"verb":"answer"},{"verb":"say","text":"hi"}]"#,
    )])
    .await;
    let c = client(Some("shh"), Duration::from_secs(5));
    let verbs = c
        .fetch_verbs(&Hook::post(server.url("/call")), None, &payload(), NOW)
        .await
        .unwrap();
    assert_eq!(verbs.len(), 2);
    assert!(matches!(verbs[0], Verb::Answer(_)));
    assert!(matches!(&verbs[1], Verb::Unsupported { name, .. } if name == "say"));
    let seen = server.next().await;
    assert_eq!(
        (seen.method.as_str(), seen.target.as_str()),
        ("POST", "/call")
    );
    assert_eq!(seen.body, serde_json::to_string(&payload()).unwrap());
    assert!(
        seen.body.contains(r#""sip_status":180"#),
        "integers stay integers"
    );
    assert_eq!(seen.header("content-type"), Some("application/json"));
    assert_eq!(
        seen.header("jambonz-signature").unwrap(),
        expected_signature("shh", NOW, &seen.body)
    );
    assert_eq!(seen.header("authorization"), None);
}

#[tokio::test]
async fn no_secret_no_signature_and_empty_answers_mean_no_verbs() {
    let mut server = Server::start(vec![
        Reply::Answer(200, ""),
        Reply::Answer(200, " [ ] "),
        Reply::Answer(204, ""),
    ])
    .await;
    let c = client(None, Duration::from_secs(5));
    for _ in 0..3 {
        let verbs = c
            .fetch_verbs(&Hook::post(server.url("/a")), None, &payload(), NOW)
            .await
            .unwrap();
        assert!(verbs.is_empty());
        assert_eq!(server.next().await.header("jambonz-signature"), None);
    }
}

#[tokio::test]
async fn bad_verbs_in_the_answer_are_a_typed_error() {
    let server = Server::start(vec![Reply::Answer(
        200,
        r#"[{"verb":"dial","target":[{"type":"fax"}]}]"#,
    )])
    .await;
    let e = client(None, Duration::from_secs(5))
        .fetch_verbs(&Hook::post(server.url("/a")), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::Verbs { .. }), "{e}");
    assert!(
        e.to_string()
            .contains(r#"verb 0 (dial): target 0: unknown type "fax""#),
        "{e}"
    );
}

#[tokio::test]
async fn retries_on_5xx_only_when_the_fragment_asks() {
    let mut server = Server::start(vec![
        Reply::Answer(503, ""),
        Reply::Answer(500, ""),
        Reply::Answer(200, "[]"),
    ])
    .await;
    let c = client(Some("k"), Duration::from_secs(5));
    let reply = c
        .send(
            &Hook::post(server.url("/h#rc=2&rp=5xx")),
            None,
            &payload(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((reply.status, reply.attempts), (200, 3));
    for _ in 0..3 {
        let seen = server.next().await;
        assert_eq!(seen.target, "/h", "the fragment is not sent");
        assert_eq!(
            seen.header("jambonz-signature").unwrap(),
            expected_signature("k", NOW, &seen.body)
        );
    }

    // Without rp=5xx (the default policy is ct) a 5xx is final.
    let mut server = Server::start(vec![Reply::Answer(502, "")]).await;
    let e = c
        .send(&Hook::post(server.url("/h#rc=3")), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WebhookError::Status {
                status: 502,
                attempts: 1,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.status(), Some(502));
    server.expect(1).await;
}

#[tokio::test]
async fn retries_on_4xx_with_rp_4xx_up_to_rc() {
    let mut server = Server::start(vec![Reply::Answer(404, "")]).await;
    let c = client(None, Duration::from_secs(5));
    let e = c
        .send(
            &Hook::post(server.url("/h#rc=2&rp=4xx")),
            None,
            &payload(),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            WebhookError::Status {
                status: 404,
                attempts: 3,
                ..
            }
        ),
        "{e}"
    );
    server.expect(3).await;
}

#[tokio::test]
async fn retries_on_connection_refused_by_default_policy() {
    // A port that was just free: nothing listens there.
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let c = client(None, Duration::from_secs(5));
    let url = format!("http://{addr}/h#rc=3");
    let e = c
        .send(&Hook::post(url), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WebhookError::Connect { attempts: 4, .. }),
        "{e}"
    );
    let url = format!("http://{addr}/h#rc=3&rp=5xx");
    let e = c
        .send(&Hook::post(url), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(e, WebhookError::Connect { attempts: 1, .. }),
        "{e}"
    );
}

#[tokio::test]
async fn retries_on_timeout_with_rp_rt() {
    let mut server = Server::start(vec![Reply::Hang, Reply::Answer(200, "[]")]).await;
    let c = client(None, Duration::from_millis(300));
    let reply = c
        .send(
            &Hook::post(server.url("/slow#rc=1&rp=rt")),
            None,
            &payload(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(reply.attempts, 2);
    server.expect(2).await;

    let mut server = Server::start(vec![Reply::Hang]).await;
    let e = c
        .send(
            &Hook::post(server.url("/slow#rc=2&rp=ct")),
            None,
            &payload(),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WebhookError::Timeout { attempts: 1, .. }),
        "{e}"
    );
    let e = c
        .send(
            &Hook::post(server.url("/slow#rc=2&rp=rt")),
            None,
            &payload(),
            NOW,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, WebhookError::Timeout { attempts: 3, .. }),
        "{e}"
    );
    server.expect(4).await;
}

#[tokio::test]
async fn relative_hooks_go_to_the_call_webhook_host_with_its_credentials() {
    let mut server = Server::start(vec![Reply::Answer(200, "")]).await;
    let mut call = Hook::post(server.url("/app/call"));
    call.auth = Some(Credentials {
        username: "user".into(),
        password: "pass".into(),
    });
    let base = HookBase::from_hook(&call).unwrap();
    let c = client(None, Duration::from_secs(5));
    c.send(&Hook::post("/action?x=1"), Some(&base), &payload(), NOW)
        .await
        .unwrap();
    let seen = server.next().await;
    assert_eq!(seen.target, "/action?x=1");
    assert_eq!(seen.header("authorization"), Some("Basic dXNlcjpwYXNz"));

    // A hook's own credentials win.
    let mut own = Hook::post("status");
    own.auth = Some(Credentials {
        username: "a".into(),
        password: "b".into(),
    });
    c.send(&own, Some(&base), &payload(), NOW).await.unwrap();
    let seen = server.next().await;
    assert_eq!(seen.target, "/app/status");
    assert_eq!(seen.header("authorization"), Some("Basic YTpi"));

    let e = c
        .send(&Hook::post("/action"), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::BadUrl { .. }), "{e}");
}

#[tokio::test]
async fn get_sends_flat_fields_as_query_arguments_and_is_signed() {
    let mut server = Server::start(vec![Reply::Answer(200, "")]).await;
    let hook = Hook {
        url: server.url("/dtmf?app=1"),
        method: HookMethod::Get,
        auth: None,
    };
    client(Some("k"), Duration::from_secs(5))
        .send(&hook, None, &payload(), NOW)
        .await
        .unwrap();
    let seen = server.next().await;
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.target,
        "/dtmf?app=1&call_sid=0e3c1b5a-2a5b-4f31-9a4b-6f1d0c2b7e11&from=%2B15083084809&sip_status=180"
    );
    assert_eq!(seen.body, "");
    let json = serde_json::to_string(&payload()).unwrap();
    assert_eq!(
        seen.header("jambonz-signature").unwrap(),
        expected_signature("k", NOW, &json)
    );
}

#[test]
fn attempts_are_counted_in_metrics_by_outcome() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        rt.block_on(async {
            let server = Server::start(vec![Reply::Answer(503, ""), Reply::Answer(200, "")]).await;
            client(None, Duration::from_secs(5))
                .send(
                    &Hook::post(server.url("/h#rc=1&rp=5xx")),
                    None,
                    &payload(),
                    NOW,
                )
                .await
                .unwrap();
        })
    });
    let mut outcomes = Vec::new();
    let mut latencies = 0;
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        match (key.key().name(), value) {
            ("dialplane_webhook_requests_total", DebugValue::Counter(n)) => {
                let label = key.key().labels().next().unwrap().value().to_string();
                outcomes.push((label, n));
            }
            ("dialplane_webhook_latency_seconds", DebugValue::Histogram(v)) => latencies += v.len(),
            _ => {}
        }
    }
    outcomes.sort();
    assert_eq!(outcomes, [("5xx".to_string(), 1), ("ok".to_string(), 1)]);
    assert_eq!(latencies, 2);
}

#[tokio::test]
async fn oversized_answers_are_refused() {
    let big: &'static str = Box::leak(" ".repeat(2 << 20).into_boxed_str());
    let server = Server::start(vec![Reply::Answer(200, big)]).await;
    let e = client(None, Duration::from_secs(5))
        .fetch_verbs(&Hook::post(server.url("/a")), None, &payload(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(e, WebhookError::Transport { .. }), "{e}");
    assert!(e.to_string().contains("larger than"), "{e}");
}
