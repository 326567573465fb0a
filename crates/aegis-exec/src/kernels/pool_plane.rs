//! 2-D pooling with stride 1 or 2 in both axes on small planes (Inception's 3x3/1 "same"
//! pools, SqueezeNet's 3x3/2 max pools up to 55x55, DenseNet's 2x2/2 transitions, ShuffleNet's
//! padded 3x3/2 average pools), a plane at a time with no per-row copies of short rows. On
//! CPUs with AVX-512 the pools with 2- or 3-wide windows take `pool_rows` instead (faster:
//! 128x55x55 3x3/2 0.125 -> 0.08 ms, 576x14x14 3x3/1 0.108 -> 0.081).
//!
//! Why: the general pooling loop spends its time on per-row work (a row copy, short runs with
//! scalar tails, strided gathers), which dominates on the small planes these layers have
//! (256 planes of 27x27 3x3/2: 0.15 ms, onnxruntime 0.015; 576 planes of 14x14 3x3/1:
//! 0.35 ms, onnxruntime 0.03). Here, per plane:
//! 1. the valid input rows of each output row's windows are reduced into a row of `V`, whose
//!    rows are `vw` long with the left padding (and anything past the input) holding the
//!    reduction's identity, whole vectors reading straight from the input plane;
//! 2. stride 2 only: `V` is split, as one flat array, into its even and odd columns `E` and
//!    `O` (an even row length keeps every row's pairs aligned), so input column
//!    `2 * ox + kx` (counting the left padding) is `E[ox + kx / 2]` or `O[ox + kx / 2]` by
//!    the parity of `kx`; with stride 1 it is `V[ox + kx]`;
//! 3. every output of the plane is one flat vector pass over the grid (`vw` or `vw / 2`
//!    wide), each tap one contiguous load, an average divided by its window's divisor (one
//!    grid of divisors per call), and the grid's rows are copied into the output (or the grid
//!    is the output when the widths agree).
//!
//! Every output reduces its valid rows in `kh` order, then its columns in `kw` order from the
//! identity, as the general loop does (a padded column adds the identity, which changes
//! nothing: a sum that starts at +0 is never -0), so results are bit-identical to the general
//! loop's.

use super::conv_dw_same::Plane2;
use super::lanes::{load, split_even_odd, store};
use super::pool::PoolKind;

/// Widest vector any dispatch uses (AVX-512's 16 lanes): scratch is sized for it.
const MAX_LANES: usize = 16;
/// Lane indices, for the mask of a row's last vector.
const IOTA: [f32; MAX_LANES] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
];
/// Largest input plane a stride-2 pool takes this path for (1 thread, ms, general loop ->
/// this, after the row pass moved to registers; `kernel_bench pool`: 128x55x55 3x3 0.17 ->
/// 0.125, 256x56x56 2x2 0.21-0.33 -> 0.19, average 2x2 128x56x56 0.19 -> 0.12; SqueezeNet
/// in `exec_bench --ops`: 128x55x55 0.18-0.23 -> 0.13-0.22, but 64x111x111 0.28-0.45 ->
/// 0.34-0.44, and VGG's 2x2 on 64x224x224 in `kernel_bench` 0.81-0.94 -> 2.8; the general
/// loop has since become faster still at 111x111: 0.17-0.24 ms).
/// Every stride-1 pool takes it at any size.
const MAX_PLANE_S2: usize = 64 * 64;

/// Per output index along one axis, as `pool` computes them: the valid taps `[lo, hi)` and
/// the count of taps inside the padded extent (the `count_include_pad` divisor's factor).
pub(super) type AxisTaps = [(usize, usize, usize)];

/// What the plane and row pooling paths both need: a 2-D pooling with equal strides 1 or 2,
/// dilations 1, a non-empty plane, and every window's rows and columns holding an input tap
/// (ONNX's pads are below the kernel; windows past the input come only from ceil mode, never
/// wholly), with `th` / `tw` one entry per output row / column.
pub(super) fn rows_eligible(
    g: &Plane2,
    pads_end: [usize; 2],
    th: &AxisTaps,
    tw: &AxisTaps,
) -> bool {
    let Plane2 {
        input: [h, w],
        out: [ho, wo],
        kernel: [kh, kw],
        strides,
        dilations,
        pads_begin: [pt, pl],
    } = *g;
    (strides == [1, 1] || strides == [2, 2])
        && dilations == [1, 1]
        && h * w > 0
        && ho * wo > 0
        && pt < kh
        && pl < kw
        && pads_end[0] < kh
        && pads_end[1] < kw
        && th.len() == ho
        && tw.len() == wo
        && th.iter().chain(tw).all(|t| t.1 > t.0)
}

/// Average pooling's divisor per output, as the general loop computes it (`th` / `tw` per
/// output row / column), in rows `row_len` long (1 past the outputs) and `len` in all.
pub(super) fn divisors(
    th: &AxisTaps,
    tw: &AxisTaps,
    count_include_pad: bool,
    row_len: usize,
    len: usize,
) -> Vec<f32> {
    let mut div = vec![1.0; len];
    for (row, &(hlo, hhi, hpad)) in div.chunks_exact_mut(row_len).zip(th) {
        for (d, &(wlo, whi, wpad)) in row.iter_mut().zip(tw) {
            *d = if count_include_pad {
                hpad * wpad
            } else {
                (hhi - hlo) * (whi - wlo)
            } as f32;
        }
    }
    div
}

/// One eligible pooling's geometry.
#[derive(Debug, Clone)]
pub(super) struct PlanePool {
    kind: PoolKind,
    /// 1 or 2, both axes.
    stride: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    pt: usize,
    pl: usize,
    /// `V`'s row length: covering the left padding, the input and every window (even for
    /// stride 2).
    vw: usize,
    /// Average pools: each grid position's divisor (`ho` rows of the grid's width; 1 past
    /// the output's columns).
    div: Vec<f32>,
}

impl PlanePool {
    /// `Some` for a 2-D pooling with equal strides 1 or 2 and dilations 1 whose every window
    /// holds an input tap (pads below the kernel), except stride-2 pools on input planes
    /// above [`MAX_PLANE_S2`]. Padding and ceil-mode windows are the identity (-inf, or
    /// 0 for a sum); average divisors follow `th` / `tw` and `count_include_pad`.
    pub(super) fn new(
        kind: PoolKind,
        g: Plane2,
        pads_end: [usize; 2],
        th: &AxisTaps,
        tw: &AxisTaps,
        count_include_pad: bool,
    ) -> Option<Self> {
        let Plane2 {
            input: [h, w],
            out: [ho, wo],
            kernel: [kh, kw],
            strides,
            pads_begin,
            ..
        } = g;
        let stride = strides[0];
        if !rows_eligible(&g, pads_end, th, tw) || (stride == 2 && h * w > MAX_PLANE_S2) {
            return None;
        }
        let [pt, pl] = pads_begin;
        let reach_w = stride * (wo - 1) + kw;
        let vw = (pl + w).max(reach_w).next_multiple_of(stride);
        let gw = vw / stride;
        let div = if kind == PoolKind::Average {
            // A vector's slack: the last grid vector reads past the last row.
            divisors(th, tw, count_include_pad, gw, ho * gw + MAX_LANES)
        } else {
            Vec::new()
        };
        Some(Self {
            kind,
            stride,
            h,
            w,
            ho,
            wo,
            kh,
            kw,
            pt,
            pl,
            vw,
            div,
        })
    }

    /// The grid's row length.
    fn gw(&self) -> usize {
        self.vw / self.stride
    }

    /// Lengths of `V` and of each of `E`, `O` (stride 2 only) and the output grid (one
    /// worker's scratch, allocated per call like the general loop's row), each with a
    /// vector's slack past the last tap a grid vector reads.
    fn parts(&self) -> (usize, usize) {
        let grid = self.ho * self.gw() + self.kw + 2 * MAX_LANES;
        let v = if self.stride == 1 {
            grid
        } else {
            self.ho * self.vw + 2 * MAX_LANES
        };
        (v, grid)
    }
}

/// One worker's planes (`first..`, whole output planes in `out`). Run through pulp's
/// dispatch.
pub(super) struct PlanePoolPlanes<'a> {
    pub plan: &'a PlanePool,
    pub x: &'a [f32],
    pub first: usize,
    pub out: &'a mut [f32],
}

impl pulp::WithSimd for PlanePoolPlanes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match self.plan.kind {
            PoolKind::Max => self.run::<S, MaxNan>(simd),
            PoolKind::Average => self.run::<S, Sum>(simd),
        }
    }
}

impl PlanePoolPlanes<'_> {
    #[inline(always)]
    fn run<S: pulp::Simd, C: Combine>(self, simd: S) {
        let p = self.plan;
        let lanes = S::F32_LANES;
        let (ip, op) = (p.h * p.w, p.ho * p.wo);
        let (vlen, glen) = p.parts();
        // V, then E and O (stride 2), then the grid.
        let halves = if p.stride == 2 { 2 * glen } else { 0 };
        let mut scratch = vec![C::INIT; vlen + halves + glen];
        let (v, rest) = scratch.split_at_mut(vlen);
        let (eo, grid) = rest.split_at_mut(halves);
        let gw = p.gw();
        let n = p.ho * gw;
        let init = simd.splat_f32s(C::INIT);
        // A row's last vector and the lanes of it that hold input columns.
        let last = (p.w - 1) / lanes * lanes;
        let keep = simd.less_than_f32s(load::<S>(&IOTA), simd.splat_f32s((p.w - last) as f32));
        for (i, oplane) in self.out.chunks_mut(op).enumerate() {
            // 1. Rows: V[oy][pl + c] = reduce over the window's valid rows of x[row][c], a
            // vector of columns at a time with the rows reduced in registers (a store and
            // reload per row stalls on store forwarding). A row's last vector reads on into
            // the next row (or plane) and keeps only its input columns, storing the identity
            // in the rest: V's padding, which starts as the identity, stays so.
            let base = (self.first + i) * ip;
            let whole = |r: usize, c: usize| -> S::f32s {
                let src = &self.x[base + r * p.w + c..];
                if lanes <= src.len() {
                    load::<S>(src)
                } else {
                    // The tensor's last row: its tail one element at a time.
                    let mut t = [C::INIT; MAX_LANES];
                    t[..src.len()].copy_from_slice(src);
                    load::<S>(&t)
                }
            };
            for oy in 0..p.ho {
                let vrow = &mut v[oy * p.vw + p.pl..];
                let top = (p.stride * oy) as isize - p.pt as isize;
                // Valid rows [r0, r1): never empty (`new` keeps pads below the kernel).
                let r0 = top.max(0) as usize;
                let r1 = ((top + p.kh as isize) as usize).min(p.h);
                let mut c = 0;
                loop {
                    let mut acc = whole(r0, c);
                    for r in r0 + 1..r1 {
                        acc = C::vector(simd, acc, whole(r, c));
                    }
                    if c == last {
                        store::<S>(&mut vrow[c..], simd.select_f32s(keep, acc, init));
                        break;
                    }
                    store::<S>(&mut vrow[c..], acc);
                    c += lanes;
                }
            }
            // 2. Stride 2: even and odd columns of the whole of V (past `n`, E and O keep
            // the identity they start with).
            let (e, o) = if p.stride == 2 {
                let (e, o) = eo.split_at_mut(glen);
                split_even_odd(&v[..2 * n], &mut e[..n], &mut o[..n]);
                (&e[..], &o[..])
            } else {
                (&v[..], &v[..])
            };
            // 3. Columns: grid[q] = reduce over kx of the tap's column, q = oy * gw + ox.
            let mut q = 0;
            while q < n {
                // From the identity, as the general loop's output row starts.
                let mut acc = init;
                for kx in 0..p.kw {
                    let tap = if p.stride == 1 {
                        &v[q + kx..]
                    } else if kx % 2 == 0 {
                        &e[q + kx / 2..]
                    } else {
                        &o[q + kx / 2..]
                    };
                    acc = C::vector(simd, acc, load::<S>(tap));
                }
                if C::AVERAGE {
                    acc = simd.div_f32s(acc, load::<S>(&p.div[q..]));
                }
                store::<S>(&mut grid[q..], acc);
                q += lanes;
            }
            // 4. The grid's rows (gw wide) into the output's (wo wide), whole vectors where
            // they fit in the plane (a row's spill lands on outputs the next row writes).
            if gw == p.wo {
                oplane.copy_from_slice(&grid[..op]);
            } else {
                for oy in 0..p.ho {
                    let (g, o) = (oy * gw, oy * p.wo);
                    let mut c = 0;
                    while c < p.wo {
                        if o + c + lanes <= op {
                            store::<S>(&mut oplane[o + c..], load::<S>(&grid[g + c..]));
                        } else {
                            let n = p.wo - c;
                            oplane[o + c..o + p.wo].copy_from_slice(&grid[g + c..g + c + n]);
                        }
                        c += lanes;
                    }
                }
            }
        }
    }
}

/// A pooling reduction's combining step in vector form; the same result per lane as the
/// general loop's scalar step.
pub(super) trait Combine {
    /// Its identity (what padding holds).
    const INIT: f32;
    /// Whether the result is divided by the window size afterwards.
    const AVERAGE: bool;
    fn vector<S: pulp::Simd>(simd: S, acc: S::f32s, v: S::f32s) -> S::f32s;
}

/// `v` replaces `acc` when larger or NaN; on ties and against a NaN `acc`, `acc` stays
/// (pool.rs's `max_nan`).
pub(super) struct MaxNan;

impl Combine for MaxNan {
    const INIT: f32 = f32::NEG_INFINITY;
    const AVERAGE: bool = false;
    #[inline(always)]
    fn vector<S: pulp::Simd>(simd: S, acc: S::f32s, v: S::f32s) -> S::f32s {
        let larger = simd.select_f32s(simd.greater_than_f32s(v, acc), v, acc);
        // `v == v` fails only for NaN.
        simd.select_f32s(simd.equal_f32s(v, v), larger, v)
    }
}

/// Sum, divided by the window size at the end.
pub(super) struct Sum;

impl Combine for Sum {
    const INIT: f32 = 0.0;
    const AVERAGE: bool = true;
    #[inline(always)]
    fn vector<S: pulp::Simd>(simd: S, acc: S::f32s, v: S::f32s) -> S::f32s {
        simd.add_f32s(acc, v)
    }
}

#[cfg(test)]
mod tests {
    use super::{Plane2, PlanePool, PoolKind};

    fn geo(hw: [usize; 2], out: [usize; 2], k: usize, s: usize, d: usize, pad: usize) -> Plane2 {
        Plane2 {
            input: hw,
            out,
            kernel: [k, k],
            strides: [s, s],
            dilations: [d, d],
            pads_begin: [pad, pad],
        }
    }

    /// Whether a pooling of geometry `g` with `out` outputs per axis takes this path (the
    /// taps tables as `pool` builds them for windows that always hold an input tap).
    fn takes_geo(kind: PoolKind, g: Plane2, pads_end: usize, out: usize) -> bool {
        let taps = vec![(0, 1, 1); out];
        PlanePool::new(kind, g, [pads_end; 2], &taps, &taps, false).is_some()
    }

    /// The same for a square pooling with `pad` on every side.
    fn takes(kind: PoolKind, hw: usize, out: usize, k: usize, s: usize, pad: usize) -> bool {
        takes_geo(kind, geo([hw; 2], [out; 2], k, s, 1, pad), pad, out)
    }

    /// The shapes `tests_pool_norm`'s naive comparisons run through this path, and the ones
    /// that keep the general loop.
    #[test]
    fn takes_stride_1_and_2_planes_it_is_faster_on() {
        use PoolKind::{Average, Max};
        assert!(takes(Max, 27, 13, 3, 2, 0));
        assert!(takes(Max, 13, 7, 3, 2, 1));
        assert!(takes(Average, 14, 7, 2, 2, 0));
        assert!(takes(Average, 56, 28, 2, 2, 0));
        assert!(takes(Average, 56, 28, 3, 2, 1));
        // Inception's "same" pools, any plane size.
        assert!(takes(Average, 14, 14, 3, 1, 1));
        assert!(takes(Max, 28, 28, 3, 1, 1));
        assert!(takes(Average, 112, 112, 3, 1, 1));
        // Stride-2 pools up to 64x64; larger ones keep the general loop (faster there).
        assert!(takes(Max, 55, 27, 3, 2, 0));
        assert!(!takes(Max, 112, 56, 3, 2, 1));
        assert!(!takes(Max, 224, 112, 2, 2, 0));
        assert!(!takes(Average, 224, 112, 2, 2, 0));
        // Padding as wide as the kernel leaves windows without an input tap.
        assert!(!takes(Average, 5, 7, 3, 1, 3));
        // Other strides and dilations are not this path.
        assert!(!takes_geo(Max, geo([9, 9], [7, 7], 3, 3, 1, 0), 0, 7));
        assert!(!takes_geo(Max, geo([9, 9], [3, 3], 3, 2, 2, 0), 0, 3));
    }
}
