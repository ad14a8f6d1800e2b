//! When a refresh starts and when a token stops being handed out, through the public
//! API: the refresh window is the machine's wake-up, `usable_until` is on the token.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Config, Credentials, Expiry, Generation, Token, TokenMachine, WakeReason};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Signs in with a token of `lifetime` (and a refresh credential); returns the machine's
/// refresh window and the token's usable-until, both as offsets from sign-in.
fn schedule(config: Config, lifetime: Duration) -> (Duration, Duration) {
    let t0 = Instant::now();
    let mut machine = TokenMachine::new(config, t0, SystemTime::now());
    let token = Token::bearer("at", Expiry::In(lifetime)).with_refresh_token("rt");
    machine.handle_sign_in(t0, SystemTime::now(), Credentials::Token(token));
    while machine.poll_action().is_some() {}
    let (token, _) = machine.fresh_token().expect("a fresh token");
    let wake = machine.poll_timeout().expect("a refresh is scheduled");
    assert_eq!(wake.reason, WakeReason::RefreshWindow);
    (wake.at - t0, token.usable_until.expect("it expires") - t0)
}

fn no_jitter() -> Config {
    Config::builder().jitter_fraction(0.0).build().unwrap()
}

#[test]
fn long_token_refreshes_threshold_before_expiry() {
    assert_eq!(schedule(no_jitter(), secs(3600)), (secs(3300), secs(3570)));
}

#[test]
fn short_token_is_not_refreshed_on_every_request() {
    // A 60 s token with a 2 h threshold (the browser bug): refresh after half its life,
    // and the 30 s margin is capped at 10% of the lifetime: usable for 54 s.
    let config = Config::builder()
        .refresh_threshold(secs(7200))
        .jitter_fraction(0.0)
        .build()
        .unwrap();
    assert_eq!(schedule(config, secs(60)), (secs(30), secs(54)));
}

#[test]
fn a_few_seconds_token_is_usable_for_most_of_its_life() {
    let (refresh_at, usable_until) = schedule(no_jitter(), secs(4));
    assert_eq!(refresh_at, secs(2));
    assert_eq!(usable_until, Duration::from_millis(3600));
}

#[test]
fn jitter_delays_within_bounds_and_never_past_usable() {
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let config = Config::builder().seed(seed).build().unwrap();
        let (refresh_at, usable_until) = schedule(config, secs(3600));
        assert!(refresh_at >= secs(3300), "seed {seed}: {refresh_at:?}");
        assert!(refresh_at < secs(3330), "seed {seed}: {refresh_at:?}");
        assert!(refresh_at <= usable_until);
        seen.insert(refresh_at.as_millis());
    }
    // A fleet with different seeds does not refresh in the same second.
    assert!(seen.len() > 150, "only {} distinct instants", seen.len());
}

#[test]
fn zero_lifetime_token_is_never_adopted() {
    let t0 = Instant::now();
    let mut machine = TokenMachine::new(Config::default(), t0, SystemTime::now());
    let token = Token::bearer("at", Expiry::In(Duration::ZERO)).with_refresh_token("rt");
    machine.handle_sign_in(t0, SystemTime::now(), Credentials::Token(token));
    assert_eq!(machine.generation(), Generation(0));
    assert!(machine.fresh_token().is_none());
}
