//! The OAuth 2.0 codec driven by the machine against an in-test token endpoint (a
//! plain function over `http` values: the codec does no I/O, so no socket is needed),
//! and properties of the codec over arbitrary inputs.

use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use silent_refresh::{
    Action, Config, Credentials, Error, Expiry, FailureKind, Secret, Status, TokenMachine,
};
use silent_refresh_oauth2::{ClientAuth, RefreshGrant};

const URL: &str = "https://auth.example.com/oauth/token";
const CLIENT_ID: &str = "app";
const CLIENT_SECRET: &str = "client-s3cret";

/// A token endpoint with rotating refresh credentials: each credential works once.
struct Endpoint {
    valid: String,
    issued: u32,
    lifetime: u64,
    /// When set, every answer is this status with this `Retry-After`.
    unavailable: Option<(u16, &'static str)>,
}

impl Endpoint {
    fn new(first: &str) -> Self {
        Self {
            valid: first.to_owned(),
            issued: 0,
            lifetime: 3600,
            unavailable: None,
        }
    }

    fn answer(&mut self, request: &http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
        if let Some((status, retry_after)) = self.unavailable {
            return respond(status, &[("retry-after", retry_after)], "upstream down");
        }
        let basic = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|v| STANDARD.decode(v).ok());
        if basic.as_deref() != Some(format!("{CLIENT_ID}:{CLIENT_SECRET}").as_bytes()) {
            return json(401, r#"{"error":"invalid_client"}"#);
        }
        let form: Vec<(String, String)> = form_urlencoded::parse(request.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        if field("grant_type").as_deref() != Some("refresh_token") {
            return json(400, r#"{"error":"unsupported_grant_type"}"#);
        }
        let presented = field("refresh_token").unwrap_or_default();
        if presented != self.valid {
            // Some servers echo what they refused: the codec must not pass it on.
            let body = serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("refresh token {presented} was already used"),
            });
            return json(400, &body.to_string());
        }
        self.issued += 1;
        self.valid = format!("rt-{:0>48}", self.issued);
        let body = serde_json::json!({
            "access_token": format!("at-{}", self.issued),
            "token_type": "bearer",
            "expires_in": self.lifetime.to_string(),
            "refresh_token": self.valid,
        });
        json(200, &body.to_string())
    }
}

fn respond(status: u16, headers: &[(&str, &str)], body: &str) -> http::Response<Vec<u8>> {
    let mut response = http::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(body.as_bytes().to_vec())
        .expect("a valid response")
}

fn json(status: u16, body: &str) -> http::Response<Vec<u8>> {
    respond(status, &[("content-type", "application/json")], body)
}

fn grant() -> RefreshGrant {
    RefreshGrant::new(URL, CLIENT_ID).client_secret(CLIENT_SECRET)
}

/// Drains the machine; each `StartRefresh` goes through the codec and the endpoint
/// and its result is fed back at once. Returns every other action, in order, and the
/// credentials the refreshes sent.
fn drive(
    machine: &mut TokenMachine,
    endpoint: &mut Endpoint,
    now: Instant,
) -> (Vec<Action>, Vec<Option<String>>) {
    drive_with(machine, endpoint, now, &grant())
}

/// [`drive`] with the client settings of `grant`.
fn drive_with(
    machine: &mut TokenMachine,
    endpoint: &mut Endpoint,
    now: Instant,
    grant: &RefreshGrant,
) -> (Vec<Action>, Vec<Option<String>>) {
    let mut actions = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..100 {
        let Some(action) = machine.poll_action() else {
            return (actions, sent);
        };
        match action {
            Action::StartRefresh {
                attempt,
                refresh_token,
            } => {
                sent.push(refresh_token.as_ref().map(|s| s.expose().to_owned()));
                let result = grant
                    .request(refresh_token.as_ref())
                    .map(|request| endpoint.answer(&request))
                    .and_then(|response| {
                        grant.parse_response_for(&response, refresh_token.as_ref())
                    });
                machine.handle_refresh_result(now, attempt, result);
            }
            other => actions.push(other),
        }
    }
    panic!("the driver loop did not settle");
}

#[test]
fn refreshes_through_the_codec_rotate_the_credential() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut endpoint = Endpoint::new("rt-first");
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    machine.handle_sign_in(start, wall, Credentials::RefreshToken("rt-first".into()));

    let request = machine.handle_request(start, None);
    let (actions, sent) = drive(&mut machine, &mut endpoint, start);
    assert_eq!(sent, vec![Some("rt-first".to_owned())]);
    let [
        Action::Persist { token: stored, .. },
        Action::Grant { request: id, token },
    ] = actions.as_slice()
    else {
        panic!("expected a Persist then a Grant, got {actions:?}");
    };
    assert_eq!(*id, request);
    assert_eq!(*token.authorization(), "Bearer at-1");
    assert_eq!(
        stored.refresh_token.as_ref().map(Secret::expose),
        Some(endpoint.valid.as_str())
    );
    assert_eq!(
        stored.expiry,
        Expiry::At(wall + Duration::from_secs(endpoint.lifetime))
    );

    // The proactive refresh sends the rotated credential, which the endpoint accepts.
    let wakeup = machine.poll_timeout().expect("a refresh is scheduled");
    assert!(wakeup.at < start + Duration::from_secs(endpoint.lifetime));
    let rotated = endpoint.valid.clone();
    machine.handle_timeout(wakeup.at);
    let (actions, sent) = drive(&mut machine, &mut endpoint, wakeup.at);
    assert_eq!(sent, vec![Some(rotated)]);
    assert!(
        matches!(actions.as_slice(), [Action::Persist { .. }]),
        "{actions:?}"
    );
    assert_eq!(endpoint.issued, 2);
    assert_eq!(machine.status(), &Status::SignedIn);
    let (token, _) = machine.fresh_token().expect("a fresh token");
    assert_eq!(*token.authorization(), "Bearer at-2");
}

#[test]
fn a_consumed_credential_requires_sign_in_without_leaking_it() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    let mut endpoint = Endpoint::new("rt-current");
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    let stale = format!("rt-stale-{}", "x".repeat(40));
    machine.handle_sign_in(
        start,
        wall,
        Credentials::RefreshToken(stale.as_str().into()),
    );

    let request = machine.handle_request(start, None);
    let (actions, _) = drive(&mut machine, &mut endpoint, start);
    let [
        Action::Reject {
            request: id,
            error: error @ Error::SignInRequired { .. },
        },
    ] = actions.as_slice()
    else {
        panic!("expected one sign-in rejection, got {actions:?}");
    };
    assert_eq!(*id, request);
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("invalid_grant"), "{shown}");
    assert!(shown.contains("sign in again"), "{shown}");
    assert!(!shown.contains(&stale), "{shown}");
    assert!(matches!(machine.status(), Status::SignInRequired(_)));
}

#[test]
fn a_wrong_client_secret_is_misconfigured_and_the_session_resumes_once_fixed() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    let mut endpoint = Endpoint::new("rt-first");
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    machine.handle_sign_in(start, wall, Credentials::RefreshToken("rt-first".into()));

    let wrong = RefreshGrant::new(URL, CLIENT_ID).client_secret("not-the-secret");
    let request = machine.handle_request(start, None);
    let (actions, sent) = drive_with(&mut machine, &mut endpoint, start, &wrong);
    assert_eq!(sent, vec![Some("rt-first".to_owned())]);
    let [
        Action::Reject {
            request: id,
            error: error @ Error::Misconfigured { .. },
        },
    ] = actions.as_slice()
    else {
        panic!("expected one misconfiguration rejection, got {actions:?}");
    };
    assert_eq!(*id, request);
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("invalid_client"), "{shown}");
    assert!(shown.contains("client secret"), "{shown}");
    assert!(!shown.to_ascii_lowercase().contains("sign in"), "{shown}");
    assert!(!shown.contains("not-the-secret"), "{shown}");
    assert!(matches!(machine.status(), Status::Misconfigured(_)));

    // Fixed: after the backoff, the refresh sends the same credential, which was kept.
    let later = machine.backoff_until().expect("a backoff");
    machine.handle_timeout(later);
    let request = machine.handle_request(later, None);
    let (actions, sent) = drive(&mut machine, &mut endpoint, later);
    assert_eq!(sent, vec![Some("rt-first".to_owned())]);
    assert!(
        matches!(
            actions.as_slice(),
            [Action::Persist { .. }, Action::Grant { request: id, .. }] if *id == request
        ),
        "{actions:?}"
    );
    assert_eq!(machine.status(), &Status::SignedIn);
}

#[test]
fn a_redirecting_token_url_is_misconfigured_and_names_the_final_address() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    machine.handle_sign_in(start, wall, Credentials::RefreshToken("rt-first".into()));
    let request = machine.handle_request(start, None);
    let Some(Action::StartRefresh {
        attempt,
        refresh_token,
    }) = machine.poll_action()
    else {
        panic!("expected a refresh");
    };
    let redirect = respond(
        307,
        &[(
            "location",
            "https://user:pw@login.example.net/oauth2/v2.0/token?state=s3cret",
        )],
        "",
    );
    let result = grant().parse_response_for(&redirect, refresh_token.as_ref());
    machine.handle_refresh_result(start, attempt, result);
    let Some(Action::Reject {
        request: id,
        error: error @ Error::Misconfigured { .. },
    }) = machine.poll_action()
    else {
        panic!("expected a misconfiguration rejection");
    };
    assert_eq!(id, request);
    let shown = error.to_string();
    assert!(
        shown.contains("Location https://login.example.net/oauth2/v2.0/token)"),
        "{shown}"
    );
    assert!(shown.contains("configure the final token URL"), "{shown}");
    for hidden in ["user", "pw@", "state", "s3cret"] {
        assert!(!shown.contains(hidden), "{hidden}: {shown}");
    }
}

#[test]
fn an_unavailable_endpoint_backs_off_for_its_retry_after() {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH;
    let mut endpoint = Endpoint::new("rt-first");
    endpoint.unavailable = Some((503, "120"));
    let mut machine = TokenMachine::new(Config::default(), start, wall);
    machine.handle_sign_in(start, wall, Credentials::RefreshToken("rt-first".into()));

    let request = machine.handle_request(start, None);
    let (actions, sent) = drive(&mut machine, &mut endpoint, start);
    assert_eq!(sent.len(), 1);
    // The next attempt comes after the request's 30 s deadline: it cannot succeed by
    // waiting, so it is answered at once with the failure (rule 7).
    match &actions[..] {
        [
            Action::Reject {
                request: id,
                error: error @ Error::RefreshFailed { retry_in, .. },
            },
        ] => {
            assert_eq!(*id, request);
            assert!(*retry_in >= Duration::from_secs(120), "{retry_in:?}");
            assert!(error.to_string().contains("503"), "{error}");
        }
        other => panic!("expected the request to be answered with the failure: {other:?}"),
    }
    assert_eq!(machine.status(), &Status::SignedIn);
    let until = machine.backoff_until().expect("a backoff");
    assert!(until >= start + Duration::from_secs(120));
    let failure = machine.last_failure().expect("the failure is kept");
    assert!(failure.contains("503"), "{failure}");
}

/// Strings that may hold anything a form or a header must escape.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect()),
    ]
}

/// Extra parameter names the codec does not reserve.
fn param_name() -> impl Strategy<Value = String> {
    "[a-z_]{1,12}".prop_filter("not reserved", |name| {
        ![
            "grant_type",
            "refresh_token",
            "client_id",
            "client_secret",
            "scope",
        ]
        .contains(&name.as_str())
    })
}

fn auth() -> impl Strategy<Value = ClientAuth> {
    prop_oneof![
        Just(ClientAuth::Basic),
        Just(ClientAuth::Post),
        Just(ClientAuth::None)
    ]
}

proptest! {
    /// Whatever the strings, the server reads back exactly what was configured.
    #[test]
    fn the_request_round_trips(
        refresh_token in proptest::option::of(any_text().prop_filter("non-empty", |s| !s.is_empty())),
        client_id in any_text().prop_filter("non-empty", |s| !s.is_empty()),
        client_secret in proptest::option::of(any_text()),
        auth in auth(),
        scope in proptest::option::of(any_text()),
        params in proptest::collection::vec((param_name(), any_text()), 0..4),
    ) {
        let mut grant = RefreshGrant::new(URL, client_id.clone()).auth(auth);
        if let Some(secret) = &client_secret {
            grant = grant.client_secret(secret.as_str());
        }
        if let Some(scope) = &scope {
            grant = grant.scope(scope.as_str());
        }
        for (name, value) in &params {
            grant = grant.param(name.as_str(), value.as_str());
        }
        let credential = refresh_token.as_deref().map(Secret::new);
        let request = grant.request(credential.as_ref()).expect("a valid grant");

        let mut expected = match &refresh_token {
            Some(rt) => vec![
                ("grant_type".to_owned(), "refresh_token".to_owned()),
                ("refresh_token".to_owned(), rt.clone()),
            ],
            None => vec![("grant_type".to_owned(), "client_credentials".to_owned())],
        };
        if let Some(scope) = &scope {
            expected.push(("scope".to_owned(), scope.clone()));
        }
        let basic = auth == ClientAuth::Basic && client_secret.is_some();
        if !basic {
            expected.push(("client_id".to_owned(), client_id.clone()));
        }
        if let (ClientAuth::Post, Some(secret)) = (auth, &client_secret) {
            expected.push(("client_secret".to_owned(), secret.clone()));
        }
        expected.extend(params.iter().cloned());
        let body: Vec<(String, String)> = form_urlencoded::parse(request.body())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        prop_assert_eq!(body, expected);

        let header = request.headers().get(http::header::AUTHORIZATION);
        prop_assert_eq!(header.is_some(), basic);
        if let (Some(header), Some(secret)) = (header, &client_secret) {
            let encoded = header.to_str().expect("ascii").strip_prefix("Basic ").expect("Basic");
            let decoded = String::from_utf8(STANDARD.decode(encoded).expect("base64")).expect("utf-8");
            let (id, pw) = decoded.split_once(':').expect("a colon");
            let unescape = |s: &str| -> String {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            prop_assert_eq!(unescape(id), client_id);
            prop_assert_eq!(&unescape(pw), secret);
        }
    }

    /// Any answer is read without panicking; server trouble is transient whatever the
    /// body says, and a failure never quotes the client secret.
    #[test]
    fn any_answer_is_classified(
        status in 100u16..600,
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            (any_text(), any_text(), any_text()).prop_map(|(error, before, after)| {
                serde_json::json!({
                    "error": error,
                    "error_description": format!("{before}{CLIENT_SECRET}{after}"),
                })
                .to_string()
                .into_bytes()
            }),
            (any_text(), any_text()).prop_map(|(expires_in, token_type)| {
                serde_json::json!({
                    "access_token": "at-1",
                    "expires_in": expires_in,
                    "token_type": token_type,
                })
                .to_string()
                .into_bytes()
            }),
        ],
        content_type in prop_oneof![
            Just("application/json"),
            Just("application/x-www-form-urlencoded"),
            Just("text/html"),
        ],
        retry_after in proptest::option::of("[0-9]{1,6}|[ -~]{0,12}"),
    ) {
        let mut response = http::Response::builder()
            .status(status)
            .header("content-type", content_type);
        if let Some(value) = &retry_after {
            response = response.header("retry-after", value.as_str());
        }
        let response = response.body(body).expect("a valid response");
        match grant().parse_response(&response) {
            Ok(token) => {
                prop_assert!((200..300).contains(&status));
                prop_assert!(!token.access_token.is_empty());
                prop_assert!(!token.token_type.is_empty());
            }
            Err(failure) => {
                if status >= 500 || status == 429 {
                    prop_assert_eq!(failure.kind, FailureKind::Transient);
                }
                if (300..400).contains(&status) {
                    prop_assert_eq!(failure.kind, FailureKind::Misconfigured);
                }
                if failure.kind != FailureKind::Transient {
                    prop_assert_eq!(failure.retry_after, None);
                }
                prop_assert!(!failure.message.contains(CLIENT_SECRET), "{}", failure.message);
                prop_assert!(!failure.message.contains('\n'), "{}", failure.message);
            }
        }
    }
}
