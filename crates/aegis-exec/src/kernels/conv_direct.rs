//! Direct ("implicit GEMM") convolution for stride-1 2-D and 1-D convolutions: no im2col tile,
//! no packing, no staging.
//!
//! With stride 1, output position `(oy, ox)` reads input `(oy + ky*dh, ox + kx*dw)` for every
//! tap. Numbering output positions on the *padded input's* row width `wp` (flat index
//! `q = oy*wp + ox`), tap `(ci, ky, kx)` reads the padded input at `q + off` with one offset
//! per tap, `off = ci*plane + ky*dh*wp + kx*dw`. So a run of consecutive flat positions is a
//! run of consecutive input elements for every tap: vectors of positions load straight from
//! the (padded) input, and each output channel's filter value is broadcast against them.
//! Flat positions with `ox >= w_out` (the last `wp - w_out` of each row) are computed and
//! dropped; the largest offset plus the last flat position is exactly the padded input's last
//! element, so no read leaves it.
//!
//! Blocking: `ROWS` output channels by `NV` vectors of positions (6 x 4 vectors of 16 lanes =
//! 24 accumulators under AVX-512, 6 x 2 x 8 = 12 under AVX2), summed over the whole reduction
//! in tap order with fused multiply-adds; the block's input (`kdim` runs of `NV` vectors) stays
//! in L1/L2 while every channel block of the worker reads it. A pointwise conv is the special
//! case `wp == w_out`, tap offsets `ci * plane`.
//!
//! Determinism: every output element is `bias + sum over taps in order` with the same FMA
//! sequence wherever its block falls, so any split of channels between workers gives
//! bit-identical results.

use crate::kernels::elementwise::UnaryOp;

use super::conv::{apply_activation, DwAct};
use super::lanes::{load, store};
use super::par::par_chunks;

/// Output channels one step computes together.
const ROWS: usize = 6;
/// Most positions one step computes (4 vectors of 16 lanes).
const MAX_TILE: usize = 64;

/// Stride-1 output geometry on the flat grid of the padded input's rows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Flat {
    /// Row width of the (padded) input, the flat grid's row stride.
    pub wp: usize,
    /// Output row width (`<= wp`).
    pub w_out: usize,
}

impl Flat {
    /// The output index of flat position `q` (for an invalid `q`, that of the next valid one).
    fn out_index(&self, q: usize) -> usize {
        (q / self.wp) * self.w_out + (q % self.wp).min(self.w_out)
    }
}

/// Output rows `y0..y1` of a stride-1 conv's channels, computed directly:
/// `out[r][o(q)] = act(bias[r] + sum over k of w[r][k] * x[offs[k] + q])`. Run through pulp's
/// dispatch.
pub(super) struct DirectRows<'a, 'b> {
    /// `[rows, kdim]` filter rows (ONNX order `ci, ky, kx`) of the channels in `out`.
    pub w: &'a [f32],
    pub kdim: usize,
    /// The (padded) input of the group.
    pub x: &'a [f32],
    /// Per tap, where its run starts in `x` (see the module doc).
    pub offs: &'a [usize],
    pub flat: Flat,
    /// The channels' biases, one per row of `out`.
    pub bias: Option<&'a [f32]>,
    pub act: Option<UnaryOp>,
    /// First and past-the-last output row (`oy`) to compute.
    pub y0: usize,
    pub y1: usize,
    /// One slice per channel: its output positions `y0 * w_out..y1 * w_out`.
    pub out: &'a mut [&'b mut [f32]],
}

impl pulp::WithSimd for DirectRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // 24 accumulators need AVX-512's 32 registers; AVX2's 16 take 12.
        if S::F32_LANES >= 16 {
            self.run::<S, 4>(simd);
        } else {
            self.run::<S, 2>(simd);
        }
    }
}

impl DirectRows<'_, '_> {
    #[inline(always)]
    fn run<S: pulp::Simd, const NV: usize>(self, simd: S) {
        let flat = self.flat;
        if self.y1 <= self.y0 || flat.w_out == 0 {
            return;
        }
        // Flat positions of rows y0..y1, and the output index the slices start at.
        let (qa, q_len) = (self.y0 * flat.wp, (self.y1 - 1) * flat.wp + flat.w_out);
        let o_base = self.y0 * flat.w_out;
        let rows = self.out.len();
        let tile = (NV * S::F32_LANES).min(MAX_TILE);
        let kdim = self.kdim;
        // The reduction in chunks of about `KC` taps whose input runs stay in L1 while
        // every channel block of the group reads them; partial sums wait in `stage`.
        let chunks = kdim.div_ceil(KC).max(1);
        let kc = kdim.div_ceil(chunks);
        let mut stage = [0.0f32; GROUP_ROWS * MAX_TILE];
        // Relu and Clip on the registers as they are stored; any other activation in a pass
        // over the block's rows while they are in L1.
        let (vact, rest) = DwAct::split(self.act);
        // With a short reduction the tile's input stays in L1 anyway, so each group of
        // `ROWS` channels walks the whole plane: 6 output rows written at a time instead of 48
        // (VGG's 3->64 stem on 224x224, 12.8 MB out: 4.0-5.1 -> 3.0-4.2 ms in the model;
        // `kernel_bench --cold` 16->64 on 55x55 0.67 -> 0.61 ms). Longer reductions keep the
        // large groups, which read each tile's input once per 48 channels (6-row groups:
        // 64->64 on 224x224 2x slower).
        let group_rows = if kdim <= FEW_ROWS_MAX_K {
            ROWS
        } else {
            GROUP_ROWS
        };
        let mut g0 = 0;
        while g0 < rows {
            let g1 = (g0 + group_rows).min(rows);
            let mut q0 = qa;
            while q0 < q_len {
                let len = tile.min(q_len - q0);
                let o0 = flat.out_index(q0) - o_base;
                let o1 = flat.out_index(q0 + len) - o_base;
                let mut k0 = 0;
                while k0 < kdim {
                    let k1 = (k0 + kc).min(kdim);
                    let (first, last) = (k0 == 0, k1 == kdim);
                    let mut r = g0;
                    while r < g1 {
                        let n = ROWS.min(g1 - r);
                        let b = Block {
                            w: &self.w[r * kdim..(r + n) * kdim],
                            kdim,
                            k0,
                            k1,
                            x: self.x,
                            offs: self.offs,
                            flat,
                            bias: self.bias.map(|b| &b[r..r + n]),
                            q0,
                            len,
                            act: vact,
                        };
                        let st = &mut stage[(r - g0) * MAX_TILE..(r - g0 + n) * MAX_TILE];
                        let out = &mut self.out[r..r + n];
                        match n {
                            6 => b.run::<S, NV, 6>(simd, st, first, last, out, o_base),
                            5 => b.run::<S, NV, 5>(simd, st, first, last, out, o_base),
                            4 => b.run::<S, NV, 4>(simd, st, first, last, out, o_base),
                            3 => b.run::<S, NV, 3>(simd, st, first, last, out, o_base),
                            2 => b.run::<S, NV, 2>(simd, st, first, last, out, o_base),
                            _ => b.run::<S, NV, 1>(simd, st, first, last, out, o_base),
                        }
                        r += n;
                    }
                    k0 = k1;
                }
                if let Some(act) = rest {
                    // While the group's block is still in L1.
                    for row in &mut self.out[g0..g1] {
                        apply_activation(act, &mut row[o0..o1]);
                    }
                }
                q0 += len;
            }
            g0 = g1;
        }
    }
}

/// Taps per reduction chunk (see [`DirectRows::run`]).
const KC: usize = 160;
/// Output channels whose partial sums one worker keeps per position block.
const GROUP_ROWS: usize = 8 * ROWS;
/// Longest reduction computed in groups of `ROWS` channels instead (a tile's input, `kdim`
/// runs of 64 positions, at most 40 KB).
const FEW_ROWS_MAX_K: usize = 160;

/// One block: up to `ROWS` channels by flat positions `q0..q0 + len`, taps `k0..k1`.
struct Block<'a> {
    w: &'a [f32],
    kdim: usize,
    k0: usize,
    k1: usize,
    x: &'a [f32],
    offs: &'a [usize],
    flat: Flat,
    bias: Option<&'a [f32]>,
    q0: usize,
    len: usize,
    /// Applied to the sums as they are written out.
    act: DwAct,
}

impl Block<'_> {
    /// Starts from the bias (`first`) or the staged partial sums, adds taps `k0..k1`, and
    /// stages the sums again or (`last`) writes them out.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn run<S: pulp::Simd, const NV: usize, const R: usize>(
        &self,
        simd: S,
        stage: &mut [f32],
        first: bool,
        last: bool,
        out: &mut [&mut [f32]],
        o_base: usize,
    ) {
        let lanes = S::F32_LANES;
        let mut acc = [[simd.splat_f32s(0.0); NV]; R];
        for (r, acc_r) in acc.iter_mut().enumerate() {
            if first {
                *acc_r = [simd.splat_f32s(self.bias.map_or(0.0, |b| b[r])); NV];
            } else {
                for (v, a) in acc_r.iter_mut().enumerate() {
                    // Whole vectors: pulp's partial loads and stores are out-of-line calls.
                    *a = load::<S>(&stage[r * MAX_TILE + v * lanes..]);
                }
            }
        }
        let acc = if self.len == NV * lanes {
            self.sum::<S, NV, R, true>(simd, acc)
        } else {
            self.sum::<S, NV, R, false>(simd, acc)
        };
        if last {
            self.store::<S, NV, R>(simd, &acc, out, o_base);
        } else {
            for (r, acc_r) in acc.iter().enumerate() {
                for (v, a) in acc_r.iter().enumerate() {
                    store::<S>(&mut stage[r * MAX_TILE + v * lanes..], *a);
                }
            }
        }
    }

    /// Adds taps `k0..k1` (see [`sum_taps`]).
    #[inline(always)]
    fn sum<S: pulp::Simd, const NV: usize, const R: usize, const FULL: bool>(
        &self,
        simd: S,
        acc: [[S::f32s; NV]; R],
    ) -> [[S::f32s; NV]; R] {
        let taps = Taps {
            w: self.w,
            kdim: self.kdim,
            x: self.x,
            offs: self.offs,
            k: self.k0..self.k1,
            q0: self.q0,
            len: self.len,
        };
        sum_taps::<S, NV, R, FULL>(simd, acc, &taps)
    }

    /// Writes the block's valid positions into the output rows.
    #[inline(always)]
    fn store<S: pulp::Simd, const NV: usize, const R: usize>(
        &self,
        simd: S,
        acc: &[[S::f32s; NV]; R],
        out: &mut [&mut [f32]],
        o_base: usize,
    ) {
        let lanes = S::F32_LANES;
        let (q0, len, flat) = (self.q0, self.len, self.flat);
        let mut buf = [0.0f32; MAX_TILE];
        for (row, acc_r) in out.iter_mut().zip(acc) {
            // A loop, not `map`: a closure is its own function, compiled without the
            // caller's instruction set when it is not inlined.
            let mut v_act = *acc_r;
            for v in &mut v_act {
                *v = self.act.apply(simd, *v);
            }
            let acc_r = &v_act;
            if flat.wp == flat.w_out {
                // Every flat position is an output position: store the vectors in place.
                let dst = &mut row[q0 - o_base..q0 - o_base + len];
                for (v, a) in acc_r.iter().enumerate() {
                    let lo = (v * lanes).min(len);
                    let hi = ((v + 1) * lanes).min(len);
                    if hi - lo == lanes {
                        store::<S>(&mut dst[lo..], *a);
                    } else {
                        simd.partial_store_f32s(&mut dst[lo..hi], *a);
                    }
                }
                continue;
            }
            for (v, a) in acc_r.iter().enumerate() {
                store::<S>(&mut buf[v * lanes..], *a);
            }
            // Copy the runs of valid columns.
            let mut q = q0;
            while q < q0 + len {
                let ox = q % flat.wp;
                let row_end = (q - ox + flat.wp).min(q0 + len);
                if ox < flat.w_out {
                    let end = (q - ox + flat.w_out).min(row_end);
                    let o = flat.out_index(q) - o_base;
                    row[o..o + (end - q)].copy_from_slice(&buf[q - q0..end - q0]);
                }
                q = row_end;
            }
        }
    }
}

/// The operands of [`sum_taps`].
pub(super) struct Taps<'a> {
    /// `[R, kdim]` filter rows.
    pub w: &'a [f32],
    pub kdim: usize,
    /// The input; tap `k` of position `q` is `x[offs[k] + q]`.
    pub x: &'a [f32],
    pub offs: &'a [usize],
    /// The taps to add.
    pub k: std::ops::Range<usize>,
    /// The positions: `q0..q0 + len`, at most `NV` vectors.
    pub q0: usize,
    pub len: usize,
}

/// `acc[r][v] += w[r][k] * x[offs[k] + q0 + v * lanes + lane]` for every tap `k` in order,
/// with fused multiply-adds: the inner loop of the direct kernels (this module's and the
/// pointwise one). `FULL`: `len` is `NV` whole vectors (else the last loads are partial).
/// Loops over `R` and `NV` have constant trip counts and the accumulators are taken and
/// returned by value, so they stay in registers.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
pub(super) fn sum_taps<S: pulp::Simd, const NV: usize, const R: usize, const FULL: bool>(
    simd: S,
    mut acc: [[S::f32s; NV]; R],
    t: &Taps<'_>,
) -> [[S::f32s; NV]; R] {
    let lanes = S::F32_LANES;
    let (q0, len, kdim) = (t.q0, t.len, t.kdim);
    let wr: [&[f32]; R] = std::array::from_fn(|r| &t.w[r * kdim..(r + 1) * kdim]);
    for k in t.k.clone() {
        let off = t.offs[k];
        let xr = &t.x[off + q0..off + q0 + len];
        let mut xv = [simd.splat_f32s(0.0); NV];
        for v in 0..NV {
            if FULL {
                xv[v] = bytemuck::pod_read_unaligned(bytemuck::cast_slice(
                    &xr[v * lanes..(v + 1) * lanes],
                ));
            } else {
                let lo = (v * lanes).min(len);
                let hi = ((v + 1) * lanes).min(len);
                xv[v] = simd.partial_load_f32s(&xr[lo..hi]);
            }
        }
        for r in 0..R {
            let wv = simd.splat_f32s(wr[r][k]);
            for v in 0..NV {
                acc[r][v] = simd.mul_add_e_f32s(wv, xv[v], acc[r][v]);
            }
        }
    }
    acc
}

/// Tap offsets of a stride-1 conv over a `[c_in, hp, wp]` padded input (see the module doc).
pub(super) fn tap_offsets(
    c_in: usize,
    hp: usize,
    wp: usize,
    k: [usize; 2],
    d: [usize; 2],
) -> Vec<usize> {
    let mut offs = Vec::with_capacity(c_in * k[0] * k[1]);
    for ci in 0..c_in {
        for ky in 0..k[0] {
            for kx in 0..k[1] {
                offs.push(ci * hp * wp + ky * d[0] * wp + kx * d[1]);
            }
        }
    }
    offs
}

/// Padded elements below which [`pad_planes`] stays on the caller (per piece): fewer
/// copy in less time than the team's hand-off is worth.
const PAD_PAR_MIN: usize = 32 * 1024;

/// Copies `x` (`[c, h, w]`) into `dst` (`[c, h + pt + pb, w + pl + pr]`) with zero borders,
/// on up to `threads` threads, whole padded planes per piece. The direct, channel-vectorised
/// and Winograd paths pad their whole input before they split, so a serial pad left the
/// helper idle: `kernel_bench` at 2 threads (minima of 6-8 rounds, the binaries alternating)
/// had 3x3 64->64 on 56x56 at 0.81 -> 0.74-0.77 ms, 256->256 on 14x14 1.09 -> 0.99-1.06,
/// 128->32 on 56x56 1.30-1.44 -> 1.19-1.32.
pub(super) fn pad_planes(
    x: &[f32],
    c: usize,
    h: usize,
    w: usize,
    pads: [usize; 4],
    dst: &mut [f32],
    threads: usize,
) {
    let [pt, pl, pb, pr] = pads;
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    let plane = hp * wp;
    if threads > 1 && c >= 2 && plane > 0 && c * plane >= 2 * PAD_PAR_MIN {
        let min_planes = PAD_PAR_MIN.div_ceil(plane);
        par_chunks(
            &mut dst[..c * plane],
            plane,
            threads,
            min_planes,
            |first, piece| {
                let src = &x[(first * h * w).min(x.len())..];
                pad_planes(src, piece.len() / plane, h, w, pads, piece, 1);
            },
        );
        return;
    }
    if h == 0 || w == 0 {
        // An empty input padded to a non-empty plane: all padding.
        dst[..c * hp * wp].fill(0.0);
        return;
    }
    for (src, plane) in x.chunks(h * w).take(c).zip(dst.chunks_mut(hp * wp)) {
        plane[..pt * wp].fill(0.0);
        plane[(pt + h) * wp..].fill(0.0);
        for (srow, drow) in src.chunks(w).zip(plane[pt * wp..].chunks_mut(wp)) {
            drow[..pl].fill(0.0);
            drow[pl..pl + w].copy_from_slice(srow);
            drow[pl + w..].fill(0.0);
        }
    }
}
