//! Single flight on the wire: one refresh exchange at a time as a server would count
//! them, also when the token endpoint is slower than the configuration expects. On
//! tokio's paused clock: no real sleeping.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{lock, rotated, secs};
use silent_refresh_tokio::silent_refresh::{
    Config, Credentials, Event, RefreshFailure, Secret, Token,
};
use silent_refresh_tokio::{Refresher, TokenSource};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What a server behind a slow token endpoint would count.
#[derive(Default)]
struct Wire {
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// The refresh credential each exchange sent, and when it started.
    sent: std::sync::Mutex<Vec<(String, Instant)>>,
}

/// Decrements the in-flight count however the exchange ends (also when cancelled).
struct OnWire(Arc<Wire>);

impl Drop for OnWire {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What one exchange of the fake endpoint returns.
type Exchange =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Token, RefreshFailure>> + Send>>;

/// A rotating token endpoint whose `n`th exchange (1-based) takes `delay(n)` and then
/// answers `rotated(n, lifetime)`.
fn slow_endpoint(
    lifetime: Duration,
    delay: impl Fn(usize) -> Duration + Send + Sync + 'static,
) -> (
    Arc<Wire>,
    impl Fn(Option<Secret>) -> Exchange + Send + Sync + 'static,
) {
    let wire = Arc::new(Wire::default());
    let seen = wire.clone();
    let delay = Arc::new(delay);
    let refresher = move |refresh_token: Option<Secret>| {
        let wire = seen.clone();
        let delay = delay.clone();
        let sent = refresh_token
            .map(|s| s.expose().to_owned())
            .unwrap_or_default();
        Box::pin(async move {
            let now = wire.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            wire.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let _on_wire = OnWire(wire.clone());
            let n = {
                let mut sent_so_far = lock(&wire.sent);
                sent_so_far.push((sent, Instant::now()));
                sent_so_far.len()
            };
            tokio::time::sleep(delay(n)).await;
            Ok(rotated(n, lifetime))
        }) as Exchange
    };
    (wire, refresher)
}

/// The case, with the defaults: a 12 s token endpoint, 20 s access tokens, 16
/// tasks asking for a token for 45 s. One exchange at a time, every credential sent
/// once, and no caller fails.
#[tokio::test(start_paused = true)]
async fn a_12_second_token_endpoint_costs_nothing_with_the_defaults() {
    let (wire, refresher) = slow_endpoint(secs(20), |_| secs(12));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let end = Instant::now() + secs(45);
    let mut callers = JoinSet::new();
    for _ in 0..16 {
        let source = source.clone();
        callers.spawn(async move {
            let mut served = 0u32;
            while Instant::now() < end {
                source.token().await.map_err(|e| e.to_string())?;
                served += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Ok::<u32, String>(served)
        });
    }
    let mut served = 0;
    while let Some(caller) = callers.join_next().await {
        served += caller.expect("no panic").expect("no caller failed");
    }
    assert!(served > 16 * 45, "callers kept being served: {served}");
    assert_eq!(wire.max_in_flight.load(Ordering::SeqCst), 1);
    let sent: Vec<String> = lock(&wire.sent).iter().map(|(s, _)| s.clone()).collect();
    let expected: Vec<String> = (0..sent.len()).map(|n| format!("rt-{n}")).collect();
    assert_eq!(sent, expected, "each rotated credential sent exactly once");
    assert!(sent.len() >= 3, "several expiries crossed: {sent:?}");
}

/// Past `refresh_timeout` the exchange is overdue and runs on (its answer may carry the
/// rotated refresh token); a refresher without a timeout of its own is cancelled at its
/// hard limit, twice `refresh_timeout`, and only then does the next exchange start
/// (with the same credential: the first one's outcome is unknown).
#[tokio::test(start_paused = true)]
async fn an_exchange_without_a_timeout_of_its_own_is_cancelled_at_its_hard_limit_before_the_next_starts()
 {
    let (wire, refresher) = slow_endpoint(secs(3600), |n| if n == 1 { secs(100) } else { secs(1) });
    let config = Config::builder()
        .refresh_timeout(secs(10))
        .request_timeout(secs(60))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("source");
    let start = Instant::now();

    let token = source.token().await.expect("the retry's token");

    assert_eq!(token.secret.expose(), "at-2");
    assert_eq!(wire.max_in_flight.load(Ordering::SeqCst), 1);
    let sent = lock(&wire.sent).clone();
    assert_eq!(sent.len(), 2);
    assert_eq!(
        sent[1].0, "rt-0",
        "the cancelled exchange may not have spent it"
    );
    assert!(
        sent[1].1 - start >= secs(20),
        "the retry waited for the hard limit, not refresh_timeout: {:?}",
        sent[1].1 - start
    );
}

/// A refresher that puts its own timeout on each exchange (as `OAuth2Refresher` does)
/// is left to it: an exchange that answers past twice `refresh_timeout`, within that
/// timeout, is not cancelled, and its answer is adopted.
#[tokio::test(start_paused = true)]
async fn an_overdue_exchange_is_left_to_the_refreshers_own_timeout() {
    struct OwnTimeout<R>(R);

    impl<R: Refresher> Refresher for OwnTimeout<R> {
        fn refresh(
            &self,
            refresh_token: Option<Secret>,
        ) -> impl std::future::Future<Output = Result<Token, RefreshFailure>> + Send {
            self.0.refresh(refresh_token)
        }

        fn exchange_timeout(&self) -> Option<Duration> {
            Some(secs(30))
        }
    }

    let (wire, refresher) = slow_endpoint(secs(3600), |_| secs(25));
    let config = Config::builder()
        .refresh_timeout(secs(10))
        .request_timeout(secs(60))
        .build()
        .expect("config");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(OwnTimeout(refresher))
        .build()
        .expect("source");
    let mut events = source.subscribe();

    let token = source.token().await.expect("the late token");

    assert_eq!(
        token.secret.expose(),
        "at-1",
        "answered after 25 s, adopted"
    );
    assert_eq!(lock(&wire.sent).len(), 1, "never cancelled, never retried");
    let overdue = std::iter::from_fn(|| events.try_recv().ok())
        .any(|e| matches!(e, Event::RefreshOverdue { .. }));
    assert!(overdue, "it was overdue on the way");
}
