//! The device authorization grant (RFC 8628), sans-IO: a program without a browser
//! shows the user a code and a URL, and polls the token endpoint until the user has
//! approved the sign-in on another device.
//!
//! 1. [`DeviceAuthorizationRequest::request`] asks the device authorization endpoint
//!    for a code; [`DeviceAuthorizationRequest::read_response`] reads its answer into a
//!    [`DeviceAuthorization`]: the `user_code` and `verification_uri` to show (and the
//!    `verification_uri_complete` that holds the code, for a QR code or a link), the
//!    secret `device_code`, its lifetime and the polling interval (5 s when the server
//!    says none).
//! 2. [`DevicePoll`] polls: [`poll_timeout`](DevicePoll::poll_timeout) says when the
//!    next poll is due, [`poll_request`](DevicePoll::poll_request) gives it (the
//!    `urn:ietf:params:oauth:grant-type:device_code` grant), and
//!    [`handle_response`](DevicePoll::handle_response) reads each answer:
//!
//! | answer | what happens |
//! |---|---|
//! | a token | `Ok(Some(token))`: signed in (the token's lifetime counts from when that poll was sent) |
//! | `authorization_pending` | `Ok(None)`: poll again after the interval |
//! | `slow_down` | `Ok(None)`: the interval grows by 5 s for the rest of the flow (RFC 8628 §3.5) |
//! | a transient failure (`5xx`, `429`, a proxy's page) | `Ok(None)`: poll again after the interval, or the server's `Retry-After` if longer |
//! | `access_denied` (Microsoft Entra ID: `authorization_declined`) | [`Error::AccessDenied`] |
//! | `expired_token` (Entra: `code_expired`), or `expires_in` passed | [`Error::DeviceCodeExpired`] |
//! | anything else | [`Error::Endpoint`], classified as a refresh's answer is (`invalid_grant`: terminal, `invalid_client`: misconfigured…) |
//!
//! A connection that timed out doubles the interval (RFC 8628 §3.5); other transport
//! failures poll again after the interval ([`DevicePoll::handle_transport_error`]).
//! The program cancels the flow by dropping the [`DevicePoll`]. Time comes in as
//! arguments: nothing here reads a clock.
//!
//! Google answers with `verification_url`, the name of an early draft of RFC 8628,
//! instead of `verification_uri`: it is accepted as the same field (the RFC's name wins
//! when both come). Microsoft Entra ID's `message` (the text to show, in the user's
//! language) is kept too ([`DeviceAuthorization::message`]).
//!
//! ```
//! use std::time::{Duration, Instant};
//! use silent_refresh_oauth2::{DeviceAuthorizationRequest, DevicePoll, RefreshGrant};
//!
//! let client = RefreshGrant::new("https://auth.example.com/token", "my-cli");
//! let device = DeviceAuthorizationRequest::new("https://auth.example.com/device").scope("offline_access");
//! let request = device.request(&client)?;
//! assert_eq!(request.body(), b"scope=offline_access&client_id=my-cli");
//!
//! let answer = http::Response::builder().status(200).body(
//!     br#"{"device_code":"dc-1","user_code":"WDJB-MJHT","verification_uri":"https://auth.example.com/activate","expires_in":900,"interval":1}"#.to_vec(),
//! )?;
//! let authorization = device.read_response(&client, &answer)?;
//! println!("Open {} and enter {}", authorization.verification_uri(), authorization.user_code());
//!
//! let start = Instant::now();
//! let mut poll = DevicePoll::new(client, authorization, start);
//! assert_eq!(poll.poll_timeout(), Some(start + Duration::from_secs(1)));
//! assert!(poll.poll_request(start)?.is_none(), "not yet");
//! let request = poll.poll_request(start + Duration::from_secs(1))?.expect("due");
//! assert!(std::str::from_utf8(request.body())?.starts_with("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc-1"));
//!
//! let pending = http::Response::builder().status(400).body(br#"{"error":"authorization_pending"}"#.to_vec())?;
//! assert!(poll.handle_response(start + Duration::from_secs(1), &pending)?.is_none());
//! assert_eq!(poll.poll_timeout(), Some(start + Duration::from_secs(2)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::time::Duration;

use serde_json::{Map, Value};
use silent_refresh::time::Instant;
use silent_refresh::{FailureKind, RefreshFailure, Secret, Token};

use crate::client::TransportError;
use crate::endpoint::{self, endpoint_uri, form_post, oauth_error};
use crate::{Error, RefreshGrant};

/// The `grant_type` of the device flow's token requests (RFC 8628 §3.4).
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The polling interval when the server gives none (RFC 8628 §3.2).
pub const DEFAULT_DEVICE_INTERVAL: Duration = Duration::from_secs(5);

/// How much each `slow_down` adds to the interval (RFC 8628 §3.5).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// The shortest interval polled at, whatever the server says (a `0` would have the
/// client hammer the token endpoint).
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// The longest interval doubling after connection timeouts reaches.
const MAX_BACKOFF_INTERVAL: Duration = Duration::from_secs(60);

/// Form parameters the device authorization request sets itself.
const RESERVED: [&str; 3] = ["client_id", "client_secret", "scope"];

/// The request to the device authorization endpoint (RFC 8628 §3.1).
#[derive(Clone, Debug)]
pub struct DeviceAuthorizationRequest {
    endpoint: String,
    scope: Option<String>,
    params: Vec<(String, String)>,
    allow_insecure_http: bool,
}

impl DeviceAuthorizationRequest {
    /// A request to `endpoint` (the metadata's `device_authorization_endpoint`).
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoint: endpoint.into(),
            scope: None,
            params: Vec::new(),
            allow_insecure_http: false,
        }
    }

    /// The scope to ask for (space-separated). Ask for `offline_access` where the
    /// server needs it for a refresh token (OpenID Connect servers).
    #[must_use]
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// An extra form parameter, such as `resource` (RFC 8707) or `audience`. May be
    /// repeated. `client_id`, `client_secret` and `scope` are refused when the request
    /// is built: they have their own settings.
    #[must_use]
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.params.push((name.into(), value.into()));
        self
    }

    /// Allows a plain `http` endpoint on a host that is not loopback.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// The endpoint.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `POST` to the device authorization endpoint: `scope`, the extra
    /// parameters, and the client's authentication as `client` says (its client id,
    /// secret and [`ClientAuth`](crate::ClientAuth); a public client sends its
    /// `client_id`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidUrl`], [`Error::InsecureHttp`], or [`Error::InvalidConfig`] for
    /// an extra parameter the request sets itself or a signed client assertion.
    pub fn request(&self, client: &RefreshGrant) -> Result<http::Request<Vec<u8>>, Error> {
        let uri = endpoint_uri(&self.endpoint, false, self.allow_insecure_http)?;
        if self
            .params
            .iter()
            .any(|(name, _)| RESERVED.contains(&name.as_str()))
        {
            return Err(Error::InvalidConfig(
                "an extra parameter of the device authorization request is one it sets itself \
                 (client_id, client_secret, scope); use the client's and the request's settings",
            ));
        }
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(4 + self.params.len());
        if let Some(scope) = &self.scope {
            pairs.push(("scope", scope));
        }
        pairs.extend(self.params.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        form_post(client, uri, pairs)
    }

    /// Reads the device authorization endpoint's answer (RFC 8628 §3.2).
    ///
    /// # Errors
    ///
    /// [`Error::Endpoint`]: a refusal classified as the token endpoint's are
    /// (`invalid_client`, `invalid_scope`: misconfigured; a `5xx`: transient), or a
    /// `2xx` without a usable answer (transient, naming the missing field). The
    /// client secret is never quoted.
    pub fn read_response<B: AsRef<[u8]>>(
        &self,
        client: &RefreshGrant,
        response: &http::Response<B>,
    ) -> Result<DeviceAuthorization, Error> {
        let secrets: Vec<&Secret> = client.client_secret.iter().collect();
        let body = response.body().as_ref();
        let refused = oauth_error(response.headers(), body).is_some();
        if !response.status().is_success() || refused {
            return Err(Error::Endpoint(endpoint::endpoint_failure(
                "the device authorization endpoint",
                response,
                &secrets,
            )));
        }
        let unusable = |why: &str| {
            Error::Endpoint(RefreshFailure::transient(format!(
                "the device authorization endpoint answered HTTP {} without a usable answer: \
                 {why}",
                response.status().as_u16()
            )))
        };
        let mut fields: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err(unusable("the body is not a JSON object")),
        };
        let device_code = match fields.remove("device_code") {
            Some(Value::String(code)) if !code.is_empty() => Secret::from(code),
            _ => return Err(unusable("it has no device_code")),
        };
        let text = |fields: &Map<String, Value>, name: &str| {
            fields
                .get(name)
                .and_then(Value::as_str)
                .filter(|value| !value.trim().is_empty())
                .map(str::to_owned)
        };
        let user_code =
            text(&fields, "user_code").ok_or_else(|| unusable("it has no user_code"))?;
        // Google's name, from a draft of RFC 8628.
        let verification_uri = text(&fields, "verification_uri")
            .or_else(|| text(&fields, "verification_url"))
            .ok_or_else(|| unusable("it has no verification_uri"))?;
        let is_web = |uri: &str| {
            let lower = uri.to_ascii_lowercase();
            lower.starts_with("https://") || lower.starts_with("http://")
        };
        if !is_web(&verification_uri) {
            return Err(unusable("verification_uri is not an http(s) URL"));
        }
        let verification_uri_complete = text(&fields, "verification_uri_complete")
            .or_else(|| text(&fields, "verification_url_complete"))
            .filter(|uri| is_web(uri));
        let expires_in = fields
            .get("expires_in")
            .and_then(endpoint::seconds)
            .ok_or_else(|| unusable("expires_in is missing or not a number of seconds"))?;
        let interval = match fields.get("interval") {
            None | Some(Value::Null) => DEFAULT_DEVICE_INTERVAL,
            Some(value) => endpoint::seconds(value)
                .ok_or_else(|| unusable("interval is not a number of seconds"))?
                .max(MIN_INTERVAL),
        };
        Ok(DeviceAuthorization {
            device_code,
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
            interval,
            message: text(&fields, "message"),
        })
    }
}

/// The device authorization endpoint's answer: what to show the user, and the secret
/// `device_code` to poll with. `Debug` never shows the device code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAuthorization {
    device_code: Secret,
    user_code: String,
    verification_uri: String,
    verification_uri_complete: Option<String>,
    expires_in: Duration,
    interval: Duration,
    message: Option<String>,
}

impl DeviceAuthorization {
    /// The code the user types at the verification URI (show it).
    #[must_use]
    pub fn user_code(&self) -> &str {
        &self.user_code
    }

    /// Where the user goes to enter the code (show it).
    #[must_use]
    pub fn verification_uri(&self) -> &str {
        &self.verification_uri
    }

    /// The verification URI with the code in it, when the server gives one (for a
    /// link or a QR code; show the code too, so the user can check it).
    #[must_use]
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.verification_uri_complete.as_deref()
    }

    /// How long the codes live, from when the server answered.
    #[must_use]
    pub fn expires_in(&self) -> Duration {
        self.expires_in
    }

    /// The interval to poll at (the server's, at least a second; 5 s when it says
    /// none).
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The text the server suggests showing (Microsoft Entra ID's `message`), if any.
    #[must_use]
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// The device code (a secret: send it only to the token endpoint).
    #[must_use]
    pub fn device_code(&self) -> &Secret {
        &self.device_code
    }
}

/// The polling of the token endpoint until the user approves (RFC 8628 §3.4, §3.5),
/// in the `poll_*`/`handle_*` style of the core: see the [module docs](self).
#[derive(Debug)]
pub struct DevicePoll {
    client: RefreshGrant,
    authorization: DeviceAuthorization,
    expires_at: Instant,
    interval: Duration,
    next_poll: Instant,
    in_flight: bool,
    finished: bool,
    allow_insecure_http: bool,
}

impl DevicePoll {
    /// Starts polling with `client` (its token URL, client id and authentication)
    /// for `authorization`, received at `now`: the first poll is due an interval
    /// later, and the code expires `expires_in` after `now` (give the instant the
    /// device authorization request was sent, for a margin).
    #[must_use]
    pub fn new(client: RefreshGrant, authorization: DeviceAuthorization, now: Instant) -> Self {
        let interval = authorization.interval;
        Self {
            client,
            expires_at: now + authorization.expires_in,
            next_poll: now + interval,
            interval,
            authorization,
            in_flight: false,
            finished: false,
            allow_insecure_http: false,
        }
    }

    /// Allows a plain `http` token endpoint on a host that is not loopback.
    #[must_use]
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// What the user is shown.
    #[must_use]
    pub fn authorization(&self) -> &DeviceAuthorization {
        &self.authorization
    }

    /// The interval polled at now (grown by each `slow_down`).
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// When the device code expires.
    #[must_use]
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Whether the flow is over (signed in, or failed for good).
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When to call [`poll_request`](Self::poll_request) next: the next poll, or the
    /// code's expiry if that comes first. `None` while a poll is on the wire (its
    /// answer comes first) and once the flow is over.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.finished && !self.in_flight).then(|| self.next_poll.min(self.expires_at))
    }

    /// The token request, if one is due at `now`: `Ok(None)` before the next poll is
    /// due, while one is on the wire, or once the flow is over. The request carries
    /// the device code and the client's credentials: send it without following
    /// redirects, and hand its answer to [`handle_response`](Self::handle_response)
    /// (or its failure to [`handle_transport_error`](Self::handle_transport_error)).
    ///
    /// # Errors
    ///
    /// [`Error::DeviceCodeExpired`] once the code's lifetime has passed (the flow is
    /// then over); the token URL's or the client's configuration errors.
    pub fn poll_request(&mut self, now: Instant) -> Result<Option<http::Request<Vec<u8>>>, Error> {
        if self.finished || self.in_flight {
            return Ok(None);
        }
        if now >= self.expires_at {
            self.finished = true;
            return Err(Error::DeviceCodeExpired);
        }
        if now < self.next_poll {
            return Ok(None);
        }
        let uri = endpoint_uri(self.client.token_url(), false, self.allow_insecure_http)
            .inspect_err(|_| self.finished = true)?;
        let request = form_post(
            &self.client,
            uri,
            vec![
                ("grant_type", DEVICE_CODE_GRANT),
                ("device_code", self.authorization.device_code.expose()),
            ],
        )
        .inspect_err(|_| self.finished = true)?;
        self.in_flight = true;
        Ok(Some(request))
    }

    /// Reads the answer to the last poll, received at `now` (see the table in the
    /// [module docs](self)): `Ok(Some(token))` when signed in; `Ok(None)` to poll
    /// again at [`poll_timeout`](Self::poll_timeout).
    ///
    /// # Errors
    ///
    /// [`Error::AccessDenied`], [`Error::DeviceCodeExpired`], or
    /// [`Error::Endpoint`] for a terminal or misconfigured refusal; the flow is then
    /// over. Neither the device code nor the client secret is ever quoted.
    pub fn handle_response<B: AsRef<[u8]>>(
        &mut self,
        now: Instant,
        response: &http::Response<B>,
    ) -> Result<Option<Token>, Error> {
        self.in_flight = false;
        if self.finished {
            return Ok(None);
        }
        let body = response.body().as_ref();
        let secrets: Vec<&Secret> = self
            .client
            .client_secret
            .iter()
            .chain([&self.authorization.device_code])
            .collect();
        let error = oauth_error(response.headers(), body);
        let code = error.as_ref().map(|(code, _)| code.to_ascii_lowercase());
        let overloaded = response.status().is_server_error()
            || matches!(response.status().as_u16(), 408 | 425 | 429);
        if !overloaded {
            match code.as_deref() {
                Some("authorization_pending") => {
                    self.next_poll = now + self.interval;
                    return Ok(None);
                }
                Some("slow_down") => {
                    self.interval = self.interval.saturating_add(SLOW_DOWN_STEP);
                    self.next_poll = now + self.interval;
                    return Ok(None);
                }
                Some("access_denied" | "authorization_declined") => {
                    self.finished = true;
                    let detail = error
                        .as_ref()
                        .and_then(|(_, description)| description.as_deref())
                        .filter(|d| !d.trim().is_empty())
                        .map(|d| format!(" ({})", endpoint::clean(d, &secrets)))
                        .unwrap_or_default();
                    return Err(Error::AccessDenied { detail });
                }
                Some("expired_token" | "code_expired") => {
                    self.finished = true;
                    return Err(Error::DeviceCodeExpired);
                }
                _ => {}
            }
        }
        let failure = match crate::response::parse(
            response.status(),
            response.headers(),
            body,
            &secrets,
            true,
        ) {
            Ok(token) => {
                self.finished = true;
                return Ok(Some(token));
            }
            Err(failure) => failure,
        };
        match failure.kind {
            FailureKind::Transient => {
                let wait = failure.retry_after.unwrap_or_default().max(self.interval);
                self.next_poll = now + wait;
                Ok(None)
            }
            FailureKind::Terminal => {
                self.finished = true;
                Err(Error::Endpoint(endpoint::reword(
                    failure,
                    "the token endpoint refused the device code (unknown, already used or \
                     revoked); start the sign-in again",
                )))
            }
            FailureKind::Misconfigured => {
                self.finished = true;
                Err(Error::Endpoint(endpoint::reworded(
                    "the token endpoint",
                    failure,
                    response,
                )))
            }
        }
    }

    /// A poll that got no answer, at `now`: a timed-out connection doubles the
    /// interval (RFC 8628 §3.5, up to a minute), any other failure polls again after
    /// the interval.
    pub fn handle_transport_error(&mut self, now: Instant, error: &TransportError<'_>) {
        self.in_flight = false;
        if self.finished {
            return;
        }
        if matches!(error, TransportError::Timeout(_)) {
            self.interval = self
                .interval
                .saturating_mul(2)
                .min(MAX_BACKOFF_INTERVAL.max(self.interval));
        }
        self.next_poll = now + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use silent_refresh::Expiry;

    const DEVICE_CODE: &str = "GmRhmhcxhwAzkoEqiMEg_DnyEysNkuNhszIySk9eS";

    fn client() -> RefreshGrant {
        RefreshGrant::new("https://auth.example.com/token", "cli")
    }

    fn answer(status: u16, body: &str) -> http::Response<Vec<u8>> {
        http::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .expect("response")
    }

    fn authorization(interval: Option<u64>) -> DeviceAuthorization {
        let interval = interval.map_or(String::new(), |i| format!(r#","interval":{i}"#));
        DeviceAuthorizationRequest::new("https://auth.example.com/device")
            .read_response(
                &client(),
                &answer(
                    200,
                    &format!(
                        r#"{{"device_code":"{DEVICE_CODE}","user_code":"WDJB-MJHT",
                        "verification_uri":"https://auth.example.com/activate",
                        "verification_uri_complete":"https://auth.example.com/activate?user_code=WDJB-MJHT",
                        "expires_in":60{interval}}}"#
                    ),
                ),
            )
            .expect("authorization")
    }

    fn form(request: &http::Request<Vec<u8>>) -> Vec<(String, String)> {
        form_urlencoded::parse(request.body())
            .into_owned()
            .collect()
    }

    #[test]
    fn the_device_authorization_request_carries_scope_params_and_client() {
        let confidential = client().client_secret("s3cret");
        let request = DeviceAuthorizationRequest::new("https://auth.example.com/device")
            .scope("openid offline_access")
            .param("resource", "https://api.example.com/")
            .request(&confidential)
            .expect("request");
        assert_eq!(request.method(), http::Method::POST);
        assert_eq!(request.uri(), "https://auth.example.com/device");
        assert_eq!(
            request.body(),
            b"scope=openid+offline_access&resource=https%3A%2F%2Fapi.example.com%2F"
        );
        assert!(request.headers().contains_key(http::header::AUTHORIZATION));
        let public = DeviceAuthorizationRequest::new("https://auth.example.com/device")
            .request(&client())
            .expect("request");
        assert_eq!(public.body(), b"client_id=cli");
        for name in RESERVED {
            let refused = DeviceAuthorizationRequest::new("https://auth.example.com/device")
                .param(name, "x")
                .request(&client());
            assert!(matches!(refused, Err(Error::InvalidConfig(_))), "{name}");
        }
        assert!(matches!(
            DeviceAuthorizationRequest::new("http://auth.example.com/device").request(&client()),
            Err(Error::InsecureHttp { .. })
        ));
    }

    #[test]
    fn reads_the_answer_and_keeps_the_device_code_secret() {
        let read = authorization(Some(1));
        assert_eq!(read.user_code(), "WDJB-MJHT");
        assert_eq!(read.verification_uri(), "https://auth.example.com/activate");
        assert_eq!(
            read.verification_uri_complete(),
            Some("https://auth.example.com/activate?user_code=WDJB-MJHT")
        );
        assert_eq!(read.expires_in(), Duration::from_secs(60));
        assert_eq!(read.interval(), Duration::from_secs(1));
        assert_eq!(read.device_code().expose(), DEVICE_CODE);
        let printed = format!("{read:?}");
        assert!(!printed.contains(DEVICE_CODE), "{printed}");
        // No interval: 5 s; zero: a second.
        assert_eq!(authorization(None).interval(), DEFAULT_DEVICE_INTERVAL);
        assert_eq!(authorization(Some(0)).interval(), MIN_INTERVAL);
    }

    #[test]
    fn unusable_answers_name_the_field_and_never_the_code() {
        let device = DeviceAuthorizationRequest::new("https://auth.example.com/device");
        for (body, field) in [
            (
                r#"{"user_code":"A","verification_uri":"https://a/","expires_in":5}"#,
                "device_code",
            ),
            (
                r#"{"device_code":"dc-secret-1","verification_uri":"https://a/","expires_in":5}"#,
                "user_code",
            ),
            (
                r#"{"device_code":"dc-secret-1","user_code":"A","expires_in":5}"#,
                "verification_uri",
            ),
            (
                r#"{"device_code":"dc-secret-1","user_code":"A","verification_uri":"javascript:x","expires_in":5}"#,
                "verification_uri",
            ),
            (
                r#"{"device_code":"dc-secret-1","user_code":"A","verification_uri":"https://a/"}"#,
                "expires_in",
            ),
            (
                r#"{"device_code":"dc-secret-1","user_code":"A","verification_uri":"https://a/","expires_in":5,"interval":"soon"}"#,
                "interval",
            ),
            ("<html>", "JSON"),
        ] {
            let error = device
                .read_response(&client(), &answer(200, body))
                .expect_err(field);
            let message = error.to_string();
            assert!(message.contains(field), "{message}");
            assert!(!message.contains("dc-secret-1"), "{message}");
            assert!(error.is_transient(), "{message}");
        }
        let refused = device
            .read_response(
                &client().client_secret("cs-secret-value"),
                &answer(
                    401,
                    r#"{"error":"invalid_client","error_description":"bad cs-secret-value"}"#,
                ),
            )
            .expect_err("refused");
        let Error::Endpoint(failure) = &refused else {
            panic!("{refused:?}")
        };
        assert_eq!(failure.kind, FailureKind::Misconfigured);
        assert!(
            failure
                .message
                .starts_with("the device authorization endpoint refused the client"),
            "{}",
            failure.message
        );
        assert!(
            !failure.message.contains("cs-secret-value"),
            "{}",
            failure.message
        );
        // GitHub answers errors with a 200.
        let github = device
            .read_response(
                &client(),
                &answer(200, r#"{"error":"device_flow_disabled"}"#),
            )
            .expect_err("refused");
        assert!(
            github.to_string().contains("device_flow_disabled"),
            "{github}"
        );
    }

    #[test]
    fn polls_at_the_interval_and_slows_down_by_five_seconds() {
        let start = Instant::now();
        let mut poll = DevicePoll::new(client(), authorization(Some(2)), start);
        assert_eq!(poll.poll_timeout(), Some(start + Duration::from_secs(2)));
        assert!(poll.poll_request(start).expect("ok").is_none());
        let at = start + Duration::from_secs(2);
        let request = poll.poll_request(at).expect("ok").expect("due");
        assert_eq!(
            form(&request),
            [
                ("grant_type".to_owned(), DEVICE_CODE_GRANT.to_owned()),
                ("device_code".to_owned(), DEVICE_CODE.to_owned()),
                ("client_id".to_owned(), "cli".to_owned()),
            ]
        );
        assert_eq!(request.uri(), "https://auth.example.com/token");
        // One poll at a time.
        assert_eq!(poll.poll_timeout(), None);
        assert!(poll.poll_request(at).expect("ok").is_none());

        assert!(
            poll.handle_response(at, &answer(400, r#"{"error":"authorization_pending"}"#))
                .expect("pending")
                .is_none()
        );
        assert_eq!(poll.poll_timeout(), Some(at + Duration::from_secs(2)));

        let at = at + Duration::from_secs(2);
        poll.poll_request(at).expect("ok").expect("due");
        assert!(
            poll.handle_response(at, &answer(400, r#"{"error":"slow_down"}"#))
                .expect("slow down")
                .is_none()
        );
        assert_eq!(poll.interval(), Duration::from_secs(7));
        assert_eq!(poll.poll_timeout(), Some(at + Duration::from_secs(7)));
        // Google answers pending with 428 and slow_down with 403: the code decides.
        let at = at + Duration::from_secs(7);
        poll.poll_request(at).expect("ok").expect("due");
        assert!(
            poll.handle_response(at, &answer(403, r#"{"error":"slow_down"}"#))
                .expect("slow down")
                .is_none()
        );
        assert_eq!(poll.interval(), Duration::from_secs(12));
        let at = at + Duration::from_secs(12);
        poll.poll_request(at).expect("ok").expect("due");
        assert!(
            poll.handle_response(at, &answer(428, r#"{"error":"authorization_pending"}"#))
                .expect("pending")
                .is_none()
        );

        let at = at + Duration::from_secs(12);
        poll.poll_request(at).expect("ok").expect("due");
        let token = poll
            .handle_response(
                at,
                &answer(
                    200,
                    r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}"#,
                ),
            )
            .expect("signed in")
            .expect("a token");
        assert_eq!(token.access_token.expose(), "at-1");
        assert_eq!(token.expiry, Expiry::In(Duration::from_secs(3600)));
        assert_eq!(token.refresh_token.expect("rt").expose(), "rt-1");
        assert!(poll.is_finished());
        assert_eq!(poll.poll_timeout(), None);
        assert!(
            poll.poll_request(at + Duration::from_secs(60))
                .expect("ok")
                .is_none()
        );
    }

    /// Polls once at the first due time and hands `answer` back.
    fn first_answer(status: u16, body: &str) -> (DevicePoll, Result<Option<Token>, Error>) {
        let start = Instant::now();
        let mut poll = DevicePoll::new(
            client().client_secret("cs-1"),
            authorization(Some(1)),
            start,
        );
        let at = start + Duration::from_secs(1);
        poll.poll_request(at).expect("ok").expect("due");
        let result = poll.handle_response(at, &answer(status, body));
        (poll, result)
    }

    #[test]
    fn denial_and_expiry_end_the_flow_with_clear_errors() {
        for (status, body) in [
            (
                400,
                r#"{"error":"access_denied","error_description":"The user said no"}"#,
            ),
            (400, r#"{"error":"authorization_declined"}"#),
            (403, r#"{"error":"access_denied"}"#),
        ] {
            let (poll, result) = first_answer(status, body);
            let error = result.expect_err("denied");
            assert!(matches!(error, Error::AccessDenied { .. }), "{error:?}");
            assert!(error.to_string().contains("the user denied"), "{error}");
            assert!(poll.is_finished());
        }
        let (_, denied) = first_answer(
            400,
            r#"{"error":"access_denied","error_description":"The user said no"}"#,
        );
        assert!(
            denied
                .expect_err("denied")
                .to_string()
                .contains("(The user said no)")
        );
        for body in [
            r#"{"error":"expired_token"}"#,
            r#"{"error":"code_expired"}"#,
        ] {
            let (poll, result) = first_answer(400, body);
            assert_eq!(result.expect_err("expired"), Error::DeviceCodeExpired);
            assert!(poll.is_finished());
        }
        let expired = Error::DeviceCodeExpired.to_string();
        assert!(expired.contains("start the sign-in again"), "{expired}");
    }

    #[test]
    fn the_code_expires_on_the_clients_clock_too() {
        let start = Instant::now();
        let mut poll = DevicePoll::new(client(), authorization(Some(50)), start);
        // The next poll would come after the expiry: wake at the expiry.
        let at = start + Duration::from_secs(50);
        poll.poll_request(at).expect("ok").expect("due");
        poll.handle_response(at, &answer(400, r#"{"error":"authorization_pending"}"#))
            .expect("pending");
        assert_eq!(poll.poll_timeout(), Some(start + Duration::from_secs(60)));
        assert_eq!(
            poll.poll_request(start + Duration::from_secs(60))
                .expect_err("expired"),
            Error::DeviceCodeExpired
        );
        assert!(poll.is_finished());
        assert_eq!(poll.poll_timeout(), None);
    }

    #[test]
    fn transient_failures_keep_polling_and_others_stop() {
        let (poll, result) = first_answer(503, r#"{"error":"temporarily_unavailable"}"#);
        assert_eq!(result, Ok(None));
        assert!(!poll.is_finished());
        let mut busy = http::Response::builder()
            .status(429)
            .header("retry-after", "30")
            .body(Vec::new())
            .expect("response");
        let start = Instant::now();
        let mut poll = DevicePoll::new(client(), authorization(Some(1)), start);
        let at = start + Duration::from_secs(1);
        poll.poll_request(at).expect("ok").expect("due");
        assert_eq!(poll.handle_response(at, &busy), Ok(None));
        assert_eq!(poll.poll_timeout(), Some(at + Duration::from_secs(30)));
        // Even slow_down in a 5xx is the server failing: not an interval change.
        *busy.status_mut() = http::StatusCode::BAD_GATEWAY;
        let at = at + Duration::from_secs(30);
        poll.poll_request(at).expect("ok").expect("due");
        assert_eq!(poll.handle_response(at, &busy), Ok(None));
        assert_eq!(poll.interval(), Duration::from_secs(1));

        let (poll, result) = first_answer(
            400,
            &format!(
                r#"{{"error":"invalid_grant","error_description":"unknown code {DEVICE_CODE}"}}"#
            ),
        );
        let error = result.expect_err("terminal");
        let Error::Endpoint(failure) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(failure.kind, FailureKind::Terminal);
        assert!(
            failure.message.contains("refused the device code"),
            "{}",
            failure.message
        );
        assert!(
            !failure.message.contains(DEVICE_CODE),
            "{}",
            failure.message
        );
        assert!(poll.is_finished());

        let (_, result) = first_answer(
            401,
            r#"{"error":"invalid_client","error_description":"cs-1"}"#,
        );
        let error = result.expect_err("misconfigured");
        let Error::Endpoint(failure) = &error else {
            panic!("{error:?}")
        };
        assert_eq!(failure.kind, FailureKind::Misconfigured);
        assert!(!failure.message.contains("cs-1"), "{}", failure.message);
    }

    #[test]
    fn connection_timeouts_double_the_interval() {
        let start = Instant::now();
        let mut poll = DevicePoll::new(client(), authorization(Some(5)), start);
        let at = start + Duration::from_secs(5);
        poll.poll_request(at).expect("ok").expect("due");
        poll.handle_transport_error(at, &TransportError::Timeout(Duration::from_secs(30)));
        assert_eq!(poll.interval(), Duration::from_secs(10));
        assert_eq!(poll.poll_timeout(), Some(at + Duration::from_secs(10)));
        let at = at + Duration::from_secs(10);
        poll.poll_request(at).expect("ok").expect("due");
        poll.handle_transport_error(at, &TransportError::Connect(&"refused"));
        assert_eq!(poll.interval(), Duration::from_secs(10));
        for _ in 0..10 {
            poll.handle_transport_error(at, &TransportError::Timeout(Duration::from_secs(1)));
        }
        assert_eq!(poll.interval(), MAX_BACKOFF_INTERVAL);
    }
}
