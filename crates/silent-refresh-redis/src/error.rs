//! The one error type of the Redis store's construction. The store's own operations
//! answer with the driver's [`silent_refresh_driver::Error`], as every token store does.

/// Why a [`RedisStore`](crate::RedisStore) could not be built. Never contains a
/// password or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The Redis URL does not parse (or asks for a transport this build lacks).
    #[error(
        "the Redis URL is not valid ({reason}); write it as redis://[:password@]host[:port][/db] (or unix:///path/to/socket)"
    )]
    InvalidUrl {
        /// What is wrong with it (never the URL itself: it may carry a password).
        reason: String,
    },
    /// The session key is empty or longer than this store accepts.
    #[error(
        "the Redis key for the session must be 1 to {max} bytes long (it was {len}); give it a name such as `myapp:oauth:session`"
    )]
    InvalidKey {
        /// The length given.
        len: usize,
        /// The longest key accepted.
        max: usize,
    },
    /// The encryption key is not 32 bytes long.
    #[error(
        "the encryption key must be exactly 32 bytes (it was {len}); generate one with `head -c 32 /dev/urandom` and keep it out of Redis"
    )]
    InvalidEncryptionKey {
        /// The length given.
        len: usize,
    },
}
