//! The runtime of blocking programs, with nothing but `std`: a thread per source runs
//! its driver (its timer), each exchange and each piece of store I/O runs on a thread
//! of its own, and a caller that has to wait parks its own thread until its answer
//! comes. Nothing polls and nothing sleeps in a loop.
//!
//! Futures are how the driver is written once; here they run on a minimal executor
//! ([`block_on`]) that parks the thread between polls, until a waker unparks it or
//! the earliest timer ([`ThreadSleep`]) of that poll is due.

use std::cell::Cell;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use silent_refresh::{Event, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::Target;

use super::{
    BlockingWork, Caller, Exchanger, NoRefresher, RunsRefresher, Runtime, SendsWith, no_refresher,
    targets_unsupported,
};
use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::driver::{Driver, Spawn};
use crate::http_client::BlockingHttpClient;
use crate::kernel::Waiter;

/// How long past its own deadline a blocked caller waits for the driver before giving
/// up by itself (the driver answers at the deadline; this only bounds a late one, or a
/// test clock that never moves).
const LATE_GRACE: Duration = Duration::from_millis(250);

/// How many events a subscriber may lag behind; past that the newest are dropped for
/// it (never memory growth, never a blocked source).
const EVENT_BUFFER: usize = 64;

/// The runtime of blocking programs: std threads, no async runtime.
#[derive(Clone, Copy, Debug, Default)]
pub struct Threads;

/// Performs one refresh against the authorization server, blocking the calling thread
/// until it has an answer.
///
/// The source calls it on a thread of its own, at most one call at a time (single
/// flight on the wire: the next exchange starts only once this call has returned), and
/// never while holding its lock. A blocking call cannot be cancelled, so bound it
/// yourself (the shipped `OAuth2Refresher` does): a call that never returns keeps every
/// later refresh from starting.
///
/// Classify failures: [`RefreshFailure::terminal`] for dead credentials
/// (`invalid_grant`, revoked), [`RefreshFailure::misconfigured`] for a client set up
/// wrong (`invalid_client`, a wrong token URL, a redirect), and
/// [`RefreshFailure::transient`] for anything worth retrying; the codec's `classify`
/// classifies HTTP answers. A panic counts as a transient failure. Failure messages end
/// up in errors and logs: never put a secret in them.
///
/// Implemented for closures:
///
/// ```
/// use std::time::Duration;
/// use silent_refresh::{Expiry, RefreshFailure, Secret, Token};
/// use silent_refresh_driver::runtime::threads::Refresher;
///
/// let refresher = |refresh_token: Option<Secret>| -> Result<Token, RefreshFailure> {
///     match refresh_token {
///         Some(_) => Ok(Token::bearer("access", Expiry::In(Duration::from_secs(3600)))),
///         None => Err(RefreshFailure::terminal("no refresh credential")),
///     }
/// };
/// assert!(refresher.refresh(Some(Secret::new("rt"))).is_ok());
/// ```
pub trait Refresher: Send + Sync + 'static {
    /// Exchanges the newest refresh credential (`None` for grants that need none,
    /// such as client credentials) for a new token.
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure>;

    /// As [`refresh`](Self::refresh), for a token for `target` (another key of the
    /// session: a resource, an audience, a scope). The default refuses every target
    /// but the default one: override it with [`supports_targets`](Self::supports_targets).
    ///
    /// # Errors
    ///
    /// As [`refresh`](Self::refresh); by default, a misconfiguration for a target.
    fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        if target.is_default() {
            return self.refresh(refresh_token);
        }
        Err(targets_unsupported())
    }

    /// Whether [`refresh_for`](Self::refresh_for) asks for the target it is given.
    fn supports_targets(&self) -> bool {
        false
    }

    /// Whether this refresher gets a token with no refresh credential (a
    /// client-credentials, JWT bearer or token-exchange grant): a source built without
    /// credentials then starts as with `Credentials::ClientCredentials { token: None }`.
    fn authenticates_itself(&self) -> bool {
        false
    }

    /// The URL of the token endpoint, if known. The send helpers never attach the
    /// access token to a request for this URL.
    fn token_endpoint(&self) -> Option<&str> {
        None
    }

    /// The timeout this refresher puts on each exchange, if it has one (the shipped
    /// `OAuth2Refresher` always does). A blocking call ends only when it returns.
    fn exchange_timeout(&self) -> Option<Duration> {
        None
    }

    /// The session's DPoP state, if this refresher proves its exchanges (feature
    /// `dpop`): the source stores its key with the session and adopts a stored
    /// session's key into it, and the integrations prove resource requests with it.
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        None
    }
}

impl<F> Refresher for F
where
    F: Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync + 'static,
{
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self(refresh_token)
    }
}

/// Without a refresher, every refresh fails as misconfigured, saying to give one.
impl Refresher for NoRefresher {
    fn refresh(&self, _: Option<Secret>) -> Result<Token, RefreshFailure> {
        Err(no_refresher())
    }
}

/// A blocking refresher, run on a thread of its own per exchange.
struct OnThreads<R>(Arc<R>);

impl<R: Refresher> Exchanger<ThreadExchange> for OnThreads<R> {
    fn exchange(&self, refresh_token: Option<Secret>) -> ThreadExchange {
        let refresher = self.0.clone();
        let refresh = move || refresher.refresh(refresh_token);
        ThreadExchange(on_a_thread("silent-refresh", refresh, NoThread::Fail))
    }

    fn exchange_for(&self, refresh_token: Option<Secret>, target: &Target) -> ThreadExchange {
        let (refresher, target) = (self.0.clone(), target.clone());
        let refresh = move || refresher.refresh_for(refresh_token, &target);
        ThreadExchange(on_a_thread("silent-refresh", refresh, NoThread::Fail))
    }

    fn supports_targets(&self) -> bool {
        self.0.supports_targets()
    }

    fn authenticates_itself(&self) -> bool {
        self.0.authenticates_itself()
    }

    fn token_endpoint(&self) -> Option<&str> {
        self.0.token_endpoint()
    }

    fn exchange_timeout(&self) -> Option<Duration> {
        self.0.exchange_timeout()
    }

    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        self.0.dpop()
    }
}

impl<R: Refresher> RunsRefresher<R> for Threads {
    fn hold(refresher: R) -> Arc<Self::Refresher> {
        Arc::new(OnThreads(Arc::new(refresher)))
    }
}

/// An exchange on a thread of its own: its result, once the thread is done.
pub struct ThreadExchange(Handoff<Result<Token, RefreshFailure>>);

impl Future for ThreadExchange {
    type Output = Result<Token, RefreshFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|result| {
            result.unwrap_or_else(|| {
                Err(RefreshFailure::transient(
                    "the refresher panicked, or no thread could be started for it",
                ))
            })
        })
    }
}

/// The result of a job on another thread (`None`: it panicked, or no thread could be
/// started and it never ran).
pub struct Handoff<T>(Arc<Mutex<HandoffState<T>>>);

struct HandoffState<T> {
    value: Option<T>,
    done: bool,
    waker: Option<Waker>,
}

impl<T> Handoff<T> {
    fn lock(&self) -> MutexGuard<'_, HandoffState<T>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<T> Future for Handoff<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.lock();
        if state.done {
            return Poll::Ready(state.value.take());
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// The sending half of a [`Handoff`]: delivers once, or, dropped without delivering
/// (the job panicked, or its thread never started), says so.
pub(crate) struct Deliver<T>(Arc<Mutex<HandoffState<T>>>);

/// A handoff between threads: what the one side delivers, the other awaits.
pub(crate) fn handoff<T>() -> (Deliver<T>, Handoff<T>) {
    let state = Arc::new(Mutex::new(HandoffState {
        value: None,
        done: false,
        waker: None,
    }));
    (Deliver(state.clone()), Handoff(state))
}

impl<T> Deliver<T> {
    /// Delivers `value` (`None`: nothing came), once; later calls change nothing.
    pub(crate) fn finish(&self, value: Option<T>) {
        let waker = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if state.done {
                return;
            }
            state.value = value;
            state.done = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl<T> Drop for Deliver<T> {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// What to do with a job when no thread can be started for it.
#[derive(Clone, Copy)]
pub(crate) enum NoThread {
    /// Run it on the calling thread rather than lose it (store I/O).
    RunHere,
    /// Report it as not run (an exchange: a transient failure, tried again later).
    Fail,
}

/// Runs `job` on a new thread named `name`; its result comes through the handoff.
pub(crate) fn on_a_thread<T, F>(name: &str, job: F, no_thread: NoThread) -> Handoff<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (deliver, handoff) = handoff();
    // The thread takes the job and its delivery; if no thread starts, they are here.
    let parcel = Arc::new(Mutex::new(Some((job, deliver))));
    let on_thread = parcel.clone();
    let spawned = thread::Builder::new().name(name.into()).spawn(move || {
        let parcel = on_thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((job, deliver)) = parcel {
            deliver.finish(catch_unwind(AssertUnwindSafe(job)).ok());
        }
    });
    if let Err(error) = spawned {
        tracing::error!(%error, thread = name, "could not start a thread");
        let parcel = parcel.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let (NoThread::RunHere, Some((job, deliver))) = (no_thread, parcel) {
            deliver.finish(catch_unwind(AssertUnwindSafe(job)).ok());
        }
    }
    handoff
}

thread_local! {
    /// The earliest timer polled on this thread since its executor last looked: when
    /// [`block_on`] wakes by itself.
    static NEXT_TIMER: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A timer of [`Threads`]: due `duration` after it was made, on the system's monotonic
/// clock. Polled, it tells the executor of its thread ([`block_on`]) when to wake.
#[derive(Debug)]
pub struct ThreadSleep {
    until: Option<Instant>,
}

impl Future for ThreadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        let Some(until) = self.until else {
            // Too far to name: never.
            return Poll::Pending;
        };
        if Instant::now() >= until {
            return Poll::Ready(());
        }
        NEXT_TIMER.with(|next| {
            next.set(Some(next.get().map_or(until, |at| at.min(until))));
        });
        Poll::Pending
    }
}

/// Wakes a thread parked in [`block_on`].
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` to its end on this thread, parking it between polls until a waker
/// unparks it or the earliest [`ThreadSleep`] it polled is due. A future ready at once
/// (a fresh token) costs one poll and nothing else.
#[inline]
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    if let Poll::Ready(output) = future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        return output;
    }
    park_until_ready(future)
}

/// The rest of [`block_on`], out of the way of its first poll.
#[cold]
#[inline(never)]
fn park_until_ready<F: Future>(mut future: Pin<&mut F>) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        NEXT_TIMER.with(|next| next.set(None));
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        match NEXT_TIMER.with(Cell::take) {
            Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
            None => thread::park(),
        }
    }
}

impl Runtime for Threads {
    type Refresher = dyn Exchanger<ThreadExchange> + Send + Sync;
    type Exchange = ThreadExchange;
    type Blocking<T: Send + 'static> = Handoff<T>;
    type Sleep = ThreadSleep;
    const CANCELS_EXCHANGES: bool = false;

    fn run_blocking<T, F>(&self, _: BlockingWork, job: F) -> Handoff<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        on_a_thread("silent-refresh-store", job, NoThread::RunHere)
    }

    fn sleep(&self, duration: Duration) -> ThreadSleep {
        ThreadSleep {
            until: Instant::now().checked_add(duration),
        }
    }

    fn default_clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Spawn for Threads {
    fn spawn<W: Waiter>(&self, driver: Driver<Self, W>) -> Result<(), Error> {
        thread::Builder::new()
            .name("silent-refresh-timer".into())
            .spawn(move || block_on(driver))
            .map(drop)
            .map_err(|error| Error::Spawn {
                reason: error.to_string(),
            })
    }
}

/// A request of a sign-in step on threads: the blocking client's call on a thread of
/// its own, its answer once it returns.
pub struct ThreadSending(Handoff<Result<http::Response<Vec<u8>>, RefreshFailure>>);

impl Future for ThreadSending {
    type Output = Result<http::Response<Vec<u8>>, RefreshFailure>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(|result| {
            result.unwrap_or_else(|| {
                Err(RefreshFailure::transient(
                    "the HTTP client panicked while sending the request",
                ))
            })
        })
    }
}

impl<C: BlockingHttpClient> SendsWith<C> for Threads {
    type Sending = ThreadSending;

    fn send(
        &self,
        client: &Arc<C>,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> ThreadSending {
        let client = client.clone();
        let send = move || client.send(request, timeout);
        ThreadSending(on_a_thread(
            "silent-refresh-signin",
            send,
            NoThread::RunHere,
        ))
    }
}

impl Caller for Threads {
    type Wait<F: Future> = F::Output;
    type Events = mpsc::Receiver<Event>;
    const LATE_GRACE: Option<Duration> = Some(LATE_GRACE);

    fn wait<F: Future>(&self, future: F) -> F::Output {
        block_on(future)
    }

    fn subscribe(
        &self,
    ) -> (
        impl Fn(&Event) -> bool + Send + Sync + 'static,
        Self::Events,
    ) {
        let (sender, receiver) = mpsc::sync_channel(EVENT_BUFFER);
        let listener = move |event: &Event| {
            // Full: the subscriber's loss, never the source's. Gone: forgotten.
            !matches!(
                sender.try_send(event.clone()),
                Err(mpsc::TrySendError::Disconnected(_))
            )
        };
        (listener, receiver)
    }
}

#[cfg(feature = "http")]
crate::source::bearer_session!(Threads);

/// The ureq middleware's (`silent-refresh-http`, feature `ureq`) token: the source's,
/// blocking the thread.
#[cfg(feature = "http")]
impl silent_refresh_http::BlockingBearerSource for crate::source::TokenSource<Threads> {
    fn token(&self) -> Result<Arc<silent_refresh::AccessToken>, Error> {
        crate::source::TokenSource::token(self)
    }

    fn not_in_agent() -> Error {
        Error::NotInAgent
    }
}
