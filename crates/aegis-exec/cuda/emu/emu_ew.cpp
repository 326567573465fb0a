#include "shim.h"
#include "../elementwise.cu"
extern "C" void run_binary(const float* a, const float* b, float* y, const long long* m, int op) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { binary_f32(a, b, y, m, op); });
}
extern "C" void run_copy(const void* x, void* y, const long long* m, int es) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { strided_copy(x, y, m, es); });
}
extern "C" void run_pad(const float* x, float* y, const long long* m, int mode, float v) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { pad_f32(x, y, m, mode, v); });
}
extern "C" void run_gather(const void* d, const void* i, int i64, void* o, const long long* m, int es) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { gather_any(d, i, i64, o, m, es); });
}
extern "C" void run_unary(const float* x, float* y, unsigned long long n, int op, float a, float b) {
    emu_launch({2, 1, 1}, {256, 1, 1}, [=] { unary_f32(x, y, n, op, a, b); });
}
