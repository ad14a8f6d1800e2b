//! `oauth2_client`'s logic against the embedded server: many expiries with both
//! runtimes, a dead refresh token, and the command line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use silent_refresh::Secret;
use silent_refresh_oauth2::ClientAuth;
use silent_refresh_testkit::server::{AuthServer, ServerConfig};
use silent_refresh_tool::client::{
    self, EXIT_SIGN_IN, EXIT_USAGE, Limit, Options, Report, RunError, Runtime, Tuning,
};
use silent_refresh_tool::measure::Percentiles;

/// A server whose tokens live one second, so a few seconds cover many expiries.
fn fast_server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(1),
        token_latency: Duration::from_millis(20),
        ..ServerConfig::default()
    })
    .expect("the embedded server starts")
}

fn options(server: &AuthServer, refresh_token: &str, runtime: Runtime, limit: Limit) -> Options {
    let config = server.config();
    Options {
        token_url: server.token_url(),
        client_id: config.client_id.clone(),
        client_secret: config.client_secret.clone().map(Secret::new),
        refresh_token: Some(Secret::new(refresh_token)),
        resource: server.resource_url(),
        resources: Vec::new(),
        runtime,
        concurrency: 16,
        limit,
        auth: ClientAuth::Basic,
        scope: None,
        tuning: Tuning::default(),
        token_file: None,
        redis: None,
        timeline: None,
    }
}

/// Runs the load for `secs` and checks it against the server's own counts: no
/// failure, refreshes across every expiry, never two refreshes at once, no reuse.
fn many_expiries(runtime: Runtime, auth: ClientAuth, concurrency: usize) {
    let server = fast_server();
    let grant = server.sign_in(Some("api:read"));
    let secs = 3.5;
    let mut options = options(
        &server,
        &grant.refresh_token,
        runtime,
        Limit::Duration(Duration::from_secs_f64(secs)),
    );
    options.auth = auth;
    options.concurrency = concurrency;
    let (report, first_error) = client::run(options).expect("the run completes");
    let stats = server.take_stats();

    assert_eq!(report.failed, 0, "{report:?}: first error {first_error:?}");
    assert!(report.ok > 0, "{report:?}");
    assert_eq!(report.requests, report.ok, "{report:?}");
    assert_eq!(report.runtime, runtime.name());
    // A 1 s token is refreshed about every half second: at least one refresh per
    // expiry the run spans.
    let expiries = (secs / server.config().token_lifetime.as_secs_f64()).floor() as u64;
    assert!(
        report.refreshes >= expiries,
        "{} refreshes over {expiries} expiries",
        report.refreshes
    );
    assert_eq!(stats.issued, report.refreshes, "{stats:?}");
    assert_eq!(stats.max_token_in_flight, 1, "{stats:?}");
    assert_eq!(stats.reuse_detected, 0, "{stats:?}");
    assert_eq!(stats.invalid_grant, 0, "{stats:?}");
    assert_eq!(stats.resource_ok, report.ok, "{stats:?}");
    // Every 401 the resource gave was retried, and the retry succeeded.
    assert_eq!(
        stats.resource_unauthorized, report.retried_401,
        "{stats:?} {report:?}"
    );
    match auth {
        ClientAuth::Post => assert_eq!(stats.auth_post, stats.token_requests, "{stats:?}"),
        _ => assert_eq!(stats.auth_basic, stats.token_requests, "{stats:?}"),
    }
    // Every served token is one the client adopted, in order.
    let served = server.served_by(grant.id);
    assert!(
        served
            .iter()
            .all(|&(generation, _)| generation <= report.refreshes)
    );
    assert_eq!(served.iter().map(|&(_, n)| n).sum::<u64>(), report.ok);
}

#[test]
fn tokio_runtime_keeps_up_across_many_expiries() {
    many_expiries(Runtime::Tokio, ClientAuth::Basic, 32);
}

#[test]
fn blocking_runtime_keeps_up_across_many_expiries() {
    many_expiries(Runtime::Blocking, ClientAuth::Post, 8);
}

#[test]
fn request_count_is_exact_with_both_runtimes() {
    let server = fast_server();
    for (runtime, n) in [(Runtime::Tokio, 400), (Runtime::Blocking, 150)] {
        let grant = server.sign_in(None);
        let (report, first_error) = client::run(options(
            &server,
            &grant.refresh_token,
            runtime,
            Limit::Requests(n),
        ))
        .expect("the run completes");
        assert_eq!(report.requests, n, "{runtime:?} {report:?} {first_error:?}");
        assert_eq!(report.ok, n, "{runtime:?} {report:?} {first_error:?}");
    }
    assert_eq!(server.take_stats().max_token_in_flight, 1);
}

/// A refresh token that was already used once: the server sees a reuse, revokes the
/// grant and answers `invalid_grant`.
fn spent_refresh_token(server: &AuthServer) -> (u64, String) {
    let grant = server.sign_in(None);
    let (report, _) = client::run(options(
        server,
        &grant.refresh_token,
        Runtime::Blocking,
        Limit::Requests(1),
    ))
    .expect("the first run refreshes once");
    assert_eq!((report.ok, report.refreshes), (1, 1), "{report:?}");
    (grant.id, grant.refresh_token)
}

fn assert_stops_fast_with_sign_in(runtime: Runtime, refresh_token: &str, server: &AuthServer) {
    let started = Instant::now();
    let result = client::run(options(
        server,
        refresh_token,
        runtime,
        Limit::Duration(Duration::from_secs(20)),
    ));
    let elapsed = started.elapsed();
    let Err(error @ RunError::SignInRequired { .. }) = result else {
        panic!("{runtime:?}: expected sign-in required, got {result:?}");
    };
    assert!(
        elapsed < Duration::from_secs(2),
        "{runtime:?} took {elapsed:?}"
    );
    let message = error.to_string();
    assert!(message.contains("sign-in required"), "{message}");
    assert!(message.contains("OAUTH_REFRESH_TOKEN"), "{message}");
    assert!(
        !message.contains(refresh_token),
        "the message leaks the token"
    );
    let RunError::SignInRequired { report, .. } = error else {
        unreachable!()
    };
    assert_eq!((report.ok, report.refreshes), (0, 0), "{report:?}");
    assert!(report.failed >= 1, "{report:?}");
}

#[test]
fn spent_refresh_token_stops_both_runtimes_at_once() {
    let server = fast_server();
    for runtime in [Runtime::Tokio, Runtime::Blocking] {
        let (grant, spent) = spent_refresh_token(&server);
        let _ = server.take_stats();
        assert_stops_fast_with_sign_in(runtime, &spent, &server);
        let stats = server.take_stats();
        assert_eq!(stats.reuse_detected, 1, "{runtime:?} {stats:?}");
        assert!(server.is_revoked(grant), "{runtime:?}");
        // One refresh, not one per request in flight.
        assert_eq!(stats.token_requests, 1, "{runtime:?} {stats:?}");
    }
}

#[test]
fn unknown_refresh_token_stops_both_runtimes_at_once() {
    let server = fast_server();
    for runtime in [Runtime::Tokio, Runtime::Blocking] {
        assert_stops_fast_with_sign_in(runtime, "rt_never_issued", &server);
    }
    assert_eq!(server.take_stats().invalid_grant, 2);
}

/// The tool as a program: arguments, environment, output and exit status.
fn cli(args: &[&str], env: &HashMap<&str, String>) -> (i32, String, String) {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let code = client::cli_main(
        args.iter().map(|a| (*a).to_owned()),
        |name| env.get(name).cloned(),
        &mut stdout,
        &mut stderr,
    );
    (
        code,
        String::from_utf8(stdout).expect("utf-8"),
        String::from_utf8(stderr).expect("utf-8"),
    )
}

fn cli_args<'a>(server_urls: &'a [String; 3], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--token-url",
        server_urls[0].as_str(),
        "--client-id",
        server_urls[1].as_str(),
        "--resource",
        server_urls[2].as_str(),
    ];
    args.extend_from_slice(extra);
    args
}

fn parse_json(line: &str) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_str(line) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("not a JSON object: {line:?} ({other:?})"),
    }
}

#[test]
fn cli_prints_one_json_line_and_exits_zero() {
    let server = fast_server();
    let grant = server.sign_in(None);
    let urls = [
        server.token_url(),
        server.config().client_id.clone(),
        server.resource_url(),
    ];
    let env = HashMap::from([
        ("OAUTH_REFRESH_TOKEN", grant.refresh_token.clone()),
        (
            "OAUTH_CLIENT_SECRET",
            server.config().client_secret.clone().unwrap_or_default(),
        ),
    ]);
    let args = cli_args(
        &urls,
        &[
            "--runtime",
            "tokio",
            "--concurrency",
            "8",
            "--requests=200",
            "--auth",
            "post",
        ],
    );
    let (code, stdout, stderr) = cli(&args, &env);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let json = parse_json(lines[0]);
    let keys: Vec<&str> = json.keys().map(String::as_str).collect();
    let mut expected = vec![
        "runtime",
        "requests",
        "ok",
        "failed",
        "retried_401",
        "refreshes",
        "elapsed_ms",
        "latency_ms",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(json["runtime"], "tokio");
    assert_eq!(json["requests"], 200);
    assert_eq!(json["ok"], 200);
    assert_eq!(json["failed"], 0);
    assert!(
        json["latency_ms"]["ok"]["p50"]
            .as_f64()
            .is_some_and(|p| p >= 0.0)
    );
    assert!(json["latency_ms"]["failed"].is_null(), "no request failed");
    assert!(lines[0].starts_with("{\"runtime\":"), "{}", lines[0]);
    for secret in [&env["OAUTH_REFRESH_TOKEN"], &env["OAUTH_CLIENT_SECRET"]] {
        assert!(!stdout.contains(secret.as_str()) && !stderr.contains(secret.as_str()));
    }
    let stats = server.take_stats();
    assert!(stats.auth_post >= 1 && stats.auth_basic == 0, "{stats:?}");
}

#[test]
fn cli_dead_refresh_token_exits_fast_saying_sign_in_is_required() {
    let server = fast_server();
    let (_, spent) = spent_refresh_token(&server);
    let urls = [
        server.token_url(),
        server.config().client_id.clone(),
        server.resource_url(),
    ];
    let env = HashMap::from([
        ("OAUTH_REFRESH_TOKEN", spent.clone()),
        (
            "OAUTH_CLIENT_SECRET",
            server.config().client_secret.clone().unwrap_or_default(),
        ),
    ]);
    for runtime in ["tokio", "blocking"] {
        let args = cli_args(
            &urls,
            &[
                "--runtime",
                runtime,
                "--concurrency",
                "64",
                "--duration",
                "30",
            ],
        );
        let started = Instant::now();
        let (code, stdout, stderr) = cli(&args, &env);
        let elapsed = started.elapsed();
        assert_eq!(code, EXIT_SIGN_IN, "{runtime}: {stderr}");
        assert!(elapsed < Duration::from_secs(2), "{runtime}: {elapsed:?}");
        assert!(stderr.contains("sign-in required"), "{runtime}: {stderr}");
        assert!(!stderr.contains(&spent), "{runtime}: the token leaked");
        let json = parse_json(stdout.trim());
        assert_eq!(json["ok"], 0, "{runtime}: {stdout}");
        assert!(json["failed"].as_u64().is_some_and(|f| f >= 1), "{stdout}");
    }
}

#[test]
fn cli_refuses_bad_usage_and_secrets_on_the_command_line() {
    let urls = [
        "http://127.0.0.1:9/token".to_owned(),
        "app".to_owned(),
        "http://127.0.0.1:9/api".to_owned(),
    ];
    let env = HashMap::from([("OAUTH_REFRESH_TOKEN", "rt".to_owned())]);
    let no_env = HashMap::new();
    let run = [
        "--runtime",
        "tokio",
        "--concurrency",
        "1",
        "--requests",
        "1",
    ];
    let cases: Vec<(Vec<&str>, &HashMap<&str, String>, &str)> = vec![
        (cli_args(&urls, &run), &no_env, "OAUTH_REFRESH_TOKEN"),
        (
            cli_args(&urls, &[&run[..], &["--refresh-token", "rt"]].concat()),
            &env,
            "secrets on the command line",
        ),
        (
            cli_args(&urls, &[&run[..], &["--duration", "1"]].concat()),
            &env,
            "not both",
        ),
        (
            cli_args(
                &urls,
                &[
                    "--runtime",
                    "async",
                    "--concurrency",
                    "1",
                    "--requests",
                    "1",
                ],
            ),
            &env,
            "--runtime must be tokio or blocking",
        ),
        (
            cli_args(&urls, &[&run[..], &["--auth", "jwt"]].concat()),
            &env,
            "--auth must be basic, post or none, or private_key_jwt",
        ),
        (
            cli_args(
                &urls,
                &[
                    "--runtime",
                    "tokio",
                    "--concurrency",
                    "0",
                    "--requests",
                    "1",
                ],
            ),
            &env,
            "--concurrency",
        ),
        (
            cli_args(&urls, &["--runtime", "tokio", "--requests", "1"]),
            &env,
            "--concurrency is required",
        ),
    ];
    for (args, env, expected) in cases {
        let (code, stdout, stderr) = cli(&args, env);
        assert_eq!(code, EXIT_USAGE, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let (code, stdout, _) = cli(&["--help"], &no_env);
    assert_eq!(code, 0);
    for option in [
        "--token-url",
        "--client-id",
        "--resource",
        "--runtime",
        "--concurrency",
        "--duration",
        "--requests",
        "--auth",
        "--scope",
        "--time-scale",
        "--refresh-timeout",
        "--embedded-server",
        "--token-delay",
        "--token-lifetime",
        "--failure-rate",
        "--fault-seed",
        "--redirect",
        "OAUTH_CLIENT_SECRET",
        "OAUTH_REFRESH_TOKEN",
    ] {
        assert!(stdout.contains(option), "--help lacks {option}");
    }
}

#[test]
fn json_line_has_the_documented_shape() {
    let report = Report {
        runtime: "blocking",
        requests: 3,
        ok: 2,
        failed: 1,
        retried_401: 1,
        refreshes: 4,
        elapsed_ms: 5,
        latency_ok: Some(Percentiles {
            p50: 1.5,
            p99: 20.25,
            max: 31.0,
        }),
        latency_failed: None,
    };
    assert_eq!(
        report.to_json(),
        r#"{"runtime":"blocking","requests":3,"ok":2,"failed":1,"retried_401":1,"refreshes":4,"elapsed_ms":5,"latency_ms":{"ok":{"p50":1.500,"p99":20.250,"max":31.000},"failed":null}}"#
    );
    let parsed: serde_json::Value = serde_json::from_str(&report.to_json()).expect("JSON");
    assert!(parsed["latency_ms"]["ok"]["p99"].is_number());
    assert!(parsed["latency_ms"]["failed"].is_null());
}
