//! The file store: one JSON file, replaced atomically, locked between processes.

use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use silent_refresh::{Secret, Token};
use zeroize::Zeroizing;

use super::record::{self, EncodeError};
use super::{Saved, TokenStore};
use crate::error::Error;

/// No stored session is anywhere near this long; a longer file is not one of ours (and
/// is not read into memory).
const MAX_FILE_LEN: u64 = 1 << 20;

/// The longest pause between two tries of a held lock.
const MAX_LOCK_PAUSE: Duration = Duration::from_millis(20);

/// Keeps the token in one JSON file (the layout is below), written
/// atomically, with compare-and-swap between processes.
///
/// - **Atomic**: a save writes `<name>.tmp` in the same folder, flushes and syncs it,
///   renames it over the file and syncs the folder. A reader, or a process killed at
///   any moment, sees the old token or the new one, never a mix.
/// - **Compare-and-swap between processes**: [`save`](TokenStore::save) and
///   [`forget`](TokenStore::forget) read, compare and write under an exclusive lock on
///   the sidecar file `<name>.lock`, held by the operating system for this process
///   (released when the process dies, whatever it was doing). A save waits for the lock
///   at most [`lock_timeout`](Self::lock_timeout) and then fails with
///   [`Error::StoreLocked`]. [`load`](TokenStore::load) takes no lock: it always reads
///   a whole file.
/// - **Never overwrites what it cannot read**: a file that is not a session this
///   library wrote (garbage, truncated, another format) is
///   [`Error::StoreUnreadable`] for `load`, `save` and `forget` alike, and stays as it
///   is.
/// - **Holding the lock across a refresh** (coordination between processes):
///   [`lock`](Self::lock) returns a [`FileLock`], whose own
///   [`load`](FileLock::load), [`save`](FileLock::save) and [`forget`](FileLock::forget)
///   work under the lock it holds.
///
/// Only wall-clock expiries are stored: saving a token whose expiry is
/// [`Expiry::In`](silent_refresh::Expiry::In) fails with [`Error::StoreRelativeExpiry`] (the store cannot know when
/// the relative expiry started; the driver converts it when the token arrives).
///
/// The path is used as given: when it is a symbolic link, a save replaces the link with
/// a file.
///
/// Clones share the path and the permission warning (given once).
///
/// # On disk
///
/// The token lives in one JSON object (pretty-printed, UTF-8):
///
/// ```json
/// {
///   "format": "silent-refresh/token/1",
///   "access_token": "…",
///   "token_type": "Bearer",
///   "scope": "read write",
///   "refresh_token": "…",
///   "expires_at": 1767225600000,
///   "issued_at": 1767222000000,
///   "saved_at": 1767222001234
/// }
/// ```
///
/// - `format` names this layout; a file with another value (another program's, or a
///   later version of this one) is never read as a token, nor overwritten.
/// - `access_token`, `token_type` and `expires_at` are required; `scope`,
///   `refresh_token` and `issued_at` may be `null` or missing.
/// - Times are wall-clock milliseconds since the Unix epoch (negative before it),
///   rounded down: `expires_at` is `null` for a token that never expires, `issued_at`
///   is `null` when the issue time is unknown, `saved_at` is when the file was written
///   (for people reading the file; it is not read back).
/// - A DPoP-bound session (RFC 9449) also keeps its key, `dpop_key` (PKCS#8 PEM), and
///   is written with `"format": "silent-refresh/token/2"`, so that an older version
///   refuses it instead of dropping the key; a session without a key is still written
///   as version 1, and both are read.
/// - A session with tokens for several keys (rule 13: other resources or scopes, one
///   refresh token) also keeps `tokens`, a list of objects with the key's name (`key`)
///   and its token's `access_token`, `token_type`, `scope`, `expires_at` and
///   `issued_at` (the refresh token is the session's), and is written with
///   `"format": "silent-refresh/token/3"`, so that an older version refuses it rather
///   than mix the keys' tokens up.
/// - Unknown fields at the top level are ignored, so that a later version may add some.
///
/// The file holds the secrets in clear: it is created `0600` (and its folder, when the
/// store creates it, `0700`) on unix, and the store warns (once per store) when it
/// finds the file readable or writable by other users.
///
/// Beside it the store keeps two more files: `<name>.lock`, the lock that orders
/// writers between processes (it stays there, empty: deleting it while another process
/// waits on it would let two writers in), and `<name>.tmp`, the next version while it
/// is being written (left behind only by a process killed mid-write; the next write
/// replaces it).
#[derive(Clone)]
pub struct FileStore {
    shared: Arc<Shared>,
    lock_timeout: Duration,
}

/// The paths, and whether the permission warning was given.
struct Shared {
    path: PathBuf,
    lock_path: PathBuf,
    tmp_path: PathBuf,
    warned: AtomicBool,
}

impl FileStore {
    /// How long a save waits for another process's lock by default.
    pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

    /// A store at `path` (the file, and the folders leading to it, are created on the
    /// first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let sibling = |suffix: &str| {
            let mut name = OsString::from(path.as_os_str());
            name.push(suffix);
            PathBuf::from(name)
        };
        let lock_path = sibling(".lock");
        let tmp_path = sibling(".tmp");
        Self {
            shared: Arc::new(Shared {
                path,
                lock_path,
                tmp_path,
                warned: AtomicBool::new(false),
            }),
            lock_timeout: Self::DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same store, whose [`save`](TokenStore::save) and
    /// [`forget`](TokenStore::forget) wait at most `timeout` for another process's lock
    /// (default [`DEFAULT_LOCK_TIMEOUT`](Self::DEFAULT_LOCK_TIMEOUT)). `Duration::ZERO`
    /// tries once.
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The file the token is kept in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// How long [`save`](TokenStore::save) and [`forget`](TokenStore::forget) wait for
    /// another process's lock.
    #[must_use]
    pub fn lock_timeout(&self) -> Duration {
        self.lock_timeout
    }

    /// Takes the exclusive lock on this store, waiting at most `timeout` while another
    /// process (or another [`FileStore`] or [`FileLock`] of this process) holds it.
    ///
    /// The lock is held until the returned guard is dropped, or the process ends. While
    /// it is held, use the guard's [`load`](FileLock::load), [`save`](FileLock::save)
    /// and [`forget`](FileLock::forget): the store's own `save` and `forget` would wait
    /// for the lock this guard holds, and fail after their lock timeout. Loading through
    /// the store does not wait.
    ///
    /// Creates the folder (`0700`) and the lock file (`0600`) when they are missing.
    ///
    /// # Errors
    ///
    /// [`Error::StoreLocked`] when the lock is still held after `timeout`;
    /// [`Error::StoreIo`] when the folder or the lock file cannot be created or locked.
    pub fn lock(&self, timeout: Duration) -> Result<FileLock, Error> {
        let file = self.shared.acquire(timeout)?;
        Ok(FileLock {
            shared: Arc::clone(&self.shared),
            file,
        })
    }
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.shared.path)
            .field("lock_timeout", &self.lock_timeout)
            .finish()
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> Result<Option<Token>, Error> {
        self.shared.read()
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        self.lock(self.lock_timeout)?.save(token, from)
    }

    fn save_if_empty(&self, token: &Token) -> Result<Saved, Error> {
        let lock = self.lock(self.lock_timeout)?;
        match lock.load()? {
            Some(stored) => Ok(Saved::Conflict(Box::new(stored))),
            None => lock.save(token, None),
        }
    }

    fn forget(&self) -> Result<(), Error> {
        self.lock(self.lock_timeout)?.forget()
    }

    /// The file store coordinates the processes that share its file (same host).
    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<Option<Box<dyn super::StoreLock>>, Error> {
        Ok(Some(Box::new(self.lock(timeout)?)))
    }
}

/// The exclusive lock on a [`FileStore`], from [`FileStore::lock`]; released when
/// dropped (or when the process ends, however it ends).
///
/// Its methods are the store's, under the lock it already holds: between
/// [`load`](Self::load) and [`save`](Self::save) no other process writes the file, so
/// a process can re-read the store, refresh only if no sibling did, and save, without
/// a race.
pub struct FileLock {
    shared: Arc<Shared>,
    file: File,
}

impl FileLock {
    /// The stored token, if any (see [`TokenStore::load`]).
    ///
    /// # Errors
    ///
    /// As [`TokenStore::load`].
    pub fn load(&self) -> Result<Option<Token>, Error> {
        self.shared.read()
    }

    /// Stores `token` with compare-and-swap on `from`, exactly as [`TokenStore::save`],
    /// under this lock.
    ///
    /// "Already holds this very token" means the stored token has the same refresh
    /// credential as `token`, or the same access token. Secrets are compared in time
    /// independent of their content.
    ///
    /// # Errors
    ///
    /// [`Error::StoreRelativeExpiry`] for an [`Expiry::In`](silent_refresh::Expiry::In) token,
    /// [`Error::StoreUnreadable`] when the file holds something else than a stored
    /// session (it is not overwritten), [`Error::StoreIo`] when reading or writing
    /// fails (the old file is then intact).
    pub fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        // A token that cannot be stored fails before anything is read or written.
        let bytes = self.shared.encode(token)?;
        let stored = self.shared.read()?;
        if let Some(stored) = stored
            && record::conflicts(Some(&stored), token, from)
        {
            tracing::debug!(
                path = %self.shared.path.display(),
                "token store holds a newer session than the one refreshed; not overwritten"
            );
            return Ok(Saved::Conflict(Box::new(stored)));
        }
        self.shared.write(&bytes)?;
        Ok(Saved::Stored)
    }

    /// Deletes the stored token (sign-out); an absent file is fine.
    ///
    /// # Errors
    ///
    /// [`Error::StoreUnreadable`] when the file holds something else than a stored
    /// session (it is not deleted), [`Error::StoreIo`] when it cannot be deleted.
    pub fn forget(&self) -> Result<(), Error> {
        // Refuses to delete what this library did not write.
        if self.shared.read()?.is_none() {
            return Ok(());
        }
        let path = &self.shared.path;
        match fs::remove_file(path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(io_error("deleted", path, error)),
        }
        sync_dir(self.shared.dir())
    }

    /// The file the token is kept in.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock as well; unlocking first says so.
        let _ = self.file.unlock();
    }
}

impl fmt::Debug for FileLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileLock")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The folder of the file (`.` for a bare file name).
    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        }
    }

    /// Creates the folder (and its parents) `0700` when missing.
    fn create_dir(&self) -> Result<(), Error> {
        let dir = self.dir();
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(dir)
            .map_err(|error| io_error("created", dir, error))
    }

    /// Opens the lock file and locks it, trying until `timeout` has passed.
    fn acquire(&self, timeout: Duration) -> Result<File, Error> {
        self.create_dir()?;
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let path = &self.lock_path;
        let file = options
            .open(path)
            .map_err(|error| io_error("opened for locking", path, error))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(file),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(error)) => return Err(io_error("locked", path, error)),
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(Error::StoreLocked {
                    path: display(&self.path),
                    waited,
                });
            }
            thread::sleep(pause.min(timeout - waited));
            pause = (pause * 2).min(MAX_LOCK_PAUSE);
        }
    }

    /// Reads and decodes the file; `None` when there is none.
    fn read(&self) -> Result<Option<Token>, Error> {
        let path = &self.path;
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("read", path, error)),
        };
        let metadata = file
            .metadata()
            .map_err(|error| io_error("read", path, error))?;
        if !metadata.is_file() {
            return Err(unreadable(path, "it is not a regular file"));
        }
        self.warn_if_shared(&metadata);
        if metadata.len() > MAX_FILE_LEN {
            return Err(unreadable(
                path,
                format!(
                    "it is {} bytes long, far more than any stored session",
                    metadata.len()
                ),
            ));
        }
        // Sized once, so that no reallocation leaves a copy of the secrets behind.
        let capacity = usize::try_from(metadata.len())
            .unwrap_or(0)
            .saturating_add(64);
        let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
        (&mut file)
            .take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| io_error("read", path, error))?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(unreadable(
                path,
                "it grew past any stored session's length while being read",
            ));
        }
        record::decode(&bytes)
            .map(Some)
            .map_err(|reason| unreadable(path, reason))
    }

    /// Encodes `token` for this file.
    fn encode(&self, token: &Token) -> Result<Zeroizing<Vec<u8>>, Error> {
        record::encode(token).map_err(|error| match error {
            EncodeError::RelativeExpiry => Error::StoreRelativeExpiry {
                path: display(&self.path),
            },
            EncodeError::Json(error) => io_error("written (encoding)", &self.path, error.into()),
        })
    }

    /// Warns, once, when the file can be read or written by other users.
    fn warn_if_shared(&self, metadata: &fs::Metadata) {
        if shared_with_others(metadata) && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                path = %self.path.display(),
                "the token store file can be read or written by other users, and it holds \
                 the session's secrets: run `chmod 600` on it"
            );
        }
    }

    /// Replaces the file with `bytes`: temporary file, sync, rename, folder sync.
    fn write(&self, bytes: &[u8]) -> Result<(), Error> {
        self.create_dir()?;
        let tmp = &self.tmp_path;
        // A leftover of a process killed mid-write; `create_new` below refuses to
        // follow whatever is there, so it goes first.
        match fs::remove_file(tmp) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("written (old temporary file)", tmp, error)),
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let result = options
            .open(tmp)
            .and_then(|mut file| {
                file.write_all(bytes)?;
                file.flush()?;
                file.sync_all()
            })
            .map_err(|error| io_error("written (temporary file)", tmp, error))
            .and_then(|()| {
                fs::rename(tmp, &self.path).map_err(|error| io_error("replaced", &self.path, error))
            });
        if let Err(error) = result {
            let _ = fs::remove_file(tmp);
            return Err(error);
        }
        sync_dir(self.dir())
    }
}

/// Syncs a folder, so that a rename or a deletion in it survives a power cut (unix;
/// elsewhere the rename is as durable as the system makes it).
fn sync_dir(dir: &Path) -> Result<(), Error> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|folder| folder.sync_all())
            .map_err(|error| io_error("synced", dir, error))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(unix)]
fn shared_with_others(metadata: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o066 != 0
}

#[cfg(not(unix))]
fn shared_with_others(_metadata: &fs::Metadata) -> bool {
    false
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> Error {
    Error::StoreIo {
        action,
        path: display(path),
        source,
    }
}

fn unreadable(path: &Path, reason: impl Into<String>) -> Error {
    Error::StoreUnreadable {
        path: display(path),
        reason: reason.into(),
    }
}

impl super::StoreLock for FileLock {
    fn load(&self) -> Result<Option<Token>, Error> {
        FileLock::load(self)
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, Error> {
        FileLock::save(self, token, from)
    }
}
