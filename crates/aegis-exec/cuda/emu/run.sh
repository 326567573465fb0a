#!/bin/sh
# Runs the CUDA kernels on the CPU under a serial emulation (emu/shim.h: one OS thread per CUDA
# thread of a block, blocks in turn, __syncthreads as a std::barrier) and compares them with
# numpy references. Checks index math, tiling, bounds and barriers without a GPU; it says
# nothing about races between blocks, warp-level behaviour or performance.
# Needs g++ (C++20) and Python with numpy (e.g. PYTHONPATH=/tmp/ortpkg).
set -e
cd "$(dirname "$0")"
out="${TMPDIR:-/tmp}/aegis-cuda-emu"
mkdir -p "$out"
for f in gemm conv norm pool ew; do
  g++ -std=c++20 -O1 -shared -fPIC -pthread -w -o "$out/lib_$f.so" "emu_$f.cpp"
done
python3 check.py "$out"
