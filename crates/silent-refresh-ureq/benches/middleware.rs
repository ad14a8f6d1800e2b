//! What the ureq middleware costs over the same agent sending a fixed `Authorization`
//! header, against a hyper server on 127.0.0.1 (keep-alive, `200 ok`):
//! `ureq_middleware/fixed_header` is a `GET` through an agent without middleware,
//! with the header; `ureq_middleware/bearer_auth` the same `GET`, without it, through
//! the agent `BearerAuthBuilder::build_agent` builds (the middleware last, no redirect
//! followed by the agent); `ureq_middleware/bearer_auth_installed` through an agent of
//! ureq's defaults with `BearerAuth` installed by hand, which follows redirects, so
//! that the middleware gives each request a configuration of its own that follows
//! none. Each request's body is read to the end and its status checked.
//!
//! The token comes from a blocking `TokenSource` holding a token fresh for an hour
//! (with a refresher that is never called), so every request takes the fast path.
//!
//! After criterion's runs it prints the ratio of each to the fixed header, measured once more
//! interleaved: batches of each in alternating order, the median batch of each, and
//! the spread of the ratios of the rounds (see the server's module, shared with
//! `silent-refresh-http`'s `integrations` bench), so that a change of the machine's
//! load during the run does not tilt it. The goal is at most 1.05 (issue 19).

#![allow(missing_docs)]

#[path = "../../silent-refresh-http/benches/loopback/mod.rs"]
mod loopback;

use std::hint::black_box;

use criterion::Criterion;
use loopback::{FIXED_AUTHORIZATION, heading, hour_token, interleaved};
use silent_refresh_ureq::{BearerAuth, Config, Credentials, RefreshFailure, Secret, TokenSource};
use ureq::Agent;

/// The agent without middleware, the one `build_agent` makes, and one of ureq's
/// defaults with `BearerAuth` installed by hand, each over a source of a token fresh
/// for an hour.
fn agents(origin: &str) -> (Agent, Agent, Agent) {
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(hour_token()))
        .refresher(|_: Option<Secret>| Ok::<_, RefreshFailure>(hour_token()))
        .build()
        .expect("a source");
    let auth = || BearerAuth::builder(source.clone()).allow_origin(origin);
    let plain = Agent::config_builder().build().new_agent();
    let built = auth()
        .build_agent(Agent::config_builder())
        .expect("loopback http is allowed");
    let installed = auth().build().expect("loopback http is allowed");
    let installed = Agent::config_builder()
        .middleware(installed)
        .build()
        .new_agent();
    (plain, built, installed)
}

fn fixed(agent: &Agent, url: &str) {
    let response = agent
        .get(url)
        .header("authorization", FIXED_AUTHORIZATION)
        .call();
    read(response);
}

fn bearer(agent: &Agent, url: &str) {
    read(agent.get(url).call());
}

fn read(response: Result<http::Response<ureq::Body>, ureq::Error>) {
    let mut response = response.expect("sent");
    assert_eq!(response.status(), http::StatusCode::OK);
    black_box(response.body_mut().read_to_vec().expect("the body"));
}

fn main() {
    let address = loopback::start_server();
    let url = format!("http://{address}/me");
    let (plain, built, installed) = agents(&format!("http://{address}"));

    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("ureq_middleware");
    group.bench_function("fixed_header", |b| b.iter(|| fixed(&plain, &url)));
    group.bench_function("bearer_auth", |b| b.iter(|| bearer(&built, &url)));
    group.bench_function("bearer_auth_installed", |b| {
        b.iter(|| bearer(&installed, &url));
    });
    group.finish();
    criterion.final_summary();

    println!("{}", heading());
    for (name, agent) in [
        ("bearer_auth", &built),
        ("bearer_auth_installed", &installed),
    ] {
        let measured = interleaved(
            |n| (0..n).for_each(|_| fixed(&plain, &url)),
            |n| (0..n).for_each(|_| bearer(agent, &url)),
        );
        println!("{}", measured.line(&format!("ureq_middleware/{name}")));
    }
}
