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
//!   [--auth basic|post] [--scope S]
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    let code = silent_refresh_examples::client::cli_main(
        std::env::args().skip(1),
        |name| std::env::var(name).ok(),
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
