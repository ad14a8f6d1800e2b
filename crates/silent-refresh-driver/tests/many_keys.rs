//! One session, many keys (issue 22, rule 13), through the generic source, once on
//! each runtime (tokio on paused time, threads on a manual clock): three keys of one
//! session over 18 s of 3 s tokens, requests spread over them in turn. No request
//! fails or gets another key's token, every exchange presents the credential the one
//! before it rotated (one on the wire at a time, nothing spent twice), and each key
//! refreshes about once per expiry, as a session with one key does.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use silent_refresh::{Config, Credentials};
use silent_refresh_driver::TokenSource;
use silent_refresh_oauth2::Target;
use support::{Answer, Calls, Harness, millis, rotated, secs};

scenarios!(three_keys_over_18_s_of_3_s_tokens_share_one_rotating_lineage);

const LIFETIME: Duration = Duration::from_secs(3);
const RUN: Duration = Duration::from_secs(18);
/// Between two requests.
const PACE: Duration = Duration::from_millis(50);

/// A source on the harness whose refresher rotates: its `n`th answer is `at-n` with
/// `rt-n`, living [`LIFETIME`].
fn source<H: Harness>(h: &H) -> (TokenSource<H::Rt>, Arc<Calls>) {
    let calls = Arc::new(Calls::default());
    let source = h
        .builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(h.fake(
            calls.clone(),
            Arc::new(|n| Answer::now(Ok(rotated(n, LIFETIME)))),
        ))
        .build()
        .expect("the source starts");
    (source, calls)
}

/// Requests spread over `keys` in turn for [`RUN`]: each must get a token of its own
/// key (named after its target by the fake; the default's unnamed).
async fn spread<H: Harness>(h: &H, keys: &[(TokenSource<H::Rt>, String)]) -> usize {
    let end = h.now() + RUN;
    let mut served = 0;
    while h.now() < end {
        let (handle, name) = &keys[served % keys.len()];
        let token = H::token(handle).await.expect("no request fails");
        let secret = token.secret.expose();
        match secret.split_once('|') {
            Some((of, _)) => assert_eq!(of, name, "a token of another key: {secret}"),
            None => assert!(
                name.is_empty(),
                "the default token for key {name}: {secret}"
            ),
        }
        served += 1;
        h.advance(PACE).await;
    }
    served
}

async fn three_keys_over_18_s_of_3_s_tokens_share_one_rotating_lineage<H: Harness>(h: H) {
    // A session with one key, for what "about as often" means.
    let (alone, alone_calls) = source(&h);
    spread(&h, &[(alone.clone(), String::new())]).await;
    assert!(H::shutdown(&alone, millis(100)).await);
    let one_key = alone_calls.count();

    let (source, calls) = source(&h);
    let targets = [
        Target::resource("https://a.example/"),
        Target::audience("b").scope("b:read"),
    ];
    let mut keys = vec![(source.clone(), String::new())];
    for target in &targets {
        let handle = source.for_target(target.clone()).expect("a key");
        assert_eq!(
            source.for_target(target.clone()).expect("a key").key(),
            handle.key(),
            "the same target is the same key"
        );
        keys.push((handle, target.name()));
    }
    let served = spread(&h, &keys).await;
    assert!(served > 300, "{served}");
    assert!(H::shutdown(&source, millis(100)).await);

    // One lineage: every exchange presented the credential the one before rotated.
    let credentials = calls.credentials();
    for (i, sent) in credentials.iter().enumerate() {
        assert_eq!(
            sent.as_deref(),
            Some(format!("rt-{i}").as_str()),
            "{credentials:?}"
        );
    }
    // Each key refreshed about as often as a session with one key: at least once per
    // expiry (it never failed a request), never more than the lone key did (its
    // window jittered apart, a key may wait for the lineage now and then).
    let asked = calls.targets();
    let expiries = (RUN.as_millis() / LIFETIME.as_millis()) as usize;
    for name in std::iter::once(String::new()).chain(targets.iter().map(Target::name)) {
        let count = asked.iter().filter(|t| **t == name).count();
        assert!(
            count >= expiries && count <= one_key + 2,
            "key `{name}`: {count} refreshes, {one_key} with one key: {asked:?}"
        );
    }
}

/// A refresher that cannot ask for a target: `for_target` says so, and the default
/// target is the source itself.
#[test]
fn a_source_whose_refresher_asks_for_no_target_refuses_for_target() {
    use silent_refresh::{Expiry, RefreshFailure, Secret, Token};
    use silent_refresh_driver::Error;
    use silent_refresh_driver::runtime::threads::Threads;

    let source = TokenSource::<Threads>::builder(Config::default())
        .credentials(Credentials::RefreshToken("rt-0".into()))
        .refresher(|_: Option<Secret>| {
            Ok::<_, RefreshFailure>(Token::bearer("at", Expiry::In(secs(60))))
        })
        .build()
        .expect("the source starts");
    let refused = source.for_target(Target::resource("https://a.example/"));
    let Err(error @ Error::TargetsUnsupported { .. }) = refused else {
        panic!("refused: {refused:?}");
    };
    assert!(error.to_string().contains("OAuth2Refresher"), "{error}");
    let same = source
        .for_target(Target::default())
        .expect("the default key");
    assert_eq!(same.key(), source.key());
}
