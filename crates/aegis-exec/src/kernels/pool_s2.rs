//! 2-D pooling with stride 2 in both axes on small planes (SqueezeNet's last 3x3/2 max pool,
//! DenseNet's 2x2/2 transitions), a plane at a time with no per-row copies of short rows.
//!
//! Why: the general pooling loop spends its time on per-row work (a row copy, short runs with
//! scalar tails, strided gathers), which dominates on the small planes these layers have
//! (256 planes of 27x27: 0.15 ms, onnxruntime 0.015). Here, per plane:
//! 1. the valid input rows of each output row's windows are reduced into a row of `V`, whose
//!    rows are an even `vw` long with the left padding (and anything past the input) holding
//!    the reduction's identity, whole vectors reading straight from the input plane;
//! 2. `V` is split, as one flat array, into its even and odd columns `E` and `O` (an even row
//!    length keeps every row's pairs aligned), so input column `2 * ox + kx` (counting the
//!    left padding) is `E[ox + kx / 2]` or `O[ox + kx / 2]` by the parity of `kx`;
//! 3. every output of the plane is one flat vector pass over the `vw / 2`-wide grid, each tap
//!    one contiguous load, and the grid's rows are copied into the output (or the grid is
//!    the output when the widths agree).
//!
//! Every output reduces its rows in `kh` order, then its columns in `kw` order, as the
//! general loop does, so results are those of the general loop (bit-identical for max; for
//! average, the same sums divided by the same full-window size).

use super::conv_dw_same::Plane2;
use super::lanes::{load, split_even_odd, store};
use super::pool::PoolKind;

/// Widest vector any dispatch uses (AVX-512's 16 lanes): scratch is sized for it.
const MAX_LANES: usize = 16;
/// Largest input plane a max pool takes this path for (`kernel_bench pool`, 1 thread, ms,
/// general -> this: 256x27x27 0.146 -> 0.098; 128x55x55 0.170 -> 0.180 and 64x111x111
/// 0.26 -> 0.30, where the flat even/odd split costs more than the general loop's per-row
/// work). Average pools (2x2/2: 128x56x56 0.19 -> 0.12, 512x14x14 0.10 -> 0.055) take it at
/// any size.
const MAX_PLANE_MAX: usize = 32 * 32;

/// One eligible pooling's geometry.
#[derive(Debug, Clone)]
pub(super) struct PoolS2 {
    kind: PoolKind,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    pt: usize,
    pl: usize,
    /// `V`'s row length: even, covering the left padding, the input and every window.
    vw: usize,
}

impl PoolS2 {
    /// `Some` for a 2-D pooling with strides 2 and dilations 1, where max pooling (input
    /// planes up to [`MAX_PLANE_MAX`]) may have any padding and ceil-mode windows (the
    /// padding is the identity, -inf), and average pooling only full windows (no padding,
    /// none past the input: one divisor).
    pub(super) fn new(kind: PoolKind, g: Plane2) -> Option<Self> {
        let Plane2 {
            input: [h, w],
            out: [ho, wo],
            kernel: [kh, kw],
            strides,
            dilations,
            pads_begin,
        } = g;
        if strides != [2, 2] || dilations != [1, 1] || h * w == 0 || ho * wo == 0 {
            return None;
        }
        let [pt, pl] = pads_begin;
        let reach_h = 2 * (ho - 1) + kh;
        let reach_w = 2 * (wo - 1) + kw;
        if kind == PoolKind::Average && (pt + pl > 0 || reach_h > h || reach_w > w) {
            return None;
        }
        if kind == PoolKind::Max && h * w > MAX_PLANE_MAX {
            return None;
        }
        // Every window's rows must include an input row (ONNX guarantees pads < kernel).
        if pt >= kh || pl >= kw {
            return None;
        }
        let vw = (pl + w).max(reach_w).next_multiple_of(2);
        Some(Self {
            kind,
            h,
            w,
            ho,
            wo,
            kh,
            kw,
            pt,
            pl,
            vw,
        })
    }

    /// Lengths of `V` and of each of `E`, `O` and the output grid (one worker's scratch,
    /// allocated per call like the general loop's row), each with a vector's slack.
    fn parts(&self) -> (usize, usize) {
        let v = self.ho * self.vw + 2 * MAX_LANES;
        let half = self.ho * self.vw / 2 + self.kw / 2 + 2 * MAX_LANES;
        (v, half)
    }
}

/// One worker's planes (`first..`, whole output planes in `out`). Run through pulp's
/// dispatch.
pub(super) struct PoolS2Planes<'a> {
    pub plan: &'a PoolS2,
    pub x: &'a [f32],
    pub first: usize,
    pub out: &'a mut [f32],
}

impl pulp::WithSimd for PoolS2Planes<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match self.plan.kind {
            PoolKind::Max => self.run::<S, MaxNan>(simd),
            PoolKind::Average => self.run::<S, Sum>(simd),
        }
    }
}

impl PoolS2Planes<'_> {
    #[inline(always)]
    fn run<S: pulp::Simd, C: Combine>(self, simd: S) {
        let p = self.plan;
        let lanes = S::F32_LANES;
        let (ip, op) = (p.h * p.w, p.ho * p.wo);
        let (vlen, half) = p.parts();
        let mut scratch = vec![C::INIT; vlen + 3 * half];
        let (v, rest) = scratch.split_at_mut(vlen);
        let (eo, grid) = rest.split_at_mut(2 * half);
        let wh = p.vw / 2;
        let div = simd.splat_f32s((p.kh * p.kw) as f32);
        let init = simd.splat_f32s(C::INIT);
        for (i, oplane) in self.out.chunks_mut(op).enumerate() {
            let xc = &self.x[(self.first + i) * ip..][..ip];
            // 1. Rows: V[oy][pl + c] = reduce over the window's valid rows of x[row][c].
            for oy in 0..p.ho {
                let vrow = &mut v[oy * p.vw..];
                let top = 2 * oy as isize - p.pt as isize;
                let rows = (0..p.kh as isize)
                    .map(|ky| top + ky)
                    .filter(|&r| r >= 0 && (r as usize) < p.h)
                    .map(|r| r as usize);
                let mut first_row = true;
                for r in rows {
                    let src = &xc[r * p.w..];
                    let mut c = 0;
                    while c < p.w {
                        let at = p.pl + c;
                        let xv = if c + lanes <= src.len() {
                            load::<S>(&src[c..])
                        } else {
                            // The plane's last row: its tail one element at a time.
                            let mut t = [C::INIT; MAX_LANES];
                            let n = src.len() - c;
                            t[..n].copy_from_slice(&src[c..]);
                            load::<S>(&t)
                        };
                        let acc = if first_row {
                            xv
                        } else {
                            C::vector(simd, load::<S>(&vrow[at..]), xv)
                        };
                        store::<S>(&mut vrow[at..], acc);
                        c += lanes;
                    }
                    first_row = false;
                }
                // Whole vectors spilled past the row's input columns: reset the padding
                // (the next row's left padding is set when that row is done).
                vrow[..p.pl].fill(C::INIT);
                vrow[p.pl + p.w..p.vw].fill(C::INIT);
            }
            // 2. Even and odd columns of the whole of V.
            {
                let (e, o) = eo.split_at_mut(half);
                let n = p.ho * wh;
                split_even_odd(&v[..2 * n], &mut e[..n], &mut o[..n]);
            }
            let (e, o) = eo.split_at(half);
            // 3. Columns: grid[q] = reduce over kx of (E or O)[q + kx / 2], q = oy * wh + ox.
            let n = p.ho * wh;
            let mut q = 0;
            while q < n {
                // From the identity, as the general loop's output row starts.
                let mut acc = init;
                for kx in 0..p.kw {
                    let src = if kx % 2 == 0 { e } else { o };
                    acc = C::vector(simd, acc, load::<S>(&src[q + kx / 2..]));
                }
                if C::AVERAGE {
                    acc = simd.div_f32s(acc, div);
                }
                store::<S>(&mut grid[q..], acc);
                q += lanes;
            }
            // 4. The grid's rows (wh wide) into the output's (wo wide).
            if wh == p.wo {
                oplane.copy_from_slice(&grid[..op]);
            } else {
                for (orow, grow) in oplane.chunks_exact_mut(p.wo).zip(grid.chunks(wh)) {
                    orow.copy_from_slice(&grow[..p.wo]);
                }
            }
        }
    }
}

/// A pooling reduction's combining step in vector form; the same result per lane as the
/// general loop's scalar step.
trait Combine {
    /// Its identity (what padding holds).
    const INIT: f32;
    /// Whether the result is divided by the window size afterwards.
    const AVERAGE: bool;
    fn vector<S: pulp::Simd>(simd: S, acc: S::f32s, v: S::f32s) -> S::f32s;
}

/// `v` replaces `acc` when larger or NaN; on ties and against a NaN `acc`, `acc` stays
/// (pool.rs's `max_nan`).
struct MaxNan;

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
struct Sum;

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
    use super::{Plane2, PoolKind, PoolS2};

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

    fn plan(kind: PoolKind, hw: [usize; 2], out: [usize; 2], k: usize, pad: usize) -> bool {
        PoolS2::new(kind, geo(hw, out, k, 2, 1, pad)).is_some()
    }

    /// The shapes `tests_pool_norm`'s naive comparisons run through this path, and the ones
    /// that keep the general loop.
    #[test]
    fn takes_stride_2_planes_it_is_faster_on() {
        use PoolKind::{Average, Max};
        assert!(plan(Max, [27, 27], [13, 13], 3, 0));
        assert!(plan(Max, [13, 13], [7, 7], 3, 1));
        assert!(plan(Average, [14, 14], [7, 7], 2, 0));
        assert!(plan(Average, [56, 56], [28, 28], 2, 0));
        // Large max pools keep the general loop (faster there).
        assert!(!plan(Max, [55, 55], [27, 27], 3, 0));
        // Average pools with padding or partial windows would need per-window divisors.
        assert!(!plan(Average, [14, 14], [8, 8], 2, 1));
        assert!(!plan(Average, [13, 13], [7, 7], 2, 0));
        // Other strides and dilations are not this path.
        assert!(PoolS2::new(Max, geo([9, 9], [7, 7], 3, 1, 1, 0)).is_none());
        assert!(PoolS2::new(Max, geo([9, 9], [3, 3], 3, 2, 2, 0)).is_none());
    }
}
