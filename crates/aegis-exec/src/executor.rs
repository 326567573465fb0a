//! Preparing a graph for a device (weights uploaded once, arena and workspace allocated from
//! the plan) and the stateless [`Executor`] that enqueues one inference on streams.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::{BackendKind, CudaError, Device, DeviceSlice, Event, HostBuffer, Stream};
use aegis_memory::{Arena, DeviceBuffer, DeviceMemoryPool};

use crate::graph::{ExecutionGraph, TensorId, TensorKind};
use crate::ops::{Mem, NodeKernel};
use crate::tensor::HostTensor;
use crate::tracker::{assign_streams_fused, StreamAssignment};
use crate::ExecError;

/// Alignment of every weight inside the weights buffer (CUDA's allocation granularity).
const WEIGHT_ALIGN: u64 = 256;

/// How a model is prepared and run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOptions {
    /// Streams independent branches may spread over (1 = strictly sequential).
    pub streams: usize,
    /// Threads one kernel may use (default: the machine's cores).
    pub threads: usize,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            streams: 1,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        }
    }
}

/// Device memory a prepared model holds, known before anything is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryRequirement {
    /// Constants read by kernels, uploaded once (256-byte aligned each).
    pub weights_bytes: u64,
    /// Kernel-prepared weights (e.g. convolution filters with a folded bias), once.
    pub prepared_weights_bytes: u64,
    /// The activation arena: the plan's peak.
    pub arena_bytes: u64,
    /// Kernel scratch (im2col), one per stream.
    pub workspace_bytes: u64,
}

impl MemoryRequirement {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.weights_bytes
            .saturating_add(self.prepared_weights_bytes)
            .saturating_add(self.arena_bytes)
            .saturating_add(self.workspace_bytes)
    }
}

fn align(x: u64) -> u64 {
    x.div_ceil(WEIGHT_ALIGN) * WEIGHT_ALIGN
}

/// One scheduled step.
#[derive(Debug)]
struct Step {
    kernel: Option<Arc<NodeKernel>>,
    stream: usize,
    waits: Vec<usize>,
    record: Option<usize>,
}

/// A graph prepared on a device: weights uploaded, arena and workspace allocated, kernels
/// bound to their planned memory. Running it allocates no device memory.
///
/// One prepared model runs one inference at a time (it has one arena); the context layer
/// serialises requests per model.
#[derive(Debug)]
pub struct PreparedModel {
    graph: Arc<ExecutionGraph>,
    device: Device,
    requirement: MemoryRequirement,
    _weights: Option<DeviceBuffer>,
    arena: Arena,
    _workspace: Vec<DeviceBuffer>,
    steps: Vec<Step>,
    schedule: StreamAssignment,
    events: Vec<Event>,
    inputs: Vec<InputSlot>,
    outputs: Vec<OutputSlot>,
    /// Threads the host kernels split over (`ExecOptions::threads`); 0 on a GPU, whose
    /// kernels do not use the host compute team.
    host_threads: usize,
}

#[derive(Debug)]
pub(crate) enum OutputSlot {
    /// Produced at run time: copied from the arena into host staging at the end.
    Staged {
        id: TensorId,
        src: DeviceSlice,
        staging: HostBuffer,
    },
    /// Computed entirely at load (constant folding).
    Constant(HostTensor),
}

/// The run-time bindings both prepared models (host and CUDA) make the same way.
#[derive(Debug)]
pub(crate) struct Io {
    /// One event per cross-stream dependency of the schedule.
    pub(crate) events: Vec<Event>,
    /// Each graph input with the arena view it is written into.
    pub(crate) inputs: Vec<InputSlot>,
    /// Each graph output, in order.
    pub(crate) outputs: Vec<OutputSlot>,
}

/// A graph input's arena view and the host buffers its uploads reuse.
#[derive(Debug)]
pub(crate) struct InputSlot {
    id: TensorId,
    slice: DeviceSlice,
    /// Buffers whose upload has finished, ready for the next inference's copy of the input
    /// (a stream copies asynchronously, so it must own what it copies; cloning the caller's
    /// tensor instead allocated, and page-faulted, 600 KB per CNN inference).
    spare: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Spare upload buffers kept per input: one per inference in flight, up to this many.
const SPARE_UPLOADS: usize = 4;

/// An input's bytes on their way to the device: handed back to the slot's spares once the
/// stream has copied them and drops them.
struct Upload {
    buf: Vec<u8>,
    home: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for Upload {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let mut spare = lock(&self.home);
        if spare.len() < SPARE_UPLOADS {
            spare.push(std::mem::take(&mut self.buf));
        }
    }
}

/// Creates `events` events, binds the graph's inputs to their arena views and its outputs to
/// slots (a constant output is kept as a host tensor, any other one is staged from
/// `slice_of`). Generic over the caller's error so that the CUDA path keeps its own type.
pub(crate) fn bind_io<E: From<ExecError>>(
    graph: &ExecutionGraph,
    device: &Device,
    arena: &Arena,
    events: usize,
    slice_of: impl Fn(TensorId) -> Result<DeviceSlice, E>,
) -> Result<Io, E> {
    let model = graph.name();
    let cuda = |source: CudaError| ExecError::Device {
        model: model.to_owned(),
        source,
    };
    let events = (0..events)
        .map(|_| Event::new(device))
        .collect::<Result<Vec<_>, _>>()
        .map_err(cuda)?;
    let inputs = graph
        .inputs()
        .iter()
        .map(|&t| {
            let view = arena.view(t.index()).map_err(|source| ExecError::Memory {
                model: model.to_owned(),
                source,
            })?;
            Ok(InputSlot {
                id: t,
                slice: view,
                spare: Arc::default(),
            })
        })
        .collect::<Result<Vec<_>, ExecError>>()?;
    let mut outputs = Vec::new();
    for &t in graph.outputs() {
        let info = graph.tensor(t);
        if info.kind == TensorKind::Constant {
            let data = graph
                .constant_data(t)
                .ok_or_else(|| ExecError::InvalidNode {
                    model: model.to_owned(),
                    node: info.name.clone(),
                    reason: "constant output without a value".into(),
                })?;
            outputs.push(OutputSlot::Constant(HostTensor::from_data(
                info.shape.clone(),
                data,
            )));
        } else {
            let len = usize::try_from(info.byte_size).map_err(|_| ExecError::Overflow {
                model: model.to_owned(),
                what: format!("output {}", info.name),
            })?;
            let staging = HostBuffer::alloc(device, len).map_err(cuda)?;
            outputs.push(OutputSlot::Staged {
                id: t,
                src: slice_of(t)?,
                staging,
            });
        }
    }
    Ok(Io {
        events,
        inputs,
        outputs,
    })
}

impl PreparedModel {
    /// Memory a model will need on a device with these options, before loading anything.
    pub fn memory_requirement(
        graph: &ExecutionGraph,
        options: &ExecOptions,
    ) -> Result<MemoryRequirement, ExecError> {
        let mut req = MemoryRequirement {
            arena_bytes: graph.plan().peak_bytes,
            ..Default::default()
        };
        let prepared = crate::ops::plan_kernels(graph, options.threads)?;
        req.weights_bytes = prepared
            .weight_tensors
            .iter()
            .map(|&t| align(graph.tensor(t).byte_size))
            .sum();
        req.prepared_weights_bytes = prepared.prepared_bytes;
        let runs_with = prepared.runs_with_steps(graph);
        let streams = assign_streams_fused(graph, options.streams, &runs_with).streams as u64;
        req.workspace_bytes = align(prepared.scratch_elems as u64 * 4) * streams;
        Ok(req)
    }

    /// Uploads weights, allocates the arena and workspace from `pool` and binds every kernel.
    pub fn prepare(
        graph: Arc<ExecutionGraph>,
        pool: &DeviceMemoryPool,
        options: &ExecOptions,
    ) -> Result<Self, ExecError> {
        let device = pool.device().clone();
        let model = graph.name().to_owned();
        let mem = |source| ExecError::Memory {
            model: model.clone(),
            source,
        };
        let cuda = |source: CudaError| ExecError::Device {
            model: model.clone(),
            source,
        };
        let planned = crate::ops::plan_kernels(&graph, options.threads)?;
        let schedule =
            assign_streams_fused(&graph, options.streams, &planned.runs_with_steps(&graph));

        // Weights: one buffer, each constant at a 256-byte aligned offset, uploaded once. On
        // the host device kernels read the graph's constants in place instead (the graph
        // keeps them for its lifetime; a copy would hold every weight twice).
        let host = device.backend() == BackendKind::Host;
        let mut in_place = std::collections::BTreeMap::new();
        let mut in_place_bytes = 0u64;
        let mut offsets = Vec::new();
        let mut total = 0u64;
        for &t in &planned.weight_tensors {
            if host {
                if let Some(data) = graph.constant_arc(t) {
                    in_place.insert(t, data);
                    // Still the model's memory (the graph holds it), reported as before.
                    in_place_bytes =
                        in_place_bytes.saturating_add(align(graph.tensor(t).byte_size));
                    continue;
                }
            }
            offsets.push((t, total));
            total =
                total
                    .checked_add(align(graph.tensor(t).byte_size))
                    .ok_or(ExecError::Overflow {
                        model: model.clone(),
                        what: "weights buffer size".into(),
                    })?;
        }
        let upload = Stream::new(&device, aegis_cuda::StreamPriority::NORMAL).map_err(cuda)?;
        let Weights {
            buffer: weights,
            views: weight_views,
        } = upload_weights(&graph, pool, &upload, &offsets, total)?;
        upload.synchronize().map_err(cuda)?;
        drop(upload);

        let arena = Arena::new(pool, graph.plan().clone()).map_err(mem)?;
        let scratch_bytes = align(planned.scratch_elems as u64 * 4);
        let mut workspace = Vec::new();
        for _ in 0..schedule.streams {
            if scratch_bytes > 0 {
                workspace.push(pool.allocate(scratch_bytes).map_err(mem)?);
            }
        }
        let slice_of = |t: TensorId| -> Result<DeviceSlice, ExecError> {
            if let Some(v) = weight_views.get(&t) {
                return Ok(v.clone());
            }
            arena.view(t.index()).map_err(mem)
        };
        let mem_of = |t: TensorId| -> Result<Mem, ExecError> {
            match in_place.get(&t) {
                Some(data) => Ok(Mem::Const(Arc::clone(data))),
                None => slice_of(t).map(Mem::Slice),
            }
        };

        let order = graph.topological_order();
        let mut steps = Vec::with_capacity(order.len());
        for (p, id) in order.iter().enumerate() {
            let stream = schedule.stream_of[p];
            let kernel = match planned.kernels[id.index()].clone() {
                Some(k) => {
                    let scratch = workspace.get(stream).map(DeviceBuffer::as_slice);
                    Some(Arc::new(NodeKernel::bind(
                        &graph,
                        *id,
                        k,
                        &mem_of,
                        scratch,
                        options.threads,
                        stream as u64,
                    )?))
                }
                None => None,
            };
            steps.push(Step {
                kernel,
                stream,
                waits: schedule.waits[p].clone(),
                record: schedule.record_after[p],
            });
        }
        let Io {
            events,
            inputs,
            outputs,
        } = bind_io::<ExecError>(&graph, &device, &arena, schedule.events, slice_of)?;
        let requirement = MemoryRequirement {
            weights_bytes: total.saturating_add(in_place_bytes),
            prepared_weights_bytes: planned.prepared_bytes,
            arena_bytes: arena.len(),
            workspace_bytes: scratch_bytes * workspace.len() as u64,
        };
        tracing::debug!(model = %model, weights = total, arena = arena.len(), streams = schedule.streams, events = schedule.events, "model prepared");
        Ok(Self {
            graph,
            device,
            requirement,
            _weights: weights,
            arena,
            _workspace: workspace,
            steps,
            schedule,
            events,
            inputs,
            outputs,
            host_threads: if host { options.threads } else { 0 },
        })
    }

    /// The graph this model runs.
    pub fn graph(&self) -> &Arc<ExecutionGraph> {
        &self.graph
    }

    /// The device it was prepared on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Device memory it holds.
    pub fn memory(&self) -> MemoryRequirement {
        self.requirement
    }

    /// Arena size in bytes.
    pub fn arena_bytes(&self) -> u64 {
        self.arena.len()
    }

    /// The stream schedule (streams used, events and where they are recorded and waited).
    pub fn schedule(&self) -> &StreamAssignment {
        &self.schedule
    }

    /// Names of the graph inputs, in the order [`Executor::run`] expects them.
    pub fn input_names(&self) -> Vec<String> {
        tensor_names(&self.graph, self.graph.inputs())
    }

    /// Names of the graph outputs, in the order they are returned.
    pub fn output_names(&self) -> Vec<String> {
        tensor_names(&self.graph, self.graph.outputs())
    }

    /// Reads the outputs of the last inference from their host staging. Call only once the
    /// stream that inference ended on has completed (a scheduler's collect step runs after it
    /// synchronised the stream, and cannot hold the borrowing [`PendingOutputs`]).
    pub fn read_outputs(&self) -> Result<Vec<HostTensor>, ExecError> {
        read_output_slots(&self.graph, &self.outputs)
    }
}

/// Checks a run's arguments against what the model was prepared for (at least `need`
/// streams; `inputs` matching the bound graph inputs in number, dtype, shape and size), then
/// enqueues their uploads on `streams[0]`.
pub(crate) fn upload_inputs(
    graph: &ExecutionGraph,
    bound: &[InputSlot],
    need: usize,
    inputs: &[HostTensor],
    streams: &[&Stream],
) -> Result<(), ExecError> {
    let name = graph.name();
    if streams.len() < need {
        return Err(ExecError::InputMismatch {
            input: "<streams>".into(),
            reason: format!(
                "model {name} was prepared for {need} streams, {} given",
                streams.len()
            ),
        });
    }
    if inputs.len() != bound.len() {
        return Err(ExecError::InputMismatch {
            input: "<inputs>".into(),
            reason: format!(
                "model {name} takes {} inputs, {} given",
                bound.len(),
                inputs.len()
            ),
        });
    }
    for (given, slot) in inputs.iter().zip(bound) {
        let info = graph.tensor(slot.id);
        if given.dtype != info.dtype
            || given.shape != info.shape
            || given.data.len() as u64 != info.byte_size
        {
            return Err(ExecError::InputMismatch {
                input: info.name.clone(),
                reason: format!(
                    "expected {} {:?}, got {} {:?} ({} bytes)",
                    info.dtype,
                    info.shape,
                    given.dtype,
                    given.shape,
                    given.data.len()
                ),
            });
        }
    }
    let dev_err = |source| ExecError::Device {
        model: name.to_owned(),
        source,
    };
    // Not reached with no stream (a schedule uses at least one), but typed all the same.
    let s0 = streams.first().ok_or_else(|| ExecError::InputMismatch {
        input: "<streams>".into(),
        reason: format!("model {name} needs a stream, none given"),
    })?;
    for (given, slot) in inputs.iter().zip(bound) {
        // A spare buffer of the right length when one is back (every one after the first
        // inference): a copy, no allocation.
        let spare = lock(&slot.spare).pop();
        let buf = match spare {
            Some(mut b) => {
                b.clear();
                b.extend_from_slice(&given.data);
                b
            }
            None => given.data.clone(),
        };
        let upload = Upload {
            buf,
            home: Arc::clone(&slot.spare),
        };
        s0.upload(upload, &slot.slice).map_err(dev_err)?;
    }
    Ok(())
}

/// The names of `ids` in `graph`, in order.
pub(crate) fn tensor_names(graph: &ExecutionGraph, ids: &[TensorId]) -> Vec<String> {
    ids.iter().map(|&t| graph.tensor(t).name.clone()).collect()
}

/// The outputs as host tensors: constants as they are, the rest from their host staging
/// (which the caller made sure the last inference has filled).
pub(crate) fn read_output_slots(
    graph: &ExecutionGraph,
    outputs: &[OutputSlot],
) -> Result<Vec<HostTensor>, ExecError> {
    let dev_err = |source| ExecError::Device {
        model: graph.name().to_owned(),
        source,
    };
    let mut out = Vec::with_capacity(outputs.len());
    for slot in outputs {
        match slot {
            OutputSlot::Constant(t) => out.push(t.clone()),
            OutputSlot::Staged { id, staging, .. } => {
                let info = graph.tensor(*id);
                let data = staging.read().map_err(dev_err)?.to_vec();
                out.push(HostTensor {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    data,
                });
            }
        }
    }
    Ok(out)
}

/// `Arc<TensorData>` as uploadable bytes without copying them.
struct ArcBytes(Arc<crate::graph::TensorData>);

impl AsRef<[u8]> for ArcBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The weights buffer and each weight's view into it.
pub(crate) struct Weights {
    /// None when there are no weight bytes.
    pub(crate) buffer: Option<DeviceBuffer>,
    pub(crate) views: BTreeMap<TensorId, DeviceSlice>,
}

/// Allocates one `total`-byte buffer from `pool` and enqueues on `upload` each constant's
/// upload at its offset (the caller laid them out and synchronises `upload`).
pub(crate) fn upload_weights(
    graph: &ExecutionGraph,
    pool: &DeviceMemoryPool,
    upload: &Stream,
    offsets: &[(TensorId, u64)],
    total: u64,
) -> Result<Weights, ExecError> {
    let mem = |source| ExecError::Memory {
        model: graph.name().to_owned(),
        source,
    };
    let buffer = if total > 0 {
        Some(pool.allocate(total).map_err(mem)?)
    } else {
        None
    };
    let mut views = BTreeMap::new();
    if let Some(w) = &buffer {
        for &(t, off) in offsets {
            let view = w.slice(off, graph.tensor(t).byte_size).map_err(mem)?;
            if let Some(data) = graph.constant_arc(t) {
                upload
                    .upload(ArcBytes(data), &view)
                    .map_err(|source| ExecError::Device {
                        model: graph.name().to_owned(),
                        source,
                    })?;
            }
            views.insert(t, view);
        }
    }
    Ok(Weights { buffer, views })
}

/// Outputs of an enqueued inference, readable once its last stream has finished.
#[derive(Debug)]
#[must_use = "an enqueued inference's outputs must be collected (or dropped deliberately)"]
pub struct PendingOutputs<'m> {
    model: &'m PreparedModel,
    stream: &'m Stream,
}

impl PendingOutputs<'_> {
    /// Waits for the inference's last stream and reads the outputs (the stream's first
    /// error since the previous synchronise, e.g. a kernel failure, is returned instead).
    pub fn collect(self) -> Result<Vec<HostTensor>, ExecError> {
        let m = self.model;
        let dev_err = |source| ExecError::Device {
            model: m.graph.name().to_owned(),
            source,
        };
        self.stream.synchronize().map_err(dev_err)?;
        m.read_outputs()
    }
}

/// One node's measured kernel time (see [`Executor::profile`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTime {
    /// Position in the graph's topological order.
    pub step: usize,
    /// The ONNX node's name.
    pub node: String,
    /// The kernel's label (the op type, or the fused ops it runs).
    pub op: &'static str,
    /// Median wall time of the kernel over the profiled runs.
    pub median: std::time::Duration,
    /// Shapes of the kernel's inputs (weights included) and outputs, so a slow node can be
    /// told apart from its same-named neighbours and its arithmetic rate worked out.
    pub inputs: Vec<Vec<usize>>,
    /// See `inputs`.
    pub outputs: Vec<Vec<usize>>,
}

impl NodeTime {
    /// The shapes as `in0, in1 -> out0` with dims joined by `x` (a scalar shows as `[]`).
    pub fn shapes(&self) -> String {
        let join = |v: &[Vec<usize>]| {
            v.iter()
                .map(|d| {
                    if d.is_empty() {
                        "[]".to_owned()
                    } else {
                        d.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!("{} -> {}", join(&self.inputs), join(&self.outputs))
    }

    /// Multiply-adds a `Conv` (output elements times the filter's elements per output
    /// channel) or a `MatMul` (output elements times the shared dimension) performs; `None`
    /// for other ops, whose cost is not arithmetic.
    pub fn macs(&self) -> Option<u64> {
        let out: usize = self.outputs.first()?.iter().product();
        let per = match self.op {
            "Conv" => self.inputs.get(1)?.iter().skip(1).product::<usize>(),
            "MatMul" => *self.inputs.first()?.last()?,
            _ => return None,
        };
        u64::try_from(out.checked_mul(per)?).ok()
    }
}

/// Enqueues inferences of prepared models. Stateless: all state lives in the
/// [`PreparedModel`] and the streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct Executor;

impl Executor {
    /// Runs one inference and waits for it. `inputs` follow
    /// [`PreparedModel::input_names`]; `streams` must hold at least one stream, and as many
    /// as the model's schedule uses are used.
    pub fn run(
        model: &PreparedModel,
        inputs: &[HostTensor],
        streams: &[&Stream],
    ) -> Result<Vec<HostTensor>, ExecError> {
        Self::enqueue(model, inputs, streams)?.collect()
    }

    /// Enqueues one inference without waiting. All work ends on `streams[0]`: work enqueued
    /// there afterwards (a completion callback) runs once the inference is done.
    pub fn enqueue<'m>(
        model: &'m PreparedModel,
        inputs: &[HostTensor],
        streams: &[&'m Stream],
    ) -> Result<PendingOutputs<'m>, ExecError> {
        let name = model.graph.name();
        let dev_err = |source| ExecError::Device {
            model: name.to_owned(),
            source,
        };
        // The compute team's helpers stay awake until the inference's last step (released
        // there, or when that step is dropped unrun): taken here, their wake-up overlaps the
        // upload instead of delaying the first kernel (SqueezeNet 1.1 at 2 threads: 30-50
        // us on its first job; ResNet-50's Winograd convs, after a serial pad, as much).
        let hold = aegis_cuda::host_team_hold(model.host_threads);
        upload_inputs(
            &model.graph,
            &model.inputs,
            model.schedule.streams,
            inputs,
            streams,
        )?;
        let s0 = streams[0];
        if let Some(ev) = model.schedule.start_event {
            s0.record(&model.events[ev]).map_err(dev_err)?;
        }
        for step in &model.steps {
            let s = streams[step.stream];
            for &w in &step.waits {
                s.wait_event(&model.events[w]).map_err(dev_err)?;
            }
            if let Some(k) = &step.kernel {
                let k = Arc::clone(k);
                s.enqueue_host(Cow::Borrowed(k.label()), move || k.run())
                    .map_err(dev_err)?;
            }
            if let Some(ev) = step.record {
                s.record(&model.events[ev]).map_err(dev_err)?;
            }
        }
        for &(_, ev) in &model.schedule.joins {
            s0.wait_event(&model.events[ev]).map_err(dev_err)?;
        }
        for slot in &model.outputs {
            if let OutputSlot::Staged { src, staging, .. } = slot {
                s0.copy(src, &staging.as_slice()).map_err(dev_err)?;
            }
        }
        if let Some(hold) = hold {
            s0.enqueue_host("team release", move || {
                drop(hold);
                Ok(())
            })
            .map_err(dev_err)?;
        }
        Ok(PendingOutputs { model, stream: s0 })
    }

    /// Runs `runs` inferences on `stream` alone, timing every kernel, and returns each
    /// node's median kernel time in graph order (nodes without a kernel are left out). For
    /// finding where a model's time goes: every step runs in topological order on the one
    /// stream (a multi-stream schedule is flattened, so no event is needed), and the timing
    /// closure around each kernel adds well under a microsecond. Host backend only.
    pub fn profile(
        model: &PreparedModel,
        inputs: &[HostTensor],
        stream: &Stream,
        runs: usize,
    ) -> Result<Vec<NodeTime>, ExecError> {
        use aegis_cuda::sync::Mutex;
        use std::time::{Duration, Instant};
        let name = model.graph.name();
        let dev_err = |source| ExecError::Device {
            model: name.to_owned(),
            source,
        };
        let timed: Vec<(usize, Arc<NodeKernel>)> = model
            .steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.kernel.as_ref().map(|k| (i, Arc::clone(k))))
            .collect();
        let samples: Arc<Vec<Mutex<Vec<Duration>>>> = Arc::new(
            (0..timed.len())
                .map(|_| Mutex::new(Vec::with_capacity(runs)))
                .collect(),
        );
        let streams = vec![stream; model.schedule.streams.max(1)];
        for _ in 0..runs.max(1) {
            upload_inputs(
                &model.graph,
                &model.inputs,
                model.schedule.streams,
                inputs,
                &streams,
            )?;
            for (slot, (_, k)) in timed.iter().enumerate() {
                let k = Arc::clone(k);
                let samples = Arc::clone(&samples);
                stream
                    .enqueue_host(Cow::Borrowed(k.label()), move || {
                        let t = Instant::now();
                        let r = k.run();
                        let dt = t.elapsed();
                        if let Some(v) = samples.get(slot) {
                            aegis_cuda::sync::lock(v).push(dt);
                        }
                        r
                    })
                    .map_err(dev_err)?;
            }
            stream.synchronize().map_err(dev_err)?;
        }
        Ok(timed
            .iter()
            .enumerate()
            .map(|(slot, (step, k))| {
                let mut v = samples
                    .get(slot)
                    .map(|m| aegis_cuda::sync::lock(m).clone())
                    .unwrap_or_default();
                v.sort_unstable();
                NodeTime {
                    step: *step,
                    node: k.node_name().to_owned(),
                    op: k.label(),
                    median: v.get(v.len() / 2).copied().unwrap_or_default(),
                    inputs: k.input_shapes(),
                    outputs: k.output_shapes(),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::NodeTime;
    use std::time::Duration;

    fn node(op: &'static str, inputs: Vec<Vec<usize>>, outputs: Vec<Vec<usize>>) -> NodeTime {
        NodeTime {
            step: 0,
            node: "n".to_owned(),
            op,
            median: Duration::from_micros(10),
            inputs,
            outputs,
        }
    }

    #[test]
    fn node_times_describe_their_shapes_and_arithmetic() {
        let conv = node(
            "Conv",
            vec![vec![1, 16, 8, 8], vec![32, 8, 3, 3], vec![32]],
            vec![vec![1, 32, 8, 8]],
        );
        assert_eq!(conv.shapes(), "1x16x8x8, 32x8x3x3, 32 -> 1x32x8x8");
        // Every output element: one multiply-add per filter element of its channel.
        assert_eq!(conv.macs(), Some(32 * 8 * 8 * 8 * 3 * 3));
        let mm = node(
            "MatMul",
            vec![vec![2, 5, 7], vec![7, 3]],
            vec![vec![2, 5, 3]],
        );
        assert_eq!(mm.macs(), Some(2 * 5 * 3 * 7));
        let scalar = node("Add", vec![vec![], vec![4]], vec![vec![4]]);
        assert_eq!(scalar.shapes(), "[], 4 -> 4");
        assert_eq!(scalar.macs(), None);
        // A conv without its filter's shape has no count rather than a wrong one.
        assert_eq!(
            node("Conv", vec![vec![1, 3, 4, 4]], vec![vec![1, 2, 4, 4]]).macs(),
            None
        );
    }
}
