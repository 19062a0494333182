//! Benches and load generators for dialplane (see benches/)
