//! What one exchange takes from the outside world (the wall clock, randomness, a
//! subject token), and the token-exchange grant's settings (RFC 8693).
//!
//! The codec reads no clock, draws no random number and reads no file: the driver
//! gathers these into an [`ExchangeContext`] before each exchange.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use silent_refresh::{RefreshFailure, Secret};

/// The token type of a JWT (RFC 8693 §3): the default subject token type, that of a
/// Kubernetes projected service-account token.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The token type of an OAuth 2.0 access token (RFC 8693 §3).
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// What one exchange takes from outside the codec: the wall-clock time (an
/// assertion's `iat` and `exp`, a subject token's expiry check), 32 random bytes (the
/// `jti` of each signed assertion: the first 16 bytes for the client assertion, the
/// last 16 for the JWT bearer grant's) and, for token exchange, the subject token read
/// from its [`SubjectTokenSource`].
///
/// The adapters make a new one for every exchange, from the system clock, the
/// operating system's random generator and the grant's subject token source; a test
/// or a fuzzer makes its own. `Debug` shows neither the random bytes nor the subject
/// token.
#[derive(Clone)]
pub struct ExchangeContext {
    pub(super) now: SystemTime,
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(super) random: [u8; 32],
    pub(super) subject_token: Option<Secret>,
}

impl ExchangeContext {
    /// The context of an exchange sent at wall-clock time `now`, with `random` bytes
    /// drawn for it (never reuse them: they make each assertion's unique `jti`).
    #[must_use]
    pub fn new(now: SystemTime, random: [u8; 32]) -> Self {
        Self {
            now,
            random,
            subject_token: None,
        }
    }

    /// The same context with the subject token to send (token exchange).
    #[must_use]
    pub fn with_subject_token(mut self, subject_token: Secret) -> Self {
        self.subject_token = Some(subject_token);
        self
    }

    /// The wall-clock time of the exchange.
    #[must_use]
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The subject token, if one was given.
    #[must_use]
    pub fn subject_token(&self) -> Option<&Secret> {
        self.subject_token.as_ref()
    }

    /// The `jti` of the client assertion (`private_key_jwt`, `client_secret_jwt`).
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(super) fn client_jti(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.random[..16])
    }

    /// The `jti` of the JWT bearer grant's assertion.
    #[cfg_attr(not(feature = "jwt"), allow(dead_code))]
    pub(super) fn grant_jti(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.random[16..])
    }

    /// `now` in whole seconds since the Unix epoch.
    pub(super) fn unix_now(&self) -> Result<u64, RefreshFailure> {
        self.now
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .map_err(|_| {
                RefreshFailure::transient(
                    "the wall clock reads a time before 1970, so no assertion can be dated; \
                     set the system clock",
                )
            })
    }
}

impl fmt::Debug for ExchangeContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeContext")
            .field("now", &self.now)
            .field("random", &"[redacted]")
            .field("subject_token", &self.subject_token)
            .finish()
    }
}

/// A function that returns the current subject token.
type SubjectFn = dyn Fn() -> Result<Secret, RefreshFailure> + Send + Sync;

/// Where a token exchange gets its subject token, read afresh for every exchange and
/// never kept after it, so a rotated token is picked up at once and an expired one is
/// never sent from a cache.
///
/// The core reads nothing: the adapters call [`fetch`](Self::fetch) with their file
/// reader before each exchange.
#[derive(Clone)]
#[non_exhaustive]
pub enum SubjectTokenSource {
    /// A file read on every exchange, surrounding whitespace trimmed: a Kubernetes
    /// projected service-account token, which the kubelet rotates in place.
    File(PathBuf),
    /// A function called on every exchange (a cloud metadata endpoint, an environment
    /// variable, another token source). It runs on the refresh's thread or task: keep
    /// it short. Its failure is the exchange's failure, in its class.
    Fn(Arc<SubjectFn>),
}

impl SubjectTokenSource {
    /// A file read on every exchange.
    pub fn file(path: impl Into<PathBuf>) -> Self {
        Self::File(path.into())
    }

    /// A function called on every exchange.
    pub fn from_fn(
        source: impl Fn() -> Result<Secret, RefreshFailure> + Send + Sync + 'static,
    ) -> Self {
        Self::Fn(Arc::new(source))
    }

    /// The current subject token: `read_file` reads a file source (the adapters pass
    /// `std::fs::read`), a function source is called.
    ///
    /// # Errors
    ///
    /// A file that is missing or not readable by this process is misconfigured (the
    /// message names the path); one that is empty, not UTF-8 or fails to read for
    /// another reason is transient (a token file being rotated). A function's own
    /// failure is returned as it is; an empty token from it is transient.
    pub fn fetch(
        &self,
        read_file: impl FnOnce(&Path) -> io::Result<Vec<u8>>,
    ) -> Result<Secret, RefreshFailure> {
        match self {
            Self::File(path) => {
                let bytes = Zeroizing::new(read_file(path).map_err(|e| file_failure(path, &e))?);
                let text = std::str::from_utf8(&bytes).map_err(|_| {
                    RefreshFailure::transient(format!(
                        "the subject token file {} does not hold UTF-8 text; waiting for it \
                         to be rewritten",
                        path.display()
                    ))
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(RefreshFailure::transient(format!(
                        "the subject token file {} is empty; waiting for it to be written",
                        path.display()
                    )));
                }
                Ok(Secret::new(token))
            }
            Self::Fn(source) => {
                let token = source()?;
                if token.is_empty() {
                    return Err(RefreshFailure::transient(
                        "the subject token source returned an empty token",
                    ));
                }
                Ok(token)
            }
        }
    }
}

/// A subject token file that could not be read.
fn file_failure(path: &Path, error: &io::Error) -> RefreshFailure {
    match error.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied => {
            RefreshFailure::misconfigured(format!(
                "the subject token file {} cannot be read ({error}); configure the path of \
                 the projected token and let this process read it",
                path.display()
            ))
        }
        _ => RefreshFailure::transient(format!(
            "could not read the subject token file {} ({error})",
            path.display()
        )),
    }
}

impl fmt::Debug for SubjectTokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Fn(_) => f.write_str("Fn(..)"),
        }
    }
}

/// The settings of a token exchange (RFC 8693): trade a subject token (a Kubernetes
/// service-account token, another issuer's ID token) for an access token of this
/// server. Give it to [`RefreshGrant::token_exchange`](super::RefreshGrant::token_exchange);
/// `audience`, `resource` and `scope` are the grant's.
#[derive(Clone, Debug)]
pub struct TokenExchange {
    pub(super) source: SubjectTokenSource,
    pub(super) subject_token_type: String,
    pub(super) requested_token_type: Option<String>,
}

impl TokenExchange {
    /// Exchanges the token from `source`, of type [`TOKEN_TYPE_JWT`] unless told
    /// otherwise.
    pub fn new(source: SubjectTokenSource) -> Self {
        Self {
            source,
            subject_token_type: TOKEN_TYPE_JWT.to_owned(),
            requested_token_type: None,
        }
    }

    /// The subject token's type (`subject_token_type`).
    #[must_use]
    pub fn subject_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.subject_token_type = token_type.into();
        self
    }

    /// The type of token to ask for (`requested_token_type`); without it the server
    /// chooses (usually an access token).
    #[must_use]
    pub fn requested_token_type(mut self, token_type: impl Into<String>) -> Self {
        self.requested_token_type = Some(token_type.into());
        self
    }

    /// Where the subject token comes from.
    #[must_use]
    pub fn source(&self) -> &SubjectTokenSource {
        &self.source
    }
}

/// The `exp` claim of a token that is a JWT (its payload is read, not verified: the
/// server verifies it), in seconds since the Unix epoch.
pub(super) fn jwt_expiry(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let json = Zeroizing::new(URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?);
    let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .map(|v| v as u64)
    })
}

/// Refuses a subject token that is a JWT whose `exp` has passed at the exchange's
/// time: it is never sent (the server would refuse it, and its source has not been
/// renewed).
pub(super) fn check_subject_expiry(
    token: &Secret,
    context: &ExchangeContext,
) -> Result<(), RefreshFailure> {
    let Some(exp) = jwt_expiry(token.expose()) else {
        return Ok(());
    };
    let now = context.unix_now()?;
    if exp <= now {
        return Err(RefreshFailure::transient(format!(
            "the subject token expired {} s ago and its source has not renewed it (a \
             projected token file the kubelet no longer rotates?); waiting for a new one",
            now - exp
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::FailureKind;
    use std::time::Duration;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn jwt_expiry_reads_the_exp_claim_only_of_a_jwt() {
        assert_eq!(
            jwt_expiry(&jwt(r#"{"exp":1700000000}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(
            jwt_expiry(&jwt(r#"{"exp":1700000000.5}"#)),
            Some(1_700_000_000)
        );
        assert_eq!(jwt_expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(jwt_expiry("opaque-token"), None);
        assert_eq!(jwt_expiry("a.b.c.d"), None);
        assert_eq!(jwt_expiry(&jwt("not json")), None);
    }

    #[test]
    fn an_expired_subject_token_is_never_sent() {
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let context = ExchangeContext::new(at, [0; 32]);
        let expired = Secret::new(jwt(r#"{"exp":1000}"#));
        let failure = check_subject_expiry(&expired, &context).expect_err("expired");
        assert_eq!(failure.kind, FailureKind::Transient);
        assert!(check_subject_expiry(&Secret::new(jwt(r#"{"exp":1001}"#)), &context).is_ok());
        assert!(check_subject_expiry(&Secret::new("opaque"), &context).is_ok());
    }

    #[test]
    fn a_file_source_reads_on_every_fetch_and_classifies_failures() {
        let source = SubjectTokenSource::file("/var/run/token");
        let token = source.fetch(|_| Ok(b"  tok-1\n".to_vec())).expect("token");
        assert_eq!(token.expose(), "tok-1");
        let token = source.fetch(|_| Ok(b"tok-2".to_vec())).expect("token");
        assert_eq!(token.expose(), "tok-2");
        let missing = source
            .fetch(|_| Err(io::Error::from(io::ErrorKind::NotFound)))
            .expect_err("missing");
        assert_eq!(missing.kind, FailureKind::Misconfigured);
        assert!(
            missing.message.contains("/var/run/token"),
            "{}",
            missing.message
        );
        let empty = source.fetch(|_| Ok(b"\n".to_vec())).expect_err("empty");
        assert_eq!(empty.kind, FailureKind::Transient);
        let binary = source.fetch(|_| Ok(vec![0xff])).expect_err("not utf-8");
        assert_eq!(binary.kind, FailureKind::Transient);
        let other = source
            .fetch(|_| Err(io::Error::from(io::ErrorKind::Interrupted)))
            .expect_err("io");
        assert_eq!(other.kind, FailureKind::Transient);
    }

    #[test]
    fn a_function_source_is_called_and_hidden_from_debug() {
        let source = SubjectTokenSource::from_fn(|| Ok(Secret::new("from-fn")));
        assert_eq!(
            source.fetch(|_| unreachable!()).expect("token").expose(),
            "from-fn"
        );
        assert_eq!(format!("{source:?}"), "Fn(..)");
        let empty = SubjectTokenSource::from_fn(|| Ok(Secret::new("")));
        assert_eq!(
            empty.fetch(|_| unreachable!()).expect_err("empty").kind,
            FailureKind::Transient
        );
    }

    #[test]
    fn context_debug_hides_the_subject_token_and_randomness() {
        let context = ExchangeContext::new(UNIX_EPOCH, [7; 32])
            .with_subject_token(Secret::new("subject-secret"));
        let printed = format!("{context:?}");
        assert!(!printed.contains("subject-secret"), "{printed}");
        assert!(!printed.contains("[7, 7"), "{printed}");
        let mut random = [7; 32];
        random[20] = 8;
        let other = ExchangeContext::new(UNIX_EPOCH, random);
        // The client assertion's jti comes from the first half, the grant's from the second.
        assert_eq!(context.client_jti(), other.client_jti());
        assert_ne!(context.grant_jti(), other.grant_jti());
        assert_eq!(context.client_jti().len(), 22);
    }
}
