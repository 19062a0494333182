//! The HTTP edge: jambonz's live call control REST API and `/metrics`
//!
//! - `POST /v1/updateCall/{call_sid}` and `PUT /v1/Accounts/{account_sid}/Calls/{call_sid}`,
//!   with `Authorization: Bearer <[http] api_token>`, take one update per request
//!   (`call_status`, `mute_status`, `listen_status`, `dtmf` or `dub`), parsed strictly into a
//!   [`CallUpdate`] and handed to the live call through the [`CallRegistry`]: 202 when handed
//!   over, 400 naming what is wrong with the body, 401 without the token, 404 for a call that
//!   is not live (or not in that account), 413 for a body over `[http] max_body_bytes`, 503
//!   when the call's queue is full.
//! - `POST /v1/Accounts/{account_sid}/Calls` (createCall, same token): places a call
//!   ([`crate::create_call`]); 201 with `{"sid": call_sid}`, 400 naming what is wrong with the
//!   body (or the target), 404 for another account, 503 when no call can be placed now.
//! - `GET /metrics`: Prometheus text of every `dialplane_*` metric, no token.
//! - `GET /v1/instances` (token): the live instances of the cluster (`--redis`), as JSON.
//!
//! In a cluster ([`crate::cluster`]) every registered call_sid goes into the shared call
//! index; an update for a call_sid that is not live here is forwarded to the instance that owns
//! it (same method, path, token and body, marked with
//! [`FORWARDED_HEADER`](crate::cluster::FORWARDED_HEADER) so it goes no further), and its
//! answer returned as is: 502 if the owner cannot be reached, 503 if Redis cannot be read.
//!
//! The update is accepted, not yet applied: the call applies it on its own task, as jambonz
//! does. Every request counts in `dialplane_http_requests_total{route,status}`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

use crate::config::HttpConfig;

/// One live call control request, as the control app sent it
#[derive(Debug, Clone, PartialEq)]
pub enum CallUpdate {
    /// `call_status`: hang up an answered call, or stop ringing forks.
    CallStatus(CallStatus),
    /// `mute_status`: mute or unmute the party this call_sid names (while a dial is active).
    MuteStatus(MuteStatus),
    /// `listen_status`: control the audio stream of an active `listen`.
    ListenStatus(ListenStatus),
    /// `dtmf`: send RFC 4733 digits on this call.
    Dtmf(Dtmf),
    /// `dub`: change dub tracks of this call (one operation, or a list in order).
    Dub(Vec<Dub>),
}

/// Values of `call_status`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallStatus {
    /// Hang up the call (BYE).
    Completed,
    /// Cancel the call's ringing forks.
    NoAnswer,
}

/// Values of `mute_status`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MuteStatus {
    /// Stop forwarding this party's audio.
    Mute,
    /// Forward it again.
    Unmute,
}

/// Values of `listen_status`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenStatus {
    /// Keep the websocket, send no audio.
    Pause,
    /// Keep sending frames, of silence.
    Silence,
    /// Send the audio again.
    Resume,
}

/// `dtmf`: digits to send
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dtmf {
    /// One or more of `0-9 * # A-D` (upper case).
    pub digits: String,
    /// Duration of each digit (default 250 ms, as jambonz).
    pub duration_ms: u32,
}

/// `dub`: one operation on a named dub track
#[derive(Debug, Clone, PartialEq)]
pub struct Dub {
    /// What to do.
    pub action: DubAction,
    /// The track's label.
    pub track: String,
    /// What to play into it (required by the `*OnTrack` actions, optional for `addTrack`).
    pub source: Option<DubSource>,
    /// Loop the audio.
    pub looped: bool,
    /// Gain applied to the track in dB, within ±50.
    pub gain_db: f32,
}

/// The `action` of a `dub`: the same names as the verb's.
pub use crate::verbs::DubAction;

/// The audio of a dub track
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DubSource {
    /// `play`: an http(s) URL or a path of an audio file.
    Play(String),
    /// `say`: text to synthesise.
    Say(String),
}

/// Why a request body is not a valid [`CallUpdate`]; the message names the field
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadUpdate(String);

const UPDATE_FIELDS: &str = "call_status, mute_status, listen_status, dtmf, dub";

/// Most dub operations in one request (a call has at most 8 tracks).
const MAX_DUBS: usize = 16;

/// The body as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpdate {
    call_status: Option<CallStatus>,
    mute_status: Option<MuteStatus>,
    listen_status: Option<ListenStatus>,
    dtmf: Option<RawDtmf>,
    dub: Option<RawDub>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDtmf {
    digit: String,
    duration: Option<NumberOrText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDub {
    action: DubAction,
    track: String,
    play: Option<String>,
    say: Option<String>,
    #[serde(rename = "loop")]
    looped: Option<bool>,
    gain: Option<NumberOrText>,
}

/// jambonz apps send `duration: 250` or `"250"`, `gain: -6` or `"-6 dB"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Number(f64),
    Text(String),
}

impl CallUpdate {
    /// The body field this update came in (`call_status`, `dub`, ...), for logs
    pub fn field(&self) -> &'static str {
        match self {
            CallUpdate::CallStatus(_) => "call_status",
            CallUpdate::MuteStatus(_) => "mute_status",
            CallUpdate::ListenStatus(_) => "listen_status",
            CallUpdate::Dtmf(_) => "dtmf",
            CallUpdate::Dub(_) => "dub",
        }
    }

    /// Parses a request body: strict JSON, no unknown field, exactly one update
    pub fn from_json(body: &[u8]) -> Result<CallUpdate, BadUpdate> {
        let mut value = crate::strict_json::object(body).map_err(BadUpdate)?;
        let fields = value.as_object().map_or(0, serde_json::Map::len);
        // jambonz apps also send a list of dub operations: each is checked as a single one.
        if let Some(serde_json::Value::Array(list)) = value.get_mut("dub") {
            if fields != 1 {
                return Err(BadUpdate(format!(
                    "several updates given: expected exactly one of {UPDATE_FIELDS}"
                )));
            }
            if list.is_empty() || list.len() > MAX_DUBS {
                return Err(BadUpdate(format!(
                    "dub: 1 to {MAX_DUBS} operations expected"
                )));
            }
            let mut dubs = Vec::with_capacity(list.len());
            for (i, d) in std::mem::take(list).into_iter().enumerate() {
                let dub = if d.is_object() {
                    crate::strict_json::typed::<RawDub>(d, "dub")
                        .map_err(BadUpdate)
                        .and_then(RawDub::check)
                } else {
                    Err(BadUpdate("dub: a JSON object expected".into()))
                };
                match dub {
                    Ok(d) => dubs.push(d),
                    Err(BadUpdate(m)) => return Err(BadUpdate(format!("dub[{i}]: {m}"))),
                }
            }
            return Ok(CallUpdate::Dub(dubs));
        }
        for field in ["dtmf", "dub"] {
            if value
                .get(field)
                .is_some_and(|v| !v.is_object() && !v.is_null())
            {
                return Err(BadUpdate(format!("{field}: a JSON object expected")));
            }
        }
        let raw: RawUpdate = crate::strict_json::typed(value, "").map_err(BadUpdate)?;
        let given = [
            raw.call_status.is_some(),
            raw.mute_status.is_some(),
            raw.listen_status.is_some(),
            raw.dtmf.is_some(),
            raw.dub.is_some(),
        ]
        .into_iter()
        .filter(|&b| b)
        .count();
        if given != 1 {
            let what = if given == 0 {
                "no update given"
            } else {
                "several updates given"
            };
            return Err(BadUpdate(format!(
                "{what}: expected exactly one of {UPDATE_FIELDS}"
            )));
        }
        Ok(if let Some(s) = raw.call_status {
            CallUpdate::CallStatus(s)
        } else if let Some(s) = raw.mute_status {
            CallUpdate::MuteStatus(s)
        } else if let Some(s) = raw.listen_status {
            CallUpdate::ListenStatus(s)
        } else if let Some(d) = raw.dtmf {
            CallUpdate::Dtmf(d.check()?)
        } else if let Some(d) = raw.dub {
            CallUpdate::Dub(vec![d.check()?])
        } else {
            unreachable!("exactly one update is present")
        })
    }
}

impl RawDtmf {
    fn check(self) -> Result<Dtmf, BadUpdate> {
        let digits = self.digit.to_ascii_uppercase();
        if digits.is_empty()
            || digits.len() > 32
            || !digits.bytes().all(|b| b"0123456789*#ABCD".contains(&b))
        {
            return Err(BadUpdate(
                "dtmf.digit: 1 to 32 of 0-9, *, #, A-D expected".into(),
            ));
        }
        let duration = match self.duration {
            None => 250.0,
            Some(d) => d.value("").ok_or_else(|| {
                BadUpdate("dtmf.duration: a number of milliseconds expected".into())
            })?,
        };
        if !(40.0..=5000.0).contains(&duration) {
            return Err(BadUpdate(
                "dtmf.duration: must lie between 40 and 5000 ms".into(),
            ));
        }
        Ok(Dtmf {
            digits,
            duration_ms: duration.round() as u32,
        })
    }
}

impl NumberOrText {
    /// The number, from text with an optional `unit` suffix (spaces around it allowed).
    fn value(&self, unit: &str) -> Option<f64> {
        let n = match self {
            NumberOrText::Number(n) => *n,
            NumberOrText::Text(t) => {
                let t = t.trim();
                let t = t
                    .len()
                    .checked_sub(unit.len())
                    .filter(|&i| !unit.is_empty() && t.is_char_boundary(i))
                    .filter(|&i| t[i..].eq_ignore_ascii_case(unit))
                    .map_or(t, |i| t[..i].trim_end());
                t.parse().ok()?
            }
        };
        n.is_finite().then_some(n)
    }
}

impl Dub {
    /// A `dub` nested in the dial verb, checked as a REST `dub` is (`say` as text only)
    pub fn from_verb(d: &crate::verbs::Dub) -> Result<Dub, BadUpdate> {
        let say = match &d.say {
            None => None,
            Some(serde_json::Value::String(text)) => Some(text.clone()),
            Some(_) => return Err(BadUpdate("dub.say: text expected".into())),
        };
        RawDub {
            action: d.action,
            track: d.track.clone(),
            play: d.play.clone(),
            say,
            looped: d.loop_,
            gain: d.gain.as_ref().map(|g| match g {
                crate::verbs::Gain::Db(n) => NumberOrText::Number(*n),
                crate::verbs::Gain::Text(t) => NumberOrText::Text(t.clone()),
            }),
        }
        .check()
    }
}

impl RawDub {
    fn check(self) -> Result<Dub, BadUpdate> {
        let bad = |m: &str| Err(BadUpdate(format!("dub.{m}")));
        if self.track.is_empty() || self.track.len() > 64 || self.track.contains(char::is_control) {
            return bad("track: 1 to 64 characters expected");
        }
        let source = match (self.play, self.say) {
            (Some(_), Some(_)) => return bad("play, dub.say: give one of them, not both"),
            (Some(url), None) => {
                // A path or file:// URL names a file on this host (trusted apps only reach here).
                let scheme_ok = ["http://", "https://", "file://", "/"]
                    .iter()
                    .any(|p| url.starts_with(p));
                if !scheme_ok || url.contains(char::is_control) {
                    return bad("play: an http(s) URL or a file path expected");
                }
                Some(DubSource::Play(url))
            }
            (None, Some(text)) if text.trim().is_empty() => {
                return bad("say: text expected");
            }
            (None, Some(text)) => Some(DubSource::Say(text)),
            (None, None) => None,
        };
        match (self.action, &source) {
            (DubAction::PlayOnTrack, Some(DubSource::Play(_)))
            | (DubAction::SayOnTrack, Some(DubSource::Say(_)))
            | (DubAction::AddTrack, _)
            | (DubAction::RemoveTrack | DubAction::SilenceTrack, None) => {}
            (DubAction::PlayOnTrack, _) => return bad("play: required by playOnTrack"),
            (DubAction::SayOnTrack, _) => return bad("say: required by sayOnTrack"),
            (DubAction::RemoveTrack | DubAction::SilenceTrack, Some(_)) => {
                return bad("action: removeTrack and silenceTrack take no play or say");
            }
        }
        let gain_db = match &self.gain {
            None => 0.0,
            Some(g) => g
                .value("dB")
                .filter(|g| (-50.0..=50.0).contains(g))
                .ok_or_else(|| {
                    BadUpdate("dub.gain: \"-6 dB\" or a number within ±50 expected".into())
                })?,
        };
        Ok(Dub {
            action: self.action,
            track: self.track,
            source,
            looped: self.looped.unwrap_or(false),
            gain_db: gain_db as f32,
        })
    }
}

/// An update on its way to a live call, with the call_sid it was addressed to (a call may
/// register several, e.g. its A leg and its B legs)
#[derive(Debug, Clone, PartialEq)]
pub struct LiveUpdate {
    /// The call_sid of the request's path.
    pub call_sid: Arc<str>,
    /// What to do.
    pub update: CallUpdate,
}

/// Why an update did not reach a call
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliverError {
    /// No live call has this call_sid (or it has just ended).
    #[error("call not found")]
    UnknownCall,
    /// The call exists in another account.
    #[error("call not found in this account")]
    WrongAccount,
    /// The call's queue of updates is full.
    #[error("call is busy")]
    Busy,
}

/// The call_sid was registered already
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("call_sid {0} is registered already")]
pub struct AlreadyRegistered(pub String);

/// Live calls by call_sid, filled by the B2BUA and read by the REST handlers
#[derive(Debug, Default)]
pub struct CallRegistry {
    calls: Mutex<HashMap<Arc<str>, Entry>>,
    /// The cluster whose call index lists our call_sids.
    cluster: Option<crate::cluster::Cluster>,
}

#[derive(Debug)]
struct Entry {
    account_sid: Arc<str>,
    tx: mpsc::Sender<LiveUpdate>,
}

/// A call's place in the [`CallRegistry`]; dropping it unregisters the call_sid
#[derive(Debug)]
#[must_use = "the call is unregistered when this is dropped"]
pub struct Registration {
    registry: Arc<CallRegistry>,
    call_sid: Arc<str>,
}

impl CallRegistry {
    /// A registry whose call_sids go into `cluster`'s call index
    pub fn clustered(cluster: crate::cluster::Cluster) -> CallRegistry {
        CallRegistry {
            calls: Mutex::default(),
            cluster: Some(cluster),
        }
    }

    /// The cluster, if any
    pub fn cluster(&self) -> Option<&crate::cluster::Cluster> {
        self.cluster.as_ref()
    }

    /// Makes `call_sid` (of `account_sid`) reachable by REST; its updates go to `tx`
    pub fn register(
        self: &Arc<Self>,
        call_sid: &str,
        account_sid: &str,
        tx: mpsc::Sender<LiveUpdate>,
    ) -> Result<Registration, AlreadyRegistered> {
        let mut calls = self.lock();
        if calls.contains_key(call_sid) {
            return Err(AlreadyRegistered(call_sid.to_string()));
        }
        let call_sid: Arc<str> = call_sid.into();
        if let Some(c) = &self.cluster {
            c.call_started(&call_sid);
        }
        calls.insert(
            call_sid.clone(),
            Entry {
                account_sid: account_sid.into(),
                tx,
            },
        );
        Ok(Registration {
            registry: self.clone(),
            call_sid,
        })
    }

    /// Hands `update` to the call without waiting; `account_sid` is checked when given
    pub fn deliver(
        &self,
        call_sid: &str,
        account_sid: Option<&str>,
        update: CallUpdate,
    ) -> Result<(), DeliverError> {
        let calls = self.lock();
        let (key, entry) = calls
            .get_key_value(call_sid)
            .ok_or(DeliverError::UnknownCall)?;
        if account_sid.is_some_and(|a| a != &*entry.account_sid) {
            return Err(DeliverError::WrongAccount);
        }
        let update = LiveUpdate {
            call_sid: key.clone(),
            update,
        };
        entry.tx.try_send(update).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DeliverError::Busy,
            // The call's task is gone; its Registration is about to be dropped.
            mpsc::error::TrySendError::Closed(_) => DeliverError::UnknownCall,
        })
    }

    /// How many call_sids are registered
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// No call_sid is registered
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        // The map stays consistent even if a holder panicked: every update is one insert or
        // remove.
        self.calls.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Registration {
    /// The registered call_sid
    pub fn call_sid(&self) -> &str {
        &self.call_sid
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only this registration can remove the entry: register refuses duplicates.
        self.registry.lock().remove(&*self.call_sid);
        if let Some(c) = &self.registry.cluster {
            c.call_ended(&self.call_sid);
        }
    }
}

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 1024;
/// How long open requests may finish after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The HTTP listener's service: REST call control and `/metrics`
#[derive(Clone)]
pub struct RestApi {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<CallRegistry>,
    prometheus: PrometheusHandle,
    api_token: Option<String>,
    max_body_bytes: usize,
    request_timeout: Duration,
    /// Where createCall requests go ([`RestApi::with_calls`]).
    calls: Option<crate::b2bua::Handle>,
}

impl RestApi {
    /// The API over `registry`, with `[http]`'s token and limits; `prometheus` renders
    /// `/metrics` (the handle of the recorder the binary installed)
    pub fn new(
        registry: Arc<CallRegistry>,
        prometheus: PrometheusHandle,
        http: &HttpConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                prometheus,
                api_token: http.api_token.clone(),
                max_body_bytes: http.max_body_bytes,
                request_timeout: Duration::from_millis(u64::from(http.request_timeout_ms)),
                calls: None,
            }),
        }
    }

    /// createCall places its calls through `b2bua` (without it, createCall answers 503)
    pub fn with_calls(mut self, b2bua: crate::b2bua::Handle) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.calls = Some(b2bua);
        }
        self
    }

    /// The routes, with request timeout and metrics around them
    pub fn router(&self) -> Router {
        let timeout = self.inner.request_timeout;
        Router::new()
            .route("/v1/updateCall/{call_sid}", post(update_call))
            .route(
                "/v1/Accounts/{account_sid}/Calls/{call_sid}",
                put(update_account_call),
            )
            .route("/v1/Accounts/{account_sid}/Calls", post(create_call))
            .route("/metrics", get(render_metrics))
            .route("/v1/instances", get(list_instances))
            .fallback(|| async { error(StatusCode::NOT_FOUND, "no such resource") })
            .with_state(self.inner.clone())
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                with_timeout(timeout, req, next)
            }))
            .layer(middleware::from_fn(count_request))
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` completes, then lets open requests
    /// finish (for a few seconds)
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let router = self.router();
        let header_timeout = self.inner.request_timeout;
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "http accept failed");
                    metrics::counter!("dialplane_http_accept_errors_total").increment(1);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                let peer = crate::redact::Addr(peer);
                tracing::warn!(%peer, "http connection refused: {MAX_CONNECTIONS} open");
                metrics::counter!("dialplane_http_connections_refused_total").increment(1);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "http connection ended with an error");
                }
                drop(slot);
            });
        }
        drop(listener);
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("http shutdown: requests still open after {SHUTDOWN_GRACE:?}");
        }
        Ok(())
    }
}

async fn with_timeout(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => error(StatusCode::REQUEST_TIMEOUT, "request took too long"),
    }
}

async fn count_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_string(), |p| p.as_str().to_string());
    let response = next.run(req).await;
    let status = response.status();
    metrics::counter!(
        "dialplane_http_requests_total",
        "route" => route,
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    response
}

async fn update_call(
    State(api): State<Arc<Inner>>,
    Path(call_sid): Path<String>,
    req: Request,
) -> Response {
    api.update(&call_sid, None, req).await
}

async fn update_account_call(
    State(api): State<Arc<Inner>>,
    Path((account_sid, call_sid)): Path<(String, String)>,
    req: Request,
) -> Response {
    api.update(&call_sid, Some(&account_sid), req).await
}

async fn create_call(
    State(api): State<Arc<Inner>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(response) = api.unauthorized(&headers) {
        return response;
    }
    let bytes = match api.read_body(body).await {
        Ok(b) => b,
        Err((status, why)) => return error(status, &why),
    };
    let request = match crate::create_call::CreateCall::from_json(&bytes) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(reason = %e, "createCall refused");
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
    };
    let Some(calls) = &api.calls else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no calls can be placed here",
        );
    };
    match calls.create_call(&account_sid, request).await {
        Ok(sid) => (
            StatusCode::CREATED,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::json!({ "sid": sid.to_string() }).to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::info!(error = %e, "createCall failed");
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            error(status, &e.to_string())
        }
    }
}

async fn list_instances(State(api): State<Arc<Inner>>, headers: HeaderMap) -> Response {
    if let Some(response) = api.unauthorized(&headers) {
        return response;
    }
    let Some(cluster) = api.registry.cluster() else {
        return error(StatusCode::NOT_FOUND, "not in a cluster (no --redis)");
    };
    match cluster.instances().await {
        Ok(list) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::to_string(&list).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("cluster state unavailable: {e}"),
        ),
    }
}

async fn render_metrics(State(api): State<Arc<Inner>>) -> Response {
    api.prometheus.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        api.prometheus.render(),
    )
        .into_response()
}

impl Inner {
    async fn update(&self, call_sid: &str, account_sid: Option<&str>, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        if let Some(response) = self.unauthorized(&parts.headers) {
            return response;
        }
        let bytes = match self.read_body(body).await {
            Ok(b) => b,
            Err((status, why)) => return error(status, &why),
        };
        let update = match CallUpdate::from_json(&bytes) {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(call_sid, reason = %e, "updateCall refused");
                return error(StatusCode::BAD_REQUEST, &e.to_string());
            }
        };
        // The field only: dub URLs and texts stay out of info-level logs.
        tracing::info!(call_sid, update = update.field(), "updateCall");
        let delivered = self.registry.deliver(call_sid, account_sid, update);
        // Not here: in a cluster the call may live on another instance (once, no loops).
        if let Err(DeliverError::UnknownCall) = delivered
            && !parts.headers.contains_key(crate::cluster::FORWARDED_HEADER)
            && let Some(cluster) = self.registry.cluster()
        {
            return self.forward(cluster, call_sid, &parts, bytes).await;
        }
        match delivered {
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e @ (DeliverError::UnknownCall | DeliverError::WrongAccount)) => {
                error(StatusCode::NOT_FOUND, &format!("{e}: {call_sid}"))
            }
            Err(e @ DeliverError::Busy) => {
                error(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}: {call_sid}"))
            }
        }
    }

    /// 401 (with `WWW-Authenticate`) unless the request carries the token.
    fn unauthorized(&self, headers: &HeaderMap) -> Option<Response> {
        let why = self.authorize(headers).err()?;
        let mut response = error(StatusCode::UNAUTHORIZED, why);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        Some(response)
    }

    /// The body, up to `max_body_bytes`; else the status (413 beyond) and why.
    async fn read_body(&self, body: Body) -> Result<bytes::Bytes, (StatusCode, String)> {
        match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {} bytes", self.max_body_bytes),
            )),
            Err(e) => Err((StatusCode::BAD_REQUEST, format!("cannot read body: {e}"))),
        }
    }

    /// Sends the request on to the instance owning `call_sid` (see the module docs).
    async fn forward(
        &self,
        cluster: &crate::cluster::Cluster,
        call_sid: &str,
        parts: &axum::http::request::Parts,
        body: bytes::Bytes,
    ) -> Response {
        let owner = match cluster.owner(call_sid).await {
            Ok(Some(owner)) => owner,
            Ok(None) => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("call not found: {call_sid}"),
                );
            }
            Err(e) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("cluster state unavailable: {e}"),
                );
            }
        };
        let path = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str());
        tracing::info!(call_sid, owner = %owner.id, "updateCall forwarded to the owner");
        metrics::counter!("dialplane_rest_forwarded_total").increment(1);
        match cluster
            .forward(&owner, parts.method.clone(), path, &parts.headers, body)
            .await
        {
            Ok((status, content_type, body)) => {
                let mut response = (status, body).into_response();
                if let Some(v) = content_type.and_then(|c| HeaderValue::from_str(&c).ok()) {
                    response.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                response
            }
            Err(e) => error(
                StatusCode::BAD_GATEWAY,
                &format!("owner {} of {call_sid} unreachable: {e}", owner.id),
            ),
        }
    }

    /// Checks `Authorization: Bearer <token>` in constant time; `Err` says what is wrong.
    fn authorize(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        let Some(token) = &self.api_token else {
            return Err("REST is disabled: no api_token is configured");
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            });
        match given {
            Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err("invalid api token"),
            None => Err("missing bearer token"),
        }
    }
}

/// Equality whose time depends on the lengths only, not on where the bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An error answer: `{"msg": "…"}`, as jambonz answers.
fn error(status: StatusCode, msg: &str) -> Response {
    let body = serde_json::json!({ "msg": msg }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CallUpdate, String> {
        CallUpdate::from_json(s.as_bytes()).map_err(|e| e.0)
    }

    #[test]
    fn each_update_parses() {
        assert_eq!(
            parse(r#"{"call_status":"completed"}"#),
            Ok(CallUpdate::CallStatus(CallStatus::Completed))
        );
        assert_eq!(
            parse(r#"{"dub":{"action":"addTrack","track":"t"}}"#)
                .unwrap()
                .field(),
            "dub"
        );
        assert_eq!(
            parse(r#"{"call_status":"no-answer"}"#),
            Ok(CallUpdate::CallStatus(CallStatus::NoAnswer))
        );
        assert_eq!(
            parse(r#"{"mute_status":"unmute"}"#),
            Ok(CallUpdate::MuteStatus(MuteStatus::Unmute))
        );
        assert_eq!(
            parse(r#"{"listen_status":"pause"}"#),
            Ok(CallUpdate::ListenStatus(ListenStatus::Pause))
        );
        assert_eq!(
            parse(r#"{"dtmf":{"digit":"1"}}"#),
            Ok(CallUpdate::Dtmf(Dtmf {
                digits: "1".into(),
                duration_ms: 250
            }))
        );
        assert_eq!(
            parse(r#"{"dtmf":{"digit":"*9a","duration":"400"}}"#),
            Ok(CallUpdate::Dtmf(Dtmf {
                digits: "*9A".into(),
                duration_ms: 400
            }))
        );
        assert_eq!(
            parse(
                r#"{"dub":{"action":"addTrack","track":"office","play":"https://x/o.mp3","loop":true,"gain":"-10 dB"}}"#
            ),
            Ok(CallUpdate::Dub(vec![Dub {
                action: DubAction::AddTrack,
                track: "office".into(),
                source: Some(DubSource::Play("https://x/o.mp3".into())),
                looped: true,
                gain_db: -10.0
            }]))
        );
        // A list, in order; an error names the element.
        let list = parse(
            r#"{"dub":[{"action":"addTrack","track":"a"},{"action":"playOnTrack","track":"a","play":"/srv/a.wav","gain":-6}]}"#,
        );
        let Ok(CallUpdate::Dub(list)) = list else {
            panic!("{list:?}")
        };
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].source, Some(DubSource::Play("/srv/a.wav".into())));
        assert_eq!(list[1].gain_db, -6.0);
        let bad = parse(
            r#"{"dub":[{"action":"addTrack","track":"a"},{"action":"playOnTrack","track":"a"}]}"#,
        );
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.starts_with("dub[1]: dub.play")),
            "{bad:?}"
        );
        assert!(parse(r#"{"dub":[]}"#).is_err());
        assert!(
            parse(r#"{"dub":[{"action":"addTrack","track":"a"}],"dtmf":{"digit":"1"}}"#).is_err()
        );
        assert_eq!(
            parse(r#"{"dub":{"action":"sayOnTrack","track":"t","say":"hello","gain":6}}"#),
            Ok(CallUpdate::Dub(vec![Dub {
                action: DubAction::SayOnTrack,
                track: "t".into(),
                source: Some(DubSource::Say("hello".into())),
                looped: false,
                gain_db: 6.0
            }]))
        );
        for action in ["removeTrack", "silenceTrack", "addTrack"] {
            let body = format!(r#"{{"dub":{{"action":"{action}","track":"t"}}}}"#);
            assert!(parse(&body).is_ok(), "{body}");
        }
    }

    #[test]
    fn bad_bodies_name_the_field() {
        for (body, expect) in [
            ("", "EOF"),
            ("{", "EOF"),
            ("[]", "must be a JSON object"),
            (
                r#"["completed",null,null,null,null]"#,
                "must be a JSON object",
            ),
            (r#"{"dtmf":["1",250]}"#, "dtmf: a JSON object expected"),
            (r#"{"dub":"addTrack"}"#, "dub: a JSON object expected"),
            ("{}", "no update given"),
            (r#"{"call_status":null}"#, "no update given"),
            (
                r#"{"call_status":"completed","mute_status":"mute"}"#,
                "several updates",
            ),
            (
                r#"{"call_status":"busy"}"#,
                "call_status: unknown variant `busy`",
            ),
            (r#"{"call_status":1}"#, "call_status"),
            (r#"{"mute_status":"MUTE"}"#, "mute_status"),
            (r#"{"listen_status":"stop"}"#, "listen_status"),
            (r#"{"call_hook":"http://x"}"#, "unknown field `call_hook`"),
            (r#"{"whisper":{"verb":"say"}}"#, "unknown field `whisper`"),
            (r#"{"call_status":"completed",}"#, "trailing comma"),
            (r#"{"dtmf":{"digit":"x"}}"#, "dtmf.digit"),
            (r#"{"dtmf":{"digit":""}}"#, "dtmf.digit"),
            (
                r#"{"dtmf":{"duration":100}}"#,
                "dtmf: missing field `digit`",
            ),
            (
                r#"{"dtmf":{"digit":"1","duration":"long"}}"#,
                "dtmf.duration",
            ),
            (r#"{"dtmf":{"digit":"1","duration":10}}"#, "dtmf.duration"),
            (
                r#"{"dtmf":{"digit":"1","dur":10}}"#,
                "dtmf.dur: unknown field `dur`",
            ),
            (
                r#"{"dub":{"action":"mixTrack","track":"t"}}"#,
                "dub.action: unknown variant",
            ),
            (r#"{"dub":{"action":"addTrack"}}"#, "missing field `track`"),
            (r#"{"dub":{"action":"addTrack","track":""}}"#, "dub.track"),
            (
                r#"{"dub":{"action":"playOnTrack","track":"t"}}"#,
                "dub.play",
            ),
            (
                r#"{"dub":{"action":"playOnTrack","track":"t","play":"ftp://x"}}"#,
                "dub.play",
            ),
            (
                r#"{"dub":{"action":"sayOnTrack","track":"t","play":"http://x"}}"#,
                "dub.say",
            ),
            (
                r#"{"dub":{"action":"removeTrack","track":"t","say":"hi"}}"#,
                "dub.action",
            ),
            (
                r#"{"dub":{"action":"addTrack","track":"t","say":"a","play":"http://x"}}"#,
                "dub.play",
            ),
            (
                r#"{"dub":{"action":"addTrack","track":"t","gain":"-60 dB"}}"#,
                "dub.gain",
            ),
            (
                r#"{"dub":{"action":"addTrack","track":"t","gain":"loud"}}"#,
                "dub.gain",
            ),
            (
                r#"{"dub":{"action":"addTrack","track":"t","loop":"yes"}}"#,
                "dub.loop",
            ),
        ] {
            let e = parse(body).unwrap_err();
            assert!(e.contains(expect), "{body}: {e}");
        }
    }

    #[test]
    fn gain_and_duration_texts() {
        let t = |s: &str, unit| NumberOrText::Text(s.into()).value(unit);
        assert_eq!(t("-6 dB", "dB"), Some(-6.0));
        assert_eq!(t("+3.5db", "dB"), Some(3.5));
        assert_eq!(t(" 12 ", "dB"), Some(12.0));
        assert_eq!(t("dB", "dB"), None);
        assert_eq!(t("NaN", "dB"), None);
        assert_eq!(t("250", ""), Some(250.0));
        assert_eq!(t("ü", "dB"), None);
        assert_eq!(NumberOrText::Number(f64::INFINITY).value(""), None);
    }

    #[tokio::test]
    async fn registry_routes_updates_and_unregisters_on_drop() {
        let registry = Arc::new(CallRegistry::default());
        let (tx, mut rx) = mpsc::channel(1);
        let reg = registry.register("c1", "acct", tx.clone()).unwrap();
        assert_eq!(reg.call_sid(), "c1");
        let b_leg = registry.register("c1-b", "acct", tx).unwrap();
        assert_eq!(
            registry
                .register("c1", "acct", mpsc::channel(1).0)
                .unwrap_err(),
            AlreadyRegistered("c1".into())
        );
        let hang_up = CallUpdate::CallStatus(CallStatus::Completed);
        registry
            .deliver("c1-b", Some("acct"), hang_up.clone())
            .unwrap();
        assert_eq!(
            registry.deliver("c1", None, hang_up.clone()),
            Err(DeliverError::Busy),
            "the queue holds one"
        );
        let got = rx.recv().await.unwrap();
        assert_eq!((&*got.call_sid, &got.update), ("c1-b", &hang_up));
        assert_eq!(
            registry.deliver("c1", Some("other"), hang_up.clone()),
            Err(DeliverError::WrongAccount)
        );
        assert_eq!(
            registry.deliver("c2", None, hang_up.clone()),
            Err(DeliverError::UnknownCall)
        );
        assert_eq!(registry.len(), 2);
        drop(reg);
        drop(b_leg);
        assert!(registry.is_empty());
        assert_eq!(
            registry.deliver("c1", None, hang_up.clone()),
            Err(DeliverError::UnknownCall)
        );
        // A receiver gone before its registration: the call is treated as ended.
        let (tx, rx) = mpsc::channel(1);
        let _reg = registry.register("c3", "acct", tx).unwrap();
        drop(rx);
        assert_eq!(
            registry.deliver("c3", None, hang_up),
            Err(DeliverError::UnknownCall)
        );
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}
