//! The browser example: a page that signs in with the authorization code flow and
//! PKCE when no tab holds a session, then calls an API over and over through
//! silent-refresh, sharing one session (and one refresh per expiry) with its other
//! tabs. Its settings come from its URL query:
//!
//! - `issuer`: the authorization server (its metadata is discovered);
//! - `client_id`: a public client registered there, whose redirect URI is this page;
//! - `scope` (optional): the scope to ask for;
//! - `api`: the URL it calls, with `GET`, about four times a second.
//!
//! It exposes a running report as `window.silentRefreshReport`:
//! `{ ok, failed, refreshes, signed_in }` (requests answered with a success, requests
//! that failed, refresh exchanges this tab made, whether this tab has a session), so
//! that any browser automation can read it. `build.sh` builds it.
//!
//! On targets other than wasm32 the crate is empty.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod page;

#[cfg(target_arch = "wasm32")]
pub use page::start;
