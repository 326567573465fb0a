//! Quantized kernels: u8/i8 tensors with f32 scales and integer zero points.
//!
//! - QuantizeLinear / DequantizeLinear / DynamicQuantizeLinear, per tensor, per axis and
//!   blocked, computed as the ONNX reference does (f32 division, round half to even,
//!   saturation), so results are exact.
//! - MatMulInteger / ConvInteger and QLinearMatMul / QLinearConv: exact `i32` accumulation of
//!   `(a - a_zero_point) * (b - b_zero_point)` (wrapping, as the i32 arithmetic of other
//!   runtimes), then for the QLinear ops a requantization of the sum in f64 with the f32
//!   multiplier `a_scale * b_scale / y_scale`, as the ONNX reference computes it.
//!
//! Work is split along output rows or output planes only, so results do not depend on
//! `threads`.

use super::conv::ConvAttrs;
use super::error::{check_len, KernelError, KernelResult};
use super::par::par_chunks;
use std::cell::RefCell;

thread_local! {
    /// The im2col matrix of integer convolutions (`x - x_zero_point` as i16), reused across
    /// runs: it grows to the largest layer once, so a steady-state inference allocates nothing.
    static COLS: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

/// Output columns accumulated at once: an `i32` row tile on the stack.
const TILE: usize = 64;

/// An integer element of a quantized tensor (or the i32 input of DequantizeLinear).
pub trait QElem: Copy + Send + Sync + 'static {
    /// The smallest value (saturation bound).
    const LO: i64;
    /// The largest value.
    const HI: i64;
    /// The value as i32 (exact).
    fn widen(self) -> i32;
    /// `v` saturated to the type's range.
    fn saturate(v: i64) -> Self;
}

macro_rules! qelem {
    ($($t:ty),*) => {$(
        impl QElem for $t {
            const LO: i64 = <$t>::MIN as i64;
            const HI: i64 = <$t>::MAX as i64;
            fn widen(self) -> i32 {
                i32::from(self)
            }
            fn saturate(v: i64) -> Self {
                v.clamp(Self::LO, Self::HI) as $t
            }
        }
    )*};
}
qelem!(u8, i8, i16, i32);

/// How scales and zero points map onto a tensor's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantLayout {
    /// One scale (and zero point) for the whole tensor.
    Tensor,
    /// One per index along the axis: 1-D parameters of the axis' length.
    Axis(usize),
    /// One per `block` consecutive indices along `axis`: parameters shaped as the tensor with
    /// that axis of `ceil(len / block)`.
    Blocked {
        /// The blocked axis.
        axis: usize,
        /// Indices per block (> 0).
        block: usize,
    },
}

/// Maps a flat element index to its parameter index.
#[derive(Debug, Clone, Copy)]
struct ParamIndex {
    layout: QuantLayout,
    len: usize,
    inner: usize,
    blocks: usize,
}

impl ParamIndex {
    /// Checks `layout` against `shape` and returns the mapping and the parameter count.
    fn new(op: &'static str, shape: &[usize], layout: QuantLayout) -> KernelResult<(Self, usize)> {
        let bad_axis = |axis: usize| KernelError::InvalidAttribute {
            op,
            attr: "axis",
            reason: format!("axis {axis} out of range for shape {shape:?}"),
        };
        let (axis, block) = match layout {
            QuantLayout::Tensor => {
                let p = ParamIndex {
                    layout,
                    len: 1,
                    inner: 1,
                    blocks: 1,
                };
                return Ok((p, 1));
            }
            QuantLayout::Axis(axis) => (axis, 1),
            QuantLayout::Blocked { axis, block } => (axis, block),
        };
        if axis >= shape.len() {
            return Err(bad_axis(axis));
        }
        if block == 0 {
            return Err(KernelError::InvalidAttribute {
                op,
                attr: "block_size",
                reason: "must be positive".into(),
            });
        }
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let blocks = len.div_ceil(block);
        let count = match layout {
            QuantLayout::Axis(_) => len,
            _ => outer * blocks * inner,
        };
        let p = ParamIndex {
            layout,
            len,
            inner,
            blocks,
        };
        Ok((p, count))
    }

    fn at(&self, i: usize) -> usize {
        match self.layout {
            QuantLayout::Tensor => 0,
            QuantLayout::Axis(_) => (i / self.inner) % self.len,
            QuantLayout::Blocked { block, .. } => {
                let o = i / (self.len * self.inner);
                let a = (i / self.inner) % self.len;
                let r = i % self.inner;
                (o * self.blocks + a / block) * self.inner + r
            }
        }
    }
}

/// Checks the scale and zero-point lengths of a layout; returns the mapping.
fn params<Z>(
    op: &'static str,
    shape: &[usize],
    layout: QuantLayout,
    scale: &[f32],
    zp: Option<&[Z]>,
) -> KernelResult<ParamIndex> {
    let (p, count) = ParamIndex::new(op, shape, layout)?;
    check_len(op, "scale", scale.len(), count)?;
    if let Some(z) = zp {
        check_len(op, "zero point", z.len(), count)?;
    }
    Ok(p)
}

/// Elements per thread piece of the elementwise quantize kernels.
const MIN_ELEMS: usize = 1 << 14;

/// Round half to even by adding and subtracting 1.5 * 2^23: exact for |v| <= 2^22 in the
/// default rounding mode, and inlined (`f32::round_ties_even` is a libm call on baseline
/// x86-64, which cost 10 ns per element). Larger magnitudes are clamped first: they saturate
/// every 8-bit type anyway. NaN stays NaN.
#[inline(always)]
fn round_even_f32(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v.clamp(-4_194_304.0, 4_194_304.0) + MAGIC) - MAGIC
}

/// [`round_even_f32`] for f64 (1.5 * 2^52; clamped to 2^50, far beyond any i32 sum times an
/// 8-bit output range).
#[inline(always)]
fn round_even_f64(v: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    (v.clamp(-1.125_899_906_842_624e15, 1.125_899_906_842_624e15) + MAGIC) - MAGIC
}

/// `round_half_even(x / scale) + zero_point`, saturated.
#[inline(always)]
fn quantize_one<Q: QElem>(x: f32, scale: f32, zp: i64) -> Q {
    // f32 `as i64` maps NaN to 0; the sum cannot overflow i64.
    Q::saturate((round_even_f32(x / scale) as i64) + zp)
}

/// `out[i] = f(x[i], scale, zero_point)` with the parameters `layout` gives element `i` (zero
/// point 0 when absent): the elementwise body of QuantizeLinear and DequantizeLinear.
#[allow(clippy::too_many_arguments)]
fn map_with_params<I: Copy + Sync, O: Send, Z: QElem>(
    op: &'static str,
    x: &[I],
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[Z]>,
    layout: QuantLayout,
    out: &mut [O],
    threads: usize,
    f: impl Fn(I, f32, i32) -> O + Sync,
) -> KernelResult<()> {
    let p = params(op, shape, layout, scale, zero_point)?;
    check_len(op, "input", x.len(), shape.iter().product())?;
    check_len(op, "output", out.len(), x.len())?;
    let zp_at = |j: usize| zero_point.map_or(0, |z| z[j].widen());
    par_chunks(out, 1, threads, MIN_ELEMS, |start, piece| {
        if layout == QuantLayout::Tensor {
            // One scale: a straight loop the compiler vectorises.
            let (s, zp) = (scale[0], zp_at(0));
            for (o, &v) in piece.iter_mut().zip(&x[start..]) {
                *o = f(v, s, zp);
            }
            return;
        }
        for (k, o) in piece.iter_mut().enumerate() {
            let j = p.at(start + k);
            *o = f(x[start + k], scale[j], zp_at(j));
        }
    });
    Ok(())
}

/// ONNX QuantizeLinear: `out = saturate(round_half_even(x / scale) + zero_point)` with the
/// parameters of `layout` (zero point 0 when absent).
///
/// # Errors
/// Length mismatches or a layout that does not fit `shape`.
pub fn quantize_linear<Q: QElem>(
    x: &[f32],
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[Q]>,
    layout: QuantLayout,
    out: &mut [Q],
    threads: usize,
) -> KernelResult<()> {
    let f = |v, s, zp| quantize_one(v, s, i64::from(zp));
    let op = "QuantizeLinear";
    map_with_params(op, x, shape, scale, zero_point, layout, out, threads, f)
}

/// ONNX DequantizeLinear: `out = (x - zero_point) * scale`, in f32 as the reference does
/// (i32 to f32 rounds above 2^24, as its astype(float32) does).
///
/// # Errors
/// Length mismatches or a layout that does not fit `shape`.
pub fn dequantize_linear<Q: QElem>(
    x: &[Q],
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[Q]>,
    layout: QuantLayout,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    let f = |v: Q, s, zp| (v.widen() as f32 - zp as f32) * s;
    let op = "DequantizeLinear";
    map_with_params(op, x, shape, scale, zero_point, layout, out, threads, f)
}

/// ONNX DynamicQuantizeLinear: u8 quantization over the range of `x` widened to include 0.
/// Writes `y`, the scale `(max - min) / 255` (1/255 when the range is empty) and the zero
/// point `round(clamp(-min / scale, 0, 255))`.
///
/// # Errors
/// Length mismatches (`scale` and `zero_point` hold one element).
pub fn dynamic_quantize_linear(
    x: &[f32],
    y: &mut [u8],
    scale: &mut [f32],
    zero_point: &mut [u8],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "DynamicQuantizeLinear";
    check_len(OP, "output", y.len(), x.len())?;
    check_len(OP, "scale", scale.len(), 1)?;
    check_len(OP, "zero point", zero_point.len(), 1)?;
    // One sequential pass: min and max do not depend on order, but keep it simple.
    let (lo, hi) = x
        .iter()
        .fold((0.0f32, 0.0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let s = if hi == lo { 1.0 } else { hi - lo } / 255.0;
    let zp = (0.0 - lo / s).clamp(0.0, 255.0).round_ties_even();
    scale[0] = s;
    zero_point[0] = zp as u8;
    let zp = i64::from(zp as u8);
    par_chunks(y, 1, threads, MIN_ELEMS, |start, piece| {
        for (k, o) in piece.iter_mut().enumerate() {
            *o = quantize_one(x[start + k], s, zp);
        }
    });
    Ok(())
}

/// Rows, inner extent and columns of one matrix of a matrix product, and its batch shape
/// (numpy matmul: a 1-D `a` is one row, a 1-D `b` one column).
fn mat_dims(shape: &[usize], is_b: bool) -> (usize, usize, &[usize]) {
    match shape.len() {
        0 => (1, 1, shape),
        1 if is_b => (shape[0], 1, &shape[..0]),
        1 => (1, shape[0], &shape[..0]),
        r => (shape[r - 2], shape[r - 1], &shape[..r - 2]),
    }
}

/// The element offset of the matrix of `batch` index `bi` (over `out_batch`, row-major) in an
/// operand with batch shape `own` (right-aligned, broadcast where 1), matrices of `size`.
fn batch_offset(bi: usize, out_batch: &[usize], own: &[usize], size: usize) -> usize {
    let mut rest = bi;
    let mut off = 0;
    let mut stride = size;
    let skip = out_batch.len() - own.len();
    for (d, &n) in out_batch.iter().enumerate().rev() {
        let idx = rest % n.max(1);
        rest /= n.max(1);
        if d >= skip {
            let own_n = own[d - skip];
            if own_n != 1 {
                off += idx * stride;
            }
            stride *= own_n;
        }
    }
    off
}

/// A per-tensor (one value) or per-row/column (`n` values) zero point or scale.
fn per<T: Copy>(op: &'static str, what: &'static str, v: &[T], n: usize) -> KernelResult<()> {
    if v.len() == 1 || v.len() == n {
        Ok(())
    } else {
        Err(KernelError::InvalidAttribute {
            op,
            attr: what,
            reason: format!("has {} elements; expected 1 or {n}", v.len()),
        })
    }
}

/// Integer matrix product with broadcasting batch dimensions (numpy matmul), zero points
/// per tensor or per row of `a` / per column of `b`; each tile of at most [`TILE`] i32 sums of
/// output row `i` (of its matrix), starting at column `j0`, goes to `epilogue(i, j0, sums,
/// out)`.
///
/// # Errors
/// Shapes that do not multiply or broadcast, or length mismatches.
#[allow(clippy::too_many_arguments)]
fn int_matmul<A: QElem, B: QElem, O: Send>(
    op: &'static str,
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    a_zp: &[A],
    b_zp: &[B],
    out: &mut [O],
    threads: usize,
    epilogue: impl Fn(usize, usize, &[i32], &mut [O]) + Sync,
) -> KernelResult<()> {
    let (m, k, a_batch) = mat_dims(a_shape, false);
    let (kb, n, b_batch) = mat_dims(b_shape, true);
    let mismatch = || KernelError::ShapeMismatch {
        op,
        a: a_shape.to_vec(),
        b: b_shape.to_vec(),
    };
    if k != kb {
        return Err(mismatch());
    }
    let out_batch = super::broadcast_shape(a_batch, b_batch).map_err(|_| mismatch())?;
    let batches: usize = out_batch.iter().product();
    check_len(op, "a", a.len(), a_shape.iter().product())?;
    check_len(op, "b", b.len(), b_shape.iter().product())?;
    check_len(op, "output", out.len(), batches * m * n)?;
    per(op, "a_zero_point", a_zp, m)?;
    per(op, "b_zero_point", b_zp, n)?;
    if n == 0 || m == 0 {
        return Ok(());
    }
    let epilogue = &epilogue;
    par_chunks(out, n, threads, 4, |first_row, rows| {
        for (r, row) in rows.chunks_mut(n).enumerate() {
            let gr = first_row + r;
            let (bi, i) = (gr / m, gr % m);
            let a_row = &a[batch_offset(bi, &out_batch, a_batch, m * k) + i * k..][..k];
            let b_mat = &b[batch_offset(bi, &out_batch, b_batch, k * n)..][..k * n];
            let azp = a_zp[if a_zp.len() == 1 { 0 } else { i }].widen();
            for j0 in (0..n).step_by(TILE) {
                let w = TILE.min(n - j0);
                let mut acc = [0i32; TILE];
                let acc = &mut acc[..w];
                for (kk, &av) in a_row.iter().enumerate() {
                    let av = av.widen().wrapping_sub(azp);
                    if av == 0 {
                        continue;
                    }
                    let b_row = &b_mat[kk * n + j0..][..w];
                    if b_zp.len() == 1 {
                        let bzp = b_zp[0].widen();
                        for (s, &bv) in acc.iter_mut().zip(b_row) {
                            *s = s.wrapping_add(av.wrapping_mul(bv.widen().wrapping_sub(bzp)));
                        }
                    } else {
                        for ((s, &bv), &z) in acc.iter_mut().zip(b_row).zip(&b_zp[j0..j0 + w]) {
                            *s =
                                s.wrapping_add(av.wrapping_mul(bv.widen().wrapping_sub(z.widen())));
                        }
                    }
                }
                epilogue(i, j0, acc, &mut row[j0..j0 + w]);
            }
        }
    });
    Ok(())
}

/// ONNX MatMulInteger: `(a - a_zero_point) @ (b - b_zero_point)` in i32, numpy matmul
/// broadcasting; zero points per tensor, or per row of `a` / per column of `b`.
///
/// # Errors
/// Shapes that do not multiply or broadcast, or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn matmul_integer<A: QElem, B: QElem>(
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    a_zero_point: &[A],
    b_zero_point: &[B],
    out: &mut [i32],
    threads: usize,
) -> KernelResult<()> {
    int_matmul(
        "MatMulInteger",
        a,
        a_shape,
        b,
        b_shape,
        a_zero_point,
        b_zero_point,
        out,
        threads,
        |_, _, sums, o| o.copy_from_slice(sums),
    )
}

/// Requantization of an i32 sum: `saturate(round_half_even(sum * multiplier) + zp)`, the
/// product in f64 as the ONNX reference computes it (numpy promotes i32 * f32 to f64).
fn requantize<Q: QElem>(sum: i32, multiplier: f32, zp: i32) -> Q {
    let v = round_even_f64(f64::from(sum) * f64::from(multiplier));
    // The clamped value and an 8-bit zero point cannot overflow i64.
    Q::saturate((v as i64) + i64::from(zp))
}

/// Scales and zero points of a QLinear op: `a_scale` per tensor or per row (`MatMul`) / the
/// one input scale (`Conv`), `b_scale` per tensor or per column / output channel, `y_scale`
/// and `y_zero_point` one each.
#[derive(Debug, Clone, Copy)]
pub struct Requant<'a, Y> {
    /// Scale of the first operand.
    pub a_scale: &'a [f32],
    /// Scale of the second operand.
    pub b_scale: &'a [f32],
    /// Output scale (one element).
    pub y_scale: f32,
    /// Output zero point (one element).
    pub y_zero_point: Y,
}

impl<Y: QElem> Requant<'_, Y> {
    /// `a_scale[i] * b_scale[j] / y_scale` in f32, in the reference's order.
    fn multiplier(&self, i: usize, j: usize) -> f32 {
        let a = self.a_scale[if self.a_scale.len() == 1 { 0 } else { i }];
        let b = self.b_scale[if self.b_scale.len() == 1 { 0 } else { j }];
        a * b / self.y_scale
    }
}

/// ONNX QLinearMatMul: the integer product of [`matmul_integer`] requantized to the output's
/// scale and zero point.
///
/// # Errors
/// Shapes that do not multiply or broadcast, parameter counts other than 1 or the row/column
/// count, or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn qlinear_matmul<A: QElem, B: QElem, Y: QElem>(
    a: &[A],
    a_shape: &[usize],
    a_zero_point: &[A],
    b: &[B],
    b_shape: &[usize],
    b_zero_point: &[B],
    rq: Requant<'_, Y>,
    out: &mut [Y],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "QLinearMatMul";
    let (m, _, _) = mat_dims(a_shape, false);
    let (_, n, _) = mat_dims(b_shape, true);
    per(OP, "a_scale", rq.a_scale, m)?;
    per(OP, "b_scale", rq.b_scale, n)?;
    let yzp = rq.y_zero_point.widen();
    int_matmul(
        OP,
        a,
        a_shape,
        b,
        b_shape,
        a_zero_point,
        b_zero_point,
        out,
        threads,
        |i, j0, sums, o| {
            for (jj, (y, &s)) in o.iter_mut().zip(sums).enumerate() {
                *y = requantize(s, rq.multiplier(i, j0 + jj), yzp);
            }
        },
    )
}

/// A conv's geometry padded to three spatial axes (leading axes of extent 1).
#[derive(Debug, Clone, Copy)]
struct Geom3 {
    input: [usize; 3],
    output: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    dilation: [usize; 3],
    pad: [usize; 3],
}

impl Geom3 {
    fn new(
        op: &'static str,
        x_sp: &[usize],
        out_sp: &[usize],
        attrs: &ConvAttrs,
    ) -> KernelResult<Self> {
        let nsp = x_sp.len();
        if !(1..=3).contains(&nsp)
            || out_sp.len() != nsp
            || attrs.kernel.len() != nsp
            || attrs.strides.len() != nsp
            || attrs.dilations.len() != nsp
            || attrs.pads_begin.len() != nsp
        {
            return Err(KernelError::InvalidAttribute {
                op,
                attr: "kernel_shape",
                reason: format!(
                    "{} spatial axes with kernel {:?}; 1 to 3 matching axes are supported",
                    nsp, attrs.kernel
                ),
            });
        }
        let fill = |v: &[usize], d: usize| {
            let mut a = [d; 3];
            a[3 - nsp..].copy_from_slice(v);
            a
        };
        Ok(Geom3 {
            input: fill(x_sp, 1),
            output: fill(out_sp, 1),
            kernel: fill(&attrs.kernel, 1),
            stride: fill(&attrs.strides, 1),
            dilation: fill(&attrs.dilations, 1),
            pad: fill(&attrs.pads_begin, 0),
        })
    }

    /// The input index of output index `o` and kernel tap `k` along axis `a`, if inside.
    fn src(&self, a: usize, o: usize, k: usize) -> Option<usize> {
        let i = (o * self.stride[a] + k * self.dilation[a]).checked_sub(self.pad[a])?;
        (i < self.input[a]).then_some(i)
    }

    /// The output indices `lo..hi` of the last axis whose tap `k` falls inside the input.
    fn valid_cols(&self, k: usize) -> (usize, usize) {
        let (s, off) = (self.stride[2], k * self.dilation[2]);
        let lo = self.pad[2].saturating_sub(off).div_ceil(s);
        let end = (self.input[2] + self.pad[2]).saturating_sub(off);
        let hi = end.div_ceil(s).min(self.output[2]);
        (lo.min(hi), hi)
    }
}

/// Writes the im2col matrix of one image: row `ci * taps + tap`, column = output position,
/// value `x - x_zero_point` (0 where the tap falls in the padding, which is the zero point).
fn im2col<X: QElem>(x: &[X], geo: &Geom3, xzp: i32, cols: &mut [i16]) {
    let [od, oh, ow] = geo.output;
    let [kd, kh, kw] = geo.kernel;
    let [_, ih, iw] = geo.input;
    let plane = od * oh * ow;
    let in_plane: usize = geo.input.iter().product();
    let taps = kd * kh * kw;
    for (ci, x_c) in x.chunks_exact(in_plane).enumerate() {
        for a in 0..kd {
            for b in 0..kh {
                for cq in 0..kw {
                    let r = ci * taps + (a * kh + b) * kw + cq;
                    let row = &mut cols[r * plane..][..plane];
                    let (lo, hi) = geo.valid_cols(cq);
                    let (s, off) = (geo.stride[2], cq * geo.dilation[2]);
                    for z in 0..od {
                        for y in 0..oh {
                            let dst = &mut row[(z * oh + y) * ow..][..ow];
                            let (Some(iz), Some(iy)) = (geo.src(0, z, a), geo.src(1, y, b)) else {
                                dst.fill(0);
                                continue;
                            };
                            let x_row = &x_c[(iz * ih + iy) * iw..][..iw];
                            dst[..lo].fill(0);
                            dst[hi..].fill(0);
                            for (ox, d) in dst.iter_mut().enumerate().take(hi).skip(lo) {
                                // |x - zp| <= 255 for 8-bit types: fits i16.
                                *d = (x_row[ox * s + off - geo.pad[2]].widen() - xzp) as i16;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Integer convolution: i32 sums of `(x - x_zero_point) * (w - w_zero_point)` (plus `bias`)
/// per output row tile, handed to `epilogue(m, sums, out)` with `m` the output channel.
#[allow(clippy::too_many_arguments)]
fn int_conv<X: QElem, W: QElem, O: Send>(
    op: &'static str,
    x: &[X],
    x_shape: &[usize],
    x_zero_point: X,
    w: &[W],
    w_shape: &[usize],
    w_zero_point: &[W],
    bias: Option<&[i32]>,
    attrs: &ConvAttrs,
    out: &mut [O],
    out_shape: &[usize],
    threads: usize,
    epilogue: impl Fn(usize, &[i32], &mut [O]) + Sync,
) -> KernelResult<()> {
    let mismatch = || KernelError::ShapeMismatch {
        op,
        a: x_shape.to_vec(),
        b: w_shape.to_vec(),
    };
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() || out_shape.len() != x_shape.len() {
        return Err(mismatch());
    }
    let (nb, c) = (x_shape[0], x_shape[1]);
    let (m, cg) = (w_shape[0], w_shape[1]);
    let g = attrs.group.max(1);
    if cg * g != c || m % g != 0 || out_shape[0] != nb || out_shape[1] != m {
        return Err(mismatch());
    }
    let geo = Geom3::new(op, &x_shape[2..], &out_shape[2..], attrs)?;
    if attrs.kernel != w_shape[2..] {
        return Err(mismatch());
    }
    check_len(op, "x", x.len(), x_shape.iter().product())?;
    check_len(op, "w", w.len(), w_shape.iter().product())?;
    check_len(op, "output", out.len(), out_shape.iter().product())?;
    per(op, "w_zero_point", w_zero_point, m)?;
    if let Some(b) = bias {
        check_len(op, "bias", b.len(), m)?;
    }
    let plane: usize = geo.output.iter().product();
    let in_plane: usize = geo.input.iter().product();
    let taps: usize = geo.kernel.iter().product();
    if plane == 0 {
        return Ok(());
    }
    let [od, oh, ow] = geo.output;
    let [kd, kh, kw] = geo.kernel;
    let [_, ih, iw] = geo.input;
    let m_per_g = m / g;
    let xzp = x_zero_point.widen();
    let epilogue = &epilogue;
    if g == 1 {
        // One group: im2col, then the integer matrix product (contiguous rows, long tiles).
        let k = c * taps;
        let mut gemm = |cols: &mut Vec<i16>| -> KernelResult<()> {
            cols.clear();
            cols.resize(k * plane, 0);
            for n in 0..nb {
                im2col(&x[n * c * in_plane..][..c * in_plane], &geo, xzp, cols);
                int_matmul(
                    op,
                    w,
                    &[m, k],
                    &cols[..],
                    &[k, plane],
                    w_zero_point,
                    &[0i16],
                    &mut out[n * m * plane..][..m * plane],
                    threads,
                    |oc, _, sums, o| {
                        let b0 = bias.map_or(0, |b| b[oc]);
                        let mut t = [0i32; TILE];
                        for (d, &s) in t.iter_mut().zip(sums) {
                            *d = s.wrapping_add(b0);
                        }
                        epilogue(oc, &t[..sums.len()], o);
                    },
                )?;
            }
            Ok(())
        };
        return COLS.with(|cols| match cols.try_borrow_mut() {
            Ok(mut cols) => gemm(&mut cols),
            // Never expected (kernels do not nest); stay correct with a buffer of its own.
            Err(_) => gemm(&mut Vec::new()),
        });
    }
    par_chunks(out, plane, threads, 1, |first, planes| {
        for (p, dst) in planes.chunks_mut(plane).enumerate() {
            let (n, oc) = ((first + p) / m, (first + p) % m);
            let grp = oc / m_per_g;
            let wzp = w_zero_point[if w_zero_point.len() == 1 { 0 } else { oc }].widen();
            let b0 = bias.map_or(0, |b| b[oc]);
            let w_oc = &w[oc * cg * taps..][..cg * taps];
            for z in 0..od {
                for y in 0..oh {
                    let row = &mut dst[(z * oh + y) * ow..][..ow];
                    for x0 in (0..ow).step_by(TILE) {
                        let width = TILE.min(ow - x0);
                        let mut acc = [b0; TILE];
                        let acc = &mut acc[..width];
                        for ci in 0..cg {
                            let x_c = &x[(n * c + grp * cg + ci) * in_plane..][..in_plane];
                            let w_c = &w_oc[ci * taps..][..taps];
                            for a in 0..kd {
                                let Some(iz) = geo.src(0, z, a) else { continue };
                                for bq in 0..kh {
                                    let Some(iy) = geo.src(1, y, bq) else {
                                        continue;
                                    };
                                    let x_row = &x_c[(iz * ih + iy) * iw..][..iw];
                                    for cq in 0..kw {
                                        let wv =
                                            w_c[(a * kh + bq) * kw + cq].widen().wrapping_sub(wzp);
                                        if wv == 0 {
                                            continue;
                                        }
                                        let (lo, hi) = geo.valid_cols(cq);
                                        let (lo, hi) = (lo.max(x0), hi.min(x0 + width));
                                        let (s, off) = (geo.stride[2], cq * geo.dilation[2]);
                                        for ox in lo..hi {
                                            let ix = ox * s + off - geo.pad[2];
                                            let xv = x_row[ix].widen().wrapping_sub(xzp);
                                            let sum = &mut acc[ox - x0];
                                            *sum = sum.wrapping_add(wv.wrapping_mul(xv));
                                        }
                                    }
                                }
                            }
                        }
                        epilogue(oc, acc, &mut row[x0..x0 + width]);
                    }
                }
            }
        }
    });
    Ok(())
}

/// ONNX ConvInteger: `conv(x - x_zero_point, w - w_zero_point)` in i32 (zero points 0 when
/// absent; `w_zero_point` per tensor or per output channel). Padding contributes nothing
/// (it is the zero point).
///
/// # Errors
/// Shapes that do not fit, or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn conv_integer<X: QElem, W: QElem>(
    x: &[X],
    x_shape: &[usize],
    x_zero_point: X,
    w: &[W],
    w_shape: &[usize],
    w_zero_point: &[W],
    attrs: &ConvAttrs,
    out: &mut [i32],
    out_shape: &[usize],
    threads: usize,
) -> KernelResult<()> {
    int_conv(
        "ConvInteger",
        x,
        x_shape,
        x_zero_point,
        w,
        w_shape,
        w_zero_point,
        None,
        attrs,
        out,
        out_shape,
        threads,
        |_, sums, o| o.copy_from_slice(sums),
    )
}

/// ONNX QLinearConv: the integer convolution of [`conv_integer`] plus the i32 `bias`,
/// requantized (`rq.a_scale` is the input's one scale, `rq.b_scale` the weight's per tensor
/// or per output channel).
///
/// # Errors
/// Shapes that do not fit, parameter counts other than 1 or the channel count, or length
/// mismatches.
#[allow(clippy::too_many_arguments)]
pub fn qlinear_conv<X: QElem, W: QElem, Y: QElem>(
    x: &[X],
    x_shape: &[usize],
    x_zero_point: X,
    w: &[W],
    w_shape: &[usize],
    w_zero_point: &[W],
    bias: Option<&[i32]>,
    attrs: &ConvAttrs,
    rq: Requant<'_, Y>,
    out: &mut [Y],
    out_shape: &[usize],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "QLinearConv";
    per(OP, "x_scale", rq.a_scale, 1)?;
    per(
        OP,
        "w_scale",
        rq.b_scale,
        w_shape.first().copied().unwrap_or(0),
    )?;
    let yzp = rq.y_zero_point.widen();
    int_conv(
        OP,
        x,
        x_shape,
        x_zero_point,
        w,
        w_shape,
        w_zero_point,
        bias,
        attrs,
        out,
        out_shape,
        threads,
        |oc, sums, o| {
            let mult = rq.multiplier(0, oc);
            for (y, &s) in o.iter_mut().zip(sums) {
                *y = requantize(s, mult, yzp);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_rounding_is_round_half_to_even() {
        for v in [
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 3.7, -3.7, 1e9, -1e9,
        ] {
            let want = v.clamp(-4_194_304.0, 4_194_304.0).round_ties_even();
            assert_eq!(round_even_f32(v), want, "{v}");
            let w = f64::from(v);
            assert_eq!(round_even_f64(w), w.round_ties_even(), "{w}");
        }
        assert_eq!(round_even_f64(2.5e15), 1.125_899_906_842_624e15);
        assert!(round_even_f32(f32::NAN).is_nan());
    }

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let x = [0.0f32, 1.0, 1.5, 2.5, -1.0, 1000.0, -1000.0];
        let mut out = [0u8; 7];
        quantize_linear(
            &x,
            &[7],
            &[1.0],
            Some(&[128u8]),
            QuantLayout::Tensor,
            &mut out,
            1,
        )
        .unwrap();
        // 1.5 -> 2 and 2.5 -> 2 (half to even), then + 128; out-of-range saturates.
        assert_eq!(out, [128, 129, 130, 130, 127, 255, 0]);
        let mut out = [0i8; 7];
        quantize_linear(&x, &[7], &[2.0], None, QuantLayout::Tensor, &mut out, 1).unwrap();
        assert_eq!(out, [0, 0, 1, 1, 0, 127, -128]);
    }

    #[test]
    fn per_axis_and_blocked_parameters_follow_their_axis() {
        // x [2, 3], per-axis on axis 1: column j uses scale[j], zero point[j].
        let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut out = [0u8; 6];
        quantize_linear(
            &x,
            &[2, 3],
            &[1.0, 2.0, 4.0],
            Some(&[0u8, 10, 20]),
            QuantLayout::Axis(1),
            &mut out,
            1,
        )
        .unwrap();
        assert_eq!(out, [1, 11, 21, 4, 12, 22]);
        // Blocked along axis 1 with block 2: params [2, 2] (ceil(3 / 2) = 2 blocks per row).
        let mut back = [0f32; 6];
        dequantize_linear(
            &[10u8, 10, 10, 10, 10, 10],
            &[2, 3],
            &[1.0, 2.0, 3.0, 4.0],
            Some(&[0u8, 0, 5, 5]),
            QuantLayout::Blocked { axis: 1, block: 2 },
            &mut back,
            1,
        )
        .unwrap();
        assert_eq!(back, [10.0, 10.0, 20.0, 15.0, 15.0, 20.0]);
        // A parameter count that does not fit the layout is an error, not a wrong index.
        let err = quantize_linear(
            &x,
            &[2, 3],
            &[1.0, 2.0],
            None::<&[u8]>,
            QuantLayout::Axis(1),
            &mut out,
            1,
        );
        assert!(matches!(err, Err(KernelError::LengthMismatch { .. })));
    }

    #[test]
    fn dynamic_quantize_covers_zero_and_the_range() {
        let x = [-1.0f32, 0.0, 1.0, 2.0];
        let (mut y, mut s, mut z) = ([0u8; 4], [0f32], [0u8]);
        dynamic_quantize_linear(&x, &mut y, &mut s, &mut z, 1).unwrap();
        assert_eq!(s[0], 3.0 / 255.0);
        assert_eq!(z[0], 85);
        assert_eq!(y, [0, 85, 170, 255]);
        // All zeros: the range is empty, scale 1/255, zero point 0.
        let (mut y, mut s, mut z) = ([9u8; 2], [0f32], [9u8]);
        dynamic_quantize_linear(&[0.0, 0.0], &mut y, &mut s, &mut z, 1).unwrap();
        assert_eq!((s[0], z[0], y), (1.0 / 255.0, 0, [0, 0]));
    }

    /// Naive reference for the integer product, straight from the definition.
    fn naive_matmul(a: &[i32], b: &[i32], m: usize, k: usize, n: usize) -> Vec<i32> {
        let mut out = vec![0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|q| a[i * k + q] * b[q * n + j]).sum();
            }
        }
        out
    }

    #[test]
    fn matmul_integer_matches_the_definition_with_batches_and_zero_points() {
        let (m, k, n) = (3, 5, 70); // n > TILE: two column tiles
        let a: Vec<u8> = (0..2 * m * k).map(|i| (i * 37 % 256) as u8).collect();
        let b: Vec<i8> = (0..k * n)
            .map(|i| ((i * 53 % 256) as i32 - 128) as i8)
            .collect();
        let azp = [3u8, 200, 7];
        let bzp = [-5i8];
        let mut out = vec![0i32; 2 * m * n];
        matmul_integer(&a, &[2, m, k], &b, &[k, n], &azp, &bzp, &mut out, 2).unwrap();
        for batch in 0..2 {
            let a32: Vec<i32> = (0..m * k)
                .map(|i| i32::from(a[batch * m * k + i]) - i32::from(azp[i / k]))
                .collect();
            let b32: Vec<i32> = b.iter().map(|&v| i32::from(v) + 5).collect();
            assert_eq!(
                out[batch * m * n..][..m * n],
                naive_matmul(&a32, &b32, m, k, n)[..]
            );
        }
        let err = matmul_integer(&a, &[2, m, k], &b, &[k + 1, n - 1], &azp, &bzp, &mut out, 1);
        assert!(matches!(err, Err(KernelError::ShapeMismatch { .. })));
    }

    #[test]
    fn qlinear_matmul_requantizes_in_f64_with_half_to_even() {
        // a = [[2]], b = [[3]]: sum 6; multiplier 0.25 gives 1.5 -> 2, + zp 10.
        let rq = Requant {
            a_scale: &[0.5],
            b_scale: &[1.0],
            y_scale: 2.0,
            y_zero_point: 10u8,
        };
        let mut out = [0u8; 1];
        qlinear_matmul(
            &[2u8],
            &[1, 1],
            &[0u8],
            &[3u8],
            &[1, 1],
            &[0u8],
            rq,
            &mut out,
            1,
        )
        .unwrap();
        assert_eq!(out, [12]);
    }

    #[test]
    fn conv_integer_matches_a_direct_sum_with_padding_stride_and_groups() {
        // x [2, 2, 5, 6], w [4, 2/group, 3, 2], stride (2, 1), pads (1, 0, 1, 1), dilation
        // (1, 2); group 1 runs im2col + the integer product, group 2 the direct loops.
        for group in [1usize, 2] {
            let cg = 2 / group;
            let xs = [2, 2, 5, 6];
            let ws = [4, cg, 3, 2];
            let x: Vec<u8> = (0..120).map(|i| (i * 29 % 251) as u8).collect();
            let w: Vec<i8> = (0..24 * cg as i32)
                .map(|i| (i * 11 % 31 - 15) as i8)
                .collect();
            let mut attrs = ConvAttrs::new(&[3, 2]);
            attrs.strides = vec![2, 1];
            attrs.dilations = vec![1, 2];
            attrs.pads_begin = vec![1, 0];
            attrs.pads_end = vec![1, 1];
            attrs.group = group;
            let oh = (5 + 2 - 3) / 2 + 1;
            let ow = 6 + 1 - 2 - 1 + 1;
            let os = [2, 4, oh, ow];
            let (xzp, wzp) = (17u8, [1i8, -2, 0, 3]);
            let mut out = vec![0i32; 2 * 4 * oh * ow];
            conv_integer(&x, &xs, xzp, &w, &ws, &wzp, &attrs, &mut out, &os, 2).unwrap();
            for n in 0..2 {
                for m in 0..4 {
                    let g = m / (4 / group);
                    for y in 0..oh {
                        for xo in 0..ow {
                            let mut s = 0i32;
                            for ci in 0..cg {
                                let c = g * cg + ci;
                                for a in 0..3 {
                                    for b in 0..2 {
                                        let iy = (y * 2 + a) as isize - 1;
                                        let ix = (xo + 2 * b) as isize;
                                        if (0..5).contains(&iy) && (0..6).contains(&ix) {
                                            let xi =
                                                (n * 2 + c) * 30 + iy as usize * 6 + ix as usize;
                                            let xv = i32::from(x[xi]) - 17;
                                            let wv = i32::from(w[(m * cg + ci) * 6 + a * 2 + b])
                                                - i32::from(wzp[m]);
                                            s += xv * wv;
                                        }
                                    }
                                }
                            }
                            let got = out[((n * 4 + m) * oh + y) * ow + xo];
                            assert_eq!(got, s, "group {group} n {n} m {m} y {y} x {xo}");
                        }
                    }
                }
            }
        }
    }
}
