//! Rule 8, once on each runtime: an exchange past `refresh_timeout` is overdue, not
//! thrown away. It runs on (with a rotating refresh token, its answer carries the only
//! copy of the new credential), no other exchange starts meanwhile, `refresh_overdue()`
//! and the events say so, callers are answered by their own deadlines, and its late
//! success is adopted.

#[macro_use]
mod support;

use std::sync::Arc;

use silent_refresh::{Config, Credentials, Event, Secret};
use support::{
    Answer, Calls, HOUR, Harness, core_error, millis, next_event, rotated, secret_of, secs, until,
};

scenarios!(an_overdue_exchange_runs_on_and_its_late_success_is_adopted);

async fn an_overdue_exchange_runs_on_and_its_late_success_is_adopted<H: Harness>(h: H) {
    let calls = Arc::new(Calls::default());
    // The server answers 15 s after the request: past refresh_timeout (10 s), before
    // the hard limit of a refresher without a timeout of its own (20 s).
    let refresher = h.fake(
        calls.clone(),
        Arc::new(|n| Answer::after(secs(15), Ok(rotated(n, HOUR)))),
    );
    let config = Config::builder()
        .refresh_timeout(secs(10))
        .request_timeout(secs(60))
        .build()
        .expect("config");
    let source = h
        .builder(config)
        .credentials(Credentials::RefreshToken(Secret::new("rt-0")))
        .refresher(refresher)
        .build()
        .expect("the source starts");
    let mut events = H::subscribe(&source);

    let patient = H::spawn_token(&source);
    until(&h, || calls.count() == 1, "the refresh goes on the wire").await;
    h.advance(secs(11)).await;
    next_event::<H>(&source, &mut events, "RefreshOverdue", |e| {
        matches!(e, Event::RefreshOverdue { .. })
    })
    .await;
    assert!(source.refresh_overdue(), "overdue, and still on the wire");
    assert!(
        format!("{source:?}").contains("refresh_overdue: true"),
        "{source:?}"
    );
    // A caller with a short deadline is answered by it; no exchange starts meanwhile.
    let hurried = H::token_within(&source, millis(100));
    let error = core_error(hurried.await);
    assert!(
        matches!(error, silent_refresh::Error::DeadlineExceeded { .. }),
        "{error:?}"
    );
    assert_eq!(calls.count(), 1, "one exchange on the wire, not two");

    // The answer comes: adopted, although late.
    h.advance(secs(4)).await;
    assert_eq!(
        secret_of(patient.await),
        "at-1",
        "the late success is adopted"
    );
    assert!(!source.refresh_overdue());
    assert_eq!(calls.credentials(), vec![Some("rt-0".to_owned())]);
    assert_eq!(secret_of(H::token(&source).await), "at-1");
}
