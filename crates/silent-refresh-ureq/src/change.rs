//! What the token-change callback is told.

use silent_refresh::{Generation, Token};

/// A change to store, passed to the callback given to
/// [`crate::TokenSourceBuilder::on_token_change`].
///
/// The callback runs while the source is locked, before any caller is handed the new
/// token: keep it short (write a file, a keychain entry), and do not call back into
/// the [`crate::TokenSource`] from it (that panics instead of deadlocking).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenChange {
    /// A new token was adopted: store it. It holds the rotated refresh credential
    /// and a wall-clock expiry ([`silent_refresh::Expiry::At`]), so it can be given
    /// back at the next start with [`silent_refresh::Credentials::Token`].
    Persist {
        /// The generation the source gave the token.
        generation: Generation,
        /// The token to store. Its `Debug` hides the secrets; read them with
        /// [`silent_refresh::Secret::expose`] only to write them to the store.
        token: Token,
    },
    /// Signed out: delete the stored token.
    Forget,
}
