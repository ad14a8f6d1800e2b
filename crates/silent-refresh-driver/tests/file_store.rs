//! The file store: round trips, permissions, corrupt files, compare-and-swap between
//! stores and threads, the lock's bounded wait, secrets kept out of every message, and
//! a child process killed mid-save.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use silent_refresh::{Expiry, Secret, Token};
use silent_refresh_driver::Error;
use silent_refresh_driver::store::{FileLock, FileStore, Saved, TokenStore};

/// A wall-clock time on a whole millisecond (the file keeps milliseconds).
fn at(millis: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(millis)
}

/// Token number `n` of a rotating session: access `SECRET-AT-n`, refresh `SECRET-RT-n`,
/// issued an hour before it expires.
fn numbered(n: u64) -> Token {
    let mut token = Token::bearer(
        format!("SECRET-AT-{n}"),
        Expiry::At(at(1_767_225_600_000 + n)),
    )
    .with_refresh_token(format!("SECRET-RT-{n}"));
    token.scope = Some("read write".to_owned());
    token.issued_at = Some(at(1_767_222_000_000 + n));
    token
}

fn rt(n: u64) -> Secret {
    Secret::new(format!("SECRET-RT-{n}"))
}

/// The `n` of a token made by [`numbered`], checking that its fields agree.
fn number_of(token: &Token) -> u64 {
    let n: u64 = token
        .access_token
        .expose()
        .strip_prefix("SECRET-AT-")
        .and_then(|n| n.parse().ok())
        .expect("a numbered token");
    assert_eq!(*token, numbered(n), "every field of token {n} as saved");
    n
}

/// Asserts that a save stored its token.
trait AssertStored {
    fn assert_stored(self);
}

impl AssertStored for Saved {
    fn assert_stored(self) {
        assert!(
            matches!(self, Saved::Stored),
            "expected Stored, got {self:?}"
        );
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains("SECRET"), "a secret leaked: {text}");
}

fn assert_unreadable(result: Result<impl std::fmt::Debug, Error>) -> Error {
    match result {
        Err(error @ Error::StoreUnreadable { .. }) => error,
        other => panic!("expected StoreUnreadable, got {other:?}"),
    }
}

#[test]
fn round_trip_keeps_every_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(dir.path().join("session.json"));

    let mut full = numbered(7);
    full.token_type = "DPoP".to_owned();
    full.scope = Some("openid profile offline_access".to_owned());
    assert!(matches!(
        store.save(&full, None).expect("saves"),
        Saved::Stored
    ));
    assert_eq!(store.load().expect("loads"), Some(full));

    let mut bare = Token::bearer("SECRET-AT-bare", Expiry::Never);
    bare.token_type = String::new();
    assert!(matches!(
        store.save(&bare, None).expect("saves"),
        Saved::Stored
    ));
    assert_eq!(store.load().expect("loads"), Some(bare));

    // The issue time: kept, unknown kept unknown, before the epoch, rounded down.
    let mut issued = numbered(8);
    issued.issued_at = Some(at(1_767_222_000_000) + Duration::from_micros(999));
    store.save(&issued, None).expect("saves").assert_stored();
    let loaded = store.load().expect("loads").expect("stored");
    assert_eq!(loaded.issued_at, Some(at(1_767_222_000_000)));
    issued.issued_at = Some(UNIX_EPOCH - Duration::from_millis(1_500));
    store.save(&issued, None).expect("saves").assert_stored();
    assert_eq!(store.load().expect("loads"), Some(issued.clone()));
    issued.issued_at = None;
    store.save(&issued, None).expect("saves").assert_stored();
    assert_eq!(store.load().expect("loads"), Some(issued));

    // Before the epoch, and sub-millisecond precision rounded down.
    let early = Token::bearer(
        "SECRET-AT-early",
        Expiry::At(UNIX_EPOCH - Duration::from_millis(1_000)),
    );
    store.save(&early, None).expect("saves").assert_stored();
    assert_eq!(store.load().expect("loads"), Some(early));
    let fine = Token::bearer(
        "SECRET-AT-fine",
        Expiry::At(at(1_000) + Duration::from_micros(999)),
    );
    store.save(&fine, None).expect("saves").assert_stored();
    let loaded = store.load().expect("loads").expect("stored");
    assert_eq!(loaded.expiry, Expiry::At(at(1_000)));
}

#[test]
fn the_file_is_the_documented_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = FileStore::new(&path);
    let before = SystemTime::now();
    store
        .save(&numbered(3), None)
        .expect("saves")
        .assert_stored();

    let text = fs::read_to_string(&path).expect("file");
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value["format"], "silent-refresh/token/1");
    assert_eq!(value["access_token"], "SECRET-AT-3");
    assert_eq!(value["token_type"], "Bearer");
    assert_eq!(value["scope"], "read write");
    assert_eq!(value["refresh_token"], "SECRET-RT-3");
    assert_eq!(value["expires_at"], 1_767_225_600_003_u64);
    assert_eq!(value["issued_at"], 1_767_222_000_003_u64);
    let saved_at = value["saved_at"]
        .as_u64()
        .expect("saved_at in milliseconds");
    let before = before.duration_since(UNIX_EPOCH).expect("after 1970");
    assert!(u128::from(saved_at) >= before.as_millis());

    // Written by hand: optional fields may be missing, unknown ones are ignored.
    fs::write(
        &path,
        r#"{"format": "silent-refresh/token/1", "access_token": "SECRET-AT-h",
            "token_type": "bearer", "expires_at": null, "later": [1, {"x": 2}]}"#,
    )
    .expect("write");
    let mut expected = Token::bearer("SECRET-AT-h", Expiry::Never);
    expected.token_type = "bearer".to_owned();
    assert_eq!(store.load().expect("loads"), Some(expected));
}

#[test]
fn nothing_stored_is_none_and_forget_of_nothing_is_fine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("missing").join("session.json");
    let store = FileStore::new(&path);
    assert_eq!(store.load().expect("loads"), None);
    assert!(
        !path.parent().expect("parent").exists(),
        "load creates nothing"
    );
    store.forget().expect("forgets nothing");

    store
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();
    store.forget().expect("forgets");
    assert_eq!(store.load().expect("loads"), None);
    assert!(!path.exists());
}

#[test]
fn a_relative_expiry_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = FileStore::new(&path);
    let token = Token::bearer("SECRET-AT-rel", Expiry::In(Duration::from_secs(60)));
    let error = store.save(&token, None).expect_err("refused");
    assert!(
        matches!(error, Error::StoreRelativeExpiry { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("Expiry::At"), "{error}");
    assert_no_secret(&format!("{error} {error:?}"));
    assert!(!path.exists());
}

#[cfg(unix)]
#[test]
fn files_are_0600_and_created_folders_0700() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a").join("b").join("session.json");
    let store = FileStore::new(&path);
    store
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();

    let mode = |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("a/b/session.json.lock")), 0o600);
    assert_eq!(mode(&dir.path().join("a")), 0o700);
    assert_eq!(mode(&dir.path().join("a/b")), 0o700);

    // A save replaces a file others could read with a 0600 one.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    store
        .save(&numbered(2), None)
        .expect("saves")
        .assert_stored();
    assert_eq!(mode(&path), 0o600);
}

/// Captures what `tracing` prints while `f` runs.
fn captured_logs<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("UTF-8");
    (result, text)
}

#[cfg(unix)]
#[test]
fn a_file_others_can_read_is_warned_about_once() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    FileStore::new(&path)
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();

    let store = FileStore::new(&path);
    let (loaded, quiet) = captured_logs(|| store.load());
    assert_eq!(loaded.expect("loads"), Some(numbered(1)));
    assert!(
        !quiet.contains("WARN"),
        "a 0600 file is not warned about: {quiet}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let (loaded, logs) = captured_logs(|| {
        let first = store.load();
        let second = store.load();
        (first, second)
    });
    assert_eq!(loaded.0.expect("loads"), Some(numbered(1)));
    assert_eq!(loaded.1.expect("loads"), Some(numbered(1)));
    assert_eq!(logs.matches("WARN").count(), 1, "once per store: {logs}");
    assert!(logs.contains("chmod 600"), "{logs}");
    assert!(logs.contains(&path.display().to_string()), "{logs}");
    assert_no_secret(&logs);

    // Group-writable is as bad as world-readable; a new store warns again.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o620)).expect("chmod");
    let (_, logs) = captured_logs(|| FileStore::new(&path).load());
    assert_eq!(logs.matches("WARN").count(), 1, "{logs}");
}

#[test]
fn a_corrupt_or_foreign_file_is_unreadable_and_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = FileStore::new(&path);
    store
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();
    let whole = fs::read(&path).expect("file");
    let truncated = whole[..whole.len() / 2].to_vec();
    let other_format = String::from_utf8(whole.clone())
        .expect("UTF-8")
        .replace("silent-refresh/token/1", "silent-refresh/token/9");
    let without_access = r#"{"format": "silent-refresh/token/1", "token_type": "Bearer",
        "expires_at": null, "refresh_token": "SECRET-RT-x"}"#;
    let wrong_type = r#"{"format": "silent-refresh/token/1", "access_token": "SECRET-AT-x",
        "token_type": "Bearer", "expires_at": "SECRET-tomorrow"}"#;
    let out_of_range = r#"{"format": "silent-refresh/token/1", "access_token": "SECRET-AT-x",
        "token_type": "Bearer", "expires_at": 18446744073709551615}"#;
    let issued_text = r#"{"format": "silent-refresh/token/1", "access_token": "SECRET-AT-x",
        "token_type": "Bearer", "expires_at": null, "issued_at": "SECRET-yesterday"}"#;
    let twice = r#"{"format": "silent-refresh/token/1", "access_token": "SECRET-AT-x",
        "access_token": "SECRET-AT-y", "token_type": "Bearer", "expires_at": null}"#;

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"SECRET-garbage \x00\xff not json".to_vec(),
            "not JSON",
        ),
        ("empty", Vec::new(), "empty"),
        ("blank", b" \n\t".to_vec(), "empty"),
        ("truncated", truncated, "truncated"),
        (
            "other JSON",
            br#"{"SECRET-other": 1}"#.to_vec(),
            "no `format` field",
        ),
        ("array", br#"["SECRET-x", 2]"#.to_vec(), "not an object"),
        ("string", br#""SECRET-x""#.to_vec(), "not an object"),
        (
            "format of another version",
            other_format.into_bytes(),
            "`format` is none of",
        ),
        (
            "format not a string",
            br#"{"format": 1}"#.to_vec(),
            "`format` is none of",
        ),
        (
            "missing field",
            without_access.as_bytes().to_vec(),
            "`access_token` is missing",
        ),
        (
            "wrong type",
            wrong_type.as_bytes().to_vec(),
            "`expires_at` is a string",
        ),
        (
            "out of range",
            out_of_range.as_bytes().to_vec(),
            "`expires_at` is a number out of range",
        ),
        ("field twice", twice.as_bytes().to_vec(), "more than once"),
        (
            "issue time of the wrong type",
            issued_text.as_bytes().to_vec(),
            "`issued_at` is a string",
        ),
    ];
    for (name, content, reason) in cases {
        fs::write(&path, &content).expect("write");
        let error = assert_unreadable(store.load());
        let message = error.to_string();
        assert!(message.contains(reason), "{name}: {message}");
        assert!(
            message.contains("move it away or delete it"),
            "{name}: {message}"
        );
        assert_no_secret(&format!("{message} {error:?}"));

        let error = assert_unreadable(store.save(&numbered(2), None));
        assert_no_secret(&format!("{error} {error:?}"));
        assert_unreadable(store.save(&numbered(2), Some(&rt(1))));
        assert_unreadable(store.forget());
        assert_eq!(
            fs::read(&path).expect("still there"),
            content,
            "{name}: untouched"
        );
    }
}

#[test]
fn a_folder_in_place_of_the_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    fs::create_dir(&path).expect("mkdir");
    let store = FileStore::new(&path);
    assert_unreadable(store.load());
    assert_unreadable(store.save(&numbered(1), None));
    assert!(path.is_dir());
}

#[test]
fn an_unwritable_place_is_an_io_error_without_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("blocker");
    fs::write(&blocker, b"a file where a folder should be").expect("write");
    let store = FileStore::new(blocker.join("session.json"));
    let error = store
        .save(&numbered(1), None)
        .expect_err("cannot create the folder");
    assert!(matches!(error, Error::StoreIo { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("blocker"), "{message}");
    assert_no_secret(&format!("{message} {error:?}"));
}

#[test]
fn compare_and_swap_on_the_refresh_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = FileStore::new(&path);

    // Nothing stored: a refreshed token is stored.
    assert!(matches!(
        store.save(&numbered(1), Some(&rt(0))).expect("saves"),
        Saved::Stored
    ));

    // Refreshed from a credential the store no longer holds: what it holds comes back.
    let before = fs::read(&path).expect("file");
    match store.save(&numbered(2), Some(&rt(0))).expect("answers") {
        Saved::Conflict(stored) => assert_eq!(*stored, numbered(1)),
        Saved::Stored => panic!("overwrote a newer session"),
    }
    assert_eq!(fs::read(&path).expect("file"), before, "left unchanged");

    // Refreshed from what it holds: replaced.
    assert!(matches!(
        store.save(&numbered(2), Some(&rt(1))).expect("saves"),
        Saved::Stored
    ));
    assert_eq!(store.load().expect("loads"), Some(numbered(2)));

    // The same save again (a retry after an unclear failure): it already holds it.
    assert!(matches!(
        store.save(&numbered(2), Some(&rt(1))).expect("saves"),
        Saved::Stored
    ));
    // A token without a new refresh credential, same access token: the same token.
    let mut same_access = numbered(2);
    same_access.refresh_token = None;
    assert!(matches!(
        store.save(&same_access, Some(&rt(9))).expect("saves"),
        Saved::Stored
    ));
    store
        .save(&numbered(2), None)
        .expect("saves")
        .assert_stored();

    // A stored token without a refresh credential does not hold any.
    let mut plain = numbered(3);
    plain.refresh_token = None;
    store.save(&plain, None).expect("saves").assert_stored();
    assert!(matches!(
        store.save(&numbered(4), Some(&rt(3))).expect("answers"),
        Saved::Conflict(_)
    ));

    // A sign-in stores whatever the store holds.
    assert!(matches!(
        store.save(&numbered(9), None).expect("saves"),
        Saved::Stored
    ));
    assert_eq!(store.load().expect("loads"), Some(numbered(9)));
}

#[test]
fn two_stores_racing_from_the_same_credential_one_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    for round in 0..20 {
        FileStore::new(&path)
            .save(&numbered(0), None)
            .expect("saves")
            .assert_stored();
        let barrier = Arc::new(Barrier::new(2));
        let racers: Vec<_> = [1_u64, 2]
            .into_iter()
            .map(|n| {
                let store = FileStore::new(&path);
                let barrier = Arc::clone(&barrier);
                thread::spawn(move || {
                    barrier.wait();
                    (n, store.save(&numbered(n), Some(&rt(0))).expect("answers"))
                })
            })
            .collect();
        let outcomes: Vec<_> = racers
            .into_iter()
            .map(|racer| racer.join().expect("no panic"))
            .collect();
        let winners: Vec<u64> = outcomes
            .iter()
            .filter(|(_, saved)| matches!(saved, Saved::Stored))
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one wins");
        let winner = winners[0];
        for (_, saved) in &outcomes {
            if let Saved::Conflict(stored) = saved {
                assert_eq!(
                    **stored,
                    numbered(winner),
                    "the loser sees the winner's token"
                );
            }
        }
        let stored = FileStore::new(&path)
            .load()
            .expect("loads")
            .expect("stored");
        assert_eq!(number_of(&stored), winner);
    }
}

#[test]
fn a_held_lock_bounds_the_wait_and_its_guard_saves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let holder = FileStore::new(&path);
    holder
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();

    let guard = holder.lock(Duration::from_secs(1)).expect("locks");
    let other = FileStore::new(&path).with_lock_timeout(Duration::from_millis(30));
    assert_eq!(other.lock_timeout(), Duration::from_millis(30));

    let error = other
        .save(&numbered(2), Some(&rt(1)))
        .expect_err("locked out");
    assert!(
        matches!(error, Error::StoreLocked { waited, .. } if waited >= Duration::from_millis(30)),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("locked by another process"),
        "{error}"
    );
    assert_no_secret(&format!("{error} {error:?}"));
    assert!(matches!(other.forget(), Err(Error::StoreLocked { .. })));
    assert!(matches!(
        holder.lock(Duration::ZERO),
        Err(Error::StoreLocked { .. })
    ));
    // The holder's own store also waits for the guard: saving goes through the guard.
    assert!(matches!(
        holder
            .clone()
            .with_lock_timeout(Duration::ZERO)
            .save(&numbered(2), None),
        Err(Error::StoreLocked { .. })
    ));

    // Loading never waits for the lock.
    assert_eq!(other.load().expect("loads"), Some(numbered(1)));

    // Under the lock: re-read, save (compare-and-swap as usual), re-read.
    assert_eq!(guard.load().expect("loads"), Some(numbered(1)));
    assert!(matches!(
        guard.save(&numbered(2), Some(&rt(0))).expect("answers"),
        Saved::Conflict(_)
    ));
    assert!(matches!(
        guard.save(&numbered(2), Some(&rt(1))).expect("saves"),
        Saved::Stored
    ));
    assert_eq!(other.load().expect("loads"), Some(numbered(2)));
    assert_eq!(guard.path(), path);
    assert_no_secret(&format!("{guard:?}"));
    drop(guard);

    assert!(matches!(
        other.save(&numbered(3), Some(&rt(2))).expect("saves"),
        Saved::Stored
    ));
    let guard = other.lock(Duration::ZERO).expect("free again");
    guard.forget().expect("forgets under the lock");
    assert_eq!(guard.load().expect("loads"), None);
}

#[test]
fn a_lock_taken_in_another_thread_is_waited_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let store = FileStore::new(&path);
    let guard = store.lock(Duration::ZERO).expect("locks");
    let waiter = {
        let store = FileStore::new(&path);
        thread::spawn(move || store.save(&numbered(1), None))
    };
    // The waiter cannot finish while the guard is held; the guard saves first.
    guard
        .save(&numbered(0), None)
        .expect("saves")
        .assert_stored();
    drop(guard);
    let saved = waiter
        .join()
        .expect("no panic")
        .expect("saved once the lock was free");
    assert!(matches!(saved, Saved::Stored));
    assert_eq!(store.load().expect("loads"), Some(numbered(1)));
}

#[test]
fn stores_and_guards_move_between_threads() {
    fn movable<T: Send + Sync + 'static>() {}
    movable::<FileStore>();
    movable::<FileLock>();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(dir.path().join("session.json"));
    let guard = store.lock(Duration::ZERO).expect("locks");
    let saved = thread::spawn(move || guard.save(&numbered(1), None))
        .join()
        .expect("no panic")
        .expect("saves");
    saved.assert_stored();
    // The guard was dropped on the other thread: the lock is free.
    drop(store.lock(Duration::ZERO).expect("free"));
}

#[test]
fn debug_shows_no_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = FileStore::new(dir.path().join("session.json"));
    store
        .save(&numbered(1), None)
        .expect("saves")
        .assert_stored();
    let printed = format!("{store:?}");
    assert!(printed.contains("session.json"), "{printed}");
    assert!(printed.contains("lock_timeout"), "{printed}");
    assert_no_secret(&printed);
    let conflict = store.save(&numbered(2), Some(&rt(0))).expect("answers");
    assert!(matches!(conflict, Saved::Conflict(_)));
    assert_no_secret(&format!("{conflict:?}"));
    let (_, logs) = captured_logs(|| store.save(&numbered(2), Some(&rt(0))));
    assert!(logs.contains("not overwritten"), "{logs}");
    assert_no_secret(&logs);
}

/// Set, to a file path, in the child process of the crash test.
const CHILD_ENV: &str = "SILENT_REFRESH_FILE_STORE_CRASH_CHILD";

/// The child process of `a_process_killed_mid_save_leaves_a_whole_file`: saves token
/// after token into the file named by [`CHILD_ENV`], each refreshed from the one before,
/// and prints `saved N` after each save returned.
#[test]
#[ignore = "the child process of a_process_killed_mid_save_leaves_a_whole_file"]
fn crash_child_saves_forever() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let store = FileStore::new(path);
    let mut n = store
        .load()
        .expect("the file parses")
        .map_or(0, |token| number_of(&token));
    let mut out = io::stdout().lock();
    loop {
        // No one else writes: each save is Stored.
        store
            .save(&numbered(n + 1), Some(&rt(n)))
            .expect("saves")
            .assert_stored();
        n += 1;
        writeln!(out, "saved {n}").expect("stdout");
        out.flush().expect("stdout");
    }
}

#[cfg(unix)]
#[test]
fn a_process_killed_mid_save_leaves_a_whole_file() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    use std::time::Instant;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("session.json");
    let exe = std::env::current_exe().expect("the test binary");
    let budget = Instant::now() + Duration::from_secs(8);
    let mut rounds = 0;
    while rounds < 50 && Instant::now() < budget {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_saves_forever",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawns the child");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        // Kill after a varying number of saves: usually in the middle of the next one.
        let wanted = 1 + rounds % 5;
        let mut seen = 0;
        let mut line = String::new();
        while seen < wanted {
            line.clear();
            let read = stdout.read_line(&mut line).expect("reads the child");
            assert!(
                read > 0,
                "round {rounds}: the child stopped before saving {wanted} times (run `crash_child_saves_forever` alone to see why)"
            );
            if line.starts_with("saved ") {
                seen += 1;
            }
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        // Every save the child reported, up to the kill.
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).expect("reads the rest");
        let reported = line
            .lines()
            .chain(rest.lines())
            .filter_map(|line| line.strip_prefix("saved "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .expect("at least one save reported");

        let stored = FileStore::new(&path)
            .load()
            .unwrap_or_else(|error| panic!("round {rounds}: the file is damaged: {error}"))
            .expect("a token is stored");
        let n = number_of(&stored);
        // The last reported save, or the one after it if the kill fell after its
        // rename but before its report.
        assert!(
            n == reported || n == reported + 1,
            "round {rounds}: stored {n}, last reported {reported}"
        );
        rounds += 1;
    }
    assert!(rounds >= 10, "only {rounds} rounds in the time budget");
    // The killed processes hold no lock.
    let store = FileStore::new(&path);
    let guard = store
        .lock(Duration::ZERO)
        .expect("no dead process holds the lock");
    let n = number_of(&guard.load().expect("loads").expect("stored"));
    assert!(matches!(
        guard.save(&numbered(n + 1), Some(&rt(n))).expect("saves"),
        Saved::Stored
    ));
}
