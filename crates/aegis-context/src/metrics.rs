//! Per-context counters and their consistent snapshot.

use std::time::Duration;

use aegis_cuda::sync::{lock, Mutex};

/// A consistent view of a context's counters: all taken under one lock, so
/// `inferences`, `errors` and the times always belong to the same instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Inferences that completed successfully.
    pub inferences: u64,
    /// Inferences that failed.
    pub errors: u64,
    /// Execution time summed over successful inferences.
    pub total_time: Duration,
    /// `total_time / inferences` (zero before the first).
    pub average_time: Duration,
    /// Most device memory the context held at once, in bytes.
    pub peak_memory_bytes: u64,
    /// Most streams the context used at once.
    pub peak_streams: usize,
}

#[derive(Debug, Default)]
struct Counters {
    inferences: u64,
    errors: u64,
    total_time: Duration,
}

/// The mutable counters behind [`MetricsSnapshot`]. One short lock per inference: simpler
/// than a seqlock and cheap next to an inference.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    inner: Mutex<Counters>,
}

impl Metrics {
    pub(crate) fn record_success(&self, took: Duration) {
        let mut c = lock(&self.inner);
        c.inferences += 1;
        c.total_time = c.total_time.saturating_add(took);
    }

    pub(crate) fn record_error(&self) {
        lock(&self.inner).errors += 1;
    }

    pub(crate) fn snapshot(&self, peak_memory_bytes: u64, peak_streams: usize) -> MetricsSnapshot {
        let c = lock(&self.inner);
        let average_time = match u32::try_from(c.inferences) {
            Ok(0) => Duration::ZERO,
            Ok(n) => c.total_time / n,
            Err(_) => Duration::from_secs_f64(c.total_time.as_secs_f64() / c.inferences as f64),
        };
        MetricsSnapshot {
            inferences: c.inferences,
            errors: c.errors,
            total_time: c.total_time,
            average_time,
            peak_memory_bytes,
            peak_streams,
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn average_and_counts() {
        let m = Metrics::default();
        assert_eq!(m.snapshot(0, 0).average_time, Duration::ZERO);
        m.record_success(Duration::from_millis(2));
        m.record_success(Duration::from_millis(4));
        m.record_error();
        let s = m.snapshot(7, 1);
        assert_eq!(s.inferences, 2);
        assert_eq!(s.errors, 1);
        assert_eq!(s.total_time, Duration::from_millis(6));
        assert_eq!(s.average_time, Duration::from_millis(3));
        assert_eq!((s.peak_memory_bytes, s.peak_streams), (7, 1));
    }
}
