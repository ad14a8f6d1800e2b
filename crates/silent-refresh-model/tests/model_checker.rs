//! The checker is not vacuous: a real trace passes it, and each broken copy of that
//! trace (a double grant, a missing `Forget`, …) is caught by the rule it breaks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use silent_refresh::{AttemptId, Error, RefreshMode, WakeReason, Wakeup};
use silent_refresh_model::*;

fn setup(mode: RefreshMode) -> Setup {
    Setup {
        mode,
        shape: Shape::Small,
        seed: 1,
    }
}

/// Runs `ops` through the harness; returns it and, for each op, the index of its step
/// in the trace (`None` for ops that only move the clock).
fn scenario(setup: Setup, ops: &[Op]) -> (Harness, Vec<Option<usize>>) {
    let mut harness = Harness::new(setup.config(), Instant::now());
    let mut index = Vec::new();
    for op in ops {
        let before = harness.trace().len();
        if let Err(violation) = harness.step(op) {
            panic!("the scenario itself must pass: {violation}");
        }
        index.push((harness.trace().len() > before).then_some(before));
    }
    (harness, index)
}

/// Signs in, parks two requests behind a refresh, grants them, refreshes in the window
/// while granting the stale token, fails that refresh, and signs out.
const MAIN: [Op; 11] = [
    Op::SignIn(CredentialsPick::RefreshToken),
    Op::Request { deadline: None },
    Op::Request { deadline: None },
    Op::RefreshOk {
        attempt: AttemptPick::Latest,
        rotate: true,
        expiry: ExpiryPick::Short(100),
    },
    Op::Request { deadline: None },
    Op::Rejected(GenerationPick::Older(0)),
    Op::WakeUp,
    Op::Request { deadline: None },
    Op::RefreshFail {
        attempt: AttemptPick::Latest,
        failure: FailurePick::Transient,
    },
    Op::Request { deadline: None },
    Op::SignOut,
];

fn check(harness: &Harness, steps: &[Step]) -> Result<(), Violation> {
    let mut checker = harness.new_checker();
    for step in steps {
        checker.observe(step)?;
    }
    checker.finish()
}

/// Breaks a copy of the trace at the step of op `op` and expects `rule` to catch it.
fn expect_caught(
    harness: &Harness,
    index: &[Option<usize>],
    op: usize,
    rule: Rule,
    mutate: impl FnOnce(&mut Step),
) {
    let at = index[op].expect("the op made a step");
    let mut steps = harness.trace().to_vec();
    mutate(&mut steps[at]);
    match check(harness, &steps) {
        Err(violation) => {
            assert_eq!(violation.kind, ViolationKind::Rule(rule), "{violation}");
            assert_eq!(violation.step, at + 1, "{violation}");
        }
        Ok(()) => panic!("rule {} missed the break at step {}", rule.number(), at + 1),
    }
}

fn is_grant(act: &Act) -> bool {
    matches!(act, Act::Grant { .. })
}

#[test]
fn the_main_scenario_passes_and_does_what_it_says() {
    let (harness, index) = scenario(setup(RefreshMode::StaleWhileRefreshing), &MAIN);
    check(&harness, harness.trace()).expect("the unbroken trace passes");
    let trace = harness.trace();
    let step = |op: usize| &trace[index[op].expect("a step")];
    assert!(matches!(step(1).actions[..], [Act::StartRefresh { .. }]));
    assert!(matches!(
        step(3).actions[..],
        [Act::Persist { .. }, Act::Grant { .. }, Act::Grant { .. }]
    ));
    assert!(matches!(step(6).actions[..], [Act::StartRefresh { .. }]));
    assert!(matches!(step(7).actions[..], [Act::Grant { .. }]));
    assert!(matches!(step(10).actions[..], [Act::Forget]));
}

#[test]
fn each_rule_catches_its_break() {
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &MAIN);
    // 1: a second refresh while the first is in flight.
    expect_caught(&h, &ix, 1, Rule::SingleFlight, |s| {
        s.actions.push(Act::StartRefresh {
            attempt: AttemptId(99),
            refresh_token: None,
        });
    });
    // 2: a request granted twice.
    expect_caught(&h, &ix, 3, Rule::ExactlyOnce, |s| {
        let grant = s.actions.iter().find(|a| is_grant(a)).cloned();
        s.actions.extend(grant);
    });
    // 3: a grant that lies about how long its token is usable.
    expect_caught(&h, &ix, 4, Rule::NeverExpired, |s| {
        for act in &mut s.actions {
            if let Act::Grant { usable_until, .. } = act {
                *usable_until = usable_until.map(|u| u + Duration::from_secs(1));
            }
        }
    });
    // 4: a request kept waiting while the stale token is usable.
    expect_caught(&h, &ix, 7, Rule::StaleWhileRefreshing, |s| {
        s.actions.retain(|a| !is_grant(a));
    });
    // 5: parked requests released out of arrival order.
    expect_caught(&h, &ix, 3, Rule::ArrivalOrder, |s| s.actions.swap(1, 2));
    // 6: a 401 of an older generation starts a refresh.
    expect_caught(&h, &ix, 5, Rule::RefreshOnlyWhenNeeded, |s| {
        s.actions.push(Act::StartRefresh {
            attempt: AttemptId(2),
            refresh_token: None,
        });
    });
    // 7: a retry right after a transient failure, ignoring the backoff.
    expect_caught(&h, &ix, 8, Rule::FailuresClassified, |s| {
        s.actions.push(Act::StartRefresh {
            attempt: AttemptId(3),
            refresh_token: None,
        });
    });
    // 8: a token adopted out of nowhere (no result hands it over).
    let persist = h.trace()[ix[3].expect("a step")].actions[0].clone();
    expect_caught(&h, &ix, 4, Rule::LateResults, |s| {
        s.actions.insert(0, persist)
    });
    // 9: a refresh sending a stale refresh credential (the one rotated away).
    expect_caught(&h, &ix, 6, Rule::RotationAndPersistence, |s| {
        if let Act::StartRefresh { refresh_token, .. } = &mut s.actions[0] {
            *refresh_token = Some(Label(1));
        }
    });
    // 9: a grant before the Persist of its token.
    expect_caught(&h, &ix, 3, Rule::RotationAndPersistence, |s| {
        s.actions.swap(0, 1)
    });
    // 11: a wake-up that is not in the future: a busy loop.
    expect_caught(&h, &ix, 4, Rule::Total, |s| {
        s.wakeup = Some(Wakeup {
            at: s.now,
            reason: WakeReason::PendingActions,
        });
    });
    // 12: a sign-out that does not ask the store to forget.
    expect_caught(&h, &ix, 10, Rule::SignOut, |s| {
        s.actions.retain(|a| !matches!(a, Act::Forget));
    });
}

#[test]
fn deadlines_and_unanswered_requests_are_caught() {
    let ops = [
        Op::Request { deadline: None },
        Op::Advance(TimeStep::Seconds(2)),
        Op::Timeout,
    ];
    let (h, ix) = scenario(setup(RefreshMode::WaitForFresh), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    // Never signed in: the deadline's error says so.
    assert!(matches!(
        h.trace()[1].actions[..],
        [Act::Reject {
            error: Error::AwaitingSignIn,
            ..
        }]
    ));
    // 7: a source never signed in, rejected as if the server were down.
    expect_caught(&h, &ix, 2, Rule::FailuresClassified, |s| {
        if let Some(Act::Reject { error, .. }) = s.actions.first_mut() {
            *error = Error::DeadlineExceeded { last_failure: None };
        }
    });
    // 10: a request left waiting past its deadline.
    expect_caught(&h, &ix, 2, Rule::Bounded, |s| s.actions.clear());
    // 2: a run that ends with a request never answered.
    let first_step_only = &h.trace()[..1];
    let violation = check(&h, first_step_only).expect_err("an unanswered request");
    assert_eq!(violation.kind, ViolationKind::Rule(Rule::ExactlyOnce));
}

#[test]
fn a_terminal_failure_is_caught_if_requests_still_wait() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::Terminal,
        },
        Op::Request { deadline: None },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    // 7: the parked request is not rejected with "sign-in required".
    expect_caught(&h, &ix, 2, Rule::FailuresClassified, |s| s.actions.clear());
    // 7: a request after a terminal failure does not fail fast.
    expect_caught(&h, &ix, 3, Rule::FailuresClassified, |s| s.actions.clear());
}

/// The session-loss bug of a slow token endpoint: the exchange passes its deadline,
/// and a second exchange of the same refresh credential must not start until the first
/// one's result comes in.
#[test]
fn an_exchange_past_its_deadline_stays_the_only_one_on_the_wire() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::WakeUp, // the exchange's deadline: cancel it
        Op::WakeUp, // the request's deadline: rejected, and still no second exchange
        Op::Request {
            deadline: Some(DeadlinePick::After(4000)),
        },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(matches!(
        step(2).actions[..],
        [Act::CancelRefresh {
            attempt: AttemptId(1)
        }]
    ));
    assert!(matches!(
        step(3).actions[..],
        [Act::Reject {
            error: Error::DeadlineExceeded { .. },
            ..
        }]
    ));
    assert!(step(4).actions.is_empty(), "parks behind the exchange");
    assert!(
        matches!(
            step(5).actions[..],
            [Act::Persist { .. }, Act::Grant { .. }]
        ),
        "the late answer is adopted: {:?}",
        step(5).actions
    );
    // 1: the deadline passes and nobody asks the driver to cancel the exchange.
    expect_caught(&h, &ix, 2, Rule::SingleFlight, |s| s.actions.clear());
    // 1: a second exchange starts while the first is still on the wire.
    expect_caught(&h, &ix, 4, Rule::SingleFlight, |s| {
        s.actions.push(Act::StartRefresh {
            attempt: AttemptId(2),
            refresh_token: Some(Label(1)),
        });
    });
    // 1: the exchange cancelled twice.
    expect_caught(&h, &ix, 3, Rule::SingleFlight, |s| {
        s.actions.push(Act::CancelRefresh {
            attempt: AttemptId(1),
        });
    });
}

#[test]
fn a_misconfiguration_fails_fast_and_keeps_the_credential() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::Misconfigured,
        },
        Op::Request { deadline: None },
        Op::Advance(TimeStep::Seconds(2)), // past backoff_max (1.6 s)
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: false,
            expiry: ExpiryPick::Long(0),
        },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    let misconfigured = |s: &Step| {
        matches!(
            s.actions[..],
            [Act::Reject {
                error: Error::Misconfigured { .. },
                ..
            }]
        )
    };
    assert!(misconfigured(step(2)), "{:?}", step(2).actions);
    assert!(misconfigured(step(3)), "{:?}", step(3).actions);
    assert!(
        matches!(
            step(5).actions[..],
            [Act::StartRefresh {
                refresh_token: Some(Label(1)),
                ..
            }]
        ),
        "after backoff_max the same credential is tried again: {:?}",
        step(5).actions
    );
    // 7: the parked request is left waiting on a session that cannot refresh yet.
    expect_caught(&h, &ix, 2, Rule::FailuresClassified, |s| s.actions.clear());
    // 7: "sign in again" for a misconfiguration.
    expect_caught(&h, &ix, 3, Rule::FailuresClassified, |s| {
        if let Act::Reject { error, .. } = &mut s.actions[0] {
            *error = Error::SignInRequired {
                reason: "invalid_client".into(),
            };
        }
    });
    // 7: the request parks and a retry starts before backoff_max has passed.
    expect_caught(&h, &ix, 3, Rule::FailuresClassified, |s| {
        s.actions = vec![Act::StartRefresh {
            attempt: AttemptId(2),
            refresh_token: Some(Label(1)),
        }];
    });
}

/// A cancelled exchange's outcome is unknown: the retry sends the same credential, and
/// if the server then says `invalid_grant`, the error says why that may be.
#[test]
fn a_terminal_failure_after_an_unknown_outcome_says_so() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request {
            deadline: Some(DeadlinePick::After(4000)),
        },
        Op::WakeUp, // the exchange's deadline: cancelled
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::Transient,
        },
        Op::WakeUp, // the backoff ends: the same credential again
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::Terminal,
        },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(matches!(
        step(4).actions[..],
        [Act::StartRefresh {
            refresh_token: Some(Label(1)),
            ..
        }]
    ));
    match &step(5).actions[..] {
        [
            Act::Reject {
                error: Error::SignInRequired { reason },
                ..
            },
        ] => assert!(reason.ends_with(UNKNOWN_OUTCOME), "{reason}"),
        other => panic!("{other:?}"),
    }
    // 7: the reason hides that an earlier exchange's outcome is unknown.
    expect_caught(&h, &ix, 5, Rule::FailuresClassified, |s| {
        if let Act::Reject { error, .. } = &mut s.actions[0] {
            *error = Error::SignInRequired {
                reason: "invalid_grant".into(),
            };
        }
    });
}

/// Rule 9 with a store: a failed save is asked again (as it was), a newer session in the
/// store is adopted without being written back, and strict mode grants only stored
/// tokens; each break of that is caught.
#[test]
fn saves_conflicts_and_strict_mode_are_checked() {
    let strict = Setup {
        mode: RefreshMode::StaleWhileRefreshing,
        shape: Shape::Strict,
        seed: 1,
    };
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Failed,
        },
        Op::WakeUp, // the save is asked again
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Stored,
        },
    ];
    let (h, ix) = scenario(strict, &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(
        matches!(
            step(2).actions[..],
            [Act::Persist {
                from: Some(Label(1)),
                ..
            }]
        ),
        "not granted before it is stored, and saved from the credential sent: {:?}",
        step(2).actions
    );
    assert!(matches!(step(4).actions[..], [Act::Persist { .. }]));
    assert!(matches!(step(5).actions[..], [Act::Grant { .. }]));
    // 9: strict mode grants a token the store has not confirmed.
    expect_caught(&h, &ix, 2, Rule::RotationAndPersistence, |s| {
        let grant = step_grant(&h, &ix);
        s.actions.push(grant);
    });
    // 9: the token saved without the credential it was refreshed from.
    expect_caught(&h, &ix, 2, Rule::RotationAndPersistence, |s| {
        if let Act::Persist { from, .. } = &mut s.actions[0] {
            *from = None;
        }
    });
    // 8: the failed save is never asked again.
    expect_caught(&h, &ix, 4, Rule::LateResults, |s| s.actions.clear());

    // A newer session in the store is adopted, not written back.
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Conflict {
                expiry: ExpiryPick::Long(5),
                refresh: true,
            },
        },
        Op::Request { deadline: None },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    assert!(matches!(
        h.trace()[ix[4].expect("a step")].actions[..],
        [Act::Grant {
            generation: silent_refresh::Generation(2),
            ..
        }]
    ));
    // 8: the store's token written back over itself.
    let persist = h.trace()[ix[2].expect("a step")].actions[0].clone();
    expect_caught(&h, &ix, 3, Rule::LateResults, |s| s.actions.push(persist));
}

/// The grant of the strict scenario's token, made up to break it.
fn step_grant(h: &Harness, ix: &[Option<usize>]) -> Act {
    h.trace()[ix[5].expect("a step")].actions[0].clone()
}

/// DESIGN.md: a token past its wall-clock usable time is never granted, whatever the
/// monotonic clock says.
#[test]
fn a_grant_after_a_suspend_past_the_wall_clock_expiry_is_caught() {
    let ops = [
        Op::SignIn(CredentialsPick::Token {
            expiry: ExpiryPick::Long(0),
            refresh: true,
        }),
        Op::WallJump {
            ahead: true,
            seconds: 7200,
        },
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
    ];
    let (h, ix) = scenario(setup(RefreshMode::StaleWhileRefreshing), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(
        matches!(step(1).actions[..], [Act::StartRefresh { .. }]),
        "the suspend ended the token: refreshed at once: {:?}",
        step(1).actions
    );
    assert!(step(2).actions.is_empty(), "the request waits");
    // 3: the old token granted after the suspend.
    let old = Act::Grant {
        request: silent_refresh::RequestId(1),
        generation: silent_refresh::Generation(1),
        access: Label(1),
        token_type: TOKEN_TYPE.to_owned(),
        scope: None,
        usable_until: None,
    };
    expect_caught(&h, &ix, 2, Rule::NeverExpired, |s| s.actions.push(old));
}

fn shaped(shape: Shape) -> Setup {
    Setup {
        mode: RefreshMode::StaleWhileRefreshing,
        shape,
        seed: 1,
    }
}

/// Rule 14: an API that rejects every fresh token. The first rejection refreshes at
/// once; the second holds the refresh back until the hold-off ends.
#[test]
fn fresh_tokens_rejected_again_hold_the_refresh_back() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
        Op::Rejected(GenerationPick::Current),
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
        Op::Rejected(GenerationPick::Current),
        Op::Advance(TimeStep::Seconds(1)),
        Op::Timeout,
    ];
    let (h, ix) = scenario(shaped(Shape::Small), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(matches!(step(3).actions[..], [Act::StartRefresh { .. }]));
    assert!(
        step(5).actions.is_empty(),
        "held back: {:?}",
        step(5).actions
    );
    assert_eq!(
        step(5).wakeup.map(|w| w.reason),
        Some(WakeReason::HoldoffEnds)
    );
    assert!(matches!(step(7).actions[..], [Act::StartRefresh { .. }]));
    // 14: the second rejection refreshes at once, ignoring the hold-off.
    let held_back = step(7).actions[0].clone();
    expect_caught(&h, &ix, 5, Rule::RejectionsRepeat, |s| {
        s.actions.push(held_back);
    });
    // 6: once the hold-off surely ended, the refresh does not start.
    expect_caught(&h, &ix, 7, Rule::RefreshOnlyWhenNeeded, |s| {
        s.actions.clear();
    });
}

/// Rule 7: a request that waits for an unreachable endpoint probes it again after
/// about a second (here, the first step of the backoff), not after the grown backoff.
#[test]
fn a_waiting_request_probes_an_unreachable_endpoint_before_the_grown_backoff_ends() {
    let unreachable = Op::RefreshFail {
        attempt: AttemptPick::Latest,
        failure: FailurePick::Unreachable,
    };
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        unreachable.clone(),
        Op::Advance(TimeStep::Millis(200)),
        Op::Timeout,
        unreachable.clone(),
        Op::Advance(TimeStep::Millis(100)),
        Op::Timeout,
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
    ];
    let (h, ix) = scenario(shaped(Shape::Patient), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(matches!(step(4).actions[..], [Act::StartRefresh { .. }]));
    assert!(matches!(step(7).actions[..], [Act::StartRefresh { .. }]));
    assert!(matches!(
        step(8).actions[..],
        [Act::Persist { .. }, Act::Grant { .. }]
    ));
    // 6: no probe although the request waits and the probe is surely due.
    expect_caught(&h, &ix, 7, Rule::RefreshOnlyWhenNeeded, |s| {
        s.actions.clear();
    });
}

/// Rule 7, the wait policy: a request whose deadline comes before the next attempt is
/// answered with the failure at once (the default); an interactive program's request
/// is answered at the first failure.
#[test]
fn a_wait_that_can_no_longer_succeed_is_answered_at_once() {
    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::TransientRetryAfter(20),
        },
    ];
    let (h, ix) = scenario(shaped(Shape::Small), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    assert!(matches!(
        h.trace()[ix[2].expect("a step")].actions[..],
        [Act::Reject {
            error: Error::RefreshFailed { .. },
            ..
        }]
    ));
    expect_caught(&h, &ix, 2, Rule::FailuresClassified, |s| s.actions.clear());

    let ops = [
        Op::SignIn(CredentialsPick::RefreshToken),
        Op::Request { deadline: None },
        Op::RefreshFail {
            attempt: AttemptPick::Latest,
            failure: FailurePick::Transient,
        },
        Op::Request { deadline: None },
    ];
    let (h, ix) = scenario(shaped(Shape::Interactive), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    for op in [2, 3] {
        assert!(matches!(
            h.trace()[ix[op].expect("a step")].actions[..],
            [Act::Reject {
                error: Error::RefreshFailed { .. },
                ..
            }]
        ));
        expect_caught(&h, &ix, op, Rule::FailuresClassified, |s| s.actions.clear());
    }
    // The default policy lets the same request wait for a backoff that ends in time:
    // the retry starts, and then the request's deadline answers it.
    let waits = [
        ops[0].clone(),
        ops[1].clone(),
        ops[2].clone(),
        Op::Advance(TimeStep::Seconds(2)),
        Op::Timeout,
    ];
    let (h, ix) = scenario(shaped(Shape::Small), &waits);
    check(&h, h.trace()).expect("the unbroken trace passes");
    assert!(h.trace()[ix[2].expect("a step")].actions.is_empty());
    // 7: answering it anyway, with a failure that does not apply.
    expect_caught(&h, &ix, 2, Rule::FailuresClassified, |s| {
        s.actions.push(Act::Reject {
            request: silent_refresh::RequestId(1),
            error: Error::RefreshFailed {
                reason: "made up".into(),
                retry_in: Duration::from_millis(50),
            },
        });
    });
}

/// Rule 8: a result whose exchange was overtaken by the store's newer session (a
/// sibling refreshed first) is dropped; the checker catches one adopted.
#[test]
fn a_result_overtaken_by_the_stores_newer_session_is_dropped() {
    let ops = [
        Op::SignIn(CredentialsPick::Token {
            expiry: ExpiryPick::Long(0),
            refresh: true,
        }),
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Failed,
        },
        Op::Rejected(GenerationPick::Current),
        Op::Persisted {
            generation: GenerationPick::Current,
            outcome: PersistPick::Conflict {
                expiry: ExpiryPick::Long(0),
                refresh: true,
            },
        },
        Op::RefreshOk {
            attempt: AttemptPick::Latest,
            rotate: true,
            expiry: ExpiryPick::Long(0),
        },
    ];
    let (h, ix) = scenario(shaped(Shape::Small), &ops);
    check(&h, h.trace()).expect("the unbroken trace passes");
    let step = |op: usize| &h.trace()[ix[op].expect("a step")];
    assert!(matches!(step(2).actions[..], [Act::StartRefresh { .. }]));
    assert!(
        step(3).actions.is_empty(),
        "adopted from the store, not cancelled"
    );
    assert!(
        step(4).actions.is_empty(),
        "the overtaken result is dropped"
    );
    let persist = step(0).actions[0].clone();
    assert!(matches!(persist, Act::Persist { .. }));
    expect_caught(&h, &ix, 4, Rule::LateResults, |s| s.actions.push(persist));
}
