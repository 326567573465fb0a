//! What the scheduler dispatches: a prepared model behind the [`Workload`] trait.

use std::time::Duration;

use crate::error::WorkloadError;

/// Collects a request's outputs once everything enqueued for it has completed.
pub type Collect<O> = Box<dyn FnOnce() -> Result<O, WorkloadError> + Send>;

/// Something the scheduler can dispatch: a prepared model. `I` = inputs, `O` = outputs.
///
/// The scheduler never looks inside inputs or outputs; it only decides *when* and *on which
/// stream* `enqueue` runs, and calls the returned [`Collect`] once the stream has passed the
/// request's work.
pub trait Workload<I, O>: Send + Sync + 'static {
    /// Stable identifier of the model: execution-time estimates are kept per model id.
    fn model_id(&self) -> &str;

    /// Execution-time estimate measured at prepare time (refined online by the scheduler).
    fn initial_estimate(&self) -> Duration;

    /// Enqueues one inference on `stream` WITHOUT blocking; returns a closure that collects the
    /// outputs once all work enqueued so far on that stream has completed (the scheduler
    /// guarantees that: it calls the closure only after the stream has synchronised).
    fn enqueue(&self, inputs: I, stream: &aegis_cuda::Stream) -> Result<Collect<O>, WorkloadError>;
}
