//! The io_uring media plane: [`Media`] runs N [`Shard`] threads; each owns a ring, its UDP sockets
//! and the legs of the calls routed to it, and runs the [`crate::api`] commands on them.
//!
//! ```text
//!   control thread                      shard thread (owner loop)
//!   Media / ShardHandle ─ Command ─► mpsc ─┐
//!                      ── write ──► eventfd ┤ Read op in the ring wakes the loop
//!                                           ▼
//!   phone A ─► socket a ── RecvMsgMulti ─► buffer (provided-buffer ring)
//!                                          │ Endpoint A: validate, latch, count, RFC 4733
//!                                          │ Endpoint B: PT map + continuity, in place
//!   phone B ◄─ socket b ◄── SendMsg ◄──────┘ same buffer; back to the ring when the send completes
//!   events (digits, timeouts, audio) ──► one mpsc channel for all shards
//! ```
//!
//! All `unsafe` io_uring code lives in [`ring`]; [`shard`], [`media`] and `rtcp` are safe code on
//! top of it.

pub mod media;
mod pool;
pub mod ring;
mod rtcp;
pub mod shard;
#[cfg(test)]
mod transcode_tests;

pub use media::{Media, MediaConfig};
pub use ring::{RecvMode, RingConfig, RingInfo, probe};
pub use shard::{
    DROP_REASONS, DriverError, REPLY_TIMEOUT, Shard, ShardConfig, ShardHandle, ShardStats,
    SharedPorts, spawn,
};
