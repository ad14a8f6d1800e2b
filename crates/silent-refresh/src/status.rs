//! Where the machine stands with the user's credentials: what the machine reports in
//! its events and what a request's fate depends on.

use std::sync::Arc;

use crate::time::Instant;

/// Where the machine stands with the user's credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// No credentials yet: requests wait (until their deadline) for a sign-in.
    AwaitingSignIn,
    /// Credentials present: tokens are granted and refreshed.
    SignedIn,
    /// Credentials present, but the last refresh was refused for a configuration reason
    /// (client id or secret, authentication method, token URL, scope). A usable token is
    /// still granted; requests that need a refresh fail fast until `backoff_max` has
    /// passed, then the next refresh tries again. The refresh credential is kept.
    Misconfigured(Arc<str>),
    /// Credentials present, but the token endpoint could not be reached at the last
    /// refresh (connection refused, no DNS answer, connect timeout). A usable token is
    /// still granted. A request that needs a refresh probes the endpoint again from
    /// `retry_at` on (about a second after the failure, however long the endpoint has
    /// been down, so the session resumes within a second of its return); before that
    /// it fails fast with [`Error::Unreachable`](crate::Error::Unreachable) (unless
    /// [`fail_fast_unreachable`](crate::ConfigBuilder::fail_fast_unreachable) is off).
    /// With nobody asking, the next refresh waits for the usual, growing backoff.
    Unreachable {
        /// Why the last connection failed (no secret).
        reason: Arc<str>,
        /// When a request may probe the endpoint again (past while it runs).
        retry_at: Instant,
    },
    /// A terminal refresh failure (the credentials are dead): requests fail fast until
    /// the next sign-in.
    SignInRequired(Arc<str>),
    /// Signed out: requests fail fast until the next sign-in.
    SignedOut,
}

impl Status {
    /// Signed in (possibly misconfigured, or with the token endpoint unreachable):
    /// tokens may be granted and refreshed.
    #[must_use]
    pub fn is_signed_in(&self) -> bool {
        matches!(
            self,
            Status::SignedIn | Status::Misconfigured(_) | Status::Unreachable { .. }
        )
    }
}
