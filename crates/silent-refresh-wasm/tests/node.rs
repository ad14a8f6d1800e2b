//! The token source on the browser's runtime, in Node (no browser API is needed): the
//! driver as a task of the event loop, its timer `setTimeout`, a closure refresher.
//! The scenarios the tokio and threads runtimes run: one refresh for many callers, a
//! failure answered to every caller, the refresh before expiry.
//!
//! Run with `wasm-bindgen-test-runner` (see `.ci/wasm-tests`).

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use silent_refresh_driver::runtime::Runtime;
use silent_refresh_wasm::silent_refresh::{
    AccessToken, Config, Credentials, Event, Expiry, Generation, RefreshFailure, Secret, Status,
    Token, time::Instant,
};
use silent_refresh_wasm::{Error, Refresher, TokenSource, Wasm};
use wasm_bindgen_test::wasm_bindgen_test;

/// A bearer token `at-{n}` with refresh credential `rt-{n}`, living `lifetime`.
fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

/// The refresh credentials a fake refresher was given, in order.
type Calls = Rc<RefCell<Vec<Option<String>>>>;

/// A refresher that records its calls and answers the `n`th (1-based) with `answer(n)`
/// after `delay` (a `setTimeout`).
fn fake(
    delay: Duration,
    answer: impl Fn(usize) -> Result<Token, RefreshFailure> + 'static,
) -> (Calls, impl Refresher) {
    let calls = Calls::default();
    let seen = calls.clone();
    let answer = Rc::new(answer);
    let refresher = move |refresh_token: Option<Secret>| {
        let (calls, answer) = (seen.clone(), answer.clone());
        async move {
            let n = {
                let mut calls = calls.borrow_mut();
                calls.push(refresh_token.map(|s| s.expose().to_owned()));
                calls.len()
            };
            Wasm.sleep(delay).await;
            answer(n)
        }
    };
    (calls, refresher)
}

fn source(credentials: Credentials, refresher: impl Refresher) -> TokenSource {
    TokenSource::builder(Config::default())
        .credentials(credentials)
        .refresher(refresher)
        .build()
        .expect("a source on the page's event loop")
}

/// `n` concurrent `token()` calls.
async fn callers(source: &TokenSource, n: usize) -> Vec<Result<Arc<AccessToken>, Error>> {
    join_all((0..n).map(|_| source.token())).await
}

#[wasm_bindgen_test]
async fn a_thousand_callers_without_a_token_share_one_refresh() {
    let (calls, refresher) = fake(Duration::from_millis(20), |n| {
        Ok(rotated(n, Duration::from_secs(3600)))
    });
    let source = source(Credentials::RefreshToken("rt-0".into()), refresher);

    let results = callers(&source, 1_000).await;

    assert_eq!(results.len(), 1_000);
    let first = results[0].as_ref().expect("a token").clone();
    for result in &results {
        let token = result.as_ref().expect("every caller gets the token");
        assert!(Arc::ptr_eq(token, &first), "all get the one new token");
    }
    assert_eq!(first.secret.expose(), "at-1");
    assert_eq!(first.generation, Generation(1));
    assert_eq!(*calls.borrow(), [Some("rt-0".to_owned())], "one refresh");
    assert_eq!(source.waiting(), 0);
}

#[wasm_bindgen_test]
async fn a_terminal_failure_is_answered_to_every_caller_then_fast_until_sign_in() {
    let (calls, refresher) = fake(Duration::from_millis(20), |n| match n {
        1 => Err(RefreshFailure::terminal(
            "invalid_grant: the refresh token was revoked",
        )),
        _ => Ok(rotated(n, Duration::from_secs(3600))),
    });
    let source = source(Credentials::RefreshToken("rt-0".into()), refresher);

    for result in callers(&source, 100).await {
        let error = result.expect_err("the refresh failed for good");
        assert!(error.needs_sign_in(), "{error}");
    }
    assert!(matches!(source.status(), Status::SignInRequired(_)));
    let error = source.token().await.expect_err("fails fast");
    assert!(error.needs_sign_in(), "{error}");
    assert_eq!(calls.borrow().len(), 1, "no refresh is tried again");

    source.sign_in(Credentials::RefreshToken("rt-new".into()));
    let token = source.token().await.expect("a token after sign-in");
    assert_eq!(token.secret.expose(), "at-2");
    assert_eq!(
        *calls.borrow(),
        [Some("rt-0".to_owned()), Some("rt-new".to_owned())]
    );
}

#[wasm_bindgen_test]
async fn a_transient_failure_is_answered_and_the_next_call_refreshes_again() {
    let (calls, refresher) = fake(Duration::from_millis(5), |n| match n {
        1 => Err(RefreshFailure::transient("503 from the token endpoint")),
        _ => Ok(rotated(n, Duration::from_secs(3600))),
    });
    let config = Config::builder()
        .backoff_initial(Duration::from_millis(50))
        .build()
        .expect("a valid configuration");
    let source = TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("a source");
    let mut events = source.subscribe();

    let token = source.token().await.expect("the retry after the backoff");
    assert_eq!(token.secret.expose(), "at-2");
    assert_eq!(
        *calls.borrow(),
        [Some("rt-0".to_owned()), Some("rt-0".to_owned())],
        "the failed credential is tried again, not lost"
    );
    let mut failed = 0;
    while let Some(event) = events.try_recv() {
        failed += usize::from(matches!(event, Event::RefreshFailed { .. }));
    }
    assert_eq!(failed, 1, "the failure was reported");
}

#[wasm_bindgen_test]
async fn a_short_lived_token_is_refreshed_in_its_window_while_idle() {
    let (calls, refresher) = fake(Duration::ZERO, |n| {
        Ok(rotated(n, Duration::from_secs(3600)))
    });
    let start = Instant::now();
    // Two seconds: its window opens at half its life (1 s), it is handed out until a
    // tenth of its life before expiry (1.8 s).
    let source = source(
        Credentials::Token(rotated(0, Duration::from_secs(2))),
        refresher,
    );
    let mut events = source.subscribe();
    let first = source.token().await.expect("the signed-in token");
    assert_eq!(first.secret.expose(), "at-0");
    let usable_until = first.usable_until.expect("an expiring token");

    // Nobody calls: the driver's own timer (setTimeout) starts the refresh.
    loop {
        if let Event::TokenAdopted {
            attempt: Some(_), ..
        } = events.recv().await
        {
            break;
        }
    }
    let adopted = Instant::now();
    assert!(
        adopted >= start + Duration::from_secs(1),
        "not before its window opened: {:?}",
        adopted - start
    );
    assert!(
        adopted < usable_until,
        "before the old token stopped being handed out: {:?}",
        adopted - start
    );
    let token = source.token().await.expect("the refreshed token");
    assert_eq!(token.secret.expose(), "at-1");
    assert_eq!(*calls.borrow(), [Some("rt-0".to_owned())]);
}
