//! What each tokio HTTP integration costs over the same client sending a fixed
//! `Authorization` header, against a hyper server on 127.0.0.1 (keep-alive, `200 ok`):
//!
//! - `reqwest_client/{fixed_header, authorized_client}`: `reqwest::Client::execute` of
//!   a `GET` with the header, against `AuthorizedClient::execute` of the same request
//!   without it;
//! - `tower/{fixed_header, bearer_auth_layer}`: hyper-util's legacy client as a tower
//!   service, against the same client wrapped in `BearerAuthLayer` (each call on a
//!   clone of the service, as a tower caller that shares one does);
//! - `reqwest_middleware/{fixed_header, bearer_auth}`: a `ClientWithMiddleware` without
//!   middleware sending the header, against one with `BearerAuth`.
//!
//! The token comes from a tokio `TokenSource` holding a token fresh for an hour (built
//! as `silent-refresh-tokio`'s `fast_path` bench builds its sources), so every request
//! takes the fast path; each request's body is read to the end and its status checked.
//! Client and server run on one current-thread runtime each.
//!
//! After criterion's runs it prints each integration's ratio to its fixed-header
//! request, measured once more interleaved: batches of each in alternating order, the
//! median batch of each, and the spread of the ratios of the rounds (see
//! `loopback/mod.rs`), so that a change of the machine's load during the run does not
//! tilt them. The goal is at most 1.05 (issue 19).

#![allow(missing_docs)]

mod loopback;

use std::future::{Future, poll_fn};
use std::hint::black_box;

use bytes::Bytes;
use criterion::Criterion;
use http::header::AUTHORIZATION;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loopback::{FIXED_AUTHORIZATION, Interleaved, heading, hour_token, interleaved};
use silent_refresh_tokio::middleware::BearerAuth;
use silent_refresh_tokio::tower::{BearerAuthLayer, BoxError};
use silent_refresh_tokio::{
    AuthorizedClient, Config, Credentials, RefreshFailure, Secret, TokenSource,
};
use tokio::runtime::Runtime;
use tower_layer::Layer;
use tower_service::Service;

/// A source of a token fresh for an hour, with a refresher that is never called.
fn source() -> TokenSource {
    TokenSource::builder(Config::default())
        .credentials(Credentials::Token(hour_token()))
        .refresher(|_: Option<Secret>| async { Ok::<_, RefreshFailure>(hour_token()) })
        .build()
        .expect("inside a runtime")
}

fn fixed() -> HeaderValue {
    HeaderValue::from_static(FIXED_AUTHORIZATION)
}

/// What the three comparisons send through: one runtime for the client side, the
/// server's URL, and the clients.
struct Bench {
    runtime: Runtime,
    url: String,
    uri: Uri,
    reqwest: reqwest::Client,
    authorized: AuthorizedClient,
    hyper: Client<HttpConnector, Empty<Bytes>>,
    layered: silent_refresh_tokio::tower::BearerAuthService<Client<HttpConnector, Empty<Bytes>>>,
    plain_middleware: reqwest_middleware::ClientWithMiddleware,
    middleware: reqwest_middleware::ClientWithMiddleware,
}

impl Bench {
    fn new() -> Self {
        let address = loopback::start_server();
        let url = format!("http://{address}/me");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let source = runtime.block_on(async { source() });
        let authorized = AuthorizedClient::builder(source)
            .allow_origin(format!("http://{address}"))
            .build()
            .expect("loopback http is allowed");
        let reqwest = reqwest::Client::new();
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let hyper = Client::builder(TokioExecutor::new()).build(connector);
        let layered = BearerAuthLayer::new(authorized.clone()).layer(hyper.clone());
        let plain_middleware = reqwest_middleware::ClientBuilder::new(reqwest.clone()).build();
        let middleware = reqwest_middleware::ClientBuilder::new(reqwest.clone())
            .with(BearerAuth::new(authorized.clone()))
            .build();
        Self {
            runtime,
            uri: url.parse().expect("the server's URL"),
            url,
            reqwest,
            authorized,
            hyper,
            layered,
            plain_middleware,
            middleware,
        }
    }

    async fn reqwest_fixed(&self) {
        let request = self
            .reqwest
            .get(&self.url)
            .header(AUTHORIZATION, fixed())
            .build()
            .expect("a request");
        read_reqwest(self.reqwest.execute(request).await.expect("sent")).await;
    }

    async fn reqwest_authorized(&self) {
        let request = self.reqwest.get(&self.url).build().expect("a request");
        let response = self.authorized.execute(&self.reqwest, request).await;
        read_reqwest(response.expect("sent")).await;
    }

    async fn tower_fixed(&self) {
        let request = self.hyper_request().header(AUTHORIZATION, fixed());
        read_hyper(call(self.hyper.clone(), request).await).await;
    }

    async fn tower_layer(&self) {
        read_hyper(call(self.layered.clone(), self.hyper_request()).await).await;
    }

    async fn middleware_fixed(&self) {
        let request = self.plain_middleware.get(&self.url);
        let response = request.header(AUTHORIZATION, fixed()).send().await;
        read_reqwest(response.expect("sent")).await;
    }

    async fn middleware_bearer(&self) {
        let response = self.middleware.get(&self.url).send().await;
        read_reqwest(response.expect("sent")).await;
    }

    fn hyper_request(&self) -> http::request::Builder {
        Request::get(self.uri.clone())
    }

    /// Sends `n` requests with `send`, one after another, on the client's runtime.
    fn batch<'a, F, Fut>(&'a self, send: F) -> impl FnMut(u32) + 'a
    where
        F: Fn(&'a Self) -> Fut + 'a,
        Fut: Future<Output = ()> + 'a,
    {
        move |n| {
            self.runtime.block_on(async {
                for _ in 0..n {
                    send(self).await;
                }
            });
        }
    }
}

async fn read_reqwest(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::OK);
    black_box(response.bytes().await.expect("the body"));
}

async fn read_hyper(response: http::Response<hyper::body::Incoming>) {
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("the body");
    black_box(body.to_bytes());
}

/// One request through a tower service: ready, then called.
async fn call<S>(mut service: S, request: http::request::Builder) -> S::Response
where
    S: Service<Request<Empty<Bytes>>>,
    S::Error: Into<BoxError>,
{
    let request = request.body(Empty::new()).expect("a request");
    poll_fn(|cx| service.poll_ready(cx))
        .await
        .map_err(Into::into)
        .expect("ready");
    service
        .call(request)
        .await
        .map_err(Into::into)
        .expect("sent")
}

/// One comparison: criterion's runs of `fixed` and `integration` in the group `group`,
/// then the two interleaved, for the ratio.
fn compare<'a, F, I, FFut, IFut>(
    c: &mut Criterion,
    bench: &'a Bench,
    (group, name): (&str, &str),
    fixed: F,
    integration: I,
) -> (String, Interleaved)
where
    F: Fn(&'a Bench) -> FFut + Copy + 'a,
    I: Fn(&'a Bench) -> IFut + Copy + 'a,
    FFut: Future<Output = ()> + 'a,
    IFut: Future<Output = ()> + 'a,
{
    let mut criterion_group = c.benchmark_group(group);
    criterion_group.bench_function("fixed_header", |b| {
        b.to_async(&bench.runtime).iter(|| fixed(bench));
    });
    criterion_group.bench_function(name, |b| {
        b.to_async(&bench.runtime).iter(|| integration(bench));
    });
    criterion_group.finish();
    let measured = interleaved(bench.batch(fixed), bench.batch(integration));
    (format!("{group}/{name}"), measured)
}

fn main() {
    let bench = Bench::new();
    let mut c = Criterion::default().configure_from_args();
    let comparisons = [
        compare(
            &mut c,
            &bench,
            ("reqwest_client", "authorized_client"),
            Bench::reqwest_fixed,
            Bench::reqwest_authorized,
        ),
        compare(
            &mut c,
            &bench,
            ("tower", "bearer_auth_layer"),
            Bench::tower_fixed,
            Bench::tower_layer,
        ),
        compare(
            &mut c,
            &bench,
            ("reqwest_middleware", "bearer_auth"),
            Bench::middleware_fixed,
            Bench::middleware_bearer,
        ),
    ];
    c.final_summary();

    println!("{}", heading());
    for (name, measured) in &comparisons {
        println!("{}", measured.line(name));
    }
}
