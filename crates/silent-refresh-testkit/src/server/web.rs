//! The embedded server for a page: CORS on every route of both origins (the browser
//! example's page calls the discovery document, the token endpoint and the resource
//! from another origin), and a folder of static files served on the resource's origin
//! ([`AuthServer::serve_folder`]), so one server runs the whole browser example.
//!
//! CORS here is the permissive kind a development server uses: any origin, no
//! cookies (`Access-Control-Allow-Credentials` is never sent), the headers a token
//! request and an API call carry, and `WWW-Authenticate` and `DPoP-Nonce` readable by
//! the page (the 401 rules need them).

use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, PoisonError};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{AuthServer, ServerState};

/// Answers a CORS preflight, and marks every other answer readable from any origin.
pub(super) async fn cors(request: Request, next: Next) -> Response {
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut response = if preflight {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, dpop"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        response
    } else {
        next.run(request).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("www-authenticate, dpop-nonce, retry-after"),
    );
    response
}

/// A file of the served folder, or `404`.
pub(super) async fn static_file(
    State(state): State<Arc<ServerState>>,
    request: Request,
) -> Response {
    let folder = state
        .folder
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let Some(folder) = folder else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if request.method() != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let Some(path) = file_in(&folder, request.uri().path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(body) => ([(header::CONTENT_TYPE, content_type(&path))], body).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The file `uri_path` names in `folder` (`/` is `index.html`); `None` for a path that
/// would leave the folder.
fn file_in(folder: &Path, uri_path: &str) -> Option<PathBuf> {
    let relative = uri_path.trim_start_matches('/');
    let relative = if relative.is_empty() {
        "index.html"
    } else {
        relative
    };
    let relative = Path::new(relative);
    relative
        .components()
        .all(|part| matches!(part, Component::Normal(_)))
        .then(|| folder.join(relative))
}

/// The `Content-Type` of a page's files (a wasm module must be `application/wasm`
/// for the browser to compile it as it streams).
fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

impl AuthServer {
    /// Serves the files of `folder` on the resource's origin ([`AuthServer::origin`]):
    /// `GET /index.html`, `GET /app.js`… (`/` is `index.html`); the resource's path
    /// stays the resource. What `examples/browser/build.sh` prints is such a folder.
    pub fn serve_folder(&self, folder: impl Into<PathBuf>) {
        *self
            .state
            .folder
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(folder.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_leaves_the_folder_is_not_served() {
        let folder = Path::new("/srv/page");
        assert_eq!(file_in(folder, "/"), Some(folder.join("index.html")));
        assert_eq!(
            file_in(folder, "/pkg/app.js"),
            Some(folder.join("pkg/app.js"))
        );
        assert_eq!(file_in(folder, "/../secret"), None);
        assert_eq!(file_in(folder, "/pkg/../../secret"), None);
        assert_eq!(
            file_in(folder, "//etc/passwd"),
            Some(folder.join("etc/passwd"))
        );
    }
}
