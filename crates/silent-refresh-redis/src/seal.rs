//! Encryption of the stored session with a key the program provides (optional):
//! XChaCha20-Poly1305, a fresh random nonce per save, the session key's name as
//! associated data (a sealed session copied under another key does not open).

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

use crate::error::Error;

/// What a sealed session starts with; a plain one starts with `{`.
const SEALED: &[u8] = b"silent-refresh/sealed/1:";
const NONCE_LEN: usize = 24;

/// A 32-byte key that encrypts the session before it reaches Redis. Keep it out of
/// Redis (an environment variable, a secret manager, a file only this program reads).
/// Prints as `[redacted]`.
#[derive(Clone)]
pub struct EncryptionKey(Zeroizing<[u8; 32]>);

impl EncryptionKey {
    /// A key from its 32 bytes.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEncryptionKey`] when `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| Error::InvalidEncryptionKey { len: bytes.len() })?;
        Ok(Self(Zeroizing::new(key)))
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey([redacted])")
    }
}

/// Why a stored value did not open.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// Sealed, but this store has no key.
    NoKey,
    /// Plain, but this store seals (a session written without encryption is not
    /// trusted when encryption is on).
    NotSealed,
    /// Sealed with another key, under another key name, or damaged.
    Damaged,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::NoKey => "it is encrypted, and this store was given no encryption key",
            OpenError::NotSealed => {
                "it is not encrypted, and this store encrypts: delete it, or build the store \
                 without an encryption key"
            }
            OpenError::Damaged => {
                "it does not decrypt with this store's key (another key, another Redis key, \
                 or damaged)"
            }
        })
    }
}

/// Seals `plain` for the Redis key `name` (or passes it through without a key).
pub(crate) fn seal(
    key: Option<&EncryptionKey>,
    name: &str,
    plain: Zeroizing<Vec<u8>>,
) -> Result<Zeroizing<Vec<u8>>, String> {
    let Some(key) = key else {
        return Ok(plain);
    };
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|error| format!("no random nonce: {error}"))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&key.0[..])
        .map_err(|_| "the encryption key has the wrong length".to_owned())?;
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: name.as_bytes(),
            },
        )
        .map_err(|_| "encryption failed".to_owned())?;
    let mut out = Zeroizing::new(Vec::with_capacity(SEALED.len() + NONCE_LEN + sealed.len()));
    out.extend_from_slice(SEALED);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal`] wrote for the Redis key `name`.
pub(crate) fn open(
    key: Option<&EncryptionKey>,
    name: &str,
    stored: &[u8],
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let sealed = stored.strip_prefix(SEALED);
    match (key, sealed) {
        (None, None) => Ok(Zeroizing::new(stored.to_vec())),
        (None, Some(_)) => Err(OpenError::NoKey),
        (Some(_), None) => Err(OpenError::NotSealed),
        (Some(key), Some(sealed)) => {
            if sealed.len() < NONCE_LEN {
                return Err(OpenError::Damaged);
            }
            let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
            let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Damaged)?;
            let cipher =
                XChaCha20Poly1305::new_from_slice(&key.0[..]).map_err(|_| OpenError::Damaged)?;
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: name.as_bytes(),
                    },
                )
                .map(Zeroizing::new)
                .map_err(|_| OpenError::Damaged)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        EncryptionKey::from_bytes(&[byte; 32]).expect("32 bytes")
    }

    #[test]
    fn sealed_sessions_open_only_with_their_key_and_name() {
        let plain = Zeroizing::new(b"{\"access_token\":\"secret-at\"}".to_vec());
        let sealed = seal(Some(&key(1)), "app:s", plain.clone()).expect("sealed");
        assert!(sealed.starts_with(SEALED));
        assert!(
            !sealed.windows(9).any(|w| w == b"secret-at"),
            "the secret is not readable in Redis"
        );
        let opened = open(Some(&key(1)), "app:s", &sealed).expect("opens");
        assert_eq!(*opened, *plain);
        assert!(matches!(
            open(Some(&key(2)), "app:s", &sealed),
            Err(OpenError::Damaged)
        ));
        assert!(matches!(
            open(Some(&key(1)), "app:t", &sealed),
            Err(OpenError::Damaged)
        ));
        assert!(matches!(
            open(None, "app:s", &sealed),
            Err(OpenError::NoKey)
        ));
        assert!(matches!(
            open(Some(&key(1)), "app:s", &plain),
            Err(OpenError::NotSealed)
        ));
        let mut flipped = sealed.to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            open(Some(&key(1)), "app:s", &flipped),
            Err(OpenError::Damaged)
        ));
    }

    #[test]
    fn every_seal_has_its_own_nonce() {
        let plain = || Zeroizing::new(b"{}".to_vec());
        let a = seal(Some(&key(1)), "k", plain()).expect("sealed");
        let b = seal(Some(&key(1)), "k", plain()).expect("sealed");
        assert_ne!(*a, *b);
    }

    #[test]
    fn keys_are_32_bytes_and_never_printed() {
        assert!(matches!(
            EncryptionKey::from_bytes(&[0; 31]),
            Err(Error::InvalidEncryptionKey { len: 31 })
        ));
        assert_eq!(format!("{:?}", key(7)), "EncryptionKey([redacted])");
    }
}
