//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3).

use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::message::header::ViaRef;
use crate::message::{Message, Method, Request, Response};

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Identifies one transaction: top Via branch, sent-by and method.
///
/// For a request the method is the request method, except that ACK maps to INVITE (an ACK for
/// a non-2xx final response belongs to the INVITE server transaction). For a response it is the
/// CSeq method. CANCEL is its own transaction; [`TransactionKey::cancel_target`] names the INVITE
/// transaction it cancels.
///
/// Only RFC 3261 branches (starting with `z9hG4bK`) are matched; the RFC 2543 fallback (matching
/// on Request-URI, tags, Call-ID, CSeq and the whole top Via) is not implemented, and messages
/// without the magic cookie are dropped with [`KeyError::NotRfc3261Branch`].
///
/// A key is cloned into every event, map and deadline of its transaction, and compared on every
/// lookup: it is shared (a clone is a reference count) and carries a hash of its parts, which
/// orders keys before their text does (branches share the `z9hG4bK` prefix and more, so text
/// comparison would walk long common prefixes).
#[derive(Clone)]
pub struct TransactionKey {
    /// FNV-1a of branch, sent-by and method: fixed, so map order is the same on every run.
    /// Kept beside the pointer, so that most comparisons never follow it.
    hash: u64,
    parts: Arc<Parts>,
}

struct Parts {
    branch: Box<str>,
    sent_by: Box<str>,
    method: Method,
}

/// Why no key could be built from a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// No parseable top Via.
    #[error("no valid top Via")]
    Via,
    /// The top Via branch is missing or lacks the `z9hG4bK` magic cookie.
    #[error("top Via branch is not an RFC 3261 branch")]
    NotRfc3261Branch,
    /// A response without a valid CSeq.
    #[error("no valid CSeq")]
    CSeq,
}

impl TransactionKey {
    fn new(branch: Box<str>, sent_by: Box<str>, method: Method) -> TransactionKey {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        h.write(branch.as_bytes());
        h.write(&[0]);
        h.write(sent_by.as_bytes());
        h.write(&[0]);
        h.write(method.as_str().as_bytes());
        TransactionKey {
            hash: h.0,
            parts: Arc::new(Parts {
                branch,
                sent_by,
                method,
            }),
        }
    }

    fn from_via(via: &ViaRef<'_>, method: Method) -> Result<TransactionKey, KeyError> {
        let branch = via
            .branch()
            .filter(|b| b.starts_with(MAGIC_COOKIE))
            .ok_or(KeyError::NotRfc3261Branch)?;
        let mut sent_by = via.host().to_ascii_lowercase();
        if let Some(p) = via.port() {
            let _ = write!(sent_by, ":{p}");
        }
        // Branch comparison is case-sensitive in RFC 3261 §17.2.3; keep it as sent.
        Ok(TransactionKey::new(branch.into(), sent_by.into(), method))
    }

    /// The key of the transaction a request belongs to (ACK maps to INVITE).
    pub fn for_request(req: &Request) -> Result<TransactionKey, KeyError> {
        let via = req.headers.top_via_ref().map_err(|_| KeyError::Via)?;
        let method = if req.method == Method::ACK {
            Method::INVITE
        } else {
            req.method.clone()
        };
        TransactionKey::from_via(&via, method)
    }

    /// The key of the client transaction a response belongs to (top Via and CSeq method).
    pub fn for_response(resp: &Response) -> Result<TransactionKey, KeyError> {
        let via = resp.headers.top_via_ref().map_err(|_| KeyError::Via)?;
        let cseq = resp.headers.cseq().map_err(|_| KeyError::CSeq)?;
        TransactionKey::from_via(&via, cseq.method)
    }

    /// The key of either kind of message.
    pub fn for_message(msg: &Message) -> Result<TransactionKey, KeyError> {
        match msg {
            Message::Request(r) => TransactionKey::for_request(r),
            Message::Response(r) => TransactionKey::for_response(r),
        }
    }

    /// For a CANCEL key, the key of the INVITE transaction it cancels (same branch and
    /// sent-by, §9.2); `None` for other methods.
    pub fn cancel_target(&self) -> Option<TransactionKey> {
        (self.parts.method == Method::CANCEL).then(|| {
            TransactionKey::new(
                self.parts.branch.clone(),
                self.parts.sent_by.clone(),
                Method::INVITE,
            )
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> &str {
        &self.parts.branch
    }

    /// The sent-by (`host` or `host:port`, host lowercased).
    pub fn sent_by(&self) -> &str {
        &self.parts.sent_by
    }

    /// The transaction's method (INVITE for an ACK).
    pub fn method(&self) -> &Method {
        &self.parts.method
    }

    /// Whether this is an INVITE transaction.
    pub fn is_invite(&self) -> bool {
        self.parts.method == Method::INVITE
    }
}

/// A map keyed by transaction: the key's own hash is used as is.
pub(crate) type KeyMap<V> =
    std::collections::HashMap<TransactionKey, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// Passes a [`TransactionKey`]'s precomputed hash through (it writes one `u64`).
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = Fnv(self.0);
        h.write(bytes);
        self.0 = h.0;
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// 64-bit FNV-1a: short keys, no seed (a fixed order), no dependency.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.parts;
        write!(f, "{}/{}/{}", p.method, p.branch, p.sent_by)
    }
}

impl PartialEq for TransactionKey {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (&self.parts, &other.parts);
        self.hash == other.hash
            && (Arc::ptr_eq(a, b)
                || a.branch == b.branch && a.sent_by == b.sent_by && a.method == b.method)
    }
}

impl Eq for TransactionKey {}

impl Hash for TransactionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for TransactionKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TransactionKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.parts, &other.parts);
        self.hash.cmp(&other.hash).then_with(|| {
            if Arc::ptr_eq(a, b) {
                return Ordering::Equal;
            }
            (&a.branch, &a.sent_by, a.method.as_str()).cmp(&(
                &b.branch,
                &b.sent_by,
                b.method.as_str(),
            ))
        })
    }
}
