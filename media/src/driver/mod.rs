//! The io_uring packet loop: one [`Shard`] per thread owns a ring, its UDP sockets and its bridges.
//!
//! ```text
//!   control thread                      shard thread (owner loop)
//!   ShardHandle ── Command ──► mpsc ──┐
//!               ── write ──► eventfd ─┤ Read op in the ring wakes the loop
//!                                     ▼
//!   phone A ─► socket a ── RecvMsgMulti ─► buffer (provided-buffer ring)
//!                                          │ parse, latch, rewrite in place (Continuity of b)
//!   phone B ◄─ socket b ◄── SendMsg ◄──────┘ same buffer; back to the ring when the send completes
//! ```
//!
//! All `unsafe` io_uring code lives in [`ring`]; [`shard`] is safe code on top of it. The
//! minimal bridge table here (two legs, symmetric-RTP latching, egress continuity) stands in for
//! the endpoint module until it lands.
//!
//! ```no_run
//! use dialplane_media::driver::{ShardConfig, spawn};
//! let (handle, thread) = spawn(ShardConfig::default()).unwrap();
//! let bridge = handle.add_bridge(0, 0).unwrap();
//! println!("relay ports: {} {}", bridge.a, bridge.b);
//! handle.stop();
//! thread.join().unwrap();
//! ```

pub mod ring;
pub mod shard;

pub use ring::{RecvMode, RingConfig, RingInfo, probe};
pub use shard::{
    BridgeId, BridgeInfo, Command, DROP_REASONS, DriverError, Shard, ShardConfig, ShardHandle,
    ShardStats, spawn,
};
