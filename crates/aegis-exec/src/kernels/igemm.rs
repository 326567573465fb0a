//! The integer GEMM under the quantized matrix products and convolutions: exact `i32` sums of
//! `i16` operands (8-bit values minus their zero points, so `|v| <= 255`, every product fits
//! and so does any pair of them), register-blocked on AVX-512BW's `vpmaddwd` (two `i16`
//! products summed into each `i32` lane), with a portable loop over the same layout on
//! machines without it.
//!
//! Layout (zeros pad every block, panel and odd K):
//! - the row operand `R` (M x K): [`PackedRows`], words of two `i16` (the even `k` in the low
//!   half) in blocks of [`MR`] rows, `[block][k / 2][MR]`, so one 4-byte broadcast feeds one
//!   row's next two products;
//! - the column operand `L` (K x N): panels of [`NR`] columns, `[panel][k / 2][NR][2]`, so
//!   one 64-byte load holds two `k` of 16 columns.
//!
//! Sums wrap like the `i32` arithmetic of the reference; the order of a sum never changes an
//! integer result, so threads split rows freely.

use super::par::par_chunks;

/// Rows of one register block.
pub(super) const MR: usize = 8;
/// Columns of one panel (two 16-lane vectors).
pub(super) const NR: usize = 32;

/// A row operand packed for [`gemm`]: `rows` x `k` values in `[block][k / 2][MR]` words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedRows {
    rows: usize,
    k: usize,
    data: Vec<i32>,
    /// One row while packing (kept so repacking allocates nothing once grown).
    row: Vec<i16>,
}

/// Two `i16` as one word, `lo` in the low half (the element order of a little-endian load).
#[inline(always)]
fn pair(lo: i16, hi: i16) -> i32 {
    i32::from(lo as u16) | (i32::from(hi) << 16)
}

impl PackedRows {
    /// Packs `rows` rows of `k` values, `row(i, buf)` writing row `i` into `buf` (`k`
    /// elements, each within `i16`).
    pub(super) fn pack(rows: usize, k: usize, mut row: impl FnMut(usize, &mut [i16])) -> Self {
        let mut p = PackedRows::default();
        p.repack(rows, k, &mut row);
        p
    }

    /// As [`PackedRows::pack`], reusing this buffer.
    pub(super) fn repack(
        &mut self,
        rows: usize,
        k: usize,
        row: &mut impl FnMut(usize, &mut [i16]),
    ) {
        let kp2 = k.div_ceil(2);
        let blocks = rows.div_ceil(MR);
        self.rows = rows;
        self.k = k;
        self.data.clear();
        self.data.resize(blocks * kp2 * MR, 0);
        let mut buf = std::mem::take(&mut self.row);
        buf.clear();
        buf.resize(2 * kp2, 0);
        for i in 0..rows {
            row(i, &mut buf[..k]);
            let (b, r) = (i / MR, i % MR);
            let dst = &mut self.data[b * kp2 * MR..][..kp2 * MR];
            for (q, two) in buf.chunks_exact(2).enumerate() {
                dst[q * MR + r] = pair(two[0], two[1]);
            }
        }
        self.row = buf;
    }

    /// Rows packed.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.row.len() * 2
    }

    fn block(&self, b: usize) -> &[i32] {
        let kp2 = self.k.div_ceil(2);
        &self.data[b * kp2 * MR..][..kp2 * MR]
    }
}

/// What becomes of a gemm's sums: `apply(i, j0, sums, out)` for row `i` (of its matrix; a
/// conv's output channel) and columns `j0..j0 + sums.len()`. A trait rather than a closure so
/// that `#[inline(always)]` puts it inside the vector-compiled loops.
pub(super) trait Epilogue<O>: Sync {
    /// Writes `out` (`sums.len()` elements) from `sums`.
    fn apply(&self, i: usize, j0: usize, sums: &[i32], out: &mut [O]);
}

/// Packs the `k` x `n` column operand into `dst` as `[panel][k / 2][NR][2]`, `row(kk, buf)`
/// writing row `kk` (`n` values) into `buf`; `two` is scratch for two rows.
pub(super) fn pack_cols(
    k: usize,
    n: usize,
    dst: &mut Vec<i16>,
    two: &mut Vec<i16>,
    mut row: impl FnMut(usize, &mut [i16]),
) {
    let (kp2, panels) = (k.div_ceil(2), n.div_ceil(NR));
    let panel_len = kp2 * NR * 2;
    dst.clear();
    dst.resize(panels * panel_len, 0);
    two.clear();
    two.resize(2 * n, 0);
    let (even, odd) = two.split_at_mut(n);
    for q in 0..kp2 {
        row(2 * q, even);
        if 2 * q + 1 < k {
            row(2 * q + 1, odd);
        } else {
            odd.fill(0);
        }
        for (p, panel) in dst.chunks_exact_mut(panel_len).enumerate() {
            let (j0, w) = (p * NR, NR.min(n - p * NR));
            let step = &mut panel[q * NR * 2..][..w * 2];
            for ((d, &e), &o) in step.chunks_exact_mut(2).zip(&even[j0..]).zip(&odd[j0..]) {
                d[0] = e;
                d[1] = o;
            }
        }
    }
}

/// `R (rows.rows() x k) @ L (k x n)` with `L` packed by [`pack_cols`]: each row `i`'s sums
/// for columns `j0..j0 + w` (`w <= NR`) go to `epilogue.apply(i, j0, sums, out_row[j0..j0 + w])`,
/// `out` being `rows.rows()` rows of `n`.
pub(super) fn gemm<O: Send, E: Epilogue<O>>(
    rows: &PackedRows,
    cols: &[i16],
    n: usize,
    out: &mut [O],
    threads: usize,
    epilogue: &E,
) {
    let (m, kp2) = (rows.rows, rows.k.div_ceil(2));
    let panels = n.div_ceil(NR);
    debug_assert_eq!(cols.len(), panels * kp2 * NR * 2);
    debug_assert_eq!(out.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    let v4 = pulp::x86::V4::try_new();
    par_chunks(out, MR * n, threads, 1, |first_block, piece| {
        let blocks = Blocks {
            #[cfg(target_arch = "x86_64")]
            v4,
            rows,
            cols,
            n,
            first_block,
            piece,
            epilogue,
        };
        // The whole piece, epilogue included, compiled for the machine's vectors.
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = v4 {
            return pulp::Simd::vectorize(simd, blocks);
        }
        pulp::Arch::new().dispatch(blocks);
    });
}

/// The row blocks of one thread's piece of the output, every panel of each.
struct Blocks<'a, O, E> {
    #[cfg(target_arch = "x86_64")]
    v4: Option<pulp::x86::V4>,
    rows: &'a PackedRows,
    cols: &'a [i16],
    n: usize,
    first_block: usize,
    piece: &'a mut [O],
    epilogue: &'a E,
}

impl<O, E: Epilogue<O>> pulp::WithSimd for Blocks<'_, O, E> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let (n, kp2) = (self.n, self.rows.k.div_ceil(2));
        let panels = n.div_ceil(NR);
        for (bb, block_out) in self.piece.chunks_mut(MR * n).enumerate() {
            let b = self.first_block + bb;
            let r = self.rows.block(b);
            let live = block_out.len() / n;
            for p in 0..panels {
                let panel = &self.cols[p * kp2 * NR * 2..][..kp2 * NR * 2];
                let mut acc = [[0i32; NR]; MR];
                #[cfg(target_arch = "x86_64")]
                match self.v4 {
                    Some(simd) => tile_v4(simd, r, panel, &mut acc),
                    None => tile_portable(r, panel, &mut acc),
                }
                #[cfg(not(target_arch = "x86_64"))]
                tile_portable(r, panel, &mut acc);
                let (j0, w) = (p * NR, NR.min(n - p * NR));
                for (i, sums) in acc.iter().enumerate().take(live) {
                    let row = &mut block_out[i * n..][j0..j0 + w];
                    self.epilogue.apply(b * MR + i, j0, &sums[..w], row);
                }
            }
        }
    }
}

/// One `MR` x `NR` tile in plain Rust (the reference for the vector kernel, and the path on
/// machines without AVX-512BW).
pub(super) fn tile_portable(r: &[i32], panel: &[i16], acc: &mut [[i32; NR]; MR]) {
    for (rq, lq) in r.chunks_exact(MR).zip(panel.chunks_exact(NR * 2)) {
        for (a, &word) in acc.iter_mut().zip(rq) {
            let (lo, hi) = (i32::from(word as i16), word >> 16);
            for (s, l) in a.iter_mut().zip(lq.chunks_exact(2)) {
                let v = lo
                    .wrapping_mul(i32::from(l[0]))
                    .wrapping_add(hi.wrapping_mul(i32::from(l[1])));
                *s = s.wrapping_add(v);
            }
        }
    }
}

/// One `MR` x `NR` tile on AVX-512: per two `k`, two loads of `L` and, per row, one broadcast
/// and two `vpmaddwd` + `vpaddd` into 16 accumulators. Inlined into a function compiled with
/// AVX-512 (the `V4` token proves the machine has it).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tile_v4(simd: pulp::x86::V4, r: &[i32], panel: &[i16], out: &mut [[i32; NR]; MR]) {
    use core::arch::x86_64::__m512i;
    let (f, bw) = (simd.avx512f, simd.avx512bw);
    let load = |s: &[i16]| -> __m512i {
        let v: pulp::i16x32 = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&s[..32]));
        bytemuck::cast(v)
    };
    let zero = f._mm512_setzero_si512();
    let mut acc = [[zero; 2]; MR];
    for (rq, lq) in r.chunks_exact(MR).zip(panel.chunks_exact(NR * 2)) {
        let (l0, l1) = (load(&lq[..32]), load(&lq[32..]));
        for (a, &word) in acc.iter_mut().zip(rq) {
            let b = f._mm512_set1_epi32(word);
            a[0] = f._mm512_add_epi32(a[0], bw._mm512_madd_epi16(l0, b));
            a[1] = f._mm512_add_epi32(a[1], bw._mm512_madd_epi16(l1, b));
        }
    }
    for (dst, a) in out.iter_mut().zip(acc) {
        let lanes: [pulp::i32x16; 2] = [bytemuck::cast(a[0]), bytemuck::cast(a[1])];
        dst.copy_from_slice(bytemuck::cast_slice(&lanes));
    }
}

/// [`tile_v4`] entered from code not compiled with AVX-512 (the tests).
#[cfg(all(test, target_arch = "x86_64"))]
struct TileV4<'a> {
    simd: pulp::x86::V4,
    r: &'a [i32],
    panel: &'a [i16],
    acc: &'a mut [[i32; NR]; MR],
}

#[cfg(all(test, target_arch = "x86_64"))]
impl pulp::WithSimd for TileV4<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        tile_v4(self.simd, self.r, self.panel, self.acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Copy;

    impl Epilogue<i32> for Copy {
        fn apply(&self, _: usize, _: usize, sums: &[i32], out: &mut [i32]) {
            out.copy_from_slice(sums);
        }
    }

    fn lcg(seed: &mut u64) -> i16 {
        *seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((*seed >> 33) % 511) as i16 - 255
    }

    /// Every block and panel remainder, odd K, and the extreme values, against the definition.
    #[test]
    fn gemm_matches_the_definition_on_ragged_shapes() {
        let mut seed = 7u64;
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (8, 2, 32),
            (9, 33, 33),
            (17, 64, 70),
            (2, 300, 5),
        ] {
            let a: Vec<i16> = (0..m * k).map(|_| lcg(&mut seed)).collect();
            let mut b: Vec<i16> = (0..k * n).map(|_| lcg(&mut seed)).collect();
            b[0] = -255;
            let rows = PackedRows::pack(m, k, |i, buf| buf.copy_from_slice(&a[i * k..][..k]));
            let (mut cols, mut two) = (Vec::new(), Vec::new());
            pack_cols(k, n, &mut cols, &mut two, |kk, buf| {
                buf.copy_from_slice(&b[kk * n..][..n])
            });
            for threads in [1, 2] {
                let mut out = vec![0i32; m * n];
                gemm(&rows, &cols, n, &mut out, threads, &Copy);
                for i in 0..m {
                    for j in 0..n {
                        let want: i32 = (0..k)
                            .map(|kk| i32::from(a[i * k + kk]) * i32::from(b[kk * n + j]))
                            .sum();
                        assert_eq!(out[i * n + j], want, "m={m} k={k} n={n} ({i}, {j})");
                    }
                }
            }
        }
    }

    /// The vector tile and the portable tile agree bit for bit (where AVX-512 runs).
    #[test]
    fn vector_and_portable_tiles_agree() {
        let mut seed = 11u64;
        let k = 37;
        let a: Vec<i16> = (0..MR * k).map(|_| lcg(&mut seed)).collect();
        let b: Vec<i16> = (0..k * NR).map(|_| lcg(&mut seed)).collect();
        let rows = PackedRows::pack(MR, k, |i, buf| buf.copy_from_slice(&a[i * k..][..k]));
        let (mut cols, mut two) = (Vec::new(), Vec::new());
        pack_cols(k, NR, &mut cols, &mut two, |kk, buf| {
            buf.copy_from_slice(&b[kk * NR..][..NR])
        });
        let mut want = [[0i32; NR]; MR];
        tile_portable(rows.block(0), &cols, &mut want);
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            let mut got = [[0i32; NR]; MR];
            pulp::Simd::vectorize(
                simd,
                TileV4 {
                    simd,
                    r: rows.block(0),
                    panel: &cols,
                    acc: &mut got,
                },
            );
            assert_eq!(got, want);
        }
        assert_eq!(
            want[0][0],
            (0..k)
                .map(|kk| i32::from(a[kk]) * i32::from(b[kk * NR]))
                .sum::<i32>()
        );
    }
}
