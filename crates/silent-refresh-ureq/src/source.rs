//! The token source: the driver's, on blocking threads.

use silent_refresh_driver::runtime::NoRefresher;
use silent_refresh_driver::runtime::threads::Threads;

use crate::error::Error;

/// Keeps an access token fresh for many threads at once: the driver's generic source on
/// [`Threads`], failing with this crate's [`Error`]. Its calls block the calling thread
/// (`token()` at once while the token is fresh: one atomic load, no lock, no clock
/// read).
///
/// Cheap to clone (`Send + Sync`): every clone shares one token, one refresh at a time,
/// and one timer thread, which ends when the last clone is dropped. Each exchange runs
/// on a short-lived thread of its own, so a caller never waits for a refresh past its
/// own deadline; a refresher that panics counts as a transient failure. Build one with
/// `TokenSource::builder(config)`; see the [crate docs](crate).
pub type TokenSource = silent_refresh_driver::TokenSource<Threads, Error>;

/// Builds a [`TokenSource`]: start with `TokenSource::builder(config)`. Without a
/// refresher (`.refresher(..)`) every refresh fails as misconfigured.
pub type TokenSourceBuilder<R = NoRefresher> =
    silent_refresh_driver::TokenSourceBuilder<Threads, Error, R>;
