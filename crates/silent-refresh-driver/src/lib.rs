//! The driver kernel of silent-refresh: what both runtime adapters share.
//!
//! The core crate (`silent-refresh`) decides and does nothing; an adapter
//! (`silent-refresh-tokio`, `silent-refresh-ureq`) knows how a caller waits, how to
//! sleep and how to run an HTTP exchange. Everything in between is written once, here:
//! token stores that survive restarts ([`store`]), and for blocking adapters a runtime
//! made of `std` threads and condition variables ([`blocking`]).
//!
//! ```
//! use silent_refresh_driver::store::{FileStore, TokenStore};
//!
//! let dir = tempfile::tempdir()?;
//! let store = FileStore::new(dir.path().join("session.json"));
//! assert!(store.load()?.is_none(), "nothing stored yet");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod blocking;
pub mod clock;
mod error;
pub mod kernel;
pub mod observe;
pub mod source;
pub mod store;

pub use error::Error;
