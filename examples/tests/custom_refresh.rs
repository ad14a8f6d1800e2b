//! `custom_refresh` (issue 14, "the browser pattern, ported"): a closure refresher
//! over the app's own JSON `/auth/refresh`, in both runtimes, against the embedded
//! API on `127.0.0.1`. Every assertion is on a count or an error, never on a timing.
//! The code under test is the example's own (`examples/custom_refresh.rs`, included
//! here as a module): what a reader copies is what is checked.

use std::time::Duration;

use reqwest::StatusCode;
use silent_refresh::{Config, FailureKind, Secret};
use silent_refresh_testkit::app::{ApiConfig, ApiServer, Report, Runtime, Scenario};

/// The example, as a module: its `main` is not called here, and what it makes `pub`
/// is for this file.
#[allow(dead_code, unreachable_pub)]
#[path = "../custom_refresh.rs"]
mod example;

/// A short run: 8 workers for 2 s with 1-second tokens, so the token is refreshed
/// about every half second (the login's token, then at least two more).
fn short(runtime: Runtime) -> Scenario {
    Scenario {
        runtime,
        workers: 8,
        duration: Duration::from_secs(2),
        pause: Duration::from_millis(10),
        server: ApiConfig {
            token_lifetime: Duration::from_secs(1),
            refresh_latency: Duration::from_millis(20),
        },
    }
}

fn assert_kept(report: &Report) {
    let summary = report.summary();
    assert_eq!(report.failed, 0, "{summary}");
    assert!(report.requests > 0, "{summary}");
    assert_eq!(report.ok, report.requests, "{summary}");
    assert!(report.server.refreshes >= 2, "{summary}");
    assert_eq!(report.server.max_refreshes_in_flight, 1, "{summary}");
    assert_eq!(report.server.reuses, 0, "{summary}");
    assert_eq!(report.server.tokens_at_refresh, 0, "{summary}");
    assert_eq!(report.server.refused_refreshes, 0, "{summary}");
    assert_eq!(report.server.logins, 1, "{summary}");
    assert_eq!(report.server.me_ok, report.ok, "{summary}");
    assert!(report.passed(), "{summary}");
    let line: serde_json::Value = serde_json::from_str(&report.json()).expect("one JSON line");
    assert_eq!(line["runtime"], report.runtime.name());
    assert_eq!(line["refreshes"], report.server.refreshes);
    assert_eq!(line["max_refreshes_in_flight"], 1);
}

#[test]
fn tokio_keeps_the_session_across_expiries() {
    let report = example::run(&short(Runtime::Tokio)).expect("the run starts");
    assert_kept(&report);
}

#[test]
fn blocking_keeps_the_session_across_expiries() {
    let report = example::run(&short(Runtime::Blocking)).expect("the run starts");
    assert_kept(&report);
}

/// A long-lived token, so that nothing but the revocation triggers a refresh.
fn long_lived() -> ApiServer {
    ApiServer::start(ApiConfig {
        token_lifetime: Duration::from_secs(600),
        refresh_latency: Duration::ZERO,
    })
    .expect("the server starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_a_dead_session_fails_fast_with_sign_in_required() {
    let server = long_lived();
    let client = example::tokio_client(&server.origin(), Config::default())
        .await
        .expect("signed in");
    let (http, me) = (reqwest::Client::new(), server.me_url());
    let get_me = || example::tokio_get(&client, &http, &me);
    assert_eq!(get_me().await, Ok(StatusCode::OK));
    // The refresh route is the source's token endpoint: the client never sends the
    // access token there.
    let refused = client.check(&server.refresh_url());
    assert!(
        matches!(
            refused,
            Err(silent_refresh_tokio::Error::TokenEndpoint { .. })
        ),
        "{refused:?}"
    );

    server.revoke_sessions();
    let first = get_me().await.expect_err("the session is over");
    assert!(first.sign_in_required, "{first}");
    let after_first = server.stats();
    assert_eq!(after_first.refresh_requests, 1, "{after_first:?}");
    assert_eq!(after_first.refused_refreshes, 1, "{after_first:?}");
    assert_eq!(after_first.me_unauthorized, 1, "{after_first:?}");

    // Fast: the next call fails without a refresh and without reaching the API.
    let second = get_me().await.expect_err("still over");
    assert!(second.sign_in_required, "{second}");
    assert_eq!(server.stats(), after_first);
    assert_eq!(after_first.tokens_at_refresh, 0);
}

#[test]
fn blocking_a_dead_session_fails_fast_with_sign_in_required() {
    let server = long_lived();
    let agent = example::blocking_agent(&server.origin(), Config::default()).expect("signed in");
    let get_me = || example::blocking_get(&agent, &server.me_url());
    assert_eq!(get_me(), Ok(StatusCode::OK));
    // The middleware passes a request to the refresh route through without the token.
    let mut probe = agent
        .post(server.refresh_url())
        .send("{}")
        .expect("an answer");
    assert_eq!(probe.status(), StatusCode::BAD_REQUEST);
    probe.body_mut().read_to_vec().expect("the body");
    let probed = server.stats();
    assert_eq!(probed.refresh_requests, 1, "{probed:?}");
    assert_eq!(probed.tokens_at_refresh, 0, "{probed:?}");

    server.revoke_sessions();
    let first = get_me().expect_err("the session is over");
    assert!(first.sign_in_required, "{first}");
    let after_first = server.stats();
    assert_eq!(after_first.refresh_requests, 2, "{after_first:?}");
    assert_eq!(after_first.me_unauthorized, 1, "{after_first:?}");

    let second = get_me().expect_err("still over");
    assert!(second.sign_in_required, "{second}");
    assert_eq!(server.stats(), after_first);
    assert_eq!(after_first.tokens_at_refresh, 0);
}

/// The reader of `/auth/refresh` answers: a bare 401 ends the session, the rest is
/// the classifier's, and no message quotes the refresh token sent.
#[test]
fn refresh_answers_are_classified() {
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
    let sent = Secret::new("rt_0123456789abcdef0123456789abcdef");
    let none = HeaderMap::new();
    let read = |status: StatusCode, headers: &HeaderMap, body: &[u8], sent: &Secret| {
        example::read_answer(&(status, headers.clone(), body.to_vec()), sent)
    };

    let token = read(
        StatusCode::OK,
        &none,
        br#"{"accessToken":"at-1","refreshToken":"rt-2","expiresIn":2}"#,
        &sent,
    )
    .expect("a token");
    assert_eq!(token.access_token.expose(), "at-1");
    assert_eq!(
        token.refresh_token.as_ref().map(Secret::expose),
        Some("rt-2")
    );
    assert_eq!(
        token.expiry,
        silent_refresh::Expiry::In(Duration::from_secs(2))
    );

    let expired = read(
        StatusCode::UNAUTHORIZED,
        &none,
        br#"{"message":"session expired"}"#,
        &sent,
    )
    .expect_err("refused");
    assert_eq!(expired.kind, FailureKind::Terminal);

    let mut busy = HeaderMap::new();
    busy.insert(RETRY_AFTER, HeaderValue::from_static("3"));
    let unavailable =
        read(StatusCode::SERVICE_UNAVAILABLE, &busy, b"", &sent).expect_err("refused");
    assert_eq!(unavailable.kind, FailureKind::Transient);
    assert_eq!(unavailable.retry_after, Some(Duration::from_secs(3)));

    let missing = read(StatusCode::NOT_FOUND, &none, b"not found", &sent).expect_err("404");
    assert_eq!(missing.kind, FailureKind::Misconfigured);

    let garbled = read(StatusCode::OK, &none, b"<html>", &sent).expect_err("html");
    assert_eq!(garbled.kind, FailureKind::Transient);

    let echo = read(
        StatusCode::BAD_REQUEST,
        &none,
        br#"{"message":"bad token rt_0123456789abcdef0123456789abcdef"}"#,
        &sent,
    )
    .expect_err("refused");
    for failure in [&expired, &unavailable, &missing, &garbled, &echo] {
        assert!(!failure.message.contains(sent.expose()), "{failure}");
    }
}
