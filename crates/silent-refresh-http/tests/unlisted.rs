#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A request for an origin that is not allowed (a `localhost` vs `127.0.0.1` typo):
//! the tower layer lets it go out without the token and says so once per origin, or,
//! strict, refuses it. No network: the inner service records what reaches it.

#![cfg(feature = "tower")]

use std::future::Ready;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use silent_refresh_tokio::tower::BearerAuthLayer;
use silent_refresh_tokio::{AuthorizedClient, Config, Credentials, Expiry, Token, TokenSource};
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A request as the inner service saw it: its URL and its `Authorization` header.
type Seen = (String, Option<String>);

/// The inner service: records the `Authorization` header of each request, answers 200.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Service<Request<String>> for Recorder {
    type Response = Response<String>;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Response<String>, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<String>) -> Self::Future {
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned());
        self.0
            .lock()
            .unwrap()
            .push((request.uri().to_string(), authorization));
        std::future::ready(Ok(Response::new(String::new())))
    }
}

/// The warnings logged, as text.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text(String);

impl Visit for Text {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() == tracing::Level::WARN
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        self.0.lock().unwrap().push(text.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn client(strict: bool) -> AuthorizedClient {
    let token = Token::bearer("at-1", Expiry::In(Duration::from_secs(3600)));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(token))
        .refresher(|_: Option<silent_refresh_tokio::Secret>| async {
            Err(silent_refresh_tokio::RefreshFailure::terminal("not needed"))
        })
        .build()
        .unwrap();
    AuthorizedClient::builder(source)
        .allow_origin("http://127.0.0.1:8080")
        .strict_origins(strict)
        .build()
        .unwrap()
}

fn get(url: &str) -> Request<String> {
    Request::get(url).body(String::new()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn an_unlisted_origin_goes_out_without_the_token_and_is_named_once() {
    let warnings = Warnings::default();
    let _logs = tracing::subscriber::set_default(warnings.clone());
    let recorder = Recorder::default();
    let mut service = BearerAuthLayer::new(client(false)).layer(recorder.clone());
    for url in [
        "http://127.0.0.1:8080/api",
        "http://localhost:8080/api",
        "http://localhost:8080/api/again",
        "http://localhost:9090/other",
    ] {
        service.call(get(url)).await.expect("sent");
    }
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("Bearer at-1"));
    assert!(seen[1..].iter().all(|(_, auth)| auth.is_none()), "{seen:?}");
    let warnings = warnings.0.lock().unwrap().clone();
    assert_eq!(warnings.len(), 2, "once per origin: {warnings:?}");
    assert!(
        warnings[0].contains("http://localhost:8080"),
        "{warnings:?}"
    );
    assert!(warnings[0].contains("not allowed"), "{warnings:?}");
    assert!(
        warnings[1].contains("http://localhost:9090"),
        "{warnings:?}"
    );
    assert!(warnings.iter().all(|w| !w.contains("at-1")));
}

#[tokio::test(flavor = "current_thread")]
async fn a_strict_layer_refuses_an_unlisted_origin_and_sends_nothing() {
    let recorder = Recorder::default();
    let mut service = BearerAuthLayer::new(client(true)).layer(recorder.clone());
    let error = service
        .call(get("http://localhost:8080/api"))
        .await
        .expect_err("refused");
    let error = error
        .downcast::<silent_refresh_tokio::Error>()
        .expect("the source's error");
    assert!(
        matches!(&*error, silent_refresh_tokio::Error::OriginNotAllowed { origin } if origin == "http://localhost:8080"),
        "{error}"
    );
    assert!(recorder.0.lock().unwrap().is_empty(), "nothing sent");
    // The allowed origin still gets its token, and a request with its own header is
    // left alone even when strict.
    service
        .call(get("http://127.0.0.1:8080/api"))
        .await
        .unwrap();
    let own = Request::get("http://localhost:8080/own")
        .header(http::header::AUTHORIZATION, "Basic b3du")
        .body(String::new())
        .unwrap();
    service.call(own).await.unwrap();
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(seen[0].1.as_deref(), Some("Bearer at-1"));
    assert_eq!(seen[1].1.as_deref(), Some("Basic b3du"));
}
