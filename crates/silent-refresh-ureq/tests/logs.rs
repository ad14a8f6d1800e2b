//! What the adapter logs and prints: the events it promises, and never a secret.
//!
//! Its own test binary, because it installs a process-wide `tracing` subscriber (the
//! refreshes log from threads of their own).

mod support;

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use silent_refresh_ureq::{BearerAuth, Credentials, Expiry, Token, TokenSource};
use support::{AuthServer, Reply, api_server, short_config};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Every secret in this test contains this marker.
const MARK: &str = "SECRET";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.0.lock().expect("log");
        span.record(&mut Line(&mut text));
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Line(&mut self.0.lock().expect("log")));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut text = self.0.lock().expect("log");
        let _ = write!(
            text,
            "\n{} {}:",
            event.metadata().level(),
            event.metadata().target()
        );
        event.record(&mut Line(&mut text));
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

#[test]
fn events_are_logged_and_no_secret_is_ever_logged_or_printed() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("the only subscriber");
    let printed = Arc::new(Mutex::new(String::new()));

    let auth = AuthServer::start("rt-SECRET-1", Duration::from_secs(3600));
    auth.state()
        .scripted
        .push_back(Reply::text(503, "maintenance"));
    let api = api_server(&auth);
    let source = TokenSource::builder(
        short_config()
            .request_timeout(Duration::from_secs(10))
            .build()
            .expect("config"),
    )
    .credentials(Credentials::Token(
        Token::bearer("at-SECRET-0", Expiry::In(Duration::from_secs(3600)))
            .with_refresh_token("rt-SECRET-1"),
    ))
    .refresher(auth.refresher())
    .on_token_change({
        let printed = printed.clone();
        move |change| {
            let _ = write!(printed.lock().expect("printed"), "{change:?}");
        }
    })
    .build()
    .expect("source");
    let auth_mw = BearerAuth::builder(source.clone())
        .allow_origin(api.origin())
        .build()
        .expect("valid");
    let mut text = printed.lock().expect("printed").clone();
    let _ = write!(text, "{auth_mw:?} {:?} {source:?}", auth.refresher());
    let agent = ureq::Agent::config_builder()
        .middleware(auth_mw)
        .build()
        .new_agent();

    // A 401, a transient failure, a backoff, a refresh, a retry.
    let response = agent.get(api.url("/data")).call().expect("retried");
    assert_eq!(response.status(), 200);
    // A terminal failure: the family is revoked after a reuse.
    let twin = TokenSource::builder(short_config().build().expect("config"))
        .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
        .refresher(auth.refresher())
        .build()
        .expect("source");
    let error = twin.token().expect_err("reused");
    let _ = write!(text, "{error} {error:?} {twin:?}");
    source.sign_out();
    let error = source.token().expect_err("signed out");
    let _ = write!(text, "{error} {error:?}");
    text.push_str(&printed.lock().expect("printed"));

    let log = capture.0.lock().expect("log").clone();
    if std::env::var_os("SHOW_LOG").is_some() {
        eprintln!("{log}\n{text}");
    }
    for event in [
        "token refresh started",
        "token refresh failed; backing off",
        "new token adopted",
        "rejected the access token (401)",
        "token refresh failed for good",
        "status=SignedOut",
    ] {
        assert!(log.contains(event), "no {event:?} in the log:{log}");
    }
    assert!(!log.contains(MARK), "a secret was logged:{log}");
    // An instant is logged as the time left until it, never as the clock's raw value.
    assert!(!log.contains("tv_sec"), "a raw instant was logged:{log}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(!text.contains(MARK), "a secret was printed: {text}");
}
