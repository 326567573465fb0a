//! Scheduling policies: the [`SchedulingPolicy`] trait and the built-in policies.
//!
//! A policy sees the queued requests' metadata ([`Candidate`]s, in arrival order) and the
//! state of the streams, and returns one [`Choice`]: dispatch a request, reject one with a
//! reason, or wait. The scheduler applies the choice, logs it, and asks again until the policy
//! waits; so a policy may reject several requests (one per call) before dispatching one.
//! Policies get feedback on dispatch and completion (measured device time) for fairness.
//! They never touch streams, inputs or outputs, so they can be unit-tested on candidate lists.

mod edf;
mod fair;
mod fifo;
mod priority;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::error::RejectReason;
use crate::request::{Priority, RequestId, TenantId};

pub use edf::EarliestDeadlineFirst;
pub use fair::WeightedFair;
pub use fifo::Fifo;
pub use priority::StrictPriority;

/// A model's id, shared cheaply between candidates, decisions and estimates.
///
/// `std`'s `Arc` on purpose, not the `aegis_cuda::sync` facade: it is immutable data, never a
/// synchronisation point, and loom's `Arc` does not hold unsized values.
pub type ModelName = std::sync::Arc<str>;

/// A queued request as a policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Its id (ids increase in arrival order).
    pub id: RequestId,
    /// The model it runs.
    pub model: ModelName,
    /// Priority (higher is more urgent).
    pub priority: Priority,
    /// Absolute deadline.
    pub deadline: Option<Instant>,
    /// Tenant.
    pub tenant: TenantId,
    /// When it was submitted.
    pub enqueued_at: Instant,
    /// Expected device time: the model's running mean (EWMA) when the request was queued.
    pub estimate: Duration,
    /// Conservative device time for admission: mean plus a multiple of the mean deviation.
    pub estimate_bound: Duration,
}

/// The queued candidates, in arrival (= id) order. Owned by the scheduler; policies get a
/// [`Candidates`] view. Public so policies can be tested on hand-made lists.
#[derive(Debug, Clone, Default)]
pub struct CandidateQueue {
    items: VecDeque<Candidate>,
}

impl CandidateQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a candidate. Ids must increase; a candidate whose id is not larger than the
    /// last one is refused (returned).
    pub fn push(&mut self, c: Candidate) -> Result<(), Candidate> {
        if self.items.back().is_some_and(|b| b.id >= c.id) {
            return Err(c);
        }
        self.items.push_back(c);
        Ok(())
    }

    /// Removes a candidate by id.
    pub fn remove(&mut self, id: RequestId) -> Option<Candidate> {
        let i = self.view().position(id)?;
        self.items.remove(i)
    }

    /// Removes the candidate at `index`.
    pub fn remove_at(&mut self, index: usize) -> Option<Candidate> {
        self.items.remove(index)
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.items.clear();
    }

    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A read-only view for policies.
    pub fn view(&self) -> Candidates<'_> {
        Candidates { items: &self.items }
    }
}

impl FromIterator<Candidate> for CandidateQueue {
    /// Collects candidates, sorting them by id.
    fn from_iter<T: IntoIterator<Item = Candidate>>(iter: T) -> Self {
        let mut v: Vec<Candidate> = iter.into_iter().collect();
        v.sort_by_key(|c| c.id);
        v.dedup_by_key(|c| c.id);
        Self { items: v.into() }
    }
}

/// A read-only view of the queued candidates, in arrival (= id) order.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    items: &'a VecDeque<Candidate>,
}

impl<'a> Candidates<'a> {
    /// Number of candidates.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The candidate at `index` (0 = oldest).
    pub fn get(&self, index: usize) -> Option<&'a Candidate> {
        self.items.get(index)
    }

    /// The oldest candidate.
    pub fn oldest(&self) -> Option<&'a Candidate> {
        self.items.front()
    }

    /// All candidates, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &'a Candidate> + 'a {
        self.items.iter()
    }

    /// Index of the candidate with `id` (binary search: ids are sorted).
    pub fn position(&self, id: RequestId) -> Option<usize> {
        self.items.binary_search_by_key(&id, |c| c.id).ok()
    }

    /// The candidate with `id`.
    pub fn find(&self, id: RequestId) -> Option<&'a Candidate> {
        self.position(id).and_then(|i| self.items.get(i))
    }
}

/// A request running on a stream, as a policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The request.
    pub id: RequestId,
    /// Pool index of its stream.
    pub stream: usize,
    /// Its tenant.
    pub tenant: TenantId,
    /// When it was dispatched.
    pub dispatched_at: Instant,
    /// When it is expected to be done (dispatch + conservative estimate + overhead).
    pub expected_end: Instant,
}

/// Everything a policy sees when asked for a decision.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext<'a> {
    /// The scheduler's clock for this decision.
    pub now: Instant,
    /// Queued requests, oldest first (never empty when `decide` is called).
    pub candidates: Candidates<'a>,
    /// Streams free right now: `Dispatch` is only honoured when this is > 0.
    pub free_streams: usize,
    /// Streams in the pool.
    pub streams: usize,
    /// Requests running now.
    pub in_flight: &'a [InFlight],
    /// Measured scheduling overhead per request beyond device time (dispatch, completion
    /// hop, collect): add it to estimates when predicting finish times.
    pub overhead: Duration,
}

/// What a policy decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// Run this candidate on a free stream now.
    Dispatch(RequestId),
    /// Complete this candidate with an error now, without running it.
    Reject(RequestId, RejectReason),
    /// Do nothing until something changes (a submission, a completion) or `recheck_at`.
    Wait {
        /// When to ask again even if nothing changes (e.g. when a deadline becomes unmeetable).
        recheck_at: Option<Instant>,
    },
}

impl Choice {
    /// Wait for the next submission or completion.
    pub const WAIT: Self = Self::Wait { recheck_at: None };
}

/// Feedback on a finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// The request.
    pub id: RequestId,
    /// Its model.
    pub model: ModelName,
    /// Its tenant.
    pub tenant: TenantId,
    /// Pool index of its stream.
    pub stream: usize,
    /// The estimate it carried at dispatch (what `on_dispatch` saw).
    pub estimate: Duration,
    /// Device time measured by events; `None` when the work failed before it could be timed.
    pub device_time: Option<Duration>,
    /// Wall time from dispatch to completion on the scheduling thread.
    pub service_time: Duration,
    /// True when it produced outputs.
    pub succeeded: bool,
}

/// A scheduling policy. Runs on the scheduling thread only (hence `Send`, not `Sync`).
///
/// Contract: `decide` is called with at least one candidate; it returns a [`Choice`] naming a
/// current candidate. A `Dispatch` when no stream is free, or a choice naming an unknown id, is
/// logged as a policy error and treated as `Wait`. A panic fails the scheduler (every pending
/// request completes with `Cancelled { SchedulerFailed }`).
pub trait SchedulingPolicy: Send + 'static {
    /// Short name used in logs and decisions.
    fn name(&self) -> &'static str;

    /// The tenants this policy accepts; `None` accepts any. Asked once, at scheduler
    /// construction: a submission for any other tenant is refused as invalid (Permanent).
    fn known_tenants(&self) -> Option<Vec<TenantId>> {
        None
    }

    /// The next decision.
    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice;

    /// A candidate was dispatched (charge it, for fairness).
    fn on_dispatch(&mut self, _candidate: &Candidate, _stream: usize, _now: Instant) {}

    /// A dispatched request finished (measured device time, for fairness and estimates).
    fn on_complete(&mut self, _feedback: &Feedback) {}
}

impl SchedulingPolicy for Box<dyn SchedulingPolicy> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn known_tenants(&self) -> Option<Vec<TenantId>> {
        (**self).known_tenants()
    }
    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        (**self).decide(ctx)
    }
    fn on_dispatch(&mut self, candidate: &Candidate, stream: usize, now: Instant) {
        (**self).on_dispatch(candidate, stream, now)
    }
    fn on_complete(&mut self, feedback: &Feedback) {
        (**self).on_complete(feedback)
    }
}

/// `t + d`, saturating far in the future instead of overflowing.
pub(crate) fn add_saturating(t: Instant, d: Duration) -> Instant {
    t.checked_add(d)
        .or_else(|| t.checked_add(Duration::from_secs(86_400 * 365)))
        .unwrap_or(t)
}

#[cfg(all(test, not(loom)))]
pub(crate) mod test_support {
    use super::*;

    /// A candidate arriving `at_ms` after `base` with the given fields.
    pub(crate) fn cand(
        base: Instant,
        id: u64,
        priority: u8,
        deadline_ms: Option<u64>,
        tenant: u32,
        estimate_ms: u64,
    ) -> Candidate {
        Candidate {
            id: RequestId(id),
            model: ModelName::from("m"),
            priority: Priority(priority),
            deadline: deadline_ms.map(|d| base + Duration::from_millis(d)),
            tenant: TenantId(tenant),
            enqueued_at: base,
            estimate: Duration::from_millis(estimate_ms),
            estimate_bound: Duration::from_millis(estimate_ms),
        }
    }

    pub(crate) fn ctx<'a>(
        now: Instant,
        q: &'a CandidateQueue,
        free: usize,
        in_flight: &'a [InFlight],
    ) -> PolicyContext<'a> {
        PolicyContext {
            now,
            candidates: q.view(),
            free_streams: free,
            streams: free + in_flight.len(),
            in_flight,
            overhead: Duration::ZERO,
        }
    }
}
