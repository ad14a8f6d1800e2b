//! Shared code of the silent-refresh examples: the embedded OAuth 2.0 server, the
//! demo's acts, and the logic of `oauth2_client`, so that tests can run them.
//!
//! - [`server`]: an authorization server and protected resource on `127.0.0.1`
//!   (short-lived access tokens, rotating refresh tokens, reuse detection, a switch
//!   that makes the token endpoint fail; slow, faulty and redirecting modes of the
//!   token endpoint, and a second origin that counts what reaches it).
//! - [`demo`]: the acts of `cargo run --example demo`.
//! - [`client`]: `oauth2_client`, a load and smoke tool for any OAuth 2.0 server.
//! - [`custom`]: the application side of `custom_refresh` (the browser pattern
//!   ported): an app's own JSON login and refresh API, and the run's counts; the
//!   client side is all in `examples/custom_refresh.rs`.
//! - [`grants`]: `oauth2_client`'s `--grant`, `--auth private_key_jwt`,
//!   `--private-key` and `--subject-token-file`.
//! - [`dpop_key`]: `oauth2_client`'s `--dpop` and `--dpop-key PATH`.
//! - [`login`]: `oauth2_client login` and `logout` (the device flow, the browser
//!   sign-in, a logout that revokes), and `--issuer` for the load run.
//! - [`shell_words`]: `--browser-command` split into words as a shell would.
//! - [`keys`]: RS256 and ES256 key pairs made at run time, for the signed assertions.
//! - [`probe`]: one authorized `GET` through either adapter's 401-retry helper.
//! - [`timeline`]: timestamped lines for the demo.

pub mod client;
pub mod custom;
pub mod demo;
pub mod dpop_key;
pub mod grants;
pub mod keys;
pub mod login;
pub mod measure;
pub mod probe;
pub mod serve;
pub mod server;
pub mod shell_words;
pub mod timeline;

/// The README's code, compiled as doctests so its quick starts stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
