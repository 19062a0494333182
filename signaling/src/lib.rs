//! SIP signaling, call control and configuration for dialplane
#![warn(missing_docs, unreachable_pub)]
