// AegisRT CUDA kernels: convolution (f32, NC + 1-3 spatial axes, groups, pads, strides,
// dilations), as crates/aegis-exec/src/kernels/conv.rs, with an optional fused bias and
// activation (the unary op codes of elementwise.cu; 19 = none).
//
// Geometry p = [N, C_in, C_out, group, in[3], out[3], k[3], s[3], d[3], pad_begin[3],
//               has_bias, vec_a, split] with missing leading spatial axes padded with extent 1,
// kernel 1, stride 1, dilation 1, pad 0.
//
// conv_igemm_f32: implicit GEMM per group: Y_g[m, q] = sum_r W_g[m, r] * col(X)[r, q] with
// m an output channel of the group, q = (batch, output pixel), r = (input channel, tap); the
// im2col matrix is never materialised: B tiles are gathered from X into shared memory with
// zero padding. Block tile 64 x 64 x 16, 256 threads, 4 x 4 per thread; W rows loaded as
// float4 when vec_a (R % 4 == 0). conv_igemm128_f32: the same with 128 x 64 tiles, 8 x 4 per
// thread. With split > 0 (split-K, for convs whose output tiles cannot fill the GPU) each
// block reduces one slice of r into a scratch [slices][C_out][Q] and
// conv_splitk_reduce_f32 sums the slices in order (deterministic), adds the bias and applies
// the activation.
// conv_depthwise_f32: direct, one thread per output (group == C_in == C_out).
// conv_transpose_f32: direct gather, one thread per output.

#define BK 16
#define CONV_THREADS 256

__device__ __forceinline__ long long gtid() {
    return (long long)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ long long gstride() {
    return (long long)gridDim.x * blockDim.x;
}

__device__ __forceinline__ float act_apply(int op, float x, float a, float b) {
    switch (op) {
    case 0: return fmaxf(x, 0.0f);
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
    default: return x;
    }
}

// Taps of the filter kept in shared memory as (kd * d0, kh * d1, kw * d2): decoded once per
// block, so the gather never divides. Larger filters decode by division (uniform branch).
#define MAX_TAPS 256

// The implicit-GEMM body for a block tile of (16 x TM) output channels x 64 pixels: each of
// the 256 threads holds TM channels x 4 pixels. Larger TM cuts the shared-memory and global
// traffic per FMA, for convs with enough channels to fill the tile. Double-buffered: the
// next k-tile's A and B values are loaded into registers before the current tile's FMAs and
// stored into the other shared buffer after them, so global latency overlaps arithmetic and
// one barrier per k-tile suffices.
template <int TM>
__device__ __forceinline__ void conv_igemm_body(const float* __restrict__ x,
                                                const float* __restrict__ w,
                                                const float* __restrict__ bias,
                                                float* __restrict__ y,
                                                const long long* __restrict__ p, int act,
                                                float act_a, float act_b) {
    constexpr int BMT = 16 * TM, BN = 64;
    __shared__ __align__(16) float As[2][BK][BMT];
    __shared__ __align__(16) float Bs[2][BK][BN];
    __shared__ int4 Tap[MAX_TAPS];
    // 32-bit geometry: the lowering refuses tensors of 2^31 or more elements.
    const int nb = (int)p[0], cin = (int)p[1], cout = (int)p[2], group = (int)p[3];
    const int in0 = (int)p[4], in1 = (int)p[5], in2 = (int)p[6];
    const int out1 = (int)p[8], out2 = (int)p[9];
    const int k1 = (int)p[11], k2 = (int)p[12];
    const int s0 = (int)p[13], s1 = (int)p[14], s2 = (int)p[15];
    const int d0 = (int)p[16], d1 = (int)p[17], d2 = (int)p[18];
    const int pb0 = (int)p[19], pb1 = (int)p[20], pb2 = (int)p[21];
    const int has_bias = (int)p[22], vec_a = (int)p[23];
    // Split-K: grid.z = group x slices; block z reduces r in [s * split, (s + 1) * split)
    // of group z / slices (s = z % slices) and stores its raw partial tile to
    // y[s][cout][Q]; conv_splitk_reduce_f32 finishes.
    const int split = (int)p[24];
    const int cig = cin / group, cog = cout / group;
    const int kp = (int)p[10] * k1 * k2;
    const int R = cig * kp;
    const int ip = in0 * in1 * in2;
    const int op = (int)p[7] * out1 * out2;
    const int Q = nb * op;
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const int m0 = blockIdx.y * BMT, q0 = blockIdx.x * BN;
    for (int t = tid; t < kp && t < MAX_TAPS; t += CONV_THREADS) {
        int kw = t % k2, kh = (t / k2) % k1, kd = t / (k2 * k1);
        Tap[t] = make_int4(kd * d0, kh * d1, kw * d2, 0);
    }
    // This thread's B column (fixed for the whole tile): output pixel q0 + tid % 64; its
    // rows of each k-tile: tid / 64 + 4 * l.
    const int bq = tid % BN;
    const int gq = q0 + bq;
    const bool q_ok = gq < Q;
    int qb = 0, qd = 0, qh = 0, qw = 0;
    if (q_ok) {
        qb = gq / op;
        int r = gq - qb * op;
        qw = r % out2;
        qh = (r / out2) % out1;
        qd = r / (out2 * out1);
    }
    const int sd = qd * s0 - pb0, sh = qh * s1 - pb1, sw = qw * s2 - pb2;
    const int slices = split ? (R + split - 1) / split : 1;
    const int zs = split ? (int)blockIdx.z % slices : 0;
    const int r_lo = zs * split;
    const int r_hi = split && r_lo + split < R ? r_lo + split : R;
    const int g_lo = split ? (int)blockIdx.z / slices : blockIdx.z;
    const int g_step = split ? group : gridDim.z;
    // Each k-tile moves every row by BK: (channel, tap) advance by (BK / kp, BK % kp).
    const int dci = BK / kp, dtap = BK % kp;
    __syncthreads();
    for (int g = g_lo; g < group; g += g_step) {
        const float* wg = w + (long long)g * cog * R;
        const float* xg = x + ((long long)qb * cin + (long long)g * cig) * ip;
        // This thread's B rows as (input channel, tap), advanced incrementally per k-tile.
        int ci[4], tap[4];
#pragma unroll
        for (int l = 0; l < 4; ++l) {
            int r = r_lo + tid / BN + 4 * l;
            ci[l] = r / kp;
            tap[l] = r - ci[l] * kp;
        }
        float pa[TM], pb[4];
        auto load = [&](int r0) {
            if (vec_a) {
#pragma unroll
                for (int l = 0; l < TM / 4; ++l) {
                    int e = tid + CONV_THREADS * l;
                    int am = e / 4, ak = (e % 4) * 4;
                    int gm = m0 + am, gr = r0 + ak;
                    float4 va = make_float4(0.f, 0.f, 0.f, 0.f);
                    if (gm < cog && gr < r_hi)
                        va = *(const float4*)(wg + (long long)gm * R + gr);
                    pa[4 * l] = va.x;
                    pa[4 * l + 1] = va.y;
                    pa[4 * l + 2] = va.z;
                    pa[4 * l + 3] = va.w;
                }
            } else {
#pragma unroll
                for (int l = 0; l < TM; ++l) {
                    int e = tid + CONV_THREADS * l;
                    int am = e / BK, ak = e % BK;
                    int gm = m0 + am, gr = r0 + ak;
                    pa[l] = (gm < cog && gr < r_hi) ? wg[(long long)gm * R + gr] : 0.0f;
                }
            }
#pragma unroll
            for (int l = 0; l < 4; ++l) {
                int gr = r0 + tid / BN + 4 * l;
                float v = 0.0f;
                if (q_ok && gr < r_hi) {
                    int4 tp;
                    if (kp <= MAX_TAPS) {
                        tp = Tap[tap[l]];
                    } else {
                        int t = tap[l];
                        tp = make_int4(t / (k2 * k1) * d0, (t / k2) % k1 * d1, t % k2 * d2, 0);
                    }
                    int id = sd + tp.x, ih = sh + tp.y, iw = sw + tp.z;
                    if ((unsigned)id < (unsigned)in0 && (unsigned)ih < (unsigned)in1 &&
                        (unsigned)iw < (unsigned)in2)
                        v = xg[(long long)ci[l] * ip + (id * in1 + ih) * in2 + iw];
                }
                pb[l] = v;
            }
        };
        auto store = [&](int buf) {
            if (vec_a) {
#pragma unroll
                for (int l = 0; l < TM / 4; ++l) {
                    int e = tid + CONV_THREADS * l;
                    int am = e / 4, ak = (e % 4) * 4;
#pragma unroll
                    for (int i = 0; i < 4; ++i) As[buf][ak + i][am] = pa[4 * l + i];
                }
            } else {
#pragma unroll
                for (int l = 0; l < TM; ++l) {
                    int e = tid + CONV_THREADS * l;
                    As[buf][e % BK][e / BK] = pa[l];
                }
            }
#pragma unroll
            for (int l = 0; l < 4; ++l) Bs[buf][tid / BN + 4 * l][bq] = pb[l];
        };
        float acc[TM][4];
#pragma unroll
        for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
        load(r_lo);
        store(0);
        __syncthreads();
        int buf = 0;
        for (int r0 = r_lo; r0 < r_hi; r0 += BK) {
            const bool more = r0 + BK < r_hi;
            if (more) {
#pragma unroll
                for (int l = 0; l < 4; ++l) {
                    ci[l] += dci;
                    tap[l] += dtap;
                    if (tap[l] >= kp) {
                        tap[l] -= kp;
                        ++ci[l];
                    }
                }
                load(r0 + BK);
            }
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) {
                float av[TM];
#pragma unroll
                for (int i = 0; i < TM; i += 4) {
                    float4 ra = *(const float4*)&As[buf][kk][ty * TM + i];
                    av[i] = ra.x;
                    av[i + 1] = ra.y;
                    av[i + 2] = ra.z;
                    av[i + 3] = ra.w;
                }
                float4 rb = *(const float4*)&Bs[buf][kk][tx * 4];
                float bv[4] = {rb.x, rb.y, rb.z, rb.w};
#pragma unroll
                for (int i = 0; i < TM; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
            }
            if (more) store(buf ^ 1);
            __syncthreads();
            buf ^= 1;
        }
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            int gm = m0 + ty * TM + i;
            if (gm >= cog) continue;
            int co = g * cog + gm;
            float bv = has_bias ? bias[co] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                int q = q0 + tx * 4 + j;
                if (q >= Q) continue;
                if (split) {
                    y[((long long)zs * cout + co) * Q + q] = acc[i][j];
                    continue;
                }
                int b = q / op, pix = q - b * op;
                y[((long long)b * cout + co) * op + pix] = act_apply(act, acc[i][j] + bv, act_a, act_b);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS)
conv_igemm_f32(const float* __restrict__ x, const float* __restrict__ w,
               const float* __restrict__ bias, float* __restrict__ y,
               const long long* __restrict__ p, int act, float act_a, float act_b) {
    conv_igemm_body<4>(x, w, bias, y, p, act, act_a, act_b);
}

// conv_igemm128_f32: conv_igemm_f32 with 128-channel block tiles (grid.y = ceil(C_out/g / 128)).
extern "C" __global__ void __launch_bounds__(CONV_THREADS)
conv_igemm128_f32(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, float* __restrict__ y,
                  const long long* __restrict__ p, int act, float act_a, float act_b) {
    conv_igemm_body<8>(x, w, bias, y, p, act, act_a, act_b);
}

// conv_splitk_reduce_f32: finishes a split-K conv_igemm_f32. ws = [splits][C_out][Q] raw
// partial sums (Q = batch x output pixels); sums the splits in order (deterministic), adds
// the bias, applies the activation and stores NCHW. p = [splits, C_out, Q, out pixels,
// has_bias].
extern "C" __global__ void conv_splitk_reduce_f32(const float* __restrict__ ws,
                                                  const float* __restrict__ bias,
                                                  float* __restrict__ y,
                                                  const long long* __restrict__ p, int act,
                                                  float act_a, float act_b) {
    const long long splits = p[0], cout = p[1], Q = p[2], op = p[3];
    const int has_bias = (int)p[4];
    const long long n = cout * Q;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long co = i / Q, q = i - co * Q;
        float s = 0.0f;
        for (long long z = 0; z < splits; ++z) s += ws[z * n + i];
        if (has_bias) s += bias[co];
        long long b = q / op, pix = q - b * op;
        y[(b * cout + co) * op + pix] = act_apply(act, s, act_a, act_b);
    }
}

extern "C" __global__ void conv_depthwise_f32(const float* __restrict__ x,
                                              const float* __restrict__ w,
                                              const float* __restrict__ bias,
                                              float* __restrict__ y,
                                              const long long* __restrict__ p, int act,
                                              float act_a, float act_b) {
    const long long nb = p[0], ch = p[2];
    const long long* in = p + 4;
    const long long* out = p + 7;
    const long long* k = p + 10;
    const long long* s = p + 13;
    const long long* dl = p + 16;
    const long long* pb = p + 19;
    const int has_bias = (int)p[22];
    const long long ip = in[0] * in[1] * in[2];
    const long long op = out[0] * out[1] * out[2];
    const long long kp = k[0] * k[1] * k[2];
    const long long n = nb * ch * op;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long plane = i / op;
        long long r = i - plane * op;
        long long c = plane % ch;
        long long ow = r % out[2];
        long long oh = (r / out[2]) % out[1];
        long long od = r / (out[2] * out[1]);
        const float* xp = x + plane * ip;
        const float* wc = w + c * kp;
        float acc = 0.0f;
        for (long long kd = 0; kd < k[0]; ++kd) {
            long long id = od * s[0] - pb[0] + kd * dl[0];
            if (id < 0 || id >= in[0]) continue;
            for (long long kh = 0; kh < k[1]; ++kh) {
                long long ih = oh * s[1] - pb[1] + kh * dl[1];
                if (ih < 0 || ih >= in[1]) continue;
                for (long long kw = 0; kw < k[2]; ++kw) {
                    long long iw = ow * s[2] - pb[2] + kw * dl[2];
                    if (iw < 0 || iw >= in[2]) continue;
                    acc = fmaf(xp[(id * in[1] + ih) * in[2] + iw], wc[(kd * k[1] + kh) * k[2] + kw], acc);
                }
            }
        }
        y[i] = act_apply(act, acc + (has_bias ? bias[c] : 0.0f), act_a, act_b);
    }
}

// ConvTranspose: p as above with in = the transposed conv's input (X) spatial extent and
// out = its output extent; W is [C_in, C_out / group, k...]. Output (b, co, o) sums
// x[b, ci, i] * w[ci, co_g, t] over i * s - pad + t * d == o.
extern "C" __global__ void conv_transpose_f32(const float* __restrict__ x,
                                              const float* __restrict__ w,
                                              const float* __restrict__ bias,
                                              float* __restrict__ y,
                                              const long long* __restrict__ p) {
    const long long nb = p[0], cin = p[1], cout = p[2], group = p[3];
    const long long* in = p + 4;
    const long long* out = p + 7;
    const long long* k = p + 10;
    const long long* s = p + 13;
    const long long* dl = p + 16;
    const long long* pb = p + 19;
    const int has_bias = (int)p[22];
    const long long cig = cin / group, cog = cout / group;
    const long long ip = in[0] * in[1] * in[2];
    const long long op = out[0] * out[1] * out[2];
    const long long kp = k[0] * k[1] * k[2];
    const long long n = nb * cout * op;
    for (long long i = gtid(); i < n; i += gstride()) {
        long long plane = i / op;
        long long r = i - plane * op;
        long long co = plane % cout, b = plane / cout;
        long long g = co / cog, cg = co - g * cog;
        long long ow = r % out[2];
        long long oh = (r / out[2]) % out[1];
        long long od = r / (out[2] * out[1]);
        float acc = has_bias ? bias[co] : 0.0f;
        for (long long kd = 0; kd < k[0]; ++kd) {
            long long td = od + pb[0] - kd * dl[0];
            if (td < 0 || td % s[0] != 0) continue;
            long long id = td / s[0];
            if (id >= in[0]) continue;
            for (long long kh = 0; kh < k[1]; ++kh) {
                long long th = oh + pb[1] - kh * dl[1];
                if (th < 0 || th % s[1] != 0) continue;
                long long ih = th / s[1];
                if (ih >= in[1]) continue;
                for (long long kw = 0; kw < k[2]; ++kw) {
                    long long tw = ow + pb[2] - kw * dl[2];
                    if (tw < 0 || tw % s[2] != 0) continue;
                    long long iw = tw / s[2];
                    if (iw >= in[2]) continue;
                    long long pix = (id * in[1] + ih) * in[2] + iw;
                    long long tap = (kd * k[1] + kh) * k[2] + kw;
                    for (long long ci = 0; ci < cig; ++ci) {
                        long long cin_i = g * cig + ci;
                        acc = fmaf(x[(b * cin + cin_i) * ip + pix], w[(cin_i * cog + cg) * kp + tap], acc);
                    }
                }
            }
        }
        y[i] = acc;
    }
}
