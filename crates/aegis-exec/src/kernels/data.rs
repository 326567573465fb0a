//! Data movement: Concat, Split, Slice, Transpose, Gather, Pad, and the plain copy behind
//! Reshape/Flatten/Squeeze/Unsqueeze/Identity. Generic over the element type (f32, i64, i32,
//! bool as u8, ...). Axes are non-negative unless stated (callers resolve negative ONNX axes
//! by adding the rank); Slice and Gather normalise their data-dependent values here.

use std::ops::Range;

use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::indexing::resolve_index;
use super::par::par_chunks;

/// Reshape, Flatten, Squeeze, Unsqueeze and Identity move no data: the output is the input
/// reinterpreted with another shape. When the executor cannot alias the buffers it copies
/// with this.
///
/// # Errors
/// Lengths differ.
pub fn copy<T: Copy>(x: &[T], out: &mut [T]) -> KernelResult<()> {
    check_len("Copy", "output", out.len(), x.len())?;
    out.copy_from_slice(x);
    Ok(())
}

/// Elements of one Concat piece: 64 Ki (256 KiB of f32), so only outputs of several
/// hundred KiB are split.
const CONCAT_PIECE: usize = 64 * 1024;

/// ONNX `Concat` along `axis`: inputs `(data, shape)` agree on every other axis; `out` has
/// the concatenated shape. When nothing precedes `axis` (a batch of one along channels) the
/// output is the inputs back to back, copied on up to `threads` threads (producers that ran
/// on several threads left their parts in several cores' caches).
///
/// # Errors
/// No inputs, rank/extent disagreement or length mismatches.
pub fn concat<T: Copy + Send + Sync>(
    inputs: &[(&[T], &[usize])],
    axis: usize,
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Concat";
    let Some((_, first)) = inputs.first() else {
        return Err(invalid(OP, "inputs", "at least one input is required"));
    };
    if axis >= first.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", first.len()),
        ));
    }
    let mut total_axis = 0;
    for (d, s) in inputs {
        let same = s.len() == first.len()
            && s.iter()
                .zip(first.iter())
                .enumerate()
                .all(|(i, (a, b))| i == axis || a == b);
        if !same {
            return Err(KernelError::ShapeMismatch {
                op: OP,
                a: first.to_vec(),
                b: s.to_vec(),
            });
        }
        check_len(OP, "input", d.len(), numel(OP, s)?)?;
        total_axis += s[axis];
    }
    let outer: usize = first[..axis].iter().product();
    let inner: usize = first[axis + 1..].iter().product();
    check_len(OP, "output", out.len(), outer * total_axis * inner)?;
    let row = total_axis * inner;
    if outer == 1 {
        // Pieces of the output, each copied from the inputs it overlaps.
        par_chunks(out, CONCAT_PIECE, threads, 1, |first, piece| {
            let start = first * CONCAT_PIECE;
            let end = start + piece.len();
            let mut at = 0;
            for (d, _) in inputs {
                let (lo, hi) = (at.max(start), (at + d.len()).min(end));
                if lo < hi {
                    piece[lo - start..hi - start].copy_from_slice(&d[lo - at..hi - at]);
                }
                at += d.len();
            }
        });
        return Ok(());
    }
    let mut col = 0;
    for (d, s) in inputs {
        let block = s[axis] * inner;
        for o in 0..outer {
            out[o * row + col..o * row + col + block]
                .copy_from_slice(&d[o * block..(o + 1) * block]);
        }
        col += block;
    }
    Ok(())
}

/// ONNX `Split` along `axis` into pieces of extents `sizes` (which sum to the axis extent; the
/// caller derives equal splits or `num_outputs` per the spec). `outs[i]` receives piece `i`.
///
/// # Errors
/// Sizes that do not sum to the axis extent, or length mismatches.
pub fn split<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    axis: usize,
    sizes: &[usize],
    outs: &mut [&mut [T]],
) -> KernelResult<()> {
    const OP: &str = "Split";
    if axis >= x_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", x_shape.len()),
        ));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    if sizes.iter().sum::<usize>() != x_shape[axis] || sizes.len() != outs.len() {
        return Err(invalid(
            OP,
            "split",
            format!(
                "{sizes:?} for axis extent {} and {} outputs",
                x_shape[axis],
                outs.len()
            ),
        ));
    }
    let outer: usize = x_shape[..axis].iter().product();
    let inner: usize = x_shape[axis + 1..].iter().product();
    let row = x_shape[axis] * inner;
    let mut col = 0;
    for (o, &sz) in outs.iter_mut().zip(sizes) {
        let block = sz * inner;
        check_len(OP, "output", o.len(), outer * block)?;
        for r in 0..outer {
            o[r * block..(r + 1) * block].copy_from_slice(&x[r * row + col..r * row + col + block]);
        }
        col += block;
    }
    Ok(())
}

/// One axis of a normalised slice: output element `j` reads input index `start + j * step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceAxis {
    /// First input index (valid when `len > 0`).
    pub start: usize,
    /// Step (non-zero, may be negative).
    pub step: i64,
    /// Output extent.
    pub len: usize,
}

/// Normalises ONNX `Slice` inputs (opset 10+; opset 1-9 attributes are the same with
/// steps of 1) into one [`SliceAxis`] per input axis: negative `starts`/`ends` add the axis
/// extent, then they are clamped to `[0, dim]` (positive step) or `[-1, dim - 1]` (negative
/// step, start clamped to `[0, dim - 1]`), per the spec. `axes` may be negative; absent `axes`
/// means `0..starts.len()`, absent `steps` means 1. Untouched axes are taken whole.
///
/// # Errors
/// Mismatched list lengths, an axis out of range or repeated, or a zero step.
pub fn slice_params(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: Option<&[i64]>,
    steps: Option<&[i64]>,
) -> KernelResult<Vec<SliceAxis>> {
    const OP: &str = "Slice";
    let rank = shape.len() as i64;
    let n = starts.len();
    if ends.len() != n || axes.is_some_and(|a| a.len() != n) || steps.is_some_and(|s| s.len() != n)
    {
        return Err(invalid(OP, "starts/ends/axes/steps", "lengths differ"));
    }
    let mut out: Vec<SliceAxis> = shape
        .iter()
        .map(|&d| SliceAxis {
            start: 0,
            step: 1,
            len: d,
        })
        .collect();
    let mut seen = vec![false; shape.len()];
    for i in 0..n {
        let ax = axes.map_or(i as i64, |a| a[i]);
        let ax = if ax < 0 { ax + rank } else { ax };
        if ax < 0 || ax >= rank || seen[ax as usize] {
            return Err(invalid(
                OP,
                "axes",
                format!("axis {ax} out of range or repeated for rank {rank}"),
            ));
        }
        let ax = ax as usize;
        seen[ax] = true;
        let step = steps.map_or(1, |s| s[i]);
        if step == 0 {
            return Err(invalid(OP, "steps", "must be non-zero"));
        }
        let dim = shape[ax] as i64;
        let norm = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (s, e) = (norm(starts[i]), norm(ends[i]));
        let (s, len) = if step > 0 {
            let (s, e) = (s.clamp(0, dim), e.clamp(0, dim));
            (s, if e > s { (e - s + step - 1) / step } else { 0 })
        } else {
            let (s, e) = (s.clamp(0, (dim - 1).max(0)), e.clamp(-1, dim - 1));
            (
                s,
                if s > e && dim > 0 {
                    (s - e + (-step) - 1) / (-step)
                } else {
                    0
                },
            )
        };
        out[ax] = SliceAxis {
            start: s as usize,
            step,
            len: len as usize,
        };
    }
    Ok(out)
}

/// ONNX `Slice` with normalised per-axis parameters (see [`slice_params`]); `out` has the
/// extents `params[i].len`.
///
/// # Errors
/// Lengths inconsistent with the shape and parameters.
pub fn slice<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    params: &[SliceAxis],
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "Slice";
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    if params.len() != x_shape.len() {
        return Err(invalid(OP, "axes", "one SliceAxis per input axis required"));
    }
    let out_shape: Vec<usize> = params.iter().map(|p| p.len).collect();
    check_len(OP, "output", out.len(), numel(OP, &out_shape)?)?;
    if out.is_empty() {
        return Ok(());
    }
    for (p, &d) in params.iter().zip(x_shape) {
        let last = p.start as i64 + (p.len as i64 - 1) * p.step;
        if p.start >= d || last < 0 || last >= d as i64 {
            return Err(invalid(
                OP,
                "starts",
                format!("{p:?} outside an axis of extent {d}"),
            ));
        }
    }
    if x_shape.is_empty() {
        out[0] = x[0];
        return Ok(());
    }
    let rank = x_shape.len();
    let mut st = vec![1i64; rank];
    for d in (0..rank - 1).rev() {
        st[d] = st[d + 1] * x_shape[d + 1] as i64;
    }
    let base: i64 = params
        .iter()
        .zip(&st)
        .map(|(p, &s)| p.start as i64 * s)
        .sum();
    let inner = params[rank - 1];
    let mut idx = vec![0usize; rank - 1];
    let mut off = base;
    for row in out.chunks_mut(inner.len) {
        let o = off as usize;
        if inner.step == 1 {
            row.copy_from_slice(&x[o..o + inner.len]);
        } else {
            for (j, v) in row.iter_mut().enumerate() {
                *v = x[(off + j as i64 * inner.step) as usize];
            }
        }
        let mut d = rank - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            off += params[d].step * st[d];
            if idx[d] < params[d].len {
                break;
            }
            off -= idx[d] as i64 * params[d].step * st[d];
            idx[d] = 0;
        }
    }
    Ok(())
}

/// ONNX `Transpose`: `out` axis `i` is input axis `perm[i]` (ONNX default: reversed axes).
/// Axes that stay adjacent are merged first; a permutation that then swaps the last two
/// (e.g. NCHW <-> NHWC, 2-D transpose) runs as a cache-blocked transpose, others walk the
/// output with contiguous inner copies where the input allows.
///
/// # Errors
/// `perm` is not a permutation of the axes, or lengths mismatch.
pub fn transpose<T: Copy + Send + Sync>(
    x: &[T],
    x_shape: &[usize],
    perm: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    transpose_with(x, x_shape, perm, out, threads, &block_transpose::<T>)
}

/// [`transpose`] for f32, with the 2-D swaps (NCHW <-> NHWC, attention heads' keys) moved in
/// 16x16 blocks transposed in AVX-512 registers where the CPU has them (a ConvNeXt block's
/// two 96x56x56 layout swaps, `aegisrt profile`, 1 thread: 0.23 and 0.45 -> 0.07 and 0.07
/// ms). Same result as [`transpose`]: a transpose moves values.
///
/// # Errors
/// As [`transpose`].
pub fn transpose_f32(
    x: &[f32],
    x_shape: &[usize],
    perm: &[usize],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V4::try_new() {
        let block =
            move |src: &[f32], rows: usize, cols: usize, cs: Range<usize>, dst: &mut [f32]| {
                super::conv_dw_t::transpose_block(simd, src, rows, cols, cs, dst);
            };
        return transpose_with(x, x_shape, perm, out, threads, &block);
    }
    transpose(x, x_shape, perm, out, threads)
}

/// Input columns `cs` of the row-major `rows x cols` matrix `src` as the rows of `dst`
/// (`dst[(c - cs.start) * rows + r] = src[r * cols + c]`), in 32x32 tiles that stay in L1.
fn block_transpose<T: Copy>(src: &[T], rows: usize, cols: usize, cs: Range<usize>, dst: &mut [T]) {
    const B: usize = 32;
    for r0 in (0..rows).step_by(B) {
        let r1 = (r0 + B).min(rows);
        for c0 in cs.clone().step_by(B) {
            for c in c0..(c0 + B).min(cs.end) {
                let o = &mut dst[(c - cs.start) * rows..][r0..r1];
                for (rr, v) in o.iter_mut().enumerate() {
                    *v = src[(r0 + rr) * cols + c];
                }
            }
        }
    }
}

/// The block mover of a 2-D transpose: `(src, rows, cols, columns, dst)` as
/// [`block_transpose`].
type BlockFn<'a, T> = dyn Fn(&[T], usize, usize, Range<usize>, &mut [T]) + Sync + 'a;

fn transpose_with<T: Copy + Send + Sync>(
    x: &[T],
    x_shape: &[usize],
    perm: &[usize],
    out: &mut [T],
    threads: usize,
    block: &BlockFn<'_, T>,
) -> KernelResult<()> {
    const OP: &str = "Transpose";
    let rank = x_shape.len();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(invalid(OP, "perm", format!("{perm:?} for rank {rank}")));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "output", out.len(), x.len())?;
    if x.is_empty() {
        return Ok(());
    }
    // Drop unit axes, then merge runs of input axes that stay consecutive in the output.
    let kept: Vec<usize> = perm.iter().copied().filter(|&p| x_shape[p] != 1).collect();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &p in &kept {
        match groups.last_mut() {
            Some(g) if g.last().is_some_and(|&l| l + 1 == p) => g.push(p),
            _ => groups.push(vec![p]),
        }
    }
    // Reduced input: groups ordered by their first input axis.
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by_key(|&g| groups[g][0]);
    let ext: Vec<usize> = groups
        .iter()
        .map(|g| g.iter().map(|&a| x_shape[a]).product())
        .collect();
    let in_shape: Vec<usize> = order.iter().map(|&g| ext[g]).collect();
    // perm2[i] = position (in the reduced input) of output group i.
    let mut pos = vec![0; groups.len()];
    for (i, &g) in order.iter().enumerate() {
        pos[g] = i;
    }
    let r = in_shape.len();
    if r <= 1 || pos.iter().enumerate().all(|(i, &p)| i == p) {
        out.copy_from_slice(x);
        return Ok(());
    }
    let mut in_st = vec![1usize; r];
    for d in (0..r - 1).rev() {
        in_st[d] = in_st[d + 1] * in_shape[d + 1];
    }
    let out_shape: Vec<usize> = pos.iter().map(|&p| in_shape[p]).collect();
    let out_st_in: Vec<usize> = pos.iter().map(|&p| in_st[p]).collect();
    // Swap of the last two reduced axes: blocked 2-D transposes over a batch.
    if pos[..r - 2].iter().enumerate().all(|(i, &p)| i == p)
        && pos[r - 2] == r - 1
        && pos[r - 1] == r - 2
    {
        let (rows, cols) = (in_shape[r - 2], in_shape[r - 1]);
        let mat = rows * cols;
        // Workers take runs of output rows (input columns), across matrices of the batch, so
        // one large matrix is shared too.
        par_chunks(out, rows, threads, (1 << 14) / rows, |first, piece| {
            let mut o = first;
            let mut rest = piece;
            while !rest.is_empty() {
                let (b, c0) = (o / cols, o % cols);
                let n = (cols - c0).min(rest.len() / rows);
                let (head, tail) = std::mem::take(&mut rest).split_at_mut(n * rows);
                block(&x[b * mat..(b + 1) * mat], rows, cols, c0..c0 + n, head);
                rest = tail;
                o += n;
            }
        });
        return Ok(());
    }
    // General walk: odometer over the output, innermost output axis strided in the input.
    let inner = out_shape[r - 1];
    let s_in = out_st_in[r - 1];
    let outer_shape = &out_shape[..r - 1];
    let outer_st = &out_st_in[..r - 1];
    par_chunks(
        out,
        inner,
        threads,
        (1 << 14) / inner.max(1),
        |first, piece| {
            let mut idx = vec![0usize; r - 1];
            let mut rem = first;
            let mut off = 0;
            for d in (0..r - 1).rev() {
                idx[d] = rem % outer_shape[d];
                rem /= outer_shape[d];
                off += idx[d] * outer_st[d];
            }
            for row in piece.chunks_mut(inner) {
                if s_in == 1 {
                    // Contiguous runs (e.g. ShuffleNet's channel shuffle moves whole planes).
                    row.copy_from_slice(&x[off..off + inner]);
                } else {
                    for (v, &e) in row.iter_mut().zip(x[off..].iter().step_by(s_in)) {
                        *v = e;
                    }
                }
                let mut d = r - 1;
                while d > 0 {
                    d -= 1;
                    idx[d] += 1;
                    off += outer_st[d];
                    if idx[d] < outer_shape[d] {
                        break;
                    }
                    off -= idx[d] * outer_st[d];
                    idx[d] = 0;
                }
            }
        },
    );
    Ok(())
}

/// ONNX `Gather` along `axis`: `out = data[..., indices[...], ...]` with shape
/// `data_shape[..axis] ++ indices_shape ++ data_shape[axis + 1..]`. Indices (i64 or i32) may
/// be negative (counted from the end).
///
/// # Errors
/// An index outside `[-dim, dim)`, axis out of range, or length mismatches.
pub fn gather<T: Copy, I: Copy + Into<i64>>(
    data: &[T],
    data_shape: &[usize],
    indices: &[I],
    indices_shape: &[usize],
    axis: usize,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "Gather";
    if axis >= data_shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", data_shape.len()),
        ));
    }
    check_len(OP, "data", data.len(), numel(OP, data_shape)?)?;
    check_len(OP, "indices", indices.len(), numel(OP, indices_shape)?)?;
    let dim = data_shape[axis];
    let outer: usize = data_shape[..axis].iter().product();
    let inner: usize = data_shape[axis + 1..].iter().product();
    check_len(OP, "output", out.len(), outer * indices.len() * inner)?;
    let resolved: Vec<usize> = indices
        .iter()
        .map(|&i| resolve_index(OP, i.into(), dim))
        .collect::<KernelResult<_>>()?;
    let mut o = 0;
    for b in 0..outer {
        for &r in &resolved {
            let src = (b * dim + r) * inner;
            out[o..o + inner].copy_from_slice(&data[src..src + inner]);
            o += inner;
        }
    }
    Ok(())
}

/// ONNX `Pad` mode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PadMode<T> {
    /// Fill with the value (ONNX `constant_value`, default 0).
    Constant(T),
    /// Mirror without repeating the edge (`reflect`).
    Reflect,
    /// Repeat the edge element (`edge`).
    Edge,
    /// Wrap around (`wrap`, opset 19).
    Wrap,
}

/// ONNX `Pad`: `pads_begin[i]`/`pads_end[i]` per axis (the caller expands the opset 18
/// `axes` input into full-rank lists); negative pads crop. `out` extent per axis is
/// `dim + begin + end`.
///
/// # Errors
/// Negative output extents, reflect/edge/wrap on an empty axis that needs padding, or length
/// mismatches.
pub fn pad<T: Copy>(
    x: &[T],
    x_shape: &[usize],
    pads_begin: &[i64],
    pads_end: &[i64],
    mode: PadMode<T>,
    out: &mut [T],
) -> KernelResult<()> {
    const OP: &str = "Pad";
    let rank = x_shape.len();
    if pads_begin.len() != rank || pads_end.len() != rank {
        return Err(invalid(
            OP,
            "pads",
            format!(
                "{} + {} entries for rank {rank}",
                pads_begin.len(),
                pads_end.len()
            ),
        ));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    // Per axis: output index -> input index (None = constant fill).
    let mut maps: Vec<Vec<Option<usize>>> = Vec::with_capacity(rank);
    for d in 0..rank {
        let n = x_shape[d] as i64;
        let len = n + pads_begin[d] + pads_end[d];
        if len < 0 {
            return Err(invalid(
                OP,
                "pads",
                format!("negative output extent on axis {d}"),
            ));
        }
        let map: Vec<Option<usize>> = (0..len)
            .map(|o| {
                let i = o - pads_begin[d];
                if (0..n).contains(&i) {
                    return Ok(Some(i as usize));
                }
                if n == 0 && !matches!(mode, PadMode::Constant(_)) {
                    return Err(invalid(
                        OP,
                        "mode",
                        format!("cannot pad empty axis {d} by reflection/edge/wrap"),
                    ));
                }
                Ok(match mode {
                    PadMode::Constant(_) => None,
                    PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
                    PadMode::Wrap => Some(i.rem_euclid(n) as usize),
                    PadMode::Reflect => {
                        if n == 1 {
                            Some(0)
                        } else {
                            let period = 2 * (n - 1);
                            let m = i.rem_euclid(period);
                            Some(if m < n { m } else { period - m } as usize)
                        }
                    }
                })
            })
            .collect::<KernelResult<_>>()?;
        maps.push(map);
    }
    let out_shape: Vec<usize> = maps.iter().map(Vec::len).collect();
    check_len(OP, "output", out.len(), numel(OP, &out_shape)?)?;
    if out.is_empty() {
        return Ok(());
    }
    let fill = match mode {
        PadMode::Constant(v) => Some(v),
        _ => None,
    };
    if rank == 0 {
        out[0] = x[0];
        return Ok(());
    }
    let mut st = vec![1usize; rank];
    for d in (0..rank - 1).rev() {
        st[d] = st[d + 1] * x_shape[d + 1];
    }
    let inner_map = &maps[rank - 1];
    let mut idx = vec![0usize; rank - 1];
    for row in out.chunks_mut(inner_map.len().max(1)) {
        let mut base = Some(0usize);
        for d in 0..rank - 1 {
            base = base.and_then(|b| maps[d][idx[d]].map(|i| b + i * st[d]));
        }
        for (v, m) in row.iter_mut().zip(inner_map) {
            *v = match (base, m) {
                (Some(b), Some(i)) => x[b + i],
                // Constant mode is the only one producing None.
                _ => fill.unwrap_or(*v),
            };
        }
        let mut d = rank - 1;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            if idx[d] < maps[d].len() {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(())
}

/// ONNX Tile: `out` (shape `x_shape[a] * repeats[a]`) repeats `x` along every axis. Rows of
/// the last axis are copied whole; work splits along output rows.
///
/// # Errors
/// Wrong lengths or a `repeats` of another rank.
pub fn tile<T: Copy + Send + Sync>(
    x: &[T],
    x_shape: &[usize],
    repeats: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Tile";
    if repeats.len() != x_shape.len() {
        return Err(invalid(
            OP,
            "repeats",
            format!("{} repeats for rank {}", repeats.len(), x_shape.len()),
        ));
    }
    check_len(OP, "input", x.len(), numel(OP, x_shape)?)?;
    let out_shape: Vec<usize> = x_shape.iter().zip(repeats).map(|(d, r)| d * r).collect();
    check_len(OP, "output", out.len(), numel(OP, &out_shape)?)?;
    if out.is_empty() {
        return Ok(());
    }
    let rank = x_shape.len();
    if rank == 0 {
        out.copy_from_slice(x);
        return Ok(());
    }
    let row_in = x_shape[rank - 1];
    let row_out = out_shape[rank - 1];
    par_chunks(out, row_out, threads, 16, |first_row, piece| {
        for (r, dst) in piece.chunks_mut(row_out).enumerate() {
            // The output row's index over the leading axes, mapped back into the input.
            let mut o = first_row + r;
            let mut src_row = 0;
            let mut scale = 1;
            for a in (0..rank - 1).rev() {
                let idx = o % out_shape[a];
                o /= out_shape[a];
                src_row += (idx % x_shape[a]) * scale;
                scale *= x_shape[a];
            }
            let src = &x[src_row * row_in..(src_row + 1) * row_in];
            for chunk in dst.chunks_mut(row_in.max(1)) {
                chunk.copy_from_slice(&src[..chunk.len()]);
            }
        }
    });
    Ok(())
}

/// ONNX DepthToSpace (`to_space`) and SpaceToDepth, mode DCR or `crd`, on `[N, C, H, W]`: a
/// transpose of a 6-D view of the same data.
///
/// # Errors
/// A rank other than 4, extents not divisible by the block, wrong lengths.
pub fn block_shuffle<T: Copy + Send + Sync>(
    to_space: bool,
    crd: bool,
    blocksize: usize,
    x: &[T],
    x_shape: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "DepthToSpace/SpaceToDepth";
    let &[n, c, h, w] = x_shape else {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![],
        });
    };
    let b = blocksize;
    let divisible = b > 0
        && if to_space {
            c % (b * b) == 0
        } else {
            h % b == 0 && w % b == 0
        };
    if !divisible {
        return Err(invalid(
            OP,
            "blocksize",
            format!("{b} does not divide {x_shape:?}"),
        ));
    }
    let (view, perm): ([usize; 6], [usize; 6]) = match (to_space, crd) {
        (true, false) => ([n, b, b, c / (b * b), h, w], [0, 3, 4, 1, 5, 2]),
        (true, true) => ([n, c / (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3]),
        (false, false) => ([n, c, h / b, b, w / b, b], [0, 3, 5, 1, 2, 4]),
        (false, true) => ([n, c, h / b, b, w / b, b], [0, 1, 3, 5, 2, 4]),
    };
    transpose(x, &view, &perm, out, threads)
}

/// ONNX `TensorScatter` (opset 24) on raw elements of `elem` bytes: `out` is `past` with, per
/// index of the axes before `axis` (the first being the batch), the update's `seq` rows
/// along `axis` written from row `write[batch]` on (0 without `write_indices`); `circular`
/// wraps the row modulo the cache's extent, else a write past the end is an error.
///
/// # Errors
/// Length mismatches, `axis` 0 or out of range, or a write outside a linear cache.
#[allow(clippy::too_many_arguments)]
pub fn tensor_scatter(
    past: &[u8],
    shape: &[usize],
    update: &[u8],
    seq: usize,
    axis: usize,
    elem: usize,
    write: Option<&[i64]>,
    circular: bool,
    out: &mut [u8],
) -> KernelResult<()> {
    const OP: &str = "TensorScatter";
    if axis == 0 || axis >= shape.len() {
        return Err(invalid(
            OP,
            "axis",
            format!("{axis} for rank {}", shape.len()),
        ));
    }
    let total = numel(OP, shape)? * elem;
    check_len(OP, "past_cache", past.len(), total)?;
    check_len(OP, "present_cache", out.len(), total)?;
    let max = shape[axis];
    let row = shape[axis + 1..].iter().product::<usize>() * elem;
    let prefixes: usize = shape[..axis].iter().product();
    check_len(OP, "update", update.len(), prefixes * seq * row)?;
    let per_batch = prefixes / shape[0].max(1);
    if let Some(w) = write {
        check_len(OP, "write_indices", w.len(), shape[0])?;
    }
    out.copy_from_slice(past);
    if row == 0 || seq == 0 {
        return Ok(());
    }
    for p in 0..prefixes {
        let b = p / per_batch.max(1);
        let start = write.map_or(0, |w| w[b]);
        for s in 0..seq {
            let at = start + s as i64;
            let dst = if circular {
                at.rem_euclid(max as i64) as usize
            } else {
                usize::try_from(at).ok().filter(|&d| d < max).ok_or(
                    KernelError::IndexOutOfRange {
                        op: OP,
                        index: at,
                        size: max,
                    },
                )?
            };
            let from = (p * seq + s) * row;
            let to = (p * max + dst) * row;
            out[to..to + row].copy_from_slice(&update[from..from + row]);
        }
    }
    Ok(())
}
