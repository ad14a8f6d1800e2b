//! `oauth2_client`'s DPoP (RFC 9449): `--dpop` proves every request with a key of the
//! session's, a new P-256 key unless the stored session holds one; `--dpop-key PATH`
//! proves with the key in that PKCS#8 PEM file, made there (readable by the owner
//! alone) when the file does not exist yet. With `--embedded-server`, either one also
//! turns the server's DPoP mode on (bound tokens, nonces at both ends).
//!
//! A stored session's key always wins over the key given here: processes sharing one
//! `--token-file` or one Redis key prove with the key the session is bound to, whichever
//! process made it (the library's rule; see the README's DPoP section).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, DpopSession};

use silent_refresh_testkit::server::{DpopConfig, ServerConfig};

/// The options this module reads: `--dpop` (a flag) and `--dpop-key PATH`.
pub const FLAG: &str = "--dpop";
/// The option naming the key file.
pub const KEY_OPTION: &str = "--dpop-key";

/// Whether and how the tool proves its requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum DpopChoice {
    /// Bearer tokens, no proofs (the default).
    #[default]
    Off,
    /// A new key for this run (the stored session's, when there is one).
    NewKey,
    /// The key in this file, made there when missing.
    KeyFile(PathBuf),
}

impl DpopChoice {
    /// The choice of `--dpop` (given or not) and `--dpop-key`.
    #[must_use]
    pub fn from_args(flag: bool, key_file: Option<String>) -> Self {
        match key_file {
            Some(path) => Self::KeyFile(PathBuf::from(path)),
            None if flag => Self::NewKey,
            None => Self::Off,
        }
    }

    /// Whether requests are proven.
    #[must_use]
    pub fn is_on(&self) -> bool {
        *self != Self::Off
    }

    /// The DPoP session the refresher proves with (`None`: off).
    ///
    /// # Errors
    ///
    /// A key file that cannot be read, parsed or made, naming the file (never the key).
    pub fn session(&self) -> Result<Option<DpopSession>, String> {
        let key = match self {
            Self::Off => return Ok(None),
            Self::NewKey => new_key()?,
            Self::KeyFile(path) => load_or_make(path)?,
        };
        Ok(Some(DpopSession::new(key)))
    }

    /// Turns the embedded server's DPoP mode on when requests are proven.
    pub fn configure_server(&self, server: &mut ServerConfig) {
        if self.is_on() && server.dpop.is_none() {
            server.dpop = Some(DpopConfig::default());
        }
    }
}

fn new_key() -> Result<DpopKey, String> {
    DpopKey::generate_with_os_rng(DpopAlgorithm::Es256)
        .map_err(|e| format!("cannot make a DPoP key: {e}"))
}

/// The key in `path`; a new one written there first when the file does not exist. Two
/// processes starting together with the same new path agree on one key: the file is
/// created only if absent, and the loser reads the winner's.
fn load_or_make(path: &Path) -> Result<DpopKey, String> {
    let shown = path.display();
    let parse = |pem: &str| {
        DpopKey::from_pkcs8_pem(pem).map_err(|e| format!("{shown} is not a DPoP key: {e}"))
    };
    match std::fs::read_to_string(path) {
        Ok(pem) if !pem.trim().is_empty() => return parse(&pem),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read the DPoP key {shown}: {e}")),
    }
    let key = new_key()?;
    let pem = key
        .to_pkcs8_pem()
        .map_err(|e| format!("cannot encode the DPoP key: {e}"))?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(pem.expose().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| format!("cannot write the DPoP key {shown}: {e}"))?;
            Ok(key)
        }
        // Another process made it first, or is writing it: read it once it is whole.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_when_written(path),
        Err(e) => Err(format!("cannot make the DPoP key {shown}: {e}")),
    }
}

/// Reads a key file another process is writing, for up to a second.
fn read_when_written(path: &Path) -> Result<DpopKey, String> {
    let shown = path.display();
    let mut last = String::new();
    for _ in 0..100 {
        match std::fs::read_to_string(path) {
            Ok(pem) => match DpopKey::from_pkcs8_pem(&pem) {
                Ok(key) => return Ok(key),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(format!("{shown} is not a DPoP key: {last}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_made_once_then_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dpop.pem");
        let choice = DpopChoice::from_args(false, Some(path.display().to_string()));
        let made = choice.session().expect("made").expect("on");
        let read = choice.session().expect("read").expect("on");
        assert_eq!(made.thumbprint(), read.thumbprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let fresh = DpopChoice::NewKey.session().expect("new").expect("on");
        assert_ne!(fresh.thumbprint(), made.thumbprint());
        assert!(
            DpopChoice::from_args(false, None)
                .session()
                .expect("off")
                .is_none()
        );
    }

    #[test]
    fn a_file_that_is_no_key_is_refused_by_name_without_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dpop.pem");
        std::fs::write(&path, "SECRET not a key").expect("write");
        let error = DpopChoice::KeyFile(path.clone())
            .session()
            .expect_err("refused");
        assert!(error.contains("dpop.pem"), "{error}");
        assert!(!error.contains("SECRET"), "{error}");
    }
}
