//! The logic of `oauth2_client` (`cargo run --example oauth2_client`), a load, smoke
//! and sign-in tool for any OAuth 2.0 server, kept in a library so that tests can run
//! it (not published).
//!
//! - [`cli`]: the command line, its usage and exit codes, parsed into a command.
//! - [`client`]: the load run and its report (and the command line's names, again).
//! - [`session_store`]: `--token-file` or `--redis-url`, as one store.
//! - [`grants`]: `--grant`, `--auth private_key_jwt`, `--private-key` and
//!   `--subject-token-file`.
//! - [`dpop_key`]: `--dpop` and `--dpop-key PATH`.
//! - [`login`]: `login` and `logout` (the device flow, the browser sign-in, a logout
//!   that revokes), and `--issuer` for the load run.
//! - [`resources`]: `--resource URL [--indicator URI]`, repeated: one session, a
//!   token per API.
//! - [`probe`]: one authorized `GET` through either adapter's 401-retry helper.
//! - [`measure`]: the counts and latencies of a run.
//! - [`report`]: what a run reports (its JSON line) and why it stopped.
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

pub mod cli;
pub mod client;
pub mod dpop_key;
pub mod grants;
pub mod login;
pub mod measure;
pub mod probe;
pub mod report;
pub mod resources;
pub mod session_store;
pub mod shell_words;
