//! The one error type of this crate.

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor a URL's path or query: URLs appear only as their origin.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No access token: the core's reason (sign-in required, signed out, deadline
    /// exceeded, overloaded, invalid configuration), which says what to do. Also a
    /// setting the codec refuses when the `OAuth2Refresher` is built (`InvalidConfig`).
    #[error(transparent)]
    Token(silent_refresh::Error),
    /// A token was asked for from inside the source's own token-change callback, which
    /// runs while the source is locked.
    #[error(
        "a token was requested from inside the token-change callback; ask for it after the callback returns, from another thread"
    )]
    Reentrant,
    /// The timer thread that runs refreshes and deadlines is gone.
    #[error("the token source's timer thread has stopped; build a new TokenSource")]
    DriverStopped,
    /// The timer thread could not be started.
    #[error(
        "could not start the token source's timer thread: {reason}; the system may be out of threads or memory"
    )]
    Spawn {
        /// The operating system's error.
        reason: String,
    },
    /// An origin given to [`crate::BearerAuthBuilder::allow_origin`] is not
    /// `scheme://host[:port]`: not a URL, or one with a path, a query or a user.
    #[error(
        "invalid origin{}: {reason}; give it as `https://host` or `https://host:port`",
        origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default()
    )]
    InvalidOrigin {
        /// The origin (`scheme://host:port`) read from it, if any: never the text as
        /// given, which may hold a password, a path or a query.
        origin: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A URL given to [`crate::BearerAuthBuilder::exclude`], or a token endpoint, is
    /// not an absolute http or https URL with a host.
    #[error("invalid URL: {reason}; give an absolute http or https URL")]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A request's origin is not on the bearer middleware's allow-list, and the
    /// middleware is strict ([`crate::BearerAuthBuilder::strict_origins`]): it was not
    /// sent.
    #[error(
        "refusing the request to {origin}: it is not an allowed origin, so it would go out without the token; add it with BearerAuthBuilder::allow_origin if it is the API's"
    )]
    OriginNotAllowed {
        /// The request's origin (scheme, host, port).
        origin: String,
    },
    /// The bearer middleware was built without any allowed origin, so it would never
    /// attach the token.
    #[error("no origin was allowed: call `allow_origin` with the origin of the API")]
    NoOrigin,
    /// Plain `http` to a host that is not the loopback interface, without the user's
    /// opt-in: an allowed origin of [`crate::BearerAuthBuilder`], or the token URL of
    /// [`crate::OAuth2RefresherBuilder`]. The token, or the refresh credential and
    /// client secret, would cross the network in clear text.
    #[error(
        "refusing to send a token or credential over plain http to `{origin}`: use https, or call the builder's `allow_insecure_http(true)` if the network is trusted"
    )]
    InsecureHttp {
        /// The origin (`scheme://host:port`).
        origin: String,
    },
    /// The codec ([`oauth2`](crate::oauth2)) refused what it was given, such as a
    /// signing key. Its origin errors become this enum's own variants, and a setting
    /// it refuses becomes [`Error::Token`].
    #[error(transparent)]
    OAuth2(silent_refresh_oauth2::Error),
    /// The bearer middleware ran outside a ureq agent, so it could not turn off
    /// redirects for the authorized request.
    #[error(
        "the bearer middleware must run inside a ureq agent: install it with `Agent::config_builder().middleware(..)`"
    )]
    NotInAgent,
}

silent_refresh_driver::adapter_error_conversions!(Error);
