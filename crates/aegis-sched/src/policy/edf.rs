//! Earliest deadline first with least-slack admission.

use std::time::{Duration, Instant};

use std::collections::VecDeque;

use super::{add_saturating, Candidate, Choice, Feedback, PolicyContext, SchedulingPolicy};
use crate::error::{RejectReason, Slack};
use crate::request::RequestId;

/// Quantile of the prediction error the learned margin tracks.
const SLIP_QUANTILE: f64 = 0.99;
/// Step of the quantile tracker (ns): the margin rises by about this much per request that
/// overran its prediction by more than the margin, and falls by 1/99 of it per other request.
const SLIP_STEP_NS: f64 = 10_000.0;
/// The learned margin never exceeds this: one long host stall must not make EDF reject
/// everything with a tight deadline (bounded early rejection, not a wild one).
const SLIP_MAX_NS: f64 = 1_000_000.0;
/// The learned margin applied to a request is at most its bound divided by this.
const TAIL_SHARE: u32 = 4;
/// Dispatched requests whose prediction is remembered for learning (the pool has ≤ 64 streams).
const PREDICTIONS_KEPT: usize = 128;

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
///
/// The conservative estimate captures the mean and typical deviation of device time and
/// overhead, not the tail (a preempted worker, a late wake-up on a shared host), and a request
/// admitted with less slack than its tail then finishes late. So the policy also learns a
/// margin online: the 99th percentile of each dispatched request's prediction error (measured
/// service time minus the time it was admitted with), kept at ≥ 0 and ≤ 1 ms, and added to
/// every admission, capped at a quarter of the request's own conservative estimate. Requests that the tail would make late are then rejected early, with the
/// margin included in `estimate` and `slack`.
#[derive(Debug, Clone, Default)]
pub struct EarliestDeadlineFirst {
    /// Rejections found by the last play-forward, handed out one per call (latest first in
    /// the vector, so `pop` yields the earliest deadline first).
    pending_rejects: Vec<(RequestId, RejectReason)>,
    avail: Vec<Instant>,
    order: Vec<usize>,
    margin: Duration,
    /// Learned tail margin (ns): a quantile tracker of the prediction error.
    slip: f64,
    /// The latest dispatch decision: (request, its margin-free predicted service time).
    last_dispatch: Option<(RequestId, Duration)>,
    /// Dispatched requests and their margin-free predictions, oldest first.
    predictions: VecDeque<(RequestId, Duration)>,
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

    /// The learned tail margin added to every admission right now.
    pub fn learned_margin(&self) -> Duration {
        Duration::from_nanos(self.slip.max(0.0) as u64)
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
        let learned = self.learned_margin();
        for &i in &self.order {
            let Some(c) = cands.get(i) else { continue };
            let Some(deadline) = c.deadline else { continue };
            // The learned tail is capped per request at a quarter of its own bound: a tail
            // learned on long requests (or in a burst) never rejects short ones wholesale.
            let margin = self.margin + learned.min(c.estimate_bound / TAIL_SHARE);
            let need = c.estimate_bound + ctx.overhead + margin;
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
            // Remember the margin-free prediction: the margin learns from its error.
            first_feasible.get_or_insert((c.id, need.saturating_sub(margin)));
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
        if let Some((id, predicted)) = first_feasible {
            self.last_dispatch = Some((id, predicted));
            return Choice::Dispatch(id);
        }
        match cands.iter().find(|c| c.deadline.is_none()) {
            Some(c) => Choice::Dispatch(c.id),
            None => Choice::WAIT,
        }
    }

    fn on_dispatch(&mut self, candidate: &Candidate, _stream: usize, _now: Instant) {
        if let Some((id, predicted)) = self.last_dispatch.take() {
            if id == candidate.id {
                if self.predictions.len() == PREDICTIONS_KEPT {
                    self.predictions.pop_front();
                }
                self.predictions.push_back((id, predicted));
            }
        }
    }

    fn on_complete(&mut self, feedback: &Feedback) {
        let Some(i) = self.predictions.iter().position(|p| p.0 == feedback.id) else {
            return;
        };
        let Some((_, predicted)) = self.predictions.remove(i) else {
            return;
        };
        if !feedback.succeeded {
            return;
        }
        // The error of the margin-free prediction; the tracker converges to its 99th
        // percentile.
        let err = feedback.service_time.as_nanos() as f64 - predicted.as_nanos() as f64;
        if err > self.slip {
            self.slip += SLIP_STEP_NS * SLIP_QUANTILE;
        } else {
            self.slip -= SLIP_STEP_NS * (1.0 - SLIP_QUANTILE);
        }
        self.slip = self.slip.clamp(-SLIP_MAX_NS, SLIP_MAX_NS);
    }
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::policy::test_support::{cand, ctx};
    use crate::policy::{Candidate, CandidateQueue, Feedback, InFlight};
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

    /// Dispatches `id` (a 1 ms request due in 10 ms) and reports it as taking `took`.
    fn run_once(p: &mut EarliestDeadlineFirst, t: Instant, id: u64, took: Duration) {
        let q: CandidateQueue = [cand(t, id, 0, Some(10), 0, 1)].into_iter().collect();
        assert_eq!(
            p.decide(&ctx(t, &q, 1, &[])),
            Choice::Dispatch(RequestId(id))
        );
        let c = q.view().get(0).cloned().expect("candidate");
        p.on_dispatch(&c, 0, t);
        p.on_complete(&Feedback {
            id: RequestId(id),
            model: c.model.clone(),
            tenant: c.tenant,
            stream: 0,
            estimate: c.estimate,
            device_time: Some(took),
            service_time: took,
            succeeded: true,
        });
    }

    #[test]
    fn tail_margin_is_learned_from_overruns_bounded_and_decays() {
        let t = Instant::now();
        let mut p = EarliestDeadlineFirst::new();
        assert_eq!(p.learned_margin(), Duration::ZERO);
        // Every request overruns its 1 ms prediction by 300 us: the margin climbs to it.
        for id in 0..200 {
            run_once(&mut p, t, id, Duration::from_micros(1300));
        }
        let m = p.learned_margin();
        assert!(
            m >= Duration::from_micros(250) && m <= Duration::from_micros(320),
            "{m:?}"
        );
        // 4 ms of work due in 4.1 ms fits the plain estimate but not the learned tail.
        let q: CandidateQueue = [Candidate {
            deadline: Some(t + Duration::from_micros(4100)),
            ..cand(t, 1000, 0, None, 0, 4)
        }]
        .into_iter()
        .collect();
        assert!(matches!(
            p.decide(&ctx(t, &q, 1, &[])),
            Choice::Reject(RequestId(1000), RejectReason::DeadlineUnmeetable { .. })
        ));
        // Applied to a short request, it is capped at a quarter of that request's bound:
        // 1 ms of work due in 1.26 ms still runs (margin 250 us, not ~300 us).
        let q: CandidateQueue = [Candidate {
            deadline: Some(t + Duration::from_micros(1260)),
            ..cand(t, 1001, 0, None, 0, 1)
        }]
        .into_iter()
        .collect();
        assert_eq!(
            p.decide(&ctx(t, &q, 1, &[])),
            Choice::Dispatch(RequestId(1001))
        );
        // Huge overruns cannot push it past the cap.
        for id in 2000..2400 {
            run_once(&mut p, t, id, Duration::from_millis(50));
        }
        assert!(p.learned_margin() <= Duration::from_millis(1));
        // Requests that finish early let it decay back to zero.
        for id in 3000..60_000 {
            run_once(&mut p, t, id, Duration::from_micros(900));
        }
        assert_eq!(p.learned_margin(), Duration::ZERO);
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
