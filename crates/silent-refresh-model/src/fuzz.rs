//! What each fuzz target checks, as a plain function from the fuzzer's bytes to a
//! verdict (feature `arbitrary`; the OAuth 2.0 targets also need `oauth2`).
//!
//! The targets in `fuzz/fuzz_targets/` are one call each, and
//! `tests/fuzz_corpus.rs` replays the committed corpus (`fuzz/corpus/<target>/`)
//! through the same functions on stable, so an old finding stays fixed without
//! nightly. Every function accepts any bytes: input that runs out leaves defaults.
//!
//! - [`state_machine`]: a setup and a sequence of ops through [`run`](crate::run),
//!   which checks the machine against the [`Model`](crate::Model) and every rule with
//!   the [`Checker`](crate::Checker) after every step.
//! - [`oauth2_response`]: an arbitrary answer of the token endpoint through
//!   [`RefreshGrant::parse_response_for`][for] (given the credential sent) and
//!   [`RefreshGrant::parse_response`][plain] (not given it).
//! - [`oauth2_request`]: arbitrary grant settings through
//!   [`RefreshGrant::request`][request].
//! - [`grants`]: arbitrary settings of every grant and client authentication and an
//!   arbitrary exchange context through
//!   [`RefreshGrant::request_with`](silent_refresh_oauth2::RefreshGrant::request_with)
//!   and the assertion builder: exact form, verified signatures and claims.
//! - [`session`]: a multi-key session with the lineage checker (rule 13).
//! - [`origin_policy`]: arbitrary allow-lists, excluded URLs and request URLs through
//!   [`OriginPolicy`](silent_refresh_oauth2::origin::OriginPolicy): which requests get the token.
//!
//! A secret is checked for in messages only when it is *distinctive* (see
//! [`SecretPick`]), so that a secret like `"the"` does not count as leaked by the
//! codec's own words. `parse_response` is not given the refresh credential it answers,
//! so it can redact only what looks like one: its failures are checked for the
//! credential only when that is token-like (at least 40 token characters).
//!
//! [for]: silent_refresh_oauth2::RefreshGrant::parse_response_for
//! [plain]: silent_refresh_oauth2::RefreshGrant::parse_response
//! [request]: silent_refresh_oauth2::RefreshGrant::request

use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};

use crate::checker::Violation;

/// Runs the bytes as a [`Setup`](crate::Setup) and ops (see [`decode`](crate::decode))
/// through the machine, the reference model and the rule checker, on a simulated clock
/// that starts at `start` (the caller's reading: the core never reads a clock). Only the
/// offsets from `start` matter; the run replays the same for any start.
///
/// # Errors
///
/// The first [`Violation`]: a rule broken, or the machine and the model disagreeing.
pub fn state_machine(start: Instant, bytes: &[u8]) -> Result<(), Violation> {
    let (setup, ops) = crate::decode(bytes);
    crate::run(setup.config(), start, &ops)
}

/// Runs the bytes as a number of keys, a seed and [`LineageOp`](crate::lineage::LineageOp)s
/// through a [`Session`](silent_refresh::Session) with the lineage checker
/// ([`run_session`](crate::lineage::run_session)): rule 13 across keys.
///
/// # Errors
///
/// The first lineage rule broken, in words.
pub fn session(bytes: &[u8]) -> Result<(), String> {
    let mut input = Unstructured::new(bytes);
    let keys = u8::arbitrary(&mut input).unwrap_or(2) % 5 + 1;
    let seed = u64::arbitrary(&mut input).unwrap_or(0);
    let mut ops = Vec::new();
    while !input.is_empty() && ops.len() < 200 {
        match crate::lineage::LineageOp::arbitrary(&mut input) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    crate::lineage::run_session(keys, seed, &ops)
}

/// A secret the fuzzer picks for the client secret or a refresh credential.
#[derive(Clone, Debug, Arbitrary)]
pub enum SecretPick {
    /// A distinctive secret: `Q7` and at least six more token characters (ASCII
    /// letters, digits, `-._~+/=`) made from the bytes. It holds an upper-case letter
    /// and a digit and only token characters, so the codec's own words never contain
    /// it, and a message that contains it quotes it. `long` pads it to 48 characters,
    /// the shape of a real refresh credential.
    Distinctive {
        /// The characters after `Q7`, mapped onto the token alphabet.
        body: Vec<u8>,
        /// Whether to pad it to 48 characters.
        long: bool,
    },
    /// Any string, empty and non-ASCII included (never checked for in messages).
    Any(String),
}

/// The characters of access tokens and refresh credentials.
const TOKEN_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=";

impl SecretPick {
    /// The secret, and whether it is distinctive.
    #[must_use]
    pub fn resolve(&self) -> (String, bool) {
        match self {
            SecretPick::Distinctive { body, long } => {
                let mut secret = String::from("Q7");
                secret.extend(
                    body.iter().map(|b| {
                        char::from(TOKEN_ALPHABET[usize::from(*b) % TOKEN_ALPHABET.len()])
                    }),
                );
                let min = if *long { 48 } else { 8 };
                while secret.len() < min {
                    secret.push('k');
                }
                (secret, true)
            }
            SecretPick::Any(secret) => (secret.clone(), false),
        }
    }
}

/// Whether `secret` is at least [`TOKEN_LIKE`] token characters, the words the codec
/// redacts from server text whatever they are.
fn token_like(secret: &str) -> bool {
    secret.len() >= TOKEN_LIKE && secret.bytes().all(|b| TOKEN_ALPHABET.contains(&b))
}

/// The shortest word of token characters the codec redacts (`oauth2::classify`).
const TOKEN_LIKE: usize = 40;

/// The longest failure message accepted: quotes of server text are cut short, so a
/// message stays a sentence, whatever the server sends.
const MAX_MESSAGE: usize = 1024;

pub use self::oauth2::{
    AuthPick, BodyPick, FieldPick, HeaderPick, JsonPick, ParamPick, Piece, RequestCase,
    ResponseCase, UrlPick, oauth2_request, oauth2_response,
};

pub use self::grants::{
    AssertionCase, ClaimName, GrantAuthPick, GrantUrl, GrantsCase, KeyPick, KindPick, SubjectPick,
    grants,
};

pub use self::origin::{
    HostPick, OriginCase, OriginUrl, PathPick, PortPick, Respell, UrlParts, origin_policy,
};

mod grants;
mod oauth2;
mod origin;
