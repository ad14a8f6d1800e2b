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

mod checks;
mod runtime;
mod script;
mod server;
mod store;
mod verdict;

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Waker};
use std::time::Duration;

use silent_refresh::{
    AttemptId, Credentials, Event, Expiry, Generation, RefreshFailure, Secret, Status, Token,
};
use silent_refresh_driver::clock::{Clock, ManualClock};
use silent_refresh_driver::driver::Driver;
use silent_refresh_driver::kernel::{Command, Kernel, Outcome, TokenChange, Waiter};
use silent_refresh_driver::observe::Observer;
use silent_refresh_driver::store::TokenStore;
use silent_refresh_driver::wake::Doorbell;

use self::runtime::{OnWire, SimRefresher, SimRuntime, Wire};
use self::store::{ProcStore, SimStore, StoreState};

pub use self::script::{AnswerPick, LockKind, MAX_OPS, ProcOp, ProcSetup, Script, decode_script};
pub use self::server::Server;
pub use self::verdict::{ProcViolation, ProcViolationKind, RunReport};

/// The fuzz target `processes`: bytes → a script, run with every invariant checked.
///
/// # Errors
///
/// The first invariant broken.
pub fn fuzz_processes(bytes: &[u8]) -> Result<RunReport, ProcViolation> {
    run_script(&decode_script(bytes))
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

/// How the refresher marks a K4 occurrence in the trail (see [`RunReport`]).
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
    /// Credentials excused from the reuse check (their lease was lost on the wire).
    excused: HashSet<String>,
    report: RunReport,
    violation: Option<(ProcViolationKind, String)>,
    log: Vec<String>,
    /// Whether the current step is an unknown outcome (may lose the session).
    excusable: bool,
}

impl Sim {
    fn new(setup: ProcSetup) -> Self {
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
                // Known bug K1 (see `RunReport`): the answer's access token was unusable on
                // arrival, so the machine kept the rotated credential in memory only.
                self.report.known_k1 += 1;
                known = format!(" [known bug K1: {rotated} kept in memory, never saved]");
            }
        }
        format!(
            "sent {}: {said}",
            exchange.sent.as_ref().map_or("-", |s| s.expose())
        ) + &known
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
    let mut sim = Sim::new(script.setup);
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
