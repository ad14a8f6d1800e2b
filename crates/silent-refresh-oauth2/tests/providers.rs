//! The `oauth2` codec against the answers real authorization servers give: Google,
//! Microsoft Entra ID, Auth0, Keycloak, Okta and GitHub, plus the proxies in front of
//! them. Shapes follow each provider's documentation; secrets are made up.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use silent_refresh::{Expiry, FailureKind, RefreshFailure, Secret, Token};
use silent_refresh_oauth2::{ClientAuth, RefreshGrant};

const CLIENT_SECRET: &str = "cs-9f8e7d6c5b4a39281706f5e4d3c2b1a0ffeeddcc";
/// The refresh credential every answer below is to (as the refreshers tell the codec).
const REFRESH_TOKEN: &str = "rt-5f4e3d2c1b0a";

fn grant() -> RefreshGrant {
    RefreshGrant::new("https://login.example.com/oauth2/token", "my-app")
        .client_secret(CLIENT_SECRET)
}

fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Result<Token, RefreshFailure> {
    let mut builder = http::Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = builder.body(body.as_bytes().to_vec()).unwrap();
    let told = grant().parse_response_for(&response, Some(&Secret::new(REFRESH_TOKEN)));
    // Not told the credential sent, the codec classifies alike.
    let untold = grant().parse_response(&response);
    match (&told, &untold) {
        (Ok(token), Ok(same)) => assert_eq!(token, same),
        (Err(failure), Err(other)) => {
            assert_eq!(failure.kind, other.kind);
            assert_eq!(failure.retry_after, other.retry_after);
        }
        _ => panic!("told {told:?}, untold {untold:?}"),
    }
    told
}

const JSON: (&str, &str) = ("content-type", "application/json; charset=utf-8");

/// What a successful refresh must become.
struct Expect {
    access: &'static str,
    lifetime: Option<u64>,
    refresh: Option<&'static str>,
    scope: Option<&'static str>,
}

fn check_success(provider: &str, result: Result<Token, RefreshFailure>, expect: &Expect) {
    let token = result.unwrap_or_else(|f| panic!("{provider}: {f}"));
    assert_eq!(token.access_token.expose(), expect.access, "{provider}");
    let expiry = expect
        .lifetime
        .map_or(Expiry::Never, |s| Expiry::In(Duration::from_secs(s)));
    assert_eq!(token.expiry, expiry, "{provider}");
    assert_eq!(
        token.refresh_token.as_ref().map(Secret::expose),
        expect.refresh,
        "{provider}"
    );
    assert_eq!(token.scope.as_deref(), expect.scope, "{provider}");
    assert!(
        token.token_type.eq_ignore_ascii_case("bearer"),
        "{provider}"
    );
}

#[test]
fn oauth2_google_refresh_keeps_the_old_refresh_token_and_ignores_id_token() {
    let body = r#"{
      "access_token": "ya29.a0AfB_byC-google-access",
      "expires_in": 3599,
      "scope": "https://www.googleapis.com/auth/drive.readonly openid",
      "token_type": "Bearer",
      "id_token": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMTAxNjkifQ.c2lnbmF0dXJl"
    }"#;
    let expect = Expect {
        access: "ya29.a0AfB_byC-google-access",
        lifetime: Some(3599),
        refresh: None,
        scope: Some("https://www.googleapis.com/auth/drive.readonly openid"),
    };
    check_success("google", answer(200, &[JSON], body), &expect);
}

#[test]
fn oauth2_entra_id_v2_rotates_the_refresh_token() {
    let body = r#"{"token_type":"Bearer","scope":"User.Read Mail.Read","expires_in":4523,
      "ext_expires_in":4523,"access_token":"eyJ0eXAiOiJKV1Qi.entra-access","refresh_token":"0.AVYA-entra-refresh",
      "id_token":"eyJ0eXAiOiJKV1Qi.id"}"#;
    let expect = Expect {
        access: "eyJ0eXAiOiJKV1Qi.entra-access",
        lifetime: Some(4523),
        refresh: Some("0.AVYA-entra-refresh"),
        scope: Some("User.Read Mail.Read"),
    };
    check_success("entra v2", answer(200, &[JSON], body), &expect);
}

#[test]
fn oauth2_entra_id_v1_sends_expires_in_as_a_string() {
    let body = r#"{"token_type":"Bearer","scope":"user_impersonation","expires_in":"3599",
      "ext_expires_in":"3599","expires_on":"1767225600","not_before":"1767221700",
      "resource":"https://management.azure.com","access_token":"eyJ0.entra-v1","refresh_token":"AQABAAAA-v1"}"#;
    let expect = Expect {
        access: "eyJ0.entra-v1",
        lifetime: Some(3599),
        refresh: Some("AQABAAAA-v1"),
        scope: Some("user_impersonation"),
    };
    check_success("entra v1", answer(200, &[JSON], body), &expect);
}

#[test]
fn oauth2_auth0_success_and_its_403_invalid_grant() {
    let body = r#"{"access_token":"eyJhbGciOiJkaXIi.auth0","refresh_token":"v1.MRrT-auth0-rotated",
      "id_token":"eyJ.id","scope":"openid profile offline_access","expires_in":86400,"token_type":"Bearer"}"#;
    let expect = Expect {
        access: "eyJhbGciOiJkaXIi.auth0",
        lifetime: Some(86400),
        refresh: Some("v1.MRrT-auth0-rotated"),
        scope: Some("openid profile offline_access"),
    };
    check_success("auth0", answer(200, &[JSON], body), &expect);
    // Auth0 answers a reused (rotated-out) refresh token with 403.
    let refused = answer(
        403,
        &[JSON],
        r#"{"error":"invalid_grant","error_description":"Unknown or invalid refresh token."}"#,
    )
    .unwrap_err();
    assert_eq!(refused.kind, FailureKind::Terminal);
    assert!(
        refused.message.contains("invalid_grant"),
        "{}",
        refused.message
    );
}

#[test]
fn oauth2_keycloak_ignores_its_extra_fields_and_an_inactive_session_is_terminal() {
    let body = r#"{"access_token":"eyJhbGciOiJSUzI1NiIs.keycloak","expires_in":300,"refresh_expires_in":1800,
      "refresh_token":"eyJhbGciOiJIUzI1NiIs.kc-refresh","token_type":"Bearer","id_token":"eyJ.id",
      "not-before-policy":0,"session_state":"0c8f6a4e-3d2b-4c1a","scope":"openid profile email"}"#;
    let expect = Expect {
        access: "eyJhbGciOiJSUzI1NiIs.keycloak",
        lifetime: Some(300),
        refresh: Some("eyJhbGciOiJIUzI1NiIs.kc-refresh"),
        scope: Some("openid profile email"),
    };
    check_success("keycloak", answer(200, &[JSON], body), &expect);
    let refused = answer(
        400,
        &[JSON],
        r#"{"error":"invalid_grant","error_description":"Session not active"}"#,
    )
    .unwrap_err();
    assert_eq!(refused.kind, FailureKind::Terminal);
    assert!(
        refused.message.contains("Session not active"),
        "{}",
        refused.message
    );
}

#[test]
fn oauth2_okta_success_and_rate_limit() {
    let body = r#"{"token_type":"Bearer","expires_in":3600,"access_token":"eyJraWQiOi.okta",
      "scope":"offline_access openid","refresh_token":"okta-rotated-refresh","id_token":"eyJ.id"}"#;
    let expect = Expect {
        access: "eyJraWQiOi.okta",
        lifetime: Some(3600),
        refresh: Some("okta-rotated-refresh"),
        scope: Some("offline_access openid"),
    };
    check_success("okta", answer(200, &[JSON], body), &expect);
    let limited = answer(
        429,
        &[JSON, ("retry-after", "17"), ("x-rate-limit-reset", "1767225617")],
        r#"{"errorCode":"E0000047","errorSummary":"API call exceeded rate limit due to too many requests."}"#,
    )
    .unwrap_err();
    assert_eq!(limited.kind, FailureKind::Transient);
    assert_eq!(limited.retry_after, Some(Duration::from_secs(17)));
}

#[test]
fn oauth2_github_lowercase_bearer_and_errors_inside_a_200() {
    let body = r#"{"access_token":"ghu_16C7e42F292c6912E7710c838347Ae178B4a","expires_in":28800,
      "refresh_token":"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498",
      "refresh_token_expires_in":15811200,"scope":"","token_type":"bearer"}"#;
    let token = answer(200, &[JSON], body).unwrap();
    assert_eq!(token.expiry, Expiry::In(Duration::from_secs(28800)));
    assert!(token.refresh_token.unwrap().expose().starts_with("ghr_"));
    // GitHub reports a dead refresh token with HTTP 200 and an error body.
    let refused = answer(
        200,
        &[JSON],
        r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired.",
           "error_uri":"https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors"}"#,
    )
    .unwrap_err();
    assert_eq!(refused.kind, FailureKind::Terminal);
    assert!(
        refused.message.contains("bad_refresh_token"),
        "{}",
        refused.message
    );
}

#[test]
fn oauth2_entra_id_error_body_is_terminal_and_explained() {
    let body = r#"{"error":"invalid_grant","error_description":"AADSTS70008: The provided authorization code or refresh token has expired due to inactivity.",
      "error_codes":[70008],"timestamp":"2026-11-27 10:00:00Z","trace_id":"0b3f2a1c","correlation_id":"9d8e7f60"}"#;
    let refused = answer(400, &[JSON], body).unwrap_err();
    assert_eq!(refused.kind, FailureKind::Terminal);
    assert!(
        refused.message.contains("AADSTS70008"),
        "{}",
        refused.message
    );
}

/// Whether the library's own words (before what the server said) tell to sign in.
fn says_sign_in(failure: &RefreshFailure) -> bool {
    let own = failure.message.split(" (HTTP ").next().unwrap_or_default();
    own.to_ascii_lowercase().contains("sign in")
}

#[test]
fn oauth2_error_codes_table_in_three_classes() {
    // (code, class, what the message must name)
    let table = [
        ("invalid_grant", FailureKind::Terminal, "sign in again"),
        (
            "invalid_client",
            FailureKind::Misconfigured,
            "client secret",
        ),
        (
            "unauthorized_client",
            FailureKind::Misconfigured,
            "client id",
        ),
        (
            "unsupported_grant_type",
            FailureKind::Misconfigured,
            "grant",
        ),
        ("invalid_scope", FailureKind::Misconfigured, "scope"),
        ("invalid_request", FailureKind::Misconfigured, "token URL"),
    ];
    for status in [400, 401] {
        for (code, kind, names) in table {
            let body = format!(r#"{{"error":"{code}"}}"#);
            let failure = answer(status, &[JSON], &body).unwrap_err();
            assert_eq!(failure.kind, kind, "{status} {code}");
            assert!(failure.message.contains(code), "{}", failure.message);
            assert!(failure.message.contains(names), "{}", failure.message);
            assert_eq!(
                says_sign_in(&failure),
                kind == FailureKind::Terminal,
                "{}",
                failure.message
            );
            assert_eq!(failure.retry_after, None);
        }
    }
}

#[test]
fn oauth2_each_providers_wrong_client_secret_is_misconfigured() {
    let cases: [(&str, u16, &str); 6] = [
        (
            "google",
            401,
            r#"{"error":"invalid_client","error_description":"Unauthorized"}"#,
        ),
        (
            "entra",
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.","error_codes":[7000215]}"#,
        ),
        // Auth0 answers a wrong client secret with `access_denied`: a code outside
        // RFC 6749 §5.2, read as a refusal of the configuration, not of the user.
        (
            "auth0",
            401,
            r#"{"error":"access_denied","error_description":"Unauthorized"}"#,
        ),
        // Keycloak says `unauthorized_client` for a wrong secret.
        (
            "keycloak",
            401,
            r#"{"error":"unauthorized_client","error_description":"Invalid client or Invalid client credentials"}"#,
        ),
        (
            "okta",
            401,
            r#"{"error":"invalid_client","error_description":"The client secret supplied for a confidential client is invalid."}"#,
        ),
        // GitHub, in a 200.
        (
            "github",
            200,
            r#"{"error":"incorrect_client_credentials","error_description":"The client_id and/or client_secret passed are incorrect."}"#,
        ),
    ];
    for (provider, status, body) in cases {
        let failure = answer(status, &[JSON], body).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Misconfigured, "{provider}");
        assert!(!says_sign_in(&failure), "{provider}: {}", failure.message);
        assert!(
            failure.message.contains("check the client"),
            "{provider}: {}",
            failure.message
        );
    }
}

#[test]
fn oauth2_each_providers_dead_session_is_terminal() {
    let cases: [(&str, u16, &str); 4] = [
        (
            "google",
            400,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        ),
        // Entra: a conditional-access policy needs multi-factor sign-in.
        (
            "entra",
            400,
            r#"{"error":"interaction_required","error_description":"AADSTS50076: Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication.","suberror":"basic_action"}"#,
        ),
        (
            "keycloak",
            400,
            r#"{"error":"invalid_grant","error_description":"Token is not active"}"#,
        ),
        (
            "github",
            200,
            r#"{"error":"bad_refresh_token","error_description":"The refresh token passed is incorrect or expired."}"#,
        ),
    ];
    for (provider, status, body) in cases {
        let failure = answer(status, &[JSON], body).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Terminal, "{provider}");
        assert!(says_sign_in(&failure), "{provider}: {}", failure.message);
    }
}

#[test]
fn oauth2_what_stands_in_front_of_the_server() {
    // A web application firewall's block page (Cloudflare-like): transient, quoted.
    let waf = "<!DOCTYPE html><html><head><title>Attention Required! | Cloudflare</title></head><body>Sorry, you have been blocked</body></html>";
    let failure = answer(
        403,
        &[
            ("content-type", "text/html; charset=UTF-8"),
            ("retry-after", "45"),
        ],
        waf,
    )
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    assert_eq!(failure.retry_after, Some(Duration::from_secs(45)));
    assert!(failure.message.contains("firewall"), "{}", failure.message);
    assert!(
        failure.message.contains("Attention Required"),
        "{}",
        failure.message
    );
    // A proxy that wants its own credentials.
    let failure = answer(
        407,
        &[
            ("proxy-authenticate", "Basic realm=\"corp\""),
            ("content-type", "text/html"),
        ],
        "<html>Proxy Authentication Required</html>",
    )
    .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.message.contains("proxy"), "{}", failure.message);
    // A 401 without a challenge and without an OAuth error: a gateway, transient.
    let failure = answer(401, &[("content-type", "text/plain")], "Unauthorized").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    // A 401 with a challenge and no OAuth error: the client authentication failed.
    let failure = answer(401, &[("www-authenticate", "Basic realm=\"oauth\"")], "").unwrap_err();
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        failure.message.contains("client secret"),
        "{}",
        failure.message
    );
    // A mistyped token URL, or one that does not take a POST.
    for status in [404, 405] {
        let failure = answer(
            status,
            &[("content-type", "text/html")],
            "<h1>Not Found</h1>",
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Misconfigured, "{status}");
        assert!(failure.message.contains("token URL"), "{}", failure.message);
        assert!(!says_sign_in(&failure), "{}", failure.message);
    }
}

#[test]
fn oauth2_redirects_name_the_location_without_its_query() {
    for status in [301, 302, 303, 307, 308] {
        let failure = answer(
            status,
            &[(
                "location",
                "https://login.example.net/tenant/oauth2/v2.0/token?client_secret=leak&code=abc",
            )],
            "",
        )
        .unwrap_err();
        assert_eq!(failure.kind, FailureKind::Misconfigured, "{status}");
        assert!(
            failure
                .message
                .contains("Location https://login.example.net/tenant/oauth2/v2.0/token)"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("configure the final token URL"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains("leak"), "{}", failure.message);
        assert!(!failure.message.contains("code=abc"), "{}", failure.message);
        assert!(!says_sign_in(&failure), "{}", failure.message);
        assert_eq!(failure.retry_after, None);
    }
    // Not told the credential sent (`parse_response`), the codec cannot tell a long
    // path from a base64 credential the server echoed: the run is redacted whole.
    let response = http::Response::builder()
        .status(307)
        .header(
            "location",
            "https://login.example.net/tenant/oauth2/v2.0/token?code=abc",
        )
        .body(Vec::new())
        .unwrap();
    let failure = grant().parse_response(&response).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        failure.message.contains("Location https:[redacted])"),
        "{}",
        failure.message
    );
    let short = http::Response::builder()
        .status(308)
        .header("location", "https://login.example.net/token?code=abc")
        .body(Vec::new())
        .unwrap();
    let failure = grant().parse_response(&short).unwrap_err();
    assert!(
        failure
            .message
            .contains("Location https://login.example.net/token)"),
        "{}",
        failure.message
    );
}

#[test]
fn oauth2_transient_answers_table() {
    type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (500, &[JSON], r#"{"error":"server_error"}"#),
        (503, &[JSON], r#"{"error":"temporarily_unavailable"}"#),
        (400, &[JSON], r#"{"error":"temporarily_unavailable"}"#),
        (502, &[], ""),
        (
            504,
            &[("content-type", "text/plain")],
            "upstream request timeout",
        ),
        (408, &[], ""),
        (429, &[], ""),
        (
            403,
            &[("content-type", "text/html")],
            "<html>Forbidden</html>",
        ),
        (407, &[], ""),
        (
            400,
            &[("content-type", "text/html")],
            "<html>400 Bad Request</html>",
        ),
    ];
    for (status, headers, body) in cases {
        let failure = answer(*status, headers, body).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Transient, "{status} {body}");
    }
}

#[test]
fn oauth2_html_error_page_from_a_proxy_says_what_came_back() {
    let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n</body>\r\n</html>\r\n";
    let failure = answer(502, &[("content-type", "text/html")], page).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.message.contains("502"), "{}", failure.message);
    assert!(failure.message.contains("text/html"), "{}", failure.message);
    assert!(
        failure.message.contains("<title>502 Bad Gateway"),
        "{}",
        failure.message
    );
    // Behind a misconfigured proxy an HTML page can come with 200: still transient.
    let failure = answer(200, &[("content-type", "text/html")], page).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.message.contains("200"), "{}", failure.message);
    assert!(failure.message.contains("<html>"), "{}", failure.message);
}

#[test]
fn oauth2_empty_and_wrongly_typed_success_bodies_are_transient() {
    for (headers, body) in [
        (&[JSON][..], ""),
        (&[("content-type", "text/plain")][..], "OK"),
        (&[JSON][..], "{\"access_token\": \"truncated"),
        (&[JSON][..], r#"{"token_type":"Bearer","expires_in":3600}"#),
        (&[JSON][..], "[]"),
    ] {
        let failure = answer(200, headers, body).unwrap_err();
        assert_eq!(failure.kind, FailureKind::Transient, "{body:?}");
    }
}

#[test]
fn oauth2_retry_after_in_seconds_and_as_an_http_date() {
    let seconds = answer(503, &[("retry-after", "120")], "").unwrap_err();
    assert_eq!(seconds.retry_after, Some(Duration::from_secs(120)));
    let date = answer(
        503,
        &[
            ("date", "Fri, 27 Nov 2026 10:00:00 GMT"),
            ("retry-after", "Fri, 27 Nov 2026 10:01:30 GMT"),
        ],
        "",
    )
    .unwrap_err();
    assert_eq!(date.retry_after, Some(Duration::from_secs(90)));
}

#[test]
fn oauth2_client_secret_basic_exact_header_and_body_bytes() {
    let grant = RefreshGrant::new("https://login.example.com/token", "my app")
        .client_secret("p@ss:word/+ é")
        .auth(ClientAuth::Basic);
    let request = grant.request(Some(&Secret::new("rt/1+2=3"))).unwrap();
    assert_eq!(request.method(), http::Method::POST);
    assert_eq!(request.uri(), "https://login.example.com/token");
    // RFC 6749 §2.3.1: form-urlencode id and secret, then base64("id:secret").
    // base64("my+app:p%40ss%3Aword%2F%2B+%C3%A9"), computed independently.
    assert_eq!(
        request.headers()["authorization"],
        "Basic bXkrYXBwOnAlNDBzcyUzQXdvcmQlMkYlMkIrJUMzJUE5"
    );
    assert_eq!(
        request.headers()["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(request.headers()["accept"], "application/json");
    assert_eq!(
        std::str::from_utf8(request.body()).unwrap(),
        "grant_type=refresh_token&refresh_token=rt%2F1%2B2%3D3"
    );
}

#[test]
fn oauth2_client_secret_post_exact_body_bytes_with_scope_and_extras() {
    let grant = RefreshGrant::new("https://login.example.com/token", "my-app")
        .client_secret("s3cr3t&x")
        .auth(ClientAuth::Post)
        .scope("openid offline_access")
        .param("resource", "https://api.example.com/");
    let request = grant.request(Some(&Secret::new("rt-1"))).unwrap();
    assert!(request.headers().get("authorization").is_none());
    assert_eq!(
        std::str::from_utf8(request.body()).unwrap(),
        "grant_type=refresh_token&refresh_token=rt-1&scope=openid+offline_access\
         &client_id=my-app&client_secret=s3cr3t%26x&resource=https%3A%2F%2Fapi.example.com%2F"
    );
}

#[test]
fn oauth2_failures_never_echo_the_client_secret_or_tokens() {
    // A server that echoes what it got back into its error description.
    let body = format!(
        r#"{{"error":"invalid_client","error_description":"client secret {CLIENT_SECRET} does not match"}}"#
    );
    let failure = answer(401, &[JSON], &body).unwrap_err();
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        !failure.message.contains(CLIENT_SECRET),
        "{}",
        failure.message
    );
    assert!(!format!("{failure:?}").contains(CLIENT_SECRET));
    let debug = format!("{:?}", grant());
    assert!(!debug.contains(CLIENT_SECRET), "{debug}");
}
