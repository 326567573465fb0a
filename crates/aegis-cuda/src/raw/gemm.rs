//! Checked entry to the `gemm` crate's f32 matrix multiply for host kernels.
//!
//! `gemm::gemm` takes raw pointers and strides; upper layers may not hold `unsafe`, so this
//! is the one place that calls it. Every view is bounds-checked against its slice before the
//! call, and the destination must map distinct (row, col) pairs to distinct elements.
//! The call is always single-threaded (`Parallelism::None`): callers split work themselves so
//! results never depend on a thread count.

use crate::{CudaError, Result};

const CALL: &str = "host_sgemm";

/// A read-only strided f32 matrix: element `(i, j)` is `data[i * row_stride + j * col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct HostMat<'a> {
    /// Backing elements; every addressed element must lie inside.
    pub data: &'a [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

/// A writable strided f32 matrix, laid out like [`HostMat`].
#[derive(Debug)]
pub struct HostMatMut<'a> {
    /// Backing elements; every addressed element must lie inside.
    pub data: &'a mut [f32],
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Distance between rows, in elements.
    pub row_stride: usize,
    /// Distance between columns, in elements.
    pub col_stride: usize,
}

fn check_extent(
    what: &str,
    len: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let last = (rows - 1)
        .checked_mul(rs)
        .and_then(|a| (cols - 1).checked_mul(cs).and_then(|b| a.checked_add(b)))
        .filter(|&l| l < len && l <= isize::MAX as usize);
    match last {
        Some(_) => Ok(()),
        None => Err(CudaError::invalid(
            CALL,
            format!("{what}: {rows}x{cols} view with strides ({rs}, {cs}) exceeds {len} elements"),
        )),
    }
}

/// `dst := dst_scale * dst + product_scale * lhs * rhs` when `dst_scale` is `Some`, else
/// `dst := product_scale * lhs * rhs` (the old contents of `dst` are not read, so they may be
/// anything, NaN included). Runs on the calling thread only.
///
/// The result for one destination element depends only on the shapes and strides passed, never
/// on the machine's thread count.
///
/// # Errors
/// [`CudaError::InvalidArgument`] if the shapes disagree, a view addresses elements outside its
/// slice, or two destination positions share an element.
pub fn host_sgemm(
    dst: HostMatMut<'_>,
    lhs: HostMat<'_>,
    rhs: HostMat<'_>,
    dst_scale: Option<f32>,
    product_scale: f32,
) -> Result<()> {
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if lhs.rows != m || rhs.cols != n || rhs.rows != k {
        return Err(CudaError::invalid(
            CALL,
            format!(
                "shape mismatch: dst {m}x{n}, lhs {}x{}, rhs {}x{}",
                lhs.rows, lhs.cols, rhs.rows, rhs.cols
            ),
        ));
    }
    check_extent("dst", dst.data.len(), m, n, dst.row_stride, dst.col_stride)?;
    check_extent("lhs", lhs.data.len(), m, k, lhs.row_stride, lhs.col_stride)?;
    check_extent("rhs", rhs.data.len(), k, n, rhs.row_stride, rhs.col_stride)?;
    // Distinct destination positions must be distinct elements: order the two axes by stride;
    // the inner one needs a non-zero stride and the outer one must step past the inner extent.
    let (inner, outer) = if dst.row_stride <= dst.col_stride {
        ((dst.row_stride, m), (dst.col_stride, n))
    } else {
        ((dst.col_stride, n), (dst.row_stride, m))
    };
    let inner_ok = inner.1 <= 1 || inner.0 >= 1;
    let outer_ok = outer.1 <= 1 || outer.0 >= inner.0.saturating_mul(inner.1).max(1);
    if !(inner_ok && outer_ok) {
        return Err(CudaError::invalid(
            CALL,
            format!(
                "dst strides ({}, {}) alias elements of a {m}x{n} matrix",
                dst.row_stride, dst.col_stride
            ),
        ));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    // Strides fit in isize: check_extent bounded each (extent - 1) * stride by isize::MAX, and
    // a stride on an axis of extent 1 is never multiplied by a non-zero index.
    let s = |stride: usize, extent: usize| if extent <= 1 { 0 } else { stride as isize };
    // SAFETY: every element gemm addresses, dst + i*rs + j*cs for i < m, j < n (and likewise
    // for lhs over m x k and rhs over k x n), lies inside its slice (check_extent); the slices
    // are live borrows for the whole call, `dst` is a unique borrow so it aliases neither input,
    // and distinct destination positions are distinct elements (checked above), so the
    // single-threaded writes are well defined. With k == 0, lhs and rhs are not read.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            s(dst.col_stride, n),
            s(dst.row_stride, m),
            dst_scale.is_some(),
            lhs.data.as_ptr(),
            s(lhs.col_stride, k),
            s(lhs.row_stride, m),
            rhs.data.as_ptr(),
            s(rhs.col_stride, n),
            s(rhs.row_stride, k),
            dst_scale.unwrap_or(0.0),
            product_scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn row_major_product_matches_naive_and_ignores_old_dst() {
        let (m, n, k) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b: Vec<f32> = (0..k * n).map(|v| 1.0 - v as f32 * 0.25).collect();
        let mut c = vec![f32::NAN; m * n];
        host_sgemm(
            HostMatMut {
                data: &mut c,
                rows: m,
                cols: n,
                row_stride: n,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: m,
                cols: k,
                row_stride: k,
                col_stride: 1,
            },
            HostMat {
                data: &b,
                rows: k,
                cols: n,
                row_stride: n,
                col_stride: 1,
            },
            None,
            1.0,
        )
        .unwrap();
        assert_eq!(c, naive(m, n, k, &a, &b));
    }

    #[test]
    fn accumulates_with_scales() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [10.0f32];
        host_sgemm(
            HostMatMut {
                data: &mut c,
                rows: 1,
                cols: 1,
                row_stride: 1,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: 1,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            HostMat {
                data: &b,
                rows: 2,
                cols: 1,
                row_stride: 1,
                col_stride: 1,
            },
            Some(0.5),
            2.0,
        )
        .unwrap();
        assert_eq!(c[0], 0.5 * 10.0 + 2.0 * 11.0);
    }

    #[test]
    fn rejects_out_of_bounds_and_aliasing_views() {
        let a = [0.0f32; 4];
        let mut c = [0.0f32; 4];
        let err = host_sgemm(
            HostMatMut {
                data: &mut c,
                rows: 2,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: 2,
                cols: 3,
                row_stride: 3,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: 3,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            None,
            1.0,
        );
        assert!(matches!(err, Err(CudaError::InvalidArgument { .. })));
        let err = host_sgemm(
            HostMatMut {
                data: &mut c,
                rows: 2,
                cols: 2,
                row_stride: 1,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: 2,
                cols: 1,
                row_stride: 1,
                col_stride: 1,
            },
            HostMat {
                data: &a,
                rows: 1,
                cols: 2,
                row_stride: 2,
                col_stride: 1,
            },
            None,
            1.0,
        );
        assert!(matches!(err, Err(CudaError::InvalidArgument { .. })));
    }
}
