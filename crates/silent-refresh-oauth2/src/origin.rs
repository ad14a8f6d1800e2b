//! Where an access token may be sent: origins (scheme, host, port) and the policy both
//! adapters apply before attaching the token to a request.
//!
//! The rule, in full:
//! - a request gets the token only if its origin (scheme, host and port, compared after
//!   normalising: lower-case scheme and host, default port made explicit) equals an
//!   allowed origin;
//! - never when it goes to the token endpoint (or another URL excluded with
//!   [`OriginPolicyBuilder::exclude`]): same origin (the host also with a trailing
//!   `.`) and a path a server could route there, whatever the query and the fragment.
//!   Paths are compared the way a lenient server reads them, not as text:
//!   percent-encodings decoded (all of them, up to three times over), `%2F`, `%5C` and
//!   `\` read as `/`, `;params` removed from each segment, repeated and trailing
//!   slashes ignored, dot segments (`.`, `..`) removed, case ignored. So
//!   `/OAUTH/token`, `//oauth/token`, `/oauth/%74oken`, `/x/../oauth/./token/` and
//!   `/oauth/token;jsessionid=1` are all the token endpoint `/oauth/token`. When in
//!   doubt the request is excluded: not sending the token is the safe failure;
//! - an allowed origin over plain `http` is refused when the policy is built, unless its
//!   host is loopback (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`) or the user
//!   opted in with [`OriginPolicyBuilder::allow_insecure_http`].
//!
//! Pure string and URI logic: no I/O, no DNS, no clock. Loopback means what the host
//! *says*, not what a resolver would answer.
//!
//! ```
//! use silent_refresh_oauth2::origin::{OriginPolicy, Refusal};
//!
//! let policy = OriginPolicy::builder()
//!     .allow_origin("https://api.example.com")
//!     .allow_origin("http://localhost:8080")
//!     .exclude("https://api.example.com/oauth/token")
//!     .build()?;
//! let uri = |url: &str| -> http::Uri { url.parse().expect("a URL") };
//! assert!(policy.authorizes(&uri("https://API.example.com:443/v1/me?x=1")));
//! assert!(policy.authorizes(&uri("http://localhost:8080/")));
//! assert!(!policy.authorizes(&uri("http://api.example.com/v1/me")));
//! assert!(!policy.authorizes(&uri("https://api.example.com//OAuth/%74oken/")));
//! assert!(matches!(
//!     policy.check(&uri("https://api.example.com/oauth/token?grant_type=refresh_token")),
//!     Err(Refusal::Excluded { .. })
//! ));
//! # Ok::<(), silent_refresh_oauth2::Error>(())
//! ```

use core::net::{Ipv4Addr, Ipv6Addr};
use std::fmt;

use http::Uri;

use crate::Error;

mod request_url;

pub use request_url::RequestUrl;

/// The scheme, host and port of a URL, normalised: scheme and host in lower case, the
/// default port (443, 80) made explicit. Two URLs are same-origin when their `Origin`s
/// are equal.
///
/// It prints (with `Display` and `Debug`) as `scheme://host:port`, never with a user,
/// a path or a query.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    https: bool,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses an origin given by the user, for an allow-list: `scheme://host[:port]`
    /// with an optional trailing `/` and nothing else. A path, a query or user
    /// information is refused, so that the allow-list reads as what it does: the token
    /// goes to the whole origin.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidOrigin`], with the origin in it when one could be read.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let unreadable = |reason| Error::InvalidOrigin {
            origin: None,
            reason,
        };
        let uri: Uri = text.parse().map_err(|_| unreadable("it is not a URL"))?;
        let origin = Self::of(&uri).map_err(|error| match error {
            Error::InvalidUrl { reason } => unreadable(reason),
            other => other,
        })?;
        let invalid = |reason| Error::InvalidOrigin {
            origin: Some(origin.to_string()),
            reason,
        };
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(invalid(
                "it holds user information (`user@`), which an origin never has",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(invalid(
                "it has a path or a query; an origin is only scheme, host and port, and the token goes to every path on it",
            ));
        }
        Ok(origin)
    }

    /// The origin of a parsed URL (its path and query are ignored).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] when `uri` is not absolute, its scheme is neither `http`
    /// nor `https`, or it has no host.
    pub fn of(uri: &Uri) -> Result<Self, Error> {
        RequestUrl::of(uri).map(|url| url.origin())
    }

    /// Whether `uri` is of this origin: the same as `Origin::of(uri) == Ok(self)`, read
    /// in place, without building an origin (no allocation).
    #[must_use]
    pub fn contains(&self, uri: &Uri) -> bool {
        RequestUrl::of(uri).is_ok_and(|url| self.matches(&url))
    }

    /// Whether `url` is of this origin: [`contains`](Self::contains) for a URL already
    /// read (the check every authorized request makes).
    #[must_use]
    pub fn matches(&self, url: &RequestUrl<'_>) -> bool {
        url.https == self.https
            && url.port == self.port
            && url.host.eq_ignore_ascii_case(&self.host)
    }

    /// Whether the scheme is `https`.
    #[must_use]
    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Whether the host names this machine: `localhost`, a subdomain of `localhost`,
    /// an address in `127.0.0.0/8`, or `[::1]`. Only these literal forms count: no
    /// name is resolved, and neither `localhost.` (trailing dot) nor an IPv4-mapped
    /// address (`[::ffff:127.0.0.1]`) nor a shortened IPv4 form (`127.1`) does.
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let host = self.host.as_str();
        if host == "localhost"
            || host
                .strip_suffix(".localhost")
                .is_some_and(|sub| !sub.is_empty())
        {
            return true;
        }
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return ip.is_loopback();
        }
        host.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .and_then(|h| h.parse::<Ipv6Addr>().ok())
            .is_some_and(|ip| ip.is_loopback())
    }
}

/// Where a request's URL meets its origin: kept here, so that `request_url` needs
/// nothing of this module.
impl RequestUrl<'_> {
    /// The URL's origin (allocates its host).
    #[must_use]
    pub fn origin(&self) -> Origin {
        Origin {
            https: self.https,
            host: self.host.to_ascii_lowercase(),
            port: self.port,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Origin({self})")
    }
}

/// Parses an absolute URL, such as a request's, for [`Origin::of`] and
/// [`OriginPolicy::check`].
///
/// # Errors
///
/// [`Error::InvalidUrl`] when `url` does not parse as a URI. (Whether it is an
/// absolute http(s) URL is checked by [`Origin::of`].)
pub fn parse_url(url: &str) -> Result<Uri, Error> {
    url.parse().map_err(|_| Error::InvalidUrl {
        reason: "it does not parse as a URL",
    })
}

/// An origin and a path: a URL that never gets the token, such as the token endpoint.
#[derive(Clone, PartialEq, Eq)]
struct Endpoint {
    origin: Origin,
    /// The readings of its path (see [`PathReadings`]).
    path: PathReadings,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Self, Error> {
        let uri = parse_url(url)?;
        Ok(Self {
            origin: Origin::of(&uri)?,
            path: PathReadings::of(uri.path()),
        })
    }

    /// Whether a request on this endpoint's server (see [`same_server`]), whose path
    /// reads as `path`, may reach this endpoint: a reading of the path in common, or a
    /// path that could not be decoded to the end.
    fn reached_by(&self, path: &PathReadings) -> bool {
        !path.settled || path.readings.iter().any(|r| self.path.readings.contains(r))
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({}{})", self.origin, self.path.readings[0])
    }
}

/// Whether two origins name the same server for the exclusion: same scheme, same
/// port, same host once trailing dots are removed (`auth.example.com.` is the fully
/// qualified spelling of `auth.example.com`, and most servers answer both).
fn same_server(a: &Origin, b: &Origin) -> bool {
    a.https == b.https
        && a.port == b.port
        && a.host.trim_end_matches('.') == b.host.trim_end_matches('.')
}

/// How many times a path is percent-decoded: a proxy, a framework and an application
/// may each decode once.
const DECODE_ROUNDS: usize = 3;

/// What a server may route a path to, for comparing it with an excluded path.
///
/// A path is read the way a lenient server might (RFC 3986 section 6, and further),
/// so that every spelling of the token endpoint a server could route to it compares
/// equal:
/// - every percent-encoding is decoded, not only those of unreserved characters, and
///   up to [`DECODE_ROUNDS`] times (`%252e` is `.`); `%2F`, `%5C` and `\` separate
///   segments like `/`;
/// - a decoded NUL ends the path (C servers stop there);
/// - `;params` are removed from each segment (servlet containers do), both before
///   decoding and after, so the path has two readings;
/// - empty segments are dropped (`//`, a trailing `/`, and the empty path is `/`), and
///   dot segments are removed (RFC 3986 section 5.2.4, `..` never climbs above `/`);
/// - case is folded (Unicode upper then lower case), since many servers route
///   case-insensitively.
///
/// The readings are not what a server *must* do: they may make two paths equal that a
/// strict server tells apart. That errs on the safe side: a request for a path that
/// only looks like the token endpoint does not get the token.
#[derive(Clone, PartialEq, Eq)]
struct PathReadings {
    /// The path read after decoding, and read with `;params` removed first.
    readings: [String; 2],
    /// Whether decoding came to an end within [`DECODE_ROUNDS`]: if not, the path may
    /// decode to anything, and it counts as every excluded path of its origin.
    settled: bool,
}

impl PathReadings {
    fn of(path: &str) -> Self {
        let (decoded, settled) = read_path(path.as_bytes());
        let without_params: Vec<&[u8]> = path
            .as_bytes()
            .split(|b| matches!(b, b'/' | b'\\'))
            .map(without_params)
            .collect();
        let (first_stripped, settled_too) = read_path(&without_params.join(&b'/'));
        Self {
            readings: [decoded, first_stripped],
            settled: settled && settled_too,
        }
    }
}

/// A segment without its `;params`.
fn without_params(segment: &[u8]) -> &[u8] {
    segment.split(|b| *b == b';').next().unwrap_or(segment)
}

/// One reading of a path (see [`PathReadings`]), and whether its decoding ended.
fn read_path(path: &[u8]) -> (String, bool) {
    let mut bytes = path.to_vec();
    for _ in 0..DECODE_ROUNDS {
        match percent_decode(&bytes) {
            Some(decoded) => bytes = decoded,
            None => break,
        }
    }
    let settled = !bytes.windows(3).any(is_escape);
    if let Some(nul) = bytes.iter().position(|b| *b == 0) {
        bytes.truncate(nul);
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for segment in bytes
        .split(|b| matches!(b, b'/' | b'\\'))
        .map(without_params)
    {
        match segment {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut joined = Vec::with_capacity(bytes.len() + 1);
    for segment in &segments {
        joined.push(b'/');
        joined.extend_from_slice(segment);
    }
    if joined.is_empty() {
        joined.push(b'/');
    }
    let folded = String::from_utf8_lossy(&joined)
        .to_uppercase()
        .to_lowercase();
    (folded, settled)
}

/// Whether three bytes are a percent-encoding (`%` and two hex digits).
fn is_escape(bytes: &[u8]) -> bool {
    matches!(bytes, [b'%', high, low] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit())
}

/// The bytes with every percent-encoding decoded once, or `None` if there is none.
fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes.get(i..i + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)),
            _ => None,
        };
        match escape {
            Some((high, low)) => {
                out.push(high << 4 | low);
                decoded_any = true;
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    decoded_any.then_some(out)
}

/// Why a request does not get the token, from [`OriginPolicy::check`]. Each reason
/// carries at most the request's origin, never its path or query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The request's URL is not an absolute `http` or `https` URL with a host.
    InvalidUrl {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request goes to the token endpoint, or to another excluded URL.
    Excluded {
        /// The request's origin.
        origin: Origin,
    },
    /// The request's origin is not on the allow-list.
    NotAllowed {
        /// The request's origin.
        origin: Origin,
    },
}

impl Refusal {
    /// The refusal of a URL that could not be read.
    fn of_invalid(error: Error) -> Self {
        Self::InvalidUrl {
            reason: match error {
                Error::InvalidUrl { reason } => reason,
                _ => "it is not an absolute http or https URL",
            },
        }
    }
}

/// How a middleware routes a request ([`OriginPolicy::route`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// It gets the token; its origin.
    Attach(Origin),
    /// It goes out untouched, and that is expected: it carries an `Authorization`
    /// header of its own, it is for the token endpoint (or another excluded URL), or
    /// its URL is not an absolute http(s) URL (the HTTP client will say so).
    Untouched,
    /// Its origin is not on the allow-list: most often a typo (`localhost` for
    /// `127.0.0.1`) that leaves the API answering 401. A middleware lets it go out
    /// without the token and says so once per origin ([`UnlistedOrigins`]), or, in
    /// strict mode, refuses it.
    Unlisted(Origin),
}

/// The unlisted origins a middleware already said it sent a request to without the
/// token, so that it says so once per origin (a thousand at most are remembered; past
/// that, each is said again).
#[derive(Debug, Default)]
pub struct UnlistedOrigins {
    seen: std::sync::Mutex<std::collections::HashSet<Origin>>,
}

/// How many unlisted origins [`UnlistedOrigins`] remembers.
const UNLISTED_REMEMBERED: usize = 1000;

impl UnlistedOrigins {
    /// Whether this is the first request to `origin` (and remembers it).
    pub fn first_time(&self, origin: &Origin) -> bool {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.contains(origin) {
            return false;
        }
        if seen.len() < UNLISTED_REMEMBERED {
            seen.insert(origin.clone());
        }
        true
    }
}

/// Which requests get the access token: those for an allowed origin, except the
/// excluded URLs (the token endpoint). See the [module docs](self) for the rule.
///
/// Build it with [`OriginPolicy::builder`].
#[derive(Clone, Debug)]
pub struct OriginPolicy {
    allowed: Box<[Origin]>,
    excluded: Box<[Endpoint]>,
}

impl OriginPolicy {
    /// A builder for a policy with no allowed origin yet.
    pub fn builder() -> OriginPolicyBuilder {
        OriginPolicyBuilder::default()
    }

    /// The request's origin if a request for `uri` gets the token, or why not. The
    /// excluded URLs are checked first, so a request for the token endpoint is always
    /// refused as [`Refusal::Excluded`].
    ///
    /// # Errors
    ///
    /// The [`Refusal`].
    pub fn check(&self, uri: &Uri) -> Result<Origin, Refusal> {
        self.check_url(&RequestUrl::of(uri).map_err(Refusal::of_invalid)?)
    }

    /// [`check`](Self::check) for a URL already read.
    ///
    /// # Errors
    ///
    /// The [`Refusal`].
    pub fn check_url(&self, url: &RequestUrl<'_>) -> Result<Origin, Refusal> {
        let origin = url.origin();
        // The path is read only when an excluded URL is on the request's server.
        let mut path = None;
        if self.excluded.iter().any(|e| {
            same_server(&e.origin, &origin)
                && e.reached_by(path.get_or_insert_with(|| PathReadings::of(url.path)))
        }) {
            return Err(Refusal::Excluded { origin });
        }
        if !self.allowed.contains(&origin) {
            return Err(Refusal::NotAllowed { origin });
        }
        Ok(origin)
    }

    /// Whether a request for `uri` gets the token: [`check`](Self::check) without the
    /// origin, and without an allocation when it does.
    ///
    /// # Errors
    ///
    /// The [`Refusal`], as [`check`](Self::check) gives it.
    pub fn permits(&self, uri: &Uri) -> Result<(), Refusal> {
        self.permits_url(&RequestUrl::of(uri).map_err(Refusal::of_invalid)?)
    }

    /// [`permits`](Self::permits) for a URL already read: what an integration asks of
    /// every request.
    ///
    /// # Errors
    ///
    /// The [`Refusal`], as [`check`](Self::check) gives it.
    pub fn permits_url(&self, url: &RequestUrl<'_>) -> Result<(), Refusal> {
        if let Some(origin) = self.allowed.iter().find(|o| o.matches(url)) {
            // `origin` equals the request's: the exclusions read as in `check`.
            let mut path = None;
            if !self.excluded.iter().any(|e| {
                same_server(&e.origin, origin)
                    && e.reached_by(path.get_or_insert_with(|| PathReadings::of(url.path)))
            }) {
                return Ok(());
            }
        }
        self.check_url(url).map(|_| ())
    }

    /// Whether a request for `uri` gets the token.
    #[must_use]
    pub fn authorizes(&self, uri: &Uri) -> bool {
        self.permits(uri).is_ok()
    }

    /// How a middleware routes a request for `uri` (`has_authorization`: it carries an
    /// `Authorization` header of its own): the token is attached, the request goes out
    /// untouched (its own header, the token endpoint, a URL that is not http(s)), or its
    /// origin is not on the allow-list, which the middleware says once per origin and,
    /// in strict mode, refuses.
    #[must_use]
    pub fn route(&self, uri: &Uri, has_authorization: bool) -> Route {
        match RequestUrl::of(uri) {
            Ok(url) => self.route_url(&url, has_authorization),
            Err(_) => Route::Untouched,
        }
    }

    /// [`route`](Self::route) for a URL already read.
    #[must_use]
    pub fn route_url(&self, url: &RequestUrl<'_>, has_authorization: bool) -> Route {
        if has_authorization {
            return Route::Untouched;
        }
        match self.check_url(url) {
            Ok(origin) => Route::Attach(origin),
            Err(Refusal::NotAllowed { origin }) => Route::Unlisted(origin),
            Err(Refusal::Excluded { .. } | Refusal::InvalidUrl { .. }) => Route::Untouched,
        }
    }

    /// The allowed origins, in the order they were given (duplicates removed).
    #[must_use]
    pub fn allowed(&self) -> &[Origin] {
        &self.allowed
    }
}

/// Builds an [`OriginPolicy`]. Each origin and URL is parsed as it is given; the first
/// one that is invalid is the error [`build`](Self::build) returns. The builder keeps
/// only what it parsed, so its `Debug` never shows a query or a password (the path of an
/// excluded endpoint, which is no secret, does show).
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct OriginPolicyBuilder {
    allowed: Vec<Origin>,
    excluded: Vec<Endpoint>,
    allow_plain_http: bool,
    error: Option<Error>,
}

impl OriginPolicyBuilder {
    /// Requests for this origin get the token: `https://host` or `https://host:port`
    /// (see [`Origin::parse`]). Call once per origin.
    pub fn allow_origin(mut self, origin: &str) -> Self {
        match Origin::parse(origin) {
            Ok(origin) => {
                if !self.allowed.contains(&origin) {
                    self.allowed.push(origin);
                }
            }
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
        self
    }

    /// Requests for the origin (scheme, host and port) of `url` get the token, such as
    /// the API's base URL: `https://api.example.com/v1/` allows `https://api.example.com`.
    /// The URL's path, query and user information are dropped, and never shown in an
    /// error.
    pub fn allow_url(mut self, url: &str) -> Self {
        match parse_url(url).and_then(|uri| Origin::of(&uri)) {
            Ok(origin) => {
                if !self.allowed.contains(&origin) {
                    self.allowed.push(origin);
                }
            }
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
        self
    }

    /// Requests for this URL never get the token, even on an allowed origin: same
    /// origin and any spelling of its path a server could route to it (see the
    /// [module docs](self)); query and fragment ignored. Give the token endpoint here.
    pub fn exclude(mut self, url: &str) -> Self {
        match Endpoint::parse(url) {
            Ok(endpoint) => self.excluded.push(endpoint),
            Err(error) => {
                self.error.get_or_insert(error);
            }
        }
        self
    }

    /// Allow plain `http` origins whose host is not loopback: the token then crosses
    /// the network unencrypted. Refused by default.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_plain_http = allow;
        self
    }

    /// Checks the origins and builds the policy.
    ///
    /// # Errors
    ///
    /// The first [`Error::InvalidOrigin`] (from [`allow_origin`](Self::allow_origin))
    /// or [`Error::InvalidUrl`] (from [`exclude`](Self::exclude)), in the order they
    /// were given; then [`Error::NoOrigin`] when no origin was allowed; then
    /// [`Error::InsecureHttp`] for the first plain-`http` origin whose host is not
    /// loopback, unless [`allow_insecure_http`](Self::allow_insecure_http).
    pub fn build(self) -> Result<OriginPolicy, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.allowed.is_empty() {
            return Err(Error::NoOrigin);
        }
        if !self.allow_plain_http
            && let Some(origin) = self
                .allowed
                .iter()
                .find(|o| !o.is_https() && !o.is_loopback())
        {
            return Err(Error::InsecureHttp {
                origin: origin.to_string(),
            });
        }
        Ok(OriginPolicy {
            allowed: self.allowed.into(),
            excluded: self.excluded.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(url: &str) -> Uri {
        parse_url(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn contains_reads_a_url_as_origin_of_compares_it() {
        let origins = [
            "https://api.example.com",
            "http://api.example.com",
            "https://api.example.com:8443",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ]
        .map(|o| Origin::parse(o).expect("an origin"));
        let urls = [
            "https://api.example.com/v1",
            "HTTPS://API.Example.COM:443/v1?x=1",
            "https://api.example.com.:443/",
            "http://api.example.com:80/",
            "https://api.example.com:8443/a",
            "https://api.example.com:443",
            "http://127.0.0.1:8080/token",
            "http://127.0.0.1/",
            "http://[::1]:8080/",
            "https://other.example.com/",
            "https://user@api.example.com/v1",
        ];
        for url in urls {
            let parsed = uri(url);
            for origin in &origins {
                let by_value = Origin::of(&parsed).is_ok_and(|o| &o == origin);
                assert_eq!(origin.contains(&parsed), by_value, "{origin} {url}");
            }
        }
    }

    #[test]
    fn route_tells_the_token_endpoint_and_own_headers_from_an_unlisted_origin() {
        let policy = OriginPolicy::builder()
            .allow_origin("http://127.0.0.1:8080")
            .exclude("http://127.0.0.1:8080/oauth/token")
            .build()
            .unwrap();
        assert!(matches!(
            policy.route(&uri("http://127.0.0.1:8080/api"), false),
            Route::Attach(_)
        ));
        assert_eq!(
            policy.route(&uri("http://127.0.0.1:8080/api"), true),
            Route::Untouched
        );
        assert_eq!(
            policy.route(&uri("http://127.0.0.1:8080/oauth/token"), false),
            Route::Untouched
        );
        let typo = uri("http://localhost:8080/api");
        let Route::Unlisted(origin) = policy.route(&typo, false) else {
            panic!("localhost is not 127.0.0.1");
        };
        assert_eq!(origin.to_string(), "http://localhost:8080");
        let said = UnlistedOrigins::default();
        assert!(said.first_time(&origin));
        assert!(!said.first_time(&origin), "once per origin");
    }

    fn origin_of(url: &str) -> Origin {
        Origin::of(&uri(url)).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn policy(build: OriginPolicyBuilder) -> OriginPolicy {
        build.build().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn origins_are_normalised() {
        // (URL, its origin as printed)
        for (url, printed) in [
            ("https://API.Example.com/a?b", "https://api.example.com:443"),
            (
                "https://api.example.com:443/",
                "https://api.example.com:443",
            ),
            ("HTTPS://api.EXAMPLE.com", "https://api.example.com:443"),
            ("http://example.com/", "http://example.com:80"),
            ("HTTP://example.com:80", "http://example.com:80"),
            ("http://example.com:443", "http://example.com:443"),
            ("https://example.com:8443/x", "https://example.com:8443"),
            ("https://user:pw@example.com/x", "https://example.com:443"),
            ("http://[::1]:9000/", "http://[::1]:9000"),
            ("http://[::A]/", "http://[::a]:80"),
        ] {
            let origin = origin_of(url);
            assert_eq!(origin.to_string(), printed, "{url}");
            assert_eq!(format!("{origin:?}"), format!("Origin({printed})"), "{url}");
        }
    }

    #[test]
    fn same_origin_needs_same_scheme_host_and_port() {
        let allowed = Origin::parse("https://API.example.com").expect("valid");
        for (url, same) in [
            ("https://api.example.com/v1/items?x=1", true),
            ("https://api.example.com:443/", true),
            ("HTTPS://api.EXAMPLE.com", true),
            ("http://api.example.com/", false),
            ("http://api.example.com:443/", false),
            ("https://api.example.com:8443/", false),
            ("https://api.example.com./", false),
            ("https://api.example.com.evil.test/", false),
            ("https://evil.test/?https://api.example.com", false),
            ("https://user@evil.test/", false),
            ("https://api.example.com@evil.test/", false),
        ] {
            assert_eq!(origin_of(url) == allowed, same, "{url}");
        }
    }

    #[test]
    fn an_origin_given_by_the_user_is_only_scheme_host_and_port() {
        for ok in [
            "https://api.example.com",
            "https://api.example.com/",
            "https://api.example.com:8443",
            "http://localhost:3000",
            "http://[::1]:1",
        ] {
            assert!(Origin::parse(ok).is_ok(), "{ok}");
        }
        // (text, the origin the error names, if any)
        for (text, named) in [
            (
                "https://api.example.com/v1",
                Some("https://api.example.com:443"),
            ),
            (
                "https://api.example.com?q=1",
                Some("https://api.example.com:443"),
            ),
            (
                "https://user:pw@api.example.com",
                Some("https://api.example.com:443"),
            ),
            ("ftp://api.example.com", None),
            ("api.example.com", None),
            ("/relative/path", None),
            ("not a url", None),
            ("https://", None),
            ("", None),
        ] {
            match Origin::parse(text) {
                Err(Error::InvalidOrigin { origin, reason }) => {
                    assert_eq!(origin.as_deref(), named, "{text}: {reason}");
                }
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn invalid_origin_and_url_errors_never_print_a_path_a_query_or_a_password() {
        for text in [
            "https://alice:hunter2@api.example.com",
            "https://api.example.com/secret-path",
            "https://api.example.com/?access_token=hunter2",
            "https://alice:hunter2@api.example.com/secret-path?access_token=hunter2 x",
        ] {
            let error = Origin::parse(text).expect_err(text);
            let printed = format!("{error} {error:?}");
            for secret in ["hunter2", "secret-path", "access_token", "alice"] {
                assert!(!printed.contains(secret), "{text}: {printed}");
            }
        }
        let error = parse_url("https://api.example.com/secret-path?x=hunter2 y")
            .expect_err("a space is not a URL");
        assert!(!format!("{error} {error:?}").contains("hunter2"));
    }

    #[test]
    fn what_is_not_an_http_url_has_no_origin() {
        for url in [
            "/relative/path",
            "ftp://example.com/",
            "example.com",
            "not a url",
            "https://",
            "",
        ] {
            assert!(
                matches!(
                    parse_url(url).and_then(|uri| Origin::of(&uri)),
                    Err(Error::InvalidUrl { .. })
                ),
                "{url}"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for (url, loopback) in [
            ("http://localhost", true),
            ("http://localhost:8080", true),
            ("http://LOCALHOST:8080", true),
            ("http://api.localhost", true),
            ("http://a.b.localhost:1", true),
            ("http://127.0.0.1:3000", true),
            ("http://127.1.2.3", true),
            ("http://127.255.255.255", true),
            ("http://[::1]:9000", true),
            ("http://[0:0:0:0:0:0:0:1]", true),
            ("https://localhost", true),
            ("http://example.com", false),
            ("http://10.0.0.1", false),
            ("http://128.0.0.1", false),
            ("http://0.0.0.0", false),
            ("http://localhost.example.com", false),
            ("http://notlocalhost", false),
            ("http://[::2]", false),
            // Stricter than a resolver: only the literal forms count.
            ("http://localhost.", false),
            ("http://127.0.0.1.", false),
            ("http://127.1", false),
            ("http://2130706433", false),
            ("http://[::ffff:127.0.0.1]", false),
        ] {
            assert_eq!(origin_of(url).is_loopback(), loopback, "{url}");
        }
    }

    #[test]
    fn the_policy_authorizes_only_allowed_origins_and_never_the_token_endpoint() {
        let policy = policy(
            OriginPolicy::builder()
                .allow_origin("https://auth.example.com")
                .allow_origin("https://API.example.com")
                .exclude("https://auth.example.com/oauth/token")
                .exclude("https://auth.example.com/revoke/"),
        );
        let allowed = |origin: &str| Ok(Origin::parse(origin).expect("valid"));
        let excluded = |origin: &str| {
            Err(Refusal::Excluded {
                origin: Origin::parse(origin).expect("valid"),
            })
        };
        let not_allowed = |origin: &str| {
            Err(Refusal::NotAllowed {
                origin: Origin::parse(origin).expect("valid"),
            })
        };
        for (url, expected) in [
            (
                "https://api.example.com/v1/me",
                allowed("https://api.example.com"),
            ),
            (
                "https://API.example.com:443/v1",
                allowed("https://api.example.com"),
            ),
            (
                "https://auth.example.com/userinfo",
                allowed("https://auth.example.com"),
            ),
            (
                "https://auth.example.com/",
                allowed("https://auth.example.com"),
            ),
            (
                "https://auth.example.com/oauth",
                allowed("https://auth.example.com"),
            ),
            (
                "https://auth.example.com/oauth/token/x",
                allowed("https://auth.example.com"),
            ),
            (
                "https://auth.example.com/oauth/token",
                excluded("https://auth.example.com"),
            ),
            (
                "https://AUTH.example.com:443/oauth/token/?x=1",
                excluded("https://auth.example.com"),
            ),
            (
                "https://auth.example.com/revoke",
                excluded("https://auth.example.com"),
            ),
            (
                "https://evil.example.com/steal",
                not_allowed("https://evil.example.com"),
            ),
            (
                "http://api.example.com/plain",
                not_allowed("http://api.example.com"),
            ),
            (
                "https://api.example.com:8443/",
                not_allowed("https://api.example.com:8443"),
            ),
            (
                "https://api.example.com.evil.test/",
                not_allowed("https://api.example.com.evil.test"),
            ),
            (
                "https://evil.test/?https://api.example.com",
                not_allowed("https://evil.test"),
            ),
            (
                "/relative",
                Err(Refusal::InvalidUrl {
                    reason: "it is not absolute (no scheme)",
                }),
            ),
            (
                "ftp://api.example.com/",
                Err(Refusal::InvalidUrl {
                    reason: "its scheme is neither http nor https",
                }),
            ),
        ] {
            assert_eq!(policy.check(&uri(url)), expected, "{url}");
            assert_eq!(policy.authorizes(&uri(url)), expected.is_ok(), "{url}");
        }
    }

    #[test]
    fn the_token_endpoint_is_refused_even_when_its_origin_is_not_allowed() {
        let policy = policy(
            OriginPolicy::builder()
                .allow_origin("https://api.example.com")
                .exclude("https://auth.example.com/oauth/token"),
        );
        assert!(matches!(
            policy.check(&uri("https://auth.example.com/oauth/token")),
            Err(Refusal::Excluded { .. })
        ));
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback_unless_allowed() {
        // (origin, allow_plain_http, accepted)
        for (origin, allow_plain_http, accepted) in [
            ("http://api.example.com", false, false),
            ("http://api.example.com", true, true),
            ("http://10.0.0.1:8080", false, false),
            ("http://localhost.", false, false),
            ("http://127.0.0.1:8080", false, true),
            ("http://localhost", false, true),
            ("http://localhost:3000", false, true),
            ("http://[::1]:1", false, true),
            ("https://api.example.com", false, true),
        ] {
            let built = OriginPolicy::builder()
                .allow_origin(origin)
                .allow_insecure_http(allow_plain_http)
                .build();
            match (built, accepted) {
                (Ok(_), true) => {}
                (Err(Error::InsecureHttp { origin: named }), false) => {
                    assert_eq!(named, origin_of(origin).to_string());
                }
                (other, _) => panic!("{origin} {allow_plain_http}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_builder_reports_the_first_invalid_input_then_a_missing_origin() {
        let build = |b: OriginPolicyBuilder| b.build().expect_err("invalid");
        assert_eq!(build(OriginPolicy::builder()), Error::NoOrigin);
        assert_eq!(
            build(OriginPolicy::builder().exclude("https://auth.example.com/token")),
            Error::NoOrigin
        );
        assert!(matches!(
            build(
                OriginPolicy::builder()
                    .allow_origin("https://api.example.com/v1")
                    .exclude("not a url")
            ),
            Error::InvalidOrigin { .. }
        ));
        assert!(matches!(
            build(
                OriginPolicy::builder()
                    .exclude("/relative")
                    .allow_origin("https://api.example.com/v1")
            ),
            Error::InvalidUrl { .. }
        ));
        assert!(matches!(
            build(
                OriginPolicy::builder()
                    .allow_origin("http://api.example.com")
                    .allow_origin("ftp://x")
            ),
            Error::InvalidOrigin { origin: None, .. }
        ));
    }

    #[test]
    fn duplicates_are_kept_once_and_debug_shows_only_origins() {
        let policy = policy(
            OriginPolicy::builder()
                .allow_origin("https://api.example.com")
                .allow_origin("HTTPS://api.example.com:443/")
                .allow_origin("http://localhost:1"),
        );
        assert_eq!(
            policy
                .allowed()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["https://api.example.com:443", "http://localhost:1"]
        );
        let debug = format!(
            "{:?}",
            OriginPolicy::builder().allow_origin("https://user:hunter2@api.example.com/p")
        );
        assert!(
            !debug.contains("hunter2") && !debug.contains("/p"),
            "{debug}"
        );
    }

    /// A policy for `https://api.example.com` and `https://auth.example.com`, whose
    /// token endpoint is `https://auth.example.com/oauth/token`.
    fn token_endpoint_policy() -> OriginPolicy {
        policy(
            OriginPolicy::builder()
                .allow_origin("https://api.example.com")
                .allow_origin("https://auth.example.com")
                .allow_origin("https://auth.example.com.")
                .exclude("https://auth.example.com/oauth/token"),
        )
    }

    #[test]
    fn every_spelling_of_the_token_endpoint_is_excluded() {
        let policy = token_endpoint_policy();
        for path in [
            "/oauth/token",
            // Case: many servers route case-insensitively.
            "/OAUTH/token",
            "/OAuth/Token",
            "/oauth/TOKEN/",
            // Repeated and trailing slashes.
            "//oauth/token",
            "/oauth//token",
            "///oauth///token///",
            "/oauth/token/",
            // Percent-encoding of unreserved characters, either case of hex digit.
            "/oauth/%74oken",
            "/%6F%61%75%74%68/%74%6f%6b%65%6e",
            "/oauth/%54OKEN",
            "/oauth/to%6Ben",
            // Dot segments, plain and encoded.
            "/oauth/./token",
            "/./oauth/token/.",
            "/x/../oauth/token",
            "/oauth/x/y/../../token",
            "/../oauth/token",
            "/../../../oauth/token",
            "/oauth/x/%2e%2e/token",
            "/oauth/x/%2E%2E/token",
            "/oauth/x/.%2e/token",
            "/oauth/%2e/token",
            "/oauth/token/x/..",
            // Encoded separators: some servers decode them before routing.
            "/oauth%2Ftoken",
            "/oauth%2ftoken",
            "/oauth%5Ctoken",
            "/oauth\\token",
            "/x%2F..%2Foauth/token",
            // Double (and triple) encoding: a proxy and the application both decode.
            "/oauth/%2574oken",
            "/oauth/%252574oken",
            "/oauth/x/%252e%252e/token",
            // Path parameters, which servlet containers remove from each segment.
            "/oauth/token;jsessionid=1",
            "/oauth;x=1/token;",
            "/oauth/token;a%2Fb",
            "/oauth/x/..;/token",
            "/oauth/token%3Bx",
            // A NUL ends the path for servers written in C.
            "/oauth/token%00.json",
            // Case folded beyond ASCII: the Kelvin sign is a `k` to a Unicode router.
            "/oauth/to%E2%84%AAen",
        ] {
            for suffix in ["", "?grant_type=refresh_token", "#fragment", "?a=b#c"] {
                for origin in [
                    "https://auth.example.com",
                    "https://AUTH.example.com:443",
                    "https://auth.example.com.",
                    "https://user:pw@auth.example.com",
                ] {
                    let url = format!("{origin}{path}{suffix}");
                    assert!(
                        matches!(policy.check(&uri(&url)), Err(Refusal::Excluded { .. })),
                        "{url}: {:?}",
                        policy.check(&uri(&url))
                    );
                }
            }
        }
    }

    #[test]
    fn other_paths_on_the_token_endpoints_origin_still_get_the_token() {
        let policy = token_endpoint_policy();
        for path in [
            "",
            "/",
            "/oauth",
            "/oauth/",
            "/oauth/tokens",
            "/oauth/toke",
            "/oauth/token/x",
            "/oauth/token%2Fx",
            "/oauth/token.json",
            "/oauth/token..",
            "/oauth2/token",
            "/api/oauth/token",
            "/oauth/token/../x",
            "/oauth/%74oken/x",
            "/oauth/tok%20en",
            "/oauth/token%",
            "/oauth/token%2",
            "/oauth/token%zz",
            "/userinfo",
        ] {
            let url = format!("https://auth.example.com{path}?x=1");
            assert_eq!(
                policy.check(&uri(&url)),
                Ok(Origin::parse("https://auth.example.com").expect("valid")),
                "{url}"
            );
        }
        // The token endpoint's path on another origin is not the token endpoint.
        for url in [
            "https://api.example.com/oauth/token",
            "https://api.example.com/OAUTH//%74oken",
        ] {
            assert!(policy.authorizes(&uri(url)), "{url}");
        }
        for url in [
            "http://auth.example.com/oauth/token",
            "https://auth.example.com:8443/oauth/token",
            "https://auth.example.com.evil.test/oauth/token",
        ] {
            assert!(
                matches!(policy.check(&uri(url)), Err(Refusal::NotAllowed { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn an_excluded_url_spelled_oddly_excludes_its_plain_spelling() {
        for excluded in [
            "https://auth.example.com/OAuth/./Token/?x=1",
            "https://auth.example.com:443//oauth/x/../%74oken#top",
            "HTTPS://AUTH.EXAMPLE.COM./oauth/token;v=2",
        ] {
            let policy = policy(
                OriginPolicy::builder()
                    .allow_origin("https://auth.example.com")
                    .exclude(excluded),
            );
            assert!(
                !policy.authorizes(&uri("https://auth.example.com/oauth/token")),
                "{excluded}"
            );
            assert!(
                policy.authorizes(&uri("https://auth.example.com/oauth/x")),
                "{excluded}"
            );
        }
    }

    #[test]
    fn a_path_that_does_not_finish_decoding_is_excluded_on_the_endpoints_server_only() {
        let policy = token_endpoint_policy();
        // Four rounds of encoding, one more than are decoded: `%25252525` never ends.
        for path in ["/oauth/%25252574oken", "/anything/%2525252541"] {
            let url = format!("https://auth.example.com{path}");
            assert!(
                matches!(policy.check(&uri(&url)), Err(Refusal::Excluded { .. })),
                "{url}"
            );
            let url = format!("https://api.example.com{path}");
            assert!(policy.authorizes(&uri(&url)), "{url}");
        }
        // A lone `%` or a `%` without two hex digits is no encoding: the path settles.
        assert!(policy.authorizes(&uri("https://auth.example.com/100%25")));
        assert!(policy.authorizes(&uri("https://auth.example.com/%%zz%2")));
    }

    #[test]
    fn an_excluded_refusal_never_prints_the_path_or_the_query() {
        let policy = token_endpoint_policy();
        let refusal = policy
            .check(&uri(
                "https://alice:hunter2@auth.example.com/Secret-Path/../oauth/token?code=hunter2",
            ))
            .expect_err("the token endpoint");
        let printed = format!("{refusal:?}");
        assert_eq!(
            printed,
            "Excluded { origin: Origin(https://auth.example.com:443) }"
        );
        let debug = format!("{policy:?}");
        assert!(
            debug.contains("Endpoint(https://auth.example.com:443/oauth/token)"),
            "{debug}"
        );
    }
}
