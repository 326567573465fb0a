//! [`ExecutionContext`]: one model's isolated execution state on a device.

use std::fmt;
use std::time::{Duration, Instant};

use std::sync::Arc;

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::{Categorized, CudaError, ErrorCategory, Stream, StreamPriority};
use aegis_exec::{
    ExecError, ExecOptions, ExecutionGraph, Executor, HostTensor, MemoryRequirement, PreparedModel,
};
use aegis_memory::DeviceMemoryPool;

use crate::backend::{Backend, DeviceGeneration};
use crate::budget::{BudgetLimits, ResourceBudget};
use crate::error::{ContextError, Resource};
use crate::fault::{FaultBoundary, FaultRecord};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::state::{ContextEvent, ContextState, RunTicket, StateCell, TicketRefusal};

const TARGET: &str = "aegis_context";

/// Most streams one context may be budgeted (the scheduler's stream pool limit).
pub const MAX_STREAMS: usize = 64;

/// A model prepared on one device generation, with the private streams a synchronous
/// inference runs on.
pub(crate) struct Prepared {
    pub(crate) model: PreparedModel,
    pub(crate) streams: Vec<Stream>,
    pub(crate) generation: Arc<DeviceGeneration>,
}

impl fmt::Debug for Prepared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prepared")
            .field("streams", &self.streams.len())
            .field("generation", &self.generation.generation)
            .finish()
    }
}

/// One run in progress: its ticket, what it holds, and when it started.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) ticket: RunTicket,
    pub(crate) prepared: Arc<Prepared>,
    pub(crate) started: Instant,
    bytes: u64,
    streams: usize,
}

/// One model's execution context: its budget, state machine, fault boundary and metrics.
///
/// Built only by [`ExecutionContext::create`], which validates everything; not `Clone` (it
/// owns the model's device memory); movable. A fault here never changes another context's
/// state, except a fatal device fault, which faults every context on the device (through
/// [`crate::DeviceHealth`]). Dropping it releases its memory, also while Running (the
/// in-flight work keeps the memory alive until its streams drain).
///
/// Not `Clone`:
/// ```compile_fail
/// fn needs_clone<T: Clone>() {}
/// needs_clone::<aegis_context::ExecutionContext>();
/// ```
pub struct ExecutionContext {
    model_id: Arc<str>,
    limits: BudgetLimits,
    budget: ResourceBudget,
    state: Arc<StateCell>,
    faults: Arc<FaultBoundary>,
    metrics: Metrics,
    backend: Backend,
    graph: Arc<ExecutionGraph>,
    options: ExecOptions,
    /// Bytes charged to the budget for the prepared model (weights, arena, workspace).
    resident: Mutex<u64>,
    prepared: Mutex<Option<Arc<Prepared>>>,
    /// Membership in the current device's health: (generation, member id).
    member: Mutex<Option<(Arc<DeviceGeneration>, u64)>>,
}

impl fmt::Debug for ExecutionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutionContext")
            .field("model", &self.model_id)
            .field("state", &self.state())
            .field("limits", &self.limits)
            .field("memory_used", &self.budget.memory_used())
            .finish()
    }
}

/// What a model needs with the options a budget implies, before loading anything.
///
/// # Errors
/// The executor's error when the graph cannot be planned.
pub fn requirement_for(
    graph: &ExecutionGraph,
    options: &ExecOptions,
) -> Result<MemoryRequirement, ContextError> {
    PreparedModel::memory_requirement(graph, options).map_err(ContextError::load)
}

/// Execution options for a context: the backend's, with streams capped by the budget.
pub fn options_for(base: &ExecOptions, limits: BudgetLimits) -> ExecOptions {
    ExecOptions {
        streams: base.streams.clamp(1, limits.streams.max(1)),
        threads: base.threads,
    }
}

/// Checks a model's resident memory against a budget (admission).
///
/// # Errors
/// [`ContextError::InsufficientBudget`] with the exact shortfall.
pub fn admit(
    model_id: &str,
    req: &MemoryRequirement,
    limits: BudgetLimits,
) -> Result<(), ContextError> {
    let required = req.total();
    if required > limits.memory_bytes {
        return Err(ContextError::InsufficientBudget {
            model: model_id.to_owned(),
            weights: req.weights_bytes + req.prepared_weights_bytes,
            arena: req.arena_bytes,
            workspace: req.workspace_bytes,
            required,
            budget: limits.memory_bytes,
            shortfall: required - limits.memory_bytes,
        });
    }
    Ok(())
}

impl ExecutionContext {
    /// Creates the context of `model_id` (a model the backend knows) under `limits`, and
    /// prepares the model on the backend's device (Created -> Ready).
    ///
    /// # Errors
    /// - [`ContextError::ZeroBudget`] / [`ContextError::ImpossibleBudget`] for limits that are
    ///   zero or larger than the device (or [`MAX_STREAMS`]);
    /// - [`ContextError::UnknownModel`] when the backend has no such model;
    /// - [`ContextError::InsufficientBudget`] when weights + arena + workspace exceed the
    ///   memory limit (admission, checked before anything is allocated);
    /// - [`ContextError::DevicePoisoned`] when the device is lost;
    /// - [`ContextError::Load`] when preparing fails.
    pub fn create(
        model_id: &str,
        limits: BudgetLimits,
        backend: &Backend,
    ) -> Result<Self, ContextError> {
        limits.validate()?;
        let generation = backend.generation();
        let capacity = generation.device.info().total_memory;
        if limits.memory_bytes > capacity {
            return Err(ContextError::ImpossibleBudget {
                resource: Resource::Memory,
                requested: limits.memory_bytes,
                available: capacity,
            });
        }
        if limits.streams > MAX_STREAMS {
            return Err(ContextError::ImpossibleBudget {
                resource: Resource::Streams,
                requested: limits.streams as u64,
                available: MAX_STREAMS as u64,
            });
        }
        let Some(graph) = backend.graph(model_id) else {
            return Err(ContextError::UnknownModel {
                model: model_id.to_owned(),
                known: backend.model_ids(),
            });
        };
        let options = options_for(backend.options(), limits);
        let req = requirement_for(&graph, &options)?;
        admit(model_id, &req, limits)?;

        let ctx = Self {
            model_id: Arc::from(model_id),
            limits,
            budget: ResourceBudget::new(limits)?,
            state: Arc::new(StateCell::new(ContextState::Created)),
            faults: Arc::new(FaultBoundary::new()),
            metrics: Metrics::default(),
            backend: backend.clone(),
            graph,
            options,
            resident: Mutex::new(0),
            prepared: Mutex::new(None),
            member: Mutex::new(None),
        };
        tracing::info!(
            target: TARGET,
            event = "ContextCreated",
            model = model_id,
            budget_bytes = limits.memory_bytes,
            budget_streams = limits.streams,
            weights_bytes = req.weights_bytes + req.prepared_weights_bytes,
            arena_bytes = req.arena_bytes,
            workspace_bytes = req.workspace_bytes,
            "context created"
        );
        // On failure `ctx` drops here: Destroyed, nothing held.
        ctx.prepare_on(&generation)?;
        ctx.transition(ContextEvent::Prepared)?;
        Ok(ctx)
    }

    /// Prepares the model on `generation` and joins its health; replaces any earlier prepare.
    fn prepare_on(&self, generation: &Arc<DeviceGeneration>) -> Result<(), ContextError> {
        if let Some(cause) = generation.health.poisoned() {
            return Err(self.poisoned_error(&cause));
        }
        let pool = DeviceMemoryPool::new(&generation.device, self.limits.memory_bytes);
        let model = PreparedModel::prepare(Arc::clone(&self.graph), &pool, &self.options)
            .map_err(ContextError::load)?;
        let streams = (0..model.schedule().streams.max(1))
            .map(|_| Stream::new(&generation.device, StreamPriority::NORMAL))
            .collect::<Result<Vec<_>, CudaError>>()?;
        let bytes = model.memory().total();
        {
            // Swap the resident charge: the old prepared model (if any) is released below.
            let mut resident = lock(&self.resident);
            self.budget.release_memory(*resident)?;
            *resident = 0;
            self.budget.allocate_memory(bytes)?;
            *resident = bytes;
        }
        let prepared = Arc::new(Prepared {
            model,
            streams,
            generation: Arc::clone(generation),
        });
        *lock(&self.prepared) = Some(prepared);
        let id = generation.health.register(
            Arc::clone(&self.model_id),
            Arc::clone(&self.state),
            Arc::clone(&self.faults),
        );
        if let Some((old, old_id)) = lock(&self.member).replace((Arc::clone(generation), id)) {
            old.health.unregister(old_id);
        }
        Ok(())
    }

    /// The model id.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The budget limits.
    pub fn limits(&self) -> BudgetLimits {
        self.limits
    }

    /// The budget and its live use.
    pub fn budget(&self) -> &ResourceBudget {
        &self.budget
    }

    /// The current state.
    pub fn state(&self) -> ContextState {
        self.state.get()
    }

    /// The graph the context runs.
    pub fn graph(&self) -> &Arc<ExecutionGraph> {
        &self.graph
    }

    /// Device memory the prepared model holds (weights, arena, workspace).
    pub fn resident(&self) -> Option<MemoryRequirement> {
        lock(&self.prepared).as_ref().map(|p| p.model.memory())
    }

    /// Names of the model's inputs, in the order `execute` expects them.
    pub fn input_names(&self) -> Vec<String> {
        self.graph
            .inputs()
            .iter()
            .map(|&t| self.graph.tensor(t).name.clone())
            .collect()
    }

    /// True while a fault is recorded.
    pub fn has_fault(&self) -> bool {
        self.faults.has_error()
    }

    /// The last recorded fault.
    pub fn last_fault(&self) -> Option<FaultRecord> {
        self.faults.last_error()
    }

    /// Clears the recorded fault without changing the state (see [`Self::reset`]).
    pub fn clear_fault(&self) -> Option<FaultRecord> {
        self.faults.clear_error()
    }

    /// A consistent snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics
            .snapshot(self.budget.memory_peak(), self.budget.streams_peak())
    }

    /// Faulted -> Ready: clears the fault so work is accepted again.
    ///
    /// # Errors
    /// [`ContextError::DevicePoisoned`] when the device is lost (rebuild instead);
    /// [`ContextError::InvalidTransition`] when not Faulted.
    pub fn reset(&self) -> Result<(), ContextError> {
        if let Some(cause) = self.current_generation().health.poisoned() {
            return Err(self.poisoned_error(&cause));
        }
        self.transition(ContextEvent::Reset)?;
        let cleared = self.faults.clear_error();
        tracing::info!(target: TARGET, event = "ContextReset", model = %self.model_id, cleared = ?cleared.map(|f| f.message), "context reset");
        Ok(())
    }

    /// Re-prepares the model on the backend's current device (after
    /// [`Backend::rebuild_device`]) and, if it was Faulted, resets it to Ready.
    ///
    /// # Errors
    /// Preparing fails, or the context is Running or Destroyed.
    pub fn rebuild(&self) -> Result<(), ContextError> {
        let state = self.state();
        if matches!(state, ContextState::Running | ContextState::Destroyed) {
            return Err(self.not_ready(state));
        }
        let generation = self.backend.generation();
        // Drop the old prepared model first: its memory was on the old device.
        *lock(&self.prepared) = None;
        self.prepare_on(&generation)?;
        if self.state() == ContextState::Faulted {
            self.transition(ContextEvent::Reset)?;
            self.faults.clear_error();
        }
        tracing::info!(target: TARGET, event = "ContextRebuilt", model = %self.model_id, generation = generation.generation, "context re-prepared on the rebuilt device");
        Ok(())
    }

    /// Runs one inference synchronously on the context's own streams: Ready -> Running,
    /// reserve the budget (input staging bytes and the streams used), run, update the
    /// counters -> Ready; on a device failure record the fault -> Faulted and return it. A
    /// fatal fault faults every context on the device.
    ///
    /// # Errors
    /// [`ContextError::NotReady`] (busy, faulted, ...), [`ContextError::DevicePoisoned`],
    /// [`ContextError::BudgetExceeded`], [`ContextError::Execution`].
    pub fn execute(&self, inputs: &[HostTensor]) -> Result<Vec<HostTensor>, ContextError> {
        let run = self.begin(inputs)?;
        let streams: Vec<&Stream> = run.prepared.streams.iter().collect();
        let result = Executor::run(&run.prepared.model, inputs, &streams);
        drop(streams);
        self.end(run, result)
    }

    /// Starts a run: checks the device, Ready -> Running, reserves the budget.
    pub(crate) fn begin(&self, inputs: &[HostTensor]) -> Result<Run, ContextError> {
        let generation = self.current_generation();
        if let Some(cause) = generation.health.poisoned() {
            return Err(self.poisoned_error(&cause));
        }
        let ticket = self.state.start().map_err(|i| self.not_ready(i.from))?;
        let Some(prepared) = lock(&self.prepared).clone() else {
            // Unreachable after create (Ready implies prepared); end the run cleanly.
            let _ = self.state.finish(ticket, ContextEvent::Succeed);
            return Err(self.not_ready(ContextState::Created));
        };
        let streams = prepared.streams.len();
        let bytes = inputs
            .iter()
            .fold(0u64, |acc, t| acc.saturating_add(t.byte_len() as u64));
        // Check memory: the inputs are staged for upload on top of the resident model.
        if let Err(e) = self.budget.allocate_memory(bytes) {
            self.metrics.record_error();
            let _ = self.state.finish(ticket, ContextEvent::Succeed);
            return Err(e);
        }
        if let Err(e) = self.budget.acquire_streams(streams) {
            let _ = self.budget.release_memory(bytes);
            self.metrics.record_error();
            let _ = self.state.finish(ticket, ContextEvent::Succeed);
            return Err(e);
        }
        tracing::debug!(
            target: TARGET,
            event = "ExecutionStarted",
            model = %self.model_id,
            input_bytes = bytes,
            streams,
            memory_used = self.budget.memory_used(),
            "execution started"
        );
        Ok(Run {
            ticket,
            prepared,
            started: Instant::now(),
            bytes,
            streams,
        })
    }

    /// Ends a run with its result: releases the budget, counts, and moves the state.
    pub(crate) fn end(
        &self,
        run: Run,
        result: Result<Vec<HostTensor>, ExecError>,
    ) -> Result<Vec<HostTensor>, ContextError> {
        let took = run.started.elapsed();
        if let Err(e) = self.budget.release_memory(run.bytes) {
            tracing::error!(target: TARGET, model = %self.model_id, error = %e, "run release failed");
        }
        if let Err(e) = self.budget.release_streams(run.streams) {
            tracing::error!(target: TARGET, model = %self.model_id, error = %e, "run release failed");
        }
        match result {
            Ok(outputs) => {
                self.finish(run.ticket, ContextEvent::Succeed)?;
                self.metrics.record_success(took);
                tracing::debug!(
                    target: TARGET,
                    event = "ExecutionCompleted",
                    model = %self.model_id,
                    micros = took.as_micros() as u64,
                    outputs = outputs.len(),
                    "execution completed"
                );
                Ok(outputs)
            }
            // The caller's inputs were wrong: nothing ran, so the context is not faulted.
            Err(e @ ExecError::InputMismatch { .. }) => {
                self.metrics.record_error();
                self.finish(run.ticket, ContextEvent::Succeed)?;
                Err(ContextError::Execution {
                    model: self.model_id.to_string(),
                    source: Box::new(e),
                })
            }
            Err(e) => {
                self.metrics.record_error();
                self.record_fault(&e, took);
                if let Err(refused) = self.finish(run.ticket, ContextEvent::Fail) {
                    // The device was lost meanwhile (state already Faulted): report that.
                    tracing::debug!(target: TARGET, model = %self.model_id, error = %refused, "run ended after the context was faulted");
                }
                if let Some(cause) = run.prepared.generation.health.poisoned() {
                    if !FaultRecord::new(&self.model_id, &e).is_fatal() {
                        return Err(self.poisoned_error(&cause));
                    }
                }
                Err(ContextError::Execution {
                    model: self.model_id.to_string(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// Records a fault from a failed run; a fatal one loses the device for every context.
    pub(crate) fn record_fault(&self, error: &(impl Categorized + fmt::Display), took: Duration) {
        let record = FaultRecord::new(&self.model_id, error);
        tracing::warn!(
            target: TARGET,
            event = "FaultRecorded",
            model = %self.model_id,
            category = %record.category,
            micros = took.as_micros() as u64,
            fault = %record.message,
            "fault recorded"
        );
        self.faults.record_error(record.clone());
        if record.category == ErrorCategory::Fatal {
            let generation = self.current_generation();
            let faulted = generation.health.poison(record);
            tracing::error!(target: TARGET, event = "DeviceLost", model = %self.model_id, contexts = faulted.len(), "fatal fault: every context on the device is faulted");
        }
    }

    /// Replaces the recorded fault with a more precise one (the scheduler's error for a run
    /// whose stream failed), keeping the state.
    pub(crate) fn refine_fault(&self, error: &(impl Categorized + fmt::Display)) {
        let record = FaultRecord::new(&self.model_id, error);
        self.faults.record_error(record.clone());
        if record.is_fatal() && !self.current_generation().health.is_poisoned() {
            self.current_generation().health.poison(record);
        }
    }

    fn finish(&self, ticket: RunTicket, event: ContextEvent) -> Result<(), ContextError> {
        match self.state.finish(ticket, event) {
            Ok(_) => Ok(()),
            Err(TicketRefusal::Illegal(i)) => {
                if let Some(cause) = self.current_generation().health.poisoned() {
                    return Err(self.poisoned_error(&cause));
                }
                Err(ContextError::InvalidTransition {
                    model: self.model_id.to_string(),
                    from: i.from,
                    event: i.event,
                })
            }
            Err(TicketRefusal::Stale { state }) => Err(ContextError::InvalidTransition {
                model: self.model_id.to_string(),
                from: state,
                event,
            }),
        }
    }

    fn transition(&self, event: ContextEvent) -> Result<(), ContextError> {
        self.state
            .apply(event)
            .map(|_| ())
            .map_err(|i| ContextError::InvalidTransition {
                model: self.model_id.to_string(),
                from: i.from,
                event: i.event,
            })
    }

    fn current_generation(&self) -> Arc<DeviceGeneration> {
        match lock(&self.member).as_ref() {
            Some((g, _)) => Arc::clone(g),
            None => self.backend.generation(),
        }
    }

    pub(crate) fn not_ready(&self, state: ContextState) -> ContextError {
        if state == ContextState::Faulted {
            if let Some(cause) = self.current_generation().health.poisoned() {
                return self.poisoned_error(&cause);
            }
        }
        ContextError::NotReady {
            model: self.model_id.to_string(),
            state,
            fault: (state == ContextState::Faulted)
                .then(|| self.faults.last_error().map(|f| f.message))
                .flatten(),
        }
    }

    fn poisoned_error(&self, cause: &FaultRecord) -> ContextError {
        ContextError::DevicePoisoned {
            model: self.model_id.to_string(),
            cause: cause.to_string(),
        }
    }
}

impl Drop for ExecutionContext {
    fn drop(&mut self) {
        let from = self.state.get();
        if from == ContextState::Running {
            // Only reachable when a run was abandoned (a panicking caller): its device work
            // holds the memory alive until the streams drain, so releasing here is sound.
            tracing::warn!(target: TARGET, model = %self.model_id, "context dropped while running");
        }
        let _ = self.state.apply(ContextEvent::Destroy);
        if let Some((g, id)) = lock(&self.member).take() {
            g.health.unregister(id);
        }
        // Dropping the prepared model drains its streams and frees its device memory.
        let prepared = lock(&self.prepared).take();
        drop(prepared);
        let resident = std::mem::take(&mut *lock(&self.resident));
        if let Err(e) = self.budget.release_memory(resident) {
            tracing::error!(target: TARGET, model = %self.model_id, error = %e, "releasing the context's memory failed");
        }
        let m = self.metrics();
        tracing::info!(
            target: TARGET,
            event = "ContextDestroyed",
            model = %self.model_id,
            from = %from,
            released_bytes = resident,
            inferences = m.inferences,
            errors = m.errors,
            "context destroyed"
        );
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use aegis_cuda::{Device, HostDeviceOptions};
    use aegis_exec::LoadOptions;

    fn backend() -> (Backend, HostTensor) {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/models/lightrand-squeezenet");
        let graph = ExecutionGraph::load(dir.join("model.onnx"), &LoadOptions::default()).unwrap();
        let device = Device::host_with(HostDeviceOptions {
            capacity: 1 << 30,
            threads: 2,
            ..HostDeviceOptions::default()
        });
        let b = Backend::new(
            device,
            ExecOptions {
                streams: 1,
                threads: 2,
            },
        );
        b.register("m", Arc::new(graph)).unwrap();
        (b, HostTensor::read_npy(&dir.join("input_0.npy")).unwrap())
    }

    #[test]
    fn a_context_moves_and_keeps_working() {
        let (b, input) = backend();
        let ctx = ExecutionContext::create("m", BudgetLimits::new(1 << 30, 1), &b).unwrap();
        let mut moved = vec![ctx];
        let ctx = moved.pop().unwrap();
        let ctx = std::thread::spawn(move || {
            ctx.execute(std::slice::from_ref(&input)).unwrap();
            ctx
        })
        .join()
        .unwrap();
        assert_eq!(ctx.metrics().inferences, 1);
        assert_eq!(ctx.state(), ContextState::Ready);
    }

    #[test]
    fn dropping_a_running_context_releases_everything_once() {
        let (b, input) = backend();
        let ctx = ExecutionContext::create("m", BudgetLimits::new(1 << 30, 1), &b).unwrap();
        // A run that is never ended: the context is dropped while Running.
        let run = ctx.begin(std::slice::from_ref(&input)).unwrap();
        assert_eq!(ctx.state(), ContextState::Running);
        let state = Arc::clone(&ctx.state);
        let health = b.health();
        assert_eq!(health.members(), 1);
        drop(ctx);
        assert_eq!(state.get(), ContextState::Destroyed);
        assert_eq!(health.members(), 0, "left the device's health");
        // The abandoned run still holds the prepared model; its memory goes with it.
        assert!(b.device().memory_used() > 0);
        drop(run);
        assert_eq!(b.device().memory_used(), 0);
    }
}
