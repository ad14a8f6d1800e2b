//! The one error type of the core crate.

use std::sync::Arc;

/// What went wrong, and what to do about it. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials are dead (terminal refresh failure, or an expired token with no
    /// way to refresh it).
    #[error("sign-in required: {reason}; sign in again with new credentials")]
    SignInRequired {
        /// Why a sign-in is needed.
        reason: Arc<str>,
    },
    /// The program signed out.
    #[error("signed out: sign in before asking for a token")]
    SignedOut,
    /// The request waited until its deadline without getting a token.
    #[error("no token before the request's deadline{}; the authorization server may be unreachable, retry later", last_failure.as_deref().map(|f| format!(" (last refresh failure: {f})")).unwrap_or_default())]
    DeadlineExceeded {
        /// The last transient refresh failure, if any.
        last_failure: Option<Arc<str>>,
    },
    /// Too many requests are waiting for a token.
    #[error(
        "too many requests waiting for a token (limit {limit}); shed load or raise `max_parked`"
    )]
    Overloaded {
        /// The configured cap on waiting requests.
        limit: usize,
    },
    /// A configuration value makes no sense.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
}
