//! One session, many keys (rule 13): a refresh credential (the lineage) and an access
//! token per key (a resource or audience, a scope), each key with its own window,
//! waiting requests and generations, all exchanges that present the credential one at
//! a time.
//!
//! A [`Session`] runs one [`TokenMachine`] per key and keeps the lineage rules between
//! them: while one key's exchange is on the wire every other key is told the lineage is
//! busy (it starts none); a credential one key's exchange rotated becomes every key's;
//! a dead credential ends every key. Which key gets the lineage next, when several wait,
//! goes round in turn.
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use silent_refresh::{Action, Config, Credentials, Expiry, KeyId, Session, Token};
//!
//! let start = Instant::now();
//! let mut session = Session::new(Config::default(), start, SystemTime::now());
//! let api = session.add_key(); // a second API: its own token, the same refresh token
//! session.handle_sign_in(start, SystemTime::now(), Credentials::RefreshToken("rt-1".into()));
//! let a = session.handle_request(start, KeyId::DEFAULT, None);
//! let b = session.handle_request(start, api, None);
//! // One exchange on the wire, for the default key; the API's waits for the lineage.
//! let Some((KeyId::DEFAULT, Action::StartRefresh { attempt, .. })) = session.poll_action() else {
//!     panic!("the default key refreshes first");
//! };
//! assert!(session.poll_action().is_none());
//! let token = Token::bearer("at-1", Expiry::In(Duration::from_secs(3600))).with_refresh_token("rt-2");
//! session.handle_refresh_result(start, KeyId::DEFAULT, attempt, Ok(token));
//! let actions: Vec<_> = std::iter::from_fn(|| session.poll_action()).collect();
//! // The default key's token is stored and granted; the API's refresh starts, with the
//! // rotated credential.
//! assert!(actions.iter().any(|(key, action)| *key == KeyId::DEFAULT
//!     && matches!(action, Action::Grant { request, .. } if *request == a)));
//! assert!(actions.iter().any(|(key, action)| *key == api
//!     && matches!(action, Action::StartRefresh { refresh_token: Some(rt), .. } if rt.expose() == "rt-2")));
//! # let _ = b;
//! ```

use crate::time::{Instant, SystemTime};
use std::collections::VecDeque;
use std::sync::Arc;

use crate::action::{Action, Wakeup};
use crate::config::Config;
use crate::event::Event;
use crate::failure::RefreshFailure;
use crate::ids::{AttemptId, RequestId};
use crate::machine::TokenMachine;
use crate::persist::Persisted;
use crate::secret::Secret;
use crate::status::Status;
use crate::token::{Credentials, Generation, Token};

/// Which access token of a session: the index [`Session::add_key`] gave it. The driver
/// maps it to what the token is for (a resource indicator, an audience, a scope); the
/// session only keeps the keys apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub u16);

impl KeyId {
    /// The session's first key: the token asked for without a resource.
    pub const DEFAULT: KeyId = KeyId(0);
}

/// One [`TokenMachine`] per key, one refresh credential for all (rule 13).
///
/// Inputs (`handle_*`) name the key they are for, or are for every key (sign-in,
/// sign-out, time, the wall clock); outputs come out of [`poll_action`](Self::poll_action)
/// with their key. Request and attempt ids are per key.
#[derive(Debug)]
pub struct Session {
    keys: Vec<TokenMachine>,
    config: Config,
    now: Instant,
    wall_now: SystemTime,
    /// The exchange on the wire for the lineage, and its key.
    on_wire: Option<(KeyId, AttemptId)>,
    /// The key after the last one that had the lineage (it goes round in turn).
    turn: usize,
    /// What a key added later signs in with: the lineage's newest credential, or that
    /// its refresher authenticates by itself.
    lineage: Option<Lineage>,
    /// Keys that may have actions queued, in the order they got them (each once, so it
    /// is bounded by the number of keys): the outputs stay in each key's machine until
    /// polled, with no copy on the hot path.
    pending: VecDeque<KeyId>,
    listed: Vec<bool>,
}

/// What every key of a signed-in session shares.
#[derive(Clone, Debug)]
enum Lineage {
    Credential(Secret),
    SelfAuthenticating,
}

impl Session {
    /// A session with one key ([`KeyId::DEFAULT`]) and no credentials yet.
    pub fn new(config: Config, now: Instant, wall_now: SystemTime) -> Self {
        Self {
            keys: vec![TokenMachine::new(config.clone(), now, wall_now)],
            config,
            now,
            wall_now,
            on_wire: None,
            turn: 0,
            lineage: None,
            pending: VecDeque::new(),
            listed: vec![false],
        }
    }

    /// Adds a key: a machine of its own (its jitter seeded apart), signed in with the
    /// lineage's credential when the session is signed in, busy if an exchange is on
    /// the wire.
    ///
    /// # Panics
    ///
    /// Past 65 536 keys.
    pub fn add_key(&mut self) -> KeyId {
        let key = KeyId(u16::try_from(self.keys.len()).expect("at most 65 536 keys"));
        let config = Config {
            seed: self.config.seed ^ u64::from(key.0).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            ..self.config.clone()
        };
        let mut machine = TokenMachine::new(config, self.now, self.wall_now);
        if let Some(credentials) = self.lineage_credentials() {
            machine.handle_sign_in(self.now, self.wall_now, credentials);
        }
        if self.on_wire.is_some() {
            machine.handle_lineage_busy(self.now, true);
        }
        self.keys.push(machine);
        self.listed.push(false);
        self.touched(key);
        key
    }

    /// How many keys the session has.
    #[must_use]
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// The machine of `key` (its getters: status, generation, fresh token…).
    ///
    /// # Panics
    ///
    /// For a key this session did not give.
    #[must_use]
    pub fn machine(&self, key: KeyId) -> &TokenMachine {
        &self.keys[usize::from(key.0)]
    }

    /// The session's time: the latest instant an input brought.
    #[must_use]
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The exchange on the wire for the lineage, and its key.
    #[must_use]
    pub fn refresh_in_flight(&self) -> Option<(KeyId, AttemptId)> {
        self.on_wire
    }

    /// Where the session stands: the default key's status (the keys share their
    /// credential, so they end together).
    #[must_use]
    pub fn status(&self) -> &Status {
        self.keys[0].status()
    }

    // ----- inputs --------------------------------------------------------------------

    /// A request for `key`'s token (see [`TokenMachine::handle_request`]).
    pub fn handle_request(
        &mut self,
        now: Instant,
        key: KeyId,
        deadline: Option<Instant>,
    ) -> RequestId {
        self.tick(now);
        let id = self.key_mut(key).handle_request(now, deadline);
        self.touched(key);
        id
    }

    /// A request of `key` was cancelled.
    pub fn handle_cancel(&mut self, now: Instant, key: KeyId, request: RequestId) {
        self.tick(now);
        self.key_mut(key).handle_cancel(now, request);
        self.touched(key);
    }

    /// A request with `key`'s token of `generation` was rejected (401).
    pub fn handle_rejected(&mut self, now: Instant, key: KeyId, generation: Generation) {
        self.tick(now);
        self.key_mut(key).handle_rejected(now, generation);
        self.touched(key);
    }

    /// What became of a `Persist` of `key`. A conflict whose stored session the key
    /// adopts brings the lineage's credential with it (another process refreshed): it
    /// becomes every key's, as a rotation does; a stored session with no credential
    /// leaves the lineage nothing to refresh with, so every other key ends as on a dead
    /// credential (the key itself fails at its next refresh, see
    /// [`TokenMachine::handle_persisted`]).
    pub fn handle_persisted(
        &mut self,
        now: Instant,
        key: KeyId,
        generation: Generation,
        outcome: Persisted,
    ) {
        self.tick(now);
        let conflict = matches!(outcome, Persisted::Conflict(_));
        let machine = self.key_mut(key);
        let before = machine.refresh_credential().cloned();
        let self_authenticating = machine.is_self_authenticating();
        machine.handle_persisted(now, generation, outcome);
        let after = machine.refresh_credential().cloned();
        self.touched(key);
        if !conflict || before.as_ref().map(Secret::expose) == after.as_ref().map(Secret::expose) {
            return;
        }
        match after {
            Some(credential) => {
                self.lineage = Some(Lineage::Credential(credential.clone()));
                self.for_others(key, |machine, now| {
                    machine.handle_rotated(now, credential.clone());
                });
            }
            None if !self_authenticating => {
                self.lineage = None;
                let reason: Arc<str> =
                    "another process's stored session, which replaced this one, \
                                        has no refresh token: sign in again"
                        .into();
                self.for_others(key, |machine, now| {
                    machine.handle_lineage_dead(now, reason.clone());
                });
            }
            None => {}
        }
    }

    /// The result of `key`'s exchange. The lineage is free again once the exchange on
    /// the wire is over; a rotated credential becomes every key's, and a dead one ends
    /// every key.
    pub fn handle_refresh_result(
        &mut self,
        now: Instant,
        key: KeyId,
        attempt: AttemptId,
        result: Result<Token, RefreshFailure>,
    ) {
        self.tick(now);
        let ends_exchange = self.on_wire == Some((key, attempt));
        let rotated = match &result {
            Ok(token) => token.refresh_token.clone(),
            Err(_) => None,
        };
        let reason: Arc<str> = match &result {
            Err(failure) => failure.message.as_str().into(),
            Ok(_) => "".into(),
        };
        let machine = self.key_mut(key);
        let (generation, signed_in) = (machine.generation(), machine.status().is_signed_in());
        machine.handle_refresh_result(now, attempt, result);
        // What the key's machine made of it: a result superseded by new credentials is
        // dropped, and changes nothing for the others either.
        let adopted = machine.generation() > generation;
        let dead = signed_in && matches!(machine.status(), Status::SignInRequired(_));
        if ends_exchange {
            // Freed before the key is looked at: it may start again at once (a token
            // already in its window), and then keeps the lineage.
            self.on_wire = None;
        }
        self.touched(key);
        if !ends_exchange {
            return;
        }
        if let Some(credential) = rotated.filter(|_| adopted) {
            self.lineage = Some(Lineage::Credential(credential.clone()));
            self.for_others(key, |machine, now| {
                machine.handle_rotated(now, credential.clone());
            });
        }
        if dead {
            self.lineage = None;
            self.for_others(key, |machine, now| {
                machine.handle_lineage_dead(now, reason.clone());
            });
        }
        if self.on_wire.is_none() {
            self.release(key);
        }
    }

    /// Signs every key in: the default key with `credentials`, every other with the
    /// lineage they carry (the refresh credential, or a refresher that authenticates by
    /// itself). See [`TokenMachine::handle_sign_in`].
    pub fn handle_sign_in(&mut self, now: Instant, wall_now: SystemTime, credentials: Credentials) {
        self.tick(now);
        self.wall_now = wall_now;
        self.lineage = match &credentials {
            Credentials::RefreshToken(secret) => Some(Lineage::Credential(secret.clone())),
            Credentials::Token(token) | Credentials::Stored(token) => {
                token.refresh_token.clone().map(Lineage::Credential)
            }
            Credentials::ClientCredentials { .. } => Some(Lineage::SelfAuthenticating),
        };
        let others = self.lineage_credentials();
        self.keys[0].handle_sign_in(now, wall_now, credentials);
        self.touched(KeyId::DEFAULT);
        // Without a lineage (a token without refresh credential) the other keys have
        // nothing to sign in with: they keep waiting for one.
        if let Some(others) = others {
            for index in 1..self.keys.len() {
                let key = KeyId(u16::try_from(index).unwrap_or(u16::MAX));
                self.key_mut(key)
                    .handle_sign_in(now, wall_now, others.clone());
                self.touched(key);
            }
        }
    }

    /// Adopts a stored token for `key` (loaded with the session): see
    /// [`Credentials::Stored`]. Its refresh credential, if it has one, becomes the
    /// lineage's.
    pub fn handle_stored(&mut self, now: Instant, wall_now: SystemTime, key: KeyId, token: Token) {
        self.tick(now);
        self.wall_now = wall_now;
        if let Some(credential) = token.refresh_token.clone() {
            self.lineage = Some(Lineage::Credential(credential));
        }
        self.key_mut(key)
            .handle_sign_in(now, wall_now, Credentials::Stored(token));
        self.touched(key);
    }

    /// Signs every key out (see [`TokenMachine::handle_sign_out`]).
    pub fn handle_sign_out(&mut self, now: Instant) {
        self.tick(now);
        self.lineage = None;
        for index in 0..self.keys.len() {
            let key = KeyId(u16::try_from(index).unwrap_or(u16::MAX));
            self.key_mut(key).handle_sign_out(now);
            self.touched(key);
        }
    }

    /// A reading of the wall clock, for every key.
    pub fn handle_wall_clock(&mut self, now: Instant, wall_now: SystemTime) {
        self.tick(now);
        self.wall_now = wall_now;
        for index in 0..self.keys.len() {
            let key = KeyId(u16::try_from(index).unwrap_or(u16::MAX));
            self.key_mut(key).handle_wall_clock(now, wall_now);
            self.touched(key);
        }
    }

    /// Time passed, for every key (in turn, so that the lineage goes to the next key
    /// that needs it).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        let count = self.keys.len();
        for step in 0..count {
            let index = (self.turn + step) % count;
            let key = KeyId(u16::try_from(index).unwrap_or(u16::MAX));
            self.key_mut(key).handle_timeout(now);
            self.touched(key);
        }
    }

    // ----- outputs -------------------------------------------------------------------

    /// The next action and its key; call until `None`. Each key's actions come in
    /// their order (a `Persist` before the `Grant`s of its token).
    #[must_use]
    pub fn poll_action(&mut self) -> Option<(KeyId, Action)> {
        while let Some(&key) = self.pending.front() {
            if let Some(action) = self.keys[usize::from(key.0)].poll_action() {
                return Some((key, action));
            }
            self.pending.pop_front();
            self.listed[usize::from(key.0)] = false;
        }
        None
    }

    /// The next event and its key; call until `None` after the actions.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<(KeyId, Event)> {
        for (index, machine) in self.keys.iter_mut().enumerate() {
            if let Some(event) = machine.poll_event() {
                return Some((KeyId(u16::try_from(index).unwrap_or(u16::MAX)), event));
            }
        }
        None
    }

    /// The earliest wake-up any key wants (now, while actions are queued).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Wakeup> {
        self.keys
            .iter()
            .filter_map(TokenMachine::poll_timeout)
            .min_by_key(|w| w.at)
    }

    // ----- the lineage ---------------------------------------------------------------

    /// Moves time forward (never back).
    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    fn key_mut(&mut self, key: KeyId) -> &mut TokenMachine {
        &mut self.keys[usize::from(key.0)]
    }

    /// The credentials a key other than the default signs in with.
    fn lineage_credentials(&self) -> Option<Credentials> {
        match &self.lineage {
            Some(Lineage::Credential(secret)) => Some(Credentials::RefreshToken(secret.clone())),
            Some(Lineage::SelfAuthenticating) => {
                Some(Credentials::ClientCredentials { token: None })
            }
            None => None,
        }
    }

    /// After an input to `key`: its outputs are pending; if it started an exchange, the
    /// exchange is on the wire for the lineage, and every other key is told the lineage
    /// is busy.
    fn touched(&mut self, key: KeyId) {
        self.list(key);
        let index = usize::from(key.0);
        if self.on_wire.is_none()
            && let Some(attempt) = self.keys[index].refresh_in_flight()
        {
            self.on_wire = Some((key, attempt));
            self.turn = (index + 1) % self.keys.len();
            self.for_others(key, |machine, now| machine.handle_lineage_busy(now, true));
        }
    }

    /// Feeds every key but `key`. A key that starts an exchange on the input (a
    /// credential arrived while the lineage was free) takes the lineage, and the keys
    /// fed after it find it busy.
    fn for_others(&mut self, key: KeyId, mut input: impl FnMut(&mut TokenMachine, Instant)) {
        let now = self.now;
        for index in 0..self.keys.len() {
            if index == usize::from(key.0) {
                continue;
            }
            input(&mut self.keys[index], now);
            self.touched(KeyId(u16::try_from(index).unwrap_or(u16::MAX)));
        }
    }

    /// Lists `key` as one that may have actions queued.
    fn list(&mut self, key: KeyId) {
        let listed = &mut self.listed[usize::from(key.0)];
        if !*listed {
            *listed = true;
            self.pending.push_back(key);
        }
    }

    /// The exchange of `key` is over: the lineage is free. Keys are told in turn,
    /// starting after the last key that had it; the first that starts an exchange takes
    /// the lineage, and the ones after it stay busy.
    fn release(&mut self, key: KeyId) {
        let now = self.now;
        let count = self.keys.len();
        let from = if count > 0 { self.turn % count } else { 0 };
        for step in 0..count {
            let index = (from + step) % count;
            if index == usize::from(key.0) {
                continue;
            }
            let other = KeyId(u16::try_from(index).unwrap_or(u16::MAX));
            if self.on_wire.is_some() {
                break;
            }
            self.keys[index].handle_lineage_busy(now, false);
            self.touched(other);
        }
        // The key whose exchange ended may need another one, if nobody took the lineage.
        if self.on_wire.is_none() {
            self.keys[usize::from(key.0)].handle_timeout(now);
            self.touched(key);
        }
    }
}
