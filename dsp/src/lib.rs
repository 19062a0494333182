//! Pure signal processing for dialplane: frames in, events out
//!
//! No I/O, no async, no clock: time is a sample index at 8 kHz ([`spectrum::RATE`]), and every
//! per-frame path works in buffers allocated at construction. One spectrum stage
//! ([`spectrum::Spectrum`]) feeds every detector, so adding a detector adds no transform.
//!
//! Modules: [`g711`] companding, [`resample`] (8/16/24/48 kHz), [`spectrum`] (shared FFT),
//! [`dtmf`] (Q.24 receiver and generator), [`tone`] (beep and fax tones), [`vad`] (speech and
//! silence), [`amd`] (answering-machine detection), [`mix`] (dub tracks), and [`pipeline`]
//! (one leg's decode + detectors).
#![warn(missing_docs, unreachable_pub)]

pub mod amd;
pub mod dtmf;
pub mod g711;
pub mod mix;
pub mod pipeline;
pub mod resample;
pub mod spectrum;
pub mod tone;
pub mod vad;
