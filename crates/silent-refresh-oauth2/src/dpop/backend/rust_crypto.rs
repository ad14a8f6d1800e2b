//! The pure-Rust backend (feature `dpop-rustcrypto`): RustCrypto's `p256` (ECDSA with
//! RFC 6979 deterministic nonces, so signing draws no randomness) and `sha2`, and
//! dalek's Ed25519. Builds for wasm32-unknown-unknown.

use ed25519_dalek::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use sha2::Digest as _;
use zeroize::Zeroizing;

use super::{Backend, Public, Signer};

/// RustCrypto, as a [`Backend`].
pub(crate) const BACKEND: Backend = Backend {
    name: "RustCrypto (p256, ed25519-dalek)",
    es256,
    ed25519,
    from_pkcs8,
    sha256,
    os_random: OS_RANDOM,
};

#[cfg(not(target_arch = "wasm32"))]
const OS_RANDOM: Option<fn(&mut [u8]) -> bool> = Some(os_random);
#[cfg(target_arch = "wasm32")]
const OS_RANDOM: Option<fn(&mut [u8]) -> bool> = None;

fn es256(scalar: &[u8; 32]) -> Option<Box<dyn Signer>> {
    let key = p256::ecdsa::SigningKey::from_slice(scalar).ok()?;
    Some(Box::new(Es256(key)))
}

fn ed25519(seed: &[u8; 32]) -> Option<Box<dyn Signer>> {
    Some(Box::new(Ed25519(ed25519_dalek::SigningKey::from_bytes(
        seed,
    ))))
}

fn from_pkcs8(der: &[u8]) -> Option<Box<dyn Signer>> {
    if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_der(der) {
        return Some(Box::new(Es256(key)));
    }
    ed25519_dalek::SigningKey::from_pkcs8_der(der)
        .ok()
        .map(|key| Box::new(Ed25519(key)) as Box<dyn Signer>)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    sha2::Sha256::digest(data).into()
}

#[cfg(not(target_arch = "wasm32"))]
fn os_random(buffer: &mut [u8]) -> bool {
    getrandom::fill(buffer).is_ok()
}

/// An ES256 key (zeroized on drop by `p256`).
struct Es256(p256::ecdsa::SigningKey);

impl Signer for Es256 {
    fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        let signature: p256::ecdsa::Signature = self.0.try_sign(message).ok()?;
        signature.to_bytes().as_slice().try_into().ok()
    }

    fn pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        let document = self.0.to_pkcs8_der().ok()?;
        Some(Zeroizing::new(document.as_bytes().to_vec()))
    }

    fn public(&self) -> Public {
        let point = self.0.verifying_key().to_sec1_point(false);
        let coordinate =
            |c: Option<&[u8]>| -> [u8; 32] { c.and_then(|c| c.try_into().ok()).unwrap_or([0; 32]) };
        Public::P256 {
            x: coordinate(point.x().map(|x| x.as_slice())),
            y: coordinate(point.y().map(|y| y.as_slice())),
        }
    }
}

/// An Ed25519 key (zeroized on drop by dalek).
struct Ed25519(ed25519_dalek::SigningKey);

impl Signer for Ed25519 {
    fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        Some(self.0.try_sign(message).ok()?.to_bytes())
    }

    fn pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        let document = self.0.to_pkcs8_der().ok()?;
        Some(Zeroizing::new(document.as_bytes().to_vec()))
    }

    fn public(&self) -> Public {
        Public::Ed25519(self.0.verifying_key().to_bytes())
    }
}
