//! The one error type of this crate.

/// A grant, a refresher's settings, a signing key or an origin allow-list that can
/// never work, refused when it is built, and what to do about it; and how a step of
/// starting a session (discovery, the device flow, the authorization code flow,
/// revocation) failed. Never contains a secret, nor a URL's query: URLs appear only as
/// their origin, except the public URLs of discovery (metadata documents, issuers,
/// a redirect's `Location`), which appear as origin and path.
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
    /// The authorization server's metadata (RFC 8414, OpenID Connect Discovery) could
    /// not be fetched: the server answered with an HTTP error or a redirect (never
    /// followed). `url` is the metadata URL (origin and path).
    #[error(
        "no authorization server metadata at {url}: {reason}; check the issuer URL (it is \
         the `issuer` the server's documentation gives, such as `https://login.example.com`)"
    )]
    MetadataUnavailable {
        /// The metadata URL, origin and path.
        url: String,
        /// What came back instead (the status, a redirect's `Location` as origin and
        /// path), and whether retrying may help.
        reason: String,
        /// Whether the failure may pass (a `5xx`, a `429`): retrying later may help.
        transient: bool,
    },
    /// The metadata document was served but cannot be used: not JSON, a missing or
    /// malformed field, an endpoint that is not `https`.
    #[error("the authorization server metadata at {url} is not usable: {reason}")]
    InvalidMetadata {
        /// The metadata URL, origin and path.
        url: String,
        /// What is wrong with the document, naming the field.
        reason: String,
    },
    /// The metadata's `issuer` is not the issuer it was fetched for (RFC 8414 §3.3,
    /// OpenID Connect Discovery §4.3): its data must not be used.
    #[error(
        "the authorization server metadata at {url} is for the issuer `{found}`, not for \
         `{expected}` as configured; {hint}"
    )]
    IssuerMismatch {
        /// The metadata URL, origin and path.
        url: String,
        /// The issuer configured.
        expected: String,
        /// The `issuer` in the document (cleaned: control characters removed, cut).
        found: String,
        /// What to do.
        hint: &'static str,
    },
    /// A sign-in step was refused or failed at the device authorization, token or
    /// revocation endpoint. The failure is classified as a refresh's is: transient
    /// (retrying may help), terminal (start the sign-in again) or misconfigured (its
    /// message names what to fix); the server's words are cleaned of secrets.
    #[error("{}", .0.message)]
    Endpoint(silent_refresh::RefreshFailure),
    /// The user (or the authorization server on their behalf) denied the sign-in:
    /// `access_denied` from the device flow's token endpoint or in the authorization
    /// code flow's redirect.
    #[error(
        "the user denied the sign-in request{detail}; start the sign-in again and approve it \
         to go on"
    )]
    AccessDenied {
        /// What the server said, in parentheses, cleaned; empty if nothing.
        detail: String,
    },
    /// The device code expired before the user approved it (RFC 8628 `expired_token`,
    /// or its `expires_in` passed while polling).
    #[error(
        "the device code expired before the user approved the sign-in; start the sign-in \
         again (a new code) and approve it sooner"
    )]
    DeviceCodeExpired,
    /// The `state` of the authorization code flow's redirect is missing or is not the
    /// one sent: the redirect is not the answer to this sign-in (a stale browser tab,
    /// or a forged request, RFC 6749 §10.12). Nothing in it was used.
    #[error(
        "the sign-in redirect's `state` {0}: it is not the answer to this sign-in (an old \
         browser tab, or a forged request); start the sign-in again"
    )]
    StateMismatch(&'static str),
    /// The `iss` of the authorization code flow's redirect is not the expected issuer,
    /// or is missing while the server says it always sends one (RFC 9207): the answer
    /// may come from another authorization server (a mix-up attack). Nothing in it
    /// was used.
    #[error(
        "the sign-in redirect {what}, but the issuer is `{expected}`: the answer may come \
         from another authorization server; start the sign-in again, and check the issuer \
         if this repeats"
    )]
    AuthorizationIssuerMismatch {
        /// The issuer expected.
        expected: String,
        /// What the redirect said (the `iss` it holds, cleaned, or that it has none).
        what: String,
    },
    /// The authorization code flow's redirect holds an OAuth error other than
    /// `access_denied` (RFC 6749 §4.1.2.1), or no code.
    #[error("the sign-in did not complete: {reason}")]
    AuthorizationFailed {
        /// What the redirect said (its `error` and `error_description`, cleaned) and
        /// what to do.
        reason: String,
    },
    /// The revocation endpoint does not revoke this type of token
    /// (`unsupported_token_type`, RFC 7009 §2.2.1).
    #[error(
        "the revocation endpoint does not revoke {token_type}s (unsupported_token_type); the \
         token stays valid until it expires"
    )]
    UnsupportedTokenType {
        /// The type sent as `token_type_hint` (`refresh_token`, `access_token`).
        token_type: &'static str,
    },
}

impl Error {
    /// Whether retrying the same step later may succeed: a transient
    /// [`Endpoint`](Self::Endpoint) failure, or metadata that was unavailable for a
    /// reason that may pass.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Endpoint(failure) => failure.kind == silent_refresh::FailureKind::Transient,
            Self::MetadataUnavailable { transient, .. } => *transient,
            _ => false,
        }
    }
}
