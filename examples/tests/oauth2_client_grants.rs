//! `oauth2_client --grant … --auth …` against the embedded server, in both runtimes,
//! and the command line's refusals (keys that do not parse, missing files, secrets
//! on the command line). The JSON line keeps its shape.

use silent_refresh_testkit::keys;
use silent_refresh_tool::client::{self, EXIT_USAGE};

/// Runs the tool with `args` and no environment: its exit status, stdout and stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = client::cli_main(
        args.iter().map(|a| (*a).to_owned()),
        |_| None,
        &mut out,
        &mut err,
    );
    (
        status,
        String::from_utf8(out).expect("utf-8"),
        String::from_utf8(err).expect("utf-8"),
    )
}

/// Checks one embedded run: exit 0, the usual JSON keys, no failure, tokens issued.
fn embedded(grant: &str, auth: &str, runtime: &str, extra: &[&str]) {
    let mut args = vec![
        "--embedded-server",
        "--token-lifetime",
        "1s",
        "--token-delay",
        "10ms",
        "--runtime",
        runtime,
        "--concurrency",
        "16",
        "--duration",
        "2.5",
        "--grant",
        grant,
        "--auth",
        auth,
    ];
    args.extend_from_slice(extra);
    let (status, out, err) = cli(&args);
    assert_eq!(status, 0, "{grant} {auth} {runtime}: {out} {err}");
    let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    for key in [
        "runtime",
        "requests",
        "ok",
        "failed",
        "retried_401",
        "refreshes",
        "elapsed_ms",
        "server",
    ] {
        assert!(line.get(key).is_some(), "{key} in {out}");
    }
    assert_eq!(line["failed"], 0, "{out}");
    assert_eq!(line["runtime"], runtime, "{out}");
    // Several one-second tokens, one exchange on the wire at a time.
    assert!(line["refreshes"].as_u64() >= Some(2), "{out}");
    assert_eq!(line["server"]["max_refreshes_in_flight"], 1, "{out}");
    assert_eq!(line["server"]["invalid_grant"], 0, "{out}");
    assert!(
        !out.contains("BEGIN") && !err.contains("BEGIN"),
        "no key printed"
    );
}

#[test]
fn client_credentials_with_each_method_in_both_runtimes() {
    for runtime in ["tokio", "blocking"] {
        for auth in ["basic", "post", "private_key_jwt"] {
            embedded("client_credentials", auth, runtime, &[]);
        }
    }
}

#[test]
fn jwt_bearer_and_token_exchange_in_both_runtimes() {
    for runtime in ["tokio", "blocking"] {
        embedded("jwt_bearer", "basic", runtime, &[]);
        embedded("jwt_bearer", "private_key_jwt", runtime, &[]);
        embedded("token_exchange", "private_key_jwt", runtime, &[]);
    }
}

#[test]
fn refresh_token_with_a_key_from_a_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("client.pem");
    let pair = keys::generate_rs256().expect("key");
    std::fs::write(&path, &pair.private_pem).expect("write");
    let path = path.to_str().expect("utf-8 path");
    embedded(
        "refresh_token",
        "private_key_jwt",
        "tokio",
        &["--private-key", path],
    );
    // And the token-exchange subject file at a path of the caller's choosing.
    let subject = dir.path().join("token");
    embedded(
        "token_exchange",
        "basic",
        "blocking",
        &["--subject-token-file", subject.to_str().expect("utf-8")],
    );
}

#[test]
fn the_command_line_refuses_what_cannot_work_before_sending_anything() {
    let dir = tempfile::tempdir().expect("dir");
    let bad_key = dir.path().join("bad.pem");
    std::fs::write(
        &bad_key,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .expect("write");
    let bad_key = bad_key.to_str().expect("utf-8");
    let base = [
        "--token-url",
        "https://auth.example.com/token",
        "--client-id",
        "svc",
        "--resource",
        "https://api.example.com/me",
        "--runtime",
        "tokio",
        "--concurrency",
        "1",
        "--requests",
        "1",
    ];
    let refused = |extra: &[&str], says: &str| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        let (status, out, err) = cli(&args);
        assert_eq!(status, EXIT_USAGE, "{extra:?}: {out} {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(says), "{extra:?}: {err}");
    };
    refused(
        &["--auth", "private_key_jwt", "--private-key", bad_key],
        "PKCS#8",
    );
    refused(&["--auth", "private_key_jwt"], "--private-key");
    refused(&["--grant", "jwt_bearer"], "--private-key");
    refused(&["--grant", "token_exchange"], "--subject-token-file");
    refused(&["--grant", "password"], "--grant must be");
    refused(&["--auth", "mtls"], "--auth must be");
    refused(
        &[
            "--grant",
            "client_credentials",
            "--token-file",
            "session.json",
        ],
        "--token-file",
    );
    refused(
        &[
            "--auth",
            "private_key_jwt",
            "--private-key",
            "/nonexistent/key.pem",
        ],
        "cannot read the private key",
    );
    // Secrets never on the command line.
    refused(&["--client-secret", "s3cret"], "OAUTH_CLIENT_SECRET");
}
