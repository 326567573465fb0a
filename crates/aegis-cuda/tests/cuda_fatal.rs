#![cfg(feature = "cuda")]
//! A sticky CUDA error poisons the device; rebuild is the way back. In its own test binary
//! because a sticky error breaks the CUDA context for the whole process. Needs a CUDA GPU.

mod cuda_common;

use aegis_cuda::nvrtc::{KernelCache, Nvrtc};
use aegis_cuda::{
    Categorized, CudaError, DeviceMemory, ErrorCategory, KernelArgs, Stream, StreamPriority,
};
use cuda_common::*;

const WILD_WRITE: &str = r#"
extern "C" __global__ void wild_write(unsigned long long addr) {
    *(volatile float*)addr = 1.0f;
}
"#;

#[test]
fn illegal_address_poisons_until_rebuild() {
    let d = device();
    let cache = KernelCache::new(Nvrtc::load().unwrap(), None);
    let module = cache.module(&d, "wild_write", WILD_WRITE, &[]).unwrap();
    let k = module.kernel("wild_write").unwrap();
    let s = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    // An address in no allocation: CUDA_ERROR_ILLEGAL_ADDRESS, a sticky error.
    s.launch(&k, 1, 1, 0, &KernelArgs::new().u64(0x10)).unwrap();
    let err = s.synchronize().unwrap_err();
    assert_eq!(err.category(), ErrorCategory::Fatal, "{err}");
    assert!(matches!(err, CudaError::Driver { .. }), "{err}");
    println!("sticky error: {err}");
    assert!(d.poisoned().is_some());
    let again = DeviceMemory::alloc(&d, 64).unwrap_err();
    assert!(matches!(again, CudaError::DevicePoisoned { .. }), "{again}");
    drop((s, k, module));
    // NVIDIA documents that some sticky errors need a process restart: either the rebuilt
    // device works, or rebuild says why not with a Fatal error. Never a hang or a panic.
    match d.rebuild() {
        Ok(fresh) => {
            assert!(fresh.poisoned().is_none());
            let s = Stream::new(&fresh, StreamPriority::NORMAL).unwrap();
            let m = DeviceMemory::alloc(&fresh, 4096).unwrap();
            s.memset(&m.as_slice(), 1).unwrap();
            s.synchronize().unwrap();
            println!("rebuild after a sticky error: device usable again");
        }
        Err(e) => {
            assert_eq!(e.category(), ErrorCategory::Fatal, "{e}");
            println!("rebuild after a sticky error refused: {e}");
        }
    }
    // Handles of the old device keep failing instead of touching the reset context.
    assert!(DeviceMemory::alloc(&d, 64).is_err());
}
