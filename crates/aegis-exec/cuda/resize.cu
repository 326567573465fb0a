// AegisRT CUDA kernels: Resize (f32). The coordinate mapping (every coordinate transform and
// nearest rounding mode of crates/aegis-exec/src/kernels/resize.rs) is static, so the host
// computes it once at prepare time into index/weight tables; the kernels only gather.

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}

// Nearest, any rank: p = [rank, n, out_shape[rank], in_strides[rank], table offsets[rank],
// tables...] where table d (at p + table_offset[d]) maps each output index of axis d to an
// input index.
extern "C" __global__ void resize_nearest_f32(const float* __restrict__ x,
                                              float* __restrict__ y,
                                              const long long* __restrict__ p) {
    int rank = (int)p[0];
    long long n = p[1];
    const long long* oshape = p + 2;
    const long long* ist = oshape + rank;
    const long long* toff = ist + rank;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long rem = i, off = 0;
        for (int d = rank - 1; d >= 0; --d) {
            long long q = rem / oshape[d];
            long long o = rem - q * oshape[d];
            rem = q;
            off += p[toff[d] + o] * ist[d];
        }
        y[i] = x[off];
    }
}

// Linear on the last two axes (or the last one, with ih = oh = 1): p = [planes, ih, iw, oh,
// ow, h0[oh], h1[oh], w0[ow], w1[ow]], f = [fh[oh], fw[ow]]. Same formula as the host: a
// horizontal blend of the two source rows, then a vertical blend.
extern "C" __global__ void resize_linear_f32(const float* __restrict__ x,
                                             float* __restrict__ y,
                                             const long long* __restrict__ p,
                                             const float* __restrict__ f) {
    long long planes = p[0], ih = p[1], iw = p[2], oh = p[3], ow = p[4];
    const long long* h0 = p + 5;
    const long long* h1 = h0 + oh;
    const long long* w0 = h1 + oh;
    const long long* w1 = w0 + ow;
    const float* fh = f;
    const float* fw = f + oh;
    long long n = planes * oh * ow;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long c = i % ow;
        long long t = i / ow;
        long long r = t % oh;
        long long plane = t / oh;
        const float* xp = x + plane * ih * iw;
        const float* r0 = xp + h0[r] * iw;
        const float* r1 = xp + h1[r] * iw;
        float a = fw[c];
        float v0 = r0[w0[c]] * (1.0f - a) + r0[w1[c]] * a;
        float v1 = r1[w0[c]] * (1.0f - a) + r1[w1[c]] * a;
        float b = fh[r];
        y[i] = v0 * (1.0f - b) + v1 * b;
    }
}
