//! Whole-vector loads and stores at the start of a slice, for kernels that keep their rows in
//! padded scratch (so a vector never needs a mask, which pulp makes an out-of-line call), and
//! the even/odd split the stride-2 plane kernels share.

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

/// `even[i] = src[2i]`, `odd[i] = src[2i + 1]` for every pair of `src` (a pair loop the
/// compiler turns into shuffles; pulp's `deinterleave_shfl_f32s` leaves lanes in a shuffled
/// order, so it does not serve here).
#[inline(always)]
pub(super) fn split_even_odd(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
    for ((e, o), pair) in even.iter_mut().zip(odd).zip(src.chunks_exact(2)) {
        *e = pair[0];
        *o = pair[1];
    }
}
