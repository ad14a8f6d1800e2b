//! `oauth2_client --token-file`: a second run continues the session the first one
//! saved, with no refresh token in the environment and no reuse seen by the server; a
//! file the tool cannot read stops it and stays as it is; and a client killed with
//! `SIGKILL` at any moment leaves a file that parses and holds a refresh token the
//! server issued.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use silent_refresh_testkit::server::{AuthServer, ServerConfig};
use silent_refresh_tokio::{FileStore, Token, TokenStore};
use silent_refresh_tool::client::{self, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN, EXIT_USAGE};

/// A server whose tokens live one second (refreshed about every half second), with a
/// token endpoint slow enough that a kill can fall inside an exchange.
fn server() -> AuthServer {
    AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(1),
        token_latency: Duration::from_millis(30),
        ..ServerConfig::default()
    })
    .expect("the embedded server starts")
}

/// The command line naming `server` and the token file.
fn args(server: &AuthServer, runtime: &str, limit: &[&str], token_file: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--token-url",
        &server.token_url(),
        "--client-id",
        &server.config().client_id,
        "--resource",
        &server.resource_url(),
        "--runtime",
        runtime,
        "--concurrency",
        "4",
        "--token-file",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(token_file.display().to_string());
    args.extend(limit.iter().map(|s| (*s).to_owned()));
    args
}

/// The client secret, and the refresh token if given.
fn env(server: &AuthServer, refresh_token: Option<&str>) -> HashMap<String, String> {
    let mut env = HashMap::new();
    if let Some(secret) = &server.config().client_secret {
        env.insert(ENV_CLIENT_SECRET.to_owned(), secret.clone());
    }
    if let Some(refresh_token) = refresh_token {
        env.insert(ENV_REFRESH_TOKEN.to_owned(), refresh_token.to_owned());
    }
    env
}

/// Runs the tool in this process: exit status, stdout, stderr.
fn cli(args: Vec<String>, env: &HashMap<String, String>) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = client::cli_main(args, |name| env.get(name).cloned(), &mut out, &mut err);
    (
        code,
        String::from_utf8(out).expect("UTF-8"),
        String::from_utf8(err).expect("UTF-8"),
    )
}

/// The stored session; the test fails if the file does not parse or holds none.
fn stored(path: &Path) -> Token {
    FileStore::new(path)
        .load()
        .unwrap_or_else(|error| panic!("the token file does not parse: {error}"))
        .expect("the token file holds a session")
}

fn stored_refresh(path: &Path) -> String {
    stored(path)
        .refresh_token
        .expect("the session has a refresh token")
        .expose()
        .to_owned()
}

/// Checks the one JSON line and that no secret of the server was printed.
fn assert_report(code: i32, out: &str, err: &str) -> serde_json::Value {
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    // The server's tokens are `at_…` and `rt_…`.
    for text in [out, err] {
        assert!(
            !text.contains("at_") && !text.contains("rt_"),
            "a secret was printed: {text}"
        );
    }
    let line = out.lines().last().expect("one JSON line");
    let report: serde_json::Value = serde_json::from_str(line).expect("JSON");
    for field in [
        "runtime",
        "requests",
        "ok",
        "failed",
        "retried_401",
        "refreshes",
        "elapsed_ms",
    ] {
        assert!(report.get(field).is_some(), "{field} missing: {line}");
    }
    assert_eq!(report["failed"], 0, "{line}");
    assert!(report["ok"].as_u64() > Some(0), "{line}");
    report
}

fn second_run_continues_the_session(runtime: &str) {
    let server = server();
    let grant = server.sign_in(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested").join("session.json");
    // 1.2 s of 1 s tokens: each run refreshes.
    let limit = ["--duration", "1.2"];

    let (code, out, err) = cli(
        args(&server, runtime, &limit, &path),
        &env(&server, Some(&grant.refresh_token)),
    );
    let first = assert_report(code, &out, &err);
    assert!(first["refreshes"].as_u64() >= Some(1), "{first}");
    assert!(err.contains("saved in"), "{err}");
    let after_first = stored_refresh(&path);
    assert_eq!(
        server.refresh_tokens_since(&after_first),
        Some(0),
        "the file holds the newest refresh token"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // No refresh token in the environment: the file's session is used.
    let (code, out, err) = cli(args(&server, runtime, &limit, &path), &env(&server, None));
    let second = assert_report(code, &out, &err);
    assert!(second["refreshes"].as_u64() >= Some(1), "{second}");
    let after_second = stored_refresh(&path);
    assert_ne!(after_first, after_second, "the rotation was saved");
    assert_eq!(server.refresh_tokens_since(&after_second), Some(0));
    let stats = server.take_stats();
    assert_eq!(stats.reuse_detected, 0, "{stats:?}");
    assert_eq!(stats.invalid_grant, 0, "{stats:?}");
    assert_eq!(stats.max_token_in_flight, 1, "{stats:?}");
    assert!(!server.is_revoked(grant.id));
}

#[test]
fn tokio_second_run_continues_the_session_from_the_file() {
    second_run_continues_the_session("tokio");
}

#[test]
fn blocking_second_run_continues_the_session_from_the_file() {
    second_run_continues_the_session("blocking");
}

/// A run that ends while a refresh is on the wire: the server has rotated the refresh
/// token already, and its answer is still on the way back. The run waits for that
/// answer and saves it before it exits (`TokenSource::shutdown`), so the next run
/// continues from the successor instead of presenting the spent token.
fn a_run_ending_mid_refresh_saves_its_answer_first(runtime: &str) {
    let server = AuthServer::start(ServerConfig {
        token_lifetime: Duration::from_secs(2),
        token_latency: Duration::ZERO,
        // Each refresh is answered 0.7 s after the server rotated: at-1 (sent at 0 s)
        // arrives at 0.7 s, its window opens at 1 s to 1.1 s, and its successor is
        // on the wire until 1.7 s to 1.8 s, while at-1 is still usable.
        answer_latency: Duration::from_millis(700),
        ..ServerConfig::default()
    })
    .expect("the embedded server starts");
    let grant = server.sign_in(None);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let limit = ["--duration", "1.3"];
    let (code, out, err) = cli(
        args(&server, runtime, &limit, &path),
        &env(&server, Some(&grant.refresh_token)),
    );
    assert_report(code, &out, &err);
    assert_eq!(
        server.refresh_tokens_since(&stored_refresh(&path)),
        Some(0),
        "the file holds the newest refresh token, not one the server rotated away"
    );
    let (code, out, err) = cli(args(&server, runtime, &limit, &path), &env(&server, None));
    assert_report(code, &out, &err);
    let stats = server.take_stats();
    assert_eq!(stats.reuse_detected, 0, "{stats:?}");
    assert_eq!(stats.invalid_grant, 0, "{stats:?}");
    assert!(!server.is_revoked(grant.id));
}

#[test]
fn tokio_a_run_ending_mid_refresh_saves_its_answer_first() {
    a_run_ending_mid_refresh_saves_its_answer_first("tokio");
}

#[test]
fn blocking_a_run_ending_mid_refresh_saves_its_answer_first() {
    a_run_ending_mid_refresh_saves_its_answer_first("blocking");
}

#[test]
fn a_missing_session_or_an_unreadable_file_stops_before_any_request() {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let limit = ["--requests", "1"];

    // No file and no refresh token.
    let (code, _, err) = cli(args(&server, "tokio", &limit, &path), &env(&server, None));
    assert_eq!(code, EXIT_USAGE, "{err}");
    assert!(
        err.contains("holds no session") && err.contains(ENV_REFRESH_TOKEN),
        "{err}"
    );

    // A file that is not a session: an error, and the file stays as it is.
    let garbage = b"{\"not\": \"a session\"}\n";
    std::fs::write(&path, garbage).expect("writes");
    let grant = server.sign_in(None);
    for runtime in ["tokio", "blocking"] {
        let (code, _, err) = cli(
            args(&server, runtime, &limit, &path),
            &env(&server, Some(&grant.refresh_token)),
        );
        assert_eq!(code, EXIT_USAGE, "{err}");
        assert!(err.contains("move it away"), "{err}");
        assert_eq!(std::fs::read(&path).expect("file"), garbage, "untouched");
    }
    assert_eq!(server.take_stats().token_requests, 0);

    // Without the flag, the refresh token stays required; with the embedded server,
    // whose sessions end with the process, the flag is refused.
    let (code, _, err) = cli(
        vec![
            "--token-url".into(),
            server.token_url(),
            "--client-id".into(),
            "c".into(),
            "--resource".into(),
            server.resource_url(),
            "--runtime".into(),
            "tokio".into(),
            "--concurrency".into(),
            "1".into(),
            "--requests".into(),
            "1".into(),
        ],
        &env(&server, None),
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(err.contains("--token-file"), "{err}");
    let (code, _, err) = cli(
        [
            "--embedded-server",
            "--runtime",
            "tokio",
            "--concurrency",
            "1",
            "--requests",
            "1",
            "--token-file",
            "x.json",
        ]
        .map(String::from)
        .to_vec(),
        &HashMap::new(),
    );
    assert_eq!(code, EXIT_USAGE);
    assert!(err.contains("--token-file is not accepted"), "{err}");
}

/// Set, to the arguments (one a line), in the child process of the crash test.
const CHILD_ENV: &str = "OAUTH2_CLIENT_TOKEN_FILE_CHILD_ARGS";

/// The child process of `killed_clients_leave_a_whole_file_with_an_issued_token`: the
/// tool, with the arguments in [`CHILD_ENV`] and the real environment.
#[test]
#[ignore = "the child process of killed_clients_leave_a_whole_file_with_an_issued_token"]
fn token_file_child() {
    client::run_as_child(CHILD_ENV);
}

/// Kills the child when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a session the way a user would: deletes the old session (the file's would
/// win over the environment), then one short run with the refresh token in the
/// environment, which saves the rotated session in the file.
fn sign_in_into(server: &AuthServer, path: &Path) {
    FileStore::new(path)
        .forget()
        .expect("the old session is deleted");
    let grant = server.sign_in(None);
    let (code, out, err) = cli(
        args(server, "blocking", &["--requests", "1"], path),
        &env(server, Some(&grant.refresh_token)),
    );
    assert_report(code, &out, &err);
    assert_eq!(server.refresh_tokens_since(&stored_refresh(path)), Some(0));
}

/// Runs of the tool on one token file, each killed with `SIGKILL`: half of them right
/// when the server issues a token (inside a refresh exchange), half after a varied
/// delay. After each kill the file parses and holds a refresh token the server issued:
/// the newest, or, when the kill fell between the server's answer and the save, the
/// one before it. In that case the client cannot know the outcome of its last
/// exchange: the server has spent the stored refresh token, and presenting it again
/// would be a reuse (revoking the grant), so the test signs in again, as a user would.
#[cfg(unix)]
#[test]
fn killed_clients_leave_a_whole_file_with_an_issued_token() {
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    use silent_refresh_testkit::server::ServerEvent;

    let server = server();
    let (issued, issues) = mpsc::channel();
    let issued = std::sync::Mutex::new(issued);
    server.observe(move |event| {
        if matches!(event, ServerEvent::Issued { .. }) {
            let _ = issued.lock().expect("sender").send(());
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    sign_in_into(&server, &path);
    let exe = std::env::current_exe().expect("the test binary");
    let budget = Instant::now() + Duration::from_secs(16);
    let (mut runs, mut newest, mut previous) = (0u32, 0u32, 0u32);
    while runs < 10 && Instant::now() < budget {
        let runtime = if runs % 2 == 0 { "tokio" } else { "blocking" };
        let child_args = args(&server, runtime, &["--duration", "30"], &path).join("\n");
        let mut command = Command::new(&exe);
        command
            .args([
                "token_file_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, child_args)
            .env_remove(ENV_REFRESH_TOKEN)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in env(&server, None) {
            command.env(name, value);
        }
        while issues.try_recv().is_ok() {}
        let mut child = Killed(command.spawn().expect("spawns the child"));
        if runs % 4 < 2 {
            // Right when the server answers the first or second refresh.
            for _ in 0..=runs % 4 {
                issues
                    .recv_timeout(Duration::from_secs(10))
                    .expect("the child refreshes");
            }
        } else {
            // The kill's moment is the input here, not a wait for an effect.
            std::thread::sleep(Duration::from_millis(100 + u64::from(runs) * 97 % 900));
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("the child ends");

        let refresh = stored_refresh(&path);
        match server.refresh_tokens_since(&refresh) {
            Some(0) => newest += 1,
            Some(1) => {
                previous += 1;
                sign_in_into(&server, &path);
            }
            other => panic!("run {runs}: the file holds a refresh token {other:?} behind"),
        }
        runs += 1;
    }
    eprintln!("{runs} runs: {newest} newest, {previous} previous");
    assert!(runs >= 6, "only {runs} runs within the time budget");
    assert!(
        newest >= 1,
        "no run continued the session ({previous} inside an exchange)"
    );
    let stats = server.take_stats();
    assert_eq!(stats.reuse_detected, 0, "{stats:?}");
}
