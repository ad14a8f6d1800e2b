#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Outages and storms (issue 23), on tokio's paused clock: the session comes back
//! within a second or so of the token endpoint's return, an API that rejects every
//! token costs a handful of refreshes, and a 401 during an outage is answered at once.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Answer, fake, millis, rotated, secs};
use silent_refresh_tokio::silent_refresh::{self, Config, Credentials, RefreshFailure};
use silent_refresh_tokio::{Error, TokenSource};
use tokio::time::{Instant, sleep};

fn source(config: Config, refresher: impl silent_refresh_tokio::Refresher) -> TokenSource {
    TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("inside a runtime")
}

/// The token endpoint refuses connections from 2 s to 10 s while 4 s tokens expire;
/// 16 callers keep asking. The first refresh after its return succeeds within 1.5 s.
#[tokio::test(start_paused = true)]
async fn after_an_8_s_outage_the_session_is_back_within_a_second_and_a_half() {
    let start = Instant::now();
    let (down_from, back_at) = (start + secs(2), start + secs(10));
    let (calls, refresher) = fake(move |n| {
        let now = Instant::now();
        if now >= down_from && now < back_at {
            Answer::after(
                millis(1),
                Err(RefreshFailure::unreachable("connection refused")),
            )
        } else {
            Answer::after(millis(20), Ok(rotated(n, secs(4))))
        }
    });
    let source = source(Config::default(), refresher);
    let end = start + secs(16);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let source = source.clone();
        callers.spawn(async move {
            let mut failed_fast = 0u32;
            while Instant::now() < end {
                match source.token().await {
                    Ok(_) => sleep(millis(50)).await,
                    Err(error) => {
                        assert!(error.is_unreachable(), "{error}");
                        failed_fast += 1;
                        sleep(millis(10)).await;
                    }
                }
            }
            failed_fast
        });
    }
    let failed: u32 = callers.join_all().await.into_iter().sum();
    assert!(failed > 0, "callers were told the endpoint is unreachable");
    let times = calls.times();
    let first_back = times
        .iter()
        .find(|t| **t >= back_at)
        .expect("a refresh after the return");
    let recovery = *first_back - back_at;
    assert!(
        recovery <= millis(1500),
        "the first refresh came {recovery:?} after the return"
    );
    // While down, it probed about once a second, not in a loop.
    let probes = times
        .iter()
        .filter(|t| **t >= down_from && **t < back_at)
        .count();
    assert!((4..=16).contains(&probes), "{probes} probes in 8 s");
    assert!(source.status().is_signed_in());
}

/// An API that answers 401 to every token, with 16 requests in flight, each
/// retrying once after a 401 as the integrations do: at most 10 token requests in 20 s.
#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_costs_at_most_ten_refreshes_in_20_s() {
    let (calls, refresher) = fake(|n| Answer::after(millis(20), Ok(rotated(n, secs(3600)))));
    let source = source(Config::default(), refresher);
    let start = Instant::now();
    let end = start + secs(20);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let source = source.clone();
        callers.spawn(async move {
            let mut told = 0u32;
            while Instant::now() < end {
                // One request: the token, a 401, the report, one retry, a 401 again.
                for _ in 0..2 {
                    match source.token().await {
                        Ok(token) => {
                            sleep(millis(5)).await; // the API's round trip
                            source.report_rejected(token.generation);
                        }
                        Err(Error::Token(silent_refresh::Error::TokensRejected {
                            count, ..
                        })) => {
                            assert!(count >= 2);
                            told += 1;
                            sleep(millis(10)).await;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            told
        });
    }
    callers.join_all().await;
    let refreshes = calls.times().iter().filter(|t| **t < end).count();
    assert!(refreshes <= 10, "{refreshes} token requests in 20 s");
    assert!(
        refreshes >= 3,
        "{refreshes}: rejections still refresh, slowly"
    );
}

/// A token valid for ten more minutes is rejected once while the token endpoint is
/// down: the caller that needs a new one is answered within a second, naming why.
#[tokio::test(start_paused = true)]
async fn one_401_during_an_outage_is_answered_within_a_second_with_the_reason() {
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let (_, refresher) = fake(move |n| {
        if is_down.load(Ordering::SeqCst) {
            Answer::after(
                millis(1),
                Err(RefreshFailure::unreachable(
                    "could not connect to the token endpoint: connection refused",
                )),
            )
        } else {
            Answer::now(Ok(rotated(n, secs(3600))))
        }
    });
    let source = source(Config::default(), refresher);
    let token = source.token().await.expect("the first token");
    down.store(true, Ordering::SeqCst);
    sleep(secs(5)).await;
    source.report_rejected(token.generation);
    let asked = Instant::now();
    let error = source.token().await.expect_err("no token while down");
    assert!(Instant::now() - asked <= Duration::from_secs(1));
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}
