//! Normalisation and reductions: BatchNormalization (inference), LayerNormalization,
//! Softmax / LogSoftmax (opset 13 single-axis and opset < 13 flatten-at-axis semantics), and
//! ReduceMean/Sum/Max/Min. Axes are non-negative (callers resolve negative ONNX axes by
//! adding the rank). Each output is a fixed-order reduction, so results do not depend on
//! `threads`.

use super::broadcast::simd_dispatch;
use super::elementwise::{check_unary, exp_f32, with_unary, UnaryMap, UnaryOp};
use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::par::par_chunks;

/// BatchNormalization folded to a per-channel affine `y = x * a[c] + b[c]` with
/// `a = scale / sqrt(var + epsilon)` and `b = bias - mean * a` (also what a loader uses to
/// fold BN into a preceding Conv).
///
/// # Errors
/// Parameter lengths differ.
pub fn batch_norm_coefficients(
    scale: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
) -> KernelResult<(Vec<f32>, Vec<f32>)> {
    const OP: &str = "BatchNormalization";
    let c = scale.len();
    check_len(OP, "B", bias.len(), c)?;
    check_len(OP, "mean", mean.len(), c)?;
    check_len(OP, "var", var.len(), c)?;
    let a: Vec<f32> = scale
        .iter()
        .zip(var)
        .map(|(&s, &v)| s / (v + epsilon).sqrt())
        .collect();
    let b = bias
        .iter()
        .zip(mean)
        .zip(&a)
        .map(|((&bi, &m), &ai)| bi - m * ai)
        .collect();
    Ok((a, b))
}

/// ONNX `BatchNormalization` in inference mode (`training_mode = 0`, default
/// `epsilon = 1e-5`): `x`/`out` `[N, C, ...]` (or `[N, C]`), parameters `[C]`.
///
/// # Errors
/// Shape or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &[f32],
    x_shape: &[usize],
    scale: &[f32],
    bias: &[f32],
    mean: &[f32],
    var: &[f32],
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "BatchNormalization";
    if x_shape.len() < 2 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![scale.len()],
        });
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), x.len())?;
    let c = x_shape[1];
    check_len(OP, "scale", scale.len(), c)?;
    let (a, b) = batch_norm_coefficients(scale, bias, mean, var, epsilon)?;
    channel_affine(x, x_shape, &a, &b, out, threads)
}

/// `out = x * a[c] + b[c]` per channel of `[N, C, ...]`.
///
/// # Errors
/// Length mismatches.
pub fn channel_affine(
    x: &[f32],
    x_shape: &[usize],
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    channel_affine_act(x, x_shape, a, b, None, out, threads)
}

/// [`channel_affine`] followed by an elementwise activation, applied to each plane while it
/// is still in cache (a BatchNormalization with its Relu fused: one pass, not two).
///
/// # Errors
/// Shape or length mismatches.
pub fn channel_affine_act(
    x: &[f32],
    x_shape: &[usize],
    a: &[f32],
    b: &[f32],
    act: Option<super::UnaryOp>,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "ChannelAffine";
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), x.len())?;
    let c = x_shape.get(1).copied().unwrap_or(1);
    check_len(OP, "a", a.len(), c)?;
    check_len(OP, "b", b.len(), c)?;
    let ip: usize = x_shape.get(2..).map_or(1, |s| s.iter().product());
    if ip == 0 || c == 0 {
        return Ok(());
    }
    let act = act.unwrap_or(UnaryOp::Identity);
    check_unary(act)?;
    par_chunks(out, ip, threads, (1 << 15) / ip.max(1), |first, piece| {
        // One dispatch per piece, not per plane (7x7 planes are 49 elements): the affine and
        // the activation in one vectorised pass while the plane is in registers.
        simd_dispatch(
            #[inline(always)]
            || {
                for (i, plane) in piece.chunks_mut(ip).enumerate() {
                    let p = first + i;
                    let src = &x[p * ip..(p + 1) * ip];
                    with_unary(act, MapAffine(src, plane, a[p % c], b[p % c]));
                }
            },
        );
    });
    Ok(())
}

/// `out[i] = f(x[i] * a + b)` for [`with_unary`]: a multiply and an add (not a fused
/// multiply-add, so the result is the same under every instruction set).
struct MapAffine<'a>(&'a [f32], &'a mut [f32], f32, f32);

impl UnaryMap for MapAffine<'_> {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32 + Copy + Sync) {
        let (a, b) = (self.2, self.3);
        for (o, &v) in self.1.iter_mut().zip(self.0) {
            *o = f(v * a + b);
        }
    }
}

/// ONNX `LayerNormalization` (opset 17): normalises over axes `[axis, rank)`:
/// `y = (x - mean) / sqrt(var + epsilon) * scale + bias`, with `scale`/`bias` holding either
/// the normalised extent (`prod(shape[axis..])`) or a single element. Statistics accumulate in
/// f64. Default ONNX `axis = -1`, `epsilon = 1e-5`.
///
/// # Errors
/// Axis out of range or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm(
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    scale: &[f32],
    bias: Option<&[f32]>,
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "LayerNormalization";
    let inner = check_rows(OP, x, x_shape, axis)?;
    check_len(OP, "Y", out.len(), x.len())?;
    let param = |p: &[f32], what| {
        if p.len() == inner || p.len() == 1 {
            Ok(())
        } else {
            check_len(OP, what, p.len(), inner)
        }
    };
    param(scale, "Scale")?;
    if let Some(b) = bias {
        param(b, "B")?;
    }
    if inner == 0 {
        return Ok(());
    }
    // Scale and bias at full row length once, so the per-element loop is a plain zip.
    let full = |p: &[f32]| -> Vec<f32> {
        if p.len() == 1 {
            vec![p[0]; inner]
        } else {
            p.to_vec()
        }
    };
    let scale = full(scale);
    let bias = bias.map_or_else(|| vec![0.0; inner], full);
    each_row(
        x,
        inner,
        out,
        threads,
        #[inline(always)]
        |xr, row| {
            let (mean, inv) = row_stats(xr, epsilon);
            for (((o, &v), &s), &b) in row.iter_mut().zip(xr).zip(&scale).zip(&bias) {
                *o = (v - mean) * inv * s + b;
            }
        },
    );
    Ok(())
}

/// Checks a row normalization's axis and input length; returns the row length
/// (`prod(x_shape[axis..])`).
fn check_rows(op: &'static str, x: &[f32], x_shape: &[usize], axis: usize) -> KernelResult<usize> {
    if axis >= x_shape.len() {
        return Err(invalid(
            op,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    }
    check_len(op, "X", x.len(), numel(op, x_shape)?)?;
    Ok(x_shape[axis..].iter().product())
}

/// `f(x_row, out_row)` for every row of `inner` elements, rows split across `threads`
/// (`f` is inlined into the dispatched loop, so it runs with the widest vectors).
#[inline(always)]
fn each_row(
    x: &[f32],
    inner: usize,
    out: &mut [f32],
    threads: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) {
    par_chunks(out, inner, threads, (1 << 14) / inner, |first, piece| {
        // Under pulp's dispatch, so the f64 lanes and the row pass use the widest vectors.
        simd_dispatch(
            #[inline(always)]
            || {
                for (i, row) in piece.chunks_mut(inner).enumerate() {
                    f(&x[(first + i) * inner..(first + i + 1) * inner], row);
                }
            },
        );
    });
}

/// ONNX RMSNormalization (opset 23): each row over axes `[axis, rank)` divided by its root
/// mean square (`sqrt(mean(x^2) + epsilon)`, the mean of squares accumulated in f64 in a fixed
/// order), times `scale` (shape `scale_shape`, broadcast to the row's shape
/// `x_shape[axis..]`).
///
/// # Errors
/// Axis out of range, a scale that does not broadcast to a row, or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn rms_norm(
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    scale: &[f32],
    scale_shape: &[usize],
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "RMSNormalization";
    check_rows(OP, x, x_shape, axis)?;
    check_len(OP, "Y", out.len(), x.len())?;
    check_len(OP, "scale", scale.len(), numel(OP, scale_shape)?)?;
    let row_shape = &x_shape[axis..];
    let scale = broadcast_to_row(scale, scale_shape, row_shape).ok_or_else(|| {
        invalid(
            OP,
            "scale",
            format!("shape {scale_shape:?} does not broadcast to {row_shape:?}"),
        )
    })?;
    let inner = scale.len();
    if inner == 0 {
        return Ok(());
    }
    each_row(
        x,
        inner,
        out,
        threads,
        #[inline(always)]
        |xr, row| {
            let ms = lane_sum(xr, |v| v * v) / inner as f64;
            let inv = (1.0 / (ms + f64::from(epsilon)).sqrt()) as f32;
            for ((o, &v), &s) in row.iter_mut().zip(xr).zip(&scale) {
                *o = v * inv * s;
            }
        },
    );
    Ok(())
}

/// `p` (shape `p_shape`) repeated out to `row` (numpy broadcasting, `p` no longer than
/// `row`), or `None` when it does not broadcast.
fn broadcast_to_row(p: &[f32], p_shape: &[usize], row: &[usize]) -> Option<Vec<f32>> {
    // Leading 1s of `p` beyond the row's rank change nothing.
    let skip = p_shape.len().saturating_sub(row.len());
    if p_shape[..skip].iter().any(|&d| d != 1) {
        return None;
    }
    let p_shape = &p_shape[skip..];
    let lead = row.len() - p_shape.len();
    if p_shape
        .iter()
        .zip(&row[lead..])
        .any(|(&a, &b)| a != b && a != 1)
    {
        return None;
    }
    let total: usize = row.iter().product();
    let mut out = Vec::with_capacity(total);
    for flat in 0..total {
        let (mut rem, mut src, mut stride) = (flat, 0, 1);
        for (k, &d) in row.iter().enumerate().rev() {
            let idx = rem % d;
            rem /= d;
            if k >= lead {
                let pd = p_shape[k - lead];
                if pd != 1 {
                    src += idx * stride;
                }
                stride *= pd;
            }
        }
        out.push(p[src]);
    }
    Some(out)
}

/// Independent f64 partial sums of [`row_stats`]: element `i` goes to lane `i % STAT_LANES`.
const STAT_LANES: usize = 8;

/// Mean and `1 / sqrt(var + epsilon)` of one normalised row, accumulated in f64: each sum in
/// `STAT_LANES` partial sums in element order, then a fixed tree, so the order (and the
/// bits) are the same on every instruction set, and the adds are not one dependent chain (a
/// single f64 chain made LayerNormalization on 128 x 256 cost 63 us, 6 cycles an element).
#[inline(always)]
fn row_stats(xr: &[f32], epsilon: f32) -> (f32, f32) {
    let n = xr.len() as f64;
    let mean = lane_sum(xr, |v| v) / n;
    let var = lane_sum(xr, |v| (v - mean) * (v - mean)) / n;
    (
        mean as f32,
        (1.0 / (var + f64::from(epsilon)).sqrt()) as f32,
    )
}

/// `sum of f(x)` over `xr` in f64, in `STAT_LANES` partial sums and a fixed tree.
#[inline(always)]
pub(super) fn lane_sum(xr: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    tree_sum::<f64, STAT_LANES>(xr, 0.0, |v| f(f64::from(v)))
}

/// `sum of f(x)` over `x` in `N` partial sums (element `i` into sum `i % N`, in element
/// order), then a fixed tree: the same order for a given length every time, whatever the
/// vector width, and not one chain of dependent adds. `N` a power of two.
#[inline(always)]
fn tree_sum<T: Copy + core::ops::AddAssign, const N: usize>(
    x: &[f32],
    zero: T,
    f: impl Fn(f32) -> T,
) -> T {
    let mut acc = [zero; N];
    let mut chunks = x.chunks_exact(N);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += f(v);
    }
    let mut w = N;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            let v = acc[i + w];
            acc[i] += v;
        }
    }
    acc[0]
}

/// `LayerNormalization`'s optional outputs 1 and 2: per normalised row (axes `[axis, rank)`),
/// the mean and `1 / sqrt(var + epsilon)`, exactly the values [`layer_norm`] uses. Each
/// requested buffer holds one value per row (`prod(x_shape[..axis])`).
///
/// # Errors
/// Axis out of range or length mismatches.
pub fn layer_norm_stats(
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    epsilon: f32,
    mut mean: Option<&mut [f32]>,
    mut inv_std_dev: Option<&mut [f32]>,
) -> KernelResult<()> {
    const OP: &str = "LayerNormalization";
    let inner = check_rows(OP, x, x_shape, axis)?;
    let rows: usize = x_shape[..axis].iter().product();
    if let Some(m) = mean.as_deref() {
        check_len(OP, "Mean", m.len(), rows)?;
    }
    if let Some(s) = inv_std_dev.as_deref() {
        check_len(OP, "InvStdDev", s.len(), rows)?;
    }
    if inner == 0 {
        return Ok(());
    }
    for (r, xr) in x.chunks_exact(inner).enumerate() {
        let (m, inv) = row_stats(xr, epsilon);
        if let Some(out) = mean.as_deref_mut() {
            out[r] = m;
        }
        if let Some(out) = inv_std_dev.as_deref_mut() {
            out[r] = inv;
        }
    }
    Ok(())
}

/// ONNX `LpNormalization`: `x / (sum |x|^p)^(1/p)` along `axis`, `p` 1 or 2; where the norm
/// is zero the output is zero (the specification's rule, not 0/0).
///
/// # Errors
/// Axis out of range, `p` other than 1 or 2, or length mismatches.
pub fn lp_norm(
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    p: u8,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "LpNormalization";
    if axis >= x_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    }
    if !matches!(p, 1 | 2) {
        return Err(invalid(OP, "p", format!("{p}: only 1 and 2 are defined")));
    }
    let total = numel(OP, x_shape)?;
    check_len(OP, "input", x.len(), total)?;
    check_len(OP, "output", out.len(), total)?;
    let n = x_shape[axis];
    let inner: usize = x_shape[axis + 1..].iter().product();
    if n == 0 || inner == 0 {
        return Ok(());
    }
    for (xb, ob) in x
        .chunks_exact(n * inner)
        .zip(out.chunks_exact_mut(n * inner))
    {
        for i in 0..inner {
            let along = (0..n).map(|k| xb[k * inner + i]);
            let norm = if p == 1 {
                along.map(f32::abs).sum::<f32>()
            } else {
                along.map(|v| v * v).sum::<f32>().sqrt()
            };
            for k in 0..n {
                let v = xb[k * inner + i];
                ob[k * inner + i] = if norm == 0.0 { 0.0 } else { v / norm };
            }
        }
    }
    Ok(())
}

/// Softmax flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftmaxKind {
    /// `exp(x - max) / sum(exp(x - max))`.
    Softmax,
    /// `x - max - ln(sum(exp(x - max)))`.
    LogSoftmax,
}

/// ONNX `Softmax`/`LogSoftmax` opset 13+: along the single axis `axis` (default ONNX -1).
///
/// # Errors
/// Axis out of range or length mismatches.
pub fn softmax(
    kind: SoftmaxKind,
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Softmax";
    if axis >= x_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    }
    let n: usize = x_shape[axis];
    let inner: usize = x_shape[axis + 1..].iter().product();
    softmax_blocks(kind, x, numel(OP, x_shape)?, n, inner, out, threads)
}

/// ONNX `Softmax`/`LogSoftmax` before opset 13 (default axis 1): the input is flattened to 2-D
/// `[prod(shape[..axis]), prod(shape[axis..])]` and normalised along the second dimension.
/// `axis` may equal the rank (each element is then its own row).
///
/// # Errors
/// Axis out of range or length mismatches.
pub fn softmax_legacy(
    kind: SoftmaxKind,
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Softmax";
    if axis > x_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    }
    let n: usize = x_shape[axis..].iter().product();
    softmax_blocks(kind, x, numel(OP, x_shape)?, n, 1, out, threads)
}

/// ONNX `Hardmax`: 1 at the first largest element of each row and 0 elsewhere. A row runs
/// along the single axis `axis` (opset 13+), or with `flatten_2d` (opset < 13) over the
/// flattened `shape[axis..]`. NaN counts as the largest value (as numpy's `argmax`, which
/// the specification's reference uses).
///
/// # Errors
/// Axis out of range or length mismatches.
pub fn hardmax(
    x: &[f32],
    x_shape: &[usize],
    axis: usize,
    flatten_2d: bool,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "Hardmax";
    let r = x_shape.len();
    if axis > r || (!flatten_2d && axis == r) {
        return Err(invalid(OP, "axis", format!("{axis} for rank {r}")));
    }
    let total = numel(OP, x_shape)?;
    check_len(OP, "X", x.len(), total)?;
    check_len(OP, "Y", out.len(), total)?;
    let (n, inner) = if flatten_2d {
        (x_shape[axis..].iter().product::<usize>(), 1)
    } else {
        (x_shape[axis], x_shape[axis + 1..].iter().product())
    };
    out.fill(0.0);
    if n == 0 || inner == 0 {
        return Ok(());
    }
    for (xb, ob) in x.chunks(n * inner).zip(out.chunks_mut(n * inner)) {
        for i in 0..inner {
            let mut best = 0;
            for j in 1..n {
                let (v, m) = (xb[j * inner + i], xb[best * inner + i]);
                if !m.is_nan() && (v > m || v.is_nan()) {
                    best = j;
                }
            }
            ob[best * inner + i] = 1.0;
        }
    }
    Ok(())
}

/// Softmax over blocks `[n, inner]`: element `(j, i)` of block `b` at `(b * n + j) * inner + i`,
/// normalised over `j`.
fn softmax_blocks(
    kind: SoftmaxKind,
    x: &[f32],
    total: usize,
    n: usize,
    inner: usize,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Softmax";
    check_len(OP, "X", x.len(), total)?;
    check_len(OP, "Y", out.len(), total)?;
    let block = n * inner;
    if block == 0 {
        return Ok(());
    }
    if inner == 1 {
        // The usual last-axis softmax: each block is one contiguous row.
        par_chunks(out, n, threads, (1 << 14) / n, |first, piece| {
            let xs = &x[first * n..first * n + piece.len()];
            rows_of(kind, xs, piece, n);
        });
        return Ok(());
    }
    par_chunks(out, block, threads, (1 << 14) / block, |first, piece| {
        let mut acc = vec![0.0f32; inner];
        let mut maxes = vec![0.0f32; inner];
        simd_dispatch(
            #[inline(always)]
            || {
                for (bi, ob) in piece.chunks_mut(block).enumerate() {
                    let xb = &x[(first + bi) * block..(first + bi + 1) * block];
                    softmax_columns(kind, xb, inner, ob, &mut maxes, &mut acc);
                }
            },
        );
    });
    Ok(())
}

/// Softmax or LogSoftmax of consecutive contiguous rows of `n > 0` elements.
fn rows_of(kind: SoftmaxKind, x: &[f32], out: &mut [f32], n: usize) {
    simd_dispatch(
        #[inline(always)]
        || {
            if n >= ROW_LANES {
                softmax_rows_lanes(kind, x, out, n);
                return;
            }
            for (xb, ob) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
                softmax_row(kind, xb, ob);
            }
        },
    );
}

/// Softmax of consecutive rows of `n > 0` elements on the calling thread (the last-axis
/// kernel's row code, for kernels that normalise their own score rows: Attention).
pub(crate) fn softmax_rows(x: &[f32], out: &mut [f32], n: usize) {
    rows_of(SoftmaxKind::Softmax, x, out, n);
}

/// Lanes of the fixed-order row reductions: the scalar code's order, which the vectoriser
/// keeps, so sums are the same bits on any instruction set.
const ROW_LANES: usize = 16;

/// The largest value of a row (NaN ignored, as a fold with `f32::max`; `-inf` if empty).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; ROW_LANES];
    let mut chunks = x.chunks_exact(ROW_LANES);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = a.max(v);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a = a.max(v);
    }
    acc.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// The sum of a row: `ROW_LANES` partial sums in element order, then a fixed tree (the same
/// order for a given length every time, and not one chain of dependent adds).
#[inline(always)]
fn row_sum(x: &[f32]) -> f32 {
    tree_sum::<f32, ROW_LANES>(x, 0.0, |v| v)
}

/// Softmax / LogSoftmax of one contiguous row: `e = exp(v - max)` (vectorised [`exp_f32`]),
/// then the sum, then one scaling pass (rows shorter than [`ROW_LANES`]; longer ones go to
/// [`softmax_rows_lanes`]).
#[inline(always)]
fn softmax_row(kind: SoftmaxKind, xb: &[f32], ob: &mut [f32]) {
    let m = row_max(xb);
    for (o, &v) in ob.iter_mut().zip(xb) {
        *o = exp_f32(v - m);
    }
    let s = row_sum(ob);
    match kind {
        SoftmaxKind::Softmax => {
            let r = 1.0 / s;
            for o in ob.iter_mut() {
                *o *= r;
            }
        }
        SoftmaxKind::LogSoftmax => {
            let l = s.ln();
            for (o, &v) in ob.iter_mut().zip(xb) {
                *o = (v - m) - l;
            }
        }
    }
}

/// Halves `a` into its first lane with `f` (a fixed tree: the same order every time).
#[inline(always)]
fn fold_lanes(mut a: [f32; ROW_LANES], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut w = ROW_LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            a[i] = f(a[i], a[i + w]);
        }
    }
    a[0]
}

/// Rows [`softmax_rows_lanes`] takes at a time.
const ROW_BATCH: usize = 8;

/// [`softmax_row`] over consecutive rows of `n >= ROW_LANES` elements, [`ROW_BATCH`] rows at
/// a time phase by phase (maxima, exponentials and sums, scaling), so that one row's
/// horizontal reductions overlap the next row's instead of stalling it; rows run in whole lane
/// chunks, a ragged tail being the row's last `ROW_LANES` elements (overlapping the chunk
/// before it). The maximum and the exponentials may see an element twice (same value, same
/// bits); the sum takes only the tail's new lanes. Short rows (a Swin window's 49, an
/// attention head's 128) spent more in scalar tails and reduction stalls than in the
/// exponentials.
#[inline(always)]
fn softmax_rows_lanes(kind: SoftmaxKind, x: &[f32], out: &mut [f32], n: usize) {
    const L: usize = ROW_LANES;
    // The tail is never empty: a row of whole chunks ends with a full one.
    let whole = (n - 1) / L * L;
    let rem = n - whole;
    let last = n - L;
    for (xs, os) in x.chunks(ROW_BATCH * n).zip(out.chunks_mut(ROW_BATCH * n)) {
        let mut maxes = [0.0f32; ROW_BATCH];
        for (m, xb) in maxes.iter_mut().zip(xs.chunks_exact(n)) {
            let mut mx = [f32::NEG_INFINITY; L];
            for c in xb[..whole].chunks_exact(L).chain([&xb[last..]]) {
                for (a, &v) in mx.iter_mut().zip(c) {
                    *a = a.max(v);
                }
            }
            *m = fold_lanes(mx, f32::max);
        }
        let mut sums = [0.0f32; ROW_BATCH];
        let mut tails = [[0.0f32; L]; ROW_BATCH];
        for ((((s, tail), &m), xb), ob) in sums
            .iter_mut()
            .zip(&mut tails)
            .zip(&maxes)
            .zip(xs.chunks_exact(n))
            .zip(os.chunks_exact_mut(n))
        {
            for (o, &v) in ob[..whole].iter_mut().zip(&xb[..whole]) {
                *o = exp_f32(v - m);
            }
            for (t, &v) in tail.iter_mut().zip(&xb[last..]) {
                *t = exp_f32(v - m);
            }
            let mut acc = [0.0f32; L];
            for c in ob[..whole].chunks_exact(L) {
                for (a, &e) in acc.iter_mut().zip(c) {
                    *a += e;
                }
            }
            for (i, (a, &e)) in acc.iter_mut().zip(&*tail).enumerate() {
                *a += if i >= L - rem { e } else { 0.0 };
            }
            *s = fold_lanes(acc, |a, b| a + b);
        }
        for ((((&s, tail), &m), xb), ob) in sums
            .iter()
            .zip(&tails)
            .zip(&maxes)
            .zip(xs.chunks_exact(n))
            .zip(os.chunks_exact_mut(n))
        {
            match kind {
                SoftmaxKind::Softmax => {
                    let r = 1.0 / s;
                    for o in ob[..whole].iter_mut() {
                        *o *= r;
                    }
                    // Rewrites the overlap with the same values: `e * r` either way.
                    for (o, &t) in ob[last..].iter_mut().zip(tail) {
                        *o = t * r;
                    }
                }
                SoftmaxKind::LogSoftmax => {
                    let l = s.ln();
                    for (o, &v) in ob.iter_mut().zip(xb) {
                        *o = (v - m) - l;
                    }
                }
            }
        }
    }
}

/// Softmax / LogSoftmax of one block `[n, inner]` over its first axis, in row-wise passes so
/// the inner loops stay contiguous (each column's max and sum accumulate in row order).
#[inline(always)]
fn softmax_columns(
    kind: SoftmaxKind,
    xb: &[f32],
    inner: usize,
    ob: &mut [f32],
    maxes: &mut [f32],
    acc: &mut [f32],
) {
    maxes.fill(f32::NEG_INFINITY);
    for row in xb.chunks(inner) {
        for (m, &v) in maxes.iter_mut().zip(row) {
            *m = m.max(v);
        }
    }
    acc.fill(0.0);
    for (orow, row) in ob.chunks_mut(inner).zip(xb.chunks(inner)) {
        for (((o, &v), &m), s) in orow.iter_mut().zip(row).zip(&*maxes).zip(acc.iter_mut()) {
            let e = exp_f32(v - m);
            *s += e;
            *o = match kind {
                SoftmaxKind::Softmax => e,
                SoftmaxKind::LogSoftmax => v - m,
            };
        }
    }
    match kind {
        SoftmaxKind::Softmax => {
            for s in acc.iter_mut() {
                *s = 1.0 / *s;
            }
            for orow in ob.chunks_mut(inner) {
                for (o, &r) in orow.iter_mut().zip(&*acc) {
                    *o *= r;
                }
            }
        }
        SoftmaxKind::LogSoftmax => {
            for s in acc.iter_mut() {
                *s = s.ln();
            }
            for orow in ob.chunks_mut(inner) {
                for (o, &l) in orow.iter_mut().zip(&*acc) {
                    *o -= l;
                }
            }
        }
    }
}

/// A reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// ReduceMean.
    Mean,
    /// ReduceSum.
    Sum,
    /// ReduceMax (NaN-propagating).
    Max,
    /// ReduceMin (NaN-propagating).
    Min,
}

/// Output shape of a reduction over `axes` (non-negative; empty means all axes — callers
/// handle opset 18 `noop_with_empty_axes = 1` as Identity).
///
/// # Errors
/// An axis out of range.
pub fn reduce_output_shape(
    x_shape: &[usize],
    axes: &[usize],
    keepdims: bool,
) -> KernelResult<Vec<usize>> {
    let mask = reduce_mask(x_shape.len(), axes)?;
    Ok(x_shape
        .iter()
        .zip(&mask)
        .filter_map(|(&d, &r)| match (r, keepdims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(d),
        })
        .collect())
}

fn reduce_mask(rank: usize, axes: &[usize]) -> KernelResult<Vec<bool>> {
    let mut mask = vec![axes.is_empty(); rank];
    for &a in axes {
        if a >= rank {
            return Err(invalid("Reduce", "axes", format!("{a} for rank {rank}")));
        }
        mask[a] = true;
    }
    Ok(mask)
}

/// ONNX `ReduceMean`/`ReduceSum`/`ReduceMax`/`ReduceMin` over `axes` (non-negative, any order,
/// empty = all). `out` has [`reduce_output_shape`] elements (keepdims only changes the shape).
/// Elements are combined in input order. Threads split outputs when the reduced axes are
/// trailing (e.g. ReduceMean over H, W or the last axis).
///
/// # Errors
/// Axis out of range or length mismatches.
pub fn reduce(
    op: ReduceOp,
    x: &[f32],
    x_shape: &[usize],
    axes: &[usize],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Reduce";
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let mask = reduce_mask(x_shape.len(), axes)?;
    let out_n: usize = x_shape
        .iter()
        .zip(&mask)
        .filter(|(_, &r)| !r)
        .map(|(&d, _)| d)
        .product();
    check_len(OP, "Y", out.len(), out_n)?;
    let red_n: usize = x_shape
        .iter()
        .zip(&mask)
        .filter(|(_, &r)| r)
        .map(|(&d, _)| d)
        .product();
    let init = match op {
        ReduceOp::Mean | ReduceOp::Sum => 0.0,
        ReduceOp::Max => f32::NEG_INFINITY,
        ReduceOp::Min => f32::INFINITY,
    };
    let combine = move |acc: f32, v: f32| match op {
        ReduceOp::Mean | ReduceOp::Sum => acc + v,
        ReduceOp::Max => {
            if v > acc || v.is_nan() {
                v
            } else {
                acc
            }
        }
        ReduceOp::Min => {
            if v < acc || v.is_nan() {
                v
            } else {
                acc
            }
        }
    };
    let finish = move |acc: f32| {
        if op == ReduceOp::Mean {
            acc / red_n as f32
        } else {
            acc
        }
    };
    if out_n == 0 {
        return Ok(());
    }
    let first_reduced = mask.iter().position(|&r| r).unwrap_or(mask.len());
    if mask[first_reduced..].iter().all(|&r| r) {
        // Trailing reduction: each output is a contiguous run. Sums in `ROW_LANES` partial
        // sums and a fixed tree (`row_sum`), which vectorises; one chain of dependent adds
        // does not (EfficientNet's squeeze-excite ReduceMean over 240x28x28: 0.14 ms).
        let sum = matches!(op, ReduceOp::Mean | ReduceOp::Sum);
        par_chunks(out, 1, threads, (1 << 15) / red_n.max(1), |first, piece| {
            simd_dispatch(
                #[inline(always)]
                || {
                    for (i, o) in piece.iter_mut().enumerate() {
                        let row = &x[(first + i) * red_n..(first + i + 1) * red_n];
                        *o = finish(if sum {
                            row_sum(row)
                        } else {
                            row.iter().fold(init, |a, &v| combine(a, v))
                        });
                    }
                },
            );
        });
        return Ok(());
    }
    // General case: walk the input once, accumulating into the output index.
    out.fill(init);
    let rank = x_shape.len();
    let mut out_strides = vec![0usize; rank];
    let mut acc = 1;
    for d in (0..rank).rev() {
        if !mask[d] {
            out_strides[d] = acc;
            acc *= x_shape[d];
        }
    }
    let mut idx = vec![0usize; rank];
    let mut oi = 0usize;
    for &v in x {
        out[oi] = combine(out[oi], v);
        let mut d = rank;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oi += out_strides[d];
            if idx[d] < x_shape[d] {
                break;
            }
            oi -= idx[d] * out_strides[d];
            idx[d] = 0;
        }
    }
    out.iter_mut().for_each(|o| *o = finish(*o));
    Ok(())
}
