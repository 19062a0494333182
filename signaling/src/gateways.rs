//! Carrier gateways: the order a call tries them in, which ones are up, and their OPTIONS probes
//!
//! A call to a carrier gets an ordered list of [`Candidate`]s, one per gateway: the gateways up
//! first, as listed (`strategy = "priority"`) or drawn by weight (`"weighted"`); when none is up
//! every gateway is tried, as listed, rather than failing the call at once. A fork that gets 408,
//! a 5xx, no answer (Timer B) or an unreachable port from one candidate goes on to the next
//! ([`fails_over`]); the list is the whole bound on attempts. A candidate is a Request-URI, so
//! DNS (RFC 3263) can later expand one gateway into several addresses without touching this.
//!
//! Health: each gateway of a carrier with `probe_interval_s > 0` gets an OPTIONS every interval
//! through the B2BUA's transaction layer. Any answer but 408 or a 5xx means up (501 too: the
//! gateway is there, it just does not implement OPTIONS); those, a Timer F
//! timeout or a transport error (ICMP unreachable) mean down, and so does a call failing there
//! the same ways. A gateway down stays out of rotation until a probe succeeds. Without probes
//! every gateway counts as up (nothing could bring one back).
//!
//! Pure apart from the caller's clock: [`Gateways::send_probes`] takes `now` and the
//! transaction layer, [`Gateways::handle_tx_event`] takes the probes' outcomes.
//!
//! Metrics: the gauge `dialplane_gateway_up{carrier,gateway}` (1 up, 0 down).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{CarrierConfig, Strategy};
use crate::message::{HeaderName, Method, Request, SipUri, Uri};
use crate::transaction::{TransactionKey, Transactions, TxEvent};

/// The gauge of each gateway's health
pub const UP_METRIC: &str = "dialplane_gateway_up";

/// One place a fork to a carrier may go
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The carrier's name.
    pub carrier: String,
    /// The gateway's index in the carrier's `gateways` when the route was made (a reload may
    /// have moved it since: failures are reported by URI).
    pub gateway: usize,
    /// The Request-URI: the gateway with the number as user part.
    pub uri: SipUri,
}

/// Whether a fork that ended with `status` (`None`: Timer B or a transport error) should try
/// the carrier's next gateway: 408, any 5xx, no answer; never another 4xx or a 6xx, which are
/// the callee's answer rather than the gateway's trouble.
pub fn fails_over(status: Option<u16>) -> bool {
    match status {
        None => true,
        Some(s) => s == 408 || (500..600).contains(&s),
    }
}

/// One fork's way through its carrier's gateways
#[derive(Debug, Clone)]
pub struct Route {
    /// The number dialled (E.164): the leg's `to`, whatever the Request-URI carries.
    pub number: String,
    candidates: Vec<Candidate>,
    /// How many candidates were sent an INVITE.
    tried: usize,
    /// The first INVITE's extra headers and caller id, for the next gateways.
    headers: Vec<(String, String)>,
    caller_id: Option<String>,
    /// The carrier's `progress_timeout_ms`.
    progress_timeout: Option<Duration>,
    /// When the current gateway counts as not answering, until it shows progress.
    deadline: Option<Instant>,
}

impl Route {
    /// A route over `candidates` (in the order to try them); a gateway silent (no 18x, no
    /// final response) for `progress_timeout` is left for the next.
    pub fn new(
        number: String,
        candidates: Vec<Candidate>,
        progress_timeout: Option<Duration>,
    ) -> Route {
        Route {
            number,
            candidates,
            tried: 0,
            headers: Vec::new(),
            caller_id: None,
            progress_timeout,
            deadline: None,
        }
    }

    /// When the current gateway counts as not answering (`None`: Timer B decides).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The current gateway sent a provisional response: it is there, however long it rings.
    pub fn progressed(&mut self) {
        self.deadline = None;
    }

    /// The first candidate's Request-URI (`None`: no gateway at all).
    pub fn first_uri(&self) -> Option<String> {
        self.candidates.first().map(|c| c.uri.to_string())
    }

    /// The dial sent the first INVITE with these `headers` and `caller_id`; the next
    /// gateways get the same.
    pub fn invited(&mut self, now: Instant, headers: &[(String, String)], caller_id: Option<&str>) {
        self.tried = 1;
        self.deadline = self.progress_timeout.map(|t| now + t);
        self.headers = headers.to_vec();
        self.caller_id = caller_id.map(str::to_string);
    }

    /// Whether the first INVITE went out (a later one from the dial is a redirect's).
    pub fn started(&self) -> bool {
        self.tried > 0
    }

    /// The candidate the last INVITE went to.
    pub fn current(&self) -> Option<&Candidate> {
        self.tried
            .checked_sub(1)
            .and_then(|i| self.candidates.get(i))
    }

    /// Moves on to the next candidate; `None` once every one was tried.
    pub fn advance(&mut self, now: Instant) -> Option<NextInvite> {
        let next = self.candidates.get(self.tried)?;
        self.tried += 1;
        self.deadline = self.progress_timeout.map(|t| now + t);
        Some(NextInvite {
            uri: next.uri.to_string(),
            headers: self.headers.clone(),
            caller_id: self.caller_id.clone(),
        })
    }
}

/// The INVITE to a fork's next gateway
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextInvite {
    /// Its Request-URI.
    pub uri: String,
    /// The first INVITE's extra headers.
    pub headers: Vec<(String, String)>,
    /// The first INVITE's caller id.
    pub caller_id: Option<String>,
}

struct Gateway {
    uri: SipUri,
    /// The metric label and log name: the URI as configured.
    label: String,
    up: bool,
    next_probe: Instant,
    /// The probe in flight.
    probe: Option<TransactionKey>,
}

struct Carrier {
    name: String,
    /// `None`: no probes.
    interval: Option<Duration>,
    gateways: Vec<Gateway>,
}

/// Every carrier's gateways and their health
pub struct Gateways {
    carriers: Vec<Carrier>,
    probes: HashMap<TransactionKey, (usize, usize)>,
    /// xorshift state for weighted draws.
    rng: u64,
    /// Numbers the probes' Call-IDs.
    sent: u64,
}

impl Gateways {
    /// Every gateway of `carriers` up, the first probes due at `now`; `seed` drives the
    /// weighted draws and the probes' Call-IDs.
    pub fn new(carriers: &[CarrierConfig], now: Instant, seed: u64) -> Gateways {
        let carriers = carriers
            .iter()
            .map(|c| Carrier {
                name: c.name.clone(),
                interval: (c.probe_interval_s > 0)
                    .then(|| Duration::from_secs(c.probe_interval_s.into())),
                gateways: c
                    .gateways
                    .iter()
                    .map(|uri| {
                        let label = uri.to_string();
                        metrics::gauge!(UP_METRIC, "carrier" => c.name.clone(), "gateway" => label.clone())
                            .set(1.0);
                        Gateway {
                            uri: uri.clone(),
                            label,
                            up: true,
                            next_probe: now,
                            probe: None,
                        }
                    })
                    .collect(),
            })
            .collect();
        Gateways {
            carriers,
            probes: HashMap::new(),
            rng: seed | 1,
            sent: 0,
        }
    }

    /// The route of a call to `carrier`'s `number` (E.164) with Request-URI user part `user`.
    pub fn route(&mut self, carrier: &CarrierConfig, number: &str, user: &str) -> Route {
        let timeout = (carrier.progress_timeout_ms > 0)
            .then(|| Duration::from_millis(carrier.progress_timeout_ms.into()));
        Route::new(number.to_string(), self.candidates(carrier, user), timeout)
    }

    /// The carriers of a reloaded configuration: a gateway kept (same carrier, same URI) keeps
    /// its health, probe and schedule; new ones start up and are probed at once.
    pub fn reconfigure(&mut self, carriers: &[CarrierConfig], now: Instant) {
        let mut next = Gateways::new(carriers, now, self.rng);
        next.sent = self.sent;
        for (ci, c) in next.carriers.iter_mut().enumerate() {
            let Some(old) = self.carriers.iter().find(|o| o.name == c.name) else {
                continue;
            };
            for (gi, g) in c.gateways.iter_mut().enumerate() {
                let Some(o) = old.gateways.iter().find(|o| o.uri == g.uri) else {
                    continue;
                };
                // Without probes now, nothing could bring a gateway back.
                g.up = o.up || c.interval.is_none();
                g.next_probe = c.interval.map_or(now, |i| o.next_probe.min(now + i));
                g.probe = o.probe.clone();
                if let Some(k) = &g.probe {
                    next.probes.insert(k.clone(), (ci, gi));
                }
                metrics::gauge!(UP_METRIC, "carrier" => c.name.clone(), "gateway" => g.label.clone())
                    .set(if g.up { 1.0 } else { 0.0 });
            }
        }
        *self = next;
    }

    /// Where a call to `carrier` (as the call's configuration has it: a reload since does not
    /// move the call) with Request-URI user part `user` tries to go, in order: one candidate per
    /// gateway that is up (all of them when none is).
    pub fn candidates(&mut self, carrier: &CarrierConfig, user: &str) -> Vec<Candidate> {
        let up: Vec<bool> = carrier
            .gateways
            .iter()
            .map(|uri| self.up_by_uri(&carrier.name, uri))
            .collect();
        self.order(carrier.strategy, &carrier.gateways.weights, &up)
            .into_iter()
            .map(|gi| {
                let mut uri = carrier.gateways[gi].clone();
                uri.user = Some(user.to_string());
                Candidate {
                    carrier: carrier.name.clone(),
                    gateway: gi,
                    uri,
                }
            })
            .collect()
    }

    /// Whether `carrier`'s gateway `uri` is in rotation (one we do not track is).
    fn up_by_uri(&self, carrier: &str, uri: &SipUri) -> bool {
        self.carriers
            .iter()
            .find(|c| c.name == carrier)
            .and_then(|c| c.gateways.iter().find(|g| &g.uri == uri))
            .is_none_or(|g| g.up)
    }

    /// Gateway indices in the order of one call, from their weights and which are `up`.
    fn order(&mut self, strategy: Strategy, weights: &[u32], up: &[bool]) -> Vec<usize> {
        let mut live: Vec<usize> = (0..up.len()).filter(|&i| up[i]).collect();
        if live.is_empty() {
            return (0..up.len()).collect();
        }
        if strategy == Strategy::Weighted {
            // Drawn one at a time, each with a chance proportional to its weight among those
            // left.
            let weight = |i: usize| u64::from(weights.get(i).copied().unwrap_or(1));
            let mut drawn = Vec::with_capacity(live.len());
            while !live.is_empty() {
                let total: u64 = live.iter().map(|&i| weight(i)).sum();
                let mut r = self.next_random() % total.max(1);
                let k = live
                    .iter()
                    .position(|&i| {
                        if r < weight(i) {
                            return true;
                        }
                        r -= weight(i);
                        false
                    })
                    .unwrap_or(0);
                drawn.push(live.remove(k));
            }
            live = drawn;
        }
        live
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: plenty for spreading calls, no dependency.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Whether gateway `gi` of carrier `ci` is in rotation.
    pub fn is_up(&self, ci: usize, gi: usize) -> bool {
        self.carriers
            .get(ci)
            .and_then(|c| c.gateways.get(gi))
            .is_some_and(|g| g.up)
    }

    /// A call failed at `candidate` in a way that [`fails_over`]: its gateway leaves rotation
    /// until a probe succeeds (when the carrier is probed).
    pub fn call_failed(&mut self, candidate: &Candidate, status: Option<u16>) {
        let why = match status {
            Some(s) => format!("call got {s}"),
            None => "call got no answer".to_string(),
        };
        let mut gateway = candidate.uri.clone();
        gateway.user = None;
        let Some(ci) = self
            .carriers
            .iter()
            .position(|c| c.name == candidate.carrier)
        else {
            return;
        };
        if let Some(gi) = self.carriers[ci]
            .gateways
            .iter()
            .position(|g| g.uri == gateway)
        {
            self.set(ci, gi, false, &why);
        }
    }

    fn set(&mut self, ci: usize, gi: usize, up: bool, why: &str) {
        let Some(c) = self.carriers.get_mut(ci) else {
            return;
        };
        if c.interval.is_none() {
            return;
        }
        let Some(g) = c.gateways.get_mut(gi) else {
            return;
        };
        if g.up == up {
            return;
        }
        g.up = up;
        let state = if up { "up" } else { "down" };
        tracing::info!(carrier = %c.name, gateway = %g.label, reason = why, "gateway {state}");
        metrics::gauge!(UP_METRIC, "carrier" => c.name.clone(), "gateway" => g.label.clone())
            .set(if up { 1.0 } else { 0.0 });
    }

    /// When [`send_probes`](Self::send_probes) has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.carriers
            .iter()
            .filter(|c| c.interval.is_some())
            .flat_map(|c| &c.gateways)
            .filter(|g| g.probe.is_none())
            .map(|g| g.next_probe)
            .min()
    }

    /// Sends the OPTIONS that are due (one in flight per gateway at most), from `sent_by`
    /// (our Via and From host); `resolve` gives a gateway's address (`None`: counted as a
    /// failed probe).
    pub fn send_probes(
        &mut self,
        now: Instant,
        tx: &mut Transactions,
        sent_by: SocketAddr,
        resolve: impl Fn(&Uri) -> Option<SocketAddr>,
    ) {
        for ci in 0..self.carriers.len() {
            let Some(interval) = self.carriers[ci].interval else {
                continue;
            };
            for gi in 0..self.carriers[ci].gateways.len() {
                let g = &self.carriers[ci].gateways[gi];
                if g.probe.is_some() || g.next_probe > now {
                    continue;
                }
                let uri = Uri::Sip(g.uri.clone());
                self.sent += 1;
                let req = probe_request(&uri, sent_by, self.sent, self.rng);
                let sent = resolve(&uri).and_then(|dest| tx.send_request(now, req, dest).ok());
                self.carriers[ci].gateways[gi].next_probe = now + interval;
                match sent {
                    Some(key) => {
                        self.carriers[ci].gateways[gi].probe = Some(key.clone());
                        self.probes.insert(key, (ci, gi));
                    }
                    None => self.set(ci, gi, false, "no address for the probe"),
                }
            }
        }
    }

    /// Takes a transaction event if it is a probe's (`true`), updating its gateway's health.
    pub fn handle_tx_event(&mut self, e: &TxEvent) -> bool {
        let (key, outcome) = match e {
            TxEvent::Response { key, response } => {
                let s = response.status.as_u16();
                if s < 200 {
                    return self.probes.contains_key(key);
                }
                // 501: alive, only without OPTIONS support.
                let up = s == 501 || !fails_over(Some(s));
                (key, (up, format!("probe got {s}")))
            }
            TxEvent::Timeout { key, .. } => (key, (false, "probe timed out".to_string())),
            TxEvent::TransportError { key } => (key, (false, "probe unreachable".to_string())),
            TxEvent::Terminated { key } => {
                return self.probes.remove(key).is_some_and(|(ci, gi)| {
                    let g = &mut self.carriers[ci].gateways[gi];
                    if g.probe.as_ref() == Some(key) {
                        g.probe = None;
                    }
                    true
                });
            }
            TxEvent::Ack { .. } => return false,
        };
        let Some(&(ci, gi)) = self.probes.get(key) else {
            return false;
        };
        // The gateway may be probed again; the transaction's end is still ours to swallow.
        self.carriers[ci].gateways[gi].probe = None;
        let (up, why) = outcome;
        self.set(ci, gi, up, &why);
        true
    }
}

/// An OPTIONS to `uri` from us (RFC 3261 §11): a fresh Call-ID and From tag per probe.
fn probe_request(uri: &Uri, sent_by: SocketAddr, n: u64, salt: u64) -> Request {
    let id = format!("{salt:x}-{n}");
    Request::new(Method::OPTIONS, uri.clone())
        .with_header(HeaderName::VIA, format!("SIP/2.0/UDP {sent_by}"))
        .with_header(HeaderName::MAX_FORWARDS, 70)
        .with_header(
            HeaderName::FROM,
            format!("<sip:dialplane@{sent_by}>;tag=p{id}"),
        )
        .with_header(HeaderName::TO, format!("<{uri}>"))
        .with_header(HeaderName::CALL_ID, format!("probe-{id}@{sent_by}"))
        .with_header(HeaderName::CSEQ, "1 OPTIONS")
        .with_header(HeaderName::ACCEPT, "application/sdp")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::message::{Message, Response, StatusCode};
    use crate::transaction::TimerConfig;

    fn carriers(text: &str) -> Vec<CarrierConfig> {
        Config::from_toml(text, "t").unwrap().carriers
    }

    fn three(extra: &str) -> Vec<CarrierConfig> {
        carriers(&format!(
            "[[carriers]]\nname = \"c\"\n{extra}\ngateways = [\"sip:10.0.0.1\", \
             {{ uri = \"sip:10.0.0.2:5070\", weight = 3 }}, {{ uri = \"sip:10.0.0.3\" }}]\n"
        ))
    }

    fn hosts(g: &mut Gateways, c: &CarrierConfig) -> Vec<String> {
        g.candidates(c, "+15551230000")
            .iter()
            .map(|c| c.uri.to_string())
            .collect()
    }

    #[test]
    fn priority_order_skips_gateways_that_are_down() {
        let t0 = Instant::now();
        let cfg = three("");
        let mut g = Gateways::new(&cfg, t0, 7);
        assert_eq!(
            hosts(&mut g, &cfg[0]),
            [
                "sip:+15551230000@10.0.0.1",
                "sip:+15551230000@10.0.0.2:5070",
                "sip:+15551230000@10.0.0.3"
            ]
        );
        let first = g.candidates(&cfg[0], "1").remove(0);
        assert!(fails_over(Some(503)));
        g.call_failed(&first, Some(503));
        assert!(!g.is_up(0, 0));
        assert_eq!(hosts(&mut g, &cfg[0])[0], "sip:+15551230000@10.0.0.2:5070");
        assert_eq!(hosts(&mut g, &cfg[0]).len(), 2);
        // Every gateway down: all are tried, as listed, rather than none.
        for c in g.candidates(&cfg[0], "1") {
            g.call_failed(&c, None);
        }
        assert_eq!(hosts(&mut g, &cfg[0]).len(), 3);
        assert_eq!(hosts(&mut g, &cfg[0])[0], "sip:+15551230000@10.0.0.1");
    }

    #[test]
    fn a_route_tries_each_candidate_once() {
        let t0 = Instant::now();
        let config = three("progress_timeout_ms = 800");
        let mut g = Gateways::new(&config, t0, 1);
        let mut r = g.route(&config[0], "+1555", "+1555");
        assert!(!r.started() && r.current().is_none());
        assert_eq!(r.first_uri().as_deref(), Some("sip:+1555@10.0.0.1"));
        r.invited(t0, &[("X-A".into(), "1".into())], Some("+1999"));
        assert!(r.started());
        assert_eq!(r.current().map(|c| c.gateway), Some(0));
        assert_eq!(r.deadline(), Some(t0 + Duration::from_millis(800)));
        r.progressed();
        assert_eq!(r.deadline(), None, "a gateway that rings may ring on");
        let t1 = t0 + Duration::from_secs(3);
        let next = r.advance(t1).unwrap();
        assert_eq!(r.deadline(), Some(t1 + Duration::from_millis(800)));
        assert_eq!(next.uri, "sip:+1555@10.0.0.2:5070");
        assert_eq!(next.headers, [("X-A".to_string(), "1".to_string())]);
        assert_eq!(next.caller_id.as_deref(), Some("+1999"));
        assert_eq!(r.current().map(|c| c.gateway), Some(1));
        assert!(r.advance(t1).is_some());
        assert_eq!(r.advance(t1), None, "bounded by the gateway count");
        assert_eq!(r.current().map(|c| c.gateway), Some(2));
    }

    #[test]
    fn a_reload_keeps_the_health_of_gateways_it_keeps() {
        let t0 = Instant::now();
        let cfg = three("");
        let mut g = Gateways::new(&cfg, t0, 5);
        let first = g.candidates(&cfg[0], "1").remove(0);
        g.call_failed(&first, Some(500));
        assert!(!g.is_up(0, 0));
        // 10.0.0.1 moves to the end, 10.0.0.3 goes, 10.0.0.4 comes.
        let reloaded = carriers(
            "[[carriers]]\nname = \"c\"\n\
             gateways = [\"sip:10.0.0.2:5070\", \"sip:10.0.0.4\", \"sip:10.0.0.1\"]\n",
        );
        g.reconfigure(&reloaded, t0);
        assert!(g.is_up(0, 0) && g.is_up(0, 1) && !g.is_up(0, 2));
        // A failure reported by a call routed before the reload finds its gateway by URI.
        let second = Candidate {
            carrier: "c".into(),
            gateway: 1,
            uri: match Uri::parse("sip:+1@10.0.0.2:5070") {
                Ok(Uri::Sip(u)) => u,
                _ => unreachable!(),
            },
        };
        g.call_failed(&second, None);
        assert!(!g.is_up(0, 0) && g.is_up(0, 1));
    }

    #[test]
    fn what_fails_over() {
        for s in [None, Some(408), Some(500), Some(503), Some(599)] {
            assert!(fails_over(s), "{s:?}");
        }
        for s in [
            Some(404),
            Some(486),
            Some(487),
            Some(603),
            Some(600),
            Some(302),
        ] {
            assert!(!fails_over(s), "{s:?}");
        }
    }

    #[test]
    fn weighted_order_follows_the_weights() {
        let cfg = three("strategy = \"weighted\"");
        let mut g = Gateways::new(&cfg, Instant::now(), 42);
        let mut first = [0u32; 3];
        for _ in 0..5000 {
            let c = g.candidates(&cfg[0], "1");
            let mut seen: Vec<usize> = c.iter().map(|c| c.gateway).collect();
            first[seen[0]] += 1;
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2], "each gateway once per call");
        }
        // Weights 1:3:1 → first 20 %, 60 %, 20 % of the time.
        let share = |n: u32| f64::from(n) / 5000.0;
        assert!((share(first[1]) - 0.6).abs() < 0.03, "{first:?}");
        assert!((share(first[0]) - 0.2).abs() < 0.03, "{first:?}");
        assert!((share(first[2]) - 0.2).abs() < 0.03, "{first:?}");
    }

    #[test]
    fn without_probes_nothing_goes_down() {
        let t0 = Instant::now();
        let cfg = three("probe_interval_s = 0");
        let mut g = Gateways::new(&cfg, t0, 1);
        let c = g.candidates(&cfg[0], "1").remove(0);
        g.call_failed(&c, Some(503));
        assert!(g.is_up(0, 0));
        assert_eq!(g.poll_timeout(), None);
    }

    /// The probe's request as sent, and a response to it.
    fn reply(tx: &mut Transactions, now: Instant, status: u16) -> Vec<(SocketAddr, Response)> {
        std::iter::from_fn(|| tx.poll_transmit(now))
            .map(|t| {
                let Ok(Message::Request(r)) = Message::parse(&t.bytes) else {
                    panic!("a request")
                };
                assert_eq!(r.method, Method::OPTIONS);
                let res =
                    Response::for_request(&r, StatusCode::new(status).unwrap()).with_to_tag("gw");
                (t.dest, res)
            })
            .collect()
    }

    fn feed(g: &mut Gateways, tx: &mut Transactions) {
        while let Some(e) = tx.poll_event() {
            assert!(g.handle_tx_event(&e), "{e:?} is a probe's");
        }
    }

    #[test]
    fn probes_take_gateways_out_and_back() {
        let t0 = Instant::now();
        let cfg = three("probe_interval_s = 10");
        let mut g = Gateways::new(&cfg, t0, 3);
        let mut tx = Transactions::new(TimerConfig::default(), 9);
        let sent_by: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let resolve = |u: &Uri| {
            let s = u.as_sip()?;
            Some(SocketAddr::new(
                s.host.parse().ok()?,
                s.port.unwrap_or(5060),
            ))
        };
        assert_eq!(g.poll_timeout(), Some(t0));
        g.send_probes(t0, &mut tx, sent_by, resolve);
        // In flight: nothing more to send until they end.
        assert_eq!(g.poll_timeout(), None);
        let sent = reply(&mut tx, t0, 200);
        assert_eq!(sent.len(), 3);
        // Gateway 1 answers 503, gateway 2 is unreachable, gateway 3 answers 200.
        for (dest, mut res) in sent {
            match dest.port() {
                5070 => {
                    res.status = StatusCode::SERVICE_UNAVAILABLE;
                    tx.handle(t0, dest, Message::Response(res));
                }
                _ if dest.ip().to_string() == "10.0.0.3" => {
                    tx.handle(t0, dest, Message::Response(res));
                }
                _ => tx.unreachable(dest),
            }
        }
        feed(&mut g, &mut tx);
        assert!(!g.is_up(0, 0) && !g.is_up(0, 1) && g.is_up(0, 2));
        assert_eq!(hosts(&mut g, &cfg[0]), ["sip:+15551230000@10.0.0.3"]);
        // The next round, an interval later: all answer and are back.
        let t1 = t0 + Duration::from_secs(10);
        tx.handle_timeout(t1);
        feed(&mut g, &mut tx);
        while tx.poll_transmit(t1).is_some() {}
        assert_eq!(g.poll_timeout(), Some(t1));
        g.send_probes(t1, &mut tx, sent_by, resolve);
        for (dest, mut res) in reply(&mut tx, t1, 200) {
            // 501: there, merely without OPTIONS.
            if dest.port() == 5070 {
                res.status = StatusCode::NOT_IMPLEMENTED;
            }
            tx.handle(t1, dest, Message::Response(res));
        }
        feed(&mut g, &mut tx);
        assert!(g.is_up(0, 0) && g.is_up(0, 1) && g.is_up(0, 2));
        // Not a probe's event: left to the dialog layer.
        let uri = Uri::parse("sip:10.0.0.9").unwrap();
        let key = tx
            .send_request(t1, probe_request(&uri, sent_by, 99, 0), sent_by)
            .unwrap();
        let other = TxEvent::Terminated { key };
        assert!(!g.handle_tx_event(&other));
    }
}
