//! The one error type of this crate.

/// A grant, a refresher's settings, a signing key or an origin allow-list that can
/// never work, refused when it is built, and what to do about it. Never contains a
/// secret, nor a URL's path or query: URLs appear only as their origin.
///
/// The adapters turn it into their own error: the origin variants into theirs (whose
/// messages name their builders), [`Error::InvalidConfig`] into the core's
/// `silent_refresh::Error::InvalidConfig` as before, and the rest wrapped as it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting of the grant or of the refresher makes no sense (a zero timeout, an
    /// extra parameter the codec sets itself, `private_key_jwt` without a key…); the
    /// reason names it.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A URL (a request's, or a token endpoint's) is not an absolute `http` or `https`
    /// URL with a host. The URL itself is not repeated: its path or query may hold
    /// secrets.
    #[error(
        "invalid URL: {reason}; give an absolute http or https URL, such as `https://host/path`"
    )]
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An origin given for an allow-list is not `scheme://host[:port]` (see
    /// [`Origin::parse`](crate::origin::Origin::parse)).
    #[error(
        "invalid origin{}: {reason}; give it as `https://host` or `https://host:port`",
        origin.as_deref().map(|o| format!(" `{o}`")).unwrap_or_default()
    )]
    InvalidOrigin {
        /// The origin (`scheme://host:port`) read from it, if any: never the text as
        /// given, which may hold a password, a path or a query.
        origin: Option<String>,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An origin allow-list is empty, so no request would ever get the token.
    #[error(
        "no origin was allowed, so no request would get the token; allow the API's origin, such as `https://api.example.com`"
    )]
    NoOrigin,
    /// An allowed origin, or a token URL, uses plain `http` to a host that is not
    /// loopback, without the user's opt-in: the token, or the refresh credential and
    /// the client secret, would cross the network in clear text.
    #[error(
        "refusing to send a token over plain http to {origin}; use https, or allow plain http explicitly if the network is trusted"
    )]
    InsecureHttp {
        /// The origin (`scheme://host:port`).
        origin: String,
    },
    /// A private key for signed assertions (feature `jwt`) does not parse or cannot
    /// sign: reported when the key is loaded, before any exchange.
    #[error(
        "the private key is not a usable {expected} key in PEM ({reason}); give an unencrypted \
         PKCS#8 file (`-----BEGIN PRIVATE KEY-----`; for RSA also `BEGIN RSA PRIVATE KEY`), \
         RSA of at least 2048 bits or EC on P-256"
    )]
    InvalidKey {
        /// The kind of key that was expected (`RSA`, `P-256 EC`, `RSA or P-256 EC`).
        expected: &'static str,
        /// Why it was refused (never the key material).
        reason: &'static str,
    },
    /// A DPoP key (feature `dpop` or `dpop-rustcrypto`) that cannot be made, loaded
    /// or read: random bytes that are not a P-256 private key, a PEM that is not an
    /// unencrypted PKCS#8 P-256 or Ed25519 key, a JWK without its members. The reason
    /// says which, and never quotes the key.
    #[error(
        "the DPoP key is not usable ({reason}); give an unencrypted PKCS#8 PEM \
         (`-----BEGIN PRIVATE KEY-----`) of a P-256 or Ed25519 key, or generate a new key"
    )]
    InvalidDpopKey {
        /// Why it was refused (never the key material).
        reason: &'static str,
    },
    /// A DPoP proof that cannot be made from the input given (an invalid method or
    /// nonce); the reason names it. An invalid URL is [`Error::InvalidUrl`].
    #[error("cannot make a DPoP proof: {reason}")]
    DpopProof {
        /// What is wrong with the input.
        reason: &'static str,
    },
}
