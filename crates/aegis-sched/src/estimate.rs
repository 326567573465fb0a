//! Per-model execution-time estimates: seeded at prepare time, refined online.

use std::collections::HashMap;
use std::time::Duration;

use crate::policy::ModelName;

/// A model's execution-time estimate.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEstimate {
    /// The model.
    pub model: ModelName,
    /// Exponentially weighted moving average of measured device time (seeded with the
    /// workload's prepare-time estimate).
    pub mean: Duration,
    /// EWMA of the absolute deviation from the mean (like TCP's RTT variance).
    pub deviation: Duration,
    /// Measurements folded in so far.
    pub samples: u64,
}

#[derive(Debug)]
struct Entry {
    name: ModelName,
    mean: f64,
    dev: f64,
    samples: u64,
}

/// EWMA estimator table. `bound = mean + factor × deviation` is what admission uses.
#[derive(Debug)]
pub(crate) struct Estimates {
    alpha: f64,
    factor: f64,
    models: HashMap<ModelName, Entry>,
    /// Per-request overhead beyond device time (dispatch, completion hop, collect): EWMA of
    /// the mean and of the absolute deviation, in ns.
    overhead: f64,
    overhead_dev: f64,
}

fn ns(d: Duration) -> f64 {
    d.as_nanos() as f64
}

fn dur(ns: f64) -> Duration {
    Duration::from_nanos(if ns.is_finite() && ns > 0.0 {
        ns as u64
    } else {
        0
    })
}

impl Estimates {
    pub(crate) fn new(alpha: f64, factor: f64) -> Self {
        Self {
            alpha,
            factor,
            models: HashMap::new(),
            overhead: 0.0,
            overhead_dev: 0.0,
        }
    }

    /// The model's (name, mean, bound), registering it with `initial` on first sight.
    pub(crate) fn lookup(
        &mut self,
        model: &str,
        initial: impl FnOnce() -> Duration,
    ) -> (ModelName, Duration, Duration) {
        let e = match self.models.get(model) {
            Some(e) => e,
            None => {
                let name: ModelName = ModelName::from(model);
                let e = Entry {
                    name: ModelName::clone(&name),
                    mean: ns(initial()),
                    dev: 0.0,
                    samples: 0,
                };
                self.models.entry(name).or_insert(e)
            }
        };
        (
            ModelName::clone(&e.name),
            dur(e.mean),
            dur(e.mean + self.factor * e.dev),
        )
    }

    /// Folds a measured device time into the model's estimate.
    pub(crate) fn observe(&mut self, model: &str, measured: Duration) {
        let alpha = self.alpha;
        if let Some(e) = self.models.get_mut(model) {
            // Winsorise: one stall (a preempted host worker, a page fault storm) may move the
            // estimate by at most one mean (or four deviations); a real slowdown is still
            // learned within a few samples.
            let cap = e.mean + e.mean.max(4.0 * e.dev);
            let m = if e.samples > 0 {
                ns(measured).min(cap)
            } else {
                ns(measured)
            };
            let err = m - e.mean;
            e.mean += alpha * err;
            e.dev += alpha * (err.abs() - e.dev);
            e.samples += 1;
        }
    }

    /// Folds a measured per-request overhead in.
    pub(crate) fn observe_overhead(&mut self, overhead: Duration) {
        let err = ns(overhead) - self.overhead;
        self.overhead += self.alpha * err;
        self.overhead_dev += self.alpha * (err.abs() - self.overhead_dev);
    }

    /// Conservative per-request overhead: mean plus `factor` deviations, like the models' bound.
    pub(crate) fn overhead(&self) -> Duration {
        dur(self.overhead + self.factor * self.overhead_dev)
    }

    pub(crate) fn get(&self, model: &str) -> Option<ModelEstimate> {
        self.models.get(model).map(|e| ModelEstimate {
            model: ModelName::clone(&e.name),
            mean: dur(e.mean),
            deviation: dur(e.dev),
            samples: e.samples,
        })
    }

    pub(crate) fn all(&self) -> Vec<ModelEstimate> {
        let mut v: Vec<_> = self.models.keys().filter_map(|k| self.get(k)).collect();
        v.sort_by(|a, b| a.model.cmp(&b.model));
        v
    }
}

/// Half-life of an overhead estimate that receives no new samples.
pub(crate) const OVERHEAD_HALF_LIFE: Duration = Duration::from_millis(50);

/// `overhead` measured `age` ago, decayed with [`OVERHEAD_HALF_LIFE`].
///
/// Why: the overhead is learned only from completed requests. One measured during a burst
/// (the loop busy with thousands of submissions) can be large enough that EDF rejects every
/// request; then nothing completes, no sample corrects it, and the scheduler would reject
/// forever. Decaying it when no samples arrive lets requests back in to re-measure.
pub(crate) fn decayed(overhead: Duration, age: Duration) -> Duration {
    let halvings = age.as_secs_f64() / OVERHEAD_HALF_LIFE.as_secs_f64();
    if halvings > 60.0 {
        return Duration::ZERO;
    }
    overhead.mul_f64(0.5f64.powf(halvings))
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn ewma_moves_toward_measurements() {
        let mut e = Estimates::new(0.5, 2.0);
        let (_, mean, bound) = e.lookup("a", || Duration::from_millis(10));
        assert_eq!(
            (mean, bound),
            (Duration::from_millis(10), Duration::from_millis(10))
        );
        e.observe("a", Duration::from_millis(20));
        let (_, mean, bound) = e.lookup("a", || Duration::ZERO);
        assert_eq!(mean, Duration::from_millis(15));
        // dev = 0.5 * 10 ms = 5 ms; bound = 15 + 2 * 5.
        assert_eq!(bound, Duration::from_millis(25));
        assert_eq!(e.get("a").map(|m| m.samples), Some(1));
        assert!(e.get("b").is_none());
    }

    #[test]
    fn stale_overhead_decays() {
        let o = Duration::from_millis(4);
        assert_eq!(decayed(o, Duration::ZERO), o);
        assert_eq!(decayed(o, OVERHEAD_HALF_LIFE * 2), Duration::from_millis(1));
        assert_eq!(decayed(o, Duration::from_secs(3600)), Duration::ZERO);
    }

    #[test]
    fn one_stall_moves_the_estimate_by_a_bounded_step() {
        let mut e = Estimates::new(0.5, 0.0);
        e.lookup("a", || Duration::from_millis(1));
        e.observe("a", Duration::from_millis(1));
        // A 100x stall counts as at most 2 ms (mean + max(mean, 4 dev)).
        e.observe("a", Duration::from_millis(100));
        assert_eq!(
            e.get("a").map(|m| m.mean),
            Some(Duration::from_micros(1500))
        );
    }
}
