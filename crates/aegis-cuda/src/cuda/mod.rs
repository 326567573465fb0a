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
