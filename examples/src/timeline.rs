//! A readable timeline: one line per event, with the time since the act began.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Prints timestamped lines (or nothing, when quiet). Cheap to clone; the clones
/// share one clock.
#[derive(Clone)]
pub struct Timeline {
    start: Arc<Mutex<Instant>>,
    quiet: bool,
}

impl Timeline {
    /// A timeline that prints to stdout, or stays silent when `quiet`.
    #[must_use]
    pub fn new(quiet: bool) -> Self {
        Self {
            start: Arc::new(Mutex::new(Instant::now())),
            quiet,
        }
    }

    /// Whether it prints.
    #[must_use]
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Starts counting time from now.
    pub fn restart(&self) {
        *self.start.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Prints `what`, said by `who`, with the time since the last restart.
    pub fn say(&self, who: &str, what: impl fmt::Display) {
        if self.quiet {
            return;
        }
        let start = *self.start.lock().unwrap_or_else(PoisonError::into_inner);
        let secs = start.elapsed().as_secs_f64();
        println!("  {secs:>6.3}s  {who:<6}  {what}");
    }

    /// Prints a line as is.
    pub fn line(&self, what: impl fmt::Display) {
        if !self.quiet {
            println!("{what}");
        }
    }
}

impl fmt::Debug for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timeline")
            .field("quiet", &self.quiet)
            .finish_non_exhaustive()
    }
}
