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
use silent_refresh::{RefreshMode, WakeReason};
use silent_refresh_model::{
    AttemptPick, CredentialsPick, DeadlinePick, ExpiryPick, FailurePick, GenerationPick, Op,
    PersistPick, RequestPick, Setup, Shape, Stored, TimeStep, decode, run,
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
        2 => Just(Shape::Strict),
        1 => Just(Shape::Patient),
        1 => Just(Shape::Interactive),
        1 => Just(Shape::Batch),
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
        2 => (0u8..12).prop_map(AttemptPick::Earlier),
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
        2 => (-30i16..400, any::<u8>(), any::<bool>()).prop_map(|(expires_in, lived, refresh)| {
            CredentialsPick::Stored { expires_in, lived, refresh }
        }),
    ]
}

fn persist() -> impl Strategy<Value = PersistPick> {
    prop_oneof![
        4 => Just(PersistPick::Stored),
        3 => Just(PersistPick::Failed),
        2 => (expiry(), any::<bool>())
            .prop_map(|(expiry, refresh)| PersistPick::Conflict { expiry, refresh }),
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
        1 => Just(FailurePick::Misconfigured),
        2 => Just(FailurePick::Unreachable),
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
        6 => generation.clone().prop_map(Op::Rejected),
        8 => (generation, persist()).prop_map(|(generation, outcome)| Op::Persisted {
            generation,
            outcome,
        }),
        1 => (any::<bool>(), 0u16..20).prop_map(|(ahead, seconds)| Op::WallJump { ahead, seconds }),
        2 => credentials().prop_map(Op::SignIn),
        1 => Just(Op::SignOut),
        3 => any::<bool>().prop_map(Op::LineageBusy),
        2 => Just(Op::Rotated),
        1 => Just(Op::LineageDead),
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

/// A server that hangs: exchanges mostly pass their deadline and are cancelled (rule 1:
/// nothing else starts meanwhile), their results come late (rule 8), and results name
/// attempts many back (stale: dropped).
fn hanging_server_ops() -> impl Strategy<Value = Vec<Op>> {
    let late =
        (0u8..16, any::<bool>(), expiry()).prop_map(|(back, rotate, expiry)| Op::RefreshOk {
            attempt: AttemptPick::Earlier(back),
            rotate,
            expiry,
        });
    let op = prop_oneof![
        10 => Just(Op::WakeUp),
        3 => Just(Op::Request { deadline: None }),
        2 => late,
        1 => (attempt(), Just(FailurePick::Transient))
            .prop_map(|(attempt, failure)| Op::RefreshFail { attempt, failure }),
        2 => time_step().prop_map(Op::Advance),
        1 => Just(Op::Rejected(GenerationPick::Current)),
    ];
    (credentials(), proptest::collection::vec(op, 0..80))
        .prop_map(|(sign_in, rest)| std::iter::once(Op::SignIn(sign_in)).chain(rest).collect())
}

/// An outage, and an API that rejects everything: refreshes mostly cannot connect
/// (rule 7: a waiting request probes again after about a second, however far the backoff
/// grew), or their fresh tokens are rejected again and again (rule 14: the refreshes
/// those rejections call for are held back).
fn outage_ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => Just(Op::Request { deadline: None }),
        6 => Just(Op::WakeUp),
        4 => time_step().prop_map(Op::Advance),
        6 => Just(Op::RefreshFail { attempt: AttemptPick::Latest, failure: FailurePick::Unreachable }),
        1 => Just(Op::RefreshFail { attempt: AttemptPick::Latest, failure: FailurePick::Transient }),
        2 => expiry().prop_map(|expiry| Op::RefreshOk { attempt: AttemptPick::Latest, rotate: true, expiry }),
        3 => Just(Op::Rejected(GenerationPick::Current)),
    ];
    (credentials(), proptest::collection::vec(op, 0..80))
        .prop_map(|(sign_in, rest)| std::iter::once(Op::SignIn(sign_in)).chain(rest).collect())
}

proptest! {
    #[test]
    fn with_an_outage_or_a_rejecting_api_the_machine_matches_the_model(
        setup in setup(),
        ops in outage_ops(),
    ) {
        if let Err(violation) = run(setup.config(), start(), &ops) {
            prop_assert!(false, "{violation}");
        }
    }

    #[test]
    fn with_a_hanging_server_the_machine_matches_the_model(
        setup in setup(),
        ops in hanging_server_ops(),
    ) {
        if let Err(violation) = run(setup.config(), start(), &ops) {
            prop_assert!(false, "{violation}");
        }
    }

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

/// The generator reaches every case the rules talk about (so the property above is not
/// passing on easy runs only): counted over a fixed set of generated runs.
#[test]
fn generated_runs_reach_every_case() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use silent_refresh::Error;
    use silent_refresh_model::{Act, Harness, Input};
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut cancelled = std::collections::HashSet::new();
    for run in 0..900 {
        let setup = setup().new_tree(&mut runner).unwrap().current();
        let ops = if run < 600 {
            ops().new_tree(&mut runner).unwrap().current()
        } else {
            outage_ops().new_tree(&mut runner).unwrap().current()
        };
        let mut harness = Harness::new(setup.config(), start());
        for op in &ops {
            let in_flight = harness.machine().refresh_in_flight();
            let machine_now = harness.machine().now();
            let generation_before = harness.machine().generation();
            let backoff_before = harness.machine().backoff_until();
            let steps = harness.trace().len();
            harness.step(op).unwrap();
            let Some(step) = harness.trace().get(steps) else {
                continue; // the op only moved the clock
            };
            let has = |pred: fn(&Act) -> bool| step.actions.iter().any(pred);
            if has(|a| matches!(a, Act::StartRefresh { .. }))
                && harness.machine().backoff_until().is_none()
                && matches!(
                    harness.machine().status(),
                    silent_refresh::Status::Unreachable { .. }
                )
                && backoff_before.is_some_and(|b| step.now < b)
            {
                *seen.entry("probe before the backoff ends").or_default() += 1;
            }
            // A new token persisted (a save asked again is not an adoption).
            let persisted = step.actions.iter().any(
                |a| matches!(a, Act::Persist { generation, .. } if *generation > generation_before),
            );
            let mut events = Vec::new();
            for act in &step.actions {
                events.push(match act {
                    Act::StartRefresh { .. } => "start refresh",
                    Act::CancelRefresh { attempt } => {
                        cancelled.insert(*attempt);
                        "cancel refresh"
                    }
                    Act::Persist { generation, .. } if *generation <= generation_before => {
                        "save asked again"
                    }
                    Act::Persist { .. } => "persist",
                    Act::Forget => "forget",
                    Act::Grant { .. } => "grant",
                    Act::Reject { error, .. } => match error {
                        Error::DeadlineExceeded { last_failure: None } => "deadline",
                        Error::DeadlineExceeded { .. } => "deadline after a failure",
                        Error::Overloaded { .. } => "overloaded",
                        Error::SignInRequired { .. } => "sign-in required",
                        Error::SignedOut => "signed out",
                        Error::Misconfigured { .. } => "misconfigured",
                        Error::Unreachable { .. } => "unreachable",
                        Error::RefreshFailed { .. } => "hopeless wait answered",
                        Error::TokensRejected { .. } => "tokens rejected",
                        _ => "other rejection",
                    },
                });
            }
            match &step.input {
                Input::RefreshResult { attempt, result } => {
                    let current = Some(*attempt) == in_flight;
                    let late = cancelled.contains(attempt);
                    events.push(match (current, result.is_ok(), persisted) {
                        (true, true, true) if late => "late result adopted",
                        (true, true, true) => "result adopted",
                        (true, true, false) => "result already expired or superseded",
                        (true, false, _) if late => "cancelled exchange failed",
                        (true, false, _) => "result failed",
                        (false, _, false) => "result dropped",
                        (false, _, true) => "stale result adopted?!",
                    });
                    if current && result.is_err() && has(|a| matches!(a, Act::Grant { .. })) {
                        events.push("old token granted after a failed refresh");
                    }
                }
                Input::Rejected(_) if has(|a| matches!(a, Act::StartRefresh { .. })) => {
                    events.push("401 starts a refresh");
                }
                Input::Rejected(_)
                    if step
                        .wakeup
                        .is_some_and(|w| w.reason == WakeReason::HoldoffEnds) =>
                {
                    events.push("401 held back (rule 14)");
                }
                Input::Timeout if step.now < machine_now => events.push("time went backwards"),
                Input::Persisted { outcome, .. } => {
                    let adopted = harness.machine().generation() > generation_before;
                    events.push(match outcome {
                        Stored::Stored if harness.machine().is_durable() => "save confirmed",
                        Stored::Failed => "save failed",
                        Stored::Conflict(_) if adopted => "store held a newer session",
                        _ => "store answer for another token",
                    });
                }
                Input::WallClock { .. } if step.fresh.is_none() && !step.actions.is_empty() => {
                    events.push("a suspend ended the token");
                }
                Input::LineageBusy(false) if has(|a| matches!(a, Act::StartRefresh { .. })) => {
                    events.push("a refresh held for the lineage starts");
                }
                Input::Rotated(_) => events.push("rotated by another key"),
                Input::LineageDead
                    if has(|a| {
                        matches!(
                            a,
                            Act::Reject {
                                error: Error::SignInRequired { .. },
                                ..
                            }
                        )
                    }) =>
                {
                    events.push("another key's dead credentials end this one");
                }
                _ => {}
            }
            for event in events {
                *seen.entry(event).or_default() += 1;
            }
        }
        harness.finish().unwrap();
    }
    for case in [
        "start refresh",
        "persist",
        "forget",
        "grant",
        "deadline",
        "deadline after a failure",
        "overloaded",
        "sign-in required",
        "signed out",
        "misconfigured",
        "cancel refresh",
        "result adopted",
        "result already expired or superseded",
        "result failed",
        "cancelled exchange failed",
        "late result adopted",
        "result dropped",
        "old token granted after a failed refresh",
        "401 starts a refresh",
        "401 held back (rule 14)",
        "probe before the backoff ends",
        "unreachable",
        "hopeless wait answered",
        "tokens rejected",
        "a refresh held for the lineage starts",
        "rotated by another key",
        "another key's dead credentials end this one",
        "time went backwards",
        "save confirmed",
        "save asked again",
        "save failed",
        "store held a newer session",
    ] {
        assert!(
            seen.get(case).is_some_and(|n| *n > 0),
            "never reached: {case}; seen {seen:#?}"
        );
    }
    assert!(!seen.contains_key("stale result adopted?!"), "{seen:#?}");
}

/// Cases the long runs (`PROPTEST_CASES=200000`) found, kept as plain tests so that
/// every run replays them.
#[test]
fn cases_found_by_long_runs() {
    use silent_refresh_model::Shape;
    let small = Setup {
        mode: RefreshMode::StaleWhileRefreshing,
        shape: Shape::Small,
        seed: 0,
    };
    // A hold-off of rule 14 runs when a save's conflict hands over the store's token,
    // already in its window: the new token was never rejected, so its refresh starts.
    let store_token_during_a_holdoff = [
        Op::SignIn(CredentialsPick::Token {
            expiry: ExpiryPick::Short(77),
            refresh: true,
        }),
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: false,
            expiry: ExpiryPick::Short(0),
        },
        Op::WakeUp,
        Op::Rejected(GenerationPick::Current),
        Op::Backwards(2064),
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: false,
            expiry: ExpiryPick::Short(0),
        },
        Op::Rejected(GenerationPick::Current),
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Conflict {
                expiry: ExpiryPick::Short(42),
                refresh: false,
            },
        },
    ];
    if let Err(violation) = run(small.config(), start(), &store_token_during_a_holdoff) {
        panic!("{violation}");
    }
}
