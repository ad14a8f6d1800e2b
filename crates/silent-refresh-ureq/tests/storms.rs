#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Outages and storms (issue 23) with blocking threads, on a `ManualClock` moved by
//! hand: the session comes back within a second or so of the token endpoint's return,
//! an API that rejects every token costs a handful of refreshes, and a 401 during an
//! outage is answered at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use silent_refresh_ureq::silent_refresh;
use silent_refresh_ureq::{
    Clock, Config, Credentials, Error, Expiry, ManualClock, RefreshFailure, Secret, Token,
    TokenSource, WaitPolicy,
};

fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

/// When each call of a fake refresher came, on the test's clock.
type Calls = Arc<Mutex<Vec<Instant>>>;

/// A refresher on `clock` that records when it was called and answers with
/// `answer(n, now)` for its `n`-th call.
fn refresher(
    clock: &ManualClock,
    answer: impl Fn(usize, Instant) -> Result<Token, RefreshFailure> + Send + Sync + 'static,
) -> (
    Calls,
    impl Fn(Option<Secret>) -> Result<Token, RefreshFailure> + Send + Sync + 'static,
) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let clock = clock.clone();
    let refresher = move |_: Option<Secret>| {
        let now = clock.now();
        let n = {
            let mut calls = seen.lock().unwrap();
            calls.push(now);
            calls.len()
        };
        answer(n, now)
    };
    (calls, refresher)
}

fn source(
    config: Config,
    clock: &ManualClock,
    refresher: impl silent_refresh_ureq::Refresher,
) -> TokenSource {
    TokenSource::builder(config)
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("source")
}

#[test]
fn after_an_8_s_outage_the_session_is_back_within_a_second_and_a_half() {
    let clock = ManualClock::new();
    let start = clock.now();
    let (down_from, back_at) = (
        start + Duration::from_secs(2),
        start + Duration::from_secs(10),
    );
    let (calls, refresher) = refresher(&clock, move |n, now| {
        if now >= down_from && now < back_at {
            Err(RefreshFailure::unreachable("connection refused"))
        } else {
            Ok(rotated(n, Duration::from_secs(4)))
        }
    });
    let source = source(Config::default(), &clock, refresher);
    let mut told_unreachable = 0;
    // A caller asks every 50 ms for 16 s.
    while clock.now() < start + Duration::from_secs(16) {
        match source.token() {
            Ok(_) => {}
            Err(error) => {
                assert!(error.is_unreachable(), "{error}");
                told_unreachable += 1;
            }
        }
        clock.advance(Duration::from_millis(50));
    }
    assert!(told_unreachable > 0);
    let times = calls.lock().unwrap().clone();
    let first_back = times
        .iter()
        .find(|t| **t >= back_at)
        .expect("a refresh after the return");
    let recovery = *first_back - back_at;
    assert!(
        recovery <= Duration::from_millis(1500),
        "the first refresh came {recovery:?} after the return"
    );
    let probes = times
        .iter()
        .filter(|t| **t >= down_from && **t < back_at)
        .count();
    assert!((4..=16).contains(&probes), "{probes} probes in 8 s");
}

#[test]
fn an_api_that_rejects_every_token_costs_at_most_ten_refreshes_in_20_s() {
    let clock = ManualClock::new();
    let start = clock.now();
    let (calls, refresher) = refresher(&clock, |n, _| Ok(rotated(n, Duration::from_secs(3600))));
    // An interactive program: told at once while refreshes are held back.
    let config = Config::builder()
        .wait_policy(WaitPolicy::FirstFailure)
        .build()
        .unwrap();
    let source = source(config, &clock, refresher);
    let mut told = 0;
    while clock.now() < start + Duration::from_secs(20) {
        // Sixteen requests, each retried once after its 401.
        for _ in 0..32 {
            match source.token() {
                Ok(token) => source.report_rejected(token.generation),
                Err(Error::Token(silent_refresh::Error::TokensRejected { count, .. })) => {
                    assert!(count >= 2);
                    told += 1;
                }
                Err(other) => panic!("{other}"),
            }
        }
        clock.advance(Duration::from_millis(50));
    }
    assert!(told > 0, "callers are told the API rejects fresh tokens");
    let refreshes = calls.lock().unwrap().len();
    assert!(refreshes <= 10, "{refreshes} token requests in 20 s");
    assert!(refreshes >= 3, "{refreshes}");
}

#[test]
fn one_401_during_an_outage_is_answered_at_once_with_the_reason() {
    let clock = ManualClock::new();
    let down = Arc::new(Mutex::new(false));
    let is_down = down.clone();
    let (_, refresher) = refresher(&clock, move |n, _| {
        if *is_down.lock().unwrap() {
            Err(RefreshFailure::unreachable(
                "could not connect to the token endpoint: connection refused",
            ))
        } else {
            Ok(rotated(n, Duration::from_secs(3600)))
        }
    });
    let source = source(Config::default(), &clock, refresher);
    let token = source.token().expect("the first token");
    *down.lock().unwrap() = true;
    clock.advance(Duration::from_secs(5));
    source.report_rejected(token.generation);
    let asked = clock.now();
    let error = source.token().expect_err("no token while down");
    assert_eq!(clock.now(), asked, "answered without waiting");
    assert!(error.is_unreachable(), "{error}");
    assert!(error.to_string().contains("connection refused"), "{error}");
}
