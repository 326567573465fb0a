// AegisRT CUDA kernels: tiled shared-memory SGEMM for Gemm and MatMul (f32).
//
// Y[z] (M x N, row-major, contiguous) = alpha * op(A[z]) op(B[z]) + beta * C[z]
// with A, B and C addressed through element strides (so transposes and broadcast bias are
// strides, and a 0 stride broadcasts) and per-batch offsets (batch broadcasting is an offset
// table). Block tile 64 x 64 x 16, 256 threads, 4 x 4 outputs per thread in registers,
// float4 loads from global memory when the host says the operands allow it (contiguous
// rows, extents and offsets multiples of 4, 16-byte aligned).
//
// p = [M, N, K, batch, a_rs, a_cs, b_rs, b_cs, c_rs, c_cs, has_c, vec,
//      then per batch z: a_off, b_off, c_off, y_off]

#define BM 64
#define BN 64
#define BK 16
#define GEMM_THREADS 256

extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
sgemm_f32(const float* __restrict__ a, const float* __restrict__ b,
          const float* __restrict__ c, float* __restrict__ y,
          const long long* __restrict__ p, float alpha, float beta) {
    __shared__ __align__(16) float As[BK][BM];
    __shared__ __align__(16) float Bs[BK][BN];
    const long long M = p[0], N = p[1], K = p[2], batch = p[3];
    const long long a_rs = p[4], a_cs = p[5], b_rs = p[6], b_cs = p[7];
    const long long c_rs = p[8], c_cs = p[9];
    const int has_c = (int)p[10], vec = (int)p[11];
    const int tid = threadIdx.x;
    const int tx = tid % 16, ty = tid / 16;
    const long long n0 = (long long)blockIdx.x * BN;
    // Grid-stride over batches and row tiles (gridDim.y and .z are capped at 65535).
    for (long long z = blockIdx.z; z < batch; z += gridDim.z)
    for (long long m0 = (long long)blockIdx.y * BM; m0 < M; m0 += (long long)gridDim.y * BM) {
        const float* az = a + p[12 + 4 * z];
        const float* bz = b + p[13 + 4 * z];
        const float* cz = c + p[14 + 4 * z];
        float* yz = y + p[15 + 4 * z];
        float acc[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
        for (long long k0 = 0; k0 < K; k0 += BK) {
            if (vec) {
                // A row-major (a_cs == 1): one float4 along k per thread.
                int am = tid / 4, ak = (tid % 4) * 4;
                long long gm = m0 + am, gk = k0 + ak;
                float4 va = make_float4(0.f, 0.f, 0.f, 0.f);
                if (gm < M && gk < K) va = *(const float4*)(az + gm * a_rs + gk);
                As[ak + 0][am] = va.x;
                As[ak + 1][am] = va.y;
                As[ak + 2][am] = va.z;
                As[ak + 3][am] = va.w;
                // B row-major (b_cs == 1): one float4 along n per thread.
                int bk = tid / 16, bn = (tid % 16) * 4;
                long long gk2 = k0 + bk, gn = n0 + bn;
                float4 vb = make_float4(0.f, 0.f, 0.f, 0.f);
                if (gk2 < K && gn < N) vb = *(const float4*)(bz + gk2 * b_rs + gn);
                *(float4*)&Bs[bk][bn] = vb;
            } else {
#pragma unroll
                for (int l = 0; l < 4; ++l) {
                    int e = tid + GEMM_THREADS * l;
                    int am, ak;
                    if (a_cs == 1) { am = e / BK; ak = e % BK; } else { ak = e / BM; am = e % BM; }
                    long long gm = m0 + am, gk = k0 + ak;
                    As[ak][am] = (gm < M && gk < K) ? az[gm * a_rs + gk * a_cs] : 0.0f;
                    int bk, bn;
                    if (b_cs == 1) { bk = e / BN; bn = e % BN; } else { bn = e / BK; bk = e % BK; }
                    long long gk2 = k0 + bk, gn = n0 + bn;
                    Bs[bk][bn] = (gk2 < K && gn < N) ? bz[gk2 * b_rs + gn * b_cs] : 0.0f;
                }
            }
            __syncthreads();
#pragma unroll
            for (int kk = 0; kk < BK; ++kk) {
                float4 ra = *(const float4*)&As[kk][ty * 4];
                float4 rb = *(const float4*)&Bs[kk][tx * 4];
                float av[4] = {ra.x, ra.y, ra.z, ra.w};
                float bv[4] = {rb.x, rb.y, rb.z, rb.w};
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            long long gm = m0 + ty * 4 + i;
            if (gm >= M) continue;
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                long long gn = n0 + tx * 4 + j;
                if (gn >= N) continue;
                float v = alpha * acc[i][j];
                if (has_c) v += beta * cz[gm * c_rs + gn * c_cs];
                yz[gm * N + gn] = v;
            }
        }
    }
}

// sgemv_f32: the same operation and parameter table as sgemm_f32 for M == 1 (batch-1
// classifier layers). The tiled SGEMM would use 1 of every 64 tile rows and N / 64 blocks,
// while the layer is a stream over B. Two layouts, both with a fixed-order reduction:
// - b_rs == 1 (B's k axis contiguous, as Gemm transB = 1): one warp per column, lanes
//   strided over k (float4 when `vec`), lane partials summed in lane order;
// - otherwise: 32 columns per block, lanes over columns (coalesced rows of B), the 8 warps
//   over interleaved k, warp partials summed in warp order.
// Launched with grid.x = ceil(N / 8) in the first layout, ceil(N / 32) in the second.
extern "C" __global__ void __launch_bounds__(GEMM_THREADS)
sgemv_f32(const float* __restrict__ a, const float* __restrict__ b,
          const float* __restrict__ c, float* __restrict__ y,
          const long long* __restrict__ p, float alpha, float beta) {
    __shared__ float part[GEMM_THREADS / 32][33];
    const long long N = p[1], K = p[2], batch = p[3];
    const long long a_cs = p[5], b_rs = p[6], b_cs = p[7], c_cs = p[9];
    const int has_c = (int)p[10], vec = (int)p[11];
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32;
    for (long long z = blockIdx.z; z < batch; z += gridDim.z) {
        const float* az = a + p[12 + 4 * z];
        const float* bz = b + p[13 + 4 * z];
        const float* cz = c + p[14 + 4 * z];
        float* yz = y + p[15 + 4 * z];
        float acc = 0.0f;
        long long n;
        if (b_rs == 1) {
            n = (long long)blockIdx.x * (GEMM_THREADS / 32) + wid;
            if (n < N) {
                const float* bn = bz + n * b_cs;
                if (vec) {
                    // Four float4 loads of B in flight per lane before their FMAs: the layer
                    // is a stream over B, bound by memory-level parallelism.
                    long long k = 4 * lane;
                    for (; k + 384 < K; k += 512) {
                        float4 w0 = *(const float4*)(bn + k);
                        float4 w1 = *(const float4*)(bn + k + 128);
                        float4 w2 = *(const float4*)(bn + k + 256);
                        float4 w3 = *(const float4*)(bn + k + 384);
                        float4 x0 = *(const float4*)(az + k);
                        float4 x1 = *(const float4*)(az + k + 128);
                        float4 x2 = *(const float4*)(az + k + 256);
                        float4 x3 = *(const float4*)(az + k + 384);
                        acc = fmaf(x0.x, w0.x, acc);
                        acc = fmaf(x0.y, w0.y, acc);
                        acc = fmaf(x0.z, w0.z, acc);
                        acc = fmaf(x0.w, w0.w, acc);
                        acc = fmaf(x1.x, w1.x, acc);
                        acc = fmaf(x1.y, w1.y, acc);
                        acc = fmaf(x1.z, w1.z, acc);
                        acc = fmaf(x1.w, w1.w, acc);
                        acc = fmaf(x2.x, w2.x, acc);
                        acc = fmaf(x2.y, w2.y, acc);
                        acc = fmaf(x2.z, w2.z, acc);
                        acc = fmaf(x2.w, w2.w, acc);
                        acc = fmaf(x3.x, w3.x, acc);
                        acc = fmaf(x3.y, w3.y, acc);
                        acc = fmaf(x3.z, w3.z, acc);
                        acc = fmaf(x3.w, w3.w, acc);
                    }
                    for (; k < K; k += 128) {
                        float4 x = *(const float4*)(az + k);
                        float4 w = *(const float4*)(bn + k);
                        acc = fmaf(x.x, w.x, acc);
                        acc = fmaf(x.y, w.y, acc);
                        acc = fmaf(x.z, w.z, acc);
                        acc = fmaf(x.w, w.w, acc);
                    }
                } else {
                    for (long long k = lane; k < K; k += 32) acc = fmaf(az[k * a_cs], bn[k], acc);
                }
            }
            part[wid][lane] = acc;
        } else {
            n = (long long)blockIdx.x * 32 + lane;
            if (n < N)
                for (long long k = wid; k < K; k += GEMM_THREADS / 32)
                    acc = fmaf(az[k * a_cs], bz[k * b_rs + n * b_cs], acc);
            part[wid][lane] = acc;
        }
        __syncthreads();
        if (b_rs == 1) {
            if (lane == 0 && n < N) {
                float s = 0.0f;
                for (int i = 0; i < 32; ++i) s += part[wid][i];
                float v = alpha * s;
                if (has_c) v += beta * cz[n * c_cs];
                yz[n] = v;
            }
        } else if (wid == 0 && n < N) {
            float s = 0.0f;
            for (int i = 0; i < GEMM_THREADS / 32; ++i) s += part[i][lane];
            float v = alpha * s;
            if (has_c) v += beta * cz[n * c_cs];
            yz[n] = v;
        }
        __syncthreads();
    }
}
