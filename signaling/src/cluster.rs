//! A cluster of `serve` instances sharing state through Redis (`--redis URL`)
//!
//! Calls stay on the instance that took them (Kamailio's dispatcher spreads them); Redis holds
//! only what another instance must see. Keys, all under `dialplane:`:
//!
//! | key | value | written | gone |
//! |---|---|---|---|
//! | `reg:<aor>` | hash: contact URI → binding (JSON) | on every REGISTER that changes it | `PEXPIREAT` its last binding's expiry, `HDEL`/`DEL` on unregister |
//! | `call:<call_sid>` | the owning instance's name | when the call_sid becomes reachable by REST | when it is not, or after [`CALL_TTL`] (an instance killed mid-call) |
//! | `instance:<name>` | JSON `{"id","rest","sip"}` | every [`HEARTBEAT`] | [`HEARTBEAT_TTL`] after the instance stopped |
//! | `nonce_secret` | the digest nonce secret (random, set once by the first instance) | | never |
//!
//! Registrations: the registrar stays synchronous and sans-IO; its store is a local
//! [`MemoryStore`](crate::registrar::MemoryStore) mirrored to Redis ([`Store::shared`]: each
//! change is queued, in order, to a writer task) and announced on the channel `dialplane:reg` as `<instance>\n<aor>`. Every
//! instance follows the channel, reads the announced AOR's hash and replaces its local copy
//! ([`Cluster::follow_registrations`]); after each (re)subscription it reads every `reg:*` hash,
//! so a restarted instance, or one that missed messages while Redis was away, catches up. A user
//! registered through one instance is thus dialled from any other from its local copy.
//!
//! Digest nonces are HMACs of their timestamp ([`crate::auth`]); the instances share the secret
//! (`registrar.nonce_secret`, else `nonce_secret` in Redis), so a challenge issued by one
//! instance verifies on another.
//!
//! REST for a call another instance owns ([`crate::rest`]): the call_sid is not in the local
//! registry, so the handler looks up `call:<sid>` and that instance's heartbeat, and sends the
//! same request (method, path, bearer token, body) to its advertised REST base with the header
//! [`FORWARDED_HEADER`]; the owner's status and body are the answer. A forwarded request is
//! never forwarded again; an owner without a heartbeat is gone, and the call with it (404).
//!
//! Redis unreachable at startup: [`Cluster::connect`] fails with the reason. Lost while
//! running: every failed operation is logged (once per outage) and counted in
//! `dialplane_redis_errors_total{op}`, `dialplane_redis_up` is 0; the calls of this instance go
//! on (nothing on the call path waits for Redis) and the connection is retried.
//! `dialplane_cluster_instances` is the number of live heartbeats, read every [`HEARTBEAT`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::RedisConfig;
use crate::message::Uri;
use crate::registrar::{Binding, Store, Transport};

/// How often an instance renews its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a heartbeat lives: an instance silent this long is gone.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(5);
/// A call index entry outlives a killed owner at most this long.
pub const CALL_TTL: Duration = Duration::from_secs(24 * 3600);
/// Marks a REST request one instance forwarded to another (its value: the sender's name).
pub const FORWARDED_HEADER: &str = "x-dialplane-forwarded-by";

const PREFIX: &str = "dialplane:";
const CHANNEL: &str = "dialplane:reg";
pub(crate) const ERRORS_METRIC: &str = "dialplane_redis_errors_total";
const UP_METRIC: &str = "dialplane_redis_up";
const INSTANCES_METRIC: &str = "dialplane_cluster_instances";
/// Connecting and each command give up after this (the call path never waits on them).
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Why the cluster could not be joined
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// `[redis] url` is not a Redis URL.
    #[error("redis.url: {0}")]
    Url(#[source] redis::RedisError),
    /// Redis did not answer.
    #[error("cannot reach Redis at {url}: {reason}")]
    Unreachable {
        /// The URL, without its password.
        url: String,
        /// What the client said (in the message, so not a source printed twice).
        reason: redis::RedisError,
    },
    /// The HTTP client for forwarded REST requests could not be built.
    #[error("REST forwarding client: {0}")]
    Http(#[source] reqwest::Error),
}

/// One registration change, in the order the registrar made it
#[derive(Debug, Clone, PartialEq)]
pub enum RegChange {
    /// Write this binding; the AOR's key lives until `key_expires_at`.
    Upsert {
        /// The binding (boxed: the other changes are small).
        binding: Box<Binding>,
        /// The latest expiry among the AOR's bindings.
        key_expires_at: SystemTime,
    },
    /// Delete one contact of an AOR.
    Remove {
        /// The AOR.
        aor: String,
        /// The contact URI.
        contact: String,
    },
    /// Delete every contact of an AOR.
    RemoveAll {
        /// The AOR.
        aor: String,
    },
}

enum Op {
    Reg(RegChange),
    CallStarted(String),
    CallEnded(String),
}

/// Another instance, from its heartbeat
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instance {
    /// Its name (`[redis] instance`).
    pub id: String,
    /// Its REST base URL.
    pub rest: String,
    /// Its first SIP listener.
    pub sip: String,
}

/// This instance's handle on the cluster; cheap to clone
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    me: Instance,
    client: redis::Client,
    conn: ConnectionManager,
    ops: mpsc::UnboundedSender<Op>,
    nonce_secret: Vec<u8>,
    http: reqwest::Client,
    /// Redis answered the last operation (errors are logged on the change only).
    up: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.inner.me.id)
            .finish_non_exhaustive()
    }
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    crate::config::redacted_url(Some(url))
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Cluster {
    /// Connects to `[redis] url` (bounded: [`REDIS_TIMEOUT`]), takes or sets the shared nonce
    /// secret, and starts the writer and heartbeat tasks on the current tokio runtime.
    /// `http_listen` is our REST listener, `sip` our SIP address (advertised in the heartbeat).
    pub async fn connect(
        config: &RedisConfig,
        http_listen: SocketAddr,
        sip: &str,
        forward_timeout: Duration,
    ) -> Result<Cluster, ClusterError> {
        let url = config.url.clone().unwrap_or_default();
        let client = redis::Client::open(url.as_str()).map_err(ClusterError::Url)?;
        let unreachable = |reason| ClusterError::Unreachable {
            url: redacted(&url),
            reason,
        };
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let mut conn = client
            .get_connection_manager_with_config(manager)
            .await
            .map_err(unreachable)?;
        let key = format!("{PREFIX}nonce_secret");
        let candidate = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let (secret,): (String,) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&candidate)
            .arg("NX")
            .ignore()
            .cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(unreachable)?;
        let rest = config.rest_base(http_listen);
        let id = config.instance.clone().unwrap_or_else(|| {
            url::Url::parse(&rest)
                .ok()
                .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
                .unwrap_or_else(|| rest.clone())
        });
        let http = reqwest::Client::builder()
            .timeout(forward_timeout)
            .build()
            .map_err(ClusterError::Http)?;
        let (ops, rx) = mpsc::unbounded_channel();
        let cluster = Cluster {
            inner: Arc::new(Inner {
                me: Instance {
                    id,
                    rest,
                    sip: sip.to_string(),
                },
                client,
                conn,
                ops,
                nonce_secret: secret.into_bytes(),
                http,
                up: AtomicBool::new(true),
            }),
        };
        metrics::gauge!(UP_METRIC).set(1.0);
        tokio::spawn(cluster.clone().write(rx));
        tokio::spawn(cluster.clone().heartbeat());
        tracing::info!(instance = %cluster.inner.me.id, redis = %redacted(&url), "joined the cluster");
        Ok(cluster)
    }

    /// This instance's name
    pub fn id(&self) -> &str {
        &self.inner.me.id
    }

    /// The digest nonce secret every instance shares
    pub fn nonce_secret(&self) -> &[u8] {
        &self.inner.nonce_secret
    }

    /// A registration store mirrored to the cluster
    pub fn store(&self) -> Store {
        let ops = self.inner.ops.clone();
        Store::shared(move |c| ops.send(Op::Reg(c)).is_ok())
    }

    /// The call index: `call_sid` is reachable here (REST)
    pub fn call_started(&self, call_sid: &str) {
        let _ = self.inner.ops.send(Op::CallStarted(call_sid.to_string()));
    }

    /// The call index: `call_sid` is no more
    pub fn call_ended(&self, call_sid: &str) {
        let _ = self.inner.ops.send(Op::CallEnded(call_sid.to_string()));
    }

    /// Notes the outcome of a Redis operation: errors logged when Redis goes away, counted always.
    fn outcome<T>(&self, op: &'static str, r: redis::RedisResult<T>) -> Option<T> {
        match r {
            Ok(v) => {
                if !self.inner.up.swap(true, Ordering::Relaxed) {
                    tracing::info!("Redis is back");
                    metrics::gauge!(UP_METRIC).set(1.0);
                }
                Some(v)
            }
            Err(e) => {
                metrics::counter!(ERRORS_METRIC, "op" => op).increment(1);
                if self.inner.up.swap(false, Ordering::Relaxed) {
                    tracing::error!(op, error = %e, "Redis lost: shared state is not updated; local calls go on");
                    metrics::gauge!(UP_METRIC).set(0.0);
                } else {
                    tracing::debug!(op, error = %e, "Redis operation failed");
                }
                None
            }
        }
    }

    /// Applies the queued changes in order.
    async fn write(self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut conn = self.inner.conn.clone();
        let me = &self.inner.me.id;
        while let Some(op) = rx.recv().await {
            let mut pipe = redis::pipe();
            let what = match &op {
                Op::Reg(change) => {
                    let aor = match change {
                        RegChange::Upsert {
                            binding,
                            key_expires_at,
                        } => {
                            let key = reg_key(&binding.aor);
                            let json = serde_json::to_string(&StoredBinding::from(&**binding))
                                .unwrap_or_default();
                            pipe.cmd("HSET")
                                .arg(&key)
                                .arg(binding.contact.to_string())
                                .arg(json)
                                .ignore();
                            pipe.cmd("PEXPIREAT")
                                .arg(&key)
                                .arg(unix_ms(*key_expires_at))
                                .ignore();
                            &binding.aor
                        }
                        RegChange::Remove { aor, contact } => {
                            pipe.cmd("HDEL").arg(reg_key(aor)).arg(contact).ignore();
                            aor
                        }
                        RegChange::RemoveAll { aor } => {
                            pipe.cmd("DEL").arg(reg_key(aor)).ignore();
                            aor
                        }
                    };
                    pipe.cmd("PUBLISH")
                        .arg(CHANNEL)
                        .arg(format!("{me}\n{aor}"))
                        .ignore();
                    "registration"
                }
                Op::CallStarted(sid) => {
                    pipe.cmd("SET")
                        .arg(format!("{PREFIX}call:{sid}"))
                        .arg(me)
                        .arg("EX")
                        .arg(CALL_TTL.as_secs())
                        .ignore();
                    "call_index"
                }
                Op::CallEnded(sid) => {
                    pipe.cmd("DEL").arg(format!("{PREFIX}call:{sid}")).ignore();
                    "call_index"
                }
            };
            let r: redis::RedisResult<()> = pipe.query_async(&mut conn).await;
            self.outcome(what, r);
        }
    }

    /// Renews our heartbeat every [`HEARTBEAT`] and counts the live ones.
    async fn heartbeat(self) {
        let mut conn = self.inner.conn.clone();
        let key = format!("{PREFIX}instance:{}", self.inner.me.id);
        let value = serde_json::to_string(&self.inner.me).unwrap_or_default();
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let r: redis::RedisResult<()> = redis::cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(HEARTBEAT_TTL.as_millis() as u64)
                .query_async(&mut conn)
                .await;
            if self.outcome("heartbeat", r).is_none() {
                continue;
            }
            let keys = scan(&mut conn, &format!("{PREFIX}instance:*")).await;
            if let Some(keys) = self.outcome("heartbeat", keys) {
                metrics::gauge!(INSTANCES_METRIC).set(keys.len() as f64);
            }
        }
    }

    /// The live instances (their heartbeats)
    pub async fn instances(&self) -> Result<Vec<Instance>, redis::RedisError> {
        let mut conn = self.inner.conn.clone();
        let keys = scan(&mut conn, &format!("{PREFIX}instance:*")).await;
        let keys = self.outcome("instances", keys).unwrap_or_default();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
        let mut list: Vec<Instance> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_str(&v).ok())
            .collect();
        list.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(list)
    }

    /// The live instance owning `call_sid`, if it is another one than us; `Ok(None)` when the
    /// call is unknown or its owner has no heartbeat.
    pub async fn owner(&self, call_sid: &str) -> Result<Option<Instance>, redis::RedisError> {
        let mut conn = self.inner.conn.clone();
        let id: Option<String> = redis::cmd("GET")
            .arg(format!("{PREFIX}call:{call_sid}"))
            .query_async(&mut conn)
            .await?;
        let Some(id) = id.filter(|id| *id != self.inner.me.id) else {
            return Ok(None);
        };
        let beat: Option<String> = redis::cmd("GET")
            .arg(format!("{PREFIX}instance:{id}"))
            .query_async(&mut conn)
            .await?;
        Ok(beat.and_then(|b| serde_json::from_str(&b).ok()))
    }

    /// Sends a REST request on to `owner` (same method, path and body; the bearer token and
    /// content type carried over; [`FORWARDED_HEADER`] added): its status, content type, body
    pub async fn forward(
        &self,
        owner: &Instance,
        method: reqwest::Method,
        path: &str,
        headers: &reqwest::header::HeaderMap,
        body: bytes::Bytes,
    ) -> Result<(reqwest::StatusCode, Option<String>, bytes::Bytes), reqwest::Error> {
        let mut req = self
            .inner
            .http
            .request(method, format!("{}{path}", owner.rest))
            .header(FORWARDED_HEADER, &self.inner.me.id)
            .body(body);
        for name in [
            reqwest::header::AUTHORIZATION,
            reqwest::header::CONTENT_TYPE,
        ] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let res = req.send().await?;
        let status = res.status();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok((status, content_type, res.bytes().await?))
    }

    /// Follows the registrations other instances make: after each (re)subscription every
    /// stored AOR, then each announced one, is handed to `deliver` (its current bindings, empty
    /// when none is left). Runs until `deliver` returns false.
    pub fn follow_registrations(
        &self,
        deliver: impl Fn(String, Vec<Binding>) -> bool + Send + 'static,
    ) {
        let cluster = self.clone();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            loop {
                let subscribed = async {
                    let mut ps = cluster.inner.client.get_async_pubsub().await?;
                    ps.subscribe(CHANNEL).await?;
                    Ok::<_, redis::RedisError>(ps)
                };
                let Some(ps) = cluster.outcome("subscribe", subscribed.await) else {
                    tokio::time::sleep(HEARTBEAT).await;
                    continue;
                };
                let mut conn = cluster.inner.conn.clone();
                let keys = scan(&mut conn, &format!("{PREFIX}reg:*")).await;
                for key in cluster.outcome("registrations", keys).unwrap_or_default() {
                    let aor = key[PREFIX.len() + 4..].to_string();
                    if let Some(list) = cluster.read_aor(&mut conn, &aor).await
                        && !deliver(aor, list)
                    {
                        return;
                    }
                }
                let mut messages = ps.into_on_message();
                while let Some(msg) = messages.next().await {
                    let payload: String = msg.get_payload().unwrap_or_default();
                    let Some((from, aor)) = payload.split_once('\n') else {
                        continue;
                    };
                    if from == cluster.inner.me.id {
                        continue;
                    }
                    if let Some(list) = cluster.read_aor(&mut conn, aor).await
                        && !deliver(aor.to_string(), list)
                    {
                        return;
                    }
                }
                cluster.outcome::<()>(
                    "subscribe",
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::ConnectionReset,
                    ))),
                );
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
    }

    async fn read_aor(&self, conn: &mut ConnectionManager, aor: &str) -> Option<Vec<Binding>> {
        let r: redis::RedisResult<HashMap<String, String>> = redis::cmd("HGETALL")
            .arg(reg_key(aor))
            .query_async(conn)
            .await;
        let hash = self.outcome("registrations", r)?;
        Some(
            hash.values()
                .filter_map(|v| serde_json::from_str::<StoredBinding>(v).ok())
                .filter_map(|b| b.into_binding(aor))
                .collect(),
        )
    }
}

fn reg_key(aor: &str) -> String {
    format!("{PREFIX}reg:{aor}")
}

/// Every key matching `pattern` (SCAN, so Redis is never blocked).
async fn scan(conn: &mut ConnectionManager, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let mut cursor = 0u64;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// A [`Binding`] as stored in Redis.
#[derive(Debug, Serialize, Deserialize)]
struct StoredBinding {
    contact: String,
    expires_at_ms: u64,
    updated_at_ms: u64,
    q: Option<u16>,
    call_id: String,
    cseq: u32,
    source: SocketAddr,
    transport: String,
    path: Vec<String>,
    instance: Option<String>,
    reg_id: Option<u32>,
}

impl From<&Binding> for StoredBinding {
    fn from(b: &Binding) -> Self {
        StoredBinding {
            contact: b.contact.to_string(),
            expires_at_ms: unix_ms(b.expires_at),
            updated_at_ms: unix_ms(b.updated_at),
            q: b.q,
            call_id: b.call_id.clone(),
            cseq: b.cseq,
            source: b.source,
            transport: b.transport.as_str().to_string(),
            path: b.path.clone(),
            instance: b.instance.clone(),
            reg_id: b.reg_id,
        }
    }
}

impl StoredBinding {
    /// Back to a binding; `None` if the stored contact or transport does not parse.
    fn into_binding(self, aor: &str) -> Option<Binding> {
        let transport = match self.transport.as_str() {
            "UDP" => Transport::Udp,
            "TCP" => Transport::Tcp,
            "TLS" => Transport::Tls,
            "WS" => Transport::Ws,
            "WSS" => Transport::Wss,
            _ => return None,
        };
        let at = |ms| UNIX_EPOCH + Duration::from_millis(ms);
        Some(Binding {
            aor: aor.to_string(),
            contact: Uri::parse(&self.contact).ok()?,
            expires_at: at(self.expires_at_ms),
            updated_at: at(self.updated_at_ms),
            q: self.q,
            call_id: self.call_id,
            cseq: self.cseq,
            source: self.source,
            transport,
            path: self.path,
            instance: self.instance,
            reg_id: self.reg_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::RegistrationStore;
    use std::sync::Mutex;

    fn binding(contact: &str, expires_s: u64) -> Binding {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        Binding {
            aor: "sip:bob@example.com".into(),
            contact: Uri::parse(contact).unwrap(),
            expires_at: now + Duration::from_secs(expires_s),
            updated_at: now,
            q: Some(500),
            call_id: "c1".into(),
            cseq: 7,
            source: "192.0.2.1:5062".parse().unwrap(),
            transport: Transport::Tcp,
            path: vec!["<sip:edge.example.com;lr>".into()],
            instance: Some("\"<urn:uuid:1>\"".into()),
            reg_id: Some(1),
        }
    }

    #[test]
    fn changes_pass_on_in_order_and_remote_ones_do_not() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut store = Store::shared(move |c| {
            log.lock().unwrap().push(c);
            true
        });
        let (a, b) = (
            binding("sip:bob@192.0.2.1:5062", 60),
            binding("sip:bob@192.0.2.9", 300),
        );
        store.upsert(a.clone());
        store.upsert(b.clone());
        store.remove(&a.aor, &a.contact);
        store.replace(&a.aor, vec![a.clone()]);
        assert_eq!(store.bindings(&a.aor), vec![a.clone()]);
        store.remove_all(&a.aor);
        assert!(store.is_empty());
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                RegChange::Upsert {
                    binding: Box::new(a.clone()),
                    key_expires_at: a.expires_at
                },
                // The key lives as long as the AOR's longest binding.
                RegChange::Upsert {
                    binding: Box::new(b.clone()),
                    key_expires_at: b.expires_at
                },
                RegChange::Remove {
                    aor: a.aor.clone(),
                    contact: a.contact.to_string()
                },
                RegChange::RemoveAll { aor: a.aor.clone() },
            ]
        );
    }

    #[test]
    fn stored_binding_round_trips() {
        let b = binding("sip:bob@192.0.2.1:5062;transport=tcp", 60);
        let json = serde_json::to_string(&StoredBinding::from(&b)).unwrap();
        let back: StoredBinding = serde_json::from_str(&json).unwrap();
        assert_eq!(back.into_binding(&b.aor), Some(b));
    }

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(
            redacted("redis://user:pw@127.0.0.1:6379/0"),
            "redis://user:%3Credacted%3E@127.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1/"), "redis://127.0.0.1/");
    }
}
