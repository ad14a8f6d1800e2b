//! The token source on tokio's paused clock: no real sleeping, every instant exact.

mod common;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use common::{Answer, Changes, fake, lock, millis, rotated, secs};
use http::StatusCode;
use silent_refresh_tokio::silent_refresh::{
    self, Config, Credentials, Expiry, Generation, RefreshFailure, RefreshMode, Secret, Status,
    Token, WaitPolicy,
};
use silent_refresh_tokio::{AuthorizedClient, Error, Refresher, TokenChange, TokenSource};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};

/// A token whose wall-clock expiry has passed, with refresh credential `rt-0`.
fn expired_token() -> Token {
    Token {
        expiry: Expiry::At(SystemTime::now() - secs(60)),
        ..rotated(0, secs(1))
    }
}

fn source_with(
    config: Config,
    credentials: Option<Credentials>,
    refresher: impl Refresher,
    changes: Option<&Arc<Changes>>,
) -> TokenSource {
    let mut builder = TokenSource::builder(config);
    if let Some(credentials) = credentials {
        builder = builder.credentials(credentials);
    }
    if let Some(changes) = changes {
        builder = builder.on_token_change(changes.callback());
    }
    builder
        .refresher(refresher)
        .build()
        .expect("inside a runtime")
}

fn spawn_callers(
    source: &TokenSource,
    n: usize,
) -> JoinSet<Result<Arc<silent_refresh::AccessToken>, Error>> {
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let source = source.clone();
        tasks.spawn(async move { source.token().await });
    }
    tasks
}

fn expect_token(
    result: &Result<Arc<silent_refresh::AccessToken>, Error>,
) -> &Arc<silent_refresh::AccessToken> {
    match result {
        Ok(token) => token,
        Err(error) => panic!("expected a token, got: {error}"),
    }
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_callers_on_an_expired_token_share_one_refresh() {
    let (calls, refresher) = fake(|n| Answer::after(millis(200), Ok(rotated(n, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(expired_token())),
        refresher,
        None,
    );
    let start = Instant::now();

    let results = spawn_callers(&source, 10_000).join_all().await;

    assert_eq!(results.len(), 10_000);
    let first = expect_token(&results[0]).clone();
    for result in &results {
        assert!(
            Arc::ptr_eq(expect_token(result), &first),
            "all get the one new token"
        );
    }
    assert_eq!(first.secret.expose(), "at-1");
    assert_eq!(first.generation, Generation(1));
    assert_eq!(calls.count(), 1, "exactly one refresh");
    assert_eq!(calls.credentials(), [Some("rt-0".to_owned())]);
    assert_eq!(
        start.elapsed(),
        millis(200),
        "released when the refresh answered"
    );
    assert_eq!(source.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_401s_on_the_current_generation_causes_one_refresh() {
    let (calls, refresher) = fake(|n| Answer::after(millis(100), Ok(rotated(n + 1, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(rotated(1, secs(3600)))),
        refresher,
        None,
    );
    let rejected = source.token().await.expect("the signed-in token");
    assert_eq!(rejected.secret.expose(), "at-1");

    let mut tasks = JoinSet::new();
    for _ in 0..10_000 {
        let source = source.clone();
        let generation = rejected.generation;
        tasks.spawn(async move {
            source.report_rejected(generation);
            source.token().await
        });
    }
    let results = tasks.join_all().await;

    for result in &results {
        let token = expect_token(result);
        assert_eq!(token.secret.expose(), "at-2");
        assert_eq!(token.generation, Generation(2));
    }
    assert_eq!(
        calls.count(),
        1,
        "10,000 rejections of one generation, one refresh"
    );
    assert_eq!(calls.credentials(), [Some("rt-1".to_owned())]);

    // A late 401 for the old generation changes nothing: the current token is newer.
    let before = Instant::now();
    for _ in 0..100 {
        source.report_rejected(rejected.generation);
        let token = source.token().await.expect("current token");
        assert_eq!(token.generation, Generation(2));
    }
    assert_eq!(Instant::now(), before, "granted at once");
    assert_eq!(calls.count(), 1);
}

/// The default: a caller waits out a transient failure while the next attempt can still
/// come before its deadline, and is answered with the failure as soon as it cannot.
#[tokio::test(start_paused = true)]
async fn transient_failures_answer_each_parked_caller_once_its_wait_cannot_succeed() {
    let (calls, refresher) = fake(|_| {
        Answer::after(
            millis(10),
            Err(RefreshFailure::transient("the token endpoint answered 503")),
        )
    });
    let config = Config::builder()
        .request_timeout(secs(5))
        .build()
        .expect("valid config");
    let source = source_with(
        config,
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..1_000 {
        let source = source.clone();
        tasks.spawn(async move { timeout(secs(60), source.token()).await });
    }
    for result in tasks.join_all().await {
        match result {
            Err(_) => panic!("a caller hung past its deadline"),
            Ok(Err(Error::Token(silent_refresh::Error::RefreshFailed { reason, retry_in }))) => {
                assert!(reason.contains("503"), "{reason}");
                assert!(start.elapsed() + retry_in >= secs(5), "{retry_in:?}");
            }
            Ok(other) => panic!("expected RefreshFailed, got {other:?}"),
        }
    }
    let answered = start.elapsed();
    assert!(
        answered < secs(5),
        "answered before the deadline: {answered:?}"
    );
    assert!(calls.count() >= 2, "the short backoffs were waited out");
    assert_eq!(source.waiting(), 0);
}

#[tokio::test(start_paused = true)]
/// A batch job (`WaitPolicy::UntilDeadline`) rides out transient failures until each
/// caller's own deadline.
async fn batch_callers_wait_out_transient_failures_until_their_deadline() {
    let (calls, refresher) = fake(|_| {
        Answer::after(
            millis(10),
            Err(RefreshFailure::transient("the token endpoint answered 503")),
        )
    });
    let config = Config::builder()
        .request_timeout(secs(5))
        .wait_policy(WaitPolicy::UntilDeadline)
        .build()
        .expect("valid config");
    let source = source_with(
        config,
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );
    let start = Instant::now();

    let mut tasks = JoinSet::new();
    for _ in 0..1_000 {
        let source = source.clone();
        tasks.spawn(async move { timeout(secs(60), source.token()).await });
    }
    let results = tasks.join_all().await;

    for result in results {
        match result {
            Err(_) => panic!("a caller hung past its deadline"),
            Ok(Err(Error::Token(silent_refresh::Error::DeadlineExceeded { last_failure }))) => {
                let last = last_failure.expect("the last failure is reported");
                assert!(last.contains("503"), "{last}");
            }
            Ok(other) => panic!("expected DeadlineExceeded, got {other:?}"),
        }
    }
    assert_eq!(
        start.elapsed(),
        secs(5),
        "failed at the request deadline, not before"
    );
    // Retried with exponential backoff (1 s, 2 s, ... less jitter) meanwhile.
    let attempts = calls.count();
    assert!((2..=5).contains(&attempts), "{attempts} attempts");
    let times = calls.times();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= millis(500),
            "backoff between attempts: {times:?}"
        );
    }
    assert_eq!(source.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_terminal_failure_fails_every_parked_caller_then_fails_fast_until_sign_in() {
    let (calls, refresher) = fake(|n| match n {
        1 => Answer::after(
            millis(50),
            Err(RefreshFailure::terminal(
                "invalid_grant: the refresh token was revoked",
            )),
        ),
        _ => Answer::now(Ok(rotated(n, secs(3600)))),
    });
    let source = source_with(
        Config::default(),
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );

    let results = spawn_callers(&source, 1_000).join_all().await;
    for result in results {
        let error = result.expect_err("the refresh failed for good");
        assert!(error.needs_sign_in(), "{error}");
        assert!(error.to_string().contains("sign in again"), "{error}");
    }
    assert!(matches!(source.status(), Status::SignInRequired(_)));

    let before = Instant::now();
    let error = source.token().await.expect_err("fails fast");
    assert!(error.needs_sign_in());
    assert_eq!(Instant::now(), before, "no waiting");
    assert_eq!(calls.count(), 1, "no refresh is tried again");

    source.sign_in(Credentials::RefreshToken("rt-new".into()));
    let token = source.token().await.expect("a token after sign-in");
    assert_eq!(token.secret.expose(), "at-2");
    assert_eq!(
        calls.credentials(),
        [Some("rt-0".to_owned()), Some("rt-new".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_transient_failure_the_next_refresh_waits_out_the_backoff() {
    let (calls, refresher) = fake(|n| match n {
        1 => Answer::now(Err(
            RefreshFailure::transient("429 too many requests").with_retry_after(secs(10))
        )),
        _ => Answer::now(Ok(rotated(n, secs(3600)))),
    });
    let source = source_with(
        Config::default(),
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );
    let start = Instant::now();
    let mut first = spawn_callers(&source, 1);

    sleep(secs(5)).await;
    assert_eq!(
        calls.count(),
        1,
        "the first attempt failed, the backoff runs"
    );
    let mut second = spawn_callers(&source, 1);
    tokio::task::yield_now().await;
    assert_eq!(
        calls.count(),
        1,
        "a new caller does not cut the backoff short"
    );
    assert_eq!(source.waiting(), 2);

    for tasks in [&mut first, &mut second] {
        let result = tasks
            .join_next()
            .await
            .expect("one task")
            .expect("no panic");
        assert_eq!(expect_token(&result).secret.expose(), "at-2");
    }
    assert_eq!(start.elapsed(), secs(10), "released when the backoff ended");
    let times = calls.times();
    assert_eq!(times.len(), 2);
    assert_eq!(times[1] - times[0], secs(10), "Retry-After honoured");
}

#[tokio::test(start_paused = true)]
async fn stale_while_refreshing_hands_out_the_old_token_while_one_refresh_runs() {
    let (calls, refresher) = fake(|n| Answer::after(secs(8), Ok(rotated(n, secs(100)))));
    // Lifetime 100 s, no jitter: the refresh window opens at 50 s, the token serves
    // until 90 s, and the refresh runs from 50 s to 58 s.
    let source = source_with(
        no_jitter(Config::builder()),
        Some(Credentials::Token(rotated(0, secs(100)))),
        refresher,
        None,
    );
    let start = Instant::now();

    sleep(secs(55)).await;
    assert_eq!(
        calls.times(),
        [start + secs(50)],
        "the proactive refresh is running"
    );
    let before = Instant::now();
    for _ in 0..100 {
        let token = source.token().await.expect("the old token");
        assert_eq!(token.secret.expose(), "at-0");
    }
    let results = spawn_callers(&source, 1_000).join_all().await;
    for result in &results {
        assert_eq!(expect_token(result).secret.expose(), "at-0");
    }
    assert_eq!(Instant::now(), before, "nobody waited");
    assert_eq!(calls.count(), 1, "one refresh");

    sleep(secs(5)).await;
    let token = source.token().await.expect("the new token");
    assert_eq!(token.secret.expose(), "at-1");
    assert_eq!(token.generation, Generation(2));
    assert_eq!(calls.count(), 1);
}

fn no_jitter(builder: silent_refresh::ConfigBuilder) -> Config {
    builder.jitter_fraction(0.0).build().expect("valid config")
}

#[tokio::test(start_paused = true)]
async fn wait_for_fresh_parks_callers_inside_the_window_until_the_refresh_ends() {
    let (calls, refresher) = fake(|n| Answer::after(secs(8), Ok(rotated(n, secs(100)))));
    let source = source_with(
        no_jitter(Config::builder().mode(RefreshMode::WaitForFresh)),
        Some(Credentials::Token(rotated(0, secs(100)))),
        refresher,
        None,
    );

    sleep(secs(55)).await;
    let refresh_started = calls.times()[0];
    let token = source.token().await.expect("the new token");
    assert_eq!(token.secret.expose(), "at-1");
    assert_eq!(
        Instant::now(),
        refresh_started + secs(8),
        "waited for the refresh, not longer"
    );
    assert_eq!(calls.count(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_thousands_of_parked_callers_leaks_nothing_and_the_refresh_goes_on() {
    let (calls, refresher) = fake(|n| Answer::after(secs(1), Ok(rotated(n, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );

    // 3,000 give up after 100 ms, 2,000 are aborted at 300 ms, 3,000 wait it out.
    let mut impatient = JoinSet::new();
    for _ in 0..3_000 {
        let source = source.clone();
        impatient.spawn(async move { timeout(millis(100), source.token()).await });
    }
    let mut aborted = spawn_callers(&source, 2_000);
    let patient = spawn_callers(&source, 3_000);

    sleep(millis(300)).await;
    assert_eq!(source.waiting(), 5_000, "the impatient ones left");
    aborted.abort_all();
    while let Some(joined) = aborted.join_next().await {
        assert!(joined.expect_err("aborted").is_cancelled());
    }
    assert_eq!(source.waiting(), 3_000, "the aborted ones left");

    for result in impatient.join_all().await {
        assert!(result.is_err(), "gave up at 100 ms");
    }
    for result in &patient.join_all().await {
        assert_eq!(expect_token(result).secret.expose(), "at-1");
    }
    assert_eq!(
        calls.count(),
        1,
        "the shared refresh was not cancelled or repeated"
    );
    assert_eq!(source.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn refreshes_proactively_while_idle() {
    let changes = Arc::new(Changes::default());
    let (calls, refresher) = fake(|n| Answer::after(millis(300), Ok(rotated(n, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(rotated(0, secs(3600)))),
        refresher,
        Some(&changes),
    );

    // Nobody asks for a token; the window opens 300 s (plus jitter) before expiry.
    sleep(secs(3600)).await;

    let times = calls.times();
    assert_eq!(times.len(), 1, "one proactive refresh");
    let opened = times[0].duration_since(Instant::now() - secs(3600));
    assert!(
        (secs(3300)..secs(3330)).contains(&opened),
        "refresh started {opened:?} after sign-in"
    );
    assert_eq!(
        changes.persisted(),
        [(1, Some("rt-0".to_owned())), (2, Some("rt-1".to_owned()))]
    );
    let before = Instant::now();
    let token = source.token().await.expect("fresh token");
    assert_eq!(token.secret.expose(), "at-1");
    assert_eq!(Instant::now(), before);
}

#[tokio::test(start_paused = true)]
async fn the_background_task_ends_when_the_last_handle_is_dropped() {
    let marker = Arc::new(());
    let held = marker.clone();
    let refresher = move |_: Option<Secret>| {
        let _held = &held;
        async { Ok::<_, RefreshFailure>(rotated(1, secs(3600))) }
    };
    let source = source_with(
        Config::default(),
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );
    source.token().await.expect("token");
    let clone = source.clone();

    drop(source);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(Arc::strong_count(&marker), 2, "a clone still holds it");
    assert_eq!(clone.token().await.expect("token").secret.expose(), "at-1");

    drop(clone);
    for _ in 0..10 {
        if Arc::strong_count(&marker) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(
        Arc::strong_count(&marker),
        1,
        "the task ended and dropped the refresher"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refresh_in_flight_at_shutdown_still_reports_its_rotated_credential() {
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let (calls, refresher) = fake(|n| Answer::after(secs(2), Ok(rotated(n, secs(3600)))));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .on_token_change(move |change| {
            let _ = sender.send(change);
        })
        .build()
        .expect("source");

    let gave_up = timeout(millis(10), source.token()).await;
    assert!(gave_up.is_err());
    assert_eq!(calls.count(), 1);
    drop(source);

    let change = timeout(secs(60), receiver.recv())
        .await
        .expect("reported before the task ended");
    match change {
        Some(TokenChange::Persist { generation, token }) => {
            assert_eq!(generation, Generation(1));
            assert_eq!(
                token.refresh_token.map(|s| s.expose().to_owned()),
                Some("rt-1".into())
            );
        }
        other => panic!("expected the rotated token, got {other:?}"),
    }
    assert!(receiver.recv().await.is_none(), "then the task ended");
}

#[tokio::test(start_paused = true)]
async fn the_new_token_is_persisted_before_any_caller_gets_it() {
    let persisted = Arc::new(AtomicU64::new(0));
    let stored = persisted.clone();
    let changes = Arc::new(Changes::default());
    let record = changes.callback();
    let (_calls, refresher) = fake(|n| Answer::after(millis(100), Ok(rotated(n, secs(3600)))));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { generation, .. } = &change {
                stored.store(generation.0, Ordering::SeqCst);
            }
            record(change);
        })
        .build()
        .expect("source");

    for round in 1..=3u64 {
        let mut tasks = JoinSet::new();
        for _ in 0..1_000 {
            let source = source.clone();
            let persisted = persisted.clone();
            tasks.spawn(async move {
                let token = source.token().await.expect("token");
                assert!(
                    persisted.load(Ordering::SeqCst) >= token.generation.0,
                    "granted {} before it was persisted",
                    token.generation
                );
                token.generation
            });
        }
        for generation in tasks.join_all().await {
            assert_eq!(generation, Generation(round));
        }
        source.report_rejected(Generation(round));
    }
    let persisted = changes.persisted();
    assert_eq!(
        persisted,
        [
            (1, Some("rt-1".to_owned())),
            (2, Some("rt-2".to_owned())),
            (3, Some("rt-3".to_owned()))
        ]
    );
    for change in lock(&changes.0).iter() {
        if let TokenChange::Persist { token, .. } = change {
            assert!(
                matches!(token.expiry, Expiry::At(_)),
                "stored with a wall-clock expiry"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn callers_wait_for_sign_in_when_there_are_no_credentials() {
    let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(n, secs(3600)))));
    let source = source_with(Config::default(), None, refresher, None);
    let waiting = spawn_callers(&source, 100);

    sleep(secs(1)).await;
    assert_eq!(source.waiting(), 100);
    assert_eq!(source.status(), Status::AwaitingSignIn);
    source.sign_in(Credentials::Token(Token::bearer(
        "at-signed-in",
        Expiry::In(secs(3600)),
    )));

    for result in &waiting.join_all().await {
        assert_eq!(expect_token(result).secret.expose(), "at-signed-in");
    }
    assert_eq!(calls.count(), 0, "the sign-in's token needed no refresh");
}

#[tokio::test(start_paused = true)]
async fn sign_out_fails_waiting_callers_and_forgets_the_token() {
    let changes = Arc::new(Changes::default());
    let (calls, refresher) = fake(|n| Answer::after(secs(5), Ok(rotated(n, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        Some(&changes),
    );
    let waiting = spawn_callers(&source, 100);
    sleep(secs(1)).await;
    assert_eq!(calls.count(), 1);

    source.sign_out();

    for result in waiting.join_all().await {
        assert!(matches!(
            result,
            Err(Error::Token(silent_refresh::Error::SignedOut))
        ));
    }
    assert_eq!(changes.forgets(), 1);
    // The refresh answers after the sign-out: its token is not adopted.
    sleep(secs(20)).await;
    assert_eq!(source.status(), Status::SignedOut);
    let error = source.token().await.expect_err("signed out");
    assert!(error.needs_sign_in(), "{error}");
    assert!(changes.persisted().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_token_change_callback_may_sign_out_without_deadlock() {
    let slot: Arc<OnceLock<TokenSource>> = Arc::new(OnceLock::new());
    let inside = slot.clone();
    let changes = Arc::new(Changes::default());
    let record = changes.callback();
    let (_calls, refresher) = fake(|n| Answer::now(Ok(rotated(n + 1, secs(3600)))));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(rotated(1, secs(3600))))
        .refresher(refresher)
        .on_token_change(move |change| {
            let second =
                matches!(&change, TokenChange::Persist { generation, .. } if generation.0 == 2);
            record(change);
            if second && let Some(source) = inside.get() {
                source.sign_out();
                source.report_rejected(Generation(2));
            }
        })
        .build()
        .expect("source");
    assert!(slot.set(source.clone()).is_ok());

    source.report_rejected(Generation(1));
    let outcome = timeout(secs(60), source.token())
        .await
        .expect("no deadlock");
    // The grant queued with the persisted token is delivered; then the sign-out applies.
    assert_eq!(outcome.expect("token").generation, Generation(2));
    assert_eq!(source.status(), Status::SignedOut);
    assert_eq!(changes.forgets(), 1);
    assert!(
        source
            .token()
            .await
            .expect_err("signed out")
            .needs_sign_in()
    );
}

#[tokio::test(start_paused = true)]
async fn too_many_waiting_callers_get_a_clear_overload_error() {
    let (_calls, refresher) = fake(|n| Answer::after(secs(1), Ok(rotated(n, secs(3600)))));
    let config = Config::builder()
        .max_parked(10)
        .build()
        .expect("valid config");
    let source = source_with(
        config,
        Some(Credentials::RefreshToken("rt-0".into())),
        refresher,
        None,
    );
    let waiting = spawn_callers(&source, 10);
    while source.waiting() < 10 {
        tokio::task::yield_now().await;
    }

    let error = source.token().await.expect_err("over the cap");
    assert!(
        matches!(
            error,
            Error::Token(silent_refresh::Error::Overloaded { limit: 10 })
        ),
        "{error}"
    );
    assert!(error.to_string().contains("max_parked"), "{error}");
    for result in &waiting.join_all().await {
        assert_eq!(expect_token(result).secret.expose(), "at-1");
    }
}

#[tokio::test(start_paused = true)]
async fn the_send_helper_retries_once_after_a_401_with_the_new_token() {
    // The resource server accepts only this token (it revoked the older ones).
    let valid = Arc::new(std::sync::Mutex::new("Bearer at-2".to_owned()));
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (calls, refresher) = fake(|n| Answer::after(millis(50), Ok(rotated(n + 1, secs(3600)))));
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(rotated(1, secs(3600)))),
        refresher,
        None,
    );
    let client = AuthorizedClient::builder(source.clone())
        .allow_origin("https://api.example.com")
        .build()
        .expect("client");
    let resource = {
        let (valid, seen) = (valid.clone(), seen.clone());
        move |uri: http::Uri, headers: silent_refresh_tokio::TokenHeaders| {
            let authorization = headers.authorization;
            let valid = valid.clone();
            let seen = seen.clone();
            async move {
                // The network takes a while, so concurrent requests overlap.
                sleep(millis(10)).await;
                assert_eq!(uri.path(), "/v1/me");
                assert!(authorization.is_sensitive());
                let header = authorization.to_str().unwrap_or_default().to_owned();
                let ok = header == *lock(&valid);
                lock(&seen).push(header);
                Ok::<_, std::io::Error>(if ok {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                })
            }
        }
    };

    let status = client
        .send(
            &http::Method::GET,
            "https://api.example.com/v1/me",
            resource.clone(),
        )
        .await
        .expect("sent");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*lock(&seen), ["Bearer at-1", "Bearer at-2"]);
    assert_eq!(calls.count(), 1);

    // The server moves on; 1,000 concurrent requests get 401 on generation 2: one refresh.
    *lock(&valid) = "Bearer at-3".to_owned();
    lock(&seen).clear();
    let mut tasks = JoinSet::new();
    for _ in 0..1_000 {
        let client = client.clone();
        let resource = resource.clone();
        tasks.spawn(async move {
            client
                .send(
                    &http::Method::GET,
                    "https://api.example.com/v1/me",
                    resource,
                )
                .await
        });
    }
    for result in tasks.join_all().await {
        assert_eq!(result.expect("sent"), StatusCode::OK);
    }
    assert_eq!(calls.count(), 2);
    assert_eq!(
        lock(&seen).len(),
        2_000,
        "each request retried exactly once"
    );
}

/// A refresher that names its token endpoint.
struct EndpointRefresher;

impl Refresher for EndpointRefresher {
    async fn refresh(&self, _: Option<Secret>) -> Result<Token, RefreshFailure> {
        Ok(rotated(1, secs(3600)))
    }

    fn token_endpoint(&self) -> Option<&str> {
        Some("https://auth.example.com/oauth/token")
    }
}

#[tokio::test(start_paused = true)]
async fn the_send_helper_sends_the_token_only_where_allowed() {
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(rotated(1, secs(3600)))),
        EndpointRefresher,
        None,
    );
    let build = |origins: &[&str], insecure: bool| {
        let mut builder = AuthorizedClient::builder(source.clone());
        for origin in origins {
            builder = builder.allow_origin(*origin);
        }
        if insecure {
            builder = builder.allow_insecure_http(true);
        }
        builder.build()
    };
    assert!(matches!(
        build(&["http://api.example.com"], false),
        Err(Error::InsecureHttp { .. })
    ));
    assert!(build(&["http://api.example.com"], true).is_ok());
    assert!(build(&["http://127.0.0.1:8080", "http://localhost:3000"], false).is_ok());

    let client = build(
        &["https://auth.example.com", "https://api.example.com"],
        false,
    )
    .expect("client");
    let sent = Arc::new(AtomicUsize::new(0));
    let send = |url: &'static str| {
        let sent = sent.clone();
        let client = client.clone();
        async move {
            client
                .send(&http::Method::GET, url, |_, _| {
                    sent.fetch_add(1, Ordering::SeqCst);
                    async { Ok::<_, std::io::Error>(StatusCode::OK) }
                })
                .await
        }
    };
    assert!(matches!(
        send("https://auth.example.com/oauth/token?x=1").await,
        Err(Error::TokenEndpoint { .. })
    ));
    assert!(matches!(
        send("https://evil.example.com/steal").await,
        Err(Error::OriginNotAllowed { .. })
    ));
    assert!(matches!(
        send("http://api.example.com/plain").await,
        Err(Error::OriginNotAllowed { .. })
    ));
    assert!(matches!(
        send("/relative").await,
        Err(Error::InvalidUrl { .. })
    ));
    assert_eq!(sent.load(Ordering::SeqCst), 0, "nothing was sent");

    assert_eq!(
        send("https://auth.example.com/userinfo")
            .await
            .expect("allowed"),
        StatusCode::OK
    );
    assert_eq!(
        send("https://API.example.com:443/v1")
            .await
            .expect("allowed"),
        StatusCode::OK
    );
    assert_eq!(sent.load(Ordering::SeqCst), 2);
    let refused = send("https://evil.example.com/path?api_key=hidden").await;
    let message = refused.expect_err("refused").to_string();
    assert!(
        !message.contains("hidden") && !message.contains("/path"),
        "{message}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_send_helper_allows_origins_only_and_never_echoes_what_else_was_given() {
    let source = source_with(
        Config::default(),
        Some(Credentials::Token(rotated(1, secs(3600)))),
        EndpointRefresher,
        None,
    );
    assert!(matches!(
        AuthorizedClient::builder(source.clone()).build(),
        Err(Error::NoOrigin)
    ));
    // A user and password, a path, a query, a fragment: refused, and only the origin
    // read from them is named.
    let given = [
        (
            "https://alice:hunter2@api.example.com/v1?api_key=hidden",
            "https://api.example.com:443",
        ),
        (
            "https://api.example.com:8443/v2/secret-path",
            "https://api.example.com:8443",
        ),
        ("http://127.0.0.1:9/x?token=leak#frag", "http://127.0.0.1:9"),
    ];
    for (allowed, origin) in given {
        let refused = AuthorizedClient::builder(source.clone())
            .allow_origin(allowed)
            .build()
            .expect_err("an origin has no user, path, query or fragment");
        let message = format!("{refused} {refused:?}");
        assert!(
            matches!(refused, Error::InvalidOrigin { .. }),
            "{allowed}: {message}"
        );
        assert!(message.contains(origin), "{allowed}: {message}");
        let secrets = [
            "alice",
            "hunter2",
            "/v1",
            "hidden",
            "secret-path",
            "leak",
            "frag",
        ];
        for secret in secrets {
            assert!(!message.contains(secret), "{allowed}: {message}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_is_never_handed_out_past_its_usable_time() {
    // Without a refresh credential nothing can replace the token: once it is no longer
    // usable, calls fail. A 100 s token leaves its fast path through the background
    // task's timer; a 2 s token (tight margin) through a clock check on every call.
    for (lifetime, usable) in [(secs(100), secs(90)), (secs(2), millis(1_800))] {
        let (calls, refresher) = fake(|n| Answer::now(Ok(rotated(n, secs(3600)))));
        let source = source_with(
            Config::default(),
            Some(Credentials::Token(Token::bearer(
                "at-only",
                Expiry::In(lifetime),
            ))),
            refresher,
            None,
        );
        let start = Instant::now();
        sleep(usable - millis(1)).await;
        let token = source.token().await.expect("still usable");
        assert_eq!(token.secret.expose(), "at-only");

        sleep(millis(1)).await;
        let before = Instant::now();
        let error = source.token().await.expect_err("no longer usable");
        assert!(error.needs_sign_in(), "{error}");
        assert_eq!(Instant::now(), before, "failed fast");
        assert_eq!(Instant::now() - start, usable);
        assert_eq!(calls.count(), 0, "nothing to refresh with");
    }
}
