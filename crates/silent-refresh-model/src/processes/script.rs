//! What a run is made of: the setup (how many processes, the store's lock, the tokens'
//! lifetime) and the steps of its script, decoded from fuzz input.

use std::time::Duration;

use arbitrary::Arbitrary;
use silent_refresh::{Config, RefreshMode};

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
    pub(super) fn config(&self, index: usize, incarnation: u32) -> Config {
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
