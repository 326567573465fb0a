//! # aegis-cuda — Layer 1 of AegisRT
//!
//! Owns the device: enumeration and selection, streams, events, device memory and enqueued
//! work, behind one API with two backends:
//!
//! - the **host backend** (always built): every [`Stream`] is an asynchronous in-order queue
//!   served by its own worker thread, which polls briefly after its queue drains
//!   ([`HostDeviceOptions::stream_linger`]) and then parks; an [`Event`] marks a point in a stream that other
//!   streams and the host wait on; [`DeviceMemory`] is real, 256-byte aligned memory charged
//!   against a capacity, so exhaustion returns the same [`CudaError::OutOfMemory`] a GPU
//!   would. Overlapping concurrent access to memory is detected at run time
//!   ([`CudaError::RaceDetected`]), so a missing event wait is a failing test, not a heisenbug.
//!   Tests can inject deterministic faults ([`Device::inject_fault`]), including sticky ones
//!   that poison the device until [`Device::rebuild`].
//! - the **CUDA backend** over `cust`, behind the `cuda` cargo feature (off by default): the
//!   same API on a CUDA primary context, plus kernels (`Module` from PTX, `Stream::launch`
//!   with arguments checked against the PTX signature), graph capture and replay, and run-time
//!   CUDA C compilation (`nvrtc`). Every driver call goes through one checked wrapper in
//!   `raw::cuda`, the only module that names `cust`; errors name the call and its call site,
//!   sticky driver errors poison the device, and errors met in `Drop` are logged and returned
//!   by the next fallible call. Host-only operations on CUDA objects (host access to device
//!   memory, arbitrary host work in stream order) return [`CudaError::WrongBackend`].
//!
//! It also defines the error model every layer uses: [`ErrorCategory`] and [`Categorized`],
//! and [`host_sgemm`], the checked host f32 matrix multiply (over the `gemm` crate) that upper
//! layers' CPU kernels call, since only `raw` may hold `unsafe`.
//!
//! And it owns the host backend's launch grid, the **host compute team**
//! ([`host_parallel_for`], [`HostTeam`]): `cores - 1` helper threads (`aegis-team-N`, started
//! on first use) that run a job's pieces together with the calling thread. Every thread,
//! the caller included, claims pieces from one counter, so the caller never waits for a
//! piece nobody started (a parked or preempted helper just takes none); helpers poll for
//! [`HOST_TEAM_LINGER`] after a job, then park, and a caller pays a wake-up only for a
//! parked helper; a hold ([`host_team_hold`]) keeps them polling for the span of an
//! inference. A job borrows its caller's stack; the caller retracts it and waits for the
//! helpers registered on it before returning (`raw::team`, checked by a loom model).
//!
//! ## What this crate must never do
//! - Know about graphs, tensors, models or scheduling: it moves bytes and runs work.
//! - Let a raw handle or pointer escape: callers hold RAII types and cheap [`DeviceSlice`]
//!   handles; host access goes through checked guards.
//! - Hold `unsafe` outside the `raw` module, or call the driver without checking the result.
//! - Block the caller on enqueue: only `synchronize` calls wait.
//! - Let a helper of the host compute team touch a job after its caller returned, or make
//!   a caller wait for a piece no thread has started.
//!
//! ## Invariants
//! - Work on one stream runs in enqueue order; a stream that waits on an event runs nothing
//!   enqueued after the wait until the event's record point has been passed.
//! - Every accepted item completes: errors and panics surface at the next synchronise, a
//!   stream dropped with pending work drains it first, and events recorded on a poisoned
//!   device still complete (carrying the error) so no waiter hangs.
//! - [`host_parallel_for`] runs every piece exactly once, returns only after all finished,
//!   re-raises a piece's panic on the caller, and hands out `slot`s unique within one call.
#![warn(missing_docs)]

mod cuda;
mod device;
mod error;
mod host;
mod memory;
#[cfg(feature = "cuda")]
pub mod nvrtc;
mod raw;
mod stream;
pub mod sync;
mod team;

pub use device::{BackendKind, Device, DeviceInfo, FaultRule, FaultTrigger, HostDeviceOptions};
pub use error::{CallSite, Categorized, CudaError, ErrorCategory, InjectedFaultKind, Result};
pub use host::Label;
pub use memory::{DeviceMemory, DeviceSlice, HostBuffer, HostRead, HostWrite, ALLOCATION_ALIGN};
pub use raw::gemm::{host_sgemm, HostMat, HostMatMut};
pub use stream::{Event, Stream, StreamPriority};
pub use team::{
    host_parallel_for, host_team_hold, host_team_threads, HostTeam, TeamHold, HOST_TEAM_LINGER,
};

#[cfg(feature = "cuda")]
pub use cuda::{CapturedGraph, Dim3, GraphExec, Kernel, KernelArgs, Module};
