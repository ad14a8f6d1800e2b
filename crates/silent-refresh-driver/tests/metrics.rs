//! The `metrics` feature: a real source on the threads runtime, a hand-written
//! recorder installed globally, and refreshes that take a known time on a manual clock.
#![cfg(feature = "metrics")]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use silent_refresh::{Config, Credentials, Expiry, RefreshFailure, Token};
use silent_refresh_driver::TokenSource;
use silent_refresh_driver::clock::ManualClock;
use silent_refresh_driver::observe::{
    REFRESH_COUNT, REFRESH_DURATION, REQUESTS_WAITING, SAVE_FAILURES,
};
use silent_refresh_driver::runtime::threads::Threads;

/// One value recorded: the metric's name, its labels, and the value.
#[derive(Clone, Debug, PartialEq)]
struct Record {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Every value recorded, and a condition variable to wait for one (the kernel records
/// on the thread that fed the event, which may run a little after a caller is woken).
#[derive(Default)]
struct Log {
    records: Mutex<Vec<Record>>,
    added: Condvar,
}

impl Log {
    fn push(&self, record: Record) {
        self.records
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(record);
        self.added.notify_all();
    }

    /// Waits (on the condition variable, at most 10 s) until `found` holds.
    fn wait_for(&self, found: impl Fn(&[Record]) -> bool) -> Vec<Record> {
        let records = self.records.lock().unwrap_or_else(PoisonError::into_inner);
        let (records, _) = self
            .added
            .wait_timeout_while(records, Duration::from_secs(10), |r| !found(r))
            .unwrap_or_else(PoisonError::into_inner);
        records.clone()
    }
}

struct Handle {
    key: Key,
    log: Arc<Log>,
}

impl Handle {
    fn push(&self, value: f64) {
        self.log.push(Record {
            name: self.key.name().to_owned(),
            labels: self
                .key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
            value,
        });
    }
}

#[allow(clippy::cast_precision_loss)]
impl CounterFn for Handle {
    fn increment(&self, value: u64) {
        self.push(value as f64);
    }
    fn absolute(&self, value: u64) {
        self.push(value as f64);
    }
}

impl GaugeFn for Handle {
    fn increment(&self, value: f64) {
        self.push(value);
    }
    fn decrement(&self, value: f64) {
        self.push(-value);
    }
    fn set(&self, value: f64) {
        self.push(value);
    }
}

impl HistogramFn for Handle {
    fn record(&self, value: f64) {
        self.push(value);
    }
}

struct TestRecorder(Arc<Log>);

impl TestRecorder {
    fn handle(&self, key: &Key) -> Arc<Handle> {
        Arc::new(Handle {
            key: key.clone(),
            log: self.0.clone(),
        })
    }
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.handle(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.handle(key))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(self.handle(key))
    }
}

fn has(records: &[Record], name: &str, label: (&str, &str), value: f64) -> bool {
    records.iter().any(|r| {
        r.name == name
            && r.labels == [(label.0.to_owned(), label.1.to_owned())]
            && (r.value - value).abs() < 1e-9
    })
}

#[test]
fn a_refresh_records_its_duration_by_outcome_and_its_start_by_trigger() {
    let log = Arc::new(Log::default());
    metrics::set_global_recorder(TestRecorder(log.clone())).expect("the only recorder");

    let clock = ManualClock::new();
    // The first exchange takes 2 s and succeeds; the second takes 1.5 s and cannot
    // connect.
    let calls = AtomicUsize::new(0);
    let exchange_clock = clock.clone();
    let refresh = move |_| {
        if calls.fetch_add(1, Ordering::SeqCst) == 0 {
            exchange_clock.advance(Duration::from_secs(2));
            Ok(
                Token::bearer("at-SECRET", Expiry::In(Duration::from_secs(3600)))
                    .with_refresh_token("rt-SECRET-2"),
            )
        } else {
            exchange_clock.advance(Duration::from_millis(1500));
            Err(RefreshFailure::unreachable("connection refused"))
        }
    };
    let source = TokenSource::<Threads>::builder(Config::default())
        .clock(clock.clone())
        .credentials(Credentials::RefreshToken("rt-SECRET-1".into()))
        .refresher(refresh)
        .build()
        .expect("a timer thread");
    let ask = || source.token_within(Duration::from_secs(10));
    let token = ask().expect("the first refresh succeeds");
    let records = log.wait_for(|r| has(r, REFRESH_DURATION, ("outcome", "success"), 2.0));
    assert!(
        has(&records, REFRESH_COUNT, ("trigger", "no_token"), 1.0),
        "{records:?}"
    );
    assert!(
        has(&records, REFRESH_DURATION, ("outcome", "success"), 2.0),
        "{records:?}"
    );

    // A 401 of the current token: the next caller waits for a refresh, which cannot
    // connect, so it fails at once.
    source.report_rejected(token.generation);
    let failed = ask().expect_err("unreachable");
    assert!(
        matches!(
            failed,
            silent_refresh_driver::Error::Token(silent_refresh::Error::Unreachable { .. })
        ),
        "{failed:?}"
    );
    let records = log.wait_for(|r| has(r, REFRESH_DURATION, ("outcome", "unreachable"), 1.5));
    assert!(
        has(&records, REFRESH_COUNT, ("trigger", "rejected"), 1.0),
        "{records:?}"
    );
    assert!(
        has(&records, REFRESH_DURATION, ("outcome", "unreachable"), 1.5),
        "{records:?}"
    );

    // Callers that waited moved the gauge up and back down; nothing failed to save.
    let waiting: f64 = records
        .iter()
        .filter(|r| r.name == REQUESTS_WAITING)
        .map(|r| r.value)
        .sum();
    assert!(
        records
            .iter()
            .any(|r| r.name == REQUESTS_WAITING && r.value >= 1.0),
        "a caller waited for the first refresh: {records:?}"
    );
    assert!(
        waiting.abs() < 1e-9,
        "no caller waits any more: {records:?}"
    );
    assert!(
        !records.iter().any(|r| r.name == SAVE_FAILURES),
        "{records:?}"
    );
    // No label holds anything but the fixed names.
    for record in &records {
        for (key, value) in &record.labels {
            assert!(!value.contains("SECRET"), "{record:?}");
            assert!(matches!(key.as_str(), "outcome" | "trigger"), "{record:?}");
        }
    }

    drop(source);
}
