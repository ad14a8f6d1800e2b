//! Token changes the program must store: the rotated refresh credential, or none.

use silent_refresh::{Generation, Token};

/// A change to the stored token, handed to the callback given to
/// [`TokenSourceBuilder::on_token_change`](crate::TokenSourceBuilder::on_token_change).
///
/// The callback runs synchronously, in order, before any request is granted the new
/// token: once it returns, the rotated refresh credential is the one to keep. It runs
/// while the source is locked, so keep it short (hand slow storage to a channel). The
/// handle's `sign_in`, `sign_out` and `report_rejected` may be called from it: they take
/// effect once the outcomes already decided with this change are delivered. Its getters
/// (`status`, `generation`, `waiting`) panic there, and `token` fails with
/// [`Error::Reentrant`](crate::Error::Reentrant).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenChange {
    /// A new token was adopted: store it. Its expiry is wall-clock time
    /// ([`Expiry::At`](silent_refresh::Expiry::At)) and it holds the newest refresh
    /// credential, so it can be given back as
    /// [`Credentials::Token`](silent_refresh::Credentials::Token) after a restart.
    Persist {
        /// The generation the source gave the token.
        generation: Generation,
        /// The token to store.
        token: Token,
    },
    /// Signed out: delete the stored token.
    Forget,
}
