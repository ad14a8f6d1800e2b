//! `fetch`, as the refresher and the authorizing wrapper send with it: an
//! `http::Request` in, an `http::Response` with its whole body out, aborted when
//! dropped or past its timeout.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use js_sys::{Promise, Uint8Array};
use silent_refresh::RefreshFailure;
use silent_refresh_driver::Error;
use silent_refresh_driver::oauth2_refresher::{HttpClient, LocalHttpClient};
use silent_refresh_driver::runtime::Runtime;
use silent_refresh_driver::runtime::wasm::Wasm;
use silent_refresh_oauth2::{MAX_RESPONSE_BYTES, TransportError};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::{AbortController, Headers, RequestInit, RequestRedirect, ResponseType};

use crate::js;

/// Why a `fetch` gave no answer.
#[derive(Debug)]
pub(crate) enum FetchFailure {
    /// The network refused (`fetch` rejects every network failure alike, before or
    /// after connecting: a `TypeError`).
    Network(String),
    /// No whole answer within the timeout.
    Timeout(Duration),
    /// The answer is longer than the codec reads.
    TooLong,
    /// The request could not be made (no `fetch` here, a header JS refuses…).
    Request(String),
}

impl fmt::Display for FetchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(reason) => write!(f, "the request failed on the network: {reason}"),
            Self::Timeout(limit) => write!(f, "no whole answer within {limit:?}"),
            Self::TooLong => write!(f, "the answer is longer than {MAX_RESPONSE_BYTES} bytes"),
            Self::Request(reason) => write!(f, "the request could not be made: {reason}"),
        }
    }
}

impl std::error::Error for FetchFailure {}

impl FetchFailure {
    /// As the codec classifies transport failures: a network failure is "unreachable"
    /// (requests without a usable token are told at once, and the server is probed again
    /// about every second).
    fn refresh_failure(&self) -> RefreshFailure {
        match self {
            Self::Network(reason) => TransportError::Connect(reason).failure(),
            Self::Timeout(limit) => TransportError::Timeout(*limit).failure(),
            Self::TooLong => TransportError::TooLong.failure(),
            Self::Request(reason) => TransportError::Other(reason).failure(),
        }
    }
}

/// Aborts its request when dropped: a refresh the driver cancels, or a call the
/// program gave up on, leaves nothing on the wire.
struct AbortOnDrop(AbortController);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether redirects are followed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Redirects {
    /// Never: a redirect comes back as an answer (the token endpoint's request carries
    /// the refresh credential). The browser hides where it points.
    Refused,
    /// As the browser does (it drops `Authorization` on a redirect to another origin).
    Followed,
}

/// Sends `request` with the global `fetch` and reads the whole answer, within
/// `timeout` if given.
pub(crate) async fn fetch(
    request: http::Request<Vec<u8>>,
    redirects: Redirects,
    timeout: Option<Duration>,
) -> Result<http::Response<Vec<u8>>, FetchFailure> {
    let controller = AbortController::new().map_err(|e| FetchFailure::Request(js::describe(&e)))?;
    let abort = AbortOnDrop(controller.clone());
    let pending = pin!(send(request, redirects, &controller));
    let result = match timeout {
        None => pending.await,
        Some(limit) => {
            let mut pending = pending;
            let mut timer = Wasm.sleep(limit);
            poll_fn(|cx| {
                if let Poll::Ready(result) = pending.as_mut().poll(cx) {
                    return Poll::Ready(result);
                }
                match std::pin::Pin::new(&mut timer).poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(FetchFailure::Timeout(limit))),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        }
    };
    // Done: nothing to abort any more (an abort now is harmless all the same).
    drop(abort);
    result
}

async fn send(
    request: http::Request<Vec<u8>>,
    redirects: Redirects,
    controller: &AbortController,
) -> Result<http::Response<Vec<u8>>, FetchFailure> {
    let refused = |e: JsValue| FetchFailure::Request(js::describe(&e));
    let (parts, body) = request.into_parts();
    let init = RequestInit::new();
    init.set_method(parts.method.as_str());
    init.set_redirect(match redirects {
        Redirects::Refused => RequestRedirect::Manual,
        Redirects::Followed => RequestRedirect::Follow,
    });
    init.set_signal(Some(&controller.signal()));
    let headers = Headers::new().map_err(refused)?;
    for (name, value) in &parts.headers {
        let value = value
            .to_str()
            .map_err(|_| FetchFailure::Request(format!("the header {name} is not text")))?;
        headers.append(name.as_str(), value).map_err(refused)?;
    }
    init.set_headers(&headers);
    if !body.is_empty() {
        init.set_body(&Uint8Array::from(body.as_slice()));
    }
    let url = parts.uri.to_string();
    let request = web_sys::Request::new_with_str_and_init(&url, &init).map_err(refused)?;
    let fetch = js::method(&js_sys::global(), "fetch")
        .ok_or_else(|| FetchFailure::Request("this scope has no fetch".to_owned()))?;
    let promise: Promise = fetch
        .call1(&js_sys::global(), &request)
        .map_err(refused)?
        .dyn_into()
        .map_err(refused)?;
    let response: web_sys::Response = js::settle(promise)
        .await
        .map_err(FetchFailure::Network)?
        .dyn_into()
        .map_err(refused)?;
    if response.type_() == ResponseType::Opaqueredirect {
        // The browser does not say where: a redirect all the same (the codec reports
        // it as a misconfiguration: configure the final URL).
        let mut answer = http::Response::new(Vec::new());
        *answer.status_mut() = http::StatusCode::FOUND;
        return Ok(answer);
    }
    let mut answer = http::Response::new(Vec::new());
    *answer.status_mut() = http::StatusCode::from_u16(response.status())
        .map_err(|_| FetchFailure::Request(format!("status {}", response.status())))?;
    if let Ok(Some(entries)) = js_sys::try_iter(&response.headers()) {
        for entry in entries.flatten() {
            let (name, value) = (js::get(&entry, "0"), js::get(&entry, "1"));
            if let (Some(name), Some(value)) = (name.as_string(), value.as_string())
                && let (Ok(name), Ok(value)) = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(&value),
                )
            {
                answer.headers_mut().append(name, value);
            }
        }
    }
    let buffer = js::settle(response.array_buffer().map_err(refused)?)
        .await
        .map_err(FetchFailure::Network)?;
    let bytes = Uint8Array::new(&buffer);
    if bytes.length() as usize > MAX_RESPONSE_BYTES {
        return Err(FetchFailure::TooLong);
    }
    *answer.body_mut() = bytes.to_vec();
    Ok(answer)
}

/// The refresher's HTTP client: the page's `fetch`, which never follows a redirect
/// for it and is aborted when its exchange is cancelled or times out.
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchClient;

impl HttpClient for FetchClient {
    /// Nothing to configure: the page's `fetch` is the client (cookies are not sent to
    /// another origin's token endpoint; CORS decides what the page may read).
    type Settings = ();

    fn build(_: Option<()>, _: Duration) -> Result<Self, Error> {
        Ok(FetchClient)
    }
}

impl LocalHttpClient for FetchClient {
    async fn send(
        &self,
        request: http::Request<Vec<u8>>,
        timeout: Duration,
    ) -> Result<http::Response<Vec<u8>>, RefreshFailure> {
        fetch(request, Redirects::Refused, Some(timeout))
            .await
            .map_err(|failure| failure.refresh_failure())
    }
}
