//! Signed JWT assertions (RFC 7523): the keys, the claims and the signing, for
//! `private_key_jwt` and `client_secret_jwt` client authentication (§2.2) and the JWT
//! bearer grant (§2.1). Feature `jwt`.
//!
//! Signing is pure: the time and the `jti` come in through the
//! [`ExchangeContext`](super::ExchangeContext). The signature itself is made by
//! jsonwebtoken's aws-lc-rs backend (its provider is called directly, so no
//! process-wide provider has to be installed); an ECDSA signature's nonce is drawn by
//! that library, as ECDSA requires, and changes nothing the codec decides.

use std::fmt;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use silent_refresh::{RefreshFailure, Secret};

use crate::Error;

/// How long a signed assertion is valid by default: `exp` is `iat` + 60 s. Each
/// exchange signs a new one, so it only has to outlive one request.
pub const DEFAULT_ASSERTION_LIFETIME: Duration = Duration::from_secs(60);

/// The longest lifetime an assertion may be given (servers such as Google refuse more
/// than an hour).
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::from_secs(3600);

/// The claims the codec sets itself: [`JwtAssertion::claim`] may not set them.
pub const RESERVED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"];

/// The algorithm a [`SigningKey`] signs with (the JWS `alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256: an RSA key of at least 2048 bits.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// HMAC with SHA-256, keyed with the client secret (`client_secret_jwt`).
    Hs256,
}

impl SigningAlgorithm {
    /// The JWS name: `RS256`, `ES256`, `HS256`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Es256 => "ES256",
            Self::Hs256 => "HS256",
        }
    }

    fn jose(self) -> Algorithm {
        match self {
            Self::Rs256 => Algorithm::RS256,
            Self::Es256 => Algorithm::ES256,
            Self::Hs256 => Algorithm::HS256,
        }
    }
}

/// A key that signs assertions: RS256 or ES256 from a PEM private key (checked by
/// signing once when loaded), with an optional key id (`kid`) for servers that hold
/// several of the client's keys.
///
/// `Debug` shows the algorithm and key id, never the key.
#[derive(Clone)]
pub struct SigningKey {
    algorithm: SigningAlgorithm,
    key: EncodingKey,
    key_id: Option<String>,
}

impl SigningKey {
    /// An RS256 key from a PEM RSA private key (PKCS#8 `PRIVATE KEY` or PKCS#1
    /// `RSA PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] when the PEM holds no RSA private key that can sign.
    pub fn rs256_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidKey {
            expected: "RSA",
            reason,
        };
        let key = EncodingKey::from_rsa_pem(pem.as_ref()).map_err(|e| invalid(reason(&e)))?;
        Self::checked(SigningAlgorithm::Rs256, key).map_err(invalid)
    }

    /// An ES256 key from a PEM P-256 private key (PKCS#8 `PRIVATE KEY`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] when the PEM holds no P-256 private key that can sign.
    pub fn es256_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidKey {
            expected: "P-256 EC",
            reason,
        };
        let key = EncodingKey::from_ec_pem(pem.as_ref()).map_err(|e| invalid(reason(&e)))?;
        Self::checked(SigningAlgorithm::Es256, key).map_err(invalid)
    }

    /// An RS256 or ES256 key, as the PEM holds an RSA or a P-256 private key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidKey`] when the PEM holds neither.
    pub fn from_pem(pem: impl AsRef<[u8]>) -> Result<Self, Error> {
        let pem = pem.as_ref();
        Self::es256_pem(pem)
            .or_else(|_| Self::rs256_pem(pem))
            .map_err(|error| match error {
                Error::InvalidKey { reason, .. } => Error::InvalidKey {
                    expected: "RSA or P-256 EC",
                    reason,
                },
                other => other,
            })
    }

    /// The HS256 key of `client_secret_jwt`: the client secret itself.
    pub(super) fn hs256(secret: &Secret) -> Result<Self, RefreshFailure> {
        let key = EncodingKey::from_secret(secret.expose().as_bytes()).map_err(|_| {
            RefreshFailure::misconfigured(
                "client_secret_jwt needs a non-empty client secret; set the client secret",
            )
        })?;
        Ok(Self {
            algorithm: SigningAlgorithm::Hs256,
            key,
            key_id: None,
        })
    }

    /// The same key, announced with key id `kid` in each assertion's header.
    #[must_use]
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.key_id = Some(kid.into());
        self
    }

    /// The algorithm it signs with.
    #[must_use]
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.algorithm
    }

    /// A key that signs: the key is parsed by signing a probe once.
    fn checked(algorithm: SigningAlgorithm, key: EncodingKey) -> Result<Self, &'static str> {
        let signer =
            (DEFAULT_PROVIDER.signer_factory)(&algorithm.jose(), &key).map_err(|e| reason(&e))?;
        signer
            .try_sign(b"silent-refresh key check")
            .map_err(|_| "it cannot sign")?;
        Ok(Self {
            algorithm,
            key,
            key_id: None,
        })
    }

    /// Signs `claims` into a compact JWS: `header.claims.signature`, base64url.
    pub(super) fn sign(&self, claims: &Map<String, Value>) -> Result<Secret, RefreshFailure> {
        let mut header = Map::new();
        header.insert("alg".into(), self.algorithm.name().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.key_id {
            header.insert("kid".into(), kid.as_str().into());
        }
        let cannot = |what: &str| {
            RefreshFailure::misconfigured(format!(
                "could not sign the {} assertion ({what}); check the signing key",
                self.algorithm.name()
            ))
        };
        let header = serde_json::to_vec(&header).map_err(|_| cannot("its header"))?;
        let claims = Zeroizing::new(serde_json::to_vec(claims).map_err(|_| cannot("its claims"))?);
        let mut jws = Zeroizing::new(String::with_capacity(
            (header.len() + claims.len()).div_ceil(3) * 4 + 2 + 700,
        ));
        URL_SAFE_NO_PAD.encode_string(&header, &mut jws);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&*claims, &mut jws);
        let signer = (DEFAULT_PROVIDER.signer_factory)(&self.algorithm.jose(), &self.key)
            .map_err(|e| cannot(reason(&e)))?;
        let signature = signer
            .try_sign(jws.as_bytes())
            .map_err(|_| cannot("the key refused to sign"))?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut jws);
        Ok(Secret::new(std::mem::take(&mut *jws)))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.algorithm)
            .field("key_id", &self.key_id)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Why jsonwebtoken refused a key, in words that never quote the key.
fn reason(error: &jsonwebtoken::errors::Error) -> &'static str {
    match error.kind() {
        ErrorKind::InvalidKeyFormat => "not a private key of this kind",
        ErrorKind::InvalidRsaKey(_) => "not a valid RSA private key",
        ErrorKind::InvalidEcdsaKey => "not a valid P-256 private key",
        ErrorKind::Base64(_) => "its base64 does not decode",
        _ => "it does not parse",
    }
}

/// The settings of a signed assertion (RFC 7523 §3): the JWT bearer grant's
/// `assertion`. Each exchange signs a new one with a fresh `jti`, `iat` the
/// exchange's time and `exp` [`lifetime`](Self::lifetime) later.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pem = include_str!("testdata/es256.pem");
/// use silent_refresh_oauth2::{JwtAssertion, SigningKey};
///
/// // Google-style service account: `iss` the account, the scope as a claim.
/// let assertion = JwtAssertion::new(SigningKey::from_pem(pem)?, "svc@project.iam.example.com")
///     .claim("scope", "https://www.googleapis.com/auth/cloud-platform");
/// # let _ = assertion;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct JwtAssertion {
    key: SigningKey,
    issuer: String,
    subject: Option<String>,
    audience: Option<String>,
    lifetime: Duration,
    claims: Vec<(String, Value)>,
}

impl JwtAssertion {
    /// An assertion issued by `issuer` (`iss`), signed with `key`.
    pub fn new(key: SigningKey, issuer: impl Into<String>) -> Self {
        Self {
            key,
            issuer: issuer.into(),
            subject: None,
            audience: None,
            lifetime: DEFAULT_ASSERTION_LIFETIME,
            claims: Vec::new(),
        }
    }

    /// The principal the token is for (`sub`). RFC 7523 servers require it; Google's
    /// wants it only to act as another user.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `aud` claim. Default: the token URL.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// How long each assertion is valid (`exp` − `iat`), at most
    /// [`MAX_ASSERTION_LIFETIME`]. Default: [`DEFAULT_ASSERTION_LIFETIME`].
    #[must_use]
    pub fn lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime;
        self
    }

    /// An extra claim (e.g. Google's `scope`). The [`RESERVED_CLAIMS`] are refused when
    /// the assertion is checked or signed.
    #[must_use]
    pub fn claim(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        self.claims.push((name.into(), value.into()));
        self
    }

    /// Whether the settings can ever make an assertion.
    ///
    /// # Errors
    ///
    /// A misconfigured failure naming the setting: a lifetime of zero or over
    /// [`MAX_ASSERTION_LIFETIME`], an empty issuer, or a reserved extra claim.
    pub fn check(&self) -> Result<(), RefreshFailure> {
        self.problem().map_err(RefreshFailure::misconfigured)
    }

    /// What makes the settings unusable, in words that name the setting.
    pub(super) fn problem(&self) -> Result<(), &'static str> {
        if self.issuer.is_empty() {
            return Err("the JWT assertion has no issuer (`iss`); set the issuer");
        }
        check_lifetime(self.lifetime)?;
        if self
            .claims
            .iter()
            .any(|(name, _)| RESERVED_CLAIMS.contains(&name.as_str()))
        {
            return Err(
                "an extra claim of the JWT assertion is one it sets itself (iss, sub, \
                        aud, exp, iat, nbf, jti); remove it and use the issuer, subject, \
                        audience or lifetime settings",
            );
        }
        Ok(())
    }

    /// Signs the assertion for an exchange at `now` with identifier `jti`, for the
    /// token endpoint `token_url` (the default `aud`).
    ///
    /// # Errors
    ///
    /// As [`check`](Self::check); a clock before 1970 is transient.
    pub fn sign(
        &self,
        token_url: &str,
        now: SystemTime,
        jti: &str,
    ) -> Result<Secret, RefreshFailure> {
        self.check()?;
        let claims = claims(&Claims {
            issuer: &self.issuer,
            subject: self.subject.as_deref(),
            audience: self.audience.as_deref().unwrap_or(token_url),
            jti,
            now: unix(now)?,
            lifetime: self.lifetime,
            extra: &self.claims,
        });
        self.key.sign(&claims)
    }

    /// The signing key.
    #[must_use]
    pub fn key(&self) -> &SigningKey {
        &self.key
    }
}

/// Refuses an assertion lifetime of zero or over the maximum.
pub(super) fn check_lifetime(lifetime: Duration) -> Result<(), &'static str> {
    if lifetime.is_zero() || lifetime > MAX_ASSERTION_LIFETIME {
        return Err(
            "an assertion lifetime must be between 1 s and an hour; set a short \
                    lifetime (default 60 s)",
        );
    }
    Ok(())
}

/// Seconds since the Unix epoch.
fn unix(now: SystemTime) -> Result<u64, RefreshFailure> {
    super::ExchangeContext::new(now, [0; 32]).unix_now()
}

/// The claims of one assertion.
pub(super) struct Claims<'a> {
    pub(super) issuer: &'a str,
    pub(super) subject: Option<&'a str>,
    pub(super) audience: &'a str,
    pub(super) jti: &'a str,
    pub(super) now: u64,
    pub(super) lifetime: Duration,
    pub(super) extra: &'a [(String, Value)],
}

/// The claim set (keys in sorted order, so the bytes are reproducible).
pub(super) fn claims(claims: &Claims<'_>) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in claims.extra {
        map.insert(name.clone(), value.clone());
    }
    map.insert("iss".into(), claims.issuer.into());
    if let Some(subject) = claims.subject {
        map.insert("sub".into(), subject.into());
    }
    map.insert("aud".into(), claims.audience.into());
    map.insert("jti".into(), claims.jti.into());
    map.insert("iat".into(), claims.now.into());
    map.insert(
        "exp".into(),
        claims
            .now
            .saturating_add(claims.lifetime.as_secs().max(1))
            .into(),
    );
    map
}

/// The client assertion of `private_key_jwt` or `client_secret_jwt` (RFC 7523 §3,
/// OpenID Connect Core §9): `iss` and `sub` the client id, `aud` the token URL.
pub(super) fn client_assertion(
    key: &SigningKey,
    client_id: &str,
    token_url: &str,
    jti: &str,
    now: u64,
    lifetime: Duration,
) -> Result<Secret, RefreshFailure> {
    check_lifetime(lifetime).map_err(RefreshFailure::misconfigured)?;
    if client_id.is_empty() {
        return Err(RefreshFailure::misconfigured(
            "a client assertion needs the client id (its `iss` and `sub`); set the client id",
        ));
    }
    key.sign(&claims(&Claims {
        issuer: client_id,
        subject: Some(client_id),
        audience: token_url,
        jti,
        now,
        lifetime,
        extra: &[],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::FailureKind;

    const ES256: &str = include_str!("testdata/es256.pem");

    fn decode_part(jws: &str, index: usize) -> Value {
        let part = jws.split('.').nth(index).expect("part");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
    }

    #[test]
    fn a_key_that_does_not_parse_is_refused_when_loaded() {
        for pem in [
            "",
            "not a pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ] {
            let error = SigningKey::from_pem(pem).expect_err("refused");
            let text = error.to_string();
            assert!(text.contains("PKCS#8"), "{text}");
            assert!(SigningKey::rs256_pem(pem).is_err());
            assert!(SigningKey::es256_pem(pem).is_err());
        }
        // An EC key is not an RSA key.
        assert!(SigningKey::rs256_pem(ES256).is_err());
    }

    #[test]
    fn an_es256_key_signs_with_the_claims_given() {
        let key = SigningKey::from_pem(ES256).expect("key").key_id("k1");
        assert_eq!(key.algorithm(), SigningAlgorithm::Es256);
        let printed = format!("{key:?}");
        assert!(
            printed.contains("[redacted]") && !printed.contains("BEGIN"),
            "{printed}"
        );
        let assertion = JwtAssertion::new(key, "svc")
            .subject("user")
            .claim("scope", "a b")
            .sign(
                "https://as/token",
                SystemTime::UNIX_EPOCH + Duration::from_secs(100),
                "j1",
            )
            .expect("signed");
        assert_eq!(
            decode_part(assertion.expose(), 0),
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
        );
        assert_eq!(
            decode_part(assertion.expose(), 1),
            serde_json::json!({"iss": "svc", "sub": "user", "aud": "https://as/token",
                "jti": "j1", "iat": 100, "exp": 160, "scope": "a b"})
        );
    }

    #[test]
    fn bad_assertion_settings_are_misconfigured() {
        let key = SigningKey::from_pem(ES256).expect("key");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        for assertion in [
            JwtAssertion::new(key.clone(), ""),
            JwtAssertion::new(key.clone(), "svc").lifetime(Duration::ZERO),
            JwtAssertion::new(key.clone(), "svc").lifetime(Duration::from_secs(3601)),
            JwtAssertion::new(key.clone(), "svc").claim("exp", 1),
        ] {
            let failure = assertion
                .sign("https://as/token", now, "j")
                .expect_err("refused");
            assert_eq!(failure.kind, FailureKind::Misconfigured, "{assertion:?}");
        }
        let failure = client_assertion(
            &key,
            "",
            "https://as/token",
            "j",
            0,
            DEFAULT_ASSERTION_LIFETIME,
        )
        .expect_err("no client id");
        assert_eq!(failure.kind, FailureKind::Misconfigured);
    }

    #[test]
    fn hs256_needs_a_secret() {
        assert!(SigningKey::hs256(&Secret::new("")).is_err());
        let key = SigningKey::hs256(&Secret::new("s3cret")).expect("key");
        let jws = client_assertion(
            &key,
            "app",
            "https://as/token",
            "j",
            5,
            DEFAULT_ASSERTION_LIFETIME,
        )
        .expect("signed");
        assert_eq!(decode_part(jws.expose(), 0)["alg"], "HS256");
        assert_eq!(decode_part(jws.expose(), 1)["exp"], 65);
    }
}
