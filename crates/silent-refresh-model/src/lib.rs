//! The reference model, the rule checker, and the harness that runs both beside the
//! real machine of [`silent_refresh`]. The property tests and the fuzzer share them.
//! This is test code (`publish = false`): it uses only the core's public API.
//!
//! - [`Op`]: one random input, owned and small (`Arbitrary`), resolved against the run
//!   so far ("the latest attempt", "a request").
//! - [`Model`]: the contract as plain functions; it predicts every action exactly.
//! - [`Checker`]: the rules of the contract, one function each ([`RULES`]),
//!   checked on the trace alone (inputs, instants, actions).
//!
//! A refresh *exchange* is on the wire from its `StartRefresh` until its result is fed
//! (rule 1); `CancelRefresh` asks the driver to end it early, nothing more.
//! - [`Harness`] and [`run`]: feed each op to the machine and the model, compare,
//!   check; at the end fail the refresh in flight, let time pass every deadline and
//!   check that every request got its outcome.
//!
//! ```
//! use std::time::Instant;
//! use silent_refresh::RefreshMode;
//! use silent_refresh_model::{run, CredentialsPick, ExpiryPick, Op, Setup, Shape, AttemptPick};
//!
//! let setup = Setup { mode: RefreshMode::StaleWhileRefreshing, shape: Shape::Small, seed: 7 };
//! let ops = [
//!     Op::SignIn(CredentialsPick::RefreshToken),
//!     Op::Request { deadline: None },
//!     Op::RefreshOk { attempt: AttemptPick::Latest, rotate: true, expiry: ExpiryPick::Short(40) },
//!     Op::WakeUp,
//!     Op::Request { deadline: None },
//! ];
//! // The one clock reading of a run; the machine never reads a clock itself.
//! run(setup.config(), Instant::now(), &ops).expect("the machine keeps the contract");
//! ```
//!
//! [`fuzz`] holds what each fuzz target in `fuzz/fuzz_targets/` checks, as plain
//! functions from bytes to a verdict.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod checker;
pub mod fuzz;
mod harness;
pub mod lineage;
mod op;
pub mod processes;
mod reference;
mod trace;

pub use checker::{
    Adopted, Checker, Failed, RULES, ResultFor, Rule, RuleCheck, StoreAnswer, View, Violation,
    ViolationKind,
};
pub use harness::{Harness, run};
pub use op::decode;
pub use op::{
    AttemptPick, CredentialsPick, DeadlinePick, ExpiryPick, FailurePick, GenerationPick, Op,
    PersistPick, RequestPick, Setup, Shape, TimeStep,
};
pub use reference::{
    EXPIRED_RESULT, LINEAGE_DEAD, Model, NO_WAY_TO_REFRESH, Snapshot, TIMED_OUT, UNKNOWN_OUTCOME,
};
pub use trace::{Act, Credential, Input, Label, Step, Stored, TOKEN_TYPE, TokenSpec};
