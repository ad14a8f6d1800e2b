//! Helpers shared by the integration tests.

#![allow(dead_code, unreachable_pub)]

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use silent_refresh_tokio::silent_refresh::{Expiry, RefreshFailure, Secret, Token};
use silent_refresh_tokio::{Refresher, TokenChange};
use tokio::time::Instant;

/// A bearer token `at-{n}` with refresh credential `rt-{n}`, living `lifetime`.
pub fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

/// What a fake refresher saw.
#[derive(Default)]
pub struct Calls {
    /// When each call started (tokio's clock).
    pub at: Mutex<Vec<Instant>>,
    /// The refresh credential each call was given.
    pub credentials: Mutex<Vec<Option<String>>>,
}

impl Calls {
    pub fn count(&self) -> usize {
        lock(&self.at).len()
    }

    pub fn times(&self) -> Vec<Instant> {
        lock(&self.at).clone()
    }

    pub fn credentials(&self) -> Vec<Option<String>> {
        lock(&self.credentials).clone()
    }
}

/// One answer of a fake refresher: after `delay`, `result`.
pub struct Answer {
    pub delay: Duration,
    pub result: Result<Token, RefreshFailure>,
}

impl Answer {
    pub fn after(delay: Duration, result: Result<Token, RefreshFailure>) -> Self {
        Self { delay, result }
    }

    pub fn now(result: Result<Token, RefreshFailure>) -> Self {
        Self::after(Duration::ZERO, result)
    }
}

/// A refresher that records its calls and answers the `n`th call (1-based) with
/// `answer(n)`, after the answer's delay on tokio's clock.
pub fn fake(
    answer: impl Fn(usize) -> Answer + Send + Sync + 'static,
) -> (Arc<Calls>, impl Refresher) {
    let calls = Arc::new(Calls::default());
    let answer = Arc::new(answer);
    let seen = calls.clone();
    let refresher = move |refresh_token: Option<Secret>| {
        let calls = seen.clone();
        let answer = answer.clone();
        async move {
            let n = {
                let mut at = lock(&calls.at);
                at.push(Instant::now());
                at.len()
            };
            lock(&calls.credentials).push(refresh_token.map(|s| s.expose().to_owned()));
            let Answer { delay, result } = answer(n);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            result
        }
    };
    (calls, refresher)
}

/// The token changes a source reported, in order.
#[derive(Default)]
pub struct Changes(pub Mutex<Vec<TokenChange>>);

impl Changes {
    pub fn callback(self: &Arc<Self>) -> impl Fn(TokenChange) + Send + Sync + 'static {
        let changes = self.clone();
        move |change| lock(&changes.0).push(change)
    }

    /// The generations persisted, in order, with their refresh credentials.
    pub fn persisted(&self) -> Vec<(u64, Option<String>)> {
        lock(&self.0)
            .iter()
            .filter_map(|change| match change {
                TokenChange::Persist { generation, token } => Some((
                    generation.0,
                    token.refresh_token.as_ref().map(|s| s.expose().to_owned()),
                )),
                _ => None,
            })
            .collect()
    }

    pub fn forgets(&self) -> usize {
        lock(&self.0)
            .iter()
            .filter(|change| matches!(change, TokenChange::Forget))
            .count()
    }
}

pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}
