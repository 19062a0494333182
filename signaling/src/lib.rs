//! SIP signaling, call control and configuration for dialplane
//!
//! For now: [`config`], the one configuration file, [`wav`], WAV files in and out, and the pure
//! modules of the SIP core: [`message`] (the SIP codec), [`sdp`] (session descriptions,
//! offer/answer), [`auth`] (digest authentication with stateless nonces), [`transaction`]
//! (RFC 3261 §17 transactions with an injected clock), [`dialog`] (dialogs above them: forking,
//! PRACK, re-INVITE/UPDATE, REFER, session timers), [`registrar`] (REGISTER and the bindings
//! store) and [`options`] (answers to OPTIONS). Transports, the B2BUA and the dial verb arrive
//! with their issues.
#![warn(missing_docs, unreachable_pub)]

pub mod auth;
pub mod config;
pub mod dialog;
pub mod message;
pub mod options;
pub mod registrar;
pub mod sdp;
pub mod transaction;
pub mod wav;
