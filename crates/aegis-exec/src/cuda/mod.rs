//! The CUDA execution path (cargo feature `cuda`): the graph's ops as CUDA C kernels
//! (`crates/aegis-exec/cuda/*.cu`, compiled at run time with NVRTC, once per process and
//! compute capability, cached on disk), a [`CudaPreparedModel`] mirroring
//! [`crate::PreparedModel`] and a stateless [`CudaExecutor`] that enqueues eagerly or replays
//! one captured CUDA graph.
//!
//! - **Prepare**: kernels loaded on the device; every constant a node reads uploaded once
//!   into one pool buffer (256-byte aligned); static kernel parameters (shapes, strides,
//!   broadcast and resize tables) computed on the host and uploaded once into another; one
//!   arena from the graph's memory plan; one scratch region per stream for split-K convs
//!   (sized by the largest need, allocated once); every node lowered to its launches, on the
//!   streams and with the events of [`crate::tracker::assign_streams`]. Convs whose output
//!   tiles cannot fill the GPU split their reduction and finish with an ordered (so
//!   deterministic) reduction kernel; one-row GEMMs run a GEMV.
//! - **Run**: inputs uploaded into the arena, the launches (or the graph) enqueued, outputs
//!   copied into pinned staging on stream 0. No device allocation per inference.
//! - **Graph capture**: on the first [`LaunchMode::Graph`] run the steps are captured from
//!   stream 0 (other streams fork and join through the schedule's events) and instantiated;
//!   later runs replay it. A failed capture is logged (`tracing::warn!`) and the model runs
//!   eagerly from then on.
//!
//! Not supported (a typed [`CudaExecError::Unsupported`] at prepare time): cubic Resize,
//! antialiased or `tf_crop_and_resize` Resize, linear Resize beyond the trailing spatial
//! axes, more than 3 spatial axes, arithmetic on bool. Integer division by zero gives 0 and an
//! out-of-range Gather index gives zeros (the host backend reports errors for both).
//!
//! CI compiles the kernels with NVRTC for compute_90 and compute_75 (the `cuda_nvrtc` test)
//! and runs them on the CPU under an emulation shim (`cargo xtask cuda-emu`); CI has no GPU.
//! They were run on an NVIDIA H200 (`cuda_models`: every shared model and 57 single-op
//! models pass; figures in docs/gpu-results.md). [`CudaExecutor::profile`] gives per-node
//! GPU times.

mod kernels;
mod lower;
mod model;

#[cfg(test)]
mod abi_tests;
#[cfg(test)]
#[path = "../../tests/malformed/builder.rs"]
mod test_builder;

pub use kernels::{KERNEL_SOURCES, NVRTC_OPTIONS};
pub use model::{CudaExecutor, CudaMemory, CudaPendingOutputs, CudaPreparedModel, LaunchMode};

use aegis_cuda::nvrtc::NvrtcError;
use aegis_cuda::{Categorized, ErrorCategory};

use crate::ExecError;

/// Errors of the CUDA execution path.
#[derive(Debug, thiserror::Error)]
pub enum CudaExecError {
    /// A loading, memory, device or input error (as on the host path).
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The op kernels could not be compiled or loaded.
    #[error("model {model}: CUDA kernels: {source}")]
    Nvrtc {
        /// The model.
        model: String,
        /// NVRTC's error.
        #[source]
        source: NvrtcError,
    },
    /// A node this backend has no kernel for.
    #[error("model {model}: node {node} ({op}) is not supported on CUDA: {reason}")]
    Unsupported {
        /// The model.
        model: String,
        /// The node.
        node: String,
        /// Its ONNX operator.
        op: &'static str,
        /// What is missing.
        reason: String,
    },
}

impl Categorized for CudaExecError {
    fn category(&self) -> ErrorCategory {
        match self {
            Self::Exec(e) => e.category(),
            Self::Nvrtc { source, .. } => source.category(),
            Self::Unsupported { .. } => ErrorCategory::Permanent,
        }
    }
}
