//! Call detail records: one JSON line per call leg once it is over
//!
//! The B2BUA notes what happens to each leg in a [`Track`] (when it was invited, answered and
//! ended, who ended it) and, when the leg is over, hands a [`Record`] to the [`Sink`]: the
//! caller's leg when the call ends, every fork of a dial (answered, cancelled or failed) when
//! the dial ends. A record of a leg with media waits, on the writer thread, for that leg's final
//! RTP counters: the media plane reports them (`Event::Stats`) when the B2BUA's posted
//! `Destroy` frees the leg, and the B2BUA's media-event thread passes them here, so the B2BUA
//! task never waits for them. Without them after [`STATS_WAIT`], the record goes without
//! `media`.
//!
//! Each record is appended to `[cdr] file` as one line (written and flushed per line) and POSTed
//! to `[cdr] webhook` (signed like every hook, its retries per the URL fragment); a failure is
//! logged and counted, and no call ever notices. Times are RFC 3339 UTC with milliseconds;
//! every number is an integer (as in every payload: jambonz's signature check re-serialises).
//!
//! Metrics: `dialplane_cdr_written_total{sink}` and `dialplane_cdr_failures_total{sink}`, with
//! `sink` = `file` or `webhook`.

use std::collections::VecDeque;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use media::api::{CallId, LegId};
use media::endpoint::LegStats;
use serde::Serialize;

use crate::config::{CdrConfig, Config};
use crate::message::Request;
use crate::payload::{CallInfo, CallSid, CallStatus, Direction};
use crate::verbs::Hook;
use crate::webhook::WebhookClient;

/// How long a record waits for its leg's final RTP counters.
pub const STATS_WAIT: Duration = Duration::from_secs(2);
/// On close, how long records still waiting for counters may wait.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

const WRITTEN_METRIC: &str = "dialplane_cdr_written_total";
const FAILURES_METRIC: &str = "dialplane_cdr_failures_total";

/// Who ended a leg
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupBy {
    /// The caller (BYE, CANCEL), also on the legs it took down with it.
    Caller,
    /// The callee (BYE, an error answer to the INVITE).
    Callee,
    /// We did: a timer, the app, REST, a shutdown, an error.
    System,
}

/// Why a leg ended
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// A BYE.
    Bye,
    /// A CANCEL before an answer.
    Cancel,
    /// An error answer to the INVITE (busy, decline, not found...).
    Rejected,
    /// No final answer to the INVITE (transaction timeout).
    NoResponse,
    /// Another fork answered first.
    CompletedElsewhere,
    /// The dial's ring timeout.
    RingTimeout,
    /// The dial's timeLimit.
    TimeLimit,
    /// No RTP for the media timeout.
    MediaTimeout,
    /// Shutdown: the drain deadline passed, or a new call came while draining.
    Drain,
    /// A REST call update.
    Rest,
    /// The app: hangup or sip:decline, or no verb left.
    App,
    /// The call webhook failed.
    AppFailed,
    /// No route for the target (no carrier, no registered contact).
    Unroutable,
    /// No codec in common with the caller.
    NoCodec,
    /// The INVITE could not be sent, or taken (no media port, a bad URI).
    LocalError,
    /// The caller's source may not call us (403).
    Forbidden,
}

/// Who ended a leg, and why
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Hangup {
    /// Who.
    #[serde(rename = "hangup_by")]
    pub by: HangupBy,
    /// Why.
    #[serde(rename = "hangup_cause")]
    pub cause: Cause,
}

impl Hangup {
    /// The caller ended it.
    pub fn caller(cause: Cause) -> Self {
        Self {
            by: HangupBy::Caller,
            cause,
        }
    }

    /// The callee ended it.
    pub fn callee(cause: Cause) -> Self {
        Self {
            by: HangupBy::Callee,
            cause,
        }
    }

    /// We ended it.
    pub fn system(cause: Cause) -> Self {
        Self {
            by: HangupBy::System,
            cause,
        }
    }
}

/// What the B2BUA notes about a leg as it goes
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    /// Its INVITE arrived or was sent (the first one, redirects aside).
    pub invited: Instant,
    /// It was answered (2xx).
    pub answered: Option<Instant>,
    /// It ended (else: when the record is made).
    pub ended: Option<Instant>,
    /// The final status of its INVITE, when not what its call info says.
    pub final_code: Option<u16>,
    /// The first reason it ended (see [`Track::hung_up`]).
    pub hangup: Option<Hangup>,
    /// The From user sent, when not the call info's (a fork's callerId, E.164).
    pub from: Option<String>,
}

impl Track {
    /// A leg invited at `invited`.
    pub fn new(invited: Instant) -> Self {
        Self {
            invited,
            answered: None,
            ended: None,
            final_code: None,
            hangup: None,
            from: None,
        }
    }

    /// Notes why the leg is ending; the first reason stays.
    pub fn hung_up(&mut self, h: Hangup) {
        self.hangup.get_or_insert(h);
    }
}

/// A leg's final state as the status hook tells it: completed once answered, else by the
/// final SIP status (busy, no-answer, failed).
pub fn final_status(answered: bool, sip_status: u16) -> CallStatus {
    match (answered, sip_status) {
        (true, _) => CallStatus::Completed,
        (false, 486 | 600) => CallStatus::Busy,
        (false, 408 | 480 | 487) => CallStatus::NoAnswer,
        (false, _) => CallStatus::Failed,
    }
}

/// The carrier whose `inbound` networks an INVITE came from: its top Via's `received` (set by
/// the transport to the source address), else its sent-by host.
pub fn inbound_carrier(config: &Config, request: &Request) -> Option<String> {
    let via = request.headers.top_via().ok()?;
    let host = via.received().unwrap_or(&via.host);
    let ip: IpAddr = host.trim_matches(['[', ']']).parse().ok()?;
    match config.allow(ip) {
        crate::access::Allowed::Carrier(name) => Some(name.to_string()),
        _ => None,
    }
}

/// A leg's final RTP counters, from the relay
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaStats {
    /// RTP packets accepted from the leg's remote.
    pub packets_in: u64,
    /// RTP packets sent to it.
    pub packets_out: u64,
    /// Their bytes (whole RTP packets).
    pub bytes_in: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Packets lost on the way in (RFC 3550 A.3: expected − received; negative with
    /// duplicates).
    pub packets_lost: i64,
    /// Interarrival jitter on the way in (RFC 3550 A.8), in microseconds.
    pub jitter_us: u64,
    /// Packets the relay dropped (bad, from elsewhere, unknown payload type...).
    pub packets_dropped: u64,
}

impl From<&LegStats> for MediaStats {
    fn from(s: &LegStats) -> Self {
        Self {
            packets_in: s.packets_in,
            packets_out: s.packets_out,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            packets_lost: s.lost(),
            jitter_us: (s.jitter_ms() * 1000.0).round() as u64,
            packets_dropped: s.dropped_total(),
        }
    }
}

/// One leg's CDR: one JSON line
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    /// The leg's call sid.
    pub call_sid: CallSid,
    /// A dialled leg: the caller's call sid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_call_sid: Option<CallSid>,
    /// inbound (the caller) or outbound (a dialled leg).
    pub direction: Direction,
    /// The From user.
    pub from: String,
    /// The called user (request URI).
    pub to: String,
    /// The leg's SIP Call-ID.
    pub call_id: String,
    /// The carrier it came from or went to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    /// From `[app] account_sid`.
    pub account_sid: String,
    /// When its INVITE arrived or was sent.
    pub invite_time: String,
    /// When it was answered; absent if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answer_time: Option<String>,
    /// When it ended.
    pub end_time: String,
    /// Answer to end in whole seconds (0 unanswered).
    pub duration: u64,
    /// Answer to end in milliseconds, the difference of the two times as written.
    pub duration_ms: u64,
    /// completed, busy, no-answer or failed (the status hook's words).
    pub call_status: CallStatus,
    /// The final status of its INVITE (200 when answered, 487 when cancelled).
    pub sip_status: u16,
    /// Who ended it, and why.
    #[serde(flatten)]
    pub hangup: Hangup,
    /// The first codec negotiated (e.g. PCMU); absent if none was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codec: Option<String>,
    /// The relay's counters for the leg; absent if it had no media, or they did not come.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<MediaStats>,
}

/// What a record is made of besides the leg's [`Track`]
#[derive(Debug, Clone, Copy)]
pub struct LegEnd<'a> {
    /// The leg's call info (sid, parent, direction, from, to, Call-ID, last status).
    pub info: &'a CallInfo,
    /// Its track.
    pub track: &'a Track,
    /// Its carrier.
    pub carrier: Option<&'a str>,
    /// Its negotiated codec.
    pub codec: Option<&'a str>,
}

impl Record {
    /// The record of a leg ending `now`, its times on the wall clock by `clock`.
    pub fn new(leg: LegEnd<'_>, now: Instant, clock: Anchor) -> Record {
        let LegEnd {
            info,
            track,
            carrier,
            codec,
        } = leg;
        let ms = |t: Instant| clock.unix_ms(t);
        let end = ms(track.ended.unwrap_or(now));
        let answer = track.answered.map(ms);
        let duration_ms = answer.map_or(0, |a| end.saturating_sub(a));
        let answered = track.answered.is_some();
        let sip_status = match (answered, track.final_code) {
            (true, _) => 200,
            (false, Some(code)) => code,
            // A leg that ended without a final answer was cancelled.
            (false, None) if info.sip_status < 300 => 487,
            (false, None) => info.sip_status,
        };
        let call_status = match info.call_status {
            s @ (CallStatus::Completed
            | CallStatus::Busy
            | CallStatus::NoAnswer
            | CallStatus::Failed) => s,
            _ => final_status(answered, sip_status),
        };
        let default_hangup = if answered {
            Hangup::system(Cause::App)
        } else {
            Hangup::system(Cause::Rejected)
        };
        Record {
            call_sid: info.call_sid,
            parent_call_sid: info.parent_call_sid,
            direction: info.direction,
            from: track.from.clone().unwrap_or_else(|| info.from.clone()),
            to: info.to.clone(),
            call_id: info.call_id.clone(),
            carrier: carrier.map(str::to_string),
            account_sid: info.account_sid.clone(),
            invite_time: rfc3339_ms(ms(track.invited)),
            answer_time: answer.map(rfc3339_ms),
            end_time: rfc3339_ms(end),
            duration: duration_ms / 1000,
            duration_ms,
            call_status,
            sip_status,
            hangup: track.hangup.unwrap_or(default_hangup),
            codec: codec.map(str::to_string),
            media: None,
        }
    }
}

/// Both clocks read at one moment: monotonic instants on the wall clock. One anchor for the
/// whole process ([`Anchor::process`]) puts an instant at the same millisecond in every record
/// (a bridged caller's and callee's answer times are equal); a step of the system clock after
/// start is not followed (start dialplane after NTP has synchronised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    mono: Instant,
    unix_ms: u64,
}

impl Anchor {
    /// The process's anchor, read the first time it is asked for.
    pub fn process() -> Anchor {
        static ANCHOR: std::sync::OnceLock<Anchor> = std::sync::OnceLock::new();
        *ANCHOR.get_or_init(|| Anchor::at(Instant::now(), SystemTime::now()))
    }

    /// `mono` is `wall`.
    pub fn at(mono: Instant, wall: SystemTime) -> Anchor {
        let unix_ms = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Anchor { mono, unix_ms }
    }

    /// Milliseconds since the Unix epoch of `t`.
    fn unix_ms(self, t: Instant) -> u64 {
        match t.checked_duration_since(self.mono) {
            Some(after) => self.unix_ms + after.as_millis() as u64,
            None => self
                .unix_ms
                .saturating_sub(self.mono.duration_since(t).as_millis() as u64),
        }
    }
}

/// `2026-11-27T21:41:44.123Z`
fn rfc3339_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's days_from_civil, inverted).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        unix_ms % 1000
    )
}

/// A leg of the media plane: which counters a record waits for
pub type MediaLeg = (CallId, LegId);

enum Msg {
    Leg(Box<Record>, Option<MediaLeg>),
    Stats(MediaLeg, LegStats),
    Close,
}

/// Where the B2BUA hands records and the media plane's final counters; cheap to clone, never
/// blocks
#[derive(Debug, Clone)]
pub struct Sink {
    tx: mpsc::Sender<Msg>,
}

impl Sink {
    /// A leg is over; its record waits for the counters of `media` when it had a media leg.
    pub fn leg(&self, record: Record, media: Option<MediaLeg>) {
        let _ = self.tx.send(Msg::Leg(Box::new(record), media));
    }

    /// A media leg's final counters (the `Event::Stats` of its `Destroy`).
    pub fn stats(&self, media: MediaLeg, stats: LegStats) {
        let _ = self.tx.send(Msg::Stats(media, stats));
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Leg(..) => "Leg",
            Msg::Stats(..) => "Stats",
            Msg::Close => "Close",
        })
    }
}

/// The CDR writer thread
#[derive(Debug)]
pub struct Writer {
    sink: Sink,
    thread: std::thread::JoinHandle<()>,
}

/// Why the writer could not start
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// The file cannot be opened for appending.
    #[error("cannot open the CDR file {path}: {source}")]
    File {
        /// `[cdr] file`.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The thread did not start.
    #[error("cannot start the CDR writer thread")]
    Thread(#[source] std::io::Error),
}

impl Writer {
    /// Starts the writer when `[cdr]` names a file or a webhook (else `None`). Webhook POSTs
    /// run on `runtime` with `webhooks`.
    pub fn start(
        config: &CdrConfig,
        webhooks: WebhookClient,
        runtime: tokio::runtime::Handle,
    ) -> Result<Option<Writer>, CdrError> {
        if !config.enabled() {
            return Ok(None);
        }
        let file = match &config.file {
            Some(path) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| CdrError::File {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let outputs = Outputs {
            file,
            webhook: config
                .webhook
                .as_ref()
                .map(|url| (Hook::post(url.clone()), webhooks, runtime)),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cdr-writer".into())
            .spawn(move || run(&rx, outputs))
            .map_err(CdrError::Thread)?;
        Ok(Some(Writer {
            sink: Sink { tx },
            thread,
        }))
    }

    /// A handle for the B2BUA.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// Writes what is left (waiting briefly for counters still on their way) and stops.
    pub fn close(self) {
        let _ = self.sink.tx.send(Msg::Close);
        let _ = self.thread.join();
    }
}

/// A record waiting for its counters
struct Pending {
    deadline: Instant,
    media: MediaLeg,
    record: Box<Record>,
}

fn run(rx: &mpsc::Receiver<Msg>, mut out: Outputs) {
    // In arrival order, which is deadline order (one wait for all).
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut closing = false;
    loop {
        let now = Instant::now();
        while pending.front().is_some_and(|p| p.deadline <= now) {
            if let Some(p) = pending.pop_front() {
                tracing::debug!(call_sid = %p.record.call_sid, "CDR without media counters");
                out.write(*p.record);
            }
        }
        if closing && pending.is_empty() {
            return;
        }
        let wait = pending
            .front()
            .map_or(Duration::from_secs(3600), |p| p.deadline - now);
        let msg = rx.recv_timeout(wait);
        // The wait may have been long: deadlines count from now.
        let now = Instant::now();
        match msg {
            Ok(Msg::Leg(record, None)) => out.write(*record),
            Ok(Msg::Leg(record, Some(media))) => pending.push_back(Pending {
                deadline: now + STATS_WAIT,
                media,
                record,
            }),
            Ok(Msg::Stats(media, stats)) => {
                if let Some(i) = pending.iter().position(|p| p.media == media)
                    && let Some(mut p) = pending.remove(i)
                {
                    p.record.media = Some(MediaStats::from(&stats));
                    out.write(*p.record);
                }
            }
            Ok(Msg::Close) => {
                closing = true;
                for p in &mut pending {
                    p.deadline = p.deadline.min(now + CLOSE_WAIT);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                for p in pending.drain(..) {
                    out.write(*p.record);
                }
                return;
            }
        }
    }
}

/// Where records go
struct Outputs {
    file: Option<std::fs::File>,
    webhook: Option<(Hook, WebhookClient, tokio::runtime::Handle)>,
}

impl Outputs {
    fn write(&mut self, record: Record) {
        if let Some(file) = &mut self.file {
            let written = serde_json::to_vec(&record)
                .map_err(std::io::Error::other)
                .and_then(|mut line| {
                    line.push(b'\n');
                    // One write per line: appends from one writer never interleave.
                    file.write_all(&line)?;
                    file.flush()
                });
            count("file", written.is_ok());
            if let Err(e) = written {
                tracing::warn!(call_sid = %record.call_sid, error = %e, "CDR not written to the file");
            }
        }
        if let Some((hook, client, runtime)) = &self.webhook {
            let (hook, client) = (hook.clone(), client.clone());
            runtime.spawn(async move {
                let result = client
                    .send(&hook, None, &record, crate::b2bua::unix_now())
                    .await;
                count("webhook", result.is_ok());
                if let Err(e) = result {
                    tracing::warn!(call_sid = %record.call_sid, error = %crate::redact::Text(&e.to_string()), "CDR webhook failed");
                }
            });
        }
    }
}

fn count(sink: &'static str, ok: bool) {
    let name = if ok { WRITTEN_METRIC } else { FAILURES_METRIC };
    metrics::counter!(name, "sink" => sink).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(parent: Option<CallSid>) -> CallInfo {
        CallInfo {
            call_sid: CallSid::new_random(),
            parent_call_sid: parent,
            direction: if parent.is_some() {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            from: "15083084809".into(),
            to: "16173331212".into(),
            call_id: "abc@host".into(),
            caller_name: String::new(),
            sip_status: 100,
            call_status: CallStatus::Trying,
            account_sid: "acct".into(),
            local_sip_address: "127.0.0.1:5060".into(),
        }
    }

    #[test]
    fn rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_007), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_ms(1_798_407_704_123), "2026-12-27T21:41:44.123Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn answered_leg_hung_up_by_the_caller() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_798_407_704_000);
        let now = t0 + Duration::from_millis(4_250);
        let clock = Anchor::at(now, wall);
        let mut track = Track::new(t0);
        track.answered = Some(t0 + Duration::from_millis(1500));
        track.hung_up(Hangup::caller(Cause::Bye));
        track.hung_up(Hangup::system(Cause::App));
        let mut i = info(None);
        i.call_status = CallStatus::Completed;
        i.sip_status = 200;
        let leg = LegEnd {
            info: &i,
            track: &track,
            carrier: Some("acme"),
            codec: Some("PCMU"),
        };
        let r = Record::new(leg, now, clock);
        assert_eq!(r.invite_time, "2026-12-27T21:41:39.750Z");
        assert_eq!(r.answer_time.as_deref(), Some("2026-12-27T21:41:41.250Z"));
        assert_eq!(r.end_time, "2026-12-27T21:41:44.000Z");
        assert_eq!((r.duration, r.duration_ms), (2, 2750));
        assert_eq!((r.call_status, r.sip_status), (CallStatus::Completed, 200));
        assert_eq!(
            r.hangup,
            Hangup::caller(Cause::Bye),
            "the first reason stays"
        );
        let json: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hangup_by"], "caller");
        assert_eq!(json["hangup_cause"], "bye");
        assert_eq!(json["direction"], "inbound");
        assert_eq!(json["call_status"], "completed");
        assert_eq!(json["carrier"], "acme");
        assert_eq!(json["codec"], "PCMU");
        assert!(json.get("parent_call_sid").is_none());
        assert!(json.get("media").is_none());
        let line = serde_json::to_string(&r).unwrap();
        assert!(!line.contains('\n') && !line.contains(".0,"), "{line}");
    }

    #[test]
    fn cancelled_and_rejected_forks() {
        let t0 = Instant::now();
        let clock = Anchor::at(t0, SystemTime::now());
        let parent = CallSid::new_random();
        let mut cancelled = info(Some(parent));
        cancelled.call_status = CallStatus::NoAnswer;
        cancelled.sip_status = 487;
        let mut track = Track::new(t0);
        track.ended = Some(t0 + Duration::from_millis(300));
        track.hung_up(Hangup::system(Cause::CompletedElsewhere));
        track.from = Some("+15083084809".into());
        let leg = LegEnd {
            info: &cancelled,
            track: &track,
            carrier: None,
            codec: None,
        };
        let r = Record::new(leg, t0 + Duration::from_secs(5), clock);
        assert_eq!(r.parent_call_sid, Some(parent));
        assert_eq!(r.direction, Direction::Outbound);
        assert_eq!(r.from, "+15083084809");
        assert_eq!((r.call_status, r.sip_status), (CallStatus::NoAnswer, 487));
        assert_eq!((r.duration, r.duration_ms, &r.answer_time), (0, 0, &None));
        let at = |d: u64| rfc3339_ms(clock.unix_ms(t0 + Duration::from_millis(d)));
        assert_eq!(
            (&r.invite_time, &r.end_time),
            (&at(0), &at(300)),
            "ended then, not now"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hangup_cause"], "completed-elsewhere");
        assert_eq!(json["call_status"], "no-answer");
        assert!(json.get("answer_time").is_none());
        // A leg still ringing when its call went: its status comes from its final code.
        let mut ringing = info(Some(parent));
        ringing.call_status = CallStatus::Ringing;
        ringing.sip_status = 180;
        let mut track = Track::new(t0);
        track.final_code = Some(486);
        let leg = LegEnd {
            info: &ringing,
            track: &track,
            carrier: None,
            codec: None,
        };
        let r = Record::new(leg, t0, clock);
        assert_eq!((r.call_status, r.sip_status), (CallStatus::Busy, 486));
        assert_eq!(r.hangup, Hangup::system(Cause::Rejected));
    }

    #[test]
    fn media_counters_in_the_record() {
        let stats = LegStats {
            packets_in: 50,
            bytes_in: 8600,
            packets_out: 48,
            bytes_out: 8256,
            expected: 52,
            received: 50,
            jitter: 12,
            clock_rate: 8000,
            ..LegStats::default()
        };
        let m = MediaStats::from(&stats);
        assert_eq!((m.packets_in, m.packets_out, m.packets_lost), (50, 48, 2));
        assert_eq!(m.jitter_us, 1500);
        let json = serde_json::to_value(m).unwrap();
        assert_eq!(json["jitter_us"], 1500);
    }

    #[test]
    fn statuses_as_the_status_hook_says() {
        assert_eq!(final_status(true, 487), CallStatus::Completed);
        assert_eq!(final_status(false, 600), CallStatus::Busy);
        assert_eq!(final_status(false, 480), CallStatus::NoAnswer);
        assert_eq!(final_status(false, 503), CallStatus::Failed);
    }

    fn writer_to(path: &std::path::Path) -> (tokio::runtime::Runtime, Writer) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = CdrConfig {
            file: Some(path.to_path_buf()),
            webhook: None,
        };
        let client = WebhookClient::new(Default::default()).unwrap();
        let w = Writer::start(&config, client, rt.handle().clone())
            .unwrap()
            .unwrap();
        (rt, w)
    }

    fn record() -> Record {
        let t = Track::new(Instant::now());
        let i = info(None);
        let leg = LegEnd {
            info: &i,
            track: &t,
            carrier: None,
            codec: None,
        };
        Record::new(leg, Instant::now(), Anchor::process())
    }

    #[test]
    fn the_writer_matches_counters_and_appends_lines() {
        let dir = std::env::temp_dir().join(format!("cdr-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cdr.jsonl");
        let _ = std::fs::remove_file(&path);
        std::fs::write(&path, "{\"earlier\":1}\n").unwrap();
        let (_rt, w) = writer_to(&path);
        let sink = w.sink();
        let (first, second, third) = (record(), record(), record());
        let call = CallId("c".into());
        sink.leg(first.clone(), Some((call.clone(), LegId(0))));
        sink.leg(second.clone(), None);
        sink.leg(third.clone(), Some((call.clone(), LegId(1))));
        let stats = LegStats {
            packets_in: 7,
            ..LegStats::default()
        };
        sink.stats((call, LegId(1)), stats);
        // Leg 0's counters never come: written without them on close.
        w.close();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert_eq!(lines[0]["earlier"], 1, "appended");
        let sid = |r: &Record| serde_json::Value::String(r.call_sid.to_string());
        assert_eq!(lines[1]["call_sid"], sid(&second), "no media: at once");
        assert_eq!(lines[2]["call_sid"], sid(&third));
        assert_eq!(lines[2]["media"]["packets_in"], 7);
        assert_eq!(lines[3]["call_sid"], sid(&first));
        assert!(lines[3].get("media").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
