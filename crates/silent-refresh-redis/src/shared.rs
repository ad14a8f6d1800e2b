//! What a Redis store's clones and its leases share: the connection, the session's
//! commands (read, compare-and-swap, forget) and the lease's release.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use redis::{Client, Connection, RedisError, RedisResult};
use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::Saved;
use silent_refresh_driver::store::record::{self, EncodeError};
use zeroize::Zeroizing;

use crate::scripts;
use crate::seal::{self, EncryptionKey};

/// How often a write retries when the version moved under it (another process wrote
/// between the read and the compare-and-swap) before giving up.
const CAS_ATTEMPTS: usize = 16;

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

impl Shared {
    /// The state of a store on `client`, keeping its session under `key`.
    pub(crate) fn new(
        client: Client,
        key: String,
        encryption: Option<EncryptionKey>,
        io_timeout: Duration,
        lease_margin: Duration,
        refresh_alone: bool,
    ) -> Self {
        let described = format!("redis {} key `{key}`", client.get_connection_info().addr());
        Self {
            client,
            lease_key: format!("{key}:lease"),
            channel: format!("{key}:events"),
            key,
            described,
            encryption,
            connection: Mutex::new(None),
            unreleased: Mutex::new(Vec::new()),
            io_timeout,
            lease_margin,
            refresh_alone,
            highest_version: AtomicU64::new(0),
        }
    }

    /// Whether the source may refresh without the lease when Redis cannot be reached.
    pub(crate) fn refresh_alone(&self) -> bool {
        self.refresh_alone
    }

    /// Whether the session is sealed before it leaves the process.
    pub(crate) fn encrypted(&self) -> bool {
        self.encryption.is_some()
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
    pub(crate) fn save_if_empty(&self, token: &Token) -> Result<Saved, StoreError> {
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
    pub(crate) fn forget(&self) -> Result<(), StoreError> {
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
