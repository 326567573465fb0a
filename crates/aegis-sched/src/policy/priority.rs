//! Strict priority with FIFO inside a level and optional aging.

use std::time::Duration;

use super::{Candidate, Choice, PolicyContext, SchedulingPolicy};

/// Dispatches the most urgent request, oldest first within a priority level.
///
/// With aging, a request's effective priority rises by one level for every `aging` interval
/// it has waited, so a steady stream of urgent work cannot starve low-priority requests
/// forever. Rejects nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct StrictPriority {
    aging: Option<Duration>,
}

impl StrictPriority {
    /// Strict priority, no aging (low priorities can starve).
    pub fn new() -> Self {
        Self { aging: None }
    }

    /// Strict priority where waiting `every` raises a request by one level. A zero interval
    /// disables aging.
    pub fn with_aging(every: Duration) -> Self {
        Self {
            aging: (!every.is_zero()).then_some(every),
        }
    }

    /// The effective priority of `c` at `ctx.now`.
    pub fn effective(&self, c: &Candidate, ctx: &PolicyContext<'_>) -> u64 {
        let base = u64::from(c.priority.0);
        match self.aging {
            None => base,
            Some(every) => {
                let waited = ctx.now.saturating_duration_since(c.enqueued_at);
                let levels = waited.as_nanos() / every.as_nanos().max(1);
                base.saturating_add(u64::try_from(levels).unwrap_or(u64::MAX))
            }
        }
    }
}

impl SchedulingPolicy for StrictPriority {
    fn name(&self) -> &'static str {
        if self.aging.is_some() {
            "priority+aging"
        } else {
            "priority"
        }
    }

    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        if ctx.free_streams == 0 {
            return Choice::WAIT;
        }
        // Candidates come oldest first, so keeping the first maximum is FIFO within a level.
        let mut best: Option<(u64, &Candidate)> = None;
        for c in ctx.candidates.iter() {
            let e = self.effective(c, ctx);
            if best.is_none_or(|(b, _)| e > b) {
                best = Some((e, c));
            }
        }
        match best {
            Some((_, c)) => Choice::Dispatch(c.id),
            None => Choice::WAIT,
        }
    }
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use rstest::rstest;

    use super::*;
    use crate::policy::test_support::{cand, ctx};
    use crate::policy::CandidateQueue;
    use crate::request::RequestId;

    #[rstest]
    #[case::highest_wins(&[(1, 1), (2, 5), (3, 5), (4, 2)], 0, 2)]
    #[case::fifo_in_level(&[(1, 3), (2, 3), (3, 3)], 0, 1)]
    // Waited 10 ms with aging every 2 ms: 1 + 5 = 6 beats the fresh 5.
    #[case::aging_lifts_old(&[(1, 1), (2, 5)], 2, 1)]
    fn picks(#[case] reqs: &[(u64, u8)], #[case] aging_ms: u64, #[case] expect: u64) {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(10);
        let q: CandidateQueue = reqs
            .iter()
            .map(|&(id, p)| {
                let mut c = cand(t0, id, p, None, 0, 1);
                // The first request has waited since t0; the others arrived just now.
                if id != 1 {
                    c.enqueued_at = now;
                }
                c
            })
            .collect();
        let mut p = StrictPriority::with_aging(Duration::from_millis(aging_ms));
        assert_eq!(
            p.decide(&ctx(now, &q, 1, &[])),
            Choice::Dispatch(RequestId(expect))
        );
    }

    #[test]
    fn waits_when_no_stream_is_free() {
        let t = Instant::now();
        let q: CandidateQueue = [cand(t, 1, 1, None, 0, 1)].into_iter().collect();
        assert_eq!(
            StrictPriority::new().decide(&ctx(t, &q, 0, &[])),
            Choice::WAIT
        );
    }
}
