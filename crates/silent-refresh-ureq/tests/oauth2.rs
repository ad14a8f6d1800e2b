//! The ureq OAuth 2.0 refresher against a real token endpoint on 127.0.0.1 with
//! rotating refresh tokens that revoke the family on reuse. (Its redirect, loopback,
//! timeout and grant rules run for both adapters in the driver's
//! `tests/oauth2_refresher.rs`.)

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh_ureq::{
    Config, Credentials, Refresher, Secret, Status, TokenChange, TokenSource,
};
use support::{Adoptions, AuthServer, Reply, core_error, kit_refresher, kit_server, short_config};

#[test]
fn sixty_four_threads_across_several_expiries_never_reuse_a_rotated_refresh_token() {
    const LIFETIME: Duration = Duration::from_millis(200);
    let (auth, grant) = kit_server(LIFETIME);
    let stored = Arc::new(Mutex::new(None::<String>));
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(
        Config::builder()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::RefreshToken(
        grant.refresh_token.clone().into(),
    ))
    .refresher(kit_refresher(&auth))
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
                        .access_token_expiry(token.secret.expose())
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
    let before = auth.take_stats();
    adoptions.wait_for(before.issued);
    let after = auth.take_stats();
    assert_eq!(before.reuse_detected + after.reuse_detected, 0);
    assert!(!auth.is_revoked(grant.id));
    assert_eq!(
        before.issued + after.issued,
        source.generation().0,
        "one refresh per token"
    );
    let stored = stored.lock().expect("store").clone().expect("stored");
    assert_eq!(
        auth.refresh_tokens_since(&stored),
        Some(0),
        "the stored credential is the one the server will accept next"
    );
    assert!(calls.load(Ordering::Relaxed) >= 64 * 4);
}

#[test]
fn a_reused_refresh_token_revokes_the_family_and_both_holders_must_sign_in() {
    let (auth, grant) = kit_server(Duration::from_secs(3600));
    // Two processes hold the same credential: the first rotates it, the second reuses it.
    let patient = || {
        short_config()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config")
    };
    let first = TokenSource::builder(patient())
        .credentials(Credentials::RefreshToken(
            grant.refresh_token.clone().into(),
        ))
        .refresher(kit_refresher(&auth))
        .build()
        .expect("source");
    let second = TokenSource::builder(patient())
        .credentials(Credentials::RefreshToken(
            grant.refresh_token.clone().into(),
        ))
        .refresher(kit_refresher(&auth))
        .build()
        .expect("source");

    let token = first.token().expect("the first holder refreshes");
    match core_error(second.token()) {
        silent_refresh::Error::SignInRequired { reason } => {
            // The server's reason: "the refresh token was already used; the grant is
            // revoked".
            assert!(reason.contains("already used"), "{reason}");
        }
        other => panic!("expected SignInRequired, got {other:?}"),
    }
    assert_eq!(auth.take_stats().reuse_detected, 1);
    assert!(auth.is_revoked(grant.id));

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
