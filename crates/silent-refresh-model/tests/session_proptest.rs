#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One session, many keys (rule 13), on random runs: requests for several keys,
//! results (rotating, failing, dead), 401s, sign-ins and time. After every step a
//! lineage checker, which sees only the inputs and the session's actions, checks:
//! - one exchange on the wire for the whole lineage, from its `StartRefresh` until its
//!   result is fed;
//! - every exchange sends the lineage's newest refresh credential (a rotation by any
//!   key's exchange is every key's credential at once);
//! - a request is only ever granted a token issued for its own key;
//! - a dead lineage ends every key: no exchange until a sign-in, every waiting request
//!   answered;
//! - at the end every request got exactly one outcome.
//!
//! Each key's machine is checked against the reference model and the rules by
//! `model_proptest.rs` (with the lineage inputs the session feeds it).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;
use silent_refresh::{
    Action, AttemptId, Config, Credentials, Error, Expiry, KeyId, Persisted, RefreshFailure,
    RequestId, Secret, Session, Token,
};

#[derive(Clone, Debug)]
enum Op {
    Request { key: u8 },
    Result { key: u8, answer: Answer },
    Rejected { key: u8 },
    Saved { key: u8 },
    Advance { ms: u16 },
    WakeUp,
    SignIn,
    SignOut,
}

#[derive(Clone, Copy, Debug)]
enum Answer {
    Token { rotate: bool, secs: u8 },
    Transient,
    Unreachable,
    Dead,
}

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
        2 => key.prop_map(|key| Op::Saved { key }),
        4 => (0u16..3000).prop_map(|ms| Op::Advance { ms }),
        6 => Just(Op::WakeUp),
        1 => Just(Op::SignIn),
        1 => Just(Op::SignOut),
    ]
}

fn config(seed: u64) -> Config {
    let ms = Duration::from_millis;
    Config::builder()
        .seed(seed)
        .refresh_threshold(ms(2000))
        .safety_margin(ms(400))
        .refresh_timeout(ms(1000))
        .request_timeout(ms(1500))
        .backoff_initial(ms(100))
        .backoff_max(ms(1600))
        .max_retry_after(ms(2000))
        .build()
        .unwrap()
}

/// What the lineage checker knows, from the inputs and the actions alone.
#[derive(Default)]
struct Lineage {
    /// The exchange on the wire: its key, its attempt, the credential it sent, and
    /// whether new credentials came since (its result is then dropped).
    on_wire: Option<(KeyId, AttemptId, Option<String>, bool)>,
    /// The newest credential of the lineage.
    newest: Option<String>,
    /// The credentials are dead: nothing starts until a sign-in.
    dead: bool,
    /// The access tokens issued for each key (by results fed to it, and at sign-in).
    issued: BTreeMap<KeyId, BTreeSet<String>>,
    /// Requests waiting, per key.
    open: BTreeSet<(KeyId, RequestId)>,
    /// The latest attempt of each key (what a result is fed for).
    attempts: BTreeMap<KeyId, AttemptId>,
    /// The current generation of each key, as granted.
    generations: BTreeMap<KeyId, silent_refresh::Generation>,
    /// The generation each key asked to persist last.
    persisting: BTreeMap<KeyId, silent_refresh::Generation>,
}

impl Lineage {
    fn observe(&mut self, actions: &[(KeyId, Action)]) -> Result<(), String> {
        for (key, action) in actions {
            match action {
                Action::StartRefresh {
                    attempt,
                    refresh_token,
                } => {
                    if let Some((other, busy, ..)) = &self.on_wire {
                        return Err(format!(
                            "{key:?} started {attempt} while {other:?}'s {busy} is on the wire"
                        ));
                    }
                    if self.dead {
                        return Err(format!("{key:?} started {attempt} on dead credentials"));
                    }
                    let sent = refresh_token.as_ref().map(|s| s.expose().to_owned());
                    if sent.is_some() && sent != self.newest {
                        return Err(format!(
                            "{key:?}'s {attempt} sent {sent:?}, the lineage's newest is {:?}",
                            self.newest
                        ));
                    }
                    self.on_wire = Some((*key, *attempt, sent, false));
                    self.attempts.insert(*key, *attempt);
                }
                Action::Grant { request, token } => {
                    if !self.open.remove(&(*key, *request)) {
                        return Err(format!("{key:?} granted {request}, not waiting there"));
                    }
                    let access = token.secret.expose().to_owned();
                    if !self
                        .issued
                        .get(key)
                        .is_some_and(|set| set.contains(&access))
                    {
                        return Err(format!(
                            "{key:?}'s {request} granted a token not issued for {key:?}"
                        ));
                    }
                    self.generations.insert(*key, token.generation);
                }
                Action::Reject { request, .. } => {
                    if !self.open.remove(&(*key, *request)) {
                        return Err(format!("{key:?} rejected {request}, not waiting there"));
                    }
                }
                Action::Persist { generation, .. } => {
                    self.persisting.insert(*key, *generation);
                }
                Action::CancelRefresh { .. } | Action::Forget => {}
            }
        }
        Ok(())
    }
}

struct Run {
    session: Session,
    lineage: Lineage,
    start: Instant,
    now: Instant,
    wall: SystemTime,
    next_secret: u32,
}

impl Run {
    fn secret(&mut self, prefix: &str) -> String {
        self.next_secret += 1;
        format!("{prefix}-{}", self.next_secret)
    }

    fn drain(&mut self) -> Result<(), String> {
        let actions: Vec<_> = std::iter::from_fn(|| self.session.poll_action()).collect();
        while self.session.poll_event().is_some() {}
        self.lineage.observe(&actions)
    }

    fn wall_now(&self) -> SystemTime {
        self.wall + (self.now - self.start)
    }

    fn sign_in(&mut self) -> Result<(), String> {
        let credential = self.secret("rt");
        self.lineage.newest = Some(credential.clone());
        self.lineage.dead = false;
        if let Some(on_wire) = self.lineage.on_wire.as_mut() {
            on_wire.3 = true;
        }
        let wall = self.wall_now();
        self.session
            .handle_sign_in(self.now, wall, Credentials::RefreshToken(credential.into()));
        self.drain()
    }

    fn step(&mut self, op: &Op, keys: u8) -> Result<(), String> {
        let key_of = |k: u8| KeyId(u16::from(k % keys));
        match *op {
            Op::Request { key } => {
                let key = key_of(key);
                let id = self.session.handle_request(self.now, key, None);
                self.lineage.open.insert((key, id));
            }
            Op::Result { key, answer } => {
                let key = key_of(key);
                let Some(&attempt) = self.lineage.attempts.get(&key) else {
                    return Ok(());
                };
                let on_wire = self
                    .lineage
                    .on_wire
                    .clone()
                    .filter(|(k, a, ..)| *k == key && *a == attempt);
                let result = match answer {
                    Answer::Token { rotate, secs } => {
                        let access = self.secret(&format!("at{}", key.0));
                        let mut token = Token::bearer(
                            access.as_str(),
                            Expiry::In(Duration::from_secs(u64::from(secs))),
                        );
                        if rotate {
                            token = token.with_refresh_token(self.secret("rt").as_str());
                        }
                        self.lineage.issued.entry(key).or_default().insert(access);
                        Ok(token)
                    }
                    Answer::Transient => Err(RefreshFailure::transient("503")),
                    Answer::Unreachable => Err(RefreshFailure::unreachable("refused")),
                    Answer::Dead => Err(RefreshFailure::terminal("invalid_grant")),
                };
                if let Some((_, _, _, superseded)) = on_wire {
                    self.lineage.on_wire = None;
                    if !superseded {
                        match &result {
                            Ok(token) => {
                                if let Some(rt) = &token.refresh_token {
                                    self.lineage.newest = Some(rt.expose().to_owned());
                                }
                            }
                            Err(failure) if failure.is_terminal() => self.lineage.dead = true,
                            Err(_) => {}
                        }
                    }
                }
                self.session
                    .handle_refresh_result(self.now, key, attempt, result);
            }
            Op::Rejected { key } => {
                let key = key_of(key);
                if let Some(&generation) = self.lineage.generations.get(&key) {
                    self.session.handle_rejected(self.now, key, generation);
                }
            }
            Op::Saved { key } => {
                let key = key_of(key);
                if let Some(&generation) = self.lineage.persisting.get(&key) {
                    self.session
                        .handle_persisted(self.now, key, generation, Persisted::Stored);
                }
            }
            Op::Advance { ms } => self.now += Duration::from_millis(u64::from(ms)),
            Op::WakeUp => {
                if let Some(wakeup) = self.session.poll_timeout() {
                    self.now = self.now.max(wakeup.at);
                }
                self.session.handle_timeout(self.now);
            }
            Op::SignIn => return self.sign_in(),
            Op::SignOut => {
                self.lineage.newest = None;
                if let Some(on_wire) = self.lineage.on_wire.as_mut() {
                    on_wire.3 = true;
                }
                self.session.handle_sign_out(self.now);
            }
        }
        self.drain()
    }
}

fn run(keys: u8, seed: u64, ops: &[Op]) -> Result<(), String> {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut session = Session::new(config(seed), start, wall);
    for _ in 1..keys {
        session.add_key();
    }
    let mut run = Run {
        session,
        lineage: Lineage::default(),
        start,
        now: start,
        wall,
        next_secret: 0,
    };
    run.sign_in()?;
    for (n, op) in ops.iter().enumerate() {
        run.step(op, keys)
            .map_err(|e| format!("step {}: {op:?}: {e}", n + 1))?;
    }
    // The end: the exchange on the wire fails, and time passes every deadline.
    if let Some((key, attempt, ..)) = run.lineage.on_wire.take() {
        run.session.handle_refresh_result(
            run.now,
            key,
            attempt,
            Err(RefreshFailure::transient("the run ends")),
        );
        run.drain()?;
    }
    run.now += Duration::from_secs(60);
    run.session.handle_timeout(run.now);
    run.drain()?;
    if let Some((key, request)) = run.lineage.open.iter().next() {
        return Err(format!("{key:?}'s {request} never got an outcome"));
    }
    Ok(())
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
    let mut lineage = Lineage {
        newest: Some("rt-1".into()),
        ..Lineage::default()
    };
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
    let _ = Error::SignedOut;
}
