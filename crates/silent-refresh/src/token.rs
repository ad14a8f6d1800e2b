//! Tokens: what a refresher returns, what the store keeps, and what a request is granted.

use std::fmt;
use std::time::Duration;

use crate::time::{Instant, SystemTime};

use zeroize::Zeroizing;

use crate::secret::Secret;

/// When a token stops being valid, as the authorization server said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Expiry {
    /// The token carries no expiry: it is usable until a request using it is rejected.
    Never,
    /// Valid for this long, counted from the instant the refresh request was sent
    /// (or, for a token given at sign-in, from the sign-in).
    In(Duration),
    /// Valid until this wall-clock time: the form a stored token keeps, so a token
    /// loaded after a restart gets the right remaining lifetime.
    At(SystemTime),
}

/// A token set: what a refresher returns and what the program's store keeps.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Token {
    /// The access token sent with requests.
    pub access_token: Secret,
    /// The token type, usually `Bearer`.
    pub token_type: String,
    /// When the access token expires.
    pub expiry: Expiry,
    /// The credential for the next refresh. `None` in a refresh result keeps the old one.
    pub refresh_token: Option<Secret>,
    /// The scope the token was granted, when the server said.
    pub scope: Option<String>,
    /// When it was issued, on the wall clock: with a wall-clock expiry, the start of its
    /// whole lifetime, so a token loaded after a restart is refreshed at the same point
    /// of its life as if the program had never stopped. `None`: unknown (the lifetime
    /// then counts from when the token is adopted). Tokens the machine hands out for
    /// storage always carry it.
    #[cfg_attr(feature = "serde", serde(default))]
    pub issued_at: Option<SystemTime>,
    /// The private key of the session's DPoP binding (RFC 9449), as PKCS#8 PEM, when the
    /// session is sender-constrained: the key is part of the session (rule 15), stored
    /// and shared with its tokens, so that every process that adopts the session proves
    /// with the same key. Never printed.
    #[cfg_attr(feature = "serde", serde(default))]
    pub dpop_key: Option<Secret>,
    /// The access tokens of the session's other keys (rule 13: one refresh credential,
    /// a token per resource or scope), stored with it so that every process sharing
    /// the session shares all of its tokens. Empty for a session with one key. A
    /// [`TokenMachine`](crate::TokenMachine) runs one key and ignores it; the driver
    /// fills it in before a save and hands each key its own on a load.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Vec::is_empty")
    )]
    pub keyed: Vec<KeyedToken>,
}

/// Another key's access token in a stored session ([`Token::keyed`]).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct KeyedToken {
    /// The key's name, the same in every process that shares the session (the OAuth
    /// codec's `Target::name`).
    pub key: String,
    /// The key's token. Its refresh credential is the session's (the one on the
    /// [`Token`] that holds it); its own is not stored.
    pub token: Token,
}

impl Token {
    /// A bearer token with the given access secret and expiry, without refresh credential.
    pub fn bearer(access_token: impl Into<Secret>, expiry: Expiry) -> Self {
        Self {
            access_token: access_token.into(),
            token_type: "Bearer".to_owned(),
            expiry,
            refresh_token: None,
            scope: None,
            issued_at: None,
            dpop_key: None,
            keyed: Vec::new(),
        }
    }

    /// The same token with a refresh credential.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: impl Into<Secret>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }
}

/// The number the machine gives each token it adopts: 1, 2, 3, … within one machine.
///
/// A rejection (401) names the generation the request used, so that only a rejection
/// of the *current* token triggers a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Generation(pub u64);

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gen#{}", self.0)
    }
}

/// An access token granted to a request. Shared (`Arc`) between all the requests the
/// same token serves, so a grant costs a reference count, not a copy.
#[derive(Debug, PartialEq)]
pub struct AccessToken {
    /// The generation of this token: report it back with a rejection (401).
    pub generation: Generation,
    /// The secret to send.
    pub secret: Secret,
    /// The token type, usually `Bearer`.
    pub token_type: String,
    /// The scope the token was granted, when the server said.
    pub scope: Option<String>,
    /// The last instant at which the machine hands this token out (`None`: no expiry).
    pub usable_until: Option<Instant>,
}

impl AccessToken {
    /// The value of an `Authorization` header for this token, e.g. `Bearer abc`.
    ///
    /// The scheme is normalised to `Bearer` when the server sent it in another case
    /// (RFC 6750 servers commonly send `bearer`). The result contains the secret: never
    /// log it. It is written once into a buffer of the right size and wiped when
    /// dropped; it derefs to `&str` (`HeaderValue::from_str(&token.authorization())`),
    /// and its `Debug` shows nothing of it. The header value your HTTP client makes from
    /// it is a copy this crate cannot wipe (see [`Secret`]).
    ///
    /// ```
    /// # use silent_refresh::{AccessToken, Generation, Secret};
    /// let token = AccessToken {
    ///     generation: Generation(1),
    ///     secret: Secret::new("at-1"),
    ///     token_type: "bearer".to_owned(),
    ///     scope: None,
    ///     usable_until: None,
    /// };
    /// let value = token.authorization();
    /// assert_eq!(*value, "Bearer at-1");
    /// assert!(!format!("{value:?}").contains("at-1"));
    /// ```
    #[must_use]
    pub fn authorization(&self) -> Zeroizing<String> {
        let scheme = self.scheme();
        let secret = self.secret.expose();
        let mut value = Zeroizing::new(String::with_capacity(scheme.len() + 1 + secret.len()));
        value.push_str(scheme);
        value.push(' ');
        value.push_str(secret);
        value
    }

    /// The scheme of the `Authorization` header for this token: `DPoP` for a token
    /// bound to a key (rule 15: never `Bearer`, whatever the case the server sent),
    /// `Bearer` for a bearer token (in any case, or no type given), otherwise the
    /// type the server sent. [`authorization`](Self::authorization) writes it before
    /// the secret.
    #[must_use]
    pub fn scheme(&self) -> &str {
        if self.is_dpop_bound() {
            "DPoP"
        } else if self.token_type.eq_ignore_ascii_case("bearer") || self.token_type.is_empty() {
            "Bearer"
        } else {
            self.token_type.as_str()
        }
    }

    /// Whether the token is bound to a DPoP key (RFC 9449: `token_type` `DPoP`, in any
    /// case): every request with it needs a proof of that key, and it is sent as
    /// `Authorization: DPoP …`, never as `Bearer` (rule 15).
    #[must_use]
    pub fn is_dpop_bound(&self) -> bool {
        self.token_type.eq_ignore_ascii_case("dpop")
    }

    /// Whether the machine may still hand this token out at `now`.
    #[must_use]
    pub fn is_usable_at(&self, now: Instant) -> bool {
        self.usable_until.is_none_or(|until| now < until)
    }
}

/// What the program signs in with.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// A token, with or without a refresh credential inside it.
    Token(Token),
    /// Only a refresh credential: the first request that needs a token refreshes.
    RefreshToken(Secret),
    /// A token loaded from the program's store (with a wall-clock expiry and issue
    /// time): adopted like [`Credentials::Token`], but not handed back for storage, since
    /// the store holds it already.
    Stored(Token),
    /// The refresher authenticates by itself (for example the client-credentials
    /// grant), so a refresh is always possible; optionally with a token to start from.
    ClientCredentials {
        /// A token to use until it needs refreshing.
        token: Option<Token>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_hides_secrets() {
        let token = Token::bearer("access-xyz", Expiry::Never).with_refresh_token("refresh-xyz");
        let printed = format!("{token:?}");
        assert!(!printed.contains("access-xyz"), "{printed}");
        assert!(!printed.contains("refresh-xyz"), "{printed}");
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn authorization_normalises_bearer() {
        let token = AccessToken {
            generation: Generation(1),
            secret: Secret::new("abc"),
            token_type: "bearer".into(),
            scope: None,
            usable_until: None,
        };
        let value = token.authorization();
        assert_eq!(value.as_str(), "Bearer abc");
        // Written once into a buffer of the right size: no reallocation left a copy.
        assert_eq!(value.capacity(), "Bearer abc".len());
        assert!(!format!("{token:?}").contains("abc"));
        assert!(!format!("{value:?}").contains("abc"));
        let other = AccessToken {
            token_type: "DPoP".into(),
            ..token
        };
        assert_eq!(other.authorization().as_str(), "DPoP abc");
        assert!(other.is_dpop_bound());
        // A bound token in any case is sent as DPoP, never Bearer (rule 15).
        let lower = AccessToken {
            token_type: "dpop".into(),
            ..other
        };
        assert_eq!(lower.authorization().as_str(), "DPoP abc");
    }
}
