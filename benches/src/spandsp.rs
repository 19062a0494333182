//! spandsp's DTMF receiver through a minimal hand-written FFI, as the reference to bench against
//!
//! Declarations follow `/usr/include/spandsp/dtmf.h` (spandsp 0.0.6). The library is linked by
//! `build.rs` via pkg-config.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::{self, NonNull};

/// Opaque `dtmf_rx_state_t`.
#[repr(C)]
pub struct DtmfRxState {
    _private: [u8; 0],
    _not_send_sync: std::marker::PhantomData<*mut u8>,
}

/// `digits_rx_callback_t`: `void (*)(void *user_data, const char *digits, int len)`.
pub type DigitsRxCallback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, digits: *const c_char, len: c_int)>;

unsafe extern "C" {
    /// Allocates (when `s` is null) and initialises a receiver; null on failure.
    pub fn dtmf_rx_init(
        s: *mut DtmfRxState,
        callback: DigitsRxCallback,
        user_data: *mut c_void,
    ) -> *mut DtmfRxState;
    /// Processes `samples` samples; returns the number left unprocessed.
    pub fn dtmf_rx(s: *mut DtmfRxState, amp: *const i16, samples: c_int) -> c_int;
    /// Moves up to `max` queued digits into `digits` (writes a terminating NUL after them).
    pub fn dtmf_rx_get(s: *mut DtmfRxState, digits: *mut c_char, max: c_int) -> usize;
    /// Frees a receiver allocated by `dtmf_rx_init(NULL, ..)`.
    pub fn dtmf_rx_free(s: *mut DtmfRxState) -> c_int;
}

/// Digits spandsp can queue between two reads (`MAX_DTMF_DIGITS`).
const MAX_DIGITS: usize = 128;

/// Owned spandsp DTMF receiver at 8 kHz, collecting digits into a string
pub struct SpandspDtmf {
    state: NonNull<DtmfRxState>,
    /// Read buffer for `dtmf_rx_get`, one longer than the read for its NUL.
    buf: [u8; MAX_DIGITS + 1],
    digits: String,
}

impl SpandspDtmf {
    /// A receiver with spandsp's default parameters and no callback (digits are polled)
    ///
    /// # Panics
    /// If spandsp cannot allocate its state.
    pub fn new() -> Self {
        // SAFETY: a null state asks spandsp to allocate one; a null callback is allowed and
        // makes digits queue for `dtmf_rx_get`; user_data is then unused.
        let raw = unsafe { dtmf_rx_init(ptr::null_mut(), None, ptr::null_mut()) };
        let state = NonNull::new(raw).expect("dtmf_rx_init failed to allocate");
        Self {
            state,
            buf: [0; MAX_DIGITS + 1],
            digits: String::with_capacity(256),
        }
    }

    /// Feeds 16-bit linear samples at 8 kHz; returns how many new digits were recognised
    pub fn process(&mut self, samples: &[i16]) -> usize {
        for chunk in samples.chunks(c_int::MAX as usize) {
            // SAFETY: `state` is live until drop; `chunk` is valid for `chunk.len()` reads,
            // which fits in c_int by construction, and spandsp does not keep the pointer.
            unsafe { dtmf_rx(self.state.as_ptr(), chunk.as_ptr(), chunk.len() as c_int) };
        }
        // SAFETY: `buf` has room for MAX_DIGITS digits plus the NUL spandsp appends.
        let n = unsafe {
            dtmf_rx_get(
                self.state.as_ptr(),
                self.buf.as_mut_ptr().cast::<c_char>(),
                MAX_DIGITS as c_int,
            )
        }
        .min(MAX_DIGITS);
        for &b in &self.buf[..n] {
            self.digits.push(char::from(b));
        }
        n
    }

    /// Every digit recognised so far, in order
    pub fn digits(&self) -> String {
        self.digits.clone()
    }

    /// Forgets the digits collected so far (the receiver's state is kept)
    pub fn clear_digits(&mut self) {
        self.digits.clear();
    }
}

impl Default for SpandspDtmf {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SpandspDtmf {
    fn drop(&mut self) {
        // SAFETY: allocated by dtmf_rx_init(NULL, ..) and freed exactly once, here.
        unsafe { dtmf_rx_free(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{dtmf_sequence, speech_like, to_i16};

    #[test]
    fn recognises_synthetic_123() {
        let x = to_i16(&dtmf_sequence("123", -10.0, 60, 60));
        let mut rx = SpandspDtmf::new();
        let mut new = 0;
        for frame in x.chunks(160) {
            new += rx.process(frame);
        }
        // Trailing silence lets the last digit end.
        new += rx.process(&[0; 800]);
        assert_eq!(rx.digits(), "123");
        assert_eq!(new, 3);
    }

    #[test]
    fn recognises_all_sixteen_digits_in_one_call() {
        let digits = "0123456789*#ABCD";
        let mut x = to_i16(&dtmf_sequence(digits, -10.0, 60, 60));
        x.extend([0; 800]);
        let mut rx = SpandspDtmf::new();
        assert_eq!(rx.process(&x), 16);
        assert_eq!(rx.digits(), digits);
        rx.clear_digits();
        assert_eq!(rx.digits(), "");
    }

    #[test]
    fn speech_like_noise_gives_no_digits() {
        let mut rx = SpandspDtmf::new();
        for frame in to_i16(&speech_like(3.0, 7)).chunks(160) {
            rx.process(frame);
        }
        assert_eq!(rx.digits(), "");
    }
}
