//! Earliest deadline first with least-slack admission.

use std::time::{Duration, Instant};

use super::{add_saturating, Choice, PolicyContext, SchedulingPolicy};
use crate::error::{RejectReason, Slack};
use crate::request::RequestId;

/// Earliest deadline first, with admission by slack.
///
/// On every decision the policy plays the queue forward: streams become free at `now` (free
/// ones) or at the running requests' expected ends; candidates with deadlines take the earliest
/// free stream in deadline order, each for its conservative estimate (`estimate_bound` plus the
/// measured per-request overhead). A candidate that would finish after its deadline even so is
/// **rejected now** with `DeadlineUnmeetable { deadline, estimate, slack }` (and does not
/// occupy the stream in the play-forward), instead of running late. When a stream is free, the
/// earliest-deadline feasible candidate is dispatched; requests without a deadline run only
/// when no deadline request is queued (oldest first).
///
/// When no stream is free it asks to be woken at the earliest latest-start time of a queued
/// request, so an unmeetable deadline is reported as soon as it becomes unmeetable.
#[derive(Debug, Clone, Default)]
pub struct EarliestDeadlineFirst {
    /// Rejections found by the last play-forward, handed out one per call (latest first in
    /// the vector, so `pop` yields the earliest deadline first).
    pending_rejects: Vec<(RequestId, RejectReason)>,
    avail: Vec<Instant>,
    order: Vec<usize>,
    margin: Duration,
}

impl EarliestDeadlineFirst {
    /// A new EDF policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// EDF that also keeps `margin` of slack in reserve for every admitted request: for hosts
    /// whose scheduling jitter (a preempted worker thread, a late wakeup) exceeds what the
    /// measured deviations capture. Trades more early rejections for fewer late results.
    pub fn with_margin(margin: Duration) -> Self {
        Self {
            margin,
            ..Self::default()
        }
    }
}

impl SchedulingPolicy for EarliestDeadlineFirst {
    fn name(&self) -> &'static str {
        if self.margin.is_zero() {
            "edf"
        } else {
            "edf+margin"
        }
    }

    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        let cands = ctx.candidates;
        while let Some((id, reason)) = self.pending_rejects.pop() {
            if cands.position(id).is_some() {
                return Choice::Reject(id, reason);
            }
        }

        // Stream availability: free streams now, busy ones at their expected end (or now if
        // they overran it).
        self.avail.clear();
        self.avail
            .extend(std::iter::repeat_n(ctx.now, ctx.free_streams));
        self.avail
            .extend(ctx.in_flight.iter().map(|f| f.expected_end.max(ctx.now)));
        if self.avail.is_empty() {
            self.avail.push(ctx.now);
        }

        self.order.clear();
        self.order.extend(
            cands
                .iter()
                .enumerate()
                .filter(|(_, c)| c.deadline.is_some())
                .map(|(i, _)| i),
        );
        // Ties on the deadline go to the older request (stable sort, index order = id order).
        self.order
            .sort_by_key(|&i| cands.get(i).and_then(|c| c.deadline));

        let mut first_feasible = None;
        let mut recheck: Option<Instant> = None;
        let mut rejects = Vec::new();
        for &i in &self.order {
            let Some(c) = cands.get(i) else { continue };
            let Some(deadline) = c.deadline else { continue };
            let need = c.estimate_bound + ctx.overhead + self.margin;
            let (k, start) = self
                .avail
                .iter()
                .copied()
                .enumerate()
                .min_by_key(|&(_, t)| t)
                .unwrap_or((0, ctx.now));
            let finish = add_saturating(start, need);
            if finish > deadline {
                rejects.push((
                    c.id,
                    RejectReason::DeadlineUnmeetable {
                        deadline,
                        estimate: need,
                        slack: Slack::between(deadline, finish),
                    },
                ));
                continue;
            }
            if let Some(slot) = self.avail.get_mut(k) {
                *slot = finish;
            }
            first_feasible.get_or_insert(c.id);
            // Past this instant the request cannot start in time any more.
            let latest_start = deadline.checked_sub(need).unwrap_or(ctx.now);
            if latest_start > ctx.now {
                recheck = Some(recheck.map_or(latest_start, |r| r.min(latest_start)));
            }
        }
        if !rejects.is_empty() {
            rejects.reverse();
            self.pending_rejects = rejects;
            if let Some((id, reason)) = self.pending_rejects.pop() {
                return Choice::Reject(id, reason);
            }
        }
        if ctx.free_streams == 0 {
            return Choice::Wait {
                recheck_at: recheck,
            };
        }
        if let Some(id) = first_feasible {
            return Choice::Dispatch(id);
        }
        match cands.iter().find(|c| c.deadline.is_none()) {
            Some(c) => Choice::Dispatch(c.id),
            None => Choice::WAIT,
        }
    }
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::policy::test_support::{cand, ctx};
    use crate::policy::{CandidateQueue, InFlight};
    use crate::request::TenantId;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn earliest_deadline_dispatched_first() {
        let t = Instant::now();
        let q: CandidateQueue = [
            cand(t, 1, 0, Some(50), 0, 1),
            cand(t, 2, 0, Some(10), 0, 1),
            cand(t, 3, 0, None, 0, 1),
            cand(t, 4, 0, Some(20), 0, 1),
        ]
        .into_iter()
        .collect();
        let mut p = EarliestDeadlineFirst::new();
        assert_eq!(
            p.decide(&ctx(t, &q, 1, &[])),
            Choice::Dispatch(RequestId(2))
        );
    }

    #[test]
    fn unmeetable_rejected_with_slack_before_dispatch() {
        let t = Instant::now();
        // 5 ms of work due in 3 ms: can never make it.
        let q: CandidateQueue = [cand(t, 1, 0, Some(3), 0, 5), cand(t, 2, 0, Some(30), 0, 5)]
            .into_iter()
            .collect();
        let mut p = EarliestDeadlineFirst::new();
        match p.decide(&ctx(t, &q, 1, &[])) {
            Choice::Reject(
                id,
                RejectReason::DeadlineUnmeetable {
                    estimate, slack, ..
                },
            ) => {
                assert_eq!(id, RequestId(1));
                assert_eq!(estimate, ms(5));
                assert_eq!(slack, Slack(-2_000_000));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[test]
    fn queue_contention_rejects_the_one_that_cannot_fit() {
        let t = Instant::now();
        // One stream busy until t+4; three 4 ms requests due at 8, 12, 13: the third would
        // finish at 16 > 13 once the first two are played forward.
        let q: CandidateQueue = [
            cand(t, 1, 0, Some(8), 0, 4),
            cand(t, 2, 0, Some(12), 0, 4),
            cand(t, 3, 0, Some(13), 0, 4),
        ]
        .into_iter()
        .collect();
        let busy = [InFlight {
            id: RequestId(0),
            stream: 0,
            tenant: TenantId(0),
            dispatched_at: t,
            expected_end: t + ms(4),
        }];
        let mut p = EarliestDeadlineFirst::new();
        match p.decide(&ctx(t, &q, 0, &busy)) {
            Choice::Reject(id, RejectReason::DeadlineUnmeetable { slack, .. }) => {
                assert_eq!(id, RequestId(3));
                assert_eq!(slack, Slack(-3_000_000));
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        // No stream free: wait, and be woken at the first latest start (8 - 4 = t+4).
        let mut q2 = q.clone();
        q2.remove(RequestId(3));
        assert_eq!(
            p.decide(&ctx(t, &q2, 0, &busy)),
            Choice::Wait {
                recheck_at: Some(t + ms(4))
            }
        );
    }

    #[test]
    fn margin_rejects_what_plain_edf_admits() {
        let t = Instant::now();
        // 4 ms of work due in 5 ms: 1 ms of slack.
        let q: CandidateQueue = [cand(t, 1, 0, Some(5), 0, 4)].into_iter().collect();
        let plain = EarliestDeadlineFirst::new().decide(&ctx(t, &q, 1, &[]));
        assert_eq!(plain, Choice::Dispatch(RequestId(1)));
        let strict = EarliestDeadlineFirst::with_margin(ms(2)).decide(&ctx(t, &q, 1, &[]));
        assert!(matches!(
            strict,
            Choice::Reject(RequestId(1), RejectReason::DeadlineUnmeetable { .. })
        ));
    }

    #[test]
    fn no_deadline_requests_run_when_nothing_is_urgent() {
        let t = Instant::now();
        let q: CandidateQueue = [cand(t, 5, 0, None, 0, 1), cand(t, 6, 0, None, 0, 1)]
            .into_iter()
            .collect();
        let mut p = EarliestDeadlineFirst::new();
        assert_eq!(
            p.decide(&ctx(t, &q, 2, &[])),
            Choice::Dispatch(RequestId(5))
        );
    }
}
