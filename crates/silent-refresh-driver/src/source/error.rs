//! The error a source's calls return: the adapter's own, built from what the driver
//! reports.

use silent_refresh::Error as CoreError;

use crate::kernel::NoToken;

/// What an adapter's error must be for its [`TokenSource`](super::TokenSource): built
/// from the core's reasons and the driver's, and read back by the questions every
/// adapter's error answers ([`needs_sign_in`](Self::needs_sign_in),
/// [`is_unreachable`](Self::is_unreachable)).
pub trait SourceError: Sized + 'static {
    /// The core's reason a caller got no token (the adapters' `Error::Token`).
    fn token(error: CoreError) -> Self;

    /// The core's reason this error carries, if any.
    fn as_token(&self) -> Option<&CoreError>;

    /// A token was asked for from inside the token-change callback
    /// (`Error::Reentrant`).
    fn reentrant() -> Self;

    /// The driver is gone: its runtime shut down (`Error::DriverStopped`).
    fn stopped() -> Self;

    /// The runtime could not start the driver, for `reason` (no tokio runtime on this
    /// thread, no thread to be had).
    fn not_started(reason: String) -> Self;

    /// Why a caller got no token, as this error.
    fn from_no_token(no_token: NoToken) -> Self {
        match no_token {
            NoToken::Token(error) => Self::token(error),
            NoToken::Reentrant => Self::reentrant(),
            NoToken::Stopped => Self::stopped(),
        }
    }

    /// Whether the credentials are dead or gone: the program must sign in again
    /// (terminal refresh failure, or signed out).
    fn needs_sign_in(&self) -> bool {
        matches!(
            self.as_token(),
            Some(CoreError::SignInRequired { .. } | CoreError::SignedOut)
        )
    }

    /// Whether the token endpoint could not be reached and no usable token is left:
    /// retry later (the status says when the next refresh is tried).
    fn is_unreachable(&self) -> bool {
        matches!(self.as_token(), Some(CoreError::Unreachable { .. }))
    }
}
