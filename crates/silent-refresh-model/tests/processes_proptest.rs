//! Two to four processes, each a real driver kernel, sharing one store and one identity
//! server that rotates refresh credentials and detects reuse, on random scripts: time
//! passing, requests, exchanges answered, failed or lost, leases expiring, processes
//! killed mid-exchange and restarted, sign-outs, sign-ins, failing writes, revocations.
//!
//! Every invariant of `silent_refresh_model::processes` (one exchange on the wire under
//! a live lock, no credential presented twice without an unknown outcome, no stale
//! overwrite, exactly one outcome per request, the session never lost, no expired token
//! granted) is checked after every step. `PROPTEST_CASES` sets the number of runs
//! (default 1024).

use proptest::prelude::*;
use silent_refresh_model::processes::{
    AnswerPick, LockKind, ProcOp, ProcSetup, RunReport, Script, run_script,
};

fn setup() -> impl Strategy<Value = ProcSetup> {
    let lock = prop_oneof![
        Just(LockKind::Flock),
        any::<u8>().prop_map(|ttl| LockKind::Lease { ttl }),
    ];
    (any::<u8>(), lock, any::<u8>(), any::<bool>(), any::<u8>()).prop_map(
        |(processes, lock, token_ttl, wait_for_fresh, seed)| ProcSetup {
            processes,
            lock,
            token_ttl,
            wait_for_fresh,
            seed,
        },
    )
}

fn answer() -> impl Strategy<Value = AnswerPick> {
    prop_oneof![
        6 => Just(AnswerPick::Answered),
        1 => Just(AnswerPick::LostAfterServer),
        2 => Just(AnswerPick::ServerError),
    ]
}

fn op() -> impl Strategy<Value = ProcOp> {
    let process = 0u8..4;
    prop_oneof![
        6 => any::<u16>().prop_map(ProcOp::Advance),
        3 => (0u8..40).prop_map(ProcOp::AdvanceSeconds),
        6 => process.clone().prop_map(|process| ProcOp::Request { process }),
        8 => (process.clone(), answer()).prop_map(|(process, answer)| ProcOp::Answer { process, answer }),
        1 => (process.clone(), any::<bool>())
            .prop_map(|(process, processed)| ProcOp::Abort { process, processed }),
        2 => process.clone().prop_map(|process| ProcOp::Reject { process }),
        1 => Just(ProcOp::ExpireLease),
        1 => (process.clone(), any::<bool>())
            .prop_map(|(process, processed)| ProcOp::Kill { process, processed }),
        2 => process.clone().prop_map(|process| ProcOp::Restart { process }),
        1 => process.clone().prop_map(|process| ProcOp::SignOut { process }),
        1 => process.clone().prop_map(|process| ProcOp::SignIn { process }),
        1 => any::<u8>().prop_map(|count| ProcOp::FailWrites { count }),
        1 => Just(ProcOp::Revoke),
    ]
}

fn script() -> impl Strategy<Value = Script> {
    (setup(), proptest::collection::vec(op(), 0..80)).prop_map(|(setup, ops)| Script { setup, ops })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1024)
    ))]

    #[test]
    fn processes_sharing_a_store_keep_every_invariant(script in script()) {
        if let Err(violation) = run_script(&script) {
            prop_assert!(false, "{violation}\nsetup: {:?}", script.setup);
        }
    }
}

/// The scripts do reach the interesting states: without this, a simulation that never
/// refreshed would pass every invariant.
#[test]
fn a_contended_script_refreshes_adopts_and_revokes() {
    use ProcOp::{AdvanceSeconds, Answer, Request};
    let answered = |process| Answer {
        process,
        answer: AnswerPick::Answered,
    };
    let setup = ProcSetup {
        processes: 1, // three processes
        lock: LockKind::Flock,
        token_ttl: 50, // 60 s tokens
        wait_for_fresh: false,
        seed: 3,
    };
    let mut ops = vec![Request { process: 0 }, Request { process: 1 }];
    // Past the refresh window of every process: each wants to refresh; one exchange at
    // a time, the others adopt its token from the store.
    ops.push(AdvanceSeconds(40));
    for process in [0, 1, 2, 0, 1, 2] {
        ops.push(answered(process));
        ops.push(Request { process });
    }
    let report: RunReport =
        run_script(&Script { setup, ops }).expect("the processes keep every invariant");
    assert!(report.rotations >= 1, "{report:?}");
    assert!(report.adopted >= 1, "{report:?}");
    assert!(report.granted >= 2, "{report:?}");
    assert_eq!(report.reuse_revocations, 0, "{report:?}");
}

/// K1, fixed (found by this property test): one exchange answers after its access
/// token's usable lifetime (10 s tokens, the answer comes 9 s after the request was
/// sent). The core used to keep the rotated `rt-0-1` in memory only, so the store kept
/// the spent `rt-0-0`, which the sibling presented next, and the server revoked the
/// grant. Now the unusable token is stored (never granted) and the run keeps every
/// invariant strictly.
#[test]
fn k1_a_rotated_credential_that_arrives_expired_is_saved() {
    let setup = ProcSetup {
        processes: 0, // two processes
        lock: LockKind::Flock,
        token_ttl: 0, // 10 s tokens: the refresh starts at about 5 s
        wait_for_fresh: false,
        seed: 0,
    };
    let ops = vec![
        ProcOp::AdvanceSeconds(6), // process 0 sends rt-0-0; process 1 waits for the lock
        ProcOp::AdvanceSeconds(9), // the answer comes after the token stopped being usable
        ProcOp::Answer {
            process: 0,
            answer: AnswerPick::Answered,
        },
    ];
    let script = Script { setup, ops };
    match run_script(&script) {
        Ok(report) => assert_eq!(report.known_k1, 0, "fixed: {report:?}"),
        Err(violation) => panic!("{violation}"),
    }
}

/// Two processes on a flock, 60 s tokens.
fn two_processes() -> ProcSetup {
    ProcSetup {
        processes: 0,
        lock: LockKind::Flock,
        token_ttl: 50,
        wait_for_fresh: false,
        seed: 0,
    }
}

/// K2, fixed: process 1 signs in anew while process 0 holds the lock for its
/// exchange, so the sign-in's save is refused (the store is locked) and retried later.
/// Process 1 refreshes its new session before that retry; the refreshed token's save
/// compares against what the sign-in's save compares against (nothing: a sign-in wins),
/// not against `rt-1-0`, which the store never held, so the new session is kept.
#[test]
fn k2_a_new_sign_in_survives_a_refresh_before_its_save() {
    let answer = |process, answer| ProcOp::Answer { process, answer };
    let ops = vec![
        ProcOp::Reject { process: 0 }, // process 0 refreshes under the lock
        ProcOp::SignIn { process: 1 }, // its save is refused: locked
        ProcOp::Reject { process: 1 }, // process 1 refreshes grant 1: waits for the lock
        answer(0, AnswerPick::ServerError), // the lock is free: process 1 sends rt-1-0
        answer(1, AnswerPick::Answered), // rt-1-1, saved over whatever the store holds
        ProcOp::AdvanceSeconds(5),
    ];
    let script = Script {
        setup: two_processes(),
        ops,
    };
    let report = run_script(&script).expect("every invariant holds, strictly");
    assert_eq!(report.known_k2, 0, "{report:?}");
}

/// K3, fixed: process 0 refreshes under the lock while process 1 waits for it;
/// process 0's save fails. The kernel keeps the lock for the retried save, so process 1
/// never reads the spent `rt-0-0` from the store and presents it again.
#[test]
fn k3_a_failed_save_keeps_the_lock_until_it_is_saved() {
    let answered = |process| ProcOp::Answer {
        process,
        answer: AnswerPick::Answered,
    };
    let ops = vec![
        ProcOp::Reject { process: 0 }, // process 0 sends rt-0-0 under the lock
        ProcOp::Reject { process: 1 }, // process 1 waits for the lock
        ProcOp::FailWrites { count: 0 }, // the next write fails
        answered(0),                   // rt-0-1: its save fails, the lock is kept
        answered(1),                   // process 1 adopts rt-0-1 once it is saved
        ProcOp::AdvanceSeconds(5),
    ];
    let script = Script {
        setup: two_processes(),
        ops,
    };
    let report = run_script(&script).expect("every invariant holds, strictly");
    assert_eq!(report.known_k3, 0, "{report:?}");
}
