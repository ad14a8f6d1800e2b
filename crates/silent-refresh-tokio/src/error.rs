//! The one error type of this crate.

use silent_refresh::Error as CoreError;
use silent_refresh_driver::SourceError;
use silent_refresh_driver::kernel::NoToken;
use silent_refresh_driver::runtime::tokio::IntegrationError;
use silent_refresh_oauth2::Error as OAuth2Error;
use silent_refresh_oauth2::origin::Refusal;

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor a request's path or query: URLs appear only as their origin.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token machine could not give a token: sign-in required, signed out, no
    /// token before the request's deadline, or too many requests waiting. The wrapped
    /// error says which, and what to do. Also a setting the codec refuses when the
    /// `OAuth2Refresher` is built (`InvalidConfig`).
    #[error(transparent)]
    Token(silent_refresh::Error),
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
    /// A request's URL (or the refresher's token endpoint) is not an absolute http or
    /// https URL with a host.
    #[error("invalid URL: {reason}; give an absolute http or https URL")]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An origin given to [`crate::AuthorizedClientBuilder::allow_origin`] is not
    /// `scheme://host[:port]`: not a URL, or one with a path, a query or a user.
    #[error(
        "invalid origin{}: {reason}; give it to allow_origin as `https://host` or `https://host:port`",
        origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default()
    )]
    InvalidOrigin {
        /// The origin (scheme, host, port) read from it, if any: never the text as
        /// given, which may hold a password, a path or a query.
        origin: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The client was built without any allowed origin, so it would never attach the
    /// token.
    #[error(
        "no origin was allowed: call AuthorizedClientBuilder::allow_origin with the origin of the API"
    )]
    NoOrigin,
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
    /// Plain `http` to a host other than loopback, without the user's opt-in: an
    /// allowed origin of [`crate::AuthorizedClientBuilder`], or the token URL of
    /// `OAuth2RefresherBuilder` (feature `reqwest`).
    #[error(
        "refusing to send a token or credential over plain http to {origin}; use https, or opt in with the builder's `allow_insecure_http` if the network is trusted"
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
    /// The codec ([`oauth2`](crate::oauth2)) refused what it was given, such as a
    /// signing key. Its origin errors become this enum's own variants, and a setting
    /// it refuses becomes [`Error::Token`].
    #[error(transparent)]
    OAuth2(silent_refresh_oauth2::Error),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}; check the TLS setup")]
    HttpClient(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl SourceError for Error {
    fn token(error: CoreError) -> Self {
        Self::Token(error)
    }

    fn as_token(&self) -> Option<&CoreError> {
        match self {
            Self::Token(error) => Some(error),
            _ => None,
        }
    }

    fn reentrant() -> Self {
        Self::Reentrant
    }

    fn stopped() -> Self {
        Self::DriverStopped
    }

    fn not_started(_: String) -> Self {
        Self::NoRuntime
    }
}

impl IntegrationError for Error {
    fn invalid_token() -> Self {
        Self::InvalidToken
    }

    fn send_failed(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::Send(error)
    }
}

impl Error {
    /// Whether the credentials are dead or gone: the program must sign in again
    /// (terminal refresh failure, or signed out).
    #[must_use]
    pub fn needs_sign_in(&self) -> bool {
        SourceError::needs_sign_in(self)
    }

    /// Whether the token endpoint could not be reached and no usable token is left:
    /// retry later (the status says when the next refresh is tried).
    #[must_use]
    pub fn is_unreachable(&self) -> bool {
        SourceError::is_unreachable(self)
    }
}

impl From<CoreError> for Error {
    /// Wraps the core's error in `Error::Token`.
    fn from(error: CoreError) -> Self {
        Self::Token(error)
    }
}

impl From<NoToken> for Error {
    /// Why a caller got no token, as this crate's error.
    fn from(no_token: NoToken) -> Self {
        Self::from_no_token(no_token)
    }
}

impl From<OAuth2Error> for Error {
    /// The codec's origin errors become this crate's own variants (their messages name
    /// this crate's builders); a setting the codec refuses is `Error::Token` with the
    /// core's `InvalidConfig`; any other is wrapped in `Error::OAuth2`.
    fn from(error: OAuth2Error) -> Self {
        match error {
            OAuth2Error::InvalidUrl { reason } => Self::InvalidUrl { reason },
            OAuth2Error::InvalidOrigin { origin, reason } => Self::InvalidOrigin { origin, reason },
            OAuth2Error::NoOrigin => Self::NoOrigin,
            OAuth2Error::InsecureHttp { origin } => Self::InsecureHttp { origin },
            OAuth2Error::InvalidConfig(reason) => Self::Token(CoreError::InvalidConfig(reason)),
            other => Self::OAuth2(other),
        }
    }
}

impl From<Refusal> for Error {
    /// Why a request did not get the token, as an error that names only its origin.
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::InvalidUrl { reason } => Self::InvalidUrl { reason },
            Refusal::Excluded { origin } => Self::TokenEndpoint {
                origin: origin.to_string(),
            },
            Refusal::NotAllowed { origin } => Self::OriginNotAllowed {
                origin: origin.to_string(),
            },
        }
    }
}
