//! `oauth2_client`: a load and smoke tool for any OAuth 2.0 server. Keeps N
//! requests in flight against a protected resource through silent-refresh (tokio or
//! blocking), refreshing with the refresh token from the environment, and prints one
//! JSON line. `--help` tells how.
//!
//! ```text
//! OAUTH_CLIENT_SECRET=… OAUTH_REFRESH_TOKEN=… \
//! cargo run --release --example oauth2_client -- \
//!   --token-url URL --client-id ID --resource URL \
//!   --runtime tokio|blocking --concurrency N (--duration SECS | --requests N) \
//!   [--auth basic|post] [--scope S] [--time-scale F] [--refresh-timeout DUR]
//! ```
//!
//! With `--embedded-server` it starts the examples' OAuth 2.0 server itself (rotating
//! refresh tokens, reuse detection) in a slow, faulty or redirecting mode, and adds
//! the server's counts to the JSON line, e.g. issue 11's slow identity provider:
//!
//! ```text
//! cargo run --example oauth2_client -- --embedded-server --token-delay 12s \
//!   --token-lifetime 20s --runtime tokio --concurrency 16 --duration 45
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = silent_refresh_tool::client::cli_main(
        std::env::args().skip(1),
        |name| std::env::var(name).ok(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
