//! What the token-change callback is told.

use silent_refresh::{Generation, Token};

/// A change to store, passed to the callback given to
/// [`crate::TokenSourceBuilder::on_token_change`].
///
/// The callback runs synchronously, in order, while the source is locked, before any
/// caller is handed the new token: once it returns, the rotated refresh credential is
/// the one to keep. Keep it short (write a file, a keychain entry). From inside it,
/// the source's `sign_in`, `sign_out` and `report_rejected` take effect as soon as it
/// returns; `token` returns [`crate::Error::Reentrant`]; the getters (`status`,
/// `generation`, `waiting`) panic rather than deadlock.
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
