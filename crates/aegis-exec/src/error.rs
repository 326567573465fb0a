//! Layer 3's error type for loading models into an [`crate::graph::ExecutionGraph`].
//!
//! Every variant names the model (the file path or the name given to `from_bytes`) and, where
//! one is involved, the node, so a rejected model can be diagnosed from the message alone.
//! Bad models are [`ErrorCategory::Permanent`]: loading the same bytes again cannot succeed.

use aegis_cuda::{Categorized, ErrorCategory};
use aegis_memory::MemoryError;

/// Why a model could not be loaded.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The model file could not be read.
    #[error("model {model}: cannot read file: {reason}")]
    Io {
        /// The model.
        model: String,
        /// The operating system's message.
        reason: String,
    },
    /// The bytes are not a valid ONNX protobuf (truncated, corrupt, or not ONNX at all).
    #[error("model {model}: not a valid ONNX model: {reason}")]
    Parse {
        /// The model.
        model: String,
        /// What the decoder or the structural check reported.
        reason: String,
    },
    /// The model imports an opset we do not support for the default domain.
    #[error("model {model}: opset {version} of domain '{domain}' is not supported (supported: default domain, opsets 1 to 28)")]
    UnsupportedOpset {
        /// The model.
        model: String,
        /// The domain ("" is the default ONNX domain).
        domain: String,
        /// The imported version.
        version: i64,
    },
    /// One or more nodes use operators we do not support. Lists every one, in file order.
    #[error("model {model}: {} unsupported operator node(s): {}", ops.len(), fmt_ops(ops))]
    UnsupportedOps {
        /// The model.
        model: String,
        /// `(op_type, node name)` for every unsupported node; `op_type` is prefixed with its
        /// domain when that is not the default one.
        ops: Vec<(String, String)>,
    },
    /// A node's attributes or inputs are invalid or use a value we do not support.
    #[error("model {model}: node {node}: {reason}")]
    InvalidNode {
        /// The model.
        model: String,
        /// The node's name (or `op_type#index` when it has none).
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The nodes do not form a DAG.
    #[error("model {model}: the graph has a cycle through node(s) {}", nodes.join(", "))]
    Cycle {
        /// The nodes that could not be ordered (those on or behind a cycle).
        nodes: Vec<String>,
        /// The model.
        model: String,
    },
    /// A node (or a graph output) reads a tensor that nothing produces.
    #[error("model {model}: node {node} reads tensor '{tensor}', which is never produced")]
    DanglingInput {
        /// The model.
        model: String,
        /// The reading node (or `graph output`).
        node: String,
        /// The missing tensor.
        tensor: String,
    },
    /// Two producers (nodes, initializers or graph inputs) write the same tensor name.
    #[error("model {model}: tensor '{tensor}' is produced by both {first} and {second}")]
    DuplicateProducer {
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// The first producer.
        first: String,
        /// The second producer.
        second: String,
    },
    /// Shapes or dtypes that an operator cannot accept, or that contradict the model's own
    /// declarations.
    #[error("model {model}: node {node}: shape/type mismatch: {reason}")]
    ShapeMismatch {
        /// The model.
        model: String,
        /// The node (or `graph input x` / `graph output y`).
        node: String,
        /// What does not fit.
        reason: String,
    },
    /// A size computation overflowed (element count or byte size too large).
    #[error("model {model}: {what}: size overflows")]
    Overflow {
        /// The model.
        model: String,
        /// Which tensor or computation overflowed.
        what: String,
    },
    /// Weights stored outside the model file could not be read.
    #[error("model {model}: external data of tensor '{tensor}': {reason}")]
    ExternalData {
        /// The model.
        model: String,
        /// The initializer.
        tensor: String,
        /// What is wrong (missing file, out of bounds, escaping path ...).
        reason: String,
    },
    /// A graph input has a dimension that is neither fixed in the model nor by the caller.
    #[error("model {model}: input '{input}' has open dimension {dim} ('{symbol}'); fix it with LoadOptions::input_shapes (e.g. \"{input}=1,3,224,224\")")]
    OpenDimension {
        /// The model.
        model: String,
        /// The graph input.
        input: String,
        /// The index of the open dimension.
        dim: usize,
        /// The symbolic name of the dimension in the model ("" when none).
        symbol: String,
    },
    /// A shape override is malformed or does not fit the model.
    #[error("model {model}: input shape override: {reason}")]
    BadShapeOverride {
        /// The model ("" when parsing the override text alone).
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A tensor uses an element type we do not support.
    #[error("model {model}: tensor '{tensor}' has unsupported element type {dtype}")]
    UnsupportedDType {
        /// The model.
        model: String,
        /// The tensor.
        tensor: String,
        /// The ONNX `TensorProto.DataType` name or number.
        dtype: String,
    },
    /// Layer 2 rejected the memory plan.
    #[error("model {model}: memory planning failed: {source}")]
    Memory {
        /// The model.
        model: String,
        /// Layer 2's error.
        #[source]
        source: MemoryError,
    },
    /// Layer 1 failed while preparing or running the model (kernel failure, device fault,
    /// out of memory); the category is Layer 1's.
    #[error("model {model}: device error: {source}")]
    Device {
        /// The model.
        model: String,
        /// Layer 1's error.
        #[source]
        source: aegis_cuda::CudaError,
    },
    /// The caller's inputs do not match the model (count, dtype, shape or byte length).
    #[error("input {input}: {reason}")]
    InputMismatch {
        /// The input's name.
        input: String,
        /// What differs.
        reason: String,
    },
    /// A tensor file (`.npy`, `.pb`) could not be read or written.
    #[error("tensor file {path}: {reason}")]
    TensorFile {
        /// The file.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

fn fmt_ops(ops: &[(String, String)]) -> String {
    ops.iter()
        .map(|(op, node)| format!("{op} (node {node})"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ExecError {
    /// The model the error is about.
    pub fn model(&self) -> &str {
        match self {
            Self::Io { model, .. }
            | Self::Parse { model, .. }
            | Self::UnsupportedOpset { model, .. }
            | Self::UnsupportedOps { model, .. }
            | Self::InvalidNode { model, .. }
            | Self::Cycle { model, .. }
            | Self::DanglingInput { model, .. }
            | Self::DuplicateProducer { model, .. }
            | Self::ShapeMismatch { model, .. }
            | Self::Overflow { model, .. }
            | Self::ExternalData { model, .. }
            | Self::OpenDimension { model, .. }
            | Self::BadShapeOverride { model, .. }
            | Self::UnsupportedDType { model, .. }
            | Self::Memory { model, .. }
            | Self::Device { model, .. } => model,
            Self::InputMismatch { .. } | Self::TensorFile { .. } => "",
        }
    }
}

impl Categorized for ExecError {
    fn category(&self) -> ErrorCategory {
        match self {
            // A plan failure keeps Layer 2's own judgement.
            Self::Memory { source, .. } => source.category(),
            Self::Device { source, .. } => source.category(),
            // Everything else is a property of the model bytes or the options: retrying the
            // same load cannot succeed. (I/O errors on a local model file are treated the same:
            // a missing or unreadable file does not fix itself.)
            _ => ErrorCategory::Permanent,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = ExecError> = std::result::Result<T, E>;
