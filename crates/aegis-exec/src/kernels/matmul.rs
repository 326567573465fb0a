//! ONNX `Gemm` and `MatMul` (numpy matmul semantics) over the host GEMM.
//!
//! A single row against `B` stored `[N, K]` (a fully connected layer: Gemm with transB) is a
//! row of dot products over contiguous runs, computed here ([`DotRows`]); everything else is
//! the host GEMM.
//!
//! Determinism: the output is cut into fixed row tiles (or column tiles when there is a
//! single row) chosen from the shapes alone; each tile is one single-threaded GEMM call (or
//! dot-product pass) and threads only pick which tiles they run.

use aegis_cuda::{host_sgemm, HostMat, HostMatMut};

use super::broadcast::broadcast_shape_op;
use super::elementwise::expand;
use super::error::{check_len, numel, KernelError, KernelResult};
use super::par::par_chunks_scratch;

/// Work (multiply-adds) below which a GEMM is a single tile.
const SMALL_GEMM: usize = 1 << 21;
/// Weights (elements) from which a row of dot products is cut in two: it streams its weights
/// once, memory-bound, so half a megabyte (about 30 us) repays a helper. At the GEMM's bar a
/// 1024 x 1000 classifier (Inception-v2's, DenseNet's) stayed on one thread.
const DOT_SPLIT: usize = 1 << 17;

/// A strided operand: element `(i, j)` at `data[i * rs + j * cs]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

/// The fixed tile size (rows if `m > 1`, else columns) for an `m x n x k` product.
fn tile(m: usize, n: usize, k: usize) -> usize {
    let extent = if m > 1 { m } else { n };
    if m.saturating_mul(n).saturating_mul(k) < SMALL_GEMM {
        return extent.max(1);
    }
    // Two tiles (one per core on the 2-core targets), rounded to a multiple of 16
    // rows/columns. Each row tile packs all of `b` again, so four tiles cost a 128 x 256 x
    // 1024 MatMul 20% more at one thread than two do.
    (extent.div_ceil(2).div_ceil(16) * 16).max(1)
}

/// `out (m x n, row-major) = alpha * a * b (+ out if accumulate)`, tiled and threaded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_tiled(
    op: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    out: &mut [f32],
    accumulate: bool,
    alpha: f32,
    threads: usize,
) -> KernelResult<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if m == 1 && b.rs == 1 && b.cs == k && k > 0 && a.cs == 1 {
        // One row against `B` stored `[N, K]` (a Gemm with transB, a fully connected layer):
        // each output is a dot product of two contiguous runs, so `B` streams once, in order.
        dot_rows(
            &a.data[..k],
            &b.data[..n * k],
            k,
            out,
            alpha,
            accumulate,
            threads,
        );
        return Ok(());
    }
    let t = tile(m, n, k);
    let dst_scale = accumulate.then_some(1.0);
    let call = |dst: HostMatMut<'_>, lhs: HostMat<'_>, rhs: HostMat<'_>| {
        host_sgemm(dst, lhs, rhs, dst_scale, alpha)
            .map_err(|source| KernelError::Gemm { op, source })
    };
    if m > 1 {
        par_chunks_scratch(out, t * n, threads, &mut [0u8; 0], 0, |first, piece, _| {
            for (i, rows) in piece.chunks_mut(t * n).enumerate() {
                let r0 = (first + i) * t;
                let mr = rows.len() / n;
                call(
                    HostMatMut {
                        data: rows,
                        rows: mr,
                        cols: n,
                        row_stride: n,
                        col_stride: 1,
                    },
                    HostMat {
                        data: &a.data[r0 * a.rs..],
                        rows: mr,
                        cols: k,
                        row_stride: a.rs,
                        col_stride: a.cs,
                    },
                    HostMat {
                        data: b.data,
                        rows: k,
                        cols: n,
                        row_stride: b.rs,
                        col_stride: b.cs,
                    },
                )?;
            }
            Ok(())
        })
    } else {
        par_chunks_scratch(out, t, threads, &mut [0u8; 0], 0, |first, piece, _| {
            for (i, cols) in piece.chunks_mut(t).enumerate() {
                let c0 = (first + i) * t;
                let nc = cols.len();
                call(
                    HostMatMut {
                        data: cols,
                        rows: 1,
                        cols: nc,
                        row_stride: nc,
                        col_stride: 1,
                    },
                    HostMat {
                        data: a.data,
                        rows: 1,
                        cols: k,
                        row_stride: a.rs,
                        col_stride: a.cs,
                    },
                    HostMat {
                        data: &b.data[c0 * b.cs..],
                        rows: k,
                        cols: nc,
                        row_stride: b.rs,
                        col_stride: b.cs,
                    },
                )?;
            }
            Ok(())
        })
    }
}

/// `out[j] = alpha * dot(a, b[j * k..(j + 1) * k]) (+ out[j] if accumulate)` for every row
/// `j` of `b` (`out.len()` rows of `k`): a fully connected layer on one input row. The rows
/// are cut into two fixed halves once `b` holds [`DOT_SPLIT`] elements, so both cores stream
/// their half of the weights; a row's arithmetic never depends on the cut.
pub(crate) fn dot_rows(
    a: &[f32],
    b: &[f32],
    k: usize,
    out: &mut [f32],
    alpha: f32,
    accumulate: bool,
    threads: usize,
) {
    let n = out.len();
    let t = if n * k >= DOT_SPLIT {
        (n.div_ceil(2).div_ceil(16) * 16).max(1)
    } else {
        n.max(1)
    };
    let _ = par_chunks_scratch(out, t, threads, &mut [0u8; 0], 0, |first, piece, _| {
        for (i, cols) in piece.chunks_mut(t).enumerate() {
            let c0 = (first + i) * t;
            pulp::Arch::new().dispatch(DotRows {
                a,
                b: &b[c0 * k..(c0 + cols.len()) * k],
                k,
                out: cols,
                alpha,
                accumulate,
            });
        }
        Ok::<(), KernelError>(())
    });
}

/// `out[j] = alpha * dot(a, b[j * k..(j + 1) * k]) (+ out[j] if accumulate)`, four rows of
/// `b` at a time, two vectors of each in flight (the rows stream from memory; a large fully
/// connected layer is bound by that stream). Every output's sum is the same fixed order of
/// lane-wise FMAs and one horizontal reduction, whichever tile or thread computes it.
struct DotRows<'a> {
    a: &'a [f32],
    b: &'a [f32],
    k: usize,
    out: &'a mut [f32],
    alpha: f32,
    accumulate: bool,
}

impl pulp::WithSimd for DotRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let (k, lanes) = (self.k, S::F32_LANES);
        let step = 2 * lanes;
        let body = k / step * step;
        let load = |c: &[f32]| -> S::f32s {
            bytemuck::pod_read_unaligned(bytemuck::cast_slice(&c[..lanes]))
        };
        let zero = simd.splat_f32s(0.0);
        let finish = |acc: [S::f32s; 2], row: &[f32]| -> f32 {
            let mut d = simd.reduce_sum_f32s(simd.add_f32s(acc[0], acc[1]));
            for (x, w) in self.a[body..].iter().zip(&row[body..]) {
                d = x.mul_add(*w, d);
            }
            d
        };
        let mut rows = self.b.chunks_exact(4 * k);
        let mut j = 0;
        let put = |out: &mut [f32], j: usize, d: f32| {
            out[j] = if self.accumulate {
                out[j] + self.alpha * d
            } else {
                self.alpha * d
            };
        };
        for four in &mut rows {
            let (r0, rest) = four.split_at(k);
            let (r1, rest) = rest.split_at(k);
            let (r2, r3) = rest.split_at(k);
            let mut acc = [[zero; 2]; 4];
            let mut i = 0;
            while i < body {
                let (x0, x1) = (load(&self.a[i..]), load(&self.a[i + lanes..]));
                for (acc, r) in acc.iter_mut().zip([r0, r1, r2, r3]) {
                    acc[0] = simd.mul_add_f32s(x0, load(&r[i..]), acc[0]);
                    acc[1] = simd.mul_add_f32s(x1, load(&r[i + lanes..]), acc[1]);
                }
                i += step;
            }
            for (q, (acc, r)) in acc.into_iter().zip([r0, r1, r2, r3]).enumerate() {
                let d = finish(acc, r);
                put(self.out, j + q, d);
            }
            j += 4;
        }
        for r in rows.remainder().chunks_exact(k) {
            let mut acc = [zero; 2];
            let mut i = 0;
            while i < body {
                acc[0] = simd.mul_add_f32s(load(&self.a[i..]), load(&r[i..]), acc[0]);
                acc[1] =
                    simd.mul_add_f32s(load(&self.a[i + lanes..]), load(&r[i + lanes..]), acc[1]);
                i += step;
            }
            let d = finish(acc, r);
            put(self.out, j, d);
            j += 1;
        }
    }
}

/// ONNX `Gemm` attributes (defaults: `alpha = 1`, `beta = 1`, no transposes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmAttrs {
    /// Scale of `A * B`.
    pub alpha: f32,
    /// Scale of `C`.
    pub beta: f32,
    /// `transA`: `A` is stored `[K, M]`.
    pub trans_a: bool,
    /// `transB`: `B` is stored `[N, K]`.
    pub trans_b: bool,
}

impl Default for GemmAttrs {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        }
    }
}

/// ONNX `Gemm`: `Y = alpha * A' * B' + beta * C`, `A'`/`B'` optionally transposed, `A` and `B`
/// 2-D, optional `C` unidirectionally broadcastable to `[M, N]` (scalar, `[N]`, `[M, 1]`,
/// `[M, N]`, ...). `out` is `[M, N]` row-major.
///
/// # Errors
/// Shape or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    c: Option<(&[f32], &[usize])>,
    attrs: &GemmAttrs,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Gemm";
    let mismatch = || KernelError::ShapeMismatch {
        op: OP,
        a: a_shape.to_vec(),
        b: b_shape.to_vec(),
    };
    let (&[ar, ac], &[br, bc]) = (a_shape, b_shape) else {
        return Err(mismatch());
    };
    check_len(OP, "A", a.len(), ar * ac)?;
    check_len(OP, "B", b.len(), br * bc)?;
    let (m, k) = if attrs.trans_a { (ac, ar) } else { (ar, ac) };
    let (kb, n) = if attrs.trans_b { (bc, br) } else { (br, bc) };
    if k != kb {
        return Err(mismatch());
    }
    check_len(OP, "Y", out.len(), m * n)?;
    let lhs = if attrs.trans_a {
        Operand {
            data: a,
            rs: 1,
            cs: m,
        }
    } else {
        Operand {
            data: a,
            rs: k,
            cs: 1,
        }
    };
    let rhs = if attrs.trans_b {
        Operand {
            data: b,
            rs: 1,
            cs: k,
        }
    } else {
        Operand {
            data: b,
            rs: n,
            cs: 1,
        }
    };
    let accumulate = match c {
        Some((cd, cs)) if attrs.beta != 0.0 => {
            expand(cd, cs, out, &[m, n], threads)?;
            if attrs.beta != 1.0 {
                out.iter_mut().for_each(|v| *v *= attrs.beta);
            }
            true
        }
        _ => false,
    };
    gemm_tiled(OP, m, n, k, lhs, rhs, out, accumulate, attrs.alpha, threads)
}

/// The output shape of numpy `matmul` (ONNX `MatMul`): 1-D operands are promoted (`[K]` ->
/// `[1, K]` on the left, `[K, 1]` on the right) and the added axis removed from the result;
/// batch axes broadcast.
///
/// # Errors
/// Rank-0 operands, mismatched inner extents, or non-broadcastable batch axes.
pub fn matmul_output_shape(a_shape: &[usize], b_shape: &[usize]) -> KernelResult<Vec<usize>> {
    Ok(matmul_dims(a_shape, b_shape)?.out_shape)
}

struct MatmulDims {
    m: usize,
    k: usize,
    n: usize,
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    out_shape: Vec<usize>,
}

fn matmul_dims(a_shape: &[usize], b_shape: &[usize]) -> KernelResult<MatmulDims> {
    const OP: &str = "MatMul";
    let mismatch = || KernelError::ShapeMismatch {
        op: OP,
        a: a_shape.to_vec(),
        b: b_shape.to_vec(),
    };
    if a_shape.is_empty() || b_shape.is_empty() {
        return Err(mismatch());
    }
    let (a_batch, m, k) = match a_shape {
        [k] => (&[][..], 1, *k),
        [batch @ .., m, k] => (batch, *m, *k),
        [] => return Err(mismatch()),
    };
    let (b_batch, kb, n) = match b_shape {
        [k] => (&[][..], *k, 1),
        [batch @ .., k, n] => (batch, *k, *n),
        [] => return Err(mismatch()),
    };
    if k != kb {
        return Err(mismatch());
    }
    let batch = broadcast_shape_op(OP, a_batch, b_batch)?;
    let mut out_shape = batch.clone();
    if a_shape.len() > 1 {
        out_shape.push(m);
    }
    if b_shape.len() > 1 {
        out_shape.push(n);
    }
    Ok(MatmulDims {
        m,
        k,
        n,
        batch,
        a_batch: a_batch.to_vec(),
        b_batch: b_batch.to_vec(),
        out_shape,
    })
}

/// Offset (in matrices) of batch index `idx` of an operand with batch shape `shape`,
/// right-aligned against the broadcast batch shape.
fn batch_offset(idx: &[usize], shape: &[usize]) -> usize {
    let off = idx.len() - shape.len();
    let mut acc = 0;
    for (d, &e) in shape.iter().enumerate() {
        acc = acc * e + if e == 1 { 0 } else { idx[off + d] };
    }
    acc
}

/// ONNX `MatMul` with numpy semantics: `out` has [`matmul_output_shape`]. With several batch
/// matrices threads split the batch; a single matrix product is split into row tiles.
///
/// # Errors
/// Shape or length mismatches.
pub fn matmul(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "MatMul";
    let d = matmul_dims(a_shape, b_shape)?;
    check_len(OP, "A", a.len(), numel(OP, a_shape)?)?;
    check_len(OP, "B", b.len(), numel(OP, b_shape)?)?;
    check_len(OP, "Y", out.len(), numel(OP, &d.out_shape)?)?;
    let (m, k, n) = (d.m, d.k, d.n);
    let nb: usize = d.batch.iter().product();
    if nb == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    // One shared right-hand matrix and an unbroadcast left batch (activations times weights,
    // e.g. `[seq, batch, d] x [d, n]`): the batch is just more rows of one GEMM, which keeps
    // the kernel efficient when m is 1 (per-matrix calls would be matrix-vector products).
    let b_shared = d.b_batch.iter().all(|&e| e == 1);
    let a_whole = d.a_batch == d.batch;
    if nb == 1 || (b_shared && a_whole) {
        return gemm_tiled(
            OP,
            nb * m,
            n,
            k,
            Operand {
                data: a,
                rs: k,
                cs: 1,
            },
            Operand {
                data: b,
                rs: n,
                cs: 1,
            },
            out,
            false,
            1.0,
            threads,
        );
    }
    let batch = &d.batch;
    par_chunks_scratch(out, m * n, threads, &mut [0u8; 0], 0, |first, piece, _| {
        let mut idx = vec![0; batch.len()];
        for (i, dst) in piece.chunks_mut(m * n).enumerate() {
            let mut rem = first + i;
            for ax in (0..batch.len()).rev() {
                idx[ax] = rem % batch[ax];
                rem /= batch[ax];
            }
            let ao = batch_offset(&idx, &d.a_batch) * m * k;
            let bo = batch_offset(&idx, &d.b_batch) * k * n;
            host_sgemm(
                HostMatMut {
                    data: dst,
                    rows: m,
                    cols: n,
                    row_stride: n,
                    col_stride: 1,
                },
                HostMat {
                    data: &a[ao..ao + m * k],
                    rows: m,
                    cols: k,
                    row_stride: k,
                    col_stride: 1,
                },
                HostMat {
                    data: &b[bo..bo + k * n],
                    rows: k,
                    cols: n,
                    row_stride: n,
                    col_stride: 1,
                },
                None,
                1.0,
            )
            .map_err(|source| KernelError::Gemm { op: OP, source })?;
        }
        Ok(())
    })
}

/// ONNX Det: the determinant of each trailing `[n, n]` matrix of `x`, by LU decomposition
/// with partial pivoting in f64.
///
/// # Errors
/// A rank below 2, non-square matrices, or length mismatches.
pub fn det(x: &[f32], x_shape: &[usize], out: &mut [f32]) -> KernelResult<()> {
    const OP: &str = "Det";
    let r = x_shape.len();
    if r < 2 || x_shape[r - 1] != x_shape[r - 2] {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: vec![],
        });
    }
    let n = x_shape[r - 1];
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), numel(OP, &x_shape[..r - 2])?)?;
    if n == 0 {
        // The empty product.
        out.fill(1.0);
        return Ok(());
    }
    let mut a = vec![0.0f64; n * n];
    for (o, m) in out.iter_mut().zip(x.chunks_exact(n * n)) {
        for (d, &v) in a.iter_mut().zip(m) {
            *d = f64::from(v);
        }
        let mut det = 1.0f64;
        for col in 0..n {
            let pivot = (col..n)
                .max_by(|&i, &j| a[i * n + col].abs().total_cmp(&a[j * n + col].abs()))
                .unwrap_or(col);
            if a[pivot * n + col] == 0.0 {
                det = 0.0;
                break;
            }
            if pivot != col {
                for k in 0..n {
                    a.swap(pivot * n + k, col * n + k);
                }
                det = -det;
            }
            let p = a[col * n + col];
            det *= p;
            for row in col + 1..n {
                let f = a[row * n + col] / p;
                for k in col..n {
                    a[row * n + k] -= f * a[col * n + k];
                }
            }
        }
        *o = det as f32;
    }
    Ok(())
}
