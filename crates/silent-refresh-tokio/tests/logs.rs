//! Logs, errors and `Debug` output never hold a secret, and the refresh events exist.

mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use common::{Answer, Changes, fake, lock, secs};
use silent_refresh_tokio::TokenSource;
use silent_refresh_tokio::silent_refresh::{
    Config, Credentials, Expiry, Generation, RefreshFailure, Token,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Records every event as `field=value` text.
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl Visit for Line<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {} ", span.metadata().name());
        span.record(&mut Line(&mut line));
        lock(&self.0).push(line);
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = format!("{} ", event.metadata().level());
        event.record(&mut Line(&mut line));
        lock(&self.0).push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn refresh_events_are_logged_without_secrets() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let _subscriber = tracing::subscriber::set_default(Capture(lines.clone()));
    let changes = Arc::new(Changes::default());
    let (_calls, refresher) = fake(|n| match n {
        1 => Answer::now(Ok(
            Token::bearer("at-hush-1", Expiry::In(secs(3600))).with_refresh_token("rt-hush-1")
        )),
        2 => Answer::now(Err(RefreshFailure::transient(
            "the token endpoint answered 503",
        ))),
        _ => Answer::now(Err(RefreshFailure::terminal("invalid_grant"))),
    });
    let source = TokenSource::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-hush-0".into()))
        .refresher(refresher)
        .on_token_change(changes.callback())
        .build()
        .expect("source");

    let token = source.token().await.expect("token");
    assert_eq!(token.generation, Generation(1));
    source.report_rejected(token.generation);
    let error = source
        .token()
        .await
        .expect_err("the second refresh fails, then the third for good");
    assert!(error.needs_sign_in());

    let lines = lock(&lines).clone();
    let all = lines.join("\n");
    for expected in [
        "token refresh started",
        "new token adopted",
        "token refresh failed",
        "backing off",
        "sign-in required",
    ] {
        assert!(all.contains(expected), "no {expected:?} event in:\n{all}");
    }
    assert!(!all.contains("hush"), "a secret was logged:\n{all}");
    // Each exchange runs in a span that names its attempt and why it started.
    for span in [
        r#"span refresh_exchange attempt=1 trigger="no_token""#,
        r#"span refresh_exchange attempt=2 trigger="rejected""#,
    ] {
        assert!(all.contains(span), "no {span:?} in:\n{all}");
    }

    let printed = [
        format!("{source:?}"),
        format!("{error} {error:?}"),
        format!("{:?}", lock(&changes.0)),
        format!("{token:?}"),
    ];
    for text in printed {
        assert!(!text.contains("hush"), "{text}");
    }
}
