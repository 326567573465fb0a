//! Reductions beyond `norm`'s vectorised Mean/Sum/Max/Min over f32: the ONNX `Reduce*` family
//! over any element type and any axes (Prod, L1, L2, SumSquare, LogSum, LogSumExp, and the
//! integer forms), ArgMax/ArgMin, and instance normalisation (per-plane statistics).
//!
//! Each output element is reduced by one scalar loop in index order (the normalisations'
//! statistics in fixed f64 lanes, then a fixed tree), so results do not depend on the thread
//! count (work is split along output elements only).

use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::norm::lane_sum;
use super::par::par_chunks;

/// Output elements below which a reduction stays on one thread.
const PAR_MIN_OUT: usize = 64;

/// The reduced part of an input: for every output element, the offsets of the elements it
/// reduces are `base + sum(i_k * stride_k)` over `dims`.
struct Walk {
    /// Extents and strides of the reduced axes.
    dims: Vec<(usize, usize)>,
    /// Extents and strides of the kept axes, in order (the output's row-major layout).
    kept: Vec<(usize, usize)>,
    count: usize,
}

impl Walk {
    fn new(op: &'static str, shape: &[usize], axes: &[usize]) -> KernelResult<Self> {
        let mut strides = vec![1usize; shape.len()];
        for a in (0..shape.len().saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * shape[a + 1];
        }
        if let Some(&a) = axes.iter().find(|&&a| a >= shape.len()) {
            return Err(invalid(
                op,
                "axes",
                format!("axis {a} out of range for {shape:?}"),
            ));
        }
        let mut dims = Vec::new();
        let mut kept = Vec::new();
        for (a, (&d, &s)) in shape.iter().zip(&strides).enumerate() {
            if axes.contains(&a) {
                dims.push((d, s));
            } else {
                kept.push((d, s));
            }
        }
        let count = dims.iter().map(|d| d.0).product();
        Ok(Self { dims, kept, count })
    }

    /// Input offset of output element `o`'s first reduced element.
    fn base(&self, mut o: usize) -> usize {
        let mut off = 0;
        for &(d, s) in self.kept.iter().rev() {
            off += (o % d) * s;
            o /= d;
        }
        off
    }

    /// Calls `f` with every reduced offset of the element at `base`, in row-major order.
    fn each(&self, base: usize, mut f: impl FnMut(usize)) {
        if self.count == 0 {
            return;
        }
        let mut idx = vec![0usize; self.dims.len()];
        let mut off = base;
        loop {
            f(off);
            // Odometer over the reduced axes, last fastest.
            let mut k = self.dims.len();
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                let (d, s) = self.dims[k];
                idx[k] += 1;
                off += s;
                if idx[k] < d {
                    break;
                }
                off -= d * s;
                idx[k] = 0;
            }
        }
    }
}

/// The reductions [`reduce_any`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceAny {
    /// Sum.
    Sum,
    /// Mean (floats only).
    Mean,
    /// Maximum (a NaN wins for floats).
    Max,
    /// Minimum (a NaN wins for floats).
    Min,
    /// Product.
    Prod,
    /// Sum of absolute values.
    L1,
    /// Square root of the sum of squares (floats only).
    L2,
    /// Sum of squares.
    SumSquare,
    /// Natural log of the sum (floats only).
    LogSum,
    /// `log(sum(exp(x)))`, with the maximum subtracted first (floats only).
    LogSumExp,
}

/// An element type [`reduce_any`] accepts.
pub trait Reducible: Copy + Send + Sync + PartialOrd + 'static {
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Whether the type is a float (L2, LogSum, LogSumExp and Mean need one).
    const FLOAT: bool;
    /// The identity of Max: -inf, or the type's minimum.
    const LOWEST: Self;
    /// The identity of Min: +inf, or the type's maximum.
    const HIGHEST: Self;
    /// `a + b` (wrapping for integers, as numpy).
    fn add(a: Self, b: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(a: Self, b: Self) -> Self;
    /// `|a|`.
    fn abs(a: Self) -> Self;
    /// NaN test (false for integers).
    fn is_nan(a: Self) -> bool;
    /// Widening to f64 for the float-only reductions.
    fn to_f64(a: Self) -> f64;
    /// Narrowing back.
    fn from_f64(v: f64) -> Self;
}

macro_rules! float_reducible {
    ($t:ty) => {
        impl Reducible for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const FLOAT: bool = true;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            fn add(a: Self, b: Self) -> Self {
                a + b
            }
            fn mul(a: Self, b: Self) -> Self {
                a * b
            }
            fn abs(a: Self) -> Self {
                a.abs()
            }
            fn is_nan(a: Self) -> bool {
                a.is_nan()
            }
            fn to_f64(a: Self) -> f64 {
                a as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
float_reducible!(f32);
float_reducible!(f64);

macro_rules! int_reducible {
    ($t:ty) => {
        impl Reducible for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const FLOAT: bool = false;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            fn add(a: Self, b: Self) -> Self {
                a.wrapping_add(b)
            }
            fn mul(a: Self, b: Self) -> Self {
                a.wrapping_mul(b)
            }
            fn abs(a: Self) -> Self {
                #[allow(unused_comparisons)]
                if a < 0 {
                    a.wrapping_neg()
                } else {
                    a
                }
            }
            fn is_nan(_: Self) -> bool {
                false
            }
            fn to_f64(a: Self) -> f64 {
                a as f64
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}
int_reducible!(i32);
int_reducible!(i64);
// bool as 0/1 bytes: Max is "any", Min is "all" (ONNX opset 20 ReduceMax/ReduceMin).
int_reducible!(u8);
int_reducible!(i8);
int_reducible!(i16);
int_reducible!(u16);
int_reducible!(u32);
int_reducible!(u64);

/// ONNX `Reduce*` over `axes` (non-negative, sorted or not; empty = copy) of a row-major
/// `x_shape` input; `out` holds the kept axes in order (keepdims does not change the data).
/// An empty reduction gives the identity (0 for Sum, 1 for Prod, -inf for LogSumExp and
/// LogSum of 0, NaN for Mean, and for Max/Min -inf/+inf or the type's minimum/maximum, as
/// ONNX opset 18 defines).
///
/// # Errors
/// Wrong lengths, an axis out of range, a float-only reduction on integers.
pub fn reduce_any<T: Reducible>(
    op: ReduceAny,
    x: &[T],
    x_shape: &[usize],
    axes: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Reduce";
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let walk = Walk::new(OP, x_shape, axes)?;
    let out_n: usize = walk.kept.iter().map(|d| d.0).product();
    check_len(OP, "Y", out.len(), out_n)?;
    let float_only = matches!(
        op,
        ReduceAny::Mean | ReduceAny::L2 | ReduceAny::LogSum | ReduceAny::LogSumExp
    );
    if float_only && !T::FLOAT {
        return Err(invalid(OP, "type", format!("{op:?} needs a float input")));
    }
    let walk = &walk;
    par_chunks(out, 1, threads, PAR_MIN_OUT, |first, piece| {
        for (i, o) in piece.iter_mut().enumerate() {
            let base = walk.base(first + i);
            *o = reduce_one(op, x, walk, base);
        }
    });
    Ok(())
}

fn reduce_one<T: Reducible>(op: ReduceAny, x: &[T], walk: &Walk, base: usize) -> T {
    let mut acc = match op {
        ReduceAny::Prod => T::ONE,
        ReduceAny::Max => T::LOWEST,
        ReduceAny::Min => T::HIGHEST,
        _ => T::ZERO,
    };
    match op {
        ReduceAny::Sum | ReduceAny::Mean => walk.each(base, |i| acc = T::add(acc, x[i])),
        ReduceAny::Prod => walk.each(base, |i| acc = T::mul(acc, x[i])),
        ReduceAny::L1 => walk.each(base, |i| acc = T::add(acc, T::abs(x[i]))),
        ReduceAny::SumSquare | ReduceAny::L2 => {
            walk.each(base, |i| acc = T::add(acc, T::mul(x[i], x[i])))
        }
        ReduceAny::LogSum => walk.each(base, |i| acc = T::add(acc, x[i])),
        ReduceAny::Max | ReduceAny::Min => {
            let max = op == ReduceAny::Max;
            let mut first = true;
            walk.each(base, |i| {
                let v = x[i];
                let better = if max { v > acc } else { v < acc };
                if first || (!T::is_nan(acc) && (better || T::is_nan(v))) {
                    acc = v;
                }
                first = false;
            });
        }
        ReduceAny::LogSumExp => {
            let mut m = f64::NEG_INFINITY;
            walk.each(base, |i| m = m.max(T::to_f64(x[i])));
            if m.is_infinite() {
                // All -inf (or empty): the log of 0; +inf: stays +inf.
                return T::from_f64(if walk.count == 0 {
                    f64::NEG_INFINITY
                } else {
                    m
                });
            }
            let mut s = 0.0f64;
            walk.each(base, |i| s += (T::to_f64(x[i]) - m).exp());
            return T::from_f64(m + s.ln());
        }
    }
    match op {
        ReduceAny::Mean => T::from_f64(T::to_f64(acc) / walk.count as f64),
        ReduceAny::L2 => T::from_f64(T::to_f64(acc).sqrt()),
        ReduceAny::LogSum => T::from_f64(T::to_f64(acc).ln()),
        _ => acc,
    }
}

/// ONNX ArgMax (`max`) / ArgMin along `axis`: the index of the extreme element, the first on
/// ties (the last with `select_last_index`); a NaN counts as the extreme (numpy). `out` holds
/// `x_shape` without (or with size 1 at) `axis`.
///
/// # Errors
/// Wrong lengths, an axis out of range or of extent 0.
pub fn arg_reduce<T: Copy + PartialOrd + Sync>(
    max: bool,
    select_last_index: bool,
    x: &[T],
    x_shape: &[usize],
    axis: usize,
    out: &mut [i64],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "ArgReduce";
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let n = match x_shape.get(axis) {
        Some(&n) if n > 0 => n,
        _ => {
            return Err(KernelError::InvalidAttribute {
                op: OP,
                attr: "axis",
                reason: format!("axis {axis} is out of range or empty in {x_shape:?}"),
            })
        }
    };
    let inner: usize = x_shape[axis + 1..].iter().product();
    check_len(OP, "Y", out.len(), x.len() / n)?;
    // A NaN is not equal to itself: the first NaN met wins and stays.
    let nan = |v: T| v.partial_cmp(&v).is_none();
    par_chunks(out, 1, threads, PAR_MIN_OUT, |first, piece| {
        for (j, o) in piece.iter_mut().enumerate() {
            let e = first + j;
            let (outer, i) = (e / inner.max(1), e % inner.max(1));
            let at = |k: usize| x[(outer * n + k) * inner + i];
            let mut best = 0usize;
            let mut bv = at(0);
            for k in 1..n {
                if nan(bv) {
                    break;
                }
                let v = at(k);
                let wins = nan(v)
                    || if max {
                        v > bv || (select_last_index && v == bv)
                    } else {
                        v < bv || (select_last_index && v == bv)
                    };
                if wins {
                    best = k;
                    bv = v;
                }
            }
            *o = best as i64;
        }
    });
    Ok(())
}

/// Mean and (biased) variance of `xs`, accumulated in f64 (two passes), each sum in fixed
/// lanes and a fixed tree ([`lane_sum`]): not one dependent chain of adds.
fn mean_var(xs: &[f32]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = lane_sum(xs, |v| v) / n;
    let var = lane_sum(xs, |v| (v - mean) * (v - mean)) / n;
    (mean, var)
}

/// ONNX InstanceNormalization: for every `(n, c)` plane of `x [N, C, spatial...]`,
/// `scale[c] (x - mean) / sqrt(var + epsilon) + bias[c]` with the plane's mean and (biased)
/// variance, accumulated in f64 in a fixed order.
///
/// # Errors
/// Wrong lengths or a rank below 3.
pub fn instance_norm(
    x: &[f32],
    x_shape: &[usize],
    scale: &[f32],
    bias: &[f32],
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    // One group per channel.
    let c = x_shape.get(1).copied().unwrap_or(0);
    normalize_groups(
        "InstanceNormalization",
        x,
        x_shape,
        c,
        scale,
        bias,
        epsilon,
        out,
        threads,
    )
}

/// ONNX GroupNormalization: the channels of `x [N, C, spatial...]` split into `groups`
/// groups of `C / groups`, each `(n, group)` normalised by its mean and (biased) variance
/// (accumulated in f64 in a fixed order), then `scale * x_hat + bias` per channel (`scale`,
/// `bias` of `C` elements, opset 21) or per group (`groups` elements, opset 18).
///
/// # Errors
/// Wrong lengths, a rank below 3, or `C` not a multiple of `groups`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    x: &[f32],
    x_shape: &[usize],
    groups: usize,
    scale: &[f32],
    bias: &[f32],
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    normalize_groups(
        "GroupNormalization",
        x,
        x_shape,
        groups,
        scale,
        bias,
        epsilon,
        out,
        threads,
    )
}

/// [`group_norm`] for the op named `op` (InstanceNormalization is one group per channel).
#[allow(clippy::too_many_arguments)]
fn normalize_groups(
    op: &'static str,
    x: &[f32],
    x_shape: &[usize],
    groups: usize,
    scale: &[f32],
    bias: &[f32],
    epsilon: f32,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    if x_shape.len() < 3 {
        return Err(KernelError::ShapeMismatch {
            op,
            a: x_shape.to_vec(),
            b: vec![groups],
        });
    }
    if x_shape[1] == 0 {
        // No channels: nothing to normalise.
        check_len(op, "X", x.len(), 0)?;
        return check_len(op, "Y", out.len(), 0);
    }
    if groups == 0 || !x_shape[1].is_multiple_of(groups) {
        return Err(KernelError::ShapeMismatch {
            op,
            a: x_shape.to_vec(),
            b: vec![groups],
        });
    }
    check_len(op, "X", x.len(), numel(op, x_shape)?)?;
    check_len(op, "Y", out.len(), x.len())?;
    let c = x_shape[1];
    let per_channel = scale.len() == c;
    let params = if per_channel { c } else { groups };
    check_len(op, "scale", scale.len(), params)?;
    check_len(op, "bias", bias.len(), params)?;
    let plane: usize = x_shape[2..].iter().product();
    let cg = c / groups;
    let len = cg * plane;
    if len == 0 {
        return Ok(());
    }
    par_chunks(out, len, threads, 1, |first, piece| {
        for (gi, o) in piece.chunks_mut(len).enumerate() {
            let idx = first + gi;
            let xs = &x[idx * len..(idx + 1) * len];
            let (mean, var) = mean_var(xs);
            let inv = 1.0 / (var + f64::from(epsilon)).sqrt();
            let g = idx % groups;
            for (ci, (orow, xrow)) in o.chunks_mut(plane).zip(xs.chunks(plane)).enumerate() {
                let pi = if per_channel { g * cg + ci } else { g };
                let (a, b) = (f64::from(scale[pi]) * inv, f64::from(bias[pi]));
                for (y, &v) in orow.iter_mut().zip(xrow) {
                    *y = ((f64::from(v) - mean) * a + b) as f32;
                }
            }
        }
    });
    Ok(())
}

/// ONNX MeanVarianceNormalization over `axes`: `(x - mean) / (sqrt(mean(x^2) - mean^2) +
/// 1e-9)`, the specification's function body, with both means accumulated in f64 in index
/// order. A variance that rounds below zero is taken as zero (the body would give NaN).
///
/// # Errors
/// An axis out of range or length mismatches.
pub fn mean_variance_norm(
    x: &[f32],
    x_shape: &[usize],
    axes: &[usize],
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "MeanVarianceNormalization";
    let r = x_shape.len();
    if let Some(&a) = axes.iter().find(|&&a| a >= r) {
        return Err(invalid(OP, "axes", format!("{a} for rank {r}")));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), x.len())?;
    // Each element's group: its index over the kept axes.
    let mut gstride = vec![0usize; r];
    let mut groups = 1usize;
    for a in (0..r).rev() {
        if !axes.contains(&a) {
            gstride[a] = groups;
            groups *= x_shape[a];
        }
    }
    let group_of = |mut i: usize| {
        let mut g = 0;
        for a in (0..r).rev() {
            g += (i % x_shape[a]) * gstride[a];
            i /= x_shape[a];
        }
        g
    };
    let mut sums = vec![(0.0f64, 0.0f64, 0usize); groups];
    for (i, &v) in x.iter().enumerate() {
        let s = &mut sums[group_of(i)];
        let v = f64::from(v);
        s.0 += v;
        s.1 += v * v;
        s.2 += 1;
    }
    let stats: Vec<(f64, f64)> = sums
        .iter()
        .map(|&(s, s2, n)| {
            let n = n.max(1) as f64;
            let mean = s / n;
            (mean, ((s2 / n - mean * mean).max(0.0)).sqrt() + 1e-9)
        })
        .collect();
    for (i, (o, &v)) in out.iter_mut().zip(x).enumerate() {
        let (mean, sd) = stats[group_of(i)];
        *o = ((f64::from(v) - mean) / sd) as f32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: reduce by materialising every output's element list the slow way.
    fn naive(op: ReduceAny, x: &[f32], shape: &[usize], axes: &[usize]) -> Vec<f32> {
        let rank = shape.len();
        let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
        let out_n: usize = kept.iter().map(|&a| shape[a]).product();
        let mut groups = vec![Vec::new(); out_n];
        for (flat, &v) in x.iter().enumerate() {
            let mut idx = vec![0; rank];
            let mut r = flat;
            for a in (0..rank).rev() {
                idx[a] = r % shape[a];
                r /= shape[a];
            }
            let o = kept.iter().fold(0, |acc, &a| acc * shape[a] + idx[a]);
            groups[o].push(f64::from(v));
        }
        groups
            .iter()
            .map(|g| {
                let s: f64 = g.iter().sum();
                (match op {
                    ReduceAny::Sum => s,
                    ReduceAny::Mean => s / g.len() as f64,
                    ReduceAny::Max => g.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    ReduceAny::Min => g.iter().cloned().fold(f64::INFINITY, f64::min),
                    ReduceAny::Prod => g.iter().product(),
                    ReduceAny::L1 => g.iter().map(|v| v.abs()).sum(),
                    ReduceAny::L2 => g.iter().map(|v| v * v).sum::<f64>().sqrt(),
                    ReduceAny::SumSquare => g.iter().map(|v| v * v).sum(),
                    ReduceAny::LogSum => s.ln(),
                    ReduceAny::LogSumExp => g.iter().map(|v| v.exp()).sum::<f64>().ln(),
                }) as f32
            })
            .collect()
    }

    #[test]
    fn every_reduction_matches_a_naive_one_over_any_axes() {
        let shape = [3, 4, 5, 2];
        let x: Vec<f32> = (0..120)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.13)
            .collect();
        let ops = [
            ReduceAny::Sum,
            ReduceAny::Mean,
            ReduceAny::Max,
            ReduceAny::Min,
            ReduceAny::Prod,
            ReduceAny::L1,
            ReduceAny::L2,
            ReduceAny::SumSquare,
            ReduceAny::LogSumExp,
        ];
        for axes in [
            vec![],
            vec![0],
            vec![1, 3],
            vec![0, 2],
            vec![0, 1, 2, 3],
            vec![3],
        ] {
            for op in ops {
                let want = naive(op, &x, &shape, &axes);
                for threads in [1, 3] {
                    let mut out = vec![0.0; want.len()];
                    reduce_any(op, &x, &shape, &axes, &mut out, threads).unwrap();
                    for (g, w) in out.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                            "{op:?} axes {axes:?}: {g} vs {w}"
                        );
                    }
                }
            }
        }
        // LogSum needs positive sums.
        let pos: Vec<f32> = x.iter().map(|v| v.abs() + 0.1).collect();
        let want = naive(ReduceAny::LogSum, &pos, &shape, &[1]);
        let mut out = vec![0.0; want.len()];
        reduce_any(ReduceAny::LogSum, &pos, &shape, &[1], &mut out, 1).unwrap();
        for (g, w) in out.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn integer_reductions_wrap_and_float_only_ones_are_refused() {
        let x = [3i64, -4, 5, 6];
        let mut out = [0i64; 2];
        reduce_any(ReduceAny::Prod, &x, &[2, 2], &[1], &mut out, 1).unwrap();
        assert_eq!(out, [-12, 30]);
        reduce_any(ReduceAny::Max, &x, &[2, 2], &[0], &mut out, 1).unwrap();
        assert_eq!(out, [5, 6]);
        let mut one = [0i64];
        assert!(reduce_any(ReduceAny::Mean, &x, &[2, 2], &[0, 1], &mut one, 1).is_err());
    }

    #[test]
    fn max_propagates_nan_and_empty_reductions_give_the_identity() {
        let x = [1.0f32, f32::NAN, 3.0, 2.0];
        let mut out = [0.0f32; 1];
        reduce_any(ReduceAny::Max, &x, &[4], &[0], &mut out, 1).unwrap();
        assert!(out[0].is_nan());
        // Over an empty set: the identities.
        let mut out = [0.0f32; 2];
        reduce_any(ReduceAny::Max, &[], &[2, 0], &[1], &mut out, 1).unwrap();
        assert_eq!(out, [f32::NEG_INFINITY; 2]);
        reduce_any(ReduceAny::Min, &[], &[2, 0], &[1], &mut out, 1).unwrap();
        assert_eq!(out, [f32::INFINITY; 2]);
        reduce_any(ReduceAny::Sum, &[], &[2, 0], &[1], &mut out, 1).unwrap();
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn arg_reduce_breaks_ties_by_select_last_index_and_nan_wins() {
        // shape [2, 3], axis 1
        let x = [1.0f32, 5.0, 5.0, 2.0, 0.0, 0.0];
        let mut out = [0i64; 2];
        arg_reduce(true, false, &x, &[2, 3], 1, &mut out, 1).unwrap();
        assert_eq!(out, [1, 0]);
        arg_reduce(true, true, &x, &[2, 3], 1, &mut out, 1).unwrap();
        assert_eq!(out, [2, 0]);
        arg_reduce(false, true, &x, &[2, 3], 1, &mut out, 1).unwrap();
        assert_eq!(out, [0, 2]);
        // axis 0 over [2, 3]
        let mut out = [0i64; 3];
        arg_reduce(true, false, &x, &[2, 3], 0, &mut out, 2).unwrap();
        assert_eq!(out, [1, 0, 0]);
        let y = [1.0f32, f32::NAN, 7.0];
        let mut one = [0i64];
        arg_reduce(true, false, &y, &[3], 0, &mut one, 1).unwrap();
        assert_eq!(one, [1]);
        assert!(arg_reduce(true, false, &y, &[3], 1, &mut one, 1).is_err());
    }

    #[test]
    fn instance_norm_normalises_each_plane() {
        // N=1, C=2, 2x2 planes.
        let x = [1.0f32, 2.0, 3.0, 4.0, 10.0, 10.0, 10.0, 10.0];
        let mut out = [0.0f32; 8];
        instance_norm(
            &x,
            &[1, 2, 2, 2],
            &[2.0, 1.0],
            &[0.5, -1.0],
            0.0,
            &mut out,
            1,
        )
        .unwrap();
        let sd = (1.25f32).sqrt();
        for (k, &v) in [1.0f32, 2.0, 3.0, 4.0].iter().enumerate() {
            let want = 2.0 * (v - 2.5) / sd + 0.5;
            assert!((out[k] - want).abs() < 1e-6, "{} vs {want}", out[k]);
        }
        // A constant plane with epsilon 0 divides 0 by 0; with epsilon it is the bias.
        instance_norm(
            &x,
            &[1, 2, 2, 2],
            &[2.0, 1.0],
            &[0.5, -1.0],
            1e-5,
            &mut out,
            1,
        )
        .unwrap();
        assert!(out[4..].iter().all(|&v| v == -1.0));
    }
}
