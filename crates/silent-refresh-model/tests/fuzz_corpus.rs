//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same checks
//! the fuzz targets run (`silent_refresh_model::fuzz`), on stable, so that
//! `cargo test --workspace` keeps every old finding fixed without nightly or
//! cargo-fuzz. Findings also get a named test below, with the input inline.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use silent_refresh_model::fuzz;

/// A target's check, with its error as text.
type Check = fn(&[u8]) -> Result<(), String>;

fn state_machine(bytes: &[u8]) -> Result<(), String> {
    fuzz::state_machine(std::time::Instant::now(), bytes).map_err(|violation| violation.to_string())
}

fn processes(bytes: &[u8]) -> Result<(), String> {
    silent_refresh_model::processes::fuzz_processes(bytes)
        .map(|_| ())
        .map_err(|violation| violation.to_string())
}

/// Every target, with the check its fuzz target runs.
const TARGETS: [(&str, Check); 6] = [
    ("state_machine", state_machine),
    ("oauth2_response", fuzz::oauth2_response),
    ("oauth2_request", fuzz::oauth2_request),
    ("origin_policy", fuzz::origin_policy),
    ("processes", processes),
    ("session", fuzz::session),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs `check` on `bytes`; a panic counts as a failure, like a crash in the fuzzer.
fn verdict(check: Check, bytes: &[u8]) -> Result<(), String> {
    match catch_unwind(AssertUnwindSafe(|| check(bytes))) {
        Ok(result) => result,
        Err(panic) => Err(format!(
            "panicked: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)")
        )),
    }
}

#[test]
fn every_corpus_file_passes_its_target() {
    let root = fuzz_dir();
    if !root.join("Cargo.toml").exists() {
        // A packaged crate has no fuzz/ beside it: nothing to replay.
        eprintln!("no fuzz crate at {}: skipped", root.display());
        return;
    }
    let mut failures = Vec::new();
    for (target, check) in TARGETS {
        let dir = root.join("corpus").join(target);
        let mut files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the corpus of {target} at {}: {e}", dir.display()))
            .map(|entry| entry.expect("a corpus entry").path())
            .filter(|path| path.is_file())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{target} has no committed corpus");
        for file in files {
            let bytes = fs::read(&file).expect("a readable corpus file");
            if let Err(error) = verdict(check, &bytes) {
                failures.push(format!("{target}/{}: {error}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn short_and_odd_inputs_pass_every_target() {
    let inputs: [&[u8]; 6] = [
        b"",
        b"\0",
        b"\xff",
        &[0xff; 64],
        &[0; 64],
        b"{\"error\":\"x\"}",
    ];
    for (target, check) in TARGETS {
        for bytes in inputs {
            if let Err(error) = verdict(check, bytes) {
                panic!("{target} on {bytes:?}: {error}");
            }
        }
    }
}

/// Found while writing the `oauth2_response` target: `parse_response` is not given the
/// refresh credential it answers, so it redacts an echoed credential only when it looks
/// like one (at least 40 token characters). A shorter credential, such as the UUID
/// refresh tokens of the legacy Spring Security OAuth server, whose message is exactly
/// this one, was quoted. `parse_response_for` is given the credential and redacts it.
#[test]
fn a_short_refresh_credential_echoed_by_the_server_is_not_quoted() {
    let credential = "6b1d7c4e-2f3a-4b5c-9d8e-7f6a5b4c3d2e";
    let grant = silent_refresh_oauth2::RefreshGrant::new("https://auth.example.com/token", "app");
    let response = http::Response::builder()
        .status(400)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"error":"invalid_grant","error_description":"Invalid refresh token: {credential}"}}"#
        ))
        .expect("a valid response");
    let sent = silent_refresh::Secret::new(credential);
    let failure = grant
        .parse_response_for(&response, Some(&sent))
        .expect_err("a refusal");
    assert!(
        failure.message.contains("invalid_grant"),
        "{}",
        failure.message
    );
    assert!(
        !failure.message.contains(credential),
        "the failure quotes the refresh credential: {}",
        failure.message
    );
}
