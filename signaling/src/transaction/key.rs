//! Transaction matching keys (RFC 3261 §17.1.3 and §17.2.3).

use std::fmt;

use crate::message::{Message, Method, Request, Response, Via};

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
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    branch: String,
    sent_by: String,
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
    fn from_via(via: &Via, method: Method) -> Result<TransactionKey, KeyError> {
        let branch = via
            .branch()
            .filter(|b| b.starts_with(MAGIC_COOKIE))
            .ok_or(KeyError::NotRfc3261Branch)?;
        let sent_by = match via.port {
            Some(p) => format!("{}:{}", via.host.to_ascii_lowercase(), p),
            None => via.host.to_ascii_lowercase(),
        };
        Ok(TransactionKey {
            // Branch comparison is case-sensitive in RFC 3261 §17.2.3; keep it as sent.
            branch: branch.to_owned(),
            sent_by,
            method,
        })
    }

    /// The key of the transaction a request belongs to (ACK maps to INVITE).
    pub fn for_request(req: &Request) -> Result<TransactionKey, KeyError> {
        let via = req.headers.top_via().map_err(|_| KeyError::Via)?;
        let method = if req.method == Method::ACK {
            Method::INVITE
        } else {
            req.method.clone()
        };
        TransactionKey::from_via(&via, method)
    }

    /// The key of the client transaction a response belongs to (top Via and CSeq method).
    pub fn for_response(resp: &Response) -> Result<TransactionKey, KeyError> {
        let via = resp.headers.top_via().map_err(|_| KeyError::Via)?;
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
        (self.method == Method::CANCEL).then(|| TransactionKey {
            branch: self.branch.clone(),
            sent_by: self.sent_by.clone(),
            method: Method::INVITE,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> &str {
        &self.branch
    }

    /// The sent-by (`host` or `host:port`, host lowercased).
    pub fn sent_by(&self) -> &str {
        &self.sent_by
    }

    /// The transaction's method (INVITE for an ACK).
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// Whether this is an INVITE transaction.
    pub fn is_invite(&self) -> bool {
        self.method == Method::INVITE
    }
}

impl fmt::Debug for TransactionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.method, self.branch, self.sent_by)
    }
}

impl PartialOrd for TransactionKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for TransactionKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.branch, &self.sent_by, self.method.as_str()).cmp(&(
            &other.branch,
            &other.sent_by,
            other.method.as_str(),
        ))
    }
}
