//! The refresh exchange stays on the configured token URL: no redirect is followed
//! (a second server on 127.0.0.1 must receive nothing), plain `http` is refused beyond
//! loopback, and every exchange has a timeout.

mod support;

use std::time::{Duration, Instant};

use silent_refresh_ureq::{
    Config, Credentials, Error, FailureKind, OAuth2Refresher, RefreshGrant, Refresher, Secret,
    TokenSource,
};
use support::{CountingServer, Reply, TestServer};

const REFRESH_TOKEN: &str = "rt-SECRET-never-leaves-the-first-server";
const CLIENT_SECRET: &str = "cs-SECRET-4b1d";
/// Put in the `Location`'s query: it must not show in any message.
const QUERY_SECRET: &str = "q-SECRET-in-the-location";

/// A server that would hand out a token, so that a followed redirect would look like
/// a success: it must never be reached.
fn elsewhere() -> CountingServer {
    CountingServer::start(Some(Reply::json(
        200,
        &serde_json::json!({
            "access_token": "at-from-the-wrong-server",
            "token_type": "bearer",
            "expires_in": 3600,
        }),
    )))
}

/// A token endpoint that answers every request with `status` and a `Location` on
/// `target`, with a query holding a secret.
fn redirecting(status: u16, target: &CountingServer) -> TestServer {
    let location = format!(
        "{}?refresh_token={QUERY_SECRET}&code={QUERY_SECRET}",
        target.url("/final/token")
    );
    TestServer::start(move |_| Reply::status(status).header("Location", &location))
}

fn grant(url: String) -> RefreshGrant {
    RefreshGrant::new(url, "test-client").client_secret(CLIENT_SECRET)
}

fn assert_no_secret(text: &str) {
    for secret in [REFRESH_TOKEN, CLIENT_SECRET, QUERY_SECRET, "refresh_token="] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn a_307_or_308_is_never_followed_and_fails_as_misconfigured_naming_the_location() {
    for status in [307, 308, 301, 302, 303] {
        let target = elsewhere();
        let token_endpoint = redirecting(status, &target);
        let refresher = OAuth2Refresher::builder(grant(token_endpoint.url("/token")))
            .build()
            .expect("a loopback token URL is allowed");
        let failure = refresher
            .refresh(Some(Secret::new(REFRESH_TOKEN)))
            .expect_err("a redirect is not a token");

        assert_eq!(token_endpoint.requests().len(), 1, "{status}: one exchange");
        assert_eq!(
            target.connections(),
            0,
            "{status}: the second server got nothing"
        );
        assert_eq!(
            failure.kind,
            FailureKind::Misconfigured,
            "{status}: {failure}"
        );
        let text = format!("{failure} {failure:?}");
        assert!(
            text.contains(&target.url("/final/token")),
            "{status}: names the location: {text}"
        );
        assert!(
            text.contains("token URL"),
            "{status}: says what to fix: {text}"
        );
        assert_no_secret(&text);
    }
}

#[test]
fn a_redirect_is_not_followed_with_the_callers_own_agent_either() {
    let target = elsewhere();
    let token_endpoint = redirecting(307, &target);
    // An agent that would follow redirects and report error statuses as errors.
    let agent = ureq::Agent::config_builder()
        .max_redirects(10)
        .http_status_as_error(true)
        .build()
        .new_agent();
    let refresher = OAuth2Refresher::builder(grant(token_endpoint.url("/token")))
        .client(agent)
        .build()
        .expect("a loopback token URL is allowed");
    let failure = refresher
        .refresh(Some(Secret::new(REFRESH_TOKEN)))
        .expect_err("a redirect is not a token");
    assert_eq!(target.connections(), 0, "the second server got nothing");
    assert_eq!(failure.kind, FailureKind::Misconfigured, "{failure}");
    assert_no_secret(&failure.to_string());
}

#[test]
fn a_redirecting_token_endpoint_fails_requests_fast_without_asking_for_a_sign_in() {
    let target = elsewhere();
    let token_endpoint = redirecting(308, &target);
    let refresher = OAuth2Refresher::builder(grant(token_endpoint.url("/token")))
        .build()
        .expect("a loopback token URL is allowed");
    let source = TokenSource::builder(
        Config::builder()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken(REFRESH_TOKEN.into()))
    .refresher(refresher)
    .build()
    .expect("source");
    let started = Instant::now();
    let error = source.token().expect_err("no token behind a redirect");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "fails fast, not at the request's deadline"
    );
    assert_eq!(target.connections(), 0, "the second server got nothing");
    assert!(!error.needs_sign_in(), "{error}");
    let text = format!("{error} {error:?}");
    assert!(text.contains(&target.url("/final/token")), "{text}");
    assert_no_secret(&text);
}

#[test]
fn plain_http_token_urls_are_refused_beyond_loopback_unless_allowed() {
    for url in [
        "http://auth.example.com/token",
        "http://10.0.0.1/token",
        "http://[fe80::1]/token",
    ] {
        let refused = OAuth2Refresher::builder(grant(url.to_owned()))
            .build()
            .expect_err(url);
        assert!(matches!(refused, Error::InsecureHttp { .. }), "{refused:?}");
        let message = refused.to_string();
        assert!(message.contains("allow_insecure_http"), "{message}");
        assert!(!message.contains("/token"), "origin only: {message}");
        assert!(
            OAuth2Refresher::builder(grant(url.to_owned()))
                .allow_insecure_http(true)
                .build()
                .is_ok(),
            "{url}"
        );
    }
    for url in [
        "http://127.0.0.1:8080/token",
        "http://127.1.2.3/token",
        "http://localhost:9000/token",
        "http://[::1]:9000/token",
        "https://auth.example.com/token",
    ] {
        assert!(
            OAuth2Refresher::builder(grant(url.to_owned()))
                .build()
                .is_ok(),
            "{url}"
        );
    }
}

#[test]
fn a_zero_timeout_is_refused() {
    let refused = OAuth2Refresher::builder(grant("https://auth.example.com/token".into()))
        .timeout(Duration::ZERO)
        .build()
        .expect_err("a zero timeout fails every exchange");
    assert!(
        matches!(
            refused,
            Error::Token(silent_refresh::Error::InvalidConfig(_))
        ),
        "{refused:?}"
    );
}

#[test]
fn the_timeout_ends_an_exchange_with_a_hung_server_as_a_transient_failure() {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let hung = CountingServer::start(None);
    let check = |refresher: OAuth2Refresher| {
        assert_eq!(refresher.timeout(), TIMEOUT);
        let started = Instant::now();
        let failure = refresher
            .refresh(Some(Secret::new(REFRESH_TOKEN)))
            .expect_err("the server never answers");
        let took = started.elapsed();
        assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
        assert!(failure.message.contains("timeout"), "{failure}");
        assert_no_secret(&failure.to_string());
        assert!(took >= TIMEOUT, "{took:?}");
        assert!(
            took < Duration::from_secs(5),
            "the timeout applied: {took:?}"
        );
    };
    check(
        OAuth2Refresher::builder(grant(hung.url("/token")))
            .timeout(TIMEOUT)
            .build()
            .expect("a loopback token URL is allowed"),
    );
    // The caller's agent has no timeout of its own: the refresher's applies per request.
    check(
        OAuth2Refresher::builder(grant(hung.url("/token")))
            .client(ureq::Agent::new_with_defaults())
            .timeout(TIMEOUT)
            .build()
            .expect("a loopback token URL is allowed"),
    );
    assert_eq!(hung.connections(), 2);
}

#[test]
fn the_default_timeout_is_thirty_seconds() {
    let refresher = OAuth2Refresher::builder(grant("https://auth.example.com/token".into()))
        .build()
        .expect("https");
    assert_eq!(refresher.timeout(), Duration::from_secs(30));
}
