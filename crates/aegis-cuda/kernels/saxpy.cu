// y[i] = a * x[i] + y[i] for i < n. Used by the CUDA test suite (kernel arguments of every
// kind: a scalar float, two device pointers, an element count).
extern "C" __global__ void saxpy(float a,
                                 const float* __restrict__ x,
                                 float* __restrict__ y,
                                 unsigned int n) {
    unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        y[i] = a * x[i] + y[i];
    }
}
