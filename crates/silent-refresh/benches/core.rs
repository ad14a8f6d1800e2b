//! The core's hot paths: granting a fresh token, and releasing a large parked queue.
//!
//! `cargo bench -p silent-refresh --bench core`

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, criterion_group, criterion_main};
use silent_refresh::{Action, Config, Credentials, Expiry, KeyId, Session, Token, TokenMachine};

fn fresh_machine(now: Instant) -> TokenMachine {
    let mut machine = TokenMachine::new(Config::default(), now, SystemTime::now());
    let token = Token::bearer("at", Expiry::In(Duration::from_secs(3600))).with_refresh_token("rt");
    machine.handle_sign_in(now, SystemTime::now(), Credentials::Token(token));
    while machine.poll_action().is_some() {}
    machine
}

fn grant_fresh(c: &mut Criterion) {
    let now = Instant::now();
    let mut machine = fresh_machine(now);
    let mut group = c.benchmark_group("core");
    group.bench_function("grant_fresh", |b| {
        b.iter(|| {
            let id = machine.handle_request(black_box(now), None);
            match machine.poll_action() {
                Some(Action::Grant { request, token }) => {
                    debug_assert_eq!(request, id);
                    black_box(token);
                }
                other => panic!("expected a grant, got {other:?}"),
            }
        });
    });
    group.finish();
}

const PARKED: usize = 100_000;

/// A machine with `PARKED` requests waiting for the refresh it started.
fn parked_machine(now: Instant) -> (TokenMachine, silent_refresh::AttemptId) {
    let config = Config::builder()
        .max_parked(PARKED)
        .build()
        .expect("valid config");
    let mut machine = TokenMachine::new(config, now, SystemTime::now());
    machine.handle_sign_in(
        now,
        SystemTime::now(),
        Credentials::RefreshToken("rt".into()),
    );
    for _ in 0..PARKED {
        let _ = machine.handle_request(now, None);
    }
    let mut attempt = None;
    while let Some(action) = machine.poll_action() {
        if let Action::StartRefresh { attempt: a, .. } = action {
            attempt = Some(a);
        }
    }
    (machine, attempt.expect("a refresh started"))
}

fn release_parked(c: &mut Criterion) {
    let now = Instant::now();
    // The same group name, so the id is `core/release_parked/100000`.
    let mut group = c.benchmark_group("core");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("release_parked", PARKED), |b| {
        b.iter_batched(
            || parked_machine(now),
            |(mut machine, attempt)| {
                let token = Token::bearer("at-2", Expiry::In(Duration::from_secs(3600)));
                machine.handle_refresh_result(now, attempt, Ok(token));
                let mut granted = 0usize;
                while let Some(action) = machine.poll_action() {
                    if let Action::Grant { token, .. } = action {
                        black_box(token);
                        granted += 1;
                    }
                }
                assert_eq!(granted, PARKED);
                machine
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// Issue 22: a session with 8 keys, every one holding a fresh token; a request for one
/// key goes through the session to that key's machine.
fn grant_fresh_8_keys(c: &mut Criterion) {
    let now = Instant::now();
    let mut session = Session::new(Config::default(), now, SystemTime::now());
    let keys: Vec<KeyId> = std::iter::once(KeyId::DEFAULT)
        .chain((1..8).map(|_| session.add_key()))
        .collect();
    session.handle_sign_in(
        now,
        SystemTime::now(),
        Credentials::RefreshToken("rt".into()),
    );
    for &key in &keys {
        let token = Token::bearer(
            format!("at-{}", key.0),
            Expiry::In(Duration::from_secs(3600)),
        )
        .with_refresh_token("rt");
        session.handle_stored(now, SystemTime::now(), key, token);
    }
    while session.poll_action().is_some() {}
    while session.poll_event().is_some() {}
    let key = keys[5];
    let mut group = c.benchmark_group("core");
    group.bench_function("grant_fresh_8_keys", |b| {
        b.iter(|| {
            let id = session.handle_request(black_box(now), key, None);
            match session.poll_action() {
                Some((granted_key, Action::Grant { request, token })) => {
                    debug_assert_eq!((granted_key, request), (key, id));
                    black_box(token);
                }
                other => panic!("expected a grant, got {other:?}"),
            }
        });
    });
    group.finish();
}

criterion_group!(benches, grant_fresh, grant_fresh_8_keys, release_parked);
criterion_main!(benches);
