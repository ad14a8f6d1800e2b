//! The tower layer, through hyper-util's client, against a server on 127.0.0.1 started
//! by each test: where the token goes, and what a 401 does.

#![cfg(feature = "tower")]

mod api_server;

use std::future::poll_fn;
use std::sync::atomic::Ordering;

use api_server::{Server, client};
use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use silent_refresh_tokio::tower::{BearerAuthLayer, BearerAuthService, BoxError};
use tower_layer::Layer;
use tower_service::Service;

type Http<B> = BearerAuthService<Client<HttpConnector, B>>;

fn service<B>(layer: &BearerAuthLayer) -> Http<B>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    layer.layer(Client::builder(TokioExecutor::new()).build_http())
}

/// Sends through the service (ready first, as tower asks) and reads the body.
async fn send<S, B>(service: &mut S, request: Request<B>) -> (StatusCode, String)
where
    S: Service<Request<B>, Response = http::Response<hyper::body::Incoming>, Error = BoxError>,
{
    poll_fn(|cx| service.poll_ready(cx)).await.expect("ready");
    let response = service.call(request).await.expect("an answer");
    let status = response.status();
    let body = response.into_body().collect().await.expect("a body");
    (
        status,
        String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    )
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).expect("a request")
}

#[tokio::test]
async fn the_token_goes_to_the_allowed_origin_only_never_to_the_token_endpoint() {
    let api = Server::start().await;
    let other = Server::start().await;
    let (client, _) = client(&api);
    let mut http = service(&BearerAuthLayer::new(client));

    assert_eq!(
        send(&mut http, get(&api.url("/v1/me"))).await.0,
        StatusCode::OK
    );
    assert_eq!(
        send(&mut http, get(&other.url("/v1/me"))).await.0,
        StatusCode::OK
    );
    for endpoint in ["/oauth/token", "/OAuth//token/", "/oauth/%74oken?x=1"] {
        let request = Request::post(api.url(endpoint))
            .body(Full::from("grant_type=refresh_token"))
            .expect("a request");
        assert_eq!(send(&mut http, request).await.0, StatusCode::OK);
    }
    let own = Request::get(api.url("/v1/own"))
        .header(AUTHORIZATION, "Basic b3du")
        .body(Full::default())
        .expect("a request");
    assert_eq!(send(&mut http, own).await.0, StatusCode::OK);

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
    let mut http = service(&BearerAuthLayer::new(client));
    api.reject("at-1");

    let request = Request::post(api.url("/v1/items"))
        .body(Full::from("hello"))
        .expect("a request");
    assert_eq!(
        send(&mut http, request).await,
        (StatusCode::OK, "ok".to_owned())
    );

    let seen = api.seen();
    let tokens: Vec<_> = seen.iter().map(|s| s.authorization.as_deref()).collect();
    assert_eq!(tokens, [Some("Bearer at-1"), Some("Bearer at-2")]);
    assert!(seen.iter().all(|s| s.body == "hello"), "{seen:?}");
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);

    // The new token is rejected too: the second 401 is returned (no third send) and
    // reported, so the next request gets a newer token.
    api.reject("at-2");
    api.reject("at-3");
    let (status, _) = send(&mut http, get(&api.url("/v1/again"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.authorizations("/v1/again"),
        [
            Some("Bearer at-2".to_owned()),
            Some("Bearer at-3".to_owned())
        ]
    );
    assert_eq!(
        send(&mut http, get(&api.url("/v1/last"))).await.0,
        StatusCode::OK
    );
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
    let layer = BearerAuthLayer::new(client);
    let mut http = service(&layer);
    api.reject("at-1");

    // Sent with at-1; the server holds it until released.
    let mut slow = service(&layer);
    let slow_request = get(&api.url("/slow"));
    let held = tokio::spawn(async move { send(&mut slow, slow_request).await });
    api.api.slow_arrived.notified().await;

    // Meanwhile another request's 401 moves the source on to at-2.
    assert_eq!(
        send(&mut http, get(&api.url("/v1/me"))).await.0,
        StatusCode::OK
    );
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);

    // The held request's 401 is of generation 1: no refresh; its retry gets at-2.
    api.api.slow_release.notify_one();
    assert_eq!(held.await.expect("joined").0, StatusCode::OK);
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
async fn a_body_that_cannot_be_replayed_is_sent_once_and_its_401_still_reported() {
    let api = Server::start().await;
    let (client, refreshes) = client(&api);
    let mut http =
        service::<BoxBody<Bytes, std::convert::Infallible>>(&BearerAuthLayer::new(client));
    api.reject("at-1");

    let streamed = Request::post(api.url("/v1/upload"))
        .body(Full::from("big").boxed())
        .expect("a request");
    assert_eq!(send(&mut http, streamed).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.authorizations("/v1/upload"),
        [Some("Bearer at-1".to_owned())]
    );

    // The report moved the source on: the next request gets the new token.
    let again = Request::post(api.url("/v1/upload"))
        .body(Full::from("big").boxed())
        .expect("a request");
    assert_eq!(send(&mut http, again).await.0, StatusCode::OK);
    assert_eq!(refreshes.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn no_token_means_the_request_is_not_sent_and_the_error_says_why() {
    let api = Server::start().await;
    let (client, _) = client(&api);
    client.source().sign_out();
    let mut http = service::<Full<Bytes>>(&BearerAuthLayer::new(client));

    poll_fn(|cx| http.poll_ready(cx)).await.expect("ready");
    let error = http
        .call(get(&api.url("/v1/me")))
        .await
        .expect_err("signed out");
    let error = error
        .downcast::<silent_refresh_tokio::Error>()
        .expect("the crate's error");
    assert!(error.needs_sign_in(), "{error}");
    assert!(api.seen().is_empty());
}
