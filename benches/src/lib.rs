//! Benches and load generators for dialplane (see benches/)
//!
//! [`spandsp`] wraps spandsp's DTMF receiver as the reference implementation; [`signal`] makes
//! the deterministic audio the benches and tests feed.

pub mod signal;
pub mod spandsp;
