//! What `oauth2_client` measures besides its counts: the latency of each request
//! (a histogram, for p50, p99 and max) and a timeline of 100 ms slots (requests that
//! succeeded and failed, refreshes started and succeeded), so that an outage and its
//! recovery can be seen and plotted.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Sub-buckets per power of two above the exact range: about 1.6 % precision.
const SUB: u64 = 64;
/// Values below this many microseconds are counted exactly.
const EXACT: u64 = 1024;
/// Powers of two covered above `EXACT` (up to about 2^(10+30) µs: days).
const POWERS: u64 = 30;

/// A log-linear histogram of durations in microseconds (lock-free to record).
#[derive(Debug)]
pub struct Histogram {
    buckets: Vec<AtomicU64>,
    max_us: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        let len = usize::try_from(EXACT + SUB * POWERS).unwrap_or(usize::MAX);
        Self {
            buckets: (0..len).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

/// p50, p99 and the maximum, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Percentiles {
    /// The median.
    pub p50: f64,
    /// The 99th percentile.
    pub p99: f64,
    /// The largest.
    pub max: f64,
}

impl Histogram {
    /// Counts one duration.
    pub fn record(&self, duration: Duration) {
        let us = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        self.buckets[Self::index(us)].fetch_add(1, Ordering::Relaxed);
        self.max_us.fetch_max(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The percentiles (`None` when nothing was recorded).
    #[must_use]
    pub fn percentiles(&self) -> Option<Percentiles> {
        let count = self.count.load(Ordering::Relaxed);
        if count == 0 {
            return None;
        }
        let max_us = self.max_us.load(Ordering::Relaxed);
        let at = |q: f64| {
            // The smallest value with at least q of the counts at or below it.
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (index, bucket) in self.buckets.iter().enumerate() {
                seen += bucket.load(Ordering::Relaxed);
                if seen >= rank {
                    return Self::upper(index).min(max_us);
                }
            }
            max_us
        };
        let ms = |us: u64| {
            #[allow(clippy::cast_precision_loss)]
            let ms = us as f64 / 1000.0;
            ms
        };
        Some(Percentiles {
            p50: ms(at(0.50)),
            p99: ms(at(0.99)),
            max: ms(max_us),
        })
    }

    fn index(us: u64) -> usize {
        let index = if us < EXACT {
            us
        } else {
            let power = u64::from(63 - us.leading_zeros()); // >= 10
            let sub = (us >> (power - 6)) & (SUB - 1);
            EXACT + (power - 10).min(POWERS - 1) * SUB + sub
        };
        usize::try_from(index).unwrap_or(usize::MAX)
    }

    /// The largest value that falls in bucket `index`.
    fn upper(index: usize) -> u64 {
        let index = index as u64;
        if index < EXACT {
            return index;
        }
        let power = (index - EXACT) / SUB + 10;
        let sub = (index - EXACT) % SUB;
        ((SUB + sub + 1) << (power - 6)) - 1
    }
}

/// `{"p50":…,"p99":…,"max":…}` in milliseconds, or `null`.
#[must_use]
pub fn percentiles_json(percentiles: Option<Percentiles>) -> String {
    match percentiles {
        None => "null".to_owned(),
        Some(p) => format!(
            "{{\"p50\":{:.3},\"p99\":{:.3},\"max\":{:.3}}}",
            p.p50, p.p99, p.max
        ),
    }
}

/// What happened in one slot of the timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    /// Requests that succeeded.
    pub ok: u64,
    /// Requests that failed.
    pub failed: u64,
    /// Refresh exchanges started.
    pub refreshes_started: u64,
    /// Refreshes that brought a token.
    pub refreshes_succeeded: u64,
}

/// Which count of a slot to add to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A request succeeded.
    Ok,
    /// A request failed.
    Failed,
    /// A refresh exchange started.
    RefreshStarted,
    /// A refresh brought a token.
    RefreshSucceeded,
}

/// Counts per 100 ms since the start of a run.
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    slots: Mutex<Vec<Slot>>,
}

/// The width of one slot.
pub const SLOT: Duration = Duration::from_millis(100);

impl Timeline {
    /// A timeline starting now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            slots: Mutex::new(Vec::new()),
        }
    }

    /// Counts `mark` in the slot of now.
    pub fn mark(&self, mark: Mark) {
        let slot = usize::try_from(self.start.elapsed().as_millis() / SLOT.as_millis())
            .unwrap_or(usize::MAX)
            .min(10_000_000);
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() <= slot {
            slots.resize(slot + 1, Slot::default());
        }
        let counts = &mut slots[slot];
        match mark {
            Mark::Ok => counts.ok += 1,
            Mark::Failed => counts.failed += 1,
            Mark::RefreshStarted => counts.refreshes_started += 1,
            Mark::RefreshSucceeded => counts.refreshes_succeeded += 1,
        }
    }

    /// The slots so far, up to now.
    #[must_use]
    pub fn slots(&self) -> Vec<Slot> {
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let now = usize::try_from(self.start.elapsed().as_millis() / SLOT.as_millis())
            .unwrap_or(usize::MAX);
        if slots.len() <= now && now < 10_000_000 {
            slots.resize(now + 1, Slot::default());
        }
        slots
    }

    /// The CSV text: a header, then one line per slot (`t_ms` is the slot's start).
    #[must_use]
    pub fn to_csv(&self) -> String {
        let mut csv = String::from("t_ms,ok,failed,refreshes_started,refreshes_succeeded\n");
        for (n, slot) in self.slots().iter().enumerate() {
            let _ = writeln!(
                csv,
                "{},{},{},{},{}",
                n as u128 * SLOT.as_millis(),
                slot.ok,
                slot.failed,
                slot.refreshes_started,
                slot.refreshes_succeeded
            );
        }
        csv
    }

    /// Writes the CSV to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, self.to_csv())
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_bucket_precision() {
        let histogram = Histogram::default();
        assert_eq!(histogram.percentiles(), None);
        for ms in 1..=1000u64 {
            histogram.record(Duration::from_millis(ms));
        }
        let p = histogram.percentiles().unwrap();
        assert!((p.p50 - 500.0).abs() <= 500.0 * 0.02, "{p:?}");
        assert!((p.p99 - 990.0).abs() <= 990.0 * 0.02, "{p:?}");
        assert!((p.max - 1000.0).abs() < f64::EPSILON, "{p:?}");
        // Sub-millisecond values are exact.
        let fast = Histogram::default();
        fast.record(Duration::from_micros(250));
        assert_eq!(fast.percentiles().unwrap().p50, 0.25);
    }

    #[test]
    fn every_bucket_holds_what_its_upper_bound_says() {
        for us in [
            0, 1, 1023, 1024, 1025, 2047, 2048, 65_535, 1_000_000, 7_777_777,
        ] {
            let index = Histogram::index(us);
            assert!(Histogram::upper(index) >= us, "{us}");
            if index > 0 {
                assert!(Histogram::upper(index - 1) < us, "{us}");
            }
        }
    }

    #[test]
    fn the_timeline_counts_marks_in_their_slot() {
        let timeline = Timeline::new();
        timeline.mark(Mark::Ok);
        timeline.mark(Mark::RefreshStarted);
        timeline.mark(Mark::RefreshSucceeded);
        timeline.mark(Mark::Failed);
        let csv = timeline.to_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("t_ms,ok,failed,refreshes_started,refreshes_succeeded")
        );
        assert_eq!(lines.next(), Some("0,1,1,1,1"));
    }
}
