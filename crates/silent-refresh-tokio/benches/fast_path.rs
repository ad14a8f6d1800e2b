//! The fast path against its baselines, and a stampede of 10,000 waiters.
//!
//! - `fast_path/token_fresh`: `TokenSource::token()` on a fresh token;
//! - `fast_path/baseline_arcswap`: `ArcSwap::load_full()` of a token (the floor);
//! - `fast_path/baseline_mutex`: a `tokio::sync::Mutex<Option<Token>>`: lock, check the
//!   expiry against the clock, clone (the naive design);
//! - `stampede/waiters/10000`: 10,000 tasks call `token()` on an expired token while an
//!   in-memory refresher answers at once; the time until all hold the new token.

#![allow(missing_docs)]

use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use silent_refresh_tokio::TokenSource;
use silent_refresh_tokio::silent_refresh::{
    AccessToken, Config, Credentials, Expiry, Generation, RefreshFailure, Secret, Token,
};

fn hour_token() -> Token {
    Token::bearer("at-bench", Expiry::In(Duration::from_secs(3600))).with_refresh_token("rt-bench")
}

fn source(credentials: Credentials) -> TokenSource {
    TokenSource::builder(Config::default())
        .credentials(credentials)
        .refresher(|_: Option<Secret>| async { Ok::<_, RefreshFailure>(hour_token()) })
        .build()
        .expect("inside a runtime")
}

fn fast_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let source = runtime.block_on(async { source(Credentials::Token(hour_token())) });
    let mut group = c.benchmark_group("fast_path");

    group.bench_function("token_fresh", |b| {
        b.to_async(&runtime).iter(|| async {
            match source.token().await {
                Ok(token) => token,
                Err(error) => panic!("{error}"),
            }
        });
    });

    let swap = ArcSwap::from_pointee(AccessToken {
        generation: Generation(1),
        secret: Secret::new("at-bench"),
        token_type: "Bearer".to_owned(),
        scope: None,
        usable_until: None,
    });
    group.bench_function("baseline_arcswap", |b| {
        b.to_async(&runtime).iter(|| async { swap.load_full() });
    });

    let stored = Token {
        expiry: Expiry::At(SystemTime::now() + Duration::from_secs(3600)),
        ..hour_token()
    };
    let mutex = tokio::sync::Mutex::new(Some(stored));
    group.bench_function("baseline_mutex", |b| {
        b.to_async(&runtime).iter(|| async {
            let guard = mutex.lock().await;
            match &*guard {
                Some(token) => match token.expiry {
                    Expiry::At(at) if SystemTime::now() < at => Some(token.clone()),
                    _ => None,
                },
                None => None,
            }
        });
    });
    group.finish();
    drop(source);
}

fn stampede(c: &mut Criterion) {
    const WAITERS: usize = 10_000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("stampede");
    group.sample_size(20);
    group.bench_with_input(BenchmarkId::new("waiters", WAITERS), &WAITERS, |b, &n| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += runtime.block_on(async {
                    // Only a refresh credential: every caller must wait for the refresh.
                    let source = source(Credentials::RefreshToken("rt-bench".into()));
                    let start = Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..n {
                        let source = source.clone();
                        tasks.spawn(async move { source.token().await });
                    }
                    let mut holders = 0;
                    while let Some(joined) = tasks.join_next().await {
                        if let Ok(Ok(token)) = joined {
                            holders += usize::from(token.generation == Generation(1));
                        }
                    }
                    let elapsed = start.elapsed();
                    assert_eq!(holders, n, "every task holds the new token");
                    drop(source);
                    elapsed
                });
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, fast_path, stampede);
criterion_main!(benches);
