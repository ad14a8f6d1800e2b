//! Signing keys for the examples: RS256 and ES256 key pairs generated at run time
//! (none is ever committed), and the public key of a PEM private key, which the
//! embedded server checks client and grant assertions with.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, DecodingKey};

/// A public key and the algorithm it verifies.
#[derive(Clone)]
pub struct PublicKey {
    /// `RS256` or `ES256`.
    pub algorithm: Algorithm,
    /// The key, for `jsonwebtoken::decode`.
    pub key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key pair: the private key as PKCS#8 PEM (a secret: `Debug` hides it) and its
/// public key.
pub struct KeyPair {
    /// `-----BEGIN PRIVATE KEY-----…`
    pub private_pem: String,
    /// The matching public key.
    pub public: PublicKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("private_pem", &"[redacted]")
            .field("public", &self.public)
            .finish()
    }
}

/// A new P-256 key pair (ES256).
///
/// # Errors
///
/// When the crypto library cannot make one.
pub fn generate_es256() -> Result<KeyPair, String> {
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
        .map_err(|_| "could not generate a P-256 key".to_owned())?;
    let pkcs8 = pair
        .to_pkcs8v1()
        .map_err(|_| "could not encode the P-256 key".to_owned())?;
    let private_pem = pem("PRIVATE KEY", pkcs8.as_ref());
    let public = public_key_of(&private_pem)?;
    Ok(KeyPair {
        private_pem,
        public,
    })
}

/// A new 2048-bit RSA key pair (RS256).
///
/// # Errors
///
/// When the crypto library cannot make one.
pub fn generate_rs256() -> Result<KeyPair, String> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
        .map_err(|_| "could not generate an RSA key".to_owned())?;
    let pkcs8: aws_lc_rs::encoding::Pkcs8V1Der<'_> = pair
        .as_der()
        .map_err(|_| "could not encode the RSA key".to_owned())?;
    let private_pem = pem("PRIVATE KEY", pkcs8.as_ref());
    let public = public_key_of(&private_pem)?;
    Ok(KeyPair {
        private_pem,
        public,
    })
}

/// The public key of a PEM private key: PKCS#8 P-256 or RSA, or PKCS#1 RSA.
///
/// # Errors
///
/// When the PEM holds none of those.
pub fn public_key_of(private_pem: &str) -> Result<PublicKey, String> {
    let der = pem_body(private_pem).ok_or("the private key file is not PEM")?;
    if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
        return Ok(PublicKey {
            algorithm: Algorithm::ES256,
            key: DecodingKey::from_ec_der(pair.public_key().as_ref()),
        });
    }
    let rsa = aws_lc_rs::rsa::KeyPair::from_pkcs8(&der)
        .or_else(|_| aws_lc_rs::rsa::KeyPair::from_der(&der))
        .map_err(|_| "the private key is neither P-256 nor RSA (PKCS#8 or PKCS#1)".to_owned())?;
    Ok(PublicKey {
        algorithm: Algorithm::RS256,
        key: DecodingKey::from_rsa_der(rsa.public_key().as_ref()),
    })
}

/// DER as PEM with `label`, 64 characters a line.
fn pem(label: &str, der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first PEM block.
fn pem_body(text: &str) -> Option<Vec<u8>> {
    let start = text.find("-----BEGIN ")?;
    let after = &text[start..];
    let body_start = after.find('\n')? + 1;
    let end = after.find("-----END ")?;
    let body: String = after
        .get(body_start..end)?
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh_oauth2::SigningKey;

    #[test]
    fn generated_keys_load_as_signing_keys_and_match_their_public_key() {
        for pair in [generate_es256(), generate_rs256()] {
            let pair = pair.expect("a key pair");
            let key = SigningKey::from_pem(&pair.private_pem).expect("the core loads it");
            let again = public_key_of(&pair.private_pem).expect("public key");
            assert_eq!(again.algorithm, pair.public.algorithm);
            assert_eq!(
                key.algorithm().name(),
                format!("{:?}", pair.public.algorithm)
            );
            assert!(!format!("{pair:?}").contains("BEGIN"));
        }
    }
}
