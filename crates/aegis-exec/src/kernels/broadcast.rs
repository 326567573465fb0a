//! The numpy multidirectional broadcasting engine shared by every elementwise operator.
//!
//! Shapes are right-aligned and padded with leading 1s; a dimension of extent 1 stretches to
//! the other operands' extent. The plan drops output dimensions of extent 1 and merges
//! neighbouring dimensions whose strides chain for every operand, so the common cases
//! collapse to a single *inner run* per output row where each operand is either contiguous
//! (step 1) or a repeated scalar (step 0): same shape (one run), scalar operand,
//! per-channel `[C,1,1]` against `[N,C,H,W]` (runs of `H*W`), row broadcast. Rows are
//! walked with an odometer, so there is no per-element index arithmetic.

use super::error::{check_len, numel, KernelError, KernelResult};
use super::par::par_chunks;

/// Output elements per worker below which an elementwise job stays on the calling thread
/// (64k elements, tens of microseconds of memory traffic: less does not repay a wake-up).
pub(crate) const PAR_MIN_ELEMS: usize = 1 << 16;

/// The numpy broadcast of two shapes.
///
/// # Errors
/// [`KernelError::ShapeMismatch`] when a pair of aligned extents differ and neither is 1.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> KernelResult<Vec<usize>> {
    broadcast_shape_op("broadcast", a, b)
}

pub(crate) fn broadcast_shape_op(
    op: &'static str,
    a: &[usize],
    b: &[usize],
) -> KernelResult<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r {
            a[i + a.len() - r]
        } else {
            1
        };
        let db = if i + b.len() >= r {
            b[i + b.len() - r]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(KernelError::ShapeMismatch {
                op,
                a: a.to_vec(),
                b: b.to_vec(),
            });
        };
    }
    Ok(out)
}

/// The numpy broadcast of any number of shapes (the shape of `[]` inputs is `[]`).
///
/// # Errors
/// As [`broadcast_shape`].
pub fn broadcast_shapes(shapes: &[&[usize]]) -> KernelResult<Vec<usize>> {
    shapes.iter().try_fold(Vec::new(), |acc, s| {
        broadcast_shape_op("broadcast", &acc, s)
    })
}

/// A row-walk plan over `N` operands broadcast to one output.
#[derive(Debug, Clone)]
pub(crate) struct Plan<const N: usize> {
    /// Output shape.
    pub out_shape: Vec<usize>,
    /// Elements in the innermost contiguous output run.
    pub inner: usize,
    /// Per operand: 1 if it advances along the inner run, 0 if it repeats one element.
    pub step: [usize; N],
    /// Outer (merged) output extents, outermost first.
    outer: Vec<usize>,
    /// Per outer dimension, each operand's element stride (0 where broadcast).
    strides: Vec<[usize; N]>,
}

impl<const N: usize> Plan<N> {
    pub(crate) fn new(op: &'static str, shapes: [&[usize]; N]) -> KernelResult<Self> {
        let mut out_shape: Vec<usize> = Vec::new();
        for s in shapes {
            out_shape = broadcast_shape_op(op, &out_shape, s)?;
        }
        let r = out_shape.len();
        // Padded per-operand contiguous strides, 0 where the operand broadcasts.
        let mut dims: Vec<(usize, [usize; N])> = Vec::with_capacity(r);
        let mut st = vec![[0usize; N]; r];
        for (k, s) in shapes.iter().enumerate() {
            let mut acc = 1usize;
            for d in (0..r).rev() {
                let ext = if d + s.len() >= r {
                    s[d + s.len() - r]
                } else {
                    1
                };
                st[d][k] = if ext == 1 { 0 } else { acc };
                acc = acc.saturating_mul(ext);
            }
        }
        for d in 0..r {
            if out_shape[d] != 1 {
                dims.push((out_shape[d], st[d]));
            }
        }
        // Merge neighbours whose strides chain for every operand.
        let mut merged: Vec<(usize, [usize; N])> = Vec::with_capacity(dims.len());
        for (ext, s) in dims {
            if let Some(last) = merged.last_mut() {
                if (0..N).all(|k| last.1[k] == s[k] * ext) {
                    last.0 *= ext;
                    last.1 = s;
                    continue;
                }
            }
            merged.push((ext, s));
        }
        let (inner, step) = match merged.pop() {
            Some((ext, s)) => (ext, s),
            None => (1, [0; N]),
        };
        let (outer, strides) = merged.into_iter().unzip();
        Ok(Self {
            out_shape,
            inner,
            step,
            outer,
            strides,
        })
    }

    pub(crate) fn out_len(&self) -> usize {
        self.outer.iter().product::<usize>() * self.inner
    }

    /// Calls `f(row_index_within_range, offsets)` for output rows `first..first + count`.
    /// Always inlined, so the row loops in `f` are compiled inside the caller's SIMD dispatch.
    #[inline(always)]
    pub(crate) fn for_rows(
        &self,
        first: usize,
        count: usize,
        mut f: impl FnMut(usize, [usize; N]),
    ) {
        if count == 0 {
            return;
        }
        let nd = self.outer.len();
        let mut idx = vec![0usize; nd];
        let mut off = [0usize; N];
        let mut rem = first;
        for d in (0..nd).rev() {
            idx[d] = rem % self.outer[d];
            rem /= self.outer[d];
            for (k, o) in off.iter_mut().enumerate() {
                *o += idx[d] * self.strides[d][k];
            }
        }
        for row in 0..count {
            f(row, off);
            // Odometer step, innermost outer dimension fastest.
            let mut d = nd;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                for (k, o) in off.iter_mut().enumerate() {
                    *o += self.strides[d][k];
                }
                if idx[d] < self.outer[d] {
                    break;
                }
                for (k, o) in off.iter_mut().enumerate() {
                    *o -= idx[d] * self.strides[d][k];
                }
                idx[d] = 0;
            }
        }
    }
}

/// `out[i] = f(a[ia], b[ib])` with numpy broadcasting; `out` holds the broadcast shape.
///
/// Inner runs are monomorphic loops over slices (same-shape, scalar-left, scalar-right), so
/// simple `f` vectorise. Parallel over output rows; deterministic for any `threads`.
///
/// # Errors
/// Non-broadcastable shapes, or a buffer length that disagrees with its shape.
#[allow(clippy::too_many_arguments)]
pub fn broadcast_binary<A, B, O, F>(
    op: &'static str,
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    out: &mut [O],
    threads: usize,
    f: F,
) -> KernelResult<()>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Send,
    F: Fn(A, B) -> O + Sync,
{
    check_len(op, "A", a.len(), numel(op, a_shape)?)?;
    check_len(op, "B", b.len(), numel(op, b_shape)?)?;
    let plan = Plan::new(op, [a_shape, b_shape])?;
    check_len(op, "output", out.len(), plan.out_len())?;
    let inner = plan.inner;
    if inner == 0 || out.is_empty() {
        return Ok(());
    }
    par_chunks(
        out,
        inner,
        threads,
        PAR_MIN_ELEMS.div_ceil(inner),
        |first, piece| {
            let rows = piece.len() / inner;
            // Through pulp's dispatch: the monomorphic row loops then vectorise for the
            // widest unit the CPU has (AVX-512/AVX2), not the SSE2 baseline.
            simd_dispatch(
                #[inline(always)]
                || {
                    plan.for_rows(first, rows, |r, [oa, ob]| {
                        let o = &mut piece[r * inner..(r + 1) * inner];
                        match plan.step {
                            [1, 1] => {
                                let (x, y) = (&a[oa..oa + inner], &b[ob..ob + inner]);
                                for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                                    *o = f(x, y);
                                }
                            }
                            [0, 1] => {
                                let (x, y) = (a[oa], &b[ob..ob + inner]);
                                for (o, &y) in o.iter_mut().zip(y) {
                                    *o = f(x, y);
                                }
                            }
                            [1, 0] => {
                                let (x, y) = (&a[oa..oa + inner], b[ob]);
                                for (o, &x) in o.iter_mut().zip(x) {
                                    *o = f(x, y);
                                }
                            }
                            _ => {
                                let (x, y) = (a[oa], b[ob]);
                                for o in o.iter_mut() {
                                    *o = f(x, y);
                                }
                            }
                        }
                    });
                },
            );
        },
    );
    Ok(())
}

/// In place `out[i] = f(out[i], b[ib])`, where `b_shape` broadcasts to `out_shape`
/// (which must already be the broadcast result).
///
/// # Errors
/// As [`broadcast_binary`], plus [`KernelError::ShapeMismatch`] if `b` would enlarge `out`.
pub fn broadcast_assign<O, B, F>(
    op: &'static str,
    out: &mut [O],
    out_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    threads: usize,
    f: F,
) -> KernelResult<()>
where
    O: Copy + Send,
    B: Copy + Sync,
    F: Fn(O, B) -> O + Sync,
{
    check_len(op, "output", out.len(), numel(op, out_shape)?)?;
    check_len(op, "B", b.len(), numel(op, b_shape)?)?;
    let plan = Plan::new(op, [out_shape, b_shape])?;
    if plan.out_shape != out_shape {
        return Err(KernelError::ShapeMismatch {
            op,
            a: out_shape.to_vec(),
            b: b_shape.to_vec(),
        });
    }
    let inner = plan.inner;
    if inner == 0 || out.is_empty() {
        return Ok(());
    }
    par_chunks(
        out,
        inner,
        threads,
        PAR_MIN_ELEMS.div_ceil(inner),
        |first, piece| {
            let rows = piece.len() / inner;
            simd_dispatch(
                #[inline(always)]
                || {
                    plan.for_rows(first, rows, |r, [_, ob]| {
                        let o = &mut piece[r * inner..(r + 1) * inner];
                        if plan.step[1] == 1 {
                            for (o, &y) in o.iter_mut().zip(&b[ob..ob + inner]) {
                                *o = f(*o, y);
                            }
                        } else {
                            let y = b[ob];
                            for o in o.iter_mut() {
                                *o = f(*o, y);
                            }
                        }
                    });
                },
            );
        },
    );
    Ok(())
}

/// `out[i] = f(a[ia], b[ib], c[ic])` with three-way numpy broadcasting (Where).
///
/// # Errors
/// As [`broadcast_binary`].
#[allow(clippy::too_many_arguments)]
pub fn broadcast_ternary<A, B, C, O, F>(
    op: &'static str,
    a: &[A],
    a_shape: &[usize],
    b: &[B],
    b_shape: &[usize],
    c: &[C],
    c_shape: &[usize],
    out: &mut [O],
    threads: usize,
    f: F,
) -> KernelResult<()>
where
    A: Copy + Sync,
    B: Copy + Sync,
    C: Copy + Sync,
    O: Send,
    F: Fn(A, B, C) -> O + Sync,
{
    check_len(op, "A", a.len(), numel(op, a_shape)?)?;
    check_len(op, "B", b.len(), numel(op, b_shape)?)?;
    check_len(op, "C", c.len(), numel(op, c_shape)?)?;
    let plan = Plan::new(op, [a_shape, b_shape, c_shape])?;
    check_len(op, "output", out.len(), plan.out_len())?;
    let inner = plan.inner;
    if inner == 0 || out.is_empty() {
        return Ok(());
    }
    par_chunks(
        out,
        inner,
        threads,
        PAR_MIN_ELEMS.div_ceil(inner),
        |first, piece| {
            let rows = piece.len() / inner;
            plan.for_rows(first, rows, |r, [oa, ob, oc]| {
                let o = &mut piece[r * inner..(r + 1) * inner];
                if plan.step == [1, 1, 1] {
                    let (x, y, z) = (&a[oa..oa + inner], &b[ob..ob + inner], &c[oc..oc + inner]);
                    for (((o, &x), &y), &z) in o.iter_mut().zip(x).zip(y).zip(z) {
                        *o = f(x, y, z);
                    }
                } else {
                    let [sa, sb, sc] = plan.step;
                    for (i, o) in o.iter_mut().enumerate() {
                        *o = f(a[oa + i * sa], b[ob + i * sb], c[oc + i * sc]);
                    }
                }
            });
        },
    );
    Ok(())
}

/// Runs `f` under pulp's run-time dispatch (AVX-512, AVX2 or the baseline): an always-inlined
/// `f` is compiled once per instruction set, so its simple loops vectorise to the widest unit.
#[inline(always)]
pub(crate) fn simd_dispatch<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}
