//! The DPoP key: made from random bytes or loaded from PKCS#8, its public JWK (RFC
//! 7517) and RFC 7638 thumbprint, and its PEM export.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use zeroize::Zeroizing;

use silent_refresh::Secret;

use super::backend::{self, Backend, Public, Signer};
use crate::Error;

/// The signature algorithm of a [`DpopKey`] (the proof's JWS `alg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DpopAlgorithm {
    /// ECDSA on P-256 with SHA-256: the algorithm every DPoP server supports (the
    /// default).
    Es256,
    /// Ed25519 (JWS `EdDSA`, RFC 8037): smaller and faster, but not every server
    /// accepts it (check its `dpop_signing_alg_values_supported`).
    EdDsa,
}

impl DpopAlgorithm {
    /// The JWS name: `ES256` or `EdDSA`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for DpopAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A DPoP key pair: it signs the proofs of one session, and its public half, sent in
/// every proof's header, is what the server binds tokens to (by its
/// [`thumbprint`](Self::thumbprint), the `jkt`).
///
/// The key is part of the session: store it with the session
/// ([`to_pkcs8_pem`](Self::to_pkcs8_pem), [`from_pkcs8_pem`](Self::from_pkcs8_pem)),
/// or every token bound to it is lost with it.
///
/// Cheap to clone (the key is shared). `Debug` shows the algorithm and the thumbprint,
/// never the private key; the private key is wiped from memory when the last clone is
/// dropped (by the backend: aws-lc frees keys with `OPENSSL_cleanse`, RustCrypto and
/// dalek zeroize theirs). Two keys are equal when their public keys are.
///
/// ```
/// use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey};
///
/// // The bytes come from the caller's random generator (here a fixed test value).
/// let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[7; 32])?;
/// assert_eq!(key.algorithm(), DpopAlgorithm::Es256);
/// assert_eq!(key.thumbprint().len(), 43);
/// assert!(key.public_jwk().starts_with(r#"{"crv":"P-256","kty":"EC","x":""#));
/// assert!(!format!("{key:?}").contains("PRIVATE"));
///
/// // Stored with the session, and loaded back.
/// let pem = key.to_pkcs8_pem()?;
/// assert_eq!(DpopKey::from_pkcs8_pem(pem.expose())?, key);
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: DpopAlgorithm,
    signer: Box<dyn Signer>,
    sha256: fn(&[u8]) -> [u8; 32],
    /// The public JWK, its required members in lexicographic order (RFC 7638 §3.2).
    jwk: String,
    /// The RFC 7638 thumbprint: base64url SHA-256 of `jwk`.
    thumbprint: String,
    /// The proof's protected header, base64url, with the `.` that follows it: the
    /// same for every proof of this key, so it is made once.
    header: String,
}

/// The longest PEM text read (a PKCS#8 P-256 or Ed25519 key is under 300 bytes).
const MAX_PEM: usize = 16 * 1024;

impl DpopKey {
    /// A key made from 32 random bytes the caller drew (the sans-IO constructor: on
    /// wasm32 draw them with `crypto.getRandomValues`): for ES256 the private scalar,
    /// for EdDSA the Ed25519 seed. The bytes are not kept; wipe your copy.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDpopKey`] for ES256 bytes that are zero or not below the P-256
    /// group order (one chance in about 2^32 for random bytes): draw new ones.
    pub fn from_random_bytes(algorithm: DpopAlgorithm, bytes: &[u8; 32]) -> Result<Self, Error> {
        Self::with_backend(backend::DEFAULT, algorithm, bytes)
    }

    /// A new key drawn from the operating system's random generator. Not on wasm32
    /// with `dpop-rustcrypto` (the browser's generator is reached through JavaScript):
    /// there, draw 32 bytes and use [`from_random_bytes`](Self::from_random_bytes).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDpopKey`] when the generator fails.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn generate_with_os_rng(algorithm: DpopAlgorithm) -> Result<Self, Error> {
        Self::generate_with(backend::DEFAULT, algorithm)
    }

    /// [`generate_with_os_rng`](Self::generate_with_os_rng) with `backend`.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) fn generate_with(
        backend: &Backend,
        algorithm: DpopAlgorithm,
    ) -> Result<Self, Error> {
        let failed = Error::InvalidDpopKey {
            reason: "the operating system's random generator failed; retry, or draw 32 \
                     bytes yourself and use DpopKey::from_random_bytes",
        };
        let fill = backend.os_random.ok_or(failed.clone())?;
        // ES256 refuses one draw in about 2^32: a few tries are plenty.
        for _ in 0..8 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            if !fill(&mut bytes[..]) {
                return Err(failed);
            }
            match Self::with_backend(backend, algorithm, &bytes) {
                Err(Error::InvalidDpopKey { .. }) => {}
                made => return made,
            }
        }
        Err(failed)
    }

    /// [`from_random_bytes`](Self::from_random_bytes) with `backend`.
    pub(crate) fn with_backend(
        backend: &Backend,
        algorithm: DpopAlgorithm,
        bytes: &[u8; 32],
    ) -> Result<Self, Error> {
        let signer = match algorithm {
            DpopAlgorithm::Es256 => (backend.es256)(bytes).ok_or(Error::InvalidDpopKey {
                reason: "the 32 bytes are zero or not below the P-256 group order (one \
                         chance in about 2^32 for random bytes); draw new bytes",
            })?,
            DpopAlgorithm::EdDsa => (backend.ed25519)(bytes).ok_or(Error::InvalidDpopKey {
                reason: "the backend refused the Ed25519 seed",
            })?,
        };
        Ok(Self::new(backend, signer))
    }

    /// Loads a key from an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`)
    /// holding a P-256 or an Ed25519 private key, as
    /// [`to_pkcs8_pem`](Self::to_pkcs8_pem) writes it and as `openssl genpkey
    /// -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (or `-algorithm ED25519`) makes
    /// it. The algorithm follows from the key.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDpopKey`], saying what the text holds instead when it can tell:
    /// no PEM, a public key, a SEC1 `EC PRIVATE KEY` or an encrypted key (with the
    /// `openssl` command that converts it), an RSA key, an EC key on another curve.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        Self::from_pem_with(backend::DEFAULT, pem)
    }

    /// [`from_pkcs8_pem`](Self::from_pkcs8_pem) with `backend`.
    pub(crate) fn from_pem_with(backend: &Backend, pem: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidDpopKey { reason };
        if pem.len() > MAX_PEM {
            return Err(invalid("the text is far too long to be a PEM private key"));
        }
        let der = pem_private_key(pem).map_err(invalid)?;
        match (backend.from_pkcs8)(&der) {
            Some(signer) => Ok(Self::new(backend, signer)),
            None => Err(invalid(why_not_a_dpop_key(&der))),
        }
    }

    /// The key as an unencrypted PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), to store
    /// with the session. A secret: it prints as `[redacted]`, and is wiped when
    /// dropped.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidDpopKey`] if the backend cannot encode it (it never should).
    pub fn to_pkcs8_pem(&self) -> Result<Secret, Error> {
        let der = self.inner.signer.pkcs8().ok_or(Error::InvalidDpopKey {
            reason: "the backend could not encode it as PKCS#8",
        })?;
        Ok(Secret::from(pem_encode("PRIVATE KEY", &der)))
    }

    /// The signature algorithm.
    #[must_use]
    pub fn algorithm(&self) -> DpopAlgorithm {
        self.inner.algorithm
    }

    /// The public key as a JWK (RFC 7517) in JSON, with only the members RFC 7638
    /// requires, in its order: `{"crv":"P-256","kty":"EC","x":"…","y":"…"}` or
    /// `{"crv":"Ed25519","kty":"OKP","x":"…"}`. This is the `jwk` of every proof's
    /// header.
    #[must_use]
    pub fn public_jwk(&self) -> &str {
        &self.inner.jwk
    }

    /// The RFC 7638 thumbprint of the public key (base64url SHA-256 of
    /// [`public_jwk`](Self::public_jwk)): the `jkt` a server binds tokens to, and the
    /// `dpop_jkt` of an authorization request (RFC 9449 §10).
    #[must_use]
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The key from a backend's signer.
    fn new(backend: &Backend, signer: Box<dyn Signer>) -> Self {
        let public = signer.public();
        let (algorithm, jwk) = match public {
            Public::P256 { x, y } => (
                DpopAlgorithm::Es256,
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y)
                ),
            ),
            Public::Ed25519(x) => (
                DpopAlgorithm::EdDsa,
                format!(
                    r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(x)
                ),
            ),
        };
        let thumbprint = URL_SAFE_NO_PAD.encode((backend.sha256)(jwk.as_bytes()));
        let header = format!(
            r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{jwk}}}"#,
            algorithm.name()
        );
        let mut encoded = URL_SAFE_NO_PAD.encode(header);
        encoded.push('.');
        Self {
            inner: Arc::new(Inner {
                algorithm,
                signer,
                sha256: backend.sha256,
                jwk,
                thumbprint,
                header: encoded,
            }),
        }
    }

    /// The base64url protected header and its `.`.
    pub(super) fn encoded_header(&self) -> &str {
        &self.inner.header
    }

    /// Signs `message`.
    pub(super) fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        self.inner.signer.sign(message)
    }

    /// SHA-256, with this key's backend.
    pub(super) fn sha256(&self, data: &[u8]) -> [u8; 32] {
        (self.inner.sha256)(data)
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.inner.jwk == other.inner.jwk
    }
}

impl Eq for DpopKey {}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("algorithm", &self.inner.algorithm)
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint (base64url SHA-256) of any public JWK: `EC` (`crv`, `x`,
/// `y`), `OKP` (`crv`, `x`) or `RSA` (`e`, `n`), the required members in
/// lexicographic order. For a server, or a test, reading the `jwk` of a proof; a
/// [`DpopKey`] has its own ([`DpopKey::thumbprint`]).
///
/// ```
/// use silent_refresh_oauth2::dpop::jwk_thumbprint;
///
/// // The key of RFC 9449's examples, and the `jkt` they give for it (§6.1).
/// let jwk = serde_json::json!({
///     "kty": "EC", "crv": "P-256",
///     "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
///     "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
/// });
/// assert_eq!(jwk_thumbprint(&jwk)?, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidDpopKey`] when `jwk` is not an object with a known `kty` and its
/// required members as strings.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidDpopKey { reason };
    let member = |name: &str| {
        jwk.get(name).and_then(Value::as_str).ok_or(invalid(
            "a required member of the JWK is missing or not a string",
        ))
    };
    let required: &[&str] = match member("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return Err(invalid("the JWK's kty is not EC, OKP or RSA")),
    };
    // RFC 7638 §3.3: no whitespace, members in this order, strings as JSON writes them.
    let mut canonical = String::from("{");
    for (at, name) in required.iter().enumerate() {
        if at > 0 {
            canonical.push(',');
        }
        canonical.push_str(&Value::from(*name).to_string());
        canonical.push(':');
        canonical.push_str(&Value::from(member(name)?).to_string());
    }
    canonical.push('}');
    Ok(URL_SAFE_NO_PAD.encode((backend::DEFAULT.sha256)(canonical.as_bytes())))
}

/// The DER of the `PRIVATE KEY` block of a PEM text (RFC 7468), or why there is none.
fn pem_private_key(pem: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let mut labels = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + "-----BEGIN ".len()..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = &after[..label_end];
        let body = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body.find(&end_marker) else {
            return Err("a PEM block has no END line");
        };
        if label == "PRIVATE KEY" {
            let text: Zeroizing<String> = Zeroizing::new(
                body[..end]
                    .chars()
                    .filter(|c| !c.is_ascii_whitespace())
                    .collect(),
            );
            return STANDARD
                .decode(text.as_bytes())
                .map(Zeroizing::new)
                .map_err(|_| "the PEM block's base64 does not decode");
        }
        labels.push(label);
        rest = &body[end + end_marker.len()..];
    }
    Err(match labels.first().copied() {
        None => "it is not PEM text: no `-----BEGIN PRIVATE KEY-----` line",
        Some("EC PRIVATE KEY") => {
            "it is a SEC1 `EC PRIVATE KEY`, not PKCS#8; convert it with \
             `openssl pkcs8 -topk8 -nocrypt -in key.pem`"
        }
        Some("ENCRYPTED PRIVATE KEY") => {
            "it is an encrypted PKCS#8 key; decrypt it with \
             `openssl pkcs8 -in key.pem -out plain.pem`"
        }
        Some("PUBLIC KEY") => "it is a public key; the private key is needed to sign proofs",
        Some("RSA PRIVATE KEY") => "it is an RSA key; DPoP keys here are P-256 or Ed25519",
        Some(_) => "it holds no `PRIVATE KEY` block",
    })
}

/// Why a PKCS#8 document that no backend read is not a DPoP key, from the OIDs in it.
fn why_not_a_dpop_key(der: &[u8]) -> &'static str {
    const RSA: [u8; 11] = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    const EC: [u8; 9] = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let holds = |oid: &[u8]| der.windows(oid.len()).any(|w| w == oid);
    if holds(&RSA) {
        "it is an RSA key; DPoP keys here are P-256 (ES256) or Ed25519"
    } else if holds(&EC) && !holds(&P256) {
        "it is an EC key on another curve than P-256"
    } else {
        "it is not a valid P-256 or Ed25519 PKCS#8 private key"
    }
}

/// PEM armour (RFC 7468): base64 in lines of 64, in a buffer sized once.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = Zeroizing::new(STANDARD.encode(der));
    let mut pem =
        String::with_capacity(2 * (label.len() + 17) + body.len() + body.len().div_ceil(64) + 1);
    pem.push_str("-----BEGIN ");
    pem.push_str(label);
    pem.push_str("-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 is ASCII.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END ");
    pem.push_str(label);
    pem.push_str("-----\n");
    pem
}
