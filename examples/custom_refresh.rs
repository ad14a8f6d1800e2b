//! `custom_refresh`: the browser pattern, ported. An application's own JSON API
//! (`POST /auth/login`, `POST /auth/refresh` with rotating refresh tokens, and
//! `GET /api/me`; not OAuth 2.0) runs on `127.0.0.1`; a closure refresher that calls
//! `/auth/refresh` and reads failures with `silent_refresh_oauth2::classify` keeps
//! the token fresh in each adapter while 16 tasks (tokio, `AuthorizedClient`), then 16
//! threads (ureq, `BearerAuth`), call the API across several 2-second tokens.
//!
//! ```text
//! cargo run --example custom_refresh
//! ```
//!
//! Prints a summary and one JSON line per runtime; exits 0 only when no request
//! failed, at most one refresh was ever in flight, and no refresh token was reused.

use std::process::ExitCode;

use silent_refresh_examples::custom::{self, Runtime, Scenario};

fn main() -> ExitCode {
    let mut passed = true;
    for runtime in [Runtime::Tokio, Runtime::Blocking] {
        let scenario = Scenario::example(runtime);
        println!(
            "{}: {} workers call GET /api/me for {:?}, with {:?} access tokens",
            runtime.name(),
            scenario.workers,
            scenario.duration,
            scenario.server.token_lifetime,
        );
        match custom::run(&scenario) {
            Ok(report) => {
                println!("{}", report.summary());
                println!("{}", report.json());
                passed &= report.passed();
            }
            Err(error) => {
                eprintln!("{}: the run could not start: {error}", runtime.name());
                passed = false;
            }
        }
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
