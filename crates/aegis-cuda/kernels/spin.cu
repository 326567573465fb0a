// Busy-waits about `cycles` clock cycles, then adds one to *counter. The CUDA tests use it to
// make a producer stream measurably slow, so a missing event wait would be observed as a stale
// read on the consumer stream, and to give events a non-zero elapsed time.
extern "C" __global__ void spin_then_increment(unsigned long long cycles,
                                               unsigned int* counter) {
    long long start = clock64();
    while ((unsigned long long)(clock64() - start) < cycles) {
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        atomicAdd(counter, 1u);
    }
}
