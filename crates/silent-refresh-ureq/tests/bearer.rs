//! The ureq middleware against real servers on 127.0.0.1: origins, redirects, the
//! token endpoint, 401 with and without a replayable body, many threads across
//! several expiries.

mod support;

use std::thread;
use std::time::Duration;

use silent_refresh_ureq::{BearerAuth, Config, Credentials, Error, Expiry, Token, TokenSource};
use support::{
    Adoptions, AuthServer, Recorded, Reply, TestServer, api_server, kit_refresher, kit_server,
};
use ureq::Agent;

fn agent_with(auth: BearerAuth) -> Agent {
    Agent::config_builder().middleware(auth).build().new_agent()
}

fn bearer_of(request: &Recorded) -> Option<String> {
    request
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// A source that holds a token the API does not accept (as if revoked server-side),
/// and refreshes against `auth`.
fn source_with_stale_token(auth: &AuthServer) -> TokenSource {
    TokenSource::builder(Config::default())
        .credentials(Credentials::Token(
            Token::bearer("at-SECRET-0", Expiry::In(Duration::from_secs(3600)))
                .with_refresh_token("rt-SECRET-1"),
        ))
        .refresher(auth.refresher())
        .build()
        .expect("source")
}

#[test]
fn the_token_reaches_only_the_allowed_origin() {
    let allowed = TestServer::start(|_| Reply::text(200, "allowed"));
    let other = TestServer::start(|_| Reply::text(200, "other"));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(Token::bearer(
            "at-SECRET-x",
            Expiry::In(Duration::from_secs(3600)),
        )))
        .build()
        .expect("source");
    let agent = agent_with(
        BearerAuth::builder(source)
            .allow_origin(allowed.origin())
            .build()
            .expect("loopback http is allowed"),
    );

    agent.get(allowed.url("/a?x=1")).call().expect("allowed");
    agent.get(other.url("/b")).call().expect("other");
    agent
        .post(other.url("/c"))
        .send("form=1")
        .expect("other post");
    agent
        .get(allowed.url("/d"))
        .header("Authorization", "Basic dXNlcjpwdw==")
        .call()
        .expect("own header");

    let seen = allowed.requests();
    assert_eq!(bearer_of(&seen[0]).as_deref(), Some("at-SECRET-x"));
    assert_eq!(
        seen[1].header("authorization"),
        Some("Basic dXNlcjpwdw=="),
        "left alone"
    );
    let other_seen = other.requests();
    assert_eq!(other_seen.len(), 2);
    assert!(
        other_seen
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
    assert_eq!(
        other_seen[1].body, b"form=1",
        "bodies of other origins pass untouched"
    );
}

/// How a test sends a `GET`: as most programs do, or with a configuration of its own
/// that asks to follow redirects (which the middleware must override).
#[derive(Clone, Copy, Debug)]
enum Send {
    Plain,
    ConfiguredToFollow,
}

#[test]
fn the_token_never_follows_a_redirect() {
    let target = TestServer::start(|_| Reply::text(200, "landed"));
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    let api = api_server(&auth);
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
        .refresher(auth.refresher())
        .build()
        .expect("source");
    let auth_for = || BearerAuth::builder(source.clone()).allow_origin(api.origin());
    // The middleware on an agent that follows redirects, and on the agent it builds
    // (which follows none, so a plain request needs no configuration of its own).
    let agents = [
        ("installed", agent_with(auth_for().build().expect("valid"))),
        (
            "build_agent",
            auth_for()
                .build_agent(Agent::config_builder())
                .expect("valid"),
        ),
    ];

    let mut sent = 0;
    for (name, agent) in &agents {
        for how in [Send::Plain, Send::ConfiguredToFollow] {
            for to in [target.url("/landing"), api.url("/data")] {
                let request = agent.get(api.url(&format!("/redirect?to={to}")));
                let response = match how {
                    Send::Plain => request.call(),
                    Send::ConfiguredToFollow => request.config().max_redirects(5).build().call(),
                };
                let response = response.expect("the 302 comes back");
                sent += 1;
                assert_eq!(response.status(), 302, "{name} {how:?}");
                assert_eq!(
                    response
                        .headers()
                        .get("location")
                        .and_then(|v| v.to_str().ok()),
                    Some(to.as_str())
                );
            }
        }
    }
    assert!(
        target.requests().is_empty(),
        "the redirect target was never contacted"
    );
    // Not even the same-origin redirect was followed: the caller decides.
    let at_api = api.requests();
    assert_eq!(at_api.len(), sent);
    assert!(
        at_api
            .iter()
            .all(|r| bearer_of(r).as_deref() == Some("at-SECRET-1"))
    );
}

#[test]
fn a_401_is_reported_and_the_request_sent_once_more_with_the_new_token() {
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    let api = api_server(&auth);
    let source = source_with_stale_token(&auth);
    let agent = agent_with(
        BearerAuth::builder(source.clone())
            .allow_origin(api.origin())
            .build()
            .expect("valid"),
    );

    // ureq's default turns the 401 into an error: the middleware sees it either way.
    let mut response = agent.get(api.url("/data")).call().expect("retried");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.body_mut().read_to_string().expect("body"),
        "ok 0 bytes"
    );
    let seen = api.requests();
    let bearers: Vec<_> = seen.iter().map(bearer_of).collect();
    assert_eq!(
        bearers,
        [
            Some("at-SECRET-0".to_owned()),
            Some("at-SECRET-1".to_owned())
        ]
    );
    assert_eq!(auth.state().refreshes, 1);

    // A body within the replay limit is sent again, byte for byte, with its length.
    auth.state().issued.clear();
    let mut response = agent
        .post(api.url("/data"))
        .header("Content-Type", "application/json")
        .send(r#"{"name":"widget"}"#)
        .expect("retried");
    assert_eq!(
        response.body_mut().read_to_string().expect("body"),
        "ok 17 bytes"
    );
    let seen = api.requests();
    let posts = &seen[2..];
    assert_eq!(posts.len(), 2);
    for post in posts {
        assert_eq!(post.body, br#"{"name":"widget"}"#);
        assert_eq!(post.header("content-length"), Some("17"));
        assert_eq!(post.header("content-type"), Some("application/json"));
    }
    assert_eq!(bearer_of(&posts[0]).as_deref(), Some("at-SECRET-1"));
    assert_eq!(bearer_of(&posts[1]).as_deref(), Some("at-SECRET-2"));
    assert_eq!(auth.state().refreshes, 2);
    assert_eq!(source.generation().0, 3);
}

#[test]
fn a_body_too_large_to_replay_is_sent_once_and_its_401_returned_after_reporting() {
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    let api = api_server(&auth);
    let source = source_with_stale_token(&auth);
    let agent = agent_with(
        BearerAuth::builder(source.clone())
            .allow_origin(api.origin())
            .replay_limit(16)
            .build()
            .expect("valid"),
    );
    let body = vec![b'x'; 1000];

    let error = agent
        .post(api.url("/data"))
        .send(&body[..])
        .expect_err("the 401 comes back");
    assert!(matches!(error, ureq::Error::StatusCode(401)), "{error}");
    let seen = api.requests();
    assert_eq!(seen.len(), 1, "not sent twice");
    assert_eq!(seen[0].body, body, "the streamed body arrived whole");

    // The rejection was reported: the next request gets the new token.
    let mut response = agent
        .post(api.url("/data"))
        .send(&body[..])
        .expect("new token");
    assert_eq!(
        response.body_mut().read_to_string().expect("body"),
        "ok 1000 bytes"
    );
    assert_eq!(auth.state().refreshes, 1);
    assert_eq!(source.generation().0, 2);
}

#[test]
fn the_token_endpoint_never_gets_the_access_token() {
    // One server is both the API and the authorization server.
    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(Token::bearer(
            "at-SECRET-x",
            Expiry::In(Duration::from_secs(3600)),
        )))
        .refresher(auth.refresher())
        .build()
        .expect("source");
    assert_eq!(source.token_endpoint(), Some(auth.token_url().as_str()));
    let auth_mw = BearerAuth::builder(source)
        .allow_origin(auth.server.origin())
        .exclude(auth.server.url("/revoke"))
        .build()
        .expect("valid");
    assert!(!auth_mw.authorizes(&auth.token_url().parse().expect("uri")));
    let agent = agent_with(auth_mw);

    for path in ["/token", "/token?x=1", "/revoke", "/userinfo"] {
        let _ = agent
            .post(auth.server.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .send_empty()
            .expect("answered");
    }
    let bearers: Vec<_> = auth.server.requests().iter().map(bearer_of).collect();
    assert_eq!(bearers, [None, None, None, Some("at-SECRET-x".to_owned())]);
}

#[test]
fn without_a_token_no_request_is_sent() {
    let api = TestServer::start(|_| Reply::text(200, "ok"));
    let source = TokenSource::builder(Config::default())
        .build()
        .expect("source");
    source.sign_out();
    let agent = agent_with(
        BearerAuth::builder(source)
            .allow_origin(api.origin())
            .build()
            .expect("valid"),
    );
    let error = agent.get(api.url("/data")).call().expect_err("no token");
    let ureq::Error::Other(inner) = error else {
        panic!("expected our error inside ureq::Error::Other, got {error}");
    };
    let ours = inner
        .downcast_ref::<Error>()
        .expect("a silent_refresh_ureq::Error");
    assert!(ours.needs_sign_in(), "{ours}");
    assert!(api.requests().is_empty());
}

#[test]
fn plain_http_is_refused_except_to_loopback_unless_allowed() {
    let source = TokenSource::builder(Config::default())
        .build()
        .expect("source");
    let build = |origin: &str, insecure: bool| {
        BearerAuth::builder(source.clone())
            .allow_origin(origin)
            .allow_insecure_http(insecure)
            .build()
    };
    assert!(matches!(
        build("http://api.example.com", false),
        Err(Error::InsecureHttp { .. })
    ));
    for origin in [
        "http://127.0.0.1:8080",
        "http://localhost",
        "http://[::1]:1",
    ] {
        assert!(build(origin, false).is_ok(), "{origin}");
    }
    assert!(build("http://api.example.com", true).is_ok());
    assert!(build("https://api.example.com", false).is_ok());
    assert!(matches!(
        build("https://api.example.com/v1", false),
        Err(Error::InvalidOrigin { .. })
    ));
    assert!(matches!(
        BearerAuth::builder(source.clone()).build(),
        Err(Error::NoOrigin)
    ));

    let grant = |url: &str| silent_refresh_ureq::RefreshGrant::new(url, "client");
    assert!(matches!(
        silent_refresh_ureq::OAuth2Refresher::builder(grant("http://auth.example.com/token"))
            .build(),
        Err(Error::InsecureHttp { .. })
    ));
    assert!(
        silent_refresh_ureq::OAuth2Refresher::builder(grant("http://auth.example.com/token"))
            .allow_insecure_http(true)
            .build()
            .is_ok()
    );
}

#[test]
fn invalid_origins_and_urls_are_refused_without_echoing_a_password_a_path_or_a_query() {
    let source = TokenSource::builder(Config::default())
        .build()
        .expect("source");
    let refused = BearerAuth::builder(source.clone())
        .allow_origin("https://alice:hunter2@api.example.com/v1?api_key=hidden")
        .build()
        .expect_err("an origin has no user, path or query");
    assert!(
        matches!(refused, Error::InvalidOrigin { .. }),
        "{refused:?}"
    );
    let message = format!("{refused} {refused:?}");
    assert!(message.contains("https://api.example.com:443"), "{message}");
    for secret in ["alice", "hunter2", "/v1", "hidden"] {
        assert!(!message.contains(secret), "{message}");
    }
    assert!(matches!(
        BearerAuth::builder(source)
            .allow_origin("https://api.example.com")
            .exclude("/revoke")
            .build(),
        Err(Error::InvalidUrl { .. })
    ));
    let grant = silent_refresh_ureq::RefreshGrant::new("auth.example.com/token", "client");
    assert!(matches!(
        silent_refresh_ureq::OAuth2Refresher::builder(grant).build(),
        Err(Error::InvalidUrl { .. })
    ));
}

#[test]
fn many_threads_across_several_expiries_always_present_a_valid_token() {
    const LIFETIME: Duration = Duration::from_millis(300);
    // The test kit's server: its resource answers 200 to a token it issued that has
    // not expired, 401 otherwise.
    let (auth, grant) = kit_server(LIFETIME);
    let elsewhere = TestServer::start(|_| Reply::text(200, "elsewhere"));
    let (persist, adoptions) = Adoptions::new();
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken(
            grant.refresh_token.clone().into(),
        ))
        .refresher(kit_refresher(&auth))
        .on_token_change(move |change| persist(&change))
        .build()
        .expect("source");
    let agent = agent_with(
        BearerAuth::builder(source.clone())
            .allow_origin(auth.origin())
            .build()
            .expect("valid"),
    );
    let resource = auth.resource_url();

    thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while source.generation().0 < 4 {
                    let mut response = agent.get(&resource).call().expect("200");
                    let served: serde_json::Value =
                        serde_json::from_str(&response.body_mut().read_to_string().expect("body"))
                            .expect("the resource's JSON");
                    assert_eq!(served["grant"], grant.id, "served by the grant's token");
                    agent.get(elsewhere.url("/x")).call().expect("elsewhere");
                }
            });
        }
    });
    let before = auth.take_stats();
    adoptions.wait_for(before.issued);
    let after = auth.take_stats();
    assert_eq!(
        before.reuse_detected + after.reuse_detected,
        0,
        "a rotated refresh credential was never reused"
    );
    assert!(!auth.is_revoked(grant.id));
    assert_eq!(
        before.issued + after.issued,
        source.generation().0,
        "one refresh per token"
    );
    assert!(
        elsewhere
            .requests()
            .iter()
            .all(|r| r.header("authorization").is_none()),
        "the token never reached the second origin"
    );
}

fn auth_builder() -> silent_refresh_ureq::BearerAuthBuilder {
    BearerAuth::builder(
        TokenSource::builder(Config::default())
            .build()
            .expect("a source"),
    )
}

#[test]
fn allow_url_allows_the_urls_origin_and_never_shows_the_url() {
    let auth = auth_builder()
        .allow_url("https://alice:pw@API.example.com/v1/?key=s3cret")
        .build()
        .expect("a valid URL");
    let uri = |url: &str| -> http::Uri { url.parse().expect("a URL") };
    assert!(auth.authorizes(&uri("https://api.example.com/other")));
    assert!(!auth.authorizes(&uri("https://api.example.com:8443/")));

    let error = auth_builder()
        .allow_url("ftp://alice:pw@files.example.com/s3cret?key=s3cret")
        .allow_origin("https://api.example.com/with/path")
        .build()
        .expect_err("an ftp URL");
    assert!(matches!(error, Error::InvalidUrl { .. }), "{error}");
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cret") && !text.contains("pw"), "{text}");

    let error = auth_builder()
        .allow_origin("https://api.example.com/with/path")
        .allow_url("ftp://files.example.com/")
        .build()
        .expect_err("two invalid entries");
    assert!(matches!(error, Error::InvalidOrigin { .. }), "{error}");
}

#[test]
fn a_strict_middleware_refuses_an_unlisted_origin_and_sends_nothing() {
    let allowed = TestServer::start(|_| Reply::text(200, "allowed"));
    let typo = TestServer::start(|_| Reply::text(401, "who are you"));
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::Token(Token::bearer(
            "at-SECRET-x",
            Expiry::In(Duration::from_secs(3600)),
        )))
        .build()
        .expect("source");
    let strict = |strict| {
        agent_with(
            BearerAuth::builder(source.clone())
                .allow_origin(allowed.origin())
                .strict_origins(strict)
                .build()
                .expect("loopback http is allowed"),
        )
    };
    // Lenient (the default): it goes out without the token, and the API's 401 is the
    // caller's to see.
    let lenient = strict(false);
    let answer = lenient.get(typo.url("/v1/me")).call();
    assert!(
        matches!(answer, Err(ureq::Error::StatusCode(401))),
        "{answer:?}"
    );
    assert_eq!(typo.requests().len(), 1);
    assert_eq!(bearer_of(&typo.requests()[0]), None);
    // Strict: refused before anything is sent, with an error naming the origin.
    let strict = strict(true);
    let error = strict.get(typo.url("/v1/me")).call().expect_err("refused");
    let ureq::Error::Other(inner) = error else {
        panic!("{error:?}");
    };
    let error = inner.downcast::<Error>().expect("the adapter's error");
    assert!(
        matches!(&*error, Error::OriginNotAllowed { origin } if *origin == typo.origin()),
        "{error}"
    );
    assert!(error.to_string().contains("allow_origin"), "{error}");
    assert_eq!(typo.requests().len(), 1, "nothing more was sent");
    strict.get(allowed.url("/ok")).call().expect("allowed");
    assert_eq!(
        bearer_of(&allowed.requests()[0]).as_deref(),
        Some("at-SECRET-x")
    );
}
