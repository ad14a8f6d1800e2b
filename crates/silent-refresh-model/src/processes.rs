//! Several processes sharing one token store (rule 1's "with a shared store", rule 9's
//! compare-and-swap), simulated deterministically on one thread.
//!
//! Each process is a real [`Kernel`] of `silent-refresh-driver`, driven the way the
//! adapters' driver loops drive it (`take_work`, `prepare_exchange`, `exchange_result`,
//! `store_io`, `timeout`), but every blocking wait and every exchange is an explicit step
//! of a script ([`ProcOp`]), so an interleaving is replayed exactly. The processes share
//! one [`ManualClock`], one in-memory store (`SimStore`) with a lock between processes,
//! and one simulated identity server ([`Server`]) that rotates refresh credentials and
//! detects reuse (a credential presented twice revokes its grant).
//!
//! # The shared store
//!
//! The store behaves as the file store does, or as a Redis store with a lease will
//! ([`LockKind`]):
//! - `lock_for_refresh` takes the lock between processes: free, or held by another
//!   process (the simulation calls the kernel's `prepare_exchange` only when the lock is
//!   free, or once the kernel's wait for it, `refresh_timeout`, has passed: then it fails
//!   as a blocking wait would).
//! - [`LockKind::Flock`]: the lock never expires, and is released when its holder drops
//!   it or dies (the operating system releases a dead process's `flock`).
//! - [`LockKind::Lease`]: a lease with a time to live, as a Redis `SET NX PX` lease. It
//!   expires at its TTL (or when the script says: eviction, a paused holder) and is *not*
//!   released by a holder's death, only by its expiry. Every lease has a fencing number.
//! - Saves are compare-and-swap on the refresh credential `from` the token was refreshed
//!   from (empty store, or the store holds `from`, or already this token: written;
//!   otherwise [`Saved::Conflict`] with what it holds), as the file store does. A save
//!   through a lock whose lease was taken by another holder never writes: it answers
//!   `Conflict` when the store no longer holds `from` (there is a newer session to
//!   adopt), and otherwise an error (`StoreLocked`: the save is retried). A save or a
//!   forget without the lock (a retried save, a sign-out) is refused with `StoreLocked`
//!   while another process holds a live lock, as the file store's `save` is after its
//!   lock timeout.
//! - The script can make the next writes fail (a full disk, Redis down).
//!
//! # The invariants, checked after every step
//!
//! 1. **One exchange on the wire** ([`ProcViolationKind::TwoExchangesOnTheWire`],
//!    [`ProcViolationKind::ExchangeWithoutLock`]): every exchange sent holds the store's
//!    lock, and at any moment at most one exchange on the wire holds a live lock. An
//!    exchange whose lease expired (or was taken by another) may still be on the wire
//!    beside the new holder's: that is what a lease that can expire allows, and why its
//!    save is fenced. With [`LockKind::Flock`] no lock expires, so this is "at most one
//!    exchange on the wire across all processes". A process killed with its exchange on
//!    the wire: the server has processed the request or never will (the script says
//!    which), at the kill.
//! 2. **No credential presented twice** ([`ProcViolationKind::CredentialPresentedTwice`]):
//!    the server never sees one refresh credential twice, except when
//!    - its grant was *orphaned* before: the grant's newest credential was lost by an
//!      unknown outcome (a process killed while its exchange was on the wire or before
//!      it saved the answer, an exchange aborted past its deadline after the server
//!      processed it, an answer lost on the way back after the server processed it).
//!      The process or its siblings then send the only credential they have, the spent
//!      one; the server revokes the grant (documented: "What no store can promise").
//!    - an exchange presenting it was on the wire when its lease stopped being live
//!      (expired, or taken by another holder after its expiry);
//!    - its grant is already dead at the server (revoked, signed out): the server
//!      refuses it and nothing more is lost;
//!    - its grant was abandoned: a later sign-in replaced it (new credentials win, and
//!      an exchange superseded by a sign-in or sign-out has its answer dropped, so the
//!      siblings still on the old grant may present a credential it spent).
//! 3. **No stale overwrite** ([`ProcViolationKind::StaleOverwrite`]): a save of a
//!    refreshed token (`from` given) replaces only an older token of the same grant, as
//!    the server orders them; it never replaces the grant's newer token nor another
//!    session. A sign-in's save (`from` absent) replaces whatever the store holds: new
//!    credentials win.
//! 4. **Exactly once** ([`ProcViolationKind::TwoOutcomes`], [`ProcViolationKind::NoOutcome`]):
//!    no request gets two outcomes; at the end (after every exchange is answered and
//!    time has passed every deadline) every request of a live process has exactly one.
//!    A killed process's requests die with it.
//! 5. **The session is never lost** ([`ProcViolationKind::SessionLost`]): for every grant
//!    the server still considers alive, that is not orphaned (see 2) and not abandoned
//!    (another sign-in's save replaced it in the store): its newest refresh credential is
//!    in the store, or a live process holds it as its current token with its save
//!    pending (not durable yet). A step that is not an unknown outcome (kill, abort after
//!    the server processed the request, answer lost after the server processed it) must
//!    not lose it.
//! 6. **Never expired** ([`ProcViolationKind::ExpiredTokenGranted`]): no request is
//!    granted an access token the server considers expired.
//!
//! The driver loop is bounded ([`ProcViolationKind::DriverSpins`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arbitrary::Arbitrary;
use silent_refresh::{
    AttemptId, Config, Credentials, Expiry, Generation, RefreshFailure, RefreshMode, Secret,
    Status, Token,
};
use silent_refresh_driver::Error as StoreError;
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::kernel::{
    Command, Kernel, Outcome, Prepared, Start, StoreIo, TokenChange, Waiter, Wake, Work,
};
use silent_refresh_driver::store::{Saved, StoreLock, TokenStore};

/// How the store's lock between processes behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum LockKind {
    /// An operating-system file lock: never expires, released when dropped or when its
    /// process dies.
    Flock,
    /// A lease with a time to live (`5 + ttl % 86` seconds), as a Redis lease: it expires
    /// and is not released when its holder dies.
    Lease {
        /// The time to live, picked.
        ttl: u8,
    },
}

/// The shape of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub struct ProcSetup {
    /// How many processes: `2 + processes % 3` (2 to 4).
    pub processes: u8,
    /// The store's lock between processes.
    pub lock: LockKind,
    /// The lifetime of the access tokens the server issues: `10 + token_ttl % 191` s.
    pub token_ttl: u8,
    /// Whether the processes run in wait-for-fresh mode.
    pub wait_for_fresh: bool,
    /// Seed of the processes' jitter.
    pub seed: u8,
}

impl Default for ProcSetup {
    fn default() -> Self {
        Self {
            processes: 0,
            lock: LockKind::Flock,
            token_ttl: 50,
            wait_for_fresh: false,
            seed: 0,
        }
    }
}

impl ProcSetup {
    /// How many processes run (2 to 4).
    #[must_use]
    pub fn process_count(&self) -> usize {
        2 + usize::from(self.processes % 3)
    }

    /// The lifetime of the server's access tokens.
    #[must_use]
    pub fn token_lifetime(&self) -> Duration {
        Duration::from_secs(10 + u64::from(self.token_ttl % 191))
    }

    /// The lease's time to live (`None`: a lock that does not expire).
    #[must_use]
    pub fn lease_ttl(&self) -> Option<Duration> {
        match self.lock {
            LockKind::Flock => None,
            LockKind::Lease { ttl } => Some(Duration::from_secs(5 + u64::from(ttl % 86))),
        }
    }

    /// The configuration of process `index` in its `incarnation` (each its own seed).
    fn config(&self, index: usize, incarnation: u32) -> Config {
        let mode = if self.wait_for_fresh {
            RefreshMode::WaitForFresh
        } else {
            RefreshMode::StaleWhileRefreshing
        };
        let seed = (u64::from(self.seed) << 16) ^ ((index as u64) << 8) ^ u64::from(incarnation);
        Config::builder()
            .mode(mode)
            .seed(seed)
            .build()
            .unwrap_or_default()
    }
}

/// What the server does with the request of an exchange the script completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum AnswerPick {
    /// The server processes it and the answer arrives: a rotated token, or
    /// `invalid_grant` (a spent, unknown or revoked credential).
    Answered,
    /// The server processes it, but the answer is lost on the way back: the process sees
    /// a transient failure (connection reset) and the server has rotated the credential.
    LostAfterServer,
    /// The server does not process it (a 503 from a proxy): a transient failure.
    ServerError,
}

/// One step of a script; `process` is taken modulo the number of processes, and a step
/// that does not apply (a dead process, no exchange on the wire) does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Arbitrary)]
pub enum ProcOp {
    /// The shared clock moves forward this many milliseconds (then every driver wakes).
    Advance(u16),
    /// The clock moves forward by whole seconds (at most 255).
    AdvanceSeconds(u8),
    /// A process asks for a token (default deadline).
    Request {
        /// Which process.
        process: u8,
    },
    /// The exchange on the wire of a process ends.
    Answer {
        /// Which process.
        process: u8,
        /// What the server does.
        answer: AnswerPick,
    },
    /// The adapter aborts an exchange the kernel asked to cancel (tokio's abort); its
    /// lock is dropped and its outcome is unknown to the process.
    Abort {
        /// Which process.
        process: u8,
        /// Whether the server had processed the request (rotated the credential).
        processed: bool,
    },
    /// A request with the current token of a process was rejected (401).
    Reject {
        /// Which process.
        process: u8,
    },
    /// The current lease expires now (eviction, a paused holder); nothing with a flock.
    ExpireLease,
    /// A process is killed (`SIGKILL`): its exchange's outcome is unknown, its pending
    /// saves are lost, its flock released (a lease stays until it expires).
    Kill {
        /// Which process.
        process: u8,
        /// Whether the server had processed its exchange on the wire, if any.
        processed: bool,
    },
    /// A dead process starts again, from the store.
    Restart {
        /// Which process.
        process: u8,
    },
    /// A process signs out (the program revokes the grant at the server too).
    SignOut {
        /// Which process.
        process: u8,
    },
    /// A process signs in anew: the server issues a new grant.
    SignIn {
        /// Which process.
        process: u8,
    },
    /// The store's next `count % 4 + 1` writes fail.
    FailWrites {
        /// How many, picked.
        count: u8,
    },
    /// The server revokes the current grant (an administrator, a password change).
    Revoke,
}

/// A script: a setup and its steps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Script {
    /// The shape of the run.
    pub setup: ProcSetup,
    /// The steps.
    pub ops: Vec<ProcOp>,
}

/// The longest script run (longer input is cut).
pub const MAX_OPS: usize = 256;

/// Bytes → a script (input that runs out leaves defaults).
#[must_use]
pub fn decode_script(bytes: &[u8]) -> Script {
    let mut input = arbitrary::Unstructured::new(bytes);
    let setup = input.arbitrary().unwrap_or_default();
    let mut ops: Vec<ProcOp> = input.arbitrary().unwrap_or_default();
    ops.truncate(MAX_OPS);
    Script { setup, ops }
}

/// The fuzz target `processes`: bytes → a script, run with every invariant checked.
///
/// # Errors
///
/// The first invariant broken.
pub fn fuzz_processes(bytes: &[u8]) -> Result<RunReport, ProcViolation> {
    run_script_with(&decode_script(bytes), Known::Strict)
}

/// What to do about the bugs the simulation found. All four are fixed: the property
/// test and the fuzz target run [`Known::Strict`]; the names stay so that a regression
/// says which one came back, and [`Known::Tolerated`] still lets a run go on past one.
///
/// - **K1**: a refresh answer whose access token is no longer usable when it arrives
///   (the exchange took longer than the token's usable lifetime) is not adopted, and the
///   core keeps its rotated refresh credential in memory only: no `Persist` is emitted,
///   so it never reaches the store (`TokenMachine::handle_refresh_result`, the
///   `EXPIRED_RESULT` branch). The store keeps the spent credential; a sibling process
///   (or this one after a restart) presents it, and a server with reuse detection
///   revokes the grant. `tests/processes_proptest.rs` has the minimal script. Fixed:
///   the rotated credential is stored, with the previous access token while that one
///   is usable, else with the unusable one (never granted).
/// - **K2**: a save answered with a conflict by a store that is *behind* the saving
///   process (it holds an older session than the credential the token was refreshed
///   from, because this process's own earlier save never landed: a failed write, or a
///   sign-in saved while a sibling held the lock) is taken as "a sibling refreshed
///   first", and the process adopts the older session from the store: it drops its
///   newer credential (a sign-in's new session is replaced by the old one; a rotated
///   credential is replaced by a spent one, which it presents next). Compare-and-swap
///   on `from` is the wrong test when the store is behind this process
///   (`TokenMachine::awaits_save` was added for the kernel to tell the two apart).
///   Fixed: while its predecessor is unsaved, a refreshed token's save compares
///   against what the predecessor's save compares against.
/// - **K3**: when the save under the refresh lock fails (a full disk, a store that is
///   down for writes), the kernel releases the lock at once (`Kernel::store_io` drops
///   `Save::lock`), while the store still holds the credential the exchange just spent.
///   A sibling waiting for the lock takes it, reads the spent credential, finds it equal
///   to its own and presents it: the server revokes the grant. Rule 1 holds (one
///   exchange at a time), but the lock no longer protects the credential. Fixed: the
///   kernel keeps the lock until that token is saved, and the next exchange reuses it.
///
/// - **K4**: before an exchange, the kernel adopts a sibling's newer session from the
///   store only when its own token is durable (`prepare_exchange` reads
///   `Snapshot::durable`, which is `false` with no token at all). A process holding a
///   refresh credential alone (it loaded a session whose access token had expired, or
///   signed in with a refresh token) therefore presents its credential although a
///   sibling already rotated it and the store holds the successor: the server revokes
///   the grant. Fixed: the kernel adopts whenever the process is not ahead of the
///   store (`TokenMachine::awaits_save`).
///
/// [`Known::Strict`] checks every invariant as stated. [`Known::Tolerated`] treats an
/// occurrence of K1 or K2 as what it amounts to, an unknown outcome (the grant is
/// orphaned: its newest credential will be held by no store), and excuses the second
/// presentation of the credential a K3 save left in the store or a K4 exchange sends, so the other invariants
/// keep being checked on the rest of the run; [`RunReport::known_k1`],
/// [`RunReport::known_k2`], [`RunReport::known_k3`] and [`RunReport::known_k4`] count
/// the occurrences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// Every invariant as stated: a known bug fails the run.
    Strict,
    /// A known bug's occurrence is counted and treated as an unknown outcome.
    Tolerated,
}

/// Which invariant a run broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcViolationKind {
    /// Two exchanges on the wire at once, each holding a live lock.
    TwoExchangesOnTheWire,
    /// An exchange was sent without the store's lock.
    ExchangeWithoutLock,
    /// The server saw a refresh credential twice, without an excuse.
    CredentialPresentedTwice,
    /// A save replaced a newer token of the grant, or another session.
    StaleOverwrite,
    /// A request got two outcomes.
    TwoOutcomes,
    /// A request of a live process got no outcome.
    NoOutcome,
    /// A live grant's newest refresh credential is neither stored nor held pending.
    SessionLost,
    /// A request was granted an access token the server considers expired.
    ExpiredTokenGranted,
    /// A driver loop did not settle.
    DriverSpins,
}

/// An invariant broken, with where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcViolation {
    /// The invariant.
    pub kind: ProcViolationKind,
    /// The index of the step after which it was found (`ops.len()`: the final drain).
    pub step: usize,
    /// What happened.
    pub detail: String,
    /// The steps run, with what each did.
    pub log: Vec<String>,
}

impl fmt::Display for ProcViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "step {}: {:?}: {}\nrun so far:",
            self.step, self.kind, self.detail
        )?;
        for line in &self.log {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProcViolation {}

/// What a run did, for tests that want to know it exercised something.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Requests entered.
    pub requests: usize,
    /// Requests granted a token.
    pub granted: usize,
    /// Credentials the server rotated.
    pub rotations: usize,
    /// Tokens adopted from the store instead of exchanging (`Prepared::Adopt`) or after
    /// a save's conflict.
    pub adopted: usize,
    /// Saves answered with a conflict.
    pub conflicts: usize,
    /// Times two exchanges were on the wire at once after a lease expired.
    pub overlaps_after_lease_expiry: usize,
    /// Credentials presented twice, excused (unknown outcome, lost lease, dead grant).
    pub excused_reuses: usize,
    /// Grants revoked by the server's reuse detection.
    pub reuse_revocations: usize,
    /// Occurrences of known bug K1 (see [`Known`]).
    pub known_k1: usize,
    /// Occurrences of known bug K2 (see [`Known`]).
    pub known_k2: usize,
    /// Saves under a lease that failed: their `from` is excused should the lease expire
    /// before the retried save (the limit of any lease).
    pub unsaved_under_lease: usize,
    /// Occurrences of known bug K3 (see [`Known`]).
    pub known_k3: usize,
    /// Occurrences of known bug K4 (see [`Known`]).
    pub known_k4: usize,
}

// ----- the server ---------------------------------------------------------------------

/// One grant (a sign-in's session): its chain of refresh credentials.
#[derive(Debug)]
struct Grant {
    /// Every refresh credential issued, oldest first; the last is the newest.
    chain: Vec<String>,
    alive: bool,
    /// Its newest credential was lost by an unknown outcome.
    orphaned: bool,
    /// Another sign-in's save replaced it in the store.
    abandoned: bool,
}

/// The simulated identity server: rotates refresh credentials, detects reuse.
#[derive(Debug, Default)]
pub struct Server {
    grants: Vec<Grant>,
    /// Refresh credential → (grant, index in its chain).
    credentials: HashMap<String, (usize, usize)>,
    /// How many times each credential was presented.
    presented: HashMap<String, u32>,
    /// Access token → when it expires.
    access: HashMap<String, Instant>,
    issued: u64,
}

impl Server {
    /// A new grant and its first token (expiring `ttl` after `now`).
    fn sign_in(&mut self, now: Instant, wall: SystemTime, ttl: Duration) -> (usize, Token) {
        let grant = self.grants.len();
        let refresh = format!("rt-{grant}-0");
        self.credentials.insert(refresh.clone(), (grant, 0));
        self.grants.push(Grant {
            chain: vec![refresh.clone()],
            alive: true,
            orphaned: false,
            abandoned: false,
        });
        let mut token = self.access_token(now, ttl).with_refresh_token(refresh);
        token.expiry = Expiry::At(wall + ttl);
        token.issued_at = Some(wall);
        (grant, token)
    }

    fn access_token(&mut self, now: Instant, ttl: Duration) -> Token {
        self.issued += 1;
        let access = format!("at-{}", self.issued);
        self.access.insert(access.clone(), now + ttl);
        Token::bearer(access, Expiry::In(ttl))
    }

    /// The grant and position of a refresh credential.
    fn rank(&self, refresh: &str) -> Option<(usize, usize)> {
        self.credentials.get(refresh).copied()
    }

    fn newest(&self, grant: usize) -> Option<&str> {
        self.grants
            .get(grant)
            .and_then(|g| g.chain.last())
            .map(String::as_str)
    }
}

// ----- the store ----------------------------------------------------------------------

#[derive(Debug)]
struct Lease {
    id: u64,
    owner: usize,
    /// When it expires (`None`: a flock).
    expires: Option<Instant>,
    /// Its owner died: dropping its handle does not release it (a Redis lease).
    owner_dead: bool,
}

/// One write that landed: what it replaced, what it wrote, whether it was a refresh save.
#[derive(Debug)]
struct Write {
    writer: usize,
    old: Option<String>,
    new: Option<String>,
    refreshed: bool,
}

#[derive(Debug, Default)]
struct StoreState {
    token: Option<Token>,
    lease: Option<Lease>,
    next_lease: u64,
    fail_writes: u8,
    writes: Vec<Write>,
    conflicts: usize,
    /// Saves answered with a conflict by a store older than their `from` (K2).
    behind: Vec<String>,
    /// The `from` of saves under the lock that failed (K3).
    unsaved_under_lock: Vec<String>,
}

/// The (grant, position) a credential's name says (`rt-<grant>-<position>`).
fn parse_rank(refresh: &str) -> Option<(usize, usize)> {
    let mut parts = refresh.strip_prefix("rt-")?.split('-');
    let grant = parts.next()?.parse().ok()?;
    let position = parts.next()?.parse().ok()?;
    Some((grant, position))
}

/// The in-memory store the processes share, as [`LockKind`] says it behaves.
struct SimStore {
    state: Mutex<StoreState>,
    clock: ManualClock,
    lease_ttl: Option<Duration>,
}

impl SimStore {
    fn lock(&self) -> MutexGuard<'_, StoreState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `lease` is live now.
    fn live(&self, lease: &Lease) -> bool {
        lease.expires.is_none_or(|at| self.clock.now() < at)
    }

    /// The id of the live lease, if any.
    fn live_lease(&self) -> Option<(u64, usize)> {
        let state = self.lock();
        state
            .lease
            .as_ref()
            .filter(|l| self.live(l))
            .map(|l| (l.id, l.owner))
    }

    /// Whether another process than `me` holds a live lock.
    fn held_by_other(&self, state: &StoreState, me: usize) -> bool {
        state
            .lease
            .as_ref()
            .is_some_and(|l| l.owner != me && self.live(l))
    }

    fn locked_error(&self) -> StoreError {
        StoreError::StoreLocked {
            path: "sim".to_owned(),
            waited: Duration::ZERO,
        }
    }

    fn injected(&self, state: &mut StoreState) -> Option<StoreError> {
        if state.fail_writes == 0 {
            return None;
        }
        state.fail_writes -= 1;
        Some(StoreError::StoreIo {
            action: "written",
            path: "sim".to_owned(),
            source: std::io::Error::other("injected write failure"),
        })
    }

    /// Compare-and-swap, as the file store's; `fenced` (the lease was taken by another)
    /// never writes.
    fn cas(
        &self,
        state: &mut StoreState,
        writer: usize,
        token: &Token,
        from: Option<&Secret>,
        fenced: bool,
    ) -> Result<Saved, StoreError> {
        if let Some(error) = self.injected(state) {
            return Err(error);
        }
        let expose = |t: &Token| t.refresh_token.as_ref().map(|s| s.expose().to_owned());
        let conflict = match (from, &state.token) {
            (Some(from), Some(stored)) => {
                let holds = stored
                    .refresh_token
                    .as_ref()
                    .is_some_and(|s| s.expose() == from.expose());
                let same = (stored.refresh_token.is_some()
                    && stored.refresh_token == token.refresh_token)
                    || stored.access_token == token.access_token;
                !holds && !same
            }
            _ => false,
        };
        if conflict {
            state.conflicts += 1;
            // Known bug K2: the store is behind the saver (older than `from`).
            let stored = state.token.as_ref().and_then(expose);
            if let (Some(stored), Some(from)) = (stored.as_deref().and_then(parse_rank), from)
                && parse_rank(from.expose()).is_some_and(|from| stored < from)
            {
                state.behind.push(from.expose().to_owned());
            }
            let stored = state.token.clone();
            return Ok(match stored {
                Some(stored) => Saved::Conflict(Box::new(stored)),
                None => Saved::Stored,
            });
        }
        if fenced {
            return Err(self.locked_error());
        }
        let old = state.token.as_ref().and_then(expose);
        state.writes.push(Write {
            writer,
            old,
            new: expose(token),
            refreshed: from.is_some(),
        });
        state.token = Some(token.clone());
        Ok(Saved::Stored)
    }
}

/// One process's handle on the shared store (the store knows who calls).
struct ProcStore {
    shared: Arc<SimStore>,
    me: usize,
}

impl TokenStore for ProcStore {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        Ok(self.shared.lock().token.clone())
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        let mut state = self.shared.lock();
        if self.shared.held_by_other(&state, self.me) {
            return Err(self.shared.locked_error());
        }
        self.shared.cas(&mut state, self.me, token, from, false)
    }

    fn forget(&self) -> Result<(), StoreError> {
        let mut state = self.shared.lock();
        if self.shared.held_by_other(&state, self.me) {
            return Err(self.shared.locked_error());
        }
        if let Some(error) = self.shared.injected(&mut state) {
            return Err(error);
        }
        state.token = None;
        Ok(())
    }

    fn lock_for_refresh(
        &self,
        timeout: Duration,
    ) -> Result<Option<Box<dyn StoreLock>>, StoreError> {
        let mut state = self.shared.lock();
        let busy = state.lease.as_ref().is_some_and(|l| self.shared.live(l));
        if busy {
            return Err(StoreError::StoreLocked {
                path: "sim".to_owned(),
                waited: timeout,
            });
        }
        state.next_lease += 1;
        let id = state.next_lease;
        let expires = self
            .shared
            .lease_ttl
            .map(|ttl| self.shared.clock.now() + ttl);
        state.lease = Some(Lease {
            id,
            owner: self.me,
            expires,
            owner_dead: false,
        });
        Ok(Some(Box::new(SimLock {
            shared: self.shared.clone(),
            me: self.me,
            id,
        })))
    }
}

/// A held lock (lease `id`).
struct SimLock {
    shared: Arc<SimStore>,
    me: usize,
    id: u64,
}

impl StoreLock for SimLock {
    fn load(&self) -> Result<Option<Token>, StoreError> {
        Ok(self.shared.lock().token.clone())
    }

    fn still_held(&self) -> bool {
        let state = self.shared.lock();
        state
            .lease
            .as_ref()
            .is_some_and(|l| l.id == self.id && self.shared.live(l))
    }

    fn save(&self, token: &Token, from: Option<&Secret>) -> Result<Saved, StoreError> {
        let mut state = self.shared.lock();
        // Fenced: another holder took the lease after ours expired.
        let fenced = state.lease.as_ref().is_some_and(|l| l.id != self.id);
        let saved = self.shared.cas(&mut state, self.me, token, from, fenced);
        // K3 (fixed): after a failed save the kernel keeps this lock for the retried
        // save, so no sibling re-reads the spent credential meanwhile. A lease, though,
        // may expire before the retry succeeds (Redis down longer than the lease): then
        // a sibling may spend it again, the limit of any lease (README, "Many
        // processes"). Such credentials are excused, for leases only.
        if saved.is_err()
            && !fenced
            && self.shared.lease_ttl.is_some()
            && let Some(from) = from
        {
            state.unsaved_under_lock.push(from.expose().to_owned());
        }
        saved
    }
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if state
            .lease
            .as_ref()
            .is_some_and(|l| l.id == self.id && !l.owner_dead)
        {
            state.lease = None;
        }
    }
}

// ----- the processes ------------------------------------------------------------------

/// Where requests' outcomes land: (request, access token or error).
type Outcomes = Arc<Mutex<Vec<(usize, Result<String, String>)>>>;

struct SimWaiter {
    request: usize,
    outcomes: Outcomes,
}

impl Waiter for SimWaiter {
    fn resolve(self, outcome: Outcome) {
        let summary = match outcome {
            Ok(token) => Ok(token.secret.expose().to_owned()),
            Err(error) => Err(format!("{error:?}")),
        };
        lock(&self.outcomes).push((self.request, summary));
    }
}

/// The simulation wakes every driver after every step anyway.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) {}
}

enum Phase {
    /// Waiting for the store's lock since then.
    Waiting(Instant),
    /// Sent, under this lock (lease id).
    OnWire {
        lock: Option<Box<dyn StoreLock>>,
        lease: Option<u64>,
    },
}

struct Exchange {
    attempt: AttemptId,
    refresh_token: Option<Secret>,
    cancel_requested: bool,
    /// A sign-in or sign-out came since it started: its result is dropped.
    superseded: bool,
    phase: Phase,
}

/// The token last handed to the token-change callback, with its generation.
type Persisted = Arc<Mutex<Option<(Generation, Option<String>)>>>;

struct Process {
    kernel: Kernel<SimWaiter>,
    exchanges: Vec<Exchange>,
    queue: VecDeque<StoreIo>,
    persisted: Persisted,
    requests: Vec<usize>,
}

/// Signed in (possibly misconfigured or backing off): the process holds a session.
fn signed_in(status: &Status) -> bool {
    !matches!(
        status,
        Status::AwaitingSignIn | Status::SignInRequired(_) | Status::SignedOut
    )
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns of one driver loop before it counts as spinning.
const MAX_TURNS: usize = 200;

/// The simulation: processes, store, server, clock, and what the checks remember.
struct Sim {
    setup: ProcSetup,
    clock: ManualClock,
    store: Arc<SimStore>,
    server: Server,
    processes: Vec<Option<Process>>,
    incarnations: Vec<u32>,
    outcomes: Outcomes,
    /// Request → its process, and whether that process died since.
    requests: Vec<(usize, bool)>,
    /// Outcomes already checked.
    seen_outcomes: usize,
    /// Credentials excused from the reuse check (their lease was lost on the wire, or,
    /// tolerated, K3).
    excused: HashSet<String>,
    report: RunReport,
    violation: Option<(ProcViolationKind, String)>,
    log: Vec<String>,
    /// Whether the current step is an unknown outcome (may lose the session).
    excusable: bool,
    known: Known,
}

impl Sim {
    fn new(setup: ProcSetup, known: Known) -> Self {
        let clock = ManualClock::new();
        let store = Arc::new(SimStore {
            state: Mutex::new(StoreState::default()),
            clock: clock.clone(),
            lease_ttl: setup.lease_ttl(),
        });
        let mut server = Server::default();
        // A previous run signed in and stored the session: every process starts from it.
        let (_, token) = server.sign_in(clock.now(), clock.wall(), setup.token_lifetime());
        store.lock().token = Some(token);
        let count = setup.process_count();
        let mut sim = Self {
            setup,
            clock,
            store,
            server,
            processes: (0..count).map(|_| None).collect(),
            incarnations: vec![0; count],
            outcomes: Arc::new(Mutex::new(Vec::new())),
            requests: Vec::new(),
            seen_outcomes: 0,
            excused: HashSet::new(),
            report: RunReport::default(),
            violation: None,
            log: Vec::new(),
            excusable: false,
            known,
        };
        for index in 0..count {
            sim.spawn(index);
        }
        sim
    }

    fn fail(&mut self, kind: ProcViolationKind, detail: String) {
        if self.violation.is_none() {
            self.violation = Some((kind, detail));
        }
    }

    fn spawn(&mut self, index: usize) {
        self.incarnations[index] += 1;
        let persisted: Persisted = Arc::new(Mutex::new(None));
        let seen = persisted.clone();
        let on_change = Box::new(move |change: TokenChange| {
            if let TokenChange::Persist { generation, token } = change {
                *lock(&seen) = Some((
                    generation,
                    token.refresh_token.as_ref().map(|s| s.expose().to_owned()),
                ));
            }
        });
        let store: Arc<dyn TokenStore> = Arc::new(ProcStore {
            shared: self.store.clone(),
            me: index,
        });
        let clock: Arc<dyn Clock> = Arc::new(self.clock.clone());
        let kernel = Kernel::new(
            self.setup.config(index, self.incarnations[index]),
            clock,
            Arc::new(NoWake),
            Some(on_change),
            Some(store),
        );
        kernel.start(None);
        self.processes[index] = Some(Process {
            kernel,
            exchanges: Vec::new(),
            queue: VecDeque::new(),
            persisted,
            requests: Vec::new(),
        });
    }

    fn index(&self, process: u8) -> usize {
        usize::from(process) % self.processes.len()
    }

    // ----- driving ------------------------------------------------------------------

    /// Runs every driver loop until none has anything left to do now.
    fn pump_all(&mut self) {
        for _ in 0..MAX_TURNS {
            let mut progress = false;
            for index in 0..self.processes.len() {
                progress |= self.pump(index);
            }
            self.note_lost_leases();
            self.check_wire();
            if !progress {
                return;
            }
        }
        self.fail(
            ProcViolationKind::DriverSpins,
            "the driver loops did not settle".to_owned(),
        );
    }

    /// One turn of process `index`'s driver loop; whether it did anything.
    fn pump(&mut self, index: usize) -> bool {
        let now = self.clock.now();
        let refresh_timeout = self.setup.config(index, 0).refresh_timeout();
        let Some(process) = self.processes[index].as_mut() else {
            return false;
        };
        let Work {
            starts,
            cancels,
            store,
            next,
        } = process.kernel.take_work();
        let mut progress = !starts.is_empty() || !cancels.is_empty() || !store.is_empty();
        process.queue.extend(store);
        for attempt in cancels {
            // tokio aborts at once; one still waiting for the lock ends here (its
            // prepare, on the blocking pool, drops the lock it may get later).
            if let Some(at) = process.exchanges.iter().position(|e| e.attempt == attempt) {
                if matches!(process.exchanges[at].phase, Phase::Waiting(_)) {
                    process.exchanges.remove(at);
                    process.kernel.exchange_result(
                        attempt,
                        Err(RefreshFailure::transient(
                            "cancelled while waiting for the lock",
                        )),
                        None,
                    );
                } else {
                    process.exchanges[at].cancel_requested = true;
                }
            }
        }
        for Start {
            attempt,
            refresh_token,
        } in starts
        {
            self.log.push(format!(
                "  process {index} starts attempt {} with {}",
                attempt.0,
                refresh_token.as_ref().map_or("-", |s| s.expose())
            ));
            process.exchanges.push(Exchange {
                attempt,
                refresh_token,
                cancel_requested: false,
                superseded: false,
                phase: Phase::Waiting(now),
            });
        }
        while let Some(io) = process.queue.pop_front() {
            let said = match &io {
                StoreIo::Load(_) => "load".to_owned(),
                StoreIo::Save(save) => format!(
                    "save {} from {} (locked: {})",
                    save.token
                        .refresh_token
                        .as_ref()
                        .map_or("-", |s| s.expose()),
                    save.from.as_ref().map_or("-", |s| s.expose()),
                    save.lock.is_some()
                ),
                StoreIo::Forget => "forget".to_owned(),
                StoreIo::Release(_) => "release the lock of a superseded save".to_owned(),
            };
            process.kernel.store_io(io);
            let snapshot = process.kernel.snapshot();
            self.log.push(format!(
                "  process {index} {said}: durable {}, {}, {:?}",
                snapshot.durable, snapshot.generation, snapshot.status
            ));
            progress = true;
        }
        let mut started = Vec::new();
        let mut at = 0;
        while at < process.exchanges.len() {
            let Phase::Waiting(since) = process.exchanges[at].phase else {
                at += 1;
                continue;
            };
            let free = self.store.live_lease().is_none();
            if !free && now < since + refresh_timeout {
                at += 1;
                continue;
            }
            progress = true;
            let sent = process.exchanges[at].refresh_token.clone();
            let attempt = process.exchanges[at].attempt;
            // Known bug K4: a store ahead of a process that holds no token of its own.
            let ahead = {
                let state = self.store.lock();
                let stored = state.token.as_ref().and_then(|t| t.refresh_token.as_ref());
                match (stored.map(|s| parse_rank(s.expose())), sent.as_ref()) {
                    (Some(Some(stored)), Some(sent)) => parse_rank(sent.expose())
                        .is_some_and(|sent| sent.0 == stored.0 && sent.1 < stored.1),
                    _ => false,
                }
            };
            match process.kernel.prepare_exchange(sent.as_ref()) {
                Prepared::Exchange(lock) => {
                    if ahead && let Some(sent) = &sent {
                        self.report.known_k4 += 1;
                        self.log.push(format!(
                            "  [known bug K4: process {index} holds no durable token and sends the spent {} although the store holds its successor]",
                            sent.expose()
                        ));
                        // K4 is fixed (the kernel adopts whenever it is not ahead of
                        // the store): a repeat is a violation, never excused.
                    }
                    let lease = lock
                        .as_ref()
                        .and_then(|_| self.store.live_lease())
                        .filter(|(_, owner)| *owner == index)
                        .map(|(id, _)| id);
                    process.exchanges[at].phase = Phase::OnWire { lock, lease };
                    started.push(attempt);
                    at += 1;
                }
                Prepared::Adopt(token, lock) => {
                    self.log.push(format!(
                        "  process {index} adopts {} from the store",
                        token.refresh_token.as_ref().map_or("-", |s| s.expose())
                    ));
                    process.exchanges.remove(at);
                    self.report.adopted += 1;
                    process
                        .kernel
                        .exchange_result(attempt, Ok(*token), Some(lock));
                }
                Prepared::Failed(failure) => {
                    self.log.push(format!(
                        "  process {index} could not lock: {}",
                        failure.message
                    ));
                    process.exchanges.remove(at);
                    process.kernel.exchange_result(attempt, Err(failure), None);
                }
            }
        }
        if next.is_some_and(|at| at <= now) {
            process.kernel.timeout();
            progress = true;
        }
        progress
    }

    /// Marks the credentials of exchanges on the wire whose lease is no longer live.
    fn note_lost_leases(&mut self) {
        let live = self.store.live_lease().map(|(id, _)| id);
        for process in self.processes.iter().flatten() {
            for exchange in &process.exchanges {
                if let Phase::OnWire {
                    lease: Some(lease), ..
                } = exchange.phase
                    && live != Some(lease)
                    && let Some(sent) = &exchange.refresh_token
                {
                    self.excused.insert(sent.expose().to_owned());
                }
            }
        }
    }

    /// Invariant 1.
    fn check_wire(&mut self) {
        let live = self.store.live_lease().map(|(id, _)| id);
        let mut holding = Vec::new();
        let mut on_wire = 0;
        let mut unlocked = None;
        for (index, process) in self.processes.iter().enumerate() {
            let Some(process) = process else { continue };
            for exchange in &process.exchanges {
                if let Phase::OnWire { lease, .. } = exchange.phase {
                    on_wire += 1;
                    match lease {
                        None => unlocked = Some(index),
                        Some(lease) if Some(lease) == live => holding.push(index),
                        Some(_) => {}
                    }
                }
            }
        }
        if let Some(index) = unlocked {
            self.fail(
                ProcViolationKind::ExchangeWithoutLock,
                format!("process {index} sent an exchange without the store's lock"),
            );
        }
        if holding.len() > 1 {
            self.fail(
                ProcViolationKind::TwoExchangesOnTheWire,
                format!(
                    "processes {holding:?} each have an exchange on the wire under a live lock"
                ),
            );
        }
        if on_wire > 1 {
            self.report.overlaps_after_lease_expiry += 1;
        }
    }

    /// The server processes a request presenting `sent`.
    fn present(&mut self, sent: Option<&Secret>) -> Result<Token, RefreshFailure> {
        let now = self.clock.now();
        let dead = || RefreshFailure::terminal("invalid_grant");
        let Some(sent) = sent.map(|s| s.expose().to_owned()) else {
            return Err(dead());
        };
        let Some((grant, position)) = self.server.rank(&sent) else {
            return Err(dead());
        };
        let times = self.server.presented.entry(sent.clone()).or_insert(0);
        *times += 1;
        let again = *times > 1;
        let (orphaned, alive, newest) = {
            let g = &self.server.grants[grant];
            (
                g.orphaned || g.abandoned,
                g.alive,
                g.chain.len() == position + 1,
            )
        };
        if again {
            if orphaned || !alive || self.excused.contains(&sent) {
                self.report.excused_reuses += 1;
            } else {
                self.fail(
                    ProcViolationKind::CredentialPresentedTwice,
                    format!(
                        "{sent} presented again (grant {grant} alive, its newest credential never lost, no lease lost on the wire)"
                    ),
                );
            }
        }
        if !alive {
            return Err(dead());
        }
        if !newest {
            // Reuse detection: the whole grant is revoked.
            self.server.grants[grant].alive = false;
            self.report.reuse_revocations += 1;
            return Err(dead());
        }
        let refresh = format!("rt-{grant}-{}", position + 1);
        self.server
            .credentials
            .insert(refresh.clone(), (grant, position + 1));
        self.server.grants[grant].chain.push(refresh.clone());
        self.report.rotations += 1;
        Ok(self
            .server
            .access_token(now, self.setup.token_lifetime())
            .with_refresh_token(refresh))
    }

    // ----- the steps ----------------------------------------------------------------

    fn step(&mut self, op: ProcOp) -> String {
        self.excusable = false;
        match op {
            ProcOp::Advance(ms) => {
                self.clock.advance(Duration::from_millis(u64::from(ms)));
                "advance".to_owned()
            }
            ProcOp::AdvanceSeconds(s) => {
                self.clock.advance(Duration::from_secs(u64::from(s)));
                "advance".to_owned()
            }
            ProcOp::Request { process } => {
                let index = self.index(process);
                let request = self.requests.len();
                let Some(p) = self.processes[index].as_mut() else {
                    return "dead".to_owned();
                };
                self.requests.push((index, false));
                self.report.requests += 1;
                p.requests.push(request);
                let waiter = SimWaiter {
                    request,
                    outcomes: self.outcomes.clone(),
                };
                if let Err(error) = p.kernel.enter(None, waiter) {
                    lock(&self.outcomes).push((request, Err(format!("{error:?}"))));
                }
                format!("request #{request}")
            }
            ProcOp::Answer { process, answer } => self.answer(self.index(process), answer),
            ProcOp::Abort { process, processed } => {
                let index = self.index(process);
                let Some(p) = self.processes[index].as_mut() else {
                    return "dead".to_owned();
                };
                let Some(at) = p
                    .exchanges
                    .iter()
                    .position(|e| e.cancel_requested && matches!(e.phase, Phase::OnWire { .. }))
                else {
                    return "nothing to abort".to_owned();
                };
                let exchange = p.exchanges.remove(at);
                drop(exchange.phase);
                if processed {
                    self.excusable = true;
                    let _ = self.present(exchange.refresh_token.as_ref());
                }
                if let Some(p) = self.processes[index].as_ref() {
                    p.kernel.exchange_result(
                        exchange.attempt,
                        Err(RefreshFailure::transient(
                            "the refresh exchange was cancelled",
                        )),
                        None,
                    );
                }
                format!("aborted attempt {}", exchange.attempt.0)
            }
            ProcOp::Reject { process } => {
                let index = self.index(process);
                let Some(p) = self.processes[index].as_ref() else {
                    return "dead".to_owned();
                };
                let generation = p.kernel.snapshot().generation;
                p.kernel.command(Command::Rejected(generation));
                format!("401 of {generation}")
            }
            ProcOp::ExpireLease => {
                let now = self.clock.now();
                let mut state = self.store.lock();
                match state.lease.as_mut() {
                    Some(lease) if lease.expires.is_some() => {
                        lease.expires = Some(now);
                        format!("lease {} expired", lease.id)
                    }
                    _ => "no lease".to_owned(),
                }
            }
            ProcOp::Kill { process, processed } => {
                let index = self.index(process);
                let Some(p) = self.processes[index].take() else {
                    return "dead".to_owned();
                };
                self.excusable = true;
                {
                    let mut state = self.store.lock();
                    if let Some(lease) = state.lease.as_mut()
                        && lease.owner == index
                        && lease.expires.is_some()
                    {
                        lease.owner_dead = true;
                    }
                }
                for (owner, died) in &mut self.requests {
                    if *owner == index {
                        *died = true;
                    }
                }
                let mut presented = Vec::new();
                for exchange in &p.exchanges {
                    if processed && matches!(exchange.phase, Phase::OnWire { .. }) {
                        presented.push(exchange.refresh_token.clone());
                    }
                }
                drop(p);
                for sent in presented {
                    let _ = self.present(sent.as_ref());
                }
                "killed".to_owned()
            }
            ProcOp::Restart { process } => {
                let index = self.index(process);
                if self.processes[index].is_some() {
                    return "alive".to_owned();
                }
                self.spawn(index);
                "restarted".to_owned()
            }
            ProcOp::SignOut { process } => {
                let index = self.index(process);
                let Some(p) = self.processes[index].as_ref() else {
                    return "dead".to_owned();
                };
                // The program revokes the grant it holds (RFC 7009), then signs out.
                let held = lock(&p.persisted).as_ref().and_then(|(_, rt)| rt.clone());
                let stored = self
                    .store
                    .lock()
                    .token
                    .as_ref()
                    .and_then(|t| t.refresh_token.as_ref().map(|s| s.expose().to_owned()));
                for refresh in [held, stored].into_iter().flatten() {
                    if let Some((grant, _)) = self.server.rank(&refresh) {
                        self.server.grants[grant].alive = false;
                    }
                }
                p.kernel.command(Command::SignOut);
                self.supersede(index);
                "signed out".to_owned()
            }
            ProcOp::SignIn { process } => {
                let index = self.index(process);
                if self.processes[index].is_none() {
                    return "dead".to_owned();
                }
                let (grant, mut token) = self.server.sign_in(
                    self.clock.now(),
                    self.clock.wall(),
                    self.setup.token_lifetime(),
                );
                token.expiry = Expiry::In(self.setup.token_lifetime());
                token.issued_at = None;
                // The program gave up the previous session: new credentials win (its
                // save will replace it in the store).
                for (other, g) in self.server.grants.iter_mut().enumerate() {
                    if other != grant {
                        g.abandoned = true;
                    }
                }
                if let Some(p) = self.processes[index].as_ref() {
                    p.kernel.command(Command::SignIn(Credentials::Token(token)));
                }
                self.supersede(index);
                format!("signed in to grant {grant}")
            }
            ProcOp::FailWrites { count } => {
                self.store.lock().fail_writes = count % 4 + 1;
                format!("next {} writes fail", count % 4 + 1)
            }
            ProcOp::Revoke => {
                let newest = self.server.grants.len() - 1;
                self.server.grants[newest].alive = false;
                format!("grant {newest} revoked")
            }
        }
    }

    /// A sign-in or sign-out: the exchanges of `index` still running are superseded.
    fn supersede(&mut self, index: usize) {
        if let Some(p) = self.processes[index].as_mut() {
            for exchange in &mut p.exchanges {
                exchange.superseded = true;
            }
        }
    }

    fn answer(&mut self, index: usize, answer: AnswerPick) -> String {
        let Some(p) = self.processes[index].as_mut() else {
            return "dead".to_owned();
        };
        let Some(at) = p
            .exchanges
            .iter()
            .position(|e| matches!(e.phase, Phase::OnWire { .. }))
        else {
            return "nothing on the wire".to_owned();
        };
        let exchange = p.exchanges.remove(at);
        let Phase::OnWire { lock: held, .. } = exchange.phase else {
            return "nothing on the wire".to_owned();
        };
        // Its lease may have been lost while it was on the wire.
        self.note_lost_leases();
        let result = match answer {
            AnswerPick::Answered => self.present(exchange.refresh_token.as_ref()),
            AnswerPick::LostAfterServer => {
                self.excusable = true;
                let _ = self.present(exchange.refresh_token.as_ref());
                Err(RefreshFailure::transient("connection reset"))
            }
            AnswerPick::ServerError => Err(RefreshFailure::transient("HTTP 503")),
        };
        let said = match &result {
            Ok(token) => format!(
                "answered {}",
                token.refresh_token.as_ref().map_or("-", |s| s.expose())
            ),
            Err(failure) => format!("failed: {}", failure.message),
        };
        let rotated = result
            .as_ref()
            .ok()
            .and_then(|t| t.refresh_token.as_ref().map(|s| s.expose().to_owned()));
        let mut known = String::new();
        if let Some(p) = self.processes[index].as_ref() {
            p.kernel.exchange_result(exchange.attempt, result, held);
            let persisted = lock(&p.persisted).as_ref().and_then(|(_, rt)| rt.clone());
            let active = signed_in(&p.kernel.snapshot().status);
            // A result after a sign-in or sign-out is dropped, as it should be.
            let current = !exchange.superseded;
            if let Some(rotated) = rotated
                && active
                && current
                && persisted.as_deref() != Some(rotated.as_str())
            {
                // Known bug K1 (see `Known`): the answer's access token was unusable on
                // arrival, so the machine kept the rotated credential in memory only.
                self.report.known_k1 += 1;
                known = format!(" [known bug K1: {rotated} kept in memory, never saved]");
                if self.known == Known::Tolerated
                    && let Some((grant, _)) = self.server.rank(&rotated)
                {
                    self.server.grants[grant].orphaned = true;
                }
            }
        }
        format!(
            "attempt {} sent {}: {said}",
            exchange.attempt.0,
            exchange.refresh_token.as_ref().map_or("-", |s| s.expose())
        ) + &known
    }

    // ----- the checks after each step -------------------------------------------------

    fn check(&mut self) {
        self.check_outcomes();
        self.check_writes();
        self.check_session();
    }

    /// Invariants 4 (no two outcomes) and 6.
    fn check_outcomes(&mut self) {
        let now = self.clock.now();
        let outcomes: Vec<_> = lock(&self.outcomes)[self.seen_outcomes..].to_vec();
        self.seen_outcomes += outcomes.len();
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for (request, _) in lock(&self.outcomes).iter() {
            *counts.entry(*request).or_default() += 1;
        }
        for (request, outcome) in outcomes {
            if counts.get(&request).copied().unwrap_or(0) > 1 {
                self.fail(
                    ProcViolationKind::TwoOutcomes,
                    format!("request #{request} got a second outcome: {outcome:?}"),
                );
            }
            if let Ok(access) = outcome {
                self.report.granted += 1;
                let expires = self.server.access.get(&access).copied();
                if expires.is_none_or(|at| now >= at) {
                    self.fail(
                        ProcViolationKind::ExpiredTokenGranted,
                        format!("request #{request} was granted {access}, expired at the server"),
                    );
                }
            }
        }
    }

    /// Invariant 3, on the writes that landed since the last check; also marks grants
    /// abandoned by a sign-in's save.
    fn check_writes(&mut self) {
        let writes = std::mem::take(&mut self.store.lock().writes);
        for write in writes {
            let new = write.new.as_deref().and_then(|rt| self.server.rank(rt));
            if !write.refreshed {
                if let Some((grant, _)) = new {
                    for (other, g) in self.server.grants.iter_mut().enumerate() {
                        if other != grant {
                            g.abandoned = true;
                        }
                    }
                }
                continue;
            }
            let old = write.old.as_deref().and_then(|rt| self.server.rank(rt));
            if let (Some(old), Some(new)) = (old, new)
                && (old.0 != new.0 || new.1 < old.1)
            {
                self.fail(
                    ProcViolationKind::StaleOverwrite,
                    format!(
                        "process {} replaced {:?} with the older or foreign {:?}",
                        write.writer, write.old, write.new
                    ),
                );
            }
        }
        let conflicts = std::mem::take(&mut self.store.lock().conflicts);
        self.report.conflicts += conflicts;
        let unsaved = std::mem::take(&mut self.store.lock().unsaved_under_lock);
        for from in unsaved {
            self.report.unsaved_under_lease += 1;
            self.log.push(format!(
                "  [a save under a lease failed: should the lease expire before the retry, the store still holds the spent {from}]"
            ));
            self.excused.insert(from);
        }
        let behind = std::mem::take(&mut self.store.lock().behind);
        for from in behind {
            self.report.known_k2 += 1;
            // K2 is fixed (a token refreshed from one whose save is pending compares
            // against what that save compares against): never excused any more.
            self.log.push(format!(
                "  [K2: a save from {from} conflicts with an older stored session, which the process adopts]"
            ));
        }
    }

    /// Invariant 5.
    fn check_session(&mut self) {
        let stored = self
            .store
            .lock()
            .token
            .as_ref()
            .and_then(|t| t.refresh_token.as_ref().map(|s| s.expose().to_owned()));
        let mut pending = HashSet::new();
        for process in self.processes.iter().flatten() {
            let snapshot = process.kernel.snapshot();
            let active = signed_in(&snapshot.status);
            if let Some((generation, Some(refresh))) = lock(&process.persisted).clone()
                && active
                && !snapshot.durable
                && snapshot.generation == generation
            {
                pending.insert(refresh);
            }
        }
        for grant in 0..self.server.grants.len() {
            let g = &self.server.grants[grant];
            let abandoned = g.abandoned;
            if !g.alive || g.orphaned {
                continue;
            }
            let Some(newest) = self.server.newest(grant).map(str::to_owned) else {
                continue;
            };
            if stored.as_deref() == Some(newest.as_str()) || pending.contains(&newest) {
                continue;
            }
            if self.excusable {
                self.server.grants[grant].orphaned = true;
            } else if !abandoned {
                self.fail(
                    ProcViolationKind::SessionLost,
                    format!(
                        "grant {grant}'s newest credential {newest} is neither stored (the store holds {stored:?}) nor held by a live process with its save pending ({pending:?})"
                    ),
                );
            }
        }
    }

    /// The end: no more faults; every exchange answered, time past every deadline.
    fn drain(&mut self) {
        self.store.lock().fail_writes = 0;
        self.excusable = false;
        // 200 s: past every request deadline (30 s), exchange deadline (30 s) and
        // backoff (60 s at most).
        for _ in 0..40 {
            for index in 0..self.processes.len() {
                let on_wire = self.processes[index].as_ref().is_some_and(|p| {
                    p.exchanges
                        .iter()
                        .any(|e| matches!(e.phase, Phase::OnWire { .. }))
                });
                if on_wire {
                    let said = self.answer(index, AnswerPick::Answered);
                    self.log.push(format!("drain: process {index} {said}"));
                    self.pump_all();
                    self.check();
                    if self.violation.is_some() {
                        return;
                    }
                }
            }
            self.clock.advance(Duration::from_secs(5));
            self.pump_all();
            self.check();
            if self.violation.is_some() {
                return;
            }
        }
        let answered: HashMap<usize, usize> =
            lock(&self.outcomes)
                .iter()
                .fold(HashMap::new(), |mut counts, (request, _)| {
                    *counts.entry(*request).or_default() += 1;
                    counts
                });
        for (request, (process, died)) in self.requests.clone().into_iter().enumerate() {
            if !died && !answered.contains_key(&request) {
                self.fail(
                    ProcViolationKind::NoOutcome,
                    format!("request #{request} of process {process} got no outcome"),
                );
            }
        }
    }
}

/// Runs a script: every step, then the pumps of every driver loop, then every check;
/// at the end the drain (every exchange answered, time past every deadline) and the
/// final checks.
///
/// # Errors
///
/// The first invariant broken (see the module's documentation).
pub fn run_script(script: &Script) -> Result<RunReport, ProcViolation> {
    run_script_with(script, Known::Strict)
}

/// [`run_script`], with the known bugs strict or tolerated (see [`Known`]).
///
/// # Errors
///
/// The first invariant broken.
pub fn run_script_with(script: &Script, known: Known) -> Result<RunReport, ProcViolation> {
    let mut sim = Sim::new(script.setup, known);
    sim.pump_all();
    sim.check();
    let mut step = 0;
    for (at, op) in script.ops.iter().enumerate() {
        step = at;
        if sim.violation.is_some() {
            break;
        }
        let said = sim.step(*op);
        sim.log.push(format!("#{at} {op:?}: {said}"));
        sim.pump_all();
        sim.check();
    }
    if sim.violation.is_none() {
        step = script.ops.len();
        sim.drain();
    }
    match sim.violation.take() {
        None => Ok(sim.report),
        Some((kind, detail)) => Err(ProcViolation {
            kind,
            step,
            detail,
            log: std::mem::take(&mut sim.log),
        }),
    }
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("setup", &self.setup)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}
