//! # aegis-exec — Layer 3 of AegisRT
//!
//! Owns models: loading an ONNX file into an immutable [`ExecutionGraph`], the kernels that
//! compute its operators, and running it on Layer 1 streams with memory planned by Layer 2.
//!
//! - **Loading** ([`loader`]): `tract-onnx` only parses the protobuf; our code validates every
//!   node, fixes input shapes (from the model or the caller), infers shapes and dtypes, folds
//!   constants (`Constant`, `Shape`, shape arithmetic, any op with all-constant inputs), drops
//!   `Identity`/inference `Dropout`, folds `BatchNormalization` into a preceding `Conv` and a
//!   per-channel constant `Mul`/`Add` into a preceding `Conv` or `BatchNormalization`, picks
//!   a deterministic topological order and asks Layer 2 for the [`aegis_memory::AllocationPlan`]
//!   (elementwise ops and reshapes may take their input's storage).
//! - **Preparing** ([`PreparedModel`]): constants uploaded once into pool memory, convolution
//!   weights and batch-norm coefficients prepared once (with a following activation fused;
//!   small-plane convolutions also pack their filter by output-channel blocks, once),
//!   one arena of the plan's peak,
//!   per-stream kernel workspace, every node bound to its planned memory, and the
//!   [`tracker`]'s stream schedule with its events. Running allocates no device memory.
//! - **Running** ([`Executor`]): stateless; enqueues one inference on one or more streams and
//!   returns [`PendingOutputs`]; [`Executor::profile`] times each kernel (host backend).
//! - **Operators**: [`loader::supported_ops`] lists the ONNX operators accepted (with the opset
//!   each starts at); every one has a host kernel in [`kernels`].
//! - **On CUDA** (feature `cuda`, module `cuda`): the same graph, plan and schedule; CUDA C
//!   kernels from `cuda/*.cu` compiled once by NVRTC, weights uploaded once, launches with
//!   precomputed parameter tables, eager or one captured CUDA graph replayed per inference.
//!
//! ## What this crate must never do
//! - Use tract's model types, analysis or execution in the runtime path (tract is a parser
//!   here, and a second oracle in benchmarks).
//! - Mutate a graph after it is built, or let hash order decide anything observable.
//! - Panic on a bad model or bad inputs: every such case is a typed [`ExecError`] naming the
//!   model, node and reason.
//! - Allocate device memory per inference, or spawn scheduling threads (that is Layer 4's).
//!
//! ## Invariants
//! - Outputs are bit-identical across runs and across any number of streams: kernels split
//!   work only along output elements, never inside a reduction.
//! - With several streams, every cross-stream tensor and every arena range the plan reuses
//!   across streams is ordered by an event; no event is recorded that nobody waits on.
#![warn(missing_docs)]

pub mod error;
pub mod graph;
pub mod kernels;
pub mod loader;

pub use error::ExecError;
pub use graph::{
    DType, ExecutionGraph, NodeId, Op, OperatorNode, TensorData, TensorId, TensorInfo, TensorKind,
};
pub use loader::{parse_input_shape, parse_input_shapes, LoadOptions};

mod executor;
mod ops;
mod tensor;
pub mod tracker;

pub use executor::{
    ExecOptions, Executor, MemoryRequirement, NodeTime, PendingOutputs, PreparedModel,
};
pub use tensor::HostTensor;
pub use tracker::StreamAssignment;

#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda")]
pub use cuda::{CudaExecError, CudaExecutor, CudaPreparedModel, LaunchMode};
