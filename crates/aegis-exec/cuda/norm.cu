// AegisRT CUDA kernels: softmax, reductions, batch/layer normalisation and LRN (f32).
// Semantics follow crates/aegis-exec/src/kernels/norm.rs and pool.rs. Reductions inside one
// block use a fixed tree order (depends only on blockDim, which the host fixes), so results
// are deterministic run to run.

#define AEGIS_RED_THREADS 256

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}

__device__ __forceinline__ float nan_max(float acc, float v) {
    return (v > acc || isnan(v)) ? v : acc;
}
__device__ __forceinline__ float nan_min(float acc, float v) {
    return (v < acc || isnan(v)) ? v : acc;
}

// op: 0 sum, 1 max, 2 min.
__device__ __forceinline__ float red_combine(int op, float a, float b) {
    if (op == 1) return (isnan(a) || isnan(b)) ? __int_as_float(0x7fc00000) : fmaxf(a, b);
    if (op == 2) return (isnan(a) || isnan(b)) ? __int_as_float(0x7fc00000) : fminf(a, b);
    return a + b;
}
__device__ __forceinline__ float red_init(int op) {
    if (op == 1) return __int_as_float(0xff800000);  // -inf
    if (op == 2) return __int_as_float(0x7f800000);  // +inf
    return 0.0f;
}

// Block-wide reduction of `v` (blockDim.x == AEGIS_RED_THREADS); every thread gets the result.
__device__ float block_reduce(float v, int op, float* sh) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = AEGIS_RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] = red_combine(op, sh[t], sh[t + s]);
        __syncthreads();
    }
    float r = sh[0];
    __syncthreads();
    return r;
}

__device__ double block_sum_f64(double v, double* sh) {
    int t = threadIdx.x;
    sh[t] = v;
    __syncthreads();
    for (int s = AEGIS_RED_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sh[t] += sh[t + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// Softmax / LogSoftmax over contiguous rows of `n` elements: one block (256 threads) per row.
extern "C" __global__ void softmax_rows_f32(const float* __restrict__ x, float* __restrict__ y,
                                            long long rows, long long n, int log_softmax) {
    __shared__ float sh[AEGIS_RED_THREADS];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * n;
        float* yr = y + r * n;
        float m = red_init(1);
        for (long long j = threadIdx.x; j < n; j += blockDim.x) m = nan_max(m, xr[j]);
        m = block_reduce(m, 1, sh);
        float s = 0.0f;
        for (long long j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - m);
        s = block_reduce(s, 0, sh);
        if (log_softmax) {
            float l = logf(s);
            for (long long j = threadIdx.x; j < n; j += blockDim.x) yr[j] = xr[j] - m - l;
        } else {
            float inv = 1.0f / s;
            for (long long j = threadIdx.x; j < n; j += blockDim.x) yr[j] = expf(xr[j] - m) * inv;
        }
    }
}

// Softmax along a non-innermost axis: element (o, j, i) at (o * n + j) * inner + i; one thread
// per (o, i), serial over j (coalesced across i).
extern "C" __global__ void softmax_strided_f32(const float* __restrict__ x,
                                               float* __restrict__ y, long long outer,
                                               long long n, long long inner, int log_softmax) {
    long long total = outer * inner;
    for (long long t = gtid(); t < total; t += gstride()) {
        long long o = t / inner, i = t - o * inner;
        const float* xb = x + o * n * inner + i;
        float* yb = y + o * n * inner + i;
        float m = red_init(1);
        for (long long j = 0; j < n; ++j) m = nan_max(m, xb[j * inner]);
        float s = 0.0f;
        for (long long j = 0; j < n; ++j) s += expf(xb[j * inner] - m);
        if (log_softmax) {
            float l = logf(s);
            for (long long j = 0; j < n; ++j) yb[j * inner] = xb[j * inner] - m - l;
        } else {
            float inv = 1.0f / s;
            for (long long j = 0; j < n; ++j) yb[j * inner] = expf(xb[j * inner] - m) * inv;
        }
    }
}

// Reduction of contiguous rows: y[r] = reduce(x[r*cols .. (r+1)*cols]), a sum divided by
// `divisor` (cols for a mean, like the host's `sum / n`; 1 for a sum). One block per row.
// ReduceMean over trailing axes, GlobalAveragePool.
extern "C" __global__ void reduce_rows_f32(const float* __restrict__ x, float* __restrict__ y,
                                           long long rows, long long cols, int op, float divisor) {
    __shared__ float sh[AEGIS_RED_THREADS];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        float acc = red_init(op);
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) acc = red_combine(op, acc, xr[j]);
        acc = block_reduce(acc, op, sh);
        if (threadIdx.x == 0) y[r] = op == 0 ? acc / divisor : acc;
    }
}

// General reduction: one thread per output, serial over the reduced index space.
// meta = [n_out, red_n, kr, rr, kshape[kr], kstrides[kr], rshape[rr], rstrides[rr]].
extern "C" __global__ void reduce_general_f32(const float* __restrict__ x,
                                              float* __restrict__ y,
                                              const long long* __restrict__ meta, int op,
                                              float divisor) {
    long long n_out = meta[0], red_n = meta[1];
    int kr = (int)meta[2], rr = (int)meta[3];
    const long long* ks = meta + 4;
    const long long* kst = ks + kr;
    const long long* rs = kst + kr;
    const long long* rst = rs + rr;
    for (long long o = gtid(); o < n_out; o += gstride()) {
        long long rem = o, base = 0;
        for (int d = kr - 1; d >= 0; --d) {
            long long q = rem / ks[d];
            base += (rem - q * ks[d]) * kst[d];
            rem = q;
        }
        float acc = red_init(op);
        for (long long j = 0; j < red_n; ++j) {
            long long rj = j, off = base;
            for (int d = rr - 1; d >= 0; --d) {
                long long q = rj / rs[d];
                off += (rj - q * rs[d]) * rst[d];
                rj = q;
            }
            float v = x[off];
            acc = op == 0 ? acc + v : (op == 1 ? nan_max(acc, v) : nan_min(acc, v));
        }
        y[o] = op == 0 ? acc / divisor : acc;
    }
}

// BatchNormalization (inference): y = x * a[c] + b[c], a = scale / sqrt(var + eps),
// b = bias - mean * a; x is [N, C, inner...].
extern "C" __global__ void batchnorm_f32(const float* __restrict__ x,
                                         const float* __restrict__ scale,
                                         const float* __restrict__ bias,
                                         const float* __restrict__ mean,
                                         const float* __restrict__ var, float* __restrict__ y,
                                         long long n, long long channels, long long inner,
                                         float eps) {
    for (long long i = gtid(); i < n; i += gstride()) {
        long long c = (i / inner) % channels;
        float a = scale[c] / sqrtf(var[c] + eps);
        float b = bias[c] - mean[c] * a;
        y[i] = x[i] * a + b;
    }
}

// LayerNormalization over contiguous rows of `cols`; statistics accumulated in f64 like the
// host. One block per row. flags: 1 = has bias, 2 = write mean, 4 = write inv_std_dev
// (pointers of absent tensors are never touched). scale/bias hold `cols` or 1 values.
extern "C" __global__ void layernorm_f32(const float* __restrict__ x,
                                         const float* __restrict__ scale,
                                         const float* __restrict__ bias, float* y,
                                         float* mean_out, float* inv_out, long long rows,
                                         long long cols, long long scale_len,
                                         long long bias_len, int flags, float eps) {
    __shared__ double sh[AEGIS_RED_THREADS];
    for (long long r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * cols;
        double s = 0.0;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) s += (double)xr[j];
        double mean = block_sum_f64(s, sh) / (double)cols;
        double v = 0.0;
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            double d = (double)xr[j] - mean;
            v += d * d;
        }
        double var = block_sum_f64(v, sh) / (double)cols;
        float m = (float)mean;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        for (long long j = threadIdx.x; j < cols; j += blockDim.x) {
            float sc = scale[scale_len == 1 ? 0 : j];
            float b = (flags & 1) ? bias[bias_len == 1 ? 0 : j] : 0.0f;
            y[r * cols + j] = (xr[j] - m) * inv * sc + b;
        }
        if (threadIdx.x == 0) {
            if (flags & 2) mean_out[r] = m;
            if (flags & 4) inv_out[r] = inv;
        }
    }
}

// LRN across channels of [N, C, inner...]: x / (bias + alpha/size * sum x_c'^2) ^ beta over
// channels [c - (size-1)/2, c + size/2].
extern "C" __global__ void lrn_f32(const float* __restrict__ x, float* __restrict__ y,
                                   long long n, long long channels, long long inner, int size,
                                   float alpha, float beta, float bias) {
    long long before = (size - 1) / 2, after = size / 2;
    float sc = alpha / (float)size;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long p = i % inner;
        long long t = i / inner;
        long long c = t % channels;
        long long b = t / channels;
        long long lo = c - before < 0 ? 0 : c - before;
        long long hi = c + after + 1 < channels ? c + after + 1 : channels;
        float s = 0.0f;
        for (long long cc = lo; cc < hi; ++cc) {
            float v = x[(b * channels + cc) * inner + p];
            s += v * v;
        }
        y[i] = x[i] / powf(bias + sc * s, beta);
    }
}
