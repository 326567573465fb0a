#include "shim.h"
#include "../norm.cu"
extern "C" void run_softmax_rows(const float* x, float* y, long long rows, long long n, int lg) {
    emu_launch({(unsigned)rows, 1, 1}, {256, 1, 1}, [=] { softmax_rows_f32(x, y, rows, n, lg); });
}
extern "C" void run_softmax_strided(const float* x, float* y, long long o, long long n, long long i, int lg) {
    emu_launch({1, 1, 1}, {256, 1, 1}, [=] { softmax_strided_f32(x, y, o, n, i, lg); });
}
extern "C" void run_layernorm(const float* x, const float* s, const float* b, float* y, float* m, float* inv,
                              long long rows, long long cols, int flags, float eps) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { layernorm_f32(x, s, b, y, m, inv, rows, cols, cols, cols, flags, eps); });
}
extern "C" void run_reduce_rows(const float* x, float* y, long long rows, long long cols, float div) {
    emu_launch({3, 1, 1}, {256, 1, 1}, [=] { reduce_rows_f32(x, y, rows, cols, 0, div); });
}
extern "C" void run_reduce_general(const float* x, float* y, const long long* m, float div) {
    emu_launch({1, 1, 1}, {256, 1, 1}, [=] { reduce_general_f32(x, y, m, 0, div); });
}
