//! Starting a session, end to end over real HTTP on 127.0.0.1: the sans-IO codec of
//! `silent-refresh-oauth2` (discovery, the device flow, the authorization code flow
//! with PKCE, revocation) driven against the embedded server with ureq, with no
//! redirect ever followed by the HTTP client. The only waits are the device flow's
//! polling interval (1 s), as the protocol requires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use axum::http;
use silent_refresh::{FailureKind, Secret, Token};
use silent_refresh_oauth2::{
    AuthorizationRequest, ClientAuth, DeviceAuthorizationRequest, DevicePoll, Discovery, Error,
    Metadata, RefreshGrant, RevocationRequest, SIGN_IN_FAILED_PAGE, SIGNED_IN_PAGE, TokenTypeHint,
    WellKnown,
};
use silent_refresh_testkit::server::{AuthServer, ServerConfig};

fn server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(30),
        token_latency: Duration::ZERO,
        ..ServerConfig::default()
    })
    .expect("the embedded server starts")
}

/// Sends a request as the codec built it; no redirect is followed.
fn send(request: http::Request<Vec<u8>>) -> http::Response<Vec<u8>> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = agent.run(request).expect("the server answers");
    let (parts, mut body) = response.into_parts();
    let body = body.read_to_vec().expect("a body");
    http::Response::from_parts(parts, body)
}

fn discover(issuer: &str) -> Result<Metadata, Error> {
    let mut discovery = Discovery::new(issuer)?;
    loop {
        let answer = send(discovery.request()?);
        if let Some(metadata) = discovery.handle_response(&answer)? {
            return Ok(metadata);
        }
    }
}

/// A client: its id, and the grant that carries its authentication.
struct Client {
    id: String,
    grant: RefreshGrant,
}

/// The public client of the embedded server, at the discovered token endpoint.
fn public_client(server: &AuthServer, metadata: &Metadata) -> Client {
    let id = server.signin_config().public_client_id;
    Client {
        grant: metadata.grant(id.clone()),
        id,
    }
}

/// The confidential client, authenticated as the metadata suggests.
fn confidential_client(server: &AuthServer, metadata: &Metadata) -> Client {
    let config = server.config();
    Client {
        id: config.client_id.clone(),
        grant: RefreshGrant::new(metadata.token_endpoint(), config.client_id.clone())
            .client_secret(config.client_secret.clone().expect("a secret"))
            .auth(metadata.client_auth(true)),
    }
}

/// Both clients.
fn clients(server: &AuthServer, metadata: &Metadata) -> [Client; 2] {
    [
        public_client(server, metadata),
        confidential_client(server, metadata),
    ]
}

#[test]
fn discovery_reads_both_documents_of_both_issuers() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    assert_eq!(metadata.issuer(), server.issuer());
    assert_eq!(metadata.token_endpoint(), server.token_url());
    assert_eq!(
        metadata.device_authorization_endpoint(),
        Some(server.device_authorization_url().as_str())
    );
    assert_eq!(
        metadata.authorization_endpoint(),
        Some(server.authorization_url().as_str())
    );
    assert_eq!(
        metadata.revocation_endpoint(),
        Some(server.revocation_url().as_str())
    );
    assert_eq!(metadata.code_challenge_methods_supported(), ["S256"]);
    assert!(metadata.authorization_response_iss_parameter_supported());
    assert!(
        metadata
            .url()
            .ends_with("/.well-known/openid-configuration")
    );
    assert_eq!(metadata.client_auth(true), ClientAuth::Basic);

    // RFC 8414's document alone, and the issuer with a path (inserted and appended).
    for (issuer, kind, path) in [
        (
            server.issuer(),
            WellKnown::OAuth,
            "/.well-known/oauth-authorization-server",
        ),
        (
            server.tenant_issuer(),
            WellKnown::OAuth,
            "/.well-known/oauth-authorization-server/tenant",
        ),
        (
            server.tenant_issuer(),
            WellKnown::OpenIdConnect,
            "/tenant/.well-known/openid-configuration",
        ),
    ] {
        let discovery = Discovery::new(issuer.clone()).expect("issuer").only(kind);
        let request = discovery.request().expect("request");
        assert_eq!(request.uri().path(), path);
        let metadata = discovery
            .read_response(kind, &send(request))
            .unwrap_or_else(|e| panic!("{issuer} {kind:?}: {e}"));
        assert_eq!(metadata.issuer(), issuer);
        assert_eq!(metadata.token_endpoint(), server.token_url());
    }
    assert_eq!(server.take_stats().signin.metadata_requests, 4);

    // Nothing at either URL: the error names both.
    let error = discover(&format!("{}/nowhere", server.issuer())).expect_err("no metadata");
    let message = error.to_string();
    assert!(
        matches!(error, Error::MetadataUnavailable { .. }),
        "{error:?}"
    );
    assert!(
        message.contains("/.well-known/oauth-authorization-server/nowhere")
            && message.contains("/nowhere/.well-known/openid-configuration")
            && message.contains("HTTP 404"),
        "{message}"
    );

    // A server that names another issuer: its data is not used.
    server.set_metadata_issuer(Some("https://impostor.example".to_owned()));
    let error = discover(&server.issuer()).expect_err("mismatch");
    let Error::IssuerMismatch {
        expected, found, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(expected, &server.issuer());
    assert_eq!(found, "https://impostor.example");
}

/// A device flow until it ends: `decide` is called with the user code after the first
/// answer (approve, deny or expire it there); each poll waits for the interval.
fn device_flow(
    client: &RefreshGrant,
    metadata: &Metadata,
    decide: impl FnOnce(&str),
) -> Result<Token, Error> {
    let device = DeviceAuthorizationRequest::new(
        metadata
            .device_authorization_endpoint()
            .expect("an endpoint"),
    )
    .scope("read offline_access");
    let sent = Instant::now();
    let authorization = device.read_response(client, &send(device.request(client)?))?;
    assert_eq!(authorization.interval(), Duration::from_secs(1));
    assert!(
        authorization
            .verification_uri_complete()
            .expect("a complete URI")
            .ends_with(authorization.user_code())
    );
    let user_code = authorization.user_code().to_owned();
    let mut poll = DevicePoll::new(client.clone(), authorization, sent);
    let mut decide = Some(decide);
    loop {
        let due = poll.poll_timeout().expect("a poll is due");
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let Some(request) = poll.poll_request(Instant::now())? else {
            continue;
        };
        let answer = send(request);
        if let Some(token) = poll.handle_response(Instant::now(), &answer)? {
            return Ok(token);
        }
        if let Some(decide) = decide.take() {
            decide(&user_code);
        }
    }
}

/// Refreshes once with `grant` and returns the answer.
fn refresh(
    grant: &RefreshGrant,
    refresh_token: &Secret,
) -> Result<Token, silent_refresh::RefreshFailure> {
    let request = grant.request(Some(refresh_token))?;
    grant.parse_response_for(&send(request), Some(refresh_token))
}

#[test]
fn device_flow_approved_starts_a_rotating_session_public_and_confidential() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    for Client { grant: client, .. } in clients(&server, &metadata) {
        let token = device_flow(&client, &metadata, |code| {
            assert!(server.approve_device(code), "pending");
        })
        .expect("signed in");
        let first = token.refresh_token.clone().expect("a refresh token");
        let grant = server.grant_of(first.expose()).expect("a grant");
        assert!(server.access_token_is_active(token.access_token.expose()));
        assert_eq!(token.scope.as_deref(), Some("read offline_access"));

        // The session rotates, and a replayed refresh token revokes it.
        let next = refresh(&client, &first).expect("refreshed");
        let second = next.refresh_token.expect("rotated");
        assert_ne!(second.expose(), first.expose());
        let replayed = refresh(&client, &first).expect_err("reuse");
        assert_eq!(replayed.kind, FailureKind::Terminal);
        assert!(server.is_revoked(grant));
        assert_eq!(
            refresh(&client, &second).expect_err("revoked").kind,
            FailureKind::Terminal
        );
    }
    let stats = server.take_stats();
    assert_eq!(stats.signin.device_authorizations, 2);
    assert_eq!(stats.signin.device_sessions, 2);
    assert_eq!(stats.signin.authorization_pending, 2);
    assert_eq!(stats.signin.device_polls, 4);
    assert_eq!(stats.signin.slow_down, 0);
    assert!(stats.signin.public_client_requests >= 4, "{stats:?}");
    assert_eq!(stats.reuse_detected, 2);
}

#[test]
fn device_flow_denied_or_expired_ends_with_a_clear_error() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    let client = public_client(&server, &metadata).grant;
    let denied = device_flow(&client, &metadata, |code| {
        assert!(server.deny_device(code));
    })
    .expect_err("denied");
    assert!(matches!(denied, Error::AccessDenied { .. }), "{denied:?}");
    assert!(denied.to_string().contains("the user denied"), "{denied}");

    let expired = device_flow(&client, &metadata, |code| {
        assert!(server.expire_device(code));
    })
    .expect_err("expired");
    assert_eq!(expired, Error::DeviceCodeExpired);
    let stats = server.take_stats().signin;
    assert_eq!((stats.device_denied, stats.device_expired), (1, 1));
    assert_eq!(stats.device_sessions, 0);
    // A decided or unknown user code cannot be decided again.
    assert!(!server.approve_device("NOPE-NOPE"));
}

#[test]
fn device_flow_slows_down_by_five_seconds_when_polled_too_fast() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    let client = public_client(&server, &metadata).grant;
    let device = DeviceAuthorizationRequest::new(
        metadata
            .device_authorization_endpoint()
            .expect("an endpoint"),
    );
    let start = Instant::now();
    let authorization = device
        .read_response(&client, &send(device.request(&client).expect("request")))
        .expect("a code");
    let user_code = authorization.user_code().to_owned();
    let mut poll = DevicePoll::new(client.clone(), authorization, start);
    // A client whose clock runs fast: the codec is told a second has passed, twice,
    // while the server sees two polls at once.
    let mut fake_now = start + Duration::from_secs(1);
    for expected_interval in [1, 6] {
        let request = poll.poll_request(fake_now).expect("ok").expect("due");
        assert!(
            poll.handle_response(fake_now, &send(request))
                .expect("polling")
                .is_none()
        );
        assert_eq!(poll.interval(), Duration::from_secs(expected_interval));
        fake_now = poll.poll_timeout().expect("next");
    }
    assert_eq!(fake_now, start + Duration::from_secs(8));
    assert_eq!(server.take_stats().signin.slow_down, 1);
    // Approved; the next poll, a real interval later, gets the session.
    assert!(server.approve_device(&user_code));
    std::thread::sleep(Duration::from_secs(1));
    let request = poll.poll_request(fake_now).expect("ok").expect("due");
    let token = poll
        .handle_response(fake_now, &send(request))
        .expect("signed in")
        .expect("a token");
    assert!(token.refresh_token.is_some());
}

/// A one-shot loopback listener: reads one request head and answers with what `answer`
/// makes of its target. Returns the target it read.
fn one_request(listener: &TcpListener, answer: impl FnOnce(&str) -> &'static str) -> String {
    let (mut stream, _) = listener.accept().expect("a connection");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    reader.read_line(&mut line).expect("request line");
    let target = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).expect("header") <= 2 {
            break;
        }
    }
    let page = answer(&target);
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
        page.len()
    );
    target
}

/// The test browser: opens `url` at the authorization endpoint (whose test user
/// approves at once), takes the `Location` of its redirect, lets `tamper` change it,
/// and follows it to the loopback listener. Returns the page the listener showed.
fn browse(url: &str, tamper: impl FnOnce(String) -> String) -> String {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let response = agent
        .get(url)
        .call()
        .expect("the authorization endpoint answers");
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let mut page = agent
        .get(&tamper(location))
        .call()
        .expect("the listener answers");
    page.body_mut().read_to_string().expect("a page")
}

/// One browser sign-in with `client`: the listener reads the redirect the browser
/// follows (after `tamper`), and the code is exchanged. Returns the result and the
/// page the user saw.
fn browser_sign_in(
    metadata: &Metadata,
    client: &Client,
    scope: &str,
    seed: u8,
    tamper: impl FnOnce(String) -> String + Send + 'static,
) -> (Result<Token, Error>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let redirect_uri = format!("http://{}/callback", listener.local_addr().expect("addr"));
    let flow = AuthorizationRequest::from_metadata(metadata, &client.id, redirect_uri, [seed; 64])
        .expect("an authorization endpoint")
        .scope(scope);
    let url = flow.url().expect("a URL");
    let browser = std::thread::spawn(move || browse(&url, tamper));
    let mut result = None;
    let target = one_request(&listener, |target| {
        assert!(flow.is_callback(target), "{target}");
        let read = flow.read_redirect(target);
        let page = if read.is_ok() {
            SIGNED_IN_PAGE
        } else {
            SIGN_IN_FAILED_PAGE
        };
        result = Some(read);
        page
    });
    assert!(target.starts_with("/callback?"), "{target}");
    let page = browser.join().expect("the browser");
    let result = result.expect("read").and_then(|code| {
        let answer = send(flow.token_request(&client.grant, &code)?);
        flow.read_token_response(&client.grant, &code, &answer)
    });
    (result, page)
}

#[test]
fn browser_sign_in_checks_state_and_issuer_and_exchanges_the_code_once() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    for client in clients(&server, &metadata) {
        // A wrong state: refused, and the user is told to look at the terminal.
        let (result, page) = browser_sign_in(&metadata, &client, "read", 1, |location| {
            let (head, _) = location.split_once("state=").expect("a state");
            let rest = &location[head.len() + "state=".len()..];
            let tail = rest.find('&').map_or("", |at| &rest[at..]);
            format!("{head}state=forged{tail}")
        });
        assert!(matches!(result, Err(Error::StateMismatch(_))), "{result:?}");
        assert_eq!(page, SIGN_IN_FAILED_PAGE);
        // An `iss` of another server: a mix-up, refused.
        let (result, _) = browser_sign_in(&metadata, &client, "read", 2, |location| {
            location.replace("&iss=", "&iss=https%3A%2F%2Fother.example&x=")
        });
        assert!(
            matches!(result, Err(Error::AuthorizationIssuerMismatch { .. })),
            "{result:?}"
        );
        // The right one.
        let (result, page) = browser_sign_in(&metadata, &client, "read offline_access", 3, |l| l);
        let token = result.expect("signed in");
        assert_eq!(page, SIGNED_IN_PAGE);
        let first = token.refresh_token.expect("a refresh token");
        let next = refresh(&client.grant, &first).expect("the session refreshes");
        assert!(next.refresh_token.is_some());
    }
    let stats = server.take_stats().signin;
    assert_eq!(stats.authorizations, 6);
    assert_eq!(stats.code_sessions, 2);
    assert_eq!(stats.consent_prompts, 2, "offline_access asks for consent");
    assert_eq!(stats.code_refused, 0);
}

#[test]
fn a_code_is_good_once_and_only_with_its_verifier() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    let Client { id, grant: client } = public_client(&server, &metadata);
    let redirect_uri = "http://127.0.0.1:50123/callback";
    let flow =
        AuthorizationRequest::from_metadata(&metadata, &id, redirect_uri, [4; 64]).expect("flow");
    let location = |flow: &AuthorizationRequest| {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        let response = agent.get(&flow.url().expect("url")).call().expect("answer");
        response.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned()
    };
    let code = flow.read_redirect(&location(&flow)).expect("a code");

    // Another sign-in's verifier with this code: refused (PKCE), and the code is
    // still good for its own verifier.
    let other =
        AuthorizationRequest::from_metadata(&metadata, &id, redirect_uri, [5; 64]).expect("flow");
    let refused = other
        .read_token_response(
            &client,
            &code,
            &send(other.token_request(&client, &code).expect("request")),
        )
        .expect_err("wrong verifier");
    let Error::Endpoint(failure) = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(failure.kind, FailureKind::Terminal);
    assert!(
        !failure.message.contains(code.secret().expose()),
        "{}",
        failure.message
    );

    let token = flow
        .read_token_response(
            &client,
            &code,
            &send(flow.token_request(&client, &code).expect("request")),
        )
        .expect("signed in");
    let refresh_token = token.refresh_token.expect("rt");
    // A second use of the code: refused, and the session it started is revoked.
    let again = flow
        .read_token_response(
            &client,
            &code,
            &send(flow.token_request(&client, &code).expect("request")),
        )
        .expect_err("used");
    assert!(
        again.to_string().contains("start the sign-in again"),
        "{again}"
    );
    assert_eq!(
        refresh(&client, &refresh_token).expect_err("revoked").kind,
        FailureKind::Terminal
    );
    let stats = server.take_stats().signin;
    assert_eq!((stats.pkce_failures, stats.code_refused), (1, 2));

    // The user denies: the redirect says so.
    server.set_user_denies(true);
    let denied = flow.read_redirect(&location(&flow)).expect_err("denied");
    assert!(matches!(denied, Error::AccessDenied { .. }), "{denied:?}");
}

#[test]
fn revocation_ends_the_session_at_the_server() {
    let server = server();
    let metadata = discover(&server.issuer()).expect("metadata");
    let revocation = RevocationRequest::new(metadata.revocation_endpoint().expect("an endpoint"));
    for Client { grant: client, .. } in clients(&server, &metadata) {
        let signed_in = server.sign_in(Some("read"));
        let token = refresh(&client, &Secret::new(signed_in.refresh_token.clone())).expect("token");
        let refresh_token = token.refresh_token.clone().expect("rt");
        let access = token.access_token.clone();

        // The access token alone: it stops working, the session does not.
        let answer = send(
            revocation
                .request(&client, &access, TokenTypeHint::AccessToken)
                .expect("request"),
        );
        revocation
            .read_response(&client, &access, TokenTypeHint::AccessToken, &answer)
            .expect("revoked");
        assert!(!server.access_token_is_active(access.expose()));
        let token = refresh(&client, &refresh_token).expect("the session goes on");
        let refresh_token = token.refresh_token.expect("rt");

        // The refresh token: the grant ends; the next refresh is invalid_grant.
        let answer = send(
            revocation
                .request(&client, &refresh_token, TokenTypeHint::RefreshToken)
                .expect("request"),
        );
        revocation
            .read_response(
                &client,
                &refresh_token,
                TokenTypeHint::RefreshToken,
                &answer,
            )
            .expect("revoked");
        assert!(server.is_revoked(signed_in.id));
        assert!(!server.access_token_is_active(token.access_token.expose()));
        let failure = refresh(&client, &refresh_token).expect_err("revoked");
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("invalid_grant"),
            "{}",
            failure.message
        );

        // Revoking it again, or a token the server never issued: still 200.
        for token in [refresh_token, Secret::new("never-issued")] {
            let answer = send(
                revocation
                    .request(&client, &token, TokenTypeHint::RefreshToken)
                    .expect("request"),
            );
            assert_eq!(answer.status(), 200);
        }
    }
    let stats = server.take_stats().signin;
    assert_eq!(stats.revocations, 8);
    assert_eq!((stats.revoked_grants, stats.revoked_access_tokens), (2, 2));

    // A wrong client secret: misconfigured, the secret never quoted.
    let wrong = RefreshGrant::new(server.token_url(), server.config().client_id.clone())
        .client_secret("not-the-secret");
    let token = Secret::new("x");
    let answer = send(
        revocation
            .request(&wrong, &token, TokenTypeHint::RefreshToken)
            .expect("request"),
    );
    let error = revocation
        .read_response(&wrong, &token, TokenTypeHint::RefreshToken, &answer)
        .expect_err("refused");
    let Error::Endpoint(failure) = &error else {
        panic!("{error:?}")
    };
    assert_eq!(failure.kind, FailureKind::Misconfigured);
    assert!(
        !failure.message.contains("not-the-secret"),
        "{}",
        failure.message
    );
}
