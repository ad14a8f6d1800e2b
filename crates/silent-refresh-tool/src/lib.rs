//! The logic of `oauth2_client` (`cargo run --example oauth2_client`), a load, smoke
//! and sign-in tool for any OAuth 2.0 server, kept in a library so that tests can run
//! it (not published).
//!
//! - [`client`]: the command line, the load run and its report.
//! - [`grants`]: `--grant`, `--auth private_key_jwt`, `--private-key` and
//!   `--subject-token-file`.
//! - [`dpop_key`]: `--dpop` and `--dpop-key PATH`.
//! - [`login`]: `login` and `logout` (the device flow, the browser sign-in, a logout
//!   that revokes), and `--issuer` for the load run.
//! - [`resources`]: `--resource URL [--indicator URI]`, repeated: one session, a
//!   token per API.
//! - [`probe`]: one authorized `GET` through either adapter's 401-retry helper.
//! - [`measure`]: the counts and latencies of a run.
//! - [`shell_words`]: `--browser-command` split into words as a shell would.
//!
//! ```
//! use silent_refresh_tool::client::{Command, parse};
//!
//! let command = parse(["--help"].map(String::from), |_| None)?;
//! assert!(matches!(command, Command::Help));
//! # Ok::<(), String>(())
//! ```

#![forbid(unsafe_code)]

pub mod client;
pub mod dpop_key;
pub mod grants;
pub mod login;
pub mod measure;
pub mod probe;
pub mod resources;
pub mod shell_words;
