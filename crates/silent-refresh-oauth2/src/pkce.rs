//! Proof Key for Code Exchange (RFC 7636) with the `S256` method: a code verifier
//! made from random bytes given as input, and its challenge.
//!
//! ```
//! use silent_refresh_oauth2::Pkce;
//!
//! // RFC 7636 Appendix B.
//! let pkce = Pkce::from_random([
//!     116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212,
//!     37, 77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
//! ]);
//! assert_eq!(pkce.verifier().expose(), "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk");
//! assert_eq!(pkce.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
//! assert_eq!(pkce.method(), "S256");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::Error;
use silent_refresh::Secret;

/// A code verifier (secret: sent only to the token endpoint, with the code) and its
/// `S256` challenge (sent in the authorization URL). `Debug` shows the challenge only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkce {
    verifier: Secret,
    challenge: String,
}

impl Pkce {
    /// The verifier made of 32 random bytes (from the operating system's generator),
    /// base64url without padding: 43 characters, 256 bits (RFC 7636 §4.1, §7.1).
    #[must_use]
    pub fn from_random(random: [u8; 32]) -> Self {
        let random = Zeroizing::new(random);
        // 43 characters: the buffer is sized once, so no copy is left behind.
        let mut verifier = String::with_capacity(43);
        URL_SAFE_NO_PAD.encode_string(random.as_slice(), &mut verifier);
        Self::from_valid(Secret::from(verifier))
    }

    /// A verifier given whole (a test vector, or one kept across a restart).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] unless it is 43 to 128 characters of `A-Z a-z 0-9 - .
    /// _ ~` (RFC 7636 §4.1).
    pub fn from_verifier(verifier: impl Into<Secret>) -> Result<Self, Error> {
        let verifier = verifier.into();
        let text = verifier.expose();
        let valid = (43..=128).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !valid {
            return Err(Error::InvalidConfig(
                "a PKCE code verifier is 43 to 128 characters of A-Z, a-z, 0-9, -, ., _ and ~ \
                 (RFC 7636 §4.1)",
            ));
        }
        Ok(Self::from_valid(verifier))
    }

    fn from_valid(verifier: Secret) -> Self {
        let digest = Sha256::digest(verifier.expose().as_bytes());
        Self {
            challenge: URL_SAFE_NO_PAD.encode(digest),
            verifier,
        }
    }

    /// The code verifier (a secret: sent only with the code, to the token endpoint).
    #[must_use]
    pub fn verifier(&self) -> &Secret {
        &self.verifier
    }

    /// The code challenge: `BASE64URL(SHA256(verifier))`.
    #[must_use]
    pub fn challenge(&self) -> &str {
        &self.challenge
    }

    /// The `code_challenge_method`: always `S256` (`plain` is never sent).
    #[must_use]
    pub const fn method(&self) -> &'static str {
        "S256"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verifier_is_43_url_safe_characters() {
        for byte in [0u8, 0xff, 0x3e, 0x3f] {
            let pkce = Pkce::from_random([byte; 32]);
            let verifier = pkce.verifier().expose();
            assert_eq!(verifier.len(), 43);
            assert!(Pkce::from_verifier(verifier).is_ok(), "{verifier}");
            assert_eq!(pkce.challenge().len(), 43);
            assert!(!pkce.challenge().contains(['+', '/', '=']));
        }
        assert_ne!(
            Pkce::from_random([1; 32]).challenge(),
            Pkce::from_random([2; 32]).challenge()
        );
    }

    #[test]
    fn verifiers_outside_the_rfc_are_refused() {
        for bad in ["short", &"a".repeat(129), &format!("{}+", "a".repeat(42))] {
            assert!(Pkce::from_verifier(bad).is_err(), "{bad}");
        }
        assert!(Pkce::from_verifier("a".repeat(128)).is_ok());
    }

    #[test]
    fn debug_shows_the_challenge_not_the_verifier() {
        let pkce = Pkce::from_random([7; 32]);
        let printed = format!("{pkce:?}");
        assert!(!printed.contains(pkce.verifier().expose()), "{printed}");
        assert!(printed.contains(pkce.challenge()), "{printed}");
    }
}
