//! Outages and storms (issue 23), through the generic source, once on each runtime:
//! the session comes back within a second or so of the token endpoint's return, an API
//! that rejects every token costs a handful of refreshes, and a 401 during an outage is
//! answered at once.

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use silent_refresh::{Config, Credentials, RefreshFailure, WaitPolicy};
use silent_refresh_driver::{Error, TokenSource};
use support::{Answer, Calls, Harness, millis, rotated, secs};

scenarios!(
    after_an_8_s_outage_the_session_is_back_within_a_second_and_a_half,
    an_api_that_rejects_every_token_costs_at_most_ten_refreshes_in_20_s,
    one_401_during_an_outage_is_answered_at_once_with_the_reason,
);

/// A source signed in with a refresh credential, refreshing with `answers`.
fn source<H: Harness>(
    h: &H,
    config: Config,
    answers: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (TokenSource<H::Rt>, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let source = h
        .builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(h.fake(calls.clone(), Arc::new(answers)))
        .build()
        .expect("the source starts");
    (source, calls)
}

/// The token endpoint refuses connections from 2 s to 10 s while 4 s tokens expire; a
/// caller asks every 50 ms. The first refresh after its return succeeds within 1.5 s.
async fn after_an_8_s_outage_the_session_is_back_within_a_second_and_a_half<H: Harness>(h: H) {
    let start = h.now();
    let (down_from, back_at) = (start + secs(2), start + secs(10));
    let clock = h.clone();
    let (source, calls) = source(&h, Config::default(), move |n| {
        let now = clock.now();
        if now >= down_from && now < back_at {
            Answer::now(Err(RefreshFailure::unreachable("connection refused")))
        } else {
            Answer::now(Ok(rotated(n, secs(4))))
        }
    });
    let mut told_unreachable = 0;
    while h.now() < start + secs(16) {
        match H::token(&source).await {
            Ok(_) => {}
            Err(error) => {
                assert!(error.is_unreachable(), "{error}");
                told_unreachable += 1;
            }
        }
        h.advance(millis(50)).await;
    }
    assert!(
        told_unreachable > 0,
        "callers were told the endpoint is unreachable"
    );
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

/// An API that answers 401 to every token: sixteen requests every 50 ms, each retried
/// once after its 401, cost at most ten token requests in 20 s. An interactive program
/// (`WaitPolicy::FirstFailure`) is told at once while refreshes are held back.
async fn an_api_that_rejects_every_token_costs_at_most_ten_refreshes_in_20_s<H: Harness>(h: H) {
    let start = h.now();
    let config = Config::builder()
        .wait_policy(WaitPolicy::FirstFailure)
        .build()
        .expect("config");
    let (source, calls) = source(&h, config, |n| Answer::now(Ok(rotated(n, secs(3600)))));
    let mut told = 0;
    while h.now() < start + secs(20) {
        for _ in 0..32 {
            match H::token(&source).await {
                Ok(token) => source.report_rejected(token.generation),
                Err(Error::Token(silent_refresh::Error::TokensRejected { count, .. })) => {
                    assert!(count >= 2);
                    told += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        h.advance(millis(50)).await;
    }
    assert!(told > 0, "callers are told the API rejects fresh tokens");
    let refreshes = calls.count();
    assert!(refreshes <= 10, "{refreshes} token requests in 20 s");
    assert!(
        refreshes >= 3,
        "{refreshes}: rejections still refresh, slowly"
    );
}

/// A token valid for an hour is rejected once while the token endpoint is down: the
/// caller that needs a new one is answered at once, naming why.
async fn one_401_during_an_outage_is_answered_at_once_with_the_reason<H: Harness>(h: H) {
    let down = Arc::new(AtomicBool::new(false));
    let is_down = down.clone();
    let (source, _) = source(&h, Config::default(), move |n| {
        if is_down.load(Ordering::SeqCst) {
            Answer::now(Err(RefreshFailure::unreachable(
                "could not connect to the token endpoint: connection refused",
            )))
        } else {
            Answer::now(Ok(rotated(n, secs(3600))))
        }
    });
    let token = H::token(&source).await.expect("the first token");
    down.store(true, Ordering::SeqCst);
    h.advance(secs(5)).await;
    source.report_rejected(token.generation);
    let asked = h.now();
    let error = H::token(&source).await.expect_err("no token while down");
    assert!(h.now() - asked <= secs(1), "answered without waiting");
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}
