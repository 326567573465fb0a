//! Index-driven data movement and selection: GatherElements, ScatterElements, ScatterND,
//! OneHot, TopK, CumSum and Trilu. Generic over the element type; indices are i64 or i32,
//! negative ones count from the end of their axis, and an index out of range is an error
//! naming it (never a panic or a wild write). Single-threaded: these ops sit in heads and
//! pre/post-processing, not in the hot convolution path, and scatter order must follow the
//! update order.

use super::error::{check_len, invalid, numel, KernelError, KernelResult};

/// Resolves a possibly negative index against an axis of `dim` elements (Gather too).
pub(crate) fn resolve_index(op: &'static str, i: i64, dim: usize) -> KernelResult<usize> {
    let r = if i < 0 { i + dim as i64 } else { i };
    if r < 0 || r >= dim as i64 {
        return Err(KernelError::IndexOutOfRange {
            op,
            index: i,
            size: dim,
        });
    }
    Ok(r as usize)
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for a in (0..shape.len().saturating_sub(1)).rev() {
        s[a] = s[a + 1] * shape[a + 1];
    }
    s
}

/// Offset in a tensor of `shape` of the element at the multi-index of flat position `flat`
/// in a tensor of `index_shape` (same rank), with axis `axis` replaced by `at`.
fn offset_with(
    flat: usize,
    index_shape: &[usize],
    shape_strides: &[usize],
    axis: usize,
    at: usize,
) -> usize {
    let mut rem = flat;
    let mut off = 0;
    for a in (0..index_shape.len()).rev() {
        let i = rem % index_shape[a];
        rem /= index_shape[a];
        off += if a == axis { at } else { i } * shape_strides[a];
    }
    off
}

/// ONNX GatherElements: `out[idx] = data[idx with axis replaced by indices[idx]]`; `out` has
/// the shape of `indices` (same rank as `data`, every other extent at most `data`'s).
///
/// # Errors
/// Rank or length mismatches, an index out of range.
pub fn gather_elements<T: Copy, I: Copy + Into<i64>>(
    data: &[T],
    data_shape: &[usize],
    indices: &[I],
    indices_shape: &[usize],
    axis: usize,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "GatherElements";
    check_same_rank(OP, data_shape, indices_shape, axis)?;
    check_len(OP, "data", data.len(), numel(OP, data_shape)?)?;
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    check_len(OP, "output", out.len(), indices.len())?;
    let st = strides(data_shape);
    for (flat, (o, &i)) in out.iter_mut().zip(indices).enumerate() {
        let at = resolve_index(OP, i.into(), data_shape[axis])?;
        *o = data[offset_with(flat, indices_shape, &st, axis, at)];
    }
    Ok(())
}

fn check_same_rank(
    op: &'static str,
    data: &[usize],
    idx: &[usize],
    axis: usize,
) -> KernelResult<()> {
    if data.len() != idx.len()
        || axis >= data.len()
        || data
            .iter()
            .zip(idx)
            .enumerate()
            .any(|(a, (&d, &i))| a != axis && i > d)
    {
        return Err(KernelError::ShapeMismatch {
            op,
            a: data.to_vec(),
            b: idx.to_vec(),
        });
    }
    Ok(())
}

/// How scattered values combine with the data already there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScatterReduction {
    /// Replace (later updates win).
    None,
    /// Add.
    Add,
    /// Multiply.
    Mul,
    /// Keep the maximum.
    Max,
    /// Keep the minimum.
    Min,
}

/// Element types scatter reductions work on.
pub trait ScatterValue: Copy + PartialOrd {
    /// `a + b`.
    fn add(a: Self, b: Self) -> Self;
    /// `a * b`.
    fn mul(a: Self, b: Self) -> Self;
}

macro_rules! scatter_float {
    ($($t:ty),*) => {$(
        impl ScatterValue for $t {
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
        }
    )*};
}
scatter_float!(f32, f64);

macro_rules! scatter_int {
    ($($t:ty),*) => {$(
        impl ScatterValue for $t {
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
        }
    )*};
}
scatter_int!(i32, i64, u8, i8, i16, u16, u32, u64);

fn combine<T: ScatterValue>(r: ScatterReduction, old: T, new: T) -> T {
    match r {
        ScatterReduction::None => new,
        ScatterReduction::Add => T::add(old, new),
        ScatterReduction::Mul => T::mul(old, new),
        ScatterReduction::Max => {
            if new > old {
                new
            } else {
                old
            }
        }
        ScatterReduction::Min => {
            if new < old {
                new
            } else {
                old
            }
        }
    }
}

/// ONNX ScatterElements: `out = data`, then for every position `p` of `indices`,
/// `out[p with axis replaced by indices[p]] (op)= updates[p]`, in order.
///
/// # Errors
/// Shape or length mismatches, an index out of range.
#[allow(clippy::too_many_arguments)]
pub fn scatter_elements<T: ScatterValue, I: Copy + Into<i64>>(
    data: &[T],
    data_shape: &[usize],
    indices: &[I],
    indices_shape: &[usize],
    updates: &[T],
    axis: usize,
    reduction: ScatterReduction,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "ScatterElements";
    check_same_rank(OP, data_shape, indices_shape, axis)?;
    check_len(OP, "data", data.len(), numel(OP, data_shape)?)?;
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    check_len(OP, "updates", updates.len(), indices.len())?;
    check_len(OP, "output", out.len(), data.len())?;
    out.copy_from_slice(data);
    let st = strides(data_shape);
    for (flat, (&i, &u)) in indices.iter().zip(updates).enumerate() {
        let at = resolve_index(OP, i.into(), data_shape[axis])?;
        let o = offset_with(flat, indices_shape, &st, axis, at);
        out[o] = combine(reduction, out[o], u);
    }
    Ok(())
}

/// ONNX ScatterND: `out = data`, then for every index tuple (the last axis of `indices`,
/// of length `k <= rank`), the slice `out[tuple]` (shape `data_shape[k..]`) `(op)=` the matching
/// slice of `updates`, in order.
///
/// # Errors
/// Shape or length mismatches, an index out of range.
pub fn scatter_nd<T: ScatterValue>(
    data: &[T],
    data_shape: &[usize],
    indices: &[i64],
    indices_shape: &[usize],
    updates: &[T],
    reduction: ScatterReduction,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "ScatterND";
    check_len(OP, "data", data.len(), numel(OP, data_shape)?)?;
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    check_len(OP, "output", out.len(), data.len())?;
    let k = match indices_shape.last() {
        Some(&k) if k <= data_shape.len() => k,
        _ => {
            return Err(KernelError::ShapeMismatch {
                op: OP,
                a: data_shape.to_vec(),
                b: indices_shape.to_vec(),
            })
        }
    };
    let slice: usize = data_shape[k..].iter().product();
    let tuples = match indices.len().checked_div(k) {
        Some(t) => t,
        // k = 0: every tuple addresses the whole tensor.
        None => numel(OP, &indices_shape[..indices_shape.len() - 1])?,
    };
    check_len(OP, "updates", updates.len(), tuples * slice)?;
    out.copy_from_slice(data);
    let st = strides(data_shape);
    for t in 0..tuples {
        let mut base = 0;
        for (a, &i) in indices[t * k..(t + 1) * k].iter().enumerate() {
            base += resolve_index(OP, i, data_shape[a])? * st[a];
        }
        let src = &updates[t * slice..(t + 1) * slice];
        for (o, &u) in out[base..base + slice].iter_mut().zip(src) {
            *o = combine(reduction, *o, u);
        }
    }
    Ok(())
}

/// ONNX GatherND: the first `batch_dims` axes of `data` and `indices` are shared; the last
/// axis of `indices` holds tuples of `k` indices into the next `k` axes of `data`, and each
/// tuple selects the slice of the remaining axes. `out` has shape
/// `indices.shape[..q-1] ++ data.shape[batch_dims + k..]`.
///
/// # Errors
/// Shape or length mismatches, an index out of range.
pub fn gather_nd<T: Copy>(
    data: &[T],
    data_shape: &[usize],
    indices: &[i64],
    indices_shape: &[usize],
    batch_dims: usize,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "GatherND";
    check_len(OP, "data", data.len(), numel(OP, data_shape)?)?;
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    let mismatch = || KernelError::ShapeMismatch {
        op: OP,
        a: data_shape.to_vec(),
        b: indices_shape.to_vec(),
    };
    let q = indices_shape.len();
    let b = batch_dims;
    let k = match indices_shape.last() {
        Some(&k) if b < q && b + k <= data_shape.len() && data_shape[..b] == indices_shape[..b] => {
            k
        }
        _ => return Err(mismatch()),
    };
    let batches: usize = data_shape[..b].iter().product();
    let per_batch: usize = data_shape[b..].iter().product();
    let tuples: usize = indices_shape[b..q - 1].iter().product();
    let slice: usize = data_shape[b + k..].iter().product();
    check_len(OP, "output", out.len(), batches * tuples * slice)?;
    let st = strides(&data_shape[b..]);
    for bi in 0..batches {
        for t in 0..tuples {
            let tuple = &indices[(bi * tuples + t) * k..][..k];
            let mut base = bi * per_batch;
            for (a, &i) in tuple.iter().enumerate() {
                base += resolve_index(OP, i, data_shape[b + a])? * st[a];
            }
            out[(bi * tuples + t) * slice..][..slice].copy_from_slice(&data[base..base + slice]);
        }
    }
    Ok(())
}

/// ONNX ReverseSequence: for each batch entry `b` (axis `batch_axis`), its first `lens[b]`
/// steps along `time_axis` reversed and the rest copied. The two axes are 0 and 1 (either
/// way round).
///
/// # Errors
/// Axes other than 0 and 1, a length outside `0..=steps`, or length mismatches.
pub fn reverse_sequence<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    lens: &[i64],
    batch_axis: usize,
    time_axis: usize,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "ReverseSequence";
    if x_shape.len() < 2 || batch_axis > 1 || time_axis > 1 || batch_axis == time_axis {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![batch_axis, time_axis],
        });
    }
    check_len(OP, "input", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "output", out.len(), x.len())?;
    let (batch, steps) = (x_shape[batch_axis], x_shape[time_axis]);
    check_len(OP, "sequence_lens", lens.len(), batch)?;
    let inner: usize = x_shape[2..].iter().product();
    let at = |b: usize, t: usize| {
        if batch_axis == 0 {
            (b * steps + t) * inner
        } else {
            (t * batch + b) * inner
        }
    };
    for (b, &len) in lens.iter().enumerate() {
        let len = usize::try_from(len).ok().filter(|&l| l <= steps).ok_or(
            KernelError::IndexOutOfRange {
                op: OP,
                index: len,
                size: steps,
            },
        )?;
        for t in 0..steps {
            let src = if t < len { len - 1 - t } else { t };
            out[at(b, t)..at(b, t) + inner].copy_from_slice(&x[at(b, src)..at(b, src) + inner]);
        }
    }
    Ok(())
}

/// ONNX OneHot: `out` has `indices`' shape with an axis of `depth` inserted at `axis`
/// (`0..=rank`); the element is `on` where the index (negative counts from `depth`) equals the
/// position along that axis, else `off`. Indices out of range give an all-`off` row (the
/// specification's behaviour).
///
/// # Errors
/// Length mismatches or an axis out of range.
pub fn one_hot<T: Copy, I: Copy + Into<i64>>(
    indices: &[I],
    indices_shape: &[usize],
    depth: usize,
    axis: usize,
    off: T,
    on: T,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "OneHot";
    if axis > indices_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", indices_shape.len()),
        ));
    }
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    let outer: usize = indices_shape[..axis].iter().product();
    let inner: usize = indices_shape[axis..].iter().product();
    check_len(OP, "output", out.len(), outer * depth * inner)?;
    out.fill(off);
    for o in 0..outer {
        for i in 0..inner {
            let v: i64 = indices[o * inner + i].into();
            let v = if v < 0 { v + depth as i64 } else { v };
            if (0..depth as i64).contains(&v) {
                out[(o * depth + v as usize) * inner + i] = on;
            }
        }
    }
    Ok(())
}

/// ONNX TopK along `axis`: the `k` largest (or smallest) elements in order, with their
/// indices; equal elements keep their index order (lower first), and a NaN ranks above every
/// number. `values`/`indices` have `x_shape` with `axis` cut to `k`.
///
/// # Errors
/// Length mismatches, an axis out of range, `k` above the axis extent.
#[allow(clippy::too_many_arguments)]
pub fn top_k<T: Copy + PartialOrd>(
    x: &[T],
    x_shape: &[usize],
    axis: usize,
    k: usize,
    largest: bool,
    values: &mut [T],
    indices: &mut [i64],
) -> KernelResult<()> {
    const OP: &str = "TopK";
    let Some(&n) = x_shape.get(axis) else {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    };
    if k > n {
        return Err(invalid(OP, "K", format!("{k} exceeds the axis extent {n}")));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let outer: usize = x_shape[..axis].iter().product();
    let inner: usize = x_shape[axis + 1..].iter().product();
    check_len(OP, "Values", values.len(), outer * k * inner)?;
    check_len(OP, "Indices", indices.len(), outer * k * inner)?;
    let nan = |v: T| v.partial_cmp(&v).is_none();
    // "a ranks before b": NaN first, then by value, ties by index (the sort is stable).
    let before = |a: T, b: T| -> std::cmp::Ordering {
        use std::cmp::Ordering::*;
        match (nan(a), nan(b)) {
            (true, true) => Equal,
            (true, false) => Less,
            (false, true) => Greater,
            _ => {
                let o = a.partial_cmp(&b).unwrap_or(Equal);
                if largest {
                    o.reverse()
                } else {
                    o
                }
            }
        }
    };
    let mut order: Vec<usize> = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| x[(o * n + j) * inner + i];
            order.clear();
            order.extend(0..n);
            order.sort_by(|&a, &b| before(at(a), at(b)));
            for (r, &j) in order[..k].iter().enumerate() {
                let dst = (o * k + r) * inner + i;
                values[dst] = at(j);
                indices[dst] = j as i64;
            }
        }
    }
    Ok(())
}

/// Element types CumSum and CumProd accumulate.
pub trait Accumulate: Copy {
    /// Zero.
    const ZERO: Self;
    /// One.
    const ONE: Self;
    /// `a + b` (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(a: Self, b: Self) -> Self;
}

macro_rules! acc_float {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
        }
    )*};
}
acc_float!(f32, f64);

macro_rules! acc_int {
    ($($t:ty),*) => {$(
        impl Accumulate for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
        }
    )*};
}
// u8 (bool) only so the dispatcher can treat every element type alike; the loader admits
// f32/f64/i32/i64.
acc_int!(i32, i64, u8, i8, i16, u16, u32, u64);

/// ONNX CumSum (CumProd with `product`) along `axis`, optionally `exclusive` (each output
/// leaves out its own element) and/or `reverse` (from the end).
///
/// # Errors
/// Length mismatches or an axis out of range.
#[allow(clippy::too_many_arguments)]
pub fn cumsum<T: Accumulate>(
    x: &[T],
    x_shape: &[usize],
    axis: usize,
    exclusive: bool,
    reverse: bool,
    product: bool,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "CumSum/CumProd";
    let (start, step): (T, fn(T, T) -> T) = if product {
        (T::ONE, T::mul)
    } else {
        (T::ZERO, T::add)
    };
    let Some(&n) = x_shape.get(axis) else {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    };
    check_len(OP, "x", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "y", out.len(), x.len())?;
    let outer: usize = x_shape[..axis].iter().product();
    let inner: usize = x_shape[axis + 1..].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = start;
            for s in 0..n {
                let j = if reverse { n - 1 - s } else { s };
                let at = (o * n + j) * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = step(acc, x[at]);
                } else {
                    acc = step(acc, x[at]);
                    out[at] = acc;
                }
            }
        }
    }
    Ok(())
}

/// ONNX Trilu on the last two axes: keeps elements on or above (`upper`) / on or below the
/// `k`-th diagonal (`j - i >= k` / `j - i <= k`), zeroes the rest.
///
/// # Errors
/// Rank below 2 or length mismatches.
pub fn trilu<T: Copy + Default>(
    x: &[T],
    x_shape: &[usize],
    k: i64,
    upper: bool,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "Trilu";
    let r = x_shape.len();
    if r < 2 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![],
        });
    }
    check_len(OP, "input", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "output", out.len(), x.len())?;
    let (rows, cols) = (x_shape[r - 2], x_shape[r - 1]);
    for (p, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let j = (p % cols.max(1)) as i64;
        let i = ((p / cols.max(1)) % rows.max(1)) as i64;
        let keep = if upper { j - i >= k } else { j - i <= k };
        *o = if keep { v } else { T::default() };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gather_and_scatter_elements_follow_the_onnx_examples() {
        // GatherElements example 1: data [[1,2],[3,4]], indices [[0,0],[1,0]], axis 1.
        let mut out = [0f32; 4];
        gather_elements(
            &[1.0, 2.0, 3.0, 4.0],
            &[2, 2],
            &[0i64, 0, 1, 0],
            &[2, 2],
            1,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [1.0, 1.0, 4.0, 3.0]);
        // Negative index and out-of-range.
        gather_elements(
            &[1.0, 2.0, 3.0, 4.0],
            &[2, 2],
            &[-1i64, 0, 1, -2],
            &[2, 2],
            1,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [2.0, 1.0, 4.0, 3.0]);
        assert!(gather_elements(&[1.0f32; 4], &[2, 2], &[2i64; 4], &[2, 2], 1, &mut out).is_err());
        // ScatterElements with axis 1: data [[1,2,3,4,5]], indices [[1,3]], updates [[1.1,2.1]].
        let mut o = [0f32; 5];
        scatter_elements(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[1, 5],
            &[1i64, 3],
            &[1, 2],
            &[1.1, 2.1],
            1,
            ScatterReduction::None,
            &mut o,
        )
        .unwrap();
        assert_eq!(o, [1.0, 1.1, 3.0, 2.1, 5.0]);
        // Duplicate indices with add accumulate in order.
        scatter_elements(
            &[1.0, 2.0, 3.0, 4.0, 5.0],
            &[1, 5],
            &[1i64, 1],
            &[1, 2],
            &[1.0, 2.0],
            1,
            ScatterReduction::Add,
            &mut o,
        )
        .unwrap();
        assert_eq!(o, [1.0, 5.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn scatter_nd_replaces_whole_slices() {
        // data [4, 2], indices [[1], [3]], updates [[9, 9], [8, 8]].
        let data = [0i64, 1, 2, 3, 4, 5, 6, 7];
        let mut out = [0i64; 8];
        scatter_nd(
            &data,
            &[4, 2],
            &[1, 3],
            &[2, 1],
            &[9, 9, 8, 8],
            ScatterReduction::None,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0, 1, 9, 9, 4, 5, 8, 8]);
        // Full index tuples with multiply.
        scatter_nd(
            &data,
            &[4, 2],
            &[0, 1, 0, 1],
            &[2, 2],
            &[3, 5],
            ScatterReduction::Mul,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0, 15, 2, 3, 4, 5, 6, 7]);
        assert!(scatter_nd(
            &data,
            &[4, 2],
            &[4],
            &[1, 1],
            &[1, 1],
            ScatterReduction::None,
            &mut out
        )
        .is_err());
    }

    #[test]
    fn one_hot_top_k_cumsum_trilu() {
        let mut oh = [0f32; 6];
        one_hot(&[1i64, -1], &[2], 3, 1, 0.0, 5.0, &mut oh).unwrap();
        assert_eq!(oh, [0.0, 5.0, 0.0, 0.0, 0.0, 5.0]);
        one_hot(&[3i64, 0], &[2], 3, 1, 0.0, 5.0, &mut oh).unwrap();
        assert_eq!(oh, [0.0, 0.0, 0.0, 5.0, 0.0, 0.0]);

        let x = [3.0f32, 1.0, 3.0, f32::NAN, 2.0, 0.0];
        let (mut v, mut i) = ([0f32; 3], [0i64; 3]);
        top_k(&x[..3], &[3], 0, 3, true, &mut v, &mut i).unwrap();
        assert_eq!((v, i), ([3.0, 3.0, 1.0], [0, 2, 1]));
        top_k(&x[3..], &[3], 0, 3, false, &mut v, &mut i).unwrap();
        assert!(v[0].is_nan());
        assert_eq!((&v[1..], i), (&[0.0f32, 2.0][..], [0, 2, 1]));
        // [2, 3] along axis 0, k = 1.
        let (mut v2, mut i2) = ([0i64; 3], [0i64; 3]);
        top_k(
            &[1i64, 9, 3, 4, 2, 3],
            &[2, 3],
            0,
            1,
            true,
            &mut v2,
            &mut i2,
        )
        .unwrap();
        assert_eq!((v2, i2), ([4, 9, 3], [1, 0, 0]));

        let mut c = [0i64; 4];
        cumsum(&[1i64, 2, 3, 4], &[4], 0, false, false, false, &mut c).unwrap();
        assert_eq!(c, [1, 3, 6, 10]);
        cumsum(&[1i64, 2, 3, 4], &[4], 0, true, true, false, &mut c).unwrap();
        assert_eq!(c, [9, 7, 4, 0]);

        let m: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let mut t = [0f32; 9];
        trilu(&m, &[3, 3], 0, true, &mut t).unwrap();
        assert_eq!(t, [1.0, 2.0, 3.0, 0.0, 5.0, 6.0, 0.0, 0.0, 9.0]);
        trilu(&m, &[3, 3], -1, false, &mut t).unwrap();
        assert_eq!(t, [0.0, 0.0, 0.0, 4.0, 0.0, 0.0, 7.0, 8.0, 0.0]);
    }
}
