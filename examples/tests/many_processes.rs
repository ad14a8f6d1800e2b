//! Four `oauth2_client` processes started together from one refresh token, against
//! the embedded server (rotating refresh tokens, reuse revoking the grant), sharing
//! the session through one `--token-file`, and again through one `--redis-url`: no
//! reuse, no failed request, and about one refresh per expiry between them, not four.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use silent_refresh_redis::testing::RedisServer;
use silent_refresh_testkit::server::{AuthServer, DpopConfig, ServerConfig, Stats};
use silent_refresh_tool::client::{self, ENV_CLIENT_SECRET, ENV_REFRESH_TOKEN};

const CHILD_ENV: &str = "OAUTH2_CLIENT_MANY_PROCESSES_CHILD_ARGS";
const PROCESSES: usize = 4;
const LIFETIME: Duration = Duration::from_secs(1);
const RUN_SECONDS: u64 = 5;

/// One process of the tests below: the tool, with the arguments in [`CHILD_ENV`].
#[test]
#[ignore = "the child process of the many-processes tests"]
fn many_processes_child() {
    client::run_as_child(CHILD_ENV);
}

/// Starts the four processes at once with `shared` naming the session's place, waits
/// for them, and checks their reports and the server's counts.
fn four_processes_share_one_session(shared: &[String], saved_in: &str) {
    four_processes_share(ServerConfig::default(), shared, |_| Vec::new(), saved_in);
}

/// [`four_processes_share_one_session`] with the server's mode and each process's own
/// arguments (`own(n)` for process `n`); returns the server's counts.
fn four_processes_share(
    server: ServerConfig,
    shared: &[String],
    own: impl Fn(usize) -> Vec<String>,
    saved_in: &str,
) -> Stats {
    // One group of four processes at a time: two groups at once on a 2-core machine
    // starve each other's exchanges far past what the 1 s tokens allow.
    static ONE_GROUP_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_GROUP_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let server = AuthServer::start(ServerConfig {
        token_lifetime: LIFETIME,
        token_latency: Duration::from_millis(20),
        ..server
    })
    .expect("the embedded server starts");
    let grant = server.sign_in(None);
    let exe = std::env::current_exe().expect("the test binary");
    let children: Vec<_> = (0..PROCESSES)
        .map(|n| {
            let runtime = if n % 2 == 0 { "tokio" } else { "blocking" };
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
                "--duration",
                &RUN_SECONDS.to_string(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            args.extend(shared.iter().cloned());
            args.extend(own(n));
            let mut command = Command::new(&exe);
            command
                .args([
                    "many_processes_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, args.join("\n"))
                .env(ENV_REFRESH_TOKEN, &grant.refresh_token)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(secret) = &server.config().client_secret {
                command.env(ENV_CLIENT_SECRET, secret);
            }
            command.spawn().expect("a client process starts")
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|child| child.wait_with_output().expect("the client process ends"))
        .collect();
    let stats = server.take_stats();
    for output in &outputs {
        let out = String::from_utf8_lossy(&output.stdout);
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "stdout: {out}\nstderr: {err}");
        // The test harness prints its own words before the tool's line.
        let line = out
            .lines()
            .rev()
            .find_map(|line| line.find("{\"runtime\"").map(|at| &line[at..]))
            .unwrap_or_else(|| panic!("no JSON line: {out}\n{err}"));
        let report: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(report["failed"], 0, "{line}\n{err}");
        assert!(err.contains(saved_in), "where the session is kept: {err}");
        assert!(report["ok"].as_u64() > Some(0), "{line}");
    }
    assert_eq!(
        stats.reuse_detected, 0,
        "a refresh token was spent twice: {stats:?}"
    );
    assert_eq!(stats.invalid_grant, 0, "{stats:?}");
    // A token is refreshed when half its life is left (the default refresh fraction
    // caps the window of a 1 s token at half of it): one process alone makes about
    // two refreshes per lifetime, and four uncoordinated ones four times as many.
    let periods = RUN_SECONDS * 2000 / u64::try_from(LIFETIME.as_millis()).expect("fits");
    eprintln!(
        "{PROCESSES} processes: {} refreshes in {periods} refresh periods, {} reuses",
        stats.issued, stats.reuse_detected
    );
    assert!(stats.issued >= 1, "{stats:?}");
    assert!(
        stats.issued <= periods + 4,
        "{} refreshes in {periods} refresh periods: the processes did not share them ({stats:?})",
        stats.issued
    );
    stats
}

#[test]
fn four_processes_share_one_token_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    four_processes_share_one_session(
        &["--token-file".to_owned(), display(&path)],
        "the newest session is saved in",
    );
}

#[test]
fn four_processes_share_one_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    four_processes_share_one_session(
        &[
            "--redis-url".to_owned(),
            redis.url(),
            "--redis-key".to_owned(),
            "test:many-processes".to_owned(),
        ],
        "saved in Redis under `test:many-processes`",
    );
}

/// DPoP (issue 20): four processes on one `--token-file` against the server's DPoP mode
/// (refresh tokens bound to the key, nonces at both ends, rotated every 2 s). Two
/// name one key file that does not exist yet (`--dpop-key`: one of them makes it, the
/// other reads it); two make keys of their own (`--dpop`), which the stored session's
/// key replaces. Every request proven, no proof refused, nothing spent twice.
#[test]
fn four_processes_with_dpop_share_one_token_file_and_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let key = display(&dir.path().join("dpop.pem"));
    let stats = four_processes_share(
        ServerConfig {
            dpop: Some(DpopConfig {
                nonce_period: Some(Duration::from_secs(2)),
                ..DpopConfig::default()
            }),
            ..ServerConfig::default()
        },
        &["--token-file".to_owned(), display(&path)],
        |n| {
            if n < 2 {
                vec!["--dpop-key".to_owned(), key.clone()]
            } else {
                vec!["--dpop".to_owned()]
            }
        },
        "the newest session is saved in",
    );
    let dpop = &stats.dpop;
    assert_eq!(dpop.refused(), 0, "no proof refused: {stats:?}");
    assert_eq!(
        dpop.bearer_refused, 0,
        "no bound token sent as Bearer: {stats:?}"
    );
    assert!(dpop.bound_issued >= 1, "{stats:?}");
    assert!(dpop.resource_proofs > 0, "{stats:?}");
    let stored = std::fs::read_to_string(&path).expect("the session file");
    assert!(
        stored.contains("silent-refresh/token/2"),
        "the key is stored with the session"
    );
}

fn display(path: &Path) -> String {
    path.display().to_string()
}
