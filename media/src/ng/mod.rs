//! The rtpengine "ng" control protocol: what Kamailio's and OpenSIPS's rtpengine modules (and
//! `../shared/bench/ng.py`) speak over UDP to a media relay.
//!
//! The codec ([`bencode`], [`json`], [`message`], [`response`], [`cache`]), the SDP rewriter
//! ([`sdp`]) and the call table ([`session`]) are pure code, deterministic: no sockets, no clock
//! (time is an argument), no panic on any input. [`server`] puts them behind a UDP socket on a
//! thread of its own, running commands through an [`crate::api::MediaControl`]:
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use std::time::SystemTime;
//! use dialplane_media::driver::{Media, MediaConfig};
//! use dialplane_media::ng::{HandlerConfig, NgHandler, NgServer};
//!
//! let (media, events) = Media::start(MediaConfig::default()).unwrap();
//! let handler = NgHandler::new(HandlerConfig::default(), SystemTime::now());
//! let mut server = NgServer::bind("127.0.0.1:2223".parse().unwrap(), handler).unwrap();
//! let stop = AtomicBool::new(false); // set from a signal handler
//! server.run(&media, Some(&events), &stop).unwrap();
//! ```
//!
//! Below, the codec alone.
//!
//! A datagram is `<cookie> <dictionary>`, the dictionary in bencode or, when it starts with `{`,
//! JSON. The reply repeats the cookie and answers in the request's encoding:
//!
//! ```text
//!  datagram ──decode──► Request ──(driver runs the command)──► Response ──encode──► datagram
//!      │                                                                          ▲
//!      └──────► Rejected ──reply()──► Reply::Send(error datagram) ─────────────────┘
//!                                  └► Reply::Drop(reason)   (no cookie: count and drop)
//! ```
//!
//! A driver's loop, with the retransmission cache in front:
//!
//! ```
//! use std::time::Instant;
//! use dialplane_media::ng::{self, Command, ReplyCache, Reply, Response, ErrorReason};
//!
//! let mut cache = ReplyCache::default();
//! let limits = ng::Limits::default();
//! let datagram = b"5323_1 d7:command4:pinge";
//! let now = Instant::now(); // the driver's clock, read outside this module
//!
//! let reply = match ng::split_cookie(datagram).ok().and_then(|(c, _)| cache.get(c, now)) {
//!     Some(cached) => Reply::Send(cached.to_vec()),
//!     None => match ng::decode(datagram, &limits) {
//!         Ok(req) => {
//!             let resp = match req.command {
//!                 Command::Ping => Response::pong(),
//!                 _ => Response::error(&ErrorReason::UnknownCommand),
//!             };
//!             let bytes = req.reply(&resp);
//!             cache.insert(&req.cookie, bytes.clone(), now);
//!             Reply::Send(bytes)
//!         }
//!         Err(rejected) => rejected.reply(),
//!     },
//! };
//! assert_eq!(reply, Reply::Send(b"5323_1 d6:result4:ponge".to_vec()));
//! ```

pub mod bencode;
pub mod cache;
pub mod json;
pub mod message;
pub mod response;
pub mod sdp;
pub mod server;
pub mod session;

pub use bencode::{Dict, Limits, Value};
pub use cache::{Lookup, ReplyCache};
pub use message::{
    CodecOps, Command, Encoding, Ice, PlayDtmf, Rejected, Replace, Request, RtcpMux,
    TransportProtocol, decode, decode_body, split_cookie,
};
pub use response::{
    DropReason, ErrorReason, Reply, ReplyMessage, Response, decode_reply, encode_datagram,
};
pub use sdp::{Sdp, SdpError};
pub use server::NgServer;
pub use session::{HandlerConfig, NgHandler};
