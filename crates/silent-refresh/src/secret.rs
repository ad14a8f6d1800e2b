//! A string that must never be printed: access tokens and refresh credentials.

use std::fmt;

use zeroize::Zeroize;

/// A secret string (an access token or a refresh credential).
///
/// `Debug` and `Display` print `[redacted]`; the bytes are wiped when the value is
/// dropped (see below for what else is wiped, and what is not). Read it with
/// [`Secret::expose`] only where it leaves the process (an HTTP header, a form body, a
/// store).
///
/// # What is wiped from memory, and what is not
///
/// The crate overwrites with zeros the secrets it owns before their memory is freed
/// ([`zeroize`]), and writes each secret it builds into a buffer allocated once at its
/// final size, so that no reallocation leaves a stale copy in freed memory. That is:
///
/// - every `Secret` (access tokens, refresh credentials, client secrets, in the
///   machine, in tokens, in actions, in the codec), and each clone of one, when dropped;
/// - the value of [`AccessToken::authorization`](crate::AccessToken::authorization)
///   (`Bearer …`), a `Zeroizing<String>`, when dropped;
/// - in the OAuth 2.0 codec (crate `silent-refresh-oauth2`), the
///   `client_id:client_secret` pair and its base64 form while the `Basic` header is
///   built; the form body (refresh credential, client secret) is written once into its
///   final buffer, which moves into the request without a copy (or is wiped if the
///   request cannot be built);
/// - in the codec, the fields read from a token endpoint's answer: the access token and
///   refresh credential move into `Secret`s without a copy, and every other string of
///   the body (`id_token`, an `error_description` echoing a credential, field names)
///   is wiped once read, also when the body turns out malformed part-way; form bodies
///   are decoded into buffers sized once;
/// - server text quoted in an error, while it is being redacted.
///
/// Not wiped, because this crate does not own the memory or cannot reach it:
///
/// - the request the codec returns: its body (`Vec<u8>`) and its `Authorization`
///   header (an `http::HeaderValue`, marked sensitive so that it is not printed) belong
///   to the caller; the adapters hand them to the HTTP client, which copies them into
///   its own buffers (reqwest/hyper, ureq, rustls) and frees them without wiping;
/// - the header value a driver makes from `authorization()` (`HeaderValue::from_str`
///   copies into memory that is never wiped), and the HTTP client's copies of it;
/// - the response body: the caller's buffer (and the HTTP client's) is only borrowed by
///   the codec; JSON strings written with escapes (`\/`, `\u…`) pass through
///   `serde_json`'s scratch buffer, and strings nested inside a body that fails to parse
///   part-way are dropped by `serde_json` itself, unwiped;
/// - a `Secret` made from a `&str` or serialized with `serde` (the original string, the
///   store's copies, files and databases are the program's);
/// - copies the compiler makes on the stack or in registers, memory swapped to disk or
///   written to a core dump (nothing is locked in memory).
///
/// Wiping narrows the window in which a freed secret can be read from a process's
/// memory; it does not protect a process whose memory an attacker can already read.
#[derive(Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself. Never log or print what this returns.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is the empty string.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Secret {
    /// Serializes the secret itself: only for the program's own token store.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "[redacted]");
        assert_eq!(format!("{secret}"), "[redacted]");
        assert_eq!(secret.expose(), "hunter2");
    }
}
