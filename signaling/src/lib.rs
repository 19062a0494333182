//! SIP signaling, call control and configuration for dialplane
//!
//! For now: [`config`], the one configuration file, [`message`], the SIP message codec, and
//! [`wav`], WAV files in and out. Transactions, dialogs, the B2BUA and the dial verb arrive with
//! their issues.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod message;
pub mod wav;
