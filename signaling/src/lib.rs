//! SIP signaling, call control and configuration for dialplane
//!
//! For now: [`config`], the one configuration file, [`wav`], WAV files out, [`media_files`]
//! (audio files fetched, decoded and cached as 8 kHz PCM for dialMusic and dub), and the pure
//! modules of the SIP core: [`message`] (the SIP codec), [`sdp`] (session descriptions,
//! offer/answer), [`auth`] (digest authentication with stateless nonces), [`transaction`]
//! (RFC 3261 §17 transactions with an injected clock), [`dialog`] (dialogs above them: forking,
//! PRACK, re-INVITE/UPDATE, REFER, session timers), [`registrar`] (REGISTER and the bindings
//! store) and [`options`] (answers to OPTIONS); at the edges, [`rest`] (live call control over
//! HTTP, `/metrics`), [`access`] (who may send us calls) and [`routing`] (carriers, Teams and
//! per-number routes for dial targets and called numbers). The control-app side: [`verbs`] (the
//! verb JSON), [`app`] (which verb runs next), [`webhook`] (signed HTTP hooks with retries) and
//! [`payload`] (what the hooks carry, and the dial status mapping). [`dial`] is the sans-IO
//! core of the dial verb (fork, first answer wins, cancel the rest); [`cdr`] writes a record
//! per call leg. Around them, on tokio:
//! [`transport`] (UDP, TCP and TLS listeners and connections, with the limits against hostile
//! traffic) and [`stack`] (the task that drives the transaction layer with real time and serves
//! the transaction user). `src/bin/sip_uas.rs` is a small UAS built from these, for end-to-end tests.
#![warn(missing_docs, unreachable_pub)]

pub mod access;
pub mod app;
pub mod auth;
pub mod auth_throttle;
pub mod b2bua;
pub mod cdr;
pub mod cluster;
pub mod config;
pub mod create_call;
pub mod dial;
pub mod dialog;
pub mod dns;
pub mod dtmf_capture;
pub mod gateways;
pub mod media_files;
pub mod message;
pub mod options;
pub mod payload;
pub mod playback;
pub mod redact;
pub mod registrar;
pub mod rest;
pub mod routing;
pub mod sdp;
pub mod stack;
pub mod stream;
mod strict_json;
pub mod transaction;
pub mod transport;
pub mod verbs;
pub mod wav;
pub mod webhook;
