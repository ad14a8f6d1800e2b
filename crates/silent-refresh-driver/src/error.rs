//! The one error type of the driver kernel.

/// What went wrong, and what to do about it. Never contains a token or a refresh
/// credential, nor the text of a stored file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing the token store failed.
    #[error(
        "the token store at {path} could not be {action}: {source}; check that the folder exists and is writable by this user"
    )]
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
    #[error(
        "the token store at {path} holds no session this program can read ({reason}); move it away or delete it, then sign in again"
    )]
    StoreUnreadable {
        /// The file.
        path: String,
        /// What is wrong with it (never its content).
        reason: String,
    },
    /// Another process (or another lock of this one) kept the token store locked for
    /// longer than this store waits. Nothing was written.
    #[error(
        "the token store at {path} is locked by another process (waited {waited:?}); it is probably refreshing the same session: retry later, or give the store a longer lock timeout"
    )]
    StoreLocked {
        /// The token file (its lock is the file beside it, ending in `.lock`).
        path: String,
        /// How long this process waited.
        waited: std::time::Duration,
    },
    /// The token store's server could not be reached (or answered with an error).
    /// Nothing is known to be written; the driver tries again.
    #[error(
        "the token store {store} could not be {action}: {source}; check that it is running and reachable"
    )]
    StoreUnavailable {
        /// The store, as it may be printed (never a password).
        store: String,
        /// What was being done (`read`, `written`, `locked`, …).
        action: &'static str,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The token store holds an older session than this process saw there (its version
    /// went back: Redis lost writes to `FLUSHALL`, eviction, a restart without
    /// persistence or a failover to a replica behind). Another process may have spent
    /// the refresh credential this one holds, so it is not presented again.
    #[error(
        "the token store {store} lost sessions this program saw there (version {seen}, now {found}): data was lost, and the refresh token held here may have been spent by another process, so it is not sent; sign in again, and keep the store durable (Redis: appendonly yes, appendfsync always, maxmemory-policy noeviction)"
    )]
    StoreLost {
        /// The store, as it may be printed (never a password).
        store: String,
        /// The newest version this process saw.
        seen: u64,
        /// The version the store holds now (0: none at all).
        found: u64,
    },
    /// The token to store has a relative expiry ([`Expiry::In`](silent_refresh::Expiry::In)),
    /// which means nothing once the process ends. Nothing was written.
    #[error(
        "the token to store at {path} has a relative expiry; a store keeps wall-clock expiries: convert it to `Expiry::At` when the token arrives (this is a bug in the program or the adapter)"
    )]
    StoreRelativeExpiry {
        /// The token file.
        path: String,
    },
}
