//! What the AVX-512 row kernels (`pool_rows`, `conv_dw_v4`) share: the lane count, the
//! even/odd permute indices, casts between pulp's vectors and the intrinsics' type, and the
//! copy of a vector read past the tensor's end.

use core::arch::x86_64::__m512;

/// Lanes of one AVX-512 vector.
pub(super) const L: usize = 16;
/// Two-source permute indices: lane `i` takes element `2i` (`EVEN`) or `2i + 1` (`ODD`) of
/// `A:B`.
pub(super) const EVEN: [i32; L] = [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30];
pub(super) const ODD: [i32; L] = [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31];

/// `x[at..]`'s first 16 elements, `fill` past the tensor's end (kept out of line: the loops
/// calling it only on a tensor's last row keep their accumulators in registers).
#[cold]
pub(super) fn tail(x: &[f32], at: usize, fill: f32) -> [f32; L] {
    let src = &x[at.min(x.len())..];
    let mut t = [fill; L];
    let n = src.len().min(L);
    t[..n].copy_from_slice(&src[..n]);
    t
}

#[inline(always)]
pub(super) fn m512(v: pulp::f32x16) -> __m512 {
    bytemuck::cast(v)
}

#[inline(always)]
pub(super) fn f32s(v: __m512) -> pulp::f32x16 {
    bytemuck::cast(v)
}
