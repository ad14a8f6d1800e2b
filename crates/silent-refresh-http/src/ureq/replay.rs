//! Request bodies the bearer middleware can send a second time.
//!
//! A ureq [`SendBody`] is a one-shot reader and cannot be inspected, so the middleware
//! reads it before sending, up to a limit: a body that ends within the limit is kept
//! in memory and can be sent again after a 401.

use std::io::Cursor;

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, Method};
use ureq::SendBody;

/// A request body held in memory.
#[derive(Debug)]
pub(crate) struct Replay {
    bytes: Vec<u8>,
    /// Sent as no body at all, as ureq sends a `GET` made with `call()`.
    no_body: bool,
}

impl Replay {
    /// Keeps `bytes`, the whole body, and frames it the way ureq frames a body of
    /// known length: with a `Content-Length` (unless the request already frames its
    /// body), or with no body at all for an empty body of a method that needs none.
    pub(crate) fn new(method: &Method, bytes: Vec<u8>, headers: &mut HeaderMap) -> Self {
        let framed =
            headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING);
        let needs_body = matches!(*method, Method::POST | Method::PUT | Method::PATCH);
        let no_body = bytes.is_empty() && !needs_body && !framed;
        if !no_body && !framed {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        }
        Self { bytes, no_body }
    }

    /// Calls `send` with a fresh body holding the same bytes.
    pub(crate) fn send<R>(&self, send: impl FnOnce(SendBody<'_>) -> R) -> R {
        if self.no_body {
            return send(SendBody::none());
        }
        let mut cursor = Cursor::new(self.bytes.as_slice());
        send(SendBody::from_reader(&mut cursor))
    }
}

/// Whether the middleware should read a body with these headers at all: not when it
/// announces itself as streamed or as larger than `limit`, so that such bodies go out
/// untouched.
pub(crate) fn worth_buffering(headers: &HeaderMap, limit: usize) -> bool {
    if headers.contains_key(TRANSFER_ENCODING) {
        return false;
    }
    match headers.get(CONTENT_LENGTH) {
        None => true,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|len| len <= limit as u64),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn read_all(replay: &Replay) -> Vec<u8> {
        replay.send(|body| {
            let mut out = Vec::new();
            body.into_reader()
                .read_to_end(&mut out)
                .expect("in-memory read");
            out
        })
    }

    #[test]
    fn body_is_sent_twice_with_its_length() {
        let mut headers = HeaderMap::new();
        let replay = Replay::new(&Method::POST, b"a=1&b=2".to_vec(), &mut headers);
        assert_eq!(read_all(&replay), b"a=1&b=2");
        assert_eq!(read_all(&replay), b"a=1&b=2");
        assert_eq!(
            headers.get(CONTENT_LENGTH),
            Some(&HeaderValue::from(7usize))
        );
    }

    #[test]
    fn empty_get_has_no_body_but_empty_post_has_a_zero_length() {
        let mut get_headers = HeaderMap::new();
        let get = Replay::new(&Method::GET, Vec::new(), &mut get_headers);
        assert!(get.no_body);
        assert!(!get_headers.contains_key(CONTENT_LENGTH));
        let mut post_headers = HeaderMap::new();
        let post = Replay::new(&Method::POST, Vec::new(), &mut post_headers);
        assert!(!post.no_body);
        assert_eq!(
            post_headers.get(CONTENT_LENGTH),
            Some(&HeaderValue::from(0usize))
        );
    }

    #[test]
    fn streamed_or_large_bodies_are_not_buffered() {
        let mut headers = HeaderMap::new();
        assert!(worth_buffering(&headers, 10));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(11usize));
        assert!(!worth_buffering(&headers, 10));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(10usize));
        assert!(worth_buffering(&headers, 10));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert!(!worth_buffering(&headers, 10));
    }
}
