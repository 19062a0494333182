//! Benches and load generators for dialplane (see benches/)
//!
//! [`spandsp`] wraps spandsp's DTMF receiver as the reference implementation; [`signal`] makes
//! the deterministic audio the benches and tests feed; [`sip`] holds the INVITE the SIP codec
//! benches parse.

pub mod signal;
pub mod sip;
pub mod spandsp;
