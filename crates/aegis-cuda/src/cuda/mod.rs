//! The CUDA backend (cargo feature `cuda`): safe types over [`crate::raw::cuda`].
//!
//! - [`CudaDevice`]: a device's primary context plus the state every handle made on it shares:
//!   bytes allocated, poison (the first Fatal driver error, after which every call fails with
//!   [`crate::CudaError::DevicePoisoned`] until [`crate::Device::rebuild`]), and errors raised in
//!   `Drop` (logged with `tracing::error!` and returned by the next fallible call, STYLE §4).
//! - [`CudaStream`]: a CUDA stream plus a keep-alive list: every buffer an enqueued operation
//!   reads or writes is parked there until a synchronise (or an idle query) proves the stream
//!   has passed it, so dropping a `DeviceMemory` while a kernel still uses it is safe, exactly
//!   as on the host backend.
//! - [`Module`] / [`Kernel`] / [`KernelArgs`]: PTX loading and launches whose arguments are
//!   checked against the kernel's PTX signature (count and size of each parameter), so a
//!   mismatched launch is an error instead of undefined behaviour.
//! - [`CapturedGraph`] / [`GraphExec`]: stream capture into a CUDA graph and its replay.
//!
//! The driver-code table ([`codes`]) is compiled in every build so CI tests it without a GPU.
//!
//! ## Building and testing without a GPU
//! `cargo xtask cuda-check` builds against a generated stub `libcuda` and runs check + clippy;
//! with `AEGIS_NVRTC_DIR` set it also compiles every kernel with NVRTC. `cargo xtask
//! gpu-build` collects the CUDA test binaries in `.gpu-bin/` with `run-all.sh` for the GPU
//! machine (see `xtask/src/gpu.rs` for the exact commands).
//!
//! ## Differences from the host backend
//! - Host-only calls on CUDA objects return [`crate::CudaError::WrongBackend`]: host access
//!   to device memory, `Stream::enqueue_host`, `Stream::upload`/`memset` into staging memory,
//!   `Device::inject_fault`.
//! - `Stream::callback` runs on the device's callback thread; later stream work does not wait
//!   for it.
//! - Every stream is a blocking stream: new allocations are zero-filled on the legacy default
//!   stream, which orders the fill before later work. Do not allocate while a stream captures.

pub(crate) mod codes;

#[cfg(feature = "cuda")]
mod device;
#[cfg(feature = "cuda")]
mod memory;
#[cfg(feature = "cuda")]
mod module;
#[cfg(feature = "cuda")]
mod stream;

#[cfg(feature = "cuda")]
pub(crate) use device::CudaDevice;
#[cfg(feature = "cuda")]
pub(crate) use memory::{CudaMem, Pinned};
#[cfg(feature = "cuda")]
pub(crate) use module::parse_ptx_entries;
#[cfg(feature = "cuda")]
pub use module::{Dim3, Kernel, KernelArgs, Module};
#[cfg(feature = "cuda")]
pub use stream::{CapturedGraph, GraphExec};
#[cfg(feature = "cuda")]
pub(crate) use stream::{CudaEvent, CudaStream};
