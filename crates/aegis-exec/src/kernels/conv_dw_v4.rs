//! Depthwise 3x3 convolution with stride 2 under AVX-512, output rows straight from their
//! input rows: no padded plane copy, no phase split, no staging (MobileNetV2's stride-2 3x3
//! layers on 112x112 and 56x56 planes).
//!
//! Why: the general depthwise kernel copies every plane into a zero-padded, phase-split
//! buffer and stages its flat output before copying it out; on a plane larger than the cache
//! those copies cost about as much as the arithmetic (MobileNetV2's 96 channels of 112x112 at
//! stride 2: 0.68 ms in the model, onnxruntime 0.27). The same scheme at stride 1 (three
//! unaligned loads per row, four output rows per block) measured no faster than the general
//! kernel (144x56x56: 0.33-0.46 vs 0.28-0.34 ms) and was left out.
//!
//! For 16 outputs from `ox0` on output row `oy`, each valid input row `iy = 2 * oy - pt + ky`
//! gives the three tap vectors: the even and odd columns of two loaded vectors by two-source
//! permutes, and the even vector shifted by one lane (`valignd`) pulling in the next pair's
//! first column, as in `pool_rows`. Two output rows are computed together (the input row
//! between them loaded once). Columns outside the input are zero: the left padding is
//! shifted in, lanes past the row's end are masked (a vector reads on into the next row; the
//! tensor's last row is copied out). Each output is `bias + sum over valid taps in (ky, kx)
//! order` of FMAs, the same sequence wherever its vector falls: results do not depend on
//! `threads`.

use pulp::x86::V4;
use pulp::Simd;

use core::arch::x86_64::{__m512, __m512i};

use super::conv::{apply_activation, DwAct};
use super::conv_dw_same::Plane2;
use super::elementwise::UnaryOp;
use super::lanes::{load, store};
use super::v4::{f32s, m512, tail, EVEN, L, ODD};

/// One eligible depthwise geometry, with the AVX-512 token it runs under.
#[derive(Debug, Clone)]
pub(super) struct DwRows {
    simd: V4,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    pt: usize,
    pl: usize,
}

impl DwRows {
    /// `Some` on a CPU with AVX-512 for a 2-D 3x3 depthwise geometry with strides 2,
    /// dilations 1, leading pads of at most 1, and output rows of at least one whole vector
    /// (on narrower ones the even/odd-split kernel wastes fewer lanes: 576x14x14 0.074 vs
    /// 0.103 ms here; 192x28x28 equal; 144x56x56 0.160 -> 0.144).
    pub(super) fn new(g: Plane2) -> Option<Self> {
        let Plane2 {
            input: [h, w],
            out: [ho, wo],
            kernel,
            strides,
            dilations,
            pads_begin: [pt, pl],
        } = g;
        if kernel != [3, 3]
            || strides != [2, 2]
            || wo < L
            || dilations != [1, 1]
            || pt > 1
            || pl > 1
            || h * w == 0
            || ho * wo == 0
        {
            return None;
        }
        Some(Self {
            simd: V4::try_new()?,
            h,
            w,
            ho,
            wo,
            pt,
            pl,
        })
    }

    /// The three column vectors a chunk loads from each input row (columns `c`, `c + 16`,
    /// `c + 32` for the permutes), for the chunk whose first input column is `c` (`>= -1`).
    /// The same for every row.
    fn chunk(&self, c: isize) -> Chunk {
        let step = L as isize;
        let mut ch = Chunk {
            off: [0; 3],
            mask: [0; 3],
            shift: c < 0,
            reach: 0,
            full: false,
        };
        for j in 0..3 {
            let cj = c + j as isize * step;
            if cj >= self.w as isize {
                continue; // mask 0: a zero vector
            }
            let c0 = cj.max(0) as usize;
            let valid = self.w - c0;
            ch.off[j] = c0;
            ch.mask[j] = if valid >= L {
                u16::MAX
            } else {
                ((1u32 << valid) - 1) as u16
            };
            ch.reach = ch.reach.max(c0 + L);
        }
        ch.full = !ch.shift && ch.mask == [u16::MAX; 3];
        ch
    }

    /// Input row `at`'s three column vectors for chunk `ch`, zero outside the row.
    #[inline(always)]
    fn row_vectors(&self, x: &[f32], at: usize, ch: &Chunk) -> [__m512; 3] {
        let f = self.simd.avx512f;
        // No closures here: a closure is its own function, compiled without AVX-512 when
        // not inlined.
        let mut v = [f._mm512_setzero_ps(); 3];
        let parts = v.iter_mut().zip(ch.off).zip(ch.mask);
        if at + ch.reach <= x.len() {
            for ((v, off), mask) in parts {
                *v = f._mm512_maskz_mov_ps(mask, m512(load::<V4>(&x[at + off..])));
            }
        } else {
            for ((v, off), mask) in parts {
                let t = tail(x, at + off, 0.0);
                *v = f._mm512_maskz_mov_ps(mask, m512(load::<V4>(&t)));
            }
        }
        if ch.shift {
            // The first column is -1: one column of left padding shifted in.
            let z = f._mm512_setzero_si512();
            let a = f._mm512_castps_si512(v[0]);
            v[0] = f._mm512_castsi512_ps(f._mm512_alignr_epi32::<15>(a, z));
        }
        v
    }
}

/// One channel's input and filter, as a block reads them.
struct Plane<'a> {
    x: &'a [f32],
    /// The channel's first input element.
    base: usize,
    wv: &'a [pulp::f32x16; 9],
    bias: pulp::f32x16,
    vact: DwAct,
}

impl DwRows {
    /// Input row `r` of the block starting at padded row `top`: its three tap vectors (the
    /// window's columns 0, 1, 2 for 16 outputs), or `None` for a row of padding.
    #[inline(always)]
    fn taps(&self, pl: &Plane<'_>, ch: &Chunk, top: isize, r: usize) -> Option<[__m512; 3]> {
        let iy = top + r as isize;
        if iy < 0 || iy >= self.h as isize {
            return None;
        }
        Some(self.row_taps(pl.x, pl.base + iy as usize * self.w, ch))
    }

    /// `acc` plus filter row `ky`'s three taps, in `kx` order.
    #[inline(always)]
    fn fma_row(
        &self,
        pl: &Plane<'_>,
        ky: usize,
        t: &[__m512; 3],
        acc: pulp::f32x16,
    ) -> pulp::f32x16 {
        let simd = self.simd;
        let mut a = acc;
        for (w, t) in pl.wv[3 * ky..3 * ky + 3].iter().zip(t) {
            a = simd.mul_add_f32s(*w, f32s(*t), a);
        }
        a
    }

    /// Output row `oy` (outputs `ox0..` of chunk `ch`).
    #[inline(always)]
    fn row1(&self, pl: &Plane<'_>, ch: &Chunk, ox0: usize, oy: usize, oplane: &mut [f32]) {
        let top = (2 * oy) as isize - self.pt as isize;
        let mut a = pl.bias;
        for ky in 0..3 {
            if let Some(t) = self.taps(pl, ch, top, ky) {
                a = self.fma_row(pl, ky, &t, a);
            }
        }
        self.put(pl, a, oy, ox0, oplane);
    }

    /// Output rows `oy0..oy0 + 2` (input rows `2 * oy0 - pt ..` in order, the middle one
    /// feeding both: each output sees its taps in `(ky, kx)` order), two independent FMA
    /// chains.
    #[inline(always)]
    fn rows2(&self, pl: &Plane<'_>, ch: &Chunk, ox0: usize, oy0: usize, oplane: &mut [f32]) {
        let top = (2 * oy0) as isize - self.pt as isize;
        let (mut a0, mut a1) = (pl.bias, pl.bias);
        if let Some(t) = self.taps(pl, ch, top, 0) {
            a0 = self.fma_row(pl, 0, &t, a0);
        }
        if let Some(t) = self.taps(pl, ch, top, 1) {
            a0 = self.fma_row(pl, 1, &t, a0);
        }
        if let Some(t) = self.taps(pl, ch, top, 2) {
            a0 = self.fma_row(pl, 2, &t, a0);
            a1 = self.fma_row(pl, 0, &t, a1);
        }
        if let Some(t) = self.taps(pl, ch, top, 3) {
            a1 = self.fma_row(pl, 1, &t, a1);
        }
        if let Some(t) = self.taps(pl, ch, top, 4) {
            a1 = self.fma_row(pl, 2, &t, a1);
        }
        self.put(pl, a0, oy0, ox0, oplane);
        self.put(pl, a1, oy0 + 1, ox0, oplane);
    }

    /// Input row `at`'s three tap vectors (columns 0, 1, 2 of the window for 16 outputs):
    /// plain loads for a `full` chunk away from the tensor's end, else [`Self::row_vectors`]
    /// (masked loads everywhere measured slower: 96x112x112 0.53-0.63 against 0.43-0.50 ms).
    #[inline(always)]
    fn row_taps(&self, x: &[f32], at: usize, ch: &Chunk) -> [__m512; 3] {
        let f = self.simd.avx512f;
        let v = if ch.full && at + ch.reach <= x.len() {
            [
                m512(load::<V4>(&x[at + ch.off[0]..])),
                m512(load::<V4>(&x[at + ch.off[1]..])),
                m512(load::<V4>(&x[at + ch.off[2]..])),
            ]
        } else {
            self.row_vectors(x, at, ch)
        };
        let even_idx: __m512i = bytemuck::cast(EVEN);
        let odd_idx: __m512i = bytemuck::cast(ODD);
        let even = f._mm512_permutex2var_ps(v[0], even_idx, v[1]);
        let odd = f._mm512_permutex2var_ps(v[0], odd_idx, v[1]);
        let even2 = f._mm512_castsi512_ps(
            f._mm512_alignr_epi32::<1>(f._mm512_castps_si512(v[2]), f._mm512_castps_si512(even)),
        );
        [even, odd, even2]
    }

    /// [`Self::rows2`] when all five input rows (from `top`) lie inside the plane: every
    /// row's taps first, then the FMAs as straight-line code, so the accumulators stay in
    /// registers (with a branch per row around them, LLVM kept them on the stack: a
    /// store-to-load round trip per input row; 96x112x112 0.50-0.62 -> 0.43-0.47 ms). The
    /// same FMAs in the same order as `rows2`.
    #[inline(always)]
    fn rows2_inside(
        &self,
        pl: &Plane<'_>,
        ch: &Chunk,
        ox0: usize,
        oy0: usize,
        top: usize,
        oplane: &mut [f32],
    ) {
        let at = pl.base + top * self.w;
        let t0 = self.row_taps(pl.x, at, ch);
        let t1 = self.row_taps(pl.x, at + self.w, ch);
        let t2 = self.row_taps(pl.x, at + 2 * self.w, ch);
        let t3 = self.row_taps(pl.x, at + 3 * self.w, ch);
        let t4 = self.row_taps(pl.x, at + 4 * self.w, ch);
        let mut a0 = self.fma_row(pl, 0, &t0, pl.bias);
        let mut a1 = self.fma_row(pl, 0, &t2, pl.bias);
        a0 = self.fma_row(pl, 1, &t1, a0);
        a1 = self.fma_row(pl, 1, &t3, a1);
        a0 = self.fma_row(pl, 2, &t2, a0);
        a1 = self.fma_row(pl, 2, &t4, a1);
        self.put(pl, a0, oy0, ox0, oplane);
        self.put(pl, a1, oy0 + 1, ox0, oplane);
    }

    /// One output vector through the activation into row `oy` from `ox0`: whole inside the
    /// row; a row's last, partial one through a copy (a spill would land on outputs already
    /// written).
    #[inline(always)]
    fn put(&self, pl: &Plane<'_>, a: pulp::f32x16, oy: usize, ox0: usize, oplane: &mut [f32]) {
        let v = pl.vact.apply(self.simd, a);
        let o = oy * self.wo + ox0;
        if ox0 + L <= self.wo {
            store::<V4>(&mut oplane[o..], v);
        } else {
            let n = self.wo - ox0;
            let mut t = [0.0f32; L];
            store::<V4>(&mut t, v);
            oplane[o..o + n].copy_from_slice(&t[..n]);
        }
    }
}

/// Where a chunk's three column vectors come from in each input row.
#[derive(Debug, Clone, Copy)]
struct Chunk {
    /// Column each vector is loaded from.
    off: [usize; 3],
    /// Lanes inside the row (0: the vector lies past the row's end).
    mask: [u16; 3],
    /// The first vector starts one column left of the row (it is loaded from column 0 and
    /// shifted).
    shift: bool,
    /// Past the furthest element a row's loads read, from the row's start.
    reach: usize,
    /// No shift and every lane inside the row: plain loads ([`DwRows::row_taps`]).
    full: bool,
}

/// One worker's channels (`first..`, whole output planes in `out`).
pub(super) struct DwRowsChannels<'a> {
    pub plan: &'a DwRows,
    /// Every channel's filter, `[c][9]`.
    pub weights: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub act: Option<UnaryOp>,
    pub x: &'a [f32],
    pub first: usize,
    pub out: &'a mut [f32],
}

impl DwRowsChannels<'_> {
    /// Runs under the plan's AVX-512 token (so the loops are compiled for it).
    pub(super) fn run(self) {
        let simd = self.plan.simd;
        pulp::Simd::vectorize(simd, self);
    }
}

impl pulp::WithSimd for DwRowsChannels<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let p = self.plan;
        let simd = p.simd;
        let (ip, op) = (p.h * p.w, p.ho * p.wo);
        let (vact, rest) = DwAct::split(self.act);
        let chunks: Vec<Chunk> = (0..p.wo)
            .step_by(L)
            .map(|ox0| p.chunk((2 * ox0) as isize - p.pl as isize))
            .collect();
        for (i, oplane) in self.out.chunks_mut(op).enumerate() {
            let c = self.first + i;
            let base = c * ip;
            let wc = &self.weights[c * 9..(c + 1) * 9];
            let mut wv = [simd.splat_f32s(0.0); 9];
            for (v, &w) in wv.iter_mut().zip(wc) {
                *v = simd.splat_f32s(w);
            }
            let bias = simd.splat_f32s(self.bias.map_or(0.0, |b| b[c]));
            let plane = Plane {
                x: self.x,
                base,
                wv: &wv,
                bias,
                vact,
            };
            // Two output rows at a time, every chunk of them before the next two (the input
            // streams in order); an odd last row alone.
            let mut oy0 = 0;
            while oy0 + 2 <= p.ho {
                let top = (2 * oy0) as isize - p.pt as isize;
                if top >= 0 && top as usize + 4 < p.h {
                    for (ci, ch) in chunks.iter().enumerate() {
                        p.rows2_inside(&plane, ch, ci * L, oy0, top as usize, oplane);
                    }
                } else {
                    for (ci, ch) in chunks.iter().enumerate() {
                        p.rows2(&plane, ch, ci * L, oy0, oplane);
                    }
                }
                oy0 += 2;
            }
            if oy0 < p.ho {
                for (ci, ch) in chunks.iter().enumerate() {
                    p.row1(&plane, ch, ci * L, oy0, oplane);
                }
            }
            if let Some(act) = rest {
                apply_activation(act, oplane);
            }
        }
    }
}
