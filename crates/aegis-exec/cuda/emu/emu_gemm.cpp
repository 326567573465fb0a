#include "shim.h"
#include "../gemm.cu"
extern "C" void run_sgemm(const float* a, const float* b, const float* c, float* y, const long long* p,
                          float alpha, float beta, unsigned gx, unsigned gy, unsigned gz) {
    emu_launch({gx, gy, gz}, {256, 1, 1}, [=] { sgemm_f32(a, b, c, y, p, alpha, beta); });
}
extern "C" void run_sgemv(const float* a, const float* b, const float* c, float* y, const long long* p,
                          float alpha, float beta, unsigned gx, unsigned gz) {
    emu_launch({gx, 1, gz}, {256, 1, 1}, [=] { sgemv_f32(a, b, c, y, p, alpha, beta); });
}
