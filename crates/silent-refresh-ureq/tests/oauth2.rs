//! The ureq OAuth 2.0 refresher against a real token endpoint on 127.0.0.1 with
//! rotating refresh tokens that revoke the family on reuse.

mod support;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh_ureq::{
    Config, Credentials, FailureKind, OAuth2Refresher, RefreshGrant, Refresher, Secret, Status,
    TokenChange, TokenSource,
};
use support::{Adoptions, AuthServer, Reply, core_error, short_config};

#[test]
fn sixty_four_threads_across_several_expiries_never_reuse_a_rotated_refresh_token() {
    const LIFETIME: Duration = Duration::from_millis(200);
    let auth = AuthServer::start("rt-SECRET-1", LIFETIME);
    let stored = Arc::new(Mutex::new(None::<String>));
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(
        Config::builder()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
    .refresher(auth.refresher())
    .on_token_change({
        let stored = stored.clone();
        move |change| {
            persist(&change);
            if let TokenChange::Persist { token, .. } = &change {
                *stored.lock().expect("store") =
                    token.refresh_token.as_ref().map(|s| s.expose().to_owned());
            }
        }
    })
    .build()
    .expect("source");

    let calls = AtomicU64::new(0);
    thread::scope(|scope| {
        for _ in 0..64 {
            scope.spawn(|| {
                loop {
                    let asked_at = Instant::now();
                    let token = source.token().expect("every call answered with a token");
                    calls.fetch_add(1, Ordering::Relaxed);
                    let usable_until = token.usable_until.expect("the server gave an expiry");
                    let expires_at = auth
                        .state()
                        .expiry_of(token.secret.expose())
                        .expect("the server issued it");
                    assert!(asked_at < usable_until, "granted before its usable_until");
                    assert!(
                        usable_until <= expires_at,
                        "never usable past the server's own expiry"
                    );
                    if token.generation.0 >= 4 {
                        break;
                    }
                    thread::yield_now();
                }
            });
        }
    });
    let refreshes = auth.state().refreshes;
    adoptions.wait_for(refreshes);
    let state = auth.state();
    assert_eq!(state.reuses, 0);
    assert!(!state.revoked);
    assert_eq!(
        state.refreshes,
        source.generation().0,
        "one refresh per token"
    );
    assert_eq!(
        stored.lock().expect("store").as_deref(),
        Some(state.current_refresh.as_str()),
        "the stored credential is the one the server will accept next"
    );
    assert!(calls.load(Ordering::Relaxed) >= 64 * 4);
}

#[test]
fn a_reused_refresh_token_revokes_the_family_and_both_holders_must_sign_in() {
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    // Two processes hold the same credential: the first rotates it, the second reuses it.
    let patient = || {
        short_config()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config")
    };
    let first = TokenSource::builder(patient())
        .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
        .refresher(auth.refresher())
        .build()
        .expect("source");
    let second = TokenSource::builder(patient())
        .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
        .refresher(auth.refresher())
        .build()
        .expect("source");

    let token = first.token().expect("the first holder refreshes");
    match core_error(second.token()) {
        silent_refresh::Error::SignInRequired { reason } => {
            assert!(reason.contains("reused"), "{reason}");
        }
        other => panic!("expected SignInRequired, got {other:?}"),
    }
    assert_eq!(auth.state().reuses, 1);

    // The family is revoked: the first holder's next refresh fails for good too.
    first.report_rejected(token.generation);
    let error = first.token().expect_err("revoked");
    assert!(error.needs_sign_in(), "{error}");
    assert!(matches!(first.status(), Status::SignInRequired(_)));
    let asked_at = Instant::now();
    assert!(first.token().expect_err("fails fast").needs_sign_in());
    assert!(asked_at.elapsed() < Duration::from_secs(1), "fails fast");
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    auth.state().scripted.extend([
        Reply::text(503, "maintenance"),
        Reply::json(
            400,
            &serde_json::json!({"error": "temporarily_unavailable"}),
        ),
    ]);
    let source = TokenSource::builder(
        short_config()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
    .refresher(auth.refresher())
    .build()
    .expect("source");

    let token = source
        .token()
        .expect("granted after two transient failures");
    assert_eq!(token.secret.expose(), "at-SECRET-1");
    assert_eq!(auth.server.requests().len(), 3);
    assert_eq!(auth.state().refreshes, 1);
}

#[test]
fn an_unreachable_token_endpoint_fails_fast_and_the_status_says_so() {
    // A port nothing listens on: bound, read, released.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let refresher = OAuth2Refresher::builder(
        RefreshGrant::new(format!("http://{closed}/token"), "client").client_secret("cs"),
    )
    .build()
    .expect("loopback");
    let failure = refresher
        .refresh(Some(Secret::new("rt")))
        .expect_err("nobody listens");
    assert_eq!(failure.kind, FailureKind::Transient, "{failure}");
    assert!(failure.unreachable, "a refused connection: {failure}");
    assert!(
        failure
            .message
            .contains("could not connect to the token endpoint"),
        "{failure}"
    );

    // A long deadline: the caller must get its error from the failed attempt, not
    // from waiting it out.
    let source = TokenSource::builder(
        short_config()
            .request_timeout(Duration::from_secs(600))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken("rt".into()))
    .refresher(refresher)
    .build()
    .expect("source");
    let first = source.token().expect_err("nobody listens");
    assert!(first.is_unreachable(), "{first}");
    assert!(
        matches!(source.status(), Status::Unreachable { ref reason, .. }
            if reason.contains("could not connect")),
        "{:?}",
        source.status()
    );
    // While the backoff runs, the next caller without a token fails at once.
    let second = source.token().expect_err("still unreachable");
    // (A caller that waited out its deadline would get `DeadlineExceeded` instead.)
    assert!(second.is_unreachable(), "{second}");
}

#[test]
fn the_refresh_request_is_a_form_post_with_the_credential_and_client_authentication() {
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    let token = auth
        .refresher()
        .refresh(Some(Secret::new("rt-SECRET-1")))
        .expect("token");
    assert_eq!(token.access_token.expose(), "at-SECRET-1");
    assert_eq!(
        token.refresh_token.expect("rotated").expose(),
        "rt-SECRET-2"
    );
    let request = &auth.server.requests()[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path(), "/token");
    assert_eq!(
        request.form_value("grant_type").as_deref(),
        Some("refresh_token")
    );
    assert_eq!(
        request.form_value("refresh_token").as_deref(),
        Some("rt-SECRET-1")
    );
    assert!(
        request
            .header("authorization")
            .is_some_and(|v| v.starts_with("Basic "))
    );
    assert!(
        request
            .header("content-type")
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    );
}

/// A token endpoint that records each request and answers with a new token and a
/// refresh token (which grants other than refresh-token must drop).
fn issuing_server() -> support::TestServer {
    let issued = AtomicU64::new(0);
    support::TestServer::start(move |_| {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        Reply::json(
            200,
            &serde_json::json!({"access_token": format!("at-{n}"), "token_type": "Bearer",
                "expires_in": 3600, "refresh_token": "rt-never-kept"}),
        )
    })
}

#[test]
fn client_credentials_sends_scope_resource_and_audience_and_keeps_no_refresh_credential() {
    let server = issuing_server();
    let grant = RefreshGrant::client_credentials(server.url("/token"), "svc")
        .client_secret("s3cret")
        .auth(silent_refresh_ureq::ClientAuth::Post)
        .scope("orders:read")
        .resource("https://orders.example.com/")
        .audience("orders-api");
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    // Even handed a refresh credential, the grant sends none and keeps none.
    let token = refresher
        .refresh(Some(Secret::new("rt-stale")))
        .expect("a token");
    assert_eq!(token.access_token.expose(), "at-1");
    assert_eq!(token.refresh_token, None);
    let requests = server.requests();
    assert_eq!(
        String::from_utf8_lossy(&requests[0].body),
        "grant_type=client_credentials&scope=orders%3Aread\
         &resource=https%3A%2F%2Forders.example.com%2F&audience=orders-api\
         &client_id=svc&client_secret=s3cret"
    );

    // Through a token source: no refresh credential is ever given or stored.
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(short_config().build().expect("config"))
        .credentials(Credentials::ClientCredentials { token: None })
        .refresher(refresher)
        .on_token_change(move |change| {
            if let TokenChange::Persist { token, .. } = &change {
                assert!(
                    token.refresh_token.is_none(),
                    "no refresh credential stored"
                );
            }
            persist(&change);
        })
        .build()
        .expect("source");
    assert_eq!(source.token().expect("token").secret.expose(), "at-2");
    adoptions.wait_for(1);
}

#[test]
fn token_exchange_rereads_the_subject_token_file_on_every_exchange() {
    use silent_refresh_ureq::oauth2::{SubjectTokenSource, TokenExchange};
    let server = issuing_server();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("token");
    let grant = RefreshGrant::token_exchange(
        server.url("/token"),
        "workload",
        TokenExchange::new(SubjectTokenSource::file(&path)),
    )
    .audience("orders-api");
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    // No file yet: misconfigured, naming the path.
    let failure = refresher.refresh(None).expect_err("no file");
    assert_eq!(
        failure.kind,
        silent_refresh_ureq::FailureKind::Misconfigured
    );
    assert!(failure.message.contains("token"), "{}", failure.message);
    for n in 1..=3 {
        // The kubelet rotates the file in place.
        std::fs::write(&path, format!("subject-{n}\n")).expect("write");
        let token = refresher.refresh(None).expect("a token");
        assert_eq!(token.refresh_token, None);
        let sent = server.requests().pop().expect("a request");
        assert_eq!(
            sent.form_value("subject_token").as_deref(),
            Some(format!("subject-{n}").as_str())
        );
        assert_eq!(
            sent.form_value("grant_type").as_deref(),
            Some("urn:ietf:params:oauth:grant-type:token-exchange")
        );
    }
}

#[test]
fn a_grant_that_can_never_work_is_refused_when_the_refresher_is_built() {
    let grant = RefreshGrant::client_credentials("http://127.0.0.1:9/token", "svc")
        .param("client_assertion", "hand-made");
    let error = OAuth2Refresher::builder(grant)
        .build()
        .expect_err("refused");
    assert!(
        matches!(
            error,
            silent_refresh_ureq::Error::Token(
                silent_refresh_ureq::silent_refresh::Error::InvalidConfig(_)
            )
        ),
        "{error}"
    );
}

#[cfg(feature = "jwt")]
#[test]
fn a_key_that_does_not_parse_is_the_codecs_error_in_this_crates() {
    use silent_refresh_ureq::{Error, SigningKey, oauth2};
    let refused = SigningKey::from_pem("not a key").expect_err("refused");
    assert!(
        matches!(refused, oauth2::Error::InvalidKey { .. }),
        "{refused}"
    );
    let error = Error::from(refused.clone());
    assert!(
        matches!(&error, Error::OAuth2(wrapped) if *wrapped == refused),
        "wrapped as it is: {error:?}"
    );
}

#[cfg(feature = "jwt")]
#[test]
fn private_key_jwt_signs_a_new_assertion_for_every_exchange() {
    use silent_refresh_ureq::oauth2::SigningKey;
    let server = issuing_server();
    let key = SigningKey::from_pem(include_str!(
        "../../silent-refresh-oauth2/src/testdata/es256.pem"
    ))
    .expect("key");
    let grant = RefreshGrant::client_credentials(server.url("/token"), "svc").private_key_jwt(key);
    let refresher = OAuth2Refresher::builder(grant).build().expect("refresher");
    refresher.refresh(None).expect("first");
    refresher.refresh(None).expect("second");
    let assertions: Vec<String> = server
        .requests()
        .iter()
        .map(|r| r.form_value("client_assertion").expect("an assertion"))
        .collect();
    assert_eq!(assertions.len(), 2);
    assert_ne!(
        assertions[0], assertions[1],
        "a fresh assertion per exchange"
    );
    let claims = |jws: &str| -> serde_json::Value {
        use base64::Engine as _;
        let part = jws.split('.').nth(1).expect("claims");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .expect("base64url"),
        )
        .expect("json")
    };
    let (first, second) = (claims(&assertions[0]), claims(&assertions[1]));
    assert_ne!(first["jti"], second["jti"]);
    assert_eq!(first["aud"], server.url("/token").as_str());
    assert_eq!(first["iss"], "svc");
}
