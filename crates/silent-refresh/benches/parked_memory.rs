//! Heap bytes per parked request, measured with a counting allocator (dhat).
//!
//! `cargo bench -p silent-refresh --bench parked_memory`

use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{Action, Config, Credentials, Expiry, Token, TokenMachine};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const PARKED: usize = 100_000;

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let now = Instant::now();
    let config = Config::builder()
        .max_parked(PARKED)
        .build()
        .expect("valid config");
    let mut machine = TokenMachine::new(config, now, SystemTime::now());
    machine.handle_sign_in(
        now,
        SystemTime::now(),
        Credentials::RefreshToken("rt".into()),
    );
    // The first request starts the refresh; drain that, then measure the rest.
    let _ = machine.handle_request(now, None);
    let mut attempt = None;
    while let Some(action) = machine.poll_action() {
        if let Action::StartRefresh { attempt: a, .. } = action {
            attempt = Some(a);
        }
    }
    let before = dhat::HeapStats::get().curr_bytes;
    for _ in 1..PARKED {
        let _ = machine.handle_request(now, None);
    }
    let after = dhat::HeapStats::get().curr_bytes;
    assert_eq!(machine.parked_len(), PARKED);
    let per_request = (after - before) as f64 / (PARKED - 1) as f64;

    // Releasing them all: the peak includes the queued grants.
    let token = Token::bearer("at", Expiry::In(Duration::from_secs(3600)));
    machine.handle_refresh_result(now, attempt.expect("a refresh started"), Ok(token));
    let queued = dhat::HeapStats::get().curr_bytes;
    let mut granted = 0;
    while let Some(action) = machine.poll_action() {
        granted += usize::from(matches!(action, Action::Grant { .. }));
    }
    assert_eq!(granted, PARKED);
    let per_grant = queued.saturating_sub(before) as f64 / PARKED as f64;
    println!("parked_memory/bytes_per_parked_request: {per_request:.1}");
    println!("parked_memory/bytes_per_queued_grant: {per_grant:.1}");
}
