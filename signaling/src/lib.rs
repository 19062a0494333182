//! SIP signaling, call control and configuration for dialplane
//!
//! For now: [`config`], the one configuration file, and [`wav`], WAV files in and out. The SIP core, B2BUA and dial verb arrive
//! with their issues.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod message;
pub mod wav;
