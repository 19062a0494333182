//! The ng UDP server: one std socket on its own thread, in front of an [`NgHandler`].
//!
//! ```text
//!  datagram ─► split cookie ─► ReplyCache hit? ──yes──► the cached reply, byte for byte
//!                                   │ no
//!                                   ▼
//!                    decode ─► NgHandler ─► reply (cached under the cookie) ─► sender
//! ```
//!
//! A retransmitted request is never run twice (an `offer` retransmitted by Kamailio must not
//! allocate a second set of ports). Datagrams beyond [`Limits::max_input`] and datagrams
//! without a cookie are dropped and counted (`dialplane_media_ng_dropped_total{reason}`);
//! malformed ones are answered with rtpengine's `error-reason`. Shard events (media timeouts,
//! digits) are drained between datagrams, so the call table has one owner and no lock.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant, SystemTime};

use super::bencode::Limits;
use super::cache::ReplyCache;
use super::message::{self, Command as NgCommand, split_cookie};
use super::response::Reply;
use super::session::NgHandler;
use crate::api::{Event, MediaControl};

/// Requests by command (`unknown` for the rest).
pub const REQUESTS_METRIC: &str = "dialplane_media_ng_requests_total";
/// Error replies by reason label.
pub const ERRORS_METRIC: &str = "dialplane_media_ng_errors_total";
/// Datagrams dropped without a reply, by reason.
pub const DROPPED_METRIC: &str = "dialplane_media_ng_dropped_total";
/// Retransmissions answered from the cache.
pub const RETRANSMISSIONS_METRIC: &str = "dialplane_media_ng_retransmissions_total";

/// How often the loop looks at the stop flag and the event channel when no request comes.
const POLL: Duration = Duration::from_millis(50);

/// The ng front door: socket, retransmission cache, handler.
#[derive(Debug)]
pub struct NgServer {
    socket: UdpSocket,
    handler: NgHandler,
    cache: ReplyCache,
    limits: Limits,
}

fn command_label(c: &NgCommand) -> &'static str {
    match c {
        NgCommand::Ping => "ping",
        NgCommand::Offer => "offer",
        NgCommand::Answer => "answer",
        NgCommand::Delete => "delete",
        NgCommand::Query => "query",
        NgCommand::List => "list",
        NgCommand::PlayDtmf => "play_dtmf",
        NgCommand::BlockDtmf => "block_dtmf",
        NgCommand::UnblockDtmf => "unblock_dtmf",
        NgCommand::BlockMedia => "block_media",
        NgCommand::UnblockMedia => "unblock_media",
        NgCommand::Statistics => "statistics",
        NgCommand::Unknown(_) => "unknown",
    }
}

impl NgServer {
    /// Binds `addr` (rtpengine's `--listen-ng`).
    pub fn bind(addr: SocketAddr, handler: NgHandler) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(POLL))?;
        Ok(NgServer {
            socket,
            handler,
            cache: ReplyCache::default(),
            limits: Limits::default(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The reply to one datagram (`None`: dropped). `now` ages the cache; `wall` stamps calls.
    pub fn handle_datagram(
        &mut self,
        datagram: &[u8],
        media: &dyn MediaControl,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Vec<u8>> {
        if datagram.len() > self.limits.max_input {
            metrics::counter!(DROPPED_METRIC, "reason" => "oversize").increment(1);
            tracing::debug!(len = datagram.len(), "ng datagram too large: dropped");
            return None;
        }
        if let Ok((cookie, _)) = split_cookie(datagram)
            && let Some(cached) = self.cache.get(cookie, now)
        {
            metrics::counter!(RETRANSMISSIONS_METRIC).increment(1);
            return Some(cached.to_vec());
        }
        match message::decode(datagram, &self.limits) {
            Ok(req) => {
                metrics::counter!(REQUESTS_METRIC, "command" => command_label(&req.command))
                    .increment(1);
                let resp = self.handler.handle(&req, media, wall);
                if resp.result() == "error" {
                    let reason = resp
                        .fields()
                        .get("error-reason")
                        .and_then(|v| v.as_str())
                        .unwrap_or_default();
                    tracing::info!(command = req.command.as_str(), reason, "ng request failed");
                    metrics::counter!(ERRORS_METRIC, "reason" => error_label(reason)).increment(1);
                }
                let bytes = req.reply(&resp);
                self.cache.insert(&req.cookie, bytes.clone(), now);
                Some(bytes)
            }
            Err(rejected) => {
                tracing::debug!(?rejected, "ng datagram rejected");
                match rejected.reply() {
                    Reply::Send(bytes) => {
                        metrics::counter!(ERRORS_METRIC, "reason" => rejected.label()).increment(1);
                        Some(bytes)
                    }
                    Reply::Drop(reason) => {
                        metrics::counter!(DROPPED_METRIC, "reason" => reason.as_str()).increment(1);
                        None
                    }
                }
            }
        }
    }

    /// Serves until `stop` is set: requests from the socket, shard events from `events`.
    pub fn run(
        &mut self,
        media: &dyn MediaControl,
        events: Option<&Receiver<Event>>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        // One byte more than the limit, so an oversize datagram is seen as such, not truncated.
        let mut buf = vec![0u8; self.limits.max_input + 1];
        while !stop.load(Ordering::Relaxed) {
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let reply =
                        self.handle_datagram(&buf[..n], media, Instant::now(), SystemTime::now());
                    if let Some(reply) = reply
                        && let Err(e) = self.socket.send_to(&reply, from)
                    {
                        metrics::counter!(DROPPED_METRIC, "reason" => "send_error").increment(1);
                        tracing::warn!(error = %e, "ng reply not sent");
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                // ICMP port unreachable from an earlier reply surfaces here on Linux.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            if let Some(events) = events {
                while let Ok(event) = events.try_recv() {
                    self.on_event(&event, media);
                }
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: &Event, media: &dyn MediaControl) {
        match event {
            Event::Digit {
                call_id,
                leg,
                digit,
                duration_ms,
                source,
                ..
            } => {
                // The sender's address is personal data: only at debug level.
                tracing::info!(%call_id, %leg, %digit, duration_ms, "DTMF");
                tracing::debug!(%call_id, %leg, ?source, "DTMF source");
            }
            Event::Amd {
                call_id,
                leg,
                event,
            } => tracing::info!(%call_id, %leg, ?event, "AMD"),
            Event::MediaTimeout { call_id, leg } => {
                tracing::info!(%call_id, %leg, "media timeout");
            }
            _ => {}
        }
        self.handler.on_event(event, media);
    }
}

/// A fixed label for an error text the handler produced (never the free text itself).
fn error_label(reason: &str) -> &'static str {
    use super::response::ErrorReason as R;
    [
        R::UnknownCommand,
        R::UnknownCall,
        R::CallNotFound,
        R::InvalidSdp,
        R::OutOfPorts,
        R::DtmfCodeMissing,
    ]
    .iter()
    .find(|r| r.as_str() == reason)
    .map_or("other", |r| r.label())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::Arc;

    use super::*;
    use crate::api::{ApiError, Command};
    use crate::ng::session::HandlerConfig;

    /// Counts create commands: enough to see that a retransmission runs nothing.
    #[derive(Default)]
    struct Counting(std::sync::Mutex<u32>);

    impl MediaControl for Counting {
        fn request(&self, cmd: Command) -> Result<Vec<Event>, ApiError> {
            let mut n = self.0.lock().unwrap();
            *n += 1;
            match cmd {
                Command::CreateEndpoint { call_id, leg, .. } => Ok(vec![Event::EndpointCreated {
                    call_id,
                    leg,
                    local: "127.0.0.1:0".parse().unwrap(),
                    ports: crate::ports::PortPair {
                        rtp: 40000 + 2 * *n as u16,
                        rtcp: Some(40001 + 2 * *n as u16),
                    },
                }]),
                _ => Ok(Vec::new()),
            }
        }
    }

    fn server() -> NgServer {
        let handler = NgHandler::new(HandlerConfig::default(), SystemTime::now());
        NgServer::bind((Ipv4Addr::LOCALHOST, 0).into(), handler).unwrap()
    }

    const OFFER: &[u8] = b"7_1 d7:command5:offer7:call-id1:x8:from-tag1:a3:sdp\
61:v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\na=sendrecv\r\ne";

    #[test]
    fn retransmission_gets_the_cached_reply_and_runs_nothing() {
        let mut s = server();
        let media = Counting::default();
        let t0 = Instant::now();
        let first = s
            .handle_datagram(OFFER, &media, t0, SystemTime::now())
            .unwrap();
        assert!(first.starts_with(b"7_1 d3:sdp"), "{}", first.escape_ascii());
        let ran = *media.0.lock().unwrap();
        assert_eq!(ran, 2);
        let again = s
            .handle_datagram(
                OFFER,
                &media,
                t0 + Duration::from_secs(1),
                SystemTime::now(),
            )
            .unwrap();
        assert_eq!(again, first);
        assert_eq!(*media.0.lock().unwrap(), ran);
        // A new cookie is a new request: a re-offer, same ports, no new leg.
        let mut other = OFFER.to_vec();
        other[2] = b'2';
        let re = s
            .handle_datagram(&other, &media, t0, SystemTime::now())
            .unwrap();
        assert_eq!(re[4..], first[4..]);
    }

    #[test]
    fn malformed_and_hostile_datagrams() {
        let mut s = server();
        let media = Counting::default();
        let now = Instant::now();
        let mut run = |d: &[u8]| s.handle_datagram(d, &media, now, SystemTime::now());
        assert_eq!(run(b""), None);
        assert_eq!(run(b"nocookie"), None);
        assert_eq!(
            run(b"1 d7:command").unwrap(),
            b"1 d6:result5:error12:error-reason35:Could not decode bencode dictionarye"
        );
        assert_eq!(
            run(b"2 d7:command5:dancee").unwrap(),
            b"2 d6:result5:error12:error-reason20:Unrecognized commande"
        );
        assert_eq!(
            run(b"3 d7:command5:query7:call-id4:nonee").unwrap(),
            b"3 d6:result5:error12:error-reason15:Unknown call-ide"
        );
        let mut big = b"4 ".to_vec();
        big.resize(70_000, b'd');
        assert_eq!(run(&big), None);
        assert_eq!(*media.0.lock().unwrap(), 0);
    }

    #[test]
    fn serves_a_socket_until_stopped() {
        let mut s = server();
        let addr = s.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || s.run(&Counting::default(), None, &stop2));
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.send_to(b"5323_1 d7:command4:pinge", addr).unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"5323_1 d6:result4:ponge");
        stop.store(true, Ordering::Relaxed);
        thread.join().unwrap().unwrap();
    }
}
