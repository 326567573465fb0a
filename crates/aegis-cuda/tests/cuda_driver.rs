#![cfg(feature = "cuda")]
//! Device selection never panics: with a GPU it opens, without one (no driver, or the link-time
//! stub `libcuda` of `cargo xtask gpu-build`) it is `BackendUnavailable` naming the driver's
//! error. Runs anywhere the binary can start.

use aegis_cuda::{BackendKind, Categorized, CudaError, Device, ErrorCategory};

#[test]
fn cuda_device_opens_or_says_why_not() {
    match Device::cuda(0) {
        Ok(d) => {
            assert_eq!(d.backend(), BackendKind::Cuda);
            assert!(d.info().compute_capability.is_some());
        }
        Err(e) => {
            assert!(matches!(e, CudaError::BackendUnavailable { .. }), "{e}");
            assert_eq!(e.category(), ErrorCategory::Permanent);
            assert!(
                e.to_string().contains("CUDA_ERROR_") || e.to_string().contains("reports 0"),
                "{e}"
            );
            println!("no CUDA device: {e}");
        }
    }
}

#[test]
fn enumerate_always_lists_the_host_and_only_real_cuda_devices() {
    let all = Device::enumerate();
    assert_eq!(all.first().map(|i| i.backend), Some(BackendKind::Host));
    let cuda = all
        .iter()
        .filter(|i| i.backend == BackendKind::Cuda)
        .count();
    assert_eq!(cuda > 0, Device::cuda(0).is_ok());
}

#[test]
fn out_of_range_ordinal_is_unavailable() {
    let e = Device::cuda(u32::MAX).unwrap_err();
    assert!(matches!(e, CudaError::BackendUnavailable { .. }), "{e}");
}

#[test]
fn best_available_falls_back_to_the_host() {
    let d = Device::best_available();
    assert_eq!(d.backend() == BackendKind::Cuda, Device::cuda(0).is_ok());
}
