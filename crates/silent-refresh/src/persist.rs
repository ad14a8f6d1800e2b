//! What became of a token the machine asked to persist.

use crate::token::Token;

/// The outcome of a [`crate::Action::Persist`], reported with
/// [`crate::TokenMachine::handle_persisted`].
#[derive(Clone, Debug, PartialEq)]
pub enum Persisted {
    /// The store holds the token now.
    Stored,
    /// The store held a newer session than the one the token was refreshed from
    /// (another process refreshed first) and kept it: this is what it holds. The machine
    /// adopts it instead of its own token.
    Conflict(Box<Token>),
    /// The save failed (no secret in the message): the token is still used unless the
    /// configuration asks for strict persistence, and the save is asked again after a
    /// backoff.
    Failed(String),
}
