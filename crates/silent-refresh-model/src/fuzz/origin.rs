//! The `origin_policy` target: which requests get the access token.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;

use arbitrary::Arbitrary;
use http::Uri;

use super::Unstructured;
use silent_refresh_oauth2::Error;
use silent_refresh_oauth2::origin::{self, Origin, OriginPolicy, Refusal, parse_url};

/// Hosts the built URLs draw from, with whether each is loopback as the policy's
/// docs define it (literal forms only): look-alikes of one another, so that allowed
/// origins, excluded URLs and requests name the same hosts often.
const HOSTS: [(&str, bool); 15] = [
    ("api.example.com", false),
    ("api.example.com.", false),
    ("example.com", false),
    ("api.example.com.evil.test", false),
    ("evilapi.example.com", false),
    ("xn--pi-7ba.example.com", false),
    ("localhost", true),
    ("a.localhost", true),
    ("localhost.", false),
    ("localhost.evil.test", false),
    ("127.0.0.1", true),
    ("127.1", false),
    ("[::1]", true),
    ("[::ffff:127.0.0.1]", false),
    ("10.0.0.1", false),
];

/// The password of built URLs with user information: it must never be printed.
const PASSWORD: &str = "Pw9s3cret";
/// The start of every [`PathPick::Other`] path, and a segment of [`SEGMENTS`]: it must
/// never be printed by a refusal or an error (checked in any case, since a spelled path
/// may flip it).
const PATH_MARK: &str = "Pz8";
/// The start of every built query: it must never be printed.
const QUERY_MARK: &str = "Qz8";

/// The characters of built paths and queries after their mark.
const SAFE: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-._~";

/// A host of a built URL.
#[derive(Clone, Debug, Arbitrary)]
pub enum HostPick {
    /// One of the pool's look-alike hosts.
    Pool(u8),
    /// An IPv4 address.
    V4([u8; 4]),
    /// An IPv6 address, in brackets.
    V6([u16; 8]),
}

impl HostPick {
    /// The host as written, and whether it is loopback.
    fn resolve(&self) -> (String, bool) {
        match self {
            HostPick::Pool(n) => {
                let (host, loopback) = HOSTS[usize::from(*n) % HOSTS.len()];
                (host.to_owned(), loopback)
            }
            HostPick::V4(octets) => {
                let ip = Ipv4Addr::from(*octets);
                (ip.to_string(), ip.is_loopback())
            }
            HostPick::V6(segments) => {
                let ip = Ipv6Addr::from(*segments);
                (format!("[{ip}]"), ip.is_loopback())
            }
        }
    }
}

/// The port of a built URL.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum PortPick {
    /// No port.
    None,
    /// The scheme's default port, written out.
    Default,
    /// This port.
    Other(u16),
}

/// The segments of spelled paths: the token endpoint's (`oauth`, `token`), near misses
/// of them, and the path mark.
const SEGMENTS: [&str; 8] = [
    "oauth",
    "token",
    "oauth2",
    "tokens",
    "Token.json",
    "v1",
    PATH_MARK,
    "~a-b_c",
];

/// How many times the policy percent-decodes a path (`origin::DECODE_ROUNDS`): a path
/// still encoded after that is excluded on the servers of excluded URLs.
const DECODE_ROUNDS: u8 = 3;

/// The path of a built URL.
#[derive(Clone, Debug, Arbitrary)]
pub enum PathPick {
    /// No path.
    Empty,
    /// `/`.
    Slash,
    /// The token endpoint's path, `/oauth/token`, spelled with these changes.
    Token(Vec<Respell>),
    /// These segments of `SEGMENTS`, spelled with these changes.
    Spelled(Vec<u8>, Vec<Respell>),
    /// `/Pz8…`, then these bytes mapped onto safe characters and `/` (which may make
    /// dot segments and empty ones).
    Other(Vec<u8>),
}

/// A change to how a path is written that a lenient server still routes to the same
/// path (see `origin`'s module docs). Indices are taken modulo what there is.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Respell {
    /// Flip the case of the `.1`th letter of segment `.0` (letters of percent-encodings
    /// too: their case does not matter).
    Case(u8, u8),
    /// Percent-encode the `.1`th unreserved character of segment `.0`, in upper-case
    /// hex digits if `.2` (a dot segment `.` becomes `%2e`).
    Encode(u8, u8, bool),
    /// Double the `/` before segment `.0`.
    DoubleSlash(u8),
    /// Insert a `.` segment before segment `.0` (or at the end).
    Dot(u8),
    /// Insert the segment `SEGMENTS[.1]` and then `..` before segment `.0`.
    Detour(u8, u8),
    /// Insert a `..` segment at the start, where it cannot climb.
    DotDotAtRoot,
    /// Add `;p=1` to segment `.0`.
    Param(u8),
    /// Write the `/` before segment `.0` (not the first) as `%2F`, `%2f`, `%5C` or `\`.
    Separator(u8, u8),
    /// A trailing `/`.
    Trailing,
    /// Encode every `%` once more (`%2e` becomes `%252e`).
    EncodeAgain,
    /// Append `%00.json`: a server written in C stops at the NUL.
    Nul,
}

/// A path being spelled: segments with the separator written before each, what comes
/// after them, and how many rounds of percent-decoding it takes to decode fully.
struct Spelling {
    pieces: Vec<(String, String)>,
    tail: String,
    depth: u8,
}

impl Spelling {
    fn new(segments: &[&str]) -> Self {
        Self {
            pieces: segments
                .iter()
                .map(|s| ("/".to_owned(), (*s).to_owned()))
                .collect(),
            tail: String::new(),
            depth: 0,
        }
    }

    /// The index of piece `i`, modulo the pieces (`None` if there are none); `end`: or
    /// the end.
    fn at(&self, i: u8, end: bool) -> Option<usize> {
        let n = self.pieces.len() + usize::from(end);
        (n > 0).then(|| usize::from(i) % n)
    }

    fn apply(&mut self, change: Respell) {
        match change {
            Respell::Case(i, j) => {
                if let Some(i) = self.at(i, false) {
                    let text = &mut self.pieces[i].1;
                    let letters: Vec<usize> = text
                        .char_indices()
                        .filter(|(_, c)| c.is_ascii_alphabetic())
                        .map(|(k, _)| k)
                        .collect();
                    if !letters.is_empty() {
                        let k = letters[usize::from(j) % letters.len()];
                        let mut bytes = std::mem::take(text).into_bytes();
                        bytes[k] ^= 0x20;
                        *text = String::from_utf8(bytes).unwrap_or_default();
                    }
                }
            }
            Respell::Encode(i, j, upper) => {
                if let Some(i) = self.at(i, false) {
                    let text = &mut self.pieces[i].1;
                    let bytes = text.as_bytes();
                    // Unreserved characters that are not part of a percent-encoding.
                    let mut plain = Vec::new();
                    let mut k = 0;
                    while k < bytes.len() {
                        if bytes[k] == b'%' {
                            k += 3;
                            continue;
                        }
                        if bytes[k].is_ascii_alphanumeric() || b"-._~".contains(&bytes[k]) {
                            plain.push(k);
                        }
                        k += 1;
                    }
                    if !plain.is_empty() {
                        let k = plain[usize::from(j) % plain.len()];
                        let escape = if upper {
                            format!("%{:02X}", bytes[k])
                        } else {
                            format!("%{:02x}", bytes[k])
                        };
                        text.replace_range(k..=k, &escape);
                        self.depth = self.depth.max(1);
                    }
                }
            }
            Respell::DoubleSlash(i) => {
                if let Some(i) = self.at(i, false) {
                    self.pieces[i].0.push('/');
                }
            }
            Respell::Dot(i) => {
                let i = self.at(i, true).unwrap_or(0);
                self.pieces.insert(i, ("/".to_owned(), ".".to_owned()));
            }
            Respell::Detour(i, name) => {
                let i = self.at(i, true).unwrap_or(0);
                let name = SEGMENTS[usize::from(name) % SEGMENTS.len()];
                self.pieces.insert(i, ("/".to_owned(), "..".to_owned()));
                self.pieces.insert(i, ("/".to_owned(), name.to_owned()));
            }
            Respell::DotDotAtRoot => {
                self.pieces.insert(0, ("/".to_owned(), "..".to_owned()));
            }
            Respell::Param(i) => {
                // Not before an encoded separator: `token;p=1%2Fx` would also read as
                // `token` (a servlet container drops `;p=1%2Fx`), a second route.
                if let Some(i) = self.at(i, false)
                    && !self.pieces.get(i + 1).is_some_and(|(s, _)| s.contains('%'))
                {
                    self.pieces[i].1.push_str(";p=1");
                }
            }
            Respell::Separator(i, how) => {
                // Not after a segment with `;params` (see `Param`), and only a `/`
                // still written as one.
                let i = self.at(i, false).filter(|i| {
                    *i > 0
                        && !self.pieces[i - 1].1.contains(';')
                        && self.pieces[*i].0.ends_with('/')
                });
                if let Some(i) = i {
                    let separator = ["%2F", "%2f", "%5C", "\\"][usize::from(how) % 4];
                    let written = &mut self.pieces[i].0;
                    written.pop();
                    written.push_str(separator);
                    if separator.starts_with('%') {
                        self.depth = self.depth.max(1);
                    }
                }
            }
            Respell::Trailing => self.tail.push('/'),
            Respell::EncodeAgain => {
                let text = self.text();
                if text.contains('%') {
                    for (separator, segment) in &mut self.pieces {
                        *separator = separator.replace('%', "%25");
                        *segment = segment.replace('%', "%25");
                    }
                    self.tail = self.tail.replace('%', "%25");
                    self.depth = self.depth.saturating_add(1);
                }
            }
            Respell::Nul => {
                self.tail.push_str("%00.json");
                self.depth = self.depth.max(1);
            }
        }
    }

    fn text(&self) -> String {
        let mut text: String = self
            .pieces
            .iter()
            .flat_map(|(separator, segment)| [separator.as_str(), segment.as_str()])
            .collect();
        text.push_str(&self.tail);
        if !text.starts_with('/') {
            text.insert(0, '/');
        }
        text
    }
}

impl PathPick {
    /// The base segments of a spelled path.
    fn base(&self) -> Option<(Vec<&'static str>, &[Respell])> {
        match self {
            PathPick::Token(changes) => Some((vec!["oauth", "token"], changes)),
            PathPick::Spelled(segments, changes) => Some((
                segments
                    .iter()
                    .map(|i| SEGMENTS[usize::from(*i) % SEGMENTS.len()])
                    .collect(),
                changes,
            )),
            _ => None,
        }
    }

    /// The path as written, and how many rounds of decoding it takes.
    fn spelled(&self) -> (String, u8) {
        match self {
            PathPick::Empty => (String::new(), 0),
            PathPick::Slash => ("/".to_owned(), 0),
            PathPick::Other(bytes) => (format!("/{PATH_MARK}{}", map(bytes, b"/")), 0),
            PathPick::Token(_) | PathPick::Spelled(..) => {
                let (base, changes) = self.base().unwrap_or_default();
                let mut spelling = Spelling::new(&base);
                for change in changes {
                    spelling.apply(*change);
                }
                (spelling.text(), spelling.depth)
            }
        }
    }

    /// The path every lenient server routes it to, read from how it was built (not by
    /// the policy's code): lower case, segments joined by `/`, `/` for none. `None`
    /// when it takes more rounds of decoding than the policy does.
    fn route(&self) -> Option<String> {
        let segments: Vec<String> = match self {
            PathPick::Empty | PathPick::Slash => Vec::new(),
            PathPick::Token(_) | PathPick::Spelled(..) => {
                if self.spelled().1 > DECODE_ROUNDS {
                    return None;
                }
                let (base, _) = self.base().unwrap_or_default();
                base.iter().map(|s| s.to_ascii_lowercase()).collect()
            }
            // Only letters, digits, `-._~` and `/`: RFC 3986 section 5.2.4 and empty
            // segments dropped.
            PathPick::Other(_) => {
                let (text, _) = self.spelled();
                let mut segments: Vec<String> = Vec::new();
                for segment in text.split('/') {
                    match segment {
                        "" | "." => {}
                        ".." => {
                            segments.pop();
                        }
                        _ => segments.push(segment.to_ascii_lowercase()),
                    }
                }
                segments
            }
        };
        Some(format!("/{}", segments.join("/")))
    }
}

/// A URL built from parts: well-formed, so its origin is known without parsing it.
#[derive(Clone, Debug, Arbitrary)]
pub struct UrlParts {
    /// `https` or `http`.
    pub https: bool,
    /// The scheme in upper case.
    pub upper_scheme: bool,
    /// The host.
    pub host: HostPick,
    /// The host in upper case.
    pub upper_host: bool,
    /// The port.
    pub port: PortPick,
    /// User information: none, `user@`, or `user:Pw9s3cret@`.
    pub user: Option<bool>,
    /// The path.
    pub path: PathPick,
    /// A query: `?Qz8…`, then these bytes mapped onto safe characters and `=&`.
    pub query: Option<Vec<u8>>,
}

impl UrlParts {
    fn text(&self) -> String {
        let scheme = match (self.https, self.upper_scheme) {
            (true, false) => "https",
            (true, true) => "HTTPS",
            (false, false) => "http",
            (false, true) => "HTTP",
        };
        let (mut host, _) = self.host.resolve();
        if self.upper_host {
            host = host.to_ascii_uppercase();
        }
        let user = match self.user {
            None => String::new(),
            Some(false) => "user@".to_owned(),
            Some(true) => format!("user:{PASSWORD}@"),
        };
        let port = match self.port {
            PortPick::None => String::new(),
            PortPick::Default => format!(":{}", self.default_port()),
            PortPick::Other(port) => format!(":{port}"),
        };
        let (path, _) = self.path.spelled();
        let query = match &self.query {
            None => String::new(),
            Some(bytes) => format!("?{QUERY_MARK}{}", map(bytes, b"=&")),
        };
        format!("{scheme}://{user}{host}{port}{path}{query}")
    }

    fn default_port(&self) -> u16 {
        if self.https { 443 } else { 80 }
    }

    /// The origin as [`Origin`] prints it, and whether its host is loopback.
    fn expected(&self) -> (String, bool) {
        let (host, loopback) = self.host.resolve();
        let port = match self.port {
            PortPick::None | PortPick::Default => self.default_port(),
            PortPick::Other(port) => port,
        };
        let scheme = if self.https { "https" } else { "http" };
        (
            format!("{scheme}://{}:{port}", host.to_ascii_lowercase()),
            loopback,
        )
    }

    /// Whether it is a bare origin (what an allow-list accepts).
    fn is_bare(&self) -> bool {
        self.user.is_none()
            && self.query.is_none()
            && matches!(self.path.spelled().0.as_str(), "" | "/")
    }

    /// The same URL written differently, to the same origin and path: scheme and host
    /// case flipped, the default port written out or left out, no user information, no
    /// query.
    fn respelled(&self) -> Self {
        Self {
            upper_scheme: !self.upper_scheme,
            upper_host: !self.upper_host,
            port: match self.port {
                PortPick::None => PortPick::Default,
                PortPick::Default => PortPick::None,
                other => other,
            },
            user: None,
            query: None,
            ..self.clone()
        }
    }
}

fn map(bytes: &[u8], extra: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| {
            let i = usize::from(*b) % (SAFE.len() + extra.len());
            char::from(*SAFE.get(i).unwrap_or_else(|| &extra[i - SAFE.len()]))
        })
        .collect()
}

/// A URL for the policy: built from parts, or any text.
#[derive(Clone, Debug, Arbitrary)]
pub enum OriginUrl {
    /// Built from parts.
    Parts(UrlParts),
    /// Any text.
    Raw(String),
}

impl OriginUrl {
    /// The URL as the policy is given it (to reproduce a finding by hand).
    #[must_use]
    pub fn text(&self) -> String {
        match self {
            OriginUrl::Parts(parts) => parts.text(),
            OriginUrl::Raw(text) => text.clone(),
        }
    }
}

/// A policy's settings and the requests checked against it.
#[derive(Clone, Debug, Arbitrary)]
pub struct OriginCase {
    /// The allowed origins, in order.
    pub allowed: Vec<OriginUrl>,
    /// The excluded URLs (the token endpoint), in order.
    pub excluded: Vec<OriginUrl>,
    /// Whether plain `http` is allowed to hosts that are not loopback.
    pub allow_plain_http: bool,
    /// Whether the origins of the excluded URLs built from parts are allowed too (the
    /// usual setting: the token endpoint on the API's origin).
    pub allow_excluded_origins: bool,
    /// The requests' URLs.
    pub requests: Vec<RequestUrl>,
}

/// The URL of a request.
#[derive(Clone, Debug, Arbitrary)]
pub enum RequestUrl {
    /// This URL.
    Url(OriginUrl),
    /// The `.0`th URL built from parts among the excluded URLs then the allowed origins
    /// (modulo their number), with this path instead of its own: another spelling of
    /// the token endpoint, or another path on its server, without waiting for the
    /// fuzzer to build the same origin twice.
    Beside(u8, PathPick),
}

impl RequestUrl {
    /// The request's URL, built in `case`: `None` for [`Beside`](Self::Beside) when no
    /// URL of `case` is built from parts.
    #[must_use]
    pub fn resolve(&self, case: &OriginCase) -> Option<OriginUrl> {
        match self {
            RequestUrl::Url(url) => Some(url.clone()),
            RequestUrl::Beside(i, path) => {
                let built: Vec<&UrlParts> = case
                    .excluded
                    .iter()
                    .chain(&case.allowed)
                    .filter_map(|url| match url {
                        OriginUrl::Parts(parts) => Some(parts),
                        OriginUrl::Raw(_) => None,
                    })
                    .collect();
                let parts = built.get(usize::from(*i) % built.len().max(1))?;
                Some(OriginUrl::Parts(UrlParts {
                    path: path.clone(),
                    ..(*parts).clone()
                }))
            }
        }
    }
}

/// Reads the bytes as an [`OriginCase`] and checks the policy the builder makes and
/// its verdict on each request: no panic; an allow-list entry with a path, a query or
/// user information is refused; a built policy allows plain `http` only to loopback
/// hosts (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`, literally) unless opted
/// in; a request gets the token exactly when its origin, read as the URL was built
/// (scheme and host in lower case, the default port explicit, user information
/// ignored), is allowed and it does not go to an excluded URL; the verdict does not
/// change when the URL is written differently (case, default port, user information,
/// query); and no error, refusal, origin or `Debug` prints a password or a query, nor a
/// refusal or error a path.
///
/// A request goes to an excluded URL when it is on the same server (same origin, the
/// host up to trailing dots) and its path routes to the excluded path, as known from
/// how both were built: every [`Respell`] of a path routes to the path it respells
/// (however the policy reads paths), and different segments route to different paths,
/// so the token endpoint gets no token whatever the spelling, and every other path on
/// an allowed origin does. A path that takes more rounds of percent-decoding than the
/// policy does is excluded on the servers of excluded URLs. For URLs given as text,
/// only what does not depend on how paths are read is checked.
///
/// # Errors
///
/// What is wrong.
pub fn origin_policy(bytes: &[u8]) -> Result<(), String> {
    let Ok(case) = OriginCase::arbitrary_take_rest(Unstructured::new(bytes)) else {
        return Ok(());
    };
    check_origin_case(&case)
}

/// Whether `text` holds a mark (`with_paths`: the path mark too, in any case, since a
/// spelled path may have flipped it).
fn marked(text: &str, with_paths: bool) -> Option<&'static str> {
    if let Some(mark) = [PASSWORD, QUERY_MARK]
        .into_iter()
        .find(|m| text.contains(m))
    {
        return Some(mark);
    }
    (with_paths
        && text
            .to_ascii_lowercase()
            .contains(&PATH_MARK.to_ascii_lowercase()))
    .then_some(PATH_MARK)
}

/// What must not be printed (`with_paths`: paths too).
fn unprinted(text: &str, what: &str, with_paths: bool) -> Result<(), String> {
    match marked(text, with_paths) {
        Some(mark) => Err(format!("{what} prints {mark:?}: {text}")),
        None => Ok(()),
    }
}

/// Where a path routes, as the model knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Route {
    /// To this path (see [`PathPick::route`]).
    Known(String),
    /// It takes more rounds of decoding than the policy does.
    Undecoded,
    /// Given as text: not known.
    Unknown,
}

/// A URL's server (its origin, the host without trailing dots) and the route and text
/// of its path.
struct Target {
    server: String,
    route: Route,
    /// The path as text, trailing `/` removed: two URLs with the same text go to the
    /// same place however paths are read.
    text: String,
}

impl Target {
    fn of(url: &OriginUrl, uri: &Uri) -> Option<Self> {
        let origin = Origin::of(uri).ok()?;
        let route = match url {
            OriginUrl::Parts(parts) => parts.path.route().map_or(Route::Undecoded, Route::Known),
            OriginUrl::Raw(_) => Route::Unknown,
        };
        Some(Self {
            server: server(&origin),
            route,
            text: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Whether a request for this target goes to the excluded URL `to`: `None` when the
    /// model cannot know.
    fn reaches(&self, to: &Target) -> Option<bool> {
        if self.server != to.server {
            return Some(false);
        }
        match (&self.route, &to.route) {
            (Route::Undecoded, _) => Some(true),
            (Route::Known(a), Route::Known(b)) => Some(a == b),
            _ if self.text == to.text => Some(true),
            _ => None,
        }
    }
}

/// An origin as printed, with the trailing dots of its host removed.
fn server(origin: &Origin) -> String {
    let printed = origin.to_string();
    match printed.rsplit_once(':') {
        Some((rest, port)) => format!("{}:{port}", rest.trim_end_matches('.')),
        None => printed,
    }
}

fn check_origin_case(case: &OriginCase) -> Result<(), String> {
    // Raw text may hold the marks itself: then only built URLs are checked for them.
    let raw_marks = case
        .allowed
        .iter()
        .chain(&case.excluded)
        .chain(case.requests.iter().filter_map(|url| match url {
            RequestUrl::Url(url) => Some(url),
            RequestUrl::Beside(..) => None,
        }))
        .any(|url| match url {
            OriginUrl::Raw(text) => marked(text, true).is_some(),
            OriginUrl::Parts(_) => false,
        });
    // Loopback as the docs define it, for the origins built from parts.
    let mut known: HashMap<String, bool> = HashMap::new();
    let mut builder = OriginPolicy::builder().allow_insecure_http(case.allow_plain_http);
    let mut bad_entry = false;
    for url in &case.allowed {
        builder = builder.allow_origin(&url.text());
        if let OriginUrl::Parts(parts) = url {
            let (origin, loopback) = parts.expected();
            known.insert(origin, loopback);
            bad_entry |= !parts.is_bare();
        }
    }
    if case.allow_excluded_origins {
        for url in &case.excluded {
            if let OriginUrl::Parts(parts) = url {
                let bare = UrlParts {
                    path: PathPick::Empty,
                    user: None,
                    query: None,
                    ..parts.clone()
                };
                builder = builder.allow_origin(&bare.text());
            }
        }
    }
    // The excluded URLs, read independently of the policy.
    let mut excluded = Vec::new();
    for url in &case.excluded {
        let text = url.text();
        builder = builder.exclude(&text);
        if let Some(target) = parse_url(&text).ok().and_then(|uri| Target::of(url, &uri)) {
            excluded.push(Target {
                // How an excluded path that does not decode is read is not known.
                route: match target.route {
                    Route::Undecoded => Route::Unknown,
                    route => route,
                },
                ..target
            });
        }
        if let OriginUrl::Parts(parts) = url {
            let (origin, loopback) = parts.expected();
            known.insert(origin, loopback);
        }
    }
    if !raw_marks {
        unprinted(&format!("{builder:?}"), "the builder's Debug", false)?;
    }

    let policy = match builder.build() {
        Ok(policy) => policy,
        Err(error) => {
            if !raw_marks {
                unprinted(&error.to_string(), "a build error", true)?;
                unprinted(&format!("{error:?}"), "a build error's Debug", true)?;
            }
            if let Error::InsecureHttp { origin } = &error {
                if case.allow_plain_http {
                    return Err(format!("{origin} refused after allowing plain http"));
                }
                if !origin.starts_with("http://") || known.get(origin) == Some(&true) {
                    return Err(format!("{origin} refused as insecure"));
                }
            }
            return Ok(());
        }
    };
    if bad_entry {
        return Err("an allow-list entry with a path, a query or a user was accepted".to_owned());
    }
    if !raw_marks {
        unprinted(&format!("{policy:?}"), "the policy's Debug", false)?;
    }
    let allowed = policy.allowed();
    for (i, origin) in allowed.iter().enumerate() {
        if allowed[..i].contains(origin) {
            return Err(format!("{origin} allowed twice"));
        }
        let printed = origin.to_string();
        let loopback = known.get(&printed).copied();
        if loopback.is_some_and(|l| l != origin.is_loopback()) {
            return Err(format!("{printed}: loopback is {}", origin.is_loopback()));
        }
        if !origin.is_https() && !case.allow_plain_http && !origin.is_loopback() {
            return Err(format!("{printed} allowed over plain http"));
        }
    }

    for url in case.requests.iter().filter_map(|url| url.resolve(case)) {
        let url = &url;
        let Ok(uri) = parse_url(&url.text()) else {
            continue;
        };
        let verdict = check_request(&policy, &excluded, url, &uri, raw_marks)?;
        if let OriginUrl::Parts(parts) = url {
            let (expected, _) = parts.expected();
            match Origin::of(&uri) {
                Ok(origin) if origin.to_string() == expected => {}
                Ok(origin) => {
                    return Err(format!(
                        "the origin of a URL to {expected} read as {origin}"
                    ));
                }
                Err(error) => return Err(format!("a URL to {expected} refused: {error}")),
            }
            let respelled = OriginUrl::Parts(parts.respelled());
            let Ok(other) = parse_url(&respelled.text()) else {
                return Err(format!("a URL to {expected}, respelled, does not parse"));
            };
            let again = check_request(&policy, &excluded, &respelled, &other, raw_marks)?;
            if again != verdict {
                return Err(format!(
                    "the verdict on a URL to {expected} changes when it is respelled: \
                     {verdict:?} then {again:?}"
                ));
            }
        }
    }
    Ok(())
}

/// A reqwest request holds its URL as a `url::Url`, which the integrations read in place
/// ([`origin::RequestUrl::of_url`]): the policy must answer it as it answers the same URL
/// written out and parsed as a `Uri` (the `url` crate may normalise it, so the verdict
/// is compared with that of its own serialization, not of `uri`).
fn as_reqwest_reads_it(policy: &OriginPolicy, uri: &Uri) -> Result<(), String> {
    // The authority is read in one pass, as `http` reads it in two.
    if let (Ok(url), Some(authority)) = (origin::RequestUrl::of(uri), uri.authority()) {
        let default = if url.is_https() { 443 } else { 80 };
        let http_reads = (authority.host(), authority.port_u16().unwrap_or(default));
        if (url.host(), url.port()) != http_reads {
            return Err(format!(
                "RequestUrl reads host and port {:?}, http {http_reads:?}",
                (url.host(), url.port())
            ));
        }
    }
    let Ok(parsed) = url::Url::parse(&uri.to_string()) else {
        return Ok(());
    };
    let Ok(written) = parse_url(parsed.as_str()) else {
        return Ok(());
    };
    let in_place = origin::RequestUrl::of_url(&parsed);
    if in_place.as_ref().ok() != origin::RequestUrl::of(&written).as_ref().ok() {
        return Err("a url::Url read in place differs from its serialization".to_owned());
    }
    let in_place = in_place.map_or_else(
        |_| policy.check(&written).map(|_| ()),
        |url| policy.check_url(&url).map(|_| ()),
    );
    let by_uri = policy.check(&written).map(|_| ());
    if in_place != by_uri {
        return Err(format!(
            "a url::Url read in place gets {in_place:?}, its serialization {by_uri:?}"
        ));
    }
    if let Ok(url) = origin::RequestUrl::of_url(&parsed)
        && policy.permits_url(&url).is_ok() != by_uri.is_ok()
    {
        return Err("permits_url and check disagree on a url::Url".to_owned());
    }
    Ok(())
}

/// Checks one request's verdict against its origin and path, read independently.
fn check_request(
    policy: &OriginPolicy,
    excluded: &[Target],
    url: &OriginUrl,
    uri: &Uri,
    raw_marks: bool,
) -> Result<Result<Origin, Refusal>, String> {
    let verdict = policy.check(uri);
    // `authorizes` is `permits`, read in place (no origin built): it must agree.
    if policy.authorizes(uri) != verdict.is_ok() {
        return Err("authorizes and check disagree".to_owned());
    }
    if let Some(allowed) = policy
        .allowed()
        .iter()
        .find(|o| o.contains(uri) != Origin::of(uri).is_ok_and(|of| &of == *o))
    {
        return Err(format!("{allowed}.contains disagrees with Origin::of"));
    }
    if !raw_marks && let Err(refusal) = &verdict {
        unprinted(&format!("{refusal:?}"), "a refusal", true)?;
    }
    as_reqwest_reads_it(policy, uri)?;
    let origin = Origin::of(uri);
    // Whether the request goes to an excluded URL: `None` when not known.
    let goes_to_excluded = || -> Option<bool> {
        let target = Target::of(url, uri)?;
        let mut known = Some(false);
        for to in excluded {
            match target.reaches(to) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => known = None,
            }
        }
        known
    };
    let on_excluded_server = |origin: &Origin| {
        let server = server(origin);
        excluded.iter().any(|to| to.server == server)
    };
    match (&verdict, &origin) {
        (Ok(granted), Ok(origin)) => {
            if granted != origin {
                return Err(format!("granted as {granted}, but the URL is to {origin}"));
            }
            if !policy.allowed().contains(origin) {
                return Err(format!("the token goes to {origin}, not allowed"));
            }
            if goes_to_excluded() == Some(true) {
                return Err(format!(
                    "the token goes to a spelling of an excluded URL on {origin}: {}",
                    uri.path()
                ));
            }
        }
        (Err(Refusal::Excluded { origin: said }), Ok(origin)) => {
            if said != origin || !on_excluded_server(origin) || goes_to_excluded() == Some(false) {
                return Err(format!(
                    "{origin} refused as excluded, for a path to elsewhere: {}",
                    uri.path()
                ));
            }
        }
        (Err(Refusal::NotAllowed { origin: said }), Ok(origin)) => {
            if said != origin
                || policy.allowed().contains(origin)
                || goes_to_excluded() == Some(true)
            {
                return Err(format!("{origin} refused as not allowed"));
            }
        }
        (Err(Refusal::InvalidUrl { .. }), Err(_)) => {}
        (Ok(granted), Err(_)) => return Err(format!("granted as {granted}, no origin")),
        (Err(refusal), _) => return Err(format!("refused as {refusal:?}")),
    }
    if !raw_marks && let Ok(origin) = &origin {
        unprinted(&origin.to_string(), "an origin", true)?;
    }
    Ok(verdict)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: u8, path: PathPick) -> OriginUrl {
        OriginUrl::Parts(UrlParts {
            https: true,
            upper_scheme: false,
            host: HostPick::Pool(host),
            upper_host: false,
            port: PortPick::None,
            user: None,
            path,
            query: None,
        })
    }

    /// Each change, alone, on the token endpoint's path: how it is written, and that
    /// the model still routes it to `/oauth/token`.
    #[test]
    fn every_respelling_of_the_token_path_routes_to_it() {
        for (changes, written) in [
            (vec![], "/oauth/token"),
            (vec![Respell::Case(0, 1)], "/oAuth/token"),
            (vec![Respell::Encode(1, 0, false)], "/oauth/%74oken"),
            (vec![Respell::Encode(1, 1, true)], "/oauth/t%6Fken"),
            (vec![Respell::DoubleSlash(0)], "//oauth/token"),
            (vec![Respell::Dot(1)], "/oauth/./token"),
            (
                vec![Respell::Dot(2), Respell::Encode(2, 0, true)],
                "/oauth/token/%2E",
            ),
            (vec![Respell::Detour(0, 2)], "/oauth2/../oauth/token"),
            (vec![Respell::DotDotAtRoot], "/../oauth/token"),
            (vec![Respell::Param(1)], "/oauth/token;p=1"),
            (vec![Respell::Separator(1, 0)], "/oauth%2Ftoken"),
            (vec![Respell::Separator(1, 3)], "/oauth\\token"),
            // The first `/` is never encoded, nor one after `;params`.
            (vec![Respell::Separator(0, 0)], "/oauth/token"),
            (
                vec![Respell::Param(0), Respell::Separator(1, 0)],
                "/oauth;p=1/token",
            ),
            (
                vec![Respell::Separator(1, 0), Respell::Param(0)],
                "/oauth%2Ftoken",
            ),
            (vec![Respell::Trailing], "/oauth/token/"),
            (vec![Respell::Nul], "/oauth/token%00.json"),
            (
                vec![Respell::Encode(1, 0, false), Respell::EncodeAgain],
                "/oauth/%2574oken",
            ),
            // A separator already encoded is not encoded again.
            (
                vec![Respell::Separator(1, 0), Respell::Separator(1, 2)],
                "/oauth%2Ftoken",
            ),
            // Nothing to encode again: no change.
            (vec![Respell::EncodeAgain], "/oauth/token"),
        ] {
            let path = PathPick::Token(changes.clone());
            assert_eq!(path.spelled().0, written, "{changes:?}");
            assert_eq!(path.route().as_deref(), Some("/oauth/token"), "{changes:?}");
        }
    }

    #[test]
    fn a_path_encoded_more_times_than_the_policy_decodes_has_no_known_route() {
        let mut changes = vec![Respell::Encode(1, 0, true)];
        for rounds in 1..=5 {
            let path = PathPick::Token(changes.clone());
            assert_eq!(path.spelled().1, rounds);
            assert_eq!(path.route().is_some(), rounds <= DECODE_ROUNDS, "{rounds}");
            changes.push(Respell::EncodeAgain);
        }
    }

    #[test]
    fn other_paths_route_by_their_segments() {
        for (path, route) in [
            (PathPick::Empty, "/"),
            (PathPick::Slash, "/"),
            (
                PathPick::Spelled(vec![2, 1], vec![Respell::Case(0, 0)]),
                "/oauth2/token",
            ),
            (PathPick::Spelled(vec![0, 4], vec![]), "/oauth/token.json"),
            (PathPick::Spelled(vec![0, 1, 5], vec![]), "/oauth/token/v1"),
            (
                PathPick::Spelled(vec![0, 1, 5], vec![Respell::Detour(2, 0)]),
                "/oauth/token/v1",
            ),
            // `/Pz8`, then `/`, `.`, `.`, `/`: a dot segment climbs out of the mark.
            (PathPick::Other(vec![40, 37, 37, 40]), "/"),
        ] {
            assert_eq!(path.route().as_deref(), Some(route), "{path:?}");
        }
    }

    /// The policy against the model on the same spellings: the token endpoint's are
    /// refused as excluded, others on its origin granted, and the checks agree.
    #[test]
    fn the_policy_excludes_exactly_the_spellings_of_the_token_endpoint() {
        let respellings = [
            vec![Respell::Case(1, 4), Respell::DoubleSlash(1)],
            vec![
                Respell::Encode(1, 0, false),
                Respell::EncodeAgain,
                Respell::Dot(0),
            ],
            vec![
                Respell::Detour(1, 1),
                Respell::Encode(1, 0, true),
                Respell::Encode(2, 1, false),
            ],
            vec![
                Respell::Param(0),
                Respell::Separator(1, 2),
                Respell::Trailing,
            ],
            vec![
                Respell::Separator(1, 1),
                Respell::DotDotAtRoot,
                Respell::Nul,
            ],
        ];
        let near_misses = [vec![0, 3], vec![2, 1], vec![0, 1, 5], vec![1], vec![1, 0]];
        let mut requests: Vec<OriginUrl> = respellings
            .iter()
            .map(|changes| parts(0, PathPick::Token(changes.clone())))
            .collect();
        requests.extend(near_misses.iter().map(|segments| {
            parts(
                0,
                PathPick::Spelled(segments.clone(), vec![Respell::Case(0, 0)]),
            )
        }));
        let case = OriginCase {
            allowed: vec![parts(0, PathPick::Empty)],
            excluded: vec![parts(0, PathPick::Token(Vec::new()))],
            allow_plain_http: false,
            allow_excluded_origins: false,
            requests: requests.iter().cloned().map(RequestUrl::Url).collect(),
        };
        assert_eq!(check_origin_case(&case), Ok(()));
        let policy = OriginPolicy::builder()
            .allow_origin("https://api.example.com")
            .exclude("https://api.example.com/oauth/token")
            .build()
            .expect("a valid policy");
        for (i, request) in requests.iter().enumerate() {
            let uri = parse_url(&request.text()).expect("a built URL");
            let excluded = matches!(policy.check(&uri), Err(Refusal::Excluded { .. }));
            assert_eq!(excluded, i < respellings.len(), "{}", request.text());
        }
        // The same request on the host with a trailing dot goes to the same server.
        let dotted = parts(1, PathPick::Token(respellings[0].clone()));
        let uri = parse_url(&dotted.text()).expect("a built URL");
        assert!(matches!(policy.check(&uri), Err(Refusal::Excluded { .. })));
    }

    /// The committed seeds are in this format: among them, spellings of the token
    /// endpoint that are refused, and other paths on its server that get the token.
    #[test]
    fn the_committed_seeds_exercise_respelled_paths() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/origin_policy");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // A packaged crate has no fuzz/ beside it.
            return;
        };
        let (mut refused, mut granted) = (0, 0);
        for entry in entries {
            let bytes = std::fs::read(entry.expect("an entry").path()).expect("a seed");
            assert_eq!(origin_policy(&bytes), Ok(()));
            let Ok(case) = OriginCase::arbitrary_take_rest(Unstructured::new(&bytes)) else {
                continue;
            };
            let mut builder = OriginPolicy::builder();
            for url in &case.allowed {
                builder = builder.allow_origin(&url.text());
            }
            for url in &case.excluded {
                builder = builder.exclude(&url.text());
                if let (true, OriginUrl::Parts(parts)) = (case.allow_excluded_origins, url) {
                    let (origin, _) = parts.expected();
                    builder = builder.allow_origin(&origin);
                }
            }
            let Ok(policy) = builder.allow_insecure_http(case.allow_plain_http).build() else {
                continue;
            };
            for request in case.requests.iter().filter_map(|url| url.resolve(&case)) {
                let OriginUrl::Parts(parts) = &request else {
                    continue;
                };
                let Ok(uri) = parse_url(&request.text()) else {
                    continue;
                };
                match (&parts.path, policy.check(&uri)) {
                    (PathPick::Token(changes), Err(Refusal::Excluded { .. }))
                        if !changes.is_empty() =>
                    {
                        refused += 1;
                    }
                    (PathPick::Spelled(..) | PathPick::Other(_), Ok(origin))
                        if policy
                            .check(&parse_url(&format!("{origin}/oauth/token")).expect("a URL"))
                            .is_err() =>
                    {
                        granted += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(
            refused > 0,
            "no seed has a respelled token endpoint refused"
        );
        assert!(
            granted > 0,
            "no seed grants another path on an excluded server"
        );
    }
}
