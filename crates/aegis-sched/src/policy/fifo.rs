//! First in, first out.

use super::{Choice, PolicyContext, SchedulingPolicy};

/// Dispatches the oldest request whenever a stream is free. Rejects nothing (a request whose
/// deadline has passed still runs, late): the baseline the other policies are measured against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fifo;

impl SchedulingPolicy for Fifo {
    fn name(&self) -> &'static str {
        "fifo"
    }

    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        match ctx.candidates.oldest() {
            Some(c) if ctx.free_streams > 0 => Choice::Dispatch(c.id),
            _ => Choice::WAIT,
        }
    }
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::policy::test_support::{cand, ctx};
    use crate::policy::CandidateQueue;
    use crate::request::RequestId;

    #[test]
    fn dispatches_oldest_and_waits_without_streams() {
        let t = Instant::now();
        let q: CandidateQueue = [cand(t, 7, 9, None, 0, 1), cand(t, 3, 0, Some(1), 0, 1)]
            .into_iter()
            .collect();
        let mut p = Fifo;
        assert_eq!(
            p.decide(&ctx(t, &q, 1, &[])),
            Choice::Dispatch(RequestId(3))
        );
        assert_eq!(p.decide(&ctx(t, &q, 0, &[])), Choice::WAIT);
    }
}
