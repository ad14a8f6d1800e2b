//! `cargo run --example demo`: an OAuth 2.0 server on 127.0.0.1, hundreds of tokio
//! tasks and a dozen ureq threads keeping their token fresh across several expiries,
//! a failing token endpoint, and a revoked grant. Prints a timeline and a summary.
//! `--help` lists the options.

use std::process::ExitCode;

use silent_refresh_examples::demo::{self, DemoCommand};

fn main() -> ExitCode {
    let options = match demo::parse_args(std::env::args().skip(1)) {
        Ok(DemoCommand::Help) => {
            print!("{}", demo::USAGE);
            return ExitCode::SUCCESS;
        }
        Ok(DemoCommand::Run(options)) => options,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::from(2);
        }
    };
    let report = match demo::run(&options) {
        Ok(report) => report,
        Err(message) => {
            eprintln!("demo: {message}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", demo::summary_table(&report));
    match demo::check(&report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problems) => {
            eprintln!("demo: the library did not keep its promises: {problems}");
            ExitCode::FAILURE
        }
    }
}
