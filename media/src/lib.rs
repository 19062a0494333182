//! io_uring RTP media plane for dialplane (the media issue builds it)
//!
//! So far: the pure protocol pieces [`rtp`] (in-place header view, egress continuity),
//! [`telephone_event`] (RFC 4733), [`ng`] (rtpengine's control protocol codec), [`ports`] (media
//! port allocation), [`endpoint`] (one leg's sans-IO RTP state: latching, stats, timeouts) and
//! [`api`] (the typed commands and events of a shard); and [`driver`], the io_uring shard that
//! owns sockets and rings (multishot receive over a provided buffer ring, in-place forwarding).
#![warn(missing_docs, unreachable_pub)]

pub mod api;
pub mod audio;
pub mod driver;
pub mod endpoint;
pub mod ng;
pub mod ports;
pub mod rtp;
pub mod telephone_event;
