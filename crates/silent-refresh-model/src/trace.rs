//! What one step of a run is: the concrete input, the instant it was fed at, and what
//! came out, in a form that compares and prints without secrets.

use std::fmt;
use std::time::{Instant, SystemTime};

use silent_refresh::Error;
use silent_refresh::RefreshFailure;
use silent_refresh::Secret;
use silent_refresh::{Action, Wakeup};
use silent_refresh::{AttemptId, RequestId};
use silent_refresh::{Credentials, Expiry, Generation, Token};

/// A secret the harness made up, known by its number: `Label(3)` stands for the secret
/// `"secret-3"`. Traces carry labels, so they compare and print without secrets.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(pub u32);

impl Label {
    /// The label of a secret that did not come from [`Label::secret`].
    pub const FOREIGN: Label = Label(u32::MAX);

    /// The secret this label stands for.
    #[must_use]
    pub fn secret(self) -> Secret {
        Secret::new(format!("secret-{}", self.0))
    }

    /// The label of a secret made by [`Label::secret`] ([`Label::FOREIGN`] otherwise).
    #[must_use]
    pub fn of(secret: &Secret) -> Label {
        secret
            .expose()
            .strip_prefix("secret-")
            .and_then(|n| n.parse().ok())
            .map_or(Label::FOREIGN, Label)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Label::FOREIGN {
            f.write_str("s?")
        } else {
            write!(f, "s{}", self.0)
        }
    }
}

/// A token as the harness hands it to the machine (a refresh result or a sign-in).
#[derive(Clone, Debug, PartialEq)]
pub struct TokenSpec {
    /// The access secret.
    pub access: Label,
    /// The refresh credential, if the response carried one.
    pub refresh: Option<Label>,
    /// The expiry as the server said it.
    pub expiry: Expiry,
    /// The scope, if any.
    pub scope: Option<String>,
    /// The wall-clock issue time, if the token says (a stored token).
    pub issued_at: Option<SystemTime>,
}

impl TokenSpec {
    /// The real token.
    #[must_use]
    pub fn to_token(&self) -> Token {
        Token {
            access_token: self.access.secret(),
            token_type: TOKEN_TYPE.to_owned(),
            expiry: self.expiry,
            refresh_token: self.refresh.map(Label::secret),
            scope: self.scope.clone(),
            issued_at: self.issued_at,
            dpop_key: None,
            keyed: Vec::new(),
        }
    }
}

/// The token type of every token the harness makes.
pub const TOKEN_TYPE: &str = "Bearer";

/// Credentials of a sign-in, with labels for secrets.
#[derive(Clone, Debug, PartialEq)]
pub enum Credential {
    /// [`Credentials::Token`].
    Token(TokenSpec),
    /// [`Credentials::RefreshToken`].
    RefreshToken(Label),
    /// [`Credentials::ClientCredentials`].
    ClientCredentials(Option<TokenSpec>),
    /// [`Credentials::Stored`].
    Stored(TokenSpec),
}

impl Credential {
    /// The real credentials.
    #[must_use]
    pub fn to_credentials(&self) -> Credentials {
        match self {
            Credential::Token(spec) => Credentials::Token(spec.to_token()),
            Credential::RefreshToken(label) => Credentials::RefreshToken(label.secret()),
            Credential::ClientCredentials(spec) => Credentials::ClientCredentials {
                token: spec.as_ref().map(TokenSpec::to_token),
            },
            Credential::Stored(spec) => Credentials::Stored(spec.to_token()),
        }
    }
}

/// One concrete input to the machine (the ids and instants are resolved).
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// `handle_request(now, deadline)`.
    Request {
        /// The custom deadline, if any.
        deadline: Option<Instant>,
    },
    /// `handle_cancel(now, request)`.
    Cancel(RequestId),
    /// `handle_refresh_result(now, attempt, result)`.
    RefreshResult {
        /// The attempt the result is for.
        attempt: AttemptId,
        /// The result.
        result: Result<TokenSpec, RefreshFailure>,
    },
    /// `handle_rejected(now, generation)`: a 401.
    Rejected(Generation),
    /// `handle_sign_in(now, wall_now, credentials)`.
    SignIn {
        /// The wall-clock reading passed with `now`.
        wall_now: SystemTime,
        /// The credentials.
        credentials: Credential,
    },
    /// `handle_sign_out(now)`.
    SignOut,
    /// `handle_timeout(now)`.
    Timeout,
    /// `handle_persisted(now, generation, outcome)`.
    Persisted {
        /// The generation the outcome is for.
        generation: Generation,
        /// What the store did.
        outcome: Stored,
    },
    /// `handle_wall_clock(now, wall_now)`.
    WallClock {
        /// The wall-clock reading.
        wall_now: SystemTime,
    },
    /// `handle_lineage_busy(now, busy)`: another key's exchange is on the wire, or not.
    LineageBusy(bool),
    /// `handle_rotated(now, credential)`: another key's exchange rotated the credential.
    Rotated(Label),
    /// `handle_lineage_dead(now, reason)`: another key's exchange found it dead.
    LineageDead,
}

/// A [`silent_refresh::Persisted`] with labels for secrets.
#[derive(Clone, Debug, PartialEq)]
pub enum Stored {
    /// [`silent_refresh::Persisted::Stored`].
    Stored,
    /// [`silent_refresh::Persisted::Conflict`]: the store's newer token.
    Conflict(TokenSpec),
    /// [`silent_refresh::Persisted::Failed`].
    Failed,
}

impl Stored {
    /// The real outcome.
    #[must_use]
    pub fn to_persisted(&self) -> silent_refresh::Persisted {
        match self {
            Stored::Stored => silent_refresh::Persisted::Stored,
            Stored::Conflict(spec) => {
                silent_refresh::Persisted::Conflict(Box::new(spec.to_token()))
            }
            Stored::Failed => silent_refresh::Persisted::Failed("disk full".to_owned()),
        }
    }
}

/// An [`Action`] with labels instead of secrets: comparable and printable.
#[derive(Clone, Debug, PartialEq)]
pub enum Act {
    /// [`Action::StartRefresh`].
    StartRefresh {
        /// The attempt id.
        attempt: AttemptId,
        /// The refresh credential sent.
        refresh_token: Option<Label>,
    },
    /// [`Action::CancelRefresh`].
    CancelRefresh {
        /// The attempt whose exchange to cancel.
        attempt: AttemptId,
    },
    /// [`Action::Persist`].
    Persist {
        /// The generation given to the token.
        generation: Generation,
        /// The access secret.
        access: Label,
        /// The token type.
        token_type: String,
        /// The scope.
        scope: Option<String>,
        /// The refresh credential stored with it.
        refresh_token: Option<Label>,
        /// The stored expiry (wall-clock or never).
        expiry: Expiry,
        /// The stored issue time.
        issued_at: Option<SystemTime>,
        /// The refresh credential it was refreshed from (compare-and-swap).
        from: Option<Label>,
    },
    /// [`Action::Forget`].
    Forget,
    /// [`Action::Grant`].
    Grant {
        /// The request.
        request: RequestId,
        /// The generation of the token granted.
        generation: Generation,
        /// Its access secret.
        access: Label,
        /// Its token type.
        token_type: String,
        /// Its scope.
        scope: Option<String>,
        /// When the machine stops handing it out.
        usable_until: Option<Instant>,
    },
    /// [`Action::Reject`].
    Reject {
        /// The request.
        request: RequestId,
        /// The error.
        error: Error,
    },
}

impl Act {
    /// The labelled form of an action.
    #[must_use]
    pub fn from_action(action: Action) -> Act {
        match action {
            Action::StartRefresh {
                attempt,
                refresh_token,
            } => Act::StartRefresh {
                attempt,
                refresh_token: refresh_token.as_ref().map(Label::of),
            },
            Action::CancelRefresh { attempt } => Act::CancelRefresh { attempt },
            Action::Persist {
                generation,
                token,
                from,
            } => Act::Persist {
                generation,
                access: Label::of(&token.access_token),
                token_type: token.token_type.clone(),
                scope: token.scope.clone(),
                refresh_token: token.refresh_token.as_ref().map(Label::of),
                expiry: token.expiry,
                issued_at: token.issued_at,
                from: from.as_ref().map(Label::of),
            },
            Action::Forget => Act::Forget,
            Action::Grant { request, token } => Act::Grant {
                request,
                generation: token.generation,
                access: Label::of(&token.secret),
                token_type: token.token_type.clone(),
                scope: token.scope.clone(),
                usable_until: token.usable_until,
            },
            Action::Reject { request, error } => Act::Reject { request, error },
        }
    }

    /// The request this action answers, if it is a `Grant` or a `Reject`.
    #[must_use]
    pub fn request(&self) -> Option<RequestId> {
        match self {
            Act::Grant { request, .. } | Act::Reject { request, .. } => Some(*request),
            _ => None,
        }
    }
}

/// One step of a run: an input, the instant it was fed at, and what came out.
#[derive(Clone, Debug)]
pub struct Step {
    /// The input.
    pub input: Input,
    /// The instant passed with it (it may be earlier than an earlier step's).
    pub now: Instant,
    /// The id `handle_request` returned, for a request.
    pub request: Option<RequestId>,
    /// The actions drained after it, in order.
    pub actions: Vec<Act>,
    /// `poll_timeout()` once the actions were drained.
    pub wakeup: Option<Wakeup>,
    /// `fresh_token()` after the step: the generation and the instant until which the
    /// driver may hand it out without asking.
    pub fresh: Option<(Generation, Option<Instant>)>,
}
