//! One authorized `GET`, through either adapter's 401-retry helper, telling whether
//! it was retried after a 401.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ureq::http::{Request, Response, StatusCode};
use ureq::middleware::{Middleware, MiddlewareNext};
use ureq::{Body, SendBody};

/// The answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The final HTTP status.
    pub status: StatusCode,
    /// The first answer was a 401 and the request was sent again with a new token.
    pub retried_401: bool,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum ProbeError {
    /// No token: the credentials are dead or gone. Sign in again.
    SignInRequired(String),
    /// No token: the token endpoint refused the client's configuration (token URL,
    /// client id or secret, authentication method, scope). Fix it; the refresh
    /// credential is still good.
    Misconfigured(String),
    /// Any other failure (no token before the deadline, network, …).
    Other(String),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SignInRequired(message) | Self::Misconfigured(message) | Self::Other(message) => {
                f.write_str(message)
            }
        }
    }
}

/// Sorts a core error the way [`ProbeError`] does.
fn classify(
    error: Option<&silent_refresh::Error>,
    needs_sign_in: bool,
    message: String,
) -> ProbeError {
    match error {
        _ if needs_sign_in => ProbeError::SignInRequired(message),
        Some(silent_refresh::Error::Misconfigured { .. }) => ProbeError::Misconfigured(message),
        _ => ProbeError::Other(message),
    }
}

impl std::error::Error for ProbeError {}

/// `GET url` with the token from `client`, through
/// [`AuthorizedClient::send`](silent_refresh_tokio::AuthorizedClient::send): a 401 is
/// reported and the request sent once more with the new token. The body is read,
/// so that the connection is reused.
///
/// # Errors
///
/// [`ProbeError::SignInRequired`] when the credentials are dead, otherwise
/// [`ProbeError::Other`].
pub async fn tokio_get(
    client: &silent_refresh_tokio::AuthorizedClient,
    http: &reqwest::Client,
    url: &str,
) -> Result<Answer, ProbeError> {
    let mut sends = 0u32;
    let sent = client
        .send(&reqwest::Method::GET, url, |uri, headers| {
            sends += 1;
            let mut request = http.get(uri.to_string());
            request = request.header(reqwest::header::AUTHORIZATION, headers.authorization);
            if let Some(proof) = headers.dpop {
                request = request.header("dpop", proof);
            }
            async move {
                let response = request.send().await?;
                // The status and the headers (challenges, DPoP nonces) are what the
                // token rule reads; the body is read so the connection goes back to
                // the pool.
                let mut head = http::Response::new(());
                *head.status_mut() = response.status();
                *head.headers_mut() = response.headers().clone();
                response.bytes().await?;
                Ok::<_, reqwest::Error>(head)
            }
        })
        .await;
    match sent {
        Ok(head) => Ok(Answer {
            status: head.status(),
            retried_401: sends > 1,
        }),
        Err(error) => {
            let core = match &error {
                silent_refresh_tokio::Error::Token(core) => Some(core),
                _ => None,
            };
            Err(classify(core, error.needs_sign_in(), error.to_string()))
        }
    }
}

/// A ureq middleware that counts the 401 answers it sees. Installed *after*
/// [`BearerAuth`](silent_refresh_ureq::BearerAuth), it sees only the first send of
/// each request (the middleware sends its retry through an agent of its own), so it
/// counts the requests that were retried after a 401.
#[derive(Clone, Debug, Default)]
pub struct Count401 {
    count: Arc<AtomicU64>,
}

impl Count401 {
    /// How many 401 answers it has seen.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Middleware for Count401 {
    fn handle(
        &self,
        request: Request<SendBody>,
        next: MiddlewareNext,
    ) -> Result<Response<Body>, ureq::Error> {
        let response = next.handle(request);
        if matches!(&response, Ok(r) if r.status() == StatusCode::UNAUTHORIZED) {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        response
    }
}

/// A ureq agent that attaches tokens from `source` to requests for `resource`'s
/// origin with [`BearerAuth`](silent_refresh_ureq::BearerAuth) (retrying once after a
/// 401), hands error statuses back as responses, gives up on a request after
/// `timeout`, and counts retries in `retries`.
///
/// # Errors
///
/// When `resource` is not an http(s) URL the middleware accepts (plain http only to
/// loopback).
pub fn ureq_agent(
    source: silent_refresh_ureq::TokenSource,
    resource: &str,
    timeout: Duration,
    retries: Count401,
) -> Result<ureq::Agent, String> {
    let origin = origin_of(resource)?;
    let auth = silent_refresh_ureq::BearerAuth::builder(source)
        .allow_origin(origin)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(ureq_agent_with(auth, timeout, retries))
}

/// As [`ureq_agent`], with the middleware `auth` (one that routes several APIs to
/// their keys' sources, say).
#[must_use]
pub fn ureq_agent_with(
    auth: silent_refresh_ureq::BearerAuth,
    timeout: Duration,
    retries: Count401,
) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .middleware(auth)
        .middleware(retries)
        .build()
        .new_agent()
}

/// `GET url` through `agent` (see [`ureq_agent`]); retries after a 401 show in the
/// agent's [`Count401`].
///
/// # Errors
///
/// [`ProbeError::SignInRequired`] when the credentials are dead, otherwise
/// [`ProbeError::Other`].
pub fn ureq_get(agent: &ureq::Agent, url: &str) -> Result<StatusCode, ProbeError> {
    match agent.get(url).call() {
        Ok(mut response) => {
            let status = response.status();
            // Read the body so the connection goes back to the pool.
            response
                .body_mut()
                .read_to_vec()
                .map_err(|e| ProbeError::Other(e.to_string()))?;
            Ok(status)
        }
        Err(ureq::Error::Other(error)) => {
            match error.downcast_ref::<silent_refresh_ureq::Error>() {
                Some(error) => {
                    let core = match error {
                        silent_refresh_ureq::Error::Token(core) => Some(core),
                        _ => None,
                    };
                    Err(classify(core, error.needs_sign_in(), error.to_string()))
                }
                None => Err(ProbeError::Other(error.to_string())),
            }
        }
        Err(error) => Err(ProbeError::Other(error.to_string())),
    }
}

/// The origin (`scheme://host[:port]`) of an absolute http(s) URL.
///
/// # Errors
///
/// When `url` is not an absolute http(s) URL.
pub fn origin_of(url: &str) -> Result<String, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme @ ("http" | "https")), Some(authority)) => {
            Ok(format!("{scheme}://{}", authority.as_str()))
        }
        _ => Err(format!("`{url}` is not an absolute http or https URL")),
    }
}
