//! A Redis token store for silent-refresh: every process and host that shares one
//! session refreshes it once, one at a time, and never spends a refresh credential
//! twice.
//!
//! ```
//! use silent_refresh_redis::RedisStore;
//! use silent_refresh_ureq::{Config, Credentials, OAuth2Refresher, RefreshGrant, Secret, TokenSource};
//!
//! fn source() -> Result<TokenSource, Box<dyn std::error::Error>> {
//!     // Nothing connects yet: the source loads the session from Redis as it starts.
//!     let store = RedisStore::builder("redis://127.0.0.1:6379/", "my-app:oauth:session").build()?;
//!     let grant = RefreshGrant::new("https://auth.example.com/oauth/token", "my-client");
//!     Ok(TokenSource::builder(Config::default())
//!         .store(store)
//!         // Used only while Redis holds no session yet.
//!         .credentials(Credentials::RefreshToken(Secret::new(std::env::var("REFRESH_TOKEN")?)))
//!         .refresher(OAuth2Refresher::builder(grant).build()?)
//!         .build()?)
//! }
//! # let _ = source;
//! ```
//!
//! [`RedisStore`] implements the driver's
//! [`TokenStore`](silent_refresh_driver::store::TokenStore), so both adapters take it:
//! `silent-refresh-tokio` (the store runs on the blocking pool) and
//! `silent-refresh-ureq`. What it guarantees, and what it cannot, is on [`RedisStore`]
//! and in the README's "Many processes".

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod lease;
mod scripts;
mod seal;
mod shared;
mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::Error;
pub use lease::RedisLease;
pub use seal::EncryptionKey;
pub use store::{RedisStore, RedisStoreBuilder};
