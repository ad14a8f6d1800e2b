//! Token stores: where the newest token (and the refresh credential it carries) is
//! kept, so that a restart, or another process, continues the same session.
//!
//! A store is fallible and compare-and-swap: [`TokenStore::save`] replaces the stored
//! token only if the store still holds the refresh credential the new token was
//! refreshed from; otherwise it answers with what it holds ([`Saved::Conflict`]),
//! because another process refreshed first and its token is the newer one. The order at
//! start is: the store, then the credentials given in code.
//!
//! [`FileStore`] keeps the token in one JSON file on this host, written atomically and
//! locked between processes; [`FileLock`] holds that lock across a refresh, so that
//! processes sharing the file refresh one at a time.

// A file and a thread that waits for its lock: not on wasm32 (the browser has neither).
#[cfg(not(target_arch = "wasm32"))]
mod file;
pub mod record;

#[cfg(not(target_arch = "wasm32"))]
pub use file::{FileLock, FileStore};

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use silent_refresh::{Secret, Token};

use crate::error::Error;

/// What a store whose I/O is asynchronous must do before one of its calls can answer at
/// once ([`TokenStore::ready`]): a future that resolves to a guard, dropped once that
/// call has returned. Not `Send`: it runs where its store's I/O lives (the browser's
/// event loop).
pub type StoreReady = Pin<Box<dyn Future<Output = Box<dyn Any>>>>;

/// The outcome of a [`TokenStore::save`].
#[derive(Debug)]
#[must_use]
pub enum Saved {
    /// The token is stored.
    Stored,
    /// The store holds a different session than the one this token was refreshed from
    /// (another process refreshed first): this is what it holds, and it was not
    /// overwritten. Adopt it instead.
    Conflict(Box<Token>),
}

/// Where tokens are kept between runs. Calls may block (file or network I/O); the
/// adapters never call a store while holding their lock, and the tokio adapter calls it
/// outside the runtime's workers.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored token, if any.
    ///
    /// # Errors
    ///
    /// The store could not be read, or holds something that is not a stored token.
    fn load(&self) -> Result<Option<Token>, Error>;

    /// Stores `token`, which was refreshed from the refresh credential `from`
    /// (`None`: a sign-in, stored whatever the store holds).
    ///
    /// With `from` given, the token replaces the stored one only if the store is empty
    /// or still holds `from` (or already holds this very token); otherwise nothing is
    /// written and [`Saved::Conflict`] carries what the store holds.
    ///
    /// # Errors
    ///
    /// The store could not be read or written; nothing is known to be stored.
    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error>;

    /// Stores `token` only if the store holds no session; otherwise nothing is written
    /// and [`Saved::Conflict`] carries what it holds. The driver saves this way the
    /// session it signed in with from the credentials given in code, after finding the
    /// store empty at start: processes started together from the same credentials must
    /// not overwrite the session one of them has refreshed already.
    ///
    /// The default reads, then saves: enough for a store no other process writes.
    /// Stores shared between processes make it atomic.
    ///
    /// # Errors
    ///
    /// As [`save`](Self::save).
    fn save_if_empty(&self, token: &Token) -> Result<Saved, Error> {
        match self.load()? {
            Some(stored) => Ok(Saved::Conflict(Box::new(stored))),
            None => self.save(token, None),
        }
    }

    /// Deletes the stored token (sign-out).
    ///
    /// # Errors
    ///
    /// The store could not be written.
    fn forget(&self) -> Result<(), Error>;

    /// Takes the store's lock between processes for one refresh, waiting at most
    /// `timeout`: the source re-reads the store under it (a sibling may have refreshed
    /// already), runs the exchange, saves, and releases it. `None`: this store does not
    /// coordinate processes (the default).
    ///
    /// # Errors
    ///
    /// The lock could not be taken in time, or the store could not be opened.
    fn lock_for_refresh(&self, timeout: Duration) -> Result<Option<Box<dyn StoreLock>>, Error> {
        let _ = timeout;
        Ok(None)
    }

    /// For a store whose I/O cannot block (the browser's: IndexedDB, Web Locks): what
    /// must happen before its next call of `work` can answer at once, such as taking
    /// the lock between tabs and reading the shared session into memory. A runtime
    /// without threads (`runtime::wasm`) awaits it, then makes the call inline, then
    /// drops the guard it resolved to; the runtimes with threads never ask. `None`
    /// (the default): nothing to do first.
    fn ready(&self, work: BlockingWork) -> Option<StoreReady> {
        let _ = work;
        None
    }
}

/// The store, held locked between processes (the lock is released on drop, and by the
/// operating system if the process dies).
pub trait StoreLock: Send + 'static {
    /// The stored token, if any.
    ///
    /// # Errors
    ///
    /// As [`TokenStore::load`].
    fn load(&self) -> Result<Option<Token>, Error>;

    /// Stores `token` under the lock (see [`TokenStore::save`]).
    ///
    /// # Errors
    ///
    /// As [`TokenStore::save`].
    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error>;

    /// Whether the lock is still this holder's. A lease that expires (Redis) says no
    /// once its time is up; the driver then takes a new one rather than go on under it.
    /// Operating-system locks are held until dropped (the default).
    fn still_held(&self) -> bool {
        true
    }
}

/// What a blocking job does: the store work a runtime runs off the callers
/// ([`Runtime::run_blocking`](crate::runtime::Runtime::run_blocking)), and what a store
/// that must first get ready is asked for ([`TokenStore::ready`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingWork {
    /// A store call: load, save, forget, or the release of the store's lock.
    StoreIo,
    /// Takes the store's lock between processes before an exchange, and re-reads the
    /// store under it: it may wait, up to `refresh_timeout`, for another process.
    StoreLock,
}
