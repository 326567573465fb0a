#![cfg(feature = "cuda")]
//! CUDA backend: kernels compiled with NVRTC, checked launches, graph capture and replay.
//! Needs a CUDA GPU and NVRTC.

mod cuda_common;

use aegis_cuda::{
    CudaError, Device, DeviceMemory, Dim3, HostBuffer, KernelArgs, Module, Stream, StreamPriority,
};
use cuda_common::*;

#[test]
fn saxpy_computes_on_the_gpu() {
    let d = device();
    let k = kernels(&d);
    assert_eq!(k.saxpy.param_sizes(), &[4, 8, 8, 4]);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let n = 100_003u32; // not a multiple of the block size: the bounds check matters
    let x: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let y: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let (dx, dy) = (
        DeviceMemory::alloc(&d, n as usize * 4).unwrap(),
        DeviceMemory::alloc(&d, n as usize * 4).unwrap(),
    );
    s.upload(f32_bytes(&x), &dx.as_slice()).unwrap();
    s.upload(f32_bytes(&y), &dy.as_slice()).unwrap();
    let args = KernelArgs::new()
        .f32(2.0)
        .slice(&dx.as_slice())
        .slice(&dy.as_slice())
        .u32(n);
    s.launch(&k.saxpy, Dim3::cover(n as usize, 128), 128, 0, &args)
        .unwrap();
    let got = read_f32(&s, &dy.as_slice());
    let want: Vec<f32> = x.iter().zip(&y).map(|(a, b)| 2.0 * a + b).collect();
    assert_eq!(got, want);
}

#[test]
fn occupancy_is_reported_per_kernel() {
    let d = device();
    let k = kernels(&d);
    // A tiny kernel: the per-SM warp or block limit binds before registers or shared
    // memory (32 warps = 8 such blocks on Turing, the oldest CUDA 13 supports).
    let small = k.saxpy.max_active_blocks_per_sm(128, 0).unwrap();
    assert!(small >= 8, "{small}");
    // Asking for more dynamic shared memory than a multiprocessor has fits no block.
    let none = k.saxpy.max_active_blocks_per_sm(128, 1 << 30).unwrap_or(0);
    assert_eq!(none, 0);
}

#[test]
fn launches_with_wrong_arguments_are_refused() {
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let m = DeviceMemory::alloc(&d, 1024).unwrap();
    let invalid = |r: aegis_cuda::Result<()>| matches!(r, Err(CudaError::InvalidArgument { .. }));
    // Too few arguments.
    assert!(invalid(s.launch(
        &k.fill,
        1,
        32,
        0,
        &KernelArgs::new().slice(&m.as_slice())
    )));
    // An 8-byte u64 where the kernel takes a 4-byte float.
    assert!(invalid(s.launch(
        &k.fill,
        1,
        32,
        0,
        &KernelArgs::new().slice(&m.as_slice()).u64(1).u32(8)
    )));
    // Host memory as a device pointer.
    let h = HostBuffer::alloc(&d, 1024).unwrap();
    assert!(invalid(s.launch(
        &k.fill,
        1,
        32,
        0,
        &KernelArgs::new().slice(&h.as_slice()).f32(1.0).u32(8)
    )));
    // Memory of another device.
    let other = Device::host();
    let foreign = DeviceMemory::alloc(&other, 1024).unwrap();
    assert!(invalid(s.launch(
        &k.fill,
        1,
        32,
        0,
        &KernelArgs::new().slice(&foreign.as_slice()).f32(1.0).u32(8)
    )));
    // A zero dimension.
    assert!(invalid(s.launch(
        &k.fill,
        0,
        32,
        0,
        &KernelArgs::new().slice(&m.as_slice()).f32(1.0).u32(8)
    )));
    // An unknown kernel name.
    assert!(matches!(
        k.modules[0].kernel("nope"),
        Err(CudaError::InvalidArgument { .. })
    ));
    // Nothing was enqueued and nothing broke.
    s.synchronize().unwrap();
    assert!(d.poisoned().is_none());
}

#[test]
fn invalid_ptx_is_a_permanent_error() {
    use aegis_cuda::{Categorized, ErrorCategory};
    let d = device();
    let err = Module::from_ptx(&d, ".version 9.0\n.target sm_90\nthis is not ptx").unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Permanent, "{err}");
    assert!(d.poisoned().is_none());
    assert!(matches!(
        Module::from_ptx(&Device::host(), ""),
        Err(CudaError::WrongBackend { .. })
    ));
}

#[test]
fn captured_graph_replays() {
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let n = 4096u32;
    let (dx, dy) = (
        DeviceMemory::alloc(&d, n as usize * 4).unwrap(),
        DeviceMemory::alloc(&d, n as usize * 4).unwrap(),
    );
    s.synchronize().unwrap();
    s.begin_capture().unwrap();
    let grid = Dim3::cover(n as usize, 256);
    s.launch(
        &k.fill,
        grid,
        256,
        0,
        &KernelArgs::new().slice(&dx.as_slice()).f32(1.5).u32(n),
    )
    .unwrap();
    s.launch(
        &k.saxpy,
        grid,
        256,
        0,
        &KernelArgs::new()
            .f32(2.0)
            .slice(&dx.as_slice())
            .slice(&dy.as_slice())
            .u32(n),
    )
    .unwrap();
    assert!(
        matches!(s.synchronize(), Err(CudaError::InvalidArgument { .. })),
        "no sync while capturing"
    );
    let graph = s.end_capture().unwrap();
    let exec = graph.instantiate().unwrap();
    // Capturing ran nothing.
    assert_eq!(read_f32(&s, &dy.as_slice()), vec![0.0; n as usize]);
    drop((dx, graph)); // the executable graph keeps the buffers it uses alive
    for _ in 0..3 {
        s.launch_graph(&exec).unwrap();
    }
    assert_eq!(read_f32(&s, &dy.as_slice()), vec![9.0; n as usize]);
    assert!(matches!(
        s.end_capture(),
        Err(CudaError::InvalidArgument { .. })
    ));
}

#[test]
fn launch_overhead_figures() {
    // Prints figures for docs/gpu-results.md; asserts only that the work was done.
    let d = device();
    let k = kernels(&d);
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let n = 1024u32;
    let m = DeviceMemory::alloc(&d, n as usize * 4).unwrap();
    let args = KernelArgs::new().slice(&m.as_slice()).f32(3.0).u32(n);
    let iters = 2000;
    let t = std::time::Instant::now();
    for _ in 0..iters {
        s.launch(&k.fill, 4, 256, 0, &args).unwrap();
    }
    s.synchronize().unwrap();
    let per_launch = t.elapsed() / iters;
    s.begin_capture().unwrap();
    for _ in 0..100 {
        s.launch(&k.fill, 4, 256, 0, &args).unwrap();
    }
    let exec = s.end_capture().unwrap().instantiate().unwrap();
    let t = std::time::Instant::now();
    for _ in 0..20 {
        s.launch_graph(&exec).unwrap();
    }
    s.synchronize().unwrap();
    let per_graph_kernel = t.elapsed() / 2000;
    println!("FIGURE launch+sync amortised per kernel: {per_launch:?}; per kernel inside a graph: {per_graph_kernel:?}");
    assert_eq!(read_f32(&s, &m.as_slice()), vec![3.0; n as usize]);
}
