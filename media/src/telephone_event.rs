//! RFC 4733 telephone-events (DTMF over RTP): payload codec, receiver and sender
//!
//! Pure and allocation-free. Time is an argument: `now` is the caller's monotonic clock in
//! media-clock ticks (8000 per second for the usual `telephone-event/8000`), the same unit as RTP
//! timestamps and event durations.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! - [`EventPayload`]: the 4-byte payload.
//! - [`EventReceiver`]: packets in, exactly one [`KeyPress`] per key press out (begin, updates,
//!   end and its repeats; lost begin; lost end closed by a timeout; long events split into
//!   segments; duplicates and reordering). Drain [`EventReceiver::poll_event`] after every
//!   `handle_*` call.
//! - [`EventSender`]: one key press out as the packet sequence (marker on the first, updates
//!   every `interval`, segments past 0xFFFF ticks, the end packet and its repeats), written into
//!   a caller's 4-byte buffer.
//!
//! ```
//! use dialplane_media::telephone_event::{EventReceiver, EventSender, SendSpec};
//!
//! // Send '5' for 100 ms at 8 kHz starting at RTP timestamp 1000, and receive it.
//! let mut tx = EventSender::new(SendSpec::digit('5', 100, 8000, 1000).unwrap(), 0);
//! let mut rx = EventReceiver::new(8000);
//! let mut payload = [0u8; 4];
//! while let Some(now) = tx.poll_timeout() {
//!     let pkt = tx.poll_transmit(now, &mut payload).unwrap();
//!     // (the caller wraps the payload in RTP: pkt.timestamp, pkt.marker, its own seq)
//!     rx.handle_packet(now, pkt.timestamp, pkt.marker, &payload).unwrap();
//! }
//! let press = rx.poll_event().unwrap();
//! assert_eq!((press.digit(), press.timestamp, press.duration), (Some('5'), 1000, 800));
//! assert!(rx.poll_event().is_none());
//! ```
//!
//! Events 0–15 are the DTMF keys ([`event_digit`]: `0`–`9`, `*`, `#`, `A`–`D`). Other events
//! (16 = [`FLASH`], and the RFC 4734 tones) go through the same state machine and come out as a
//! [`KeyPress`] whose [`digit`](KeyPress::digit) is `None`; the caller decides what to do with
//! them.

use std::fmt;

/// Payload length of one event.
pub const PAYLOAD_LEN: usize = 4;

/// Event code of hook flash (RFC 4733 §3.2).
pub const FLASH: u8 = 16;

/// Largest duration one segment can carry; longer events continue in a new segment whose
/// timestamp is this much later (RFC 4733 §2.5.1.3).
pub const MAX_SEGMENT: u32 = 0xffff;

/// A telephone-event payload that cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventError {
    /// Fewer than 4 bytes.
    Short,
}

impl EventError {
    /// Short, stable label for metrics.
    pub fn reason(self) -> &'static str {
        match self {
            EventError::Short => "event_short",
        }
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventError::Short => f.write_str("telephone-event payload shorter than 4 bytes"),
        }
    }
}

impl std::error::Error for EventError {}

/// The DTMF key of event codes 0–15, `None` for any other event.
pub fn event_digit(event: u8) -> Option<char> {
    const KEYS: &[u8; 16] = b"0123456789*#ABCD";
    KEYS.get(usize::from(event)).map(|&b| char::from(b))
}

/// The event code of a DTMF key (`a`–`d` accepted as `A`–`D`).
pub fn digit_event(digit: char) -> Option<u8> {
    Some(match digit {
        '0'..='9' => digit as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => digit as u8 - b'A' + 12,
        'a'..='d' => digit as u8 - b'a' + 12,
        _ => return None,
    })
}

/// One RFC 4733 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code (0–15 DTMF, 16 flash, ...).
    pub event: u8,
    /// E bit: this packet ends the event (or segment-less event).
    pub end: bool,
    /// Volume as -dBm0, 0–63 (only the low 6 bits are encoded).
    pub volume: u8,
    /// Duration so far, in media-clock ticks from the packet's RTP timestamp.
    pub duration: u16,
}

impl EventPayload {
    /// Decode the first 4 bytes of `payload` (more bytes, e.g. a second event, are ignored). The
    /// reserved bit is ignored, as the RFC asks of receivers.
    pub fn decode(payload: &[u8]) -> Result<Self, EventError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(EventError::Short);
        };
        Ok(EventPayload {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// Encode as 4 bytes (reserved bit zero).
    pub fn encode(&self) -> [u8; PAYLOAD_LEN] {
        let d = self.duration.to_be_bytes();
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        [self.event, flags, d[0], d[1]]
    }
}

/// How a key press was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// An end packet (E bit) arrived.
    EndBit,
    /// No packet for the receiver's timeout: the end packets were lost.
    Timeout,
    /// A packet of a different event (or a new press) arrived before the end.
    NextEvent,
}

/// One key press, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPress {
    /// Event code.
    pub event: u8,
    /// RTP timestamp of the first segment: when the press began.
    pub timestamp: u32,
    /// Length in media-clock ticks, all segments together, as reported by the sender.
    pub duration: u32,
    /// Volume of the last packet (-dBm0).
    pub volume: u8,
    /// How it was closed.
    pub end: EndReason,
}

impl KeyPress {
    /// DTMF key, or `None` for a non-DTMF event (e.g. [`FLASH`]).
    pub fn digit(&self) -> Option<char> {
        event_digit(self.event)
    }
}

#[derive(Debug, Clone, Copy)]
struct Active {
    event: u8,
    volume: u8,
    /// Timestamp of the first segment.
    first_ts: u32,
    /// Timestamp of the current segment.
    seg_ts: u32,
    /// Ticks of the segments before the current one.
    before: u32,
    /// Largest duration seen in the current segment.
    seg_duration: u16,
    /// `now` of the last packet that belonged to this event.
    last_rx: u64,
}

const QUEUE: usize = 4;

/// RFC 4733 receiver: one [`KeyPress`] per key press.
///
/// Rules, in order, for each packet:
/// 1. A packet whose timestamp is older than the newest one seen (by less than 10 s of media
///    clock) is stale — a reordered or duplicated packet of an event already handled — and is
///    ignored. So is a repeat of the event that was just closed (same timestamp).
/// 2. Same timestamp and event as the current press: an update; the largest duration wins; the
///    E bit closes the press.
/// 3. A newer timestamp, same event, no marker (or the current segment is near 0xFFFF), and the
///    new timestamp no later than the current segment's end plus [`slack`](Self::with_slack):
///    the next segment of a long press (RFC 4733 §2.5.1.3).
/// 4. Anything else starts a new press (closing the current one with
///    [`EndReason::NextEvent`]). A press whose begin packets were lost starts on its first
///    update, with the timestamp it carries, so its start and duration stay right.
///
/// A press with no packet for [`timeout`](Self::with_timeout) (default 200 ms) is closed with
/// [`EndReason::Timeout`]: 200 ms is four of the usual 50 ms update intervals, so three lost
/// updates in a row do not end a held key, while a press whose three end packets were all lost
/// is still reported well inside a human inter-digit gap. Later packets of that press (same
/// timestamp) are ignored, so it is still one event.
#[derive(Debug, Clone)]
pub struct EventReceiver {
    timeout: u64,
    slack: u32,
    stale_window: u32,
    active: Option<Active>,
    /// Segment timestamp of the last closed press: its end repeats are ignored.
    closed_ts: Option<u32>,
    newest_ts: Option<u32>,
    queue: [Option<KeyPress>; QUEUE],
}

impl EventReceiver {
    /// Receiver for a `telephone-event/<clock_rate>` stream.
    pub fn new(clock_rate: u32) -> Self {
        let clock_rate = clock_rate.max(1);
        EventReceiver {
            timeout: u64::from(clock_rate / 5),
            slack: clock_rate / 10,
            stale_window: clock_rate.saturating_mul(10),
            active: None,
            closed_ts: None,
            newest_ts: None,
            queue: [None; QUEUE],
        }
    }

    /// Close a press after `ticks` without a packet (default: 200 ms of media clock).
    pub fn with_timeout(mut self, ticks: u64) -> Self {
        self.timeout = ticks.max(1);
        self
    }

    /// How far past the current segment's end a segment continuation may start (default 100 ms).
    pub fn with_slack(mut self, ticks: u32) -> Self {
        self.slack = ticks;
        self
    }

    /// Feed one telephone-event RTP packet: its timestamp, marker and payload (padding removed).
    /// Drain [`poll_event`](Self::poll_event) afterwards. The sequence number is not needed:
    /// updates of one press are ordered by their durations (the largest wins), presses by their
    /// timestamps.
    pub fn handle_packet(
        &mut self,
        now: u64,
        timestamp: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), EventError> {
        let p = EventPayload::decode(payload)?;
        if let Some(newest) = self.newest_ts {
            let behind = newest.wrapping_sub(timestamp);
            if behind != 0 && behind <= self.stale_window {
                return Ok(());
            }
        }
        if self
            .newest_ts
            .is_some_and(|n| (timestamp.wrapping_sub(n) as i32) > 0)
            || self.newest_ts.is_none()
        {
            self.newest_ts = Some(timestamp);
        }
        if let Some(a) = &mut self.active {
            if timestamp == a.seg_ts && p.event == a.event {
                a.seg_duration = a.seg_duration.max(p.duration);
                a.volume = p.volume;
                a.last_rx = now;
                if p.end {
                    self.close(EndReason::EndBit);
                }
                return Ok(());
            }
            let gap = timestamp.wrapping_sub(a.seg_ts);
            let seg = u32::from(a.seg_duration);
            let long = seg + self.slack >= MAX_SEGMENT;
            if p.event == a.event
                && timestamp != a.seg_ts
                && (!marker || long)
                && gap <= seg + self.slack
            {
                a.before = a.before.saturating_add(gap);
                a.seg_ts = timestamp;
                a.seg_duration = p.duration;
                a.volume = p.volume;
                a.last_rx = now;
                if p.end {
                    self.close(EndReason::EndBit);
                }
                return Ok(());
            }
            self.close(EndReason::NextEvent);
        } else if self.closed_ts == Some(timestamp) {
            // End repeats (or late updates) of the press just closed.
            return Ok(());
        }
        self.active = Some(Active {
            event: p.event,
            volume: p.volume,
            first_ts: timestamp,
            seg_ts: timestamp,
            before: 0,
            seg_duration: p.duration,
            last_rx: now,
        });
        if p.end {
            self.close(EndReason::EndBit);
        }
        Ok(())
    }

    /// Feed a parsed RTP packet (see [`handle_packet`](Self::handle_packet)).
    pub fn handle_rtp(
        &mut self,
        now: u64,
        pkt: &crate::rtp::RtpPacket<'_>,
    ) -> Result<(), EventError> {
        self.handle_packet(now, pkt.timestamp(), pkt.marker(), pkt.payload())
    }

    /// Close a press that has been silent for the timeout. Call at [`poll_timeout`](Self::poll_timeout)
    /// (calling earlier or more often is harmless).
    pub fn handle_timeout(&mut self, now: u64) {
        if self
            .active
            .is_some_and(|a| now >= a.last_rx.saturating_add(self.timeout))
        {
            self.close(EndReason::Timeout);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work to do, if ever.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.active.map(|a| a.last_rx.saturating_add(self.timeout))
    }

    /// The next finished key press, oldest first.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<KeyPress> {
        let first = self.queue[0].take();
        self.queue.rotate_left(1);
        first
    }

    /// The sender's stream restarted (new SSRC, e.g. after a re-INVITE): close a press in
    /// progress (as [`EndReason::NextEvent`]) and forget the timestamps seen, so the new stream's
    /// numbering is not mistaken for stale packets.
    pub fn reset(&mut self) {
        self.close(EndReason::NextEvent);
        self.closed_ts = None;
        self.newest_ts = None;
    }

    /// Whether a press is in progress (its begin seen, its end not yet).
    pub fn in_progress(&self) -> Option<u8> {
        self.active.map(|a| a.event)
    }

    fn close(&mut self, end: EndReason) {
        let Some(a) = self.active.take() else {
            return;
        };
        self.closed_ts = Some(a.seg_ts);
        let press = KeyPress {
            event: a.event,
            timestamp: a.first_ts,
            duration: a.before.saturating_add(u32::from(a.seg_duration)),
            volume: a.volume,
            end,
        };
        // Each handle_* call queues at most two presses; if the caller never drains, the oldest
        // is dropped rather than growing.
        if self.queue[QUEUE - 1].is_some() {
            self.queue.rotate_left(1);
            self.queue[QUEUE - 1] = None;
        }
        if let Some(slot) = self.queue.iter_mut().find(|s| s.is_none()) {
            *slot = Some(press);
        }
    }
}

/// What to send: one key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSpec {
    /// Event code.
    pub event: u8,
    /// Volume, -dBm0 (0–63).
    pub volume: u8,
    /// Length of the press in media-clock ticks.
    pub duration: u32,
    /// RTP timestamp of the press's start (the egress stream's media clock now).
    pub timestamp: u32,
    /// Ticks between updates (≥ 1), e.g. 400 = 50 ms at 8 kHz.
    pub interval: u32,
    /// End packets to send, the first plus its repeats (RFC 4733 §2.5.1.4 suggests 3).
    pub end_packets: u8,
}

impl SendSpec {
    /// A DTMF key of `duration_ms`, volume 10 (-10 dBm0), 50 ms updates, 3 end packets. `None`
    /// for a character that is not a DTMF key.
    pub fn digit(digit: char, duration_ms: u32, clock_rate: u32, timestamp: u32) -> Option<Self> {
        Some(SendSpec {
            event: digit_event(digit)?,
            volume: 10,
            duration: (u64::from(duration_ms) * u64::from(clock_rate) / 1000) as u32,
            timestamp,
            interval: (clock_rate / 20).max(1),
            end_packets: 3,
        })
    }
}

/// One packet from [`EventSender`]; its 4-byte payload was written into the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct EventPacket {
    /// RTP timestamp (the segment's start).
    pub timestamp: u32,
    /// RTP marker bit (first packet of the press only).
    pub marker: bool,
    /// E bit.
    pub end: bool,
    /// When to send it, in ticks after the press's start.
    pub due: u64,
}

/// Sends one key press as RFC 4733 packets, without allocation.
///
/// Packet `k` reports the duration elapsed so far and is due when that much time has passed: the
/// first (marker set) one interval after the start, then one per interval, plus a packet exactly
/// at each 0xFFFF boundary, where the next segment starts with its own timestamp and no marker.
/// At the full duration the end packet goes out, and its repeats follow one interval apart with
/// the same timestamp and duration. Sequence numbers are the egress stream's (e.g.
/// [`crate::rtp::Continuity`]).
#[derive(Debug, Clone)]
pub struct EventSender {
    spec: SendSpec,
    start: u64,
    /// Elapsed ticks the next packet reports.
    elapsed: u64,
    ends_sent: u8,
    first: bool,
}

impl EventSender {
    /// Start sending `spec` at `now` (media-clock ticks).
    pub fn new(spec: SendSpec, now: u64) -> Self {
        let mut spec = spec;
        spec.interval = spec.interval.max(1);
        spec.end_packets = spec.end_packets.max(1);
        let mut s = EventSender {
            spec,
            start: now,
            elapsed: 0,
            ends_sent: 0,
            first: true,
        };
        s.elapsed = s.step(0);
        s
    }

    fn total(&self) -> u64 {
        u64::from(self.spec.duration)
    }

    fn step(&self, e: u64) -> u64 {
        let i = u64::from(self.spec.interval);
        let m = u64::from(MAX_SEGMENT);
        ((e / i + 1) * i).min((e / m + 1) * m).min(self.total())
    }

    /// The next packet regardless of time, or `None` when all were produced.
    pub fn next_packet(&mut self, out: &mut [u8; PAYLOAD_LEN]) -> Option<EventPacket> {
        if self.ends_sent >= self.spec.end_packets {
            return None;
        }
        let e = self.elapsed;
        let end = e == self.total();
        let segment = e.saturating_sub(1) / u64::from(MAX_SEGMENT);
        let seg_start = segment * u64::from(MAX_SEGMENT);
        let payload = EventPayload {
            event: self.spec.event,
            end,
            volume: self.spec.volume,
            duration: (e - seg_start) as u16,
        };
        *out = payload.encode();
        let due = self.due();
        let packet = EventPacket {
            timestamp: self.spec.timestamp.wrapping_add(seg_start as u32),
            marker: self.first,
            end,
            due,
        };
        self.first = false;
        if end {
            self.ends_sent += 1;
        } else {
            self.elapsed = self.step(e);
        }
        Some(packet)
    }

    fn due(&self) -> u64 {
        if self.elapsed == self.total() {
            self.total() + u64::from(self.ends_sent) * u64::from(self.spec.interval)
        } else {
            self.elapsed
        }
    }

    /// The next packet if it is due at `now`.
    pub fn poll_transmit(&mut self, now: u64, out: &mut [u8; PAYLOAD_LEN]) -> Option<EventPacket> {
        if now >= self.poll_timeout()? {
            self.next_packet(out)
        } else {
            None
        }
    }

    /// When the next packet is due (media-clock ticks), `None` once all were sent.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        (self.ends_sent < self.spec.end_packets).then(|| self.start + self.due())
    }

    /// All packets were produced.
    pub fn is_done(&self) -> bool {
        self.ends_sent >= self.spec.end_packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    const RATE: u32 = 8000;

    #[test]
    fn payload_codec_fixtures() {
        // '5', not end, volume 10, duration 400.
        let p = EventPayload::decode(&hex!("05 0a 0190")).unwrap();
        assert_eq!(
            p,
            EventPayload {
                event: 5,
                end: false,
                volume: 10,
                duration: 400
            }
        );
        assert_eq!(p.encode(), hex!("05 0a 0190"));
        // '#', end, reserved bit set (ignored), volume 63, duration 0xffff.
        let p = EventPayload::decode(&hex!("0b ff ffff")).unwrap();
        assert_eq!(
            (p.event, p.end, p.volume, p.duration),
            (11, true, 63, 0xffff)
        );
        assert_eq!(p.encode(), hex!("0b bf ffff"));
        assert_eq!(
            EventPayload::decode(&hex!("05 0a 01")),
            Err(EventError::Short)
        );
        assert_eq!(EventPayload::decode(&[]), Err(EventError::Short));
    }

    #[test]
    fn digit_mapping() {
        let keys: String = (0..16).map(|e| event_digit(e).unwrap()).collect();
        assert_eq!(keys, "0123456789*#ABCD");
        for (e, c) in keys.chars().enumerate() {
            assert_eq!(digit_event(c), Some(e as u8));
        }
        assert_eq!(digit_event('d'), Some(15));
        assert_eq!(event_digit(FLASH), None);
        assert_eq!(digit_event('x'), None);
    }

    /// Every packet of a sender, with its send time.
    fn packets(spec: SendSpec, start: u64) -> Vec<(u64, u32, bool, [u8; 4])> {
        let mut s = EventSender::new(spec, start);
        let mut v = Vec::new();
        let mut buf = [0; 4];
        while let Some(now) = s.poll_timeout() {
            let p = s.poll_transmit(now, &mut buf).unwrap();
            v.push((now, p.timestamp, p.marker, buf));
        }
        assert!(s.is_done());
        v
    }

    fn receive(rx: &mut EventReceiver, pkts: &[(u64, u32, bool, [u8; 4])]) -> Vec<KeyPress> {
        let mut out = Vec::new();
        for (now, ts, m, payload) in pkts {
            if let Some(t) = rx.poll_timeout()
                && t <= *now
            {
                rx.handle_timeout(t);
            }
            rx.handle_packet(*now, *ts, *m, payload).unwrap();
            out.extend(std::iter::from_fn(|| rx.poll_event()));
        }
        out
    }

    fn drain_timeout(rx: &mut EventReceiver, out: &mut Vec<KeyPress>) {
        if let Some(t) = rx.poll_timeout() {
            rx.handle_timeout(t - 1);
            assert_eq!(rx.poll_event(), None);
            rx.handle_timeout(t);
        }
        out.extend(std::iter::from_fn(|| rx.poll_event()));
    }

    #[test]
    fn sender_sequence_100ms() {
        let spec = SendSpec::digit('7', 100, RATE, 1000).unwrap();
        let v = packets(spec, 50);
        let got: Vec<_> = v
            .iter()
            .map(|(now, ts, m, p)| (*now, *ts, *m, EventPayload::decode(p).unwrap()))
            .map(|(now, ts, m, p)| (now, ts, m, p.end, p.duration))
            .collect();
        assert_eq!(
            got,
            [
                (450, 1000, true, false, 400),
                (850, 1000, false, true, 800),
                (1250, 1000, false, true, 800),
                (1650, 1000, false, true, 800),
            ]
        );
        assert_eq!(v[0].3, hex!("07 0a 0190"));
        assert_eq!(v[1].3, hex!("07 8a 0320"));
    }

    #[test]
    fn round_trip_all_digits() {
        let mut rx = EventReceiver::new(RATE);
        let mut now = 0;
        let mut ts = u32::MAX - 3000; // wraps during the run
        for (i, c) in "0123456789*#ABCD".chars().enumerate() {
            let ms = 60 + 20 * i as u32;
            let spec = SendSpec::digit(c, ms, RATE, ts).unwrap();
            let got = receive(&mut rx, &packets(spec, now));
            assert_eq!(got.len(), 1, "{c}");
            assert_eq!(got[0].digit(), Some(c));
            assert_eq!(got[0].timestamp, ts);
            assert_eq!(got[0].duration, ms * 8);
            assert_eq!(got[0].end, EndReason::EndBit);
            assert_eq!(rx.poll_timeout(), None);
            now += 8000;
            ts = ts.wrapping_add(8000);
        }
    }

    #[test]
    fn lost_begin_and_lost_end() {
        let spec = SendSpec::digit('3', 200, RATE, 5000).unwrap();
        let all = packets(spec, 0);
        assert_eq!(all.len(), 6); // 4 updates incl. the first end, 2 repeats
        // Lost begin: the first two packets are missing.
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &all[2..]);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].digit(), got[0].timestamp, got[0].duration),
            (Some('3'), 5000, 1600)
        );
        // Lost end: every end packet is missing; closed by the timeout, 200 ms after the last.
        let mut rx = EventReceiver::new(RATE);
        let mut got = receive(&mut rx, &all[..3]);
        assert!(got.is_empty());
        assert_eq!(rx.poll_timeout(), Some(all[2].0 + 1600));
        drain_timeout(&mut rx, &mut got);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].end, EndReason::Timeout);
        assert_eq!(got[0].duration, 1200);
        // A late end packet of the same press after the timeout is not a second press.
        let late = receive(&mut rx, &all[4..]);
        assert!(late.is_empty());
    }

    #[test]
    fn duplicates_and_reordering() {
        let spec = SendSpec::digit('9', 250, RATE, 70).unwrap();
        let all = packets(spec, 0);
        let n = all.len();
        assert_eq!(n, 7); // updates at 50..200 ms, the end at 250 ms, 2 repeats
        // Duplicates, an old update after newer ones, the end before the last update.
        let order = [0, 0, 1, 2, 0, 1, 4, 3, 4, 5, 3, 6, 6];
        let shuffled: Vec<_> = order.iter().map(|&i| all[i]).collect();
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &shuffled);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].digit(), got[0].duration), (Some('9'), 2000));
        // The end packets coming again much later are stale repeats.
        let again: Vec<_> = all
            .iter()
            .map(|&(t, ts, m, p)| (t + 4000, ts, m, p))
            .collect();
        assert!(receive(&mut rx, &again[n - 3..]).is_empty());
    }

    #[test]
    fn two_quick_presses_of_same_digit() {
        let a = SendSpec::digit('1', 60, RATE, 10_000).unwrap();
        // Second press 40 ms after the first ended: new timestamp.
        let b = SendSpec::digit('1', 60, RATE, 10_000 + 480 + 320).unwrap();
        let mut pkts = packets(a, 0);
        pkts.extend(packets(b, 800));
        pkts.sort_by_key(|p| p.0);
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &pkts);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(
            got.iter()
                .all(|k| k.digit() == Some('1') && k.duration == 480)
        );
        assert_eq!((got[0].timestamp, got[1].timestamp), (10_000, 10_800));
        // Same two presses with every end packet lost: the marker of the second starts it.
        let no_ends: Vec<_> = packets(a, 0)
            .into_iter()
            .chain(packets(b, 800))
            .filter(|p| !EventPayload::decode(&p.3).unwrap().end)
            .collect();
        let mut rx = EventReceiver::new(RATE);
        let mut got = receive(&mut rx, &no_ends);
        drain_timeout(&mut rx, &mut got);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].end, EndReason::NextEvent);
        assert_eq!(got[1].end, EndReason::Timeout);
    }

    #[test]
    fn long_event_wraps_duration_into_segments() {
        // 20 s press: three segments (0xffff = 8.19 s at 8 kHz), timestamps wrap too.
        let start_ts = u32::MAX - 100_000;
        let spec = SendSpec::digit('#', 20_000, RATE, start_ts).unwrap();
        let all = packets(spec, 0);
        let boundary: Vec<_> = all
            .iter()
            .filter(|p| EventPayload::decode(&p.3).unwrap().duration == 0xffff)
            .collect();
        assert_eq!(boundary.len(), 2);
        let seg_ts: Vec<u32> = all
            .iter()
            .map(|p| p.1)
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(seg_ts.len(), 3);
        assert!(all[1..].iter().all(|p| !p.2), "marker only on the first");
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &all);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].timestamp, start_ts);
        assert_eq!(got[0].duration, 160_000);
        // Lose the boundary packets and a few around them: still one press.
        let lossy: Vec<_> = all
            .iter()
            .copied()
            .filter(|p| EventPayload::decode(&p.3).unwrap().duration < 0xffff - 400)
            .collect();
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &lossy);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].duration, 160_000);
    }

    #[test]
    fn flash_and_zero_duration() {
        let spec = SendSpec {
            event: FLASH,
            volume: 0,
            duration: 0,
            timestamp: 1,
            interval: 400,
            end_packets: 3,
        };
        let all = packets(spec, 0);
        assert_eq!(all.len(), 3);
        assert!(all[0].2);
        let mut rx = EventReceiver::new(RATE);
        let got = receive(&mut rx, &all);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].event, got[0].digit(), got[0].duration),
            (FLASH, None, 0)
        );
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_state_change() {
        let mut rx = EventReceiver::new(RATE);
        assert_eq!(
            rx.handle_packet(0, 1, true, &[1, 2]),
            Err(EventError::Short)
        );
        assert_eq!(rx.in_progress(), None);
    }

    /// Tiny xorshift so the property tests need no dependency and are reproducible.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn random_presses_round_trip() {
        let mut seed = 0x4733_u64;
        let mut rx = EventReceiver::new(RATE);
        let (mut now, mut ts) = (0u64, rng(&mut seed) as u32);
        for _ in 0..2000 {
            let spec = SendSpec {
                event: (rng(&mut seed) % 17) as u8,
                volume: (rng(&mut seed) % 64) as u8,
                duration: (rng(&mut seed) % 200_000) as u32,
                timestamp: ts,
                interval: 80 + (rng(&mut seed) % 800) as u32,
                end_packets: 1 + (rng(&mut seed) % 4) as u8,
            };
            let got = receive(&mut rx, &packets(spec, now));
            assert_eq!(got.len(), 1, "{spec:?}");
            let k = got[0];
            assert_eq!(
                (k.event, k.timestamp, k.duration, k.volume),
                (spec.event, ts, spec.duration, spec.volume)
            );
            let gap = u64::from(spec.duration) + 4 * u64::from(spec.interval) + 400;
            now += gap;
            ts = ts.wrapping_add(gap as u32);
        }
    }

    #[test]
    fn random_packets_never_panic() {
        let mut seed = 99u64;
        let mut rx = EventReceiver::new(RATE);
        let mut now = 0u64;
        let mut presses = 0;
        for _ in 0..100_000 {
            let r = rng(&mut seed);
            now += r % 500;
            let len = (r >> 10) as usize % 7;
            let payload = rng(&mut seed).to_be_bytes();
            // Timestamps from a small set so updates, repeats and segments collide.
            let ts = [0u32, 400, 0xffff, 0x1_fffe, u32::MAX][(r >> 20) as usize % 5];
            let _ = rx.handle_packet(now, ts, r & 1 == 0, &payload[..len]);
            if r.is_multiple_of(7) {
                rx.handle_timeout(now);
            }
            while rx.poll_event().is_some() {
                presses += 1;
            }
        }
        assert!(presses > 100);
    }

    #[test]
    fn reset_accepts_a_restarted_stream() {
        let first = SendSpec::digit('2', 100, RATE, 50_000).unwrap();
        let mut rx = EventReceiver::new(RATE);
        let mut got = receive(&mut rx, &packets(first, 0)[..1]);
        // New SSRC with a timestamp just "behind" the old one: stale without a reset.
        let second = SendSpec::digit('3', 100, RATE, 49_000).unwrap();
        let restarted = packets(second, 2000);
        let without_reset = receive(&mut rx.clone(), &restarted);
        assert!(without_reset.iter().all(|k| k.digit() == Some('2')));
        rx.reset();
        got.extend(std::iter::from_fn(|| rx.poll_event()));
        got.extend(receive(&mut rx, &restarted));
        let keys: Vec<_> = got.iter().map(|k| (k.digit(), k.end)).collect();
        assert_eq!(
            keys,
            [
                (Some('2'), EndReason::NextEvent),
                (Some('3'), EndReason::EndBit)
            ]
        );
    }
}
