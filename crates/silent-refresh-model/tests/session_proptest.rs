#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One session, many keys (rule 13), on random runs: requests for several keys,
//! results (rotating, failing, dead), 401s, sign-ins and time, checked after every step
//! by the lineage checker of `silent_refresh_model::lineage`.

use proptest::prelude::*;
use silent_refresh::KeyId;
use silent_refresh::{Action, AttemptId, Secret};
use silent_refresh_model::lineage::{Answer, Lineage, LineageOp as Op, run_session as run};

fn op(keys: u8) -> impl Strategy<Value = Op> {
    let key = 0..keys;
    let answer = prop_oneof![
        6 => (any::<bool>(), 0u8..8).prop_map(|(rotate, secs)| Answer::Token { rotate, secs }),
        2 => Just(Answer::Transient),
        1 => Just(Answer::Unreachable),
        1 => Just(Answer::Dead),
    ];
    prop_oneof![
        8 => key.clone().prop_map(|key| Op::Request { key }),
        8 => (key.clone(), answer).prop_map(|(key, answer)| Op::Result { key, answer }),
        3 => key.clone().prop_map(|key| Op::Rejected { key }),
        2 => key.clone().prop_map(|key| Op::Saved { key }),
        1 => (key, any::<bool>(), any::<bool>())
            .prop_map(|(key, credential, usable)| Op::Conflict { key, credential, usable }),
        4 => (0u16..3000).prop_map(|ms| Op::Advance { ms }),
        6 => Just(Op::WakeUp),
        1 => Just(Op::SignIn),
        1 => Just(Op::SignOut),
    ]
}

proptest! {
    #[test]
    fn every_key_keeps_the_lineage_rules(
        keys in 1u8..5,
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(4), 0..80),
    ) {
        if let Err(violation) = run(keys, seed, &ops) {
            prop_assert!(false, "{violation}");
        }
    }
}

/// Another process's session found by one key's save is every key's: the next key to
/// refresh sends the stored credential, not the one the stored session replaced; a
/// stored session without one ends the other keys.
#[test]
fn a_conflict_found_by_one_key_brings_the_stored_credential_to_every_key() {
    let token = |rotate| Answer::Token { rotate, secs: 5 };
    let ops = [
        Op::Request { key: 0 },
        Op::Result {
            key: 0,
            answer: token(true),
        },
        Op::Conflict {
            key: 0,
            credential: true,
            usable: true,
        },
        Op::Request { key: 1 },
        Op::Result {
            key: 1,
            answer: token(false),
        },
        Op::Request { key: 1 },
        Op::Request { key: 0 },
    ];
    run(2, 3, &ops).expect("the stored credential is sent");
    let ops = [
        Op::Request { key: 0 },
        Op::Result {
            key: 0,
            answer: token(true),
        },
        Op::Conflict {
            key: 0,
            credential: false,
            usable: true,
        },
        Op::Request { key: 1 },
        Op::Advance { ms: 2000 },
        Op::WakeUp,
    ];
    run(2, 3, &ops).expect("no key sends the replaced credential");
}

/// The lineage checker is not vacuous: two keys each needing a token start their
/// exchanges one after the other, the second with the first's rotated credential, and a
/// dead credential answers every key's waiting request.
#[test]
fn two_keys_refresh_one_after_the_other_with_the_rotated_credential() {
    let ops = [
        Op::Request { key: 0 },
        Op::Request { key: 1 },
        Op::Result {
            key: 0,
            answer: Answer::Token {
                rotate: true,
                secs: 5,
            },
        },
        Op::Result {
            key: 1,
            answer: Answer::Token {
                rotate: true,
                secs: 5,
            },
        },
        Op::Request { key: 2 },
        Op::Request { key: 1 },
        Op::Result {
            key: 2,
            answer: Answer::Dead,
        },
    ];
    run(3, 7, &ops).expect("the lineage rules hold");
    // A broken session would be caught: a lineage checker fed a second StartRefresh
    // while one is on the wire says so.
    let mut lineage = Lineage::with_credential("rt-1");
    let start = |key, n| {
        (
            KeyId(key),
            Action::StartRefresh {
                attempt: AttemptId(n),
                refresh_token: Some(Secret::new("rt-1")),
            },
        )
    };
    lineage.observe(&[start(0, 1)]).expect("the first starts");
    let error = lineage
        .observe(&[start(1, 1)])
        .expect_err("one on the wire");
    assert!(error.contains("on the wire"), "{error}");
}
