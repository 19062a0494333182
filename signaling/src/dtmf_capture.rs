//! `dtmfCapture`: one leg's rolling digit buffer, matched on its suffix
//!
//! Sans-IO: each key press comes with the time it was reported, so the inter-digit timeout is
//! tested on a fake clock. A press that comes [`INTER_DIGIT_TIMEOUT`] or more after the previous
//! one starts a new sequence; a match clears the buffer, so each sequence is reported once.
//! Keys of one press arrive once whichever way they came (RFC 4733, in band, SIP INFO): the
//! media plane and the INFO parser each report one event per press.

use std::time::{Duration, Instant};

/// A pause this long between two presses starts a new sequence.
pub const INTER_DIGIT_TIMEOUT: Duration = Duration::from_secs(3);

/// One leg's patterns and what it pressed since the last match
#[derive(Debug, Clone, Default)]
pub struct Capture {
    /// Sequences listened for, upper case (A-D).
    patterns: Vec<String>,
    /// The presses so far, at most as long as the longest pattern.
    buffer: String,
    /// When the last press came.
    last: Option<Instant>,
}

impl Capture {
    /// A capture of `patterns` (as the verb gave them; `a`-`d` count as `A`-`D`).
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        Capture {
            patterns: patterns
                .iter()
                .map(|p| p.as_ref().to_ascii_uppercase())
                .filter(|p| !p.is_empty())
                .collect(),
            buffer: String::new(),
            last: None,
        }
    }

    /// No pattern: nothing to listen for.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// A key pressed at `now`; the pattern it completes, if any (the longest when several end
    /// the buffer). A match empties the buffer.
    pub fn press(&mut self, now: Instant, digit: char) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) >= INTER_DIGIT_TIMEOUT)
        {
            self.buffer.clear();
        }
        self.last = Some(now);
        self.buffer.push(digit.to_ascii_uppercase());
        let longest = self.patterns.iter().map(String::len).max().unwrap_or(0);
        if self.buffer.len() > longest {
            // Digits are ASCII: one byte each.
            self.buffer.drain(..self.buffer.len() - longest);
        }
        let hit = self
            .patterns
            .iter()
            .filter(|p| self.buffer.ends_with(p.as_str()))
            .max_by_key(|p| p.len())
            .cloned();
        if hit.is_some() {
            self.buffer.clear();
        }
        hit
    }
}

/// The key of a SIP INFO body: `application/dtmf-relay` (`Signal=5\r\nDuration=160`) or
/// `application/dtmf` (`5`). Event codes 10 and 11 stand for `*` and `#` in both.
pub fn info_digit(content_type: &str, body: &str) -> Option<char> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let value = match mime.as_str() {
        "application/dtmf-relay" => body.lines().find_map(|l| {
            let (name, value) = l.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "application/dtmf" => body.trim(),
        _ => return None,
    };
    match value {
        "10" => Some('*'),
        "11" => Some('#'),
        v if v.len() == 1 => {
            let c = v.chars().next()?.to_ascii_uppercase();
            matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(c)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn matches_on_the_suffix_and_clears() {
        let t0 = Instant::now();
        let mut c = Capture::new(&["*2", "*3"]);
        assert_eq!(c.press(t0, '1'), None);
        assert_eq!(c.press(ms(t0, 500), '*'), None);
        assert_eq!(c.press(ms(t0, 1000), '2'), Some("*2".into()));
        // Cleared: the `2` does not stay to make a later `*2` out of `2` alone.
        assert_eq!(c.press(ms(t0, 1500), '2'), None);
        assert_eq!(c.press(ms(t0, 2000), '*'), None);
        assert_eq!(c.press(ms(t0, 2500), '3'), Some("*3".into()));
    }

    #[test]
    fn a_three_second_pause_starts_over() {
        let t0 = Instant::now();
        let mut c = Capture::new(&["123"]);
        c.press(t0, '1');
        c.press(ms(t0, 2999), '2');
        assert_eq!(
            c.press(ms(t0, 5998), '3'),
            Some("123".into()),
            "2.999 s apart"
        );
        c.press(ms(t0, 10_000), '1');
        c.press(ms(t0, 11_000), '2');
        assert_eq!(
            c.press(ms(t0, 14_000), '3'),
            None,
            "3 s apart: a new sequence"
        );
        c.press(ms(t0, 14_500), '1');
        c.press(ms(t0, 15_000), '2');
        assert_eq!(c.press(ms(t0, 15_500), '3'), Some("123".into()));
    }

    #[test]
    fn longest_pattern_wins_and_case_is_folded() {
        let t0 = Instant::now();
        let mut c = Capture::new(&["2", "a2", "#"]);
        assert_eq!(c.press(t0, 'A'), None);
        assert_eq!(c.press(ms(t0, 100), '2'), Some("A2".into()));
        assert_eq!(c.press(ms(t0, 200), '2'), Some("2".into()));
        assert_eq!(c.press(ms(t0, 300), '#'), Some("#".into()));
    }

    #[test]
    fn the_buffer_stays_bounded() {
        let t0 = Instant::now();
        let mut c = Capture::new(&["99"]);
        for i in 0..10_000u64 {
            assert_eq!(c.press(ms(t0, i), '1'), None);
        }
        assert!(c.buffer.len() <= 2);
        assert_eq!(c.press(ms(t0, 10_001), '9'), None);
        assert_eq!(c.press(ms(t0, 10_002), '9'), Some("99".into()));
    }

    #[test]
    fn no_patterns_no_hits() {
        let mut c = Capture::new::<&str>(&[]);
        assert!(c.is_empty());
        assert_eq!(c.press(Instant::now(), '1'), None);
    }

    #[test]
    fn info_bodies() {
        let relay = "application/dtmf-relay";
        assert_eq!(info_digit(relay, "Signal=5\r\nDuration=160\r\n"), Some('5'));
        assert_eq!(info_digit(relay, "Signal= *\r\nDuration= 250"), Some('*'));
        assert_eq!(info_digit(relay, "signal=11\nDuration=100"), Some('#'));
        assert_eq!(info_digit(relay, "Signal=10"), Some('*'));
        assert_eq!(info_digit(relay, "Duration=160"), None);
        assert_eq!(info_digit(relay, "Signal=x"), None);
        assert_eq!(info_digit(relay, "Signal=12"), None);
        assert_eq!(info_digit("application/dtmf", "5"), Some('5'));
        assert_eq!(info_digit("Application/DTMF; x=1", " d\r\n"), Some('D'));
        assert_eq!(info_digit("application/dtmf", "55"), None);
        assert_eq!(info_digit("application/sdp", "5"), None);
    }
}
