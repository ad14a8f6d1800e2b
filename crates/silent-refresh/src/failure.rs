//! How a refresh failed, as the driver reports it to the machine.

use std::fmt;
use std::time::Duration;

/// The three classes of a failed refresh (rule 7 of the contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum FailureKind {
    /// Worth retrying: network error, timeout, 5xx, 429, a 4xx without an OAuth error
    /// (a firewall's HTML 403, a proxy's 407). Retried with backoff.
    Transient,
    /// The credentials are dead (`invalid_grant`, revoked): sign-in is required, the
    /// refresh credential is dropped, and no refresh is tried again.
    Terminal,
    /// The client is set up wrong (`invalid_client`, `unauthorized_client`,
    /// `unsupported_grant_type`, `invalid_scope`, `invalid_request`, 404/405, a
    /// redirect, a refused scheme): requests fail fast naming what to fix, the refresh
    /// credential is kept, and a refresh is tried again only after `backoff_max`.
    Misconfigured,
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
    /// The token endpoint could not be reached at all (connection refused, no DNS
    /// answer, connect timeout): a transient failure that says the endpoint is down
    /// or cut off, rather than slow or failing. See [`RefreshFailure::unreachable`].
    pub unreachable: bool,
}

impl RefreshFailure {
    /// A failure worth retrying later.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
            unreachable: false,
        }
    }

    /// A transient failure in which no connection to the token endpoint could be made
    /// (connection refused, no DNS answer, connect timeout). Retried with backoff like
    /// any transient failure; meanwhile the status is
    /// [`Status::Unreachable`](crate::Status::Unreachable), and a request that finds no
    /// usable token fails at once with [`Error::Unreachable`](crate::Error::Unreachable)
    /// (unless [`fail_fast_unreachable`](crate::ConfigBuilder::fail_fast_unreachable)
    /// is off) instead of waiting for its deadline. An endpoint that answered, even
    /// with an error or too slowly, is not unreachable.
    pub fn unreachable(message: impl Into<String>) -> Self {
        Self {
            unreachable: true,
            ..Self::transient(message)
        }
    }

    /// A failure that needs a new sign-in: the credentials are dead.
    pub fn terminal(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Terminal,
            message: message.into(),
            retry_after: None,
            unreachable: false,
        }
    }

    /// A failure of the client's configuration: the message must name what to fix
    /// (client id or secret, authentication method, token URL, scope).
    pub fn misconfigured(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Misconfigured,
            message: message.into(),
            retry_after: None,
            unreachable: false,
        }
    }

    /// The same failure with the server's `Retry-After`.
    #[must_use]
    pub fn with_retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = Some(retry_after);
        self
    }

    /// Whether this failure is terminal (the credentials are dead).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        self.kind == FailureKind::Terminal
    }
}

impl fmt::Display for RefreshFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Transient if self.unreachable => "transient (token endpoint unreachable)",
            FailureKind::Transient => "transient",
            FailureKind::Terminal => "terminal",
            FailureKind::Misconfigured => "misconfiguration",
        };
        write!(f, "{kind} refresh failure: {}", self.message)?;
        if let Some(after) = self.retry_after {
            write!(f, " (retry after {}s)", after.as_secs())?;
        }
        Ok(())
    }
}

impl std::error::Error for RefreshFailure {}
