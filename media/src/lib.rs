//! io_uring RTP media plane for dialplane (the media issue builds it)
#![warn(missing_docs, unreachable_pub)]

pub mod rtp;
pub mod telephone_event;
