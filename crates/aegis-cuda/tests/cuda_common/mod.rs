//! Shared helpers of the CUDA test binaries (which need a CUDA GPU and NVRTC: on the GPU
//! machine, NVRTC from its toolkit on the loader path, or `AEGIS_NVRTC_DIR`).
#![allow(dead_code)] // each test binary uses a subset

use std::sync::OnceLock;

use aegis_cuda::nvrtc::{KernelCache, Nvrtc, BUILTIN_KERNELS};
use aegis_cuda::{Device, HostBuffer, Kernel, Module, Stream};

/// CUDA device 0; these tests are meant for a GPU machine and fail loudly without one.
pub fn device() -> Device {
    Device::cuda(0).unwrap_or_else(|e| panic!("the CUDA tests need a CUDA GPU: {e}"))
}

fn cache() -> &'static KernelCache {
    static CACHE: OnceLock<KernelCache> = OnceLock::new();
    CACHE.get_or_init(|| {
        let nvrtc = Nvrtc::load().unwrap_or_else(|e| panic!("the CUDA tests need NVRTC: {e}"));
        KernelCache::new(nvrtc, None)
    })
}

/// The test kernels, compiled for `device` and loaded.
pub struct Kernels {
    pub fill: Kernel,
    pub saxpy: Kernel,
    pub spin: Kernel,
    pub modules: Vec<Module>,
}

pub fn kernels(device: &Device) -> Kernels {
    let load = |file: &str| -> Module {
        let src = BUILTIN_KERNELS
            .iter()
            .find(|(f, _)| *f == file)
            .map(|(_, s)| *s)
            .unwrap();
        cache()
            .module(device, file, src, &[])
            .unwrap_or_else(|e| panic!("{file}: {e}"))
    };
    let (fill_m, saxpy_m, spin_m) = (load("fill.cu"), load("saxpy.cu"), load("spin.cu"));
    Kernels {
        fill: fill_m.kernel("fill_f32").unwrap(),
        saxpy: saxpy_m.kernel("saxpy").unwrap(),
        spin: spin_m.kernel("spin_then_increment").unwrap(),
        modules: vec![fill_m, saxpy_m, spin_m],
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    bytemuck::cast_slice(v).to_vec()
}

/// Downloads `src` (f32s) through a staging buffer.
pub fn read_f32(stream: &Stream, src: &aegis_cuda::DeviceSlice) -> Vec<f32> {
    let host = HostBuffer::alloc(stream.device(), src.len()).unwrap();
    stream.download(src, &host.as_slice()).unwrap();
    stream.synchronize().unwrap();
    let bytes = host.read().unwrap();
    bytemuck::cast_slice::<u8, f32>(&bytes).to_vec()
}

/// Clock cycles for roughly `ms` milliseconds on any current GPU (1-2 GHz clocks).
pub fn cycles_for_ms(ms: u64) -> u64 {
    ms * 2_000_000
}
