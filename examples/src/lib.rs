//! The demo's acts, kept in a library so that a test can run them. The servers the
//! examples run against are in `silent-refresh-testkit`; the logic of `oauth2_client`
//! is in `silent-refresh-tool`.
//!
//! - [`demo`]: the acts of `cargo run --example demo`.
//! - [`timeline`]: timestamped lines for the demo.

pub mod demo;
pub mod timeline;

/// The README's code, compiled as doctests so its quick starts stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
