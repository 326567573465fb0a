//! [`CudaPreparedModel`] (a graph prepared on a CUDA device: kernels compiled once, weights
//! and parameter tables uploaded once, one arena from the plan, every node lowered to its
//! launches) and [`CudaExecutor`] (eager enqueue, or one captured CUDA graph replayed).

use std::sync::Arc;

use aegis_cuda::sync::{lock, Mutex};

use aegis_cuda::{
    BackendKind, CudaError, Device, DeviceSlice, Event, GraphExec, KernelArgs, Stream,
};
use aegis_memory::{Arena, DeviceBuffer, DeviceMemoryPool};

use super::kernels::CudaKernels;
use super::lower::{lower, scratch_bytes, ConvSlots, LaunchSpec, LowerError, NodeIo, Params, A};
use super::CudaExecError;
use crate::executor::{
    bind_io, read_output_slots, tensor_names, upload_inputs, upload_weights, Io, OutputSlot,
    Weights,
};
use crate::graph::{concat_input_in_place, ExecutionGraph, TensorId, TensorKind};
use crate::tensor::HostTensor;
use crate::tracker::{assign_streams, StreamAssignment};
use crate::{ExecError, ExecOptions};

/// Alignment of every weight and parameter table (CUDA's allocation granularity).
const ALIGN: u64 = 256;

fn align(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

/// One enqueued operation, bound to its memory.
#[derive(Debug, Clone)]
enum Launch {
    Kernel {
        kernel: aegis_cuda::Kernel,
        grid: aegis_cuda::Dim3,
        block: aegis_cuda::Dim3,
        args: KernelArgs,
    },
    Copy {
        src: DeviceSlice,
        dst: DeviceSlice,
    },
}

impl Launch {
    fn enqueue(&self, s: &Stream) -> Result<(), CudaError> {
        match self {
            Launch::Kernel {
                kernel,
                grid,
                block,
                args,
            } => s.launch(kernel, *grid, *block, 0, args),
            Launch::Copy { src, dst } => s.copy(src, dst),
        }
    }
}

#[derive(Debug)]
struct Step {
    launches: Vec<Launch>,
    stream: usize,
    waits: Vec<usize>,
    record: Option<usize>,
}

/// The captured graph of a model: built on the first replay request.
#[derive(Debug)]
enum Captured {
    NotYet,
    Ready(GraphExec),
    /// Capture failed once: replays run eagerly from then on.
    Failed,
}

/// How [`CudaExecutor::enqueue`] issues the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMode {
    /// Every launch enqueued on the streams, each inference.
    Eager,
    /// The whole inference captured once into a CUDA graph and replayed (falls back to eager,
    /// with a `tracing` warning, if the capture fails).
    Graph,
}

/// Memory a CUDA-prepared model holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CudaMemory {
    /// Constants read by kernels (each 256-byte aligned).
    pub weights_bytes: u64,
    /// Static kernel parameter tables (shapes, strides, resize tables).
    pub params_bytes: u64,
    /// The activation arena (the plan's peak).
    pub arena_bytes: u64,
    /// Split-K convolution partial sums: one region per stream (nodes on different streams
    /// run concurrently), each as large as the largest need of any node.
    pub scratch_bytes: u64,
}

/// A graph prepared on a CUDA device; the CUDA twin of [`crate::PreparedModel`]. Running it
/// allocates no device memory. One model runs one inference at a time (one arena).
#[derive(Debug)]
pub struct CudaPreparedModel {
    graph: Arc<ExecutionGraph>,
    device: Device,
    memory: CudaMemory,
    _weights: Option<DeviceBuffer>,
    _params: Option<DeviceBuffer>,
    _scratch: Option<DeviceBuffer>,
    _arena: Arena,
    steps: Vec<Step>,
    schedule: StreamAssignment,
    events: Vec<Event>,
    inputs: Vec<crate::executor::InputSlot>,
    outputs: Vec<OutputSlot>,
    captured: Mutex<Captured>,
    launches: usize,
}

impl CudaPreparedModel {
    /// Compiles the op kernels (once per process and capability, via NVRTC), uploads weights
    /// and parameter tables, allocates the arena from `pool` (a CUDA device's pool) and lowers
    /// every node. Only `options.streams` is used (kernels use the whole device).
    pub fn prepare(
        graph: Arc<ExecutionGraph>,
        pool: &DeviceMemoryPool,
        options: &ExecOptions,
    ) -> Result<Self, CudaExecError> {
        let device = pool.device().clone();
        let model = graph.name().to_owned();
        let mem = |source| {
            CudaExecError::Exec(ExecError::Memory {
                model: model.clone(),
                source,
            })
        };
        let dev_err = |source: CudaError| {
            CudaExecError::Exec(ExecError::Device {
                model: model.clone(),
                source,
            })
        };
        if device.backend() != BackendKind::Cuda {
            return Err(dev_err(CudaError::invalid(
                "CudaPreparedModel::prepare",
                "the pool's device is not a CUDA device",
            )));
        }
        let kernels = CudaKernels::load(&device).map_err(|source| CudaExecError::Nvrtc {
            model: model.clone(),
            source,
        })?;
        let schedule = assign_streams(&graph, options.streams);

        // Weights: every constant a node reads, 256-byte aligned in one buffer, uploaded once.
        let mut weight_ids: Vec<TensorId> = Vec::new();
        for node in graph.operators() {
            for &t in &node.inputs {
                if graph.tensor(t).kind == TensorKind::Constant && !weight_ids.contains(&t) {
                    weight_ids.push(t);
                }
            }
        }
        weight_ids.sort_unstable_by_key(|t| t.index());
        let mut offsets = Vec::with_capacity(weight_ids.len());
        let mut total = 0u64;
        for &t in &weight_ids {
            offsets.push((t, total));
            total = total
                .checked_add(align(graph.tensor(t).byte_size.max(1)))
                .ok_or_else(|| {
                    CudaExecError::Exec(ExecError::Overflow {
                        model: model.clone(),
                        what: "weights buffer size".into(),
                    })
                })?;
        }
        let upload = Stream::new(&device, aegis_cuda::StreamPriority::NORMAL).map_err(dev_err)?;
        let Weights {
            buffer: weights,
            views: weight_views,
        } = upload_weights(&graph, pool, &upload, &offsets, total)?;
        let arena = Arena::new(pool, graph.plan().clone()).map_err(mem)?;
        let slice_of = |t: TensorId| -> Result<DeviceSlice, CudaExecError> {
            if let Some(v) = weight_views.get(&t) {
                return Ok(v.clone());
            }
            arena.view(t.index()).map_err(mem)
        };

        // Scratch for split-K convs, one region per stream, allocated once here.
        let order = graph.topological_order();
        let sms = device.info().parallelism.max(1);
        // Resident blocks per multiprocessor of each implicit-GEMM conv kernel (the driver's
        // occupancy calculator): how many blocks make one full wave, for split-K.
        let per_sm = |k| -> Result<usize, CudaExecError> {
            Ok(kernels
                .get(k)
                .max_active_blocks_per_sm(256, 0)
                .map_err(dev_err)? as usize)
        };
        let conv_slots = ConvSlots {
            sms,
            per_sm_64: per_sm(super::kernels::K::ConvIgemm)?.max(1),
            per_sm_128: per_sm(super::kernels::K::ConvIgemm128)?.max(1),
        };
        let needs: Vec<u64> = order
            .iter()
            .map(|id| scratch_bytes(&graph, graph.node(*id), conv_slots))
            .collect();
        let need = needs.iter().copied().max().unwrap_or(0);
        let region = align(need);
        let stream_count = schedule.streams.max(1) as u64;
        let scratch = if need > 0 {
            Some(pool.allocate(region * stream_count).map_err(mem)?)
        } else {
            None
        };
        let scratch_of = |stream: usize| -> Result<Option<DeviceSlice>, CudaExecError> {
            scratch
                .as_ref()
                .map(|b| b.slice(stream as u64 * region, need).map_err(mem))
                .transpose()
        };

        // Lower every node in the graph's order; a Conv followed by its activation becomes
        // one launch (see `fusible_activation`).
        let mut params = Params::default();
        let mut specs: Vec<Vec<LaunchSpec>> = Vec::new();
        let mut fused_away = vec![false; order.len()];
        for (p, id) in order.iter().enumerate() {
            if fused_away[p] {
                specs.push(Vec::new());
                continue;
            }
            let node = graph.node(*id);
            let ins = node
                .inputs
                .iter()
                .map(|&t| slice_of(t))
                .collect::<Result<Vec<_>, _>>()?;
            let mut outs = node
                .outputs
                .iter()
                .map(|&t| slice_of(t))
                .collect::<Result<Vec<_>, _>>()?;
            let alias = in_place_input(&graph, node, &ins, &outs)?;
            let mut act = None;
            if let Some((code, out)) = fusible_activation(&graph, &schedule, p) {
                let fused_out = slice_of(out)?;
                if !ins.iter().any(|i| i.overlaps(&fused_out)) {
                    outs[0] = fused_out;
                    act = Some(code);
                    fused_away[p + 1] = true;
                }
            }
            let io = NodeIo {
                g: &graph,
                node,
                ins,
                outs,
                act,
                scratch: if needs[p] > 0 {
                    scratch_of(schedule.stream_of[p])?
                } else {
                    None
                },
                slots: conv_slots,
            };
            let lowered =
                lower(&io, alias, &mut params).map_err(|LowerError::Unsupported(reason)| {
                    CudaExecError::Unsupported {
                        model: model.clone(),
                        node: node.name.clone(),
                        op: node.op.onnx_name(),
                        reason,
                    }
                })?;
            specs.push(lowered);
        }

        // Parameter tables: one buffer, uploaded once.
        let mut p_offsets = Vec::with_capacity(params.blobs.len());
        let mut p_total = 0u64;
        for b in &params.blobs {
            p_offsets.push(p_total);
            p_total += align(b.len().max(1) as u64);
        }
        let params_buf = if p_total > 0 {
            Some(pool.allocate(p_total).map_err(mem)?)
        } else {
            None
        };
        let mut param_views = Vec::with_capacity(params.blobs.len());
        if let Some(pb) = &params_buf {
            for (blob, &off) in params.blobs.into_iter().zip(&p_offsets) {
                let view = pb.slice(off, blob.len() as u64).map_err(mem)?;
                if !blob.is_empty() {
                    upload.upload(blob, &view).map_err(dev_err)?;
                }
                param_views.push(view);
            }
        }
        upload.synchronize().map_err(dev_err)?;
        drop(upload);

        let mut steps = Vec::with_capacity(order.len());
        let mut launches = 0usize;
        for (p, node_specs) in specs.into_iter().enumerate() {
            let mut bound = Vec::with_capacity(node_specs.len());
            for spec in node_specs {
                bound.push(match spec {
                    LaunchSpec::Copy { src, dst } => Launch::Copy { src, dst },
                    LaunchSpec::Kernel {
                        k,
                        grid,
                        block,
                        args,
                    } => {
                        let mut ka = KernelArgs::new();
                        for a in args {
                            ka = match a {
                                A::T(s) => ka.slice(&s),
                                A::P(i) => ka.slice(param_views.get(i).ok_or_else(|| {
                                    dev_err(CudaError::invalid(
                                        "CudaPreparedModel::prepare",
                                        "parameter table missing",
                                    ))
                                })?),
                                A::I32(v) => ka.i32(v),
                                A::F32(v) => ka.f32(v),
                                A::U64(v) => ka.u64(v),
                            };
                        }
                        Launch::Kernel {
                            kernel: kernels.get(k).clone(),
                            grid,
                            block,
                            args: ka,
                        }
                    }
                });
            }
            launches += bound.len();
            steps.push(Step {
                launches: bound,
                stream: schedule.stream_of[p],
                waits: schedule.waits[p].clone(),
                record: schedule.record_after[p],
            });
        }
        let Io {
            events,
            inputs,
            outputs,
        } = bind_io::<CudaExecError>(&graph, &device, &arena, schedule.events, slice_of)?;
        let memory = CudaMemory {
            weights_bytes: total,
            params_bytes: p_total,
            arena_bytes: arena.len(),
            scratch_bytes: region * stream_count,
        };
        tracing::debug!(target: "aegis_exec", model = %model, weights = total, params = p_total, arena = arena.len(), launches, streams = schedule.streams, "model prepared on CUDA");
        Ok(Self {
            graph,
            device,
            memory,
            _weights: weights,
            _params: params_buf,
            _scratch: scratch,
            _arena: arena,
            steps,
            schedule,
            events,
            inputs,
            outputs,
            captured: Mutex::new(Captured::NotYet),
            launches,
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
    pub fn memory(&self) -> CudaMemory {
        self.memory
    }

    /// The stream schedule.
    pub fn schedule(&self) -> &StreamAssignment {
        &self.schedule
    }

    /// Kernel launches and copies one inference enqueues (its per-node work items).
    pub fn launch_count(&self) -> usize {
        self.launches
    }

    /// Whether a captured CUDA graph is ready for replay (after a [`LaunchMode::Graph`] run).
    pub fn graph_ready(&self) -> bool {
        matches!(*lock(&self.captured), Captured::Ready(_))
    }

    /// Names of the graph inputs, in the order the executor expects them.
    pub fn input_names(&self) -> Vec<String> {
        tensor_names(&self.graph, self.graph.inputs())
    }

    /// Names of the graph outputs, in the order they are returned.
    pub fn output_names(&self) -> Vec<String> {
        tensor_names(&self.graph, self.graph.outputs())
    }

    /// Reads the outputs of the last inference from host staging (call only after the
    /// inference's stream 0 completed).
    pub fn read_outputs(&self) -> Result<Vec<HostTensor>, CudaExecError> {
        Ok(read_output_slots(&self.graph, &self.outputs)?)
    }

    fn dev_err(&self, source: CudaError) -> CudaExecError {
        CudaExecError::Exec(ExecError::Device {
            model: self.graph.name().to_owned(),
            source,
        })
    }

    /// Enqueues every step (waits, launches, records) and the joins back to stream 0.
    fn enqueue_steps(&self, streams: &[&Stream]) -> Result<(), CudaError> {
        let s0 = streams[0];
        if let Some(ev) = self.schedule.start_event {
            s0.record(&self.events[ev])?;
        }
        for step in &self.steps {
            let s = streams[step.stream];
            for &w in &step.waits {
                s.wait_event(&self.events[w])?;
            }
            for l in &step.launches {
                l.enqueue(s)?;
            }
            if let Some(ev) = step.record {
                s.record(&self.events[ev])?;
            }
        }
        for &(_, ev) in &self.schedule.joins {
            s0.wait_event(&self.events[ev])?;
        }
        Ok(())
    }

    /// Captures the steps into a graph on stream 0 (other streams fork from and join back to
    /// it through the schedule's events).
    fn capture(&self, streams: &[&Stream]) -> Result<GraphExec, CudaError> {
        // Drain every stream first: a stream with many parked buffers queries the driver on
        // its next enqueue, which is illegal while it takes part in a capture.
        for s in &streams[..self.schedule.streams.max(1)] {
            s.synchronize()?;
        }
        let s0 = streams[0];
        s0.begin_capture()?;
        let enq = self.enqueue_steps(streams);
        // End the capture whatever happened, so the stream leaves capture mode.
        let graph = s0.end_capture();
        enq?;
        graph?.instantiate()
    }
}

/// For a Conv at position `p`: the activation that can run in its epilogue (its op code and
/// attributes, and the activation's output tensor). Only when the activation is the conv
/// output's sole reader, runs right after it on the same stream with no event wait (so every
/// ordering the schedule gives the activation's output already holds when the conv starts),
/// and the conv output is not a graph output.
fn fusible_activation(
    g: &ExecutionGraph,
    schedule: &StreamAssignment,
    p: usize,
) -> Option<((i32, f32, f32), TensorId)> {
    let order = g.topological_order();
    let node = g.node(*order.get(p)?);
    if !matches!(node.op, crate::graph::Op::Conv { .. }) {
        return None;
    }
    let out = *node.outputs.first()?;
    let consumers = g.consumers(out);
    let next = *order.get(p + 1)?;
    if consumers != [next] || g.tensor(out).kind != TensorKind::Activation {
        return None;
    }
    let nn = g.node(next);
    if nn.inputs.len() != 1
        || nn.outputs.len() != 1
        || schedule.stream_of[p + 1] != schedule.stream_of[p]
        || !schedule.waits[p + 1].is_empty()
    {
        return None;
    }
    let code = super::lower::unary_code(&nn.op)?;
    Some((code, nn.outputs[0]))
}

/// The input sharing output 0's memory exactly, if any; any other overlap is an error (the
/// memory plan only shares storage for elementwise ops, which run in place element by
/// element, and stores Concat inputs at their place in the output, whose copies lowering
/// skips).
fn in_place_input(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
    ins: &[DeviceSlice],
    outs: &[DeviceSlice],
) -> Result<Option<usize>, CudaExecError> {
    let mut alias = None;
    for (oi, o) in outs.iter().enumerate() {
        for (i, a) in ins.iter().enumerate() {
            if !a.overlaps(o) {
                continue;
            }
            let placed = oi == 0
                && concat_input_in_place(g, node, i, (a.offset(), a.len()), (o.offset(), o.len()));
            if placed {
                // Lowering skips its copy.
                continue;
            }
            let exact = a.offset() == o.offset() && a.len() == o.len();
            let reshape_same = node.op.is_reshape_only() && exact;
            let ok = reshape_same
                || (oi == 0
                    && exact
                    && node.op.is_elementwise()
                    && alias.is_none()
                    && g.tensor(node.inputs[i]).dtype == crate::graph::DType::F32);
            if !ok {
                return Err(CudaExecError::Exec(ExecError::InvalidNode {
                    model: g.name().to_owned(),
                    node: node.name.clone(),
                    reason: "an input shares planned memory with an output in a way the CUDA kernels cannot run in place".into(),
                }));
            }
            if !reshape_same {
                alias = Some(i);
            }
        }
    }
    Ok(alias)
}

/// Outputs of an enqueued CUDA inference, readable once its stream 0 has finished.
#[derive(Debug)]
#[must_use = "an enqueued inference's outputs must be collected (or dropped deliberately)"]
pub struct CudaPendingOutputs<'m> {
    model: &'m CudaPreparedModel,
    stream: &'m Stream,
}

impl CudaPendingOutputs<'_> {
    /// Waits for stream 0 and reads the outputs.
    pub fn collect(self) -> Result<Vec<HostTensor>, CudaExecError> {
        self.stream
            .synchronize()
            .map_err(|e| self.model.dev_err(e))?;
        self.model.read_outputs()
    }
}

/// Enqueues inferences of [`CudaPreparedModel`]s. Stateless, like [`crate::Executor`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CudaExecutor;

impl CudaExecutor {
    /// Runs one inference and waits for it.
    pub fn run(
        model: &CudaPreparedModel,
        inputs: &[HostTensor],
        streams: &[&Stream],
        mode: LaunchMode,
    ) -> Result<Vec<HostTensor>, CudaExecError> {
        Self::enqueue(model, inputs, streams, mode)?.collect()
    }

    /// Runs `runs` inferences on `stream` alone with an event pair around every node's
    /// launches, and returns each node's median GPU time in graph order (nodes with no
    /// launch, such as an activation fused into its conv, are left out). For finding where a
    /// model's time goes: the steps run in topological order on the one stream (a
    /// multi-stream schedule is flattened, so no cross-stream event is needed); the events
    /// between launches add a little time to each node.
    pub fn profile(
        model: &CudaPreparedModel,
        inputs: &[HostTensor],
        stream: &Stream,
        runs: usize,
    ) -> Result<Vec<crate::NodeTime>, CudaExecError> {
        let err = |e| model.dev_err(e);
        let streams = vec![stream; model.schedule.streams.max(1)];
        let timed: Vec<usize> = (0..model.steps.len())
            .filter(|&i| !model.steps[i].launches.is_empty())
            .collect();
        let events = (0..2 * timed.len())
            .map(|_| Event::new(&model.device))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut samples = vec![Vec::with_capacity(runs.max(1)); timed.len()];
        for _ in 0..runs.max(1) {
            upload_inputs(
                &model.graph,
                &model.inputs,
                model.schedule.streams,
                inputs,
                &streams,
            )?;
            for (slot, &i) in timed.iter().enumerate() {
                stream.record(&events[2 * slot]).map_err(err)?;
                for l in &model.steps[i].launches {
                    l.enqueue(stream).map_err(err)?;
                }
                stream.record(&events[2 * slot + 1]).map_err(err)?;
            }
            stream.synchronize().map_err(err)?;
            for (slot, v) in samples.iter_mut().enumerate() {
                v.push(
                    events[2 * slot + 1]
                        .elapsed_since(&events[2 * slot])
                        .map_err(err)?,
                );
            }
        }
        let order = model.graph.topological_order();
        let shapes = |ts: &[TensorId]| -> Vec<Vec<usize>> {
            ts.iter()
                .map(|&t| model.graph.tensor(t).shape.clone())
                .collect()
        };
        Ok(timed
            .iter()
            .zip(samples)
            .map(|(&step, mut v)| {
                v.sort_unstable();
                let node = model.graph.node(order[step]);
                crate::NodeTime {
                    step,
                    node: node.name.clone(),
                    op: node.op.onnx_name(),
                    median: v.get(v.len() / 2).copied().unwrap_or_default(),
                    inputs: shapes(&node.inputs),
                    outputs: shapes(&node.outputs),
                }
            })
            .collect())
    }

    /// Enqueues one inference without waiting. All work ends on `streams[0]`.
    pub fn enqueue<'m>(
        model: &'m CudaPreparedModel,
        inputs: &[HostTensor],
        streams: &[&'m Stream],
        mode: LaunchMode,
    ) -> Result<CudaPendingOutputs<'m>, CudaExecError> {
        let name = model.graph.name();
        upload_inputs(
            &model.graph,
            &model.inputs,
            model.schedule.streams,
            inputs,
            streams,
        )?;
        let s0 = streams[0];
        let err = |e| model.dev_err(e);
        match mode {
            LaunchMode::Eager => model.enqueue_steps(streams).map_err(err)?,
            LaunchMode::Graph => {
                let mut cap = lock(&model.captured);
                if matches!(*cap, Captured::NotYet) {
                    *cap = match model.capture(streams) {
                        Ok(exec) => Captured::Ready(exec),
                        Err(e) => {
                            tracing::warn!(target: "aegis_exec", model = %name, error = %e, "CUDA graph capture failed; falling back to eager launches");
                            Captured::Failed
                        }
                    };
                }
                match &*cap {
                    Captured::Ready(exec) => s0.launch_graph(exec).map_err(err)?,
                    _ => model.enqueue_steps(streams).map_err(err)?,
                }
            }
        }
        for slot in &model.outputs {
            if let OutputSlot::Staged { src, staging, .. } = slot {
                s0.copy(src, &staging.as_slice()).map_err(err)?;
            }
        }
        Ok(CudaPendingOutputs { model, stream: s0 })
    }
}
