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
use super::igemm::{self, Epilogue, PackedRows};
use super::narrow::{Narrow, NarrowMode};
use super::par::par_chunks;
use std::cell::RefCell;

/// The operands of one integer GEMM, reused across runs: they grow to the largest layer
/// once, so a steady-state inference allocates nothing.
#[derive(Default)]
struct Scratch {
    /// Two rows of the column operand (`b - b_zero_point`, or im2col rows) while packing.
    two: Vec<i16>,
    /// `cols` packed into panels.
    panels: Vec<i16>,
    /// The row operand packed.
    rows: PackedRows,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// An integer element of a quantized tensor (or the i32 input of DequantizeLinear).
pub trait QElem: Copy + Send + Sync + 'static {
    /// The smallest value (saturation bound).
    const LO: i64;
    /// The largest value.
    const HI: i64;
    /// Zero (the zero point when there is none).
    const ZERO: Self;
    /// The value as i32 (exact).
    fn widen(self) -> i32;
    /// `v` saturated to the type's range.
    fn saturate(v: i64) -> Self;
    /// `v` saturated to the type's range (i32 lanes vectorise where i64 ones do not).
    fn saturate_i32(v: i32) -> Self;
}

macro_rules! qelem {
    ($($t:ty),*) => {$(
        impl QElem for $t {
            const LO: i64 = <$t>::MIN as i64;
            const HI: i64 = <$t>::MAX as i64;
            const ZERO: Self = 0;
            #[inline(always)]
            fn widen(self) -> i32 {
                i32::from(self)
            }
            #[inline(always)]
            fn saturate(v: i64) -> Self {
                v.clamp(Self::LO, Self::HI) as $t
            }
            #[inline(always)]
            fn saturate_i32(v: i32) -> Self {
                v.clamp(Self::LO as i32, Self::HI as i32) as $t
            }
        }
    )*};
}
qelem!(u8, i8, i16, u16, i32);

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

/// `v` rounded half to even as an integer, `v` clamped to +-2^22 first (larger magnitudes
/// saturate every 8-bit type anyway); NaN gives 0. Adding 1.5 * 2^23 rounds in the default
/// mode and leaves the integer in the mantissa, read off the bits: no libm call
/// (`round_ties_even` is one on baseline x86-64, 10 ns per element) and no float-to-int cast
/// (whose saturating semantics LLVM scalarises), so loops over it vectorise.
#[inline(always)]
fn round_even_i32(v: f32) -> i32 {
    const MAGIC: f32 = 12_582_912.0;
    let c = v.clamp(-4_194_304.0, 4_194_304.0);
    let i = ((c + MAGIC).to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    if c.is_nan() {
        0
    } else {
        i
    }
}

/// [`round_even_i32`] for f64 (1.5 * 2^52), clamped to +-2^30: beyond that every 8-bit output
/// saturates, and the result plus an 8-bit zero point stays inside i32.
#[inline(always)]
fn round_even_f64_i32(v: f64) -> i32 {
    const MAGIC: f64 = 6_755_399_441_055_744.0;
    let c = v.clamp(-1_073_741_824.0, 1_073_741_824.0);
    let i = ((c + MAGIC).to_bits() as i64).wrapping_sub(MAGIC.to_bits() as i64) as i32;
    if c.is_nan() {
        0
    } else {
        i
    }
}

/// `round_half_even(x / scale) + zero_point`, saturated (NaN gives the zero point).
#[inline(always)]
fn quantize_one<Q: QElem>(x: f32, scale: f32, zp: i32) -> Q {
    Q::saturate_i32(round_even_i32(x / scale).saturating_add(zp))
}

/// `out[i] = f(x[i], scale, zero_point)` with the parameters `layout` gives element `i`
/// (`zero` when there is no zero point): the elementwise body of QuantizeLinear and
/// DequantizeLinear.
#[allow(clippy::too_many_arguments)]
fn map_with_params<I: Copy + Sync, O: Send, Z: Copy + Sync>(
    op: &'static str,
    x: &[I],
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[Z]>,
    zero: Z,
    layout: QuantLayout,
    out: &mut [O],
    threads: usize,
    f: impl Fn(I, f32, Z) -> O + Sync,
) -> KernelResult<()> {
    let p = params(op, shape, layout, scale, zero_point)?;
    check_len(op, "input", x.len(), shape.iter().product())?;
    check_len(op, "output", out.len(), x.len())?;
    let zp_at = |j: usize| zero_point.map_or(zero, |z| z[j]);
    par_chunks(out, 1, threads, MIN_ELEMS, |start, piece| {
        if layout == QuantLayout::Tensor {
            // One scale: a straight loop, vectorised for the machine.
            let (s, zp) = (scale[0], zp_at(0));
            pulp::Arch::new().dispatch(MapOne {
                x: &x[start..],
                out: piece,
                f: |v| f(v, s, zp),
            });
            return;
        }
        for (k, o) in piece.iter_mut().enumerate() {
            let j = p.at(start + k);
            *o = f(x[start + k], scale[j], zp_at(j));
        }
    });
    Ok(())
}

/// `out[i] = f(x[i])`, compiled for the machine's vector width by `pulp::Arch::dispatch`.
struct MapOne<'a, I, O, F> {
    x: &'a [I],
    out: &'a mut [O],
    f: F,
}

impl<I: Copy, O, F: Fn(I) -> O> pulp::WithSimd for MapOne<'_, I, O, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        for (o, &v) in self.out.iter_mut().zip(self.x) {
            *o = (self.f)(v);
        }
    }
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
    let f = |v, s, zp: Q| quantize_one(v, s, zp.widen());
    let op = "QuantizeLinear";
    let zp = zero_point;
    map_with_params(op, x, shape, scale, zp, Q::ZERO, layout, out, threads, f)
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
    let f = |v: Q, s, zp: Q| (v.widen() as f32 - zp.widen() as f32) * s;
    let op = "DequantizeLinear";
    let zp = zero_point;
    map_with_params(op, x, shape, scale, zp, Q::ZERO, layout, out, threads, f)
}

/// ONNX QuantizeLinear to a narrow type ([`Narrow`], one byte per element). Integers:
/// `clamp(round_half_even(x / scale) + zero_point)` to the type's range. 8-bit floats:
/// `x / scale` in f32, rounded once to the type (`saturate` as Cast's; their zero point must
/// be zero and is not read, as in the ONNX reference). E2M1: `x / scale + zero_point` in f32,
/// then rounded (it always saturates).
///
/// # Errors
/// Length mismatches or a layout that does not fit `shape`.
#[allow(clippy::too_many_arguments)]
pub fn quantize_narrow(
    x: &[f32],
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[u8]>,
    layout: QuantLayout,
    ty: Narrow,
    saturate: bool,
    out: &mut [u8],
    threads: usize,
) -> KernelResult<()> {
    let op = "QuantizeLinear";
    if let Some((lo, hi)) = ty.int_range() {
        // The zero point's byte is its value (sign-extended for the signed types).
        let value = move |z: u8| {
            if lo < 0 {
                i32::from(z as i8)
            } else {
                i32::from(z)
            }
        };
        let f = |v: f32, s: f32, z: u8| {
            let q = round_even_i32(v / s).saturating_add(value(z));
            q.clamp(lo, hi) as i8 as u8
        };
        return map_with_params(op, x, shape, scale, zero_point, 0, layout, out, threads, f);
    }
    let mode = NarrowMode {
        saturate,
        ..NarrowMode::default()
    };
    if ty == Narrow::F4E2M1 {
        let table = ty.table();
        let f = |v: f32, s: f32, z: u8| ty.encode(f64::from(v / s + table[usize::from(z)]), mode);
        return map_with_params(op, x, shape, scale, zero_point, 0, layout, out, threads, f);
    }
    let f = |v: f32, s: f32, _: u8| ty.encode(f64::from(v / s), mode);
    map_with_params(op, x, shape, scale, None, 0, layout, out, threads, f)
}

/// ONNX DequantizeLinear from a narrow type: `(x - zero_point) * scale` in f32 for the
/// integers; `x * scale` for the floats (the 8-bit floats' zero point must be zero, E2M1's is
/// not read, as in the ONNX reference).
///
/// # Errors
/// Length mismatches or a layout that does not fit `shape`.
#[allow(clippy::too_many_arguments)]
pub fn dequantize_narrow(
    x: &[u8],
    ty: Narrow,
    shape: &[usize],
    scale: &[f32],
    zero_point: Option<&[u8]>,
    layout: QuantLayout,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    let op = "DequantizeLinear";
    let table = ty.table();
    let value = |b: u8| table[usize::from(b)];
    let zero_point = zero_point.filter(|_| !ty.is_float());
    let f = |v: u8, s: f32, z: u8| (value(v) - value(z)) * s;
    map_with_params(op, x, shape, scale, zero_point, 0, layout, out, threads, f)
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
    let zp = i32::from(zp as u8);
    par_chunks(y, 1, threads, MIN_ELEMS, |start, piece| {
        pulp::Arch::new().dispatch(MapOne {
            x: &x[start..],
            out: piece,
            f: |v| quantize_one(v, s, zp),
        });
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
/// per tensor or per row of `a` / per column of `b`; each tile of at most [`igemm::NR`] i32
/// sums of output row `i` (of its matrix), starting at column `j0`, goes to
/// `epilogue.apply(i, j0, sums, out)`.
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
    epilogue: &impl Epilogue<O>,
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
    SCRATCH.with(|cell| {
        let mut own = Scratch::default();
        // Never expected busy (kernels do not nest); stay correct with buffers of its own.
        let mut guard = cell.try_borrow_mut();
        let sc = match guard.as_deref_mut() {
            Ok(sc) => sc,
            Err(_) => &mut own,
        };
        for bi in 0..batches {
            let a_mat = &a[batch_offset(bi, &out_batch, a_batch, m * k)..][..m * k];
            let b_mat = &b[batch_offset(bi, &out_batch, b_batch, k * n)..][..k * n];
            // 8-bit values minus 8-bit zero points lie within +-255: exact in i16.
            sc.rows.repack(m, k, &mut |i, buf: &mut [i16]| {
                let z = a_zp[if a_zp.len() == 1 { 0 } else { i }].widen();
                for (d, &v) in buf.iter_mut().zip(&a_mat[i * k..][..k]) {
                    *d = (v.widen() - z) as i16;
                }
            });
            igemm::pack_cols(k, n, &mut sc.panels, &mut sc.two, |kk, buf| {
                let src = &b_mat[kk * n..][..n];
                if b_zp.len() == 1 {
                    let z = b_zp[0].widen();
                    for (d, &v) in buf.iter_mut().zip(src) {
                        *d = (v.widen() - z) as i16;
                    }
                } else {
                    for ((d, &v), &z) in buf.iter_mut().zip(src).zip(b_zp) {
                        *d = (v.widen() - z.widen()) as i16;
                    }
                }
            });
            let o = &mut out[bi * m * n..][..m * n];
            igemm::gemm(&sc.rows, &sc.panels, n, o, threads, epilogue);
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
        &Sums { bias: None },
    )
}

/// The sums themselves, plus a conv's bias per output channel (MatMulInteger, ConvInteger).
struct Sums<'a> {
    bias: Option<&'a [i32]>,
}

impl Epilogue<i32> for Sums<'_> {
    #[inline(always)]
    fn apply(&self, i: usize, _: usize, sums: &[i32], out: &mut [i32]) {
        let b = self.bias.map_or(0, |b| b[i]);
        for (o, &s) in out.iter_mut().zip(sums) {
            *o = s.wrapping_add(b);
        }
    }
}

/// Requantized sums: QLinearMatMul's (multiplier per row of `a` and column of `b`) or
/// QLinearConv's (per output channel, after its bias).
struct Requantized<'a, Y> {
    rq: Requant<'a, Y>,
    bias: Option<&'a [i32]>,
    conv: bool,
}

impl<Y: QElem> Epilogue<Y> for Requantized<'_, Y> {
    #[inline(always)]
    fn apply(&self, i: usize, j0: usize, sums: &[i32], out: &mut [Y]) {
        let yzp = self.rq.y_zero_point.widen();
        if self.conv || self.rq.b_scale.len() == 1 {
            let mult = if self.conv {
                self.rq.multiplier(0, i)
            } else {
                self.rq.multiplier(i, 0)
            };
            let b = self.bias.map_or(0, |b| b[i]);
            for (y, &s) in out.iter_mut().zip(sums) {
                *y = requantize(s.wrapping_add(b), mult, yzp);
            }
        } else {
            for (jj, (y, &s)) in out.iter_mut().zip(sums).enumerate() {
                *y = requantize(s, self.rq.multiplier(i, j0 + jj), yzp);
            }
        }
    }
}

/// Requantization of an i32 sum: `saturate(round_half_even(sum * multiplier) + zp)`, the
/// product in f64 as the ONNX reference computes it (numpy promotes i32 * f32 to f64).
#[inline(always)]
fn requantize<Q: QElem>(sum: i32, multiplier: f32, zp: i32) -> Q {
    let v = round_even_f64_i32(f64::from(sum) * f64::from(multiplier));
    Q::saturate_i32(v.saturating_add(zp))
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
        &Requantized {
            rq,
            bias: None,
            conv: false,
        },
    )
}

/// ONNX MaxPool on u8 / i8: every 8-bit value is exact in f32 and max commutes with the
/// conversion, so the f32 kernel (all its paths) runs on a widened copy and the result narrows
/// back unchanged. The copies live in per-thread buffers that grow once.
///
/// # Errors
/// As [`super::pool`].
pub fn max_pool_q8<Q: QElem>(
    x: &[Q],
    x_shape: &[usize],
    attrs: &super::PoolAttrs,
    out: &mut [Q],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "MaxPool";
    check_len(OP, "input", x.len(), x_shape.iter().product())?;
    let mut run = |(wide, pooled): &mut (Vec<f32>, Vec<f32>)| {
        wide.clear();
        wide.extend(x.iter().map(|&v| v.widen() as f32));
        pooled.clear();
        pooled.resize(out.len(), 0.0);
        super::pool(super::PoolKind::Max, wide, x_shape, attrs, pooled, threads)?;
        for (o, &v) in out.iter_mut().zip(pooled.iter()) {
            // A max of 8-bit values (or of none, -inf, for an all-padding window) narrows
            // exactly; saturation only bounds the empty window.
            *o = Q::saturate_i32(v.max(Q::LO as f32) as i32);
        }
        Ok(())
    };
    POOL8.with(|cell| match cell.try_borrow_mut() {
        Ok(mut bufs) => run(&mut bufs),
        Err(_) => run(&mut (Vec::new(), Vec::new())),
    })
}

thread_local! {
    /// [`max_pool_q8`]'s widened input and f32 output.
    static POOL8: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
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

/// Writes row `r = ci * taps + tap` of one image's im2col matrix into `row` (one value per
/// output position): `x - x_zero_point`, 0 where the tap falls in the padding (which is the
/// zero point).
fn im2col_row<X: QElem>(x: &[X], geo: &Geom3, xzp: i32, r: usize, row: &mut [i16]) {
    let [od, oh, ow] = geo.output;
    let [kd, kh, kw] = geo.kernel;
    let [_, ih, iw] = geo.input;
    let in_plane: usize = geo.input.iter().product();
    let taps = kd * kh * kw;
    let (ci, tap) = (r / taps, r % taps);
    let (a, b, cq) = (tap / (kh * kw), tap / kw % kh, tap % kw);
    let x_c = &x[ci * in_plane..][..in_plane];
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
            if lo >= hi {
                continue;
            }
            // |x - zp| <= 255 for 8-bit types: fits i16.
            let first = lo * s + off - geo.pad[2];
            if s == 1 {
                for (d, &v) in dst[lo..hi].iter_mut().zip(&x_row[first..]) {
                    *d = (v.widen() - xzp) as i16;
                }
            } else {
                let taken = x_row[first..].iter().step_by(s);
                for (d, &v) in dst[lo..hi].iter_mut().zip(taken) {
                    *d = (v.widen() - xzp) as i16;
                }
            }
        }
    }
}

/// Integer convolution: i32 sums of `(x - x_zero_point) * (w - w_zero_point)` per output row
/// tile, handed to `epilogue.apply(m, j0, sums, out)` with `m` the output channel (the
/// epilogue adds any bias).
#[allow(clippy::too_many_arguments)]
fn int_conv<X: QElem, W: QElem, O: Send>(
    op: &'static str,
    x: &[X],
    x_shape: &[usize],
    x_zero_point: X,
    w: &[W],
    w_shape: &[usize],
    w_zero_point: &[W],
    packed: Option<&PackedRows>,
    attrs: &ConvAttrs,
    out: &mut [O],
    out_shape: &[usize],
    threads: usize,
    epilogue: &impl Epilogue<O>,
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
    let plane: usize = geo.output.iter().product();
    let in_plane: usize = geo.input.iter().product();
    let taps: usize = geo.kernel.iter().product();
    if plane == 0 {
        return Ok(());
    }
    let ow = geo.output[2];
    let m_per_g = m / g;
    let xzp = x_zero_point.widen();
    if g == 1 {
        // One group: im2col, then the integer GEMM of the weights (rows) and the columns.
        let k = c * taps;
        if let Some(p) = packed {
            if (p.rows(), p.k()) != (m, k) {
                return Err(KernelError::InvalidAttribute {
                    op,
                    attr: "packed weights",
                    reason: format!(
                        "packed as {} x {}, the filter {:?} is {m} x {k}",
                        p.rows(),
                        p.k(),
                        w_shape
                    ),
                });
            }
        }
        let mut run = |sc: &mut Scratch| {
            if packed.is_none() {
                sc.rows.repack(m, k, &mut weight_rows(w, w_zero_point, k));
            }
            let rows = packed.unwrap_or(&sc.rows);
            for n in 0..nb {
                let x_n = &x[n * c * in_plane..][..c * in_plane];
                igemm::pack_cols(k, plane, &mut sc.panels, &mut sc.two, |r, row| {
                    im2col_row(x_n, &geo, xzp, r, row)
                });
                let o = &mut out[n * m * plane..][..m * plane];
                igemm::gemm(rows, &sc.panels, plane, o, threads, epilogue);
            }
        };
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut sc) => run(&mut sc),
            // Never expected (kernels do not nest); stay correct with buffers of its own.
            Err(_) => run(&mut Scratch::default()),
        });
        return Ok(());
    }
    // Grouped (depthwise among them): per output plane, each input channel of its group as a
    // zero-padded i16 volume split into column phases, then one contiguous multiply-add run
    // per tap and output row.
    let pw = PhaseGeom::new(&geo);
    par_chunks(out, plane, threads, 1, |first, planes| {
        GROUPED.with(|cell| {
            let mut own = Grouped::default();
            let mut guard = cell.try_borrow_mut();
            let Grouped {
                phases,
                acc,
                taps: wt,
            } = match guard.as_deref_mut() {
                Ok(sc) => sc,
                Err(_) => &mut own,
            };
            for (p, dst) in planes.chunks_mut(plane).enumerate() {
                let (n, oc) = ((first + p) / m, (first + p) % m);
                let grp = oc / m_per_g;
                let wzp = w_zero_point[if w_zero_point.len() == 1 { 0 } else { oc }].widen();
                acc.clear();
                acc.resize(plane, 0);
                for ci in 0..cg {
                    let x_c = &x[(n * c + grp * cg + ci) * in_plane..][..in_plane];
                    pw.fill(x_c, xzp, phases);
                    wt.clear();
                    let w_c = &w[(oc * cg + ci) * taps..][..taps];
                    wt.extend(w_c.iter().map(|v| v.widen() - wzp));
                    pulp::Arch::new().dispatch(GroupedTaps {
                        geo: &geo,
                        pw: &pw,
                        phases,
                        w: wt,
                        acc,
                    });
                }
                pulp::Arch::new().dispatch(ApplyRows {
                    oc,
                    width: ow,
                    sums: acc,
                    out: dst,
                    epilogue,
                });
            }
        });
    });
    Ok(())
}

/// Row `oc` of a filter as the GEMM's row operand: `w - w_zero_point` over its `k` values.
fn weight_rows<'a, W: QElem>(
    w: &'a [W],
    w_zero_point: &'a [W],
    k: usize,
) -> impl FnMut(usize, &mut [i16]) + 'a {
    move |oc, buf| {
        let z = w_zero_point[if w_zero_point.len() == 1 { 0 } else { oc }].widen();
        for (d, &v) in buf.iter_mut().zip(&w[oc * k..][..k]) {
            // An 8-bit weight minus its zero point lies within +-255.
            *d = (v.widen() - z) as i16;
        }
    }
}

/// A one-group integer conv's filter packed once (at load) for the GEMM; `None` for grouped
/// convs, whose direct path reads the filter as it is.
///
/// # Errors
/// A filter of fewer than 3 axes, a length that does not match, or a zero point count other
/// than 1 or the output channel count.
pub fn pack_conv_weights<W: QElem>(
    w: &[W],
    w_shape: &[usize],
    w_zero_point: &[W],
    group: usize,
) -> KernelResult<Option<PackedRows>> {
    const OP: &str = "QLinearConv / ConvInteger";
    if w_shape.len() < 3 {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "w",
            reason: format!("filter shape {w_shape:?} has fewer than 3 axes"),
        });
    }
    check_len(OP, "w", w.len(), w_shape.iter().product())?;
    let (m, k) = (w_shape[0], w_shape[1..].iter().product::<usize>());
    per(OP, "w_zero_point", w_zero_point, m)?;
    if group > 1 {
        return Ok(None);
    }
    Ok(Some(PackedRows::pack(
        m,
        k,
        weight_rows(w, w_zero_point, k),
    )))
}

/// An output plane's sums through the epilogue, row by row (compiled for the machine's vector
/// width).
struct ApplyRows<'a, O, E> {
    oc: usize,
    width: usize,
    sums: &'a [i32],
    out: &'a mut [O],
    epilogue: &'a E,
}

impl<O, E: Epilogue<O>> pulp::WithSimd for ApplyRows<'_, O, E> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let rows = self.sums.chunks_exact(self.width);
        for (sums, row) in rows.zip(self.out.chunks_exact_mut(self.width)) {
            self.epilogue.apply(self.oc, 0, sums, row);
        }
    }
}

/// The grouped path's buffers, per worker, reused across runs.
#[derive(Default)]
struct Grouped {
    /// One input channel as [`PhaseGeom`] rows.
    phases: Vec<i16>,
    /// The output plane's sums.
    acc: Vec<i32>,
    /// One input channel's weights minus the zero point.
    taps: Vec<i32>,
}

thread_local! {
    static GROUPED: RefCell<Grouped> = RefCell::new(Grouped::default());
}

/// The padded input rows of a grouped conv split into column phases: padded column `j` of a
/// row is phase `j % s`, position `j / s` (`s` the last axis's stride), so output column `ox`
/// of tap `kx` reads phase `(kx * dilation) % s` at `(kx * dilation) / s + ox`: a contiguous
/// run for any stride and dilation.
struct PhaseGeom {
    /// Input rows (depth x height) and columns, the left padding, the stride `s`.
    rows: usize,
    iw: usize,
    pad: usize,
    s: usize,
    /// Positions per phase.
    width: usize,
}

impl PhaseGeom {
    fn new(geo: &Geom3) -> Self {
        let s = geo.stride[2].max(1);
        // The padded columns any tap reads, and at least the input itself.
        let reach =
            (geo.output[2].max(1) - 1) * s + (geo.kernel[2].max(1) - 1) * geo.dilation[2] + 1;
        let cols = reach.max(geo.input[2] + geo.pad[2]);
        PhaseGeom {
            rows: geo.input[0] * geo.input[1],
            iw: geo.input[2],
            pad: geo.pad[2],
            s,
            width: cols.div_ceil(s),
        }
    }

    /// Elements of one row's phases.
    fn row_len(&self) -> usize {
        self.s * self.width
    }

    /// Writes `x - zero point` of one channel volume (zeros in the padding).
    fn fill<X: QElem>(&self, x_c: &[X], xzp: i32, dst: &mut Vec<i16>) {
        dst.clear();
        dst.resize(self.rows * self.row_len(), 0);
        let s = self.s;
        for (src, row) in x_c
            .chunks_exact(self.iw)
            .zip(dst.chunks_exact_mut(self.row_len()))
        {
            for (p, phase) in row.chunks_exact_mut(self.width).enumerate() {
                // Padded column `t * s + p` is input column `t * s + p - pad`.
                let t0 = self.pad.saturating_sub(p).div_ceil(s);
                let first = t0 * s + p - self.pad;
                let taken = src.iter().skip(first).step_by(s);
                for (d, &v) in phase[t0..].iter_mut().zip(taken) {
                    // An 8-bit value minus its zero point lies within +-255.
                    *d = (v.widen() - xzp) as i16;
                }
            }
        }
    }
}

/// One input channel's taps added into an output plane's sums (compiled for the machine's
/// vector width by `pulp::Arch::dispatch`).
struct GroupedTaps<'a> {
    geo: &'a Geom3,
    pw: &'a PhaseGeom,
    phases: &'a [i16],
    w: &'a [i32],
    acc: &'a mut [i32],
}

impl pulp::WithSimd for GroupedTaps<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let geo = self.geo;
        let [od, oh, ow] = geo.output;
        let [kd, kh, kw] = geo.kernel;
        let ih = geo.input[1];
        let (s, d) = (self.pw.s, geo.dilation[2]);
        for z in 0..od {
            for y in 0..oh {
                let acc = &mut self.acc[(z * oh + y) * ow..][..ow];
                for a in 0..kd {
                    let Some(iz) = geo.src(0, z, a) else { continue };
                    for b in 0..kh {
                        let Some(iy) = geo.src(1, y, b) else { continue };
                        let row =
                            &self.phases[(iz * ih + iy) * self.pw.row_len()..][..self.pw.row_len()];
                        for cq in 0..kw {
                            let wv = self.w[(a * kh + b) * kw + cq];
                            let off = cq * d;
                            let run = &row[(off % s) * self.pw.width + off / s..][..ow];
                            for (sum, &v) in acc.iter_mut().zip(run) {
                                *sum = sum.wrapping_add(wv.wrapping_mul(i32::from(v)));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// ONNX ConvInteger: `conv(x - x_zero_point, w - w_zero_point)` in i32 (zero points 0 when
/// absent; `w_zero_point` per tensor or per output channel). Padding contributes nothing
/// (it is the zero point). `packed` is the filter from [`pack_conv_weights`] (of this `w` and
/// zero point), or `None` to pack it per call.
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
    packed: Option<&PackedRows>,
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
        packed,
        attrs,
        out,
        out_shape,
        threads,
        &Sums { bias: None },
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
    packed: Option<&PackedRows>,
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
    if let Some(b) = bias {
        check_len(OP, "bias", b.len(), w_shape.first().copied().unwrap_or(0))?;
    }
    int_conv(
        OP,
        x,
        x_shape,
        x_zero_point,
        w,
        w_shape,
        w_zero_point,
        packed,
        attrs,
        out,
        out_shape,
        threads,
        &Requantized {
            rq,
            bias,
            conv: true,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_rounding_is_round_half_to_even() {
        for v in [
            0.5f32,
            1.5,
            2.5,
            -0.5,
            -1.5,
            -2.5,
            0.49999997,
            3.7,
            -3.7,
            4_194_303.5,
            -4_194_304.0,
            1e9,
            -1e9,
        ] {
            let want = v.clamp(-4_194_304.0, 4_194_304.0).round_ties_even();
            assert_eq!(round_even_i32(v), want as i32, "{v}");
            let w = f64::from(v);
            assert_eq!(round_even_f64_i32(w), w.round_ties_even() as i32, "{w}");
        }
        assert_eq!(round_even_i32(4_194_304.0), 4_194_304);
        assert_eq!(round_even_f64_i32(2.5e15), 1 << 30);
        assert_eq!(round_even_f64_i32(-2.5e15), -(1 << 30));
        assert_eq!(round_even_f64_i32(1_073_741_823.5), 1 << 30);
        assert_eq!(round_even_i32(f32::NAN), 0);
        assert_eq!(round_even_f64_i32(f64::NAN), 0);
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
        let (m, k, n) = (3, 5, 70); // n > 2 * NR: three column panels
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
            // The same conv with a given packed filter (or none), output and thread count.
            let run = |packed: Option<&PackedRows>, out: &mut [i32], threads: usize| {
                conv_integer(
                    &x, &xs, xzp, &w, &ws, &wzp, packed, &attrs, out, &os, threads,
                )
            };
            let mut out = vec![0i32; 2 * 4 * oh * ow];
            run(None, &mut out, 2).unwrap();
            let packed = pack_conv_weights(&w, &ws, &wzp, group).unwrap();
            assert_eq!(packed.is_some(), group == 1);
            if let Some(p) = &packed {
                let mut again = vec![0i32; out.len()];
                run(Some(p), &mut again, 1).unwrap();
                assert_eq!(again, out, "prepacked filter");
                let other = pack_conv_weights(&w[..12], &[2, 2, 3, 1], &[0], 1).unwrap();
                let err = run(other.as_ref(), &mut again, 1);
                assert!(
                    matches!(err, Err(KernelError::InvalidAttribute { .. })),
                    "{err:?}"
                );
            }
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

    /// The grouped path's column phases: strides 2 and 3 on the last axis with left pads of
    /// 0 to 3 (pads larger than the stride included) and a dilation, against a direct sum.
    #[test]
    fn depthwise_conv_with_strided_columns_matches_a_direct_sum() {
        let (c, h, wd) = (3usize, 7usize, 11usize);
        let x: Vec<i8> = (0..c * h * wd)
            .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
            .collect();
        let w: Vec<u8> = (0..c * 9).map(|i| (i * 53 % 256) as u8).collect();
        for (stride, pad, dil) in [(2, 0, 1), (2, 1, 1), (3, 2, 1), (2, 3, 1), (3, 1, 2)] {
            let mut attrs = ConvAttrs::new(&[3, 3]);
            attrs.strides = vec![1, stride];
            attrs.dilations = vec![1, dil];
            attrs.pads_begin = vec![1, pad];
            attrs.pads_end = vec![1, pad];
            attrs.group = c;
            let ow = (wd + 2 * pad - (dil * 2 + 1)) / stride + 1;
            let os = [1, c, h, ow];
            let (xzp, wzp) = (-3i8, [128u8, 7, 255]);
            let mut out = vec![0i32; c * h * ow];
            let xs = [1, c, h, wd];
            let ws = [c, 1, 3, 3];
            conv_integer(&x, &xs, xzp, &w, &ws, &wzp, None, &attrs, &mut out, &os, 2).unwrap();
            for ch in 0..c {
                for y in 0..h {
                    for xo in 0..ow {
                        let mut s = 0i32;
                        for a in 0..3 {
                            for b in 0..3 {
                                let iy = (y + a) as isize - 1;
                                let ix = (xo * stride + b * dil) as isize - pad as isize;
                                if (0..h as isize).contains(&iy) && (0..wd as isize).contains(&ix) {
                                    let xv =
                                        i32::from(x[(ch * h + iy as usize) * wd + ix as usize]) + 3;
                                    let wv = i32::from(w[ch * 9 + a * 3 + b]) - i32::from(wzp[ch]);
                                    s += xv * wv;
                                }
                            }
                        }
                        let got = out[(ch * h + y) * ow + xo];
                        assert_eq!(
                            got, s,
                            "stride {stride} pad {pad} dil {dil} c {ch} y {y} x {xo}"
                        );
                    }
                }
            }
        }
    }

    /// 8-bit MaxPool equals the f32 pool of the same values, padding and negative i8 values
    /// included (padding must never win, as a 0 would over all-negative windows).
    #[test]
    fn max_pool_on_8_bit_matches_the_f32_pool() {
        let shape = [1usize, 2, 5, 5];
        let x: Vec<i8> = (0..50).map(|i| -100 - (i * 7 % 28) as i8).collect();
        let mut a = super::super::PoolAttrs::new(&[3, 3]);
        a.strides = vec![2, 2];
        a.pads_begin = vec![1, 1];
        a.pads_end = vec![1, 1];
        let mut got = vec![0i8; 2 * 3 * 3];
        max_pool_q8(&x, &shape, &a, &mut got, 2).unwrap();
        let wide: Vec<f32> = x.iter().map(|&v| f32::from(v)).collect();
        let mut want = vec![0f32; got.len()];
        super::super::pool(super::super::PoolKind::Max, &wide, &shape, &a, &mut want, 1).unwrap();
        assert_eq!(got.iter().map(|&v| f32::from(v)).collect::<Vec<_>>(), want);
        assert!(got.iter().all(|&v| v < 0));
        let xu: Vec<u8> = (0..50).map(|i| (i * 37 % 256) as u8).collect();
        let mut gu = vec![0u8; 18];
        max_pool_q8(&xu, &shape, &a, &mut gu, 1).unwrap();
        assert_eq!(gu[0], *[xu[0], xu[1], xu[5], xu[6]].iter().max().unwrap());
        let err = max_pool_q8(&xu[..49], &shape, &a, &mut gu, 1);
        assert!(err.is_err());
    }
}
