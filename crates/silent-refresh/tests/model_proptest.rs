//! The machine against the reference model and the rule checker, on random sequences
//! of inputs: requests, cancellations, time jumps both ways, refresh results (late,
//! duplicate, unknown), 401s of old and current generations, sign-in and sign-out.
//!
//! After every step the machine's actions must equal the model's, and the checker must
//! find every rule of the contract kept; at the end every request has its outcome.
//! `PROPTEST_CASES` sets the number of runs per test (default 256).

use std::sync::OnceLock;
use std::time::Instant;

use proptest::prelude::*;
use silent_refresh::RefreshMode;
use silent_refresh::model::{
    AttemptPick, CredentialsPick, DeadlinePick, ExpiryPick, FailurePick, GenerationPick, Op,
    RequestPick, Setup, Shape, TimeStep, decode, run,
};

/// The test's one reading of the clock; the machine and the model get instants from it.
fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

fn mode() -> impl Strategy<Value = RefreshMode> {
    prop_oneof![
        Just(RefreshMode::StaleWhileRefreshing),
        Just(RefreshMode::WaitForFresh)
    ]
}

fn setup() -> impl Strategy<Value = Setup> {
    let shape = prop_oneof![
        3 => Just(Shape::Small),
        2 => Just(Shape::Tied),
        2 => Just(Shape::NoJitter),
        2 => Just(Shape::TinyQueue),
    ];
    (mode(), shape, any::<u8>()).prop_map(|(mode, shape, seed)| Setup { mode, shape, seed })
}

fn expiry() -> impl Strategy<Value = ExpiryPick> {
    prop_oneof![
        4 => (0u8..=255).prop_map(ExpiryPick::Short),
        3 => any::<u8>().prop_map(ExpiryPick::Long),
        1 => Just(ExpiryPick::Zero),
        2 => Just(ExpiryPick::Never),
        2 => (-30i16..200).prop_map(ExpiryPick::AtWall),
    ]
}

fn attempt() -> impl Strategy<Value = AttemptPick> {
    prop_oneof![
        6 => Just(AttemptPick::Latest),
        2 => (0u8..4).prop_map(AttemptPick::Earlier),
        1 => Just(AttemptPick::Unknown),
    ]
}

fn time_step() -> impl Strategy<Value = TimeStep> {
    prop_oneof![
        4 => any::<u8>().prop_map(TimeStep::Millis),
        4 => (0u8..12).prop_map(TimeStep::Tenths),
        1 => (0u8..100).prop_map(TimeStep::Seconds),
    ]
}

fn credentials() -> impl Strategy<Value = CredentialsPick> {
    prop_oneof![
        2 => (expiry(), any::<bool>())
            .prop_map(|(expiry, refresh)| CredentialsPick::Token { expiry, refresh }),
        2 => Just(CredentialsPick::RefreshToken),
        1 => proptest::option::of(expiry())
            .prop_map(|token| CredentialsPick::ClientCredentials { token }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let deadline = proptest::option::weighted(
        0.2,
        prop_oneof![
            3 => (0u16..4000).prop_map(DeadlinePick::After),
            1 => any::<u8>().prop_map(DeadlinePick::Before),
        ],
    );
    let failure = prop_oneof![
        3 => Just(FailurePick::Transient),
        2 => (0u8..30).prop_map(FailurePick::TransientRetryAfter),
        1 => Just(FailurePick::Terminal),
    ];
    let generation = prop_oneof![
        3 => Just(GenerationPick::Current),
        2 => (0u8..3).prop_map(GenerationPick::Older),
        1 => Just(GenerationPick::Newer),
    ];
    let cancel = prop_oneof![
        4 => any::<u8>().prop_map(RequestPick::Known),
        1 => Just(RequestPick::Unknown),
    ];
    prop_oneof![
        16 => deadline.prop_map(|deadline| Op::Request { deadline }),
        4 => cancel.prop_map(Op::Cancel),
        10 => time_step().prop_map(Op::Advance),
        2 => (0u16..5000).prop_map(Op::Backwards),
        4 => Just(Op::Timeout),
        10 => Just(Op::WakeUp),
        12 => (attempt(), any::<bool>(), expiry())
            .prop_map(|(attempt, rotate, expiry)| Op::RefreshOk { attempt, rotate, expiry }),
        6 => (attempt(), failure).prop_map(|(attempt, failure)| Op::RefreshFail { attempt, failure }),
        2 => Just(Op::Duplicate),
        6 => generation.prop_map(Op::Rejected),
        2 => credentials().prop_map(Op::SignIn),
        1 => Just(Op::SignOut),
    ]
}

/// Most runs start with a sign-in, so their ops exercise the signed-in machine.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    (
        proptest::option::weighted(0.8, credentials()),
        proptest::collection::vec(op(), 0..60),
    )
        .prop_map(|(sign_in, rest)| sign_in.map(Op::SignIn).into_iter().chain(rest).collect())
}

proptest! {
    #[test]
    fn machine_matches_model_and_keeps_every_rule(setup in setup(), ops in ops()) {
        if let Err(violation) = run(setup.config(), start(), &ops) {
            prop_assert!(false, "{violation}");
        }
    }

    /// The fuzzer's decoding (bytes → `Arbitrary` setup and ops) drives the same harness.
    #[test]
    fn arbitrary_bytes_drive_the_harness(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let (setup, ops) = decode(&bytes);
        if let Err(violation) = run(setup.config(), start(), &ops) {
            prop_assert!(false, "{violation}");
        }
    }
}

#[test]
fn tmp_stats() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use silent_refresh::model::{Act, Harness, Input};
    use std::collections::BTreeMap;
    let mut runner = TestRunner::deterministic();
    let mut stats: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..500 {
        let setup = setup().new_tree(&mut runner).unwrap().current();
        let ops = ops().new_tree(&mut runner).unwrap().current();
        let mut h = Harness::new(setup.config(), start());
        for op in &ops {
            let before = h.machine().refresh_in_flight();
            let len = h.trace().len();
            h.step(op).unwrap();
            if h.trace().len() == len {
                continue;
            }
            let step = h.trace().last().unwrap();
            if let Input::RefreshResult { attempt, result } = &step.input {
                let persisted = step
                    .actions
                    .iter()
                    .any(|a| matches!(a, Act::Persist { .. }));
                let key = format!(
                    "result inflight={} ok={} persisted={}",
                    Some(*attempt) == before,
                    result.is_ok(),
                    persisted
                );
                *stats.entry(key).or_default() += 1;
            }
            for a in &step.actions {
                let key = match a {
                    Act::Reject { error, .. } => {
                        format!("reject {error:?}").chars().take(40).collect()
                    }
                    other => format!("{other:?}")
                        .split([' ', '{'])
                        .next()
                        .unwrap()
                        .to_owned(),
                };
                *stats.entry(key).or_default() += 1;
            }
            if let Some(w) = step.wakeup {
                *stats.entry(format!("wake {:?}", w.reason)).or_default() += 1;
            }
        }
        h.finish().unwrap();
    }
    for (k, v) in stats {
        println!("{v:6} {k}");
    }
}
