#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A storm of 401s on tokio's paused clock, with the default wait policy and sixteen
//! requests in flight: an API that rejects every token costs a handful of refreshes.
//! The outage and storm scenarios that run on both runtimes are the driver's
//! (`crates/silent-refresh-driver/tests/storms.rs`).

mod common;

use common::{Answer, fake, millis, rotated, secs};
use silent_refresh_tokio::silent_refresh::{self, Config, Credentials};
use silent_refresh_tokio::{Error, TokenSource};
use tokio::time::{Instant, sleep};

fn source(config: Config, refresher: impl silent_refresh_tokio::Refresher) -> TokenSource {
    TokenSource::builder(config)
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(refresher)
        .build()
        .expect("inside a runtime")
}

/// An API that answers 401 to every token, with 16 requests in flight, each
/// retrying once after a 401 as the integrations do: at most 10 token requests in 20 s.
#[tokio::test(start_paused = true)]
async fn an_api_that_rejects_every_token_costs_at_most_ten_refreshes_in_20_s() {
    let (calls, refresher) = fake(|n| Answer::after(millis(20), Ok(rotated(n, secs(3600)))));
    let source = source(Config::default(), refresher);
    let start = Instant::now();
    let end = start + secs(20);
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let source = source.clone();
        callers.spawn(async move {
            let mut told = 0u32;
            while Instant::now() < end {
                // One request: the token, a 401, the report, one retry, a 401 again.
                for _ in 0..2 {
                    match source.token().await {
                        Ok(token) => {
                            sleep(millis(5)).await; // the API's round trip
                            source.report_rejected(token.generation);
                        }
                        Err(Error::Token(silent_refresh::Error::TokensRejected {
                            count, ..
                        })) => {
                            assert!(count >= 2);
                            told += 1;
                            sleep(millis(10)).await;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            told
        });
    }
    callers.join_all().await;
    let refreshes = calls.times().iter().filter(|t| **t < end).count();
    assert!(refreshes <= 10, "{refreshes} token requests in 20 s");
    assert!(
        refreshes >= 3,
        "{refreshes}: rejections still refresh, slowly"
    );
}
