//! The token source: the driver's, on blocking threads.

use silent_refresh_driver::runtime::NoRefresher;
use silent_refresh_driver::runtime::threads::Threads;

/// Keeps an access token fresh for many threads at once: the driver's generic source on
/// [`Threads`], whose calls block the calling thread (`token()` answers at once while
/// the token is fresh). Cheap to clone (`Send + Sync`): every clone shares one token,
/// one refresh at a time, and one timer thread, which ends when the last clone is
/// dropped. Build one with `TokenSource::builder(config)`; see the [crate docs](crate).
pub type TokenSource = silent_refresh_driver::TokenSource<Threads>;

/// Builds a [`TokenSource`]: start with `TokenSource::builder(config)`. Without a
/// refresher (`.refresher(..)`) every refresh fails as misconfigured.
pub type TokenSourceBuilder<R = NoRefresher> =
    silent_refresh_driver::TokenSourceBuilder<Threads, R>;
