//! # aegis-exec — Layer 3 of AegisRT
//!
//! (crate documentation is completed as the modules land)

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

pub use executor::{ExecOptions, Executor, MemoryRequirement, PendingOutputs, PreparedModel};
pub use tensor::HostTensor;
pub use tracker::StreamAssignment;
