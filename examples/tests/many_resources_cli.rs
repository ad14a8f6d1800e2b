//! `oauth2_client --resource URL [--indicator URI]`, repeated (issue 22), as a
//! program: against the embedded server and two APIs of its own, requests go to the
//! three in turn, each API gets its own key's token (no failure, no token for another
//! API, nothing spent twice, one exchange on the wire at a time); a failed request
//! caused by `insufficient_scope` prints the scope.

use std::collections::HashMap;
use std::time::Duration;

use silent_refresh_testkit::server::{AuthServer, ServerConfig};
use silent_refresh_tool::client;

/// The tool as a program: arguments, environment, output and exit status.
fn cli(args: &[String], env: &HashMap<&str, String>) -> (i32, String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let code = client::cli_main(
        args.iter().cloned(),
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

fn server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(2),
        ..ServerConfig::default()
    })
    .expect("the server starts")
}

/// The arguments naming `server`, then `extra`.
fn args(server: &AuthServer, extra: &[String]) -> Vec<String> {
    let mut args = vec![
        "--token-url".to_owned(),
        server.token_url(),
        "--client-id".to_owned(),
        server.config().client_id.clone(),
    ];
    args.extend_from_slice(extra);
    args
}

/// A fresh session's secrets, in the environment.
fn env(server: &AuthServer) -> HashMap<&'static str, String> {
    HashMap::from([
        ("OAUTH_REFRESH_TOKEN", server.sign_in(None).refresh_token),
        (
            "OAUTH_CLIENT_SECRET",
            server.config().client_secret.clone().unwrap_or_default(),
        ),
    ])
}

fn owned(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| (*a).to_owned()).collect()
}

#[test]
fn requests_spread_over_three_apis_each_with_its_own_token_in_both_runtimes() {
    let server = server();
    let (a, b) = (
        server.start_api(None).expect("API a"),
        server.start_api(None).expect("API b"),
    );
    for runtime in ["tokio", "blocking"] {
        let mut extra = vec![
            "--resource".to_owned(),
            server.resource_url(),
            "--resource".to_owned(),
            a.resource_url(),
            "--indicator".to_owned(),
            a.audience().to_owned(),
            format!("--resource={}", b.resource_url()),
            format!("--indicator={}", b.audience()),
        ];
        extra.extend(owned(&[
            "--runtime",
            runtime,
            "--concurrency",
            "4",
            "--duration",
            "4",
        ]));
        let (code, stdout, stderr) = cli(&args(&server, &extra), &env(&server));
        let stats = server.take_stats();
        let (a_stats, b_stats) = (a.take_stats(), b.take_stats());
        let context = format!("{runtime}: {stdout} {stderr} {stats:?} {a_stats:?} {b_stats:?}");
        assert_eq!(code, 0, "{context}");
        let line: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
        assert_eq!(line["failed"], 0, "{context}");
        assert!(
            a_stats.ok > 10 && b_stats.ok > 10 && stats.resource_ok > 10,
            "{context}"
        );
        assert_eq!(
            stats.wrong_audience + a_stats.wrong_audience + b_stats.wrong_audience,
            0,
            "{context}"
        );
        assert_eq!(stats.reuse_detected, 0, "{context}");
        assert_eq!(stats.max_token_in_flight, 1, "{context}");
    }
}

#[test]
fn a_request_refused_for_a_scope_prints_the_scope() {
    let server = server();
    let admin = server.start_api(Some("admin")).expect("an API");
    let mut extra = vec![
        "--resource".to_owned(),
        admin.resource_url(),
        "--indicator".to_owned(),
        admin.audience().to_owned(),
    ];
    extra.extend(owned(&[
        "--runtime",
        "blocking",
        "--concurrency",
        "1",
        "--requests",
        "3",
    ]));
    let (code, stdout, stderr) = cli(&args(&server, &extra), &env(&server));
    assert_ne!(code, 0, "{stdout} {stderr}");
    assert!(
        stderr.contains("insufficient") || stderr.contains("scope"),
        "{stderr}"
    );
    assert!(stderr.contains("`admin`"), "the scope is named: {stderr}");
    assert_eq!(admin.take_stats().insufficient_scope, 3, "{stderr}");
}

#[test]
fn an_indicator_without_its_resource_is_a_usage_error() {
    let server = server();
    let extra = owned(&[
        "--indicator",
        "https://api.example/",
        "--runtime",
        "tokio",
        "--concurrency",
        "1",
        "--requests",
        "1",
    ]);
    let (code, _, stderr) = cli(&args(&server, &extra), &env(&server));
    assert_eq!(code, client::EXIT_USAGE, "{stderr}");
    assert!(stderr.contains("--indicator"), "{stderr}");
}
