//! `oauth2_client login`, then the load run with only `--issuer` and the token file,
//! then `logout`, end to end against the embedded server, in both runtimes (the tool
//! runs in this process; a thread reads what it tells the user and approves or denies
//! the device code). Also `login --browser` with a browser command that follows the
//! redirects (the `follow_redirects` bin), and the usage errors.
//!
//! The only waits are the device flow's interval (1 s) and the load run's own
//! duration, long enough for its short-lived tokens to need a refresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

use silent_refresh::{FailureKind, Secret};
use silent_refresh_oauth2::RefreshGrant;
use silent_refresh_testkit::server::{AuthServer, DpopConfig, ServerConfig};
use silent_refresh_tokio::{FileStore, TokenStore};
use silent_refresh_tool::client::{self, EXIT_USAGE};
use silent_refresh_tool::login::EXIT_NOT_DONE;

/// What the tool writes, a line at a time, to a channel (and kept whole).
struct Lines {
    sender: Sender<String>,
    pending: Vec<u8>,
    all: String,
}

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        while let Some(at) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line).into_owned();
            self.all.push_str(&line);
            let _ = self.sender.send(line);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs the tool in this process with `args` and no environment; `user` reads what
/// it tells the user (on another thread) meanwhile. Exit status, stdout, stderr.
fn cli(
    args: &[&str],
    user: impl FnOnce(Receiver<String>) + Send + 'static,
) -> (i32, String, String) {
    let (sender, lines) = mpsc::channel();
    let user = std::thread::spawn(move || user(lines));
    let mut out = Vec::new();
    let mut err = Lines {
        sender,
        pending: Vec::new(),
        all: String::new(),
    };
    let env: HashMap<String, String> = HashMap::new();
    let code = client::cli_main(
        args.iter().map(|a| (*a).to_owned()),
        |name| env.get(name).cloned(),
        &mut out,
        &mut err,
    );
    drop(err.sender);
    user.join().expect("the user");
    (code, String::from_utf8(out).expect("UTF-8"), err.all)
}

/// A user who reads the device code the tool shows and `decides` on it.
fn user_who(decide: impl FnOnce(&str) + Send + 'static) -> impl FnOnce(Receiver<String>) + Send {
    move |lines| {
        for line in lines {
            if let Some((_, rest)) = line.split_once("enter the code ") {
                decide(rest.trim());
                return;
            }
        }
    }
}

/// A user with nothing to do.
fn nobody(lines: Receiver<String>) {
    for _ in lines {}
}

/// Short-lived tokens, so that a load run of a second and a half refreshes.
fn server() -> Arc<AuthServer> {
    server_with(None)
}

/// [`server`], in DPoP mode when `dpop` is given.
fn server_with(dpop: Option<DpopConfig>) -> Arc<AuthServer> {
    Arc::new(
        AuthServer::start(ServerConfig {
            token_lifetime: Duration::from_secs(1),
            token_latency: Duration::ZERO,
            dpop,
            ..ServerConfig::default()
        })
        .expect("the embedded server starts"),
    )
}

fn stored_refresh(path: &Path) -> String {
    FileStore::new(path)
        .load()
        .expect("the file parses")
        .and_then(|token| token.refresh_token)
        .map(|secret| secret.expose().to_owned())
        .expect("a stored session")
}

/// The server's answer to a refresh with `refresh_token`, as the public client.
fn refresh_kind(server: &AuthServer, refresh_token: &str) -> Option<FailureKind> {
    let client = RefreshGrant::new(server.token_url(), server.signin_config().public_client_id);
    let request = client
        .request(Some(&Secret::new(refresh_token)))
        .expect("a request");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let (parts, mut body) = agent.run(request).expect("an answer").into_parts();
    let body = body.read_to_vec().expect("a body");
    client
        .parse_response(&ureq::http::Response::from_parts(parts, body))
        .err()
        .map(|failure| failure.kind)
}

/// A number field of the load run's JSON line.
fn field(line: &str, name: &str) -> u64 {
    let value: serde_json::Value = serde_json::from_str(line.trim()).expect("one JSON line");
    value[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} in {line}"))
}

/// `login`, a silent run with only the issuer and the file, then `logout`; with
/// `dpop`, against the server's DPoP mode and with `login --dpop`: the run, told
/// nothing of DPoP, proves with the key the login stored with the session.
fn login_run_logout(runtime: &str, dpop: bool) {
    let server = server_with(dpop.then(DpopConfig::default));
    let dpop_arg: &[&str] = if dpop { &["--dpop"] } else { &[] };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let file = path.display().to_string();
    let issuer = server.issuer();
    let client_id = server.signin_config().public_client_id;
    let approver = server.clone();

    let (code, out, err) = cli(
        &[
            &[
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                &client_id,
                "--device",
                "--scope",
                "read offline_access",
                "--runtime",
                runtime,
                "--token-file",
                &file,
            ],
            dpop_arg,
        ]
        .concat(),
        user_who(move |code| assert!(approver.approve_device(code), "{code} pending")),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "to sign in, open {issuer}/device and enter the code "
        )),
        "{err}"
    );
    assert!(err.contains("signed in; the session is saved in"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path)
            .expect("the file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    let first = stored_refresh(&path);
    let grant = server
        .grant_of(&first)
        .expect("a session the server started");

    // Only the issuer and the file: no refresh token given, the session refreshes.
    let (code, out, err) = cli(
        &[
            "--issuer",
            &issuer,
            "--client-id",
            &client_id,
            "--auth",
            "none",
            "--resource",
            &server.resource_url(),
            "--runtime",
            runtime,
            "--concurrency",
            "2",
            "--duration",
            "1.5",
            "--token-file",
            &file,
        ],
        nobody,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(field(&out, "failed"), 0, "{out}");
    assert!(field(&out, "ok") > 0, "{out}");
    assert!(field(&out, "refreshes") >= 1, "{out}");
    let rotated = stored_refresh(&path);
    assert_ne!(rotated, first, "the newest refresh token is saved");
    assert_eq!(server.grant_of(&rotated), Some(grant));
    let stats = server.take_stats();
    assert_eq!(stats.reuse_detected, 0);
    if dpop {
        // Bound from the sign-in on: every token issued to the key, every request
        // proven, none refused.
        assert_eq!(stats.dpop.refused(), 0, "{stats:?}");
        assert_eq!(stats.dpop.bearer_refused, 0, "{stats:?}");
        assert!(stats.dpop.bound_issued >= 2, "{stats:?}");
        assert!(stats.dpop.resource_proofs >= field(&out, "ok"), "{stats:?}");
    }

    let (code, _, err) = cli(
        &[
            "logout",
            "--issuer",
            &issuer,
            "--client-id",
            &client_id,
            "--runtime",
            runtime,
            "--token-file",
            &file,
        ],
        nobody,
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("the session is revoked at the issuer and forgotten"),
        "{err}"
    );
    assert!(
        FileStore::new(&path).load().expect("parses").is_none(),
        "no session left in the file"
    );
    assert!(server.is_revoked(grant));
    if !dpop {
        // (In DPoP mode a request without a proof is refused before the grant is
        // looked at: the revocation shows in `is_revoked` alone.)
        assert_eq!(refresh_kind(&server, &rotated), Some(FailureKind::Terminal));
    }
}

#[test]
fn login_then_a_silent_run_then_logout_on_tokio() {
    login_run_logout("tokio", false);
}

#[test]
fn login_with_dpop_then_a_silent_run_then_logout_on_tokio() {
    login_run_logout("tokio", true);
}

#[test]
fn login_with_dpop_then_a_silent_run_then_logout_blocking() {
    login_run_logout("blocking", true);
}

#[test]
fn login_then_a_silent_run_then_logout_blocking() {
    login_run_logout("blocking", false);
}

fn denied(runtime: &str) {
    let server = server();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("session.json").display().to_string();
    let denier = server.clone();
    let (code, _, err) = cli(
        &[
            "login",
            "--issuer",
            &server.issuer(),
            "--client-id",
            "cli-public",
            "--device",
            "--runtime",
            runtime,
            "--token-file",
            &file,
        ],
        user_who(move |code| assert!(denier.deny_device(code))),
    );
    assert_eq!(code, EXIT_NOT_DONE, "{err}");
    assert!(
        err.contains("not signed in: the user denied the sign-in"),
        "{err}"
    );
    assert!(!Path::new(&file).exists(), "nothing saved");
}

#[test]
fn a_denied_device_code_exits_non_zero_saying_so() {
    denied("tokio");
    denied("blocking");
}

#[test]
fn login_with_a_browser_command_that_follows_the_redirects() {
    let browser = format!("'{}' --quiet", env!("CARGO_BIN_EXE_follow_redirects"));
    for runtime in ["tokio", "blocking"] {
        let server = server();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("session.json");
        let (code, _, err) = cli(
            &[
                "login",
                "--issuer",
                &server.issuer(),
                "--client-id",
                "cli-public",
                "--browser",
                "--browser-command",
                &browser,
                "--scope",
                "read offline_access",
                "--runtime",
                runtime,
                "--token-file",
                &path.display().to_string(),
            ],
            nobody,
        );
        assert_eq!(code, 0, "{runtime}: {err}");
        let opening = format!("opening the browser at {}?", server.authorization_url());
        assert!(err.contains(&opening), "{err}");
        assert!(server.grant_of(&stored_refresh(&path)).is_some());
        let stats = server.take_stats().signin;
        assert_eq!((stats.code_sessions, stats.consent_prompts), (1, 1));
    }
}

#[test]
fn usage_errors_exit_2_and_say_what_to_fix() {
    let server = server();
    let issuer = server.issuer();
    for (args, says) in [
        (
            vec![
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                "c",
                "--token-file",
                "f",
            ],
            "--device or --browser",
        ),
        (
            vec!["logout", "--issuer", &issuer, "--client-id", "c"],
            "--token-file PATH or --redis-url URL is required",
        ),
        (
            vec![
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                "c",
                "--device",
                "--browser-command",
                "x",
                "--token-file",
                "f",
            ],
            "go with login --browser",
        ),
        (
            vec![
                "login",
                "--issuer",
                &issuer,
                "--client-id",
                "c",
                "--browser",
                "--browser-command",
                "'open",
                "--token-file",
                "f",
            ],
            "not closed",
        ),
        (
            vec![
                "--issuer",
                &issuer,
                "--token-url",
                "http://127.0.0.1:1/t",
                "--client-id",
                "c",
            ],
            "not both",
        ),
        (
            vec![
                "login",
                "--issuer",
                "http://127.0.0.1:1",
                "--client-id",
                "c",
                "--device",
                "--token-file",
                "f",
            ],
            "cannot use the issuer http://127.0.0.1:1",
        ),
        (
            vec![
                "--issuer",
                "http://127.0.0.1:1",
                "--client-id",
                "c",
                "--runtime",
                "blocking",
            ],
            "cannot use the issuer http://127.0.0.1:1",
        ),
    ] {
        let (code, _, err) = cli(&args, nobody);
        assert_eq!(code, EXIT_USAGE, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let (code, out, _) = cli(&["login", "--help"], nobody);
    assert_eq!(code, 0);
    assert!(out.contains("logout --issuer URL --client-id ID"), "{out}");
}
