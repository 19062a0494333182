//! Bencode values, a bounded parser and a serialiser.
//!
//! Byte strings are bytes, not text: nothing here assumes UTF-8. Dictionaries keep the order their
//! keys arrived in (Kamailio's rtpengine module does not sort its keys); [`Value::encode`] writes
//! that order and [`Value::encode_canonical`] writes keys sorted as raw byte strings, which is
//! bencode's canonical form.
//!
//! The parser never panics and never allocates more than the input justifies: a length prefix is
//! checked against the bytes that remain before anything is reserved, nesting is limited by
//! [`Limits::max_depth`] (capped at [`MAX_DEPTH_CAP`], so a caller cannot ask for a stack
//! overflow), and the number of values by [`Limits::max_values`].

use std::fmt;

/// Largest nesting depth the parser ever accepts, whatever [`Limits::max_depth`] says.
pub const MAX_DEPTH_CAP: usize = 256;

/// A bencode value.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// `i<digits>e`: a signed 64-bit integer.
    Int(i64),
    /// `<len>:<bytes>`: a byte string, not necessarily UTF-8.
    Bytes(Vec<u8>),
    /// `l...e`
    List(Vec<Value>),
    /// `d...e`: byte-string keys, in insertion order.
    Dict(Dict),
}

impl Value {
    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, if this is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Appends this value to `out`, dictionary keys in insertion order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_inner(out, false);
    }

    /// Appends this value to `out` in canonical form: dictionary keys sorted as raw bytes.
    pub fn encode_canonical(&self, out: &mut Vec<u8>) {
        self.encode_inner(out, true);
    }

    /// This value as bytes, dictionary keys in insertion order.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    fn encode_inner(&self, out: &mut Vec<u8>, canonical: bool) {
        match self {
            Value::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_inner(out, canonical);
                }
                out.push(b'e');
            }
            Value::Dict(d) => d.encode_inner(out, canonical),
        }
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Byte strings print as text where they are printable ASCII, escaped otherwise.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => write!(f, "\"{}\"", b.escape_ascii()),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => d.fmt(f),
        }
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Int(i)
    }
}

impl From<u32> for Value {
    fn from(i: u32) -> Self {
        Value::Int(i64::from(i))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for Value {
    fn from(b: &[u8]) -> Self {
        Value::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Bytes(b)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Value::Dict(d)
    }
}

/// A bencode dictionary: byte-string keys in insertion order.
///
/// The parser keeps duplicate keys as they came; lookups see the first.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Dict {
    entries: Vec<(Vec<u8>, Value)>,
}

impl Dict {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value of the first entry with this key.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Value> {
        let key = key.as_ref();
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// True if some entry has this key.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> bool {
        self.get(key).is_some()
    }

    /// Sets `key` to `value`: replaces the first entry with that key in place (returning the old
    /// value) or appends a new entry.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => Some(std::mem::replace(v, value)),
            None => {
                self.entries.push((key, value));
                None
            }
        }
    }

    /// Removes the first entry with this key and returns its value.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) -> Option<Value> {
        let key = key.as_ref();
        let i = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(i).1)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// Appends this dictionary to `out`, keys in insertion order.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_inner(out, false);
    }

    /// Appends this dictionary to `out` in canonical form: keys sorted as raw bytes.
    pub fn encode_canonical(&self, out: &mut Vec<u8>) {
        self.encode_inner(out, true);
    }

    fn encode_inner(&self, out: &mut Vec<u8>, canonical: bool) {
        out.push(b'd');
        if canonical {
            let mut entries: Vec<&(Vec<u8>, Value)> = self.entries.iter().collect();
            // Stable: duplicate keys (which the parser tolerates) keep their order.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                encode_bytes(k, out);
                v.encode_inner(out, canonical);
            }
        } else {
            for (k, v) in &self.entries {
                encode_bytes(k, out);
                v.encode_inner(out, canonical);
            }
        }
        out.push(b'e');
    }

    /// Appends without looking for an existing key (the parser keeps duplicates as sent).
    pub(crate) fn push(&mut self, key: Vec<u8>, value: Value) {
        self.entries.push((key, value));
    }
}

impl fmt::Debug for Dict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(
                self.entries
                    .iter()
                    .map(|(k, v)| (format!("{}", k.escape_ascii()), v)),
            )
            .finish()
    }
}

impl<K: Into<Vec<u8>>, V: Into<Value>> FromIterator<(K, V)> for Dict {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut d = Dict::new();
        for (k, v) in iter {
            d.insert(k, v);
        }
        d
    }
}

/// Bounds on what the parser accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries (a flat dictionary is depth 1). Capped at
    /// [`MAX_DEPTH_CAP`].
    pub max_depth: usize,
    /// Largest input in bytes.
    pub max_input: usize,
    /// Most values (integers, strings, lists, dictionaries, keys included) in one input.
    pub max_values: usize,
}

impl Default for Limits {
    /// Depth 32, 64 KiB (one UDP datagram), 16 384 values: far beyond what Kamailio or OpenSIPS
    /// send (their deepest is a dictionary in a dictionary holding lists).
    fn default() -> Self {
        Self {
            max_depth: 32,
            max_input: 65_536,
            max_values: 16_384,
        }
    }
}

/// Why bencode could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended inside a value.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// `i03e` or `03:abc`: bencode numbers have no leading zeros.
    #[error("leading zero")]
    LeadingZero,
    /// `i-0e`
    #[error("negative zero")]
    NegativeZero,
    /// An integer beyond 64 signed bits.
    #[error("integer out of 64-bit range")]
    IntegerOverflow,
    /// A byte-string length prefix larger than the rest of the input.
    #[error("byte-string length exceeds the input")]
    LengthTooLarge,
    /// Lists and dictionaries nested deeper than the limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// More values than the limit.
    #[error("more than {0} values")]
    TooManyValues(usize),
    /// Input longer than the limit.
    #[error("input longer than {0} bytes")]
    InputTooLarge(usize),
    /// A dictionary key that is not a byte string.
    #[error("dictionary key is not a byte string")]
    NonStringKey,
    /// Bytes after a complete value.
    #[error("trailing data after the value")]
    TrailingData,
}

/// A decoding failure and the byte offset where it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {pos}")]
pub struct DecodeError {
    /// Offset into the input.
    pub pos: usize,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl DecodeError {
    fn at(pos: usize, kind: ErrorKind) -> Self {
        DecodeError { pos, kind }
    }
}

/// Decodes exactly one value filling all of `input`.
pub fn decode(input: &[u8], limits: &Limits) -> Result<Value, DecodeError> {
    let (value, used) = decode_prefix(input, limits)?;
    if used != input.len() {
        return Err(DecodeError::at(used, ErrorKind::TrailingData));
    }
    Ok(value)
}

/// Decodes one value from the start of `input`; returns it and the number of bytes it took.
pub fn decode_prefix(input: &[u8], limits: &Limits) -> Result<(Value, usize), DecodeError> {
    if input.len() > limits.max_input {
        return Err(DecodeError::at(
            limits.max_input,
            ErrorKind::InputTooLarge(limits.max_input),
        ));
    }
    let mut p = Parser {
        input,
        pos: 0,
        values: 0,
        max_depth: limits.max_depth.min(MAX_DEPTH_CAP),
        max_values: limits.max_values,
    };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    values: usize,
    max_depth: usize,
    max_values: usize,
}

impl Parser<'_> {
    fn err(&self, kind: ErrorKind) -> DecodeError {
        DecodeError {
            pos: self.pos,
            kind,
        }
    }

    /// A second digit after a leading `0` (the number started at `start`).
    fn no_leading_zero(&self, start: usize) -> Result<(), DecodeError> {
        if self.pos > start && self.input[start] == b'0' {
            return Err(DecodeError::at(start, ErrorKind::LeadingZero));
        }
        Ok(())
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(self.err(ErrorKind::UnexpectedEnd))
    }

    fn count(&mut self) -> Result<(), DecodeError> {
        self.values += 1;
        if self.values > self.max_values {
            return Err(self.err(ErrorKind::TooManyValues(self.max_values)));
        }
        Ok(())
    }

    /// `depth` is the number of containers enclosing this value.
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        self.count()?;
        match self.peek()? {
            b'i' => self.int().map(Value::Int),
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.enter(depth)?;
                let mut list = Vec::new();
                loop {
                    if self.peek()? == b'e' {
                        self.pos += 1;
                        return Ok(Value::List(list));
                    }
                    list.push(self.value(depth + 1)?);
                }
            }
            b'd' => {
                self.enter(depth)?;
                let mut dict = Dict::new();
                loop {
                    match self.peek()? {
                        b'e' => {
                            self.pos += 1;
                            return Ok(Value::Dict(dict));
                        }
                        b'0'..=b'9' => {
                            self.count()?;
                            let key = self.bytes()?;
                            let value = self.value(depth + 1)?;
                            dict.push(key, value);
                        }
                        _ => return Err(self.err(ErrorKind::NonStringKey)),
                    }
                }
            }
            b => Err(self.err(ErrorKind::UnexpectedByte(b))),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth + 1 > self.max_depth {
            return Err(self.err(ErrorKind::TooDeep(self.max_depth)));
        }
        self.pos += 1;
        Ok(())
    }

    /// `i<-?digits>e`
    fn int(&mut self) -> Result<i64, DecodeError> {
        self.pos += 1; // 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let start = self.pos;
        let mut n: i64 = 0;
        loop {
            let b = self.peek()?;
            match b {
                b'0'..=b'9' => {
                    self.no_leading_zero(start)?;
                    let d = i64::from(b - b'0');
                    // Accumulate negatively so i64::MIN fits.
                    n = n
                        .checked_mul(10)
                        .and_then(|n| {
                            if negative {
                                n.checked_sub(d)
                            } else {
                                n.checked_add(d)
                            }
                        })
                        .ok_or(DecodeError::at(start, ErrorKind::IntegerOverflow))?;
                    self.pos += 1;
                }
                b'e' if self.pos > start => {
                    if negative && n == 0 {
                        return Err(DecodeError::at(start, ErrorKind::NegativeZero));
                    }
                    self.pos += 1;
                    return Ok(n);
                }
                b => return Err(self.err(ErrorKind::UnexpectedByte(b))),
            }
        }
    }

    /// `<len>:<bytes>`; the caller has seen a digit.
    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let start = self.pos;
        let mut len: usize = 0;
        loop {
            let b = self.peek()?;
            match b {
                b'0'..=b'9' => {
                    self.no_leading_zero(start)?;
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(usize::from(b - b'0')))
                        .ok_or(DecodeError::at(start, ErrorKind::LengthTooLarge))?;
                    self.pos += 1;
                }
                b':' => {
                    self.pos += 1;
                    let rest = self.input.len() - self.pos;
                    if len > rest {
                        return Err(DecodeError::at(start, ErrorKind::LengthTooLarge));
                    }
                    let s = self.input[self.pos..self.pos + len].to_vec();
                    self.pos += len;
                    return Ok(s);
                }
                b => return Err(self.err(ErrorKind::UnexpectedByte(b))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &[u8]) -> Result<Value, DecodeError> {
        decode(s, &Limits::default())
    }

    fn kind(s: &[u8]) -> ErrorKind {
        dec(s).expect_err("must fail").kind
    }

    #[test]
    fn scalars() {
        assert_eq!(dec(b"i0e"), Ok(Value::Int(0)));
        assert_eq!(dec(b"i-42e"), Ok(Value::Int(-42)));
        assert_eq!(dec(b"i9223372036854775807e"), Ok(Value::Int(i64::MAX)));
        assert_eq!(dec(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(dec(b"0:"), Ok(Value::Bytes(vec![])));
        assert_eq!(dec(b"3:a\xffc"), Ok(Value::Bytes(b"a\xffc".to_vec())));
    }

    #[test]
    fn containers_keep_order() {
        let v = dec(b"d1:bi1e1:al1:xi2eee").unwrap();
        let d = v.as_dict().unwrap();
        let keys: Vec<&[u8]> = d.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"b"[..], &b"a"[..]]);
        assert_eq!(d.get("b"), Some(&Value::Int(1)));
        assert_eq!(
            d.get("a"),
            Some(&Value::List(vec![Value::from("x"), Value::Int(2)]))
        );
        assert_eq!(v.to_bytes(), b"d1:bi1e1:al1:xi2eee");
        let mut canon = Vec::new();
        v.encode_canonical(&mut canon);
        assert_eq!(canon, b"d1:al1:xi2ee1:bi1ee");
    }

    #[test]
    fn round_trip() {
        let cases: &[&[u8]] = &[
            b"i0e",
            b"i-1e",
            b"le",
            b"de",
            b"lli1eee",
            b"d0:0:e",
            b"d3:sdp5:v=0\r\n4:listl1:ai1eld1:xdeeeee",
            b"5:\x00\x01\x02\xfe\xff",
        ];
        for c in cases {
            assert_eq!(dec(c).unwrap().to_bytes(), *c, "{}", c.escape_ascii());
        }
    }

    #[test]
    fn hostile() {
        assert_eq!(kind(b""), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"i"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"i12"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"ie"), ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(kind(b"i-e"), ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(kind(b"i--1e"), ErrorKind::UnexpectedByte(b'-'));
        assert_eq!(kind(b"i+1e"), ErrorKind::UnexpectedByte(b'+'));
        assert_eq!(kind(b"i1.5e"), ErrorKind::UnexpectedByte(b'.'));
        assert_eq!(kind(b"i03e"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"i00e"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"i-03e"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"i-0e"), ErrorKind::NegativeZero);
        assert_eq!(kind(b"i9223372036854775808e"), ErrorKind::IntegerOverflow);
        assert_eq!(kind(b"i-9223372036854775809e"), ErrorKind::IntegerOverflow);
        assert_eq!(
            kind(b"i99999999999999999999999999e"),
            ErrorKind::IntegerOverflow
        );
        assert_eq!(kind(b"03:abc"), ErrorKind::LeadingZero);
        assert_eq!(kind(b"99999999999:"), ErrorKind::LengthTooLarge);
        assert_eq!(kind(b"99999999999:abc"), ErrorKind::LengthTooLarge);
        assert_eq!(
            kind(b"999999999999999999999999999999:"),
            ErrorKind::LengthTooLarge
        );
        assert_eq!(kind(b"4:abc"), ErrorKind::LengthTooLarge);
        assert_eq!(kind(b"3"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"3x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b"l"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"li1e"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"d"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"d1:a"), ErrorKind::UnexpectedEnd);
        assert_eq!(kind(b"di1ei2ee"), ErrorKind::NonStringKey);
        assert_eq!(kind(b"dlei2ee"), ErrorKind::NonStringKey);
        assert_eq!(kind(b"x"), ErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind(b"e"), ErrorKind::UnexpectedByte(b'e'));
        assert_eq!(kind(b"i1ei2e"), ErrorKind::TrailingData);
        assert_eq!(dec(b"i1ei2e").unwrap_err().pos, 3);
        assert_eq!(dec(b"d1:ai03ee").unwrap_err().pos, 5);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        for open in [&b"l"[..], &b"d1:k"[..]] {
            let mut s = open.repeat(10_000);
            s.extend(std::iter::repeat_n(b'e', 10_000));
            let e = dec(&s).unwrap_err();
            assert_eq!(e.kind, ErrorKind::TooDeep(32));
            assert_eq!(e.pos, 32 * open.len());
        }
        // A caller asking for more than the cap still gets the cap.
        let limits = Limits {
            max_depth: usize::MAX,
            ..Limits::default()
        };
        let mut s = vec![b'l'; 10_000];
        s.extend(std::iter::repeat_n(b'e', 10_000));
        assert_eq!(
            decode(&s, &limits).unwrap_err().kind,
            ErrorKind::TooDeep(MAX_DEPTH_CAP)
        );
        // Exactly at the limit is fine.
        let mut s = vec![b'l'; 32];
        s.extend(std::iter::repeat_n(b'e', 32));
        assert!(dec(&s).is_ok());
    }

    #[test]
    fn size_limits() {
        let limits = Limits {
            max_depth: 4,
            max_input: 16,
            max_values: 3,
        };
        assert_eq!(
            decode(&[b'x'; 17], &limits).unwrap_err().kind,
            ErrorKind::InputTooLarge(16)
        );
        assert!(decode(b"li1ei2ee", &limits).is_ok());
        assert_eq!(
            decode(b"li1ei2ei3ee", &limits).unwrap_err().kind,
            ErrorKind::TooManyValues(3)
        );
        assert_eq!(
            decode(b"d1:ai1e1:bi2ee", &limits).unwrap_err().kind,
            ErrorKind::TooManyValues(3)
        );
    }

    #[test]
    fn prefix_reports_length() {
        let (v, n) = decode_prefix(b"i7eXYZ", &Limits::default()).unwrap();
        assert_eq!((v, n), (Value::Int(7), 3));
    }

    #[test]
    fn dict_mutators() {
        let mut d: Dict = [("a", Value::Int(1)), ("b", Value::Int(2))]
            .into_iter()
            .collect();
        assert_eq!(d.insert("a", 3i64), Some(Value::Int(1)));
        assert_eq!(Value::Dict(d.clone()).to_bytes(), b"d1:ai3e1:bi2ee");
        assert_eq!(d.remove("a"), Some(Value::Int(3)));
        assert_eq!(d.remove("a"), None);
        assert_eq!(d.len(), 1);
        assert!(d.contains_key("b"));
    }

    /// Random bytes and mutated valid messages, seeded: never a panic, and whatever decodes
    /// re-encodes to exactly the bytes it came from.
    #[test]
    fn random_inputs_never_panic() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let seed: &[u8] =
            b"d7:command5:offer7:call-id3:abc5:flagsl13:trust-addresse3:sdp5:v=0\r\ne";
        let alphabet = b"0123456789:ilde-";
        let mut ok = 0;
        for i in 0..100_000 {
            let buf: Vec<u8> = if i % 2 == 0 {
                let n = (next() % 64) as usize;
                (0..n)
                    .map(|_| {
                        let r = next();
                        if r % 4 == 0 {
                            r as u8
                        } else {
                            alphabet[(r >> 8) as usize % alphabet.len()]
                        }
                    })
                    .collect()
            } else {
                let mut b = seed.to_vec();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % b.len();
                    match next() % 3 {
                        0 => b[at] = next() as u8,
                        1 => b.truncate(at),
                        _ => b.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                    }
                    if b.is_empty() {
                        break;
                    }
                }
                b
            };
            if let Ok(v) = dec(&buf) {
                ok += 1;
                assert_eq!(v.to_bytes(), buf);
            }
        }
        assert!(
            ok > 100,
            "the mutator should leave some inputs valid ({ok})"
        );
    }
}
