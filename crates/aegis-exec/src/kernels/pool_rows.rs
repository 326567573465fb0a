//! 2-D pooling with stride 1 or 2 and 2- or 3-wide windows under AVX-512 (SqueezeNet's 3x3/2
//! max pools, the 3x3/2 stem pools of ResNet, DenseNet, ShuffleNet and the Inceptions, 2x2/2
//! transitions, Inception's 3x3/1 "same" pools), one output row at a time straight from the
//! input: no row buffer, no even/odd split, no grid.
//!
//! Why: the plane path and the general loop store a reduced row, split or gather it, and
//! reload it, about 1 us per 55x55 plane on this machine kind (128x55x55: 0.125 ms; onnxruntime
//! 0.035 inside SqueezeNet). Here, for 16 outputs starting at `ox0`, the window rows are
//! reduced in registers into `A` (16 input columns from the first window's first) and `B`
//! (the next 16). With stride 2, two-source permutes give the even and odd columns (`A`,
//! `B` -> input columns `2 * ox + 0` and `2 * ox + 1` of the window), and for 3-wide windows
//! `valignd` shifts the even vector by one lane, pulling in the first column of the next
//! pair `C` (which is the next 16 outputs' `A`). With stride 1, column `ox + kx` is `A`
//! shifted by `kx` lanes with `B` coming in (`valignd`), and `B` is the next `A`. So each
//! input vector is reduced once per output row.
//!
//! Columns outside the input hold the reduction's identity (lanes masked after the row
//! reduction; the left padding shifted in), so every output reduces its valid rows in `kh`
//! order, then its columns in `kw` order from the identity, as the general loop does:
//! results are bit-identical to it (a padded column adds the identity, which changes
//! nothing; a sum that starts at +0 is never -0), save a sum's NaN payload when two NaNs
//! meet (which operand an add keeps is the compiler's choice).
//!
//! 3x3 stride-1 "same" pools on planes up to 28x28 take [`PoolFlat`] first: the plane as one
//! flat array, 16 positions a vector across rows, with the same operations in the same order.

use pulp::x86::V4;
use pulp::Simd;

use super::conv_dw_same::Plane2;
use super::lanes::{load, store};
use super::par::par_chunks;
use super::pool::PoolKind;
use super::pool_plane::{divisors, rows_eligible, AxisTaps, Combine, MaxNan, Sum};
use super::v4::{f32s, m512, tail, EVEN, L, ODD};

use core::arch::x86_64::{__m512i, _CMP_ORD_Q};

/// One eligible pooling's geometry, with the AVX-512 token it runs under.
#[derive(Debug, Clone)]
pub(super) struct PoolRows {
    simd: V4,
    kind: PoolKind,
    /// 1 or 2, both axes.
    stride: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
    kw: usize,
    pl: usize,
    /// Per output row: its windows' valid input rows `[r0, r1)`.
    rows: Vec<(usize, usize)>,
    /// Average pools: each output's divisor, rows `wo` rounded up to whole vectors (1 in the
    /// slack).
    div: Vec<f32>,
}

impl PoolRows {
    /// `Some` on a CPU with AVX-512 for a 2-D pooling with strides 1 or 2 (both axes),
    /// dilations 1, 2 or 3 kernel columns, and every window holding an input tap (pads below
    /// the kernel).
    /// Average divisors follow `th` / `tw` and `count_include_pad`, as in the general loop.
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
            kernel: [_, kw],
            strides,
            pads_begin: [pt, pl],
            ..
        } = g;
        let stride = strides[0];
        if !(kw == 2 || kw == 3) || !rows_eligible(&g, pads_end, th, tw) {
            return None;
        }
        let simd = V4::try_new()?;
        let rows = th
            .iter()
            .enumerate()
            .map(|(oy, &(lo, hi, _))| {
                let top = stride * oy + lo - pt;
                (top, top + hi - lo)
            })
            .collect();
        let wv = wo.next_multiple_of(L);
        let div = if kind == PoolKind::Average {
            divisors(th, tw, count_include_pad, wv, ho * wv)
        } else {
            Vec::new()
        };
        Some(Self {
            simd,
            kind,
            stride,
            h,
            w,
            ho,
            wo,
            kw,
            pl,
            rows,
            div,
        })
    }
}

impl PoolRows {
    /// Input columns `[c, c + 16)` of the plane at `base`, reduced over rows `[r0, r1)`,
    /// columns outside the input holding the identity. A vector reads on into the next row
    /// (its lanes past the row are masked); the tensor's last row is copied out.
    #[inline(always)]
    fn vred<C: Reduce4>(
        &self,
        x: &[f32],
        base: usize,
        r0: usize,
        r1: usize,
        c: isize,
    ) -> pulp::f32x16 {
        let (simd, f) = (self.simd, self.simd.avx512f);
        // A whole vector inside the row: no masks, no shift, one bounds check for its rows.
        if c >= 0 && c as usize + L <= self.w {
            let first = base + r0 * self.w + c as usize;
            let rows = (r1 - r0 - 1) * self.w + L;
            if let Some(xs) = x.get(first..first + rows) {
                return down_rows::<C>(simd, xs, self.w, r1 - r0);
            }
        }
        let init = simd.splat_f32s(C::INIT);
        if c >= self.w as isize {
            return init;
        }
        let c0 = c.max(0) as usize;
        let first = base + r0 * self.w + c0;
        let mut acc;
        if base + (r1 - 1) * self.w + c0 + L <= x.len() {
            acc = down_rows::<C>(simd, &x[first..], self.w, r1 - r0);
        } else {
            // The tensor's last row is copied out (kept off the loop above, whose
            // accumulator would otherwise be spilled around the copy).
            acc = load::<V4>(&tail(x, first, C::INIT));
            for r in r0 + 1..r1 {
                let v = load::<V4>(&tail(x, base + r * self.w + c0, C::INIT));
                acc = C::comb(simd, acc, v);
            }
        }
        let valid = self.w - c0;
        if valid < L {
            let keep = ((1u32 << valid) - 1) as u16;
            acc = f32s(f._mm512_mask_blend_ps(keep, m512(init), m512(acc)));
        }
        // Left padding (`c < 0` only for the first vector): shift the columns right, the
        // identity coming in.
        let (a, z) = (
            f._mm512_castps_si512(m512(acc)),
            f._mm512_castps_si512(m512(init)),
        );
        match c {
            -1 => f32s(f._mm512_castsi512_ps(f._mm512_alignr_epi32::<15>(a, z))),
            -2 => f32s(f._mm512_castsi512_ps(f._mm512_alignr_epi32::<14>(a, z))),
            _ => acc,
        }
    }
}

/// The 16 columns at `xs` reduced over `n` rows `w` apart, in row order. Windows of 2 and 3
/// whole rows (almost every row) as straight-line code: hot, 1 thread, 3x3/2 max on
/// 64x111x111 0.129 -> 0.117 ms, padded 64x112x112 0.147 -> 0.137, 256x27x27 0.042 -> 0.039
/// (a loop with a run-time count before).
#[inline(always)]
fn down_rows<C: Reduce4>(simd: V4, xs: &[f32], w: usize, n: usize) -> pulp::f32x16 {
    let mut acc = load::<V4>(xs);
    match n {
        2 => C::comb(simd, acc, load::<V4>(&xs[w..])),
        3 => {
            acc = C::comb(simd, acc, load::<V4>(&xs[w..]));
            C::comb(simd, acc, load::<V4>(&xs[2 * w..]))
        }
        _ => {
            for r in 1..n {
                acc = C::comb(simd, acc, load::<V4>(&xs[r * w..]));
            }
            acc
        }
    }
}

/// [`Combine`]'s step for AVX-512, the same result per lane.
pub(super) trait Reduce4: Combine {
    fn comb(simd: V4, acc: pulp::f32x16, v: pulp::f32x16) -> pulp::f32x16;
}

impl Reduce4 for MaxNan {
    /// `vmaxps(v, acc)` is `v > acc ? v : acc`, `acc` on ties and when either is NaN; only
    /// a NaN `v` needs the blend (`v` replaces `acc` when larger or NaN). One op fewer on
    /// the dependency chain than two compares and blends.
    #[inline(always)]
    fn comb(simd: V4, acc: pulp::f32x16, v: pulp::f32x16) -> pulp::f32x16 {
        let f = simd.avx512f;
        let m = f._mm512_max_ps(m512(v), m512(acc));
        let number = f._mm512_cmp_ps_mask::<_CMP_ORD_Q>(m512(v), m512(v));
        f32s(f._mm512_mask_blend_ps(number, m512(v), m))
    }
}

impl Reduce4 for Sum {
    #[inline(always)]
    fn comb(simd: V4, acc: pulp::f32x16, v: pulp::f32x16) -> pulp::f32x16 {
        simd.add_f32s(acc, v)
    }
}

/// An AVX-512 pooling plan ([`PoolRows`], [`PoolFlat`]): its token, its reduction, and its
/// loop over whole planes.
pub(super) trait V4Pool: Sync + Sized {
    fn simd(&self) -> V4;
    fn kind(&self) -> PoolKind;
    /// The planes of `planes`, under the token.
    fn run<C: Reduce4>(planes: Planes<'_, Self>);
}

/// Runs `plan` over `out`'s whole planes of `op` elements, planes shared between workers
/// (at least `min_planes` each).
pub(super) fn run_planes<P: V4Pool>(
    plan: &P,
    x: &[f32],
    out: &mut [f32],
    op: usize,
    threads: usize,
    min_planes: usize,
) {
    par_chunks(out, op, threads, min_planes, |first, piece| {
        // Under the plan's AVX-512 token, so the loops are compiled for it.
        pulp::Simd::vectorize(
            plan.simd(),
            Planes {
                plan,
                x,
                first,
                out: piece,
            },
        );
    });
}

/// One worker's planes (`first..`, whole output planes in `out`).
pub(super) struct Planes<'a, P> {
    plan: &'a P,
    x: &'a [f32],
    first: usize,
    out: &'a mut [f32],
}

impl<P: V4Pool> pulp::WithSimd for Planes<'_, P> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        match self.plan.kind() {
            PoolKind::Max => P::run::<MaxNan>(self),
            PoolKind::Average => P::run::<Sum>(self),
        }
    }
}

/// [`V4Pool`] for a plan with `simd` and `kind` fields and a `planes` loop on
/// [`Planes`] of it.
macro_rules! v4_pool {
    ($plan:ty) => {
        impl V4Pool for $plan {
            fn simd(&self) -> V4 {
                self.simd
            }
            fn kind(&self) -> PoolKind {
                self.kind
            }
            #[inline(always)]
            fn run<C: Reduce4>(planes: Planes<'_, Self>) {
                planes.planes::<C>();
            }
        }
    };
}

v4_pool!(PoolRows);
v4_pool!(PoolFlat);

impl Planes<'_, PoolRows> {
    /// Stride and window width as constants, so each case compiles to its own loop; with
    /// [`PoolRows::vred`]'s unmasked path for vectors inside the row, 1.4-1.7x faster
    /// (`kernel_bench`, 1 thread, ms, before -> after, alternating binaries: 3x3/2 max on
    /// 64x111x111 0.21 -> 0.13, 128x55x55 0.115 -> 0.075, pad 1 64x112x112 0.23 -> 0.14;
    /// 3x3/1 average on 576x14x14 0.11 -> 0.074).
    #[inline(always)]
    fn planes<C: Reduce4>(self) {
        match (self.plan.stride == 2, self.plan.kw == 3) {
            (true, true) => self.planes_k::<C, true, true>(),
            (true, false) => self.planes_k::<C, true, false>(),
            (false, true) => self.planes_k::<C, false, true>(),
            (false, false) => self.planes_k::<C, false, false>(),
        }
    }

    #[inline(always)]
    fn planes_k<C: Reduce4, const S2: bool, const K3: bool>(self) {
        let p = self.plan;
        let simd = p.simd;
        let f = simd.avx512f;
        let (ip, op) = (p.h * p.w, p.ho * p.wo);
        let init = simd.splat_f32s(C::INIT);
        let even_idx: __m512i = bytemuck::cast(EVEN);
        let odd_idx: __m512i = bytemuck::cast(ODD);
        let wv = p.wo.next_multiple_of(L);
        for (i, oplane) in self.out.chunks_mut(op).enumerate() {
            let base = (self.first + i) * ip;
            for (oy, &(r0, r1)) in p.rows.iter().enumerate() {
                let orow = oy * p.wo;
                let mut a = p.vred::<C>(self.x, base, r0, r1, -(p.pl as isize));
                let mut ox0 = 0;
                while ox0 < p.wo {
                    let more = ox0 + L < p.wo;
                    let mut acc;
                    // The vector after `a` (this chunk's last windows reach into it) becomes
                    // the next chunk's `a`, so each input vector is reduced once per row.
                    let next;
                    if !S2 {
                        // Column `ox + kx` of the window: `a` shifted left by `kx` lanes, `b`
                        // coming in.
                        let s = ox0 as isize - p.pl as isize;
                        let b = p.vred::<C>(self.x, base, r0, r1, s + L as isize);
                        let (ai, bi) = (
                            f._mm512_castps_si512(m512(a)),
                            f._mm512_castps_si512(m512(b)),
                        );
                        acc = C::comb(simd, init, a);
                        let t1 = f._mm512_castsi512_ps(f._mm512_alignr_epi32::<1>(bi, ai));
                        acc = C::comb(simd, acc, f32s(t1));
                        if K3 {
                            let t2 = f._mm512_castsi512_ps(f._mm512_alignr_epi32::<2>(bi, ai));
                            acc = C::comb(simd, acc, f32s(t2));
                        }
                        next = b;
                    } else {
                        let s = (2 * ox0) as isize - p.pl as isize;
                        let b = p.vred::<C>(self.x, base, r0, r1, s + L as isize);
                        let (am, bm) = (m512(a), m512(b));
                        let even = f._mm512_permutex2var_ps(am, even_idx, bm);
                        let odd = f._mm512_permutex2var_ps(am, odd_idx, bm);
                        // The next pair's first vector: the third column of the last window
                        // here, and the next 16 outputs' `a`.
                        let c = if K3 || more {
                            p.vred::<C>(self.x, base, r0, r1, s + 2 * L as isize)
                        } else {
                            init
                        };
                        acc = C::comb(simd, C::comb(simd, init, f32s(even)), f32s(odd));
                        if K3 {
                            let shifted = f._mm512_alignr_epi32::<1>(
                                f._mm512_castps_si512(m512(c)),
                                f._mm512_castps_si512(even),
                            );
                            acc = C::comb(simd, acc, f32s(f._mm512_castsi512_ps(shifted)));
                        }
                        next = c;
                    }
                    if C::AVERAGE {
                        acc = simd.div_f32s(acc, load::<V4>(&p.div[oy * wv + ox0..]));
                    }
                    // Whole vectors where they stay inside the plane (a spill past the row
                    // lands on outputs the next row writes); the plane's tail through a copy.
                    let o = orow + ox0;
                    if o + L <= op {
                        store::<V4>(&mut oplane[o..], acc);
                    } else {
                        let n = (p.wo - ox0).min(L);
                        let mut t = [0.0f32; L];
                        store::<V4>(&mut t, acc);
                        oplane[o..o + n].copy_from_slice(&t[..n]);
                    }
                    a = next;
                    ox0 += L;
                }
            }
        }
    }
}

/// Most positions of a plane [`PoolFlat`] takes (its `V` lives on the stack; above 28x28 the
/// row path's vectors are full anyway).
const FLAT_MAX_PLANE: usize = 28 * 28;

/// 3x3 stride-1 pooling with one cell of padding on every side ("same" pools: Inception's
/// on 28x28, 14x14 and 7x7) on small planes, with the plane as one flat array: vectors of
/// 16 positions whatever the row width.
///
/// Why: the row path computes an output row per vector, so a 7x7 plane fills 7 of 16 lanes
/// and a 14x14 one 14, and pays its per-row setup 7 or 14 times per plane (`kernel_bench`,
/// 1 thread: max 3x3/1 on 1024x7x7 0.07-0.11 ms, onnxruntime 0.017 inside Inception-v2;
/// average on 576x14x14 0.073, onnxruntime 0.03). Here, per plane, `V = ` the rows of each
/// window reduced in order (position `q` combines `q - w`, `q`, `q + w`, the rows outside
/// the plane left out by blends), then each output its columns from the identity
/// (`q - 1`, `q`, `q + 1`, those outside the row replaced by the identity): the operations,
/// in the order, of the row path and the general loop, so the results are the same bits.
#[derive(Debug, Clone)]
pub(super) struct PoolFlat {
    simd: V4,
    kind: PoolKind,
    h: usize,
    w: usize,
    /// Per vector of the plane: lanes in the top row, in the bottom row, with a column to
    /// the left, with a column to the right.
    masks: Vec<[u16; 4]>,
    /// Average pools: each position's divisor (whole vectors, 1 in the slack).
    div: Vec<f32>,
}

impl PoolFlat {
    /// `Some` on a CPU with AVX-512 for a 2-D 3x3 pooling with strides and dilations 1, one
    /// cell of padding on every side and a plane of at most `FLAT_MAX_PLANE` positions.
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
            kernel,
            strides,
            dilations,
            pads_begin,
        } = g;
        let ok = kernel == [3, 3]
            && strides == [1, 1]
            && dilations == [1, 1]
            && pads_begin == [1, 1]
            && pads_end == [1, 1]
            && (ho, wo) == (h, w)
            && h * w > 0
            && h * w <= FLAT_MAX_PLANE
            && rows_eligible(&g, pads_end, th, tw);
        if !ok {
            return None;
        }
        let simd = V4::try_new()?;
        let n = (h * w).div_ceil(L);
        let masks = (0..n)
            .map(|v| {
                let mut m = [0u16; 4];
                for lane in 0..L {
                    let q = v * L + lane;
                    let (y, x) = (q / w, q % w);
                    let bits = [y == 0, y + 1 >= h, x > 0, x + 1 < w];
                    for (mk, on) in m.iter_mut().zip(bits) {
                        *mk |= u16::from(on) << lane;
                    }
                }
                m
            })
            .collect();
        let div = if kind == PoolKind::Average {
            let mut d = divisors(th, tw, count_include_pad, w, h * w);
            d.resize(n * L, 1.0);
            d
        } else {
            Vec::new()
        };
        Some(Self {
            simd,
            kind,
            h,
            w,
            masks,
            div,
        })
    }
}

impl Planes<'_, PoolFlat> {
    #[inline(always)]
    fn planes<C: Reduce4>(self) {
        let p = self.plan;
        let simd = p.simd;
        let f = simd.avx512f;
        let (w, ip) = (p.w, p.h * p.w);
        let init = simd.splat_f32s(C::INIT);
        let x = self.x;
        // 16 values from `x[at..]` (`at` may be below 0 or run past the tensor: those lanes
        // are never used, the identity stands in).
        let ld = |at: isize| -> pulp::f32x16 {
            if at >= 0 && at as usize + L <= x.len() {
                load::<V4>(&x[at as usize..])
            } else if at >= 0 {
                load::<V4>(&tail(x, at as usize, C::INIT))
            } else {
                let mut t = [C::INIT; L];
                let skip = at.unsigned_abs().min(L);
                let src = &x[..(L - skip).min(x.len())];
                t[skip..skip + src.len()].copy_from_slice(src);
                load::<V4>(&t)
            }
        };
        let blend = |keep: u16, a: pulp::f32x16, b: pulp::f32x16| -> pulp::f32x16 {
            // Lanes in `keep` take `b`, the others `a`.
            f32s(f._mm512_mask_blend_ps(keep, m512(a), m512(b)))
        };
        // `V` with a vector of slack either side, so the column taps load whole vectors.
        let mut v = [C::INIT; FLAT_MAX_PLANE + 3 * L];
        for (i, oplane) in self.out.chunks_mut(ip).enumerate() {
            let base = ((self.first + i) * ip) as isize;
            for (j, m) in p.masks.iter().enumerate() {
                let q = base + (j * L) as isize;
                let (up, mid, down) = (ld(q - w as isize), ld(q), ld(q + w as isize));
                // Rows in order from the first valid one: (up, mid, down), the top row's
                // from `mid`, the bottom row's without `down`.
                let two = blend(m[0], C::comb(simd, up, mid), mid);
                let three = blend(m[1], C::comb(simd, two, down), two);
                store::<V4>(&mut v[L + j * L..], three);
            }
            for (j, m) in p.masks.iter().enumerate() {
                let at = L + j * L;
                let left = blend(m[2], init, load::<V4>(&v[at - 1..]));
                let right = blend(m[3], init, load::<V4>(&v[at + 1..]));
                let mut acc = C::comb(simd, init, left);
                acc = C::comb(simd, acc, load::<V4>(&v[at..]));
                acc = C::comb(simd, acc, right);
                if C::AVERAGE {
                    acc = simd.div_f32s(acc, load::<V4>(&p.div[j * L..]));
                }
                let o = j * L;
                if o + L <= ip {
                    store::<V4>(&mut oplane[o..], acc);
                } else {
                    let mut t = [0.0f32; L];
                    store::<V4>(&mut t, acc);
                    oplane[o..].copy_from_slice(&t[..ip - o]);
                }
            }
        }
    }
}
