//! Proof JWTs (RFC 9449 §4): the claims, `htu` and `ath`, and the signing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use silent_refresh::Secret;

use super::key::DpopKey;
use super::nonce::is_valid_nonce;
use crate::Error;
use crate::challenge::is_tchar;
use crate::origin::{Origin, parse_url};

/// What one proof is made of, all of it given by the caller (the codec reads no clock
/// and draws no random number): the request's method and URL, the wall-clock time,
/// 16 random bytes for the `jti`, and, when there is one, the server's nonce and the
/// access token the request carries.
///
/// `Debug` shows the method, the URL's origin and path, the time and the nonce; never
/// the access token, the random bytes, or the URL's query.
///
/// ```
/// use silent_refresh::Secret;
/// use silent_refresh_oauth2::dpop::{DpopAlgorithm, DpopKey, ProofInput};
///
/// let key = DpopKey::from_random_bytes(DpopAlgorithm::Es256, &[7; 32])?;
/// let token = Secret::new("at-1");
/// // A resource request: its proof carries `ath`, the access token's hash.
/// let proof = key.proof(
///     &ProofInput::new("GET", "https://api.example.com/v1/me?page=2", 1_700_000_000, [1; 16])
///         .nonce(Some("eyJ7S_zG.eyJH0-Z.HX4w-7v"))
///         .access_token(&token),
/// )?;
/// assert_eq!(proof.split('.').count(), 3);
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
#[derive(Clone, Copy)]
pub struct ProofInput<'a> {
    method: &'a str,
    url: &'a str,
    now_unix: u64,
    jti: [u8; 16],
    nonce: Option<&'a str>,
    access_token: Option<&'a Secret>,
}

impl<'a> ProofInput<'a> {
    /// A proof for a `method` request to `url` (its query and fragment are left out of
    /// `htu`), made at wall-clock time `now_unix` (seconds since the Unix epoch: the
    /// `iat`), with `jti_bytes` drawn from a random generator for this proof alone
    /// (its `jti`: a server refuses a `jti` it has seen).
    #[must_use]
    pub fn new(method: &'a str, url: &'a str, now_unix: u64, jti_bytes: [u8; 16]) -> Self {
        Self {
            method,
            url,
            now_unix,
            jti: jti_bytes,
            nonce: None,
            access_token: None,
        }
    }

    /// The server's nonce for this URL's origin (the last `DPoP-Nonce` it sent, see
    /// [`NonceCache`](super::NonceCache)), if it sent one.
    #[must_use]
    pub fn nonce(mut self, nonce: Option<&'a str>) -> Self {
        self.nonce = nonce;
        self
    }

    /// The access token the request carries (a resource request): the proof gets its
    /// hash, `ath`. Never for a token request.
    #[must_use]
    pub fn access_token(mut self, access_token: &'a Secret) -> Self {
        self.access_token = Some(access_token);
        self
    }
}

impl fmt::Debug for ProofInput<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = crate::classify::origin_and_path(self.url);
        f.debug_struct("ProofInput")
            .field("method", &self.method)
            .field("url", &url.as_str())
            .field("now_unix", &self.now_unix)
            .field("jti_bytes", &"[redacted]")
            .field("nonce", &self.nonce)
            .field("access_token", &self.access_token.map(|_| "[redacted]"))
            .finish()
    }
}

impl DpopKey {
    /// Signs a DPoP proof: the value of the request's `DPoP` header.
    ///
    /// Its header is `{"typ":"dpop+jwt","alg":…,"jwk":…}` (the public key, see
    /// [`public_jwk`](Self::public_jwk)); its claims are, in this order, `jti` (the
    /// 16 bytes, base64url), `htm` (the method, as given), `htu` (see [`htu`]), `iat`,
    /// then `nonce` when given and `ath` when an access token is given (see [`ath`]).
    /// A proof is not a secret once sent, but it is bound to this request: send it
    /// once.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`] for a URL that is not absolute `http`/`https`;
    /// [`Error::DpopProof`] for a method that is not an HTTP token, or a nonce with
    /// characters RFC 9449 does not allow in one (a server's nonce that the
    /// [`NonceCache`](super::NonceCache) kept never has them).
    pub fn proof(&self, input: &ProofInput<'_>) -> Result<String, Error> {
        let refuse = |reason| Error::DpopProof { reason };
        if input.method.is_empty() || !input.method.bytes().all(is_tchar) {
            return Err(refuse(
                "the HTTP method is not a method name (an HTTP token)",
            ));
        }
        if input.nonce.is_some_and(|nonce| !is_valid_nonce(nonce)) {
            return Err(refuse(
                "the nonce is empty, too long or has characters a DPoP nonce cannot \
                 have; give the server's DPoP-Nonce as it was sent",
            ));
        }
        let htu = htu(input.url)?;
        let mut claims = Vec::with_capacity(160 + htu.len() + input.nonce.map_or(0, str::len));
        claims.extend_from_slice(br#"{"jti":""#);
        let jti = URL_SAFE_NO_PAD.encode(input.jti);
        claims.extend_from_slice(jti.as_bytes());
        claims.extend_from_slice(br#"","htm":"#);
        // The method is a token and the nonce NQCHARs, neither needs escaping; the
        // URL is escaped as JSON.
        json_string(&mut claims, input.method);
        claims.extend_from_slice(br#","htu":"#);
        json_string(&mut claims, &htu);
        claims.extend_from_slice(br#","iat":"#);
        claims.extend_from_slice(input.now_unix.to_string().as_bytes());
        if let Some(nonce) = input.nonce {
            claims.extend_from_slice(br#","nonce":"#);
            json_string(&mut claims, nonce);
        }
        if let Some(token) = input.access_token {
            claims.extend_from_slice(br#","ath":""#);
            let hash = self.sha256(token.expose().as_bytes());
            let mut encoded = [0u8; 43];
            let written = URL_SAFE_NO_PAD
                .encode_slice(hash, &mut encoded)
                .map_err(|_| refuse("the access token's hash could not be encoded"))?;
            claims.extend_from_slice(&encoded[..written]);
            claims.push(b'"');
        }
        claims.push(b'}');

        let header = self.encoded_header();
        let mut jws = String::with_capacity(header.len() + claims.len().div_ceil(3) * 4 + 88);
        jws.push_str(header);
        URL_SAFE_NO_PAD.encode_string(&claims, &mut jws);
        let signature = self
            .sign(jws.as_bytes())
            .ok_or(refuse("the signing backend failed"))?;
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut jws);
        Ok(jws)
    }
}

/// The `htu` of a request to `url` (RFC 9449 §4.2): the URL without its query and
/// fragment, normalised as RFC 9449 §4.3 has servers normalise it before comparing
/// (RFC 3986 §6.2.2 and §6.2.3), so that the claim is the same whatever form of the
/// URL the caller had: scheme and host in lower case, the default port (`:443`,
/// `:80`) and any user information removed, an empty path made `/`, dot segments
/// removed, percent-encoded unreserved characters decoded (`%7E` is `~`) and the hex
/// digits of the other percent-encodings in upper case.
///
/// ```
/// use silent_refresh_oauth2::dpop::htu;
///
/// assert_eq!(htu("HTTPS://user:pw@API.Example.com:443/a/./b/../c%7e%2f?q=1#f")?,
///            "https://api.example.com/a/c~%2F");
/// assert_eq!(htu("http://127.0.0.1:8080")?, "http://127.0.0.1:8080/");
/// # Ok::<(), silent_refresh_oauth2::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidUrl`] when `url` is not an absolute `http` or `https` URL with a
/// host.
pub fn htu(url: &str) -> Result<String, Error> {
    let uri = parse_url(url)?;
    let origin = Origin::of(&uri)?;
    let https = origin.is_https();
    let authority = uri.authority().ok_or(Error::InvalidUrl {
        reason: "it has no host",
    })?;
    let mut htu = String::with_capacity(url.len());
    htu.push_str(if https { "https://" } else { "http://" });
    htu.push_str(&authority.host().to_ascii_lowercase());
    let default_port = if https { 443 } else { 80 };
    if let Some(port) = authority.port_u16().filter(|&port| port != default_port) {
        htu.push(':');
        htu.push_str(&port.to_string());
    }
    let path = normalise_percent(uri.path());
    let path = remove_dot_segments(&path);
    if path.is_empty() {
        htu.push('/');
    } else {
        htu.push_str(&path);
    }
    Ok(htu)
}

/// The `ath` of an access token (RFC 9449 §4.2): base64url SHA-256 of its ASCII
/// bytes. What a resource server compares with a proof's `ath`; a proof made with
/// [`ProofInput::access_token`] has it already.
#[must_use]
pub fn ath(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode((super::backend::DEFAULT.sha256)(access_token.as_bytes()))
}

/// Appends `text` as a JSON string.
fn json_string(out: &mut Vec<u8>, text: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text);
}

/// RFC 3986 §6.2.2.1 and §6.2.2.2: percent-encoded unreserved characters decoded, the
/// hex digits of the other percent-encodings in upper case. A `%` that starts no
/// percent-encoding (invalid in a URI, but let through by parsers) is written `%25`, so
/// that what decoding leaves beside it never reads as a percent-encoding: normalising
/// an `htu` again changes nothing (`/%a%30` is `/%25a0`, not `/%a0`, which a second
/// pass would make `/%A0`).
fn normalise_percent(path: &str) -> Zeroizing<String> {
    let bytes = path.as_bytes();
    let mut out = Zeroizing::new(String::with_capacity(path.len()));
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte == b'%' && at + 2 < bytes.len() {
            let (high, low) = (bytes[at + 1], bytes[at + 2]);
            if let (Some(h), Some(l)) = (hex(high), hex(low)) {
                let decoded = h << 4 | l;
                if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
                    out.push(char::from(decoded));
                } else {
                    out.push('%');
                    out.push(char::from(high.to_ascii_uppercase()));
                    out.push(char::from(low.to_ascii_uppercase()));
                }
                at += 3;
                continue;
            }
        }
        if byte == b'%' {
            out.push_str("%25");
        } else {
            out.push(char::from(byte));
        }
        at += 1;
    }
    out
}

/// The value of a hexadecimal digit.
fn hex(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// RFC 3986 §5.2.4: `.` and `..` segments removed from an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (at, segment) in segments.iter().enumerate() {
        if at == 0 {
            // The empty segment before the leading `/`.
            continue;
        }
        match *segment {
            "." | ".." => {
                if *segment == ".." {
                    output.pop();
                }
                // A path ending in a dot segment keeps its trailing `/`.
                if at == last {
                    output.push("");
                }
            }
            other => output.push(other),
        }
    }
    let mut result = String::with_capacity(path.len());
    for segment in output {
        result.push('/');
        result.push_str(segment);
    }
    result
}
