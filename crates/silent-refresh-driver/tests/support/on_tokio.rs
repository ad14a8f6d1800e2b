//! The tokio runtime's harness: a current-thread runtime on paused time (feature
//! `tokio`; without it the scenarios run on threads only).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{AccessToken, Event, RefreshFailure, Secret, Token};
use silent_refresh_driver::clock::Clock;
use silent_refresh_driver::runtime::tokio::{Tokio, TokioClock};
use silent_refresh_driver::{Error, TokenSource, TokenSourceBuilder};

use silent_refresh_oauth2::Target;

use super::{Answer, Answers, Calls, Harness, for_target, lock, secs};

/// tokio's paused clock, with a wall clock a test can move ahead alone (a suspend).
#[derive(Clone, Default)]
pub(crate) struct TokioHarness {
    wall_ahead: Arc<Mutex<Duration>>,
}

impl Clock for TokioHarness {
    fn now(&self) -> Instant {
        TokioClock.now()
    }

    fn wall(&self) -> SystemTime {
        SystemTime::now() + *lock(&self.wall_ahead)
    }
}

/// The tokio fake: waits its answer's delay on tokio's clock.
pub(crate) struct TokioFake {
    calls: Arc<Calls>,
    answers: Answers,
}

impl silent_refresh_driver::runtime::tokio::Refresher for TokioFake {
    async fn refresh(&self, refresh_token: Option<Secret>) -> Result<Token, RefreshFailure> {
        self.refresh_for(refresh_token, &Target::default()).await
    }

    async fn refresh_for(
        &self,
        refresh_token: Option<Secret>,
        target: &Target,
    ) -> Result<Token, RefreshFailure> {
        let n = self
            .calls
            .record_for(TokioClock.now(), refresh_token.as_ref(), target);
        let Answer { delay, result } = (self.answers)(n);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        result.map(|token| for_target(token, target))
    }

    fn supports_targets(&self) -> bool {
        true
    }
}

impl Harness for TokioHarness {
    type Rt = Tokio;
    type Fake = TokioFake;
    type Events = tokio::sync::broadcast::Receiver<Event>;

    fn run<F: Future<Output = ()>>(scenario: impl FnOnce(Self) -> F) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime")
            .block_on(scenario(Self::default()));
    }

    fn on_clock(&self, builder: TokenSourceBuilder<Tokio>) -> TokenSourceBuilder<Tokio> {
        builder.clock(self.clone())
    }

    fn fake(&self, calls: Arc<Calls>, answers: Answers) -> TokioFake {
        TokioFake { calls, answers }
    }

    fn now(&self) -> Instant {
        TokioClock.now()
    }

    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }

    fn suspend(&self, by: Duration) {
        *lock(&self.wall_ahead) += by;
    }

    async fn token(source: &TokenSource<Tokio>) -> Result<Arc<AccessToken>, Error> {
        source.token().await
    }

    async fn token_within(
        source: &TokenSource<Tokio>,
        limit: Duration,
    ) -> Result<Arc<AccessToken>, Error> {
        source.token_within(limit).await
    }

    async fn shutdown(source: &TokenSource<Tokio>, limit: Duration) -> bool {
        source.shutdown(limit).await
    }

    async fn until_durable(source: &TokenSource<Tokio>, limit: Duration) -> bool {
        source.until_durable(limit).await
    }

    fn subscribe(source: &TokenSource<Tokio>) -> Self::Events {
        source.subscribe()
    }

    async fn next(events: &mut Self::Events) -> Option<Event> {
        // Bounded on the paused clock: ten minutes pass at once when all else waits.
        tokio::time::timeout(secs(600), events.recv())
            .await
            .ok()
            .and_then(Result::ok)
    }

    fn sent(events: &mut Self::Events) -> Vec<Event> {
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    fn spawn_token(
        source: &TokenSource<Tokio>,
    ) -> impl Future<Output = Result<Arc<AccessToken>, Error>> + 'static {
        let source = source.clone();
        let caller = tokio::spawn(async move { source.token().await });
        async move { caller.await.expect("the caller's task") }
    }

    async fn within<F: Future>(future: F) -> Option<F::Output> {
        tokio::time::timeout(secs(600), future).await.ok()
    }
}
