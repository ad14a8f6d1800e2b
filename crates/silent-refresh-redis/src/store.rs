//! The Redis store: one session under one key, changed only by compare-and-swap.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::Client;
use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::{Saved, StoreLock, TokenStore};

use crate::error::Error;
use crate::lease::RedisLease;
use crate::seal::EncryptionKey;
use crate::shared::Shared;

/// The longest session key accepted.
const MAX_KEY_LEN: usize = 512;

/// Keeps the session in Redis, for every process and host that shares it, and holds a
/// lease in Redis across each refresh so that they refresh one at a time.
///
/// - **One key, compare-and-swap.** The session (token, wall-clock expiry, issue time,
///   refresh credential) lives in a hash under the key, with a version that only grows.
///   Every save compares the version it read, in a Lua script: a process that read an
///   older session never overwrites a newer one, and a save refreshed from a credential
///   the store no longer holds answers [`Saved::Conflict`] with the newer session.
/// - **A refresh lease.** Before a refresh, a source takes the lease `<key>:lease`
///   (`SET NX PX` with a random owner), re-reads the session (a sibling may have
///   refreshed already: then its session is adopted and nothing is sent), refreshes,
///   saves and releases the lease (a compare-and-delete script). The lease lives for
///   the exchange's own timeout plus [`lease_margin`](RedisStoreBuilder::lease_margin),
///   so a holder that dies only delays the others. Waiting sources listen on the channel
///   `<key>:events` and try again as soon as the lease is released or a session saved.
/// - **Redis unreachable.** Loads and saves fail with
///   [`StoreUnavailable`](silent_refresh_driver::Error::StoreUnavailable); the driver
///   keeps granting a usable token, retries failed saves, and, by default, does not
///   refresh until Redis answers (a refresh without the lease could race the fleet
///   and spend the same refresh credential twice).
///   [`refresh_alone_when_unreachable`](RedisStoreBuilder::refresh_alone_when_unreachable)
///   opts into refreshing without it.
/// - **Secrets.** Whoever can read the key (or Redis's persistence files, or `MONITOR`
///   its traffic) can read the session, unless an [`EncryptionKey`] is given: then the
///   session is sealed with XChaCha20-Poly1305 before it leaves the process. Restrict
///   the key pattern with Redis ACLs either way.
///
/// Operations block (up to [`io_timeout`](RedisStoreBuilder::io_timeout) per command):
/// the adapters call stores off their runtimes' workers. Clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`].
#[derive(Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    key: String,
    encryption: Option<EncryptionKey>,
    io_timeout: Duration,
    lease_margin: Duration,
    refresh_alone: bool,
}

impl RedisStore {
    /// How long one Redis command (or a connection) may take by default.
    pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(2);
    /// How much longer than the refresh exchange's timeout the lease lives by default.
    pub const DEFAULT_LEASE_MARGIN: Duration = Duration::from_secs(10);

    /// A store at `url` (`redis://[:password@]host[:port][/db]` or
    /// `unix:///path`) keeping the session under `key`. Nothing connects until the
    /// first use.
    pub fn builder(url: &str, key: &str) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.to_owned(),
            key: key.to_owned(),
            encryption: None,
            io_timeout: Self::DEFAULT_IO_TIMEOUT,
            lease_margin: Self::DEFAULT_LEASE_MARGIN,
            refresh_alone: false,
        }
    }

    /// Takes the refresh lease, waiting at most `timeout` while another process holds
    /// it; the lease lives `timeout` plus the lease margin unless released first (on
    /// drop).
    ///
    /// # Errors
    ///
    /// [`StoreLocked`](silent_refresh_driver::Error::StoreLocked) when another holder
    /// kept it past `timeout`; [`StoreUnavailable`](silent_refresh_driver::Error::StoreUnavailable)
    /// when Redis cannot be reached.
    pub fn lease(&self, timeout: Duration) -> Result<RedisLease, StoreError> {
        RedisLease::acquire(self.shared.clone(), timeout)
    }

    /// The store as it may be printed: Redis's address and the key (never a password).
    #[must_use]
    pub fn describe(&self) -> &str {
        &self.shared.described
    }
}

impl RedisStoreBuilder {
    /// Seals the session with `key` before it is written to Redis (and refuses to
    /// read a session that is not sealed with it).
    pub fn encryption_key(mut self, key: EncryptionKey) -> Self {
        self.encryption = Some(key);
        self
    }

    /// How long one Redis command, or a connection, may take (default
    /// [`RedisStore::DEFAULT_IO_TIMEOUT`]); past it, the operation fails as unreachable.
    pub fn io_timeout(mut self, timeout: Duration) -> Self {
        self.io_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How much longer than the refresh exchange's timeout the refresh lease lives
    /// (default [`RedisStore::DEFAULT_LEASE_MARGIN`]): time for the save after the
    /// exchange. A holder that dies holds the others up this long past its timeout.
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.lease_margin = margin;
        self
    }

    /// When Redis cannot be reached, refresh without the lease instead of waiting for
    /// Redis (default `false`). A source that refreshes alone may spend the refresh
    /// credential another process is spending too: with a server that revokes a grant
    /// on reuse, the whole fleet then has to sign in again. Choose it when staying up
    /// through a Redis outage matters more than that.
    pub fn refresh_alone_when_unreachable(mut self, alone: bool) -> Self {
        self.refresh_alone = alone;
        self
    }

    /// The store.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] or [`Error::InvalidKey`].
    pub fn build(self) -> Result<RedisStore, Error> {
        if self.key.is_empty() || self.key.len() > MAX_KEY_LEN {
            return Err(Error::InvalidKey {
                len: self.key.len(),
                max: MAX_KEY_LEN,
            });
        }
        let client = Client::open(self.url.as_str()).map_err(|error| Error::InvalidUrl {
            reason: error.to_string(),
        })?;
        Ok(RedisStore {
            shared: Arc::new(Shared::new(
                client,
                self.key,
                self.encryption,
                self.io_timeout,
                self.lease_margin,
                self.refresh_alone,
            )),
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("store", &self.shared.described)
            .field("encrypted", &self.shared.encrypted())
            .finish_non_exhaustive()
    }
}

impl TokenStore for RedisStore {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        self.shared.read().map(|(_, token)| token)
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.shared.save(token, from, None)
    }

    fn save_if_empty(&self, token: &Token) -> Result<Saved, StoreError> {
        self.shared.save_if_empty(token)
    }

    fn forget(&self) -> Result<(), StoreError> {
        self.shared.forget()
    }

    /// Takes the refresh lease (see [`RedisStore::lease`]); when Redis cannot be
    /// reached and [`refresh_alone_when_unreachable`](RedisStoreBuilder::refresh_alone_when_unreachable)
    /// is on, answers `None` (refresh without it) instead of failing.
    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>, StoreError> {
        match self.lease(timeout) {
            Ok(lease) => Ok(Some(Box::new(lease))),
            Err(error @ StoreError::StoreUnavailable { .. }) if self.shared.refresh_alone() => {
                tracing::warn!(
                    %error,
                    "Redis is unreachable: refreshing without the lease, as configured; \
                     another process may refresh the same session meanwhile"
                );
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}
