//! Outages and storms (issue 23) end to end, in both runtimes: `oauth2_client` against
//! the embedded server going dark (its token endpoint refuses connections) and against
//! an API that rejects every token. Every assertion is on a count; how fast the session
//! comes back is measured (the JSON line's `outage_recovery_ms`, the timeline), and
//! checked here only for having happened.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use silent_refresh_tool::client::{self, EmbeddedOptions, Limit, Runtime};

/// One load at a time: the two cores are the scenario's.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

fn outage(runtime: Runtime) {
    let _one = one_at_a_time();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let timeline = dir.path().join("timeline.csv");
    let mut options = EmbeddedOptions::new(runtime, 8, Limit::Duration(Duration::from_secs(6)));
    options.server.token_lifetime = Duration::from_secs(2);
    options.server.retry_after = None;
    options.server.outage = Some((Duration::from_secs(1), Duration::from_secs(3)));
    options.timeline = Some(timeline.clone());
    let outcome = client::run_embedded(options).expect("the embedded server starts");
    let server = outcome.server;
    let (report, _) = outcome.result.expect("the run is not stopped");
    let stats = server.stats;
    let context = format!("{runtime:?}: {report:?} {server:?}");
    assert_eq!(stats.reuse_detected, 0, "{context}");
    assert!(!server.grant_revoked, "{context}");
    assert_eq!(stats.max_token_in_flight, 1, "{context}");
    assert!(report.failed > 0, "requests failed while down: {context}");
    assert!(
        server.outage_recovery.is_some(),
        "a token was issued after the return: {context}"
    );
    // Requests succeed again after the return: the timeline's last second is all ok.
    let csv = std::fs::read_to_string(&timeline).expect("the timeline is written");
    let slots: Vec<Vec<u64>> = csv
        .lines()
        .skip(1)
        .map(|line| {
            line.split(',')
                .map(|n| n.parse().expect("a count"))
                .collect()
        })
        .collect();
    assert!(slots.len() >= 50, "{} slots", slots.len());
    let last_second = &slots[slots.len().saturating_sub(11)..slots.len() - 1];
    assert!(
        last_second.iter().all(|slot| slot[2] == 0) && last_second.iter().any(|s| s[1] > 0),
        "{context}: {last_second:?}"
    );
    assert!(slots.iter().map(|s| s[4]).sum::<u64>() >= 2, "{context}");
}

#[test]
fn after_an_outage_the_session_comes_back_with_nothing_spent_twice_tokio() {
    outage(Runtime::Tokio);
}

#[test]
fn after_an_outage_the_session_comes_back_with_nothing_spent_twice_blocking() {
    outage(Runtime::Blocking);
}

fn rejecting_api(runtime: Runtime) {
    let _one = one_at_a_time();
    let mut options = EmbeddedOptions::new(runtime, 16, Limit::Duration(Duration::from_secs(6)));
    options.server.token_lifetime = Duration::from_secs(60);
    options.server.resource_rejects_all = true;
    // Requests that cannot wait for the held-back refresh are told at once.
    options.tuning.time_scale = 0.2;
    let outcome = client::run_embedded(options).expect("the embedded server starts");
    let server = outcome.server;
    let (report, first_error) = outcome.result.expect("the run is not stopped");
    let context = format!("{runtime:?}: {report:?} {server:?} {first_error:?}");
    assert_eq!(report.ok, 0, "{context}");
    assert!(report.failed > 0, "{context}");
    assert!(report.retried_401 > 0, "{context}");
    assert!(
        server.stats.token_requests <= 10,
        "a refresh storm: {context}"
    );
    assert_eq!(server.stats.reuse_detected, 0, "{context}");
}

#[test]
fn an_api_that_rejects_every_token_costs_a_handful_of_token_requests_tokio() {
    rejecting_api(Runtime::Tokio);
}

#[test]
fn an_api_that_rejects_every_token_costs_a_handful_of_token_requests_blocking() {
    rejecting_api(Runtime::Blocking);
}
