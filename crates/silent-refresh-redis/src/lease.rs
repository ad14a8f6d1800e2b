//! The refresh lease: one holder at a time across every process that shares the
//! session, taken with `SET NX PX`, released by compare-and-delete, waited for on the
//! session's channel.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use silent_refresh::{Secret, Token};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::store::{Saved, StoreLock};

use crate::shared::Shared;

/// The longest a waiting source goes without trying the lease again, should it miss
/// a release (an expired lease announces nothing).
const RECHECK: Duration = Duration::from_millis(250);

/// The refresh lease on a [`RedisStore`](crate::RedisStore), from
/// [`RedisStore::lease`](crate::RedisStore::lease): released when dropped, or by
/// Redis when it expires.
///
/// Its [`load`](Self::load) and [`save`](Self::save) are the store's; the save is
/// compare-and-swap on the session's version like every save, so a holder whose lease
/// expired (and whose session another holder replaced since) cannot overwrite the
/// newer session: it gets [`Saved::Conflict`] with it.
pub struct RedisLease {
    shared: Arc<Shared>,
    owner: String,
    /// When Redis lets it go, by this process's clock (a little before Redis's own
    /// deadline, since it counts from before the `SET` was sent).
    expires: Instant,
}

impl RedisLease {
    /// Takes the lease, waiting at most `timeout`; it lives `timeout` plus the store's
    /// lease margin.
    pub(crate) fn acquire(shared: Arc<Shared>, timeout: Duration) -> Result<Self, StoreError> {
        let ttl = timeout.saturating_add(shared.lease_margin);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let owner = new_owner().map_err(|reason| StoreError::StoreUnavailable {
            store: shared.described.clone(),
            action: "locked",
            source: reason.into(),
        })?;
        let start = Instant::now();
        let expires = start + ttl;
        let try_take = || -> Result<bool, StoreError> {
            let taken = shared.run("locked", |c| {
                redis::cmd("SET")
                    .arg(&shared.lease_key)
                    .arg(&owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query::<Option<String>>(c)
            });
            match taken {
                Ok(taken) => Ok(taken.is_some()),
                Err(error) => {
                    // The SET may have been applied with its answer lost (Redis
                    // crashed after writing it to its append-only file): a lease
                    // nobody knows it holds would keep every process waiting until it
                    // expires. Released on the next connection, if it is there.
                    shared.forget_lease_later(&owner);
                    Err(error)
                }
            }
        };
        // Uncontended: one command.
        if try_take()? {
            return Ok(Self {
                shared,
                owner,
                expires,
            });
        }
        // Contended: listen for releases and saves, and try again after each (and at
        // least every RECHECK, for a lease that expired without a word).
        loop {
            let mut connection = shared
                .connect()
                .map_err(|error| shared.unavailable("locked", error))?;
            let mut pubsub = connection.as_pubsub();
            pubsub
                .subscribe(&shared.channel)
                .map_err(|error| shared.unavailable("locked", error))?;
            // Subscribed before each try: a release after it is not missed.
            loop {
                if try_take()? {
                    tracing::debug!(
                        store = %shared.described,
                        waited_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
                        "refresh lease taken after waiting for another process"
                    );
                    return Ok(Self {
                        shared,
                        owner,
                        expires,
                    });
                }
                let waited = start.elapsed();
                if waited >= timeout {
                    return Err(StoreError::StoreLocked {
                        path: shared.described.clone(),
                        waited,
                    });
                }
                let pause = (timeout - waited)
                    .min(RECHECK)
                    .max(Duration::from_millis(1));
                if pubsub.set_read_timeout(Some(pause)).is_err() {
                    break;
                }
                match pubsub.get_message() {
                    Ok(_) => {}
                    Err(error) if error.is_timeout() => {}
                    // The listening connection failed: listen on a new one.
                    Err(_) => break,
                }
            }
        }
    }

    /// The stored session, if any (see
    /// [`TokenStore::load`](silent_refresh_driver::store::TokenStore::load)).
    ///
    /// # Errors
    ///
    /// As the store's.
    pub fn load(&self) -> Result<Option<Token>, StoreError> {
        self.shared.read().map(|(_, token)| token)
    }

    /// Stores `token`, refreshed from `from`, with compare-and-swap (see
    /// [`TokenStore::save`](silent_refresh_driver::store::TokenStore::save)); logs a
    /// warning when the lease had expired meanwhile.
    ///
    /// # Errors
    ///
    /// As the store's.
    pub fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        self.shared.save(token, from, Some(&self.owner))
    }
}

impl StoreLock for RedisLease {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        RedisLease::load(self)
    }

    fn still_held(&self) -> bool {
        Instant::now() < self.expires
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        RedisLease::save(self, token, from)
    }
}

impl Drop for RedisLease {
    fn drop(&mut self) {
        // One short command (bounded by the I/O timeout). If Redis cannot be reached,
        // the store releases it on its next connection (or it expires on its own).
        match self.shared.release(&self.owner) {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                store = %self.shared.described,
                "the refresh lease had expired before its release: the refresh took \
                 longer than the lease; give the store a longer lease margin"
            ),
            Err(error) => tracing::warn!(
                %error,
                "the refresh lease could not be released now; it is released on the next \
                 connection to Redis, or expires on its own"
            ),
        }
    }
}

impl fmt::Debug for RedisLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisLease")
            .field("store", &self.shared.described)
            .finish_non_exhaustive()
    }
}

/// A random owner value: 128 bits, so no two holders ever share one.
fn new_owner() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| format!("no randomness for the lease: {error}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
