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
//!   `ArcSwap`), in a loop, each call polled once as a task's `.await` of a ready
//!   future does; the time per pair of calls;
//! - `stampede/waiters/10000`: 10,000 tasks call `token()` on an expired token while an
//!   in-memory refresher answers at once; the time until all hold the new token.
//!
//! After the measurements it prints the ratios to the `ArcSwap` floor measured once
//! more interleaved (a batch of each kind of call, many times over; the median batch
//! of each), so that a machine whose load changes during the run does not tilt them:
//! one thread, and two threads at once on one source.

#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use criterion::{BenchmarkId, Criterion};
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

/// A current-thread runtime, and on it a source of a refreshable token and one of a
/// token without a refresh credential, both fresh for an hour.
fn sources() -> (tokio::runtime::Runtime, TokenSource, TokenSource) {
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
    (runtime, refreshable, static_source)
}

fn fast_path(c: &mut Criterion) {
    let (runtime, refreshable, static_source) = sources();
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

/// Polls `future` once, as a task's `.await` of a future that is ready at once does:
/// the same harness around `token()` and around the `ArcSwap` floor.
#[inline]
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// One `token()` call, polled once, its token taken as a caller's `?` takes it.
#[inline]
fn token_once(source: &TokenSource) {
    black_box(poll_once(source.token()).and_then(Result::ok));
}

/// One load of the floor, polled once the same way.
#[inline]
fn floor_once(swap: &ArcSwap<AccessToken>) {
    black_box(poll_once(async { swap.load_full() }));
}

fn contention(c: &mut Criterion) {
    // The runtime runs the sources' drivers: kept until the end.
    let (_runtime, refreshable, static_source) = sources();
    let swap = Arc::new(baseline_swap());
    let mut group = c.benchmark_group("contention");
    group.bench_function("token_fresh", |b| {
        b.iter_custom(|iters| two_threads(iters, || token_once(&refreshable)));
    });
    group.bench_function("token_fresh_static", |b| {
        b.iter_custom(|iters| two_threads(iters, || token_once(&static_source)));
    });
    group.bench_function("baseline_arcswap", |b| {
        b.iter_custom(|iters| two_threads(iters, || floor_once(&swap)));
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

/// What a batch of the interleaved measurement calls.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    Token,
    TokenStatic,
    Floor,
}

/// The three kinds of call measured interleaved, on `threads` threads at once: `rounds`
/// times a batch of each; the median batch of each, in nanoseconds per call (per round
/// of calls on all threads).
fn interleaved(
    threads: usize,
    rounds: usize,
    refreshable: &TokenSource,
    static_source: &TokenSource,
    swap: &ArcSwap<AccessToken>,
) -> [f64; 3] {
    const BATCH: u32 = 20_000;
    let call = |call: Call| match call {
        Call::Token => token_once(refreshable),
        Call::TokenStatic => token_once(static_source),
        Call::Floor => floor_once(swap),
    };
    let kinds = [Call::Token, Call::TokenStatic, Call::Floor];
    let mut times: [Vec<f64>; 3] = Default::default();
    let (go, done) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    let next: std::sync::Mutex<Option<Call>> = std::sync::Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    go.wait();
                    let Some(kind) = *next.lock().expect("next") else {
                        return;
                    };
                    for _ in 0..BATCH {
                        call(kind);
                    }
                    done.wait();
                }
            });
        }
        for _ in 0..rounds {
            for (at, kind) in kinds.into_iter().enumerate() {
                *next.lock().expect("next") = Some(kind);
                let started = Instant::now();
                go.wait();
                done.wait();
                times[at].push(started.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH));
            }
        }
        *next.lock().expect("next") = None;
        go.wait();
    });
    times.map(|mut batch| {
        batch.sort_by(f64::total_cmp);
        batch[batch.len() / 2]
    })
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    fast_path(&mut criterion);
    contention(&mut criterion);
    stampede(&mut criterion);
    criterion.final_summary();

    // The runtime runs the sources' drivers: kept until the end.
    let (_runtime, refreshable, static_source) = sources();
    let swap = baseline_swap();
    println!("\nThe fast path against the ArcSwap floor, interleaved (median of 300 batches):");
    for (threads, bound) in [(1, 1.5), (2, 1.2)] {
        let [token, token_static, floor] =
            interleaved(threads, 300, &refreshable, &static_source, &swap);
        let verdict = |ratio: f64| if ratio <= bound { "within" } else { "OVER" };
        println!(
            "  {threads} thread(s): token_fresh {token:.1} ns, token_fresh_static \
             {token_static:.1} ns, baseline_arcswap {floor:.1} ns; ratios {:.2} and {:.2} \
             ({} and {} the {bound} bound)",
            token / floor,
            token_static / floor,
            verdict(token / floor),
            verdict(token_static / floor),
        );
    }
}
