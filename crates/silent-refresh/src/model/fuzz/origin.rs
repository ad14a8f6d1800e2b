//! The `origin_policy` target: which requests get the access token.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::HashMap;

use arbitrary::Arbitrary;
use http::Uri;

use super::Unstructured;
use crate::Error;
use crate::origin::{Origin, OriginPolicy, Refusal, parse_url};

/// Hosts the built URLs draw from, with whether each is loopback as the policy's
/// docs define it (literal forms only): look-alikes of one another, so that allowed
/// origins, excluded URLs and requests name the same hosts often.
const HOSTS: [(&str, bool); 14] = [
    ("api.example.com", false),
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
/// The start of every built path other than the pool's: it must never be printed by a
/// refusal or an error.
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

/// The path of a built URL.
#[derive(Clone, Debug, Arbitrary)]
pub enum PathPick {
    /// No path.
    Empty,
    /// `/`.
    Slash,
    /// `/oauth/token`, or with a trailing `/` (the token endpoint's path).
    Token(bool),
    /// `/Pz8…`, then these bytes mapped onto safe characters and `/`.
    Other(Vec<u8>),
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
        let path = match &self.path {
            PathPick::Empty => String::new(),
            PathPick::Slash => "/".to_owned(),
            PathPick::Token(false) => "/oauth/token".to_owned(),
            PathPick::Token(true) => "/oauth/token/".to_owned(),
            PathPick::Other(bytes) => format!("/{PATH_MARK}{}", map(bytes, b"/")),
        };
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
            && matches!(self.path, PathPick::Empty | PathPick::Slash)
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
    fn text(&self) -> String {
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
    /// The requests' URLs.
    pub requests: Vec<OriginUrl>,
}

/// Reads the bytes as an [`OriginCase`] and checks the policy the builder makes and
/// its verdict on each request: no panic; an allow-list entry with a path, a query or
/// user information is refused; a built policy allows plain `http` only to loopback
/// hosts (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`, literally) unless opted
/// in; a request gets the token exactly when its origin, read as the URL was built
/// (scheme and host in lower case, the default port explicit, user information
/// ignored), is allowed and it does not go to an excluded URL (same origin, same path
/// up to trailing `/`); the verdict does not change when the URL is written
/// differently (case, default port, user information, query); and no error, refusal,
/// origin or `Debug` prints a password or a query, nor a refusal or error a path.
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

/// What must not be printed (`with_paths`: paths too).
fn unprinted(text: &str, what: &str, with_paths: bool) -> Result<(), String> {
    let marks: &[&str] = if with_paths {
        &[PASSWORD, QUERY_MARK, PATH_MARK]
    } else {
        &[PASSWORD, QUERY_MARK]
    };
    match marks.iter().find(|mark| text.contains(**mark)) {
        Some(mark) => Err(format!("{what} prints {mark:?}: {text}")),
        None => Ok(()),
    }
}

fn check_origin_case(case: &OriginCase) -> Result<(), String> {
    // Raw text may hold the marks itself: then only built URLs are checked for them.
    let raw_marks = case
        .allowed
        .iter()
        .chain(&case.excluded)
        .chain(&case.requests)
        .any(|url| match url {
            OriginUrl::Raw(text) => [PASSWORD, QUERY_MARK, PATH_MARK]
                .iter()
                .any(|mark| text.contains(mark)),
            OriginUrl::Parts(_) => false,
        });
    // Loopback as the docs define it, for the origins built from parts.
    let mut known: HashMap<String, bool> = HashMap::new();
    let mut builder = OriginPolicy::builder().allow_plain_http(case.allow_plain_http);
    let mut bad_entry = false;
    for url in &case.allowed {
        builder = builder.allow_origin(&url.text());
        if let OriginUrl::Parts(parts) = url {
            let (origin, loopback) = parts.expected();
            known.insert(origin, loopback);
            bad_entry |= !parts.is_bare();
        }
    }
    // The excluded URLs, read independently of the policy: origin and normalised path.
    let mut excluded = Vec::new();
    for url in &case.excluded {
        let text = url.text();
        builder = builder.exclude(&text);
        if let Ok(uri) = parse_url(&text) {
            if let Ok(origin) = Origin::of(&uri) {
                excluded.push((origin, normalised(uri.path())));
            }
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

    for url in &case.requests {
        let Ok(uri) = parse_url(&url.text()) else {
            continue;
        };
        let verdict = check_request(&policy, &excluded, &uri, raw_marks)?;
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
            let respelled = parts.respelled();
            let Ok(other) = parse_url(&respelled.text()) else {
                return Err(format!("a URL to {expected}, respelled, does not parse"));
            };
            let again = check_request(&policy, &excluded, &other, raw_marks)?;
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

/// `""` and `"/"` are the same path, and so are `/a` and `/a/`.
fn normalised(path: &str) -> String {
    match path.trim_end_matches('/') {
        "" => "/".to_owned(),
        trimmed => trimmed.to_owned(),
    }
}

/// Checks one request's verdict against the origin and path read independently.
fn check_request(
    policy: &OriginPolicy,
    excluded: &[(Origin, String)],
    uri: &Uri,
    raw_marks: bool,
) -> Result<Result<Origin, Refusal>, String> {
    let verdict = policy.check(uri);
    if policy.authorizes(uri) != verdict.is_ok() {
        return Err("authorizes and check disagree".to_owned());
    }
    if !raw_marks {
        if let Err(refusal) = &verdict {
            unprinted(&format!("{refusal:?}"), "a refusal", true)?;
        }
    }
    let origin = Origin::of(uri);
    let is_excluded = |origin: &Origin| {
        let path = normalised(uri.path());
        excluded.iter().any(|(o, p)| o == origin && *p == path)
    };
    match (&verdict, &origin) {
        (Ok(granted), Ok(origin)) => {
            if granted != origin {
                return Err(format!("granted as {granted}, but the URL is to {origin}"));
            }
            if !policy.allowed().contains(origin) {
                return Err(format!("the token goes to {origin}, not allowed"));
            }
            if is_excluded(origin) {
                return Err(format!("the token goes to an excluded URL on {origin}"));
            }
        }
        (Err(Refusal::Excluded { origin: said }), Ok(origin)) => {
            if said != origin || !is_excluded(origin) {
                return Err(format!("{origin} refused as excluded"));
            }
        }
        (Err(Refusal::NotAllowed { origin: said }), Ok(origin)) => {
            if said != origin || policy.allowed().contains(origin) || is_excluded(origin) {
                return Err(format!("{origin} refused as not allowed"));
            }
        }
        (Err(Refusal::InvalidUrl { .. }), Err(_)) => {}
        (Ok(granted), Err(_)) => return Err(format!("granted as {granted}, no origin")),
        (Err(refusal), _) => return Err(format!("refused as {refusal:?}")),
    }
    if !raw_marks {
        if let Ok(origin) = &origin {
            unprinted(&origin.to_string(), "an origin", true)?;
        }
    }
    Ok(verdict)
}
