//! Lowering graph nodes to kernel launches: per node, which kernels run with which grid,
//! arguments and static parameter arrays (shapes, strides, tables), all decided at prepare
//! time so an inference only enqueues.

use aegis_cuda::{DeviceSlice, Dim3};

use super::kernels::K;
use crate::graph::{DType, ExecutionGraph, Op, OperatorNode, TensorId};
use crate::loader::op::{
    CoordinateTransform, GeluApproximation, NearestMode, PadMode, ReduceKind, ResizeMode,
};

/// Threads per block of the elementwise and reduction kernels (the reduction kernels' tree
/// size, `AEGIS_RED_THREADS`, must equal it).
pub(crate) const BLOCK: u32 = 256;
/// Grid cap of the grid-stride kernels.
const MAX_BLOCKS: usize = 1 << 18;
/// Identity activation code of the conv kernels.
const ACT_NONE: i32 = 19;

/// Why a node cannot be lowered.
#[derive(Debug)]
pub(crate) enum LowerError {
    /// The backend has no kernel for this op/dtype/attribute combination.
    Unsupported(String),
}

type R<T> = Result<T, LowerError>;

fn unsupported<T>(why: impl Into<String>) -> R<T> {
    Err(LowerError::Unsupported(why.into()))
}

/// Parameter arrays of every node, laid out once into one device buffer.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) blobs: Vec<Vec<u8>>,
}

impl Params {
    fn i64s(&mut self, v: &[i64]) -> usize {
        self.blobs
            .push(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        self.blobs.len() - 1
    }
    fn f32s(&mut self, v: &[f32]) -> usize {
        self.blobs
            .push(v.iter().flat_map(|x| x.to_le_bytes()).collect());
        self.blobs.len() - 1
    }
}

/// One kernel argument before the parameter buffer exists.
#[derive(Debug, Clone)]
pub(crate) enum A {
    /// Device memory of a tensor.
    T(DeviceSlice),
    /// A parameter blob (index into [`Params::blobs`]).
    P(usize),
    I32(i32),
    F32(f32),
    U64(u64),
}

/// One enqueued operation of a node.
#[derive(Debug, Clone)]
pub(crate) enum LaunchSpec {
    Kernel {
        k: K,
        grid: Dim3,
        block: Dim3,
        args: Vec<A>,
    },
    /// Device-to-device copy (reshape-only ops).
    Copy { src: DeviceSlice, dst: DeviceSlice },
}

fn cover(n: usize) -> Dim3 {
    Dim3::linear(n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32)
}

fn launch(k: K, n: usize, args: Vec<A>) -> LaunchSpec {
    LaunchSpec::Kernel {
        k,
        grid: cover(n),
        block: Dim3::linear(BLOCK),
        args,
    }
}

fn u64_of(n: usize) -> A {
    A::U64(n as u64)
}

fn i64v(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

/// The element-type code the CUDA kernels switch on. 8-bit, narrow and f16 tensors never
/// reach here: [`lower`] rejects any node that touches one.
fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => 0,
        DType::I64 => 1,
        DType::I32 => 2,
        DType::Bool | DType::U8 | DType::I8 => 3,
        // Unreachable through `lower`; the code of a 2-byte type would be new kernel work.
        DType::F16
        | DType::BF16
        | DType::F64
        | DType::I16
        | DType::U16
        | DType::U32
        | DType::U64
        | DType::Narrow(_) => 4,
    }
}

pub(crate) fn contiguous(shape: &[usize]) -> Vec<i64> {
    let mut st = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for d in (0..shape.len()).rev() {
        st[d] = acc;
        acc *= shape[d] as i64;
    }
    st
}

/// Element strides of `shape` broadcast (numpy, right-aligned) to `out`: 0 on broadcast axes.
pub(crate) fn bcast_strides(shape: &[usize], out: &[usize]) -> R<Vec<i64>> {
    if shape.len() > out.len() {
        return unsupported(format!("shape {shape:?} does not broadcast to {out:?}"));
    }
    let own = contiguous(shape);
    let lead = out.len() - shape.len();
    let mut st = vec![0i64; out.len()];
    for (i, &d) in shape.iter().enumerate() {
        let o = out[lead + i];
        if d == o {
            st[lead + i] = if d == 1 { 0 } else { own[i] };
        } else if d != 1 {
            return unsupported(format!("shape {shape:?} does not broadcast to {out:?}"));
        }
    }
    Ok(st)
}

/// Drops extent-1 axes and merges neighbouring axes that every stride set walks
/// contiguously, so the kernels' index arithmetic runs over as few axes as possible.
pub(crate) fn coalesce(shape: &[usize], sets: &[Vec<i64>]) -> (Vec<i64>, Vec<Vec<i64>>) {
    let mut sh: Vec<i64> = Vec::new();
    let mut st: Vec<Vec<i64>> = vec![Vec::new(); sets.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let ext = shape[d] as i64;
        let mergeable = !sh.is_empty()
            && sets
                .iter()
                .zip(&st)
                .all(|(s, cur)| cur.last().copied() == Some(s[d] * ext));
        if mergeable {
            let last = sh.len() - 1;
            sh[last] *= ext;
            for (k, s) in sets.iter().enumerate() {
                st[k][last] = s[d];
            }
        } else {
            sh.push(ext);
            for (k, s) in sets.iter().enumerate() {
                st[k].push(s[d]);
            }
        }
    }
    (sh, st)
}

/// Broadcast meta `[rank, n, shape, strides_0, strides_1, ...]` of operands over `out`.
fn bcast_meta(out: &[usize], operands: &[&[usize]]) -> R<Vec<i64>> {
    let mut sets = Vec::with_capacity(operands.len() + 1);
    sets.push(contiguous(out));
    for s in operands {
        sets.push(bcast_strides(s, out)?);
    }
    let (sh, st) = coalesce(out, &sets);
    let n: usize = out.iter().product();
    let mut m = vec![sh.len() as i64, n as i64];
    m.extend(&sh);
    for s in &st[1..] {
        m.extend(s);
    }
    Ok(m)
}

/// Strided-copy meta `[rank, n, in_base, out_base, shape, in_strides, out_strides]`.
fn copy_meta(
    shape: &[usize],
    in_base: i64,
    ist: Vec<i64>,
    out_base: i64,
    ost: Vec<i64>,
) -> Vec<i64> {
    let (sh, st) = coalesce(shape, &[ist, ost]);
    let n: usize = shape.iter().product();
    let mut m = vec![sh.len() as i64, n as i64, in_base, out_base];
    m.extend(&sh);
    m.extend(&st[0]);
    m.extend(&st[1]);
    m
}

fn pad3(v: &[usize], fill: usize) -> R<[i64; 3]> {
    if v.len() > 3 {
        return unsupported(format!("{} spatial axes (at most 3)", v.len()));
    }
    let mut o = [fill as i64; 3];
    for (i, &x) in v.iter().enumerate() {
        o[3 - v.len() + i] = x as i64;
    }
    Ok(o)
}

/// The unary op code of elementwise.cu / conv.cu and its two float attributes.
pub(crate) fn unary_code(op: &Op) -> Option<(i32, f32, f32)> {
    Some(match op {
        Op::Relu => (0, 0.0, 0.0),
        Op::Sigmoid => (1, 0.0, 0.0),
        Op::Tanh => (2, 0.0, 0.0),
        Op::Erf => (3, 0.0, 0.0),
        Op::Sqrt => (4, 0.0, 0.0),
        Op::Gelu {
            approximate: GeluApproximation::None,
        } => (5, 0.0, 0.0),
        Op::Gelu {
            approximate: GeluApproximation::Tanh,
        } => (6, 0.0, 0.0),
        Op::HardSigmoid { alpha, beta } => (7, *alpha, *beta),
        Op::HardSwish => (8, 0.0, 0.0),
        Op::Clip { min, max } => (9, *min, *max),
        _ => return None,
    })
}

fn binary_code(op: &Op) -> Option<i32> {
    Some(match op {
        Op::Add => 0,
        Op::Sub => 1,
        Op::Mul => 2,
        Op::Div => 3,
        Op::Pow => 4,
        Op::Mod { fmod: true } => 5,
        Op::Mod { fmod: false } => 6,
        _ => return None,
    })
}

/// A node's tensors as the lowering sees them.
pub(crate) struct NodeIo<'a> {
    pub(crate) g: &'a ExecutionGraph,
    pub(crate) node: &'a OperatorNode,
    pub(crate) ins: Vec<DeviceSlice>,
    pub(crate) outs: Vec<DeviceSlice>,
    /// Conv only: an activation fused into the epilogue (op code, attributes); `outs[0]` is
    /// then the activation's output.
    pub(crate) act: Option<(i32, f32, f32)>,
    /// Scratch of the node's stream, at least [`scratch_bytes`] long: a split-K conv's
    /// partial sums. `None` when the node needs none.
    pub(crate) scratch: Option<DeviceSlice>,
    /// How many conv blocks fill the device.
    pub(crate) slots: ConvSlots,
}

/// The device's multiprocessors and how many blocks of each implicit-GEMM conv kernel one
/// of them holds at once: a full wave is `sms * per_sm`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvSlots {
    pub(crate) sms: usize,
    pub(crate) per_sm_64: usize,
    pub(crate) per_sm_128: usize,
}

/// How a conv splits its reduction (`(slices, slice length)`, the length a multiple of the
/// k-tile) when its output tiles (of every group) are less than one full wave of resident
/// blocks: the late 7x7 and 14x14 layers of ResNet, Inception, DenseNet, AlexNet's grouped
/// 12x12 convs, VGG's 28x28 ones. The slice count minimises waves x work per block (ties to
/// fewer slices), with at least 4 k-tiles per slice and at most 32 slices. `None` when no
/// split beats one slice.
fn conv_split(
    q: usize,
    cog: usize,
    r: usize,
    group: usize,
    slots: ConvSlots,
) -> Option<(usize, usize)> {
    const BK: usize = 16;
    let (k, bm, bn) = igemm_kernel(cog, q, r, slots.sms);
    let per_sm = if k == K::ConvIgemm128 {
        slots.per_sm_128
    } else {
        slots.per_sm_64
    };
    let wave = (slots.sms * per_sm).max(1);
    let tiles = q.div_ceil(bn) * cog.div_ceil(bm) * group;
    if tiles >= wave || group > 65535 / 32 {
        return None;
    }
    // Cost of s slices in units of one unsplit block's time: waves x (1 / s).
    let cost = |s: usize| (tiles * s).div_ceil(wave) as f64 / s as f64;
    let mut best = (1, cost(1));
    for s in 2..=(r / (4 * BK)).min(32) {
        if cost(s) < best.1 - 1e-9 {
            best = (s, cost(s));
        }
    }
    if best.0 < 2 {
        return None;
    }
    let len = r.div_ceil(best.0).div_ceil(BK) * BK;
    Some((r.div_ceil(len), len))
}

/// The implicit-GEMM conv kernel for `cog` output channels per group, `q` output positions
/// and reduction length `r`, and its block tile (channels, positions):
/// - 128 x 64 (8 x 4 outputs per thread, less traffic per FMA) for at least 128 channels
///   when those tiles alone fill the device or the reduction is long (each split slice
///   stays long);
/// - 64 x 64 otherwise: twice as many blocks, which measured faster on the H200 for short
///   reductions on small planes (AlexNet's 12x12 3x3 convs 0.23 against 0.32 ms,
///   ShuffleNet's 7x7 1x1 convs 0.029 against 0.046 ms with 128 x 64).
///
/// 128 x 128 tiles (8 x 8 per thread) were tried and measured slower on VGG-19's large
/// planes (112x112 128-channel 3x3: 0.31 against 0.24 ms), so are not offered.
fn igemm_kernel(cog: usize, q: usize, r: usize, sms: usize) -> (K, usize, usize) {
    if cog >= 128 && (q.div_ceil(64) * cog.div_ceil(128) >= sms || r >= 2048) {
        (K::ConvIgemm128, 128, 64)
    } else {
        (K::ConvIgemm, 64, 64)
    }
}

/// Scratch bytes `node` needs on its stream (0 for most): a split-K conv's partial sums.
pub(crate) fn scratch_bytes(g: &ExecutionGraph, node: &OperatorNode, slots: ConvSlots) -> u64 {
    let Op::Conv { group, .. } = &node.op else {
        return 0;
    };
    let group = (*group).max(1);
    let (Some(&x), Some(&w), Some(&y)) = (
        node.inputs.first(),
        node.inputs.get(1),
        node.outputs.first(),
    ) else {
        return 0;
    };
    let (xs, ws, ys) = (&g.tensor(x).shape, &g.tensor(w).shape, &g.tensor(y).shape);
    if xs.len() < 3 || ws.len() < 2 || ys.len() != xs.len() {
        return 0;
    }
    let q = xs[0] * ys[2..].iter().product::<usize>();
    let r: usize = ws[1..].iter().product();
    if group == ws[0] && Some(&group) == xs.get(1) {
        return 0; // depthwise: its own kernel, never split
    }
    match conv_split(q, ws[0] / group, r, group, slots) {
        Some((slices, _)) => (slices * ws[0] * q * 4) as u64,
        None => 0,
    }
}

impl NodeIo<'_> {
    fn shape(&self, i: usize) -> &[usize] {
        &self.g.tensor(self.node.inputs[i]).shape
    }
    fn dt(&self, i: usize) -> DType {
        self.g.tensor(self.node.inputs[i]).dtype
    }
    fn out_shape(&self, i: usize) -> &[usize] {
        &self.g.tensor(self.node.outputs[i]).shape
    }
    fn out_id(&self, i: usize) -> TensorId {
        self.node.outputs[i]
    }
    fn x(&self, i: usize) -> A {
        A::T(self.ins[i].clone())
    }
    fn y(&self, i: usize) -> A {
        A::T(self.outs[i].clone())
    }
}

fn need_inputs(io: &NodeIo<'_>, n: usize) -> R<()> {
    if io.ins.len() < n || io.outs.is_empty() {
        return unsupported(format!(
            "{} inputs and {} outputs (need {n} inputs)",
            io.ins.len(),
            io.outs.len()
        ));
    }
    Ok(())
}

fn need_f32(io: &NodeIo<'_>, i: usize) -> R<()> {
    if io.dt(i) != DType::F32 {
        return unsupported(format!("input {i} is {} (f32 only)", io.dt(i)));
    }
    Ok(())
}

/// The launches of one node. `alias` is the input sharing output 0's memory exactly (only
/// elementwise f32 ops may have one; the caller checked).
pub(crate) fn lower(io: &NodeIo<'_>, alias: Option<usize>, p: &mut Params) -> R<Vec<LaunchSpec>> {
    let op = &io.node.op;
    // The quantized ops and their u8/i8 tensors, and 16-bit float tensors (their casts), have host
    // kernels only.
    if let Some(t) = io
        .node
        .inputs
        .iter()
        .chain(&io.node.outputs)
        .map(|&t| io.g.tensor(t))
        .find(|t| {
            matches!(
                t.dtype,
                DType::U8 | DType::I8 | DType::F64 | DType::Narrow(_)
            ) || t.dtype.is_16bit_float()
        })
    {
        return unsupported(format!(
            "{} tensor '{}' (8-bit, narrow, 16-bit float and f64 tensors have host kernels only)",
            t.dtype, t.name
        ));
    }
    if let Some((code, a, b)) = unary_code(op) {
        need_inputs(io, 1)?;
        need_f32(io, 0)?;
        let n = io.g.tensor(io.out_id(0)).num_elements();
        if n == 0 {
            return Ok(Vec::new());
        }
        return Ok(vec![launch(
            K::UnaryF32,
            n,
            vec![
                io.x(0),
                io.y(0),
                u64_of(n),
                A::I32(code),
                A::F32(a),
                A::F32(b),
            ],
        )]);
    }
    if let Some(code) = binary_code(op) {
        need_inputs(io, 2)?;
        return lower_binary(io, code, p);
    }
    let out_n = io
        .outs
        .first()
        .map(|_| io.g.tensor(io.out_id(0)).num_elements())
        .unwrap_or(0);
    match op {
        Op::Sum => lower_sum(io, alias, p),
        Op::Equal => {
            need_inputs(io, 2)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let meta = bcast_meta(io.out_shape(0), &[io.shape(0), io.shape(1)])?;
            let m = p.i64s(&meta);
            Ok(vec![launch(
                K::EqualAny,
                out_n,
                vec![
                    io.x(0),
                    io.x(1),
                    io.y(0),
                    A::P(m),
                    A::I32(dtype_code(io.dt(0))),
                ],
            )])
        }
        Op::Where => {
            need_inputs(io, 3)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let meta = bcast_meta(io.out_shape(0), &[io.shape(0), io.shape(1), io.shape(2)])?;
            let m = p.i64s(&meta);
            let es = io.dt(1).size_bytes() as i32;
            Ok(vec![launch(
                K::WhereAny,
                out_n,
                vec![io.x(0), io.x(1), io.x(2), io.y(0), A::P(m), A::I32(es)],
            )])
        }
        Op::Cast { to, .. } => {
            need_inputs(io, 1)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            Ok(vec![launch(
                K::CastAny,
                out_n,
                vec![
                    io.x(0),
                    A::I32(dtype_code(io.dt(0))),
                    io.y(0),
                    A::I32(dtype_code(*to)),
                    u64_of(out_n),
                ],
            )])
        }
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            need_inputs(io, 1)?;
            let (src, dst) = (io.ins[0].clone(), io.outs[0].clone());
            if src.is_empty()
                || (src.offset() == dst.offset() && src.allocation_id() == dst.allocation_id())
            {
                return Ok(Vec::new());
            }
            Ok(vec![LaunchSpec::Copy { src, dst }])
        }
        Op::Expand { .. } => {
            need_inputs(io, 1)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let out = io.out_shape(0);
            let meta = copy_meta(out, 0, bcast_strides(io.shape(0), out)?, 0, contiguous(out));
            Ok(vec![copy_launch(io.x(0), io.y(0), meta, io.dt(0), p)])
        }
        Op::Transpose { perm } => {
            need_inputs(io, 1)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let xs = contiguous(io.shape(0));
            let ist: Vec<i64> = perm
                .iter()
                .map(|&a| xs.get(a).copied().unwrap_or(0))
                .collect();
            let out = io.out_shape(0);
            let meta = copy_meta(out, 0, ist, 0, contiguous(out));
            Ok(vec![copy_launch(io.x(0), io.y(0), meta, io.dt(0), p)])
        }
        Op::Slice { starts, steps } => {
            need_inputs(io, 1)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let xs = contiguous(io.shape(0));
            let base: i64 = starts.iter().zip(&xs).map(|(&s, &st)| s as i64 * st).sum();
            let ist: Vec<i64> = steps.iter().zip(&xs).map(|(&s, &st)| s * st).collect();
            let out = io.out_shape(0);
            let meta = copy_meta(out, base, ist, 0, contiguous(out));
            Ok(vec![copy_launch(io.x(0), io.y(0), meta, io.dt(0), p)])
        }
        Op::Concat { axis } => {
            need_inputs(io, 1)?;
            let out = io.out_shape(0).to_vec();
            let ost = contiguous(&out);
            let mut at = 0i64;
            let mut v = Vec::new();
            for i in 0..io.ins.len() {
                let s = io.shape(i).to_vec();
                let len = s.get(*axis).copied().unwrap_or(0) as i64;
                let (a, o) = (&io.ins[i], &io.outs[0]);
                // A part the plan stored at its place in the output has nothing to copy.
                let placed = crate::graph::concat_input_in_place(
                    io.g,
                    io.node,
                    i,
                    (a.offset(), a.len()),
                    (o.offset(), o.len()),
                );
                if s.iter().product::<usize>() > 0 && !placed {
                    let meta = copy_meta(&s, 0, contiguous(&s), at * ost[*axis], ost.clone());
                    v.push(copy_launch(io.x(i), io.y(0), meta, io.dt(i), p));
                }
                at += len;
            }
            Ok(v)
        }
        Op::Split { axis, splits } => {
            need_inputs(io, 1)?;
            let xs = contiguous(io.shape(0));
            let mut at = 0i64;
            let mut v = Vec::new();
            for (o, &len) in splits.iter().enumerate().take(io.outs.len()) {
                let s = io.out_shape(o).to_vec();
                if s.iter().product::<usize>() > 0 {
                    let meta = copy_meta(&s, at * xs[*axis], xs.clone(), 0, contiguous(&s));
                    v.push(copy_launch(io.x(0), io.y(o), meta, io.dt(0), p));
                }
                at += len as i64;
            }
            Ok(v)
        }
        Op::Gather { axis } => {
            need_inputs(io, 2)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let ds = io.shape(0);
            let idx64 = match io.dt(1) {
                DType::I64 => 1,
                DType::I32 => 0,
                other => return unsupported(format!("Gather indices of {other}")),
            };
            let outer: usize = ds[..*axis].iter().product();
            let inner: usize = ds[*axis + 1..].iter().product();
            let nidx: usize = io.shape(1).iter().product();
            let meta = [outer, ds[*axis], inner, nidx, out_n].map(|x| x as i64);
            let m = p.i64s(&meta);
            Ok(vec![launch(
                K::GatherAny,
                out_n,
                vec![
                    io.x(0),
                    io.x(1),
                    A::I32(idx64),
                    io.y(0),
                    A::P(m),
                    A::I32(io.dt(0).size_bytes() as i32),
                ],
            )])
        }
        Op::Pad { mode, pads, value } => {
            need_inputs(io, 1)?;
            need_f32(io, 0)?;
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let xs = io.shape(0);
            let r = xs.len();
            if pads.len() != 2 * r {
                return unsupported(format!("{} pads for rank {r}", pads.len()));
            }
            if xs.iter().product::<usize>() == 0 && *mode != PadMode::Constant {
                return unsupported("non-constant Pad of an empty input");
            }
            let out = io.out_shape(0);
            let mut meta = vec![r as i64, out_n as i64];
            meta.extend(i64v(out));
            meta.extend(i64v(xs));
            meta.extend(&pads[..r]);
            meta.extend(contiguous(xs));
            let m = p.i64s(&meta);
            let mode = match mode {
                PadMode::Constant => 0,
                PadMode::Reflect => 1,
                PadMode::Edge => 2,
                PadMode::Wrap => 3,
            };
            Ok(vec![launch(
                K::PadF32,
                out_n,
                vec![io.x(0), io.y(0), A::P(m), A::I32(mode), A::F32(*value)],
            )])
        }
        Op::Softmax { axis, flatten_2d } => {
            need_inputs(io, 1)?;
            need_f32(io, 0)?;
            let xs = io.shape(0);
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let (outer, n, inner) = if *flatten_2d {
                (
                    xs[..*axis].iter().product::<usize>(),
                    xs[*axis..].iter().product::<usize>(),
                    1,
                )
            } else {
                (
                    xs[..*axis].iter().product::<usize>(),
                    xs[*axis],
                    xs[*axis + 1..].iter().product::<usize>(),
                )
            };
            Ok(vec![softmax_launch(
                io.x(0),
                io.y(0),
                outer,
                n,
                inner,
                false,
            )])
        }
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes,
            ..
        } => {
            need_inputs(io, 1)?;
            need_f32(io, 0)?;
            lower_reduce_mean(io, axes, p)
        }
        Op::GlobalAveragePool => {
            need_inputs(io, 1)?;
            need_f32(io, 0)?;
            let xs = io.shape(0);
            if xs.len() < 2 || out_n == 0 {
                return unsupported_or_empty(out_n, "GlobalAveragePool of rank < 2");
            }
            let rows = xs[0] * xs[1];
            let cols: usize = xs[2..].iter().product();
            Ok(vec![reduce_rows(io.x(0), io.y(0), rows, cols)])
        }
        Op::BatchNormalization { epsilon } => {
            need_inputs(io, 5)?;
            need_f32(io, 0)?;
            let xs = io.shape(0);
            if xs.len() < 2 {
                return unsupported("BatchNormalization of rank < 2");
            }
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let inner: usize = xs[2..].iter().product();
            Ok(vec![launch(
                K::BatchNorm,
                out_n,
                vec![
                    io.x(0),
                    io.x(1),
                    io.x(2),
                    io.x(3),
                    io.x(4),
                    io.y(0),
                    A::U64(out_n as u64),
                    A::U64(xs[1] as u64),
                    A::U64(inner as u64),
                    A::F32(*epsilon),
                ],
            )])
        }
        Op::LayerNormalization { axis, epsilon } => {
            need_inputs(io, 2)?;
            need_f32(io, 0)?;
            let xs = io.shape(0);
            let rows: usize = xs[..*axis].iter().product();
            let cols: usize = xs[*axis..].iter().product();
            if rows == 0 || cols == 0 {
                return Ok(Vec::new());
            }
            let scale_len: usize = io.shape(1).iter().product();
            let (bias, bias_len, mut flags) = if io.ins.len() > 2 {
                (io.x(2), io.shape(2).iter().product::<usize>(), 1)
            } else {
                (io.x(1), 1, 0)
            };
            for (len, what) in [
                (scale_len, "Scale"),
                (if flags == 1 { bias_len } else { cols }, "B"),
            ] {
                if len != 1 && len != cols {
                    return unsupported(format!("{what} has {len} values for rows of {cols}"));
                }
            }
            let mean = if io.outs.len() > 1 {
                flags |= 2;
                io.y(1)
            } else {
                io.y(0)
            };
            let inv = if io.outs.len() > 2 {
                flags |= 4;
                io.y(2)
            } else {
                io.y(0)
            };
            Ok(vec![LaunchSpec::Kernel {
                k: K::LayerNorm,
                grid: Dim3::linear(rows.clamp(1, MAX_BLOCKS) as u32),
                block: Dim3::linear(BLOCK),
                args: vec![
                    io.x(0),
                    io.x(1),
                    bias,
                    io.y(0),
                    mean,
                    inv,
                    A::U64(rows as u64),
                    A::U64(cols as u64),
                    A::U64(scale_len as u64),
                    A::U64(bias_len as u64),
                    A::I32(flags),
                    A::F32(*epsilon),
                ],
            }])
        }
        Op::Lrn {
            size,
            alpha,
            beta,
            bias,
        } => {
            need_inputs(io, 1)?;
            need_f32(io, 0)?;
            let xs = io.shape(0);
            if xs.len() < 2 || *size == 0 {
                return unsupported("LRN needs rank >= 2 and size >= 1");
            }
            if out_n == 0 {
                return Ok(Vec::new());
            }
            let inner: usize = xs[2..].iter().product();
            Ok(vec![launch(
                K::Lrn,
                out_n,
                vec![
                    io.x(0),
                    io.y(0),
                    A::U64(out_n as u64),
                    A::U64(xs[1] as u64),
                    A::U64(inner as u64),
                    A::I32(*size as i32),
                    A::F32(*alpha),
                    A::F32(*beta),
                    A::F32(*bias),
                ],
            )])
        }
        Op::AveragePool {
            kernel_shape,
            strides,
            pads,
            dilations,
            count_include_pad,
            ..
        } => lower_pool(
            io,
            1,
            kernel_shape,
            strides,
            pads,
            dilations,
            *count_include_pad,
            p,
        ),
        Op::MaxPool {
            kernel_shape,
            strides,
            pads,
            dilations,
            ..
        } => lower_pool(io, 0, kernel_shape, strides, pads, dilations, false, p),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => lower_gemm(io, *alpha, *beta, *trans_a, *trans_b, p),
        Op::MatMul => lower_matmul(io, p),
        Op::Conv {
            kernel_shape,
            strides,
            pads,
            dilations,
            group,
        } => lower_conv(
            io,
            &ConvAttrs {
                kernel: kernel_shape,
                strides,
                pads,
                dilations,
                group: *group,
            },
            p,
        ),
        Op::ConvTranspose {
            kernel_shape,
            strides,
            pads,
            dilations,
            group,
            ..
        } => lower_conv_transpose(
            io,
            &ConvAttrs {
                kernel: kernel_shape,
                strides,
                pads,
                dilations,
                group: *group,
            },
            p,
        ),
        Op::Resize {
            mode,
            coordinate_transform,
            nearest_mode,
            scales,
            antialias,
            ..
        } => lower_resize(
            io,
            *mode,
            *coordinate_transform,
            *nearest_mode,
            scales,
            *antialias,
            p,
        ),
        other => unsupported(format!("no CUDA kernel for {}", other.onnx_name())),
    }
}

fn unsupported_or_empty(n: usize, why: &str) -> R<Vec<LaunchSpec>> {
    if n == 0 {
        Ok(Vec::new())
    } else {
        unsupported(why)
    }
}

fn copy_launch(x: A, y: A, meta: Vec<i64>, dt: DType, p: &mut Params) -> LaunchSpec {
    let n = meta[1] as usize;
    let m = p.i64s(&meta);
    launch(
        K::StridedCopy,
        n,
        vec![x, y, A::P(m), A::I32(dt.size_bytes() as i32)],
    )
}

fn softmax_launch(x: A, y: A, outer: usize, n: usize, inner: usize, log: bool) -> LaunchSpec {
    if inner == 1 {
        LaunchSpec::Kernel {
            k: K::SoftmaxRows,
            grid: Dim3::linear(outer.clamp(1, MAX_BLOCKS) as u32),
            block: Dim3::linear(BLOCK),
            args: vec![
                x,
                y,
                A::U64(outer as u64),
                A::U64(n as u64),
                A::I32(i32::from(log)),
            ],
        }
    } else {
        launch(
            K::SoftmaxStrided,
            outer * inner,
            vec![
                x,
                y,
                A::U64(outer as u64),
                A::U64(n as u64),
                A::U64(inner as u64),
                A::I32(i32::from(log)),
            ],
        )
    }
}

fn reduce_rows(x: A, y: A, rows: usize, cols: usize) -> LaunchSpec {
    LaunchSpec::Kernel {
        k: K::ReduceRows,
        grid: Dim3::linear(rows.clamp(1, MAX_BLOCKS) as u32),
        block: Dim3::linear(BLOCK),
        args: vec![
            x,
            y,
            A::U64(rows as u64),
            A::U64(cols as u64),
            A::I32(0),
            A::F32(cols as f32),
        ],
    }
}

fn lower_binary(io: &NodeIo<'_>, code: i32, p: &mut Params) -> R<Vec<LaunchSpec>> {
    let out = io.out_shape(0).to_vec();
    let n: usize = out.iter().product();
    if n == 0 {
        return Ok(Vec::new());
    }
    let (da, db) = (io.dt(0), io.dt(1));
    if matches!(io.node.op, Op::Pow) && da != db {
        if da == DType::Bool || db == DType::Bool {
            return unsupported("Pow on bool");
        }
        let meta = bcast_meta(&out, &[io.shape(0), io.shape(1)])?;
        let m = p.i64s(&meta);
        return Ok(vec![launch(
            K::PowMixed,
            n,
            vec![
                io.x(0),
                A::I32(dtype_code(da)),
                io.x(1),
                A::I32(dtype_code(db)),
                io.y(0),
                A::P(m),
            ],
        )]);
    }
    if da != db {
        return unsupported(format!("{} of {da} and {db}", io.node.op.onnx_name()));
    }
    if da == DType::F32 && io.shape(0) == out.as_slice() && io.shape(1) == out.as_slice() {
        return Ok(vec![launch(
            K::BinarySameF32,
            n,
            vec![io.x(0), io.x(1), io.y(0), u64_of(n), A::I32(code)],
        )]);
    }
    let k = match da {
        DType::F32 => K::BinaryF32,
        DType::I64 => K::BinaryI64,
        DType::I32 => K::BinaryI32,
        other => return unsupported(format!("arithmetic on {other}")),
    };
    let meta = bcast_meta(&out, &[io.shape(0), io.shape(1)])?;
    let m = p.i64s(&meta);
    Ok(vec![launch(
        k,
        n,
        vec![io.x(0), io.x(1), io.y(0), A::P(m), A::I32(code)],
    )])
}

fn lower_sum(io: &NodeIo<'_>, alias: Option<usize>, p: &mut Params) -> R<Vec<LaunchSpec>> {
    need_inputs(io, 1)?;
    for i in 0..io.ins.len() {
        need_f32(io, i)?;
    }
    let out = io.out_shape(0).to_vec();
    let n: usize = out.iter().product();
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    // out = x_first (broadcast), then out += x_i for the others, left to right; when an input
    // shares the output's memory it is already there.
    let first = alias.unwrap_or(0);
    if alias.is_none() {
        let meta = copy_meta(
            &out,
            0,
            bcast_strides(io.shape(0), &out)?,
            0,
            contiguous(&out),
        );
        v.push(copy_launch(io.x(0), io.y(0), meta, DType::F32, p));
    }
    for i in (0..io.ins.len()).filter(|&i| i != first) {
        let meta = bcast_meta(&out, &[&out, io.shape(i)])?;
        let m = p.i64s(&meta);
        v.push(launch(
            K::BinaryF32,
            n,
            vec![io.y(0), io.x(i), io.y(0), A::P(m), A::I32(0)],
        ));
    }
    Ok(v)
}

fn lower_reduce_mean(io: &NodeIo<'_>, axes: &[usize], p: &mut Params) -> R<Vec<LaunchSpec>> {
    let xs = io.shape(0).to_vec();
    let in_n: usize = xs.iter().product();
    let out_n = io.g.tensor(io.out_id(0)).num_elements();
    if out_n == 0 {
        return Ok(Vec::new());
    }
    if axes.is_empty() && out_n == in_n {
        // Identity (noop_with_empty_axes): a copy.
        let meta = copy_meta(&xs, 0, contiguous(&xs), 0, contiguous(&xs));
        return Ok(vec![copy_launch(io.x(0), io.y(0), meta, DType::F32, p)]);
    }
    let rank = xs.len();
    let mut mask = vec![axes.is_empty(); rank];
    for &a in axes {
        if a >= rank {
            return unsupported(format!("axis {a} for rank {rank}"));
        }
        mask[a] = true;
    }
    let red_n: usize = (0..rank).filter(|&d| mask[d]).map(|d| xs[d]).product();
    let first = mask.iter().position(|&r| r).unwrap_or(rank);
    if mask[first..].iter().all(|&r| r) {
        return Ok(vec![reduce_rows(io.x(0), io.y(0), out_n, red_n)]);
    }
    let st = contiguous(&xs);
    let (mut ks, mut kst, mut rs, mut rst) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for d in 0..rank {
        if mask[d] {
            rs.push(xs[d] as i64);
            rst.push(st[d]);
        } else {
            ks.push(xs[d] as i64);
            kst.push(st[d]);
        }
    }
    let mut meta = vec![out_n as i64, red_n as i64, ks.len() as i64, rs.len() as i64];
    meta.extend(ks);
    meta.extend(kst);
    meta.extend(rs);
    meta.extend(rst);
    let m = p.i64s(&meta);
    Ok(vec![launch(
        K::ReduceGeneral,
        out_n,
        vec![io.x(0), io.y(0), A::P(m), A::I32(0), A::F32(red_n as f32)],
    )])
}

#[allow(clippy::too_many_arguments)]
fn lower_pool(
    io: &NodeIo<'_>,
    kind: i32,
    kernel: &[usize],
    strides: &[usize],
    pads: &[usize],
    dilations: &[usize],
    count_include_pad: bool,
    p: &mut Params,
) -> R<Vec<LaunchSpec>> {
    need_inputs(io, 1)?;
    need_f32(io, 0)?;
    let xs = io.shape(0);
    let ys = io.out_shape(0);
    let nsp = kernel.len();
    if xs.len() != nsp + 2 || ys.len() != nsp + 2 || pads.len() != 2 * nsp {
        return unsupported(format!("pool over {nsp} axes of {xs:?}"));
    }
    let out_n: usize = ys.iter().product();
    if out_n == 0 {
        return Ok(Vec::new());
    }
    let mut meta = vec![(xs[0] * xs[1]) as i64];
    meta.extend(pad3(&xs[2..], 1)?);
    meta.extend(pad3(&ys[2..], 1)?);
    meta.extend(pad3(kernel, 1)?);
    meta.extend(pad3(strides, 1)?);
    meta.extend(pad3(dilations, 1)?);
    meta.extend(pad3(&pads[..nsp], 0)?);
    meta.extend(pad3(&pads[nsp..], 0)?);
    let m = p.i64s(&meta);
    Ok(vec![launch(
        K::Pool,
        out_n,
        vec![
            io.x(0),
            io.y(0),
            A::P(m),
            A::I32(kind),
            A::I32(i32::from(count_include_pad)),
        ],
    )])
}

/// One GEMM launch: `p = [M, N, K, batch, a_rs, a_cs, b_rs, b_cs, c_rs, c_cs, has_c, vec,
/// (a_off, b_off, c_off, y_off) per batch]`.
#[allow(clippy::too_many_arguments)]
fn gemm_launch(
    a: A,
    b: A,
    c: A,
    y: A,
    head: [i64; 12],
    offs: &[[i64; 4]],
    alpha: f32,
    beta: f32,
    p: &mut Params,
) -> LaunchSpec {
    let (m, n, batch) = (head[0], head[1], head[3]);
    let mut meta = head.to_vec();
    for o in offs {
        meta.extend(o);
    }
    if m == 1 {
        // One row: a GEMV over the same table (see gemm.cu). Its `vec` means float4 along k
        // of A and of B's columns: k contiguous in both, every column start 16-byte aligned.
        let (k, a_cs, b_rs, b_cs) = (head[2], head[5], head[6], head[7]);
        let aligned = |x: &A| matches!(x, A::T(s) if aligned16(s));
        meta[11] = i64::from(
            a_cs == 1
                && b_rs == 1
                && k % 4 == 0
                && b_cs % 4 == 0
                && offs.iter().all(|o| o[0] % 4 == 0 && o[1] % 4 == 0)
                && aligned(&a)
                && aligned(&b),
        );
        let cols = if b_rs == 1 { 8 } else { 32 };
        let pi = p.i64s(&meta);
        return LaunchSpec::Kernel {
            k: K::Sgemv,
            grid: Dim3 {
                x: u32::try_from((n + cols - 1) / cols)
                    .unwrap_or(u32::MAX)
                    .max(1),
                y: 1,
                z: u32::try_from(batch).unwrap_or(65535).clamp(1, 65535),
            },
            block: Dim3::linear(256),
            args: vec![a, b, c, y, A::P(pi), A::F32(alpha), A::F32(beta)],
        };
    }
    let pi = p.i64s(&meta);
    LaunchSpec::Kernel {
        k: K::Sgemm,
        grid: Dim3 {
            x: u32::try_from((n + 63) / 64).unwrap_or(u32::MAX).max(1),
            y: u32::try_from((m + 63) / 64)
                .unwrap_or(65535)
                .clamp(1, 65535),
            z: u32::try_from(batch).unwrap_or(65535).clamp(1, 65535),
        },
        block: Dim3::linear(256),
        args: vec![a, b, c, y, A::P(pi), A::F32(alpha), A::F32(beta)],
    }
}

fn aligned16(s: &DeviceSlice) -> bool {
    s.offset().is_multiple_of(16)
}

fn lower_gemm(
    io: &NodeIo<'_>,
    alpha: f32,
    beta: f32,
    ta: bool,
    tb: bool,
    p: &mut Params,
) -> R<Vec<LaunchSpec>> {
    need_inputs(io, 2)?;
    need_f32(io, 0)?;
    need_f32(io, 1)?;
    let (&[ar, ac], &[br, bc]) = (io.shape(0), io.shape(1)) else {
        return unsupported("Gemm operands must be 2-D");
    };
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let n = if tb { br } else { bc };
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let (a_rs, a_cs) = if ta { (1, m as i64) } else { (k as i64, 1) };
    let (b_rs, b_cs) = if tb { (1, k as i64) } else { (n as i64, 1) };
    let has_c = io.ins.len() > 2 && beta != 0.0;
    let (c_rs, c_cs) = if has_c {
        let st = bcast_strides(io.shape(2), &[m, n])?;
        (st[0], st[1])
    } else {
        (0, 0)
    };
    let vec = !ta
        && !tb
        && k.is_multiple_of(4)
        && n.is_multiple_of(4)
        && aligned16(&io.ins[0])
        && aligned16(&io.ins[1]);
    let head = [
        m as i64,
        n as i64,
        k as i64,
        1,
        a_rs,
        a_cs,
        b_rs,
        b_cs,
        c_rs,
        c_cs,
        i64::from(has_c),
        i64::from(vec),
    ];
    let c = if has_c { io.x(2) } else { io.y(0) };
    Ok(vec![gemm_launch(
        io.x(0),
        io.x(1),
        c,
        io.y(0),
        head,
        &[[0; 4]],
        alpha,
        if has_c { beta } else { 0.0 },
        p,
    )])
}

fn lower_matmul(io: &NodeIo<'_>, p: &mut Params) -> R<Vec<LaunchSpec>> {
    need_inputs(io, 2)?;
    need_f32(io, 0)?;
    need_f32(io, 1)?;
    let (sa, sb) = (io.shape(0).to_vec(), io.shape(1).to_vec());
    if sa.is_empty() || sb.is_empty() {
        return unsupported("MatMul of a scalar");
    }
    let a2 = if sa.len() == 1 {
        vec![1, sa[0]]
    } else {
        sa.clone()
    };
    let b2 = if sb.len() == 1 {
        vec![sb[0], 1]
    } else {
        sb.clone()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (kb, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != kb {
        return unsupported(format!("MatMul inner extents {k} and {kb}"));
    }
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let rank = ab.len().max(bb.len());
    let mut batch_shape = vec![1usize; rank];
    for d in 0..rank {
        let x = if d + ab.len() >= rank {
            ab[d + ab.len() - rank]
        } else {
            1
        };
        let y = if d + bb.len() >= rank {
            bb[d + bb.len() - rank]
        } else {
            1
        };
        batch_shape[d] = if x == 1 {
            y
        } else if y == 1 || x == y {
            x
        } else {
            return unsupported(format!("MatMul batch axes {ab:?} and {bb:?}"));
        };
    }
    let batch: usize = batch_shape.iter().product();
    if batch * m * n == 0 {
        return Ok(Vec::new());
    }
    let vec_ok = |rows_mult4: bool| {
        k.is_multiple_of(4)
            && n.is_multiple_of(4)
            && rows_mult4
            && aligned16(&io.ins[0])
            && aligned16(&io.ins[1])
    };
    let b_batch: usize = bb.iter().product();
    if b_batch == 1 {
        // Fold the left batch into the rows of one GEMM ([batch * M, K] x [K, N]).
        let rows = batch * m;
        let head = [
            rows as i64,
            n as i64,
            k as i64,
            1,
            k as i64,
            1,
            n as i64,
            1,
            0,
            0,
            0,
            i64::from(vec_ok(true)),
        ];
        return Ok(vec![gemm_launch(
            io.x(0),
            io.x(1),
            io.y(0),
            io.y(0),
            head,
            &[[0; 4]],
            1.0,
            0.0,
            p,
        )]);
    }
    let a_st = bcast_strides(ab, &batch_shape)?;
    let b_st = bcast_strides(bb, &batch_shape)?;
    let mut offs = Vec::with_capacity(batch);
    let mut idx = vec![0usize; rank];
    for z in 0..batch {
        let mut ao = 0i64;
        let mut bo = 0i64;
        for d in 0..rank {
            ao += idx[d] as i64 * a_st[d];
            bo += idx[d] as i64 * b_st[d];
        }
        offs.push([
            ao * (m * k) as i64,
            bo * (k * n) as i64,
            0,
            (z * m * n) as i64,
        ]);
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < batch_shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    let head = [
        m as i64,
        n as i64,
        k as i64,
        batch as i64,
        k as i64,
        1,
        n as i64,
        1,
        0,
        0,
        0,
        i64::from(vec_ok(true)),
    ];
    Ok(vec![gemm_launch(
        io.x(0),
        io.x(1),
        io.y(0),
        io.y(0),
        head,
        &offs,
        1.0,
        0.0,
        p,
    )])
}

/// Conv geometry `[N, C_in, C_out, group, in3, out3, k3, s3, d3, pb3, has_bias, vec_a]`.
fn conv_geometry(
    xs: &[usize],
    ys: &[usize],
    c_out: usize,
    c: &ConvAttrs<'_>,
    has_bias: bool,
    vec_a: bool,
    split_len: usize,
) -> R<Vec<i64>> {
    let nsp = c.kernel.len();
    if xs.len() != nsp + 2 || ys.len() != nsp + 2 || c.pads.len() != 2 * nsp || c.group == 0 {
        return unsupported(format!("convolution over {nsp} axes of {xs:?}"));
    }
    let mut g = vec![xs[0] as i64, xs[1] as i64, c_out as i64, c.group as i64];
    g.extend(pad3(&xs[2..], 1)?);
    g.extend(pad3(&ys[2..], 1)?);
    g.extend(pad3(c.kernel, 1)?);
    g.extend(pad3(c.strides, 1)?);
    g.extend(pad3(c.dilations, 1)?);
    g.extend(pad3(&c.pads[..nsp], 0)?);
    g.push(i64::from(has_bias));
    g.push(i64::from(vec_a));
    // Split-K slice length; 0 = none.
    g.push(split_len as i64);
    Ok(g)
}

/// A Conv's or ConvTranspose's attributes, as the lowering reads them.
struct ConvAttrs<'a> {
    kernel: &'a [usize],
    strides: &'a [usize],
    pads: &'a [usize],
    dilations: &'a [usize],
    group: usize,
}

/// A convolution's x, w and y shapes and y's element count.
struct ConvShapes<'a> {
    xs: &'a [usize],
    ws: &'a [usize],
    ys: &'a [usize],
    out_n: usize,
}

/// What both convolutions check first: x and w are present and f32. `None` when y is empty
/// (nothing to launch).
fn conv_shapes<'a>(io: &'a NodeIo<'_>) -> R<Option<ConvShapes<'a>>> {
    need_inputs(io, 2)?;
    need_f32(io, 0)?;
    need_f32(io, 1)?;
    let (xs, ws, ys) = (io.shape(0), io.shape(1), io.out_shape(0));
    let out_n: usize = ys.iter().product();
    Ok((out_n != 0).then_some(ConvShapes { xs, ws, ys, out_n }))
}

/// The geometry table (in `p`) and bias argument both convolutions pass; with no bias, w
/// stands in (the kernels read it only when the table says there is one). `split_len`:
/// the split-K slice length of `conv_igemm*_f32`, 0 for none.
#[allow(clippy::too_many_arguments)]
fn conv_params(
    io: &NodeIo<'_>,
    xs: &[usize],
    ys: &[usize],
    c_out: usize,
    c: &ConvAttrs<'_>,
    vec_a: bool,
    split_len: usize,
    p: &mut Params,
) -> R<(A, A)> {
    let has_bias = io.ins.len() > 2;
    let geo = conv_geometry(xs, ys, c_out, c, has_bias, vec_a, split_len)?;
    let m = p.i64s(&geo);
    let bias = if has_bias { io.x(2) } else { io.x(1) };
    Ok((A::P(m), bias))
}

fn lower_conv(io: &NodeIo<'_>, c: &ConvAttrs<'_>, p: &mut Params) -> R<Vec<LaunchSpec>> {
    let Some(ConvShapes { xs, ws, ys, out_n }) = conv_shapes(io)? else {
        return Ok(Vec::new());
    };
    let group = c.group;
    let c_out = ws[0];
    let c_in = xs.get(1).copied().unwrap_or(0);
    if group == 0 || !c_in.is_multiple_of(group) || !c_out.is_multiple_of(group) {
        return unsupported(format!("{c_in} -> {c_out} channels in {group} groups"));
    }
    // conv_igemm_f32 indexes in 32 bits.
    for (what, shape) in [("input", xs), ("weight", ws), ("output", ys)] {
        if shape.iter().product::<usize>() > i32::MAX as usize {
            return unsupported(format!(
                "a convolution {what} of {shape:?} (2^31 elements or more)"
            ));
        }
    }
    let r: usize = ws[1..].iter().product();
    let vec_a = r.is_multiple_of(4) && aligned16(&io.ins[1]);
    let act = io.act.unwrap_or((ACT_NONE, 0.0, 0.0));
    let q = xs[0] * ys[2..].iter().product::<usize>();
    let cog = c_out / group;
    let (igemm, bm, bn) = igemm_kernel(cog, q, r, io.slots.sms);
    let depthwise = group == c_in && group == c_out;
    let split = conv_split(q, cog, r, group, io.slots)
        .filter(|_| !depthwise)
        .zip(io.scratch.clone())
        .filter(|((slices, _), ws)| ws.len() >= slices * c_out * q * 4);
    let (m, bias) = conv_params(
        io,
        xs,
        ys,
        c_out,
        c,
        vec_a,
        split.as_ref().map_or(0, |((_, len), _)| *len),
        p,
    )?;
    // Every conv kernel's arguments: x, w, bias, its output, the table, the activation.
    let args = |out: A, (code, a, b): (i32, f32, f32)| {
        vec![
            io.x(0),
            io.x(1),
            bias.clone(),
            out,
            m.clone(),
            A::I32(code),
            A::F32(a),
            A::F32(b),
        ]
    };
    if depthwise {
        return Ok(vec![launch(K::ConvDepthwise, out_n, args(io.y(0), act))]);
    }
    let grid = |z: usize| Dim3 {
        x: u32::try_from(q.div_ceil(bn)).unwrap_or(u32::MAX).max(1),
        y: u32::try_from(cog.div_ceil(bm))
            .unwrap_or(65535)
            .clamp(1, 65535),
        z: u32::try_from(z).unwrap_or(65535).clamp(1, 65535),
    };
    let Some(((slices, _), ws)) = split else {
        return Ok(vec![LaunchSpec::Kernel {
            k: igemm,
            grid: grid(group),
            block: Dim3::linear(256),
            args: args(io.y(0), act),
        }]);
    };
    // Partial tiles into the scratch, then one ordered reduction (bias, activation).
    let rp = p.i64s(&[
        slices as i64,
        c_out as i64,
        q as i64,
        ys[2..].iter().product::<usize>() as i64,
        i64::from(io.ins.len() > 2),
    ]);
    let ws = A::T(ws);
    Ok(vec![
        LaunchSpec::Kernel {
            k: igemm,
            grid: grid(group * slices),
            block: Dim3::linear(256),
            args: args(ws.clone(), (ACT_NONE, 0.0, 0.0)),
        },
        launch(
            K::ConvSplitReduce,
            c_out * q,
            vec![
                ws,
                bias.clone(),
                io.y(0),
                A::P(rp),
                A::I32(act.0),
                A::F32(act.1),
                A::F32(act.2),
            ],
        ),
    ])
}

fn lower_conv_transpose(io: &NodeIo<'_>, c: &ConvAttrs<'_>, p: &mut Params) -> R<Vec<LaunchSpec>> {
    let Some(ConvShapes { xs, ws, ys, out_n }) = conv_shapes(io)? else {
        return Ok(Vec::new());
    };
    let group = c.group;
    let c_out = ws.get(1).copied().unwrap_or(0) * group;
    let c_in = xs.get(1).copied().unwrap_or(0);
    if group == 0 || !c_in.is_multiple_of(group) || ys.get(1) != Some(&c_out) {
        return unsupported(format!(
            "ConvTranspose {c_in} -> {c_out} channels in {group} groups"
        ));
    }
    let (m, bias) = conv_params(io, xs, ys, c_out, c, false, 0, p)?;
    Ok(vec![launch(
        K::ConvTranspose,
        out_n,
        vec![io.x(0), io.x(1), bias, io.y(0), m],
    )])
}

/// The host kernels' coordinate mapping (one definition for both backends); `None` for
/// `tf_crop_and_resize`.
fn original_coord(
    ct: CoordinateTransform,
    o: usize,
    scale: f32,
    in_len: usize,
    out_len: usize,
) -> Option<f32> {
    crate::ops::resize_coord(ct)
        .map(|c| crate::kernels::original_coord(c, o, scale, in_len, out_len))
}

/// The host kernels' nearest rounding.
fn nearest_index(mode: NearestMode, x: f32, in_len: usize) -> usize {
    crate::kernels::nearest_index(crate::ops::resize_nearest(mode), x, in_len)
}

#[allow(clippy::too_many_arguments)]
fn lower_resize(
    io: &NodeIo<'_>,
    mode: ResizeMode,
    ct: CoordinateTransform,
    nm: NearestMode,
    scales: &[f32],
    antialias: bool,
    p: &mut Params,
) -> R<Vec<LaunchSpec>> {
    need_inputs(io, 1)?;
    need_f32(io, 0)?;
    let (xs, ys) = (io.shape(0).to_vec(), io.out_shape(0).to_vec());
    let rank = xs.len();
    let out_n: usize = ys.iter().product();
    if out_n == 0 {
        return Ok(Vec::new());
    }
    if rank == 0 || ys.len() != rank || scales.len() != rank || xs.iter().product::<usize>() == 0 {
        return unsupported(format!("Resize of {xs:?} to {ys:?}"));
    }
    match mode {
        ResizeMode::Nearest => {
            let ist = contiguous(&xs);
            let mut meta = vec![rank as i64, out_n as i64];
            meta.extend(i64v(&ys));
            meta.extend(&ist);
            let mut at = (2 + 3 * rank) as i64;
            for &len in &ys {
                meta.push(at);
                at += len as i64;
            }
            for d in 0..rank {
                for o in 0..ys[d] {
                    let Some(c) = original_coord(ct, o, scales[d], xs[d], ys[d]) else {
                        return unsupported("nearest Resize with tf_crop_and_resize");
                    };
                    meta.push(nearest_index(nm, c, xs[d]) as i64);
                }
            }
            let m = p.i64s(&meta);
            Ok(vec![launch(
                K::ResizeNearest,
                out_n,
                vec![io.x(0), io.y(0), A::P(m)],
            )])
        }
        ResizeMode::Linear => {
            let lin = if rank >= 4 { 2 } else { 1 };
            let fast = (0..rank - lin).all(|d| xs[d] == ys[d] && scales[d] == 1.0);
            if antialias || !fast || ct == CoordinateTransform::TfCropAndResize {
                return unsupported(
                    "linear Resize beyond the trailing spatial axes, with antialias or tf_crop_and_resize",
                );
            }
            let coeffs = |d: usize| -> R<Vec<(i64, i64, f32)>> {
                (0..ys[d])
                    .map(|o| {
                        let Some(c) = original_coord(ct, o, scales[d], xs[d], ys[d]) else {
                            return unsupported("tf_crop_and_resize");
                        };
                        let x0 = c.floor();
                        let f = c - x0;
                        let n = xs[d] as i64 - 1;
                        Ok(((x0 as i64).clamp(0, n), (x0 as i64 + 1).clamp(0, n), f))
                    })
                    .collect()
            };
            let (ih, oh, hc) = if lin == 2 {
                (xs[rank - 2], ys[rank - 2], coeffs(rank - 2)?)
            } else {
                (1, 1, vec![(0, 0, 0.0)])
            };
            let (iw, ow, wc) = (xs[rank - 1], ys[rank - 1], coeffs(rank - 1)?);
            let planes: usize = xs[..rank - lin].iter().product();
            let mut meta = vec![planes as i64, ih as i64, iw as i64, oh as i64, ow as i64];
            meta.extend(hc.iter().map(|c| c.0));
            meta.extend(hc.iter().map(|c| c.1));
            meta.extend(wc.iter().map(|c| c.0));
            meta.extend(wc.iter().map(|c| c.1));
            let mut f: Vec<f32> = hc.iter().map(|c| c.2).collect();
            f.extend(wc.iter().map(|c| c.2));
            let (mi, fi) = (p.i64s(&meta), p.f32s(&f));
            Ok(vec![launch(
                K::ResizeLinear,
                out_n,
                vec![io.x(0), io.y(0), A::P(mi), A::P(fi)],
            )])
        }
        ResizeMode::Cubic => unsupported("cubic Resize"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalesce_merges_contiguous_axes_and_drops_ones() {
        let out = [2usize, 1, 3, 4];
        let a = contiguous(&out);
        let b = bcast_strides(&[3, 1], &out).unwrap();
        let (sh, st) = coalesce(&out, &[a, b]);
        assert_eq!(sh, vec![2, 3, 4]);
        assert_eq!(st[0], vec![12, 4, 1]);
        assert_eq!(st[1], vec![0, 1, 0]);
        let (sh, st) = coalesce(&out, &[contiguous(&out), contiguous(&out)]);
        assert_eq!(sh, vec![24]);
        assert_eq!(st, vec![vec![1], vec![1]]);
    }

    #[test]
    fn broadcast_strides_follow_numpy() {
        assert_eq!(bcast_strides(&[4], &[2, 3, 4]).unwrap(), vec![0, 0, 1]);
        assert_eq!(bcast_strides(&[3, 1], &[2, 3, 4]).unwrap(), vec![0, 1, 0]);
        assert_eq!(bcast_strides(&[], &[2]).unwrap(), vec![0]);
        assert!(bcast_strides(&[3], &[4]).is_err());
    }

    #[test]
    fn bcast_meta_layout() {
        let m = bcast_meta(&[2, 3], &[&[2, 3], &[3]]).unwrap();
        // rank 2 (no merge possible for the second operand), n 6, shape, strides a, strides b.
        assert_eq!(m, vec![2, 6, 2, 3, 3, 1, 0, 1]);
    }

    #[test]
    fn nearest_rounding_matches_onnx() {
        assert_eq!(nearest_index(NearestMode::RoundPreferFloor, 1.5, 4), 1);
        assert_eq!(nearest_index(NearestMode::RoundPreferCeil, 1.5, 4), 2);
        assert_eq!(nearest_index(NearestMode::Floor, 2.9, 4), 2);
        assert_eq!(nearest_index(NearestMode::Ceil, 3.1, 4), 3);
        assert_eq!(nearest_index(NearestMode::Floor, -0.5, 4), 0);
    }
}
