//! `follow_redirects URL`: a stand-in for a browser, for `oauth2_client login
//! --browser --browser-command …`. It `GET`s the URL it is given (its last argument)
//! and follows the redirects, as a browser does after the user signed in: the
//! authorization endpoint's redirect to the loopback listener of the sign-in. Exits 0
//! when the last answer is a success, 1 otherwise; prints nothing on stdout.

use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(url) = std::env::args().skip(1).last() else {
        eprintln!("follow_redirects: give the URL to open");
        return ExitCode::from(2);
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .build()
        .into();
    match agent.get(&url).call() {
        Ok(answer) if answer.status().is_success() => ExitCode::SUCCESS,
        Ok(answer) => {
            eprintln!(
                "follow_redirects: the last answer is HTTP {}",
                answer.status()
            );
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("follow_redirects: {error}");
            ExitCode::FAILURE
        }
    }
}
