//! DPoP (RFC 9449): sender-constrained tokens. Features `dpop` (signed with aws-lc-rs)
//! or `dpop-rustcrypto` (pure Rust, for wasm32); the API is the same.
//!
//! A DPoP client holds a key pair ([`DpopKey`]) and sends, with every token request
//! and every request that carries a DPoP-bound access token, a `DPoP` header: a JWT
//! signed by that key for that one request (its method, its URL, the time, a unique
//! id, the server's nonce, and at a resource the access token's hash). The server
//! binds the tokens it issues to the key's thumbprint, so a stolen token is useless
//! without the key. Like the rest of this crate, this module is sans-IO: the wall
//! clock, the randomness (the key's bytes, each proof's `jti`) and the nonce come in
//! as arguments, and nothing is sent.
//!
//! ```
//! use silent_refresh::Secret;
//! use silent_refresh_oauth2::dpop::{self, DpopAlgorithm, DpopKey, NonceCache, ProofInput};
//!
//! let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[7; 32])?;
//! let mut nonces = NonceCache::new();
//!
//! // A token request: the proof goes in the `DPoP` header of the POST.
//! let token_url = "https://as.example.com/token";
//! let proof = key.proof(&ProofInput::new("POST", token_url, 1_700_000_000, [1; 16])
//!     .nonce(nonces.get(token_url)))?;
//! # let _ = proof;
//! // Every answer may carry the server's next nonce.
//! let mut answer_headers = http::HeaderMap::new();
//! answer_headers.insert(dpop::DPOP_NONCE, http::HeaderValue::from_static("n-1"));
//! nonces.observe(token_url, &answer_headers);
//!
//! // A resource request with a DPoP-bound token: `Authorization: DPoP <token>`, and a
//! // proof carrying the token's hash.
//! let token = Secret::new("at-1");
//! let url = "https://api.example.com/v1/me";
//! let proof = key.proof(&ProofInput::new("GET", url, 1_700_000_001, [2; 16])
//!     .nonce(nonces.get(url))
//!     .access_token(&token))?;
//! # let _ = proof;
//! # Ok::<(), silent_refresh_oauth2::Error>(())
//! ```
//!
//! # Keys
//!
//! ES256 (P-256) by default, Ed25519 (`EdDSA`) optionally: made from 32 random bytes
//! the caller draws ([`DpopKey::from_random_bytes`]) or from the operating system's
//! generator ([`DpopKey::generate_with_os_rng`], not on wasm32), loaded from and
//! stored as PKCS#8 PEM. Its public [`jwk`](DpopKey::public_jwk) and RFC 7638
//! [`thumbprint`](DpopKey::thumbprint) (the `jkt`) are available; the private key
//! never prints. The key belongs to the session: tokens bound to it are worthless
//! with another, so it must be stored, and shared, with them.
//!
//! # Nonces and challenges
//!
//! A server may demand that proofs carry a nonce it chose. It hands one out in a
//! `DPoP-Nonce` header, on any answer; [`NonceCache`] keeps the last one per origin.
//! When a proof lacks the current nonce, the server answers with a challenge:
//! - at the token endpoint, `400` with the OAuth error `use_dpop_nonce`
//!   ([`token_nonce_challenge`]): resend the same request once, at once, as part of
//!   the same exchange;
//! - at a resource, `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"`
//!   ([`resource_nonce_challenge`]): resend the request once, with no refresh and no
//!   rejection.
//!
//! Neither is a failure. A second challenge in a row is read as any other answer: at
//! the token endpoint, [`RefreshGrant::parse_response`](crate::RefreshGrant::parse_response)
//! classifies `use_dpop_nonce` as transient (and `invalid_dpop_proof` as
//! misconfigured: the clock or the key); at a resource, it is a rejection.
//!
//! # Bound tokens
//!
//! An answer with `token_type` `DPoP` (in any case; the codec writes it `DPoP`) is a
//! DPoP-bound token: send it as `Authorization: DPoP <token>`, never as `Bearer`
//! (`AccessToken::authorization` of the core does so from the token type), each
//! request with a new proof ([`ProofInput::access_token`]). A server that answers
//! `Bearer` to a DPoP request gave a bearer token: it is used as such
//! ([`is_bound`] tells them apart).
//!
//! # Backends
//!
//! With feature `dpop`, proofs are signed by aws-lc-rs on native targets (the faster:
//! see the README's measurements); with `dpop-rustcrypto` alone, by RustCrypto's
//! `p256` and dalek's Ed25519, in pure Rust, on any target including
//! `wasm32-unknown-unknown`. Both write the same JWK, thumbprint and PKCS#8 keys.

mod backend;
mod challenge;
mod key;
mod nonce;
mod proof;
mod session;

pub use crate::challenge::Challenge;
pub use challenge::{resource_nonce_challenge, token_nonce_challenge};
pub use key::{DpopAlgorithm, DpopKey, jwk_thumbprint};
pub use nonce::{MAX_NONCE_LEN, NonceCache};
pub use proof::{ProofInput, ath, htu};
pub use session::DpopSession;

use http::HeaderName;

/// The request header that carries a proof: `DPoP`.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The response header that carries a server's nonce: `DPoP-Nonce`.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The token type of a DPoP-bound token, and the `Authorization` scheme it is sent
/// with.
pub const TOKEN_TYPE: &str = "DPoP";

/// Whether a token of this `token_type` is DPoP-bound (`DPoP`, in any case): it must
/// be sent as `Authorization: DPoP …` with a proof, never as `Bearer`.
#[must_use]
pub fn is_bound(token_type: &str) -> bool {
    token_type.eq_ignore_ascii_case(TOKEN_TYPE)
}

#[cfg(test)]
mod tests;
