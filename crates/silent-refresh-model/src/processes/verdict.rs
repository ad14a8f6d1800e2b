//! What a run ends with: the invariant broken and where, or a report of what it did;
//! and the known bugs the simulation found, by name.

use std::fmt;

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
///
/// The bugs the simulation found, by name. All four are fixed and every run checks
/// every invariant as stated; the names stay so that a regression says which one came
/// back ([`RunReport::known_k1`] to [`RunReport::known_k4`] count occurrences, and the
/// run's log names them).
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
    /// Occurrences of known bug K1 (see [`RunReport`]).
    pub known_k1: usize,
    /// Occurrences of known bug K2 (see [`RunReport`]).
    pub known_k2: usize,
    /// Saves under a lease that failed: their `from` is excused should the lease expire
    /// before the retried save (the limit of any lease).
    pub unsaved_under_lease: usize,
    /// Occurrences of known bug K3 (see [`RunReport`]).
    pub known_k3: usize,
    /// Occurrences of known bug K4 (see [`RunReport`]).
    pub known_k4: usize,
}
