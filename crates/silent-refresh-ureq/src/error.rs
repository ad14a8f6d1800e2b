//! The one error type of this crate.

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No access token: the core's reason (sign-in required, signed out, deadline
    /// exceeded, overloaded, invalid configuration), which says what to do.
    #[error(transparent)]
    Token(#[from] silent_refresh::Error),
    /// A token was asked for from inside the source's own token-change callback, which
    /// runs while the source is locked.
    #[error(
        "a token was requested from inside the token-change callback; ask for it after the callback returns, from another thread"
    )]
    Reentrant,
    /// An origin given to [`crate::BearerAuthBuilder::allow_origin`] (or a token
    /// endpoint) is not a `scheme://host[:port]` URL.
    #[error(
        "`{origin}` is not a valid origin ({reason}); give one as `https://host` or `https://host:port`"
    )]
    InvalidOrigin {
        /// The origin as given.
        origin: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The bearer middleware was built without any allowed origin, so it would never
    /// attach the token.
    #[error("no origin was allowed: call `allow_origin` with the origin of the API")]
    NoOrigin,
    /// An allowed origin uses plain `http` to a host that is not the loopback
    /// interface: the token would cross the network in clear text.
    #[error(
        "refusing to send tokens over plain http to `{origin}`: use https, or call `allow_insecure_http(true)` if the network is trusted"
    )]
    InsecureOrigin {
        /// The origin as given.
        origin: String,
    },
    /// The bearer middleware ran outside a ureq agent, so it could not turn off
    /// redirects for the authorized request.
    #[error(
        "the bearer middleware must run inside a ureq agent: install it with `Agent::config_builder().middleware(..)`"
    )]
    NotInAgent,
}

impl Error {
    /// Whether the credentials are dead or gone: the program must sign in again
    /// (terminal refresh failure, or signed out).
    #[must_use]
    pub fn needs_sign_in(&self) -> bool {
        matches!(
            self,
            Self::Token(
                silent_refresh::Error::SignInRequired { .. } | silent_refresh::Error::SignedOut
            )
        )
    }
}
