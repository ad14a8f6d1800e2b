//! A short run of the demo's three acts (one-second tokens, fewer tasks): the
//! promises it prints hold.

use std::time::Duration;

use silent_refresh_examples::demo::{self, DemoCommand, DemoOptions};

#[test]
fn short_demo_keeps_every_promise() {
    let options = DemoOptions {
        tasks: 60,
        threads: 4,
        lifetime: Duration::from_secs(1),
        quiet: true,
    };
    let report = demo::run(&options).expect("the demo runs");
    let table = demo::summary_table(&report);
    demo::check(&report).unwrap_or_else(|problems| panic!("{problems}\n{table}"));

    let [tokio, ureq, failure] = &report.acts[..] else {
        panic!("three acts expected:\n{table}");
    };
    // Act 1: a cold start, proactive refreshes, and the key rotation's 401s, each
    // retried once with the one new token.
    assert!(tokio.server.issued >= 3, "{table}");
    assert!(tokio.retried_401 > 0, "{table}");
    assert_eq!(
        tokio.server.resource_unauthorized, tokio.retried_401,
        "{table}"
    );
    assert!(tokio.served_by.len() >= 3, "{table}");
    // Act 2: across expiries with the blocking adapter, and the key rotation's 401s
    // retried by the middleware.
    assert!(ureq.server.issued >= 3, "{table}");
    assert!(ureq.retried_401 > 0, "{table}");
    assert_eq!(
        ureq.server.resource_unauthorized, ureq.retried_401,
        "{table}"
    );
    assert_eq!(ureq.workers, options.threads);
    // Act 3: the outage failed refreshes and released parked requests with an
    // error; the deadline error names the last refresh failure.
    assert!(failure.server.unavailable > 0, "{table}");
    assert!(
        failure
            .errors
            .iter()
            .any(|(message, _)| message.contains("deadline") && message.contains("503")),
        "{table}"
    );
    assert!(
        failure
            .stop_after_revocation
            .is_some_and(|after| after < Duration::from_secs(1)),
        "{table}"
    );
    assert!(report.elapsed < Duration::from_secs(12), "{table}");
}

#[test]
fn demo_options_parse_and_help_lists_them() {
    let parse = |args: &[&str]| demo::parse_args(args.iter().map(|a| (*a).to_owned()));
    match parse(&["--tasks", "50", "--threads=3", "--lifetime", "2"]) {
        Ok(DemoCommand::Run(options)) => {
            assert_eq!(
                (options.tasks, options.threads, options.lifetime),
                (50, 3, Duration::from_secs(2))
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(parse(&[]), Ok(DemoCommand::Run(_))));
    assert!(matches!(parse(&["--help"]), Ok(DemoCommand::Help)));
    for bad in [
        &["--tasks"][..],
        &["--tasks", "0"],
        &["--lifetime", "x"],
        &["--port", "1"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?}");
    }
    for option in ["--tasks", "--threads", "--lifetime", "--help"] {
        assert!(demo::USAGE.contains(option), "{option}");
    }
}
