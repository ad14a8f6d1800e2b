//! The Redis store: one session under one key, changed only by compare-and-swap.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisError, RedisResult};
use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::record::{self, EncodeError};
use silent_refresh_driver::store::{Saved, StoreLock, TokenStore};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::lease::RedisLease;
use crate::scripts;
use crate::seal::{self, EncryptionKey};

/// The longest session key accepted.
const MAX_KEY_LEN: usize = 512;

/// How often a write retries when the version moved under it (another process wrote
/// between the read and the compare-and-swap) before giving up.
const CAS_ATTEMPTS: usize = 16;

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

/// What the store's clones and leases share.
pub(crate) struct Shared {
    client: Client,
    /// The session hash.
    pub(crate) key: String,
    /// The refresh lease.
    pub(crate) lease_key: String,
    /// Where saves and releases are announced.
    pub(crate) channel: String,
    /// The store as it may be printed: address and key, never a password.
    pub(crate) described: String,
    encryption: Option<EncryptionKey>,
    connection: Mutex<Option<Connection>>,
    /// Leases whose release failed, or whose taking went unanswered (Redis was down):
    /// released on the next connection, rather than left to hold the other processes
    /// up until they expire.
    unreleased: Mutex<Vec<String>>,
    pub(crate) io_timeout: Duration,
    pub(crate) lease_margin: Duration,
    refresh_alone: bool,
    /// The newest version this store read or wrote: the version only grows, so one
    /// lower than this means Redis lost writes.
    highest_version: AtomicU64,
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
        let described = format!(
            "redis {} key `{}`",
            client.get_connection_info().addr(),
            self.key
        );
        Ok(RedisStore {
            shared: Arc::new(Shared {
                client,
                lease_key: format!("{}:lease", self.key),
                channel: format!("{}:events", self.key),
                key: self.key,
                described,
                encryption: self.encryption,
                connection: Mutex::new(None),
                unreleased: Mutex::new(Vec::new()),
                io_timeout: self.io_timeout,
                lease_margin: self.lease_margin,
                refresh_alone: self.refresh_alone,
                highest_version: AtomicU64::new(0),
            }),
        })
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("store", &self.shared.described)
            .field("encrypted", &self.shared.encryption.is_some())
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
            Err(error @ StoreError::StoreUnavailable { .. }) if self.shared.refresh_alone => {
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

/// The session as read: its version (`""` when none was ever written) and the token.
pub(crate) type Read = (String, Option<Token>);

impl Shared {
    /// Runs `command` on the shared connection, connecting first if needed; any error
    /// drops the connection (the next call reconnects).
    pub(crate) fn run<T>(
        &self,
        action: &'static str,
        command: impl FnOnce(&mut Connection) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut slot = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let connection = match slot.as_mut() {
            Some(connection) => connection,
            None => slot.insert(
                self.connect()
                    .map_err(|error| self.unavailable(action, error))?,
            ),
        };
        let result = self
            .release_unreleased(connection)
            .and_then(|()| command(connection));
        result.map_err(|error| {
            *slot = None;
            self.unavailable(action, error)
        })
    }

    /// Releases the lease `owner` holds (if it still does); `Ok(false)` when it had
    /// expired already. Kept for the next connection if Redis cannot be reached.
    pub(crate) fn release(&self, owner: &str) -> Result<bool, StoreError> {
        let released = self.run("released", |c| self.release_on(c, owner));
        if let Err(StoreError::StoreUnavailable { .. }) = &released {
            self.forget_lease_later(owner);
        }
        released
    }

    /// Releases the lease `owner` may hold on the next connection (compare-and-delete:
    /// nothing happens if it holds none).
    pub(crate) fn forget_lease_later(&self, owner: &str) {
        self.unreleased
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(owner.to_owned());
    }

    fn release_on(&self, connection: &mut Connection, owner: &str) -> RedisResult<bool> {
        let released: i64 = scripts::RELEASE
            .key(&self.lease_key)
            .arg(owner)
            .arg(&self.channel)
            .invoke(connection)?;
        Ok(released == 1)
    }

    /// Releases the leases whose release failed earlier.
    fn release_unreleased(&self, connection: &mut Connection) -> RedisResult<()> {
        let mut unreleased = self
            .unreleased
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(owner) = unreleased.last() {
            if self.release_on(connection, owner)? {
                tracing::info!(
                    store = %self.described,
                    "released a refresh lease left behind while Redis was down (its release failed, \
                     or the answer to taking it was lost)"
                );
            }
            unreleased.pop();
        }
        Ok(())
    }

    /// A new connection with this store's timeouts.
    pub(crate) fn connect(&self) -> RedisResult<Connection> {
        let connection = self.client.get_connection_with_timeout(self.io_timeout)?;
        connection.set_read_timeout(Some(self.io_timeout))?;
        connection.set_write_timeout(Some(self.io_timeout))?;
        Ok(connection)
    }

    /// The error for a Redis failure while doing `action`.
    pub(crate) fn unavailable(&self, action: &'static str, error: RedisError) -> StoreError {
        if error.code() == Some("WRONGTYPE") {
            return self.unreadable("the key holds another type than this store's hash");
        }
        StoreError::StoreUnavailable {
            store: self.described.clone(),
            action,
            source: Box::new(error),
        }
    }

    fn unreadable(&self, reason: impl Into<String>) -> StoreError {
        StoreError::StoreUnreadable {
            path: self.described.clone(),
            reason: reason.into(),
        }
    }

    /// The session and its version.
    pub(crate) fn read(&self) -> Result<Read, StoreError> {
        let (version, stored): (Option<String>, Option<Vec<u8>>) = self.run("read", |c| {
            redis::cmd("HMGET")
                .arg(&self.key)
                .arg("version")
                .arg("session")
                .query(c)
        })?;
        let number = match version.as_deref() {
            None => 0,
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| self.unreadable("its version is not a number"))?,
        };
        let seen = self.highest_version.fetch_max(number, Ordering::SeqCst);
        if number < seen {
            tracing::error!(
                store = %self.described,
                seen,
                found = number,
                "Redis lost sessions this process saw (its version went back)"
            );
            return Err(StoreError::StoreLost {
                store: self.described.clone(),
                seen,
                found: number,
            });
        }
        let stored = stored.map(Zeroizing::new);
        let token = match stored {
            None => None,
            Some(bytes) => {
                let plain = seal::open(self.encryption.as_ref(), &self.key, &bytes)
                    .map_err(|error| self.unreadable(error.to_string()))?;
                Some(record::decode(&plain).map_err(|reason| self.unreadable(reason))?)
            }
        };
        Ok((version.unwrap_or_default(), token))
    }

    /// The bytes to store for `token`.
    fn encode(&self, token: &Token) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let plain = record::encode(token).map_err(|error| match error {
            EncodeError::RelativeExpiry => StoreError::StoreRelativeExpiry {
                path: self.described.clone(),
            },
            other => self.unreadable(format!("the token could not be encoded: {other}")),
        })?;
        seal::seal(self.encryption.as_ref(), &self.key, plain)
            .map_err(|reason| self.unreadable(format!("the session could not be sealed: {reason}")))
    }

    /// Writes `bytes` if the version is still `version`; `Some(lease_held)` when
    /// written, `None` when the version moved.
    fn compare_and_swap(
        &self,
        version: &str,
        bytes: &[u8],
        owner: Option<&str>,
    ) -> Result<Option<bool>, StoreError> {
        let (written, held): (i64, i64) = self.run("written", |c| {
            scripts::SAVE
                .key(&self.key)
                .key(&self.lease_key)
                .arg(version)
                .arg(bytes)
                .arg(&self.channel)
                .arg(owner.unwrap_or(""))
                .invoke(c)
        })?;
        if written == 1 {
            let number = version.parse::<u64>().unwrap_or(0);
            self.highest_version
                .fetch_max(number.saturating_add(1), Ordering::SeqCst);
        }
        Ok((written == 1).then_some(held == 1))
    }

    /// Stores `token`, refreshed from `from`, unless the store holds a newer session
    /// (see [`TokenStore::save`]); `owner` is the lease this save happens under.
    pub(crate) fn save(
        &self,
        token: &Token,
        from: Option<&Secret>,
        owner: Option<&str>,
    ) -> Result<Saved, StoreError> {
        let bytes = self.encode(token)?;
        for _ in 0..CAS_ATTEMPTS {
            let (version, stored) = self.read()?;
            if record::conflicts(stored.as_ref(), token, from)
                && let Some(stored) = stored
            {
                tracing::debug!(
                    store = %self.described,
                    "Redis holds a newer session than the one refreshed; not overwritten"
                );
                return Ok(Saved::Conflict(Box::new(stored)));
            }
            match self.compare_and_swap(&version, &bytes, owner)? {
                Some(held) => {
                    if owner.is_some() && !held {
                        tracing::warn!(
                            store = %self.described,
                            "the refresh lease had expired before the save (the exchange \
                             outlived it); the session was still the one refreshed, so it \
                             is saved: give the store a longer lease margin"
                        );
                    }
                    return Ok(Saved::Stored);
                }
                None => continue,
            }
        }
        Err(self.contended())
    }

    /// Stores `token` only while the store holds no session.
    fn save_if_empty(&self, token: &Token) -> Result<Saved, StoreError> {
        let bytes = self.encode(token)?;
        for _ in 0..CAS_ATTEMPTS {
            let (version, stored) = self.read()?;
            if let Some(stored) = stored {
                return Ok(Saved::Conflict(Box::new(stored)));
            }
            if self.compare_and_swap(&version, &bytes, None)?.is_some() {
                return Ok(Saved::Stored);
            }
        }
        Err(self.contended())
    }

    /// Deletes the session (keeping its version counter).
    fn forget(&self) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            // Refuses to delete what this store cannot read.
            let (version, stored) = self.read()?;
            if stored.is_none() {
                return Ok(());
            }
            let matched: i64 = self.run("written", |c| {
                scripts::FORGET
                    .key(&self.key)
                    .arg(&version)
                    .arg(&self.channel)
                    .invoke(c)
            })?;
            if matched == 1 {
                return Ok(());
            }
        }
        Err(self.contended())
    }

    /// Writers kept moving the version between this store's read and its write.
    fn contended(&self) -> StoreError {
        StoreError::StoreLocked {
            path: self.described.clone(),
            waited: Duration::ZERO,
        }
    }
}
