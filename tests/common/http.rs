//! HTTP/1.1 on loopback with std sockets: a webhook receiver playing the control app (it
//! records every request and answers each path with the body the test set), and a one-shot
//! client for REST calls and /metrics.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// The body parsed as JSON (Null when empty or not JSON).
    pub json: serde_json::Value,
}

#[derive(Default)]
struct State {
    hits: Mutex<Vec<Hit>>,
    arrived: Condvar,
    /// Per path: content type and body.
    answers: Mutex<HashMap<String, (String, Vec<u8>)>>,
    /// Per path: how many requests still fail, and with which status.
    failures: Mutex<HashMap<String, (u32, u16)>>,
    /// Paths whose answers wait (recorded as hits already) until released.
    held: Mutex<HashSet<String>>,
    released: Condvar,
    stop: AtomicBool,
}

/// The webhook receiver; stops accepting when dropped.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.state.held.lock().unwrap().clear();
        self.state.released.notify_all();
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind receiver");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = accept_state.clone();
                std::thread::spawn(move || serve_connection(conn, &state));
            }
        });
        Receiver { addr, state }
    }

    /// The absolute URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// From now on, requests to `path` get `body` (JSON) as their answer; other paths get 200
    /// with an empty body.
    pub fn answer(&self, path: &str, body: &serde_json::Value) {
        self.answer_raw(path, &body.to_string());
    }

    /// Answers requests to `path` with `text` as it is (e.g. something that is not JSON).
    pub fn answer_raw(&self, path: &str, text: &str) {
        self.answer_bytes(path, "application/json", text.as_bytes());
    }

    /// Serves `body` (a file: audio for dialMusic and dub) at `path` as `content_type`.
    pub fn answer_bytes(&self, path: &str, content_type: &str, body: &[u8]) {
        self.state
            .answers
            .lock()
            .unwrap()
            .insert(path.to_string(), (content_type.to_string(), body.to_vec()));
    }

    /// The next `count` requests to `path` get `status` (and no body) before its answer.
    pub fn fail(&self, path: &str, count: u32, status: u16) {
        self.state
            .failures
            .lock()
            .unwrap()
            .insert(path.to_string(), (count, status));
    }

    /// From now on, answers to `path` wait until [`Receiver::release`] (or [`HELD_AT_MOST`]):
    /// a slow server whose requests are seen at once.
    pub fn hold(&self, path: &str) {
        self.state.held.lock().unwrap().insert(path.to_string());
    }

    /// Answers the requests to `path` held so far, and the next ones at once.
    pub fn release(&self, path: &str) {
        self.state.held.lock().unwrap().remove(path);
        self.state.released.notify_all();
    }

    /// Every request to `path` so far, in arrival order.
    pub fn hits(&self, path: &str) -> Vec<Hit> {
        let hits = self.state.hits.lock().unwrap();
        hits.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Waits (bounded) until the requests to `path` satisfy `done`; they are returned. Panics
    /// with every request received when `limit` passes first.
    pub fn wait(
        &self,
        path: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&[Hit]) -> bool,
    ) -> Vec<Hit> {
        let deadline = Instant::now() + limit;
        let mut hits = self.state.hits.lock().unwrap();
        loop {
            let these: Vec<Hit> = hits.iter().filter(|h| h.path == path).cloned().collect();
            if done(&these) {
                return these;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no {what} on {path} within {limit:?}; received:\n{}",
                hits.iter()
                    .map(|h| format!("{} {} {}", h.method, h.path, h.body))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            hits = self
                .state
                .arrived
                .wait_timeout(hits, deadline - now)
                .unwrap()
                .0;
        }
    }
}

/// The longest a held answer waits, so that a test failing before its release ends anyway.
const HELD_AT_MOST: Duration = Duration::from_secs(15);

/// Keep-alive: requests one after the other until the client closes (or idles 20 s).
fn serve_connection(conn: TcpStream, state: &State) {
    conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut writer = conn.try_clone().expect("clone stream");
    let mut reader = BufReader::new(conn);
    while let Some(hit) = read_request(&mut reader) {
        let failure = match state.failures.lock().unwrap().get_mut(&hit.path) {
            Some((left, status)) if *left > 0 => {
                *left -= 1;
                Some(*status)
            }
            _ => None,
        };
        let (content_type, answer) = match failure {
            Some(_) => ("application/json".to_string(), Vec::new()),
            None => state
                .answers
                .lock()
                .unwrap()
                .get(&hit.path)
                .cloned()
                .unwrap_or_else(|| ("application/json".to_string(), Vec::new())),
        };
        let status = failure.map_or("200 OK".to_string(), |s| format!("{s} Failed"));
        let path = hit.path.clone();
        {
            let mut hits = state.hits.lock().unwrap();
            hits.push(hit);
            state.arrived.notify_all();
        }
        let held = state.held.lock().unwrap();
        let _ = state
            .released
            .wait_timeout_while(held, HELD_AT_MOST, |held| held.contains(&path));
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&answer).is_err() {
            return;
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Hit> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let (path, query) = (path.to_string(), query.to_string());
    let headers = read_headers(reader)?;
    let len: usize = headers
        .get("content-length")
        .map_or(Some(0), |v| v.trim().parse().ok())?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Some(Hit {
        method,
        path,
        query,
        headers,
        body,
        json,
    })
}

fn read_headers(reader: &mut impl BufRead) -> Option<HashMap<String, String>> {
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return Some(headers);
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// One request on a fresh connection (`Connection: close`); the status and body of the answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    conn.write_all(req.as_bytes()).expect("send request");
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status:?}"));
    let headers = read_headers(&mut reader).expect("response headers");
    assert!(
        !headers.contains_key("transfer-encoding"),
        "chunked answer to {method} {path}: not read here"
    );
    let body = match headers.get("content-length") {
        Some(len) => {
            let mut body = vec![0; len.parse().expect("content-length")];
            reader.read_exact(&mut body).expect("response body");
            body
        }
        None => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).expect("response body");
            body
        }
    };
    (code, String::from_utf8_lossy(&body).into_owned())
}
