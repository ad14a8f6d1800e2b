//! The signing backends of DPoP proofs, behind one function table: aws-lc-rs (feature
//! `dpop`, native targets) and RustCrypto (feature `dpop-rustcrypto`, every target,
//! wasm32 included). [`DEFAULT`] is aws-lc-rs when it is built, RustCrypto otherwise.
//!
//! A backend only signs, hashes, and reads or writes PKCS#8 DER; the JWK, the
//! thumbprint, the PEM armour and the proof's bytes are made once, above it, so the
//! two backends cannot disagree on them.

use zeroize::Zeroizing;

#[cfg(all(feature = "dpop", not(target_arch = "wasm32")))]
mod aws_lc;
// Built but not the default when aws-lc-rs is there too: only the tests use it then.
#[cfg(feature = "dpop-rustcrypto")]
#[cfg_attr(all(feature = "dpop", not(target_arch = "wasm32")), allow(dead_code))]
mod rust_crypto;

#[cfg(all(
    feature = "dpop",
    target_arch = "wasm32",
    not(feature = "dpop-rustcrypto")
))]
compile_error!(
    "feature `dpop` signs with aws-lc-rs, which does not build for wasm32; \
     enable `dpop-rustcrypto` (pure Rust) instead"
);

/// The backend the public API signs with: aws-lc-rs when built (the faster, see the
/// benchmark), else RustCrypto.
#[cfg(all(feature = "dpop", not(target_arch = "wasm32")))]
pub(crate) const DEFAULT: &Backend = &aws_lc::BACKEND;
/// The backend the public API signs with: aws-lc-rs when built (the faster, see the
/// benchmark), else RustCrypto.
#[cfg(not(all(feature = "dpop", not(target_arch = "wasm32"))))]
pub(crate) const DEFAULT: &Backend = &rust_crypto::BACKEND;

/// Every backend built into this crate (both, with both features on a native target):
/// the tests run each.
#[cfg(test)]
pub(crate) fn all() -> Vec<&'static Backend> {
    [
        #[cfg(all(feature = "dpop", not(target_arch = "wasm32")))]
        &aws_lc::BACKEND,
        #[cfg(feature = "dpop-rustcrypto")]
        &rust_crypto::BACKEND,
    ]
    .to_vec()
}

/// A public key, as its JWK needs it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Public {
    /// A P-256 point: its affine coordinates, big-endian, 32 bytes each.
    P256 {
        /// `x`.
        x: [u8; 32],
        /// `y`.
        y: [u8; 32],
    },
    /// An Ed25519 public key (RFC 8032's encoding).
    Ed25519([u8; 32]),
}

/// A private key held by a backend. The backend wipes it when it is dropped
/// (aws-lc-rs frees its keys with `OPENSSL_cleanse`; RustCrypto's and dalek's signing
/// keys zeroize on drop).
pub(crate) trait Signer: Send + Sync {
    /// The JWS signature of `message`: ES256's `r || s`, or Ed25519's 64 bytes (both
    /// 64 bytes long). `None` when the backend fails, which it should never do.
    fn sign(&self, message: &[u8]) -> Option<[u8; 64]>;
    /// The key as an unencrypted PKCS#8 document (DER).
    fn pkcs8(&self) -> Option<Zeroizing<Vec<u8>>>;
    /// The public key.
    fn public(&self) -> Public;
}

/// What a backend does, as a table of functions.
pub(crate) struct Backend {
    /// Its name, for tests and benchmarks.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) name: &'static str,
    /// A P-256 key from its private scalar (big-endian); `None` when the bytes are zero
    /// or not below the group order.
    pub(crate) es256: fn(&[u8; 32]) -> Option<Box<dyn Signer>>,
    /// An Ed25519 key from its 32-byte seed (RFC 8032's private key).
    pub(crate) ed25519: fn(&[u8; 32]) -> Option<Box<dyn Signer>>,
    /// A key from an unencrypted PKCS#8 document: P-256 or Ed25519.
    pub(crate) from_pkcs8: fn(&[u8]) -> Option<Box<dyn Signer>>,
    /// SHA-256.
    pub(crate) sha256: fn(&[u8]) -> [u8; 32],
    /// Fills the buffer from the operating system's random generator (`None`: this
    /// build has none, as on wasm32 with the pure-Rust backend).
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) os_random: Option<fn(&mut [u8]) -> bool>,
}
