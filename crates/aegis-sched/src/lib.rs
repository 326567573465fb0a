//! # aegis-sched — Layer 4 of AegisRT: the scheduler
//!
//! Decides **when** and **on which stream** each inference runs, and explains every decision.
//!
//! - A [`Scheduler`] is built from an injected [`SchedulingPolicy`] and a [`StreamPool`].
//!   [`Scheduler::start`] spawns the orchestration loop on its own thread;
//!   [`Scheduler::stop`] ends it gracefully ([`StopMode::Drain`] or [`StopMode::Cancel`]);
//!   dropping the scheduler is `stop(Cancel)`.
//! - [`Scheduler::submit`] / [`Scheduler::submit_with`] never block: a bounded queue refuses
//!   with a Transient `QueueFull { capacity }` and hands the request back; invalid requests
//!   (deadline already past, tenant unknown to the policy) are refused as Permanent.
//! - The loop batch-drains submissions and completions from one inbox, asks the policy for a
//!   [`Choice`] (dispatch / reject / wait), dispatches on a free stream (start event, the
//!   workload's `enqueue`, end event, then a host completion marker), and when the marker runs
//!   synchronises the stream, measures device time from the events, runs the workload's
//!   [`Collect`], delivers the outcome and releases the stream. Idle, it blocks (with a
//!   timeout only when the policy asked to re-check a deadline).
//! - With [`SchedulerConfig::inline_dispatch`], a submitter that finds the loop state free
//!   (try-lock, never waiting) runs the admit/decide/dispatch step itself, saving the thread
//!   wake-up between submit and dispatch; outcomes are still delivered on the scheduling
//!   thread, and the loop state is one lock, so decisions stay serial.
//! - Policies: [`Fifo`], [`StrictPriority`] (FIFO within a level, optional aging),
//!   [`EarliestDeadlineFirst`] (least-slack admission: a request that can no longer meet its
//!   deadline is rejected early with `DeadlineUnmeetable { deadline, estimate, slack }`; the
//!   admission includes a learned, bounded tail margin), and
//!   [`WeightedFair`] (tenants share measured device time by weight). Per-model estimates
//!   start at the workload's prepare-time figure and follow an EWMA of measured device time.
//! - Every decision is a structured `tracing` event with its reason (target `aegis_sched`);
//!   dispatch and completion are spans (`sched.request` lives from dispatch to completion),
//!   and a bounded log is kept for tests and operators ([`Scheduler::decisions`]).
//!
//! ## What this crate owns
//! The scheduling thread, the submission queue, the stream pool, the policies and the
//! execution-time estimates.
//!
//! ## What it must never do
//! - Look inside inputs or outputs, or depend on the executor's types: it is generic over
//!   [`Workload`] (the context layer implements it for aegis-exec's prepared model).
//! - Block a submitter, spin a core while idle, or run a request whose deadline it already
//!   knows it cannot meet (under EDF).
//! - Hold `unsafe`, or import concurrency primitives from anywhere but `aegis_cuda::sync`.
//!
//! ## Invariants
//! - **Architecture invariant: only aegis-sched spawns scheduling threads** (one per started
//!   [`Scheduler`]).
//! - Every accepted request receives exactly one outcome: outputs or a typed
//!   [`RequestError`]. Completion is consumed by value (at most once) and an uncompleted
//!   request completes as abandoned when dropped (at least once); stop, drop and a panicking
//!   policy all end in outcomes, never in a hang.
//! - A stream runs at most one request at a time, and is released only after its work has
//!   completed (the stream has synchronised).
//! - Allocation is deterministic: the same sequence of submissions and completions yields the
//!   same stream assignment (first free stream in priority-then-index order).
//! - Request ids increase in acceptance order; the candidate queue is in id order.
#![warn(missing_docs)]

mod decision;
mod error;
mod estimate;
pub mod policy;
mod pool;
pub mod primitives;
mod request;
mod scheduler;
mod workload;

pub use decision::{Action, Decision};
pub use error::{
    CancelReason, RejectReason, RequestError, SchedError, Slack, SubmitError, SubmitErrorKind,
    WorkloadError,
};
pub use estimate::ModelEstimate;
pub use policy::{
    Candidate, CandidateQueue, Candidates, Choice, EarliestDeadlineFirst, Feedback, Fifo, InFlight,
    PolicyContext, SchedulingPolicy, StrictPriority, WeightedFair,
};
pub use pool::{StreamPool, StreamPreference};
pub use primitives::StopMode;
pub use request::{
    Callback, Completed, Outcome, Priority, Request, RequestHandle, RequestId, TenantId,
};
pub use scheduler::{SchedStats, Scheduler, SchedulerConfig};
pub use workload::{Collect, Workload};
