//! What the scenarios that run on both runtimes share: a [`Harness`] per runtime (how a
//! call is made, how time passes, how an event is awaited), fake refreshers, and the
//! stores and helpers of the tests.
//!
//! A scenario is an `async fn` generic over the harness. tokio runs it on a
//! current-thread runtime with paused time (its clock moves only when everything waits,
//! or when told); threads run it on the test's thread, which blocks in each call, on a
//! [`ManualClock`] (it moves only when told). Nothing sleeps for real time to wait for
//! an effect: scenarios wait for events and answers, bounded.

#![allow(dead_code)]

#[cfg(feature = "tokio")]
mod on_tokio;
mod store;

use std::future::Future;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use silent_refresh::{
    AccessToken, Config, Event, Expiry, Generation, RefreshFailure, Secret, Token,
};
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::driver::Spawn;
use silent_refresh_driver::runtime::threads::{self, Threads};
use silent_refresh_driver::runtime::{Caller, RunsRefresher, Runtime};
use silent_refresh_driver::wake::Wake;
use silent_refresh_driver::{Error, TokenSource, TokenSourceBuilder};
use silent_refresh_oauth2::Target;

#[cfg(feature = "tokio")]
pub(crate) use self::on_tokio::TokioHarness;
#[allow(unused_imports)] // each test binary uses some
pub(crate) use self::store::{
    Flaky, Shared, Uncoordinated, assert_stored, load, refresh_of, stored,
};

/// Far above what any step here takes; reached only when something is broken.
pub(crate) const BOUND: Duration = Duration::from_secs(10);

pub(crate) const HOUR: Duration = Duration::from_secs(3600);

pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub(crate) fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bearer token `at-{n}` with refresh credential `rt-{n}`, living `lifetime` from when
/// it is adopted.
pub(crate) fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

pub(crate) fn secret_of(result: Result<Arc<AccessToken>, Error>) -> String {
    match result {
        Ok(token) => token.secret.expose().to_owned(),
        Err(error) => panic!("expected a token, got: {error}"),
    }
}

/// The core's reason a call got no token.
pub(crate) fn core_error(result: Result<Arc<AccessToken>, Error>) -> silent_refresh::Error {
    match result {
        Err(Error::Token(error)) => error,
        other => panic!("expected the core's error, got {other:?}"),
    }
}

/// Waits until the input that sent the last event received has been settled.
///
/// The kernel sends events to subscribers inside its settle loop, before it publishes
/// the snapshot the getters and the fast path read: a subscriber woken by `Persisted`
/// may still read `is_durable() == false`. Any input takes the kernel's lock, so it
/// returns only after that settle published; a rejection of generation 0 (older than
/// any token) changes nothing but feeds the machine the clock's time.
pub(crate) fn settled<Rt: Caller>(source: &TokenSource<Rt>) {
    source.report_rejected(Generation(0));
}

/// What a fake refresher saw.
#[derive(Default)]
pub(crate) struct Calls {
    /// When each call started (the harness's time).
    at: Mutex<Vec<Instant>>,
    /// The refresh credential each call was given.
    credentials: Mutex<Vec<Option<String>>>,
    /// The target each call asked for, by name (empty: the default).
    targets: Mutex<Vec<String>>,
}

impl Calls {
    pub(crate) fn count(&self) -> usize {
        lock(&self.at).len()
    }

    pub(crate) fn times(&self) -> Vec<Instant> {
        lock(&self.at).clone()
    }

    pub(crate) fn credentials(&self) -> Vec<Option<String>> {
        lock(&self.credentials).clone()
    }

    pub(crate) fn targets(&self) -> Vec<String> {
        lock(&self.targets).clone()
    }

    /// Records a call; its number (1-based).
    fn record(&self, at: Instant, refresh_token: Option<&Secret>) -> usize {
        self.record_for(at, refresh_token, &Target::default())
    }

    /// Records a call for `target`; its number (1-based).
    fn record_for(&self, at: Instant, refresh_token: Option<&Secret>, target: &Target) -> usize {
        lock(&self.targets).push(target.name());
        lock(&self.credentials).push(refresh_token.map(|s| s.expose().to_owned()));
        let mut times = lock(&self.at);
        times.push(at);
        times.len()
    }
}

/// One answer of a fake refresher: after `delay` (the harness's time), `result`.
pub(crate) struct Answer {
    pub(crate) delay: Duration,
    pub(crate) result: Result<Token, RefreshFailure>,
}

impl Answer {
    pub(crate) fn after(delay: Duration, result: Result<Token, RefreshFailure>) -> Self {
        Self { delay, result }
    }

    pub(crate) fn now(result: Result<Token, RefreshFailure>) -> Self {
        Self::after(Duration::ZERO, result)
    }
}

/// How a fake refresher answers its `n`th call.
pub(crate) type Answers = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

/// A runtime as the scenarios drive it.
pub(crate) trait Harness: Clone + Send + Sync + Sized + 'static {
    /// The runtime.
    type Rt: Caller + Default + RunsRefresher<Self::Fake> + Spawn;
    /// Its fake refresher.
    type Fake;
    /// What its sources' `subscribe` returns.
    type Events;

    /// Runs `scenario` to its end on this runtime.
    fn run<F: Future<Output = ()>>(scenario: impl FnOnce(Self) -> F);

    /// A builder on the harness's clock.
    fn builder(&self, config: Config) -> TokenSourceBuilder<Self::Rt> {
        let builder = TokenSource::<Self::Rt>::builder(config);
        self.on_clock(builder)
    }

    /// `builder` reading the harness's clock.
    fn on_clock(&self, builder: TokenSourceBuilder<Self::Rt>) -> TokenSourceBuilder<Self::Rt>;

    /// A refresher that records its calls and answers the `n`th with `answers(n)`.
    fn fake(&self, calls: Arc<Calls>, answers: Answers) -> Self::Fake;

    /// The harness's time (the sources' monotonic clock).
    fn now(&self) -> Instant;

    /// Lets `by` pass, then lets the drivers take it in.
    fn advance(&self, by: Duration) -> impl Future<Output = ()>;

    /// A suspend: the wall clock jumps `by`, the monotonic clock stands still.
    fn suspend(&self, by: Duration);

    /// `source.token()`.
    fn token(
        source: &TokenSource<Self::Rt>,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>>;

    /// `source.token_within(limit)`.
    fn token_within(
        source: &TokenSource<Self::Rt>,
        limit: Duration,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>>;

    /// `source.shutdown(limit)`.
    fn shutdown(source: &TokenSource<Self::Rt>, limit: Duration) -> impl Future<Output = bool>;

    /// `source.until_durable(limit)`.
    fn until_durable(source: &TokenSource<Self::Rt>, limit: Duration)
    -> impl Future<Output = bool>;

    /// `source.subscribe()`.
    fn subscribe(source: &TokenSource<Self::Rt>) -> Self::Events;

    /// The next event, or `None` once none comes within [`BOUND`].
    fn next(events: &mut Self::Events) -> impl Future<Output = Option<Event>>;

    /// The events already sent, without waiting.
    fn sent(events: &mut Self::Events) -> Vec<Event>;

    /// Calls `source.token()` now, on a task or thread of its own; the answer once it
    /// comes.
    fn spawn_token(
        source: &TokenSource<Self::Rt>,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>> + 'static;

    /// `future`'s output, or `None` once [`BOUND`] (or, on paused time, ten minutes)
    /// passed without it.
    fn within<F: Future>(future: F) -> impl Future<Output = Option<F::Output>>;
}

/// The next event `wanted` accepts, skipping others.
pub(crate) async fn next_event<H: Harness>(
    source: &TokenSource<H::Rt>,
    events: &mut H::Events,
    what: &str,
    wanted: impl Fn(&Event) -> bool,
) -> Event {
    loop {
        match H::next(events).await {
            Some(event) if wanted(&event) => {
                settled(source);
                return event;
            }
            Some(_) => {}
            None => panic!("no {what} event"),
        }
    }
}

pub(crate) async fn persisted<H: Harness>(source: &TokenSource<H::Rt>, events: &mut H::Events) {
    next_event::<H>(source, events, "Persisted", |e| {
        matches!(e, Event::Persisted { .. })
    })
    .await;
}

pub(crate) async fn persist_failed<H: Harness>(
    source: &TokenSource<H::Rt>,
    events: &mut H::Events,
) -> String {
    match next_event::<H>(source, events, "PersistFailed", |e| {
        matches!(e, Event::PersistFailed { .. })
    })
    .await
    {
        Event::PersistFailed { message, .. } => message.to_string(),
        _ => unreachable!("filtered"),
    }
}

/// Waits until `done` (what another task or thread does, with no event to say so).
pub(crate) async fn until<H: Harness>(h: &H, done: impl Fn() -> bool, what: &str) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < BOUND, "never: {what}");
        h.advance(Duration::ZERO).await;
        std::thread::yield_now();
    }
}

/// Waits until `source` has `n` callers waiting (they entered the machine).
pub(crate) async fn until_waiting<H: Harness>(h: &H, source: &TokenSource<H::Rt>, n: usize) {
    until(h, || source.waiting() >= n, "the callers wait").await;
}

// ----- threads -------------------------------------------------------------------------

/// Threads on a [`ManualClock`].
#[derive(Clone, Default)]
pub(crate) struct ThreadsHarness {
    clock: ManualClock,
}

/// Wakes the threads that wait for a [`ManualClock`] to reach an instant.
#[derive(Default)]
struct Moved(Mutex<()>, Condvar);

impl Wake for Moved {
    fn wake(&self) {
        let _guard = lock(&self.0);
        self.1.notify_all();
    }
}

impl ThreadsHarness {
    /// Blocks until the clock reaches `at` (bounded).
    fn wait_until(&self, at: Instant) {
        let moved = Arc::new(Moved::default());
        let as_wake: Arc<dyn Wake> = moved.clone();
        self.clock
            .on_advance(Arc::downgrade(&as_wake) as Weak<dyn Wake>);
        let mut guard = lock(&moved.0);
        let start = Instant::now();
        while self.clock.now() < at {
            assert!(
                start.elapsed() < BOUND,
                "the clock never reached the answer"
            );
            guard = moved
                .1
                .wait_timeout(guard, millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The threads fake: blocks until the manual clock passed its answer's delay.
pub(crate) struct ThreadsFake {
    harness: ThreadsHarness,
    calls: Arc<Calls>,
    answers: Answers,
}

impl threads::Refresher for ThreadsFake {
    fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.refresh_for(refresh_token, &Target::default())
    }

    fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        let start = self.harness.clock.now();
        let n = self.calls.record_for(start, refresh_token.as_ref(), target);
        let Answer { delay, result } = (self.answers)(n);
        if !delay.is_zero() {
            self.harness.wait_until(start + delay);
        }
        result.map(|token| for_target(token, target))
    }

    fn supports_targets(&self) -> bool {
        true
    }
}

/// A fake's token for `target`: its access token named after the target
/// (`{name}|at-{n}`; the default's as it is), so a test sees whose token a caller got.
pub(crate) fn for_target(mut token: Token, target: &Target) -> Token {
    if !target.is_default() {
        token.access_token = format!("{}|{}", target.name(), token.access_token.expose()).into();
    }
    token
}

impl Harness for ThreadsHarness {
    type Rt = Threads;
    type Fake = ThreadsFake;
    type Events = std::sync::mpsc::Receiver<Event>;

    fn run<F: Future<Output = ()>>(scenario: impl FnOnce(Self) -> F) {
        threads::block_on(scenario(Self::default()));
    }

    fn on_clock(&self, builder: TokenSourceBuilder<Threads>) -> TokenSourceBuilder<Threads> {
        builder.clock(self.clock.clone())
    }

    fn fake(&self, calls: Arc<Calls>, answers: Answers) -> ThreadsFake {
        ThreadsFake {
            harness: self.clone(),
            calls,
            answers,
        }
    }

    fn now(&self) -> Instant {
        self.clock.now()
    }

    async fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    fn suspend(&self, by: Duration) {
        self.clock.advance_wall(by);
    }

    async fn token(source: &TokenSource<Threads>) -> Result<Arc<AccessToken>, Error> {
        source.token()
    }

    async fn token_within(
        source: &TokenSource<Threads>,
        limit: Duration,
    ) -> Result<Arc<AccessToken>, Error> {
        source.token_within(limit)
    }

    async fn shutdown(source: &TokenSource<Threads>, limit: Duration) -> bool {
        source.shutdown(limit)
    }

    async fn until_durable(source: &TokenSource<Threads>, limit: Duration) -> bool {
        source.until_durable(limit)
    }

    fn subscribe(source: &TokenSource<Threads>) -> Self::Events {
        source.subscribe()
    }

    async fn next(events: &mut Self::Events) -> Option<Event> {
        events.recv_timeout(BOUND).ok()
    }

    fn sent(events: &mut Self::Events) -> Vec<Event> {
        events.try_iter().collect()
    }

    fn spawn_token(
        source: &TokenSource<Threads>,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>> + 'static {
        let (answer, answered) = tokio::sync::oneshot::channel();
        let source = source.clone();
        std::thread::spawn(move || {
            let _ = answer.send(source.token());
        });
        async move { answered.await.expect("the caller's thread") }
    }

    async fn within<F: Future>(future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let mut bound = Threads.sleep(BOUND);
        std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(output) = future.as_mut().poll(cx) {
                return std::task::Poll::Ready(Some(output));
            }
            std::pin::Pin::new(&mut bound).poll(cx).map(|()| None)
        })
        .await
    }
}

/// Runs every scenario named, once on each runtime: `scenarios!(name, …)` (the test
/// file declares `#[macro_use] mod support;`).
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        #[cfg(feature = "tokio")]
        mod on_tokio {
            $(
                #[test]
                fn $name() {
                    <$crate::support::TokioHarness as $crate::support::Harness>::run(
                        super::$name::<$crate::support::TokioHarness>,
                    );
                }
            )*
        }
        mod on_threads {
            $(
                #[test]
                fn $name() {
                    <$crate::support::ThreadsHarness as $crate::support::Harness>::run(
                        super::$name::<$crate::support::ThreadsHarness>,
                    );
                }
            )*
        }
    };
}
