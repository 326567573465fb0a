//! Channel-vectorised direct convolution for small output planes (late layers: 28x28 down to
//! 7x7, any stride and dilation, one group).
//!
//! Vectors along output positions waste lanes when a plane is a few vectors wide (a 7x7
//! plane fills 49 of 64 lanes); vectors along output *channels* never do when the channel
//! count is a multiple of 32. The filter is packed once, at prepare time, into blocks of 32
//! output channels, `[block][tap][32]`, so one tap of a block is two contiguous AVX-512
//! vectors. A step computes 8 output positions by 32 channels (16 accumulators; 7 positions
//! where that computes fewer in all, as on a 7x7 plane; AVX2: 3 by 32 in 12): per tap it loads the block's filter vectors and broadcasts each position's input
//! value, read straight from the (once padded) input at `base[position] + offset[tap]` with
//! `base = (oy * sh) * wp + ox * sw` and `offset = ci * plane + ky * dh * wp + kx * dw`: no
//! im2col, no packing per run. Results leave the registers through a small buffer, and a
//! whole step is transposed in registers into 8-position runs of each channel's NCHW row.
//!
//! Determinism: every output element is `bias + sum over taps in order` with the same FMA
//! sequence wherever its block and step fall, so any split of channel blocks between workers
//! gives bit-identical results.

use super::conv::{DwAct, ResRows};
use super::lanes::{load, store};

/// Output channels per packed block.
pub(super) const CO_BLOCK: usize = 32;
/// Output positions one AVX-512 step computes.
const STEP: usize = 8;

/// A filter packed for [`CoRows`]: `[blocks][kdim][CO_BLOCK]`, channels past `c_out` zero, and
/// the bias padded the same way.
#[derive(Debug, Clone)]
pub(super) struct CoPacked {
    w: Vec<f32>,
    bias: Vec<f32>,
    kdim: usize,
}

impl CoPacked {
    /// Packs `w` (`[c_out, kdim]`, ONNX order) and `bias`.
    pub(super) fn new(w: &[f32], c_out: usize, kdim: usize, bias: Option<&[f32]>) -> Self {
        let blocks = c_out.div_ceil(CO_BLOCK);
        let mut packed = vec![0.0; blocks * kdim * CO_BLOCK];
        for (co, row) in w.chunks(kdim).take(c_out).enumerate() {
            let (b, c) = (co / CO_BLOCK, co % CO_BLOCK);
            let blk = &mut packed[b * kdim * CO_BLOCK..(b + 1) * kdim * CO_BLOCK];
            for (k, &v) in row.iter().enumerate() {
                blk[k * CO_BLOCK + c] = v;
            }
        }
        let mut pb = vec![0.0; blocks * CO_BLOCK];
        if let Some(b) = bias {
            pb[..c_out].copy_from_slice(&b[..c_out]);
        }
        Self {
            w: packed,
            bias: pb,
            kdim,
        }
    }

    /// Elements held (for memory accounting).
    pub(super) fn len(&self) -> usize {
        self.w.len() + self.bias.len()
    }
}

/// Output channel rows (whole blocks from block `first_block`, the last possibly cut at
/// `c_out`), each over the positions of `bases`, computed from the (padded) input `x`. Run
/// through pulp's dispatch.
pub(super) struct CoRows<'a, 'b> {
    pub packed: &'a CoPacked,
    pub first_block: usize,
    pub x: &'a [f32],
    /// Per tap, its offset from a position's base.
    pub offs: &'a [usize],
    /// Per output position of the rows, where its window starts in `x`.
    pub bases: &'a [usize],
    /// One slice per output channel, `bases.len()` positions each.
    pub rows: &'a mut [&'b mut [f32]],
    /// Relu or Clip applied to the vectors before they are stored (a pass over each short
    /// row afterwards costs a dispatch per row: 960 rows of 7x7 in MobileNetV2).
    pub act: DwAct,
    /// Taps per pass over a block's positions (see [`CoRows::run`]); `>= kdim`: one pass.
    pub taps_per_pass: usize,
    /// Partial sums between passes: [`co_partial_len`] elements for `bases.len()`
    /// positions when `taps_per_pass < kdim` (unused otherwise).
    pub partial: &'a mut [f32],
    /// Prefetch each pass's successor (see [`CoRows::run`]): for filters read once per
    /// inference, cold from DRAM, in short passes. (x86-64 only: elsewhere it is ignored.)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub prefetch: bool,
    /// A residual added to the finished sums before the activation, as a conv followed by
    /// an Add would (the sum rounded, then the addition): row `r` is the residual of
    /// `rows[r]`, position `j` of `bases[j]`.
    pub res: ResRows<'a>,
}

/// Writes `act(src[j] + residual[j])` into `dst`: the residual of row `c` of `res` (the
/// output row itself in place), from position `j0` on.
#[inline(always)]
fn res_store(res: ResRows<'_>, dst: &mut [f32], src: &[f32], c: usize, j0: usize, act: DwAct) {
    match res {
        ResRows::None => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = act.scalar(v);
            }
        }
        ResRows::InPlace => {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = act.scalar(v + *d);
            }
        }
        ResRows::Separate { data, at, plane } => {
            let r = data.get(at + c * plane + j0..).unwrap_or_default();
            for ((d, &v), &r) in dst.iter_mut().zip(src).zip(r) {
                *d = act.scalar(v + r);
            }
        }
    }
}

/// Elements of [`CoRows::partial`] for `p` positions: every step's accumulators, in steps of
/// 7 and 8 positions (AVX-512) or 3 (AVX2).
pub(super) fn co_partial_len(p: usize) -> usize {
    steps_of(p, 3).max(steps_of(p, 7)).max(steps_of(p, STEP)) * CO_BLOCK
}

/// Where steps of 8 positions give way to steps of 7 (AVX-512): from 49 positions on, every
/// count is whole steps of the two (`p - 7b` a multiple of 8 for `b = -p mod 8`), so no step
/// computes positions it does not store. SqueezeNet's 13x13 planes: 169 = 15 x 8 + 7 x 7
/// where steps of 8 computed 176; ResNet's 14x14: 196 = 21 x 8 + 4 x 7, not 200. Below 49,
/// all steps of 7 where that computes fewer (a 7x7 plane: 49 in place of 56), else of 8.
pub(super) fn eights_up_to(p: usize) -> usize {
    let sevens = (STEP - p % STEP) % STEP;
    if 7 * sevens <= p {
        p - 7 * sevens
    } else if steps_of(p, 7) < steps_of(p, STEP) {
        0
    } else {
        p
    }
}

impl pulp::WithSimd for CoRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match S::F32_LANES {
            16 => {
                let split = eights_up_to(self.bases.len());
                self.run::<S, 2, STEP, 7>(simd, split)
            }
            // AVX2: 4 vectors of 8 lanes by 3 positions fit its 16 registers.
            8 => {
                let p = self.bases.len();
                self.run::<S, 4, 3, 3>(simd, p)
            }
            _ => self.run_scalar(),
        }
    }
}

/// What every step of one block and pass shares (see [`CoRows::steps`]). The prefetch's
/// fields are read on x86-64 only.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Pass<'w> {
    /// The pass's filter rows (taps `k0..k1` of the block) and tap offsets.
    w: &'w [f32],
    offs: &'w [usize],
    bias: &'w [f32],
    b: usize,
    bi: usize,
    k1: usize,
    first: bool,
    last: bool,
    /// Prefetch the next pass's rows, spread over `steps` steps.
    prefetch: bool,
    steps: usize,
}

impl CoRows<'_, '_> {
    /// Per block, the taps in passes of `taps_per_pass`, every step of positions per pass:
    /// a pass's filter rows and input channels stay in L2 while its steps read them. In one
    /// pass over every tap, each step read all input channels, which on VGG's 512x28x28
    /// (1.8 MB padded) plus a 590 KB filter block left L2 for L3 at every step: 105 GFLOP/s
    /// on one thread but only 1.5x on two, the L3 shared. Between passes the accumulators
    /// wait in `partial` (exact f32 values, so every output is the same FMA sequence as one
    /// pass). Positions `..split` go in steps of `RA`, the rest in steps of `RB`.
    #[inline(always)]
    fn run<S: pulp::Simd, const NV: usize, const RA: usize, const RB: usize>(
        mut self,
        simd: S,
        split: usize,
    ) {
        debug_assert_eq!(NV * S::F32_LANES, CO_BLOCK);
        let p = self.bases.len();
        if p == 0 {
            return;
        }
        let kdim = self.packed.kdim;
        let kc = self.taps_per_pass.clamp(1, kdim.max(1));
        // Short passes (long 1x1 reductions on small planes) prefetch the next pass's filter
        // rows, spread over their steps: a pass reads its rows once, on its first step, which
        // from DRAM stalled the FMAs (`kernel_bench --cold`, 1 thread, ms: 1024->352 on 7x7
        // 0.446 -> 0.401, 960->320 0.367 -> 0.345, 1024->128 0.174 -> 0.155; hot 2-3 %
        // slower; in Inception-v2, 1024->352 on 7x7 0.413-0.418 -> 0.369-0.373). A long
        // pass's next rows would evict its own from L2 (512->512 3x3 on 7x7, one pass: 7-9 %
        // slower), and Winograd's products, whose filters stay in L2 and L3 between
        // products, lost 3-11 % hot.
        let prefetch = cfg!(target_arch = "x86_64")
            && self.prefetch
            && kc < kdim
            && kc * CO_BLOCK * std::mem::size_of::<f32>() <= PREFETCH_PASS_BYTES;
        let split = split.min(p);
        let steps = split.div_ceil(RA) + (p - split).div_ceil(RB);
        let blocks = self.rows.len().div_ceil(CO_BLOCK);
        for bi in 0..blocks {
            let b = self.first_block + bi;
            let packed = self.packed;
            let wblk = &packed.w[b * kdim * CO_BLOCK..(b + 1) * kdim * CO_BLOCK];
            let offs = self.offs;
            let mut k0 = 0;
            loop {
                let k1 = (k0 + kc).min(kdim);
                let pass = Pass {
                    w: &wblk[k0 * CO_BLOCK..k1 * CO_BLOCK],
                    offs: &offs[k0..k1],
                    bias: &packed.bias[b * CO_BLOCK..(b + 1) * CO_BLOCK],
                    b,
                    bi,
                    k1,
                    first: k0 == 0,
                    last: k1 == kdim,
                    prefetch,
                    steps,
                };
                self.steps::<S, NV, RA>(simd, &pass, 0, 0..split);
                self.steps::<S, NV, RB>(simd, &pass, split.div_ceil(RA), split..p);
                if pass.last {
                    break;
                }
                k0 = k1;
            }
        }
    }

    /// One pass of one block over positions `js` in steps of `RP` (a short last step repeats
    /// its last position: computed, not stored); `step0` numbers the first step.
    #[inline(always)]
    fn steps<S: pulp::Simd, const NV: usize, const RP: usize>(
        &mut self,
        simd: S,
        pass: &Pass<'_>,
        step0: usize,
        js: std::ops::Range<usize>,
    ) {
        let lanes = S::F32_LANES;
        let kdim = self.packed.kdim;
        let n_rows = self.rows.len();
        let rows = &mut self.rows[pass.bi * CO_BLOCK..((pass.bi + 1) * CO_BLOCK).min(n_rows)];
        let res = self.res.skip_rows(pass.bi * CO_BLOCK);
        // The activation: in registers without a residual, after its addition with one.
        let residual = !matches!(self.res, ResRows::None);
        // Steps leave through registers (see [`StoreRows`]) where AVX-512 runs (and only
        // under its dispatch, so a narrower one, as in the tests, runs its own stores).
        #[cfg(target_arch = "x86_64")]
        let v4 = pulp::x86::V4::try_new().filter(|_| S::F32_LANES == 16);
        let mut buf = [0.0f32; STEP * CO_BLOCK];
        let mut j0 = js.start;
        let mut step = step0;
        while j0 < js.end {
            let m = RP.min(js.end - j0);
            let base: [usize; RP] = std::array::from_fn(|j| self.bases[j0 + j.min(m - 1)]);
            // This step's accumulators in `partial`: `RP` positions by the block.
            let at = j0 * CO_BLOCK;
            #[cfg(target_arch = "x86_64")]
            if let Some(v4) = v4.filter(|_| pass.prefetch) {
                // The next pass's filter rows (the next block's first after the last), a
                // share per step into L2.
                let next = self
                    .packed
                    .w
                    .as_ptr()
                    .wrapping_add((pass.b * kdim + pass.k1) * CO_BLOCK);
                let lines = pass.w.len() / 16;
                for l in step * lines / pass.steps..(step + 1) * lines / pass.steps {
                    v4.sse._mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T1 }>(
                        next.wrapping_add(l * 16).cast(),
                    );
                }
            }
            let mut acc = [[simd.splat_f32s(0.0); NV]; RP];
            for (j, acc_j) in acc.iter_mut().enumerate() {
                for (v, a) in acc_j.iter_mut().enumerate() {
                    // Whole vectors: pulp's partial loads and stores are calls.
                    *a = if pass.first {
                        load::<S>(&pass.bias[v * lanes..])
                    } else {
                        load::<S>(&self.partial[at + j * CO_BLOCK + v * lanes..])
                    };
                }
            }
            let acc = sum::<S, NV, RP>(simd, acc, pass.w, self.x, pass.offs, &base);
            if !pass.last {
                for (j, acc_j) in acc.iter().enumerate() {
                    for (v, a) in acc_j.iter().enumerate() {
                        store::<S>(&mut self.partial[at + j * CO_BLOCK + v * lanes..], *a);
                    }
                }
                j0 += m;
                step += 1;
                continue;
            }
            for (j, acc_j) in acc.iter().enumerate().take(m) {
                for (v, a) in acc_j.iter().enumerate() {
                    // With a residual the activation waits for its addition.
                    let a = if residual {
                        *a
                    } else {
                        self.act.apply(simd, *a)
                    };
                    store::<S>(&mut buf[j * CO_BLOCK + v * lanes..], a);
                }
            }
            #[cfg(target_arch = "x86_64")]
            if let Some(v4) = v4 {
                pulp::Simd::vectorize(
                    v4,
                    StoreRows {
                        v4,
                        buf: &buf,
                        rows: &mut *rows,
                        j0,
                        m,
                        res,
                        act: self.act,
                    },
                );
                j0 += m;
                step += 1;
                continue;
            }
            for (c, row) in rows.iter_mut().enumerate() {
                for (j, o) in row[j0..j0 + m].iter_mut().enumerate() {
                    let v = buf[j * CO_BLOCK + c];
                    if residual {
                        res_store(res, std::slice::from_mut(o), &[v], c, j0 + j, self.act);
                    } else {
                        *o = v;
                    }
                }
            }
            j0 += m;
            step += 1;
        }
    }

    /// Without 8- or 16-lane vectors: the same sums, one element at a time.
    fn run_scalar(self) {
        let p = self.bases.len();
        if p == 0 {
            return;
        }
        let kdim = self.packed.kdim;
        for (bi, rows) in self.rows.chunks_mut(CO_BLOCK).enumerate() {
            let b = self.first_block + bi;
            let wblk = &self.packed.w[b * kdim * CO_BLOCK..(b + 1) * kdim * CO_BLOCK];
            let res = self.res.skip_rows(bi * CO_BLOCK);
            for (c, row) in rows.iter_mut().enumerate() {
                for (j, (o, &base)) in row.iter_mut().zip(self.bases).enumerate() {
                    let mut acc = self.packed.bias[b * CO_BLOCK + c];
                    for (k, &off) in self.offs.iter().enumerate() {
                        acc = self.x[base + off].mul_add(wblk[k * CO_BLOCK + c], acc);
                    }
                    res_store(res, std::slice::from_mut(o), &[acc], c, j, self.act);
                }
            }
        }
    }
}

/// One step (up to `STEP` positions by the block's channels, `buf` as `[position][CO_BLOCK]`)
/// into the channel rows at `j0`, transposed in registers: per 16 channels, unpacks and
/// shuffles turn the 8 position vectors into 8 vectors of two channels' 8 positions each,
/// stored as 256-bit halves, in place of 256 scalar loads and stores per step. Measured in
/// one process, the two ways alternating run by run (`kernel_bench`, medians of 20 runs
/// each): the 7x7/2 stems over RGB (147 taps a step, 3.2 MB of output) 0.81-0.90 of the
/// time at 1 and 2 threads, 3x3 convs on 28x28 0.93-0.95, 160->960 1x1 on 7x7 (steps of 7)
/// 0.93, long reductions unchanged. Short steps (7 positions, a plane's last) take it too.
#[cfg(target_arch = "x86_64")]
struct StoreRows<'a, 'b> {
    v4: pulp::x86::V4,
    buf: &'a [f32; STEP * CO_BLOCK],
    rows: &'a mut [&'b mut [f32]],
    j0: usize,
    /// Positions of the step (`<= STEP`; the rest of `buf` is ignored).
    m: usize,
    /// The block's residual: with one, each value is `act(buf + residual)`; without,
    /// `buf` is final.
    res: ResRows<'a>,
    act: DwAct,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for StoreRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        // Two instances: the residual's code stays out of the plain stores (in them it cost
        // a Winograd 128->128 on 28x28 a third of its time: its moves became calls).
        if matches!(self.res, ResRows::None) {
            self.transpose::<false>();
        } else {
            self.transpose::<true>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl StoreRows<'_, '_> {
    #[inline(always)]
    fn transpose<const RES: bool>(self) {
        use super::v4::{f32s, m512, L};
        use core::arch::x86_64::__m512i;
        // Lanes 0-3 of `a`, then of `b`, then lanes 4-7 of each (`LO`); 8-11 and 12-15 (`HI`).
        const LO: [i32; L] = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
        const HI: [i32; L] = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
        let f = self.v4.avx512f;
        let (lo, hi): (__m512i, __m512i) = (bytemuck::cast(LO), bytemuck::cast(HI));
        let (j0, m) = (self.j0, self.m);
        for (half, rows) in self.rows.chunks_mut(L).enumerate() {
            let r: [_; STEP] = std::array::from_fn(|j| {
                m512(load::<pulp::x86::V4>(&self.buf[j * CO_BLOCK + half * L..]))
            });
            // Per 128-bit lane k (channels 4k..4k+4): t = positions (0,1), (2,3), ... paired.
            let t = [
                f._mm512_unpacklo_ps(r[0], r[1]),
                f._mm512_unpackhi_ps(r[0], r[1]),
                f._mm512_unpacklo_ps(r[2], r[3]),
                f._mm512_unpackhi_ps(r[2], r[3]),
                f._mm512_unpacklo_ps(r[4], r[5]),
                f._mm512_unpackhi_ps(r[4], r[5]),
                f._mm512_unpacklo_ps(r[6], r[7]),
                f._mm512_unpackhi_ps(r[6], r[7]),
            ];
            // u[i] (u[4 + i]): in lane k, positions 0-3 (4-7) of channel 4k + i.
            let u = [
                f._mm512_shuffle_ps::<0x44>(t[0], t[2]),
                f._mm512_shuffle_ps::<0xEE>(t[0], t[2]),
                f._mm512_shuffle_ps::<0x44>(t[1], t[3]),
                f._mm512_shuffle_ps::<0xEE>(t[1], t[3]),
                f._mm512_shuffle_ps::<0x44>(t[4], t[6]),
                f._mm512_shuffle_ps::<0xEE>(t[4], t[6]),
                f._mm512_shuffle_ps::<0x44>(t[5], t[7]),
                f._mm512_shuffle_ps::<0xEE>(t[5], t[7]),
            ];
            for i in 0..4 {
                // Channels i and 4 + i (`LO`), 8 + i and 12 + i (`HI`): 8 positions each.
                for (sel, c0) in [(lo, i), (hi, 8 + i)] {
                    let mut vv = f._mm512_permutex2var_ps(u[i], sel, u[4 + i]);
                    // A residual: loaded as the same two runs and added in one vector
                    // (scalar adds of runs read across 32 rows cost a GEMM-fused residual
                    // join 18 %), then the activation; a short step or a missing row adds
                    // element by element below.
                    let gathered = if RES {
                        gather_res(self.v4, self.res, rows, half * L, c0, j0, m)
                    } else {
                        None
                    };
                    let whole = match gathered {
                        Some(r) => {
                            let sum = f32s(f._mm512_add_ps(vv, r));
                            vv = m512(self.act.apply(self.v4, sum));
                            true
                        }
                        None => false,
                    };
                    let v: [f32; L] = bytemuck::cast(vv);
                    for (part, c) in [c0, c0 + 4].into_iter().enumerate() {
                        if let Some(row) = rows.get_mut(c) {
                            let src = &v[part * STEP..];
                            // Constant lengths for whole steps (8, or 7 on 7x7 planes): an
                            // inline move; a length known only at run time is a `memmove`
                            // call per row (10 % of a 7x7/2 stem in `perf`).
                            if whole || !RES {
                                match m {
                                    STEP => row[j0..j0 + STEP].copy_from_slice(&src[..STEP]),
                                    7 => row[j0..j0 + 7].copy_from_slice(&src[..7]),
                                    _ => row[j0..j0 + m].copy_from_slice(&src[..m]),
                                }
                            } else {
                                let ch = half * L + c;
                                let dst = &mut row[j0..j0 + m];
                                res_store(self.res, dst, &src[..m], ch, j0, self.act);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The residual of channels `c0` and `c0 + 4` (of the rows from channel `first` of the
/// block), `m` positions each from `j0`, laid out as [`StoreRows`] holds the two channels'
/// sums (two 256-bit runs, loaded straight from the rows: built in memory, one 512-bit load
/// over two 256-bit stores stalls on store forwarding): `None` without a residual, for a
/// step other than 8 or 7 positions, or where a row is missing (the block's last channels).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn gather_res(
    v4: pulp::x86::V4,
    res: ResRows<'_>,
    rows: &[&mut [f32]],
    first: usize,
    c0: usize,
    j0: usize,
    m: usize,
) -> Option<core::arch::x86_64::__m512> {
    use core::arch::x86_64::__m256;
    if matches!(res, ResRows::None) || !(m == STEP || m == 7) {
        return None;
    }
    let run = |c: usize| -> Option<__m256> {
        let (src, j0): (&[f32], usize) = match res {
            ResRows::Separate { data, at, plane } => (data, at + (first + c) * plane + j0),
            _ => (rows.get(c)?, j0),
        };
        // Steps of 7 read one position on where the row has it (lane 8 is not stored).
        Some(match src.get(j0..j0 + STEP) {
            Some(s) => bytemuck::pod_read_unaligned(bytemuck::cast_slice(s)),
            None => {
                let mut t = [0.0f32; STEP];
                t[..7].copy_from_slice(src.get(j0..j0 + 7)?);
                bytemuck::cast(t)
            }
        })
    };
    let (a, b) = (run(c0)?, run(c0 + 4)?);
    let lo = v4.avx512f._mm512_castps256_ps512(a);
    Some(v4.avx512dq._mm512_insertf32x8::<1>(lo, b))
}

/// Largest pass (filter rows of one block) whose successor [`CoRows::run`] prefetches.
#[cfg(target_arch = "x86_64")]
const PREFETCH_PASS_BYTES: usize = 32 * 1024;

/// Positions computed for `p` in steps of `rp` (a short last step computes a whole one).
fn steps_of(p: usize, rp: usize) -> usize {
    p.div_ceil(rp) * rp
}

/// Adds every tap to the accumulators: loops over `RP` and `NV` have constant trip counts so
/// the accumulators stay in registers (returned by value for the same reason).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn sum<S: pulp::Simd, const NV: usize, const RP: usize>(
    simd: S,
    mut acc: [[S::f32s; NV]; RP],
    wblk: &[f32],
    x: &[f32],
    offs: &[usize],
    base: &[usize; RP],
) -> [[S::f32s; NV]; RP] {
    let lanes = S::F32_LANES;
    for (k, &off) in offs.iter().enumerate() {
        let wk = &wblk[k * CO_BLOCK..(k + 1) * CO_BLOCK];
        let wv: [S::f32s; NV] = std::array::from_fn(|v| {
            bytemuck::pod_read_unaligned(bytemuck::cast_slice(&wk[v * lanes..(v + 1) * lanes]))
        });
        for j in 0..RP {
            let xv = simd.splat_f32s(x[base[j] + off]);
            for v in 0..NV {
                acc[j][v] = simd.mul_add_e_f32s(xv, wv[v], acc[j][v]);
            }
        }
    }
    acc
}
