//! The [`Runtime`] users start from: a device, a scheduler, and one context per loaded model.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::Arc;

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::{Device, DeviceInfo, HostDeviceOptions};
use aegis_exec::{ExecOptions, ExecutionGraph, HostTensor, LoadOptions};
use aegis_sched::primitives::CompletionCell;
use aegis_sched::{
    Completed, Decision, EarliestDeadlineFirst, Fifo, Priority, Request, RequestError, RequestId,
    SchedStats, Scheduler, SchedulerConfig, SchedulingPolicy, StopMode, StreamPool, StrictPriority,
    TenantId, WeightedFair,
};

use crate::backend::Backend;
use crate::budget::BudgetLimits;
use crate::context::ExecutionContext;
use crate::error::ContextError;
use crate::fault::FaultRecord;
use crate::fit::{fit_check, FitModel, FitReport};
use crate::metrics::MetricsSnapshot;
use crate::state::ContextState;
use crate::workload::{ContextWorkload, SerialPerModel};

type Sched = Scheduler<Vec<HostTensor>, Vec<HostTensor>>;

/// Which scheduling policy the runtime uses (always wrapped in [`SerialPerModel`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// First come, first served.
    Fifo,
    /// Strict priority, FIFO within a level; optional aging.
    Priority {
        /// Raise a waiting request by one level per this much waiting.
        aging: Option<Duration>,
    },
    /// Earliest deadline first with slack admission.
    Edf,
    /// Weighted fair sharing of device time between tenants.
    WeightedFair(Vec<(TenantId, u32)>),
}

impl PolicyKind {
    fn build(&self) -> Result<Box<dyn SchedulingPolicy>, ContextError> {
        Ok(match self {
            Self::Fifo => Box::new(SerialPerModel::new(Fifo)),
            Self::Priority { aging: None } => Box::new(SerialPerModel::new(StrictPriority::new())),
            Self::Priority { aging: Some(a) } => {
                Box::new(SerialPerModel::new(StrictPriority::with_aging(*a)))
            }
            Self::Edf => Box::new(SerialPerModel::new(EarliestDeadlineFirst::new())),
            Self::WeightedFair(w) => {
                Box::new(SerialPerModel::new(WeightedFair::new(w.iter().copied())?))
            }
        })
    }

    /// Parses `fifo`, `priority`, `edf` (the CLI's names).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "fifo" => Some(Self::Fifo),
            "priority" => Some(Self::Priority { aging: None }),
            "edf" => Some(Self::Edf),
            _ => None,
        }
    }
}

/// Builds a [`Runtime`].
#[derive(Debug, Clone)]
pub struct RuntimeBuilder {
    device: Option<Device>,
    streams: usize,
    policy: PolicyKind,
    queue_capacity: usize,
    inline_dispatch: bool,
    exec: ExecOptions,
    warmup: bool,
}

impl Default for RuntimeBuilder {
    fn default() -> Self {
        Self {
            device: None,
            streams: 2,
            policy: PolicyKind::Fifo,
            queue_capacity: 1024,
            inline_dispatch: false,
            exec: ExecOptions::default(),
            warmup: true,
        }
    }
}

impl RuntimeBuilder {
    /// Defaults: host device, 2 scheduler streams, FIFO, queue of 1024, one stream per model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs on `device`.
    pub fn device(mut self, device: Device) -> Self {
        self.device = Some(device);
        self
    }

    /// Runs on a host device with `options`.
    pub fn host(mut self, options: HostDeviceOptions) -> Self {
        self.device = Some(Device::host_with(options));
        self
    }

    /// Scheduler streams: how many inferences (of different models) run at once.
    pub fn streams(mut self, n: usize) -> Self {
        self.streams = n;
        self
    }

    /// The scheduling policy.
    pub fn policy(mut self, policy: PolicyKind) -> Self {
        self.policy = policy;
        self
    }

    /// Requests waiting at most; more are refused with a Transient `QueueFull`.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }

    /// Lets a submitter that finds the scheduling loop idle dispatch its request itself
    /// instead of waking the loop (aegis-sched's `SchedulerConfig::inline_dispatch`): sub-µs
    /// submit→dispatch instead of one thread wake-up, at the risk of the loop waiting for a
    /// descheduled submitter on a saturated machine. Off by default.
    pub fn inline_dispatch(mut self, on: bool) -> Self {
        self.inline_dispatch = on;
        self
    }

    /// Threads one kernel may use.
    pub fn threads(mut self, n: usize) -> Self {
        self.exec.threads = n;
        self
    }

    /// Streams one model's schedule may spread over (capped by each model's budget).
    pub fn model_streams(mut self, n: usize) -> Self {
        self.exec.streams = n;
        self
    }

    /// Whether `load` runs one warm-up inference to measure the scheduler's initial estimate
    /// (default true).
    pub fn warmup(mut self, on: bool) -> Self {
        self.warmup = on;
        self
    }

    /// Builds the runtime and starts its scheduler.
    ///
    /// # Errors
    /// [`ContextError::InvalidConfig`] for zero streams/threads; scheduler errors.
    pub fn build(self) -> Result<Runtime, ContextError> {
        if self.exec.threads == 0 {
            return Err(ContextError::InvalidConfig {
                field: "threads",
                value: "0".into(),
                reason: "at least 1",
            });
        }
        if self.exec.streams == 0 {
            return Err(ContextError::InvalidConfig {
                field: "model_streams",
                value: "0".into(),
                reason: "at least 1",
            });
        }
        let device = self.device.unwrap_or_else(Device::host);
        let backend = Backend::new(device, self.exec);
        let config = SchedSettings {
            streams: self.streams,
            policy: self.policy,
            queue_capacity: self.queue_capacity,
            inline_dispatch: self.inline_dispatch,
        };
        let scheduler = config.start(&backend.device())?;
        Ok(Runtime {
            backend,
            settings: config,
            warmup: self.warmup,
            models: Mutex::new(BTreeMap::new()),
            scheduler: Mutex::new(Arc::new(scheduler)),
        })
    }
}

#[derive(Debug, Clone)]
struct SchedSettings {
    streams: usize,
    policy: PolicyKind,
    queue_capacity: usize,
    inline_dispatch: bool,
}

impl SchedSettings {
    fn start(&self, device: &Device) -> Result<Sched, ContextError> {
        let pool = StreamPool::new(device, self.streams, &[])?;
        let config = SchedulerConfig {
            queue_capacity: self.queue_capacity,
            inline_dispatch: self.inline_dispatch,
            ..SchedulerConfig::default()
        };
        let s = Scheduler::new(self.policy.build()?, pool, config)?;
        s.start()?;
        Ok(s)
    }
}

/// A loaded model, as the runtime hands it out. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelHandle {
    id: Arc<str>,
}

impl ModelHandle {
    /// The model id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for ModelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}

/// What to load: a model file (with shape overrides) or an already-built graph.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// An ONNX file.
    Path(PathBuf, LoadOptions),
    /// A graph.
    Graph(Arc<ExecutionGraph>),
}

impl From<&Path> for ModelSource {
    fn from(p: &Path) -> Self {
        Self::Path(p.to_owned(), LoadOptions::default())
    }
}

impl From<PathBuf> for ModelSource {
    fn from(p: PathBuf) -> Self {
        Self::Path(p, LoadOptions::default())
    }
}

impl From<&str> for ModelSource {
    fn from(p: &str) -> Self {
        Self::Path(PathBuf::from(p), LoadOptions::default())
    }
}

impl From<Arc<ExecutionGraph>> for ModelSource {
    fn from(g: Arc<ExecutionGraph>) -> Self {
        Self::Graph(g)
    }
}

impl ModelSource {
    /// Loads the graph.
    ///
    /// # Errors
    /// The loader's error.
    pub fn graph(&self) -> Result<Arc<ExecutionGraph>, ContextError> {
        match self {
            Self::Path(p, o) => Ok(Arc::new(
                ExecutionGraph::load(p, o).map_err(ContextError::load)?,
            )),
            Self::Graph(g) => Ok(Arc::clone(g)),
        }
    }

    /// A readable default id: the folder name for `.../NAME/model.onnx`, else the file stem.
    pub fn default_id(&self, graph: &ExecutionGraph) -> String {
        match self {
            Self::Path(p, _) => model_id_for_path(p),
            Self::Graph(_) => graph.name().to_owned(),
        }
    }
}

/// `.../NAME/model.onnx` (or `model_static.onnx`) -> `NAME`; other files -> their stem.
pub fn model_id_for_path(p: &Path) -> String {
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    if stem.starts_with("model") {
        if let Some(dir) = p.parent().and_then(Path::file_name) {
            return dir.to_string_lossy().into_owned();
        }
    }
    stem
}

#[derive(Debug)]
struct Loaded {
    ctx: Arc<ExecutionContext>,
    workload: Arc<ContextWorkload>,
}

/// The outcome of a scheduled inference.
pub type InferenceOutcome = Result<Completed<Vec<HostTensor>>, ContextError>;

/// A scheduled inference's handle.
#[derive(Debug)]
pub struct InferenceHandle {
    id: RequestId,
    model: Arc<str>,
    cell: Arc<CompletionCell<InferenceOutcome>>,
}

impl InferenceHandle {
    /// The scheduler's request id.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// True once the outcome is there.
    pub fn is_done(&self) -> bool {
        self.cell.is_complete()
    }

    /// Blocks for the outcome.
    pub fn wait(self) -> InferenceOutcome {
        self.cell.wait().unwrap_or_else(|| {
            Err(ContextError::Request {
                model: self.model.to_string(),
                source: Box::new(RequestError::Cancelled {
                    id: self.id,
                    reason: aegis_sched::CancelReason::Abandoned,
                }),
            })
        })
    }

    /// Waits at most `timeout`; gives the handle back when the outcome is not there yet.
    pub fn wait_timeout(self, timeout: Duration) -> Result<InferenceOutcome, Self> {
        match self.cell.wait_timeout(timeout) {
            Some(o) => Ok(o),
            None => Err(self),
        }
    }
}

/// One model's health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelHealth {
    /// The model id.
    pub model: String,
    /// Its state.
    pub state: ContextState,
    /// Its last fault.
    pub fault: Option<FaultRecord>,
    /// Its counters.
    pub metrics: MetricsSnapshot,
    /// Device memory it holds now.
    pub memory_used: u64,
    /// Its limits.
    pub limits: BudgetLimits,
}

/// The runtime's health.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthReport {
    /// Device name.
    pub device: String,
    /// Device generation (+1 per rebuild).
    pub generation: u64,
    /// The fatal fault that lost the device, if any.
    pub device_lost: Option<FaultRecord>,
    /// Per model, by id.
    pub models: Vec<ModelHealth>,
    /// Requests accepted and not finished.
    pub outstanding: u64,
}

impl HealthReport {
    /// True when the device is usable and no model is faulted.
    pub fn healthy(&self) -> bool {
        self.device_lost.is_none() && self.models.iter().all(|m| m.state == ContextState::Ready)
    }
}

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct RebuildReport {
    /// The new device generation.
    pub generation: u64,
    /// Models re-prepared.
    pub models: Vec<String>,
    /// The old scheduler's final counters (every request it accepted has its outcome).
    pub drained: SchedStats,
}

/// The runtime facade: a device, a scheduler, one [`ExecutionContext`] per loaded model.
pub struct Runtime {
    backend: Backend,
    settings: SchedSettings,
    warmup: bool,
    models: Mutex<BTreeMap<String, Loaded>>,
    scheduler: Mutex<Arc<Sched>>,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("backend", &self.backend)
            .field("settings", &self.settings)
            .finish()
    }
}

impl Runtime {
    /// A builder.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder::new()
    }

    /// The backend (device, health, known graphs).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The device info.
    pub fn device_info(&self) -> DeviceInfo {
        self.backend.device().info()
    }

    /// Loads a model under `limits` with a default id (see [`ModelSource::default_id`]).
    ///
    /// # Errors
    /// See [`Self::load_as`].
    pub fn load(
        &self,
        source: impl Into<ModelSource>,
        limits: BudgetLimits,
    ) -> Result<ModelHandle, ContextError> {
        let source = source.into();
        let graph = source.graph()?;
        let id = source.default_id(&graph);
        self.load_graph_as(&id, graph, limits)
    }

    /// Loads a model under `limits` as `id`.
    ///
    /// # Errors
    /// Loader errors, [`ContextError::DuplicateModel`], and everything
    /// [`ExecutionContext::create`] checks (budget validity, admission with the shortfall).
    pub fn load_as(
        &self,
        id: &str,
        source: impl Into<ModelSource>,
        limits: BudgetLimits,
    ) -> Result<ModelHandle, ContextError> {
        let graph = source.into().graph()?;
        self.load_graph_as(id, graph, limits)
    }

    fn load_graph_as(
        &self,
        id: &str,
        graph: Arc<ExecutionGraph>,
        limits: BudgetLimits,
    ) -> Result<ModelHandle, ContextError> {
        let mut models = lock(&self.models);
        if models.contains_key(id) {
            return Err(ContextError::DuplicateModel { model: id.into() });
        }
        self.backend.register(id, graph)?;
        let ctx = match ExecutionContext::create(id, limits, &self.backend) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                self.backend.unregister(id);
                return Err(e);
            }
        };
        let estimate = if self.warmup {
            measure(&ctx)
        } else {
            Duration::from_millis(1)
        };
        let workload = Arc::new(ContextWorkload::new(Arc::clone(&ctx), estimate));
        models.insert(id.to_owned(), Loaded { ctx, workload });
        Ok(ModelHandle { id: Arc::from(id) })
    }

    /// Unloads a model: its context is destroyed (memory released) once requests in flight
    /// for it have finished.
    ///
    /// # Errors
    /// [`ContextError::UnknownModel`].
    pub fn unload(&self, model: &ModelHandle) -> Result<(), ContextError> {
        let removed = lock(&self.models).remove(model.id());
        self.backend.unregister(model.id());
        match removed {
            Some(_) => Ok(()),
            None => Err(self.unknown(model.id())),
        }
    }

    /// The context of a loaded model.
    ///
    /// # Errors
    /// [`ContextError::UnknownModel`].
    pub fn context(&self, model: &ModelHandle) -> Result<Arc<ExecutionContext>, ContextError> {
        self.loaded(model).map(|(c, _)| c)
    }

    /// Handles of every loaded model, by id.
    pub fn models(&self) -> Vec<ModelHandle> {
        lock(&self.models)
            .keys()
            .map(|k| ModelHandle {
                id: Arc::from(k.as_str()),
            })
            .collect()
    }

    fn loaded(
        &self,
        model: &ModelHandle,
    ) -> Result<(Arc<ExecutionContext>, Arc<ContextWorkload>), ContextError> {
        lock(&self.models)
            .get(model.id())
            .map(|l| (Arc::clone(&l.ctx), Arc::clone(&l.workload)))
            .ok_or_else(|| self.unknown(model.id()))
    }

    fn unknown(&self, id: &str) -> ContextError {
        ContextError::UnknownModel {
            model: id.to_owned(),
            known: lock(&self.models).keys().cloned().collect(),
        }
    }

    /// Runs one inference and waits for it (through the scheduler, normal priority).
    ///
    /// # Errors
    /// As [`Self::submit`], plus the inference's own failure.
    pub fn infer(
        &self,
        model: &ModelHandle,
        inputs: Vec<HostTensor>,
    ) -> Result<Vec<HostTensor>, ContextError> {
        self.submit(model, inputs, Priority::NORMAL, None)?
            .wait()
            .map(|c| c.outputs)
    }

    /// Submits one inference; never blocks. Work for a faulted model or a lost device is
    /// refused at once with a typed error.
    ///
    /// # Errors
    /// [`ContextError::DevicePoisoned`], [`ContextError::NotReady`] (Faulted),
    /// [`ContextError::Submit`] (queue full, deadline past, stopped).
    pub fn submit(
        &self,
        model: &ModelHandle,
        inputs: Vec<HostTensor>,
        priority: Priority,
        deadline: Option<Instant>,
    ) -> Result<InferenceHandle, ContextError> {
        self.submit_for(model, inputs, priority, deadline, TenantId::default())
    }

    /// [`Self::submit`] for a tenant (weighted fair policy).
    ///
    /// # Errors
    /// As [`Self::submit`].
    pub fn submit_for(
        &self,
        model: &ModelHandle,
        inputs: Vec<HostTensor>,
        priority: Priority,
        deadline: Option<Instant>,
        tenant: TenantId,
    ) -> Result<InferenceHandle, ContextError> {
        let (ctx, workload) = self.loaded(model)?;
        match ctx.state() {
            ContextState::Faulted | ContextState::Destroyed | ContextState::Created => {
                return Err(ctx.not_ready(ctx.state()));
            }
            ContextState::Ready | ContextState::Running => {}
        }
        let mut request = Request::new(workload, inputs)
            .with_priority(priority)
            .with_tenant(tenant);
        if let Some(d) = deadline {
            request = request.with_deadline(d);
        }
        let cell = Arc::new(CompletionCell::new());
        let c2 = Arc::clone(&cell);
        let ctx2 = Arc::clone(&ctx);
        let scheduler = Arc::clone(&lock(&self.scheduler));
        let id = scheduler
            .submit_with(request, move |outcome| {
                let out = outcome.map_err(|e| {
                    if let RequestError::Device { error, .. } = &e {
                        // The run's stream failed: give the context the precise error.
                        ctx2.refine_fault(error);
                    }
                    ContextError::Request {
                        model: ctx2.model_id().to_owned(),
                        source: Box::new(e),
                    }
                });
                let _ = c2.complete(out);
            })
            .map_err(|e| ContextError::Submit {
                model: model.id().to_owned(),
                kind: e.kind,
            })?;
        Ok(InferenceHandle {
            id,
            model: Arc::from(model.id()),
            cell,
        })
    }

    /// Faulted -> Ready for one model.
    ///
    /// # Errors
    /// As [`ExecutionContext::reset`].
    pub fn reset(&self, model: &ModelHandle) -> Result<(), ContextError> {
        self.context(model)?.reset()
    }

    /// Health of the device and every model.
    pub fn health(&self) -> HealthReport {
        let generation = self.backend.generation();
        let models = lock(&self.models)
            .iter()
            .map(|(id, l)| ModelHealth {
                model: id.clone(),
                state: l.ctx.state(),
                fault: l.ctx.last_fault(),
                metrics: l.ctx.metrics(),
                memory_used: l.ctx.budget().memory_used(),
                limits: l.ctx.limits(),
            })
            .collect();
        HealthReport {
            device: generation.device.info().name,
            generation: generation.generation,
            device_lost: generation.health.poisoned(),
            models,
            outstanding: lock(&self.scheduler).stats().outstanding(),
        }
    }

    /// After a fatal fault: drains the scheduler (every request gets its outcome, typed
    /// errors for those that could not run), recreates the device ([`Device::rebuild`]),
    /// re-prepares every model from its graph and starts a fresh scheduler.
    ///
    /// # Errors
    /// Device or prepare failures (the runtime stays lost; `rebuild` may be retried).
    pub fn rebuild(&self) -> Result<RebuildReport, ContextError> {
        let mut sched = lock(&self.scheduler);
        let drained = sched.stop(StopMode::Drain);
        let generation = self.backend.rebuild_device()?;
        let models = lock(&self.models);
        for l in models.values() {
            l.ctx.rebuild()?;
        }
        *sched = Arc::new(self.settings.start(&generation.device)?);
        Ok(RebuildReport {
            generation: generation.generation,
            models: models.keys().cloned().collect(),
            drained,
        })
    }

    /// The scheduler's counters.
    pub fn scheduler_stats(&self) -> SchedStats {
        lock(&self.scheduler).stats()
    }

    /// The scheduler's latest decisions.
    pub fn decisions(&self) -> Vec<Decision> {
        lock(&self.scheduler).decisions()
    }

    /// Stops the scheduler (draining queued work); returns its counters. Later submissions
    /// are refused.
    pub fn shutdown(&self) -> SchedStats {
        lock(&self.scheduler).stop(StopMode::Drain)
    }

    /// The capacity report for the loaded models on this device (see [`fit_check`]).
    ///
    /// # Errors
    /// Planning errors.
    pub fn fit(&self) -> Result<FitReport, ContextError> {
        let models: Vec<FitModel> = lock(&self.models)
            .iter()
            .map(|(id, l)| FitModel {
                model: id.clone(),
                graph: Arc::clone(l.ctx.graph()),
                limits: Some(l.ctx.limits()),
            })
            .collect();
        fit_check(
            self.device_info().total_memory,
            &models,
            self.backend.options(),
            self.settings.streams,
        )
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Every accepted request gets its outcome before the contexts go.
        lock(&self.scheduler).stop(StopMode::Drain);
    }
}

/// Zero inputs of the model's shapes and dtypes.
pub fn zero_inputs(graph: &ExecutionGraph) -> Vec<HostTensor> {
    graph
        .inputs()
        .iter()
        .map(|&t| {
            let info = graph.tensor(t);
            HostTensor {
                dtype: info.dtype,
                shape: info.shape.clone(),
                data: vec![0u8; usize::try_from(info.byte_size).unwrap_or(0)],
            }
        })
        .collect()
}

/// One warm-up inference on zeros: the scheduler's initial estimate (1 ms if it fails).
fn measure(ctx: &ExecutionContext) -> Duration {
    let inputs = zero_inputs(ctx.graph());
    let t = Instant::now();
    match ctx.execute(&inputs) {
        Ok(_) => t.elapsed(),
        Err(e) => {
            tracing::warn!(target: "aegis_context", model = ctx.model_id(), error = %e, "warm-up inference failed");
            if ctx.state() == ContextState::Faulted {
                let _ = ctx.reset();
            }
            Duration::from_millis(1)
        }
    }
}
