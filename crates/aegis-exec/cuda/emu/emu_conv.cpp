#include "shim.h"
#include "../conv.cu"
extern "C" void run_igemm(const float* x, const float* w, const float* bias, float* y, const long long* p,
                          int act, unsigned gx, unsigned gy, unsigned gz) {
    emu_launch({gx, gy, gz}, {256, 1, 1}, [=] { conv_igemm_f32(x, w, bias, y, p, act, 0.f, 0.f); });
}
extern "C" void run_dw(const float* x, const float* w, const float* bias, float* y, const long long* p, unsigned g) {
    emu_launch({g, 1, 1}, {256, 1, 1}, [=] { conv_depthwise_f32(x, w, bias, y, p, 19, 0.f, 0.f); });
}
extern "C" void run_convt(const float* x, const float* w, const float* bias, float* y, const long long* p, unsigned g) {
    emu_launch({g, 1, 1}, {256, 1, 1}, [=] { conv_transpose_f32(x, w, bias, y, p); });
}
extern "C" void run_splitk_reduce(const float* ws, const float* bias, float* y, const long long* p, int act, unsigned g) {
    emu_launch({g, 1, 1}, {256, 1, 1}, [=] { conv_splitk_reduce_f32(ws, bias, y, p, act, 0.f, 0.f); });
}
extern "C" void run_igemm128(const float* x, const float* w, const float* bias, float* y, const long long* p,
                             int act, unsigned gx, unsigned gy, unsigned gz) {
    emu_launch({gx, gy, gz}, {256, 1, 1}, [=] { conv_igemm128_f32(x, w, bias, y, p, act, 0.f, 0.f); });
}
