//! The log lines: one per event of the machine, with its ids, never a secret.

use silent_refresh::time::Instant;

use silent_refresh::{Event, FailureKind, Status};

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
            let retry_in_ms = retry_at.map(|at| ms_until(at, now));
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
        // An instant reads as the time left until it, not as the clock's raw value.
        Event::StatusChanged {
            status: Status::Unreachable { reason, retry_at },
        } => tracing::info!(
            status = "Unreachable",
            reason = %reason,
            retry_in_ms = ms_until(*retry_at, now),
            "token source status changed"
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
            let retry_in_ms = ms_until(*retry_at, now);
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
            retry_in_ms = ms_until(*retry_at, now),
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

/// The milliseconds from `now` until `at` (0 once it has passed), as the log lines give
/// an instant.
fn ms_until(at: Instant, now: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_unreachable_status_says_how_long_until_the_next_try() {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let now = Instant::now();
        let event = Event::StatusChanged {
            status: Status::Unreachable {
                reason: "connection refused".into(),
                retry_at: now + Duration::from_millis(1500),
            },
        };
        tracing::subscriber::with_default(subscriber, || log(&event, now, &mut false));
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        let line = String::from_utf8_lossy(&bytes);
        assert!(line.contains("status=\"Unreachable\""), "{line}");
        assert!(line.contains("retry_in_ms=1500"), "{line}");
        assert!(line.contains("connection refused"), "{line}");
        assert!(!line.contains("tv_sec"), "{line}");
    }
}
