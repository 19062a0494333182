//! io_uring RTP media plane for dialplane (the media issue builds it)
//!
//! So far the pure protocol pieces: [`rtp`] (in-place header view, egress continuity),
//! [`telephone_event`] (RFC 4733) and [`ng`] (rtpengine's control protocol codec), and the
//! io_uring packet loop [`driver`] (one shard per thread; all `unsafe` in `driver::ring`).
#![warn(missing_docs, unreachable_pub)]

pub mod driver;
pub mod ng;
pub mod rtp;
pub mod telephone_event;
