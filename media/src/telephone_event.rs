//! RFC 4733 telephone-events (work in progress)
