//! The browser's runtime (feature `wasm`, on `wasm32-unknown-unknown` only): the driver
//! is a task of the page's event loop (`wasm-bindgen-futures`), its timer is JS's
//! `setTimeout`, an exchange is a future of this thread (`fetch`), and callers `.await`.
//! No threads, and no `Send` on any future it makes.
//!
//! Nothing can block there: a store call runs inline, after the store's own
//! asynchronous preparation ([`TokenStore::ready`]: the browser store takes its lock
//! between tabs and reads the shared session into memory first). The same kernel, the
//! same driver, the same rules as on the other runtimes.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use silent_refresh::time::Instant;
use silent_refresh::{Event, RefreshFailure, Secret, Token};
use wasm_bindgen::JsValue;
use wasm_bindgen::prelude::{Closure, wasm_bindgen};

use super::{
    BlockingWork, Caller, Exchanger, NoRefresher, RunsRefresher, Runtime, SendsWith, no_refresher,
};
use crate::Error;
use crate::clock::{Clock, SystemClock};
use crate::driver::{Driver, Spawn};
use crate::http_client::LocalHttpClient;
use crate::kernel::Waiter;
use crate::store::TokenStore;

/// How many events a subscriber may lag behind; past that the oldest are dropped for it
/// (it is told how many), never the source's memory.
const EVENT_BUFFER: usize = 64;

/// The longest delay `setTimeout` takes as it is (2³¹ − 1 ms, about 24.8 days); a
/// longer one would fire at once, so a longer timer is armed in steps.
const LONGEST_TIMEOUT_MS: u32 = i32::MAX as u32;

#[wasm_bindgen]
extern "C" {
    /// The global `setTimeout` (a window's, a worker's or Node's).
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Closure<dyn FnMut()>, milliseconds: u32) -> JsValue;

    /// The global `clearTimeout`.
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// The browser's runtime: the page's event loop.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wasm;

/// Runs one refresh from the page's event loop: exchanges the newest refresh credential
/// (if any) for a new token. As the tokio runtime's refresher, without `Send`: the
/// browser adapter's `OAuth2Refresher` sends it with `fetch`.
///
/// At most one exchange runs at a time (single flight on the wire); one dropped (a
/// sign-in superseded it, or it passed its hard limit) is cancelled, so an exchange
/// should abort its request when dropped (the shipped `fetch` client does). Classify
/// failures as on the other runtimes, and keep secrets out of their messages.
///
/// Implemented for closures `Fn(Option<Secret>) -> impl Future<Output = Result<Token,
/// RefreshFailure>>`.
pub trait Refresher: 'static {
    /// Exchanges `refresh_token` (the newest one; `None` for grants that need none) for
    /// a token.
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>>;

    /// As [`refresh`](Self::refresh), for a token for `target` (another key of the
    /// session: a resource, an audience, a scope). The default refuses every target
    /// but the default one: override it with [`supports_targets`](Self::supports_targets).
    fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &silent_refresh_oauth2::Target,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> {
        let default = target.is_default();
        async move {
            if default {
                self.refresh(refresh_token).await
            } else {
                Err(super::targets_unsupported())
            }
        }
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

    /// The token endpoint's URL, if the refresher knows it: the send helpers never
    /// attach the access token to a request for it.
    fn token_endpoint(&self) -> Option<&str> {
        None
    }

    /// The timeout this refresher puts on each exchange, if it has one: an overdue
    /// exchange is left to it. `None`: the source cancels an exchange at twice the
    /// configuration's `refresh_timeout`.
    fn exchange_timeout(&self) -> Option<Duration> {
        None
    }

    /// The session's DPoP state, if this refresher proves its exchanges (feature
    /// `dpop`).
    #[cfg(feature = "dpop")]
    fn dpop(&self) -> Option<&silent_refresh_oauth2::dpop::DpopSession> {
        None
    }
}

impl<F, Fut> Refresher for F
where
    F: Fn(Option<Secret>) -> Fut + 'static,
    Fut: Future<Output = Result<Token, RefreshFailure>>,
{
    fn refresh(
        &self,
        refresh_token: Option<Secret>,
    ) -> impl Future<Output = Result<Token, RefreshFailure>> {
        self(refresh_token)
    }
}

/// Without a refresher, every refresh fails as misconfigured, saying to give one.
impl Refresher for NoRefresher {
    async fn refresh(&self, _: Option<Secret>) -> Result<Token, RefreshFailure> {
        Err(no_refresher())
    }
}

/// An exchange in the browser: the refresher's future, boxed (one allocation a refresh).
pub type WasmExchange = Pin<Box<dyn Future<Output = Result<Token, RefreshFailure>>>>;

/// A refresher of this thread, shared with the futures of its exchanges.
struct Local<R>(Rc<R>);

impl<R: Refresher> Exchanger<WasmExchange> for Local<R> {
    fn exchange(&self, refresh_token: Option<Secret>) -> WasmExchange {
        let refresher = self.0.clone();
        Box::pin(async move { refresher.refresh(refresh_token).await })
    }

    fn exchange_for(
        &self,
        refresh_token: Option<Secret>,
        target: &silent_refresh_oauth2::Target,
    ) -> WasmExchange {
        let (refresher, target) = (self.0.clone(), target.clone());
        Box::pin(async move { refresher.refresh_for(refresh_token, &target).await })
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

impl<R: Refresher> RunsRefresher<R> for Wasm {
    fn hold(refresher: R) -> Arc<Self::Refresher> {
        Arc::new(Local(Rc::new(refresher)))
    }
}

/// A store call: run inline once the store is ready; `None` if it panicked (where
/// panics unwind).
pub type Inline<T> = Pin<Box<dyn Future<Output = Option<T>>>>;

/// Runs `job` here and now.
fn inline<T>(job: impl FnOnce() -> T) -> Option<T> {
    catch_unwind(AssertUnwindSafe(job)).ok()
}

/// A timer of the page: `setTimeout`, cleared when dropped. The JS side of each armed
/// timer lives in this thread's table ([`ARMED`]), so the timer itself is `Send`, and so
/// is a future that holds one (a `token()` call's, which the HTTP integrations require
/// to be `Send`); on wasm32 nothing ever moves it to another thread.
pub struct Timeout {
    /// When it is due (`None`: too far to name, never).
    until: Option<Instant>,
    /// Its entry in [`ARMED`], while a `setTimeout` is on the way.
    armed: Option<u64>,
    fired: Arc<Mutex<Fired>>,
}

/// A `setTimeout` on the way: its handle, and its callback, kept alive until the timer
/// is cleared or re-armed.
struct Armed {
    handle: JsValue,
    _callback: Closure<dyn FnMut()>,
}

#[derive(Default)]
struct Fired {
    fired: bool,
    waker: Option<Waker>,
}

thread_local! {
    /// The `setTimeout`s of this thread's timers, by number.
    static ARMED: RefCell<HashMap<u64, Armed>> = RefCell::new(HashMap::new());
    /// The number of the next one.
    static NEXT_TIMER: Cell<u64> = const { Cell::new(0) };
}

impl Timeout {
    fn fired(&self) -> MutexGuard<'_, Fired> {
        self.fired.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clears the `setTimeout` on the way, if any.
    fn disarm(&mut self) {
        if let Some(id) = self.armed.take() {
            let armed = ARMED.with(|armed| armed.borrow_mut().remove(&id));
            if let Some(armed) = armed {
                clear_timeout(&armed.handle);
            }
        }
    }

    /// Arms a `setTimeout` for `until`, which wakes `waker`.
    fn arm(&mut self, until: Instant, now: Instant, waker: &Waker) {
        self.disarm();
        let left = until.saturating_duration_since(now);
        // Rounded up: a timer never fires before its instant.
        let millis = u32::try_from(left.as_micros().div_ceil(1000))
            .unwrap_or(LONGEST_TIMEOUT_MS)
            .min(LONGEST_TIMEOUT_MS);
        *self.fired() = Fired {
            fired: false,
            waker: Some(waker.clone()),
        };
        let on_fire = self.fired.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            let waker = {
                let mut fired = on_fire.lock().unwrap_or_else(PoisonError::into_inner);
                fired.fired = true;
                fired.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
        });
        let handle = set_timeout(&callback, millis);
        let id = NEXT_TIMER.with(|next| {
            let id = next.get();
            next.set(id.wrapping_add(1));
            id
        });
        let entry = Armed {
            handle,
            _callback: callback,
        };
        ARMED.with(|armed| armed.borrow_mut().insert(id, entry));
        self.armed = Some(id);
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        self.disarm();
    }
}

impl Future for Timeout {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let Some(until) = this.until else {
            return Poll::Pending;
        };
        let now = Instant::now();
        if now >= until {
            this.disarm();
            return Poll::Ready(());
        }
        if this.armed.is_some() {
            let mut fired = this.fired();
            if !fired.fired {
                // Still on the way: wake this task when it fires.
                fired.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
        // Not armed yet, or fired early (a step of a long timer, or a clock that reads
        // a little behind): armed for what is left.
        this.arm(until, now, cx.waker());
        Poll::Pending
    }
}

impl std::fmt::Debug for Timeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeout")
            .field("until", &self.until)
            .field("armed", &self.armed.is_some())
            .finish()
    }
}

impl Runtime for Wasm {
    type Refresher = dyn Exchanger<WasmExchange>;
    type Exchange = WasmExchange;
    type Blocking<T: Send + 'static> = Inline<T>;
    type Sleep = Timeout;
    // The page's `fetch` is aborted when its future is dropped.
    const CANCELS_EXCHANGES: bool = true;

    fn run_blocking<T, F>(&self, _: BlockingWork, job: F) -> Inline<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        // Nothing blocks here: the job has no thread to go to, so it runs now.
        Box::pin(std::future::ready(inline(job)))
    }

    fn run_store<T, F>(&self, store: &Arc<dyn TokenStore>, work: BlockingWork, job: F) -> Inline<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match store.ready(work) {
            None => self.run_blocking(work, job),
            Some(ready) => Box::pin(async move {
                let guard = ready.await;
                let output = inline(job);
                drop(guard);
                output
            }),
        }
    }

    fn sleep(&self, duration: Duration) -> Timeout {
        Timeout {
            until: Instant::now().checked_add(duration),
            armed: None,
            fired: Arc::default(),
        }
    }

    fn default_clock(&self) -> Arc<dyn Clock> {
        // web-time's clocks: `performance.now()` and `Date.now()`.
        Arc::new(SystemClock)
    }
}

impl Spawn for Wasm {
    fn spawn<W: Waiter>(&self, driver: Driver<Self, W>) -> Result<(), Error> {
        wasm_bindgen_futures::spawn_local(driver);
        Ok(())
    }
}

/// The events of a source in the browser, as [`TokenSource::subscribe`](crate::TokenSource::subscribe)
/// returns them: [`recv`](Self::recv) to await the next one.
pub struct Events(Arc<Mutex<Queue>>);

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// Dropped since the last one received, the receiver being too far behind.
    missed: u64,
    waker: Option<Waker>,
}

impl Events {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next event, if one is queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.lock().events.pop_front()
    }

    /// The next event, when it comes.
    pub async fn recv(&mut self) -> Event {
        poll_fn(|cx| {
            let mut queue = self.lock();
            match queue.events.pop_front() {
                Some(event) => Poll::Ready(event),
                None => {
                    queue.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// How many events were dropped for this receiver since the last call, being more
    /// than 64 behind.
    pub fn missed(&mut self) -> u64 {
        std::mem::take(&mut self.lock().missed)
    }
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("queued", &self.lock().events.len())
            .finish_non_exhaustive()
    }
}

impl Caller for Wasm {
    type Wait<F: Future> = F;
    type Events = Events;
    // The driver is a task of the same event loop: it always answers.
    const LATE_GRACE: Option<Duration> = None;

    #[inline(always)]
    fn wait<F: Future>(&self, future: F) -> F {
        future
    }

    fn subscribe(
        &self,
    ) -> (
        impl Fn(&Event) -> bool + Send + Sync + 'static,
        Self::Events,
    ) {
        let queue = Arc::new(Mutex::new(Queue::default()));
        let sender = Arc::downgrade(&queue);
        let listener = move |event: &Event| {
            // The receiver is gone: the kernel forgets this listener.
            let Some(queue) = sender.upgrade() else {
                return false;
            };
            let waker = {
                let mut queue = queue.lock().unwrap_or_else(PoisonError::into_inner);
                if queue.events.len() == EVENT_BUFFER {
                    queue.events.pop_front();
                    queue.missed += 1;
                }
                queue.events.push_back(event.clone());
                queue.waker.take()
            };
            if let Some(waker) = waker {
                waker.wake();
            }
            true
        };
        (listener, Events(queue))
    }
}

/// A request of a sign-in step in the browser (discovery, the device flow): the
/// client's future, boxed.
pub type WasmSending =
    Pin<Box<dyn Future<Output = Result<http::Response<Vec<u8>>, RefreshFailure>>>>;

impl<C: LocalHttpClient> SendsWith<C> for Wasm {
    type Sending = WasmSending;

    fn send(
        &self,
        client: &Arc<C>,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> WasmSending {
        let client = client.clone();
        Box::pin(async move { client.send(request, timeout).await })
    }
}

// The browser's sources are what the HTTP integrations attach tokens from (the
// browser adapter's `fetch` wrapper goes through `AuthorizedClient`), as tokio's are.
crate::source::bearer_source!(Wasm);
