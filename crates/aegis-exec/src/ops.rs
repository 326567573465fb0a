//! Binding graph operators to host kernels: which constants each kernel reads, prepared
//! weights (convolutions with their activation fused), scratch sizes, and the code that runs
//! one node on a stream worker with checked views of its planned memory.

use std::sync::Arc;

use aegis_cuda::{CudaError, DeviceSlice, HostRead, HostWrite};

use crate::graph::{
    concat_input_in_place, node_concat_slots, BitwiseKind, CompareKind, DType, ExecutionGraph,
    LogicKind, MathFn, NodeId, Op, ReduceKind, TensorData, TensorId, TensorKind,
};
use crate::kernels::{self as k, BinaryOp, ConvAttrs, KernelError, PreparedConv, UnaryOp};
use crate::ExecError;

/// What a node's kernel needs beyond its op.
#[derive(Debug, Clone)]
pub(crate) enum KernelSpec {
    /// A generic kernel reading its inputs from the arena or the weights buffer.
    Generic,
    /// A convolution with prepared weights; `output` is where it writes (the fused
    /// activation's output when one was fused). `residual`: a residual join fused in, the
    /// Add's other input, added before the activation (the Add, and the Relu after it when
    /// there is one, run inside this kernel).
    Conv {
        conv: Arc<PreparedConv>,
        output: TensorId,
        residual: Option<TensorId>,
    },
    /// A two-input f32 Add or Sum with the Relu after it fused (a residual join): one pass
    /// computes `max(a + b, 0)` into `output`, the Relu's output.
    AddRelu { output: TensorId },
    /// A BatchNormalization with constant parameters as `x * a[c] + b[c]` (coefficients
    /// computed once), optionally with the following activation fused; `output` as for Conv.
    Affine {
        a: Arc<[f32]>,
        b: Arc<[f32]>,
        act: Option<UnaryOp>,
        output: TensorId,
    },
    /// A chain of elementwise nodes computed as one unary map of `input` into `output` (the
    /// last node's output): exported hard-swish.
    Map {
        input: TensorId,
        act: UnaryOp,
        output: TensorId,
    },
    /// A generic kernel (inputs and outputs as for `Generic`) whose constant integer filter
    /// was packed once for the GEMM: QLinearConv / ConvInteger with one group.
    Packed { rows: Arc<k::PackedRows> },
    /// An f32 `MatMul` or `Gemm` whose right-hand matrix is a constant, packed once (with
    /// its bias: a `Gemm`'s constant row `C`, or the constant row of an `Add` right after a
    /// `MatMul`, fused). Reads input 0 only; `output` as for Conv (the fused Add's or
    /// activation's output when those were fused). `b_shape`: the constant's shape.
    MatMulPacked {
        b: Arc<k::PackedB>,
        b_shape: Vec<usize>,
        act: Option<UnaryOp>,
        output: TensorId,
    },
}

/// Result of planning kernels for a graph.
#[derive(Debug)]
pub(crate) struct KernelPlan {
    /// Per node index: its kernel, or `None` when the node needs none (fused away).
    pub(crate) kernels: Vec<Option<KernelSpec>>,
    /// Per node index: the node whose kernel does its work (`Some` exactly for fused-away
    /// nodes), for the stream schedule.
    pub(crate) runs_with: Vec<Option<NodeId>>,
    /// Constants read from device memory by kernels (uploaded once).
    pub(crate) weight_tensors: Vec<TensorId>,
    /// Bytes of kernel-prepared weights.
    pub(crate) prepared_bytes: u64,
    /// Scratch elements (f32) the largest kernel needs per stream.
    pub(crate) scratch_elems: usize,
}

fn unary_of(op: &Op) -> Option<UnaryOp> {
    Some(match op {
        Op::Relu => UnaryOp::Relu,
        Op::Sigmoid => UnaryOp::Sigmoid,
        Op::Tanh => UnaryOp::Tanh,
        Op::Erf => UnaryOp::Erf,
        Op::Sqrt => UnaryOp::Sqrt,
        Op::Gelu { approximate } => UnaryOp::Gelu(match approximate {
            crate::loader::op::GeluApproximation::None => k::GeluApprox::None,
            crate::loader::op::GeluApproximation::Tanh => k::GeluApprox::Tanh,
        }),
        Op::HardSigmoid { alpha, beta } => UnaryOp::HardSigmoid {
            alpha: *alpha,
            beta: *beta,
        },
        Op::HardSwish => UnaryOp::HardSwish,
        Op::Clip { min, max } => UnaryOp::Clip {
            min: *min,
            max: *max,
        },
        Op::LeakyRelu { alpha } => UnaryOp::LeakyRelu { alpha: *alpha },
        // Float-only functions (Neg/Abs/Sign also take integers and go through `math`).
        Op::Math { f } => match f {
            MathFn::Exp => UnaryOp::Exp,
            MathFn::Log => UnaryOp::Log,
            MathFn::Reciprocal => UnaryOp::Reciprocal,
            MathFn::Mish => UnaryOp::Mish,
            MathFn::Floor => UnaryOp::Floor,
            MathFn::Ceil => UnaryOp::Ceil,
            MathFn::Round => UnaryOp::Round,
            _ => return None,
        },
        _ => return None,
    })
}

fn scatter_reduction(r: crate::loader::op::ScatterReduce) -> k::ScatterReduction {
    use crate::loader::op::ScatterReduce as R;
    match r {
        R::None => k::ScatterReduction::None,
        R::Add => k::ScatterReduction::Add,
        R::Mul => k::ScatterReduction::Mul,
        R::Max => k::ScatterReduction::Max,
        R::Min => k::ScatterReduction::Min,
    }
}

/// The scalar function of a float-only elementwise op without a SIMD kernel.
fn float_fn(op: &Op) -> Option<Box<dyn Fn(f32) -> f32 + Sync>> {
    Some(match *op {
        Op::Math { f } => match f {
            MathFn::Neg => Box::new(|x: f32| -x),
            MathFn::Abs => Box::new(f32::abs),
            MathFn::Sign => Box::new(k::sign_f32),
            MathFn::Sin => Box::new(f32::sin),
            MathFn::Cos => Box::new(f32::cos),
            MathFn::Tan => Box::new(f32::tan),
            MathFn::Asin => Box::new(f32::asin),
            MathFn::Acos => Box::new(f32::acos),
            MathFn::Atan => Box::new(f32::atan),
            MathFn::Sinh => Box::new(f32::sinh),
            MathFn::Cosh => Box::new(f32::cosh),
            MathFn::Asinh => Box::new(f32::asinh),
            MathFn::Acosh => Box::new(f32::acosh),
            MathFn::Atanh => Box::new(f32::atanh),
            MathFn::Softplus => Box::new(k::softplus),
            MathFn::Softsign => Box::new(|x: f32| x / (1.0 + x.abs())),
            _ => return None,
        },
        Op::Elu { alpha } => Box::new(move |x: f32| if x < 0.0 { alpha * x.exp_m1() } else { x }),
        Op::Selu { alpha, gamma } => {
            Box::new(move |x: f32| gamma * if x <= 0.0 { alpha * x.exp_m1() } else { x })
        }
        Op::Celu { alpha } => {
            Box::new(move |x: f32| x.max(0.0) + (alpha * (x / alpha).exp_m1()).min(0.0))
        }
        Op::Swish { alpha } => Box::new(move |x: f32| x / (1.0 + (-alpha * x).exp())),
        Op::ThresholdedRelu { alpha } => Box::new(move |x: f32| if x > alpha { x } else { 0.0 }),
        Op::Shrink { bias, lambd } => Box::new(move |x: f32| {
            if x < -lambd {
                x + bias
            } else if x > lambd {
                x - bias
            } else {
                0.0
            }
        }),
        _ => return None,
    })
}

fn binary_of(op: &Op) -> Option<BinaryOp> {
    Some(match op {
        Op::Add => BinaryOp::Add,
        Op::Sub => BinaryOp::Sub,
        Op::Mul => BinaryOp::Mul,
        Op::Div => BinaryOp::Div,
        Op::Pow => BinaryOp::Pow,
        Op::Mod { fmod } => BinaryOp::Mod { fmod: *fmod },
        _ => return None,
    })
}

fn kernel_err(g: &ExecutionGraph, node: &str, e: KernelError) -> ExecError {
    ExecError::InvalidNode {
        model: g.name().to_owned(),
        node: node.to_owned(),
        reason: e.to_string(),
    }
}

impl KernelPlan {
    /// Per step (position in `g`'s topological order): the step whose kernel does its work,
    /// for [`crate::tracker::assign_streams_fused`].
    pub(crate) fn runs_with_steps(&self, g: &ExecutionGraph) -> Vec<Option<usize>> {
        let order = g.topological_order();
        let mut pos = vec![0usize; order.len()];
        for (p, id) in order.iter().enumerate() {
            pos[id.index()] = p;
        }
        order
            .iter()
            .map(|id| self.runs_with[id.index()].map(|h| pos[h.index()]))
            .collect()
    }
}

/// Decides every node's kernel. Pure: used both for the memory estimate and to prepare.
pub(crate) fn plan_kernels(g: &ExecutionGraph, threads: usize) -> Result<KernelPlan, ExecError> {
    let n = g.operators().len();
    let mut kernels: Vec<Option<KernelSpec>> = vec![Some(KernelSpec::Generic); n];
    let mut runs_with: Vec<Option<NodeId>> = vec![None; n];
    let mut weight: Vec<bool> = vec![false; g.tensors().len()];
    let mut prepared_bytes = 0u64;
    let mut scratch = 0usize;
    let order = g.topological_order();
    let mut pos = vec![0usize; n];
    for (p, id) in order.iter().enumerate() {
        pos[id.index()] = p;
    }
    for (p, id) in order.iter().enumerate() {
        let node = g.node(*id);
        if kernels[id.index()].is_none() {
            continue; // fused into its producer
        }
        if let Op::Conv {
            kernel_shape,
            strides,
            pads,
            dilations,
            group,
        } = &node.op
        {
            let w_id = node.inputs.get(1).copied();
            let w = w_id
                .and_then(|t| g.constant_data(t))
                .and_then(|d| d.as_f32());
            let (Some(w_id), Some(w)) = (w_id, w) else {
                return Err(ExecError::InvalidNode {
                    model: g.name().to_owned(),
                    node: node.name.clone(),
                    reason: "Conv weights must be a float constant".into(),
                });
            };
            let bias = match node.inputs.get(2) {
                Some(&b) => Some(g.constant_data(b).and_then(|d| d.as_f32()).ok_or_else(|| {
                    ExecError::InvalidNode {
                        model: g.name().to_owned(),
                        node: node.name.clone(),
                        reason: "Conv bias must be a float constant".into(),
                    }
                })?),
                None => None,
            };
            let nsp = kernel_shape.len();
            let attrs = ConvAttrs {
                kernel: kernel_shape.clone(),
                strides: strides.clone(),
                dilations: dilations.clone(),
                pads_begin: pads[..nsp].to_vec(),
                pads_end: pads[nsp..].to_vec(),
                group: *group,
            };
            // The graph keeps its constants for its lifetime: share the filter, don't copy it.
            let mut conv = match g.constant_arc(w_id) {
                Some(data) => PreparedConv::new_shared(
                    Arc::new(F32Const(data)),
                    &g.tensor(w_id).shape,
                    bias,
                    attrs,
                ),
                None => PreparedConv::new(w, &g.tensor(w_id).shape, bias, attrs),
            }
            .map_err(|e| kernel_err(g, &node.name, e))?;
            let mut output = node.outputs[0];
            let mut join = None;
            if let Some((next, act, fused_out)) = fusable_activation(g, node, p, &pos) {
                conv = conv.with_activation(act);
                output = fused_out;
                kernels[next.index()] = None;
                runs_with[next.index()] = Some(*id);
            } else if let Some(([sig, mul], y)) =
                fusable_silu(g, node.outputs[0], node.inputs[0], p, order)
            {
                conv = conv.with_activation(UnaryOp::Silu);
                output = y;
                for next in [sig, mul] {
                    kernels[next.index()] = None;
                    runs_with[next.index()] = Some(*id);
                }
            } else {
                join = fusable_residual(g, node, p, &pos);
            }
            let x_shape = &g.tensor(node.inputs[0]).shape;
            let mut conv = conv
                .prepare_input(x_shape)
                .map_err(|e| kernel_err(g, &node.name, e))?;
            let mut residual = None;
            if let Some(j) = join {
                if conv
                    .supports_residual(x_shape)
                    .map_err(|e| kernel_err(g, &node.name, e))?
                {
                    for fused in std::iter::once(j.add).chain(j.relu) {
                        kernels[fused.index()] = None;
                        runs_with[fused.index()] = Some(*id);
                    }
                    if j.relu.is_some() {
                        conv = conv.with_activation(UnaryOp::Relu);
                    }
                    output = j.output;
                    residual = Some(j.skip);
                }
            }
            scratch = scratch.max(
                conv.scratch_len(x_shape, threads)
                    .map_err(|e| kernel_err(g, &node.name, e))?,
            );
            prepared_bytes +=
                (w.len() + bias.map_or(0, <[f32]>::len) + conv.packed_len()) as u64 * 4;
            kernels[id.index()] = Some(KernelSpec::Conv {
                conv: Arc::new(conv),
                output,
                residual,
            });
            continue;
        }
        if let Some(pm) =
            packed_matmul(g, node, p, &pos, order).map_err(|e| kernel_err(g, &node.name, e))?
        {
            for fused in &pm.fused {
                kernels[fused.index()] = None;
                runs_with[fused.index()] = Some(*id);
            }
            // The packed copy, and the constants it came from (the graph keeps them), as a
            // prepared conv counts its filter.
            prepared_bytes += pm.b.bytes() as u64 + pm.source_bytes;
            kernels[id.index()] = Some(KernelSpec::MatMulPacked {
                b: Arc::new(pm.b),
                b_shape: pm.b_shape,
                act: pm.act,
                output: pm.output,
            });
            // No kernel reads the constants themselves: they are not weights to upload.
            continue;
        }
        if let Some(rows) = packed_filter(g, node)? {
            prepared_bytes += rows.bytes() as u64;
            kernels[id.index()] = Some(KernelSpec::Packed {
                rows: Arc::new(rows),
            });
        }
        // Gelu as five nodes (erf form) or eight (tanh form): one pass instead.
        let gelu = node
            .inputs
            .iter()
            .filter(|&&t| g.constant_data(t).is_none())
            .find_map(|&x| {
                let five = gelu_ops_at(g, x, p, order).map(|(c, a, y)| (c.to_vec(), a, y));
                Some((x, five.or_else(|| gelu_tanh_ops_at(g, x, p, order))?))
            });
        if let Some((x, (chain, act, y))) = gelu {
            {
                if apart_or_exact(g, y, x) && g.tensor(x).dtype == DType::F32 {
                    kernels[id.index()] = Some(KernelSpec::Map {
                        input: x,
                        act,
                        output: y,
                    });
                    for next in chain.iter().filter(|&&n| n != *id) {
                        kernels[next.index()] = None;
                        runs_with[next.index()] = Some(*id);
                    }
                    continue;
                }
            }
        }
        // SiLU as Sigmoid and Mul (a conv before them takes the pair when it can).
        if let Some((x, ([_, mul], y))) = node
            .inputs
            .first()
            .and_then(|&x| Some((x, silu_at(g, x, p, order)?)))
        {
            if apart_or_exact(g, y, x) && g.tensor(x).dtype == DType::F32 {
                kernels[id.index()] = Some(KernelSpec::Map {
                    input: x,
                    act: UnaryOp::Silu,
                    output: y,
                });
                kernels[mul.index()] = None;
                runs_with[mul.index()] = Some(*id);
                continue;
            }
        }
        if matches!(node.op, Op::Add) {
            // Hard-swish as four nodes: one pass instead of four (in place when the plan puts
            // the output exactly on the input).
            let x = node
                .inputs
                .iter()
                .copied()
                .find(|&t| g.constant_data(t).is_none());
            let chain = x.and_then(|x| Some((x, hard_swish_ops_at(g, x, p, order)?)));
            if let Some((x, (chain, y))) = chain {
                if apart_or_exact(g, y, x) && g.tensor(x).dtype == DType::F32 {
                    kernels[id.index()] = Some(KernelSpec::Map {
                        input: x,
                        act: UnaryOp::HardSwishOps,
                        output: y,
                    });
                    for next in &chain[1..] {
                        kernels[next.index()] = None;
                        runs_with[next.index()] = Some(*id);
                    }
                    continue;
                }
            }
        }
        if let Some(output) = fusable_add_relu(g, node, p, &pos) {
            if let Some(next) = g.consumers(node.outputs[0]).first() {
                kernels[next.index()] = None;
                runs_with[next.index()] = Some(*id);
            }
            kernels[id.index()] = Some(KernelSpec::AddRelu { output });
        }
        if let Op::BatchNormalization { epsilon } = &node.op {
            let params: Option<Vec<&[f32]>> = node
                .inputs
                .get(1..5)
                .into_iter()
                .flatten()
                .map(|&t| g.constant_data(t).and_then(|d| d.as_f32()))
                .collect();
            if let Some([scale, bias, mean, var]) = params.as_deref() {
                let (a, b) = k::batch_norm_coefficients(scale, bias, mean, var, *epsilon)
                    .map_err(|e| kernel_err(g, &node.name, e))?;
                let (mut act, mut output) = (None, node.outputs[0]);
                if let Some((next, u, fused_out)) = fusable_activation(g, node, p, &pos) {
                    act = Some(u);
                    output = fused_out;
                    kernels[next.index()] = None;
                    runs_with[next.index()] = Some(*id);
                }
                prepared_bytes += (a.len() + b.len()) as u64 * 4;
                kernels[id.index()] = Some(KernelSpec::Affine {
                    a: a.into(),
                    b: b.into(),
                    act,
                    output,
                });
                continue;
            }
        }
        for &t in &node.inputs {
            if g.tensor(t).kind == TensorKind::Constant {
                weight[t.index()] = true;
            }
        }
    }
    let weight_tensors = (0..weight.len())
        .filter(|&i| weight[i])
        .map(|i| TensorId(i as u32))
        .collect();
    Ok(KernelPlan {
        kernels,
        runs_with,
        weight_tensors,
        prepared_bytes,
        scratch_elems: scratch,
    })
}

/// A `MatMul` / `Gemm` run on a right-hand matrix packed at load ([`packed_matmul`]).
struct PackedMatMul {
    b: k::PackedB,
    b_shape: Vec<usize>,
    act: Option<UnaryOp>,
    /// Where the kernel writes: the node's output, or that of the last node fused.
    output: TensorId,
    /// The nodes fused in (a bias Add, an activation).
    fused: Vec<NodeId>,
    /// Bytes of the graph constants packed (`B` and the bias's source).
    source_bytes: u64,
}

/// Rows of `A` below which the packed kernel is not used (its steps are 8 rows; a single
/// row is a matrix-vector product, which the host GEMM's dot-product path streams).
const PACKED_MIN_ROWS: usize = 8;

/// An f32 `MatMul` with a constant 2-D `B`, or a `Gemm` with a constant `B`, no `transA`,
/// `alpha = 1` and `C` absent or a constant row (`[N]`, `[1, N]` or a scalar), as a
/// [`k::PackedB`]: at least `PACKED_MIN_ROWS` rows, and `N` whole blocks of 32 columns or
/// wide enough that the last block's padding is under 1/16 of the work. A `MatMul`'s bias
/// `Add` right after it (the other operand a constant row of `N`), and an activation after
/// that (or after the `Gemm`; SiLU as Sigmoid and Mul too), fuse when the written tensor does
/// not overlap `A`.
fn packed_matmul(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
    order: &[NodeId],
) -> Result<Option<PackedMatMul>, k::KernelError> {
    let (trans_b, beta, c) = match &node.op {
        Op::MatMul if node.inputs.len() == 2 => (false, 1.0, None),
        Op::Gemm {
            alpha,
            beta,
            trans_a: false,
            trans_b,
        } if *alpha == 1.0 => (*trans_b, *beta, node.inputs.get(2).copied()),
        _ => return Ok(None),
    };
    let (a, b_id, y) = (node.inputs[0], node.inputs[1], node.outputs[0]);
    let Some(b) = g.constant_data(b_id).and_then(|d| d.as_f32()) else {
        return Ok(None);
    };
    let (a_shape, b_shape) = (&g.tensor(a).shape, &g.tensor(b_id).shape);
    let f32s = [a, y].iter().all(|&t| g.tensor(t).dtype == DType::F32);
    let (&[br, bc], [batch @ .., am, ak]) = (b_shape.as_slice(), a_shape.as_slice()) else {
        return Ok(None);
    };
    let (k, n) = if trans_b { (bc, br) } else { (br, bc) };
    let m = batch.iter().product::<usize>() * am;
    let padding = n.next_multiple_of(32) - n;
    let gemm_rank_ok = matches!(node.op, Op::MatMul) || batch.is_empty();
    if !f32s || *ak != k || m < PACKED_MIN_ROWS || n == 0 || padding * 16 > n || !gemm_rank_ok {
        return Ok(None);
    }
    let mut source_bytes = g.tensor(b_id).byte_size;
    let row_of = |t: TensorId| -> Option<Vec<f32>> {
        let v = g.constant_data(t)?.as_f32()?;
        let shape = &g.tensor(t).shape;
        let row = shape.last().is_none_or(|&d| d == n || d == 1)
            && shape.iter().rev().skip(1).all(|&d| d == 1);
        match (row, v.len()) {
            (true, len) if len == n => Some(v.to_vec()),
            (true, 1) => Some(vec![v[0]; n]),
            _ => None,
        }
    };
    let mut bias = None;
    let mut fused = Vec::new();
    let (mut output, mut last, mut at) = (y, node, p);
    match c {
        Some(c) => {
            let Some(row) = row_of(c) else {
                return Ok(None);
            };
            // beta * C, rounded as the host GEMM scales its expanded C.
            bias = Some(row.into_iter().map(|v| v * beta).collect::<Vec<_>>());
            source_bytes += g.tensor(c).byte_size;
        }
        None => {
            // MatMul then Add(bias row): the bias joins the kernel when the Add is the
            // MatMul's only reader, right after it, and broadcasts only along rows.
            if let Some((add, an)) = next_only_reader(g, node, p, pos) {
                let other = an.inputs.iter().copied().find(|&t| t != y);
                let row = other.filter(|_| two_input_sum(an)).and_then(row_of);
                let same = an.outputs.len() == 1
                    && g.tensor(an.outputs[0]).shape == g.tensor(y).shape
                    && g.tensor(an.outputs[0]).dtype == DType::F32;
                if let (Some(row), true) = (row, same) {
                    if !planned_overlap(g, an.outputs[0], a) {
                        source_bytes += other.map_or(0, |t| g.tensor(t).byte_size);
                        bias = Some(row);
                        fused.push(add);
                        (output, last, at) = (an.outputs[0], an, p + 1);
                    }
                }
            }
        }
    }
    let mut act = None;
    if let Some((next, nn)) = sole_next_reader(g, last, at, pos) {
        if let Some(u) = unary_of(&nn.op) {
            if !planned_overlap(g, nn.outputs[0], a) && g.tensor(nn.outputs[0]).dtype == DType::F32
            {
                act = Some(u);
                fused.push(next);
                output = nn.outputs[0];
            }
        }
    } else if let Some((pair, y)) = fusable_silu(g, output, a, at, order) {
        // SiLU written out (Llama-style gated feed-forward layers).
        act = Some(UnaryOp::Silu);
        fused.extend(pair);
        output = y;
    }
    let b = k::PackedB::new(b, k, n, trans_b, bias.as_deref())?;
    Ok(Some(PackedMatMul {
        b,
        b_shape: b_shape.clone(),
        act,
        output,
        fused,
        source_bytes,
    }))
}

/// A one-group QLinearConv / ConvInteger's constant filter (with a constant or absent zero
/// point) packed for the integer GEMM, so runs do not repack it; `None` for other nodes.
fn packed_filter(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
) -> Result<Option<k::PackedRows>, ExecError> {
    let (attrs, w_at, zp_at) = match &node.op {
        Op::QLinearConv { attrs } => (attrs, 3, Some(5)),
        Op::ConvInteger {
            attrs,
            x_zero_point,
            w_zero_point,
        } => (
            attrs,
            1,
            w_zero_point.then(|| 2 + usize::from(*x_zero_point)),
        ),
        _ => return Ok(None),
    };
    if attrs.group > 1 {
        return Ok(None);
    }
    let constant = |at: usize| node.inputs.get(at).and_then(|&t| g.constant_data(t));
    let Some(w) = constant(w_at) else {
        return Ok(None);
    };
    let w_shape = &g.tensor(node.inputs[w_at]).shape;
    let zp = match zp_at {
        Some(at) => match constant(at) {
            Some(z) => Some(z),
            None => return Ok(None),
        },
        None => None,
    };
    let packed = match (w, zp) {
        (TensorData::U8(w), Some(TensorData::U8(z))) => k::pack_conv_weights(w, w_shape, z, 1),
        (TensorData::U8(w), None) => k::pack_conv_weights(w, w_shape, &[0], 1),
        (TensorData::I8(w), Some(TensorData::I8(z))) => k::pack_conv_weights(w, w_shape, z, 1),
        (TensorData::I8(w), None) => k::pack_conv_weights(w, w_shape, &[0], 1),
        // Mismatched types: the kernel reports them at run time, as without packing.
        _ => return Ok(None),
    };
    packed.map_err(|e| kernel_err(g, &node.name, e))
}

/// The activation that may run fused at the end of `node`'s kernel: its output's only reader,
/// a one-input activation running right after it (so no other tensor's planned memory is live
/// in between) whose output does not overlap `node`'s input. Returns that node, its op and
/// its output.
fn fusable_activation(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
) -> Option<(NodeId, UnaryOp, TensorId)> {
    let (next, nn) = sole_next_reader(g, node, p, pos)?;
    let fused_out = nn.outputs[0];
    if planned_overlap(g, fused_out, node.inputs[0]) {
        return None;
    }
    Some((next, unary_of(&nn.op)?, fused_out))
}

/// Hard-swish written as four nodes, `y = Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` (PaddleOCR
/// and other exporters), as the steps `p..p + 4` of `order`: `x` is read only by the Add and
/// the Mul, each intermediate only by the next node, and the constants are scalars. Returns
/// the four nodes and `y` (one pass then computes [`UnaryOp::HardSwishOps`] from `x`; run
/// instead as the activation of the conv before it, where the plan allows, it measured slower
/// on PaddleOCR's classifier: kernel sum 0.73-0.96 vs 0.72-0.74 ms).
fn hard_swish_ops_at(
    g: &ExecutionGraph,
    x: TensorId,
    p: usize,
    order: &[NodeId],
) -> Option<([NodeId; 4], TensorId)> {
    let chain: [NodeId; 4] = [
        *order.get(p)?,
        *order.get(p + 1)?,
        *order.get(p + 2)?,
        *order.get(p + 3)?,
    ];
    let [add, clip, mul, div] = chain.map(|id| g.node(id));
    let scalar = |t: TensorId, v: f32| {
        g.constant_data(t)
            .and_then(|d| d.as_f32())
            .is_some_and(|d| d == [v])
    };
    // `a` and the constant `v`, in either order.
    let with_const = |ins: &[TensorId], a: TensorId, v: f32| matches!(ins, [i, k] | [k, i] if *i == a && scalar(*k, v));
    let only_reader = |t: TensorId, r: NodeId| {
        g.consumers(t) == [r] && g.tensor(t).kind == TensorKind::Activation
    };
    let mut readers = g.consumers(x).to_vec();
    readers.sort_unstable();
    let mut want = vec![chain[0], chain[2]];
    want.sort_unstable();
    let f32_out = |n: &crate::graph::OperatorNode| {
        n.outputs.len() == 1 && g.tensor(n.outputs[0]).dtype == DType::F32
    };
    let ok = g.tensor(x).dtype == DType::F32
        && g.tensor(x).shape == g.tensor(div.outputs[0]).shape
        && readers == want
        && chain.iter().map(|&id| g.node(id)).all(f32_out)
        && matches!(add.op, Op::Add)
        && with_const(&add.inputs, x, 3.0)
        && only_reader(add.outputs[0], chain[1])
        && matches!(clip.op, Op::Clip { min, max } if min == 0.0 && max == 6.0)
        && clip.inputs == [add.outputs[0]]
        && only_reader(clip.outputs[0], chain[2])
        && matches!(mul.op, Op::Mul)
        && matches!(mul.inputs[..], [a, b] if (a, b) == (x, clip.outputs[0]) || (b, a) == (x, clip.outputs[0]))
        && only_reader(mul.outputs[0], chain[3])
        && matches!(div.op, Op::Div)
        && matches!(div.inputs[..], [m, k] if m == mul.outputs[0] && scalar(k, 6.0));
    ok.then_some((chain, div.outputs[0]))
}

/// SiLU written as two nodes, `y = Mul(x, Sigmoid(x))` (either operand order; EfficientNet,
/// YOLO), as the steps `p, p + 1` of `order`: the Sigmoid's output is read only by the Mul,
/// all f32. Returns the two nodes and `y` (one pass then computes [`UnaryOp::Silu`] from `x`,
/// with the nodes' bits). `x` may have other readers.
fn silu_at(
    g: &ExecutionGraph,
    x: TensorId,
    p: usize,
    order: &[NodeId],
) -> Option<([NodeId; 2], TensorId)> {
    let chain: [NodeId; 2] = order.get(p..p + 2)?.try_into().ok()?;
    let [sig, mul] = chain.map(|id| g.node(id));
    let s = *sig.outputs.first()?;
    let y = *mul.outputs.first()?;
    let f32s = [x, s, y].iter().all(|&t| g.tensor(t).dtype == DType::F32);
    let ok = f32s
        && matches!(sig.op, Op::Sigmoid)
        && sig.inputs == [x]
        && g.consumers(s) == [chain[1]]
        && g.tensor(s).kind == TensorKind::Activation
        && matches!(mul.op, Op::Mul)
        && (mul.inputs == [x, s] || mul.inputs == [s, x])
        && g.tensor(y).shape == g.tensor(x).shape;
    ok.then_some((chain, y))
}

/// SiLU right after the node at position `p` of the order as its kernel's epilogue: the
/// node's output `x` is read only by the pair [`silu_at`] finds at `p + 1`, and the pair's
/// output does not overlap `input`, which the kernel reads while it writes (nothing else is
/// live in between: the pair reads only `x` and the Sigmoid's output).
fn fusable_silu(
    g: &ExecutionGraph,
    x: TensorId,
    input: TensorId,
    p: usize,
    order: &[NodeId],
) -> Option<([NodeId; 2], TensorId)> {
    if g.tensor(x).kind != TensorKind::Activation {
        return None;
    }
    let (chain, y) = silu_at(g, x, p + 1, order)?;
    let mut readers = g.consumers(x).to_vec();
    readers.sort_unstable();
    let mut want = chain.to_vec();
    want.sort_unstable();
    (readers == want && !planned_overlap(g, y, input)).then_some((chain, y))
}

/// The value of a one-element f32 constant.
fn scalar_f32(g: &ExecutionGraph, t: TensorId) -> Option<f32> {
    g.constant_data(t)
        .and_then(|d| d.as_f32())
        .and_then(|d| (d.len() == 1).then(|| d[0]))
}

/// The other operand of a two-input node, when one is `a`.
fn other_operand(n: &crate::graph::OperatorNode, a: TensorId) -> Option<TensorId> {
    match n.inputs[..] {
        [i, o] if i == a => Some(o),
        [o, i] if i == a => Some(o),
        _ => None,
    }
}

/// Whether `x` and every node of `chain` are f32 with one output of `x`'s shape.
fn f32_chain(g: &ExecutionGraph, x: TensorId, chain: &[NodeId]) -> bool {
    g.tensor(x).dtype == DType::F32
        && chain.iter().all(|&id| {
            let n = g.node(id);
            n.outputs.len() == 1
                && g.tensor(n.outputs[0]).dtype == DType::F32
                && g.tensor(n.outputs[0]).shape == g.tensor(x).shape
        })
}

/// Gelu written as five nodes (below opset 20), as the steps `p..p + 5` of `order`, reading
/// `x`: `Div(x, k)` (or `Mul(x, k)`), `Erf`, `Add(·, 1)`, then `Mul(Mul(x, ·), 0.5)` (torch's
/// `nn.GELU`) or `Mul(Mul(x, 0.5), ·)` (`0.5 * x * (1 + erf(...))`, the Mul by 0.5 anywhere in
/// the five). `x` is read only inside the chain, each intermediate only by the next node, the
/// constants are scalars. Returns the nodes, the one-pass operator (same bits as the nodes)
/// and the chain's output.
fn gelu_ops_at(
    g: &ExecutionGraph,
    x: TensorId,
    p: usize,
    order: &[NodeId],
) -> Option<([NodeId; 5], UnaryOp, TensorId)> {
    let chain: [NodeId; 5] = order.get(p..p + 5)?.try_into().ok()?;
    let nodes = chain.map(|id| g.node(id));
    let scalar = |t: TensorId| scalar_f32(g, t);
    let other = other_operand;
    let in_chain = |id: NodeId| chain.contains(&id);
    let only_reader = |t: TensorId| -> Option<NodeId> {
        match g.consumers(t) {
            [r] if in_chain(*r) && g.tensor(t).kind == TensorKind::Activation => Some(*r),
            _ => None,
        }
    };
    if !f32_chain(g, x, &chain) {
        return None;
    }
    let erf = nodes.iter().position(|n| matches!(n.op, Op::Erf))?;
    let scaled = nodes[erf].inputs[0];
    let di = nodes.iter().position(|n| n.outputs[0] == scaled)?;
    let divide = matches!(nodes[di].op, Op::Div);
    let k = match nodes[di].inputs[..] {
        [a, c] if a == x && (divide || matches!(nodes[di].op, Op::Mul)) => scalar(c)?,
        [c, a] if a == x && matches!(nodes[di].op, Op::Mul) => scalar(c)?,
        _ => return None,
    };
    only_reader(scaled).filter(|&r| r == chain[erf])?;
    let add = only_reader(nodes[erf].outputs[0])?;
    let add_n = g.node(add);
    let e1 = add_n.outputs[0];
    if !matches!(add_n.op, Op::Add)
        || other(add_n, nodes[erf].outputs[0]).and_then(scalar) != Some(1.0)
    {
        return None;
    }
    let prod = only_reader(e1)?;
    let prod_n = g.node(prod);
    if !matches!(prod_n.op, Op::Mul) {
        return None;
    }
    let with = other(prod_n, e1)?;
    let is_half_of_x = |t: TensorId| {
        nodes.iter().any(|n| {
            n.outputs[0] == t
                && matches!(n.op, Op::Mul)
                && other(n, x).and_then(scalar) == Some(0.5)
        })
    };
    // The fifth node (the last Mul, or the Mul by 0.5 before the product), the output, and
    // the node besides the Div that reads `x`.
    let (half_first, fifth, y, x_reader) = if with == x {
        // (x * (e + 1)) * 0.5
        let last = only_reader(prod_n.outputs[0])?;
        let ln = g.node(last);
        let ok =
            matches!(ln.op, Op::Mul) && other(ln, prod_n.outputs[0]).and_then(scalar) == Some(0.5);
        ok.then_some((false, last, ln.outputs[0], prod))?
    } else if is_half_of_x(with) {
        // (x * 0.5) * (e + 1)
        let half = g.producer(with)?;
        only_reader(with).filter(|&r| r == prod)?;
        (true, half, prod_n.outputs[0], half)
    } else {
        return None;
    };
    // The five nodes are exactly the chain, and `x` has no reader outside it.
    let mut used = [chain[di], chain[erf], add, prod, fifth];
    used.sort_unstable();
    let mut all = chain;
    all.sort_unstable();
    let mut xr = g.consumers(x).to_vec();
    xr.sort_unstable();
    let mut want = [chain[di], x_reader];
    want.sort_unstable();
    (used == all && xr == want).then_some((
        chain,
        UnaryOp::GeluOps {
            k,
            divide,
            half_first,
        },
        y,
    ))
}

/// Gelu's tanh form written as eight nodes (below opset 20), as the steps `p..p + 8` of
/// `order`, reading `x`: `Pow(x, 3)`, `Mul(·, c1)`, `Add(x, ·)`, `Mul(·, c2)`, `Tanh`,
/// `Add(·, 1)`, then `Mul(Mul(x, 0.5), ·)` (GPT-2's `gelu_new`) or `Mul(Mul(x, ·), 0.5)`. `x`
/// is read only inside the chain, each intermediate only by the next node, the constants
/// are scalars. Returns the nodes, the one-pass operator (same bits) and the output.
fn gelu_tanh_ops_at(
    g: &ExecutionGraph,
    x: TensorId,
    p: usize,
    order: &[NodeId],
) -> Option<(Vec<NodeId>, UnaryOp, TensorId)> {
    let chain: [NodeId; 8] = order.get(p..p + 8)?.try_into().ok()?;
    if !f32_chain(g, x, &chain) {
        return None;
    }
    let scalar = |t: TensorId| scalar_f32(g, t);
    let other = other_operand;
    let in_chain = |id: NodeId| chain.contains(&id);
    // The only reader of `t`, inside the chain, running `op`; with the node.
    let next =
        |t: TensorId, is: fn(&Op) -> bool| -> Option<(NodeId, &crate::graph::OperatorNode)> {
            match g.consumers(t) {
                [r] if in_chain(*r) && g.tensor(t).kind == TensorKind::Activation => {
                    let n = g.node(*r);
                    is(&n.op).then_some((*r, n))
                }
                _ => None,
            }
        };
    let is_mul: fn(&Op) -> bool = |op| matches!(op, Op::Mul);
    let is_add: fn(&Op) -> bool = |op| matches!(op, Op::Add);
    let pow = *chain.iter().find(|&&id| {
        let n = g.node(id);
        matches!(n.op, Op::Pow) && n.inputs.len() == 2 && n.inputs[0] == x
    })?;
    if scalar(g.node(pow).inputs[1]) != Some(3.0) {
        return None;
    }
    let (m1, m1n) = next(g.node(pow).outputs[0], is_mul)?;
    let c1 = scalar(other(m1n, g.node(pow).outputs[0])?)?;
    let (add, addn) = next(m1n.outputs[0], is_add)?;
    if other(addn, m1n.outputs[0])? != x {
        return None;
    }
    let (m2, m2n) = next(addn.outputs[0], is_mul)?;
    let c2 = scalar(other(m2n, addn.outputs[0])?)?;
    let (tanh, tanhn) = next(m2n.outputs[0], |op| matches!(op, Op::Tanh))?;
    let (one, onen) = next(tanhn.outputs[0], is_add)?;
    if other(onen, tanhn.outputs[0]).and_then(scalar) != Some(1.0) {
        return None;
    }
    let (prod, prodn) = next(onen.outputs[0], is_mul)?;
    let with = other(prodn, onen.outputs[0])?;
    let (half_first, eighth, y) = if with == x {
        // (x * (t + 1)) * 0.5
        let (last, lastn) = next(prodn.outputs[0], is_mul)?;
        (other(lastn, prodn.outputs[0]).and_then(scalar) == Some(0.5)).then_some((
            false,
            last,
            lastn.outputs[0],
        ))?
    } else {
        // (x * 0.5) * (t + 1)
        let half = g.producer(with)?;
        let hn = g.node(half);
        let ok = matches!(hn.op, Op::Mul)
            && other(hn, x).and_then(scalar) == Some(0.5)
            && next(with, is_mul).map(|(r, _)| r) == Some(prod);
        ok.then_some((true, half, prodn.outputs[0]))?
    };
    let mut used = [pow, m1, add, m2, tanh, one, prod, eighth];
    used.sort_unstable();
    let mut all = chain;
    all.sort_unstable();
    let x_last = if half_first { eighth } else { prod };
    let mut xr = g.consumers(x).to_vec();
    xr.sort_unstable();
    let mut want = [pow, add, x_last];
    want.sort_unstable();
    (used == all && xr == want).then_some((
        chain.to_vec(),
        UnaryOp::GeluTanhOps { c1, c2, half_first },
        y,
    ))
}

/// The node that may fuse into `node` (at position `p` of the order): the only reader of its
/// activation output, with one input, running right after it (so no other tensor's planned
/// memory is live in between).
fn sole_next_reader<'g>(
    g: &'g ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
) -> Option<(NodeId, &'g crate::graph::OperatorNode)> {
    next_only_reader(g, node, p, pos).filter(|(_, nn)| nn.inputs.len() == 1)
}

/// The only reader of `node`'s (activation) output, when it runs right after `node` (at
/// position `p` of the order), whatever its other inputs.
fn next_only_reader<'g>(
    g: &'g ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
) -> Option<(NodeId, &'g crate::graph::OperatorNode)> {
    let output = node.outputs[0];
    let consumers = g.consumers(output);
    if consumers.len() != 1 || g.tensor(output).kind != TensorKind::Activation {
        return None;
    }
    let next = consumers[0];
    (pos[next.index()] == p + 1).then(|| (next, g.node(next)))
}

/// A residual join a conv may run in its epilogue ([`fusable_residual`]).
struct ResidualJoin {
    /// The Add (or two-input Sum) reading the conv's output.
    add: NodeId,
    /// The Add's other input.
    skip: TensorId,
    /// The Relu after the Add, when it fuses too.
    relu: Option<NodeId>,
    /// Where the fused kernel writes: the Relu's output, else the Add's.
    output: TensorId,
}

/// `Relu(Add(Conv(x), skip))` (ResNet's joins; the Relu optional) as the conv's epilogue: the
/// conv's output is read only by a two-input f32 Add or Sum right after it, whose other input
/// has the output's shape (no broadcast); a Relu right after that, the Add's only reader,
/// fuses as well. The written tensor must not overlap `x` (read while it is written) and must
/// be apart from `skip` or exactly on it (read element by element before each write).
fn fusable_residual(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
) -> Option<ResidualJoin> {
    let y = node.outputs[0];
    let (add, an) = next_only_reader(g, node, p, pos)?;
    if !two_input_sum(an) || an.outputs.len() != 1 {
        return None;
    }
    let skip = if an.inputs[0] == y {
        an.inputs[1]
    } else {
        an.inputs[0]
    };
    let f32s = [y, skip, an.outputs[0]]
        .iter()
        .all(|&t| g.tensor(t).dtype == DType::F32);
    if skip == y || !f32s || g.tensor(skip).shape != g.tensor(y).shape {
        return None;
    }
    let relu = sole_next_reader(g, an, p + 1, pos).filter(|(_, nn)| matches!(nn.op, Op::Relu));
    let output = relu.map_or(an.outputs[0], |(_, nn)| nn.outputs[0]);
    if planned_overlap(g, output, node.inputs[0]) || !apart_or_exact(g, output, skip) {
        return None;
    }
    Some(ResidualJoin {
        add,
        skip,
        relu: relu.map(|(id, _)| id),
        output,
    })
}

/// An `Add`, or a `Sum` of two inputs: the joins the fusions take.
fn two_input_sum(node: &crate::graph::OperatorNode) -> bool {
    matches!(node.op, Op::Add | Op::Sum) && node.inputs.len() == 2
}

/// The Relu output a two-input f32 `Add`/`Sum` may write with the Relu fused: the sum's only
/// reader, right after it, and planned either apart from each input or exactly on it (the
/// in-place case, which the kernel handles like an unfused in-place Add).
fn fusable_add_relu(
    g: &ExecutionGraph,
    node: &crate::graph::OperatorNode,
    p: usize,
    pos: &[usize],
) -> Option<TensorId> {
    if !two_input_sum(node) {
        return None;
    }
    if node
        .inputs
        .iter()
        .chain(&node.outputs)
        .any(|&t| g.tensor(t).dtype != DType::F32)
    {
        return None;
    }
    let (_, nn) = sole_next_reader(g, node, p, pos)?;
    if !matches!(nn.op, Op::Relu) {
        return None;
    }
    let fused_out = nn.outputs[0];
    node.inputs
        .iter()
        .all(|&i| apart_or_exact(g, fused_out, i))
        .then_some(fused_out)
}

/// Whether `out`'s planned memory is apart from `input`'s or exactly on it (an elementwise
/// kernel may then write `out` while reading `input`).
fn apart_or_exact(g: &ExecutionGraph, out: TensorId, input: TensorId) -> bool {
    let plan = g.plan();
    let range = |t: TensorId| {
        let off = plan.offset_of(t.index())?;
        Some((off, plan.lifetime_of(t.index())?.size_bytes))
    };
    !planned_overlap(g, out, input) || (range(input).is_some() && range(input) == range(out))
}

/// A float graph constant as a conv filter (`as_f32` was checked when planning; another type
/// reads as empty, which the conv's length check rejects).
struct F32Const(Arc<TensorData>);

impl AsRef<[f32]> for F32Const {
    fn as_ref(&self) -> &[f32] {
        self.0.as_f32().unwrap_or(&[])
    }
}

/// True when two tensors' planned arena ranges share a byte (a fused kernel cannot read one
/// while writing the other).
fn planned_overlap(g: &ExecutionGraph, a: TensorId, b: TensorId) -> bool {
    let plan = g.plan();
    let range = |t: TensorId| {
        let off = plan.offset_of(t.index())?;
        Some((off, off + plan.lifetime_of(t.index())?.size_bytes))
    };
    match (range(a), range(b)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 < b1 && b0 < a1,
        _ => false,
    }
}

/// Where a kernel argument's bytes live.
#[derive(Debug, Clone)]
pub(crate) enum Mem {
    /// Planned memory (the arena or the weights buffer).
    Slice(DeviceSlice),
    /// A graph constant read in place: on the host device the graph's own copy is already
    /// host memory, so uploading it would only hold the weights twice.
    Const(Arc<TensorData>),
}

/// A tensor as a kernel sees it.
#[derive(Debug, Clone)]
struct Arg {
    mem: Mem,
    shape: Vec<usize>,
    dtype: DType,
}

/// An input's bytes during one run: a guarded view of planned memory, or a constant.
enum View<'a> {
    Read(HostRead<'a>),
    Const(&'a [u8]),
}

impl std::ops::Deref for View<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            View::Read(r) => r,
            View::Const(c) => c,
        }
    }
}

/// One node bound to its memory; `run` executes it on a stream worker.
#[derive(Debug)]
pub(crate) struct NodeKernel {
    label: &'static str,
    node_name: String,
    op: Op,
    spec: KernelSpec,
    ins: Vec<Arg>,
    outs: Vec<Arg>,
    /// Input that shares its planned memory with output 0 (in-place elementwise op).
    alias: Option<usize>,
    /// Concat whose plan stored some inputs at their place in the output: per input, its
    /// byte offset in the output and whether it is already there (empty otherwise).
    placed: Vec<(usize, bool)>,
    scratch: Option<DeviceSlice>,
    threads: usize,
    stream: u64,
}

type Res<T> = Result<T, CudaError>;

fn cast_err(label: &str, what: &str) -> CudaError {
    CudaError::invalid(
        "kernel view",
        format!("{label}: {what} is not aligned for its element type"),
    )
}

/// `name(label, bytes)` / `name_mut(label, bytes)`: the bytes as a typed slice, or an error
/// naming the kernel when they are misaligned.
macro_rules! views {
    ($($t:ty: $name:ident, $name_mut:ident, $what:literal;)*) => {$(
        fn $name<'a>(label: &str, b: &'a [u8]) -> Res<&'a [$t]> {
            bytemuck::try_cast_slice(b).map_err(|_| cast_err(label, $what))
        }
        fn $name_mut<'a>(label: &str, b: &'a mut [u8]) -> Res<&'a mut [$t]> {
            bytemuck::try_cast_slice_mut(b).map_err(|_| cast_err(label, $what))
        }
    )*};
}
views! {
    f32: f32s, f32s_mut, "f32 view";
    i64: i64s, i64s_mut, "i64 view";
    f64: f64s, f64s_mut, "f64 view";
    i16: i16s, i16s_mut, "i16 view";
    u16: u16s, u16s_mut, "u16 view";
    u32: u32s, u32s_mut, "u32 view";
    u64: u64s, u64s_mut, "u64 view";
    i32: i32s, i32s_mut, "i32 view";
    half::f16: f16s, f16s_mut, "f16 view";
    half::bf16: bf16s, bf16s_mut, "bf16 view";
}
fn i8s<'a>(_label: &str, b: &'a [u8]) -> Res<&'a [i8]> {
    Ok(bytemuck::cast_slice(b))
}
fn i8s_mut<'a>(_label: &str, b: &'a mut [u8]) -> Res<&'a mut [i8]> {
    Ok(bytemuck::cast_slice_mut(b))
}
/// Bool and u8 are one byte per element: their view is the bytes themselves (the same shape as the
/// typed views so that `by_dtype!` can pick any of them).
fn bytes<'a>(_label: &str, b: &'a [u8]) -> Res<&'a [u8]> {
    Ok(b)
}
fn bytes_mut<'a>(_label: &str, b: &'a mut [u8]) -> Res<&'a mut [u8]> {
    Ok(b)
}

/// ONNX's elementwise functions in f64 (IsNaN, whose output is bool, is dispatched apart).
fn math_f64(f: MathFn) -> fn(f64) -> f64 {
    match f {
        MathFn::Neg => |x| -x,
        MathFn::Abs => f64::abs,
        // 0 for 0 (and -0), NaN for NaN, as numpy's sign.
        MathFn::Sign => |x| {
            if x == 0.0 || x.is_nan() {
                x
            } else {
                x.signum()
            }
        },
        MathFn::Exp => f64::exp,
        MathFn::Log => f64::ln,
        MathFn::Reciprocal => f64::recip,
        MathFn::Floor => f64::floor,
        MathFn::Ceil => f64::ceil,
        // Halves to even, as ONNX Round specifies.
        MathFn::Round => f64::round_ties_even,
        MathFn::Sin => f64::sin,
        MathFn::Cos => f64::cos,
        MathFn::Tan => f64::tan,
        MathFn::Asin => f64::asin,
        MathFn::Acos => f64::acos,
        MathFn::Atan => f64::atan,
        MathFn::Sinh => f64::sinh,
        MathFn::Cosh => f64::cosh,
        MathFn::Asinh => f64::asinh,
        MathFn::Acosh => f64::acosh,
        MathFn::Atanh => f64::atanh,
        // ln(1 + e^x) without overflow: x + ln(1 + e^-x) for positive x.
        MathFn::Softplus => |x| {
            if x > 0.0 {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            }
        },
        MathFn::Softsign => |x| x / (1.0 + x.abs()),
        MathFn::Mish => |x| {
            let sp = if x > 0.0 {
                x + (-x).exp().ln_1p()
            } else {
                x.exp().ln_1p()
            };
            x * sp.tanh()
        },
        MathFn::IsNaN => |x| if x.is_nan() { 1.0 } else { 0.0 },
    }
}

/// `by_dtype!(dt, |view, view_mut| body)`: `body` once per element type, with `view` and
/// `view_mut` naming that type's view functions (`f32s`/`f32s_mut`, ..., `bytes`/`bytes_mut`
/// for Bool and u8), so an op calling a generic kernel is written once. `view_mut` may be left out.
macro_rules! by_dtype {
    ($dt:expr, |$view:ident $(, $view_mut:ident)?| $body:expr) => {
        match $dt {
            DType::F32 => {
                let $view = f32s;
                $(let $view_mut = f32s_mut;)?
                $body
            }
            DType::I64 => {
                let $view = i64s;
                $(let $view_mut = i64s_mut;)?
                $body
            }
            DType::I32 => {
                let $view = i32s;
                $(let $view_mut = i32s_mut;)?
                $body
            }
            // Narrow types are one byte per element; the loader lets them reach data movement
            // only (Cast and the quantizers have their own arms), so bytes are all they need.
            DType::Bool | DType::U8 | DType::Narrow(_) => {
                let $view = bytes;
                $(let $view_mut = bytes_mut;)?
                $body
            }
            DType::I8 => {
                let $view = i8s;
                $(let $view_mut = i8s_mut;)?
                $body
            }
            DType::F64 => {
                let $view = f64s;
                $(let $view_mut = f64s_mut;)?
                $body
            }
            DType::I16 => {
                let $view = i16s;
                $(let $view_mut = i16s_mut;)?
                $body
            }
            DType::U16 => {
                let $view = u16s;
                $(let $view_mut = u16s_mut;)?
                $body
            }
            DType::U32 => {
                let $view = u32s;
                $(let $view_mut = u32s_mut;)?
                $body
            }
            DType::U64 => {
                let $view = u64s;
                $(let $view_mut = u64s_mut;)?
                $body
            }
            // The loader computes every operator but Cast on 16-bit float tensors in f32.
            DType::F16 | DType::BF16 => {
                return Err(DispatchError::Unsupported(
                    "a 16-bit float tensor outside Cast (the loader casts such operands to f32)"
                        .into(),
                ))
            }
        }
    };
}

/// The one element of a per-tensor parameter.
fn first<T: Copy>(label: &str, v: &[T]) -> Res<T> {
    v.first().copied().ok_or_else(|| {
        CudaError::invalid(
            "kernel view",
            format!("{label}: empty quantization parameter"),
        )
    })
}

/// The scales and output zero point of QLinearMatMul / QLinearConv, which share input
/// positions: 1 (a / x scale), 4 (b / w scale), 6 (y scale), 7 (y zero point, viewed by
/// `view`).
fn requant<'a, Y: Copy>(
    label: &str,
    inb: &impl Fn(usize) -> &'a [u8],
    view: fn(&str, &'a [u8]) -> Res<&'a [Y]>,
) -> Res<k::Requant<'a, Y>> {
    Ok(k::Requant {
        a_scale: f32s(label, inb(1))?,
        b_scale: f32s(label, inb(4))?,
        y_scale: first(label, f32s(label, inb(6))?)?,
        y_zero_point: first(label, view(label, inb(7))?)?,
    })
}

/// `by_q8!(dt, label, |view, view_mut| body)`: `body` for u8 or i8 (the quantized types) with
/// that type's view functions; another element type is a dispatch error.
macro_rules! by_q8 {
    ($dt:expr, $l:expr, |$view:ident, $view_mut:ident| $body:expr) => {
        match $dt {
            DType::U8 => {
                let $view = bytes;
                #[allow(unused_variables)]
                let $view_mut = bytes_mut;
                $body
            }
            DType::I8 => {
                let $view = i8s;
                #[allow(unused_variables)]
                let $view_mut = i8s_mut;
                $body
            }
            other => {
                return Err(DispatchError::Unsupported(format!(
                    "{} on {other} (u8 or i8 expected)",
                    $l
                )))
            }
        }
    };
}

/// Runs `$body` with `$idx` bound to an index input's values as i64 or i32 (Gather and the
/// indexing ops); another element type is a dispatch error.
macro_rules! by_index {
    ($dt:expr, $l:expr, $bytes:expr, |$idx:ident| $body:expr) => {
        match $dt {
            DType::I64 => {
                let $idx = i64s($l, $bytes)?;
                $body
            }
            DType::I32 => {
                let $idx = i32s($l, $bytes)?;
                $body
            }
            other => {
                return Err(DispatchError::Unsupported(format!(
                    "{} indices of {other}",
                    $l
                )))
            }
        }
    };
}

impl NodeKernel {
    pub(crate) fn bind(
        g: &ExecutionGraph,
        id: NodeId,
        spec: KernelSpec,
        slice_of: &dyn Fn(TensorId) -> Result<Mem, ExecError>,
        scratch: Option<DeviceSlice>,
        threads: usize,
        stream: u64,
    ) -> Result<Self, ExecError> {
        let node = g.node(id);
        let arg = |t: TensorId| -> Result<Arg, ExecError> {
            let info = g.tensor(t);
            Ok(Arg {
                mem: slice_of(t)?,
                shape: info.shape.clone(),
                dtype: info.dtype,
            })
        };
        let (ins, outs) = match &spec {
            KernelSpec::Conv {
                output, residual, ..
            } => {
                let mut ins = vec![arg(node.inputs[0])?];
                if let Some(r) = residual {
                    ins.push(arg(*r)?);
                }
                (ins, vec![arg(*output)?])
            }
            KernelSpec::Affine { output, .. } | KernelSpec::MatMulPacked { output, .. } => {
                (vec![arg(node.inputs[0])?], vec![arg(*output)?])
            }
            KernelSpec::Map { input, output, .. } => (vec![arg(*input)?], vec![arg(*output)?]),
            KernelSpec::AddRelu { output } => (
                node.inputs
                    .iter()
                    .map(|&t| arg(t))
                    .collect::<Result<Vec<_>, _>>()?,
                vec![arg(*output)?],
            ),
            KernelSpec::Generic | KernelSpec::Packed { .. } => (
                node.inputs
                    .iter()
                    .map(|&t| arg(t))
                    .collect::<Result<Vec<_>, _>>()?,
                node.outputs
                    .iter()
                    .map(|&t| arg(t))
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let mut alias = None;
        // Concat inputs may sit at their place in the output (see `concat_slots`).
        let slots = matches!(spec, KernelSpec::Generic | KernelSpec::Packed { .. })
            .then(|| node_concat_slots(g, node))
            .flatten();
        let mut placed: Vec<(usize, bool)> = Vec::new();
        let not_planned = |what: &str| ExecError::InvalidNode {
            model: g.name().to_owned(),
            node: node.name.clone(),
            reason: format!("{what} is a constant, not planned memory"),
        };
        for o in &outs {
            if matches!(o.mem, Mem::Const(_)) {
                return Err(not_planned("an output"));
            }
        }
        if let Some(Mem::Slice(o)) = outs.first().map(|o| &o.mem) {
            for (i, a) in ins.iter().enumerate() {
                let Mem::Slice(a_slice) = &a.mem else {
                    continue;
                };
                if a_slice.overlaps(o) {
                    if let Some(slots) = &slots {
                        let (ia, oa) = ((a_slice.offset(), a_slice.len()), (o.offset(), o.len()));
                        if concat_input_in_place(g, node, i, ia, oa) {
                            if placed.is_empty() {
                                placed = slots.iter().map(|&s| (s as usize, false)).collect();
                            }
                            placed[i].1 = true;
                            continue;
                        }
                    }
                    let exact = a_slice.offset() == o.offset() && a_slice.len() == o.len();
                    // A reshape whose output the plan placed on its input has nothing to do.
                    // A conv's fused residual may be the output's own memory (read
                    // element by element before each write).
                    let residual = i == 1
                        && matches!(
                            spec,
                            KernelSpec::Conv {
                                residual: Some(_),
                                ..
                            }
                        );
                    let ok = exact && alias.is_none() && (residual || node.op.in_place_on(a.dtype));
                    if !ok {
                        return Err(ExecError::InvalidNode {
                            model: g.name().to_owned(),
                            node: node.name.clone(),
                            reason: "an input shares planned memory with the output in a way this kernel cannot run in place".into(),
                        });
                    }
                    alias = Some(i);
                }
            }
        }
        Ok(Self {
            label: node.op.onnx_name(),
            node_name: node.name.clone(),
            op: node.op.clone(),
            spec,
            ins,
            outs,
            alias,
            placed,
            scratch,
            threads: threads.max(1),
            stream,
        })
    }

    pub(crate) fn label(&self) -> &'static str {
        self.label
    }

    /// The ONNX node's name (empty when the model gave none).
    pub(crate) fn node_name(&self) -> &str {
        &self.node_name
    }

    /// Shapes of the kernel's inputs in operand order, a prepared conv's filter included
    /// (it is not an argument once prepared).
    pub(crate) fn input_shapes(&self) -> Vec<Vec<usize>> {
        let mut shapes: Vec<Vec<usize>> = self.ins.iter().map(|a| a.shape.clone()).collect();
        if let KernelSpec::Conv { conv, .. } = &self.spec {
            let w = conv.weight_shape();
            if shapes.get(1) != Some(&w) {
                shapes.insert(shapes.len().min(1), w);
            }
        }
        if let KernelSpec::MatMulPacked { b_shape, .. } = &self.spec {
            shapes.insert(shapes.len().min(1), b_shape.clone());
        }
        shapes
    }

    /// Shapes of the kernel's outputs.
    pub(crate) fn output_shapes(&self) -> Vec<Vec<usize>> {
        self.outs.iter().map(|a| a.shape.clone()).collect()
    }

    /// Runs the node. Errors carry the node's name and the kernel's reason.
    pub(crate) fn run(&self) -> Res<()> {
        let l = self.label;
        if self.alias.is_some() && self.op.is_reshape_only() {
            // The output is the input's memory: the bytes are already in place.
            return Ok(());
        }
        if !self.placed.is_empty() {
            return self.concat_rest();
        }
        let reads: Vec<Option<View<'_>>> = self
            .ins
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if Some(i) == self.alias {
                    return Ok(None);
                }
                Ok(Some(match &a.mem {
                    Mem::Slice(s) => View::Read(s.host_read(l)?),
                    Mem::Const(c) => View::Const(c.as_bytes()),
                }))
            })
            .collect::<Res<_>>()?;
        let mut writes: Vec<HostWrite<'_>> = self
            .outs
            .iter()
            .map(|a| match &a.mem {
                Mem::Slice(s) => s.host_write(l),
                // bind() rejects constant outputs; kept as an error, not a panic.
                Mem::Const(_) => Err(CudaError::invalid(
                    "kernel view",
                    format!("{l}: output is a constant"),
                )),
            })
            .collect::<Res<_>>()?;
        let r = self.dispatch(&reads, &mut writes);
        r.map_err(|e| CudaError::WorkFailed {
            label: format!("{} ({})", self.label, self.node_name),
            stream: self.stream,
            category: aegis_cuda::ErrorCategory::Permanent,
            message: e.to_string(),
        })
    }

    /// A Concat whose plan stored some inputs in place: copies the others into their places,
    /// each through a view of its own bytes only (another stream may be reading the parts
    /// already there).
    fn concat_rest(&self) -> Res<()> {
        let l = self.label;
        let Some(Mem::Slice(out)) = self.outs.first().map(|o| &o.mem) else {
            return Err(CudaError::invalid(
                "kernel view",
                format!("{l}: output is a constant"),
            ));
        };
        for (a, &(at, done)) in self.ins.iter().zip(&self.placed) {
            if done {
                continue;
            }
            let src: View<'_> = match &a.mem {
                Mem::Slice(s) => View::Read(s.host_read(l)?),
                Mem::Const(c) => View::Const(c.as_bytes()),
            };
            let place = out.slice(at..at + src.len())?;
            let mut dst = place.host_write(l)?;
            dst.copy_from_slice(&src);
        }
        Ok(())
    }

    /// `Op::Math` functions `unary_of` does not cover: the integer forms of Neg/Abs/Sign,
    /// IsNaN, and the float functions without a SIMD kernel.
    fn math(
        &self,
        f: MathFn,
        reads: &[Option<View<'_>>],
        writes: &mut [HostWrite<'_>],
    ) -> Result<(), DispatchError> {
        let (l, t) = (self.label, self.threads);
        let inplace = self.alias == Some(0);
        let x = reads[0].as_deref().unwrap_or(&[]);
        macro_rules! int_map {
            ($view:ident, $view_mut:ident, $t:ty) => {{
                // Wrapping, as numpy: -MIN and |MIN| stay MIN.
                let g = match f {
                    MathFn::Neg => <$t>::wrapping_neg,
                    MathFn::Abs => <$t>::wrapping_abs,
                    _ => <$t>::signum,
                };
                if inplace {
                    k::map_inplace($view_mut(l, &mut writes[0])?, t, g);
                } else {
                    k::map(l, $view(l, x)?, $view_mut(l, &mut writes[0])?, t, g)?;
                }
            }};
        }
        match (self.ins[0].dtype, f) {
            (DType::F32, MathFn::IsNaN) => k::map(l, f32s(l, x)?, &mut writes[0], t, |v: f32| {
                u8::from(v.is_nan())
            })?,
            (DType::F32, _) => {
                let g = float_fn(&Op::Math { f })
                    .ok_or_else(|| DispatchError::Unsupported(format!("{l} on f32")))?;
                if inplace {
                    k::map_inplace(f32s_mut(l, &mut writes[0])?, t, g);
                } else {
                    k::map(l, f32s(l, x)?, f32s_mut(l, &mut writes[0])?, t, g)?;
                }
            }
            (DType::F64, MathFn::IsNaN) => k::map(l, f64s(l, x)?, &mut writes[0], t, |v: f64| {
                u8::from(v.is_nan())
            })?,
            (DType::F64, _) => {
                let g = math_f64(f);
                if inplace {
                    k::map_inplace(f64s_mut(l, &mut writes[0])?, t, g);
                } else {
                    k::map(l, f64s(l, x)?, f64s_mut(l, &mut writes[0])?, t, g)?;
                }
            }
            (DType::I64, MathFn::Neg | MathFn::Abs | MathFn::Sign) => int_map!(i64s, i64s_mut, i64),
            (DType::I32, MathFn::Neg | MathFn::Abs | MathFn::Sign) => int_map!(i32s, i32s_mut, i32),
            (other, _) => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
        }
        Ok(())
    }

    /// ONNX Clip with its bounds read at run time ([`Op::ClipBounds`]): integer elements, or
    /// float bounds computed by the graph. The loader checked that each bound is one element
    /// of `x`'s type.
    fn clip_bounds(
        &self,
        has_min: bool,
        has_max: bool,
        reads: &[Option<View<'_>>],
        writes: &mut [HostWrite<'_>],
    ) -> Result<(), DispatchError> {
        let (l, t) = (self.label, self.threads);
        let inb = |i: usize| -> &[u8] { reads[i].as_deref().unwrap_or(&[]) };
        let (lo_at, hi_at) = (
            has_min.then_some(1),
            has_max.then_some(1 + usize::from(has_min)),
        );
        if self.ins[0].dtype == DType::F32 {
            let bound = |at: Option<usize>, none: f32| -> Res<f32> {
                Ok(match at {
                    Some(i) => f32s(l, inb(i))?.first().copied().unwrap_or(none),
                    None => none,
                })
            };
            let (min, max) = (
                bound(lo_at, f32::NEG_INFINITY)?,
                bound(hi_at, f32::INFINITY)?,
            );
            let clip = UnaryOp::Clip { min, max };
            k::unary_f32(clip, f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?, t)?;
            return Ok(());
        }
        macro_rules! clamp {
            ($view:ident, $view_mut:ident) => {{
                let lo = match lo_at {
                    Some(i) => $view(l, inb(i))?.first().copied(),
                    None => None,
                };
                let hi = match hi_at {
                    Some(i) => $view(l, inb(i))?.first().copied(),
                    None => None,
                };
                let out = $view_mut(l, &mut writes[0])?;
                for (o, &v) in out.iter_mut().zip($view(l, inb(0))?) {
                    let v = lo.map_or(v, |lo| Ord::max(v, lo));
                    *o = hi.map_or(v, |hi| Ord::min(v, hi));
                }
            }};
        }
        if self.ins[0].dtype == DType::F64 {
            // max then min, as the f32 Clip (a NaN element stays NaN).
            let bound = |at: Option<usize>| -> Res<Option<f64>> {
                Ok(match at {
                    Some(i) => f64s(l, inb(i))?.first().copied(),
                    None => None,
                })
            };
            let (lo, hi) = (bound(lo_at)?, bound(hi_at)?);
            let out = f64s_mut(l, &mut writes[0])?;
            for (o, &v) in out.iter_mut().zip(f64s(l, inb(0))?) {
                let v = lo.map_or(v, |lo| if v < lo { lo } else { v });
                *o = hi.map_or(v, |hi| if v > hi { hi } else { v });
            }
            return Ok(());
        }
        match self.ins[0].dtype {
            DType::I64 => clamp!(i64s, i64s_mut),
            DType::I32 => clamp!(i32s, i32s_mut),
            DType::I8 => clamp!(i8s, i8s_mut),
            DType::U8 => clamp!(bytes, bytes_mut),
            DType::I16 => clamp!(i16s, i16s_mut),
            DType::U16 => clamp!(u16s, u16s_mut),
            DType::U32 => clamp!(u32s, u32s_mut),
            DType::U64 => clamp!(u64s, u64s_mut),
            other => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
        }
        Ok(())
    }

    /// ONNX Max/Min/Mean over one or more broadcast inputs (and Sum on f64 and integers).
    fn variadic(
        &self,
        reads: &[Option<View<'_>>],
        writes: &mut [HostWrite<'_>],
        out_shape: &[usize],
    ) -> Result<(), DispatchError> {
        let (l, t) = (self.label, self.threads);
        let inb = |i: usize| -> &[u8] { reads[i].as_deref().unwrap_or(&[]) };
        let n = self.ins.len();
        let shape = |i: usize| -> &[usize] { &self.ins[i].shape };
        if self.ins[0].dtype == DType::F32 {
            let v = match self.op {
                Op::Max => k::VariadicOp::Max,
                Op::Min => k::VariadicOp::Min,
                _ => k::VariadicOp::Mean,
            };
            let views = (0..n)
                .map(|i| Ok((f32s(l, inb(i))?, shape(i))))
                .collect::<Res<Vec<_>>>()?;
            k::variadic_f32(v, &views, f32s_mut(l, &mut writes[0])?, t)?;
            return Ok(());
        }
        // Max, Min, or (integer `Sum`) a wrapping sum, as numpy's.
        macro_rules! int_fold {
            ($view:ident, $view_mut:ident, $t:ty) => {{
                let out = $view_mut(l, &mut writes[0])?;
                k::expand($view(l, inb(0))?, shape(0), out, out_shape, t)?;
                let f: fn($t, $t) -> $t = match self.op {
                    Op::Max => Ord::max,
                    Op::Min => Ord::min,
                    _ => <$t>::wrapping_add,
                };
                for i in 1..n {
                    k::broadcast_assign(l, out, out_shape, $view(l, inb(i))?, shape(i), t, f)?;
                }
            }};
        }
        if self.ins[0].dtype == DType::F64 {
            // In f64 throughout; a NaN operand gives NaN (as the f32 kernel).
            let out = f64s_mut(l, &mut writes[0])?;
            k::expand(f64s(l, inb(0))?, shape(0), out, out_shape, t)?;
            let f: fn(f64, f64) -> f64 = match self.op {
                Op::Max => |o, y| {
                    if o.is_nan() || y.is_nan() {
                        f64::NAN
                    } else {
                        o.max(y)
                    }
                },
                Op::Min => |o, y| {
                    if o.is_nan() || y.is_nan() {
                        f64::NAN
                    } else {
                        o.min(y)
                    }
                },
                _ => |o, y| o + y,
            };
            for i in 1..n {
                k::broadcast_assign(l, out, out_shape, f64s(l, inb(i))?, shape(i), t, f)?;
            }
            if matches!(self.op, Op::Mean) {
                k::map_inplace(out, t, |v| v / n as f64);
            }
            return Ok(());
        }
        match self.ins[0].dtype {
            DType::I64 => int_fold!(i64s, i64s_mut, i64),
            DType::I32 => int_fold!(i32s, i32s_mut, i32),
            DType::I8 => int_fold!(i8s, i8s_mut, i8),
            DType::U8 => int_fold!(bytes, bytes_mut, u8),
            DType::I16 => int_fold!(i16s, i16s_mut, i16),
            DType::U16 => int_fold!(u16s, u16s_mut, u16),
            DType::U32 => int_fold!(u32s, u32s_mut, u32),
            DType::U64 => int_fold!(u64s, u64s_mut, u64),
            other => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
        }
        Ok(())
    }

    /// The filter packed at load, if this kernel has one.
    fn packed_rows(&self) -> Option<&k::PackedRows> {
        match &self.spec {
            KernelSpec::Packed { rows } => Some(rows),
            _ => None,
        }
    }

    fn dispatch(
        &self,
        reads: &[Option<View<'_>>],
        writes: &mut [HostWrite<'_>],
    ) -> Result<(), DispatchError> {
        let l = self.label;
        let t = self.threads;
        let inb = |i: usize| -> &[u8] { reads[i].as_deref().unwrap_or(&[]) };
        let shape = |i: usize| -> &[usize] { &self.ins[i].shape };
        let dt = |i: usize| self.ins[i].dtype;
        let out_shape = self
            .outs
            .first()
            .map(|o| o.shape.clone())
            .unwrap_or_default();
        if let KernelSpec::Conv { conv, residual, .. } = &self.spec {
            let x = f32s(l, inb(0))?;
            let res = match residual {
                None => None,
                Some(_) if self.alias == Some(1) => Some(k::Residual::InPlace),
                Some(_) => Some(k::Residual::Separate(f32s(l, inb(1))?)),
            };
            let out = f32s_mut(l, &mut writes[0])?;
            let mut sg = match &self.scratch {
                Some(s) => Some(s.host_write(l)?),
                None => None,
            };
            let sc: &mut [f32] = match sg.as_mut() {
                Some(g) => f32s_mut(l, g)?,
                None => &mut [],
            };
            conv.run_with_residual(x, shape(0), res, out, sc, t)?;
            return Ok(());
        }
        if let KernelSpec::AddRelu { .. } = &self.spec {
            // max(x + y, 0): the same two roundings as Add then Relu, in one pass.
            let out = f32s_mut(l, &mut writes[0])?;
            match self.alias {
                // Addition commutes exactly, so the aliased input may be either operand.
                Some(ai) => {
                    let other = 1 - ai;
                    let (y, ys) = (f32s(l, inb(other))?, shape(other));
                    k::broadcast_assign(l, out, &out_shape, y, ys, t, |o: f32, y: f32| {
                        (o + y).max(0.0)
                    })?;
                }
                None => k::broadcast_binary(
                    l,
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    shape(1),
                    out,
                    t,
                    |x: f32, y: f32| (x + y).max(0.0),
                )?,
            }
            return Ok(());
        }
        if let KernelSpec::Map { act, .. } = &self.spec {
            let out = f32s_mut(l, &mut writes[0])?;
            match self.alias {
                Some(_) => k::unary_f32_inplace(*act, out, t)?,
                None => k::unary_f32(*act, f32s(l, inb(0))?, out, t)?,
            }
            return Ok(());
        }
        if let KernelSpec::MatMulPacked { b, act, .. } = &self.spec {
            let a = f32s(l, inb(0))?;
            let s0 = shape(0);
            let m = s0[..s0.len().saturating_sub(1)].iter().product();
            b.run(a, m, f32s_mut(l, &mut writes[0])?, *act, t)?;
            return Ok(());
        }
        if let KernelSpec::Affine { a, b, act, .. } = &self.spec {
            let out = f32s_mut(l, &mut writes[0])?;
            k::channel_affine_act(f32s(l, inb(0))?, shape(0), a, b, *act, out, t)?;
            return Ok(());
        }
        let op = &self.op;
        // The f32 activation kernels; an f64 function goes through `math`.
        if let Some(u) = unary_of(op).filter(|_| dt(0) == DType::F32) {
            if self.alias == Some(0) {
                k::unary_f32_inplace(u, f32s_mut(l, &mut writes[0])?, t)?;
            } else {
                k::unary_f32(u, f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?, t)?;
            }
            return Ok(());
        }
        if matches!(op, Op::Pow) && self.ins.len() == 2 && dt(0) != dt(1) {
            // Opset 12+ Pow may mix types: numpy computes in f64 and casts to the base's type.
            let e: Vec<f64> = match dt(1) {
                DType::F32 => f32s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                DType::I32 => i32s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                DType::I64 => i64s(l, inb(1))?.iter().map(|&v| v as f64).collect(),
                DType::F64 => f64s(l, inb(1))?.to_vec(),
                DType::I16 => i16s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                DType::U16 => u16s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                DType::U32 => u32s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                DType::U64 => u64s(l, inb(1))?.iter().map(|&v| v as f64).collect(),
                DType::U8 => inb(1).iter().map(|&v| f64::from(v)).collect(),
                DType::I8 => i8s(l, inb(1))?.iter().map(|&v| f64::from(v)).collect(),
                other => return Err(DispatchError::Unsupported(format!("{l} exponent {other}"))),
            };
            let es = shape(1);
            match dt(0) {
                DType::F32 => {
                    let base: Vec<f32> = match self.alias {
                        Some(0) => f32s(l, &writes[0])?.to_vec(),
                        _ => f32s(l, inb(0))?.to_vec(),
                    };
                    let out = f32s_mut(l, &mut writes[0])?;
                    k::broadcast_binary(l, &base, shape(0), &e, es, out, t, |x: f32, y| {
                        f64::from(x).powf(y) as f32
                    })?;
                }
                DType::I32 => {
                    let out = i32s_mut(l, &mut writes[0])?;
                    k::broadcast_binary(l, i32s(l, inb(0))?, shape(0), &e, es, out, t, |x, y| {
                        f64::from(x).powf(y) as i32
                    })?;
                }
                DType::I64 => {
                    let out = i64s_mut(l, &mut writes[0])?;
                    k::broadcast_binary(l, i64s(l, inb(0))?, shape(0), &e, es, out, t, |x, y| {
                        (x as f64).powf(y) as i64
                    })?;
                }
                DType::F64 => {
                    let out = f64s_mut(l, &mut writes[0])?;
                    k::broadcast_binary(l, f64s(l, inb(0))?, shape(0), &e, es, out, t, f64::powf)?;
                }
                other => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
            }
            return Ok(());
        }
        if let Some(b) = binary_of(op) {
            // One typed kernel over both operands' views and the output's.
            macro_rules! bin {
                ($kernel:path, $view:ident, $view_mut:ident) => {
                    $kernel(
                        b,
                        $view(l, inb(0))?,
                        shape(0),
                        $view(l, inb(1))?,
                        shape(1),
                        $view_mut(l, &mut writes[0])?,
                        t,
                    )?
                };
            }
            match (self.alias, dt(0)) {
                (Some(ai), DType::F32) => {
                    let other = 1 - ai;
                    let (bs, bsh) = (f32s(l, inb(other))?, shape(other));
                    let out = f32s_mut(l, &mut writes[0])?;
                    k::binary_f32_inplace(b, out, &out_shape, bs, bsh, ai == 1, t)?;
                }
                (_, DType::F32) => bin!(k::binary_f32, f32s, f32s_mut),
                (_, DType::I64) => bin!(k::binary_i64, i64s, i64s_mut),
                (_, DType::I32) => bin!(k::binary_i32, i32s, i32s_mut),
                (_, DType::I8) => bin!(k::binary_i8, i8s, i8s_mut),
                (_, DType::I16) => bin!(k::binary_i16, i16s, i16s_mut),
                (_, DType::U16) => bin!(k::binary_u16, u16s, u16s_mut),
                (_, DType::U32) => bin!(k::binary_u32, u32s, u32s_mut),
                (_, DType::U64) => bin!(k::binary_u64, u64s, u64s_mut),
                (_, DType::F64) => bin!(k::binary_f64, f64s, f64s_mut),
                (_, DType::U8) => bin!(k::binary_u8, bytes, bytes_mut),
                (_, other) => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
            }
            return Ok(());
        }
        match op {
            // f64 and integer sums fold like Max/Min (the f32 kernel is below).
            Op::Sum if dt(0) != DType::F32 => self.variadic(reads, writes, &out_shape)?,
            Op::Sum => {
                if let Some(ai) = self.alias {
                    let out = f32s_mut(l, &mut writes[0])?;
                    for i in (0..self.ins.len()).filter(|&i| i != ai) {
                        k::broadcast_assign(
                            l,
                            out,
                            &out_shape,
                            f32s(l, inb(i))?,
                            shape(i),
                            t,
                            |o, y| o + y,
                        )?;
                    }
                } else {
                    let views = (0..self.ins.len())
                        .map(|i| Ok((f32s(l, inb(i))?, shape(i))))
                        .collect::<Res<Vec<_>>>()?;
                    k::variadic_f32(k::VariadicOp::Sum, &views, f32s_mut(l, &mut writes[0])?, t)?;
                }
            }
            Op::Equal => {
                let out: &mut [u8] = &mut writes[0];
                by_dtype!(dt(0), |view| k::compare(
                    k::CompareOp::Equal,
                    view(l, inb(0))?,
                    shape(0),
                    view(l, inb(1))?,
                    shape(1),
                    out,
                    t,
                )?)
            }
            Op::Where => {
                let c = inb(0);
                by_dtype!(dt(1), |view, view_mut| k::where_select(
                    c,
                    shape(0),
                    view(l, inb(1))?,
                    shape(1),
                    view(l, inb(2))?,
                    shape(2),
                    view_mut(l, &mut writes[0])?,
                    t,
                )?)
            }
            Op::Cast { to, narrow } => {
                let src = match dt(0) {
                    DType::F32 => k::CastSrc::F32(f32s(l, inb(0))?),
                    DType::I64 => k::CastSrc::I64(i64s(l, inb(0))?),
                    DType::I32 => k::CastSrc::I32(i32s(l, inb(0))?),
                    DType::Bool => k::CastSrc::Bool(inb(0)),
                    DType::U8 => k::CastSrc::U8(inb(0)),
                    DType::I8 => k::CastSrc::I8(i8s(l, inb(0))?),
                    DType::F16 => k::CastSrc::F16(f16s(l, inb(0))?),
                    DType::BF16 => k::CastSrc::BF16(bf16s(l, inb(0))?),
                    DType::F64 => k::CastSrc::F64(f64s(l, inb(0))?),
                    DType::I16 => k::CastSrc::I16(i16s(l, inb(0))?),
                    DType::U16 => k::CastSrc::U16(u16s(l, inb(0))?),
                    DType::U32 => k::CastSrc::U32(u32s(l, inb(0))?),
                    DType::U64 => k::CastSrc::U64(u64s(l, inb(0))?),
                    DType::Narrow(n) => k::CastSrc::Narrow(n, inb(0)),
                };
                let w = &mut writes[0];
                let dst = match to {
                    DType::F32 => k::CastDst::F32(f32s_mut(l, w)?),
                    DType::I64 => k::CastDst::I64(i64s_mut(l, w)?),
                    DType::I32 => k::CastDst::I32(i32s_mut(l, w)?),
                    DType::Bool => k::CastDst::Bool(&mut w[..]),
                    DType::U8 => k::CastDst::U8(&mut w[..]),
                    DType::I8 => k::CastDst::I8(i8s_mut(l, w)?),
                    DType::F16 => k::CastDst::F16(f16s_mut(l, w)?),
                    DType::BF16 => k::CastDst::BF16(bf16s_mut(l, w)?),
                    DType::F64 => k::CastDst::F64(f64s_mut(l, w)?),
                    DType::I16 => k::CastDst::I16(i16s_mut(l, w)?),
                    DType::U16 => k::CastDst::U16(u16s_mut(l, w)?),
                    DType::U32 => k::CastDst::U32(u32s_mut(l, w)?),
                    DType::U64 => k::CastDst::U64(u64s_mut(l, w)?),
                    DType::Narrow(n) => k::CastDst::Narrow(*n, *narrow, &mut w[..]),
                };
                k::cast_par(src, dst, t)?;
            }
            Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
                writes[0].copy_from_slice(inb(0));
            }
            Op::Expand { .. } => by_dtype!(dt(0), |view, view_mut| k::expand(
                view(l, inb(0))?,
                shape(0),
                view_mut(l, &mut writes[0])?,
                &out_shape,
                t,
            )?),
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => {
                let attrs = k::GemmAttrs {
                    alpha: *alpha,
                    beta: *beta,
                    trans_a: *trans_a,
                    trans_b: *trans_b,
                };
                let c = if self.ins.len() > 2 {
                    Some((f32s(l, inb(2))?, shape(2)))
                } else {
                    None
                };
                k::gemm(
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    shape(1),
                    c,
                    &attrs,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::MatMul => {
                k::matmul(
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    shape(1),
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::BatchNormalization { epsilon } => {
                let v = |i| f32s(l, inb(i));
                k::batch_norm(
                    v(0)?,
                    shape(0),
                    v(1)?,
                    v(2)?,
                    v(3)?,
                    v(4)?,
                    *epsilon,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::AveragePool {
                kernel_shape,
                strides,
                pads,
                dilations,
                count_include_pad,
                ceil_mode,
            } => {
                let a = pool_attrs(
                    kernel_shape,
                    strides,
                    pads,
                    dilations,
                    *ceil_mode,
                    *count_include_pad,
                );
                k::pool(
                    k::PoolKind::Average,
                    f32s(l, inb(0))?,
                    shape(0),
                    &a,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::MaxPool {
                kernel_shape,
                strides,
                pads,
                dilations,
                ceil_mode,
            } => {
                let a = pool_attrs(kernel_shape, strides, pads, dilations, *ceil_mode, false);
                if dt(0) == DType::F32 {
                    k::pool(
                        k::PoolKind::Max,
                        f32s(l, inb(0))?,
                        shape(0),
                        &a,
                        f32s_mut(l, &mut writes[0])?,
                        t,
                    )?;
                } else {
                    by_q8!(dt(0), l, |view, view_mut| k::max_pool_q8(
                        view(l, inb(0))?,
                        shape(0),
                        &a,
                        view_mut(l, &mut writes[0])?,
                        t,
                    )?)
                }
            }
            Op::MaxPoolIndices {
                kernel_shape,
                strides,
                pads,
                dilations,
                ceil_mode,
                column_major,
            } => {
                let a = pool_attrs(kernel_shape, strides, pads, dilations, *ceil_mode, false);
                let (vals, rest) = writes.split_at_mut(1);
                let idx = match rest.first_mut() {
                    Some(w) => i64s_mut(l, w)?,
                    None => return Err(DispatchError::Unsupported(format!("{l} without indices"))),
                };
                k::max_pool_with_indices(
                    f32s(l, inb(0))?,
                    shape(0),
                    &a,
                    *column_major,
                    f32s_mut(l, &mut vals[0])?,
                    idx,
                )?;
            }
            Op::MaxUnpool => by_dtype!(dt(0), |view, view_mut| k::max_unpool(
                view(l, inb(0))?,
                i64s(l, inb(1))?,
                view_mut(l, &mut writes[0])?,
            )?),
            Op::DeformConv { spec, bias, mask } => {
                let x_shape = <[usize; 4]>::try_from(shape(0))
                    .map_err(|_| DispatchError::Unsupported(format!("{l}: X is not 4-D")))?;
                let at_mask = 3 + usize::from(*bias);
                let a = k::DeformArgs {
                    x: f32s(l, inb(0))?,
                    x_shape,
                    w: f32s(l, inb(1))?,
                    offset: f32s(l, inb(2))?,
                    bias: match bias {
                        true => Some(f32s(l, inb(3))?),
                        false => None,
                    },
                    mask: match mask {
                        true => Some(f32s(l, inb(at_mask))?),
                        false => None,
                    },
                };
                k::deform_conv(&a, spec, f32s_mut(l, &mut writes[0])?, t)?;
            }
            Op::Col2Im(spec) => k::col2im(
                f32s(l, inb(0))?,
                shape(0),
                spec,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::RoiAlign(spec) => k::roi_align(
                f32s(l, inb(0))?,
                shape(0),
                f32s(l, inb(1))?,
                i64s(l, inb(2))?,
                spec,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::Dft(spec) => k::dft(
                f32s(l, inb(0))?,
                shape(0),
                spec,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::Stft(spec) => {
                let window = match self.ins.len() > 1 {
                    true => Some(f32s(l, inb(1))?),
                    false => None,
                };
                k::stft(
                    f32s(l, inb(0))?,
                    shape(0),
                    window,
                    spec,
                    f32s_mut(l, &mut writes[0])?,
                )?;
            }
            Op::NllLoss {
                reduction,
                ignore_index,
                log_softmax,
            } => {
                let weight = match self.ins.len() > 2 {
                    true => Some(f32s(l, inb(2))?),
                    false => None,
                };
                let (loss, rest) = writes.split_at_mut(1);
                let loss = f32s_mut(l, &mut loss[0])?;
                let log_prob = match rest.first_mut() {
                    Some(w) => Some(f32s_mut(l, w)?),
                    None => None,
                };
                macro_rules! run {
                    ($target:expr) => {
                        k::nll_loss(
                            &k::LossArgs {
                                x: f32s(l, inb(0))?,
                                x_shape: shape(0),
                                target: $target,
                                weight,
                                ignore_index: *ignore_index,
                                log_softmax: *log_softmax,
                                reduction: *reduction,
                            },
                            loss,
                            log_prob,
                        )?
                    };
                }
                match dt(1) {
                    DType::I32 => run!(i32s(l, inb(1))?),
                    _ => run!(i64s(l, inb(1))?),
                }
            }
            Op::GlobalAveragePool => {
                k::global_pool(
                    false,
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::Lrn {
                size,
                alpha,
                beta,
                bias,
            } => {
                let a = k::LrnAttrs {
                    alpha: *alpha,
                    beta: *beta,
                    bias: *bias,
                    size: *size,
                };
                k::lrn(
                    f32s(l, inb(0))?,
                    shape(0),
                    &a,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::ConvTranspose {
                kernel_shape,
                strides,
                pads,
                dilations,
                output_padding,
                group,
            } => {
                let nsp = kernel_shape.len();
                let attrs = k::ConvTransposeAttrs {
                    conv: ConvAttrs {
                        kernel: kernel_shape.clone(),
                        strides: strides.clone(),
                        dilations: dilations.clone(),
                        pads_begin: pads[..nsp].to_vec(),
                        pads_end: pads[nsp..].to_vec(),
                        group: *group,
                    },
                    output_padding: output_padding.clone(),
                };
                let bias = if self.ins.len() > 2 {
                    Some(f32s(l, inb(2))?)
                } else {
                    None
                };
                k::conv_transpose(
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    shape(1),
                    bias,
                    &attrs,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::Concat { axis } => {
                let n = self.ins.len();
                by_dtype!(dt(0), |view, view_mut| k::concat(
                    &(0..n)
                        .map(|i| Ok((view(l, inb(i))?, shape(i))))
                        .collect::<Res<Vec<_>>>()?,
                    *axis,
                    view_mut(l, &mut writes[0])?,
                    t,
                )?)
            }
            Op::Split { axis, splits } => by_dtype!(dt(0), |view, view_mut| {
                let mut outs = writes
                    .iter_mut()
                    .map(|w| view_mut(l, w))
                    .collect::<Res<Vec<_>>>()?;
                k::split(view(l, inb(0))?, shape(0), *axis, splits, &mut outs)?;
            }),
            Op::Slice { starts, steps } => {
                let params: Vec<k::SliceAxis> = (0..starts.len())
                    .map(|a| k::SliceAxis {
                        start: starts[a],
                        step: steps[a],
                        len: out_shape.get(a).copied().unwrap_or(0),
                    })
                    .collect();
                by_dtype!(dt(0), |view, view_mut| k::slice(
                    view(l, inb(0))?,
                    shape(0),
                    &params,
                    view_mut(l, &mut writes[0])?,
                )?)
            }
            // Same operands, different index semantics: one dispatch for both.
            Op::Gather { axis } | Op::GatherElements { axis } => {
                let elements = matches!(op, Op::GatherElements { .. });
                by_index!(dt(1), l, inb(1), |idx| by_dtype!(
                    dt(0),
                    |view, view_mut| {
                        let (data, out) = (view(l, inb(0))?, view_mut(l, &mut writes[0])?);
                        if elements {
                            k::gather_elements(data, shape(0), idx, shape(1), *axis, out)?
                        } else {
                            k::gather(data, shape(0), idx, shape(1), *axis, out)?
                        }
                    }
                ))
            }
            Op::Transpose { perm } if dt(0) == DType::F32 => k::transpose_f32(
                f32s(l, inb(0))?,
                shape(0),
                perm,
                f32s_mut(l, &mut writes[0])?,
                t,
            )?,
            Op::Transpose { perm } => by_dtype!(dt(0), |view, view_mut| k::transpose(
                view(l, inb(0))?,
                shape(0),
                perm,
                view_mut(l, &mut writes[0])?,
                t,
            )?),
            Op::Pad { mode, pads, value } => {
                let r = shape(0).len();
                let (b, e) = pads.split_at(r.min(pads.len()));
                let m = match mode {
                    crate::loader::op::PadMode::Constant => k::PadMode::Constant(*value),
                    crate::loader::op::PadMode::Reflect => k::PadMode::Reflect,
                    crate::loader::op::PadMode::Edge => k::PadMode::Edge,
                    crate::loader::op::PadMode::Wrap => k::PadMode::Wrap,
                };
                k::pad(
                    f32s(l, inb(0))?,
                    shape(0),
                    b,
                    e,
                    m,
                    f32s_mut(l, &mut writes[0])?,
                )?;
            }
            Op::Resize {
                mode,
                coordinate_transform,
                nearest_mode,
                scales,
                exclude_outside,
                cubic_coeff_a,
                antialias,
                roi,
                extrapolation_value,
            } => {
                use crate::loader::op::ResizeMode as M;
                let coord = resize_coord(*coordinate_transform);
                let (x, o) = (f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?);
                let filter = match mode {
                    M::Nearest => None,
                    M::Linear => Some(k::ResizeFilter::Linear),
                    M::Cubic => Some(k::ResizeFilter::Cubic { a: *cubic_coeff_a }),
                };
                // The fast kernel covers nearest, and linear on the trailing spatial axes;
                // the separable one everything else.
                let rank = shape(0).len();
                let lin_axes = if rank >= 4 { 2 } else { 1 };
                let fast_linear = (0..rank.saturating_sub(lin_axes))
                    .all(|d| shape(0)[d] == out_shape[d] && scales[d] == 1.0);
                match (filter, coord) {
                    (None, Some(coord)) => k::resize(
                        x,
                        shape(0),
                        &out_shape,
                        scales,
                        k::ResizeMode::Nearest(resize_nearest(*nearest_mode)),
                        coord,
                        o,
                        t,
                    )?,
                    (Some(k::ResizeFilter::Linear), Some(coord)) if !antialias && fast_linear => {
                        k::resize(
                            x,
                            shape(0),
                            &out_shape,
                            scales,
                            k::ResizeMode::Linear,
                            coord,
                            o,
                            t,
                        )?
                    }
                    (Some(filter), coord) => {
                        let coord = match coord {
                            Some(c) => k::FilteredCoord::Transform(c),
                            None => k::FilteredCoord::TfCropAndResize {
                                roi: roi.clone(),
                                extrapolation_value: *extrapolation_value,
                            },
                        };
                        let opts = k::FilteredResize {
                            filter,
                            coord,
                            antialias: *antialias,
                            exclude_outside: *exclude_outside,
                        };
                        k::resize_filtered(x, shape(0), &out_shape, scales, &opts, o, t)?
                    }
                    (None, None) => {
                        return Err(DispatchError::Unsupported(
                            "nearest Resize with tf_crop_and_resize".into(),
                        ))
                    }
                }
            }
            Op::Reduce { axes, .. } if axes.is_empty() => {
                // noop_with_empty_axes: the data passes through.
                writes[0].copy_from_slice(inb(0));
            }
            Op::Reduce { kind, axes, .. } => {
                let fast = match kind {
                    ReduceKind::Mean => Some(k::ReduceOp::Mean),
                    ReduceKind::Sum => Some(k::ReduceOp::Sum),
                    ReduceKind::Max => Some(k::ReduceOp::Max),
                    ReduceKind::Min => Some(k::ReduceOp::Min),
                    _ => None,
                };
                let any = match kind {
                    ReduceKind::Mean => k::ReduceAny::Mean,
                    ReduceKind::Sum => k::ReduceAny::Sum,
                    ReduceKind::Max => k::ReduceAny::Max,
                    ReduceKind::Min => k::ReduceAny::Min,
                    ReduceKind::Prod => k::ReduceAny::Prod,
                    ReduceKind::L1 => k::ReduceAny::L1,
                    ReduceKind::L2 => k::ReduceAny::L2,
                    ReduceKind::SumSquare => k::ReduceAny::SumSquare,
                    ReduceKind::LogSum => k::ReduceAny::LogSum,
                    ReduceKind::LogSumExp => k::ReduceAny::LogSumExp,
                };
                match (dt(0), fast) {
                    // Mean/Sum/Max/Min over f32: the vectorised kernel.
                    (DType::F32, Some(r)) => k::reduce(
                        r,
                        f32s(l, inb(0))?,
                        shape(0),
                        axes,
                        f32s_mut(l, &mut writes[0])?,
                        t,
                    )?,
                    (other, _) => by_dtype!(other, |view, view_mut| k::reduce_any(
                        any,
                        view(l, inb(0))?,
                        shape(0),
                        axes,
                        view_mut(l, &mut writes[0])?,
                        t,
                    )?),
                }
            }
            Op::ArgReduce {
                max,
                axis,
                select_last_index,
                ..
            } => {
                let out = i64s_mut(l, &mut writes[0])?;
                by_dtype!(dt(0), |view| k::arg_reduce(
                    *max,
                    *select_last_index,
                    view(l, inb(0))?,
                    shape(0),
                    *axis,
                    out,
                    t,
                )?)
            }
            Op::Math { f } => self.math(*f, reads, writes)?,
            Op::IsInf {
                detect_negative,
                detect_positive,
            } => {
                let (neg, pos) = (*detect_negative, *detect_positive);
                k::map(l, f32s(l, inb(0))?, &mut writes[0], t, move |x: f32| {
                    u8::from((pos && x == f32::INFINITY) || (neg && x == f32::NEG_INFINITY))
                })?;
            }
            Op::Not => {
                if self.alias == Some(0) {
                    k::map_inplace(&mut writes[0], t, |b: u8| u8::from(b == 0));
                } else {
                    k::map(l, inb(0), &mut writes[0], t, |b: u8| u8::from(b == 0))?;
                }
            }
            Op::Bitwise { op: bk } => {
                macro_rules! bits {
                    ($view:ident, $view_mut:ident, $t:ty, $signed:expr) => {{
                        const BITS: $t = <$t>::BITS as $t;
                        let f = match bk {
                            BitwiseKind::And => |a: $t, b: $t| a & b,
                            BitwiseKind::Or => |a: $t, b: $t| a | b,
                            BitwiseKind::Xor => |a: $t, b: $t| a ^ b,
                            // A shift by the width or more, or by a negative amount, leaves
                            // only the sign fill (opset 28): 0, or -1 for a right shift of a
                            // negative signed value. Signed right shifts are arithmetic.
                            BitwiseKind::ShiftLeft => |a: $t, b: $t| {
                                if (0..BITS).contains(&b) {
                                    a << b
                                } else {
                                    0
                                }
                            },
                            BitwiseKind::ShiftRight => |a: $t, b: $t| {
                                if (0..BITS).contains(&b) {
                                    a >> b
                                } else if $signed {
                                    a >> (BITS - 1)
                                } else {
                                    0
                                }
                            },
                        };
                        k::broadcast_binary(
                            l,
                            $view(l, inb(0))?,
                            shape(0),
                            $view(l, inb(1))?,
                            shape(1),
                            $view_mut(l, &mut writes[0])?,
                            t,
                            f,
                        )?;
                    }};
                }
                match dt(0) {
                    DType::U8 => bits!(bytes, bytes_mut, u8, false),
                    DType::I8 => bits!(i8s, i8s_mut, i8, true),
                    DType::I32 => bits!(i32s, i32s_mut, i32, true),
                    DType::I64 => bits!(i64s, i64s_mut, i64, true),
                    DType::I16 => bits!(i16s, i16s_mut, i16, true),
                    DType::U16 => bits!(u16s, u16s_mut, u16, false),
                    DType::U32 => bits!(u32s, u32s_mut, u32, false),
                    DType::U64 => bits!(u64s, u64s_mut, u64, false),
                    other => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
                }
            }
            Op::BitwiseNot => match dt(0) {
                DType::U8 => k::map(l, inb(0), &mut writes[0], t, |v: u8| !v)?,
                DType::I8 => k::map(l, i8s(l, inb(0))?, i8s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::I32 => k::map(l, i32s(l, inb(0))?, i32s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::I64 => k::map(l, i64s(l, inb(0))?, i64s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::I16 => k::map(l, i16s(l, inb(0))?, i16s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::U16 => k::map(l, u16s(l, inb(0))?, u16s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::U32 => k::map(l, u32s(l, inb(0))?, u32s_mut(l, &mut writes[0])?, t, |v| !v)?,
                DType::U64 => k::map(l, u64s(l, inb(0))?, u64s_mut(l, &mut writes[0])?, t, |v| !v)?,
                other => return Err(DispatchError::Unsupported(format!("{l} on {other}"))),
            },
            Op::Logic { op: lk } => {
                let f = match lk {
                    LogicKind::And => |a: u8, b: u8| u8::from(a != 0 && b != 0),
                    LogicKind::Or => |a: u8, b: u8| u8::from(a != 0 || b != 0),
                    LogicKind::Xor => |a: u8, b: u8| u8::from((a != 0) != (b != 0)),
                };
                k::broadcast_binary(l, inb(0), shape(0), inb(1), shape(1), &mut writes[0], t, f)?;
            }
            Op::Compare { cmp } => {
                let c = match cmp {
                    CompareKind::Less => k::CompareOp::Less,
                    CompareKind::LessOrEqual => k::CompareOp::LessOrEqual,
                    CompareKind::Greater => k::CompareOp::Greater,
                    CompareKind::GreaterOrEqual => k::CompareOp::GreaterOrEqual,
                };
                let out: &mut [u8] = &mut writes[0];
                by_dtype!(dt(0), |view| k::compare(
                    c,
                    view(l, inb(0))?,
                    shape(0),
                    view(l, inb(1))?,
                    shape(1),
                    out,
                    t,
                )?)
            }
            Op::PRelu => k::broadcast_binary(
                l,
                f32s(l, inb(0))?,
                shape(0),
                f32s(l, inb(1))?,
                shape(1),
                f32s_mut(l, &mut writes[0])?,
                t,
                |x: f32, s: f32| if x < 0.0 { s * x } else { x },
            )?,
            Op::Max | Op::Min | Op::Mean => self.variadic(reads, writes, &out_shape)?,
            Op::ClipBounds { min, max } => self.clip_bounds(*min, *max, reads, writes)?,
            Op::GlobalMaxPool => {
                k::global_pool(
                    true,
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::LogSoftmax { axis, flatten_2d } => {
                let (x, o) = (f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?);
                if *flatten_2d {
                    k::softmax_legacy(k::SoftmaxKind::LogSoftmax, x, shape(0), *axis, o, t)?;
                } else {
                    k::softmax(k::SoftmaxKind::LogSoftmax, x, shape(0), *axis, o, t)?;
                }
            }
            Op::Tile { repeats } => by_dtype!(dt(0), |view, view_mut| k::tile(
                view(l, inb(0))?,
                shape(0),
                repeats,
                view_mut(l, &mut writes[0])?,
                t,
            )?),
            Op::BlockShuffle {
                to_space,
                blocksize,
                crd,
            } => by_dtype!(dt(0), |view, view_mut| k::block_shuffle(
                *to_space,
                *crd,
                *blocksize,
                view(l, inb(0))?,
                shape(0),
                view_mut(l, &mut writes[0])?,
                t,
            )?),
            Op::InstanceNormalization { epsilon } => k::instance_norm(
                f32s(l, inb(0))?,
                shape(0),
                f32s(l, inb(1))?,
                f32s(l, inb(2))?,
                *epsilon,
                f32s_mut(l, &mut writes[0])?,
                t,
            )?,
            Op::ScatterElements { axis, reduction } => {
                let r = scatter_reduction(*reduction);
                by_index!(dt(1), l, inb(1), |idx| by_dtype!(
                    dt(0),
                    |view, view_mut| k::scatter_elements(
                        view(l, inb(0))?,
                        shape(0),
                        idx,
                        shape(1),
                        view(l, inb(2))?,
                        *axis,
                        r,
                        view_mut(l, &mut writes[0])?,
                    )?
                ))
            }
            Op::ScatterND { reduction } => {
                let r = scatter_reduction(*reduction);
                let idx = i64s(l, inb(1))?;
                by_dtype!(dt(0), |view, view_mut| k::scatter_nd(
                    view(l, inb(0))?,
                    shape(0),
                    idx,
                    shape(1),
                    view(l, inb(2))?,
                    r,
                    view_mut(l, &mut writes[0])?,
                )?)
            }
            Op::OneHot { depth, axis } => {
                macro_rules! go {
                    ($idx:expr) => {
                        by_dtype!(dt(1), |view, view_mut| {
                            let v = view(l, inb(1))?;
                            let (off, on) = match v {
                                [off, on] => (*off, *on),
                                _ => {
                                    return Err(DispatchError::Unsupported(format!(
                                        "{l} values of {} elements",
                                        v.len()
                                    )))
                                }
                            };
                            k::one_hot(
                                $idx,
                                shape(0),
                                *depth,
                                *axis,
                                off,
                                on,
                                view_mut(l, &mut writes[0])?,
                            )?
                        })
                    };
                }
                match dt(0) {
                    DType::I64 => go!(i64s(l, inb(0))?),
                    DType::I32 => go!(i32s(l, inb(0))?),
                    DType::F32 => {
                        // Float indices truncate toward zero (NaN and out-of-range values land
                        // outside 0..depth and give all-off rows).
                        let idx: Vec<i64> = f32s(l, inb(0))?.iter().map(|&v| v as i64).collect();
                        go!(&idx[..])
                    }
                    other => {
                        return Err(DispatchError::Unsupported(format!("{l} indices {other}")))
                    }
                }
            }
            Op::TopK {
                k: kk,
                axis,
                largest,
            } => {
                let (vals, rest) = writes.split_at_mut(1);
                let idx = match rest.first_mut() {
                    Some(w) => i64s_mut(l, w)?,
                    None => return Err(DispatchError::Unsupported(format!("{l} without indices"))),
                };
                by_dtype!(dt(0), |view, view_mut| k::top_k(
                    view(l, inb(0))?,
                    shape(0),
                    *axis,
                    *kk,
                    *largest,
                    view_mut(l, &mut vals[0])?,
                    idx,
                )?)
            }
            Op::CumSum {
                axis,
                exclusive,
                reverse,
                product,
            } => by_dtype!(dt(0), |view, view_mut| k::cumsum(
                view(l, inb(0))?,
                shape(0),
                *axis,
                *exclusive,
                *reverse,
                *product,
                view_mut(l, &mut writes[0])?,
            )?),
            Op::GatherNd { batch_dims } => by_dtype!(dt(0), |view, view_mut| k::gather_nd(
                view(l, inb(0))?,
                shape(0),
                i64s(l, inb(1))?,
                shape(1),
                *batch_dims,
                view_mut(l, &mut writes[0])?,
            )?),
            Op::Hardmax { axis, flatten_2d } => k::hardmax(
                f32s(l, inb(0))?,
                shape(0),
                *axis,
                *flatten_2d,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::MeanVarianceNormalization { axes } => k::mean_variance_norm(
                f32s(l, inb(0))?,
                shape(0),
                axes,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::GroupNormalization { groups, epsilon } => k::group_norm(
                f32s(l, inb(0))?,
                shape(0),
                *groups,
                f32s(l, inb(1))?,
                f32s(l, inb(2))?,
                *epsilon,
                f32s_mut(l, &mut writes[0])?,
                t,
            )?,
            Op::LpPool {
                kernel_shape,
                strides,
                pads,
                dilations,
                ceil_mode,
                p,
            } => {
                let a = pool_attrs(kernel_shape, strides, pads, dilations, *ceil_mode, false);
                k::lp_pool(
                    f32s(l, inb(0))?,
                    shape(0),
                    &a,
                    *p,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
            }
            Op::GridSample {
                mode,
                padding,
                align_corners,
            } => k::grid_sample(
                f32s(l, inb(0))?,
                shape(0),
                f32s(l, inb(1))?,
                shape(1),
                match mode {
                    crate::loader::op::ResizeMode::Nearest => k::GridMode::Nearest,
                    crate::loader::op::ResizeMode::Linear => k::GridMode::Linear,
                    crate::loader::op::ResizeMode::Cubic => k::GridMode::Cubic,
                },
                match padding {
                    crate::loader::op::GridPaddingMode::Zeros => k::GridPadding::Zeros,
                    crate::loader::op::GridPaddingMode::Border => k::GridPadding::Border,
                    crate::loader::op::GridPaddingMode::Reflection => k::GridPadding::Reflection,
                },
                *align_corners,
                f32s_mut(l, &mut writes[0])?,
                t,
            )?,
            Op::Einsum {
                terms,
                output,
                sizes,
            } => {
                fn run<T: k::EinsumElem>(
                    operands: Vec<(&[T], &[usize])>,
                    terms: &[Vec<u8>],
                    output: &[u8],
                    sizes: &[usize],
                    out: &mut [T],
                    t: usize,
                ) -> Result<(), DispatchError> {
                    Ok(k::einsum(&operands, terms, output, sizes, out, t)?)
                }
                let n = terms.len();
                if dt(0) == DType::F64 {
                    let operands = (0..n).map(|i| Ok((f64s(l, inb(i))?, shape(i))));
                    let operands = operands.collect::<Res<Vec<_>>>()?;
                    run(
                        operands,
                        terms,
                        output,
                        sizes,
                        f64s_mut(l, &mut writes[0])?,
                        t,
                    )?;
                } else {
                    let operands = (0..n).map(|i| Ok((f32s(l, inb(i))?, shape(i))));
                    let operands = operands.collect::<Res<Vec<_>>>()?;
                    run(
                        operands,
                        terms,
                        output,
                        sizes,
                        f32s_mut(l, &mut writes[0])?,
                        t,
                    )?;
                }
            }
            Op::Recurrent { spec, present } => {
                // Positions of the optional inputs among the node's inputs.
                let mut at = [None; 5];
                let mut next = 3;
                for (slot, &p) in at.iter_mut().zip(present) {
                    if p {
                        *slot = Some(next);
                        next += 1;
                    }
                }
                let f = |i: Option<usize>| i.map(|i| f32s(l, inb(i))).transpose();
                let seq_lens = at[1].map(|i| i32s(l, inb(i))).transpose()?;
                let inputs = k::RnnInputs {
                    x: f32s(l, inb(0))?,
                    x_shape: shape(0),
                    w: f32s(l, inb(1))?,
                    r: f32s(l, inb(2))?,
                    b: f(at[0])?,
                    seq_lens,
                    initial_h: f(at[2])?,
                    initial_c: f(at[3])?,
                    p: f(at[4])?,
                };
                let mut outs = writes.iter_mut();
                let mut take = || outs.next().map(|w| f32s_mut(l, w)).transpose();
                let (y, y_h, y_c) = (take()?, take()?, take()?);
                k::rnn(spec, &inputs, k::RnnOutputs { y, y_h, y_c }, t)?;
            }
            Op::BitCast { to } => {
                writes[0].copy_from_slice(inb(0));
                if *to == DType::Bool {
                    // Keep bool tensors 0 / 1 (kernels test them as bytes).
                    for v in writes[0].iter_mut() {
                        *v = u8::from(*v != 0);
                    }
                }
            }
            Op::TensorScatter { axis, circular } => k::tensor_scatter(
                inb(0),
                shape(0),
                inb(1),
                shape(1)[*axis],
                *axis,
                dt(0).size_bytes() as usize,
                (self.ins.len() > 2).then(|| i64s(l, inb(2))).transpose()?,
                *circular,
                &mut writes[0],
            )?,
            Op::LpNormalization { axis, p } => k::lp_norm(
                f32s(l, inb(0))?,
                shape(0),
                *axis,
                *p,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::RotaryEmbedding { spec } => k::rotary_embedding(
                spec,
                f32s(l, inb(0))?,
                f32s(l, inb(1))?,
                f32s(l, inb(2))?,
                (spec.positions > 0).then(|| i64s(l, inb(3))).transpose()?,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::Attention { spec, present } => {
                // Positions of the optional inputs among the node's inputs.
                let mut next = 3;
                let mut at = |p: bool, n: usize| {
                    let i = p.then_some(next);
                    next += if p { n } else { 0 };
                    i
                };
                let (m_at, past_at, np_at) =
                    (at(present[0], 1), at(present[1], 2), at(present[2], 1));
                let mask = match m_at {
                    None => None,
                    Some(i) if dt(i) == DType::Bool => Some(k::AttentionMask::Bool(inb(i))),
                    Some(i) => Some(k::AttentionMask::Float(f32s(l, inb(i))?)),
                };
                let past = match past_at {
                    Some(i) => Some((f32s(l, inb(i))?, f32s(l, inb(i + 1))?)),
                    None => None,
                };
                let inputs = k::AttentionInputs {
                    q: f32s(l, inb(0))?,
                    k: f32s(l, inb(1))?,
                    v: f32s(l, inb(2))?,
                    mask,
                    past,
                    nonpad: np_at.map(|i| i64s(l, inb(i))).transpose()?,
                };
                let mut outs = writes.iter_mut();
                let y = f32s_mut(
                    l,
                    outs.next()
                        .ok_or_else(|| DispatchError::Unsupported(l.into()))?,
                )?;
                let mut take = || outs.next().map(|w| f32s_mut(l, w)).transpose();
                let (present_key, present_value, qk) = (take()?, take()?, take()?);
                let outputs = k::AttentionOutputs {
                    y,
                    present_key,
                    present_value,
                    qk,
                };
                k::attention(spec, &inputs, outputs, t)?;
            }
            Op::ReverseSequence {
                batch_axis,
                time_axis,
            } => by_dtype!(dt(0), |view, view_mut| k::reverse_sequence(
                view(l, inb(0))?,
                shape(0),
                i64s(l, inb(1))?,
                *batch_axis,
                *time_axis,
                view_mut(l, &mut writes[0])?,
            )?),
            Op::Det => k::det(f32s(l, inb(0))?, shape(0), f32s_mut(l, &mut writes[0])?)?,
            Op::AffineGrid {
                spatial,
                align_corners,
            } => k::affine_grid(
                f32s(l, inb(0))?,
                shape(0)[0],
                spatial,
                *align_corners,
                f32s_mut(l, &mut writes[0])?,
            )?,
            Op::Trilu { k: kk, upper } => by_dtype!(dt(0), |view, view_mut| k::trilu(
                view(l, inb(0))?,
                shape(0),
                *kk,
                *upper,
                view_mut(l, &mut writes[0])?,
            )?),
            Op::QuantizeLinear { layout, saturate }
                if matches!(self.outs[0].dtype, DType::Narrow(_)) =>
            {
                let DType::Narrow(n) = self.outs[0].dtype else {
                    return Err(DispatchError::Unsupported("narrow output expected".into()));
                };
                let zp = (self.ins.len() > 2).then(|| inb(2));
                let (x, scale) = (f32s(l, inb(0))?, f32s(l, inb(1))?);
                let out = &mut writes[0][..];
                k::quantize_narrow(x, shape(0), scale, zp, *layout, n, *saturate, out, t)?;
            }
            Op::QuantizeLinear { layout, .. }
                if matches!(self.outs[0].dtype, DType::I16 | DType::U16) =>
            {
                let zp = (self.ins.len() > 2).then(|| inb(2));
                let (x, scale) = (f32s(l, inb(0))?, f32s(l, inb(1))?);
                if self.outs[0].dtype == DType::I16 {
                    let zp = zp.map(|z| i16s(l, z)).transpose()?;
                    let out = i16s_mut(l, &mut writes[0])?;
                    k::quantize_linear(x, shape(0), scale, zp, *layout, out, t)?;
                } else {
                    let zp = zp.map(|z| u16s(l, z)).transpose()?;
                    let out = u16s_mut(l, &mut writes[0])?;
                    k::quantize_linear(x, shape(0), scale, zp, *layout, out, t)?;
                }
            }
            Op::QuantizeLinear { layout, .. } => {
                let zp = (self.ins.len() > 2).then(|| inb(2));
                by_q8!(self.outs[0].dtype, l, |view, view_mut| k::quantize_linear(
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    zp.map(|z| view(l, z)).transpose()?,
                    *layout,
                    view_mut(l, &mut writes[0])?,
                    t,
                )?)
            }
            Op::DequantizeLinear { layout } => {
                let zp = (self.ins.len() > 2).then(|| inb(2));
                let (scale, out) = (f32s(l, inb(1))?, f32s_mut(l, &mut writes[0])?);
                if let DType::Narrow(n) = dt(0) {
                    k::dequantize_narrow(inb(0), n, shape(0), scale, zp, *layout, out, t)?;
                } else if dt(0) == DType::I32 {
                    let zp = zp.map(|z| i32s(l, z)).transpose()?;
                    let x = i32s(l, inb(0))?;
                    k::dequantize_linear(x, shape(0), scale, zp, *layout, out, t)?;
                } else if dt(0) == DType::I16 {
                    let zp = zp.map(|z| i16s(l, z)).transpose()?;
                    let x = i16s(l, inb(0))?;
                    k::dequantize_linear(x, shape(0), scale, zp, *layout, out, t)?;
                } else if dt(0) == DType::U16 {
                    let zp = zp.map(|z| u16s(l, z)).transpose()?;
                    let x = u16s(l, inb(0))?;
                    k::dequantize_linear(x, shape(0), scale, zp, *layout, out, t)?;
                } else {
                    by_q8!(dt(0), l, |view, _unused| k::dequantize_linear(
                        view(l, inb(0))?,
                        shape(0),
                        scale,
                        zp.map(|z| view(l, z)).transpose()?,
                        *layout,
                        out,
                        t,
                    )?)
                }
            }
            Op::DynamicQuantizeLinear => {
                let (y, rest) = writes.split_at_mut(1);
                let (s, z) = rest.split_at_mut(1);
                k::dynamic_quantize_linear(
                    f32s(l, inb(0))?,
                    &mut y[0],
                    f32s_mut(l, &mut s[0])?,
                    &mut z[0],
                    t,
                )?;
            }
            Op::MatMulInteger {
                a_zero_point,
                b_zero_point,
            } => {
                // Absent zero points are 0; present ones follow a and b in the inputs.
                let za = a_zero_point.then_some(2);
                let zb = b_zero_point.then(|| 2 + usize::from(*a_zero_point));
                let out = i32s_mut(l, &mut writes[0])?;
                by_q8!(dt(0), l, |va, _ua| by_q8!(dt(1), l, |vb, _ub| {
                    let a_zp = match za {
                        Some(i) => va(l, inb(i))?,
                        None => &[0; 1][..],
                    };
                    let b_zp = match zb {
                        Some(i) => vb(l, inb(i))?,
                        None => &[0; 1][..],
                    };
                    k::matmul_integer(
                        va(l, inb(0))?,
                        shape(0),
                        vb(l, inb(1))?,
                        shape(1),
                        a_zp,
                        b_zp,
                        out,
                        t,
                    )?
                }))
            }
            Op::QLinearMatMul => {
                by_q8!(dt(0), l, |va, _ua| by_q8!(dt(3), l, |vb, _ub| by_q8!(
                    dt(7),
                    l,
                    |vy, vy_mut| {
                        let rq = requant(l, &inb, vy)?;
                        k::qlinear_matmul(
                            va(l, inb(0))?,
                            shape(0),
                            va(l, inb(2))?,
                            vb(l, inb(3))?,
                            shape(3),
                            vb(l, inb(5))?,
                            rq,
                            vy_mut(l, &mut writes[0])?,
                            t,
                        )?
                    }
                )))
            }
            Op::ConvInteger {
                attrs,
                x_zero_point,
                w_zero_point,
            } => {
                let packed = self.packed_rows();
                let zx = x_zero_point.then_some(2);
                let zw = w_zero_point.then(|| 2 + usize::from(*x_zero_point));
                let out = i32s_mut(l, &mut writes[0])?;
                by_q8!(dt(0), l, |vx, _ux| by_q8!(dt(1), l, |vw, _uw| {
                    let x_zp = match zx {
                        Some(i) => first(l, vx(l, inb(i))?)?,
                        None => 0,
                    };
                    let w_zp = match zw {
                        Some(i) => vw(l, inb(i))?,
                        None => &[0; 1][..],
                    };
                    k::conv_integer(
                        vx(l, inb(0))?,
                        shape(0),
                        x_zp,
                        vw(l, inb(1))?,
                        shape(1),
                        w_zp,
                        packed,
                        attrs,
                        out,
                        &out_shape,
                        t,
                    )?
                }))
            }
            Op::QLinearConv { attrs } => {
                let packed = self.packed_rows();
                let bias = (self.ins.len() > 8).then(|| i32s(l, inb(8))).transpose()?;
                by_q8!(dt(0), l, |vx, _ux| by_q8!(dt(3), l, |vw, _uw| by_q8!(
                    dt(7),
                    l,
                    |vy, vy_mut| {
                        let rq = requant(l, &inb, vy)?;
                        k::qlinear_conv(
                            vx(l, inb(0))?,
                            shape(0),
                            first(l, vx(l, inb(2))?)?,
                            vw(l, inb(3))?,
                            shape(3),
                            vw(l, inb(5))?,
                            packed,
                            bias,
                            attrs,
                            rq,
                            vy_mut(l, &mut writes[0])?,
                            &out_shape,
                            t,
                        )?
                    }
                )))
            }
            op if float_fn(op).is_some() => {
                let f = float_fn(op).ok_or_else(|| DispatchError::Unsupported(l.into()))?;
                if self.alias == Some(0) {
                    k::map_inplace(f32s_mut(l, &mut writes[0])?, t, f);
                } else {
                    k::map(l, f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?, t, f)?;
                }
            }
            Op::Softmax { axis, flatten_2d } => {
                let (x, o) = (f32s(l, inb(0))?, f32s_mut(l, &mut writes[0])?);
                if *flatten_2d {
                    k::softmax_legacy(k::SoftmaxKind::Softmax, x, shape(0), *axis, o, t)?;
                } else {
                    k::softmax(k::SoftmaxKind::Softmax, x, shape(0), *axis, o, t)?;
                }
            }
            Op::RmsNormalization { axis, epsilon } => k::rms_norm(
                f32s(l, inb(0))?,
                shape(0),
                *axis,
                f32s(l, inb(1))?,
                shape(1),
                *epsilon,
                f32s_mut(l, &mut writes[0])?,
                t,
            )?,
            Op::SwiGlu { alpha } => {
                let alpha = *alpha;
                k::broadcast_binary(
                    l,
                    f32s(l, inb(0))?,
                    shape(0),
                    f32s(l, inb(1))?,
                    shape(1),
                    f32s_mut(l, &mut writes[0])?,
                    t,
                    move |a: f32, b: f32| a / (1.0 + (-alpha * a).exp()) * b,
                )?;
            }
            Op::LayerNormalization { axis, epsilon } => {
                let bias = if self.ins.len() > 2 {
                    Some(f32s(l, inb(2))?)
                } else {
                    None
                };
                k::layer_norm(
                    f32s(l, inb(0))?,
                    shape(0),
                    *axis,
                    f32s(l, inb(1))?,
                    bias,
                    *epsilon,
                    f32s_mut(l, &mut writes[0])?,
                    t,
                )?;
                // Optional outputs Mean and InvStdDev, when the model asks for them.
                if let Some((_, stats)) = writes.split_first_mut().filter(|(_, r)| !r.is_empty()) {
                    let (mean, rest) = stats.split_at_mut(1);
                    let inv = match rest.first_mut() {
                        Some(w) => Some(f32s_mut(l, w)?),
                        None => None,
                    };
                    k::layer_norm_stats(
                        f32s(l, inb(0))?,
                        shape(0),
                        *axis,
                        *epsilon,
                        Some(f32s_mut(l, &mut mean[0])?),
                        inv,
                    )?;
                }
            }
            other => return Err(DispatchError::Unsupported(other.onnx_name().to_owned())),
        }
        Ok(())
    }
}

fn pool_attrs(
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    ceil_mode: bool,
    count_include_pad: bool,
) -> k::PoolAttrs {
    let n = kernel.len();
    k::PoolAttrs {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads_begin: pads[..n.min(pads.len())].to_vec(),
        pads_end: pads[n.min(pads.len())..].to_vec(),
        ceil_mode,
        count_include_pad,
    }
}

/// The kernels' coordinate mapping for a graph attribute; `None` for `tf_crop_and_resize`,
/// which needs a region of interest (the filtered kernel's `FilteredCoord`).
pub(crate) fn resize_coord(c: crate::loader::op::CoordinateTransform) -> Option<k::CoordTransform> {
    use crate::loader::op::CoordinateTransform as C;
    Some(match c {
        C::HalfPixel => k::CoordTransform::HalfPixel,
        C::PytorchHalfPixel => k::CoordTransform::PytorchHalfPixel,
        C::AlignCorners => k::CoordTransform::AlignCorners,
        C::Asymmetric => k::CoordTransform::Asymmetric,
        C::TfHalfPixelForNn => k::CoordTransform::TfHalfPixelForNearest,
        C::HalfPixelSymmetric => k::CoordTransform::HalfPixelSymmetric,
        C::TfCropAndResize => return None,
    })
}

/// The kernels' rounding for a graph `nearest_mode`.
pub(crate) fn resize_nearest(n: crate::loader::op::NearestMode) -> k::NearestMode {
    use crate::loader::op::NearestMode as N;
    match n {
        N::RoundPreferFloor => k::NearestMode::RoundPreferFloor,
        N::RoundPreferCeil => k::NearestMode::RoundPreferCeil,
        N::Floor => k::NearestMode::Floor,
        N::Ceil => k::NearestMode::Ceil,
    }
}

#[derive(Debug, thiserror::Error)]
enum DispatchError {
    #[error(transparent)]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Device(#[from] CudaError),
    #[error("no host kernel for {0}")]
    Unsupported(String),
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::graph::Op;
    use crate::{ExecutionGraph, LoadOptions};

    /// A shared model (path under `shared/models/`) loaded and its kernels planned at 1
    /// thread.
    fn planned(model: &str) -> (ExecutionGraph, super::KernelPlan) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/models")
            .join(model);
        let g = ExecutionGraph::load(&p, &LoadOptions::default()).unwrap();
        let plan = super::plan_kernels(&g, 1).unwrap();
        (g, plan)
    }

    /// Convs of `plan` running `act` in their epilogue.
    fn convs_with(plan: &super::KernelPlan, act: crate::kernels::UnaryOp) -> usize {
        plan.kernels
            .iter()
            .flatten()
            .filter(|k| {
                matches!(k, super::KernelSpec::Conv { conv, .. } if conv.activation() == Some(act))
            })
            .count()
    }

    /// PaddleOCR's classifier writes hard-swish as Add, Clip, Mul, Div after its convs: each
    /// chain runs as one pass (the model's outputs are checked against its reference in
    /// tests/run_models.rs).
    #[test]
    fn exported_hard_swish_chains_run_as_one_pass() {
        let (g, plan) = planned("ppocr-mobile-v2-cls/model_static.onnx");
        let fused_divs = g
            .topological_order()
            .iter()
            .filter(|id| matches!(g.node(**id).op, Op::Div) && plan.kernels[id.index()].is_none())
            .count();
        let convs_with_chain = convs_with(&plan, crate::kernels::UnaryOp::HardSwishOps);
        let maps = plan
            .kernels
            .iter()
            .flatten()
            .filter(|k| matches!(k, super::KernelSpec::Map { .. }))
            .count();
        // All 18 chains, each one pass of its own; no conv takes one.
        assert_eq!(fused_divs, 18);
        assert_eq!(maps, 18);
        assert_eq!(convs_with_chain, 0);
    }

    /// A ConvNeXt block's Gelu, written as the five nodes torch exports below opset 20 (Div,
    /// Erf, Add, Mul, Mul), runs as one pass (the block's output is checked against
    /// onnxruntime in tests/arch_blocks.rs).
    #[test]
    fn exported_gelu_chains_run_as_one_pass() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch/convnext/model.onnx");
        let g = ExecutionGraph::load(&p, &LoadOptions::default()).unwrap();
        let plan = super::plan_kernels(&g, 1).unwrap();
        let gelu_maps: Vec<_> = plan
            .kernels
            .iter()
            .flatten()
            .filter(|k| {
                matches!(
                    k,
                    super::KernelSpec::Map {
                        act: crate::kernels::UnaryOp::GeluOps {
                            divide: true,
                            half_first: false,
                            ..
                        },
                        ..
                    }
                )
            })
            .collect();
        assert_eq!(gelu_maps.len(), 1);
        let fused = |f: &dyn Fn(&Op) -> bool| {
            g.topological_order()
                .iter()
                .filter(|id| f(&g.node(**id).op) && plan.kernels[id.index()].is_none())
                .count()
        };
        assert_eq!(fused(&|op| matches!(op, Op::Erf)), 1);
        // The chain's Add of 1 and two Muls, and the two linear layers' bias Adds (inside the
        // packed products); the layer-scale Mul and the residual Add stay.
        assert_eq!(fused(&|op| matches!(op, Op::Mul | Op::Add)), 5);
    }

    /// A GPT-style decoder's Gelu, written as the eight nodes of its tanh form (Pow, Mul, Add,
    /// Mul, Mul by 0.5, Tanh, Add, Mul), runs as one pass (the block's output is
    /// checked against onnxruntime in tests/arch_blocks.rs).
    #[test]
    fn exported_tanh_gelu_chains_run_as_one_pass() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/arch/decoder/model.onnx");
        let g = ExecutionGraph::load(&p, &LoadOptions::default()).unwrap();
        let plan = super::plan_kernels(&g, 1).unwrap();
        let maps = plan
            .kernels
            .iter()
            .flatten()
            .filter(|k| {
                matches!(
                    k,
                    super::KernelSpec::Map {
                        act: crate::kernels::UnaryOp::GeluTanhOps {
                            half_first: true,
                            ..
                        },
                        ..
                    }
                )
            })
            .count();
        assert_eq!(maps, 1);
        let left = |f: &dyn Fn(&Op) -> bool| {
            g.topological_order()
                .iter()
                .filter(|id| f(&g.node(**id).op) && plan.kernels[id.index()].is_some())
                .count()
        };
        // The chain's first node (the Pow) holds the pass; the other seven have no kernel.
        assert_eq!(left(&|op| matches!(op, Op::Pow)), 1);
        assert_eq!(left(&|op| matches!(op, Op::Tanh)), 0);
    }

    /// SiLU as exported (Sigmoid, then Mul by the same input) runs in the epilogue of the conv
    /// before it: all of an EfficientNet MBConv's and YOLOv8 pieces' pairs, but not the
    /// squeeze-excite gate (a Sigmoid whose Mul takes another tensor). The blocks' outputs
    /// are checked against onnxruntime in tests/arch_blocks.rs.
    #[rstest::rstest]
    #[case("efficientnet_mbconv", 3)]
    #[case("yolo", 8)]
    fn exported_silu_pairs_run_in_the_conv_before_them(#[case] block: &str, #[case] pairs: usize) {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/arch")
            .join(block)
            .join("model.onnx");
        let g = ExecutionGraph::load(&p, &LoadOptions::default()).unwrap();
        let plan = super::plan_kernels(&g, 1).unwrap();
        let silu_convs = convs_with(&plan, crate::kernels::UnaryOp::Silu);
        let order = g.topological_order();
        let fused = |f: &dyn Fn(&Op) -> bool| {
            order
                .iter()
                .filter(|id| f(&g.node(**id).op) && plan.kernels[id.index()].is_none())
                .count()
        };
        assert_eq!(silu_convs, pairs);
        // Each pair's Mul runs inside its conv; the gate's Mul (EfficientNet) on its own.
        assert_eq!(fused(&|op| matches!(op, Op::Mul)), pairs);
        // Besides the pairs' Sigmoids, the fixture has one more: the gate (EfficientNet, fused
        // into its conv as a plain Sigmoid) or the head's (YOLO).
        let sigmoids = order
            .iter()
            .filter(|id| matches!(g.node(**id).op, Op::Sigmoid))
            .count();
        assert_eq!(sigmoids, pairs + 1);
    }

    /// The transformer encoder's projections and feed-forward layers (MatMul or Gemm on a
    /// constant matrix) run on their matrix packed at load, each MatMul's bias Add (and the
    /// first feed-forward layer's Relu) fused in; the attention products, on two run-time
    /// operands, keep the host GEMM (the outputs are checked against the model's reference
    /// in tests/run_models.rs).
    #[test]
    fn constant_weight_products_run_packed_with_their_bias_and_activation() {
        let (g, plan) = planned("tv-transformer_encoder_2l/model.onnx");
        let order = g.topological_order();
        let count = |f: &dyn Fn(&Op, Option<&super::KernelSpec>) -> bool| {
            order
                .iter()
                .filter(|id| f(&g.node(**id).op, plan.kernels[id.index()].as_ref()))
                .count()
        };
        let packed = |k: Option<&super::KernelSpec>| {
            matches!(k, Some(super::KernelSpec::MatMulPacked { .. }))
        };
        let relu = |k: Option<&super::KernelSpec>| {
            matches!(
                k,
                Some(super::KernelSpec::MatMulPacked {
                    act: Some(crate::kernels::UnaryOp::Relu),
                    ..
                })
            )
        };
        let matmuls = |k: &dyn Fn(Option<&super::KernelSpec>) -> bool| {
            count(&|op, spec| matches!(op, Op::MatMul) && k(spec))
        };
        // Per layer: QKV, linear1, linear2 packed; Q*K^T and attention*V on the GEMM.
        assert_eq!(matmuls(&packed), 6);
        assert_eq!(
            matmuls(&|k| matches!(k, Some(super::KernelSpec::Generic))),
            4
        );
        assert_eq!(
            count(&|op, k| matches!(op, Op::Gemm { .. }) && packed(k)),
            2
        );
        // The six MatMuls' bias Adds run inside them (the residual Adds do not); both
        // linear1 Relus too.
        assert_eq!(count(&|op, _| matches!(op, Op::Add)), 10);
        assert_eq!(count(&|op, k| matches!(op, Op::Add) && k.is_none()), 6);
        assert_eq!(count(&|op, k| matches!(op, Op::Relu) && k.is_none()), 2);
        assert_eq!(count(&|_, k| relu(k)), 2);
        // The packed constants are not weights any kernel reads: the prepared bytes count
        // them with their packed copies.
        let packed_bytes: u64 = plan
            .kernels
            .iter()
            .flatten()
            .filter_map(|k| match k {
                super::KernelSpec::MatMulPacked { b, .. } => Some(b.bytes() as u64),
                _ => None,
            })
            .sum();
        assert!(packed_bytes > 0 && plan.prepared_bytes >= packed_bytes);
        for t in &plan.weight_tensors {
            let consumers = g.consumers(*t);
            assert!(
                consumers
                    .iter()
                    .any(|c| !packed(plan.kernels[c.index()].as_ref())),
                "weight {t:?} is read only by packed products"
            );
        }
    }

    /// ResNet-50's residual joins (`Relu(Sum(conv, skip))`) run in the epilogue of the conv
    /// before them: no Sum or Relu kernel is left for them (the outputs are checked against
    /// the model's reference, across streams, in tests/run_models.rs).
    #[test]
    fn resnet_residual_joins_run_in_the_conv_before_them() {
        let (g, plan) = planned("light-resnet50/model.onnx");
        let joins = g
            .topological_order()
            .iter()
            .filter(|id| matches!(g.node(**id).op, Op::Sum | Op::Add))
            .count();
        let sums_left = g
            .topological_order()
            .iter()
            .filter(|id| {
                matches!(g.node(**id).op, Op::Sum | Op::Add) && plan.kernels[id.index()].is_some()
            })
            .count();
        let fused: Vec<_> = plan
            .kernels
            .iter()
            .flatten()
            .filter_map(|k| match k {
                super::KernelSpec::Conv {
                    conv,
                    residual: Some(_),
                    ..
                } => Some(conv.activation()),
                _ => None,
            })
            .collect();
        assert_eq!(joins, 16);
        assert_eq!(sums_left, 0);
        assert_eq!(fused.len(), 16);
        assert!(fused
            .iter()
            .all(|a| *a == Some(crate::kernels::UnaryOp::Relu)));
    }
}
