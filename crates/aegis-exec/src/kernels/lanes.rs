//! Whole-vector loads and stores at the start of a slice, for kernels that keep their rows in
//! padded scratch (so a vector never needs a mask, which pulp makes an out-of-line call).

/// One vector from the start of `src` (which holds at least one).
#[inline(always)]
pub(super) fn load<S: pulp::Simd>(src: &[f32]) -> S::f32s {
    bytemuck::pod_read_unaligned(bytemuck::cast_slice(&src[..S::F32_LANES]))
}

/// One vector to the start of `dst` (which has room for one).
#[inline(always)]
pub(super) fn store<S: pulp::Simd>(dst: &mut [f32], v: S::f32s) {
    dst[..S::F32_LANES].copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&v)));
}
