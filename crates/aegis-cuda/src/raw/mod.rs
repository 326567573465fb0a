//! The only module in the workspace allowed to hold `unsafe` code (checked by `cargo xtask
//! tidy`). Each unsafe block states why it is sound in a `// SAFETY:` comment.
//!
//! - [`host`]: host-backend "device" memory: an aligned heap block whose byte ranges are
//!   lent out through a run-time borrow tracker, so concurrent streams can touch disjoint
//!   ranges of one arena while an overlapping access (a missing event wait) is reported as
//!   [`crate::CudaError::RaceDetected`] instead of being undefined behaviour.
//! - `cuda` (feature `cuda`): the CUDA driver and NVRTC behind one checked wrapper per call;
//!   the only module that names `cust`.
//! - [`gemm`]: the bounds-checked call into the `gemm` crate's f32 matrix multiply that host
//!   kernels in upper layers use ([`crate::host_sgemm`]).
//! - [`team`]: the host compute team's job protocol ([`crate::HostTeam`]): a published job
//!   borrows its caller's stack, the one lifetime erasure the protocol makes sound.
#![allow(unsafe_code)]

#[cfg(feature = "cuda")]
pub(crate) mod cuda;
pub(crate) mod gemm;
pub(crate) mod host;
pub(crate) mod team;
