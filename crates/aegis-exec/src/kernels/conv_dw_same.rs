//! Depthwise 2-D convolutions that read every tap as one contiguous run per vector of
//! outputs, without a padded copy of each row: [`DwSame`] for stride 1 on small planes that
//! keep their size ("same" padding, as in MobileNet's and ShuffleNet's 3x3 layers on 28x28
//! to 7x7 planes) and [`DwStride2`] for stride 2 on even widths (their downsampling layers).
//!
//! Why: the general depthwise path copies each channel's plane row by row into a padded,
//! phase-split buffer and copies the result out row by row. On a 7x7 plane those per-row
//! copies (each with a masked tail) cost more than the 441 multiply-adds (960 channels at
//! 7x7: 0.11 ms, onnxruntime 0.03 ms). Here the output plane itself is the flat grid: output
//! `q = oy * w + ox` reads tap `(ky, kx)` at `q + (ky*dh - pt) * w + (kx*dw - pl)` of the
//! input plane, copied once per channel between zero margins (so rows above and below the
//! plane read zeros). A tap whose column leaves the plane would read the neighbouring row
//! instead, so taps are summed per kernel column, and each column's sum is added under a
//! mask of the outputs whose window column lies inside the plane (masks depend only on the
//! geometry: built once per call). Whole vectors are stored straight into the output plane.
//!
//! Arithmetic per output: `bias + col_0 + col_1 + ...` (kernel columns in order, each the
//! sum over kernel rows in order, one FMA per tap), the same for every channel, block and
//! thread count, so results are bit-identical for any `threads` (and within rounding of the
//! other depthwise path, which sums taps in weight order).

use super::conv::DwAct;
use super::elementwise::{with_unary, MapInPlace, UnaryOp};
use super::lanes::{load, split_even_odd, store};

/// Widest vector any dispatch uses (AVX-512's 16 lanes): scratch is sized for it.
const MAX_LANES: usize = 16;
/// Vectors of outputs one step accumulates together (independent FMA chains).
const NV: usize = 4;
/// Largest plane this path takes (measured against the general path, `kernel_bench dw`).
pub(super) const DW_SAME_MAX_PLANE: usize = 28 * 28;

/// A plane kernel's geometry in two axes (rows, columns), as the depthwise and pooling plane
/// kernels take it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Plane2 {
    pub input: [usize; 2],
    pub out: [usize; 2],
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    pub pads_begin: [usize; 2],
}

/// The geometry of one eligible convolution: plane `h x w`, the kernel's columns and rows,
/// and per tap (weight order) its offset from an output's flat position, in the buffer.
#[derive(Debug, Clone)]
pub(super) struct DwSame {
    h: usize,
    w: usize,
    kh: usize,
    /// Column offset `kx * dw - pl` per kernel column.
    cols: Vec<isize>,
    /// Per tap `(ky, kx)` in weight order: where it reads, relative to an output's flat
    /// position, shifted by the front margin so it is never negative.
    taps: Vec<usize>,
    /// Zero elements before the plane in the buffer.
    front: usize,
    /// Buffer elements: margin, plane, margin and a vector's overshoot.
    buf_len: usize,
}

impl DwSame {
    /// `Some` for a 2-D stride-1 depthwise conv whose output is the input's size, on a plane
    /// of at most [`DW_SAME_MAX_PLANE`] positions, with 3 or 5 kernel columns.
    pub(super) fn new(g: Plane2) -> Option<Self> {
        let (input, out, kernel) = (g.input, g.out, g.kernel);
        let (strides, dilations, pads_begin) = (g.strides, g.dilations, g.pads_begin);
        let [h, w] = input;
        if out != input
            || strides != [1, 1]
            || !matches!(kernel[1], 3 | 5)
            || h * w == 0
            || h * w > DW_SAME_MAX_PLANE
        {
            return None;
        }
        let [pt, pl] = pads_begin;
        let cols: Vec<isize> = (0..kernel[1])
            .map(|kx| (kx * dilations[1]) as isize - pl as isize)
            .collect();
        let rows: Vec<isize> = (0..kernel[0])
            .map(|ky| ((ky * dilations[0]) as isize - pt as isize) * w as isize)
            .collect();
        let lo = rows.iter().min()? + cols.iter().min()?;
        let hi = rows.iter().max()? + cols.iter().max()?;
        let front = usize::try_from(-lo.min(0)).ok()?;
        let taps = rows
            .iter()
            .flat_map(|&r| cols.iter().map(move |&c| r + c + front as isize))
            .map(|t| usize::try_from(t).ok())
            .collect::<Option<Vec<_>>>()?;
        let back = usize::try_from(hi.max(0)).ok()? + MAX_LANES * NV;
        Some(Self {
            h,
            w,
            kh: kernel[0],
            cols,
            taps,
            front,
            buf_len: front + (h * w).next_multiple_of(MAX_LANES) + back,
        })
    }

    fn vectors(&self, lanes: usize) -> usize {
        (self.h * self.w).div_ceil(lanes)
    }
}

/// One worker's channels for a depthwise kernel `P` with per-worker scratch ([`DwSame`],
/// [`DwStride2`], and on AVX-512 the channels-in-lanes kernel): `first..`, whole planes in
/// `out`. The plane kernels run through pulp's dispatch.
pub(super) struct PlaneDwChannels<'a, P> {
    pub plan: &'a P,
    /// Every channel's filter, `[c][kh * kw]`.
    pub weights: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub act: Option<UnaryOp>,
    pub x: &'a [f32],
    pub first: usize,
    pub out: &'a mut [f32],
    pub scratch: &'a mut [f32],
}

/// What the two plane depthwise kernels share: their scratch per worker, their kernel width
/// (3 or 5, a constant in `run` so the column loops unroll) and the run itself.
pub(super) trait PlaneDw: Sized {
    /// Scratch elements one worker needs.
    fn scratch_len(&self) -> usize;
    /// Kernel columns (3 or 5).
    fn kernel_cols(&self) -> usize;
    /// One worker's channels with `KW` kernel columns.
    fn run<S: pulp::Simd, const KW: usize>(ch: PlaneDwChannels<'_, Self>, simd: S);
}

impl<P: PlaneDw> pulp::WithSimd for PlaneDwChannels<'_, P> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match self.plan.kernel_cols() {
            3 => P::run::<S, 3>(self, simd),
            _ => P::run::<S, 5>(self, simd),
        }
    }
}

impl PlaneDw for DwSame {
    fn scratch_len(&self) -> usize {
        // The column masks (one vector per output vector and kernel column) and the
        // margined plane buffer.
        self.vectors(MAX_LANES) * self.cols.len() * MAX_LANES + self.buf_len
    }

    fn kernel_cols(&self) -> usize {
        self.cols.len()
    }

    #[inline(always)]
    fn run<S: pulp::Simd, const KW: usize>(ch: PlaneDwChannels<'_, Self>, simd: S) {
        let p = ch.plan;
        let lanes = S::F32_LANES;
        let (hw, nvec) = (p.h * p.w, p.vectors(lanes));
        let kp = p.kh * KW;
        let (masks, buf) = ch
            .scratch
            .split_at_mut(p.vectors(MAX_LANES) * KW * MAX_LANES);
        let buf = &mut buf[..p.buf_len];
        // Output `q`'s column is `q % w` (the grid is the plane).
        column_masks(masks, nvec, lanes, p.cols.iter().copied(), p.w, p.w);
        buf.fill(0.0);
        let (vact, rest) = DwAct::split(ch.act);
        let zero = simd.splat_f32s(0.0);
        for (i, oplane) in ch.out.chunks_mut(hw).enumerate() {
            let c = ch.first + i;
            buf[p.front..p.front + hw].copy_from_slice(&ch.x[c * hw..(c + 1) * hw]);
            let wc = &ch.weights[c * kp..(c + 1) * kp];
            let bias = simd.splat_f32s(ch.bias.map_or(0.0, |b| b[c]));
            let mut j = 0;
            while j < nvec {
                let n = NV.min(nvec - j);
                let mut acc = [[zero; KW]; NV];
                for ky in 0..p.kh {
                    for kx in 0..KW {
                        let t = ky * KW + kx;
                        let wv = simd.splat_f32s(wc[t]);
                        let src = &buf[p.taps[t] + j * lanes..][..NV * lanes];
                        for (v, a) in acc.iter_mut().enumerate() {
                            let xv = load::<S>(&src[v * lanes..]);
                            a[kx] = simd.mul_add_f32s(wv, xv, a[kx]);
                        }
                    }
                }
                for (v, a) in acc.iter().enumerate().take(n) {
                    let q = (j + v) * lanes;
                    let m = &masks[(j + v) * KW * lanes..];
                    let sum = vact.apply(simd, masked_columns(simd, bias, a, m));
                    store_within::<S>(oplane, q, hw - q, sum);
                }
                j += n;
            }
            if let Some(act) = rest {
                with_unary(act, MapInPlace(oplane));
            }
        }
    }
}

/// Fills `masks` (`[vector][column][lane]`, 1.0 or 0.0) for `nvec` vectors of outputs: lane
/// `l` of vector `j` is output position `j * lanes + l`, whose column in its row is that
/// modulo `period`; it is kept for kernel column `kx` when that column plus the column's
/// offset lies in `0..width`.
fn column_masks(
    masks: &mut [f32],
    nvec: usize,
    lanes: usize,
    offsets: impl Iterator<Item = isize> + Clone,
    period: usize,
    width: usize,
) {
    let kw = offsets.clone().count();
    for j in 0..nvec {
        for (kx, off) in offsets.clone().enumerate() {
            let m = &mut masks[(j * kw + kx) * lanes..][..lanes];
            for (l, v) in m.iter_mut().enumerate() {
                let col = ((j * lanes + l) % period) as isize + off;
                *v = if col >= 0 && col < width as isize {
                    1.0
                } else {
                    0.0
                };
            }
        }
    }
}

/// `bias + col_0 + col_1 + ...` (kernel columns in order), each column's sum only in the
/// lanes its mask (`masks`, one vector per column) keeps.
#[inline(always)]
fn masked_columns<S: pulp::Simd, const KW: usize>(
    simd: S,
    bias: S::f32s,
    cols: &[S::f32s; KW],
    masks: &[f32],
) -> S::f32s {
    let zero = simd.splat_f32s(0.0);
    let mut sum = bias;
    for (kx, &col) in cols.iter().enumerate() {
        let keep = simd.greater_than_f32s(load::<S>(&masks[kx * S::F32_LANES..]), zero);
        sum = simd.add_f32s(sum, simd.select_f32s(keep, col, zero));
    }
    sum
}

/// Stores `v` at `out[q..]`: the whole vector where it fits in `out` (lanes past the `valid`
/// ones land on outputs written later), else its first `valid` lanes.
#[inline(always)]
fn store_within<S: pulp::Simd>(out: &mut [f32], q: usize, valid: usize, v: S::f32s) {
    let lanes = S::F32_LANES;
    if q + lanes <= out.len() {
        store::<S>(&mut out[q..], v);
    } else {
        let mut tail = [0.0f32; MAX_LANES];
        store::<S>(&mut tail, v);
        let n = valid.min(lanes).min(out.len() - q);
        out[q..q + n].copy_from_slice(&tail[..n]);
    }
}

/// Largest input plane [`DwStride2`] takes (`kernel_bench`, 1 thread, general path -> this
/// one: 144 channels 56x56 0.20 -> 0.16 ms, 192 at 28x28 0.12 -> 0.05, 576 at 14x14
/// 0.14 -> 0.07; 96 at 112x112 would lose, 0.40 -> 0.45).
pub(super) const DW_STRIDE2_MAX_PLANE: usize = 56 * 56;

/// Depthwise 2-D convolution with stride 2 on planes of even width (MobileNet's downsampling
/// layers: 56x56 down to 14x14): each channel's plane is split once, as a flat array, into
/// its even and its odd columns (an even width keeps every row's pairs aligned), between
/// zero rows for the padding. Output `(oy, ox)` then reads tap `(ky, kx)` from the even or
/// odd half (the parity of `kx - pl`) at row `2 * oy + ky - pt`, column `ox + dx` with
/// `dx = floor((kx - pl) / 2)`: contiguous along an output row. Vectors run along output
/// rows (a short row is one partial vector), taps are summed per kernel column, and a
/// column is added under a mask of the outputs whose input column lies in the plane, as in
/// [`DwSame`]; rows outside the plane read the zero rows.
#[derive(Debug, Clone)]
pub(super) struct DwStride2 {
    h: usize,
    /// Half the input width: the even and the odd halves' row length.
    wh: usize,
    ho: usize,
    wo: usize,
    kh: usize,
    pt: usize,
    /// Per kernel column: the half it reads (0 even, 1 odd) and its column offset `dx`.
    cols: Vec<(usize, isize)>,
    /// Zero rows above the plane in each half (the top padding; the rows below are sized
    /// into `half_len`).
    above: usize,
    /// Elements before a half's first row (a vector's reach to the left) and one half's
    /// region length (margins included).
    lead: usize,
    half_len: usize,
}

impl DwStride2 {
    /// `Some` for a 2-D depthwise conv with strides 2, dilations 1, an even input width, an
    /// input plane of at most [`DW_STRIDE2_MAX_PLANE`] positions and 3 or 5 kernel columns.
    pub(super) fn new(g: Plane2) -> Option<Self> {
        let (input, out, kernel) = (g.input, g.out, g.kernel);
        let (strides, dilations, pads_begin) = (g.strides, g.dilations, g.pads_begin);
        let [h, w] = input;
        let [ho, wo] = out;
        if strides != [2, 2]
            || dilations != [1, 1]
            || !matches!(kernel[1], 3 | 5)
            || w % 2 != 0
            || h * w == 0
            || h * w > DW_STRIDE2_MAX_PLANE
            || ho * wo == 0
        {
            return None;
        }
        let (pt, pl) = (pads_begin[0], pads_begin[1] as isize);
        let wh = w / 2;
        let cols: Vec<(usize, isize)> = (0..kernel[1] as isize)
            .map(|kx| ((kx - pl).rem_euclid(2) as usize, (kx - pl).div_euclid(2)))
            .collect();
        // Input rows read: 2 * oy + ky - pt over every output row and kernel row.
        let last = 2 * (ho - 1) + kernel[0] - 1;
        let above = pt;
        let below = (last + 1).saturating_sub(pt + h);
        let reach = cols.iter().map(|c| c.1.unsigned_abs()).max()? + MAX_LANES;
        let lead = reach;
        let half_len = lead + (above + h + below) * wh + wo.next_multiple_of(MAX_LANES) + reach;
        Some(Self {
            h,
            wh,
            ho,
            wo,
            kh: kernel[0],
            pt,
            cols,
            above,
            lead,
            half_len,
        })
    }

    fn row_vectors(&self, lanes: usize) -> usize {
        self.wo.div_ceil(lanes)
    }
}

impl PlaneDw for DwStride2 {
    fn scratch_len(&self) -> usize {
        // The column masks (per vector of an output row and kernel column) and the two
        // halves.
        self.row_vectors(MAX_LANES) * self.cols.len() * MAX_LANES + 2 * self.half_len
    }

    fn kernel_cols(&self) -> usize {
        self.cols.len()
    }

    #[inline(always)]
    fn run<S: pulp::Simd, const KW: usize>(ch: PlaneDwChannels<'_, Self>, simd: S) {
        let p = ch.plan;
        let lanes = S::F32_LANES;
        let (ip, op) = (p.h * p.wh * 2, p.ho * p.wo);
        let nv = p.row_vectors(lanes);
        let kp = p.kh * KW;
        let (masks, halves) = ch
            .scratch
            .split_at_mut(p.row_vectors(MAX_LANES) * KW * MAX_LANES);
        let halves = &mut halves[..2 * p.half_len];
        // Vectors run along one output row: lane `l` of vector `j` is column `j * lanes + l`.
        column_masks(
            masks,
            nv,
            lanes,
            p.cols.iter().map(|c| c.1),
            usize::MAX,
            p.wh,
        );
        halves.fill(0.0);
        // Where a half's plane starts (after its lead and zero rows above).
        let plane_at = p.lead + p.above * p.wh;
        let (vact, rest) = DwAct::split(ch.act);
        let zero = simd.splat_f32s(0.0);
        for (i, oplane) in ch.out.chunks_mut(op).enumerate() {
            let c = ch.first + i;
            let xc = &ch.x[c * ip..(c + 1) * ip];
            {
                let (even, odd) = halves.split_at_mut(p.half_len);
                let n = p.h * p.wh;
                let at = plane_at..plane_at + n;
                split_even_odd(xc, &mut even[at.clone()], &mut odd[at]);
            }
            let wc = &ch.weights[c * kp..(c + 1) * kp];
            let bias = simd.splat_f32s(ch.bias.map_or(0.0, |b| b[c]));
            for oy in 0..p.ho {
                for j in 0..nv {
                    let ox0 = j * lanes;
                    let mut acc = [zero; KW];
                    for ky in 0..p.kh {
                        // Row 2 * oy + ky - pt of the input, counted from the zero rows above.
                        let row = 2 * oy + ky + p.above - p.pt;
                        for (kx, &(half, dx)) in p.cols.iter().enumerate() {
                            let at = (half * p.half_len + p.lead + row * p.wh + ox0) as isize + dx;
                            let wv = simd.splat_f32s(wc[ky * KW + kx]);
                            let xv = load::<S>(&halves[at as usize..]);
                            acc[kx] = simd.mul_add_f32s(wv, xv, acc[kx]);
                        }
                    }
                    let m = &masks[j * KW * lanes..];
                    let sum = vact.apply(simd, masked_columns(simd, bias, &acc, m));
                    // Lanes past the row spill into the next row (written after this one)
                    // unless the plane ends first.
                    let q = oy * p.wo + ox0;
                    store_within::<S>(oplane, q, p.wo - ox0, sum);
                }
            }
            if let Some(act) = rest {
                with_unary(act, MapInPlace(oplane));
            }
        }
    }
}
