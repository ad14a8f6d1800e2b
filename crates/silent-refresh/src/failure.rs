//! How a refresh failed, as the driver reports it to the machine.

use std::fmt;
use std::time::Duration;

/// Whether a failed refresh is worth trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FailureKind {
    /// Network error, timeout, 5xx, 429: retried with backoff.
    Transient,
    /// The credentials are dead (`invalid_grant`, `invalid_client`, revoked): sign-in
    /// is required and no refresh is tried again.
    Terminal,
}

/// A failed refresh. The message must not contain a secret: it ends up in the errors
/// that waiting requests receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshFailure {
    /// Transient or terminal.
    pub kind: FailureKind,
    /// What happened, for people (no secrets).
    pub message: String,
    /// How long the server asked us to wait before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl RefreshFailure {
    /// A failure worth retrying later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure that needs a new sign-in.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Terminal,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same failure with the server's `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Whether this failure is terminal.
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        self.kind == FailureKind::Terminal
    }
}

impl fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Transient => "transient",
            FailureKind::Terminal => "terminal",
        };
        write!(f, "{kind} refresh failure: {}", self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {}s)", after.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for RefreshFailure {}
