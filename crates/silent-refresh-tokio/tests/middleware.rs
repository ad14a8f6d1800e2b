//! The reqwest-middleware middleware, against a server on 127.0.0.1 started by each
//! test: where the token goes, and what a 401 does.

#![cfg(feature = "reqwest-middleware")]

mod api_server;

use std::sync::atomic::Ordering;

use api_server::{Server, client};
use http::StatusCode;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use silent_refresh_tokio::AuthorizedClient;
use silent_refresh_tokio::middleware::BearerAuth;

fn http(client: AuthorizedClient) -> ClientWithMiddleware {
    ClientBuilder::new(reqwest::Client::new())
        .with(BearerAuth::new(client))
        .build()
}

async fn status(request: reqwest_middleware::RequestBuilder) -> StatusCode {
    request.send().await.expect("an answer").status()
}

#[tokio::test]
async fn the_token_goes_to_the_allowed_origin_only_never_to_the_token_endpoint() {
    let api = Server::start().await;
    let other = Server::start().await;
    let (client, _) = client(&api);
    let http = http(client);

    assert_eq!(status(http.get(api.url("/v1/me"))).await, StatusCode::OK);
    assert_eq!(status(http.get(other.url("/v1/me"))).await, StatusCode::OK);
    for endpoint in ["/oauth/token", "/OAuth//token/", "/oauth/%74oken?x=1"] {
        let request = http
            .post(api.url(endpoint))
            .body("grant_type=refresh_token");
        assert_eq!(status(request).await, StatusCode::OK);
    }
    let own = http
        .get(api.url("/v1/own"))
        .header(http::header::AUTHORIZATION, "Basic b3du");
    assert_eq!(status(own).await, StatusCode::OK);

    assert_eq!(
        api.authorizations("/v1/me"),
        [Some("Bearer at-1".to_owned())]
    );
    assert_eq!(other.authorizations("/v1/me"), [None]);
    assert_eq!(api.authorizations("/oauth/token"), [None]);
    assert_eq!(api.authorizations("/OAuth//token/"), [None]);
    assert_eq!(api.authorizations("/oauth/%74oken"), [None]);
    assert_eq!(
        api.authorizations("/v1/own"),
        [Some("Basic b3du".to_owned())]
    );
}

#[tokio::test]
async fn a_401_is_reported_and_the_request_sent_once_more_with_the_new_token() {
    let api = Server::start().await;
    let (client, refreshes) = client(&api);
    let http = http(client);
    api.reject("at-1");

    let response = http
        .post(api.url("/v1/items"))
        .body("hello")
        .send()
        .await
        .expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.expect("a body"), "ok");

    let seen = api.seen();
    let tokens: Vec<_> = seen.iter().map(|s| s.authorization.as_deref()).collect();
    assert_eq!(tokens, [Some("Bearer at-1"), Some("Bearer at-2")]);
    assert!(seen.iter().all(|s| s.body == "hello"), "{seen:?}");
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);

    // The new token is rejected too: the second 401 is returned (no third send) and
    // reported, so the next request gets a newer token.
    api.reject("at-2");
    api.reject("at-3");
    assert_eq!(
        status(http.get(api.url("/v1/again"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.authorizations("/v1/again"),
        [
            Some("Bearer at-2".to_owned()),
            Some("Bearer at-3".to_owned())
        ]
    );
    assert_eq!(status(http.get(api.url("/v1/last"))).await, StatusCode::OK);
    assert_eq!(
        api.authorizations("/v1/last"),
        [Some("Bearer at-4".to_owned())]
    );
    assert_eq!(refreshes.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn a_late_401_of_an_older_token_starts_no_refresh() {
    let api = Server::start().await;
    let (client, refreshes) = client(&api);
    let http = http(client);
    api.reject("at-1");

    // Sent with at-1; the server holds it until released.
    let held = tokio::spawn(status(http.get(api.url("/slow"))));
    api.api.slow_arrived.notified().await;

    // Meanwhile another request's 401 moves the source on to at-2.
    assert_eq!(status(http.get(api.url("/v1/me"))).await, StatusCode::OK);
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);

    // The held request's 401 is of generation 1: no refresh; its retry gets at-2.
    api.api.slow_release.notify_one();
    assert_eq!(held.await.expect("joined"), StatusCode::OK);
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
    assert_eq!(
        api.authorizations("/slow"),
        [
            Some("Bearer at-1".to_owned()),
            Some("Bearer at-2".to_owned())
        ]
    );
}

#[tokio::test]
async fn no_token_means_the_request_is_not_sent_and_the_error_says_why() {
    let api = Server::start().await;
    let (client, _) = client(&api);
    client.source().sign_out();
    let http = http(client);

    let error = http
        .get(api.url("/v1/me?api_key=s3cret"))
        .send()
        .await
        .expect_err("signed out");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cret"), "{text}");
    let reqwest_middleware::Error::Middleware(error) = error else {
        panic!("a middleware error: {error}")
    };
    let error = error
        .downcast::<silent_refresh_tokio::Error>()
        .expect("the crate's error");
    assert!(error.needs_sign_in(), "{error}");
    assert!(api.seen().is_empty());
}

#[tokio::test]
async fn a_strict_middleware_refuses_an_unlisted_origin_and_sends_nothing() {
    let api = Server::start().await;
    let typo = Server::start().await;
    let (client, _) = client(&api);
    let strict = AuthorizedClient::builder(client.source().clone())
        .allow_url(api.url("/"))
        .strict_origins(true)
        .build()
        .expect("a client");
    let http = http(strict);
    let error = http
        .get(typo.url("/v1/me"))
        .send()
        .await
        .expect_err("refused");
    let reqwest_middleware::Error::Middleware(inner) = error else {
        panic!("{error:?}");
    };
    let error = inner
        .downcast::<silent_refresh_tokio::Error>()
        .expect("the source's error");
    assert!(
        matches!(&error, silent_refresh_tokio::Error::OriginNotAllowed { .. }),
        "{error}"
    );
    assert!(typo.authorizations("/v1/me").is_empty(), "nothing was sent");
    assert_eq!(status(http.get(api.url("/v1/me"))).await, StatusCode::OK);
    assert_eq!(
        api.authorizations("/v1/me"),
        [Some("Bearer at-1".to_owned())]
    );
}
