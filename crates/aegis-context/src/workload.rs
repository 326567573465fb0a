//! The bridge to aegis-sched: a context as a [`Workload`], and a policy wrapper that keeps
//! at most one request per model in flight (a prepared model has one arena).

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use aegis_cuda::{CudaError, ErrorCategory, Stream};
use aegis_exec::{ExecError, Executor, HostTensor};
use aegis_sched::{
    Candidate, CandidateQueue, Choice, Collect, Feedback, PolicyContext, RequestId,
    SchedulingPolicy, TenantId, Workload, WorkloadError,
};
use std::sync::Arc;

use crate::context::{ExecutionContext, Run};

/// A context dispatched by the scheduler. Requests for one model must not overlap (one
/// arena): run it under a [`SerialPerModel`] policy, which the runtime always does. Should
/// two overlap anyway, the second is refused with a Transient `NotReady` (Running), never run
/// on a busy arena.
#[derive(Debug)]
pub struct ContextWorkload {
    ctx: Arc<ExecutionContext>,
    estimate: Duration,
}

impl ContextWorkload {
    /// Wraps `ctx`; `estimate` is its prepare-time execution-time figure.
    pub fn new(ctx: Arc<ExecutionContext>, estimate: Duration) -> Self {
        Self { ctx, estimate }
    }

    /// The context.
    pub fn context(&self) -> &Arc<ExecutionContext> {
        &self.ctx
    }
}

impl Workload<Vec<HostTensor>, Vec<HostTensor>> for ContextWorkload {
    fn model_id(&self) -> &str {
        self.ctx.model_id()
    }

    fn initial_estimate(&self) -> Duration {
        self.estimate
    }

    fn enqueue(
        &self,
        inputs: Vec<HostTensor>,
        stream: &Stream,
    ) -> Result<Collect<Vec<HostTensor>>, WorkloadError> {
        let run = self.ctx.begin(&inputs).map_err(WorkloadError::from_error)?;
        let enqueued = {
            // The scheduler's stream is where the inference ends; extra streams of a
            // multi-stream schedule are the context's own.
            let mut streams: Vec<&Stream> = vec![stream];
            streams.extend(run.prepared.streams.iter().skip(1));
            // The outputs are read with `read_outputs` once the scheduler has synchronised the
            // stream, so the borrowing handle is not kept.
            Executor::enqueue(&run.prepared.model, &inputs, &streams).map(drop)
        };
        if let Err(e) = enqueued {
            return Err(match self.ctx.end(run, Err(e)) {
                Err(err) => WorkloadError::from_error(err),
                Ok(_) => WorkloadError::new(ErrorCategory::Permanent, "enqueue failed"),
            });
        }
        let guard = RunGuard {
            ctx: Arc::clone(&self.ctx),
            run: Some(run),
        };
        Ok(Box::new(move || guard.collect()))
    }
}

/// Ends a scheduled run exactly once: with its outputs when collected, or as failed when the
/// scheduler drops the collect step (its stream reported an error).
struct RunGuard {
    ctx: Arc<ExecutionContext>,
    run: Option<Run>,
}

impl RunGuard {
    fn collect(mut self) -> Result<Vec<HostTensor>, WorkloadError> {
        let Some(run) = self.run.take() else {
            return Err(WorkloadError::new(
                ErrorCategory::Permanent,
                "run already ended",
            ));
        };
        let result = run.prepared.model.read_outputs();
        self.ctx.end(run, result).map_err(WorkloadError::from_error)
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let Some(run) = self.run.take() else {
            return;
        };
        // The scheduler drops the collect step only when the stream failed; the precise error
        // goes to the request's outcome (and the runtime refines the fault with it). Here the
        // context learns what it can: the device's poison cause, or a stream failure.
        let source = run
            .prepared
            .generation
            .device
            .poisoned()
            .unwrap_or_else(|| CudaError::WorkFailed {
                label: "aegis-context.run".into(),
                stream: 0,
                category: ErrorCategory::Transient,
                message: "the stream reported an error before the outputs were collected".into(),
            });
        let model = self.ctx.model_id().to_owned();
        let _ = self.ctx.end(run, Err(ExecError::Device { model, source }));
    }
}

/// Wraps a policy so that at most one request per model is in flight: candidates of a model
/// that is running are hidden from the inner policy until it completes.
pub struct SerialPerModel<P> {
    inner: P,
    /// Model -> the request of it in flight.
    busy: BTreeMap<String, RequestId>,
    scratch: CandidateQueue,
}

impl<P: fmt::Debug> fmt::Debug for SerialPerModel<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerialPerModel")
            .field("inner", &self.inner)
            .field("busy", &self.busy)
            .finish()
    }
}

impl<P: SchedulingPolicy> SerialPerModel<P> {
    /// Wraps `inner`.
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            busy: BTreeMap::new(),
            scratch: CandidateQueue::new(),
        }
    }
}

impl<P: SchedulingPolicy> SchedulingPolicy for SerialPerModel<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn known_tenants(&self) -> Option<Vec<TenantId>> {
        self.inner.known_tenants()
    }

    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        // A request that failed at dispatch never reports completion: trust the in-flight list.
        self.busy
            .retain(|_, id| ctx.in_flight.iter().any(|f| f.id == *id));
        if self.busy.is_empty()
            || !ctx
                .candidates
                .iter()
                .any(|c| self.busy.contains_key(&*c.model))
        {
            return self.inner.decide(ctx);
        }
        self.scratch.clear();
        for c in ctx.candidates.iter() {
            if !self.busy.contains_key(&*c.model) {
                // Same id order as the source queue, so pushes cannot be refused.
                let _ = self.scratch.push(c.clone());
            }
        }
        if self.scratch.is_empty() {
            // Every queued model is running: its completion wakes the scheduler.
            return Choice::WAIT;
        }
        let view = PolicyContext {
            now: ctx.now,
            candidates: self.scratch.view(),
            free_streams: ctx.free_streams,
            streams: ctx.streams,
            in_flight: ctx.in_flight,
            overhead: ctx.overhead,
        };
        self.inner.decide(&view)
    }

    fn on_dispatch(&mut self, candidate: &Candidate, stream: usize, now: Instant) {
        self.busy.insert(candidate.model.to_string(), candidate.id);
        self.inner.on_dispatch(candidate, stream, now);
    }

    fn on_complete(&mut self, feedback: &Feedback) {
        if self.busy.get(&*feedback.model) == Some(&feedback.id) {
            self.busy.remove(&*feedback.model);
        }
        self.inner.on_complete(feedback);
    }
}
