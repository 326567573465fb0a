// Fills n floats with a value. Used by the CUDA test suite (launch, graph replay) and as the
// smallest end-to-end check of NVRTC -> PTX -> cuModuleLoadData -> cuLaunchKernel.
extern "C" __global__ void fill_f32(float* __restrict__ out, float value, unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        out[i] = value;
    }
}
