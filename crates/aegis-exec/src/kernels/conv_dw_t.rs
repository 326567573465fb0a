//! Depthwise convolution on small and mid-sized planes under AVX-512 with channels in lanes: each block of
//! 16 channels is transposed in registers into a zero-padded `[row][column][16]` grid, every
//! output position is one vector of 16 channels summed over the taps with one FMA each, and
//! the results are transposed back into the channels' NCHW planes.
//!
//! Why: along positions, a 14x14 or 7x7 plane is a few vectors with ragged ends, and every
//! channel pays its own setup (a padded plane copy, masks, a staged output): MobileNetV2's
//! depthwise layers on 14x14 and 7x7 ran 1.8-2.2x onnxruntime's time, which keeps channels
//! in lanes (NCHWc). With channels in lanes no lane is wasted whatever the plane, the taps
//! are plain aligned loads (no shifts, no masks) and any kernel size, stride, dilation or
//! padding is the same loop. The price is the two transposes: 16x16 blocks in four rounds
//! of unpacks and shuffles (64 operations per 256 values), where the scalar transposes
//! tried in session 20 cost more than the arithmetic they saved. With a 3x3's nine filter
//! vectors held in registers, whole 16x16 transposes kept in registers and the output
//! transposed back a band of rows at a time, it also beats the kernels along positions on
//! 3x3 at stride 1 and 2 (0.7-0.9 of their time on MobileNetV2's layers, 7x7 to 56x56).
//!
//! Determinism: every output is `bias + sum over taps in (ky, kx) order` of FMAs, padded taps
//! included (they add `0 * w`), the same sequence whichever block or worker computes it, so
//! results do not depend on `threads`.

use pulp::x86::V4;
use pulp::Simd;

use core::arch::x86_64::__m512;
use core::ops::Range;

use super::conv::{apply_activation, DwAct};
use super::conv_dw_same::{Plane2, PlaneDwChannels};
use super::lanes::{load, store};
use super::v4::{f32s, m512, tail, L};

/// One eligible depthwise geometry, with the AVX-512 token it runs under.
#[derive(Debug, Clone)]
pub(super) struct DwT {
    simd: V4,
    /// Input plane.
    h: usize,
    w: usize,
    /// Output plane.
    ho: usize,
    wo: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    dh: usize,
    dw: usize,
    pt: usize,
    pl: usize,
    /// The padded grid: rows and columns (input at `[pt.., pl..]`, zeros around it).
    hp: usize,
    wp: usize,
}

/// Output positions one step computes (independent FMA chains; each filter vector loaded
/// once for all of them).
const RP: usize = 8;

/// Largest output plane taken for kernels other than a plain 3x3: above it the plane
/// kernels along positions waste few lanes.
const MAX_OUT_PLANE: usize = 28 * 28;
/// Largest output plane taken for a 3x3 (dilation 1, column stride 1 or 2), whose taps run
/// from registers ([`DwT::compute3x3`]): MobileNetV2's 144 channels at 56x56 took 0.79-0.82 of
/// the phase-split kernel's time (`kernel_bench`, 1 thread).
const MAX_OUT_PLANE_3X3: usize = 56 * 56;
/// Largest padded input plane taken (positions; 256 KiB of grid per worker).
const MAX_GRID: usize = 64 * 64;
/// With at least `LARGE_MIN_CHANNELS` channels, the limits for a plain 3x3 on planes up to
/// 112x112 (an 832 KiB grid per worker). Since the grid stores went straight-line (session
/// 39): 32x112x112 0.21 -> 0.15 ms, 96x112x112 at stride 2 0.30-0.33 -> 0.22-0.25 against
/// the kernels along positions (`kernel_bench`, 1 thread; 2 threads alike). Fewer channels
/// keep those kernels: one block of 16 runs on one thread, and a partial block costs about
/// a whole one (8x112x112 at stride 2: 0.033 against 0.027 ms at 1 thread, 0.015 at 2).
const LARGE_MAX_OUT_PLANE_3X3: usize = 112 * 112;
const LARGE_MAX_GRID: usize = 114 * 114;
const LARGE_MIN_CHANNELS: usize = 2 * L;

impl DwT {
    /// `Some` on a CPU with AVX-512 for a 2-D depthwise geometry of `channels` planes with
    /// an output plane of at most `MAX_OUT_PLANE` positions (`MAX_OUT_PLANE_3X3` for a
    /// plain 3x3) and a padded input of at most `MAX_GRID` (the `LARGE_` limits for a plain
    /// 3x3 with at least `LARGE_MIN_CHANNELS` channels).
    pub(super) fn new(g: Plane2, channels: usize) -> Option<Self> {
        let Plane2 {
            input: [h, w],
            out: [ho, wo],
            kernel: [kh, kw],
            strides: [sh, sw],
            dilations: [dh, dw],
            pads_begin: [pt, pl],
        } = g;
        let plain3x3 = fast_3x3(kh, kw, dh, dw, sw);
        let (max_out, max_grid) = match (plain3x3, channels >= LARGE_MIN_CHANNELS) {
            (true, true) => (LARGE_MAX_OUT_PLANE_3X3, LARGE_MAX_GRID),
            (true, false) => (MAX_OUT_PLANE_3X3, MAX_GRID),
            (false, _) => (MAX_OUT_PLANE, MAX_GRID),
        };
        if ho * wo == 0 || ho * wo > max_out || h * w == 0 || kh * kw == 0 {
            return None;
        }
        // Every window inside the grid; the grid holds the whole input.
        let hp = (h + pt).max((ho - 1) * sh + (kh - 1) * dh + 1);
        let wp = (w + pl).max((wo - 1) * sw + (kw - 1) * dw + 1);
        if hp * wp > max_grid {
            // A large input for a small output (long strides, wide dilations): the grid
            // would be mostly unread.
            return None;
        }
        let simd = V4::try_new()?;
        Some(Self {
            simd,
            h,
            w,
            ho,
            wo,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            pt,
            pl,
            hp,
            wp,
        })
    }

    /// Scratch elements one worker needs: the grid, a band of output rows and the taps'
    /// filter vectors.
    pub(super) fn scratch_len(&self) -> usize {
        // One vector of slack to align the grid.
        (self.grid_len() + self.band_rows() * self.wo + self.kh * self.kw + 1) * L
    }

    /// Output rows computed before they are transposed out: the fewest whose positions fill
    /// whole vectors (so every transpose but the plane's last is a whole 16x16), at most the
    /// plane. The band stays in L1 between the two (a whole 56x56 plane would be 200 KiB).
    fn band_rows(&self) -> usize {
        (L / gcd(self.wo, L)).min(self.ho)
    }

    /// Grid positions: the rows, and slack for a last step's columns past its row end.
    fn grid_len(&self) -> usize {
        self.hp * self.wp + RP * self.sw
    }

    /// Zeroes the grid's positions outside the input (`grid_len() * L` elements): the rows
    /// above and below it, the columns left and right of it, and the slack.
    fn clear_border(&self, grid: &mut [f32]) {
        let (top, rows) = (self.pt * self.wp, self.pt + self.h);
        grid[..top * L].fill(0.0);
        for y in self.pt..rows {
            let row = &mut grid[y * self.wp * L..(y + 1) * self.wp * L];
            row[..self.pl * L].fill(0.0);
            row[(self.pl + self.w) * L..].fill(0.0);
        }
        grid[rows * self.wp * L..self.grid_len() * L].fill(0.0);
    }
}

impl PlaneDwChannels<'_, DwT> {
    /// Runs under the plan's AVX-512 token (so the loops are compiled for it).
    pub(super) fn run(self) {
        let simd = self.plan.simd;
        pulp::Simd::vectorize(simd, self);
    }
}

impl pulp::WithSimd for PlaneDwChannels<'_, DwT> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let p = self.plan;
        let (ip, op, kp) = (p.h * p.w, p.ho * p.wo, p.kh * p.kw);
        let (vact, rest) = DwAct::split(self.act);
        // Vectors on 64-byte boundaries: a load across two cache lines costs two.
        let skew = (self.scratch.as_ptr() as usize / 4).wrapping_neg() % L;
        let (grid, more) = self.scratch[skew..].split_at_mut(p.grid_len() * L);
        let band = p.band_rows();
        let (obuf, wbuf) = more.split_at_mut(band * p.wo * L);
        // The border stays zero: blocks only write the input's positions, every one of
        // them (lanes past a last block's channels as zeros), so only the border is cleared
        // (clearing the whole 215 KiB grid of a 56x56 plane was 2 % of the kernel).
        p.clear_border(grid);
        for (bi, planes) in self.out.chunks_mut(L * op).enumerate() {
            let c0 = self.first + bi * L;
            let nc = planes.len() / op;
            // Filter vectors: tap t's 16 channels at wbuf[t * 16..]; missing channels 0.
            for t in 0..kp {
                for c in 0..L {
                    wbuf[t * L + c] = if c < nc {
                        self.weights[(c0 + c) * kp + t]
                    } else {
                        0.0
                    };
                }
            }
            let mut bv = [0.0f32; L];
            if let Some(b) = self.bias {
                bv[..nc].copy_from_slice(&b[c0..c0 + nc]);
            }
            p.transpose_in(self.x, c0, nc, ip, grid);
            let bias = load::<V4>(&bv);
            let plain3x3 = fast_3x3(p.kh, p.kw, p.dh, p.dw, p.sw);
            for oy0 in (0..p.ho).step_by(band) {
                let rows = oy0..(oy0 + band).min(p.ho);
                let n = rows.len() * p.wo;
                match (p.sw, plain3x3) {
                    (1, true) => p.compute3x3::<1>(rows, grid, wbuf, bias, vact, obuf),
                    (2, true) => p.compute3x3::<2>(rows, grid, wbuf, bias, vact, obuf),
                    (1, _) => p.compute::<1>(rows, grid, wbuf, bias, vact, obuf),
                    (2, _) => p.compute::<2>(rows, grid, wbuf, bias, vact, obuf),
                    _ => p.compute::<0>(rows, grid, wbuf, bias, vact, obuf),
                }
                p.transpose_out(&obuf[..n * L], nc, op, oy0 * p.wo, planes);
            }
            if let Some(act) = rest {
                apply_activation(act, planes);
            }
        }
    }
}

impl DwT {
    /// Channels `c0..c0 + nc` of `x` into the grid's interior (lanes past `nc` zero).
    #[inline(always)]
    fn transpose_in(&self, x: &[f32], c0: usize, nc: usize, ip: usize, grid: &mut [f32]) {
        // One loop per row kind: with both store schemes in one loop, the rows of 16 and
        // more ran 4-6 % slower.
        if self.w >= L {
            self.transpose_in_rows::<true>(x, c0, nc, ip, grid);
        } else {
            self.transpose_in_rows::<false>(x, c0, nc, ip, grid);
        }
    }

    /// [`Self::transpose_in`] for rows of at least 16 positions (`WIDE`) or narrower ones.
    #[inline(always)]
    fn transpose_in_rows<const WIDE: bool>(
        &self,
        x: &[f32],
        c0: usize,
        nc: usize,
        ip: usize,
        grid: &mut [f32],
    ) {
        let f = self.simd.avx512f;
        let zero = f._mm512_setzero_ps();
        let (mut y, mut xx) = (0, 0);
        let mut i = 0;
        while i < ip {
            // 16 positions inside the tensor (a partial block's missing channels as zero
            // vectors): constant trip counts, so the vectors stay in registers (the general
            // loop below spilled them: 0.86-0.99 of its time on 576x14x14; a block of 8
            // channels of 112x112 through it took 1.8x a whole block). Each path has its own
            // array: one shared with the general path lived on the stack, zeroed and stored
            // to every step.
            if i + L <= ip && (c0 + nc - 1) * ip + i + L <= x.len() {
                let mut r = [zero; L];
                let xs = &x[c0 * ip + i..];
                for (c, rc) in r.iter_mut().enumerate() {
                    if c < nc {
                        *rc = m512(load::<V4>(&xs[c * ip..]));
                    }
                }
                let v = transpose16(self.simd, r);
                if WIDE {
                    // The 16 positions run to the row's end and on into the next row at
                    // most once: straight-line stores at two bases (a loop stepping row and
                    // column per position kept the vectors on the stack and reloaded them
                    // one by one).
                    let k = self.w - xx;
                    let g0 = ((y + self.pt) * self.wp + xx + self.pl) * L;
                    let g1 = ((y + 1 + self.pt) * self.wp + self.pl) * L;
                    for (j, vj) in v.into_iter().enumerate() {
                        let g = if j < k { g0 + j * L } else { g1 + (j - k) * L };
                        store::<V4>(&mut grid[g..], f32s(vj));
                    }
                    xx += L;
                    if xx >= self.w {
                        xx -= self.w;
                        y += 1;
                    }
                } else {
                    // Narrower rows: the 16 grid offsets first (integers), then the stores
                    // straight-line from them, so the vectors stay in registers.
                    let mut offs = [0usize; L];
                    for o in &mut offs {
                        *o = ((y + self.pt) * self.wp + xx + self.pl) * L;
                        xx += 1;
                        if xx == self.w {
                            xx = 0;
                            y += 1;
                        }
                    }
                    for (vj, o) in v.into_iter().zip(offs) {
                        store::<V4>(&mut grid[o..], f32s(vj));
                    }
                }
                i += L;
                continue;
            }
            let mut r = [zero; L];
            for (c, rc) in r.iter_mut().enumerate().take(nc) {
                let at = (c0 + c) * ip + i;
                // Lanes past the plane read on into the next one (never stored); the
                // tensor's end is copied out.
                *rc = if at + L <= x.len() {
                    m512(load::<V4>(&x[at..]))
                } else {
                    m512(load::<V4>(&tail(x, at, 0.0)))
                };
            }
            let v = transpose16(self.simd, r);
            for vj in v.iter().take(L.min(ip - i)) {
                let g = ((y + self.pt) * self.wp + xx + self.pl) * L;
                store::<V4>(&mut grid[g..], f32s(*vj));
                xx += 1;
                if xx == self.w {
                    xx = 0;
                    y += 1;
                }
            }
            i += L;
        }
    }

    /// The 16 channels of output rows `rows` into `obuf` (`[position][16]`, from the band's
    /// first position), with the column stride `SW` a constant (0: `self.sw`): each output
    /// row in steps of `RP` positions, per tap row one slice of the grid, so the positions'
    /// loads sit at fixed distances from it. A step past the row's end computes columns
    /// that wrap into the next grid row (within the grid's slack) and are not stored.
    #[inline(always)]
    fn compute<const SW: usize>(
        &self,
        rows: Range<usize>,
        grid: &[f32],
        wbuf: &[f32],
        bias: pulp::f32x16,
        act: DwAct,
        obuf: &mut [f32],
    ) {
        let simd = self.simd;
        let sw = if SW == 0 { self.sw } else { SW };
        let (kh, kw) = (self.kh, self.kw);
        let first = rows.start;
        for oy in rows {
            let mut ox0 = 0;
            while ox0 < self.wo {
                let m = RP.min(self.wo - ox0);
                let mut acc = [bias; RP];
                for ky in 0..kh {
                    let row = (oy * self.sh + ky * self.dh) * self.wp + ox0 * sw;
                    let rin = &grid[row * L..];
                    for kx in 0..kw {
                        let wv = load::<V4>(&wbuf[(ky * kw + kx) * L..]);
                        let rk = &rin[kx * self.dw * L..];
                        for (j, a) in acc.iter_mut().enumerate() {
                            let xv = load::<V4>(&rk[j * sw * L..]);
                            *a = simd.mul_add_e_f32s(xv, wv, *a);
                        }
                    }
                }
                let o = (oy - first) * self.wo + ox0;
                for (j, a) in acc.iter().enumerate().take(m) {
                    store::<V4>(&mut obuf[(o + j) * L..], act.apply(simd, *a));
                }
                ox0 += m;
            }
        }
    }

    /// [`DwT::compute`] for a 3x3 kernel with dilation 1 and column stride `SW` (1 or 2):
    /// the nine filter vectors stay in registers for the whole block, and each tap row's
    /// slice has a constant length, so its loads need no bounds checks (the general loop
    /// spent about half its time on those and on reloading the filter: 576x14x14, 49 ->
    /// 23 us). The same FMA sequence per output as the general loop.
    #[inline(always)]
    fn compute3x3<const SW: usize>(
        &self,
        rows: Range<usize>,
        grid: &[f32],
        wbuf: &[f32],
        bias: pulp::f32x16,
        act: DwAct,
        obuf: &mut [f32],
    ) {
        let simd = self.simd;
        let mut wv = [bias; 9];
        for (t, v) in wv.iter_mut().enumerate() {
            *v = load::<V4>(&wbuf[t * L..]);
        }
        // Grid positions one step's tap row reads.
        let span = ((RP - 1) * SW + 3) * L;
        let first = rows.start;
        for oy in rows {
            let mut ox0 = 0;
            while ox0 < self.wo {
                let m = RP.min(self.wo - ox0);
                let mut acc = [bias; RP];
                for ky in 0..3 {
                    let at = ((oy * self.sh + ky) * self.wp + ox0 * SW) * L;
                    let r = &grid[at..at + span];
                    for kx in 0..3 {
                        let w = wv[ky * 3 + kx];
                        for (j, a) in acc.iter_mut().enumerate() {
                            let xv = load::<V4>(&r[(j * SW + kx) * L..]);
                            *a = simd.mul_add_e_f32s(xv, w, *a);
                        }
                    }
                }
                let o = (oy - first) * self.wo + ox0;
                for (j, a) in acc.iter().enumerate().take(m) {
                    store::<V4>(&mut obuf[(o + j) * L..], act.apply(simd, *a));
                }
                ox0 += m;
            }
        }
    }

    /// `obuf` (`[position][16]`, positions `p0..` of the plane) back into the first `nc`
    /// channels' planes.
    #[inline(always)]
    fn transpose_out(&self, obuf: &[f32], nc: usize, op: usize, p0: usize, planes: &mut [f32]) {
        let f = self.simd.avx512f;
        let zero = f._mm512_setzero_ps();
        let np = obuf.len() / L;
        let mut i = 0;
        while i < np {
            let n = L.min(np - i);
            if n == L {
                // Constant trip counts (registers, no spills), as in `transpose_in`.
                let mut r = [zero; L];
                for (j, rj) in r.iter_mut().enumerate() {
                    *rj = m512(load::<V4>(&obuf[(i + j) * L..]));
                }
                let ps = &mut planes[p0 + i..];
                for (c, vc) in transpose16(self.simd, r).into_iter().enumerate() {
                    if c < nc {
                        store::<V4>(&mut ps[c * op..], f32s(vc));
                    }
                }
                i += L;
                continue;
            }
            let mut r = [zero; L];
            for (j, rj) in r.iter_mut().enumerate().take(n) {
                *rj = m512(load::<V4>(&obuf[(i + j) * L..]));
            }
            let v = transpose16(self.simd, r);
            for (c, vc) in v.iter().enumerate().take(nc) {
                let at = c * op + p0 + i;
                let dst = &mut planes[at..at + n];
                if n == L {
                    store::<V4>(dst, f32s(*vc));
                } else {
                    let mut t = [0.0f32; L];
                    store::<V4>(&mut t, f32s(*vc));
                    dst.copy_from_slice(&t[..n]);
                }
            }
            i += L;
        }
    }
}

/// Whether a kernel takes [`DwT::compute3x3`]: 3x3, dilation 1, column stride 1 or 2.
fn fast_3x3(kh: usize, kw: usize, dh: usize, dw: usize, sw: usize) -> bool {
    (kh, kw, dh, dw) == (3, 3, 1, 1) && matches!(sw, 1 | 2)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Input columns `cs` of the row-major `rows x cols` matrix `src` as the rows of `dst`
/// (`dst[(c - cs.start) * rows + r] = src[r * cols + c]`): whole 16x16 blocks through
/// [`transpose16`], the edges element by element.
pub(super) fn transpose_block(
    simd: V4,
    src: &[f32],
    rows: usize,
    cols: usize,
    cs: Range<usize>,
    dst: &mut [f32],
) {
    /// The token, `src`, `rows`, `cols`, `cs` and `dst`.
    struct Block<'a>(V4, &'a [f32], usize, usize, Range<usize>, &'a mut [f32]);
    impl pulp::WithSimd for Block<'_> {
        type Output = ();
        #[inline(always)]
        fn with_simd<S: pulp::Simd>(self, _: S) {
            let Block(simd, src, rows, cols, cs, dst) = self;
            let (c_full, r_full) = (cs.start + (cs.len() / L) * L, (rows / L) * L);
            for c in (cs.start..c_full).step_by(L) {
                for r in (0..r_full).step_by(L) {
                    let mut v = [simd.avx512f._mm512_setzero_ps(); L];
                    for (i, vi) in v.iter_mut().enumerate() {
                        *vi = m512(load::<V4>(&src[(r + i) * cols + c..]));
                    }
                    for (j, vj) in transpose16(simd, v).into_iter().enumerate() {
                        store::<V4>(&mut dst[(c + j - cs.start) * rows + r..], f32s(vj));
                    }
                }
                for j in c..c + L {
                    for r in r_full..rows {
                        dst[(j - cs.start) * rows + r] = src[r * cols + j];
                    }
                }
            }
            for j in c_full..cs.end {
                for r in 0..rows {
                    dst[(j - cs.start) * rows + r] = src[r * cols + j];
                }
            }
        }
    }
    pulp::Simd::vectorize(simd, Block(simd, src, rows, cols, cs, dst));
}

/// A 16x16 transpose in registers: `out[j]` lane `i` is `r[i]` lane `j`. Unpacks pair rows
/// per 128-bit lane, `shufps` gathers each lane's column of four rows, and two rounds of
/// `shuf_f32x4` transpose the 4x4 grid of 128-bit lanes.
#[inline(always)]
pub(super) fn transpose16(simd: V4, r: [__m512; L]) -> [__m512; L] {
    // Plain loops, no closures: a closure does not inherit the target features, and the
    // intrinsics inside one became out-of-line calls (4x slower than the plane kernels).
    let f = simd.avx512f;
    let mut t = [f._mm512_setzero_ps(); L];
    // t[2k], t[2k + 1]: rows 2k and 2k + 1 interleaved, columns 4L..4L+1 and 4L+2..4L+3 of
    // each 128-bit lane L.
    for k in 0..L / 2 {
        t[2 * k] = f._mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = f._mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // s[4k + c]: in lane L, column 4L + c of rows 4k..4k + 4.
    let mut s = [f._mm512_setzero_ps(); L];
    for k in 0..4 {
        s[4 * k] = f._mm512_shuffle_ps::<0x44>(t[4 * k], t[4 * k + 2]);
        s[4 * k + 1] = f._mm512_shuffle_ps::<0xEE>(t[4 * k], t[4 * k + 2]);
        s[4 * k + 2] = f._mm512_shuffle_ps::<0x44>(t[4 * k + 1], t[4 * k + 3]);
        s[4 * k + 3] = f._mm512_shuffle_ps::<0xEE>(t[4 * k + 1], t[4 * k + 3]);
    }
    // Per column c, the 4x4 grid of 128-bit lanes (rows of four by lanes) transposed.
    let mut out = [f._mm512_setzero_ps(); L];
    for c in 0..4 {
        let x0 = f._mm512_shuffle_f32x4::<0x44>(s[c], s[4 + c]);
        let x1 = f._mm512_shuffle_f32x4::<0xEE>(s[c], s[4 + c]);
        let x2 = f._mm512_shuffle_f32x4::<0x44>(s[8 + c], s[12 + c]);
        let x3 = f._mm512_shuffle_f32x4::<0xEE>(s[8 + c], s[12 + c]);
        out[c] = f._mm512_shuffle_f32x4::<0x88>(x0, x2);
        out[4 + c] = f._mm512_shuffle_f32x4::<0xDD>(x0, x2);
        out[8 + c] = f._mm512_shuffle_f32x4::<0x88>(x1, x3);
        out[12 + c] = f._mm512_shuffle_f32x4::<0xDD>(x1, x3);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose16_transposes() {
        let Some(simd) = V4::try_new() else {
            return;
        };
        let m: Vec<f32> = (0..L * L).map(|i| i as f32).collect();
        let r: [__m512; L] = std::array::from_fn(|i| m512(load::<V4>(&m[i * L..])));
        let out = transpose16(simd, r);
        for (j, v) in out.iter().enumerate() {
            let lanes: [f32; L] = bytemuck::cast(*v);
            for (i, &x) in lanes.iter().enumerate() {
                assert_eq!(x, m[i * L + j], "out[{j}] lane {i}");
            }
        }
    }
}
