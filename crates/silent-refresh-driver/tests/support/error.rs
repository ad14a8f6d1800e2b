//! The error of the tests' sources: what a caller got instead of a token.

use silent_refresh::Error as CoreError;
use silent_refresh_driver::SourceError;

/// Why a test's call got no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum TestError {
    /// The core's reason.
    Token(CoreError),
    /// Asked from inside the token-change callback.
    Reentrant,
    /// The driver is gone.
    Stopped,
    /// The driver could not start.
    NotStarted(String),
}

impl SourceError for TestError {
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
        Self::Stopped
    }

    fn not_started(reason: String) -> Self {
        Self::NotStarted(reason)
    }
}
