//! `TabsStore` in headless Chromium: two stores of one name in one page are two tabs
//! (the Web Lock is the origin's, IndexedDB the origin's, and a `BroadcastChannel`
//! reaches every other object of its name), so what holds here holds between tabs.
//!
//! Run with `wasm-bindgen-test-runner` and chromedriver (see `.ci/wasm-tests`).

#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join;
use silent_refresh_driver::runtime::{BlockingWork, Runtime};
use silent_refresh_driver::store::{Saved, TokenStore};
use silent_refresh_wasm::silent_refresh::time::SystemTime;
use silent_refresh_wasm::silent_refresh::{Config, Credentials, Expiry, Secret, Token};
use silent_refresh_wasm::{TabsStore, TokenSource, Wasm};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn rotated(n: usize, lifetime: Duration) -> Token {
    Token::bearer(format!("at-{n}"), Expiry::In(lifetime)).with_refresh_token(format!("rt-{n}"))
}

/// As a store holds tokens: with a wall-clock expiry, `lifetime` from now.
fn stored(n: usize, lifetime: Duration) -> Token {
    Token {
        expiry: Expiry::At(SystemTime::now() + lifetime),
        ..rotated(n, lifetime)
    }
}

/// Two "tabs" of one session: stores of the same name, in a database of this test's
/// own.
fn two_tabs(test: &str) -> (TabsStore, TabsStore) {
    let database = format!("silent-refresh-test-{test}");
    (
        TabsStore::with_database("session", &database),
        TabsStore::with_database("session", &database),
    )
}

/// Runs `call` on `store` as a runtime without threads does: once the store is ready
/// (this tab holds the lock and has read the session), inline.
async fn under_lock<T>(store: &TabsStore, call: impl FnOnce(&TabsStore) -> T) -> T {
    let guard = store
        .ready(BlockingWork::StoreIo)
        .expect("the tabs' store prepares each call")
        .await;
    let result = call(store);
    drop(guard);
    result
}

/// Asserts that a save was stored (not a conflict, not an error).
fn assert_stored(saved: Result<Saved, silent_refresh_wasm::Error>) {
    match saved {
        Ok(Saved::Stored) => {}
        Ok(Saved::Conflict(_)) => panic!("a conflict where the save was expected to be stored"),
        Err(error) => panic!("the save failed: {error}"),
    }
}

fn refresh_credential(token: &Token) -> Option<&str> {
    token.refresh_token.as_ref().map(Secret::expose)
}

#[wasm_bindgen_test]
async fn a_session_saved_under_the_lock_in_one_tab_is_read_in_the_other() {
    let (first, second) = two_tabs("handover");
    assert_stored(
        under_lock(&first, |store| {
            store.save(&stored(1, Duration::from_secs(60)), None)
        })
        .await,
    );

    let read = under_lock(&second, TokenStore::load)
        .await
        .expect("read")
        .expect("the other tab's session");
    assert_eq!(read.access_token.expose(), "at-1");
    assert_eq!(refresh_credential(&read), Some("rt-1"));

    under_lock(&second, TokenStore::forget)
        .await
        .expect("forgotten");
    let read = under_lock(&first, TokenStore::load).await.expect("read");
    assert!(read.is_none(), "the other tab's sign-out is seen");
}

#[wasm_bindgen_test]
async fn a_save_from_a_spent_credential_is_a_conflict_with_the_other_tabs_session() {
    let (first, second) = two_tabs("conflict");
    assert_stored(
        under_lock(&first, |store| {
            store.save(&stored(1, Duration::from_secs(60)), None)
        })
        .await,
    );
    // The first tab refreshes rt-1 into rt-2...
    let rt1 = Secret::from("rt-1");
    assert_stored(
        under_lock(&first, |store| {
            store.save(&stored(2, Duration::from_secs(60)), Some(&rt1))
        })
        .await,
    );
    // ...and the second, having refreshed rt-1 as well, is told so and given rt-2.
    let saved = under_lock(&second, |store| {
        store.save(&stored(9, Duration::from_secs(60)), Some(&rt1))
    })
    .await
    .expect("answered");
    match saved {
        Saved::Conflict(stored) => assert_eq!(refresh_credential(&stored), Some("rt-2")),
        Saved::Stored => panic!("a save from a spent credential was stored"),
    }
    let read = under_lock(&first, TokenStore::load)
        .await
        .expect("read")
        .expect("a session");
    assert_eq!(
        refresh_credential(&read),
        Some("rt-2"),
        "the conflict wrote nothing"
    );
}

#[wasm_bindgen_test]
async fn the_web_lock_lets_one_tab_in_at_a_time() {
    let (first, second) = two_tabs("serialise");
    let order = Rc::new(RefCell::new(Vec::new()));

    let held = first
        .ready(BlockingWork::StoreLock)
        .expect("prepared")
        .await;
    let waiting = {
        let order = order.clone();
        async move {
            let guard = second
                .ready(BlockingWork::StoreLock)
                .expect("prepared")
                .await;
            order.borrow_mut().push("second in");
            let read = second.load();
            drop(guard);
            read
        }
    };
    let holding = {
        let order = order.clone();
        async move {
            // Let the second tab ask for the lock (and wait) before this one is done.
            for _ in 0..5 {
                Wasm.sleep(Duration::from_millis(10)).await;
            }
            assert_stored(first.save(&stored(1, Duration::from_secs(60)), None));
            order.borrow_mut().push("first out");
            drop(held);
        }
    };
    let (read, ()) = join(waiting, holding).await;

    assert_eq!(*order.borrow(), ["first out", "second in"]);
    let read = read.expect("read").expect("a session");
    assert_eq!(
        refresh_credential(&read),
        Some("rt-1"),
        "the second tab reads what the first wrote under the lock"
    );
}

#[wasm_bindgen_test]
async fn two_tabs_rejecting_one_token_refresh_it_once() {
    let (first_store, second_store) = two_tabs("sources");
    let calls = Rc::new(RefCell::new(Vec::new()));
    let refresher = |calls: Rc<RefCell<Vec<String>>>| {
        move |refresh_token: Option<Secret>| {
            let calls = calls.clone();
            async move {
                let sent = refresh_token
                    .map(|s| s.expose().to_owned())
                    .unwrap_or_default();
                calls.borrow_mut().push(sent.clone());
                let n: usize = sent.trim_start_matches("rt-").parse().unwrap_or(0);
                Wasm.sleep(Duration::from_millis(20)).await;
                Ok(rotated(n + 1, Duration::from_secs(3600)))
            }
        }
    };
    let first = TokenSource::builder(Config::default())
        .store(first_store.clone())
        .credentials(Credentials::Token(rotated(0, Duration::from_secs(3600))))
        .refresher(refresher(calls.clone()))
        .build()
        .expect("a source");
    let token = first.token().await.expect("signed in");
    assert_eq!(token.secret.expose(), "at-0");
    // The second tab opens on the first one's session.
    let second = TokenSource::builder(Config::default())
        .store(second_store.clone())
        .refresher(refresher(calls.clone()))
        .build()
        .expect("a source");
    let adopted = second.token().await.expect("the stored session");
    assert_eq!(adopted.secret.expose(), "at-0");

    // The API rejects at-0 in both tabs at once.
    first.report_rejected(token.generation);
    second.report_rejected(adopted.generation);
    let (a, b) = join(first.token(), second.token()).await;

    let (a, b) = (a.expect("a new token"), b.expect("a new token"));
    assert_eq!(a.secret.expose(), "at-1");
    assert_eq!(b.secret.expose(), "at-1", "adopted, not refreshed again");
    assert_eq!(*calls.borrow(), ["rt-0"], "one exchange for the two tabs");
}
