// AegisRT CUDA kernels: elementwise ops, broadcasting, Where, Cast and data movement.
// Semantics follow the host kernels in crates/aegis-exec/src/kernels (ONNX spec). Each file is
// self-contained (NVRTC compiles it alone, with no include path).
//
// Strided index spaces ("meta" arrays of long long, built by the host, rank <= 8 after the
// host merged contiguous axes):
//   broadcast meta: [rank, n, shape[rank], strides_0[rank], strides_1[rank], ...] where
//   strides_k are operand k's element strides per output axis (0 on broadcast axes).
// dtype codes: 0 f32, 1 i64, 2 i32, 3 bool (u8).

#define AEGIS_MAX_RANK 8

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}

// Offsets of output element `i` into up to three operands.
__device__ __forceinline__ void offsets3(long long i, const long long* __restrict__ meta,
                                         int nops, long long* off) {
    int rank = (int)meta[0];
    const long long* shape = meta + 2;
    off[0] = 0; off[1] = 0; off[2] = 0;
    for (int d = rank - 1; d >= 0; --d) {
        long long s = shape[d];
        long long q = i / s;
        long long r = i - q * s;
        for (int k = 0; k < nops; ++k) {
            off[k] += r * meta[2 + (long long)(k + 1) * rank + d];
        }
        i = q;
    }
}

// ---- unary f32 ----
// op: 0 relu, 1 sigmoid, 2 tanh, 3 erf, 4 sqrt, 5 gelu(erf), 6 gelu(tanh), 7 hardsigmoid(a, b),
// 8 hardswish, 9 clip(a = min, b = max), 10 leaky relu(a), 11 neg, 12 abs, 13 exp, 14 log,
// 15 reciprocal, 16 floor, 17 ceil, 18 round half to even, 19 identity.
__device__ __forceinline__ float unary_apply(int op, float x, float a, float b) {
    switch (op) {
    case 0: return fmaxf(x, 0.0f);  // like Rust's f32::max: NaN gives 0
    case 1: return 1.0f / (1.0f + expf(-x));
    case 2: return tanhf(x);
    case 3: return erff(x);
    case 4: return sqrtf(x);
    case 5: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 6: return 0.5f * x * (1.0f + tanhf(0.7978846f * (x + 0.044715f * x * x * x)));
    case 7: { float v = a * x + b; return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); }
    case 8: { float v = x / 6.0f + 0.5f; v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v); return x * v; }
    case 9: { float v = x < a ? a : x; return v > b ? b : v; }  // Min(b, Max(x, a)): b wins when a > b
    case 10: return x < 0.0f ? a * x : x;
    case 11: return -x;
    case 12: return fabsf(x);
    case 13: return expf(x);
    case 14: return logf(x);
    case 15: return 1.0f / x;
    case 16: return floorf(x);
    case 17: return ceilf(x);
    case 18: return rintf(x);
    default: return x;
    }
}

extern "C" __global__ void unary_f32(const float* __restrict__ x, float* y,
                                     unsigned long long n, int op, float a, float b) {
    long long i0 = gtid(), st = gstride(), nn = (long long)n;
    // x and y may be the same buffer (in place): each element is read then written by one thread.
    if ((((unsigned long long)x | (unsigned long long)y) & 15ull) == 0) {
        long long n4 = nn / 4;
        const float4* x4 = (const float4*)x;
        float4* y4 = (float4*)y;
        for (long long i = i0; i < n4; i += st) {
            float4 v = x4[i];
            v.x = unary_apply(op, v.x, a, b);
            v.y = unary_apply(op, v.y, a, b);
            v.z = unary_apply(op, v.z, a, b);
            v.w = unary_apply(op, v.w, a, b);
            y4[i] = v;
        }
        for (long long i = n4 * 4 + i0; i < nn; i += st) y[i] = unary_apply(op, x[i], a, b);
    } else {
        for (long long i = i0; i < nn; i += st) y[i] = unary_apply(op, x[i], a, b);
    }
}

// ---- binary f32 ----
// op: 0 add, 1 sub, 2 mul, 3 div, 4 pow, 5 fmod (C), 6 mod (Python, sign of divisor),
// 7 max (NaN-propagating), 8 min (NaN-propagating).
__device__ __forceinline__ float binary_apply_f32(int op, float x, float y) {
    switch (op) {
    case 0: return x + y;
    case 1: return x - y;
    case 2: return x * y;
    case 3: return x / y;
    case 4: return y == 2.0f ? x * x : powf(x, y);
    case 5: return fmodf(x, y);
    case 6: {
        float r = fmodf(x, y);
        if (r != 0.0f && ((r < 0.0f) != (y < 0.0f))) r += y;
        return r;
    }
    case 7: return (isnan(x) || isnan(y)) ? __int_as_float(0x7fc00000) : fmaxf(x, y);
    case 8: return (isnan(x) || isnan(y)) ? __int_as_float(0x7fc00000) : fminf(x, y);
    default: return 0.0f;
    }
}

// Same-shape operands (no broadcasting): vectorised when every pointer is 16-byte aligned.
extern "C" __global__ void binary_same_f32(const float* a, const float* b, float* y,
                                           unsigned long long n, int op) {
    long long i0 = gtid(), st = gstride(), nn = (long long)n;
    if ((((unsigned long long)a | (unsigned long long)b | (unsigned long long)y) & 15ull) == 0) {
        long long n4 = nn / 4;
        for (long long i = i0; i < n4; i += st) {
            float4 u = ((const float4*)a)[i];
            float4 v = ((const float4*)b)[i];
            float4 r;
            r.x = binary_apply_f32(op, u.x, v.x);
            r.y = binary_apply_f32(op, u.y, v.y);
            r.z = binary_apply_f32(op, u.z, v.z);
            r.w = binary_apply_f32(op, u.w, v.w);
            ((float4*)y)[i] = r;
        }
        for (long long i = n4 * 4 + i0; i < nn; i += st) y[i] = binary_apply_f32(op, a[i], b[i]);
    } else {
        for (long long i = i0; i < nn; i += st) y[i] = binary_apply_f32(op, a[i], b[i]);
    }
}

// Broadcasting f32 binary op over a strided index space (meta with two stride sets). `a` or
// `b` may alias `y` exactly (in place): element i is read and written by one thread only.
extern "C" __global__ void binary_f32(const float* a, const float* b, float* y,
                                      const long long* __restrict__ meta, int op) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 2, off);
        y[i] = binary_apply_f32(op, a[off[0]], b[off[1]]);
    }
}

// Integer arithmetic wraps (two's complement) like the host; division or remainder by zero
// gives 0 (the host reports an error), MIN / -1 wraps to MIN.
__device__ __forceinline__ long long binary_apply_i64(int op, long long x, long long y) {
    unsigned long long ux = (unsigned long long)x, uy = (unsigned long long)y;
    const long long MINV = (long long)0x8000000000000000ull;
    switch (op) {
    case 0: return (long long)(ux + uy);
    case 1: return (long long)(ux - uy);
    case 2: return (long long)(ux * uy);
    case 3:
        if (y == 0) return 0;
        if (y == -1) return (long long)(0ull - ux);
        return x / y;
    case 4: {
        if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
        unsigned long long base = ux, acc = 1;
        long long e = y;
        while (e > 0) {
            if (e & 1) acc *= base;
            base *= base;
            e >>= 1;
        }
        return (long long)acc;
    }
    case 5:
    case 6: {
        if (y == 0 || (x == MINV && y == -1)) return 0;
        long long r = x % y;
        if (op == 6 && r != 0 && ((r < 0) != (y < 0))) r = (long long)((unsigned long long)r + uy);
        return r;
    }
    case 7: return x > y ? x : y;
    case 8: return x < y ? x : y;
    default: return 0;
    }
}

__device__ __forceinline__ int binary_apply_i32(int op, int x, int y) {
    unsigned int ux = (unsigned int)x, uy = (unsigned int)y;
    const int MINV = (int)0x80000000u;
    switch (op) {
    case 0: return (int)(ux + uy);
    case 1: return (int)(ux - uy);
    case 2: return (int)(ux * uy);
    case 3:
        if (y == 0) return 0;
        if (y == -1) return (int)(0u - ux);
        return x / y;
    case 4: {
        if (y < 0) return x == 1 ? 1 : (x == -1 ? ((y & 1) ? -1 : 1) : 0);
        unsigned int base = ux, acc = 1;
        int e = y;
        while (e > 0) {
            if (e & 1) acc *= base;
            base *= base;
            e >>= 1;
        }
        return (int)acc;
    }
    case 5:
    case 6: {
        if (y == 0 || (x == MINV && y == -1)) return 0;
        int r = x % y;
        if (op == 6 && r != 0 && ((r < 0) != (y < 0))) r = (int)((unsigned int)r + uy);
        return r;
    }
    case 7: return x > y ? x : y;
    case 8: return x < y ? x : y;
    default: return 0;
    }
}

extern "C" __global__ void binary_i64(const long long* a, const long long* b, long long* y,
                                      const long long* __restrict__ meta, int op) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 2, off);
        y[i] = binary_apply_i64(op, a[off[0]], b[off[1]]);
    }
}

extern "C" __global__ void binary_i32(const int* a, const int* b, int* y,
                                      const long long* __restrict__ meta, int op) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 2, off);
        y[i] = binary_apply_i32(op, a[off[0]], b[off[1]]);
    }
}

__device__ __forceinline__ double load_as_f64(const void* p, int dt, long long i) {
    switch (dt) {
    case 0: return (double)((const float*)p)[i];
    case 1: return (double)((const long long*)p)[i];
    case 2: return (double)((const int*)p)[i];
    default: return ((const unsigned char*)p)[i] != 0 ? 1.0 : 0.0;
    }
}

// Float-to-integer conversion like Rust's `as`: truncation, saturation, NaN -> 0.
__device__ __forceinline__ long long f64_to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775807.0) return (long long)0x7fffffffffffffffull;
    if (v <= -9223372036854775808.0) return (long long)0x8000000000000000ull;
    return (long long)v;
}
__device__ __forceinline__ int f64_to_i32(double v) {
    if (isnan(v)) return 0;
    if (v >= 2147483647.0) return 2147483647;
    if (v <= -2147483648.0) return (int)0x80000000u;
    return (int)v;
}

// Pow with mixed operand types (opset 12+): computed in f64 and converted to the base's type.
extern "C" __global__ void pow_mixed(const void* a, int adt, const void* b, int bdt, void* y,
                                     const long long* __restrict__ meta) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 2, off);
        double r = pow(load_as_f64(a, adt, off[0]), load_as_f64(b, bdt, off[1]));
        switch (adt) {
        case 0: ((float*)y)[i] = (float)r; break;
        case 1: ((long long*)y)[i] = f64_to_i64(r); break;
        case 2: ((int*)y)[i] = f64_to_i32(r); break;
        default: break;
        }
    }
}

// Equal -> bool, any dtype.
extern "C" __global__ void equal_any(const void* a, const void* b, unsigned char* y,
                                     const long long* __restrict__ meta, int dt) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 2, off);
        bool e;
        switch (dt) {
        case 0: e = ((const float*)a)[off[0]] == ((const float*)b)[off[1]]; break;
        case 1: e = ((const long long*)a)[off[0]] == ((const long long*)b)[off[1]]; break;
        case 2: e = ((const int*)a)[off[0]] == ((const int*)b)[off[1]]; break;
        default: e = ((const unsigned char*)a)[off[0]] == ((const unsigned char*)b)[off[1]]; break;
        }
        y[i] = e ? 1 : 0;
    }
}

__device__ __forceinline__ void copy_elem(const void* src, long long si, void* dst, long long di,
                                          int esize) {
    switch (esize) {
    case 8: ((long long*)dst)[di] = ((const long long*)src)[si]; break;
    case 4: ((int*)dst)[di] = ((const int*)src)[si]; break;
    case 2: ((short*)dst)[di] = ((const short*)src)[si]; break;
    default: ((unsigned char*)dst)[di] = ((const unsigned char*)src)[si]; break;
    }
}

// Where: out = cond ? x : y with three-way broadcasting (meta with three stride sets:
// cond, x, y). Elements of `esize` bytes (1, 2, 4 or 8).
extern "C" __global__ void where_any(const unsigned char* c, const void* x, const void* y,
                                     void* out, const long long* __restrict__ meta, int esize) {
    long long n = meta[1];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long off[3];
        offsets3(i, meta, 3, off);
        if (c[off[0]] != 0) copy_elem(x, off[1], out, i, esize);
        else copy_elem(y, off[2], out, i, esize);
    }
}

// Cast between dtype codes (float to integer truncates and saturates, NaN -> 0; to bool is
// x != 0; integer narrowing wraps).
extern "C" __global__ void cast_any(const void* x, int sdt, void* y, int ddt,
                                    unsigned long long n) {
    long long nn = (long long)n;
    for (long long i = gtid(); i < nn; i += gstride()) {
        if (sdt == 0) {
            float v = ((const float*)x)[i];
            switch (ddt) {
            case 0: ((float*)y)[i] = v; break;
            case 1: ((long long*)y)[i] = f64_to_i64((double)v); break;
            case 2: ((int*)y)[i] = f64_to_i32((double)v); break;
            default: ((unsigned char*)y)[i] = (v != 0.0f || isnan(v)) ? 1 : 0; break;
            }
        } else {
            long long v;
            switch (sdt) {
            case 1: v = ((const long long*)x)[i]; break;
            case 2: v = (long long)((const int*)x)[i]; break;
            default: v = ((const unsigned char*)x)[i] != 0 ? 1 : 0; break;
            }
            switch (ddt) {
            case 0: ((float*)y)[i] = (float)v; break;
            case 1: ((long long*)y)[i] = v; break;
            case 2: ((int*)y)[i] = (int)(unsigned int)(unsigned long long)v; break;
            default: ((unsigned char*)y)[i] = v != 0 ? 1 : 0; break;
            }
        }
    }
}

// Generic strided copy over an index space: meta = [rank, n, in_base, out_base, shape[rank],
// in_strides[rank], out_strides[rank]] (element strides, may be negative or 0). Expand,
// Transpose, Slice, Concat (one launch per input), Split (one per output) and plain copies.
extern "C" __global__ void strided_copy(const void* x, void* y,
                                        const long long* __restrict__ meta, int esize) {
    int rank = (int)meta[0];
    long long n = meta[1];
    const long long* shape = meta + 4;
    const long long* ist = shape + rank;
    const long long* ost = ist + rank;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long rem = i, io = meta[2], oo = meta[3];
        for (int d = rank - 1; d >= 0; --d) {
            long long q = rem / shape[d];
            long long r = rem - q * shape[d];
            io += r * ist[d];
            oo += r * ost[d];
            rem = q;
        }
        copy_elem(x, io, y, oo, esize);
    }
}

// Gather (numpy take along an axis): meta = [outer, axis_len, inner, n_idx, n_out]. Negative
// indices count from the end; indices still out of range give zeros (the host reports an
// error).
extern "C" __global__ void gather_any(const void* data, const void* idx, int idx64, void* out,
                                      const long long* __restrict__ meta, int esize) {
    long long axis_len = meta[1], inner = meta[2], nidx = meta[3], n = meta[4];
    for (long long i = gtid(); i < n; i += gstride()) {
        long long in_i = i % inner;
        long long t = i / inner;
        long long j = t % nidx;
        long long o = t / nidx;
        long long k = idx64 ? ((const long long*)idx)[j] : (long long)((const int*)idx)[j];
        if (k < 0) k += axis_len;
        if (k < 0 || k >= axis_len) {
            switch (esize) {
            case 8: ((long long*)out)[i] = 0; break;
            case 4: ((int*)out)[i] = 0; break;
            case 2: ((short*)out)[i] = 0; break;
            default: ((unsigned char*)out)[i] = 0; break;
            }
        } else {
            copy_elem(data, (o * axis_len + k) * inner + in_i, out, i, esize);
        }
    }
}

// Pad (f32): meta = [rank, n, out_shape[rank], in_shape[rank], pads_begin[rank],
// in_strides[rank]]; pads may be negative (cropping). mode: 0 constant, 1 reflect, 2 edge,
// 3 wrap.
extern "C" __global__ void pad_f32(const float* __restrict__ x, float* __restrict__ y,
                                   const long long* __restrict__ meta, int mode, float value) {
    int rank = (int)meta[0];
    long long n = meta[1];
    const long long* oshape = meta + 2;
    const long long* ishape = oshape + rank;
    const long long* pb = ishape + rank;
    const long long* ist = pb + rank;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long rem = i, off = 0;
        bool inside = true;
        for (int d = rank - 1; d >= 0; --d) {
            long long q = rem / oshape[d];
            long long o = rem - q * oshape[d];
            rem = q;
            long long len = ishape[d];
            long long p = o - pb[d];
            if (p < 0 || p >= len) {
                if (mode == 0 || len == 0) { inside = false; continue; }
                if (mode == 2) {
                    p = p < 0 ? 0 : len - 1;
                } else if (mode == 3) {
                    p %= len;
                    if (p < 0) p += len;
                } else {
                    if (len == 1) {
                        p = 0;
                    } else {
                        long long period = 2 * (len - 1);
                        long long m = p % period;
                        if (m < 0) m += period;
                        p = m < len ? m : period - m;
                    }
                }
            }
            off += p * ist[d];
        }
        y[i] = inside ? x[off] : value;
    }
}
