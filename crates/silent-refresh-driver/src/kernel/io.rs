//! The kernel's inputs and outputs: what callers, the driver and the stores exchange
//! with it.

use silent_refresh::time::Instant;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use silent_refresh::{
    AccessToken, AttemptId, Credentials, Error as CoreError, Generation, KeyId, RefreshFailure,
    Secret, Status, Token,
};
use silent_refresh_oauth2::Target;

use crate::Error;

/// The first and the longest pause between loads of an unreachable store.
pub(super) const LOAD_RETRY_FIRST: Duration = Duration::from_millis(500);
pub(super) const LOAD_RETRY_MAX: Duration = Duration::from_secs(30);

/// Why a caller got no token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoToken {
    /// The machine's answer (deadline, sign-in required, misconfigured, …).
    Token(CoreError),
    /// Asked from inside the source's own token-change callback, which runs while the
    /// source is locked: waiting there would deadlock.
    Reentrant,
    /// The driver is gone (its runtime shut down): nothing would answer.
    Stopped,
}

/// What a waiting caller receives.
pub type Outcome = Result<Arc<AccessToken>, NoToken>;

/// How a caller waits for its outcome: a slot its task or thread waits on, ….
pub trait Waiter: Send + 'static {
    /// Delivers the outcome. Called once, under the kernel's lock: do not block.
    fn resolve(self, outcome: Outcome);
}

/// A token change the program must store: the rotated refresh credential, or none.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum TokenChange {
    /// A new token was adopted: store it (it holds the newest refresh credential and a
    /// wall-clock expiry) before relying on it. No caller gets it before this returns.
    Persist {
        /// The generation the machine gave the token.
        generation: Generation,
        /// The token to store.
        token: Token,
    },
    /// Signed out: delete the stored token.
    Forget,
}

/// The token-change callback.
pub type ChangeCallback = Box<dyn Fn(TokenChange) + Send + Sync>;

/// An input that needs no answer.
#[derive(Debug)]
pub enum Command {
    /// New credentials.
    SignIn(Credentials),
    /// Sign out.
    SignOut,
    /// A request with this generation's token of the default key was rejected (401).
    Rejected(Generation),
    /// A request with this generation's token of `key` was rejected (401).
    KeyRejected {
        /// The key whose token was rejected.
        key: KeyId,
        /// Its generation.
        generation: Generation,
    },
}

/// What a sign-out can revoke at the authorization server (RFC 7009): the refresh
/// credential the next refresh would send, and the access token in hand. `Debug`
/// prints `[redacted]` for both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Revocable {
    /// The newest refresh credential, if any.
    pub refresh_token: Option<Secret>,
    /// The current access token, usable or not, if any.
    pub access_token: Option<Secret>,
}

impl Revocable {
    /// What `machine` holds.
    pub(super) fn of(session: &silent_refresh::Session) -> Self {
        let machine = session.machine(KeyId::DEFAULT);
        Self {
            refresh_token: machine.refresh_credential().cloned(),
            access_token: machine.current_token().map(|token| token.secret.clone()),
        }
    }
}

/// A refresh exchange to start.
#[derive(Debug)]
pub struct Start {
    /// The key whose token it is for.
    pub key: KeyId,
    /// What that key's token is for: the exchange asks for it.
    pub target: Arc<Target>,
    /// Report its result with this attempt id.
    pub attempt: AttemptId,
    /// The refresh credential to send (`None` for grants that need none).
    pub refresh_token: Option<Secret>,
}

/// What the driver is to do next.
#[derive(Debug)]
pub struct Work {
    /// Exchanges to start.
    pub starts: Vec<Start>,
    /// Exchanges to cancel: superseded by new credentials, or past their hard limit
    /// (an exchange that is only overdue runs on, see `wire`).
    pub cancels: Vec<(KeyId, AttemptId)>,
    /// Store I/O to run off the callers and the async workers, one at a time, in order
    /// ([`Kernel::store_io`](crate::kernel::Kernel::store_io)).
    pub store: Vec<StoreIo>,
    /// When to call [`Kernel::timeout`](crate::kernel::Kernel::timeout) next (`None`: only when woken).
    pub next: Option<Instant>,
}

/// What the getters read, published after every input: no lock, so they never block or
/// deadlock, not even inside the token-change callback.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Where the session stands.
    pub status: Status,
    /// The generation of the default key's newest token.
    pub generation: Generation,
    /// The generation of each key's newest token (index: the key).
    pub generations: Vec<Generation>,
    /// How many callers wait for a token.
    pub waiting: usize,
    /// The refresh exchange on the wire, if any.
    pub refresh_in_flight: Option<AttemptId>,
    /// The exchange on the wire passed the configuration's `refresh_timeout`: it runs on
    /// until its own timeout ends it (rule 8), and no other starts meanwhile.
    pub overdue: bool,
    /// When the current backoff ends, if one runs.
    pub backoff_until: Option<Instant>,
    /// The last refresh failure since the last adopted token.
    pub last_failure: Option<Arc<str>>,
    /// The driver is gone.
    pub stopped: bool,
    /// The store confirmed the current token (always `false` without a token).
    pub durable: bool,
    /// The stored session was read at start (always `true` without a store): until
    /// then the status says "awaiting sign-in" whatever the store holds.
    pub store_read: bool,
    /// No store I/O is queued or running (a save, a forget, a load).
    pub store_idle: bool,
}

/// Store I/O for the driver to run off the callers and the async workers (it may
/// block), one at a time and in order: hand each to [`Kernel::store_io`](crate::kernel::Kernel::store_io).
#[derive(Debug)]
pub enum StoreIo {
    /// Load the stored session, then sign in with it (or with the credentials given in
    /// code when the store holds no usable session).
    Load(Load),
    /// Save a token.
    Save(Save),
    /// Delete the stored token.
    Forget,
    /// Release a store's lock between processes nothing needs any more.
    Release(LockId),
}

/// A load of the stored session ([`StoreIo::Load`]).
#[derive(Debug)]
pub struct Load {
    /// The credentials given in code, for when the store holds no session.
    pub(super) credentials: Option<Credentials>,
    /// How long to wait before loading again if the store cannot be reached.
    pub(super) retry_delay: Duration,
}

impl Load {
    pub(super) fn first(credentials: Option<Credentials>) -> Self {
        Self {
            credentials,
            retry_delay: LOAD_RETRY_FIRST,
        }
    }
}

/// A load of the store to try again (the store was unreachable at start).
pub(super) struct LoadRetry {
    pub(super) at: Instant,
    pub(super) load: Load,
}

/// A token to save in the store ([`StoreIo::Save`]).
pub struct Save {
    pub(super) key: KeyId,
    pub(super) generation: Generation,
    pub(super) token: Token,
    /// The refresh credential it was refreshed from (compare-and-swap).
    pub(super) from: Option<Secret>,
    /// Saved through this store's lock between processes.
    pub(super) lock: Option<LockId>,
    /// Save only if the store holds no session ([`TokenStore::save_if_empty`]): the
    /// session signed in from the credentials given in code after the store was found
    /// empty, which must not overwrite a sibling process's.
    pub(super) only_if_empty: bool,
}

impl fmt::Debug for Save {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Save")
            .field("generation", &self.generation)
            .field("locked", &self.lock.is_some())
            .finish_non_exhaustive()
    }
}

/// A store's lock between processes the kernel holds ([`StoreIo::Release`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockId(pub(super) u64);

/// What to do before a refresh exchange, decided under the store's lock between
/// processes ([`Kernel::prepare_exchange`](crate::kernel::Kernel::prepare_exchange)). The lock itself stays in the kernel.
pub enum Prepared {
    /// Run the exchange.
    Exchange,
    /// Another process refreshed already: this token, from the store, is the result;
    /// no exchange is needed.
    Adopt(Box<Token>),
    /// Another process rotated the refresh credential, and the store holds no usable
    /// token for this key: run the exchange with the store's credential instead.
    ExchangeWith(Secret),
    /// The store's lock could not be taken (or the store read under it): the exchange
    /// fails with this.
    Failed(RefreshFailure),
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepared::Exchange => f.write_str("Exchange"),
            Prepared::Adopt(..) => f.write_str("Adopt(..)"),
            Prepared::ExchangeWith(..) => f.write_str("ExchangeWith(..)"),
            Prepared::Failed(failure) => write!(f, "Failed({failure})"),
        }
    }
}

impl From<NoToken> for Error {
    /// Why a caller got no token.
    fn from(no_token: NoToken) -> Self {
        match no_token {
            NoToken::Token(error) => Self::Token(error),
            NoToken::Reentrant => Self::Reentrant,
            NoToken::Stopped => Self::DriverStopped,
        }
    }
}
