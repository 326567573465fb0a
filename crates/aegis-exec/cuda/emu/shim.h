// Serial CUDA emulation: one OS thread per CUDA thread of a block, blocks one after another,
// __syncthreads as a std::barrier. For checking kernel index math on a machine without a GPU.
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;
static std::barrier<>* g_bar;
static inline void __syncthreads() { g_bar->arrive_and_wait(); }
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(n)
struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
struct alignas(16) int4 { int x, y, z, w; };
static inline int4 make_int4(int a, int b, int c, int d) { return {a, b, c, d}; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
using std::isnan;
template <class F> void emu_launch(dim3 g, dim3 b, F f) {
    gridDim = g; blockDim = b;
    unsigned nt = b.x * b.y * b.z;
    for (unsigned bz = 0; bz < g.z; ++bz) for (unsigned by = 0; by < g.y; ++by) for (unsigned bx = 0; bx < g.x; ++bx) {
        std::barrier<> bar(nt);
        g_bar = &bar;
        std::vector<std::thread> ts;
        for (unsigned t = 0; t < nt; ++t) ts.emplace_back([=] {
            blockIdx = {bx, by, bz};
            threadIdx = {t % b.x, (t / b.x) % b.y, t / (b.x * b.y)};
            f();
        });
        for (auto& th : ts) th.join();
    }
}
