//! Server nonces (RFC 9449 §8 and §9): what a `DPoP-Nonce` may hold, and the cache of
//! the last one each origin sent.

use std::collections::HashMap;
use std::fmt;

use http::HeaderMap;

use super::DPOP_NONCE;
use crate::origin::{Origin, parse_url};

/// The longest nonce kept. RFC 9449 sets no limit; servers send tens of characters.
pub const MAX_NONCE_LEN: usize = 1024;

/// Whether `nonce` is a nonce RFC 9449 allows (`1*NQCHAR`: printable ASCII but space,
/// `"` and `\`), and no longer than [`MAX_NONCE_LEN`].
pub(crate) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= MAX_NONCE_LEN
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// The valid `DPoP-Nonce` of a response, if it has one (the last, if it has several).
pub(crate) fn nonce_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(DPOP_NONCE)
        .iter()
        .rev()
        .filter_map(|value| value.to_str().ok())
        .map(str::trim)
        .find(|nonce| is_valid_nonce(nonce))
        .map(str::to_owned)
}

/// The last nonce each server sent, keyed by origin (the authorization server's and
/// each resource server's), for the next proof to that origin. Sans-IO: feed it every
/// response ([`observe`](Self::observe)), successes included, since a server may hand
/// out its next nonce on any answer (RFC 9449 §8.2); read it when making a proof
/// ([`get`](Self::get)).
///
/// Bounded: it keeps at most [`capacity`](Self::capacity) origins; past that, the one
/// updated longest ago goes (its next proof then meets one more nonce challenge).
/// Nonces are not secrets; `Debug` shows the origins it holds.
///
/// ```
/// use silent_refresh_oauth2::dpop::NonceCache;
///
/// let mut nonces = NonceCache::new();
/// let mut headers = http::HeaderMap::new();
/// headers.insert("dpop-nonce", http::HeaderValue::from_static("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
/// assert!(nonces.observe("https://as.example.com/token", &headers));
/// // Any URL of the same origin gets it; another origin does not.
/// assert_eq!(nonces.get("https://AS.example.com:443/other?x"), Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"));
/// assert_eq!(nonces.get("https://api.example.com/me"), None);
/// ```
#[derive(Clone)]
pub struct NonceCache {
    entries: HashMap<Origin, Entry>,
    capacity: usize,
    /// Counts updates, to find the entry updated longest ago.
    clock: u64,
}

#[derive(Clone)]
struct Entry {
    nonce: String,
    updated: u64,
}

impl NonceCache {
    /// How many origins a cache keeps by default.
    pub const DEFAULT_CAPACITY: usize = 64;

    /// An empty cache of [`DEFAULT_CAPACITY`](Self::DEFAULT_CAPACITY) origins.
    #[must_use]
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// An empty cache of `capacity` origins (at least one).
    #[must_use]
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// The most origins it keeps.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many origins it holds a nonce for.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no nonce.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The nonce to put in a proof for a request to `url`: the last one its origin
    /// sent. `None` for a URL that is not absolute http(s).
    #[must_use]
    pub fn get(&self, url: &str) -> Option<&str> {
        let origin = origin_of(url)?;
        self.entries.get(&origin).map(|e| e.nonce.as_str())
    }

    /// Reads the `DPoP-Nonce` of a response to a request sent to `url`, and keeps it
    /// for that origin. Returns whether a nonce was kept; a response without one, or
    /// with an invalid one (see [`insert`](Self::insert)), changes nothing.
    pub fn observe(&mut self, url: &str, headers: &HeaderMap) -> bool {
        match nonce_header(headers) {
            Some(nonce) => self.insert(url, &nonce),
            None => false,
        }
    }

    /// Keeps `nonce` for the origin of `url`. Returns whether it was kept: a nonce RFC
    /// 9449 does not allow (empty, a space, `"` or `\`, a control or non-ASCII
    /// character), longer than [`MAX_NONCE_LEN`], or a URL that is not absolute
    /// http(s), is not.
    pub fn insert(&mut self, url: &str, nonce: &str) -> bool {
        let Some(origin) = origin_of(url).filter(|_| is_valid_nonce(nonce)) else {
            return false;
        };
        self.clock += 1;
        if let Some(entry) = self.entries.get_mut(&origin) {
            nonce.clone_into(&mut entry.nonce);
            entry.updated = self.clock;
            return true;
        }
        if self.entries.len() >= self.capacity {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.updated)
                .map(|(origin, _)| origin.clone());
            if let Some(oldest) = oldest {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            origin,
            Entry {
                nonce: nonce.to_owned(),
                updated: self.clock,
            },
        );
        true
    }

    /// Forgets the nonce of `url`'s origin. Returns whether there was one.
    pub fn remove(&mut self, url: &str) -> bool {
        origin_of(url).is_some_and(|origin| self.entries.remove(&origin).is_some())
    }
}

impl Default for NonceCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for NonceCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceCache")
            .field("origins", &self.entries.keys().collect::<Vec<_>>())
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// The origin of an absolute http(s) URL.
fn origin_of(url: &str) -> Option<Origin> {
    parse_url(url).ok().and_then(|uri| Origin::of(&uri).ok())
}
