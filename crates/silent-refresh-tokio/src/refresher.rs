//! What runs a refresh: the one thing the program brings besides its credentials.

use std::future::Future;

use silent_refresh::{RefreshFailure, Secret, Token};

/// Runs one refresh: exchanges the newest refresh credential (if any) for a new token.
///
/// The token source calls it at most once at a time (single flight), from its own
/// background task, never from a caller's. Classify failures with
/// [`RefreshFailure::transient`] (network, timeout, 5xx, 429: retried with backoff) or
/// [`RefreshFailure::terminal`] (`invalid_grant`, revoked: sign-in required), and keep
/// secrets out of their messages.
///
/// Implemented for closures `Fn(Option<Secret>) -> impl Future<Output = Result<Token,
/// RefreshFailure>>`, and, with the `reqwest` feature, by
/// [`OAuth2Refresher`](crate::OAuth2Refresher).
///
/// ```
/// use std::time::Duration;
/// use silent_refresh_tokio::Refresher;
/// use silent_refresh_tokio::silent_refresh::{Expiry, RefreshFailure, Secret, Token};
///
/// fn check(_: &impl Refresher) {}
/// check(&|refresh_token: Option<Secret>| async move {
///     match refresh_token {
///         Some(_) => Ok(Token::bearer("at", Expiry::In(Duration::from_secs(60)))),
///         None => Err(RefreshFailure::terminal("no refresh credential")),
///     }
/// });
/// ```
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges `refresh_token` (the newest one; `None` for grants that need none,
    /// such as client credentials) for a token.
    ///
    /// A token without a new refresh credential keeps the old one. Return
    /// [`Expiry::In`](silent_refresh::Expiry::In) counted from when the request was
    /// sent. Do not time out by yourself more eagerly than the configuration's
    /// `refresh_timeout`: the source gives up on its own, and still adopts a late result.
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send;

    /// The token endpoint's URL, if the refresher knows it: the send helper never
    /// attaches the access token to a request for it.
    fn token_endpoint(&self) -> Option<&str> {
        None
    }
}

impl<F, Fut> Refresher for F
where
    F: Fn(Option<Secret>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Token, RefreshFailure>> + Send,
{
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> + Send {
        self(refresh_token)
    }
}
