//! Pooling (MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool) and LRN, NCHW (also
//! 1-D and 3-D spatial). Threads split output planes (`N * C`); each output is a fixed-order
//! reduction over its window, so results do not depend on `threads`. On CPUs with AVX-512,
//! 2-D pools with stride 1 or 2 and 2- or 3-wide windows take `pool_rows` (each output row
//! straight from the input rows, window columns by lane shifts and permutes); the other 2-D
//! pools with stride 1 (and, without AVX-512, stride 2 on planes up to 64x64) take
//! `pool_plane`, which works a plane at a time; the rest reduce each output row's input rows,
//! then its columns. All three give the same bits (a sum's NaN payload aside).

use super::conv_dw_same::Plane2;
use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::par::par_chunks;
use super::pool_plane::{PlanePool, PlanePoolPlanes};
#[cfg(target_arch = "x86_64")]
use super::pool_rows::{run_planes, PoolFlat, PoolRows};

/// MaxPool / AveragePool attributes with defaults filled in and `auto_pad` resolved (see
/// [`super::auto_pad`]). One entry per spatial axis (1 to 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAttrs {
    /// `kernel_shape`.
    pub kernel: Vec<usize>,
    /// `strides` (default 1).
    pub strides: Vec<usize>,
    /// `dilations` (default 1; AveragePool accepts them from opset 19).
    pub dilations: Vec<usize>,
    /// First half of `pads`.
    pub pads_begin: Vec<usize>,
    /// Second half of `pads`.
    pub pads_end: Vec<usize>,
    /// `ceil_mode` (default 0).
    pub ceil_mode: bool,
    /// AveragePool `count_include_pad` (default 0).
    pub count_include_pad: bool,
}

impl PoolAttrs {
    /// Defaults (stride 1, no padding, floor mode) for a kernel.
    pub fn new(kernel: &[usize]) -> Self {
        let n = kernel.len();
        Self {
            kernel: kernel.to_vec(),
            strides: vec![1; n],
            dilations: vec![1; n],
            pads_begin: vec![0; n],
            pads_end: vec![0; n],
            ceil_mode: false,
            count_include_pad: false,
        }
    }
}

/// Output spatial extents of a pooling window: `floor` (or `ceil` with `ceil_mode`) of
/// `(in + pb + pe - ((k - 1) * d + 1)) / s + 1`; in ceil mode a last window that would start
/// past the input and its begin padding is dropped (ONNX opset 19+ reference, onnxruntime).
///
/// # Errors
/// Inconsistent attribute lengths, zero kernel/stride/dilation, or a window larger than the
/// padded input.
pub fn pool_output_spatial(input: &[usize], a: &PoolAttrs) -> KernelResult<Vec<usize>> {
    const OP: &str = "Pool";
    let n = a.kernel.len();
    if n == 0 || n > 3 || input.len() != n {
        return Err(invalid(
            OP,
            "kernel_shape",
            format!("{n} axes for a {}-D input", input.len()),
        ));
    }
    for v in [&a.strides, &a.dilations, &a.pads_begin, &a.pads_end] {
        if v.len() != n {
            return Err(invalid(
                OP,
                "strides/dilations/pads",
                "one entry per spatial axis required",
            ));
        }
    }
    if a.kernel.contains(&0) || a.strides.contains(&0) || a.dilations.contains(&0) {
        return Err(invalid(
            OP,
            "kernel_shape/strides/dilations",
            "entries must be >= 1",
        ));
    }
    (0..n)
        .map(|i| {
            let padded = input[i] + a.pads_begin[i] + a.pads_end[i];
            let eff = (a.kernel[i] - 1) * a.dilations[i] + 1;
            if padded < eff {
                return Err(invalid(
                    OP,
                    "kernel_shape",
                    format!("window {eff} exceeds padded input {padded}"),
                ));
            }
            let span = padded - eff;
            let s = a.strides[i];
            let mut out = if a.ceil_mode {
                span.div_ceil(s) + 1
            } else {
                span / s + 1
            };
            if a.ceil_mode && (out - 1) * s >= input[i] + a.pads_begin[i] {
                out -= 1;
            }
            Ok(out)
        })
        .collect()
}

/// Pooling reduction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolKind {
    /// MaxPool: maximum over in-bounds taps (padding never wins).
    Max,
    /// AveragePool: sum of in-bounds taps divided by their count, or (with
    /// `count_include_pad`) by the taps inside the padded extent.
    Average,
}

fn pad3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// MaxPool / AveragePool over `x` `[N, C, in...]`; `out` is `[N, C, out...]` with
/// [`pool_output_spatial`] extents. (MaxPool's optional `Indices` output is not produced.)
///
/// # Errors
/// Attribute, shape or length inconsistencies.
pub fn pool(
    kind: PoolKind,
    x: &[f32],
    x_shape: &[usize],
    a: &PoolAttrs,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    pool_paths(kind, x, x_shape, a, out, threads, true)
}

/// ONNX LpPool (and GlobalLpPool as a window over the whole plane): per output,
/// `(sum over the window's taps of |x|^p)^(1/p)`. Padding contributes zeros, so only the
/// in-bounds taps are summed, in window order (the result does not depend on `threads`).
///
/// # Errors
/// `p < 1`, a rank below 3, or shape and length mismatches.
pub fn lp_pool(
    x: &[f32],
    x_shape: &[usize],
    a: &PoolAttrs,
    p: i64,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "LpPool";
    if x_shape.len() < 3 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: a.kernel.clone(),
        });
    }
    let p = match i32::try_from(p) {
        Ok(p) if p >= 1 => p,
        _ => return Err(invalid(OP, "p", format!("{p} (must be at least 1)"))),
    };
    let osp = pool_output_spatial(&x_shape[2..], a)?;
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let planes = x_shape[0] * x_shape[1];
    let (i3, o3) = (pad3(&x_shape[2..], 1), pad3(&osp, 1));
    let (k3, s3, d3) = (
        pad3(&a.kernel, 1),
        pad3(&a.strides, 1),
        pad3(&a.dilations, 1),
    );
    let pb3 = pad3(&a.pads_begin, 0);
    let (ip, op): (usize, usize) = (i3.iter().product(), o3.iter().product());
    check_len(OP, "Y", out.len(), planes * op)?;
    if op == 0 {
        return Ok(());
    }
    // Input index of output `o`, tap `t` on axis `ax`, when inside the input.
    let at = |ax: usize, o: usize, t: usize| -> Option<usize> {
        let pos = (o * s3[ax] + t * d3[ax]).checked_sub(pb3[ax])?;
        (pos < i3[ax]).then_some(pos)
    };
    let pow = |v: f32| match p {
        1 => v.abs(),
        2 => v * v,
        _ => v.abs().powi(p),
    };
    let root = |s: f32| match p {
        1 => s,
        2 => s.sqrt(),
        _ => s.powf(1.0 / p as f32),
    };
    let min_planes = (1usize << 14) / (op * k3.iter().product::<usize>()).max(1);
    par_chunks(out, op, threads, min_planes, |first, piece| {
        for (pi, oplane) in piece.chunks_mut(op).enumerate() {
            let plane = &x[(first + pi) * ip..(first + pi + 1) * ip];
            let mut outs = oplane.iter_mut();
            for od in 0..o3[0] {
                for oh in 0..o3[1] {
                    for ow in 0..o3[2] {
                        let mut acc = 0.0f32;
                        for id in (0..k3[0]).filter_map(|t| at(0, od, t)) {
                            for ih in (0..k3[1]).filter_map(|t| at(1, oh, t)) {
                                let row = &plane[(id * i3[1] + ih) * i3[2]..][..i3[2]];
                                for iw in (0..k3[2]).filter_map(|t| at(2, ow, t)) {
                                    acc += pow(row[iw]);
                                }
                            }
                        }
                        if let Some(o) = outs.next() {
                            *o = root(acc);
                        }
                    }
                }
            }
        }
    });
    Ok(())
}

/// [`pool`], with the AVX-512 stride-2 path allowed or not (tests compare the paths).
pub(super) fn pool_paths(
    kind: PoolKind,
    x: &[f32],
    x_shape: &[usize],
    a: &PoolAttrs,
    out: &mut [f32],
    threads: usize,
    avx512_rows: bool,
) -> KernelResult<()> {
    const OP: &str = "Pool";
    if x_shape.len() < 3 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: a.kernel.clone(),
        });
    }
    let osp = pool_output_spatial(&x_shape[2..], a)?;
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let planes = x_shape[0] * x_shape[1];
    let (i3, o3) = (pad3(&x_shape[2..], 1), pad3(&osp, 1));
    let (k3, s3, d3) = (
        pad3(&a.kernel, 1),
        pad3(&a.strides, 1),
        pad3(&a.dilations, 1),
    );
    let (pb3, pe3) = (pad3(&a.pads_begin, 0), pad3(&a.pads_end, 0));
    let (ip, op): (usize, usize) = (i3.iter().product(), o3.iter().product());
    check_len(OP, "Y", out.len(), planes * op)?;
    if op == 0 {
        return Ok(());
    }
    if o3 == [1; 3] && k3 == i3 && pb3 == [0; 3] && pe3 == [0; 3] && d3 == [1; 3] {
        // One window over the whole plane (a classifier head's 7x7 average): the global
        // pool's vector sum instead of a row path built for many outputs per plane
        // (`kernel_bench`, ResNet-50's 2048x7x7, 1 thread: 0.053 -> 0.016 ms; onnxruntime
        // 0.016 in the model).
        return global_pool(kind == PoolKind::Max, x, x_shape, out, threads);
    }
    // Per axis and output index: the valid taps [t_lo, t_hi) and the count_include_pad
    // divisor contribution.
    let taps = |ax: usize| -> Vec<(usize, usize, usize)> {
        (0..o3[ax])
            .map(|o| {
                let start = (o * s3[ax]) as isize - pb3[ax] as isize;
                let mut lo = k3[ax];
                let mut hi = 0;
                let mut padded = 0;
                for t in 0..k3[ax] {
                    let pos = start + (t * d3[ax]) as isize;
                    if pos >= 0 && pos < i3[ax] as isize {
                        lo = lo.min(t);
                        hi = t + 1;
                    }
                    if pos >= -(pb3[ax] as isize) && pos < (i3[ax] + pe3[ax]) as isize {
                        padded += 1;
                    }
                }
                (lo.min(hi), hi, padded)
            })
            .collect()
    };
    let (td, th, tw) = (taps(0), taps(1), taps(2));
    let kprod: usize = k3.iter().product();
    // Planes per worker worth waking one: about 16k window taps (~10 us; 512 planes of a
    // 2x2/2 pool on 14x14 at 2 threads: 0.055 -> 0.029 ms).
    let min_planes = (1usize << 14) / (op * kprod).max(1);
    if i3[0] == 1 && k3[0] == 1 && o3[0] == 1 {
        let plane = Plane2 {
            input: [i3[1], i3[2]],
            out: [o3[1], o3[2]],
            kernel: [k3[1], k3[2]],
            strides: [s3[1], s3[2]],
            dilations: [d3[1], d3[2]],
            pads_begin: [pb3[1], pb3[2]],
        };
        let pads_end = [pe3[1], pe3[2]];
        #[cfg(target_arch = "x86_64")]
        if avx512_rows {
            let cip = a.count_include_pad;
            if let Some(plan) = PoolFlat::new(kind, plane, pads_end, &th, &tw, cip) {
                run_planes(&plan, x, out, op, threads, min_planes);
                return Ok(());
            }
            if let Some(plan) = PoolRows::new(kind, plane, pads_end, &th, &tw, cip) {
                run_planes(&plan, x, out, op, threads, min_planes);
                return Ok(());
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = avx512_rows;
        if let Some(plan) = PlanePool::new(kind, plane, pads_end, &th, &tw, a.count_include_pad) {
            par_chunks(out, op, threads, min_planes, |first, piece| {
                pulp::Arch::new().dispatch(PlanePoolPlanes {
                    plan: &plan,
                    x,
                    first,
                    out: piece,
                });
            });
            return Ok(());
        }
        // 1-D / 2-D: whole output rows per tap, same taps in the same order per output.
        let g = Plane2d {
            kind,
            iw_n: i3[2],
            ow_n: o3[2],
            kw: k3[2],
            s: [s3[1], s3[2]],
            d: [d3[1], d3[2]],
            pb: [pb3[1], pb3[2]],
            count_include_pad: a.count_include_pad,
        };
        par_chunks(out, op, threads, min_planes, |first, piece| {
            // Through pulp's dispatch so the row loops are compiled for (and vectorised to)
            // the widest vector unit the CPU has, not the SSE2 baseline.
            pulp::Arch::new().dispatch(PoolPlanes {
                g: &g,
                x,
                ip,
                op,
                first,
                out: piece,
                th: &th,
                tw: &tw,
            });
        });
        return Ok(());
    }
    par_chunks(out, op, threads, min_planes, |first, piece| {
        for (pi, oplane) in piece.chunks_mut(op).enumerate() {
            let plane = &x[(first + pi) * ip..(first + pi + 1) * ip];
            let mut oi = 0;
            for (od, &(dlo, dhi, dpad)) in td.iter().enumerate() {
                for (oh, &(hlo, hhi, hpad)) in th.iter().enumerate() {
                    for (ow, &(wlo, whi, wpad)) in tw.iter().enumerate() {
                        let mut acc = if kind == PoolKind::Max {
                            f32::NEG_INFINITY
                        } else {
                            0.0
                        };
                        let mut count = 0usize;
                        for kd in dlo..dhi {
                            let id = od * s3[0] + kd * d3[0] - pb3[0];
                            for kh in hlo..hhi {
                                let ih = oh * s3[1] + kh * d3[1] - pb3[1];
                                let row = &plane[(id * i3[1] + ih) * i3[2]..][..i3[2]];
                                for kw in wlo..whi {
                                    let v = row[ow * s3[2] + kw * d3[2] - pb3[2]];
                                    match kind {
                                        // NaN propagates like onnxruntime's comparison chain.
                                        PoolKind::Max => {
                                            if v > acc || v.is_nan() {
                                                acc = v;
                                            }
                                        }
                                        PoolKind::Average => acc += v,
                                    }
                                    count += 1;
                                }
                            }
                        }
                        oplane[oi] = match kind {
                            PoolKind::Max => acc,
                            PoolKind::Average => {
                                let div = if a.count_include_pad {
                                    dpad * hpad * wpad
                                } else {
                                    count
                                };
                                if div == 0 {
                                    0.0
                                } else {
                                    acc / div as f32
                                }
                            }
                        };
                        oi += 1;
                    }
                }
            }
        }
    });
    Ok(())
}

/// One worker's output planes of a 1-D / 2-D pooling, run under pulp's dispatch.
struct PoolPlanes<'a> {
    g: &'a Plane2d,
    x: &'a [f32],
    ip: usize,
    op: usize,
    first: usize,
    out: &'a mut [f32],
    th: &'a [(usize, usize, usize)],
    tw: &'a [(usize, usize, usize)],
}

impl pulp::WithSimd for PoolPlanes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let (ip, op) = (self.ip, self.op);
        // The column runs are the same for every plane: computed once per worker.
        let runs = self.g.runs();
        let mut vrow = vec![0.0; self.g.row_len()];
        for (pi, oplane) in self.out.chunks_mut(op).enumerate() {
            let c = self.first + pi;
            self.g.run(
                &self.x[c * ip..(c + 1) * ip],
                oplane,
                self.th,
                self.tw,
                &runs,
                &mut vrow,
            );
        }
    }
}

/// A 1-D or 2-D pooling geometry (`H` is 1 for 1-D).
struct Plane2d {
    kind: PoolKind,
    iw_n: usize,
    ow_n: usize,
    kw: usize,
    s: [usize; 2],
    d: [usize; 2],
    pb: [usize; 2],
    count_include_pad: bool,
}

impl Plane2d {
    /// One output plane: each output row accumulates its valid input rows (in `kh` order),
    /// each row's taps in `kw` order, each tap over the contiguous run of outputs it covers;
    /// so every output sees the same taps in the same order as the generic loop.
    /// Per kw: the outputs `[lo, hi)` whose tap lies inside the row, and its first column.
    fn runs(&self) -> Vec<(usize, usize, usize)> {
        let (iw_n, ow_n, sw) = (self.iw_n, self.ow_n, self.s[1]);
        (0..self.kw)
            .filter_map(|kw| {
                let off = (kw * self.d[1]) as isize - self.pb[1] as isize;
                let (lo, hi) = super::conv::valid_range(0, ow_n, sw, off, iw_n);
                (hi > lo).then(|| (lo, hi, (lo as isize * sw as isize + off) as usize))
            })
            .collect()
    }

    /// 3-wide windows at stride 2 without dilation: each output row is one pass over the
    /// identity-padded row (`2 * ox`, `2 * ox + 1`, `2 * ox + 2`) instead of three strided
    /// read-modify-write passes.
    fn fused3(&self) -> bool {
        self.kw == 3 && self.s[1] == 2 && self.d[1] == 1
    }

    /// The row buffer's length: the row, and for [`Plane2d::fused3`] its left padding and the
    /// identity up to the last window.
    fn row_len(&self) -> usize {
        if self.fused3() {
            (self.pb[1] + self.iw_n).max(2 * self.ow_n + 2)
        } else {
            self.iw_n
        }
    }

    /// One output plane, an output row at a time: first the valid input rows of its windows
    /// are reduced into `vrow` (in `kh` order, one pass per row over whole rows), then each
    /// `kw` tap reduces its run of `vrow` into the output row (in `kw` order). `kh + kw`
    /// passes per output row instead of `kh * kw`; every output is a fixed-order reduction,
    /// independent of `threads`.
    #[inline(always)]
    fn run(
        &self,
        plane: &[f32],
        oplane: &mut [f32],
        th: &[(usize, usize, usize)],
        tw: &[(usize, usize, usize)],
        runs: &[(usize, usize, usize)],
        vrow: &mut [f32],
    ) {
        match self.kind {
            PoolKind::Max => self.reduce(plane, oplane, th, runs, vrow, f32::NEG_INFINITY, max_nan),
            PoolKind::Average => {
                self.reduce(plane, oplane, th, runs, vrow, 0.0, |a, v| a + v);
                for (orow, &(hlo, hhi, hpad)) in oplane.chunks_mut(self.ow_n).zip(th) {
                    for (o, &(wlo, whi, wpad)) in orow.iter_mut().zip(tw) {
                        let div = if self.count_include_pad {
                            hpad * wpad
                        } else {
                            (hhi - hlo) * (whi - wlo)
                        };
                        *o = if div == 0 { 0.0 } else { *o / div as f32 };
                    }
                }
            }
        }
    }

    /// [`Plane2d::run`]'s two passes with the combining step `f` (max or sum) and its
    /// identity `init`; monomorphised per kind so each loop vectorises.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn reduce(
        &self,
        plane: &[f32],
        oplane: &mut [f32],
        th: &[(usize, usize, usize)],
        runs: &[(usize, usize, usize)],
        vrow: &mut [f32],
        init: f32,
        f: impl Fn(f32, f32) -> f32 + Copy,
    ) {
        let (iw_n, ow_n, sw) = (self.iw_n, self.ow_n, self.s[1]);
        let fused3 = self.fused3();
        // Fused: the row sits after its left padding with the identity around it; a padded
        // tap then changes nothing (max with -inf; +0 added to a sum that starts at +0), so
        // every output is the arithmetic the runs below give it.
        let pl = if fused3 { self.pb[1] } else { 0 };
        vrow[..pl].fill(init);
        vrow[pl + iw_n..].fill(init);
        for (oh, (orow, &(hlo, hhi, _))) in oplane.chunks_mut(ow_n).zip(th).enumerate() {
            if hhi <= hlo {
                // No input row in any window of this output row (padding only).
                orow.fill(init);
                continue;
            }
            let row_of = |kh: usize| {
                let ih = oh * self.s[0] + kh * self.d[0] - self.pb[0];
                &plane[ih * iw_n..(ih + 1) * iw_n]
            };
            // Three rows (3x3 windows) in one pass with the rows combined in registers: a copy
            // and then a read-modify-write per row reload what was just stored (3x3/2 on
            // 64x112x112: 0.33 -> 0.22 ms; the same for two rows measured slower, 2x2/2 on
            // 64x224x224 0.9 -> 1.2-1.8).
            let row = &mut vrow[pl..pl + iw_n];
            match hhi - hlo {
                3 => {
                    let (r0, r1, r2) = (row_of(hlo), row_of(hlo + 1), row_of(hlo + 2));
                    for (((v, &a), &b), &c) in row.iter_mut().zip(r0).zip(r1).zip(r2) {
                        *v = f(f(a, b), c);
                    }
                }
                _ => {
                    row.copy_from_slice(row_of(hlo));
                    for kh in hlo + 1..hhi {
                        combine_run(row, row_of(kh), 0, 1, f);
                    }
                }
            }
            if fused3 {
                let pairs = vrow[..2 * ow_n].chunks_exact(2);
                let next = vrow[2..2 * ow_n + 2].chunks_exact(2);
                for ((o, p), q) in orow.iter_mut().zip(pairs).zip(next) {
                    *o = f(f(f(init, p[0]), p[1]), q[0]);
                }
                continue;
            }
            orow.fill(init);
            for &(lo, hi, first) in runs {
                combine_run(&mut orow[lo..hi], vrow, first, sw, f);
            }
        }
    }
}

/// `dst[i] = f(dst[i], src[first + i * s])` for every `i`.
#[inline(always)]
fn combine_run(dst: &mut [f32], src: &[f32], first: usize, s: usize, f: impl Fn(f32, f32) -> f32) {
    match s {
        1 => {
            let n = dst.len();
            for (o, &v) in dst.iter_mut().zip(&src[first..first + n]) {
                *o = f(*o, v);
            }
        }
        2 => {
            // Even elements of pairs (a shape the vectoriser handles; step_by is not), the
            // last output's tap on its own (it may lack a pair).
            if let Some((last, body)) = dst.split_last_mut() {
                for (o, p) in body.iter_mut().zip(src[first..].chunks_exact(2)) {
                    *o = f(*o, p[0]);
                }
                *last = f(*last, src[first + 2 * body.len()]);
            }
        }
        _ => {
            for (o, &v) in dst.iter_mut().zip(src[first..].iter().step_by(s)) {
                *o = f(*o, v);
            }
        }
    }
}

/// The larger of `acc` and `v`, NaN if either is NaN (like onnxruntime's comparison chain);
/// on ties `acc` is kept.
#[inline(always)]
fn max_nan(acc: f32, v: f32) -> f32 {
    if v > acc || v.is_nan() {
        v
    } else {
        acc
    }
}

/// GlobalAveragePool (`max = false`) or GlobalMaxPool (`max = true`): `x` `[N, C, ...]`,
/// `out` `[N, C, 1, ...]` (N*C elements).
///
/// # Errors
/// Rank below 2 or length mismatches.
pub fn global_pool(
    max: bool,
    x: &[f32],
    x_shape: &[usize],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "GlobalPool";
    if x_shape.len() < 2 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![],
        });
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let planes = x_shape[0] * x_shape[1];
    check_len(OP, "Y", out.len(), planes)?;
    let ip: usize = x_shape[2..].iter().product();
    par_chunks(out, 1, threads, 64, |first, piece| {
        for (i, o) in piece.iter_mut().enumerate() {
            let plane = &x[(first + i) * ip..(first + i + 1) * ip];
            *o = if max {
                plane.iter().fold(
                    f32::NEG_INFINITY,
                    |m, &v| if v > m || v.is_nan() { v } else { m },
                )
            } else {
                pulp::Arch::new().dispatch(SumLanes(plane)) / ip as f32
            };
        }
    });
    Ok(())
}

/// The sum of a slice in vector lanes (four vector accumulators, then a fixed reduction
/// tree): the same order for a given slice length every time, so deterministic, and not
/// bound by one chain of dependent scalar adds.
struct SumLanes<'a>(&'a [f32]);

impl pulp::WithSimd for SumLanes<'_> {
    type Output = f32;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) -> f32 {
        let lanes = S::F32_LANES;
        let zero = simd.splat_f32s(0.0);
        let (mut a0, mut a1, mut a2, mut a3) = (zero, zero, zero, zero);
        let load = |c: &[f32]| -> S::f32s { bytemuck::pod_read_unaligned(bytemuck::cast_slice(c)) };
        let mut chunks = self.0.chunks_exact(4 * lanes);
        for c in &mut chunks {
            a0 = simd.add_f32s(a0, load(&c[..lanes]));
            a1 = simd.add_f32s(a1, load(&c[lanes..2 * lanes]));
            a2 = simd.add_f32s(a2, load(&c[2 * lanes..3 * lanes]));
            a3 = simd.add_f32s(a3, load(&c[3 * lanes..]));
        }
        let mut rest = zero;
        for c in chunks.remainder().chunks(lanes) {
            rest = simd.add_f32s(rest, simd.partial_load_f32s(c));
        }
        let s = simd.add_f32s(simd.add_f32s(a0, a1), simd.add_f32s(a2, a3));
        simd.reduce_sum_f32s(simd.add_f32s(s, rest))
    }
}

/// LRN attributes (ONNX defaults: `alpha = 1e-4`, `beta = 0.75`, `bias = 1`; `size` required).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrnAttrs {
    /// Scale; the spec divides it by `size`.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive bias.
    pub bias: f32,
    /// Channels in the window (odd or even).
    pub size: usize,
}

/// ONNX `LRN` across channels: `y = x / (bias + alpha / size * sum_{c'} x[c']^2) ^ beta` with
/// `c'` in `[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]` clipped to `[0, C)`.
/// `x`/`out` are `[N, C, ...]`.
///
/// # Errors
/// `size == 0`, rank below 2 or length mismatches.
pub fn lrn(
    x: &[f32],
    x_shape: &[usize],
    a: &LrnAttrs,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "LRN";
    if a.size == 0 {
        return Err(invalid(OP, "size", "must be >= 1"));
    }
    if x_shape.len() < 2 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![],
        });
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), x.len())?;
    let c = x_shape[1];
    let ip: usize = x_shape[2..].iter().product();
    let (before, after) = ((a.size - 1) / 2, a.size / 2);
    let scale = a.alpha / a.size as f32;
    par_chunks(out, ip, threads, 1, |first, piece| {
        let mut sq = vec![0.0f32; ip];
        for (pi, oplane) in piece.chunks_mut(ip).enumerate() {
            let plane_idx = first + pi;
            let (n, ch) = (plane_idx / c, plane_idx % c);
            sq.fill(0.0);
            for cc in ch.saturating_sub(before)..(ch + after + 1).min(c) {
                let p = &x[(n * c + cc) * ip..(n * c + cc + 1) * ip];
                for (s, &v) in sq.iter_mut().zip(p) {
                    *s += v * v;
                }
            }
            let xin = &x[plane_idx * ip..(plane_idx + 1) * ip];
            if a.beta == 0.75 {
                // The common exponent (AlexNet, GoogLeNet, ...): d^0.75 = sqrt(d) *
                // sqrt(sqrt(d)), two vectorisable square roots instead of a scalar powf
                // call per element (powf was most of an LRN's time).
                for ((o, &v), &s) in oplane.iter_mut().zip(xin).zip(&sq) {
                    let r = (a.bias + scale * s).sqrt();
                    *o = v / (r * r.sqrt());
                }
            } else {
                for ((o, &v), &s) in oplane.iter_mut().zip(xin).zip(&sq) {
                    *o = v / (a.bias + scale * s).powf(a.beta);
                }
            }
        }
    });
    Ok(())
}

/// MaxPool with its `Indices` output (ONNX): per output, the first in-bounds tap in window
/// order, replaced only by a strictly greater one (so a NaN first tap stays, as in the ONNX
/// reference), and its flat index into `x`: `(n * C + c) * plane` plus the tap's spatial
/// offset, row-major, or with `column_major` (`storage_order = 1`) counting the first
/// spatial axis fastest. Padding is never chosen; a window with no in-bounds tap (only
/// possible with pads as large as the window) gives `-inf` and index `-1`. One thread: the
/// op is rare and memory-bound.
///
/// # Errors
/// Attribute, shape or length inconsistencies.
pub fn max_pool_with_indices(
    x: &[f32],
    x_shape: &[usize],
    a: &PoolAttrs,
    column_major: bool,
    out: &mut [f32],
    indices: &mut [i64],
) -> KernelResult<()> {
    const OP: &str = "MaxPool";
    if x_shape.len() < 3 {
        return Err(invalid(OP, "X", format!("rank {} < 3", x_shape.len())));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    let o_sp = pool_output_spatial(&x_shape[2..], a)?;
    let planes = x_shape[0] * x_shape[1];
    let op_len = numel(OP, &o_sp)?;
    check_len(OP, "Y", out.len(), planes * op_len)?;
    check_len(OP, "Indices", indices.len(), planes * op_len)?;
    let (i3, o3) = (pad3(&x_shape[2..], 1), pad3(&o_sp, 1));
    let (k3, s3, d3) = (
        pad3(&a.kernel, 1),
        pad3(&a.strides, 1),
        pad3(&a.dilations, 1),
    );
    let pb3 = pad3(&a.pads_begin, 0);
    let ip = i3.iter().product::<usize>();
    // Spatial index weights: row-major (last axis fastest) or column-major (first real axis
    // fastest; the leading padded axes have extent 1 and coordinate 0, so they add nothing).
    let weights: [usize; 3] = if column_major {
        [1, i3[0], i3[0] * i3[1]]
    } else {
        [i3[1] * i3[2], i3[2], 1]
    };
    let taps = |ax: usize, o: usize| {
        (0..k3[ax]).filter_map(move |t| {
            let pos = (o * s3[ax] + t * d3[ax]) as isize - pb3[ax] as isize;
            usize::try_from(pos).ok().filter(|&p| p < i3[ax])
        })
    };
    let mut at = 0;
    for plane in 0..planes {
        let xp = &x[plane * ip..(plane + 1) * ip];
        for oz in 0..o3[0] {
            for oy in 0..o3[1] {
                for ox in 0..o3[2] {
                    let mut best: Option<(f32, usize)> = None;
                    for z in taps(0, oz) {
                        for y in taps(1, oy) {
                            for xx in taps(2, ox) {
                                let v = xp[(z * i3[1] + y) * i3[2] + xx];
                                if best.is_none_or(|(b, _)| v > b) {
                                    let off = z * weights[0] + y * weights[1] + xx * weights[2];
                                    best = Some((v, off));
                                }
                            }
                        }
                    }
                    (out[at], indices[at]) = match best {
                        Some((v, off)) => (v, (plane * ip + off) as i64),
                        None => (f32::NEG_INFINITY, -1),
                    };
                    at += 1;
                }
            }
        }
    }
    Ok(())
}

/// MaxUnpool (ONNX): `out` zeroed, then `out[indices[j]] = x[j]` in order (a repeated index
/// keeps the last value). `indices` are flat positions in `out`.
///
/// # Errors
/// `indices` and `x` of different lengths, or an index outside `out`.
pub fn max_unpool<T: Copy + Default>(x: &[T], indices: &[i64], out: &mut [T]) -> KernelResult<()> {
    const OP: &str = "MaxUnpool";
    check_len(OP, "I", indices.len(), x.len())?;
    out.fill(T::default());
    let size = out.len();
    for (&v, &i) in x.iter().zip(indices) {
        let slot = usize::try_from(i).ok().and_then(|i| out.get_mut(i)).ok_or(
            KernelError::IndexOutOfRange {
                op: OP,
                index: i,
                size,
            },
        )?;
        *slot = v;
    }
    Ok(())
}
