//! `MatMul` and `Gemm` against a constant right-hand matrix packed once, at load: the
//! weights of a transformer's projections and feed-forward layers.
//!
//! Why: the `gemm` crate packs both operands on every call. With a constant `B` that is
//! wasted work on every inference, and on a transformer encoder's 128-token products (K of
//! 256 or 1024) `perf` put it at a fifth of the model's time (19 % in `gemm_common`, 63 %
//! in its microkernels). onnxruntime packs such weights once at session start.
//!
//! Layout: `B` (`[K, N]`, or `[N, K]` for a `Gemm` with `transB`) becomes
//! `[N / 32][K][32]`, so one row `k` of a block of 32 output columns is two contiguous
//! AVX-512 vectors; columns past `N` are zero, and so is their bias. A step computes
//! `RP` rows by one block (8 x 32 = 16 accumulators under AVX-512, 3 x 32 in 12 under AVX2):
//! per `k` it loads the block's two vectors and broadcasts each row's `A[m][k]`, read in
//! place (no packing of `A`). A worker takes a contiguous range of rows and runs it block by
//! block, so a block (`K x 128` bytes: 32 KiB at K = 256) stays in L1/L2 while its steps
//! read it.
//!
//! Determinism: every output is the sum over `k` in order of fused multiply-adds, then the
//! bias, the same sequence wherever its step and worker fall, so results do not depend on
//! `threads`.

use super::conv::{apply_activation, DwAct};
use super::elementwise::{check_unary, UnaryOp};
use super::error::{check_len, KernelResult};
use super::lanes::{load, store};
use super::par::par_chunks_scratch;

/// Output columns per packed block.
const NB: usize = 32;
/// Rows one AVX-512 step computes (one AVX2 step: 3).
const STEP: usize = 8;

/// A constant right-hand matrix packed for [`PackedB::run`], with its bias (`beta * C` of a
/// `Gemm` whose `C` is a constant row vector or scalar), padded to whole blocks.
#[derive(Debug, Clone)]
pub struct PackedB {
    w: Vec<f32>,
    bias: Vec<f32>,
    k: usize,
    n: usize,
}

impl PackedB {
    /// Packs `b`: `[k, n]` row-major, or `[n, k]` when `trans_b`. `bias`, when given, holds
    /// `n` values added to every row.
    ///
    /// # Errors
    /// `b` or `bias` of the wrong length.
    pub fn new(
        b: &[f32],
        k: usize,
        n: usize,
        trans_b: bool,
        bias: Option<&[f32]>,
    ) -> KernelResult<Self> {
        const OP: &str = "MatMul";
        check_len(OP, "B", b.len(), k * n)?;
        if let Some(c) = bias {
            check_len(OP, "bias", c.len(), n)?;
        }
        let blocks = n.div_ceil(NB);
        let mut w = vec![0.0; blocks * k * NB];
        // `max(1)`: an empty reduction packs nothing (and chunks of 0 are not allowed).
        for (blk, dst) in w.chunks_exact_mut((k * NB).max(1)).enumerate() {
            for (kk, row) in dst.chunks_exact_mut(NB).enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    let col = blk * NB + c;
                    if col < n {
                        *v = if trans_b {
                            b[col * k + kk]
                        } else {
                            b[kk * n + col]
                        };
                    }
                }
            }
        }
        let mut padded = vec![0.0; blocks * NB];
        if let Some(c) = bias {
            padded[..n].copy_from_slice(c);
        }
        Ok(Self {
            w,
            bias: padded,
            k,
            n,
        })
    }

    /// The reduction length `K`.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The output columns `N`.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held (for memory accounting).
    pub fn bytes(&self) -> usize {
        (self.w.len() + self.bias.len()) * 4
    }

    /// `out[i][j] = act((sum over k of a[i][k] * B[k][j]) + bias[j])` for the `m` rows of `a`
    /// (row-major `[m, K]`); `out` is `[m, N]` row-major. The sum is rounded before the bias
    /// is added, as a `MatMul` followed by an `Add` (or the host GEMM adding `C`) rounds it.
    ///
    /// # Errors
    /// `a` or `out` of the wrong length, or an activation the unary kernels reject.
    pub fn run(
        &self,
        a: &[f32],
        m: usize,
        out: &mut [f32],
        act: Option<UnaryOp>,
        threads: usize,
    ) -> KernelResult<()> {
        const OP: &str = "MatMul";
        let (k, n) = (self.k, self.n);
        check_len(OP, "A", a.len(), m * k)?;
        check_len(OP, "Y", out.len(), m * n)?;
        if m == 0 || n == 0 || k == 0 {
            if k == 0 {
                // An empty reduction: every output is its bias.
                for row in out.chunks_exact_mut(n.max(1)) {
                    row.copy_from_slice(&self.bias[..n]);
                }
                if let Some(act) = act {
                    check_unary(act)?;
                    apply_activation(act, out);
                }
            }
            return Ok(());
        }
        if let Some(act) = act {
            check_unary(act)?;
        }
        let (vact, rest) = DwAct::split(act);
        // Whole steps per worker; each worker streams every block of B once.
        par_chunks_scratch(
            out,
            STEP * n,
            threads,
            &mut [0u8; 0],
            0,
            |first, piece, _| -> KernelResult<()> {
                let r0 = first * STEP;
                let rows = piece.len() / n;
                pulp::Arch::new().dispatch(Rows {
                    packed: self,
                    a: &a[r0 * k..(r0 + rows) * k],
                    out: &mut *piece,
                    act: vact,
                });
                if let Some(act) = rest {
                    apply_activation(act, piece);
                }
                Ok(())
            },
        )
    }
}

/// A range of rows of `A` and their rows of the output, computed block by block.
struct Rows<'a> {
    packed: &'a PackedB,
    a: &'a [f32],
    out: &'a mut [f32],
    /// Relu or Clip applied to the vectors before they are stored.
    act: DwAct,
}

impl pulp::WithSimd for Rows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        match S::F32_LANES {
            16 => self.run::<S, 2, STEP>(simd),
            8 => self.run::<S, 4, 3>(simd),
            _ => self.run_scalar(),
        }
    }
}

impl Rows<'_> {
    #[inline(always)]
    fn run<S: pulp::Simd, const NV: usize, const RP: usize>(self, simd: S) {
        let lanes = S::F32_LANES;
        debug_assert_eq!(NV * lanes, NB);
        let (k, n) = (self.packed.k, self.packed.n);
        let m = self.out.len() / n;
        for (blk, wb) in self.packed.w.chunks_exact(k * NB).enumerate() {
            let c0 = blk * NB;
            let nc = NB.min(n - c0);
            let bias: [S::f32s; NV] =
                std::array::from_fn(|v| load::<S>(&self.packed.bias[c0 + v * lanes..]));
            let mut r0 = 0;
            while r0 < m {
                let mr = RP.min(m - r0);
                // A short last step repeats its last row (computed, not stored).
                let rows: [&[f32]; RP] = std::array::from_fn(|j| {
                    let r = r0 + j.min(mr - 1);
                    &self.a[r * k..r * k + k]
                });
                let acc = sum::<S, NV, RP>(simd, [[simd.splat_f32s(0.0); NV]; RP], wb, &rows);
                for (j, acc_j) in acc.iter().enumerate().take(mr) {
                    let dst = &mut self.out[(r0 + j) * n + c0..(r0 + j) * n + c0 + nc];
                    // A plain loop: intrinsics in a closure are not inlined.
                    let mut vals = *acc_j;
                    for (x, b) in vals.iter_mut().zip(&bias) {
                        *x = self.act.apply(simd, simd.add_f32s(*x, *b));
                    }
                    if nc == NB {
                        for (v, x) in vals.iter().enumerate() {
                            store::<S>(&mut dst[v * lanes..], *x);
                        }
                    } else {
                        let mut t = [0.0f32; NB];
                        for (v, x) in vals.iter().enumerate() {
                            store::<S>(&mut t[v * lanes..], *x);
                        }
                        dst.copy_from_slice(&t[..nc]);
                    }
                }
                r0 += mr;
            }
        }
    }

    /// Without 8- or 16-lane vectors: the same sums, one element at a time.
    fn run_scalar(self) {
        let (k, n) = (self.packed.k, self.packed.n);
        for (arow, orow) in self.a.chunks_exact(k).zip(self.out.chunks_exact_mut(n)) {
            for (j, o) in orow.iter_mut().enumerate() {
                let (blk, c) = (j / NB, j % NB);
                let wb = &self.packed.w[blk * k * NB..(blk + 1) * k * NB];
                let mut acc = 0.0f32;
                for (kk, &x) in arow.iter().enumerate() {
                    acc = x.mul_add(wb[kk * NB + c], acc);
                }
                *o = self.act.scalar(acc + self.packed.bias[j]);
            }
        }
    }
}

/// Adds every `k` to the accumulators: loops over `RP` and `NV` have constant trip counts so
/// the accumulators stay in registers (returned by value for the same reason).
#[allow(clippy::needless_range_loop)]
#[inline(always)]
fn sum<S: pulp::Simd, const NV: usize, const RP: usize>(
    simd: S,
    mut acc: [[S::f32s; NV]; RP],
    wb: &[f32],
    rows: &[&[f32]; RP],
) -> [[S::f32s; NV]; RP] {
    let lanes = S::F32_LANES;
    for (kk, wk) in wb.chunks_exact(NB).enumerate() {
        let wv: [S::f32s; NV] = std::array::from_fn(|v| load::<S>(&wk[v * lanes..]));
        for j in 0..RP {
            let xv = simd.splat_f32s(rows[j][kk]);
            for v in 0..NV {
                acc[j][v] = simd.mul_add_e_f32s(xv, wv[v], acc[j][v]);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::testutil::rand_vec;
    use rstest::rstest;

    /// `act(sum + bias)` per output, the sum in f64 (the kernel's f32 FMA chain is compared
    /// within a tolerance).
    fn naive(
        a: &[f32],
        b: &[f32],
        (m, k, n): (usize, usize, usize),
        trans_b: bool,
        bias: Option<&[f32]>,
    ) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|kk| {
                        let bv = if trans_b {
                            b[j * k + kk]
                        } else {
                            b[kk * n + j]
                        };
                        f64::from(a[i * k + kk]) * f64::from(bv)
                    })
                    .sum();
                out[i * n + j] = s as f32 + bias.map_or(0.0, |c| c[j]);
            }
        }
        out
    }

    /// Rows that leave a short last step, columns that leave a partial block, both layouts
    /// of `B`, with and without a bias, activations in registers (Relu, Clip) and after the
    /// rows (Sigmoid): against the naive sum, and the same bits at 1, 2 and 3 threads.
    #[rstest]
    #[case(8, 16, 32, false)]
    #[case(13, 40, 70, false)]
    #[case(29, 7, 96, true)]
    #[case(128, 256, 100, true)]
    #[case(3, 5, 33, false)]
    fn packed_products_match_the_naive_sum(
        #[case] m: usize,
        #[case] k: usize,
        #[case] n: usize,
        #[case] trans_b: bool,
    ) {
        let a = rand_vec(m * k, 1);
        let b = rand_vec(k * n, 2);
        let c = rand_vec(n, 3);
        let acts = [
            None,
            Some(UnaryOp::Relu),
            Some(UnaryOp::Clip {
                min: -0.5,
                max: 0.5,
            }),
            Some(UnaryOp::Sigmoid),
        ];
        for bias in [None, Some(&c[..])] {
            let p = PackedB::new(&b, k, n, trans_b, bias).unwrap();
            assert_eq!((p.k(), p.n()), (k, n));
            let plain = naive(&a, &b, (m, k, n), trans_b, bias);
            for act in acts {
                let mut want = plain.clone();
                if let Some(act) = act {
                    crate::kernels::unary_f32_inplace(act, &mut want, 1).unwrap();
                }
                let mut first: Option<Vec<f32>> = None;
                for threads in [1, 2, 3] {
                    let mut out = vec![f32::NAN; m * n];
                    p.run(&a, m, &mut out, act, threads).unwrap();
                    for (i, (g, w)) in out.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() <= 1e-5 * (1.0 + w.abs()) * k as f32,
                            "{m}x{k}x{n} {act:?} bias {} [{i}]: {g} vs {w}",
                            bias.is_some()
                        );
                    }
                    match &first {
                        None => first = Some(out),
                        Some(f) => assert!(
                            f.iter().zip(&out).all(|(x, y)| x.to_bits() == y.to_bits()),
                            "{threads} threads changed the bits"
                        ),
                    }
                }
            }
        }
    }

    #[test]
    fn an_empty_reduction_gives_the_bias_and_bad_lengths_are_typed_errors() {
        let c = [1.0, -2.0, 3.0];
        let p = PackedB::new(&[], 0, 3, false, Some(&c)).unwrap();
        let mut out = [0.0; 6];
        p.run(&[], 2, &mut out, Some(UnaryOp::Relu), 1).unwrap();
        assert_eq!(out, [1.0, 0.0, 3.0, 1.0, 0.0, 3.0]);
        assert!(PackedB::new(&[1.0; 5], 2, 3, false, None).is_err());
        assert!(PackedB::new(&[1.0; 6], 2, 3, false, Some(&[1.0; 2])).is_err());
        let p = PackedB::new(&[1.0; 6], 2, 3, false, None).unwrap();
        let mut out = [0.0; 6];
        assert!(p.run(&[1.0; 5], 2, &mut out, None, 1).is_err());
        assert!(p.run(&[1.0; 4], 2, &mut out[..5], None, 1).is_err());
    }
}
