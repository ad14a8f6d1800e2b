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
//!   otherwise [`Saved::Conflict`](silent_refresh_driver::store::Saved::Conflict) with what it holds), as the file store does. A save
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

mod runtime;
mod server;
mod store;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use arbitrary::Arbitrary;
use silent_refresh::{
    AttemptId, Config, Credentials, Event, Expiry, Generation, RefreshFailure, RefreshMode, Secret,
    Status, Token,
};
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::driver::Driver;
use silent_refresh_driver::kernel::{Command, Kernel, Outcome, TokenChange, Waiter};
use silent_refresh_driver::observe::Observer;
use silent_refresh_driver::store::TokenStore;
use silent_refresh_driver::wake::Doorbell;

use self::runtime::{OnWire, SimRefresher, SimRuntime, Wire};
use self::store::{ProcStore, SimStore, StoreState};

pub use self::server::Server;

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

/// The token last handed to the token-change callback, with its generation.
type Persisted = Arc<Mutex<Option<(Generation, Option<String>)>>>;

/// One process: a real kernel and the driver the adapters spawn, stepped by hand.
struct Process {
    kernel: Arc<Kernel<SimWaiter>>,
    driver: Driver<SimRuntime, SimWaiter>,
    /// Its exchanges on the wire.
    wire: Wire,
    persisted: Persisted,
    /// The attempts a token was adopted from (a refresh result, or the store's under
    /// the lock), as the kernel's events say.
    adopted: Arc<Mutex<Vec<AttemptId>>>,
    /// The attempts that went on the wire.
    sent: Arc<Mutex<HashSet<AttemptId>>>,
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

/// How the refresher marks a K4 occurrence in the trail (see [`Known`]).
const K4_MARK: &str = "[known bug K4";

/// Turns of the driver loops before they count as spinning.
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
            trail: Mutex::new(Vec::new()),
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

    /// Starts process `index` as a source's builder would: a kernel, its driver on the
    /// simulated runtime, the session loaded from the store.
    fn spawn(&mut self, index: usize) {
        self.incarnations[index] += 1;
        let config = self.setup.config(index, self.incarnations[index]);
        let runtime = SimRuntime {
            store: self.store.clone(),
            me: index,
            clock: self.clock.clone(),
            refresh_timeout: config.refresh_timeout(),
        };
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
        let bell = Arc::new(Doorbell::default());
        let kernel = Arc::new(Kernel::new(
            config,
            clock,
            bell.clone(),
            Some(on_change),
            Some(store),
            None,
        ));
        let adopted = Arc::new(Mutex::new(Vec::new()));
        let adoptions = adopted.clone();
        kernel.subscribe(move |event| {
            if let Event::TokenAdopted {
                attempt: Some(attempt),
                ..
            } = event
            {
                lock(&adoptions).push(*attempt);
            }
            true
        });
        let wire: Wire = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(Mutex::new(HashSet::new()));
        let refresher = SimRefresher {
            store: self.store.clone(),
            me: index,
            wire: wire.clone(),
            kernel: Arc::downgrade(&kernel) as Weak<Kernel<SimWaiter>>,
            sent: sent.clone(),
        };
        let observer = Observer::attach(&kernel);
        let driver = Driver::new(kernel.clone(), runtime, Arc::new(refresher), bell, observer);
        kernel.start(None);
        self.processes[index] = Some(Process {
            kernel,
            driver,
            wire,
            persisted,
            adopted,
            sent,
        });
    }

    fn index(&self, process: u8) -> usize {
        usize::from(process) % self.processes.len()
    }

    // ----- driving ------------------------------------------------------------------

    /// Runs every driver until none has anything left to do now.
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

    /// One turn of process `index`'s driver; whether it did anything.
    fn pump(&mut self, index: usize) -> bool {
        let Some(process) = self.processes[index].as_mut() else {
            return false;
        };
        let progress = process.driver.step(&mut Context::from_waker(Waker::noop()));
        let adopted = std::mem::take(&mut *lock(&process.adopted));
        let sent = lock(&process.sent).clone();
        for line in std::mem::take(&mut *lock(&self.store.trail)) {
            if line.contains(K4_MARK) {
                self.report.known_k4 += 1;
            }
            self.log.push(format!("  {line}"));
        }
        for attempt in adopted {
            if !sent.contains(&attempt) {
                self.report.adopted += 1;
                self.log.push(format!(
                    "  process {index} adopted the store's session for attempt {}",
                    attempt.0
                ));
            }
        }
        progress
    }

    /// Marks the credentials of exchanges on the wire whose lease is no longer live.
    fn note_lost_leases(&mut self) {
        let live = self.store.live_lease().map(|(id, _)| id);
        for process in self.processes.iter().flatten() {
            for exchange in lock(&process.wire).iter() {
                if let Some(lease) = exchange.lease
                    && live != Some(lease)
                    && let Some(sent) = &exchange.sent
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
            for exchange in lock(&process.wire).iter() {
                on_wire += 1;
                match exchange.lease {
                    None => unlocked = Some(index),
                    Some(lease) if Some(lease) == live => holding.push(index),
                    Some(_) => {}
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

    /// Takes the oldest exchange on the wire of process `index` off it, if any (and,
    /// with `overdue`, only if the kernel says it is overdue).
    fn off_the_wire(&mut self, index: usize, overdue: bool) -> Option<OnWire> {
        let process = self.processes[index].as_ref()?;
        if overdue && !process.kernel.snapshot().overdue {
            return None;
        }
        let mut wire = lock(&process.wire);
        (!wire.is_empty()).then(|| wire.remove(0))
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
                if self.processes[index].is_none() {
                    return "dead".to_owned();
                }
                // An overdue exchange runs on until its own timeout ends it: that
                // timeout, now, with its outcome unknown to the process.
                let Some(exchange) = self.off_the_wire(index, true) else {
                    return "nothing overdue to time out".to_owned();
                };
                if processed {
                    self.excusable = true;
                    let _ = self.present(exchange.sent.as_ref());
                }
                *lock(&exchange.answer) = Some(Err(RefreshFailure::transient(
                    "the refresh exchange timed out",
                )));
                self.pump(index);
                format!(
                    "timed out the overdue exchange sending {}",
                    exchange.sent.as_ref().map_or("-", |s| s.expose())
                )
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
                let presented: Vec<Option<Secret>> = if processed {
                    lock(&p.wire).iter().map(|e| e.sent.clone()).collect()
                } else {
                    Vec::new()
                };
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

    /// The exchange on the wire of process `index` ends as `answer` says.
    fn answer(&mut self, index: usize, answer: AnswerPick) -> String {
        if self.processes[index].is_none() {
            return "dead".to_owned();
        }
        // Its lease may have been lost while it was on the wire.
        self.note_lost_leases();
        let Some(exchange) = self.off_the_wire(index, false) else {
            return "nothing on the wire".to_owned();
        };
        let result = match answer {
            AnswerPick::Answered => self.present(exchange.sent.as_ref()),
            AnswerPick::LostAfterServer => {
                self.excusable = true;
                let _ = self.present(exchange.sent.as_ref());
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
        *lock(&exchange.answer) = Some(result);
        // The driver feeds the result to the kernel.
        self.pump(index);
        let mut known = String::new();
        if let Some(p) = self.processes[index].as_ref() {
            let persisted = lock(&p.persisted).as_ref().and_then(|(_, rt)| rt.clone());
            let active = signed_in(&p.kernel.snapshot().status);
            // An exchange superseded by a sign-in or sign-out is cancelled, never
            // answered: this result is the current exchange's.
            if let Some(rotated) = rotated
                && active
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
            "sent {}: {said}",
            exchange.sent.as_ref().map_or("-", |s| s.expose())
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
                let on_wire = self.processes[index]
                    .as_ref()
                    .is_some_and(|p| !lock(&p.wire).is_empty());
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
