//! The fast path against its baselines, and a stampede of 10,000 waiters.
//!
//! - `fast_path/token_fresh`: `TokenSource::token()` on a fresh token;
//! - `fast_path/token_fresh_static`: the same on a token without a refresh credential
//!   (`Credentials::Token`, or a cookie-based `/auth/refresh` whose tokens carry none);
//! - `fast_path/baseline_arcswap`: `ArcSwap::load_full()` of a token (the floor);
//! - `fast_path/baseline_mutex`: a `tokio::sync::Mutex<Option<Token>>`: lock, check the
//!   expiry against the clock, clone (the naive design);
//! - `contention/{token_fresh, token_fresh_static, baseline_arcswap}`: two threads at
//!   once, each calling `token()` on one shared source (or loading one shared
//!   `ArcSwap`), in a loop; the time per pair of calls;
//! - `stampede/waiters/10000`: 10,000 tasks call `token()` on an expired token while an
//!   in-memory refresher answers at once; the time until all hold the new token.

#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
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
    let (refreshable, static_source) = runtime.block_on(async {
        (
            source(Credentials::Token(hour_token())),
            source(Credentials::Token(static_token())),
        )
    });
    let mut group = c.benchmark_group("fast_path");

    group.bench_function("token_fresh", |b| {
        b.to_async(&runtime).iter(|| async {
            match refreshable.token().await {
                Ok(token) => token,
                Err(error) => panic!("{error}"),
            }
        });
    });

    group.bench_function("token_fresh_static", |b| {
        b.to_async(&runtime).iter(|| async {
            match static_source.token().await {
                Ok(token) => token,
                Err(error) => panic!("{error}"),
            }
        });
    });

    let swap = baseline_swap();
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
    drop(refreshable);
    drop(static_source);
}

/// A token without a refresh credential, usable for an hour.
fn static_token() -> Token {
    Token::bearer("at-static", Expiry::In(Duration::from_secs(3600)))
}

/// The floor: an `ArcSwap` of a token.
fn baseline_swap() -> ArcSwap<AccessToken> {
    ArcSwap::from_pointee(AccessToken {
        generation: Generation(1),
        secret: Secret::new("at-bench"),
        token_type: "Bearer".to_owned(),
        scope: None,
        usable_until: None,
    })
}

/// `iters` rounds of `call` on each of two threads started together; the time until
/// both are done.
fn two_threads(iters: u64, call: impl Fn() + Sync) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                start.wait();
                for _ in 0..iters {
                    call();
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // The scope joins both threads before it returns.
        began
    })
    .elapsed()
}

fn contention(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (refreshable, static_source) = runtime.block_on(async {
        (
            source(Credentials::Token(hour_token())),
            source(Credentials::Token(static_token())),
        )
    });
    let swap = Arc::new(baseline_swap());
    // Each call is polled once, as a task's first poll of a ready future would.
    let token = |source: &TokenSource| {
        match silent_refresh_driver::runtime::threads::block_on(source.token()) {
            Ok(token) => black_box(token),
            Err(error) => panic!("{error}"),
        };
    };
    let mut group = c.benchmark_group("contention");
    group.bench_function("token_fresh", |b| {
        b.iter_custom(|iters| two_threads(iters, || token(&refreshable)));
    });
    group.bench_function("token_fresh_static", |b| {
        b.iter_custom(|iters| two_threads(iters, || token(&static_source)));
    });
    group.bench_function("baseline_arcswap", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(silent_refresh_driver::runtime::threads::block_on(async {
                    swap.load_full()
                }));
            })
        });
    });
    group.finish();
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

criterion_group!(benches, fast_path, contention, stampede);
criterion_main!(benches);
