//! The one error type of the core crate.

use std::sync::Arc;

/// What went wrong, and what to do about it. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials are dead (terminal refresh failure, or an expired token with no
    /// way to refresh it).
    #[error(
        "sign-in required: {}",
        Advised(reason, "sign in", "sign in again with new credentials")
    )]
    SignInRequired {
        /// Why a sign-in is needed.
        reason: Arc<str>,
    },
    /// The token endpoint refused the client's configuration (`invalid_client`, a
    /// wrong token URL, a redirect, a scope it does not allow…), and no usable token is
    /// left. The refresh credential is kept: the session resumes once a refresh
    /// succeeds (tried again after `backoff_max`, or at the next sign-in).
    #[error(
        "{}; the session is kept and resumes with the next successful refresh",
        Refused(reason)
    )]
    Misconfigured {
        /// What the token endpoint said, naming what to fix.
        reason: Arc<str>,
    },
    /// The token endpoint could not be reached (connection refused, no DNS answer,
    /// connect timeout) and no usable token is left: the request fails at once rather
    /// than wait for a refresh that cannot start before the backoff ends. A usable
    /// token is still granted meanwhile.
    #[error(
        "the token endpoint is unreachable ({reason}) and no usable token is left; the next refresh is tried in {}: check the network, the token URL's host and that the authorization server is up, then retry",
        HumanDelay(*retry_in)
    )]
    Unreachable {
        /// Why the last connection failed (no secret).
        reason: Arc<str>,
        /// How long until the next refresh may start, counted from when this error was
        /// made.
        retry_in: std::time::Duration,
    },
    /// A refresh failed (transiently: a 5xx, a 429, a time-out…) and no usable token is
    /// left, and the request cannot wait for the next attempt: it is due after the
    /// request's deadline, or the [`WaitPolicy`](crate::WaitPolicy) answers at the first
    /// failure.
    #[error(
        "no usable token: the last refresh failed ({reason}) and the next attempt is in {}; retry later",
        HumanDelay(*retry_in)
    )]
    RefreshFailed {
        /// What the last attempt ran into (no secret).
        reason: Arc<str>,
        /// How long until the next attempt may start, counted from when this error was
        /// made.
        retry_in: std::time::Duration,
    },
    /// The API keeps rejecting tokens soon after they were issued (rule 14), so
    /// refreshes are held back, and the request cannot wait for the next one.
    #[error(
        "the API rejected the last {count} tokens soon after they were issued, so refreshing again is held back for {}; check that the token's audience and scope are the ones the API expects, that the API's and the authorization server's clocks agree, and the API's own configuration",
        HumanDelay(*retry_in)
    )]
    TokensRejected {
        /// How many tokens in a row were rejected soon after they were issued.
        count: u32,
        /// How long until the next refresh may start, counted from when this error was
        /// made.
        retry_in: std::time::Duration,
    },
    /// The program signed out.
    #[error("signed out: sign in before asking for a token")]
    SignedOut,
    /// The request waited until its deadline for a sign-in: the source was never given
    /// credentials (no `Credentials`, no stored session) and nothing signed it in.
    #[error(
        "no credentials: the request waited until its deadline for a sign-in; give the source credentials or a store holding a session, or sign in (a client-credentials grant needs `Credentials::ClientCredentials`)"
    )]
    AwaitingSignIn,
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

/// A delay for people: milliseconds under a second, seconds above.
struct HumanDelay(std::time::Duration);

/// A reason, then `advice` unless the reason already gives it (names `marker`), so
/// that a message never says the same thing twice.
struct Advised<'a>(&'a str, &'static str, &'static str);

impl std::fmt::Display for Advised<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(reason, marker, advice) = *self;
        if reason.to_ascii_lowercase().contains(marker) {
            f.write_str(reason)
        } else {
            write!(f, "{reason}; {advice}")
        }
    }
}

/// What the token endpoint refused, said once: a reason that names the token endpoint
/// itself (the codec's do) stands alone; another is introduced, with what to fix.
struct Refused<'a>(&'a str);

impl std::fmt::Display for Refused<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.starts_with("the token endpoint") {
            f.write_str(self.0)
        } else {
            write!(
                f,
                "the token endpoint refused the client's configuration: {}; fix what it names (client id or secret, authentication method, token URL or scope)",
                self.0
            )
        }
    }
}

impl std::fmt::Display for HumanDelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.as_millis();
        if ms < 1000 {
            write!(f, "{ms} ms")
        } else {
            write!(f, "{} s", self.0.as_secs())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_is_given_once() {
        let dead = |reason: &str| {
            Error::SignInRequired {
                reason: reason.into(),
            }
            .to_string()
        };
        assert_eq!(
            dead("the refresh token was revoked or was already used; sign in again"),
            "sign-in required: the refresh token was revoked or was already used; sign in again"
        );
        assert_eq!(
            dead("signed out by another process"),
            "sign-in required: signed out by another process; sign in again with new credentials"
        );

        let refused = |reason: &str| {
            Error::Misconfigured {
                reason: reason.into(),
            }
            .to_string()
        };
        let by_codec =
            refused("the token endpoint refused the client authentication; check the client id");
        assert_eq!(
            by_codec.matches("the token endpoint").count(),
            1,
            "{by_codec}"
        );
        assert!(
            by_codec.ends_with("resumes with the next successful refresh"),
            "{by_codec}"
        );
        let own = refused("no DPoP proof: the key is gone");
        assert!(
            own.starts_with("the token endpoint refused the client's configuration: no DPoP proof"),
            "{own}"
        );
        assert!(own.contains("fix what it names"), "{own}");
    }
}
