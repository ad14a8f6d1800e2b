//! `silent_refresh_oauth2::classify`, the classifier of any refresh endpoint's answer
//! (OAuth 2.0 or not): the three classes of rule 7, the messages, and a refresher for a
//! browser-pattern endpoint (`POST /auth/refresh` answering
//! `{"accessToken": "...", "expiresIn": 900}`) driving the machine with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use silent_refresh::{
    Action, Config, Credentials, Expiry, FailureKind, RefreshFailure, Secret, Status, Token,
    TokenMachine,
};
use silent_refresh_oauth2::classify;

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body.as_bytes().to_vec()).unwrap()
}

fn classified(response: &http::Response<Vec<u8>>) -> Result<(), RefreshFailure> {
    classify(response.status(), response.headers(), response.body(), &[])
}

/// The library's own words: the message before what the server said.
fn own_words(failure: &RefreshFailure) -> String {
    let message = &failure.message;
    let end = [" (HTTP ", " (content-type "]
        .iter()
        .filter_map(|mark| message.find(mark))
        .min()
        .unwrap_or(message.len());
    message[..end].to_ascii_lowercase()
}

const JSON: (&str, &str) = ("content-type", "application/json");

#[test]
fn the_cases_of_the_issue_in_three_classes() {
    let waf = answer(
        403,
        &[("content-type", "text/html"), ("retry-after", "20")],
        "<html><title>Access Denied</title>Request blocked by the web application firewall</html>",
    );
    let cases: Vec<(&str, http::Response<Vec<u8>>, FailureKind)> = vec![
        ("WAF 403", waf, FailureKind::Transient),
        (
            "proxy 407",
            answer(407, &[("proxy-authenticate", "Basic")], ""),
            FailureKind::Transient,
        ),
        (
            "404",
            answer(404, &[], "Not Found"),
            FailureKind::Misconfigured,
        ),
        (
            "405",
            answer(405, &[("allow", "GET")], ""),
            FailureKind::Misconfigured,
        ),
        (
            "307",
            answer(307, &[("location", "https://b.example/token?x=1")], ""),
            FailureKind::Misconfigured,
        ),
        (
            "308",
            answer(308, &[("location", "/v2/token?x=1")], ""),
            FailureKind::Misconfigured,
        ),
        (
            "invalid_client",
            answer(401, &[JSON], r#"{"error":"invalid_client"}"#),
            FailureKind::Misconfigured,
        ),
        (
            "invalid_grant",
            answer(400, &[JSON], r#"{"error":"invalid_grant"}"#),
            FailureKind::Terminal,
        ),
        (
            "503",
            answer(503, &[("retry-after", "7")], ""),
            FailureKind::Transient,
        ),
    ];
    for (name, response, kind) in cases {
        let failure = classified(&response).expect_err(name);
        assert_eq!(failure.kind, kind, "{name}: {}", failure.message);
        let sign_in = own_words(&failure).contains("sign in");
        assert_eq!(
            sign_in,
            kind == FailureKind::Terminal,
            "{name}: {}",
            failure.message
        );
        if kind != FailureKind::Transient {
            assert_eq!(failure.retry_after, None, "{name}");
        }
        assert!(
            !failure.message.contains("x=1"),
            "{name}: {}",
            failure.message
        );
    }
    let waf = classified(&answer(
        403,
        &[("retry-after", "20")],
        "<html>blocked</html>",
    ));
    assert_eq!(waf.unwrap_err().retry_after, Some(Duration::from_secs(20)));
    let relative = classified(&answer(308, &[("location", "/v2/token?x=1")], "")).unwrap_err();
    assert!(
        relative.message.contains("Location /v2/token)"),
        "{}",
        relative.message
    );
}

#[test]
fn a_success_is_left_to_the_caller_whatever_its_shape() {
    for (headers, body) in [
        (&[JSON][..], r#"{"accessToken":"at","expiresIn":900}"#),
        (&[JSON][..], r#"{"access_token":"at"}"#),
        (&[("content-type", "text/plain")][..], "at-1"),
        (&[][..], ""),
    ] {
        let response = answer(200, headers, body);
        assert!(classified(&response).is_ok(), "{body}");
    }
    // An OAuth error in a 2xx (GitHub's way) is a refusal.
    let github = answer(200, &[JSON], r#"{"error":"bad_refresh_token"}"#);
    assert_eq!(classified(&github).unwrap_err().kind, FailureKind::Terminal);
    let form = answer(
        200,
        &[("content-type", "application/x-www-form-urlencoded")],
        "error=invalid_scope&error_description=no+such+scope",
    );
    let failure = classified(&form).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        failure.message.contains("no such scope"),
        "{}",
        failure.message
    );
}

#[test]
fn the_secrets_given_are_never_quoted() {
    let cookie = Secret::new("c00kie");
    let response = answer(
        400,
        &[JSON],
        r#"{"error":"invalid_grant","error_description":"session c00kie is over"}"#,
    );
    let failure = classify(
        response.status(),
        response.headers(),
        response.body(),
        &[&cookie],
    )
    .unwrap_err();
    assert!(!failure.message.contains("c00kie"), "{}", failure.message);
    assert!(
        failure.message.contains("session [redacted] is over"),
        "{}",
        failure.message
    );
    let shown = format!("{failure} {failure:?}");
    assert!(!shown.contains("c00kie"), "{shown}");
}

/// The browser pattern's refresher: classify, then read the endpoint's own shape. Its
/// dead session is a bare 401 (which the table would call transient), mapped first.
fn browser_refresh(response: &http::Response<Vec<u8>>) -> Result<Token, RefreshFailure> {
    if response.status() == http::StatusCode::UNAUTHORIZED
        && !response.headers().contains_key("www-authenticate")
    {
        return Err(RefreshFailure::terminal(
            "the session has ended; sign in again",
        ));
    }
    classify(response.status(), response.headers(), response.body(), &[])?;
    let unusable = || RefreshFailure::transient("the refresh answer holds no token");
    let body: serde_json::Value =
        serde_json::from_slice(response.body()).map_err(|_| unusable())?;
    let access = body["accessToken"].as_str().ok_or_else(unusable)?;
    let lifetime = body["expiresIn"].as_u64().ok_or_else(unusable)?;
    Ok(Token::bearer(
        access,
        Expiry::In(Duration::from_secs(lifetime)),
    ))
}

#[test]
fn a_browser_pattern_refresher_rides_out_a_firewall_and_stops_at_a_redirect() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    machine.handle_sign_in(start, wall, Credentials::ClientCredentials { token: None });

    // First answer: a firewall's page. Transient: the request keeps waiting.
    let request = machine.handle_request(start, Some(start + Duration::from_secs(600)));
    let Some(Action::StartRefresh { attempt, .. }) = machine.poll_action() else {
        panic!("expected a refresh");
    };
    let waf = answer(403, &[("retry-after", "5")], "<html>blocked</html>");
    machine.handle_refresh_result(start, attempt, browser_refresh(&waf));
    assert_eq!(machine.poll_action().map(|a| format!("{a:?}")), None);
    assert_eq!(machine.status(), &Status::SignedIn);
    let retry = machine.backoff_until().expect("a backoff");
    assert!(retry >= start + Duration::from_secs(5));

    // After the backoff: a token in the endpoint's own shape.
    machine.handle_timeout(retry);
    let Some(Action::StartRefresh { attempt, .. }) = machine.poll_action() else {
        panic!("expected a second refresh");
    };
    let ok = answer(200, &[JSON], r#"{"accessToken":"at-1","expiresIn":900}"#);
    machine.handle_refresh_result(retry, attempt, browser_refresh(&ok));
    let actions: Vec<Action> = std::iter::from_fn(|| machine.poll_action()).collect();
    let [Action::Persist { .. }, Action::Grant { request: id, token }] = actions.as_slice() else {
        panic!("expected a Persist then a Grant, got {actions:?}");
    };
    assert_eq!(*id, request);
    assert_eq!(*token.authorization(), "Bearer at-1");

    // A refresh answered by a redirect: misconfigured, nothing followed.
    let failure = browser_refresh(&answer(
        302,
        &[("location", "https://sso.example/login?next=x")],
        "",
    ))
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        failure.message.contains("https://sso.example/login)"),
        "{}",
        failure.message
    );
    // And the endpoint's bare 401: the session is over.
    let failure = browser_refresh(&answer(401, &[], "")).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Terminal);
}

proptest! {
    /// Whatever the answer: no panic; overload is transient and a redirect
    /// misconfigured whatever the body; only a terminal failure says to sign in again;
    /// only a transient one has a Retry-After; the secret given is never quoted, nor
    /// the query of a Location.
    #[test]
    fn any_answer_keeps_the_invariants(
        status in 100u16..1000,
        error in proptest::option::of(prop_oneof![
            Just("invalid_grant".to_owned()),
            Just("invalid_client".to_owned()),
            Just("slow_down".to_owned()),
            Just("interaction_required".to_owned()),
            "[a-z_]{0,16}",
        ]),
        description in "[ -~]{0,40}",
        location in proptest::option::of("[a-z/:.@]{0,20}"),
        challenge in any::<bool>(),
        retry_after in proptest::option::of(0u32..100_000),
        html in any::<bool>(),
    ) {
        let secret = Secret::new("Zx9-secret");
        let mut builder = http::Response::builder().status(status);
        if let Some(location) = &location {
            builder = builder.header("location", format!("{location}?q=Qy8mark"));
        }
        if challenge {
            builder = builder.header("www-authenticate", "Basic");
        }
        if let Some(seconds) = retry_after {
            builder = builder.header("retry-after", seconds.to_string());
        }
        let body = if html {
            builder = builder.header("content-type", "text/html");
            format!("<html>{description} Zx9-secret</html>")
        } else {
            builder = builder.header("content-type", "application/json");
            serde_json::json!({
                "error": error,
                "error_description": format!("{description} Zx9-secret"),
            })
            .to_string()
        };
        let response = builder.body(body.into_bytes()).unwrap();
        let Err(failure) = classify(
            response.status(),
            response.headers(),
            response.body(),
            &[&secret],
        ) else {
            prop_assert!((200..300).contains(&status));
            return Ok(());
        };
        if (500..600).contains(&status) || [408, 425, 429].contains(&status) {
            prop_assert_eq!(failure.kind, FailureKind::Transient);
        } else if (300..400).contains(&status) {
            prop_assert_eq!(failure.kind, FailureKind::Misconfigured);
        }
        if error.as_deref() == Some("invalid_grant") && !html && status == 400 {
            prop_assert_eq!(failure.kind, FailureKind::Terminal);
        }
        let sign_in = own_words(&failure).contains("sign in");
        prop_assert_eq!(sign_in, failure.kind == FailureKind::Terminal, "{}", &failure.message);
        if failure.kind != FailureKind::Transient {
            prop_assert_eq!(failure.retry_after, None);
        }
        let shown = format!("{failure} {failure:?}");
        prop_assert!(!shown.contains("Zx9-secret"), "{}", shown);
        prop_assert!(!shown.contains("Qy8mark"), "{}", shown);
    }
}
