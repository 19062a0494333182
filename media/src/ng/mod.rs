//! The rtpengine "ng" control protocol: what Kamailio's and OpenSIPS's rtpengine modules (and
//! `../shared/bench/ng.py`) speak over UDP to a media relay.
//!
//! Pure code: no sockets and no clock; the driver owns both and passes time in.
//!
//! A datagram is `<cookie> <dictionary>`, the dictionary in bencode or JSON. The reply repeats
//! the cookie and answers in the request's encoding.

pub mod bencode;
