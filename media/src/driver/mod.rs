//! The io_uring packet loop. All `unsafe` io_uring code lives in [`ring`].

pub mod ring;

pub use ring::{RecvMode, RingConfig, RingInfo, probe};
