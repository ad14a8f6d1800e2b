#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One or more unit tests for every rule of the contract (`shared/DESIGN.md`), on a
//! fake clock: time is an argument, nothing sleeps.

use std::time::{Duration, Instant, SystemTime};

use silent_refresh::{
    Action, AttemptId, Config, Credentials, Error, Expiry, Generation, RefreshFailure, RefreshMode,
    RequestId, Status, Token, TokenMachine, WakeReason,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// A machine on a fake clock, and what it asked for.
struct Sim {
    machine: TokenMachine,
    t0: Instant,
    wall0: SystemTime,
    now: Instant,
}

impl Sim {
    fn new(config: Config) -> Self {
        let t0 = Instant::now();
        let wall0 = SystemTime::UNIX_EPOCH + secs(1_800_000_000);
        Self {
            machine: TokenMachine::new(config, t0, wall0),
            t0,
            wall0,
            now: t0,
        }
    }

    /// No jitter, so instants in tests are exact.
    fn exact() -> Self {
        Self::new(Config::builder().jitter_fraction(0.0).build().unwrap())
    }

    fn wall_now(&self) -> SystemTime {
        self.wall0 + (self.now - self.t0)
    }

    fn at(&mut self, offset: Duration) -> &mut Self {
        self.now = self.t0 + offset;
        self
    }

    fn drain(&mut self) -> Vec<Action> {
        std::iter::from_fn(|| self.machine.poll_action()).collect()
    }

    fn sign_in(&mut self, credentials: Credentials) -> Vec<Action> {
        let wall = self.wall_now();
        self.machine.handle_sign_in(self.now, wall, credentials);
        self.drain()
    }

    /// Signs in with a one-hour token (generation 1) and a refresh credential.
    fn signed_in(&mut self) -> &mut Self {
        let token = Token::bearer("at-1", Expiry::In(secs(3600))).with_refresh_token("rt-1");
        self.sign_in(Credentials::Token(token));
        self
    }

    fn request(&mut self) -> (RequestId, Vec<Action>) {
        let id = self.machine.handle_request(self.now, None);
        (id, self.drain())
    }

    fn timeout(&mut self) -> Vec<Action> {
        self.machine.handle_timeout(self.now);
        self.drain()
    }

    fn result(&mut self, attempt: AttemptId, result: Result<Token, RefreshFailure>) -> Vec<Action> {
        self.machine
            .handle_refresh_result(self.now, attempt, result);
        self.drain()
    }
}

fn token(access: &str, lifetime: Duration) -> Token {
    Token::bearer(access, Expiry::In(lifetime))
}

fn started(actions: &[Action]) -> Vec<AttemptId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::StartRefresh { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect()
}

fn the_attempt(actions: &[Action]) -> AttemptId {
    let attempts = started(actions);
    assert_eq!(
        attempts.len(),
        1,
        "expected one StartRefresh in {actions:?}"
    );
    attempts[0]
}

fn grants(actions: &[Action]) -> Vec<(RequestId, Generation, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Grant { request, token } => {
                Some((*request, token.generation, token.secret.expose().to_owned()))
            }
            _ => None,
        })
        .collect()
}

fn rejects(actions: &[Action]) -> Vec<(RequestId, Error)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Reject { request, error } => Some((*request, error.clone())),
            _ => None,
        })
        .collect()
}

// ----- rule 1: single flight ---------------------------------------------------------

#[test]
fn rule1_many_waiting_requests_start_one_refresh() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let mut all = Vec::new();
    for _ in 0..100 {
        all.extend(sim.request().1);
    }
    assert_eq!(started(&all).len(), 1);
    assert_eq!(sim.machine.parked_len(), 100);
    assert!(sim.machine.refresh_in_flight().is_some());
}

// ----- rule 2: exactly once ---------------------------------------------------------

#[test]
fn rule2_every_parked_request_gets_exactly_one_outcome() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let mut ids = Vec::new();
    let mut actions = Vec::new();
    for _ in 0..10 {
        let (id, a) = sim.request();
        ids.push(id);
        actions.extend(a);
    }
    let attempt = the_attempt(&actions);
    let released = sim.result(attempt, Ok(token("at", secs(3600))));
    let granted: Vec<RequestId> = grants(&released).into_iter().map(|g| g.0).collect();
    assert_eq!(granted, ids);
    // Nothing more for them, ever.
    sim.at(secs(7200));
    let later = sim.timeout();
    assert!(grants(&later).is_empty() && rejects(&later).is_empty());
}

#[test]
fn rule2_cancelled_request_gets_nothing_and_leaves_nothing() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let (a, actions) = sim.request();
    let (b, _) = sim.request();
    let attempt = the_attempt(&actions);
    sim.machine.handle_cancel(sim.now, a);
    assert_eq!(sim.machine.parked_len(), 1);
    let released = sim.result(attempt, Ok(token("at", secs(3600))));
    let granted: Vec<RequestId> = grants(&released).into_iter().map(|g| g.0).collect();
    assert_eq!(granted, vec![b]);
    assert!(rejects(&released).is_empty());
}

#[test]
fn rule2_parked_request_is_rejected_at_its_deadline_not_left_hanging() {
    let mut sim = Sim::new(Config::builder().request_timeout(secs(5)).build().unwrap());
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let (id, _) = sim.request();
    let wake = sim.machine.poll_timeout().unwrap();
    assert_eq!(wake.reason, WakeReason::RequestDeadline);
    assert_eq!(wake.at, sim.t0 + secs(5));
    sim.at(secs(5));
    let actions = sim.timeout();
    assert!(
        matches!(rejects(&actions).as_slice(), [(r, Error::DeadlineExceeded { .. })] if *r == id)
    );
}

// ----- rule 3: never expired ----------------------------------------------------------

#[test]
fn rule3_no_grant_at_or_after_usable_until() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::Token(token("at-1", secs(3600)))); // no refresh credential
    // usable_until = 3600 - 30 s.
    sim.at(secs(3569));
    assert_eq!(grants(&sim.request().1).len(), 1);
    sim.at(secs(3570));
    let (_, actions) = sim.request();
    assert!(grants(&actions).is_empty());
    assert!(matches!(
        rejects(&actions)[0].1,
        Error::SignInRequired { .. }
    ));
}

#[test]
fn rule3_expired_token_parks_requests_until_the_new_one() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.at(secs(4000));
    let (id, actions) = sim.request();
    assert!(grants(&actions).is_empty());
    let attempt = the_attempt(&actions);
    let released = sim.result(attempt, Ok(token("at-2", secs(3600))));
    assert_eq!(
        grants(&released),
        vec![(id, Generation(2), "at-2".to_owned())]
    );
}

// ----- rule 4: stale-while-refreshing and wait-for-fresh -----------------------------

#[test]
fn rule4_stale_while_refreshing_grants_old_token_while_refreshing() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.at(secs(3300)); // window opens at 3600 - 300
    let actions = sim.timeout();
    let attempt = the_attempt(&actions);
    for _ in 0..5 {
        let (_, a) = sim.request();
        assert_eq!(grants(&a)[0].1, Generation(1));
        assert!(started(&a).is_empty());
    }
    let released = sim.result(attempt, Ok(token("at-2", secs(3600))));
    assert!(grants(&released).is_empty());
    assert_eq!(grants(&sim.request().1)[0].1, Generation(2));
}

fn wait_for_fresh() -> Sim {
    Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .mode(RefreshMode::WaitForFresh)
            .build()
            .unwrap(),
    )
}

#[test]
fn rule4_wait_for_fresh_parks_in_window_and_grants_the_new_token() {
    let mut sim = wait_for_fresh();
    sim.signed_in();
    sim.at(secs(3300));
    let (a, actions) = sim.request();
    let attempt = the_attempt(&actions);
    assert!(grants(&actions).is_empty());
    let released = sim.result(attempt, Ok(token("at-2", secs(3600))));
    assert_eq!(
        grants(&released),
        vec![(a, Generation(2), "at-2".to_owned())]
    );
}

#[test]
fn rule4_wait_for_fresh_grants_old_token_when_the_refresh_fails() {
    let mut sim = wait_for_fresh();
    sim.signed_in();
    sim.at(secs(3300));
    let (a, actions) = sim.request();
    let attempt = the_attempt(&actions);
    let released = sim.result(attempt, Err(RefreshFailure::transient("503")));
    assert_eq!(
        grants(&released),
        vec![(a, Generation(1), "at-1".to_owned())]
    );
}

// ----- rule 5: arrival order, newest token ------------------------------------------

#[test]
fn rule5_parked_requests_are_released_in_arrival_order_with_newest_token() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.machine.handle_rejected(sim.now, Generation(1));
    let attempt = the_attempt(&sim.drain());
    let ids: Vec<RequestId> = (0..50).map(|_| sim.request().0).collect();
    let released = sim.result(attempt, Ok(token("at-2", secs(3600))));
    let got = grants(&released);
    assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), ids);
    assert!(got.iter().all(|g| g.1 == Generation(2)));
}

// ----- rule 6: refresh only when needed ---------------------------------------------

#[test]
fn rule6_no_refresh_before_the_window() {
    let mut sim = Sim::exact();
    sim.signed_in();
    for t in [0, 60, 1800, 3299] {
        sim.at(secs(t));
        assert!(started(&sim.request().1).is_empty(), "at {t}s");
    }
    let wake = sim.machine.poll_timeout().unwrap();
    assert_eq!(
        (wake.at, wake.reason),
        (sim.t0 + secs(3300), WakeReason::RefreshWindow)
    );
}

#[test]
fn rule6_short_token_with_long_threshold_is_not_refreshed_on_every_request() {
    // The browser bug: "refresh when less than 2 h remain" with 60 s tokens.
    let mut sim = Sim::new(
        Config::builder()
            .refresh_threshold(secs(7200))
            .jitter_fraction(0.0)
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::Token(
        token("at", secs(60)).with_refresh_token("rt"),
    ));
    for t in 0..30 {
        sim.at(secs(t));
        assert!(started(&sim.request().1).is_empty(), "at {t}s");
    }
    sim.at(secs(30));
    assert_eq!(started(&sim.request().1).len(), 1);
}

#[test]
fn rule6_rejection_of_an_old_generation_triggers_no_refresh() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.machine.handle_rejected(sim.now, Generation(1));
    let attempt = the_attempt(&sim.drain());
    sim.result(attempt, Ok(token("at-2", secs(3600))));
    sim.machine.handle_rejected(sim.now, Generation(1));
    assert!(started(&sim.drain()).is_empty());
    assert_eq!(grants(&sim.request().1)[0].1, Generation(2));
}

#[test]
fn rule6_many_rejections_of_the_current_generation_trigger_one_refresh() {
    let mut sim = Sim::exact();
    sim.signed_in();
    let mut actions = Vec::new();
    for _ in 0..100 {
        sim.machine.handle_rejected(sim.now, Generation(1));
        actions.extend(sim.drain());
    }
    assert_eq!(started(&actions).len(), 1);
}

#[test]
fn rule6_no_token_and_nobody_waiting_starts_nothing() {
    let mut sim = Sim::exact();
    let actions = sim.sign_in(Credentials::RefreshToken("rt".into()));
    assert!(actions.is_empty());
    assert_eq!(sim.machine.poll_timeout(), None);
}

// ----- rule 7: failures -------------------------------------------------------------

#[test]
fn rule7_transient_failures_back_off_exponentially_then_retry() {
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .seed(7)
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let (_, actions) = sim.request();
    let mut attempt = the_attempt(&actions);
    let mut previous = Duration::ZERO;
    for round in 1..=4u32 {
        sim.result(attempt, Err(RefreshFailure::transient("connection reset")));
        let until = sim.machine.backoff_until().unwrap();
        let delay = until - sim.now;
        let base = secs(1) * 2u32.pow(round - 1);
        assert!(
            delay <= base && delay >= base / 2,
            "round {round}: {delay:?}"
        );
        assert!(delay > previous / 2);
        previous = delay;
        // Nothing starts during the backoff.
        sim.now = until - ms(1);
        assert!(started(&sim.timeout()).is_empty());
        sim.now = until;
        attempt = the_attempt(&sim.timeout());
    }
}

#[test]
fn rule7_retry_after_is_honoured() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let attempt = the_attempt(&sim.request().1);
    sim.result(
        attempt,
        Err(RefreshFailure::transient("429").with_retry_after(secs(20))),
    );
    assert_eq!(sim.machine.backoff_until(), Some(sim.now + secs(20)));
}

#[test]
fn rule7_transient_failure_keeps_granting_a_usable_token() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.at(secs(3300));
    let attempt = the_attempt(&sim.timeout());
    sim.result(attempt, Err(RefreshFailure::transient("502")));
    assert_eq!(grants(&sim.request().1)[0].1, Generation(1));
}

#[test]
fn rule7_terminal_failure_rejects_everyone_and_fails_fast_until_sign_in() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let (a, actions) = sim.request();
    let (b, _) = sim.request();
    let attempt = the_attempt(&actions);
    let out = sim.result(attempt, Err(RefreshFailure::terminal("invalid_grant")));
    let rejected: Vec<RequestId> = rejects(&out).into_iter().map(|r| r.0).collect();
    assert_eq!(rejected, vec![a, b]);
    assert!(matches!(sim.machine.status(), Status::SignInRequired(_)));
    let (_, later) = sim.request();
    match &rejects(&later)[0].1 {
        Error::SignInRequired { reason } => assert!(reason.contains("invalid_grant")),
        other => panic!("{other:?}"),
    }
    assert!(started(&later).is_empty());
    assert_eq!(sim.machine.poll_timeout(), None);
    // New credentials recover.
    sim.signed_in();
    assert_eq!(grants(&sim.request().1)[0].1, Generation(1));
}

// ----- rule 8: late and duplicate results --------------------------------------------

fn cancelled(actions: &[Action]) -> Vec<AttemptId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CancelRefresh { attempt } => Some(*attempt),
            _ => None,
        })
        .collect()
}

#[test]
fn rule1_an_exchange_past_its_deadline_is_cancelled_never_duplicated_and_its_late_answer_adopted() {
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .request_timeout(secs(120))
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (id, actions) = sim.request();
    let first = the_attempt(&actions);
    let deadline = sim.machine.poll_timeout().unwrap();
    assert_eq!(deadline.reason, WakeReason::RefreshTimeout);
    assert_eq!(deadline.at, sim.t0 + Config::default().refresh_timeout());
    sim.at(Config::default().refresh_timeout());
    assert_eq!(cancelled(&sim.timeout()), vec![first]);
    // The exchange is still on the wire: nothing else starts, however long it takes.
    assert_eq!(sim.machine.refresh_in_flight(), Some(first));
    assert_eq!(sim.machine.backoff_until(), None);
    for later in [31, 45, 60, 90] {
        sim.at(secs(later));
        let out = sim.timeout();
        assert!(
            started(&out).is_empty() && cancelled(&out).is_empty(),
            "{out:?}"
        );
    }
    assert_ne!(
        sim.machine.poll_timeout().map(|w| w.reason),
        Some(WakeReason::RefreshTimeout),
        "cancelled once: only its result can end it now"
    );
    // Its answer, late as it is, is adopted: the server consumed rt-1.
    let out = sim.result(
        first,
        Ok(token("at-late", secs(3600)).with_refresh_token("rt-2")),
    );
    assert_eq!(
        grants(&out),
        vec![(id, Generation(1), "at-late".to_owned())]
    );
}

#[test]
fn rule1_a_cancelled_exchange_is_retried_only_once_reported_and_after_the_backoff() {
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .request_timeout(secs(120))
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let first = the_attempt(&sim.request().1);
    sim.at(secs(30));
    assert_eq!(cancelled(&sim.timeout()), vec![first]);
    sim.at(secs(32));
    let out = sim.result(first, Err(RefreshFailure::transient("cancelled")));
    assert!(started(&out).is_empty(), "backs off first: {out:?}");
    let until = sim.machine.backoff_until().unwrap();
    sim.now = until;
    let out = sim.timeout();
    let second = the_attempt(&out);
    match &out[0] {
        Action::StartRefresh { refresh_token, .. } => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt");
        }
        other => panic!("{other:?}"),
    }
    // A stale result of the first changes nothing, and starts nothing.
    assert!(
        sim.result(first, Ok(token("at-stale", secs(3600))))
            .is_empty()
    );
    assert_eq!(sim.machine.refresh_in_flight(), Some(second));
    sim.result(second, Ok(token("at-2", secs(3600))));
    assert_eq!(sim.machine.generation(), Generation(1));
}

#[test]
fn rule1_new_credentials_cancel_the_exchange_and_wait_for_it_to_end() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-old".into()));
    let (a, actions) = sim.request();
    let first = the_attempt(&actions);
    sim.at(secs(1));
    let out = sim.sign_in(Credentials::RefreshToken("rt-new".into()));
    assert_eq!(cancelled(&out), vec![first]);
    assert!(
        started(&out).is_empty(),
        "the old exchange is still on the wire"
    );
    // Its result is dropped, and then the new credential is sent.
    let out = sim.result(first, Ok(token("at-old", secs(3600))));
    assert!(grants(&out).is_empty());
    match &out[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-new");
        }
        other => panic!("{other:?}"),
    }
    let second = the_attempt(&out);
    let out = sim.result(second, Ok(token("at-new", secs(3600))));
    assert_eq!(grants(&out), vec![(a, Generation(1), "at-new".to_owned())]);
}

#[test]
fn rule8_an_unusable_answer_still_rotates_the_credential() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let first = the_attempt(&sim.request().1);
    let out = sim.result(
        first,
        Ok(Token::bearer("at-dead", Expiry::In(Duration::ZERO)).with_refresh_token("rt-2")),
    );
    // Stored (rule 9: the server spent rt-1), never granted (rule 3).
    assert_eq!(persist_of(&out).1.refresh_token.unwrap().expose(), "rt-2");
    assert!(grants(&out).is_empty());
    assert!(sim.machine.fresh_token().is_none());
    sim.now = sim.machine.backoff_until().unwrap();
    match &sim.timeout()[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_retry_after_an_unknown_outcome_says_the_credential_may_be_spent() {
    // The cancelled exchange may have consumed rt-1 on the server. The machine retries
    // with rt-1 (its only credential; many servers honour a reuse grace period), and if
    // the server answers invalid_grant, the error says why the session may be lost.
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .refresh_timeout(secs(1))
            .request_timeout(secs(60))
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (id, actions) = sim.request();
    let first = the_attempt(&actions);
    sim.at(secs(1));
    assert_eq!(cancelled(&sim.timeout()), vec![first]);
    sim.result(first, Err(RefreshFailure::transient("timed out")));
    sim.now = sim.machine.backoff_until().unwrap();
    let out = sim.timeout();
    let second = the_attempt(&out);
    match &out[0] {
        Action::StartRefresh { refresh_token, .. } => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-1");
        }
        other => panic!("{other:?}"),
    }
    let out = sim.result(second, Err(RefreshFailure::terminal("invalid_grant")));
    match &rejects(&out)[..] {
        [(rejected, Error::SignInRequired { reason })] => {
            assert_eq!(*rejected, id);
            assert!(reason.contains("invalid_grant"), "{reason}");
            assert!(reason.contains("may have consumed"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule7_a_misconfiguration_fails_fast_keeps_the_credential_and_retries_after_backoff_max() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let first = the_attempt(&actions);
    let out = sim.result(
        first,
        Err(RefreshFailure::misconfigured(
            "invalid_client: check the client id and secret",
        )),
    );
    match &rejects(&out)[..] {
        [(rejected, error @ Error::Misconfigured { .. })] => {
            assert_eq!(*rejected, a);
            let text = error.to_string();
            assert!(text.contains("client id and secret"), "{text}");
            assert!(!text.contains("sign in"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sim.machine.status(), Status::Misconfigured(_)));
    // New requests fail fast, without starting a refresh...
    let (_, out) = sim.request();
    assert!(matches!(
        rejects(&out)[..],
        [(_, Error::Misconfigured { .. })]
    ));
    assert!(started(&out).is_empty());
    // ...until backoff_max has passed; then the same credential is tried again.
    let backoff_max = Config::default().backoff_max();
    assert_eq!(sim.machine.backoff_until(), Some(sim.t0 + backoff_max));
    sim.at(backoff_max);
    let (b, out) = sim.request();
    match &out[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-1");
        }
        other => panic!("{other:?}"),
    }
    let out = sim.result(the_attempt(&out), Ok(token("at-1", secs(3600))));
    assert_eq!(grants(&out), vec![(b, Generation(1), "at-1".to_owned())]);
    assert_eq!(sim.machine.status(), &Status::SignedIn);
}

#[test]
fn rule7_a_misconfiguration_keeps_granting_a_usable_token() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.at(secs(3300));
    let (_, out) = sim.request();
    let attempt = the_attempt(&out);
    sim.result(attempt, Err(RefreshFailure::misconfigured("invalid_scope")));
    assert!(matches!(sim.machine.status(), Status::Misconfigured(_)));
    let (id, out) = sim.request();
    assert_eq!(grants(&out), vec![(id, Generation(1), "at-1".to_owned())]);
    assert!(started(&out).is_empty());
}

#[test]
fn rule7_an_unreachable_endpoint_fails_waiting_and_new_requests_fast_until_the_backoff_ends() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let first = the_attempt(&actions);
    sim.at(ms(5));
    let out = sim.result(
        first,
        Err(RefreshFailure::unreachable(
            "could not reach the token endpoint: connection refused",
        )),
    );
    // The request parked for that attempt does not wait for its 30 s deadline.
    match &rejects(&out)[..] {
        [(rejected, error @ Error::Unreachable { reason, retry_in })] => {
            assert_eq!(*rejected, a);
            assert!(reason.contains("connection refused"), "{reason}");
            assert!(*retry_in > Duration::ZERO && *retry_in <= Config::default().backoff_initial());
            let text = error.to_string();
            assert!(text.contains("token endpoint is unreachable"), "{text}");
            assert!(!text.contains("sign in"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    let retry_at = sim.machine.backoff_until().expect("a backoff");
    match sim.machine.status() {
        Status::Unreachable {
            reason,
            retry_at: at,
        } => {
            assert!(reason.contains("connection refused"));
            assert_eq!(*at, retry_at);
        }
        other => panic!("{other:?}"),
    }
    assert!(sim.machine.status().is_signed_in());
    // A new request fails fast too, without starting a refresh, while the backoff runs.
    let (_, out) = sim.request();
    assert!(matches!(
        rejects(&out)[..],
        [(_, Error::Unreachable { .. })]
    ));
    assert!(started(&out).is_empty());
    // Once it has ended, the next request waits for a new attempt, which succeeds.
    sim.now = retry_at;
    let (b, out) = sim.request();
    assert!(rejects(&out).is_empty(), "{out:?}");
    let out = sim.result(the_attempt(&out), Ok(token("at-1", secs(3600))));
    assert_eq!(grants(&out), vec![(b, Generation(1), "at-1".to_owned())]);
    assert_eq!(sim.machine.status(), &Status::SignedIn);
}

#[test]
fn rule7_an_unreachable_endpoint_keeps_granting_a_usable_token() {
    let mut sim = Sim::exact();
    sim.signed_in(); // usable until 3570 s
    sim.at(secs(3300));
    let (_, out) = sim.request();
    let attempt = the_attempt(&out);
    sim.at(ms(3_569_500));
    sim.result(
        attempt,
        Err(RefreshFailure::unreachable("connection refused")),
    );
    assert!(matches!(sim.machine.status(), Status::Unreachable { .. }));
    let retry_at = sim.machine.backoff_until().expect("a backoff");
    assert!(
        retry_at > sim.t0 + secs(3570),
        "the backoff outlives the token"
    );
    let (id, out) = sim.request();
    assert_eq!(grants(&out), vec![(id, Generation(1), "at-1".to_owned())]);
    assert!(started(&out).is_empty());
    // Once the token is unusable, a request fails fast instead of waiting.
    sim.at(ms(3_570_100));
    let (id, out) = sim.request();
    assert!(
        matches!(&rejects(&out)[..], [(r, Error::Unreachable { .. })] if *r == id),
        "{out:?}"
    );
}

#[test]
fn rule7_an_unreachable_endpoint_waits_for_the_deadline_when_fail_fast_is_off() {
    let config = Config::builder()
        .jitter_fraction(0.0)
        .fail_fast_unreachable(false)
        .build()
        .unwrap();
    let mut sim = Sim::new(config);
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    let out = sim.result(
        the_attempt(&actions),
        Err(RefreshFailure::unreachable("refused")),
    );
    assert!(
        rejects(&out).is_empty(),
        "parked until its deadline: {out:?}"
    );
    assert!(matches!(sim.machine.status(), Status::Unreachable { .. }));
    let (_, out) = sim.request();
    assert!(rejects(&out).is_empty(), "{out:?}");
}

#[test]
fn rule7_an_endpoint_that_answers_is_not_unreachable() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    sim.result(
        the_attempt(&actions),
        Err(RefreshFailure::unreachable("refused")),
    );
    assert!(matches!(sim.machine.status(), Status::Unreachable { .. }));
    let retry_at = sim.machine.backoff_until().expect("a backoff");
    sim.now = retry_at;
    let (a, out) = sim.request();
    // It answers now, with a 503: a plain transient failure, and the request waits.
    let out2 = sim.result(
        the_attempt(&out),
        Err(RefreshFailure::transient("server error (503)")),
    );
    assert_eq!(sim.machine.status(), &Status::SignedIn);
    assert!(rejects(&out2).iter().all(|(id, _)| *id != a), "{out2:?}");
}

#[test]
fn rule8_duplicate_result_changes_nothing() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let attempt = the_attempt(&sim.request().1);
    sim.result(attempt, Ok(token("at-1", secs(3600))));
    let dup = sim.result(attempt, Ok(token("at-dup", secs(3600))));
    assert!(dup.is_empty());
    assert_eq!(sim.machine.generation(), Generation(1));
    let dup_failure = sim.result(attempt, Err(RefreshFailure::terminal("invalid_grant")));
    assert!(dup_failure.is_empty());
    assert_eq!(sim.machine.status(), &Status::SignedIn);
}

// ----- rule 9: rotation and persistence ----------------------------------------------

#[test]
fn rule9_refresh_sends_the_newest_credential_and_persists_before_granting() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    match &actions[0] {
        Action::StartRefresh { refresh_token, .. } => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-1");
        }
        other => panic!("{other:?}"),
    }
    let attempt = the_attempt(&actions);
    let out = sim.result(
        attempt,
        Ok(token("at-1", secs(3600)).with_refresh_token("rt-2")),
    );
    assert!(
        matches!(&out[0], Action::Persist { generation: Generation(1), token, .. }
        if token.refresh_token.as_ref().unwrap().expose() == "rt-2")
    );
    assert!(matches!(&out[1], Action::Grant { .. }));
    // A response without a refresh credential keeps the rotated one.
    sim.machine.handle_rejected(sim.now, Generation(1));
    let actions = sim.drain();
    let attempt = match &actions[0] {
        Action::StartRefresh {
            attempt,
            refresh_token,
        } => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-2");
            *attempt
        }
        other => panic!("{other:?}"),
    };
    let out = sim.result(attempt, Ok(token("at-2", secs(3600))));
    assert!(matches!(&out[0], Action::Persist { token, .. }
        if token.refresh_token.as_ref().unwrap().expose() == "rt-2"));
    // Rejected after a while in service (not "soon": rule 14 holds nothing back).
    sim.now += secs(61);
    sim.machine.handle_rejected(sim.now, Generation(2));
    match &sim.drain()[0] {
        Action::StartRefresh { refresh_token, .. } => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-2");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rule9_persisted_token_carries_wall_clock_expiry_counted_from_the_send() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let attempt = the_attempt(&sim.request().1);
    let sent_wall = sim.wall_now();
    sim.at(secs(2)); // the response arrives 2 s later
    let out = sim.result(attempt, Ok(token("at", secs(3600))));
    match &out[0] {
        Action::Persist { token, .. } => {
            assert_eq!(token.expiry, Expiry::At(sent_wall + secs(3600)))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stored_token_loaded_after_restart_keeps_its_remaining_lifetime() {
    let mut sim = Sim::exact();
    let wall = sim.wall_now();
    // Stored with 100 s left: usable for 90 s (10% margin), refreshed after 50 s.
    let stored = Token::bearer("at", Expiry::At(wall + secs(100))).with_refresh_token("rt");
    sim.sign_in(Credentials::Token(stored));
    assert_eq!(sim.machine.poll_timeout().unwrap().at, sim.t0 + secs(50));
    // One whose wall-clock expiry has passed is treated as expired: refresh at once.
    let mut sim = Sim::exact();
    let wall = sim.wall_now();
    let dead = Token::bearer("at", Expiry::At(wall - secs(1))).with_refresh_token("rt");
    sim.sign_in(Credentials::Token(dead));
    assert_eq!(sim.machine.generation(), Generation(0));
    let (_, actions) = sim.request();
    assert!(grants(&actions).is_empty());
    assert_eq!(started(&actions).len(), 1);
}

#[test]
fn token_already_expired_on_arrival_is_a_failed_refresh() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let attempt = the_attempt(&sim.request().1);
    let out = sim.result(attempt, Ok(token("dead", Duration::ZERO)));
    assert!(grants(&out).is_empty());
    assert!(sim.machine.backoff_until().is_some());
    assert!(sim.machine.last_failure().unwrap().contains("expired"));
}

// ----- rule 10: bounded ---------------------------------------------------------------

#[test]
fn rule10_overload_is_an_error_not_memory_growth() {
    let mut sim = Sim::new(Config::builder().max_parked(3).build().unwrap());
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    for _ in 0..3 {
        assert!(rejects(&sim.request().1).is_empty());
    }
    let (_, actions) = sim.request();
    assert!(matches!(
        rejects(&actions)[0].1,
        Error::Overloaded { limit: 3 }
    ));
    assert_eq!(sim.machine.parked_len(), 3);
}

#[test]
fn rule10_custom_deadline_is_kept() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let id = sim.machine.handle_request(sim.now, Some(sim.t0 + secs(2)));
    sim.drain();
    sim.at(secs(2));
    assert_eq!(rejects(&sim.timeout())[0].0, id);
}

// ----- rule 11: total ------------------------------------------------------------------

#[test]
fn rule11_time_going_backwards_counts_as_no_time() {
    let mut sim = Sim::exact();
    sim.signed_in();
    sim.at(secs(3300));
    let attempt = the_attempt(&sim.timeout());
    sim.at(secs(10)); // backwards
    let (_, actions) = sim.request();
    assert!(started(&actions).is_empty());
    assert_eq!(sim.machine.now(), sim.t0 + secs(3300));
    sim.result(attempt, Ok(token("at-2", secs(3600))));
    assert_eq!(sim.machine.generation(), Generation(2));
}

#[test]
fn rule11_unknown_ids_and_results_without_refresh_are_ignored() {
    let mut sim = Sim::exact();
    sim.machine.handle_cancel(sim.now, RequestId(999));
    sim.machine
        .handle_refresh_result(sim.now, AttemptId(42), Ok(token("x", secs(10))));
    sim.machine
        .handle_refresh_result(sim.now, AttemptId(0), Err(RefreshFailure::terminal("x")));
    sim.machine.handle_rejected(sim.now, Generation(77));
    assert!(sim.drain().is_empty());
    assert_eq!(sim.machine.status(), &Status::AwaitingSignIn);
    // Huge durations saturate instead of overflowing.
    sim.sign_in(Credentials::Token(
        token("at", Duration::MAX).with_refresh_token("rt"),
    ));
    assert_eq!(grants(&sim.request().1).len(), 1);
}

#[test]
fn rule11_poll_timeout_moves_forward_after_handle_timeout() {
    let mut sim = Sim::new(Config::builder().seed(3).build().unwrap());
    sim.signed_in();
    let mut steps = 0;
    while let Some(wake) = sim.machine.poll_timeout() {
        steps += 1;
        assert!(steps < 100, "livelock");
        sim.now = wake.at;
        for action in sim.timeout() {
            if let Action::StartRefresh { attempt, .. } = action {
                let failure = RefreshFailure::transient("down");
                sim.machine
                    .handle_refresh_result(sim.now, attempt, Err(failure));
            }
        }
        sim.drain();
        if let Some(next) = sim.machine.poll_timeout() {
            assert!(
                next.at > sim.now,
                "{next:?} not after {:?}",
                sim.now - sim.t0
            );
        }
        if sim.now > sim.t0 + secs(7200) {
            break;
        }
    }
    assert!(steps > 5);
}

// ----- rule 12: sign-out ---------------------------------------------------------------

#[test]
fn rule12_sign_out_rejects_parked_clears_and_forgets() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    let (a, actions) = sim.request();
    let attempt = the_attempt(&actions);
    sim.machine.handle_sign_out(sim.now);
    let out = sim.drain();
    assert!(matches!(rejects(&out).as_slice(), [(r, Error::SignedOut)] if *r == a));
    assert!(out.iter().any(|a| matches!(a, Action::Forget)));
    // The refresh in flight of the old session is ignored; requests fail fast.
    assert!(sim.result(attempt, Ok(token("at", secs(3600)))).is_empty());
    assert!(matches!(rejects(&sim.request().1)[0].1, Error::SignedOut));
    assert_eq!(sim.machine.poll_timeout(), None);
}

// ----- sign-in, client credentials, errors ---------------------------------------------

#[test]
fn requests_before_sign_in_wait_for_it() {
    let mut sim = Sim::exact();
    let (a, actions) = sim.request();
    assert!(actions.is_empty());
    sim.at(secs(1));
    let out = sim.sign_in(Credentials::Token(token("at", secs(3600))));
    assert!(matches!(&out[0], Action::Persist { .. }));
    assert_eq!(grants(&out), vec![(a, Generation(1), "at".to_owned())]);
}

#[test]
fn client_credentials_refresh_without_a_refresh_credential() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::ClientCredentials { token: None });
    let (_, actions) = sim.request();
    assert!(matches!(
        &actions[0],
        Action::StartRefresh {
            refresh_token: None,
            ..
        }
    ));
}

#[test]
fn errors_never_print_secrets() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::Token(
        token("super-secret-at", secs(3600)).with_refresh_token("super-secret-rt"),
    ));
    let debug = format!("{:?}", sim.machine);
    assert!(!debug.contains("super-secret"), "{debug}");
    let actions = sim.request().1;
    assert!(!format!("{actions:?}").contains("super-secret"));
}

#[test]
fn rule4_deadline_in_the_instant_the_refresh_fails_still_gets_the_old_token() {
    // Wait-for-fresh, request deadline 1 s: the refresh fails at that very instant, so
    // the still-usable old token is granted rather than a deadline error.
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .mode(RefreshMode::WaitForFresh)
            .request_timeout(secs(1))
            .build()
            .unwrap(),
    );
    sim.signed_in();
    sim.at(secs(3300));
    let (id, actions) = sim.request();
    let attempt = the_attempt(&actions);
    sim.at(secs(3301));
    let out = sim.result(attempt, Err(RefreshFailure::transient("503")));
    assert_eq!(grants(&out), vec![(id, Generation(1), "at-1".to_owned())]);
    assert!(rejects(&out).is_empty());
}

#[test]
fn new_credentials_win_over_a_late_result() {
    let mut sim = Sim::new(Config::builder().refresh_timeout(secs(1)).build().unwrap());
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let first = the_attempt(&sim.request().1);
    sim.at(secs(1));
    sim.timeout();
    sim.signed_in(); // a sign-in with a fresh token
    assert!(
        sim.result(first, Ok(token("at-late", secs(3600))))
            .is_empty()
    );
    assert_eq!(grants(&sim.request().1)[0].2, "at-1");
}

#[test]
fn fast_path_snapshot_ends_at_the_window_or_when_unusable() {
    let mut sim = Sim::exact();
    sim.signed_in();
    let (token, until) = sim.machine.fresh_token().unwrap();
    assert_eq!(token.generation, Generation(1));
    assert_eq!(until, Some(sim.t0 + secs(3300)));
    sim.at(secs(3300));
    sim.timeout();
    assert!(sim.machine.fresh_token().is_none());
    // Without a refresh credential the window changes nothing: served until unusable.
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::Token(token_of("at", 3600)));
    assert_eq!(
        sim.machine.fresh_token().unwrap().1,
        Some(sim.t0 + secs(3570))
    );
    sim.machine.handle_rejected(sim.now, Generation(1));
    assert!(sim.machine.fresh_token().is_none());
}

fn token_of(access: &str, lifetime_secs: u64) -> Token {
    token(access, secs(lifetime_secs))
}

// ----- events: what happened, reported by the machine ---------------------------------

fn events(sim: &mut Sim) -> Vec<silent_refresh::Event> {
    std::iter::from_fn(|| sim.machine.poll_event()).collect()
}

#[test]
fn events_say_why_a_refresh_started_and_how_it_ended() {
    use silent_refresh::{Event, FailureKind, Trigger};
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt".into()));
    assert_eq!(
        events(&mut sim),
        vec![Event::StatusChanged {
            status: Status::SignedIn
        }]
    );
    let first = the_attempt(&sim.request().1);
    assert_eq!(
        events(&mut sim),
        vec![Event::RefreshStarted {
            attempt: first,
            trigger: Trigger::NoToken
        }]
    );
    sim.result(first, Ok(token("at-1", secs(3600))));
    assert_eq!(
        events(&mut sim),
        vec![Event::TokenAdopted {
            generation: Generation(1),
            attempt: Some(first)
        }]
    );
    sim.at(secs(3300));
    let window = the_attempt(&sim.timeout());
    assert!(matches!(
        events(&mut sim)[..],
        [Event::RefreshStarted {
            trigger: Trigger::Window,
            ..
        }]
    ));
    sim.result(window, Err(RefreshFailure::transient("503")));
    match &events(&mut sim)[..] {
        [
            Event::RefreshFailed {
                attempt,
                kind: FailureKind::Transient,
                retry_at: Some(at),
                ..
            },
        ] => {
            assert_eq!(*attempt, window);
            assert_eq!(Some(*at), sim.machine.backoff_until());
        }
        other => panic!("{other:?}"),
    }
    sim.machine.handle_rejected(sim.now, Generation(1));
    let _ = sim.drain();
    sim.now = sim.machine.backoff_until().unwrap();
    let rejected = the_attempt(&sim.timeout());
    assert!(matches!(
        events(&mut sim)[..],
        [Event::RefreshStarted {
            trigger: Trigger::Rejected,
            ..
        }]
    ));
    sim.now += Config::default().refresh_timeout();
    sim.timeout();
    assert_eq!(
        events(&mut sim),
        vec![Event::RefreshOverdue { attempt: rejected }]
    );
    sim.result(AttemptId(99), Ok(token("at-x", secs(3600))));
    assert_eq!(
        events(&mut sim),
        vec![Event::ResultDropped {
            attempt: AttemptId(99)
        }]
    );
}

// ----- persistence: stored tokens, compare-and-swap, failed saves, suspends ------------

fn persist_of(actions: &[Action]) -> (Generation, Token, Option<String>) {
    match actions.iter().find(|a| matches!(a, Action::Persist { .. })) {
        Some(Action::Persist {
            generation,
            token,
            from,
        }) => (
            *generation,
            (**token).clone(),
            from.as_ref().map(|s| s.expose().to_owned()),
        ),
        _ => panic!("no Persist in {actions:?}"),
    }
}

#[test]
fn a_stored_token_gets_the_refresh_window_of_its_whole_lifetime() {
    // A 1 h token issued 3400 s ago has 200 s left: its window (5 min before expiry)
    // is already open, so it refreshes at once, not in 100 s (half of what is left).
    let mut sim = Sim::exact();
    let wall = sim.wall_now();
    let stored = Token {
        issued_at: Some(wall - secs(3400)),
        ..Token::bearer("at", Expiry::At(wall + secs(200))).with_refresh_token("rt")
    };
    let out = sim.sign_in(Credentials::Stored(stored));
    assert!(
        !out.iter().any(|a| matches!(a, Action::Persist { .. })),
        "a stored token is not stored again: {out:?}"
    );
    assert!(sim.machine.is_durable());
    assert_eq!(started(&out).len(), 1, "refreshed at once: {out:?}");
    // ...and it is still granted meanwhile (usable until 30 s before expiry).
    let (id, out) = sim.request();
    assert_eq!(grants(&out), vec![(id, Generation(1), "at".to_owned())]);
}

#[test]
fn the_persisted_token_says_when_it_was_issued_and_what_it_was_refreshed_from() {
    let mut sim = Sim::exact();
    let out = sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    assert!(out.is_empty());
    let attempt = the_attempt(&sim.request().1);
    let sent_wall = sim.wall_now();
    sim.at(secs(2));
    let out = sim.result(
        attempt,
        Ok(token("at", secs(3600)).with_refresh_token("rt-2")),
    );
    let (generation, stored, from) = persist_of(&out);
    assert_eq!(generation, Generation(1));
    assert_eq!(stored.issued_at, Some(sent_wall));
    assert_eq!(stored.expiry, Expiry::At(sent_wall + secs(3600)));
    assert_eq!(
        from.as_deref(),
        Some("rt-1"),
        "compare-and-swap on the credential sent"
    );
    assert!(
        !sim.machine.is_durable(),
        "not durable until the store says so"
    );
    sim.machine
        .handle_persisted(sim.now, generation, silent_refresh::Persisted::Stored);
    assert!(sim.machine.is_durable());
}

#[test]
fn a_store_holding_a_newer_session_wins_and_is_not_overwritten() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let attempt = the_attempt(&sim.request().1);
    let out = sim.result(
        attempt,
        Ok(token("at-mine", secs(3600)).with_refresh_token("rt-2")),
    );
    let (generation, ..) = persist_of(&out);
    // Another process refreshed first and stored its token.
    let wall = sim.wall_now();
    let sibling = Token {
        issued_at: Some(wall),
        ..Token::bearer("at-sibling", Expiry::At(wall + secs(3600))).with_refresh_token("rt-9")
    };
    sim.machine.handle_persisted(
        sim.now,
        generation,
        silent_refresh::Persisted::Conflict(Box::new(sibling)),
    );
    let out = sim.drain();
    assert!(
        !out.iter().any(|a| matches!(a, Action::Persist { .. })),
        "the sibling's token is not written back: {out:?}"
    );
    assert!(sim.machine.is_durable());
    let (id, out) = sim.request();
    assert_eq!(
        grants(&out),
        vec![(id, Generation(2), "at-sibling".to_owned())]
    );
    // The next refresh sends the sibling's refresh credential.
    sim.machine.handle_rejected(sim.now, Generation(2));
    match &sim.drain()[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-9");
        }
        other => panic!("{other:?}"),
    }
}

/// Rule 9, decided while building (issue 25): a conflict is the store telling this
/// process that a sibling's session replaced its own. When that session's access token
/// is no longer usable (expired, or nothing in it to grant), ours is dropped all the
/// same: the store no longer holds it, so it is neither granted on a guess nor saved
/// over the sibling's session again. Only the store's refresh credential is left; here
/// it has none, so requests fail fast with "sign-in required".
#[test]
fn rule9_a_conflict_holding_a_spent_session_without_a_credential_ends_ours_without_overwriting_it()
{
    let mut sim = Sim::exact();
    // A token that never expires and has no refresh credential; its save fails.
    sim.sign_in(Credentials::Token(Token::bearer("at-mine", Expiry::Never)));
    sim.machine.handle_persisted(
        sim.now,
        Generation(1),
        silent_refresh::Persisted::Failed("disk full".into()),
    );
    sim.drain();
    // The retried save finds a sibling's session, already past its wall-clock expiry.
    let retry = sim.machine.poll_timeout().unwrap();
    assert_eq!(retry.reason, WakeReason::PersistRetry);
    sim.now = retry.at;
    let wall = sim.wall_now();
    let spent = Token {
        issued_at: Some(wall - secs(120)),
        ..Token::bearer("at-sibling", Expiry::At(wall - secs(60)))
    };
    sim.machine.handle_persisted(
        sim.now,
        Generation(1),
        silent_refresh::Persisted::Conflict(Box::new(spent)),
    );
    let out = sim.drain();
    assert!(
        !out.iter().any(|a| matches!(a, Action::Persist { .. })),
        "the sibling's session is not overwritten: {out:?}"
    );
    assert_eq!(sim.machine.fresh_token(), None, "our token is not kept");
    assert!(!sim.machine.is_durable());
    let (id, out) = sim.request();
    assert!(grants(&out).is_empty(), "neither token is granted: {out:?}");
    match &rejects(&out)[..] {
        [(rejected, Error::SignInRequired { .. })] => assert_eq!(*rejected, id),
        other => panic!("expected a fast sign-in-required rejection, got {other:?}"),
    }
}

/// The same conflict with a credential in the stored session: ours is dropped, waiting
/// requests wait for one refresh, and that refresh sends the store's credential.
#[test]
fn rule9_a_conflict_holding_a_spent_token_refreshes_with_the_stores_credential() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::Token(
        Token::bearer("at-mine", Expiry::In(secs(3600))).with_refresh_token("rt-mine"),
    ));
    let wall = sim.wall_now();
    let spent = Token {
        issued_at: Some(wall - secs(120)),
        ..Token::bearer("at-sibling", Expiry::At(wall - secs(60))).with_refresh_token("rt-9")
    };
    sim.machine.handle_persisted(
        sim.now,
        Generation(1),
        silent_refresh::Persisted::Conflict(Box::new(spent)),
    );
    assert!(sim.drain().is_empty());
    let (_, out) = sim.request();
    assert!(grants(&out).is_empty(), "our token is not granted: {out:?}");
    match &out[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-9");
        }
        other => panic!("expected one refresh with the store's credential, got {other:?}"),
    }
}

#[test]
fn a_failed_save_is_asked_again_after_a_backoff_and_the_token_still_used() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let out = sim.result(
        the_attempt(&actions),
        Ok(token("at", secs(3600)).with_refresh_token("rt-2")),
    );
    assert_eq!(grants(&out), vec![(a, Generation(1), "at".to_owned())]);
    let (generation, ..) = persist_of(&out);
    sim.machine.handle_persisted(
        sim.now,
        generation,
        silent_refresh::Persisted::Failed("disk full".into()),
    );
    assert!(sim.drain().is_empty());
    let wakeup = sim.machine.poll_timeout().unwrap();
    assert_eq!(wakeup.reason, WakeReason::PersistRetry);
    assert_eq!(wakeup.at, sim.t0 + Config::default().backoff_initial());
    // Still granted (availability).
    let (b, out) = sim.request();
    assert_eq!(grants(&out), vec![(b, Generation(1), "at".to_owned())]);
    sim.now = wakeup.at;
    let out = sim.timeout();
    let (again, stored, from) = persist_of(&out);
    assert_eq!(again, generation);
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
    assert_eq!(from.as_deref(), Some("rt-1"));
}

#[test]
fn a_token_refreshed_while_its_predecessor_is_unsaved_compares_against_what_the_store_holds() {
    // rt-2's save failed: the store still holds rt-1. The token refreshed from rt-2 is
    // saved with compare-and-swap on rt-1, not rt-2 (which the store never held: a
    // conflict there would adopt the store's older session, and spend rt-1 again).
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    let out = sim.result(
        the_attempt(&actions),
        Ok(token("at-2", secs(3600)).with_refresh_token("rt-2")),
    );
    let (generation, _, from) = persist_of(&out);
    assert_eq!(from.as_deref(), Some("rt-1"));
    sim.machine.handle_persisted(
        sim.now,
        generation,
        silent_refresh::Persisted::Failed("disk full".into()),
    );
    sim.drain();
    sim.machine.handle_rejected(sim.now, generation);
    let attempt = the_attempt(&sim.drain());
    let out = sim.result(
        attempt,
        Ok(token("at-3", secs(3600)).with_refresh_token("rt-3")),
    );
    let (_, stored, from) = persist_of(&out);
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-3");
    assert_eq!(from.as_deref(), Some("rt-1"), "what the store still holds");
    // Once a token is stored, the next one compares against its own credential.
    let (generation, ..) = persist_of(&out);
    sim.machine
        .handle_persisted(sim.now, generation, silent_refresh::Persisted::Stored);
    sim.drain();
    // Rejected after a while in service (not "soon": rule 14 holds nothing back).
    sim.now += secs(61);
    sim.machine.handle_rejected(sim.now, generation);
    let attempt = the_attempt(&sim.drain());
    let out = sim.result(
        attempt,
        Ok(token("at-4", secs(3600)).with_refresh_token("rt-4")),
    );
    assert_eq!(persist_of(&out).2.as_deref(), Some("rt-3"));
}

#[test]
fn a_rotated_credential_that_arrives_with_an_unusable_token_is_stored_never_granted() {
    // The answer comes after the new token's whole lifetime: it is not granted, but the
    // server has spent rt-1, so rt-2 is persisted (a restart or a sibling would spend
    // rt-1 again) and sent next.
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let attempt = the_attempt(&actions);
    sim.now += secs(20);
    let out = sim.result(
        attempt,
        Ok(token("at-2", secs(10)).with_refresh_token("rt-2")),
    );
    assert!(
        grants(&out).is_empty(),
        "an unusable token is never granted: {out:?}"
    );
    assert!(sim.machine.fresh_token().is_none());
    let (_, stored, from) = persist_of(&out);
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
    assert_eq!(from.as_deref(), Some("rt-1"));
    assert!(
        events(&mut sim).iter().any(|e| matches!(
            e,
            silent_refresh::Event::RefreshFailed {
                kind: silent_refresh::FailureKind::Transient,
                ..
            }
        )),
        "still a transient failure"
    );
    // The next refresh sends rt-2, and the request is granted its token.
    let wakeup = sim.machine.poll_timeout().unwrap();
    sim.now = wakeup.at;
    let out = sim.timeout();
    let next = the_attempt(&out);
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::StartRefresh { refresh_token: Some(sent), .. } if sent.expose() == "rt-2"
        )),
        "{out:?}"
    );
    let out = sim.result(
        next,
        Ok(token("at-3", secs(3600)).with_refresh_token("rt-3")),
    );
    assert_eq!(grants(&out), vec![(a, Generation(2), "at-3".to_owned())]);
}

#[test]
fn a_rotated_credential_with_an_unusable_token_is_stored_with_the_previous_usable_one() {
    // In at-1's window the server answers expires_in 0 with a rotated rt-2: rt-1 is
    // spent, so rt-2 must reach the store; at-1 is still usable, so it is stored with
    // rt-2 and granted on (under the next generation) while the refresh is retried.
    let mut sim = Sim::exact();
    let (generation, _, _) = persist_of(&sim.sign_in(Credentials::Token(
        Token::bearer("at-1", Expiry::In(secs(3600))).with_refresh_token("rt-1"),
    )));
    sim.machine
        .handle_persisted(sim.now, generation, silent_refresh::Persisted::Stored);
    sim.drain();
    sim.at(secs(3300)); // the window opens at 3600 - 300
    let attempt = the_attempt(&sim.timeout());
    let out = sim.result(
        attempt,
        Ok(token("at-dead", Duration::ZERO).with_refresh_token("rt-2")),
    );
    let (kept, stored, from) = persist_of(&out);
    assert_eq!(
        stored.access_token.expose(),
        "at-1",
        "the usable token is kept"
    );
    assert_eq!(stored.refresh_token.unwrap().expose(), "rt-2");
    assert_eq!(stored.expiry, Expiry::At(sim.wall0 + secs(3600)));
    assert_eq!(
        from.as_deref(),
        Some("rt-1"),
        "compare-and-swap on the spent one"
    );
    assert!(kept > generation);
    assert!(
        sim.machine.backoff_until().is_some(),
        "still a failed refresh"
    );
    let (request, out) = sim.request();
    assert_eq!(grants(&out), vec![(request, kept, "at-1".to_owned())]);
    // Once stored, the retry sends rt-2.
    sim.machine
        .handle_persisted(sim.now, kept, silent_refresh::Persisted::Stored);
    sim.drain();
    sim.now = sim.machine.poll_timeout().unwrap().at;
    let out = sim.timeout();
    assert!(
        out.iter().any(|a| matches!(
            a,
            Action::StartRefresh { refresh_token: Some(sent), .. } if sent.expose() == "rt-2"
        )),
        "{out:?}"
    );
}

#[test]
fn strict_persistence_grants_only_stored_tokens() {
    let mut sim = Sim::new(
        Config::builder()
            .jitter_fraction(0.0)
            .strict_persistence(true)
            .build()
            .unwrap(),
    );
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let out = sim.result(the_attempt(&actions), Ok(token("at", secs(3600))));
    assert!(grants(&out).is_empty(), "not stored yet: {out:?}");
    assert!(sim.machine.fresh_token().is_none());
    let (generation, ..) = persist_of(&out);
    sim.machine.handle_persisted(
        sim.now,
        generation,
        silent_refresh::Persisted::Failed("disk full".into()),
    );
    assert!(grants(&sim.drain()).is_empty());
    sim.machine
        .handle_persisted(sim.now, generation, silent_refresh::Persisted::Stored);
    assert_eq!(
        grants(&sim.drain()),
        vec![(a, Generation(1), "at".to_owned())]
    );
    assert!(sim.machine.fresh_token().is_some());
}

#[test]
fn after_a_suspend_no_token_is_granted_past_its_wall_clock_usable_time() {
    // The monotonic clock stood still for two hours while the wall clock ran.
    let mut sim = Sim::exact();
    sim.signed_in(); // a 1 h token
    assert!(sim.machine.fresh_token().is_some());
    let wall = sim.wall_now() + secs(2 * 3600);
    sim.machine.handle_wall_clock(sim.now, wall);
    let out = sim.drain();
    assert!(
        sim.machine.fresh_token().is_none(),
        "the fast path is withdrawn"
    );
    assert_eq!(
        started(&out).len(),
        1,
        "its window has passed: refreshed at once"
    );
    let (_, out) = sim.request();
    assert!(
        out.is_empty(),
        "the expired token is not granted; the request waits for the refresh: {out:?}"
    );
    assert_eq!(sim.machine.parked_len(), 1);
    // A wall clock set back never makes a token live longer.
    let mut sim = Sim::exact();
    sim.signed_in();
    let before = sim.machine.fresh_token().unwrap().1;
    let wall = sim.wall_now() - secs(600);
    sim.machine.handle_wall_clock(sim.now, wall);
    assert_eq!(sim.machine.fresh_token().unwrap().1, before);
}

#[test]
fn a_refresh_started_by_a_sign_in_says_so() {
    use silent_refresh::{Event, Trigger};
    let mut sim = Sim::exact();
    let (_, out) = sim.request(); // waits for a sign-in
    assert!(out.is_empty());
    std::iter::from_fn(|| sim.machine.poll_event()).for_each(drop);
    let out = sim.sign_in(Credentials::RefreshToken("rt".into()));
    let attempt = the_attempt(&out);
    let events: Vec<Event> = std::iter::from_fn(|| sim.machine.poll_event()).collect();
    assert!(
        events.contains(&Event::RefreshStarted {
            attempt,
            trigger: Trigger::SignIn
        }),
        "{events:?}"
    );
}

/// Fails the attempt in `actions` as unreachable and returns what followed.
fn unreachable_result(sim: &mut Sim, actions: &[Action]) -> Vec<Action> {
    sim.result(
        the_attempt(actions),
        Err(RefreshFailure::unreachable("connection refused")),
    )
}

#[test]
fn rule7_a_waiting_request_probes_an_unreachable_endpoint_after_a_second_not_the_grown_backoff() {
    let config = Config::builder()
        .jitter_fraction(0.0)
        .fail_fast_unreachable(false)
        .request_timeout(secs(300))
        .build()
        .unwrap();
    let mut sim = Sim::new(config);
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (id, mut actions) = sim.request();
    // Six refused connections in a row: the backoff grows toward a minute...
    for _ in 0..6 {
        let out = unreachable_result(&mut sim, &actions);
        assert!(rejects(&out).is_empty(), "the request waits: {out:?}");
        let backoff = sim.machine.backoff_until().unwrap() - sim.now;
        let wakeup = sim.machine.poll_timeout().unwrap();
        // ...but the waiting request probes again within a second (after the first
        // failure the probe and the backoff are one and the same).
        if backoff > secs(1) {
            assert_eq!(wakeup.reason, WakeReason::ProbeDue, "backoff {backoff:?}");
        }
        let probe = wakeup.at - sim.now;
        assert!(probe <= secs(1) && probe >= ms(500), "{probe:?}");
        match sim.machine.status() {
            Status::Unreachable { retry_at, .. } => assert_eq!(*retry_at, wakeup.at),
            other => panic!("{other:?}"),
        }
        sim.now = wakeup.at;
        actions = sim.timeout();
        assert_eq!(started(&actions).len(), 1, "{actions:?}");
    }
    assert!(sim.machine.backoff_until().is_none(), "the probe spent it");
    // The endpoint is back: the request gets the token from the probe.
    let out = sim.result(the_attempt(&actions), Ok(token("at-1", secs(3600))));
    assert_eq!(grants(&out), vec![(id, Generation(1), "at-1".to_owned())]);
}

#[test]
fn rule7_with_fail_fast_a_request_after_the_probe_time_starts_the_probe() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, mut actions) = sim.request();
    for _ in 0..5 {
        unreachable_result(&mut sim, &actions);
        let probe_at = match sim.machine.status() {
            Status::Unreachable { retry_at, .. } => *retry_at,
            other => panic!("{other:?}"),
        };
        assert!(probe_at - sim.now <= secs(1));
        assert!(sim.machine.backoff_until().unwrap() >= probe_at);
        // Before the probe time a request is told at once, with the time to the probe.
        let (id, out) = sim.request();
        match &rejects(&out)[..] {
            [(r, Error::Unreachable { retry_in, .. })] => {
                assert_eq!(*r, id);
                assert_eq!(*retry_in, probe_at - sim.now);
            }
            other => panic!("{other:?}"),
        }
        // From the probe time on, a request waits for the probe it starts.
        sim.now = probe_at;
        let (_, out) = sim.request();
        assert!(rejects(&out).is_empty(), "{out:?}");
        actions = out;
        assert_eq!(started(&actions).len(), 1);
    }
}

#[test]
fn rule7_a_request_is_answered_at_once_when_the_next_attempt_comes_after_its_deadline() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let (b, _) = {
        let id = sim
            .machine
            .handle_request(sim.now, Some(sim.now + secs(200)));
        (id, sim.drain())
    };
    let out = sim.result(
        the_attempt(&actions),
        Err(RefreshFailure::transient("503 Service Unavailable").with_retry_after(secs(120))),
    );
    // a's 30 s deadline comes before the retry in 120 s: answered now, naming the 503.
    match &rejects(&out)[..] {
        [(r, error @ Error::RefreshFailed { retry_in, reason })] => {
            assert_eq!(*r, a);
            assert_eq!(*retry_in, secs(120));
            assert!(reason.contains("503"), "{reason}");
            assert!(error.to_string().contains("retry later"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // b can still get a token from the retry: it waits.
    assert_eq!(sim.machine.parked_len(), 1);
    sim.at(secs(120));
    let out = sim.timeout();
    let out = sim.result(the_attempt(&out), Ok(token("at-1", secs(3600))));
    assert_eq!(grants(&out), vec![(b, Generation(1), "at-1".to_owned())]);
}

#[test]
fn rule7_the_wait_policy_decides_who_waits_out_a_failure() {
    use silent_refresh::WaitPolicy;
    for (policy, answered_at_once) in [
        (WaitPolicy::FirstFailure, true),
        (WaitPolicy::WhileHopeful, false),
        (WaitPolicy::UntilDeadline, false),
    ] {
        let config = Config::builder()
            .jitter_fraction(0.0)
            .wait_policy(policy)
            .build()
            .unwrap();
        let mut sim = Sim::new(config);
        sim.sign_in(Credentials::RefreshToken("rt-1".into()));
        let (a, actions) = sim.request();
        let out = sim.result(
            the_attempt(&actions),
            Err(RefreshFailure::transient("503 Service Unavailable")),
        );
        let (b, during_backoff) = sim.request();
        if answered_at_once {
            assert!(matches!(&rejects(&out)[..], [(r, Error::RefreshFailed { .. })] if *r == a));
            assert!(
                matches!(&rejects(&during_backoff)[..], [(r, Error::RefreshFailed { .. })] if *r == b)
            );
        } else {
            assert!(rejects(&out).is_empty(), "{policy:?}: {out:?}");
            assert!(rejects(&during_backoff).is_empty(), "{policy:?}");
            assert_eq!(sim.machine.parked_len(), 2);
        }
    }
    // Batch: a retry-after past the deadline still leaves the request waiting.
    let config = Config::builder()
        .wait_policy(WaitPolicy::UntilDeadline)
        .build()
        .unwrap();
    let mut sim = Sim::new(config);
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (a, actions) = sim.request();
    let out = sim.result(
        the_attempt(&actions),
        Err(RefreshFailure::transient("503").with_retry_after(secs(120))),
    );
    assert!(out.is_empty(), "{out:?}");
    sim.at(secs(30));
    let out = sim.timeout();
    assert!(matches!(&rejects(&out)[..], [(r, Error::DeadlineExceeded { .. })] if *r == a));
}

/// Rule 14: an API that rejects every token it is given.
#[test]
fn rule14_an_api_that_rejects_every_fresh_token_costs_a_handful_of_refreshes_a_minute() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, mut actions) = sim.request();
    let mut refreshes = 0;
    let mut n = 0;
    let end = sim.now + secs(60);
    while sim.now < end {
        refreshes += started(&actions).len();
        n += 1;
        let out = sim.result(
            the_attempt(&actions),
            Ok(token(&format!("at-{n}"), secs(3600)).with_refresh_token(format!("rt-{}", n + 1))),
        );
        let generation = sim.machine.generation();
        assert!(!grants(&out).is_empty() || n > 1);
        // Every request with the fresh token comes back 401; 16 in flight report it.
        for _ in 0..16 {
            sim.machine.handle_rejected(sim.now, generation);
        }
        actions = sim.drain();
        if started(&actions).is_empty() {
            // Held back: a caller waits if the hold-off ends before its deadline, and
            // is told why at once if not.
            let wakeup = sim.machine.poll_timeout().unwrap();
            assert_eq!(wakeup.reason, WakeReason::HoldoffEnds);
            let (id, out) = sim.request();
            if wakeup.at - sim.now >= Config::default().request_timeout() {
                assert!(
                    matches!(&rejects(&out)[..], [(r, Error::TokensRejected { .. })] if *r == id),
                    "{out:?}"
                );
            } else {
                assert!(rejects(&out).is_empty(), "{out:?}");
            }
            sim.now = wakeup.at;
            actions = sim.timeout();
        }
    }
    // Two at once, then held back 1, 2, 4, 8, 16, 32 s (less jitter): a handful.
    assert!(refreshes <= 10, "{refreshes} refreshes in a minute");
    assert!(
        refreshes >= 5,
        "{refreshes}: the API's rejections still refresh"
    );
}

#[test]
fn rule14_the_streak_names_itself_and_ends_with_a_token_that_was_not_rejected() {
    use silent_refresh::WaitPolicy;
    let config = Config::builder()
        .jitter_fraction(0.0)
        .wait_policy(WaitPolicy::FirstFailure)
        .build()
        .unwrap();
    let mut sim = Sim::new(config);
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    sim.result(the_attempt(&actions), Ok(token("at-1", secs(600))));
    // The first rejection of a fresh token refreshes at once (it may be a fluke).
    sim.machine.handle_rejected(sim.now, Generation(1));
    let actions = sim.drain();
    sim.result(the_attempt(&actions), Ok(token("at-2", secs(600))));
    // The second is held back; an interactive caller is told what to check.
    sim.machine.handle_rejected(sim.now, Generation(2));
    assert!(started(&sim.drain()).is_empty());
    let (id, out) = sim.request();
    match &rejects(&out)[..] {
        [(r, error @ Error::TokensRejected { count: 2, retry_in })] => {
            assert_eq!(*r, id);
            assert!(*retry_in <= secs(1) && *retry_in >= ms(500));
            let text = error.to_string();
            for hint in ["audience", "scope", "clocks"] {
                assert!(text.contains(hint), "{hint}: {text}");
            }
        }
        other => panic!("{other:?}"),
    }
    let wakeup = sim.machine.poll_timeout().unwrap();
    sim.now = wakeup.at;
    let actions = sim.timeout();
    sim.result(the_attempt(&actions), Ok(token("at-3", secs(600))));
    // at-3 serves until its window (the API accepted it): that refresh ends the streak,
    // and the next fresh token's first rejection refreshes at once again.
    sim.at(secs(1000));
    let actions = sim.timeout();
    sim.result(the_attempt(&actions), Ok(token("at-4", secs(600))));
    sim.machine.handle_rejected(sim.now, Generation(4));
    assert_eq!(started(&sim.drain()).len(), 1);
}

#[test]
fn rule14_a_token_rejected_after_a_while_in_service_refreshes_at_once() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    let (_, actions) = sim.request();
    sim.result(the_attempt(&actions), Ok(token("at-1", secs(3600))));
    sim.machine.handle_rejected(sim.now, Generation(1));
    let actions = sim.drain();
    sim.result(the_attempt(&actions), Ok(token("at-2", secs(3600))));
    // Rejected after more than `backoff_max` in service: revoked, not a storm.
    sim.now += Config::default().backoff_max() + secs(1);
    sim.machine.handle_rejected(sim.now, Generation(2));
    assert_eq!(started(&sim.drain()).len(), 1);
}

/// Rule 8: a late success is adopted only if no newer token was adopted since its
/// exchange started. Here the store hands over a sibling's newer session while the
/// exchange is on the wire: its answer, when it comes, is dropped (not cancelled).
#[test]
fn rule8_a_result_overtaken_by_the_stores_newer_session_is_dropped() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::Token(
        Token::bearer("at-1", Expiry::In(secs(3600))).with_refresh_token("rt-1"),
    ));
    // The sign-in's save fails; later a 401 starts a refresh.
    sim.machine.handle_persisted(
        sim.now,
        Generation(1),
        silent_refresh::Persisted::Failed("disk full".into()),
    );
    sim.drain();
    sim.machine.handle_rejected(sim.now, Generation(1));
    let attempt = the_attempt(&sim.drain());
    // The retried save finds a sibling's newer session: adopted, and the exchange on
    // the wire is not cancelled.
    sim.at(secs(1));
    let wall = sim.wall_now();
    let sibling = Token {
        issued_at: Some(wall),
        ..Token::bearer("at-sibling", Expiry::At(wall + secs(3600))).with_refresh_token("rt-9")
    };
    sim.machine.handle_persisted(
        sim.now,
        Generation(1),
        silent_refresh::Persisted::Conflict(Box::new(sibling)),
    );
    let out = sim.drain();
    assert!(cancelled(&out).is_empty(), "{out:?}");
    assert_eq!(sim.machine.refresh_in_flight(), Some(attempt));
    // Its answer comes: dropped, the sibling's token stays.
    let out = sim.result(
        attempt,
        Ok(token("at-mine", secs(3600)).with_refresh_token("rt-2")),
    );
    assert!(out.is_empty(), "dropped: {out:?}");
    assert_eq!(sim.machine.refresh_in_flight(), None);
    let (id, out) = sim.request();
    assert_eq!(
        grants(&out),
        vec![(id, Generation(2), "at-sibling".to_owned())]
    );
}

/// Rule 13, as one key of a session with several sees it: while another key's exchange
/// is on the wire this key starts none; a rotation there is this key's credential; and
/// a dead lineage ends this key too.
#[test]
fn rule13_one_exchange_on_the_wire_for_the_lineage_and_one_credential_for_every_key() {
    let mut sim = Sim::exact();
    sim.sign_in(Credentials::RefreshToken("rt-1".into()));
    sim.machine.handle_lineage_busy(sim.now, true);
    let (id, out) = sim.request();
    assert!(
        started(&out).is_empty(),
        "another key's exchange is on the wire"
    );
    assert_eq!(
        sim.machine.poll_timeout().map(|w| w.reason),
        Some(WakeReason::RequestDeadline)
    );
    // That exchange rotated the credential: this key's refresh sends the new one.
    sim.machine.handle_rotated(sim.now, "rt-2".into());
    sim.machine.handle_lineage_busy(sim.now, false);
    match &sim.drain()[..] {
        [Action::StartRefresh { refresh_token, .. }] => {
            assert_eq!(refresh_token.as_ref().unwrap().expose(), "rt-2");
        }
        other => panic!("{other:?}"),
    }
    // Another key finds the credentials dead: this key's exchange is cancelled, and its
    // waiting request told to sign in.
    sim.machine
        .handle_lineage_dead(sim.now, "invalid_grant at another key".into());
    let out = sim.drain();
    assert_eq!(cancelled(&out).len(), 1, "{out:?}");
    match &rejects(&out)[..] {
        [(r, Error::SignInRequired { reason })] => {
            assert_eq!(*r, id);
            assert!(reason.contains("another key"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(sim.machine.status(), Status::SignInRequired(_)));
}
