//! io_uring RTP media plane for dialplane
//!
//! The pure protocol pieces: [`rtp`] (in-place header view, egress continuity),
//! [`telephone_event`] (RFC 4733), [`ng`] (rtpengine's control protocol codec), [`ports`] (media
//! port allocation), [`srtp`] (RFC 3711 protect/unprotect), [`endpoint`] (one leg's sans-IO RTP state: latching, stats, timeouts),
//! [`audio`] (one leg's player, dub, tap, forks and DTMF sender) and [`api`] (the typed commands
//! and events). [`driver`] runs them: [`driver::Media`] starts the io_uring shards (each owns a
//! ring, its sockets and its legs; multishot receive over a provided buffer ring, in-place
//! forwarding) and routes [`api::Command`]s to them through [`api::MediaControl`].
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audio;
pub mod codec;
pub mod driver;
pub mod endpoint;
pub mod ng;
pub mod ports;
pub mod rtp;
pub mod srtp;
pub mod telephone_event;
