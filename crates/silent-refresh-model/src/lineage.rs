//! One session, many keys (rule 13): runs of a [`Session`] with a lineage checker that
//! sees only the inputs and the session's actions, shared by the property test
//! (`tests/session_proptest.rs`) and the `session` fuzz target. It checks:
//! - one exchange on the wire for the whole lineage, from its `StartRefresh` until its
//!   result is fed;
//! - every exchange sends the lineage's newest refresh credential (a rotation by any
//!   key's exchange is every key's credential at once);
//! - a request is only ever granted a token issued for its own key;
//! - a dead lineage ends every key: no exchange until a sign-in;
//! - at the end every request got exactly one outcome.
//!
//! Each key's machine is checked against the reference model and the rules by the
//! single-key runs ([`run`](crate::run)), with the lineage inputs the session feeds it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Arbitrary;
use silent_refresh::{
    Action, AttemptId, Config, Credentials, Expiry, KeyId, Persisted, RefreshFailure, RequestId,
    Session, Token,
};

/// One step of a multi-key run.
#[derive(Clone, Debug, Arbitrary)]
pub enum LineageOp {
    /// A request for the key's token.
    Request {
        /// The key (modulo the number of keys).
        key: u8,
    },
    /// The result of the key's latest attempt.
    Result {
        /// The key.
        key: u8,
        /// What the token endpoint answered.
        answer: Answer,
    },
    /// A 401 of the key's newest granted token.
    Rejected {
        /// The key.
        key: u8,
    },
    /// The store confirms the key's last `Persist`.
    Saved {
        /// The key.
        key: u8,
    },
    /// The key's last `Persist` finds another process's session in the store: with a
    /// credential of its own (or none), and an access token for this key that is
    /// usable or already expired.
    Conflict {
        /// The key.
        key: u8,
        /// The stored session holds a refresh credential.
        credential: bool,
        /// Its access token is still usable.
        usable: bool,
    },
    /// The clock moves forward.
    Advance {
        /// By this many milliseconds.
        ms: u16,
    },
    /// The driver sleeps until the session's wake-up and calls `handle_timeout`.
    WakeUp,
    /// A sign-in with a new refresh credential.
    SignIn,
    /// A sign-out.
    SignOut,
}

/// What the token endpoint answers a key's exchange.
#[derive(Clone, Copy, Debug, Arbitrary)]
pub enum Answer {
    /// A token living `secs` seconds, with a rotated credential or not.
    Token {
        /// The answer carries a new refresh credential.
        rotate: bool,
        /// The token's lifetime, in seconds.
        secs: u8,
    },
    /// A 503.
    Transient,
    /// The connection was refused.
    Unreachable,
    /// `invalid_grant`: the credentials are dead.
    Dead,
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
        .unwrap_or_else(|error| unreachable!("the lineage runs' configuration is valid: {error}"))
}

/// What the lineage checker knows, from the inputs and the actions alone.
#[derive(Default)]
pub struct Lineage {
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
    /// A checker for a lineage whose newest credential is `newest`.
    #[must_use]
    pub fn with_credential(newest: &str) -> Self {
        Self {
            newest: Some(newest.to_owned()),
            ..Self::default()
        }
    }

    /// Checks one step's actions against the lineage rules, and books them.
    ///
    /// # Errors
    ///
    /// What broke, in words.
    pub fn observe(&mut self, actions: &[(KeyId, Action)]) -> Result<(), String> {
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

    fn credential_of(&self, key: KeyId) -> Option<String> {
        self.session
            .machine(key)
            .refresh_credential()
            .map(|secret| secret.expose().to_owned())
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

    fn step(&mut self, op: &LineageOp, keys: u8) -> Result<(), String> {
        let key_of = |k: u8| KeyId(u16::from(k % keys));
        match *op {
            LineageOp::Request { key } => {
                let key = key_of(key);
                let id = self.session.handle_request(self.now, key, None);
                self.lineage.open.insert((key, id));
            }
            LineageOp::Result { key, answer } => {
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
            LineageOp::Rejected { key } => {
                let key = key_of(key);
                if let Some(&generation) = self.lineage.generations.get(&key) {
                    self.session.handle_rejected(self.now, key, generation);
                }
            }
            LineageOp::Saved { key } => {
                let key = key_of(key);
                if let Some(&generation) = self.lineage.persisting.get(&key) {
                    self.session
                        .handle_persisted(self.now, key, generation, Persisted::Stored);
                }
            }
            LineageOp::Conflict {
                key,
                credential,
                usable,
            } => {
                let key = key_of(key);
                let Some(&generation) = self.lineage.persisting.get(&key) else {
                    return Ok(());
                };
                let access = self.secret(&format!("sibling-at{}", key.0));
                let wall = self.wall_now();
                let expiry = if usable {
                    Expiry::At(wall + Duration::from_secs(30))
                } else {
                    Expiry::At(wall - Duration::from_secs(1))
                };
                let mut stored = Token::bearer(access.as_str(), expiry);
                let sibling = credential.then(|| self.secret("sibling-rt"));
                if let Some(rt) = &sibling {
                    stored = stored.with_refresh_token(rt.as_str());
                }
                let before = self.credential_of(key);
                let generation_before = self.session.machine(key).generation();
                self.session.handle_persisted(
                    self.now,
                    key,
                    generation,
                    Persisted::Conflict(Box::new(stored)),
                );
                // Whether the key took the stored session is the machine's call (a
                // save of a token it no longer holds is ignored): it took its token
                // (a new generation), or only its credential (the token was not
                // usable). A stored token taken brings its credential, if it has one
                // (like a refresh answer: none keeps the credential in hand); a stored
                // session taken without its token brings its credential or none.
                // Either way that is the lineage's newest, for every key, and a stored
                // token taken is one issued for this key.
                let adopted_token = self.session.machine(key).generation() > generation_before;
                let after = self.credential_of(key);
                if adopted_token {
                    // Rule 8: this key's exchange on the wire was overtaken by the
                    // stored token; its result is dropped.
                    if let Some(on_wire) = self.lineage.on_wire.as_mut()
                        && on_wire.0 == key
                    {
                        on_wire.3 = true;
                    }
                    if sibling.is_some() {
                        self.lineage.newest.clone_from(&sibling);
                    }
                    self.lineage.issued.entry(key).or_default().insert(access);
                } else if after != before {
                    self.lineage.newest.clone_from(&sibling);
                }
            }
            LineageOp::Advance { ms } => self.now += Duration::from_millis(u64::from(ms)),
            LineageOp::WakeUp => {
                if let Some(wakeup) = self.session.poll_timeout() {
                    self.now = self.now.max(wakeup.at);
                }
                self.session.handle_timeout(self.now);
            }
            LineageOp::SignIn => return self.sign_in(),
            LineageOp::SignOut => {
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

/// Runs `ops` on a session of `keys` keys (at least one) whose jitter is seeded with
/// `seed`, checking the lineage rules after every step and, at the end, that every
/// request got its outcome.
///
/// # Errors
///
/// The first rule broken, in words.
pub fn run_session(keys: u8, seed: u64, ops: &[LineageOp]) -> Result<(), String> {
    let keys = keys.max(1);
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
