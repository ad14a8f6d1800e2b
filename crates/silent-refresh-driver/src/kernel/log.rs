//! The log lines: one per event of the machine, with its ids, never a secret.

use silent_refresh::time::Instant;

use silent_refresh::{Event, FailureKind};

/// One log line per event, with its ids; never a secret. Failed saves are logged at
/// error level once per streak.
pub(super) fn log(event: &Event, now: Instant, save_failing: &mut bool) {
    match event {
        Event::RefreshStarted { attempt, trigger } => tracing::info!(
            attempt = attempt.0,
            trigger = trigger.as_str(),
            "token refresh started"
        ),
        Event::RefreshOverdue { attempt } => tracing::warn!(
            attempt = attempt.0,
            "token refresh exchange passed its deadline: it runs on until its own timeout \
             ends it (its answer may carry a rotated refresh token), and no other starts \
             until it has ended"
        ),
        Event::TokenAdopted {
            generation,
            attempt,
        } => tracing::info!(
            generation = generation.0,
            attempt = attempt.map(|a| a.0),
            "new token adopted"
        ),
        Event::RefreshFailed {
            attempt,
            kind,
            message,
            retry_at,
        } => {
            let retry_in_ms = retry_at.map(|at| {
                u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
            });
            match kind {
                FailureKind::Transient => tracing::warn!(
                    attempt = attempt.0,
                    reason = %message,
                    retry_in_ms,
                    "token refresh failed; backing off"
                ),
                FailureKind::Misconfigured => tracing::error!(
                    attempt = attempt.0,
                    reason = %message,
                    retry_in_ms,
                    "token refresh refused: the client is misconfigured; the refresh \
                     credential is kept"
                ),
                FailureKind::Terminal => tracing::error!(
                    attempt = attempt.0,
                    reason = %message,
                    "token refresh failed for good; sign-in required"
                ),
            }
        }
        Event::ResultDropped { attempt } => tracing::debug!(
            attempt = attempt.0,
            "refresh result dropped: stale, duplicate, or superseded by new credentials"
        ),
        Event::StatusChanged { status } => {
            tracing::info!(status = ?status, "token source status changed");
        }
        Event::Persisted { generation } => {
            if std::mem::take(save_failing) {
                tracing::info!(
                    generation = generation.0,
                    "token stored; the session is durable again"
                );
            } else {
                tracing::debug!(generation = generation.0, "token stored");
            }
        }
        Event::PersistFailed {
            generation,
            message,
            retry_at,
        } => {
            let retry_in_ms = u64::try_from(retry_at.saturating_duration_since(now).as_millis())
                .unwrap_or(u64::MAX);
            if std::mem::replace(save_failing, true) {
                tracing::warn!(generation = generation.0, reason = %message, retry_in_ms, "saving the token failed again");
            } else {
                tracing::error!(generation = generation.0, reason = %message, retry_in_ms, "saving the token failed: the session is not durable (a restart would lose it) until a retry succeeds");
            }
        }
        Event::AdoptedFromStore { generation } => tracing::info!(
            generation = generation.0,
            "the store held a newer session (another process refreshed first): adopted it"
        ),
        Event::RejectionsRepeat {
            generation,
            count,
            retry_at,
        } => tracing::warn!(
            generation = generation.0,
            rejected_in_a_row = count,
            retry_in_ms = u64::try_from(retry_at.saturating_duration_since(now).as_millis())
                .unwrap_or(u64::MAX),
            "the API keeps rejecting fresh tokens (401): refreshing again is held back; \
             check the token's audience and scope, the clocks, and the API's configuration"
        ),
        Event::WallClockJumped { ahead } => tracing::warn!(
            ahead_ms = u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX),
            "the wall clock ran ahead of the monotonic clock (a suspend?): token expiries moved"
        ),
        _ => tracing::debug!(event = ?event, "token source event"),
    }
}
