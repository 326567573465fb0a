#include "shim.h"
#include "../pool.cu"
extern "C" void run_pool(const float* x, float* y, const long long* m, int kind, int cip) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { pool_f32(x, y, m, kind, cip); });
}
