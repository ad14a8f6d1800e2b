//! What runs a refresh: the one thing the program brings besides its credentials.

use std::future::Future;

use silent_refresh::{RefreshFailure, Secret, Token};

/// Runs one refresh: exchanges the newest refresh credential (if any) for a new token.
///
/// The token source runs at most one exchange at a time, on the wire (single flight:
/// the next one starts only once this future has completed or been dropped), from its
/// own background task, never from a caller's. Past the configuration's
/// `refresh_timeout` the future is dropped (cancelled). Classify failures with
/// [`RefreshFailure::transient`] (network, timeout, 5xx, 429, a 4xx without an OAuth
/// error: retried with backoff), [`RefreshFailure::misconfigured`] (`invalid_client`,
/// a wrong URL, a redirect: fails fast, keeps the credential) or
/// [`RefreshFailure::terminal`] (`invalid_grant`, revoked: sign-in required), and keep
/// secrets out of their messages. [`oauth2::classify`](crate::oauth2::classify)
/// classifies HTTP answers.
///
/// Implemented for closures `Fn(Option<Secret>) -> impl Future<Output = Result<Token,
/// RefreshFailure>>`, and, with the `reqwest` feature, by
/// [`OAuth2Refresher`](crate::OAuth2Refresher).
///
/// ```
/// use std::time::Duration;
/// use silent_refresh_tokio::{Expiry, RefreshFailure, Refresher, Secret, Token};
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
    /// sent. Never follow a redirect with the credential. The source cancels the
    /// exchange at the configuration's `refresh_timeout`; an own timeout should not be
    /// shorter.
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
