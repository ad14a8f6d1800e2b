//! The runtime seam: what a runtime must provide so that a token source, its builder
//! and its exchange loop are written once ([`TokenSource`](crate::TokenSource),
//! [`Driver`](crate::driver::Driver)).
//!
//! Two traits, as quinn's `Runtime` and hyper's `rt` module cut it:
//! - [`Runtime`]: what the driver needs: run an exchange, run store I/O off the callers
//!   and the async workers, sleep, and which clock to read (and, in the driver's own
//!   module, [`Spawn`](crate::driver::Spawn): how the driver itself is run);
//! - [`Caller`]: what the source's callers get: whether a call is awaited or blocks,
//!   and how events reach a subscriber.
//!
//! Two implementations ship: [`threads`] (std threads and condition variables, for
//! blocking programs) and `tokio` (feature `tokio`). The traits put no `Send` bound on
//! the futures a runtime makes (its timer, its exchanges, its driver): a runtime
//! without threads (the browser: `wasm-bindgen-futures` to spawn, `setTimeout` to
//! sleep) implements them with futures that are not `Send`. Only what crosses to
//! another thread must be `Send`: a store job ([`Runtime::run_blocking`]), whose stores
//! are `Send + Sync` anyway.

// No threads on wasm32-unknown-unknown; the browser has its own runtime (feature `wasm`).
#[cfg(not(target_arch = "wasm32"))]
pub mod threads;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(all(feature = "wasm", target_arch = "wasm32"))]
pub mod wasm;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use silent_refresh::{Event, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::Target;

use crate::clock::Clock;
pub use crate::store::BlockingWork;
use crate::store::TokenStore;

/// What a runtime must provide to run a token source's [`Driver`](crate::driver::Driver): its exchange loop
/// and timer.
pub trait Runtime: Clone + Unpin + 'static {
    /// A refresher as this runtime holds it (type-erased, usually a `dyn` of its own
    /// refresher trait): it starts [`Exchange`](Self::Exchange)s.
    type Refresher: ?Sized + Exchanger<Self::Exchange>;

    /// One refresh exchange on the wire. Dropping it cancels it where
    /// [`CANCELS_EXCHANGES`](Self::CANCELS_EXCHANGES) says so.
    type Exchange: Future<Output = Result<Token, RefreshFailure>> + Unpin;

    /// Work that blocks (store I/O), running off the callers and the async workers;
    /// `None` when it panicked.
    type Blocking<T: Send + 'static>: Future<Output = Option<T>> + Unpin;

    /// A timer.
    type Sleep: Future<Output = ()> + Unpin;

    /// Whether dropping an [`Exchange`](Self::Exchange) cancels it. A blocking call
    /// cannot be cut short: a runtime of threads lets it end by itself (its refresher's
    /// own timeout bounds it), and the driver waits for its result whatever it asked.
    const CANCELS_EXCHANGES: bool;

    /// Runs `job`, which blocks (`work` says how), off the callers and the async
    /// workers (tokio: its blocking pool; threads: a thread of its own).
    fn run_blocking<T, F>(&self, work: BlockingWork, job: F) -> Self::Blocking<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static;

    /// Runs `job`, a call of `store` (`work` says which), as
    /// [`run_blocking`](Self::run_blocking) does. A runtime without threads first awaits
    /// what the store needs to answer at once ([`TokenStore::ready`]), then runs the
    /// call inline. The default: any blocking job.
    fn run_store<T, F>(
        &self,
        store: &Arc<dyn TokenStore>,
        work: BlockingWork,
        job: F,
    ) -> Self::Blocking<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let _ = store;
        self.run_blocking(work, job)
    }

    /// A timer that fires after `duration` on the runtime's own time (tokio's clock,
    /// paused in tests; the system's monotonic clock for threads).
    fn sleep(&self, duration: Duration) -> Self::Sleep;

    /// The clock a source reads when its builder was given none.
    fn default_clock(&self) -> Arc<dyn Clock>;
}

/// What the callers of a source get on this runtime: whether a call is awaited or
/// blocks, and how events reach a subscriber.
pub trait Caller: Runtime {
    /// How a caller waits for `F`: `F` itself, to `.await` (async runtimes), or its
    /// output, computed on the caller's thread (blocking ones).
    type Wait<F: Future>;

    /// What [`TokenSource::subscribe`](crate::TokenSource::subscribe) returns.
    type Events;

    /// How long past its deadline a waiting caller waits for the driver before giving
    /// up by itself (a driver whose timer runs late, or a test clock that never moves);
    /// `None`: the driver always answers.
    const LATE_GRACE: Option<Duration>;

    /// Hands `future` to the caller: to be awaited, or run to its end here.
    fn wait<F: Future>(&self, future: F) -> Self::Wait<F>;

    /// A new subscriber: the listener the kernel calls with each event (`false` once
    /// the subscriber is gone), and what the program receives them with.
    fn subscribe(
        &self,
    ) -> (
        impl Fn(&Event) -> bool + Send + Sync + 'static,
        Self::Events,
    );
}

/// A refresher as a runtime runs it: it starts exchanges, and names its token endpoint
/// and its own timeout.
pub trait Exchanger<Exchange>: 'static {
    /// Starts one exchange of `refresh_token` (the newest one; `None` for grants that
    /// need none) for a new token.
    fn exchange(&self, refresh_token: Option<Secret>) -> Exchange;

    /// Starts one exchange of `refresh_token` for a token for `target` (rule 13: a
    /// key of the session other than the default). The driver calls it with a target
    /// other than the default only when [`supports_targets`](Self::supports_targets)
    /// says so; the default sends [`exchange`](Self::exchange)'s request.
    fn exchange_for(&self, refresh_token: Option<Secret>, target: &Target) -> Exchange {
        let _ = target;
        self.exchange(refresh_token)
    }

    /// Whether [`exchange_for`](Self::exchange_for) asks the token endpoint for the
    /// target it is given (an OAuth 2.0 refresher does): without it, a source has only
    /// its default key.
    fn supports_targets(&self) -> bool {
        false
    }

    /// Whether this refresher gets a token with no refresh credential (a
    /// client-credentials, JWT bearer or token-exchange grant): a source built without
    /// credentials then starts as with `Credentials::ClientCredentials { token: None }`.
    fn authenticates_itself(&self) -> bool {
        false
    }

    /// The token endpoint's URL, if known: the send helpers never attach the access
    /// token to a request for it.
    fn token_endpoint(&self) -> Option<&str>;

    /// The timeout the refresher puts on each exchange itself, if it has one: an
    /// exchange past the configuration's `refresh_timeout` is left to it. Without one,
    /// the driver cancels an exchange at twice `refresh_timeout`.
    fn exchange_timeout(&self) -> Option<Duration>;

    /// The session's DPoP state, if the refresher proves its exchanges (feature `dpop`).
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        None
    }
}

/// A refresher this runtime can run: an `async` one for tokio, a blocking one for
/// threads.
#[diagnostic::on_unimplemented(
    message = "`{R}` is not a refresher this runtime can run",
    label = "no refresher for this runtime",
    note = "give the builder a refresher: `.refresher(|refresh_token: Option<Secret>| ...)` or `.refresher(OAuth2Refresher::builder(grant).build()?)`"
)]
pub trait RunsRefresher<R>: Runtime {
    /// `refresher`, as this runtime holds it.
    fn hold(refresher: R) -> Arc<Self::Refresher>;
}

/// A runtime that sends the requests of a sign-in or sign-out step (discovery, the
/// device flow, the code exchange, revocation) with the adapter's HTTP client `C`: an
/// async client's future on tokio, a blocking client's call on a thread of its own on
/// threads (so that a cancel or a time limit need not wait for it). The flows of
/// [`signin`](crate::signin) are written once over it.
#[diagnostic::on_unimplemented(
    message = "this runtime cannot send requests with `{C}`",
    label = "no HTTP client of this runtime",
    note = "the tokio runtime sends with an async client (the tokio adapter's `Reqwest`), threads with a blocking one (the ureq adapter's `UreqAgent`)"
)]
pub trait SendsWith<C>: Caller {
    /// One request on the wire.
    type Sending: Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>> + Unpin;

    /// Sends `request` with `client` and reads the whole answer, within `timeout`; a
    /// redirect is returned, never followed (the client's own rule).
    fn send(
        &self,
        client: &Arc<C>,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Self::Sending;
}

/// The refresher of a builder that was given none. A blocking runtime builds a source
/// with it all the same (its refreshes fail as misconfigured, saying to give one);
/// an async one refuses to build.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoRefresher;

/// What a source without a refresher answers every refresh with.
pub(crate) fn no_refresher() -> RefreshFailure {
    RefreshFailure::misconfigured(
        "no refresher configured; give one with `TokenSource::builder(..).refresher(..)`",
    )
}

/// What a refresher that cannot ask for a target answers a refresh for one with.
pub(crate) fn targets_unsupported() -> RefreshFailure {
    RefreshFailure::misconfigured(
        "this refresher cannot ask for a token for a resource, an audience or a scope of its \
         own (rule 13): use an OAuth2Refresher, or implement `refresh_for` and \
         `supports_targets`",
    )
}
