//! The refresh exchange on the wire (issue 11), in both runtimes, against the embedded
//! server, which rotates refresh tokens and revokes the grant when a spent one comes
//! back. Every assertion is on a count: what the server saw, and what the client
//! reported.
//!
//! The scenarios run ten times faster than the issue's: `--time-scale 0.1` scales
//! every duration of the library's configuration (refresh timeout, backoff, request
//! deadline, thresholds) and the server's durations are divided by ten too, so each
//! run is the scenario, with the library's defaults, in a tenth of the time.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use silent_refresh_testkit::server::RedirectStatus;
use silent_refresh_tool::client::{
    self, EXIT_MISCONFIGURED, EmbeddedOptions, Limit, Report, RunError, Runtime, ServerReport,
};

/// The scenarios' clock runs ten times faster than the issue's.
const TIME_SCALE: f64 = 0.1;

/// One load at a time: the scenarios measure the library, not a machine whose two
/// cores run two loads of 16 requests each.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `secs` of the clock, on the scenarios' clock.
fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs * TIME_SCALE)
}

/// A run of `secs` (issue's clock) with 16 requests in flight, the library's defaults
/// scaled, and the server's default client.
fn scenario(runtime: Runtime, secs: f64) -> EmbeddedOptions {
    let mut options = EmbeddedOptions::new(runtime, 16, Limit::Duration(scaled(secs)));
    options.tuning.time_scale = TIME_SCALE;
    // Backoff paces retries; a `Retry-After` of whole seconds would not scale.
    options.server.retry_after = None;
    options
}

/// Runs `options`; the run must complete (no early stop).
fn complete(options: EmbeddedOptions) -> (Report, Option<String>, ServerReport) {
    let runtime = options.runtime;
    let outcome = client::run_embedded(options).expect("the embedded server starts");
    let server = outcome.server;
    match outcome.result {
        Ok((report, first_error)) => (report, first_error, server),
        Err(error) => panic!("{runtime:?}: the run stopped early: {error}; server {server:?}"),
    }
}

/// The session survived: never two exchanges on the wire, no refresh token spent
/// twice, the grant alive, every request served.
fn assert_session_kept(
    runtime: Runtime,
    report: &Report,
    first_error: Option<&str>,
    server: &ServerReport,
) {
    let stats = &server.stats;
    let context = format!("{runtime:?}: {report:?}, first error {first_error:?}, {stats:?}");
    assert_eq!(
        stats.max_token_in_flight, 1,
        "two refresh exchanges on the wire at once: {context}"
    );
    assert_eq!(
        stats.reuse_detected, 0,
        "a refresh token was sent twice: {context}"
    );
    assert_eq!(stats.invalid_grant, 0, "{context}");
    assert!(!server.grant_revoked, "the session was lost: {context}");
    assert_eq!(report.failed, 0, "{context}");
    assert!(report.ok > 0, "{context}");
    assert_eq!(report.requests, report.ok, "{context}");
    // Every token the client adopted was issued by the server; the last issued may
    // have arrived after the run ended.
    assert!(report.refreshes >= 1, "{context}");
    assert!(stats.issued >= report.refreshes, "{context}");
    assert_eq!(stats.second_origin_requests, 0, "{context}");
}

/// Issue 11, item 1: a token endpoint that takes 12 s to answer, access tokens of
/// 20 s, 16 requests in flight for 45 s, with the library's defaults. The exchange
/// outlives the old 10 s refresh timeout; it must cost nothing: one exchange on the
/// wire at a time, no reuse, no failed request.
fn slow_token_endpoint(runtime: Runtime) {
    let _one = one_at_a_time();
    let mut options = scenario(runtime, 45.0);
    options.server.token_lifetime = scaled(20.0);
    options.server.token_latency = scaled(12.0);
    let (report, first_error, server) = complete(options);
    assert_session_kept(runtime, &report, first_error.as_deref(), &server);
    // Refreshes 12 s long every 10 s or so of a 20 s token's life, over 45 s.
    assert!(report.refreshes >= 2, "{runtime:?}: {report:?} {server:?}");
}

#[test]
fn tokio_slow_token_endpoint_keeps_one_exchange_on_the_wire() {
    slow_token_endpoint(Runtime::Tokio);
}

#[test]
fn blocking_slow_token_endpoint_keeps_one_exchange_on_the_wire() {
    slow_token_endpoint(Runtime::Blocking);
}

/// The same endpoint with the old 10 s refresh timeout: each exchange outlives it.
/// The adapter must cut the exchange when the machine gives up on it, before the
/// next attempt goes out: the server never sees two at once, and since it looks at
/// the refresh token only when its delay is over, the cut exchanges spend nothing and
/// the session survives, although no refresh can ever succeed (the requests fail
/// with their own deadline, never "sign in again").
fn exchange_cut_at_the_refresh_timeout(runtime: Runtime) {
    let _one = one_at_a_time();
    let concurrency = 4;
    // Each request waits for a token until its deadline (30 s): two attempts or
    // more are cut meanwhile.
    let mut options = scenario(runtime, 0.0);
    options.limit = Limit::Requests(concurrency as u64);
    options.concurrency = concurrency;
    options.server.token_lifetime = scaled(20.0);
    options.server.token_latency = scaled(12.0);
    options.tuning.refresh_timeout = Some(scaled(10.0));
    let outcome = client::run_embedded(options).expect("the embedded server starts");
    let stats = outcome.server.stats;
    let context = format!("{runtime:?}: {stats:?} {:?}", outcome.result);
    assert!(
        stats.token_requests >= 2,
        "the refresh was not tried again: {context}"
    );
    assert_eq!(
        stats.max_token_in_flight, 1,
        "a cut exchange stayed on the wire: {context}"
    );
    assert_eq!(stats.issued, 0, "{context}");
    assert_eq!(stats.reuse_detected, 0, "{context}");
    assert_eq!(stats.invalid_grant, 0, "{context}");
    assert!(!outcome.server.grant_revoked, "{context}");
    let Ok((report, first_error)) = outcome.result else {
        panic!("the run must not stop early: {context}");
    };
    assert_eq!(report.failed, concurrency as u64, "{context}");
    let first_error = first_error.unwrap_or_default();
    assert!(first_error.contains("deadline"), "{context}: {first_error}");
}

#[test]
fn tokio_exchange_cut_at_the_refresh_timeout_leaves_one_on_the_wire() {
    exchange_cut_at_the_refresh_timeout(Runtime::Tokio);
}

#[test]
fn blocking_exchange_cut_at_the_refresh_timeout_leaves_one_on_the_wire() {
    exchange_cut_at_the_refresh_timeout(Runtime::Blocking);
}

/// Issue 11, "done when": 30 % of the token requests answered `503` (before any
/// refresh token is looked at). The retries never overlap, nothing is spent twice,
/// and no request fails: the current token serves, or the request waits.
fn faulty_token_endpoint(runtime: Runtime) {
    let _one = one_at_a_time();
    let mut options = scenario(runtime, 40.0);
    options.server.token_lifetime = scaled(20.0);
    options.server.token_latency = scaled(0.5);
    options.server.failure_rate = 0.3;
    // Seed 7 fails the 1st, 3rd and 4th token requests: the first refresh (no token
    // yet: every request waits for the retry), then two in a row.
    options.server.fault_seed = 7;
    let (report, first_error, server) = complete(options);
    assert_session_kept(runtime, &report, first_error.as_deref(), &server);
    let stats = &server.stats;
    assert!(report.refreshes >= 2, "{runtime:?}: {report:?} {stats:?}");
    // Every token request was a 503 or a refresh (the last one may have been cut
    // short when the run ended).
    let answered = stats.issued + stats.unavailable;
    assert!(
        (answered..=answered + 1).contains(&stats.token_requests),
        "{runtime:?}: {stats:?}"
    );
    assert!(
        stats.unavailable >= 2,
        "{runtime:?}: seed 7 fails two of the first four: {stats:?}"
    );
}

#[test]
fn tokio_faulty_token_endpoint_loses_no_request() {
    faulty_token_endpoint(Runtime::Tokio);
}

#[test]
fn blocking_faulty_token_endpoint_loses_no_request() {
    faulty_token_endpoint(Runtime::Blocking);
}

/// Issue 11, item 2: a token URL that answers `307` or `308` towards another origin.
/// The credential must not follow: the second origin receives nothing, not even a
/// connection, and the run stops at once (each request in flight fails once) with a
/// misconfiguration error that names the redirect's target, never "sign in again".
fn redirecting_token_endpoint(runtime: Runtime, status: RedirectStatus) {
    let concurrency = 8;
    // Bounded, should the client keep going: the run would then last 30 s (issue's
    // clock) and count more requests than `concurrency`.
    let mut options = scenario(runtime, 30.0);
    options.concurrency = concurrency;
    options.server.token_redirect = Some(status);
    let outcome = client::run_embedded(options).expect("the embedded server starts");
    let stats = outcome.server.stats;
    let context = format!("{runtime:?} {status:?}: {stats:?}");
    assert_eq!(
        stats.second_origin_requests, 0,
        "the credential followed the redirect: {context}"
    );
    assert_eq!(stats.second_origin_connections, 0, "{context}");
    assert_eq!(stats.second_origin_credentials, 0, "{context}");
    // One exchange, answered with the redirect, and not tried again.
    assert_eq!(stats.token_requests, 1, "{context}");
    assert_eq!(stats.redirected, 1, "{context}");
    assert_eq!(stats.issued, 0, "{context}");
    assert!(!outcome.server.grant_revoked, "{context}");
    let error = match outcome.result {
        Err(error @ RunError::Misconfigured { .. }) => error,
        other => panic!("{context}: expected a misconfiguration error, got {other:?}"),
    };
    let message = error.to_string();
    let lowered = message.to_lowercase();
    assert!(lowered.contains("redirect"), "{context}: {message}");
    assert!(!lowered.contains("sign in again"), "{context}: {message}");
    assert!(
        !lowered.contains("sign-in required"),
        "{context}: {message}"
    );
    let report = error.report().expect("the run started");
    assert_eq!(
        (report.ok, report.refreshes),
        (0, 0),
        "{context}: {report:?}"
    );
    assert_eq!(report.requests, report.failed, "{context}: {report:?}");
    assert!(report.failed >= 1, "{context}: {report:?}");
    assert!(
        report.failed <= concurrency as u64,
        "the run did not stop at once: {context}: {report:?}"
    );
}

#[test]
fn tokio_redirecting_token_endpoint_fails_fast_as_misconfigured() {
    for status in [RedirectStatus::Temporary, RedirectStatus::Permanent] {
        redirecting_token_endpoint(Runtime::Tokio, status);
    }
}

#[test]
fn blocking_redirecting_token_endpoint_fails_fast_as_misconfigured() {
    for status in [RedirectStatus::Temporary, RedirectStatus::Permanent] {
        redirecting_token_endpoint(Runtime::Blocking, status);
    }
}

/// The tool as a program, in its embedded-server mode.
fn cli(args: &[&str]) -> (i32, String, String) {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let no_env: HashMap<String, String> = HashMap::new();
    let code = client::cli_main(
        args.iter().map(|a| (*a).to_owned()),
        |name| no_env.get(name).cloned(),
        &mut stdout,
        &mut stderr,
    );
    (
        code,
        String::from_utf8(stdout).expect("utf-8"),
        String::from_utf8(stderr).expect("utf-8"),
    )
}

#[test]
fn cli_embedded_redirect_exits_as_misconfigured_with_the_server_counts() {
    for runtime in ["tokio", "blocking"] {
        let (code, stdout, stderr) = cli(&[
            "--embedded-server",
            "--redirect",
            "308",
            "--runtime",
            runtime,
            "--concurrency",
            "4",
            "--duration",
            "3",
            "--time-scale",
            "0.1",
        ]);
        assert_eq!(code, EXIT_MISCONFIGURED, "{runtime}: {stdout} {stderr}");
        assert!(
            !stderr.to_lowercase().contains("sign in again"),
            "{runtime}: {stderr}"
        );
        let line = stdout.trim();
        assert_eq!(stdout.lines().count(), 1, "{runtime}: {stdout}");
        let json: serde_json::Value = serde_json::from_str(line).expect("one JSON line");
        for key in [
            "runtime",
            "requests",
            "ok",
            "failed",
            "retried_401",
            "refreshes",
            "elapsed_ms",
        ] {
            assert!(
                json.get(key).is_some(),
                "{runtime}: {key} missing in {line}"
            );
        }
        assert_eq!(json["ok"], 0, "{line}");
        assert_eq!(json["server"]["second_origin_requests"], 0, "{line}");
        assert_eq!(json["server"]["second_origin_connections"], 0, "{line}");
        assert_eq!(json["server"]["redirected"], 1, "{line}");
        assert_eq!(json["server"]["grant_revoked"], false, "{line}");
    }
}

#[test]
fn cli_embedded_server_runs_a_short_load_and_reports_the_server() {
    let _one = one_at_a_time();
    let (code, stdout, stderr) = cli(&[
        "--embedded-server",
        "--token-lifetime",
        "1s",
        "--token-delay",
        "20ms",
        "--runtime",
        "blocking",
        "--concurrency",
        "4",
        "--requests",
        "40",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(json["ok"], 40, "{stdout}");
    assert_eq!(json["failed"], 0, "{stdout}");
    assert_eq!(json["server"]["max_refreshes_in_flight"], 1, "{stdout}");
    assert_eq!(json["server"]["reuse_detected"], 0, "{stdout}");
    assert!(
        json["server"]["refreshes_served"].as_u64() >= Some(1),
        "{stdout}"
    );
}

#[test]
fn cli_embedded_server_flags_are_checked() {
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--token-delay",
                "12s",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "give --embedded-server too",
        ),
        (
            &[
                "--embedded-server",
                "--token-url",
                "http://127.0.0.1:9/token",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "not accepted with --embedded-server",
        ),
        (
            &[
                "--embedded-server",
                "--redirect",
                "302",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "--redirect must be 307 or 308",
        ),
        (
            &[
                "--embedded-server",
                "--failure-rate",
                "1.5",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "--failure-rate",
        ),
        (
            &[
                "--embedded-server",
                "--token-lifetime",
                "500ms",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "--token-lifetime",
        ),
        (
            &[
                "--embedded-server",
                "--time-scale",
                "0",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "--time-scale",
        ),
        (
            &[
                "--embedded-server",
                "--refresh-timeout",
                "soon",
                "--runtime",
                "tokio",
                "--concurrency",
                "1",
                "--requests",
                "1",
            ],
            "--refresh-timeout",
        ),
    ];
    for (args, expected) in cases {
        let (code, stdout, stderr) = cli(args);
        assert_eq!(code, client::EXIT_USAGE, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let parsed = client::parse(
        [
            "--embedded-server",
            "--token-delay",
            "12s",
            "--token-lifetime=20s",
            "--failure-rate",
            "30%",
            "--fault-seed",
            "7",
            "--redirect",
            "307",
            "--refresh-timeout",
            "1500ms",
            "--runtime",
            "blocking",
            "--concurrency",
            "16",
            "--duration",
            "45",
        ]
        .map(str::to_owned),
        |_| None,
    );
    let Ok(client::Command::Embedded(options)) = parsed else {
        panic!("not an embedded run: {parsed:?}");
    };
    assert_eq!(options.server.token_latency, Duration::from_secs(12));
    assert_eq!(options.server.token_lifetime, Duration::from_secs(20));
    assert!((options.server.failure_rate - 0.3).abs() < 1e-9);
    assert_eq!(options.server.fault_seed, 7);
    assert_eq!(
        options.server.token_redirect,
        Some(RedirectStatus::Temporary)
    );
    assert_eq!(
        options.tuning.refresh_timeout,
        Some(Duration::from_millis(1500))
    );
    assert_eq!(options.runtime, Runtime::Blocking);
    assert_eq!(options.limit, Limit::Duration(Duration::from_secs(45)));
}

#[test]
fn time_scale_scales_every_duration_of_the_library() {
    let defaults = silent_refresh::Config::default();
    let tuning = client::Tuning {
        time_scale: TIME_SCALE,
        refresh_timeout: None,
    };
    let config = client::config(tuning).expect("a valid configuration");
    for (name, scaled_value, default) in [
        (
            "refresh_timeout",
            config.refresh_timeout(),
            defaults.refresh_timeout(),
        ),
        (
            "request_timeout",
            config.request_timeout(),
            defaults.request_timeout(),
        ),
        (
            "backoff_initial",
            config.backoff_initial(),
            defaults.backoff_initial(),
        ),
        ("backoff_max", config.backoff_max(), defaults.backoff_max()),
        (
            "refresh_threshold",
            config.refresh_threshold(),
            defaults.refresh_threshold(),
        ),
        (
            "safety_margin",
            config.safety_margin(),
            defaults.safety_margin(),
        ),
        (
            "max_retry_after",
            config.max_retry_after(),
            defaults.max_retry_after(),
        ),
    ] {
        assert_eq!(scaled_value, default.mul_f64(TIME_SCALE), "{name}");
    }
    let config = client::config(client::Tuning {
        refresh_timeout: Some(Duration::from_millis(700)),
        ..tuning
    })
    .expect("a valid configuration");
    assert_eq!(config.refresh_timeout(), Duration::from_millis(700));
}
