//! The one error type of the driver kernel.

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor the text of a stored file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the token store failed.
    #[error("the token store at {path} could not be {action}: {source}; check that the folder exists and is writable by this user")]
    StoreIo {
        /// What was being done (`read`, `written`, `locked`, …).
        action: &'static str,
        /// The file or folder.
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The stored file is not a token this library wrote (or it is damaged). It is left
    /// as it is: nothing overwrites it silently.
    #[error("the token store at {path} holds no session this program can read ({reason}); move it away or delete it, then sign in again")]
    StoreUnreadable {
        /// The file.
        path: String,
        /// What is wrong with it (never its content).
        reason: String,
    },
}
