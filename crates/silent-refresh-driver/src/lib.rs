//! The driver of silent-refresh: everything between the sans-IO core (`silent-refresh`)
//! and a runtime, written once.
//!
//! - [`TokenSource`] and its builder: the handle a program holds, generic over a
//!   [`runtime`] (how things run and how callers wait) and the adapter's error;
//! - [`driver`]: the exchange loop (prepare, exchange, result, save) and the timer, one
//!   future for every runtime;
//! - [`runtime`]: the seam a runtime implements, and its two implementations: threads
//!   (blocking programs) and tokio (feature `tokio`);
//! - [`kernel`]: the machine behind one lock, the waiting callers, the lock-free fast
//!   path, and the store's lock between processes;
//! - [`oauth2_refresher`]: the OAuth 2.0 refresher, over the adapter's HTTP client;
//! - [`signin`]: starting and ending a session (discovery, the device flow, the
//!   browser sign-in with PKCE, a sign-out that revokes), over the same client;
//! - [`store`]: token stores that survive restarts; [`clock`]: the clocks, injectable;
//!   [`observe`]: spans and metrics.
//!
//! The adapters (`silent-refresh-tokio`, `silent-refresh-ureq`) name the source with
//! their runtime, and add their HTTP client and integrations. All of them fail with one
//! [`Error`].
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
// On wasm32 without the `wasm` runtime no runtime runs the refresher: its parts are unused.
#![cfg_attr(all(target_arch = "wasm32", not(feature = "wasm")), allow(dead_code))]

pub mod clock;
#[cfg(feature = "dpop")]
pub mod dpop;
pub mod driver;
mod error;
pub mod exports;
mod http_client;
pub mod kernel;
pub mod oauth2_refresher;
pub mod observe;
pub mod runtime;
pub mod signin;
pub mod source;
pub mod store;
pub mod wake;

pub use error::Error;
pub use source::{TokenSource, TokenSourceBuilder};
