//! A session's DPoP state, shared by everything that sends for it: its key (which
//! belongs to the session, and changes only with it) and the nonces the servers gave.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use http::HeaderMap;
use silent_refresh::Secret;

use super::{DpopKey, NonceCache, ProofInput};
use crate::Error;

/// A session's DPoP key and nonce cache, shared (cheap to clone; every clone is the same
/// state) by the refresher (proofs at the token endpoint), the HTTP integrations (proofs
/// at the resources) and the source (which stores the key with the session, and adopts
/// the key of a session it loads or takes over from another process).
///
/// Sans-IO like the rest of the codec: a proof takes the wall clock and the `jti`
/// bytes as arguments.
///
/// ```
/// use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, DpopSession};
///
/// let session = DpopSession::new(DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[7; 32])?);
/// let proof = session.proof("POST", "https://as.example.com/token", None, 1_700_000_000, [1; 16])?;
/// assert_eq!(proof.split('.').count(), 3);
/// // Another process's stored session, with its key: adopted, and proofs follow it.
/// let other = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[9; 32])?;
/// assert!(session.adopt_pem(&other.to_pkcs8_pem()?)?);
/// assert_eq!(session.thumbprint(), other.thumbprint());
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
#[derive(Clone)]
pub struct DpopSession {
    inner: Arc<Inner>,
}

struct Inner {
    key: RwLock<DpopKey>,
    nonces: Mutex<NonceCache>,
}

impl DpopSession {
    /// A session proving with `key`.
    #[must_use]
    pub fn new(key: DpopKey) -> Self {
        Self {
            inner: Arc::new(Inner {
                key: RwLock::new(key),
                nonces: Mutex::new(NonceCache::new()),
            }),
        }
    }

    /// The key proofs are signed with now.
    #[must_use]
    pub fn key(&self) -> DpopKey {
        self.inner
            .key
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The RFC 7638 thumbprint of the key (the `jkt` the server binds tokens to).
    #[must_use]
    pub fn thumbprint(&self) -> String {
        self.key().thumbprint().to_owned()
    }

    /// The key as PKCS#8 PEM, to store with the session.
    ///
    /// # Errors
    ///
    /// The backend could not write it ([`Error::InvalidDpopKey`]).
    pub fn key_pem(&self) -> Result<Secret, Error> {
        self.key().to_pkcs8_pem()
    }

    /// Adopts the key of a stored session (PKCS#8 PEM): the session's tokens are bound
    /// to it, so every proof from now on is signed with it. Returns whether it changed.
    ///
    /// # Errors
    ///
    /// The PEM is not a key this codec signs with ([`Error::InvalidDpopKey`]); the
    /// current key is kept.
    pub fn adopt_pem(&self, pem: &Secret) -> Result<bool, Error> {
        let key = DpopKey::from_pkcs8_pem(pem.expose())?;
        let mut current = self
            .inner
            .key
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if *current == key {
            return Ok(false);
        }
        *current = key;
        Ok(true)
    }

    /// A proof for a request (`method`, `url`), with the nonce the URL's origin gave
    /// last, signed at `now_unix` with a unique `jti`; with `access_token`, the proof of
    /// a resource request (its `ath`).
    ///
    /// # Errors
    ///
    /// As [`DpopKey::proof`].
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&Secret>,
        now_unix: u64,
        jti: [u8; 16],
    ) -> Result<String, Error> {
        let nonce = self
            .inner
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .map(str::to_owned);
        let mut input = ProofInput::new(method, url, now_unix, jti).nonce(nonce.as_deref());
        if let Some(token) = access_token {
            input = input.access_token(token);
        }
        self.key().proof(&input)
    }

    /// Adds a proof for `request` (its method and URL; with `access_token`, a resource
    /// request's `ath`) in its `DPoP` header, signed at `now_unix` with `jti`.
    ///
    /// # Errors
    ///
    /// As [`proof`](Self::proof), and a proof that cannot be a header value
    /// ([`Error::DpopProof`]).
    pub fn prove<B>(
        &self,
        request: &mut http::Request<B>,
        access_token: Option<&Secret>,
        now_unix: u64,
        jti: [u8; 16],
    ) -> Result<(), Error> {
        let url = request.uri().to_string();
        let proof = self.proof(request.method().as_str(), &url, access_token, now_unix, jti)?;
        let value = http::HeaderValue::from_str(&proof).map_err(|_| Error::DpopProof {
            reason: "the proof is not a valid header value",
        })?;
        request.headers_mut().insert(super::DPOP, value);
        Ok(())
    }

    /// Reads the `DPoP-Nonce` of any answer from `url`'s origin (successes included).
    pub fn observe(&self, url: &str, headers: &HeaderMap) {
        self.inner
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .observe(url, headers);
    }

    /// Keeps `nonce` for `url`'s origin (from a challenge).
    pub fn use_nonce(&self, url: &str, nonce: &str) {
        self.inner
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url, nonce);
    }
}

impl fmt::Debug for DpopSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopSession")
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}
