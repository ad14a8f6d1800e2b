//! Where `--token-file` or `--redis-url` keeps the session: one store type for both,
//! for the load run and for `login`/`logout`.

use std::time::Duration;

use silent_refresh::{Secret, Token};

/// Where `--token-file` or `--redis-url` keeps the session.
pub enum SessionStore {
    /// `--token-file PATH`: a file.
    File(silent_refresh_tokio::FileStore),
    /// `--redis-url URL`: a Redis key.
    Redis(silent_refresh_redis::RedisStore),
}

impl SessionStore {
    fn inner(&self) -> &dyn silent_refresh_tokio::TokenStore {
        match self {
            SessionStore::File(store) => store,
            SessionStore::Redis(store) => store,
        }
    }
}

impl silent_refresh_tokio::TokenStore for SessionStore {
    fn load(&self) -> Result<Option<Token>, silent_refresh_driver::Error> {
        self.inner().load()
    }

    fn save(
        &self,
        token: &Token,
        from: Option<&Secret>,
    ) -> Result<silent_refresh_tokio::Saved, silent_refresh_driver::Error> {
        self.inner().save(token, from)
    }

    fn save_if_empty(
        &self,
        token: &Token,
    ) -> Result<silent_refresh_tokio::Saved, silent_refresh_driver::Error> {
        self.inner().save_if_empty(token)
    }

    fn forget(&self) -> Result<(), silent_refresh_driver::Error> {
        self.inner().forget()
    }

    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<
        Option<Box<dyn silent_refresh_driver::store::StoreLock>>,
        silent_refresh_driver::Error,
    > {
        self.inner().lock_for_refresh(timeout)
    }
}
