//! The one error type of this crate.

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor a request's path or query: URLs appear only as their origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token machine could not give a token: sign-in required, signed out, no
    /// token before the request's deadline, or too many requests waiting. The wrapped
    /// error says which, and what to do.
    #[error(transparent)]
    Token(#[from] silent_refresh::Error),
    /// There is no tokio runtime to run the token source's background task on.
    #[error(
        "no tokio runtime is running on this thread; build the TokenSource from inside a tokio runtime"
    )]
    NoRuntime,
    /// The background task that runs refreshes and timers has stopped: its runtime shut
    /// down, or it panicked.
    #[error(
        "the token source's background task has stopped (its tokio runtime shut down); build a new TokenSource inside a running runtime"
    )]
    DriverStopped,
    /// A token was asked for from inside the token-change callback, which runs while
    /// the source is locked.
    #[error(
        "a token was requested from inside the token-change callback; hand that work to another task instead"
    )]
    Reentrant,
    /// The URL is not one a token may be sent to, or is not a URL at all.
    #[error("invalid URL: {reason}; give an absolute http or https URL")]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request's origin is not on the allow-list, so the token was not attached.
    #[error(
        "refusing to send the token to {origin}: it is not an allowed origin; add it with AuthorizedClientBuilder::allow_origin if you trust it"
    )]
    OriginNotAllowed {
        /// The request's origin (scheme, host, port).
        origin: String,
    },
    /// The request goes to the token endpoint, which never gets the access token.
    #[error(
        "refusing to send the access token to the token endpoint at {origin}; the refresher talks to it"
    )]
    TokenEndpoint {
        /// The token endpoint's origin (scheme, host, port).
        origin: String,
    },
    /// Plain `http` to a host other than loopback, without the user's opt-in.
    #[error(
        "refusing to send a token over plain http to {origin}; use https, or call AuthorizedClientBuilder::allow_insecure_http if the network is trusted"
    )]
    InsecureHttp {
        /// The origin (scheme, host, port).
        origin: String,
    },
    /// The access token holds characters an HTTP header may not hold.
    #[error(
        "the access token cannot be put in an Authorization header (it holds characters a header may not); the authorization server sent a malformed token"
    )]
    InvalidToken,
    /// The HTTP client failed to send the request or read the response.
    #[error("the request failed: {0}; retry it if it is safe to repeat")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}; check the TLS setup")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
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
