//! The native backend: aws-lc-rs (feature `dpop`), the crypto library rustls and
//! jsonwebtoken already build. ECDSA nonces are drawn inside aws-lc, as ECDSA requires;
//! nothing the codec decides depends on them.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SystemRandom, fill};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
};
use zeroize::Zeroizing;

use super::{Backend, Public, Signer};

/// aws-lc-rs, as a [`Backend`].
pub(crate) const BACKEND: Backend = Backend {
    name: "aws-lc-rs",
    es256,
    ed25519,
    from_pkcs8,
    sha256,
    os_random: Some(os_random),
};

/// The DER of an RFC 5915 `ECPrivateKey` on P-256, up to its private scalar.
const EC_PRIVATE_KEY_HEAD: [u8; 7] = [0x30, 0x31, 0x02, 0x01, 0x01, 0x04, 0x20];
/// Its tail after the scalar: `[0]` the named curve `prime256v1`. aws-lc computes the
/// public point from the scalar.
const EC_PRIVATE_KEY_TAIL: [u8; 12] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
];

fn es256(scalar: &[u8; 32]) -> Option<Box<dyn Signer>> {
    let mut der = Zeroizing::new(Vec::with_capacity(
        EC_PRIVATE_KEY_HEAD.len() + 32 + EC_PRIVATE_KEY_TAIL.len(),
    ));
    der.extend_from_slice(&EC_PRIVATE_KEY_HEAD);
    der.extend_from_slice(scalar);
    der.extend_from_slice(&EC_PRIVATE_KEY_TAIL);
    let key = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).ok()?;
    Some(Box::new(Es256(key)))
}

fn ed25519(seed: &[u8; 32]) -> Option<Box<dyn Signer>> {
    Ed25519KeyPair::from_seed_unchecked(seed)
        .ok()
        .map(|key| Box::new(Ed25519(key)) as Box<dyn Signer>)
}

fn from_pkcs8(der: &[u8]) -> Option<Box<dyn Signer>> {
    if let Ok(key) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
        return Some(Box::new(Es256(key)));
    }
    Ed25519KeyPair::from_pkcs8(der)
        .ok()
        .map(|key| Box::new(Ed25519(key)) as Box<dyn Signer>)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest(&SHA256, data).as_ref());
    out
}

fn os_random(buffer: &mut [u8]) -> bool {
    fill(buffer).is_ok()
}

/// An ES256 key.
struct Es256(EcdsaKeyPair);

impl Signer for Es256 {
    fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        // aws-lc-rs ignores the generator given (it draws the ECDSA nonce itself).
        let signature = self.0.sign(&SystemRandom::new(), message).ok()?;
        signature.as_ref().try_into().ok()
    }

    fn pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        let document = self.0.to_pkcs8v1().ok()?;
        Some(Zeroizing::new(document.as_ref().to_vec()))
    }

    fn public(&self) -> Public {
        // The uncompressed point: 0x04, then x and y.
        let point = self.0.public_key().as_ref();
        let mut x = [0; 32];
        let mut y = [0; 32];
        if point.len() == 65 {
            x.copy_from_slice(&point[1..33]);
            y.copy_from_slice(&point[33..]);
        }
        Public::P256 { x, y }
    }
}

/// An Ed25519 key.
struct Ed25519(Ed25519KeyPair);

impl Signer for Ed25519 {
    fn sign(&self, message: &[u8]) -> Option<[u8; 64]> {
        self.0.try_sign(message).ok()?.as_ref().try_into().ok()
    }

    fn pkcs8(&self) -> Option<Zeroizing<Vec<u8>>> {
        let document = self.0.to_pkcs8v1().ok()?;
        Some(Zeroizing::new(document.as_ref().to_vec()))
    }

    fn public(&self) -> Public {
        Public::Ed25519(self.0.public_key().as_ref().try_into().unwrap_or([0; 32]))
    }
}
