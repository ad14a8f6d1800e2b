//! What performs a refresh: the [`Refresher`] trait.

use silent_refresh::{RefreshFailure, Secret, Token};

/// Performs one refresh against the authorization server, blocking the calling
/// thread until it has an answer.
///
/// The [`crate::TokenSource`] calls it on a thread of its own, at most one call at a
/// time (single flight on the wire: the next exchange starts only once this call has
/// returned), and never while holding its lock. A blocking call cannot be cancelled,
/// so bound it yourself, no longer than
/// [`silent_refresh::Config::refresh_timeout`] (the shipped
/// [`crate::OAuth2Refresher`] does): a call that never returns keeps every later
/// refresh from starting.
///
/// Classify failures: [`RefreshFailure::terminal`] for dead credentials
/// (`invalid_grant`, revoked), [`RefreshFailure::misconfigured`] for a client set up
/// wrong (`invalid_client`, a wrong token URL, a redirect), and
/// [`RefreshFailure::transient`] for anything worth retrying;
/// [`oauth2::classify`](crate::oauth2::classify) classifies HTTP answers. A panic counts as a
/// transient failure. Failure messages end up in errors and logs: never put a secret
/// in them.
///
/// Implemented for closures:
///
/// ```
/// use std::time::Duration;
/// use silent_refresh_ureq::{Expiry, RefreshFailure, Refresher, Secret, Token};
///
/// let refresher = |refresh_token: Option<Secret>| -> Result<Token, RefreshFailure> {
///     match refresh_token {
///         Some(_) => Ok(Token::bearer("access", Expiry::In(Duration::from_secs(3600)))),
///         None => Err(RefreshFailure::terminal("no refresh credential")),
///     }
/// };
/// assert!(refresher.refresh(Some(Secret::new("rt"))).is_ok());
/// ```
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges the newest refresh credential (`None` for grants that need none,
    /// such as client credentials) for a new token.
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure>;

    /// The URL of the token endpoint, if known. The bearer middleware never attaches
    /// the access token to a request for this URL.
    fn token_endpoint(&self) -> Option<&str> {
        None
    }
}

impl<F> Refresher for F
where
    F: Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync + 'static,
{
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self(refresh_token)
    }
}
